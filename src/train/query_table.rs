//! The inference-free query side (as in OpenSearch's doc-only sparse
//! encoders and Li-LSR, arXiv 2505.01452): a query is its own tokens, each
//! weighted from a learned table of one weight per vocabulary entry, so
//! encoding a query is a look-up instead of a forward pass. Documents keep
//! the model's expansions.
//!
//! Training never runs the backbone backwards. The documents of the drawn
//! training batches (positives and BM25 negatives) are encoded once with the
//! model and cached in the run directory (resumable: the cache is a journal
//! of whole micro-batches); the table then learns against those frozen
//! vectors with InfoNCE over each micro-batch's documents plus FLOPS on the
//! queries' weights, by AdamW projected onto weights ≥ 0. It starts from the
//! idf of the training passages, so tokens no training query has keep a
//! lexical prior. The last tenth of the micro-batches is held out; the table
//! of the epoch with the lowest held-out InfoNCE is kept.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::data::{self, MicroBatch};
use super::run::median;
use super::{batches, TrainConfig};
use crate::encode::encoder::table_vector;
use crate::encode::{Encoder, EncoderConfig, SparseVec};
use crate::index::vectors;
use crate::model::LoadedModel;

/// Where the run keeps its encoded documents.
pub const DOCS_FILE: &str = "query-table-docs.bin";
const MAGIC: &[u8; 4] = b"CSQT";

/// How the table is trained.
#[derive(Clone, Debug)]
pub struct TableOptions {
    /// Micro-batches drawn (the last tenth held out).
    pub micro_batches: usize,
    pub epochs: usize,
    pub lr: f64,
    /// Weight of FLOPS on the queries' weights.
    pub lambda: f32,
}

/// One report line: documents encoded so far, or an epoch's losses.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TableProgress {
    Encoding {
        done: usize,
        total: usize,
    },
    Epoch {
        epoch: usize,
        epochs: usize,
        loss: f32,
        infonce: f32,
        flops: f32,
        held_out_infonce: f32,
        /// Median weighted tokens per training query.
        active_q: f32,
    },
}

/// A micro-batch as the table sees it: each query's tokens (distinct), and
/// the documents (positives first, query i's positive is document i).
struct Example {
    queries: Vec<Vec<u32>>,
    docs: Vec<SparseVec>,
}

fn cache_key(model: &LoadedModel, cfg: &TrainConfig, enc: &EncoderConfig) -> String {
    let v = serde_json::json!({
        "model": model.identity.sha256,
        "batches": batches::key(cfg, model.tokenizer.vocab_size()),
        "variant": enc.variant, "head": enc.head.to_string(), "max_len": enc.max_len,
    });
    format!("{:x}", Sha256::digest(v.to_string().as_bytes()))
}

/// The documents of `batches` already encoded in the cache at `path` (whole
/// micro-batches only; a torn last one is cut off).
fn read_cache(path: &Path, key: &str, batches: &[MicroBatch]) -> Result<Vec<Vec<SparseVec>>> {
    let mut buf = Vec::new();
    match std::fs::File::open(path) {
        Ok(mut f) => f
            .read_to_end(&mut buf)
            .with_context(|| path.display().to_string())?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    };
    let head = MAGIC.len() + key.len();
    if buf.len() < head || &buf[..4] != MAGIC || &buf[4..head] != key.as_bytes() {
        bail!(
            "{}: documents encoded for another model, recipe or encoding; remove it, or train into another --out",
            path.display()
        );
    }
    let (mut pos, mut out) = (head, Vec::new());
    for b in batches {
        let n = b.positives.len() + b.negatives.iter().map(Vec::len).sum::<usize>();
        let mut docs = Vec::with_capacity(n);
        for _ in 0..n {
            match vectors::decode_record(&buf, pos) {
                Some((v, next)) => {
                    docs.push(v);
                    pos = next;
                }
                None => return Ok(out),
            }
        }
        out.push(docs);
    }
    Ok(out)
}

/// Encode the documents of every micro-batch with the model, resuming the
/// cache at `path`; in micro-batch order.
fn encode_documents(
    enc: &Encoder,
    batches: &[MicroBatch],
    path: &Path,
    key: &str,
    mut report: impl FnMut(&TableProgress),
) -> Result<Vec<Vec<SparseVec>>> {
    let mut done = read_cache(path, key, batches)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(false)
        .write(true)
        .truncate(false)
        .open(path)
        .with_context(|| path.display().to_string())?;
    // Rewrite the header and the whole micro-batches; a torn tail goes.
    let mut keep = Vec::from(&MAGIC[..]);
    keep.extend_from_slice(key.as_bytes());
    for docs in &done {
        for v in docs {
            vectors::encode_record(v, &mut keep);
        }
    }
    f.set_len(0)?;
    f.rewind()?;
    f.write_all(&keep)?;
    let max_len = enc.config.max_len;
    for b in &batches[done.len()..] {
        let mut ids: Vec<Vec<u32>> = b.positives.clone();
        ids.extend(b.negatives.iter().flatten().cloned());
        for i in &mut ids {
            i.truncate(max_len);
        }
        let docs = enc.encode_ids(&ids)?;
        let mut rec = Vec::new();
        for v in &docs {
            vectors::encode_record(v, &mut rec);
        }
        f.write_all(&rec)?;
        f.sync_data()?;
        done.push(docs);
        report(&TableProgress::Encoding {
            done: done.len(),
            total: batches.len(),
        });
    }
    Ok(done)
}

/// A query's tokens as the inference-free side reads it (re-tokenized with
/// a leading space, see [`Encoder::tokenize`]), distinct.
fn query_tokens(model: &LoadedModel, ids: &[u32], max_len: usize) -> Result<Vec<u32>> {
    let text = model.tokenizer.decode(ids);
    let mut t = model.tokenizer.encode(&format!(" {}", text.trim_start()))?;
    t.truncate(max_len);
    t.sort_unstable();
    t.dedup();
    Ok(t)
}

/// Loss of one example under `table` and, when `grad` is given, its
/// gradient added there: (total, InfoNCE, FLOPS).
fn example_loss(
    table: &[f32],
    ex: &Example,
    lambda: f32,
    grad: Option<&mut [f32]>,
) -> (f32, f32, f32) {
    let nq = ex.queries.len();
    let mut infonce = 0f32;
    // ∂L/∂score[i][j].
    let mut dscore = vec![0f32; nq * ex.docs.len()];
    for (i, q) in ex.queries.iter().enumerate() {
        let qv = table_vector(table, q);
        let scores: Vec<f32> = ex.docs.iter().map(|d| qv.dot(d)).collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = scores.iter().map(|s| (s - max).exp()).sum();
        let lse = max + sum.ln();
        infonce += (lse - scores[i]) / nq as f32;
        for (j, s) in scores.iter().enumerate() {
            let p = (s - lse).exp();
            dscore[i * ex.docs.len() + j] = (p - if i == j { 1.0 } else { 0.0 }) / nq as f32;
        }
    }
    // FLOPS over the batch's queries: Σ_v (mean_i q_iv)², q_iv = t_v · [v ∈ Q_i].
    let mut count: std::collections::HashMap<u32, f32> = Default::default();
    for q in &ex.queries {
        for &v in q {
            *count.entry(v).or_default() += 1.0 / nq as f32;
        }
    }
    let flops: f32 = count
        .iter()
        .map(|(&v, c)| (table.get(v as usize).copied().unwrap_or(0.0) * c).powi(2))
        .sum();
    if let Some(g) = grad {
        for (i, q) in ex.queries.iter().enumerate() {
            for &v in q {
                let mut acc = 0f32;
                for (j, d) in ex.docs.iter().enumerate() {
                    acc += dscore[i * ex.docs.len() + j] * d.get(v);
                }
                if let Some(x) = g.get_mut(v as usize) {
                    *x += acc;
                }
            }
        }
        for (&v, c) in &count {
            if let Some(x) = g.get_mut(v as usize) {
                *x += lambda * 2.0 * table[v as usize] * c * c;
            }
        }
    }
    (infonce + lambda * flops, infonce, flops)
}

/// Projected AdamW over the table (weights kept ≥ 0).
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    fn step(&mut self, table: &mut [f32], grad: &[f32], lr: f64) {
        self.t += 1;
        let (b1, b2) = (0.9f32, 0.999f32);
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        for (i, &g) in grad.iter().enumerate() {
            if g == 0.0 && self.m[i] == 0.0 {
                continue;
            }
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g;
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g * g;
            let update = (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-8);
            table[i] = (table[i] - lr as f32 * update).max(0.0);
        }
    }
}

/// Train the query table of `model` on the recipe's training pairs; the run
/// directory `out` keeps the drawn batches and the encoded documents.
pub fn train(
    model: &LoadedModel,
    cfg: &TrainConfig,
    out: &Path,
    opts: &TableOptions,
    mut report: impl FnMut(&TableProgress),
) -> Result<Vec<f32>> {
    if opts.micro_batches < 2 || opts.epochs == 0 {
        bail!("a query table needs at least 2 micro-batches (one held out) and 1 epoch");
    }
    let examples = examples(model, cfg, out, opts, &mut report)?;
    let held = (examples.len() / 10).max(1);
    let (train_set, held_out) = examples.split_at(examples.len() - held);
    let tok = &model.tokenizer;
    let (df, n) = data::document_frequencies(&cfg.data_dir(), &cfg.pairs, tok, cfg.doc_max_len)?;
    let mut table = crate::search::prior::idf_table(&df, n);
    table.resize(tok.vocab_size(), 0.0);
    let eval = |t: &[f32]| -> f32 {
        held_out
            .iter()
            .map(|ex| example_loss(t, ex, 0.0, None).1)
            .sum::<f32>()
            / held_out.len() as f32
    };
    let mut best = (eval(&table), table.clone());
    let mut adam = Adam {
        m: vec![0.0; table.len()],
        v: vec![0.0; table.len()],
        t: 0,
    };
    for epoch in 0..opts.epochs {
        let order =
            data::batch_indices(cfg.seed ^ epoch as u64, train_set.len(), train_set.len(), 0);
        let (mut loss, mut infonce, mut flops) = (0f32, 0f32, 0f32);
        for &i in &order {
            let mut grad = vec![0f32; table.len()];
            let (l, c, f) = example_loss(&table, &train_set[i], opts.lambda, Some(&mut grad));
            (loss, infonce, flops) = (loss + l, infonce + c, flops + f);
            adam.step(&mut table, &grad, opts.lr);
        }
        let m = order.len().max(1) as f32;
        let held_out_infonce = eval(&table);
        report(&TableProgress::Epoch {
            epoch: epoch + 1,
            epochs: opts.epochs,
            loss: loss / m,
            infonce: infonce / m,
            flops: flops / m,
            held_out_infonce,
            active_q: median_active(&table, train_set),
        });
        if held_out_infonce < best.0 {
            best = (held_out_infonce, table.clone());
        }
    }
    Ok(best.1)
}

/// The training examples: each micro-batch's queries as token lists and
/// its documents as the model's vectors (encoded once, cached in `out`).
fn examples(
    model: &LoadedModel,
    cfg: &TrainConfig,
    out: &Path,
    opts: &TableOptions,
    report: &mut impl FnMut(&TableProgress),
) -> Result<Vec<Example>> {
    let micro = batches::load_or_draw(cfg, &model.tokenizer, out, opts.micro_batches)?;
    let (variant, head) = model.trained_encoding();
    let enc_cfg = EncoderConfig {
        variant,
        head,
        max_len: cfg.doc_max_len,
        batch_size: 8,
        windows: 1,
    };
    let enc = Encoder::new(model, enc_cfg.clone());
    let docs = encode_documents(
        &enc,
        &micro,
        &out.join(DOCS_FILE),
        &cache_key(model, cfg, &enc_cfg),
        report,
    )?;
    let mut examples = Vec::with_capacity(micro.len());
    for (b, d) in micro.iter().zip(docs) {
        let queries = b
            .queries
            .iter()
            .map(|q| query_tokens(model, q, cfg.query_max_len))
            .collect::<Result<_>>()?;
        examples.push(Example { queries, docs: d });
    }
    Ok(examples)
}

/// The median number of weighted tokens of the training queries under `table`.
fn median_active(table: &[f32], train_set: &[Example]) -> f32 {
    median(
        train_set
            .iter()
            .flat_map(|ex| ex.queries.iter())
            .map(|q| table_vector(table, q).active() as f32)
            .collect(),
    )
}

/// The run's adapter file.
pub fn adapter_path(out: &Path) -> PathBuf {
    out.join("adapter.safetensors")
}
