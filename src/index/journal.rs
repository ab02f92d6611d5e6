//! The resumable encoding of a build: documents are encoded a commit batch
//! at a time, longest first, and each batch is appended to `journal.bin`
//! (its corpus position, then the vector record, per document) before the
//! progress record (`progress.json`: the settings, documents and bytes
//! committed, tokens, seconds and the journal's CRC-32) is replaced; a killed
//! build resumes from the last commit. Also reading a journal back, whole
//! (for publishing or merging shards) or while a build is under way (for the
//! explorer).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::build::{prune, staging_dir, BuildOptions, BuildProgress};
use super::{vectors, write_atomic, IndexError};
use crate::encode::{Encoder, SparseVec};

pub(super) const JOURNAL: &str = "journal.bin";
pub(super) const PROGRESS: &str = "progress.json";

#[derive(Serialize, Deserialize, PartialEq, Debug)]
pub(super) struct Journal {
    pub(super) settings: String,
    pub(super) done: usize,
    pub(super) bytes: u64,
    pub(super) tokens: u64,
    pub(super) seconds: f64,
    /// CRC-32 of the journal's first `bytes` bytes, extended at every
    /// commit and checked on resume (absent in records of earlier csplade).
    #[serde(default)]
    pub(super) crc: Option<u32>,
}

/// Whether the journal's committed bytes still have the checksum its
/// progress record holds (a record without one is taken as it is).
fn journal_intact(path: &Path, state: &Journal) -> Result<bool, IndexError> {
    let Some(crc) = state.crc else {
        return Ok(true);
    };
    let bytes = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
    Ok(crc32fast::hash(&bytes) == crc)
}

/// The journaled encoding of a build: documents in `order`, `commit` at a
/// time, each batch appended to the journal and recorded in the progress
/// file before the next.
pub(super) struct Encoding<'a> {
    pub(super) encoder: &'a Encoder<'a>,
    pub(super) opts: &'a BuildOptions,
    pub(super) seqs: &'a [Vec<u32>],
    pub(super) order: &'a [usize],
    pub(super) commit: usize,
    pub(super) journal_path: PathBuf,
    pub(super) progress_path: PathBuf,
}

impl Encoding<'_> {
    fn fresh(settings: &str) -> Journal {
        Journal {
            settings: settings.to_string(),
            done: 0,
            bytes: 0,
            tokens: 0,
            seconds: 0.0,
            crc: Some(0),
        }
    }

    /// Every document's vector from the complete journal, in corpus order.
    pub(super) fn vectors(&self, documents: usize) -> Result<Vec<SparseVec>, IndexError> {
        let path = &self.journal_path;
        let bytes = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
        read_journal(&bytes, documents, path)
    }

    /// Where the journal stands: resumed when the settings match (saying so
    /// when they do not), its file cut back to the last committed batch.
    pub(super) fn resume(
        &self,
        settings: &str,
        stage: &Path,
        progress: &mut impl FnMut(BuildProgress),
    ) -> Result<(Journal, std::fs::File), IndexError> {
        let journal_path = &self.journal_path;
        let mut state = match std::fs::read_to_string(&self.progress_path)
            .ok()
            .and_then(|t| serde_json::from_str::<Journal>(&t).ok())
        {
            Some(j) if j.settings == settings && j.done <= self.order.len() => j,
            old => {
                if let Some(j) = old.filter(|j| j.done > 0 && j.settings != settings) {
                    let changed = super::shard::settings_differences(&j.settings, settings);
                    progress(BuildProgress::Phase {
                        name: format!(
                            "the partial build in {} was made with other settings ({}); starting over",
                            stage.display(),
                            changed.join(", ")
                        ),
                    });
                }
                Self::fresh(settings)
            }
        };
        let mut journal = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(journal_path)
            .map_err(|e| IndexError::io(journal_path, e))?;
        let journaled = journal
            .metadata()
            .map_err(|e| IndexError::io(journal_path, e))?
            .len();
        if state.bytes > journaled {
            // The progress record claims more than the journal holds: it cannot
            // be trusted, so the build starts over rather than inventing vectors.
            state = Self::fresh(settings);
        }
        // Drop any batch written after the last committed progress record.
        journal
            .set_len(state.bytes)
            .map_err(|e| IndexError::io(journal_path, e))?;
        if !journal_intact(journal_path, &state)? {
            progress(BuildProgress::Phase {
                name: format!(
                    "the journal of the partial build in {} is damaged (checksum mismatch); starting over",
                    stage.display()
                ),
            });
            state = Self::fresh(settings);
            journal
                .set_len(0)
                .map_err(|e| IndexError::io(journal_path, e))?;
        }
        journal
            .seek(SeekFrom::End(0))
            .map_err(|e| IndexError::io(journal_path, e))?;
        Ok((state, journal))
    }

    /// Encode and journal the remaining batches.
    pub(super) fn encode(
        &self,
        mut state: Journal,
        mut journal: std::fs::File,
        stage: &Path,
        progress: &mut impl FnMut(BuildProgress),
    ) -> Result<Journal, IndexError> {
        let (seqs, order) = (self.seqs, self.order);
        let tokens_planned: u64 = order.iter().map(|&i| seqs[i].len() as u64).sum();
        let session = Instant::now();
        let session_start_tokens = state.tokens;
        let mut commits = 0;
        while state.done < order.len() {
            if self.opts.stop_after_commits.is_some_and(|n| commits >= n) {
                return Err(IndexError::Interrupted {
                    done: state.done,
                    total: order.len(),
                    stage: stage.to_path_buf(),
                });
            }
            commits += 1;
            let end = (state.done + self.commit).min(order.len());
            let buf = self.encode_batch(&order[state.done..end], &mut state.tokens)?;
            let io = |e| IndexError::io(&self.journal_path, e);
            journal.write_all(&buf).map_err(io)?;
            journal.sync_data().map_err(io)?;
            state.bytes += buf.len() as u64;
            state.crc = state.crc.map(|c| {
                let mut h = crc32fast::Hasher::new_with_initial(c);
                h.update(&buf);
                h.finalize()
            });
            state.done = end;
            let elapsed = session.elapsed().as_secs_f64();
            write_atomic(
                &self.progress_path,
                serde_json::to_string(&state).unwrap_or_default().as_bytes(),
            )?;
            let session_tokens = (state.tokens - session_start_tokens) as f64;
            let tps = session_tokens / elapsed.max(1e-9);
            progress(BuildProgress::Progress {
                done: state.done,
                total: order.len(),
                tokens_done: state.tokens,
                tokens_total: tokens_planned,
                docs_per_s: (state.done as f64) / elapsed.max(1e-9),
                tokens_per_s: tps,
                eta_s: tokens_planned.saturating_sub(state.tokens) as f64 / tps.max(1e-9),
            });
        }
        Ok(state)
    }

    /// One batch's journal records (corpus position, then the vector).
    fn encode_batch(&self, chunk: &[usize], tokens: &mut u64) -> Result<Vec<u8>, IndexError> {
        let seqs = self.seqs;
        let to_encode: Vec<Vec<u32>> = chunk
            .iter()
            .filter(|&&i| !seqs[i].is_empty())
            .map(|&i| seqs[i].clone())
            .collect();
        let mut encoded = self.encoder.encode_ids(&to_encode)?.into_iter();
        let mut buf = Vec::new();
        for &i in chunk {
            let v = if seqs[i].is_empty() {
                SparseVec::default()
            } else {
                encoded.next().unwrap_or_default()
            };
            let v = prune(v, self.opts.doc_top_k);
            vectors::encode_journal_entry(i, &v, &mut buf);
            *tokens += seqs[i].len() as u64;
        }
        Ok(buf)
    }
}

/// The vectors a build in progress has committed so far, as (corpus
/// position, vector) pairs: what an explorer can already search.
pub fn read_partial(out: &Path) -> Result<Vec<(usize, SparseVec)>, IndexError> {
    let stage = staging_dir(out);
    let progress_path = stage.join(PROGRESS);
    let journal_path = stage.join(JOURNAL);
    let text =
        std::fs::read_to_string(&progress_path).map_err(|e| IndexError::io(&progress_path, e))?;
    let j: Journal = serde_json::from_str(&text).map_err(|e| IndexError::Corrupt {
        path: progress_path.clone(),
        msg: e.to_string(),
    })?;
    let mut bytes = Vec::new();
    std::fs::File::open(&journal_path)
        .and_then(|f| f.take(j.bytes).read_to_end(&mut bytes))
        .map_err(|e| IndexError::io(&journal_path, e))?;
    // `done` comes from a file: never reserve more than the journal can hold.
    let mut out = Vec::with_capacity(j.done.min(bytes.len() / 4));
    let mut pos = 0;
    while let Some((ord, v, next)) = vectors::decode_journal_entry(&bytes, pos) {
        out.push((ord, v));
        pos = next;
    }
    Ok(out)
}

/// The vectors of a journal (`ordinal: u32`, then a vector record, per
/// document), in corpus order; every document must appear exactly once.
pub fn read_journal(bytes: &[u8], docs: usize, path: &Path) -> Result<Vec<SparseVec>, IndexError> {
    let mut vecs: Vec<Option<SparseVec>> = vec![None; docs];
    let mut pos = 0;
    while pos < bytes.len() {
        let corrupt = |what: &str| IndexError::Corrupt {
            path: path.to_path_buf(),
            msg: format!("{what} at byte {pos}; delete the partial build to start over"),
        };
        let (ord, v, next) = vectors::decode_journal_entry(bytes, pos)
            .ok_or_else(|| corrupt("truncated or malformed journal record"))?;
        let slot = vecs
            .get_mut(ord)
            .ok_or_else(|| corrupt("journal record of a document beyond the corpus"))?;
        if slot.replace(v).is_some() {
            return Err(corrupt("a document journaled twice"));
        }
        pos = next;
    }
    let missing = vecs.iter().filter(|v| v.is_none()).count();
    if missing > 0 {
        return Err(IndexError::Corrupt {
            path: path.to_path_buf(),
            msg: format!("{missing} documents missing from the journal; delete the partial build to start over"),
        });
    }
    Ok(vecs.into_iter().flatten().collect())
}
