//! Sharded encoding: `csplade index --shard I/N` encodes every N-th commit
//! batch (starting at batch I) of the length-sorted corpus into a partial
//! index (`shard.json` + its journal); `csplade index merge` joins the N
//! partials into the index a one-process build writes. Shards encode whole
//! batches of the same composition (documents and passages alike), so the
//! vectors match bit for bit — one job-array task per machine or GPU, then
//! one merge.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::build::{self, BuildProgress};
use super::journal::{self, JOURNAL, PROGRESS};
use super::{write_atomic, IndexError, IndexMeta};
use crate::data::beir;

pub const SHARD_FILE: &str = "shard.json";

/// What a shard holds and what it was built with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub shard: usize,
    pub of: usize,
    pub commit_every: usize,
    /// Every setting that shapes the vectors (corpus, model, encoding).
    pub settings: String,
    /// Texts encoded in this shard (documents, and passages with
    /// `--passages`).
    pub documents: usize,
    /// The merged index's metadata (its build time filled in at merge).
    pub index: IndexMeta,
    /// CRC-32 of the shard's journal as its build kept it (extended at every
    /// commit), checked again at merge (absent in shards of earlier csplade,
    /// or built from a progress record without one).
    #[serde(default)]
    pub journal_crc: Option<u32>,
}

/// Publish a finished shard's staging directory at `out`.
pub(super) fn publish_shard(
    stage: &Path,
    out: &Path,
    shard: &ShardMeta,
    t0: Instant,
    mut progress: impl FnMut(BuildProgress),
) -> Result<IndexMeta, IndexError> {
    let text = serde_json::to_string_pretty(shard).map_err(|e| IndexError::Corrupt {
        path: stage.join(SHARD_FILE),
        msg: e.to_string(),
    })?;
    write_atomic(&stage.join(SHARD_FILE), text.as_bytes())?;
    let p = stage.join(PROGRESS);
    if p.exists() {
        std::fs::remove_file(&p).map_err(|e| IndexError::io(&p, e))?;
    }
    build::publish(stage, out)?;
    progress(BuildProgress::Done {
        documents: shard.documents,
        seconds: t0.elapsed().as_secs_f64(),
        path: out.display().to_string(),
    });
    Ok(shard.index.clone())
}

pub fn read_shard(dir: &Path) -> Result<ShardMeta, IndexError> {
    let path = dir.join(SHARD_FILE);
    if !path.is_file() {
        let hint = if dir.join(super::meta::META_FILE).is_file() {
            "this is a complete index, not a shard; merge the N directories that `csplade index --shard I/N` wrote"
        } else if build::staging_dir(dir).exists() {
            "this shard is unfinished; rerun its `csplade index --shard I/N --out DIR` to finish it"
        } else if dir.exists() {
            "not a shard (no shard.json); merge the N directories that `csplade index --shard I/N` wrote"
        } else {
            "no such directory"
        };
        return Err(IndexError::NotAShard {
            path: dir.to_path_buf(),
            hint: hint.into(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|e| IndexError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| IndexError::Corrupt {
        path,
        msg: format!("not a csplade shard: {e}"),
    })
}

/// Join the shards in `parts` (all N of one build) into the index at `out`.
pub fn merge(
    parts: &[PathBuf],
    out: &Path,
    mut progress: impl FnMut(BuildProgress),
) -> Result<IndexMeta, IndexError> {
    let t0 = Instant::now();
    let metas = parts
        .iter()
        .map(|p| read_shard(p))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = metas.first() else {
        return Err(IndexError::Corrupt {
            path: out.to_path_buf(),
            msg: "no shard to merge".into(),
        });
    };
    shards_agree(parts, &metas)?;
    let mismatch = |p: &Path, msg: String| IndexError::Corrupt {
        path: p.to_path_buf(),
        msg,
    };
    let corpus = PathBuf::from(&first.index.corpus);
    let _lock = crate::data::output::lock::acquire(out, "index merge")?;
    // Never over (or inside) the corpus or a shard being merged.
    let inputs: Vec<&Path> = std::iter::once(corpus.as_path())
        .chain(parts.iter().map(PathBuf::as_path))
        .collect();
    crate::data::output::check(out, &crate::data::output::INDEX, &inputs)?;
    let stage = build::staging_dir(out);
    crate::data::output::check(&stage, &crate::data::output::INDEX, &inputs)?;
    let docs = beir::read_corpus(&corpus)?;
    let fp = build::fingerprint(&beir::collection_file(&corpus, "corpus.jsonl"))?;
    if fp != first.index.corpus_fingerprint || docs.len() != first.index.documents {
        return Err(mismatch(
            &corpus,
            "the corpus changed since the shards were built".into(),
        ));
    }
    progress(BuildProgress::Phase {
        name: format!("merging {} shards", first.of),
    });
    let bytes = shard_journals(parts, &metas)?;
    // With passages, the journals hold them after the documents, as a
    // one-process build's does.
    let spec = first.index.passages;
    let owners = build::passage_owners(spec, &docs);
    let texts = docs.len() + owners.len();
    let mut vecs = journal::read_journal(&bytes, texts, &parts[0].join(JOURNAL))?;
    crate::data::output::fresh_stage(&stage, &crate::data::output::INDEX, &inputs)?;
    build::write_passages(&stage, spec, owners, vecs.split_off(docs.len()))?;
    build::finish(&stage, out, &docs, &vecs, first.index.clone(), t0, progress)
}

/// Every shard was built with the first one's settings, and together they
/// are shards 0..N, each once.
fn shards_agree(parts: &[PathBuf], metas: &[ShardMeta]) -> Result<(), IndexError> {
    let first = &metas[0];
    for (p, m) in parts.iter().zip(metas) {
        if m.settings == first.settings && m.of == first.of && m.commit_every == first.commit_every
        {
            continue;
        }
        let differences: Vec<String> = settings_differences(&first.settings, &m.settings)
            .into_iter()
            .chain((m.of != first.of).then(|| format!("shards: {} → {}", first.of, m.of)))
            .chain(
                (m.commit_every != first.commit_every)
                    .then(|| format!("commit_every: {} → {}", first.commit_every, m.commit_every)),
            )
            .collect();
        return Err(IndexError::Corrupt {
            path: p.to_path_buf(),
            msg: format!(
                "shard {}/{} was built with other settings than {} (shard {}/{}): {}",
                m.shard,
                m.of,
                parts[0].display(),
                first.shard,
                first.of,
                differences.join(", ")
            ),
        });
    }
    let mut have: Vec<usize> = metas.iter().map(|m| m.shard).collect();
    have.sort_unstable();
    if have != (0..first.of).collect::<Vec<_>>() {
        return Err(IndexError::Corrupt {
            path: parts[0].clone(),
            msg: format!(
                "merging needs shards 0..{} exactly once; given {have:?}",
                first.of
            ),
        });
    }
    Ok(())
}

/// The shards' journals, one after another, each checked against the
/// checksum its shard recorded when it was finished.
fn shard_journals(parts: &[PathBuf], metas: &[ShardMeta]) -> Result<Vec<u8>, IndexError> {
    let mut bytes = Vec::new();
    for (p, m) in parts.iter().zip(metas) {
        let j = p.join(JOURNAL);
        let journal = std::fs::read(&j).map_err(|e| IndexError::io(&j, e))?;
        if m.journal_crc
            .is_some_and(|crc| crc32fast::hash(&journal) != crc)
        {
            return Err(IndexError::Corrupt {
                path: j,
                msg: format!(
                    "shard {}/{}'s journal changed after the shard was finished (checksum mismatch); rebuild it: delete {} and rerun its `csplade index --shard {}/{} --out {}`",
                    m.shard,
                    m.of,
                    p.display(),
                    m.shard,
                    m.of,
                    p.display()
                ),
            });
        }
        bytes.extend(journal);
    }
    Ok(bytes)
}

/// What differs between two shards' settings records (JSON, with the shard
/// spec appended).
pub(super) fn settings_differences(a: &str, b: &str) -> Vec<String> {
    let json = |s: &str| {
        let end = s.rfind('}').map_or(s.len(), |i| i + 1);
        serde_json::from_str::<serde_json::Value>(&s[..end]).unwrap_or(serde_json::Value::Null)
    };
    super::meta::differences(&json(a), &json(b))
}
