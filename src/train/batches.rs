//! The micro-batches of a contrastive run, drawn once and kept in the run
//! directory (`batches.bin.gz`: tokenized queries, positives and hard
//! negatives, in visiting order). A run prepared where the collections live
//! (`csplade train contrastive --prepare-only`) can then be trained or
//! resumed on a machine without them — a GPU machine, say. The file is
//! keyed by every recipe field that shapes the batches and is rebuilt (from
//! the data) when the key differs or the run needs more micro-batches.
//!
//! The layout, inside gzip: the line `csplade-batches-1`, the [`Header`] as
//! one line of JSON, then for each micro-batch and each of its queries the
//! query, its positive and its hard negatives, each a [`SeqHead`] and its
//! token ids.

use std::io::{BufReader, Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::config::TrainConfig;
use super::data::{self, DrawSettings, MicroBatch};
use crate::model::TextTokenizer;

pub const FILE: &str = "batches.bin.gz";
const MAGIC: &[u8] = b"csplade-batches-1\n";

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Header {
    key: String,
    micro_batches: usize,
    batch: usize,
    hard_negatives: usize,
    /// Token ids stored as u32 (vocabularies over 65,536 entries) or u16.
    wide: bool,
}

/// What the batches depend on: sources, weights, seed, sizes, lengths,
/// mining depth and the tokenizer (its vocabulary size and model).
pub fn key(cfg: &TrainConfig, vocab: usize) -> String {
    let v = serde_json::json!({
        "pairs": cfg.pairs, "pair_weights": cfg.pair_weights, "seed": cfg.seed,
        "batch": cfg.batch, "hard_negatives": cfg.hard_negatives,
        "negative_depth": cfg.negative_depth, "query_max_len": cfg.query_max_len,
        "doc_max_len": cfg.doc_max_len, "model": cfg.model, "vocab": vocab,
    });
    format!("{:x}", Sha256::digest(v.to_string().as_bytes()))
}

pub fn draw_settings(cfg: &TrainConfig) -> DrawSettings {
    DrawSettings {
        seed: cfg.seed,
        batch: cfg.batch,
        hard_negatives: cfg.hard_negatives,
        negative_depth: cfg.negative_depth,
        query_max_len: cfg.query_max_len,
        doc_max_len: cfg.doc_max_len,
        weights: cfg.pair_weights.clone(),
    }
}

/// The head of one stored text: its token count; the token ids follow,
/// as `u16` or, when the header says `wide`, `u32` (little-endian).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct SeqHead {
    tokens: U32,
}

/// The longest text a batches file may hold, in tokens.
const MAX_TOKENS: usize = 1 << 20;

fn write_seq(w: &mut impl Write, s: &[u32], wide: bool) -> std::io::Result<()> {
    let head = SeqHead {
        tokens: U32::new(s.len() as u32),
    };
    w.write_all(head.as_bytes())?;
    if wide {
        let ids: Vec<U32> = s.iter().map(|&t| U32::new(t)).collect();
        w.write_all(ids.as_bytes())
    } else {
        let ids: Vec<U16> = s.iter().map(|&t| U16::new(t as u16)).collect();
        w.write_all(ids.as_bytes())
    }
}

fn read_seq(r: &mut impl Read, wide: bool) -> std::io::Result<Vec<u32>> {
    let mut head = SeqHead::new_zeroed();
    r.read_exact(head.as_mut_bytes())?;
    let n = head.tokens.get() as usize;
    if n > MAX_TOKENS {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a text of {n} tokens"),
        ));
    }
    if wide {
        let mut ids = vec![U32::ZERO; n];
        r.read_exact(ids.as_mut_bytes())?;
        Ok(ids.iter().map(|t| t.get()).collect())
    } else {
        let mut ids = vec![U16::ZERO; n];
        r.read_exact(ids.as_mut_bytes())?;
        Ok(ids.iter().map(|t| t.get() as u32).collect())
    }
}

/// Write `batches` to `path` atomically (see [`crate::data::output::write_with`]).
pub fn write(path: &Path, key: &str, batches: &[MicroBatch], vocab: usize) -> Result<()> {
    let first = batches.first();
    let header = Header {
        key: key.to_string(),
        micro_batches: batches.len(),
        batch: first.map_or(0, |b| b.queries.len()),
        hard_negatives: first.and_then(|b| b.negatives.first()).map_or(0, Vec::len),
        wide: vocab > u16::MAX as usize + 1,
    };
    for mb in batches {
        if mb.queries.len() != header.batch
            || mb
                .negatives
                .iter()
                .any(|n| n.len() != header.hard_negatives)
        {
            bail!("micro-batches of unequal shape cannot be stored");
        }
    }
    let header_line = serde_json::to_string(&header)?;
    crate::data::output::write_with(path, |file| {
        let mut w = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        w.write_all(MAGIC)?;
        w.write_all(header_line.as_bytes())?;
        w.write_all(b"\n")?;
        for mb in batches {
            for ((q, p), negs) in mb.queries.iter().zip(&mb.positives).zip(&mb.negatives) {
                write_seq(&mut w, q, header.wide)?;
                write_seq(&mut w, p, header.wide)?;
                for n in negs {
                    write_seq(&mut w, n, header.wide)?;
                }
            }
        }
        w.finish().map(|_| ())
    })
    .with_context(|| format!("writing the training batches {}", path.display()))
}

/// The first `count` micro-batches stored at `path`, if its key is `key` and
/// it holds that many; `Ok(None)` when it must be drawn again.
pub fn read(path: &Path, key: &str, count: usize) -> Result<Option<Vec<MicroBatch>>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
    };
    let bad = |msg: String| anyhow::anyhow!("{}: {msg}", path.display());
    let mut r = BufReader::new(flate2::read::GzDecoder::new(f));
    let mut magic = vec![0u8; MAGIC.len()];
    r.read_exact(&mut magic)
        .map_err(|e| bad(format!("not a batches file: {e}")))?;
    if magic != MAGIC {
        return Err(bad("not a csplade batches file".into()));
    }
    let mut line = String::new();
    std::io::BufRead::read_line(&mut r, &mut line).map_err(|e| bad(e.to_string()))?;
    let header: Header =
        serde_json::from_str(line.trim()).map_err(|e| bad(format!("header: {e}")))?;
    if header.key != key || header.micro_batches < count {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let mut mb = MicroBatch::default();
        for _ in 0..header.batch {
            let mut seq = || {
                read_seq(&mut r, header.wide)
                    .map_err(|e| bad(format!("micro-batch {k}: {e} (truncated or corrupt)")))
            };
            mb.queries.push(seq()?);
            mb.positives.push(seq()?);
            let negs = (0..header.hard_negatives)
                .map(|_| seq())
                .collect::<Result<Vec<_>>>()?;
            mb.negatives.push(negs);
        }
        out.push(mb);
    }
    Ok(Some(out))
}

/// Micro-batches `0..count` of the run in `work`: from its batches file when
/// that matches the recipe, else drawn from the collections and stored.
pub fn load_or_draw(
    cfg: &TrainConfig,
    tok: &TextTokenizer,
    work: &Path,
    count: usize,
) -> Result<Vec<MicroBatch>> {
    let path = work.join(FILE);
    let key = key(cfg, tok.vocab_size());
    if let Some(b) = read(&path, &key, count)? {
        return Ok(b);
    }
    let data_dir = cfg.data_dir();
    let batches =
        data::draw_micro_batches(&data_dir, &cfg.pairs, tok, &draw_settings(cfg), count, work)
            .with_context(|| {
                format!(
                    "drawing training batches from {} (a run prepared elsewhere keeps them in {})",
                    data_dir.display(),
                    path.display()
                )
            })?;
    write(&path, &key, &batches, tok.vocab_size())?;
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_refuse_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mb = |s: u32| MicroBatch {
            queries: vec![vec![s, 2], vec![3]],
            positives: vec![vec![4, 5, 6], vec![60_000]],
            negatives: vec![vec![vec![7]], vec![vec![8, 9]]],
        };
        let batches = vec![mb(1), mb(10)];
        write(&path, "k", &batches, 49_152).unwrap();
        assert_eq!(read(&path, "k", 2).unwrap(), Some(batches.clone()));
        assert_eq!(read(&path, "k", 1).unwrap(), Some(batches[..1].to_vec()));
        assert_eq!(read(&path, "k", 3).unwrap(), None, "too few stored");
        assert_eq!(read(&path, "other", 1).unwrap(), None, "another recipe");
        // Wide ids survive too.
        let mut wide = batches.clone();
        wide[0].queries[0][0] = 100_000;
        write(&path, "k", &wide, 151_000).unwrap();
        assert_eq!(read(&path, "k", 2).unwrap(), Some(wide));
        // A truncated file is an error naming it, not a silent short read.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = read(&path, "k", 2).expect_err("truncated");
        assert!(e.to_string().contains(FILE), "{e}");
    }
}
