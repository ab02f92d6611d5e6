//! Computing a frontier: draw (or reuse) the pool, encode each encoder's
//! pooled documents and sampled queries (or reuse them), then rank the
//! pool once per point and score it.

use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::documents::{pool_texts, pooled_vectors, Pooled, Pooling};
use super::measure::{self, QueryScore};
use super::pool::{self, Pool, PoolIdentity, PoolSpec};
use super::store::{key_of, PoolCache, QueryEncoding};
use super::{Frontier, Point, PointResult};
use crate::compare::{EncoderSpec, Models};
use crate::data::beir::{Document, Qrels, Query};
use crate::encode::encoder::Reading;
use crate::encode::SparseVec;
use crate::search::prior::QueryPrior;
use crate::search::seismic::{SeismicBuild, SeismicIndex};
use crate::search::{LsrIndex, PartialIndex};

/// Bootstrap resamples per interval.
const BOOTSTRAP_ROUNDS: usize = 1000;

/// What a frontier is computed over.
pub struct Setup<'a> {
    /// The collection's name, for the record.
    pub dataset: &'a str,
    pub split: &'a str,
    /// The reference: a full index and the encoder that built it.
    pub index: &'a LsrIndex,
    pub reference: EncoderSpec,
    pub corpus: &'a [Document],
    /// The judged queries (a relevant judgement each) and their judgements.
    pub evaluated: &'a [Query],
    pub qrels: &'a Qrels,
    pub pool: PoolSpec,
    /// Query-side prior (default: each query model's own).
    pub prior: Option<QueryPrior>,
    /// Full indexes of other encoders, to measure the pooled estimate's
    /// error where one matches a point.
    pub full: &'a [LsrIndex],
    /// Pool documents the reference encodes to measure its speed.
    pub speed_sample: usize,
}

/// Progress, for a terminal or the explorer's task list.
pub enum Event {
    Phase(String),
    Progress {
        done: usize,
        total: usize,
        tokens_per_s: f64,
        eta_s: f64,
    },
}

/// An encoder's cache key: the model's weights and everything else that
/// decides its vectors.
pub(super) fn encoder_key(
    models: &mut Models,
    spec: &EncoderSpec,
    reading: Reading,
) -> Result<String> {
    let model = models.get(spec)?;
    let c = spec.config(model, reading);
    let key = key_of(&(
        &model.identity().sha256,
        c.variant.to_string(),
        c.head.to_string(),
        spec.precision.to_string(),
        reading.max_len,
        spec.inference_free,
    ));
    // Windows only in the keys of encodings that read more than one, so
    // pools cached before windows existed are found again.
    Ok(match reading.windows {
        1 => key,
        n => key_of(&(key, n)),
    })
}

/// Compute the frontier of `points` (the reference point comes first
/// whether listed or not).
pub fn run(
    setup: &Setup,
    points: &[Point],
    models: &mut Models,
    on: &mut dyn FnMut(Event),
) -> Result<Frontier> {
    let t0 = Instant::now();
    let idx = setup.index;
    let reading = idx.meta.reading();
    check_reference(setup, models)?;
    let (cache, sample, pool) = prepare_pool(setup, models, on)?;
    let mut points: Vec<Point> = points.to_vec();
    let reference_point = Point::encoder(setup.reference.clone());
    points.retain(|p| *p != reference_point);
    points.insert(0, reference_point);

    let at = Pooling {
        setup,
        cache: &cache,
        pool: &pool,
    };
    let (docs, mut cost) = pooled_vectors(at, &points, models, on)?;

    on(Event::Phase("ranking the pool".into()));
    let mut results: Vec<PointResult> = Vec::new();
    let mut reference_top10: Vec<Vec<String>> = Vec::new();
    for p in &points {
        let q = query_encoding(setup, &cache, &sample, &p.queries, models)?;
        let prior = prior_for(setup, &p.queries, models)?;
        let dkey = encoder_key(models, &p.documents, reading)?;
        let encoded = &docs[&dkey];
        let rankings = rank_pool(idx, &pool, &encoded.0, p, &q.vectors, prior)?;
        if reference_top10.is_empty() {
            reference_top10 = rankings
                .iter()
                .map(|r| r.iter().take(10).cloned().collect())
                .collect();
        }
        let scores: Vec<QueryScore> = pool
            .queries
            .iter()
            .zip(&rankings)
            .zip(&reference_top10)
            .map(|(((qid, _), r), reference)| measure::score(r, reference, setup.qrels, qid))
            .collect();
        let full = full_ndcg(setup, p, &q.vectors, prior, &pool, models)?;
        results.push(point_result(
            p,
            &pool,
            &scores,
            &q,
            encoded,
            idx.len(),
            full,
        ));
    }
    cost.wall_seconds = t0.elapsed().as_secs_f64();
    let frontier = Frontier {
        dataset: setup.dataset.to_string(),
        split: setup.split.to_string(),
        reference: format!("{} ({})", setup.reference, idx.dir.display()),
        pool: setup.pool,
        pool_key: pool.identity.key(),
        pool_documents: pool.documents.len(),
        corpus_documents: idx.len(),
        queries: pool.queries.len(),
        points: results,
        cost,
    };
    let labels: Vec<&str> = frontier.points.iter().map(|p| p.label.as_str()).collect();
    cache.save_frontier(&key_of(&labels), &frontier)?;
    cache.save_frontier("latest", &frontier)?;
    Ok(frontier)
}

/// The pool of `setup`: cached, or drawn now (which encodes the sampled
/// queries with the reference). Also the cache and the sample.
fn prepare_pool(
    setup: &Setup,
    models: &mut Models,
    on: &mut dyn FnMut(Event),
) -> Result<(PoolCache, Vec<Query>, Pool)> {
    let idx = setup.index;
    let prior = prior_for(setup, &setup.reference, models)?;
    let identity = PoolIdentity::new(idx, setup.split, setup.pool, prior);
    let cache = PoolCache::new(&identity);
    let sample = pool::sample_queries(setup.evaluated, setup.pool.queries, setup.pool.seed);
    if let Some(p) = cache.pool(&identity) {
        return Ok((cache, sample, p));
    }
    on(Event::Phase(
        "encoding the sampled queries (reference)".into(),
    ));
    let ref_queries = query_encoding(setup, &cache, &sample, &setup.reference, models)?;
    on(Event::Phase(
        "pooling BM25's and the reference's candidates".into(),
    ));
    let scored: Vec<SparseVec> = ref_queries
        .vectors
        .iter()
        .map(|v| idx.weigh(v, prior))
        .collect();
    let p = pool::build(idx, identity, &sample, &scored, setup.qrels)?;
    cache.save_pool(&p)?;
    Ok((cache, sample, p))
}

/// What computing a frontier would encode, before encoding anything.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub queries: usize,
    pub depth: usize,
    pub pool_documents: usize,
    pub corpus_documents: usize,
    /// Text tokens of the pool's documents (the encoding work per encoder
    /// other than the reference) and of the whole corpus (a full index's).
    pub pool_tokens: u64,
    pub corpus_tokens: u64,
}

/// Draw (or reuse) the pool and count what each encoder would encode.
pub fn plan(setup: &Setup, models: &mut Models, on: &mut dyn FnMut(Event)) -> Result<Plan> {
    check_reference(setup, models)?;
    let (_, _, pool) = prepare_pool(setup, models, on)?;
    let texts = pool_texts(setup, &pool)?;
    let enc = setup
        .reference
        .encoder(models.get(&setup.reference)?, setup.index.meta.reading())?;
    let mut pool_tokens = 0u64;
    for t in &texts {
        pool_tokens += enc.tokenize(t)?.0.len() as u64;
    }
    Ok(Plan {
        queries: pool.queries.len(),
        depth: pool.identity.spec.depth,
        pool_documents: pool.documents.len(),
        corpus_documents: setup.index.len(),
        pool_tokens,
        corpus_tokens: setup.index.meta.encoded_tokens,
    })
}

/// The reference encoder must be the one that built the index.
fn check_reference(setup: &Setup, models: &mut Models) -> Result<()> {
    let idx = setup.index;
    let model = models.get(&setup.reference)?;
    let config = setup.reference.config(model, idx.meta.reading());
    if !crate::compare::index_serves(idx, model, &config)
        || setup.reference.precision.to_string() != idx.meta.precision
        || setup.reference.inference_free
    {
        bail!(
            "the reference encoder {} did not build {} ({} {} {} at {}); name the index's own encoder",
            setup.reference,
            idx.dir.display(),
            idx.meta.model.id,
            idx.meta.variant,
            idx.meta.head,
            idx.meta.precision
        );
    }
    Ok(())
}

/// The prior a point's queries are scored with: the setup's, else the
/// query model's own (none for a query table, which weighs its tokens).
fn prior_for(setup: &Setup, spec: &EncoderSpec, models: &mut Models) -> Result<QueryPrior> {
    Ok(match setup.prior {
        Some(p) => p,
        None if spec.inference_free => QueryPrior::None,
        None => models.get(spec)?.query_prior(),
    })
}

/// The sampled queries under `spec`, each timed alone (after one untimed
/// warm-up), cached per pool and encoder.
fn query_encoding(
    setup: &Setup,
    cache: &PoolCache,
    sample: &[Query],
    spec: &EncoderSpec,
    models: &mut Models,
) -> Result<QueryEncoding> {
    let key = encoder_key(models, spec, setup.index.meta.reading())?;
    if let Some(q) = cache
        .queries(&key)
        .filter(|q| q.vectors.len() == sample.len())
    {
        return Ok(q);
    }
    let model = models.get(spec)?;
    let enc = spec.encoder(model, setup.index.meta.reading())?;
    if let Some(first) = sample.first() {
        enc.encode_one(&first.text)?;
    }
    let mut vectors = Vec::with_capacity(sample.len());
    let mut latencies_ms = Vec::with_capacity(sample.len());
    for q in sample {
        let t = Instant::now();
        let e = enc
            .encode_one(&q.text)
            .with_context(|| format!("encoding query {}", q.id))?;
        latencies_ms.push(t.elapsed().as_secs_f64() * 1e3);
        vectors.push(e.vector);
    }
    let q = QueryEncoding {
        encoder: spec.to_string(),
        vectors,
        latencies_ms,
        model_bytes: model.as_ref().weight_bytes(),
    };
    cache.save_queries(&key, &q)?;
    Ok(q)
}

/// Each sampled query's ranking (document ids, best first, at most 100)
/// over the pool, its documents stored as the point's index side says.
fn rank_pool(
    idx: &LsrIndex,
    pool: &Pool,
    vectors: &[SparseVec],
    point: &Point,
    queries: &[SparseVec],
    prior: QueryPrior,
) -> Result<Vec<Vec<String>>> {
    let stored: Vec<SparseVec> = vectors
        .iter()
        .map(|v| measure::as_indexed(v, point.doc_top_k, point.scale))
        .collect();
    let vocab = idx.meta.vocab_size;
    let ids = |hits: Vec<(usize, f32)>| -> Vec<String> {
        hits.into_iter()
            .map(|(o, _)| idx.doc_id(o).to_string())
            .collect()
    };
    let scored: Vec<SparseVec> = queries.iter().map(|v| idx.weigh(v, prior)).collect();
    Ok(match point.seismic {
        Some(params) => {
            let s = SeismicIndex::build(&stored, vocab, SeismicBuild::default());
            scored
                .iter()
                .map(|q| {
                    let hits = s.search(q, 100, &stored, params);
                    ids(hits
                        .into_iter()
                        .map(|(slot, sc)| (pool.documents[slot], sc))
                        .collect())
                })
                .collect()
        }
        None => {
            let part = PartialIndex::new(
                pool.documents.iter().copied().zip(stored).collect(),
                vocab,
                idx.len(),
            );
            scored.iter().map(|q| ids(part.search(q, 100))).collect()
        }
    })
}

/// Per-query nDCG@10 of the sampled queries over a full index of this point's
/// encoder, when one was given (plain index side, same encoder both sides).
fn full_ndcg(
    setup: &Setup,
    p: &Point,
    queries: &[SparseVec],
    prior: QueryPrior,
    pool: &Pool,
    models: &mut Models,
) -> Result<Option<Vec<f64>>> {
    let mut docs_side = p.queries.clone();
    docs_side.inference_free = false;
    if !p.plain_index() || docs_side != p.documents {
        return Ok(None);
    }
    let model = models.get(&p.documents)?;
    let config = p.documents.config(model, setup.index.meta.reading());
    let full = std::iter::once(setup.index)
        .chain(setup.full.iter())
        .find(|f| {
            crate::compare::index_serves(f, model, &config)
                && f.meta.precision == p.documents.precision.to_string()
                && f.meta.reading() == setup.index.meta.reading()
                && f.meta.corpus_fingerprint == setup.index.meta.corpus_fingerprint
                // Points score first reads; an index that ranks by passages
                // is not their full-index counterpart.
                && f.passages.is_none()
        });
    let Some(full) = full else { return Ok(None) };
    let mut ndcg = Vec::new();
    for ((qid, _), q) in pool.queries.iter().zip(queries) {
        let hits = full.search_exact(&full.weigh(q, prior), 10);
        let ranking: Vec<&str> = hits.iter().map(|h| h.doc_id.as_str()).collect();
        let judged = setup.qrels.get(qid).cloned().unwrap_or_default();
        ndcg.push(crate::eval::ndcg_at(&ranking, &judged, 10));
    }
    Ok(Some(ndcg))
}

/// A point's figures from its per-query scores, its encodings (the
/// queries', and the pooled documents' with how they were encoded) and
/// the full-index check.
fn point_result(
    p: &Point,
    pool: &Pool,
    scores: &[QueryScore],
    q: &QueryEncoding,
    (vectors, d): &Pooled,
    corpus_docs: usize,
    full: Option<Vec<f64>>,
) -> PointResult {
    let ndcg: Vec<f64> = scores.iter().map(|s| s.ndcg10).collect();
    let col = |f: fn(&QueryScore) -> f64| measure::mean(&scores.iter().map(f).collect::<Vec<_>>());
    let (lo, hi) = measure::bootstrap_ci(&ndcg, BOOTSTRAP_ROUNDS, pool.identity.spec.seed);
    let stored: Vec<SparseVec> = vectors
        .iter()
        .map(|v| measure::as_indexed(v, p.doc_top_k, p.scale))
        .collect();
    PointResult {
        label: p.to_string(),
        query_encoder: p.queries.to_string(),
        document_encoder: p.documents.to_string(),
        doc_top_k: p.doc_top_k,
        scale: p.scale,
        seismic: p
            .seismic
            .map(|s| format!("{}:{}", s.query_terms, s.heap_factor)),
        queries: scores.len(),
        pool_depth: pool.identity.spec.depth,
        pool_documents: pool.documents.len(),
        ndcg10: measure::mean(&ndcg),
        ndcg10_ci: [lo, hi],
        recall100_in_pool: col(|s| s.recall100),
        overlap10: col(|s| s.overlap10),
        kendall_tau: col(|s| s.kendall_tau),
        doc_tokens_per_s: d.tokens as f64 / d.seconds.max(1e-9),
        query_p50_ms: measure::percentile(&q.latencies_ms, 50.0),
        query_p99_ms: measure::percentile(&q.latencies_ms, 99.0),
        query_model_bytes: q.model_bytes,
        doc_model_bytes: d.model_bytes,
        index_bytes: measure::projected_index_bytes(&stored, p.scale, corpus_docs),
        full_ndcg10: full.as_deref().map(measure::mean),
        full_ndcg10_ci: full.as_deref().map(|f| {
            let (lo, hi) = measure::bootstrap_ci(f, BOOTSTRAP_ROUNDS, pool.identity.spec.seed);
            [lo, hi]
        }),
        per_query_ndcg10: ndcg,
    }
}
