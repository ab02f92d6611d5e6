//! Long documents as passages (MaxP): a document is indexed as it is read
//! (its first `max_len` tokens) and, past word FROM of its text, as
//! passages of the title plus WORDS words every STRIDE words, each encoded
//! on its own. Search scores a document by the best of its first read and
//! its passages. The split is `data::passages`; this module holds the
//! `passages.bin` file: every passage's document and vector.
//!
//! ```text
//! PassagesHeader  magic "CSPP", version u32, passages u32
//! passages × (JournalEntry document u32, RecordHead terms u32, ids, weights)
//! sha256 of everything before it (32 bytes)
//! ```

use std::path::Path;

use sha2::{Digest, Sha256};
use zerocopy::FromBytes;

use super::vectors::{self, VectorsHeader};
use super::IndexError;
pub use crate::data::passages::PassageSpec;
use crate::encode::SparseVec;

pub const PASSAGES_FILE: &str = "passages.bin";
const MAGIC: [u8; 4] = *b"CSPP";
const VERSION: u32 = 1;

/// Write every passage's document ordinal and vector (document order)
/// atomically.
pub fn write(path: &Path, passages: &[(usize, SparseVec)]) -> Result<(), IndexError> {
    vectors::write_summed(path, MAGIC, VERSION, passages, |(doc, v), buf| {
        vectors::encode_journal_entry(*doc, v, buf)
    })
}

/// Read `passages.bin`: each passage's document and vector, checked to
/// run in document order with every document below `documents` and every
/// term within a vocabulary of `vocab`.
pub fn read(
    path: &Path,
    documents: usize,
    vocab: usize,
) -> Result<Vec<(usize, SparseVec)>, IndexError> {
    let buf = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
    let corrupt = |msg: String| IndexError::Corrupt {
        path: path.to_path_buf(),
        msg,
    };
    let head = match VectorsHeader::read_from_prefix(&buf) {
        Ok((head, _)) if head.magic == MAGIC && head.version.get() == VERSION => head,
        _ => return Err(corrupt("not a csplade passages file".into())),
    };
    if buf.len() < vectors::HEADER + vectors::SUM {
        return Err(corrupt("truncated: no checksum".into()));
    }
    let (body, sum) = buf.split_at(buf.len() - vectors::SUM);
    if Sha256::digest(body).as_slice() != sum {
        return Err(corrupt(
            "checksum mismatch: the file changed after csplade wrote it; rebuild the index".into(),
        ));
    }
    let n = head.documents.get() as usize;
    let mut out = Vec::with_capacity(n.min(body.len() / 8));
    let mut pos = vectors::HEADER;
    for i in 0..n {
        let (doc, v, next) = vectors::decode_journal_entry(body, pos)
            .ok_or_else(|| corrupt(format!("passage {i} is truncated or malformed")))?;
        let in_order = out.last().is_none_or(|&(prev, _)| prev <= doc);
        if doc >= documents || !in_order {
            return Err(corrupt(format!(
                "passage {i} belongs to document {doc}: out of order or beyond the {documents} documents"
            )));
        }
        if let Some(&id) = v.ids.last().filter(|&&id| id as usize >= vocab) {
            return Err(corrupt(format!(
                "passage {i} has term {id}, beyond the vocabulary of {vocab}"
            )));
        }
        out.push((doc, v));
        pos = next;
    }
    if pos != body.len() {
        return Err(corrupt("trailing bytes after the last passage".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PASSAGES_FILE);
        let ps = vec![
            (0, SparseVec::from_pairs(vec![(3, 1.5)])),
            (0, SparseVec::default()),
            (2, SparseVec::from_pairs(vec![(7, 0.5), (9, 2.0)])),
        ];
        write(&p, &ps).unwrap();
        assert_eq!(read(&p, 3, 10).unwrap(), ps);
        let e = read(&p, 2, 10).unwrap_err().to_string();
        assert!(e.contains("beyond the 2 documents"), "{e}");
        let e = read(&p, 3, 9).unwrap_err().to_string();
        assert!(e.contains("term 9, beyond the vocabulary of 9"), "{e}");
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 40;
        bytes[last] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let e = read(&p, 3, 10).unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
    }
}
