//! The trade-off cache, one directory per pool under
//! `$CSPLADE_HOME/tradeoff/`: the pool itself, each document encoder's
//! pooled vectors (appended as they are encoded, so an interrupted run
//! resumes where it stopped, then sealed), each query encoder's query
//! vectors with their measured latencies, and the frontiers computed from
//! them. Every file is csplade's own, written for this purpose.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zerocopy::little_endian::{F32, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::pool::{Pool, PoolIdentity};
use crate::data::output::{atomic, OutputError};
use crate::encode::SparseVec;
use crate::index::vectors::{decode_record, encode_record};

/// Where trade-off caches live.
pub fn root() -> PathBuf {
    crate::data::home_dir().join("tradeoff")
}

/// A short stable key of any serializable description.
pub fn key_of<T: Serialize>(what: &T) -> String {
    let text = serde_json::to_string(what).unwrap_or_default();
    format!("{:x}", Sha256::digest(text.as_bytes()))[..16].to_string()
}

/// How an encoder's pooled documents were encoded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocEncoding {
    pub encoder: String,
    /// Text tokens encoded (after truncation) and the seconds it took.
    pub tokens: u64,
    pub seconds: f64,
    pub model_bytes: usize,
}

/// An encoder's query vectors, in pool order, with each query's latency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryEncoding {
    pub encoder: String,
    pub vectors: Vec<SparseVec>,
    pub latencies_ms: Vec<f64>,
    pub model_bytes: usize,
}

/// One pool's cache directory.
pub struct PoolCache {
    pub dir: PathBuf,
}

impl PoolCache {
    pub fn new(identity: &PoolIdentity) -> Self {
        Self {
            dir: root().join(identity.key()),
        }
    }

    fn read_json<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        let bytes = std::fs::read(self.dir.join(name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), OutputError> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| OutputError::io(&self.dir.join(name), std::io::Error::other(e)))?;
        atomic::write_new(&self.dir.join(name), &bytes)
    }

    /// The cached pool, only if it was built for exactly `identity`.
    pub fn pool(&self, identity: &PoolIdentity) -> Option<Pool> {
        self.read_json::<Pool>("pool.json")
            .filter(|p| &p.identity == identity)
    }

    pub fn save_pool(&self, pool: &Pool) -> Result<(), OutputError> {
        self.write_json("pool.json", pool)
    }

    pub fn queries(&self, encoder_key: &str) -> Option<QueryEncoding> {
        self.read_json(&format!("queries-{encoder_key}.json"))
    }

    pub fn save_queries(&self, encoder_key: &str, q: &QueryEncoding) -> Result<(), OutputError> {
        self.write_json(&format!("queries-{encoder_key}.json"), q)
    }

    /// A document encoder's sealed vectors and how they were encoded.
    pub fn documents(&self, encoder_key: &str) -> Option<(Vec<SparseVec>, DocEncoding)> {
        let info: DocEncoding = self.read_json(&format!("docs-{encoder_key}.json"))?;
        let bytes = std::fs::read(self.dir.join(format!("docs-{encoder_key}.vec"))).ok()?;
        Some((read_sealed(&bytes)?, info))
    }

    /// Seal a finished encoding: the vectors, then the record saying how
    /// they were made (its presence is what marks them complete).
    pub fn seal_documents(
        &self,
        encoder_key: &str,
        vectors: &[SparseVec],
        info: &DocEncoding,
    ) -> Result<(), OutputError> {
        let mut bytes = Vec::new();
        for v in vectors {
            encode_record(v, &mut bytes);
        }
        atomic::write_new(&self.dir.join(format!("docs-{encoder_key}.vec")), &bytes)?;
        self.write_json(&format!("docs-{encoder_key}.json"), info)?;
        let _ = std::fs::remove_file(self.partial_path(encoder_key));
        Ok(())
    }

    fn partial_path(&self, encoder_key: &str) -> PathBuf {
        self.dir.join(format!("docs-{encoder_key}.part"))
    }

    /// The vectors an interrupted encoding left, with the tokens and
    /// seconds it had spent, and a journal to append the rest to.
    pub fn resume_documents(&self, encoder_key: &str) -> Result<Journal, OutputError> {
        let path = self.partial_path(encoder_key);
        std::fs::create_dir_all(&self.dir).map_err(|e| OutputError::io(&self.dir, e))?;
        let bytes = std::fs::read(&path).unwrap_or_default();
        let (vectors, tokens, seconds, good) = read_journal(&bytes);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| OutputError::io(&path, e))?;
        file.set_len(good as u64)
            .map_err(|e| OutputError::io(&path, e))?;
        Ok(Journal {
            path,
            file,
            vectors,
            tokens,
            seconds,
            end: good as u64,
        })
    }

    pub fn frontier<T: DeserializeOwned>(&self, points_key: &str) -> Option<T> {
        self.read_json(&format!("frontier-{points_key}.json"))
    }

    pub fn save_frontier<T: Serialize>(&self, points_key: &str, f: &T) -> Result<(), OutputError> {
        self.write_json(&format!("frontier-{points_key}.json"), f)
    }
}

/// Every record of a sealed file (`None` if any is damaged).
fn read_sealed(bytes: &[u8]) -> Option<Vec<SparseVec>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let (v, next) = decode_record(bytes, pos)?;
        out.push(v);
        pos = next;
    }
    Some(out)
}

/// What a journal holds: the vectors of its whole batches, their tokens
/// and seconds, and where the last whole batch ends (a batch is its
/// records, then a cost line; what a crash cut short is dropped).
fn read_journal(bytes: &[u8]) -> (Vec<SparseVec>, u64, f64, usize) {
    let (mut vectors, mut batch) = (Vec::new(), Vec::new());
    let (mut tokens, mut seconds) = (0u64, 0f64);
    let (mut pos, mut good) = (0, 0);
    loop {
        if let Some((t, s, next)) = cost_line(bytes, pos) {
            vectors.append(&mut batch);
            tokens += t as u64;
            seconds += s as f64;
            pos = next;
            good = pos;
            continue;
        }
        match decode_record(bytes, pos) {
            Some((v, next)) => {
                batch.push(v);
                pos = next;
            }
            None => return (vectors, tokens, seconds, good),
        }
    }
}

/// A batch's cost line: laid out as a vector record of two `u32::MAX` ids
/// (which no vector has) whose two "weights" are the batch's tokens and
/// seconds.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct CostLine {
    terms: U32,
    marker: [U32; 2],
    tokens: F32,
    seconds: F32,
}

impl CostLine {
    const MARKER: [U32; 2] = [U32::MAX_VALUE, U32::MAX_VALUE];

    fn new(tokens: u64, seconds: f64) -> Self {
        Self {
            terms: U32::new(2),
            marker: Self::MARKER,
            tokens: F32::new(tokens as f32),
            seconds: F32::new(seconds as f32),
        }
    }
}

/// The cost line at `pos`, if there is one: (tokens, seconds, next position).
fn cost_line(bytes: &[u8], pos: usize) -> Option<(f32, f32, usize)> {
    let (line, _) = CostLine::read_from_prefix(bytes.get(pos..)?).ok()?;
    if line.terms.get() != 2 || line.marker != CostLine::MARKER {
        return None;
    }
    let next = pos + std::mem::size_of::<CostLine>();
    Some((line.tokens.get(), line.seconds.get(), next))
}

/// An encoding in progress: what is done, and the file the next batches
/// are appended to (fsync'd batch by batch).
pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
    pub vectors: Vec<SparseVec>,
    pub tokens: u64,
    pub seconds: f64,
    end: u64,
}

impl Journal {
    /// Append a batch and what it cost; durable when this returns.
    pub fn append(
        &mut self,
        batch: &[SparseVec],
        tokens: u64,
        seconds: f64,
    ) -> Result<(), OutputError> {
        use std::io::{Seek, SeekFrom};
        let mut bytes = Vec::new();
        for v in batch {
            encode_record(v, &mut bytes);
        }
        bytes.extend_from_slice(CostLine::new(tokens, seconds).as_bytes());
        let io = |e| OutputError::io(&self.path, e);
        self.file.seek(SeekFrom::Start(self.end)).map_err(io)?;
        self.file.write_all(&bytes).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.end += bytes.len() as u64;
        self.vectors.extend_from_slice(batch);
        self.tokens += tokens;
        self.seconds += seconds;
        Ok(())
    }
}

/// Whether `dir` looks like a pool cache (for listing them).
pub fn is_pool_dir(dir: &Path) -> bool {
    dir.join("pool.json").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pairs: &[(u32, f32)]) -> SparseVec {
        SparseVec::from_pairs(pairs.to_vec())
    }

    #[test]
    fn an_interrupted_encoding_resumes_from_its_last_whole_batch() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = PoolCache {
            dir: tmp.path().join("pool"),
        };
        let a = [v(&[(1, 0.5), (7, 1.0)]), v(&[(2, 2.0)])];
        let b = [v(&[(3, 0.25)])];
        {
            let mut j = cache.resume_documents("enc").unwrap();
            assert!(j.vectors.is_empty());
            j.append(&a, 40, 1.5).unwrap();
            j.append(&b, 10, 0.5).unwrap();
        }
        // A crash in the middle of a third batch: half a record left behind.
        let part = cache.dir.join("docs-enc.part");
        let whole = std::fs::metadata(&part).unwrap().len();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&part)
            .unwrap();
        f.write_all(&[3, 0, 0, 0, 9, 0]).unwrap();
        drop(f);
        let mut j = cache.resume_documents("enc").unwrap();
        assert_eq!(j.vectors, [a[0].clone(), a[1].clone(), b[0].clone()]);
        assert_eq!((j.tokens, j.seconds), (50, 2.0));
        assert_eq!(std::fs::metadata(&part).unwrap().len(), whole, "cut back");
        let c = [v(&[(4, 1.0)])];
        j.append(&c, 5, 0.25).unwrap();
        let j = cache.resume_documents("enc").unwrap();
        assert_eq!(j.vectors.len(), 4);
        assert_eq!(j.tokens, 55);
        // A batch without its cost line does not count.
        let mut bytes = std::fs::read(&part).unwrap();
        let mut rec = Vec::new();
        encode_record(&v(&[(5, 1.0)]), &mut rec);
        bytes.extend_from_slice(&rec);
        std::fs::write(&part, &bytes).unwrap();
        assert_eq!(cache.resume_documents("enc").unwrap().vectors.len(), 4);
        // Sealed: read back whole, the journal gone.
        let info = DocEncoding {
            encoder: "default:q8_0".into(),
            tokens: 55,
            seconds: 2.25,
            model_bytes: 1,
        };
        cache.seal_documents("enc", &j.vectors, &info).unwrap();
        assert!(!part.exists());
        let (back, i) = cache.documents("enc").unwrap();
        assert_eq!((back, i), (j.vectors.clone(), info));
        assert!(cache.documents("other").is_none());
    }

    #[test]
    fn a_pool_is_served_only_for_its_own_identity() {
        use super::super::pool::PoolSpec;
        let tmp = tempfile::tempdir().unwrap();
        let cache = PoolCache {
            dir: tmp.path().to_path_buf(),
        };
        let id = PoolIdentity {
            corpus_fingerprint: "c".into(),
            reference: "r".into(),
            split: "test".into(),
            spec: PoolSpec::default(),
            prior: "none".into(),
        };
        let pool = Pool {
            identity: id.clone(),
            queries: vec![("q1".into(), "text".into())],
            documents: vec![0, 3],
            missing_judged: 0,
        };
        cache.save_pool(&pool).unwrap();
        assert_eq!(cache.pool(&id), Some(pool));
        let mut other = id.clone();
        other.corpus_fingerprint = "d".into();
        assert_eq!(cache.pool(&other), None);
    }
}
