//! The Seismic structure cached next to its index (`seismic.bin`): written
//! atomically, reused only for the same index and build settings, and
//! checked on reading so that a damaged file is refused, never searched.
//! The layout, declared once by the structs below (all little-endian):
//!
//! ```text
//! SeismicHeader   magic "CSPS", version u32, the CacheKey, the SeismicBuild
//! 5 × u32 arrays  term_blocks, block_docs, docs, block_summary, summary_terms
//! u8 array        summary_codes
//! 2 × f32 arrays  summary_min, summary_step
//! sha256 of everything before it (32 bytes)
//! ```
//!
//! Each array is an [`ArrayHead`] (its length) and its elements. Since
//! version 2 the checksum closes the file and the arrays are checked for
//! consistency as well (a version 1 cache is simply rebuilt).

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};
use zerocopy::little_endian::{F32, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{SeismicBuild, SeismicIndex};
use crate::index::IndexError;

const MAGIC: [u8; 4] = *b"CSPS";
const VERSION: u32 = 2;
/// Bytes of the closing checksum.
const SUM: usize = 32;

/// The first bytes of `seismic.bin`: what the structure was built from and
/// with.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct SeismicHeader {
    pub magic: [u8; 4],
    pub version: U32,
    pub documents: U32,
    pub vocab: U32,
    pub vectors_bytes: U64,
    pub built_at: U64,
    pub postings_per_term: U32,
    pub doc_cut: U32,
    pub min_block: U32,
    pub block_fraction: F32,
    pub summary_energy: F32,
}

/// The length (in elements) that precedes each array.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct ArrayHead {
    pub len: U64,
}

impl SeismicHeader {
    fn new(key: CacheKey, b: &SeismicBuild) -> Self {
        Self {
            magic: MAGIC,
            version: U32::new(VERSION),
            documents: U32::new(key.documents),
            vocab: U32::new(key.vocab),
            vectors_bytes: U64::new(key.vectors_bytes),
            built_at: U64::new(key.built_at),
            postings_per_term: U32::new(b.postings_per_term as u32),
            doc_cut: U32::new(b.doc_cut as u32),
            min_block: U32::new(b.min_block as u32),
            block_fraction: F32::new(b.block_fraction),
            summary_energy: F32::new(b.summary_energy),
        }
    }

    fn key(&self) -> CacheKey {
        CacheKey {
            documents: self.documents.get(),
            vocab: self.vocab.get(),
            vectors_bytes: self.vectors_bytes.get(),
            built_at: self.built_at.get(),
        }
    }

    fn build(&self) -> SeismicBuild {
        SeismicBuild {
            postings_per_term: self.postings_per_term.get() as usize,
            doc_cut: self.doc_cut.get() as usize,
            min_block: self.min_block.get() as usize,
            block_fraction: self.block_fraction.get(),
            summary_energy: self.summary_energy.get(),
        }
    }
}

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
    /// Write atomically (see [`crate::data::output::write_with`]).
    pub fn save(&self, path: &Path, key: CacheKey) -> Result<(), IndexError> {
        let head = SeismicHeader::new(key, &self.build);
        Ok(crate::data::output::write_with(path, |file| {
            let mut w = Summed {
                w: file,
                sum: Sha256::new(),
            };
            w.write_all(head.as_bytes())?;
            for a in [
                &self.term_blocks,
                &self.block_docs,
                &self.docs,
                &self.block_summary,
                &self.summary_terms,
            ] {
                let a: Vec<U32> = a.iter().map(|&x| U32::new(x)).collect();
                write_array(&mut w, a.as_bytes(), a.len())?;
            }
            write_array(&mut w, &self.summary_codes, self.summary_codes.len())?;
            for a in [&self.summary_min, &self.summary_step] {
                let a: Vec<F32> = a.iter().map(|&x| F32::new(x)).collect();
                write_array(&mut w, a.as_bytes(), a.len())?;
            }
            let Summed { w: file, sum } = w;
            file.write_all(&sum.finalize())
        })?)
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
        let version = buf.get(4..).and_then(|b| U32::read_from_prefix(b).ok());
        if version.map(|(v, _)| v.get()) != Some(VERSION) {
            // A cache of another version is simply rebuilt.
            return Ok(None);
        }
        if buf.len() < HEADER + SUM
            || Sha256::digest(&buf[..buf.len() - SUM]).as_slice() != &buf[buf.len() - SUM..]
        {
            return Err(corrupt(
                "checksum mismatch: the Seismic cache was truncated or changed after csplade wrote it; delete it and it is rebuilt on first use".into(),
            ));
        }
        let (head, _) = SeismicHeader::read_from_prefix(&buf).map_err(|_| truncated())?;
        if head.key() != key || head.build() != build {
            return Ok(None);
        }
        let body = &buf[..buf.len() - SUM];
        let mut r = Reader {
            buf: body,
            pos: HEADER,
        };
        // Read in the order `save` writes them.
        let mut u32s = || {
            r.array::<U32>()
                .map(|v| v.iter().map(|x| x.get()).collect::<Vec<u32>>())
        };
        let (term_blocks, block_docs, docs, block_summary, summary_terms) = (
            u32s().ok_or_else(truncated)?,
            u32s().ok_or_else(truncated)?,
            u32s().ok_or_else(truncated)?,
            u32s().ok_or_else(truncated)?,
            u32s().ok_or_else(truncated)?,
        );
        let summary_codes = r.array::<u8>().ok_or_else(truncated)?.to_vec();
        let mut f32s = || {
            r.array::<F32>()
                .map(|v| v.iter().map(|x| x.get()).collect::<Vec<f32>>())
        };
        let summary_min = f32s().ok_or_else(truncated)?;
        let summary_step = f32s().ok_or_else(truncated)?;
        if r.pos != body.len() {
            return Err(corrupt("trailing bytes in the Seismic cache".into()));
        }
        let index = Self {
            build,
            documents: key.documents,
            vocab: key.vocab,
            term_blocks,
            block_docs,
            docs,
            block_summary,
            summary_terms,
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

/// Bytes of [`SeismicHeader`].
pub const HEADER: usize = std::mem::size_of::<SeismicHeader>();

/// An array: its [`ArrayHead`], then its `len` elements' bytes.
fn write_array(w: &mut impl Write, bytes: &[u8], len: usize) -> std::io::Result<()> {
    let head = ArrayHead {
        len: U64::new(len as u64),
    };
    w.write_all(head.as_bytes())?;
    w.write_all(bytes)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// The next array of `T`, in place; `None` when the file ends inside it.
    fn array<T: FromBytes + Immutable + Unaligned>(&mut self) -> Option<&'a [T]> {
        let buf: &'a [u8] = self.buf;
        let (head, rest) = ArrayHead::read_from_prefix(buf.get(self.pos..)?).ok()?;
        let n = usize::try_from(head.len.get()).ok()?;
        let (items, _) = <[T]>::ref_from_prefix_with_elems(rest, n).ok()?;
        self.pos += std::mem::size_of::<ArrayHead>() + std::mem::size_of_val(items);
        Some(items)
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
        // the first term offset, after the header and its array's length.
        let array = std::mem::size_of::<ArrayHead>();
        let first_offset = HEADER + array;
        let mut bad = bytes.clone();
        bad[first_offset..first_offset + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&p, reseal(bad)).unwrap();
        let e = SeismicIndex::load(&p, key, build).unwrap_err().to_string();
        assert!(e.contains("offsets are inconsistent"), "{e}");
        // The last document number made larger than the collection.
        let mut bad = bytes.clone();
        // After term_blocks (vocab + 1 offsets) and block_docs (blocks + 1).
        let last_doc = HEADER
            + array
            + 4 * (100 + 1)
            + array
            + 4 * (index.blocks() + 1)
            + array
            + 4 * (index.postings() - 1);
        bad[last_doc..last_doc + 4].copy_from_slice(&500u32.to_le_bytes());
        std::fs::write(&p, reseal(bad)).unwrap();
        let e = SeismicIndex::load(&p, key, build).unwrap_err().to_string();
        assert!(e.contains("beyond the index"), "{e}");
    }
}
