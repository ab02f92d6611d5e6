//! The pooled documents of a frontier: every document encoder's vectors of
//! the pool's documents, the reference's read from its index (its speed
//! timed on a sample), the others' sealed in the pool cache or encoded now
//! through a journal that an interrupted run resumes.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result};

use super::pool::Pool;
use super::run::{encoder_key, Event, Setup};
use super::store::{DocEncoding, PoolCache};
use super::{Cost, Point};
use crate::compare::{EncoderSpec, Models};
use crate::data::beir::Document;
use crate::encode::SparseVec;

/// Documents encoded between two durable appends to the journal.
const JOURNAL_BATCH: usize = 16;

/// A document encoder's pooled vectors, in pool order, and how they were
/// encoded.
pub(super) type Pooled = (Vec<SparseVec>, DocEncoding);

/// What every pooled encoding reads and writes: the setup, the pool and
/// the pool's cache.
#[derive(Clone, Copy)]
pub(super) struct Pooling<'p, 'a> {
    pub(super) setup: &'p Setup<'a>,
    pub(super) cache: &'p PoolCache,
    pub(super) pool: &'p Pool,
}

/// Every document encoder's pooled vectors (by encoder key): the
/// reference's from its index, the others' from the cache or encoded now;
/// and what they cost against full indexes.
pub(super) fn pooled_vectors(
    at: Pooling,
    points: &[Point],
    models: &mut Models,
    on: &mut dyn FnMut(Event),
) -> Result<(HashMap<String, Pooled>, Cost)> {
    let setup = at.setup;
    let reading = setup.index.meta.reading();
    let mut docs: HashMap<String, Pooled> = HashMap::new();
    let mut cost = Cost::default();
    let ref_key = encoder_key(models, &setup.reference, reading)?;
    for p in points {
        let key = encoder_key(models, &p.documents, reading)?;
        if docs.contains_key(&key) {
            continue;
        }
        let enc = if key == ref_key {
            reference_documents(at, models, &key, on)?
        } else {
            let phase = format!(
                "encoding {} pool documents with {}",
                at.pool.documents.len(),
                p.documents
            );
            let e = pooled_documents(at, &p.documents, models, &key, phase, on)?;
            cost.full_index_tokens += setup.index.meta.encoded_tokens;
            cost.encoders += 1;
            e
        };
        // The reference's own figures are its speed sample's.
        cost.pool_tokens += enc.1.tokens;
        cost.encode_seconds += enc.1.seconds;
        docs.insert(key, enc);
    }
    Ok((docs, cost))
}

/// The text of every pool document, in pool order.
pub(super) fn pool_texts(setup: &Setup, pool: &Pool) -> Result<Vec<String>> {
    let by_id: HashMap<&str, &Document> = setup.corpus.iter().map(|d| (d.id.as_str(), d)).collect();
    pool.documents
        .iter()
        .map(|&o| {
            let id = setup.index.doc_id(o);
            by_id
                .get(id)
                .map(|d| d.full_text())
                .with_context(|| format!("document {id:?} of the index is not in the corpus"))
        })
        .collect()
}

/// The reference's pooled vectors come from its index; its speed is
/// measured on the first `speed_sample` pool documents (cached).
fn reference_documents(
    at: Pooling,
    models: &mut Models,
    key: &str,
    on: &mut dyn FnMut(Event),
) -> Result<Pooled> {
    let setup = at.setup;
    let vectors: Vec<SparseVec> = at
        .pool
        .documents
        .iter()
        .map(|&o| setup.index.vectors[o].clone())
        .collect();
    let mut sample = at.pool.clone();
    sample.documents.truncate(setup.speed_sample.max(1));
    let at = Pooling {
        pool: &sample,
        ..at
    };
    let speed_key = format!("speed-{key}");
    let phase = format!("timing the reference {}", setup.reference);
    let (_, info) = pooled_documents(at, &setup.reference, models, &speed_key, phase, on)?;
    Ok((vectors, info))
}

/// An encoder's pooled vectors: sealed in the cache, or encoded now
/// (announced as `phase`; resuming an interrupted encoding) and sealed.
fn pooled_documents(
    at: Pooling,
    spec: &EncoderSpec,
    models: &mut Models,
    key: &str,
    phase: String,
    on: &mut dyn FnMut(Event),
) -> Result<Pooled> {
    if let Some(done) = at
        .cache
        .documents(key)
        .filter(|d| d.0.len() == at.pool.documents.len())
    {
        return Ok(done);
    }
    on(Event::Phase(phase));
    let (v, info) = encode_documents(at, spec, models, key, on)?;
    at.cache.seal_documents(key, &v, &info)?;
    Ok((v, info))
}

/// Encode the pool's documents with `spec` through a journal, batch by
/// batch, from wherever an earlier run stopped.
fn encode_documents(
    at: Pooling,
    spec: &EncoderSpec,
    models: &mut Models,
    key: &str,
    on: &mut dyn FnMut(Event),
) -> Result<Pooled> {
    let texts = pool_texts(at.setup, at.pool)?;
    let model = models.get(spec)?;
    let enc = spec.encoder(model, at.setup.index.meta.reading())?;
    let mut journal = at.cache.resume_documents(key)?;
    let total = texts.len();
    if !journal.vectors.is_empty() {
        on(Event::Phase(format!(
            "resuming {spec}: {} of {total} pool documents already encoded",
            journal.vectors.len()
        )));
    }
    let started = Instant::now();
    let (resumed_docs, resumed_tokens) = (journal.vectors.len(), journal.tokens);
    while journal.vectors.len() < total {
        let from = journal.vectors.len();
        let batch: Vec<&str> = texts[from..(from + JOURNAL_BATCH).min(total)]
            .iter()
            .map(String::as_str)
            .collect();
        let t = Instant::now();
        let encoded = encode_texts(&enc, &batch)?;
        let tokens: u64 = encoded.iter().map(|e| e.0).sum();
        let vectors: Vec<SparseVec> = encoded.into_iter().map(|e| e.1).collect();
        journal.append(&vectors, tokens, t.elapsed().as_secs_f64())?;
        let rate =
            (journal.tokens - resumed_tokens) as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let done = journal.vectors.len();
        let per_doc = started.elapsed().as_secs_f64() / (done - resumed_docs).max(1) as f64;
        on(Event::Progress {
            done,
            total,
            tokens_per_s: rate,
            eta_s: per_doc * (total - done) as f64,
        });
    }
    let info = DocEncoding {
        encoder: spec.to_string(),
        tokens: journal.tokens,
        seconds: journal.seconds,
        model_bytes: model.as_ref().weight_bytes(),
    };
    Ok((journal.vectors, info))
}

/// Encode documents: (tokens, vector) each, a document without text as an
/// empty vector (as the index build stores it).
fn encode_texts(enc: &crate::encode::Encoder, texts: &[&str]) -> Result<Vec<(u64, SparseVec)>> {
    let keep: Vec<usize> = (0..texts.len())
        .filter(|&i| !texts[i].trim().is_empty())
        .collect();
    let kept: Vec<&str> = keep.iter().map(|&i| texts[i]).collect();
    let mut out = vec![(0, SparseVec::default()); texts.len()];
    for (i, e) in keep.into_iter().zip(enc.encode(&kept)?) {
        out[i] = (e.token_ids.len() as u64, e.vector);
    }
    Ok(out)
}
