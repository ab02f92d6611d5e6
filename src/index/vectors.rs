//! The exact sparse vectors of an index, in a compact binary file. The
//! layout, declared once by the structs below (all little-endian):
//!
//! ```text
//! VectorsHeader   magic "CSPV", version u32, documents u32
//! documents × (RecordHead terms u32, ids [u32; terms], weights [f32; terms])
//! sha256 of everything before it (32 bytes; since version 2)
//! ```
//!
//! Reading checks the checksum (version 1 files, from earlier csplade, have
//! none). A record (ids strictly ascending, weights finite and positive) is
//! also the unit of the index journal (after a [`JournalEntry`]) and of the
//! training caches of document vectors.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};
use zerocopy::little_endian::{F32, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::IndexError;
use crate::encode::SparseVec;

/// The first bytes of `vectors.bin`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct VectorsHeader {
    pub magic: [u8; 4],
    pub version: U32,
    pub documents: U32,
}

/// The head of one vector record: how many (id, weight) pairs follow, the
/// ids first (`u32`), then the weights (`f32`).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct RecordHead {
    pub terms: U32,
}

/// What precedes each record in an index journal: the document's corpus
/// position.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct JournalEntry {
    pub ordinal: U32,
}

pub const MAGIC: [u8; 4] = *b"CSPV";
pub const VERSION: u32 = 2;
/// Bytes of the closing checksum.
pub const SUM: usize = 32;
/// Bytes of [`VectorsHeader`].
pub const HEADER: usize = std::mem::size_of::<VectorsHeader>();

/// Serialize one vector record.
pub fn encode_record(v: &SparseVec, out: &mut Vec<u8>) {
    let head = RecordHead {
        terms: U32::new(v.ids.len() as u32),
    };
    out.extend_from_slice(head.as_bytes());
    for id in &v.ids {
        out.extend_from_slice(U32::new(*id).as_bytes());
    }
    for w in &v.weights {
        out.extend_from_slice(F32::new(*w).as_bytes());
    }
}

/// Parse one record at `pos`; returns the vector and the next position.
pub fn decode_record(buf: &[u8], pos: usize) -> Option<(SparseVec, usize)> {
    let (head, rest) = RecordHead::read_from_prefix(buf.get(pos..)?).ok()?;
    let n = head.terms.get() as usize;
    let (ids, rest) = <[U32]>::ref_from_prefix_with_elems(rest, n).ok()?;
    let (weights, _) = <[F32]>::ref_from_prefix_with_elems(rest, n).ok()?;
    let ids: Vec<u32> = ids.iter().map(|i| i.get()).collect();
    let weights: Vec<f32> = weights.iter().map(|w| w.get()).collect();
    if ids.windows(2).any(|w| w[0] >= w[1]) || weights.iter().any(|w| !(w.is_finite() && *w > 0.0))
    {
        return None;
    }
    let end = pos + std::mem::size_of::<RecordHead>() + 8 * n;
    Some((SparseVec { ids, weights }, end))
}

/// Write all vectors (document order) atomically (see
/// [`crate::data::output::write_with`]).
pub fn write(path: &Path, vectors: &[SparseVec]) -> Result<(), IndexError> {
    write_summed(path, MAGIC, VERSION, vectors, encode_record)
}

/// Write a header of `magic` and `version` counting `items`, each item as
/// `encode` serializes it, and the sha256 of everything before it,
/// atomically: the layout of `vectors.bin` and of the passages file.
pub(super) fn write_summed<T>(
    path: &Path,
    magic: [u8; 4],
    version: u32,
    items: &[T],
    encode: impl Fn(&T, &mut Vec<u8>),
) -> Result<(), IndexError> {
    let head = VectorsHeader {
        magic,
        version: U32::new(version),
        documents: U32::new(items.len() as u32),
    };
    Ok(crate::data::output::write_with(path, |w| {
        let mut sum = Sha256::new();
        sum.update(head.as_bytes());
        w.write_all(head.as_bytes())?;
        let mut buf = Vec::new();
        for item in items {
            buf.clear();
            encode(item, &mut buf);
            sum.update(&buf);
            w.write_all(&buf)?;
        }
        w.write_all(&sum.finalize())
    })?)
}

pub fn read(path: &Path) -> Result<Vec<SparseVec>, IndexError> {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut buf))
        .map_err(|e| IndexError::io(path, e))?;
    let corrupt = |msg: &str| IndexError::Corrupt {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    };
    let head = match VectorsHeader::read_from_prefix(&buf) {
        Ok((head, _)) if head.magic == MAGIC => head,
        _ => return Err(corrupt("not a csplade vectors file")),
    };
    match head.version.get() {
        1 => {}
        VERSION => {
            if buf.len() < HEADER + SUM {
                return Err(corrupt("truncated: no checksum"));
            }
            let (body, sum) = buf.split_at(buf.len() - SUM);
            if Sha256::digest(body).as_slice() != sum {
                return Err(corrupt(
                    "checksum mismatch: the file changed after csplade wrote it (a disk error or an edit); rebuild the index",
                ));
            }
            buf.truncate(buf.len() - SUM);
        }
        version => {
            return Err(corrupt(&format!(
                "vectors format {version}, expected {VERSION} (or 1)"
            )))
        }
    }
    let n = head.documents.get() as usize;
    // Every record takes at least a RecordHead: a count beyond that is a lie.
    if n > (buf.len() - HEADER) / std::mem::size_of::<RecordHead>() {
        return Err(corrupt(&format!(
            "declares {n} records in {} bytes",
            buf.len()
        )));
    }
    let mut out = Vec::with_capacity(n);
    let mut pos = HEADER;
    for i in 0..n {
        let (v, next) = decode_record(&buf, pos)
            .ok_or_else(|| corrupt(&format!("record {i} is truncated or malformed")))?;
        out.push(v);
        pos = next;
    }
    if pos != buf.len() {
        return Err(corrupt("trailing bytes after the last record"));
    }
    Ok(out)
}

/// Whether the file at `path` carries a checksum (format 2 and later),
/// read from its header alone.
pub fn has_checksum(path: &Path) -> bool {
    let mut head = [0u8; HEADER];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|_| VectorsHeader::read_from_bytes(&head).is_ok_and(|h| h.version.get() != 1))
}

/// Append a journal entry: the document's corpus position, then its record.
pub fn encode_journal_entry(ordinal: usize, v: &SparseVec, out: &mut Vec<u8>) {
    let entry = JournalEntry {
        ordinal: U32::new(ordinal as u32),
    };
    out.extend_from_slice(entry.as_bytes());
    encode_record(v, out);
}

/// Parse one journal entry at `pos`: (corpus position, vector, next position);
/// `None` when it is truncated or malformed.
pub fn decode_journal_entry(buf: &[u8], pos: usize) -> Option<(usize, SparseVec, usize)> {
    let (entry, _) = JournalEntry::read_from_prefix(buf.get(pos..)?).ok()?;
    let (v, next) = decode_record(buf, pos + std::mem::size_of::<JournalEntry>())?;
    Some((entry.ordinal.get() as usize, v, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.bin");
        let vs = vec![
            SparseVec::from_pairs(vec![(3, 1.5), (10, 0.25)]),
            SparseVec::default(),
            SparseVec::from_pairs(vec![(49_151, 2.0)]),
        ];
        write(&p, &vs).unwrap();
        assert_eq!(read(&p).unwrap(), vs);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("checksum"));
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum_and_version_1_files_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.bin");
        let vs = vec![SparseVec::from_pairs(vec![(3, 1.5), (10, 0.25)])];
        write(&p, &vs).unwrap();
        let good = std::fs::read(&p).unwrap();
        // A weight changed in place: still a well-formed record.
        let mut bad = good.clone();
        // The second weight of the first record.
        bad[HEADER + std::mem::size_of::<RecordHead>() + 2 * 4 + 4] ^= 0x01;
        std::fs::write(&p, &bad).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("checksum mismatch") && e.contains("rebuild"),
            "{e}"
        );
        // The same content as version 1 (no checksum) reads as before.
        let mut v1 = good[..good.len() - SUM].to_vec();
        let (head, _) = VectorsHeader::mut_from_prefix(&mut v1).unwrap();
        head.version = U32::new(1);
        std::fs::write(&p, &v1).unwrap();
        assert_eq!(read(&p).unwrap(), vs);
    }
}
