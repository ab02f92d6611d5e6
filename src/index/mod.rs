//! Inverted indexes: the learned-sparse impact index (tantivy + exact vectors
//! + metadata), its resumable atomic build, and the BM25 baseline.

pub mod bm25;
pub mod build;
pub mod impact;
pub mod journal;
pub mod meta;
pub mod passages;
pub mod shard;
pub mod synthetic;
pub mod vectors;

use std::path::{Path, PathBuf};

pub use build::{build, BuildOptions, BuildProgress};
pub use meta::IndexMeta;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {msg}", path.display())]
    Corrupt { path: PathBuf, msg: String },
    #[error("{}: tantivy: {msg}", path.display())]
    Tantivy { path: PathBuf, msg: String },
    #[error("the index was built with {index_model}, but the query model is {query_model}; query it with the model that built it, or rebuild the index")]
    ModelMismatch {
        index_model: String,
        query_model: String,
    },
    #[error(transparent)]
    Data(#[from] crate::data::beir::DataError),
    #[error(transparent)]
    Encode(#[from] crate::encode::EncodeError),
    #[error("build interrupted after {done} of {total} documents; rerun to resume from {}", stage.display())]
    Interrupted {
        done: usize,
        total: usize,
        stage: PathBuf,
    },
    /// Settings that cannot go together, or a scorer the index cannot use.
    #[error("{}: {msg}", path.display())]
    Unsupported { path: PathBuf, msg: String },
    #[error("no index at {}: {hint}", path.display())]
    Missing { path: PathBuf, hint: String },
    #[error("{}: {hint}", path.display())]
    NotAShard { path: PathBuf, hint: String },
    #[error(transparent)]
    Output(#[from] crate::data::output::OutputError),
    #[error("the index {} was built from {built_from}, whose corpus differs from {}; rebuild the index for this collection", index.display(), corpus.display())]
    CorpusMismatch {
        index: PathBuf,
        built_from: String,
        corpus: PathBuf,
    },
}

impl IndexError {
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        IndexError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Write a small file of an index atomically (see [`crate::data::output::atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IndexError> {
    Ok(crate::data::output::write_new(path, bytes)?)
}

/// Tantivy could not open the index files in `dir`: they are damaged or
/// incomplete, and the fix is a rebuild (not tantivy's own advice, which
/// may suggest upgrading it).
pub fn unreadable_tantivy(dir: &Path, e: &tantivy::TantivyError) -> IndexError {
    let text = e.to_string();
    let kept: Vec<&str> = text
        .split(". ")
        .filter(|s| !s.to_lowercase().contains("upgrad"))
        .collect();
    IndexError::Corrupt {
        path: dir.to_path_buf(),
        msg: format!(
            "tantivy cannot read these files ({}); they are damaged or incomplete: rebuild the index with `csplade index`",
            kept.join(". ").trim_end_matches('.')
        ),
    }
}

impl From<crate::data::output::OutputRefused> for IndexError {
    fn from(e: crate::data::output::OutputRefused) -> Self {
        IndexError::Output(e.into())
    }
}

/// Corpus position of every (segment, doc) of a tantivy index, from its
/// `ordinal` fast field.
pub fn ordinal_table(
    reader: &tantivy::IndexReader,
    dir: &Path,
) -> Result<Vec<Vec<u32>>, IndexError> {
    let searcher = reader.searcher();
    let mut out = Vec::new();
    for seg in searcher.segment_readers() {
        let col = seg
            .fast_fields()
            .u64("ordinal")
            .map_err(|e| IndexError::Tantivy {
                path: dir.to_path_buf(),
                msg: e.to_string(),
            })?;
        out.push(
            (0..seg.max_doc())
                .map(|d| col.first(d).unwrap_or(u64::MAX) as u32)
                .collect(),
        );
    }
    Ok(out)
}
