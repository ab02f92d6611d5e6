//! The Seismic structure cached next to its index (`seismic.bin`): written
//! atomically, reused only for the same index and build settings, and
//! checked on reading so that a damaged file is refused, never searched:
//! since version 2 a sha256 of everything before it closes the file, and
//! the arrays are checked for consistency as well (a version 1 cache is
//! simply rebuilt).

use std::io::{BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{SeismicBuild, SeismicIndex};
use crate::index::IndexError;

const MAGIC: &[u8; 4] = b"CSPS";
const VERSION: u32 = 2;
/// Bytes of the closing checksum.
const SUM: usize = 32;

/// What a cached structure must match to be reused: the index's document
/// count, vocabulary and vectors file size, and the build settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CacheKey {
    pub documents: u32,
    pub vocab: u32,
    pub vectors_bytes: u64,
    pub built_at: u64,
}

impl SeismicIndex {
    /// Write atomically (temporary file, then rename).
    pub fn save(&self, path: &Path, key: CacheKey) -> Result<(), IndexError> {
        let tmp = path.with_extension("tmp");
        let io = |e| IndexError::io(&tmp, e);
        {
            let f = std::fs::File::create(&tmp).map_err(io)?;
            let mut w = Summed {
                w: BufWriter::new(f),
                sum: Sha256::new(),
            };
            let mut head = Vec::new();
            head.extend_from_slice(MAGIC);
            for x in [VERSION, key.documents, key.vocab] {
                head.extend_from_slice(&x.to_le_bytes());
            }
            head.extend_from_slice(&key.vectors_bytes.to_le_bytes());
            head.extend_from_slice(&key.built_at.to_le_bytes());
            let b = &self.build;
            for x in [
                b.postings_per_term as u32,
                b.doc_cut as u32,
                b.min_block as u32,
            ] {
                head.extend_from_slice(&x.to_le_bytes());
            }
            for x in [b.block_fraction, b.summary_energy] {
                head.extend_from_slice(&x.to_le_bytes());
            }
            w.write_all(&head).map_err(io)?;
            for a in [
                &self.term_blocks,
                &self.block_docs,
                &self.docs,
                &self.block_summary,
                &self.summary_terms,
            ] {
                write_u32s(&mut w, a).map_err(io)?;
            }
            w.write_all(&(self.summary_codes.len() as u64).to_le_bytes())
                .map_err(io)?;
            w.write_all(&self.summary_codes).map_err(io)?;
            for a in [&self.summary_min, &self.summary_step] {
                let bits: Vec<u32> = a.iter().map(|x| x.to_bits()).collect();
                write_u32s(&mut w, &bits).map_err(io)?;
            }
            let Summed { w: mut file, sum } = w;
            file.write_all(&sum.finalize()).map_err(io)?;
            file.flush().map_err(io)?;
            file.get_ref().sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(|e| IndexError::io(path, e))
    }

    /// Read a cached structure; `Ok(None)` when it was made for another
    /// index or with other settings, an error when the file is damaged.
    pub fn load(
        path: &Path,
        key: CacheKey,
        build: SeismicBuild,
    ) -> Result<Option<Self>, IndexError> {
        let mut buf = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(|e| IndexError::io(path, e))?;
        let corrupt = |msg: String| IndexError::Corrupt {
            path: path.to_path_buf(),
            msg,
        };
        let truncated = || corrupt("truncated Seismic cache".into());
        if buf.get(..4) != Some(&MAGIC[..]) {
            return Err(corrupt("not a csplade Seismic cache".into()));
        }
        let version = buf.get(4..8).ok_or_else(truncated)?;
        if version != VERSION.to_le_bytes() {
            return Ok(None);
        }
        if buf.len() < 8 + SUM
            || Sha256::digest(&buf[..buf.len() - SUM]).as_slice() != &buf[buf.len() - SUM..]
        {
            return Err(corrupt(
                "checksum mismatch: the Seismic cache was truncated or changed after csplade wrote it; delete it and it is rebuilt on first use".into(),
            ));
        }
        let body = &buf[..buf.len() - SUM];
        let mut r = Reader { buf: body, pos: 8 };
        let found = CacheKey {
            documents: r.u32().ok_or_else(truncated)?,
            vocab: r.u32().ok_or_else(truncated)?,
            vectors_bytes: r.u64().ok_or_else(truncated)?,
            built_at: r.u64().ok_or_else(truncated)?,
        };
        let found_build = SeismicBuild {
            postings_per_term: r.u32().ok_or_else(truncated)? as usize,
            doc_cut: r.u32().ok_or_else(truncated)? as usize,
            min_block: r.u32().ok_or_else(truncated)? as usize,
            block_fraction: f32::from_bits(r.u32().ok_or_else(truncated)?),
            summary_energy: f32::from_bits(r.u32().ok_or_else(truncated)?),
        };
        if found != key || found_build != build {
            return Ok(None);
        }
        let mut arrays = Vec::new();
        for _ in 0..5 {
            arrays.push(r.u32s().ok_or_else(truncated)?);
        }
        let n = r.u64().ok_or_else(truncated)? as usize;
        let summary_codes = r.bytes(n).ok_or_else(truncated)?.to_vec();
        let floats = |v: Vec<u32>| v.into_iter().map(f32::from_bits).collect::<Vec<f32>>();
        let summary_min = floats(r.u32s().ok_or_else(truncated)?);
        let summary_step = floats(r.u32s().ok_or_else(truncated)?);
        if r.pos != body.len() {
            return Err(corrupt("trailing bytes in the Seismic cache".into()));
        }
        let mut a = arrays.into_iter();
        let mut next = || a.next().unwrap_or_default();
        let index = Self {
            build,
            documents: key.documents,
            vocab: key.vocab,
            term_blocks: next(),
            block_docs: next(),
            docs: next(),
            block_summary: next(),
            summary_terms: next(),
            summary_codes,
            summary_min,
            summary_step,
        };
        index.check().map_err(corrupt)?;
        Ok(Some(index))
    }

    /// Every offset within bounds and in order, every document and term
    /// within the index: what `search` relies on.
    fn check(&self) -> Result<(), String> {
        let offsets = |name: &str, o: &[u32], len: usize, target: usize| {
            if o.len() != len + 1
                || o.first() != Some(&0)
                || o.last().map(|&x| x as usize) != Some(target)
                || o.windows(2).any(|w| w[0] > w[1])
            {
                return Err(format!("{name} offsets are inconsistent"));
            }
            Ok(())
        };
        let blocks = self.block_docs.len().saturating_sub(1);
        offsets("term", &self.term_blocks, self.vocab as usize, blocks)?;
        offsets("block", &self.block_docs, blocks, self.docs.len())?;
        offsets(
            "summary",
            &self.block_summary,
            blocks,
            self.summary_terms.len(),
        )?;
        if self.summary_codes.len() != self.summary_terms.len()
            || self.summary_min.len() != blocks
            || self.summary_step.len() != blocks
        {
            return Err("summary arrays disagree in length".into());
        }
        if self.docs.iter().any(|&d| d >= self.documents)
            || self.summary_terms.iter().any(|&t| t >= self.vocab)
        {
            return Err("a document or term beyond the index".into());
        }
        Ok(())
    }
}

/// A writer that hashes what passes through it.
struct Summed<W> {
    w: W,
    sum: Sha256,
}

impl<W: Write> Write for Summed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.w.write(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

fn write_u32s(w: &mut impl Write, a: &[u32]) -> std::io::Result<()> {
    w.write_all(&(a.len() as u64).to_le_bytes())?;
    let mut bytes = Vec::with_capacity(4 * a.len());
    for x in a {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    w.write_all(&bytes)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let b = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(b)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }
    fn u32s(&mut self) -> Option<Vec<u32>> {
        let n = usize::try_from(self.u64()?).ok()?;
        let b = self.bytes(n.checked_mul(4)?)?;
        Some(
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::seismic::tests::collection;

    #[test]
    fn cache_round_trips_and_refuses_other_indexes_and_damage() {
        let vs = collection(200, 100, 5);
        let build = SeismicBuild::default();
        let index = SeismicIndex::build(&vs, 100, build);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seismic.bin");
        let key = CacheKey {
            documents: 200,
            vocab: 100,
            vectors_bytes: 1234,
            built_at: 7,
        };
        index.save(&p, key).unwrap();
        assert_eq!(
            SeismicIndex::load(&p, key, build).unwrap().as_ref(),
            Some(&index)
        );
        let other = CacheKey {
            vectors_bytes: 1235,
            ..key
        };
        assert_eq!(SeismicIndex::load(&p, other, build).unwrap(), None);
        let narrower = SeismicBuild {
            postings_per_term: 10,
            ..build
        };
        assert_eq!(SeismicIndex::load(&p, key, narrower).unwrap(), None);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        let e = SeismicIndex::load(&p, key, build).unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        // One byte changed: the checksum refuses it.
        let mut flipped = bytes.clone();
        flipped[70] ^= 1;
        std::fs::write(&p, &flipped).unwrap();
        let e = SeismicIndex::load(&p, key, build).unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        // Behind the checksum, the structure is checked too: corruptions
        // resealed with a valid checksum are still refused.
        let reseal = |mut b: Vec<u8>| {
            let n = b.len() - SUM;
            let sum = Sha256::digest(&b[..n]);
            b[n..].copy_from_slice(&sum);
            b
        };
        // Offsets that point outside the arrays are refused, not searched:
        // the header is 52 bytes, then the term offsets' length and first entry.
        let mut bad = bytes.clone();
        bad[60..64].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&p, reseal(bad)).unwrap();
        let e = SeismicIndex::load(&p, key, build).unwrap_err().to_string();
        assert!(e.contains("offsets are inconsistent"), "{e}");
        // The last document number made larger than the collection.
        let mut bad = bytes.clone();
        let last_doc =
            52 + 8 + 4 * 101 + 8 + 4 * (index.blocks() + 1) + 8 + 4 * (index.postings() - 1);
        bad[last_doc..last_doc + 4].copy_from_slice(&500u32.to_le_bytes());
        std::fs::write(&p, reseal(bad)).unwrap();
        let e = SeismicIndex::load(&p, key, build).unwrap_err().to_string();
        assert!(e.contains("beyond the index"), "{e}");
    }
}
