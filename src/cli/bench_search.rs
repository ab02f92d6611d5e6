//! `csplade bench search`: per-query latency of each LSR scorer (with the
//! feedback's first ranking), query encoding and BM25 over an index's own
//! queries, beside the index's size and build throughput.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use csplade::data::beir;
use csplade::encode::Encoder;

use super::bench::{dir_size, percentile};

#[derive(Args)]
pub struct SearchBench {
    /// Index built by `csplade index`
    #[arg(long)]
    pub index: PathBuf,
    /// The model that built it [default: the model the index records, else default]
    #[arg(long)]
    pub model: Option<String>,
    /// Encode queries at this precision (default: the index's)
    #[arg(long)]
    pub precision: Option<csplade::quant::Precision>,
    /// Queries timed (from the indexed collection's queries.jsonl)
    #[arg(long, default_value_t = 300, value_parser = super::within(1, 1_000_000))]
    pub queries: usize,
    /// Hits per query
    #[arg(long, default_value_t = 10, value_parser = super::within(1, 100_000))]
    pub k: usize,
    /// Encode queries through the model's inference-free query table (the
    /// default for an inference-free checkpoint)
    #[arg(long)]
    pub inference_free: bool,
    /// Pseudo-relevance feedback (none, rocchio or
    /// rocchio:DOCS:WEIGHT:TERMS[:IDF_POWER]) [default: the model's own]
    #[arg(long)]
    pub query_feedback: Option<csplade::search::QueryFeedback>,
    #[arg(long)]
    pub json: bool,
}

/// Per query, in milliseconds: encoding, each LSR scorer (with the
/// feedback's first ranking), encoding plus the exact search, BM25; and the
/// expansion's active terms.
#[derive(Default)]
struct SearchTimings {
    enc_ms: Vec<f64>,
    exact_ms: Vec<f64>,
    tantivy_ms: Vec<f64>,
    e2e_ms: Vec<f64>,
    bm25_ms: Vec<f64>,
    active: Vec<f64>,
}

/// Encode and search each query once, timing every stage.
fn time_queries(
    idx: &csplade::search::LsrIndex,
    enc: &Encoder,
    queries: &[beir::Query],
    (prior, feedback): (csplade::search::QueryPrior, csplade::search::QueryFeedback),
    k: usize,
) -> Result<SearchTimings> {
    use csplade::search::Backend;
    let mut t = SearchTimings::default();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    for q in queries {
        let t0 = Instant::now();
        let e = enc.encode_one(&q.text)?.vector;
        let t1 = Instant::now();
        // With feedback, each search ranks twice (see search::feedback).
        let (v, _) = idx.scored_query(&e, prior, feedback, Backend::Exact)?;
        idx.search(&v, k, Backend::Exact)?;
        let t2 = Instant::now();
        // tantivy cannot rank documents by their best passage.
        if idx.passages.is_none() {
            let (vt, _) = idx.scored_query(&e, prior, feedback, Backend::Tantivy)?;
            idx.search(&vt, k, Backend::Tantivy)?;
        }
        let t3 = Instant::now();
        idx.search_bm25(&q.text, k)?;
        let t4 = Instant::now();
        t.enc_ms.push(ms(t1 - t0));
        t.exact_ms.push(ms(t2 - t1));
        if idx.passages.is_none() {
            t.tantivy_ms.push(ms(t3 - t2));
        }
        t.bm25_ms.push(ms(t4 - t3));
        t.e2e_ms.push(ms(t2 - t0));
        t.active.push(e.active() as f64);
    }
    Ok(t)
}

pub(super) fn run(a: SearchBench) -> Result<()> {
    let (idx, model) = super::search::open_with_model(&a.index, a.model.as_deref(), a.precision)?;
    let inference_free = a.inference_free || model.inference_free_by_default();
    let enc =
        Encoder::new(&model, idx.meta.encoder_config()).with_inference_free(inference_free)?;
    let scoring = csplade::search::QueryScoring {
        prior: None,
        feedback: a.query_feedback,
    };
    let (prior, feedback) = scoring.resolve(model.as_ref(), inference_free);
    let queries = beir::read_queries(std::path::Path::new(&idx.meta.corpus))
        .with_context(|| format!("reading the queries of {}", idx.meta.corpus))?;
    let queries: Vec<_> = queries.into_iter().take(a.queries).collect();
    if queries.is_empty() {
        bail!("no queries to time");
    }
    let report = SearchReport {
        a: &a,
        idx: &idx,
        queries: queries.len(),
        prior,
        feedback,
        inference_free,
        at: time_queries(&idx, &enc, &queries, (prior, feedback), a.k)?.latencies(),
    };
    if a.json {
        report.json();
    } else {
        report.text();
    }
    Ok(())
}

/// p50 and p99 (ms) of each timed stage, and the median query terms.
struct Latencies {
    exact: (f64, f64),
    tantivy: (f64, f64),
    e2e: (f64, f64),
    enc: (f64, f64),
    bm25: (f64, f64),
    active: f64,
}

impl SearchTimings {
    fn latencies(mut self) -> Latencies {
        let row = |v: &mut Vec<f64>| (percentile(v, 0.5), percentile(v, 0.99));
        Latencies {
            exact: row(&mut self.exact_ms),
            tantivy: row(&mut self.tantivy_ms),
            e2e: row(&mut self.e2e_ms),
            enc: row(&mut self.enc_ms),
            bm25: row(&mut self.bm25_ms),
            active: percentile(&mut self.active, 0.5),
        }
    }
}

/// What `bench search` prints.
struct SearchReport<'a> {
    a: &'a SearchBench,
    idx: &'a csplade::search::LsrIndex,
    queries: usize,
    prior: csplade::search::QueryPrior,
    feedback: csplade::search::QueryFeedback,
    inference_free: bool,
    at: Latencies,
}

impl SearchReport<'_> {
    /// Index bytes on disk and the build's tokens per second.
    fn index_figures(&self) -> (u64, f64) {
        let meta = &self.idx.meta;
        (
            dir_size(&self.a.index),
            meta.encoded_tokens as f64 / meta.build_seconds.max(1e-9),
        )
    }

    fn json(&self) {
        let Latencies {
            exact: (e50, e99),
            tantivy: (t50, t99),
            e2e: (x50, x99),
            enc: (n50, n99),
            bm25: (b50, b99),
            active,
        } = self.at;
        let (size, throughput) = self.index_figures();
        println!(
            "{}",
            json!({"queries": self.queries, "documents": self.idx.len(), "median_query_terms": active,
                "query_side": if self.inference_free { "inference-free" } else { "model" },
                "query_prior": self.prior.to_string(), "query_feedback": self.feedback.to_string(),
                "lsr_exact_ms": {"p50": e50, "p99": e99},
                "lsr_tantivy_ms": if t50.is_nan() { json!(null) } else { json!({"p50": t50, "p99": t99}) },
                "passages": self.idx.passages.as_ref().map(|p| p.len()),
                "encode_ms": {"p50": n50, "p99": n99}, "encode_plus_search_ms": {"p50": x50, "p99": x99},
                "bm25_ms": {"p50": b50, "p99": b99}, "index_bytes": size, "build_tokens_per_s": throughput,
                "threads": candle_core::utils::get_num_threads()})
        );
    }

    fn text(&self) {
        let (feedback, prior, at) = (self.feedback, self.prior, &self.at);
        let ranked = match feedback.is_none() {
            true => String::new(),
            false => format!("; feedback {feedback}: each LSR search ranks twice"),
        };
        println!(
            "{} queries over {} documents (median {:.0} query terms; query prior {prior}{ranked}), top {}:",
            self.queries,
            self.idx.len(),
            at.active,
            self.a.k
        );
        let line = |what: &str, (p50, p99): (f64, f64)| {
            println!("  {what:<28} p50 {p50:.3} ms   p99 {p99:.3} ms")
        };
        line("LSR search, exact scorer", at.exact);
        match &self.idx.passages {
            None => line("LSR search, tantivy impacts", at.tantivy),
            Some(p) => println!(
                "  (documents rank by their best of {} passages: the exact scorer alone)",
                p.len()
            ),
        }
        let side = if self.inference_free {
            "query encoding (table)"
        } else {
            "query encoding"
        };
        line(side, at.enc);
        line("encode + exact search", at.e2e);
        line("BM25", at.bm25);
        let (size, throughput) = self.index_figures();
        println!(
            "  index on disk {:.1} MB; build throughput {throughput:.0} tokens/s over {:.0} s",
            size as f64 / 1e6,
            self.idx.meta.build_seconds
        );
    }
}
