//! Index metadata: which model, variant, head and precision built the index,
//! the impact scale, sizes and build time. Searching an index with a model of
//! another identity or vocabulary is refused.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::IndexError;
use crate::encode::{EncoderConfig, Head, Variant};
use crate::model::ModelIdentity;

pub const FORMAT_VERSION: u32 = 1;
pub const META_FILE: &str = "meta.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexMeta {
    pub format_version: u32,
    pub model: ModelIdentity,
    pub variant: Variant,
    pub head: Head,
    pub precision: String,
    pub max_len: usize,
    /// Windows of `max_len` tokens read from each document, max-pooled
    /// (1: truncated to the first `max_len`; indexes from before windows).
    #[serde(default = "crate::encode::encoder::one_window")]
    pub windows: usize,
    /// Documents also indexed as passages of their later words (MaxP),
    /// in `passages.bin`; `None`: each document is its first read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passages: Option<super::passages::PassageSpec>,
    pub vocab_size: usize,
    /// Impacts stored as term frequency `round(w × scale)`.
    pub scale: f32,
    /// Terms kept per document (0 = all).
    pub doc_top_k: usize,
    pub documents: usize,
    /// The corpus directory it was built from, and its fingerprint.
    pub corpus: String,
    pub corpus_fingerprint: String,
    /// Unix seconds when the build finished, and its wall time.
    pub built_at: u64,
    pub build_seconds: f64,
    pub encoded_tokens: u64,
    /// The model as `--model` named it when it was built (files made
    /// absolute): commands that open the index use it when not told one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_spec: Option<String>,
}

impl IndexMeta {
    /// The metadata of the index at `dir`; a directory without it is
    /// [`IndexError::Missing`], saying whether a build is under way there.
    pub fn read(dir: &Path) -> Result<Self, IndexError> {
        let path = dir.join(META_FILE);
        if !path.is_file() {
            let partial = super::build::staging_dir(dir);
            let hint = if partial.exists() {
                format!(
                    "a build is in progress or was interrupted at {}; rerun `csplade index` to resume it",
                    partial.display()
                )
            } else {
                "build one with `csplade index --corpus DIR --out INDEX`".to_string()
            };
            return Err(IndexError::Missing {
                path: dir.to_path_buf(),
                hint,
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| IndexError::io(&path, e))?;
        let meta: IndexMeta = serde_json::from_str(&text).map_err(|e| IndexError::Corrupt {
            path: path.clone(),
            msg: format!("line {}: {e}", e.line()),
        })?;
        // Sizes that allocate: bounded before anyone trusts them.
        if meta.vocab_size == 0 || meta.vocab_size > 10_000_000 || meta.documents > 1 << 32 {
            return Err(IndexError::Corrupt {
                path,
                msg: format!(
                    "vocabulary {} / {} documents: not sizes an index can have",
                    meta.vocab_size, meta.documents
                ),
            });
        }
        if !(1..=64).contains(&meta.windows) {
            return Err(IndexError::Corrupt {
                path,
                msg: format!(
                    "{} windows per document: csplade reads 1 to 64",
                    meta.windows
                ),
            });
        }
        if !(meta.scale.is_finite() && meta.scale > 0.0) {
            return Err(IndexError::Corrupt {
                path,
                msg: format!("impact scale {}: must be finite and > 0", meta.scale),
            });
        }
        if crate::model::precision::parse_label(&meta.precision).is_none() {
            return Err(IndexError::Corrupt {
                path,
                msg: format!(
                    "precision {:?} is none csplade writes (f32, f16, q8_0, q4_0, optionally +head)",
                    meta.precision
                ),
            });
        }
        if meta.format_version != FORMAT_VERSION {
            return Err(IndexError::Corrupt {
                path,
                msg: format!(
                    "index format {} (this csplade reads {FORMAT_VERSION}); rebuild it",
                    meta.format_version
                ),
            });
        }
        Ok(meta)
    }

    pub fn write(&self, dir: &Path) -> Result<(), IndexError> {
        let path = dir.join(META_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| IndexError::Corrupt {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        super::write_atomic(&path, text.as_bytes())
    }

    /// How much of each document was read.
    pub fn reading(&self) -> crate::encode::encoder::Reading {
        crate::encode::encoder::Reading {
            max_len: self.max_len,
            windows: self.windows,
        }
    }

    /// The encoder settings the documents were encoded with, so queries are
    /// encoded the same way.
    pub fn encoder_config(&self) -> EncoderConfig {
        EncoderConfig {
            variant: self.variant,
            head: self.head,
            max_len: self.max_len,
            batch_size: 8,
            windows: self.windows,
        }
    }

    /// Refuse a query model that did not build this index.
    pub fn check_model(&self, model: &ModelIdentity, vocab_size: usize) -> Result<(), IndexError> {
        if model.sha256 != self.model.sha256 || vocab_size != self.vocab_size {
            return Err(IndexError::ModelMismatch {
                index_model: format!(
                    "{} (sha256 {}…, vocabulary {})",
                    self.model.id,
                    short(&self.model.sha256),
                    self.vocab_size
                ),
                query_model: format!(
                    "{} (sha256 {}…, vocabulary {vocab_size})",
                    model.id,
                    short(&model.sha256)
                ),
            });
        }
        Ok(())
    }
}

impl IndexMeta {
    /// Refuse to pair the index in `index_dir` with a collection whose corpus
    /// is not the one it was built from (other documents, or the same ones
    /// in another order): its document ordinals would name the wrong ids.
    pub fn check_corpus(&self, index_dir: &Path, dataset: &Path) -> Result<(), IndexError> {
        let corpus = crate::data::beir::collection_file(dataset, "corpus.jsonl");
        let fp = super::build::fingerprint(&corpus)?;
        if fp != self.corpus_fingerprint {
            return Err(IndexError::CorpusMismatch {
                index: index_dir.to_path_buf(),
                built_from: self.corpus.clone(),
                corpus,
            });
        }
        Ok(())
    }
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// The settings that differ between two JSON records of settings (objects
/// compared key by key, anything else as a whole): `name: old → new`, for
/// errors that must say which setting changed.
pub fn differences(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .map(|k| {
                    let show = |v: Option<&Value>| v.map_or("(none)".to_string(), Value::to_string);
                    format!("{k}: {} → {}", show(a.get(k)), show(b.get(k)))
                })
                .collect()
        }
        _ if old == new => Vec::new(),
        _ => vec![format!("{old} → {new}")],
    }
}

#[cfg(test)]
mod tests {
    use super::differences;
    use serde_json::json;

    #[test]
    fn differences_name_each_changed_setting() {
        let a = json!({"model": "m1", "max_len": 128, "head": "logprob:5"});
        let b = json!({"model": "m1", "max_len": 256, "doc_top_k": 0, "head": "logprob:5"});
        assert_eq!(
            differences(&a, &b),
            vec!["doc_top_k: (none) → 0", "max_len: 128 → 256"]
        );
        assert!(differences(&a, &a).is_empty());
        assert_eq!(differences(&json!(1), &json!(2)), vec!["1 → 2"]);
    }

    /// Metadata from before windows existed reads as one window; a count
    /// outside 1–64 is refused.
    #[test]
    fn windows_default_to_one_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut meta = json!({
            "format_version": super::FORMAT_VERSION,
            "model": {"id": "m", "sha256": "00"},
            "variant": "echo", "head": {"kind": "log_prob", "shift": 5.0},
            "precision": "f32", "max_len": 128, "vocab_size": 10, "scale": 100.0,
            "doc_top_k": 0, "documents": 1, "corpus": "c", "corpus_fingerprint": "f",
            "built_at": 0, "build_seconds": 0.0, "encoded_tokens": 3
        });
        let write = |m: &serde_json::Value| {
            std::fs::write(dir.path().join(super::META_FILE), m.to_string()).unwrap();
            super::IndexMeta::read(dir.path())
        };
        assert_eq!(write(&meta).unwrap().windows, 1);
        for (n, ok) in [(0, false), (1, true), (64, true), (65, false)] {
            meta["windows"] = n.into();
            let read = write(&meta);
            assert_eq!(read.is_ok(), ok, "{n} windows: {read:?}");
        }
    }
}
