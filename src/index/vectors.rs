//! The exact sparse vectors of an index, in a compact binary file:
//! `CSPV` magic, version, document count, then per document a `u32` term
//! count, the term ids (`u32`) and the weights (`f32`), all little-endian;
//! since version 2 a sha256 of everything before it closes the file, and
//! reading checks it (version 1 files, from earlier csplade, have none).

use std::io::{BufWriter, Read, Write};

use sha2::{Digest, Sha256};
use std::path::Path;

use super::IndexError;
use crate::encode::SparseVec;

const MAGIC: &[u8; 4] = b"CSPV";
const VERSION: u32 = 2;
/// Bytes of the closing checksum.
const SUM: usize = 32;

/// Serialize one vector record.
pub fn encode_record(v: &SparseVec, out: &mut Vec<u8>) {
    out.extend_from_slice(&(v.ids.len() as u32).to_le_bytes());
    for id in &v.ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    for w in &v.weights {
        out.extend_from_slice(&w.to_le_bytes());
    }
}

/// Parse one record at `pos`; returns the vector and the next position.
pub fn decode_record(buf: &[u8], pos: usize) -> Option<(SparseVec, usize)> {
    let n = u32::from_le_bytes(buf.get(pos..pos + 4)?.try_into().ok()?) as usize;
    let ids_at = pos + 4;
    let w_at = ids_at + 4 * n;
    let end = w_at + 4 * n;
    let ids_b = buf.get(ids_at..w_at)?;
    let w_b = buf.get(w_at..end)?;
    let ids: Vec<u32> = ids_b
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let weights: Vec<f32> = w_b
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if ids.windows(2).any(|w| w[0] >= w[1]) || weights.iter().any(|w| !(w.is_finite() && *w > 0.0))
    {
        return None;
    }
    Some((SparseVec { ids, weights }, end))
}

/// Write all vectors (document order) atomically.
pub fn write(path: &Path, vectors: &[SparseVec]) -> Result<(), IndexError> {
    let tmp = path.with_extension("tmp");
    {
        let f = std::fs::File::create(&tmp).map_err(|e| IndexError::io(&tmp, e))?;
        let mut w = BufWriter::new(f);
        let mut head = Vec::with_capacity(12);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&(vectors.len() as u32).to_le_bytes());
        w.write_all(&head).map_err(|e| IndexError::io(&tmp, e))?;
        let mut sum = Sha256::new();
        sum.update(&head);
        let mut buf = Vec::new();
        for v in vectors {
            buf.clear();
            encode_record(v, &mut buf);
            sum.update(&buf);
            w.write_all(&buf).map_err(|e| IndexError::io(&tmp, e))?;
        }
        w.write_all(&sum.finalize())
            .map_err(|e| IndexError::io(&tmp, e))?;
        w.flush().map_err(|e| IndexError::io(&tmp, e))?;
        w.get_ref()
            .sync_all()
            .map_err(|e| IndexError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| IndexError::io(path, e))
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
    if buf.len() < 12 || &buf[..4] != MAGIC {
        return Err(corrupt("not a csplade vectors file"));
    }
    let version = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    match version {
        1 => {}
        VERSION => {
            if buf.len() < 12 + SUM {
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
        _ => {
            return Err(corrupt(&format!(
                "vectors format {version}, expected {VERSION} (or 1)"
            )))
        }
    }
    let n = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    // Every record takes at least 4 bytes: a count beyond that is a lie.
    if n > (buf.len() - 12) / 4 {
        return Err(corrupt(&format!(
            "declares {n} records in {} bytes",
            buf.len()
        )));
    }
    let mut out = Vec::with_capacity(n);
    let mut pos = 12;
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
        bad[12 + 4 + 8] ^= 0x01;
        std::fs::write(&p, &bad).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("checksum mismatch") && e.contains("rebuild"),
            "{e}"
        );
        // The same content as version 1 (no checksum) reads as before.
        let mut v1 = good[..good.len() - SUM].to_vec();
        v1[4..8].copy_from_slice(&1u32.to_le_bytes());
        std::fs::write(&p, &v1).unwrap();
        assert_eq!(read(&p).unwrap(), vs);
    }
}
