//! Quantization trade-offs over a whole collection in minutes. Re-encoding
//! a corpus once per precision takes hours on a CPU; instead every encoder
//! (and every index-side setting: pruning, impact quantization, Seismic)
//! re-ranks one fixed candidate pool — a sample of the judged queries and,
//! for each, BM25's and the reference index's top documents plus every
//! judged one. Only the pool's documents are encoded, once per encoder, and
//! cached. Each point of the frontier reports nDCG@10 with a bootstrap
//! interval, recall within the pool, agreement with the reference, speed and
//! size; where a full index of the same encoder is at hand, its nDCG@10 over
//! the same queries is printed beside the pooled estimate, the measured error
//! of the method.

mod documents;
pub mod measure;
pub mod pool;
mod run;
pub mod store;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::compare::EncoderSpec;
use crate::search::seismic::SeismicQuery;

pub use pool::{Pool, PoolIdentity, PoolSpec};
pub use run::{plan, run, Event, Plan, Setup};

/// One point of a trade-off: how queries and documents are encoded, and
/// how the documents are indexed.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub queries: EncoderSpec,
    pub documents: EncoderSpec,
    /// Each document's heaviest terms kept (0: all).
    pub doc_top_k: usize,
    /// Impacts rounded to integers at this scale (none: exact weights).
    pub scale: Option<f32>,
    /// Ranked by Seismic with these settings (none: exact).
    pub seismic: Option<SeismicQuery>,
}

impl Point {
    /// The same encoder on both sides, indexed exactly.
    pub fn encoder(spec: EncoderSpec) -> Self {
        let mut documents = spec.clone();
        documents.inference_free = false;
        Self {
            queries: spec,
            documents,
            doc_top_k: 0,
            scale: None,
            seismic: None,
        }
    }

    /// Queries from one encoder, documents from another.
    pub fn mixed(queries: EncoderSpec, documents: EncoderSpec) -> Self {
        Self {
            queries,
            ..Self::encoder(documents)
        }
    }

    /// Whether the index side is as built (no pruning, exact weights).
    pub fn plain_index(&self) -> bool {
        self.doc_top_k == 0 && self.scale.is_none() && self.seismic.is_none()
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut docs = self.documents.clone();
        docs.inference_free = self.queries.inference_free;
        if docs == self.queries {
            write!(f, "{}", self.queries)?;
        } else {
            write!(f, "q {} / d {}", self.queries, self.documents)?;
        }
        if self.doc_top_k > 0 {
            write!(f, " top{}", self.doc_top_k)?;
        }
        if let Some(s) = self.scale {
            write!(f, " scale{s}")?;
        }
        if let Some(q) = self.seismic {
            write!(f, " seismic:{}:{}", q.query_terms, q.heap_factor)?;
        }
        Ok(())
    }
}

/// What one point measured on the pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    pub label: String,
    pub query_encoder: String,
    pub document_encoder: String,
    pub doc_top_k: usize,
    pub scale: Option<f32>,
    pub seismic: Option<String>,
    /// Queries averaged and the pool they were ranked over.
    pub queries: usize,
    pub pool_depth: usize,
    pub pool_documents: usize,
    pub ndcg10: f64,
    /// 95% bootstrap interval over the queries.
    pub ndcg10_ci: [f64; 2],
    /// Relevant documents in the top 100 of the pool, over those judged.
    pub recall100_in_pool: f64,
    /// Agreement of the top 10 with the reference point's, averaged.
    pub overlap10: f64,
    pub kendall_tau: f64,
    /// Document encoding speed (text tokens per second), as measured when
    /// this encoder's pool documents were encoded.
    pub doc_tokens_per_s: f64,
    pub query_p50_ms: f64,
    pub query_p99_ms: f64,
    pub query_model_bytes: usize,
    pub doc_model_bytes: usize,
    /// Index postings bytes projected from the pool to the whole corpus.
    pub index_bytes: u64,
    /// nDCG@10 of the same queries over a full index of this encoder,
    /// where one was given: the pooled estimate's measured error.
    pub full_ndcg10: Option<f64>,
    /// Its 95% bootstrap interval over the same queries.
    #[serde(default)]
    pub full_ndcg10_ci: Option<[f64; 2]>,
    pub per_query_ndcg10: Vec<f64>,
}

/// What the frontier cost to compute.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Document tokens the non-reference encoders encoded for the pool
    /// (now or in an earlier, cached run), and the reference's speed sample.
    pub pool_tokens: u64,
    /// What full indexes of those encoders would encode.
    pub full_index_tokens: u64,
    /// Document encodings (other than the reference's index) behind it.
    pub encoders: usize,
    /// Seconds spent encoding documents for the pool, over all runs.
    pub encode_seconds: f64,
    /// Wall seconds of this run.
    pub wall_seconds: f64,
}

impl Cost {
    /// Pool encoding as a share of the full indexes' encoding.
    pub fn share(&self) -> f64 {
        if self.full_index_tokens == 0 {
            0.0
        } else {
            self.pool_tokens as f64 / self.full_index_tokens as f64
        }
    }
}

/// A computed trade-off: every point over one pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Frontier {
    pub dataset: String,
    pub split: String,
    /// The reference encoder (the index's own) and its index.
    pub reference: String,
    pub pool: PoolSpec,
    pub pool_key: String,
    pub pool_documents: usize,
    pub corpus_documents: usize,
    pub queries: usize,
    pub points: Vec<PointResult>,
    pub cost: Cost,
}

/// The cost axes a frontier is drawn against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    QueryLatency,
    DocSpeed,
    ModelBytes,
    IndexBytes,
}

impl Axis {
    pub const ALL: [Axis; 4] = [
        Axis::QueryLatency,
        Axis::DocSpeed,
        Axis::ModelBytes,
        Axis::IndexBytes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Axis::QueryLatency => "query latency p50 (ms)",
            Axis::DocSpeed => "document encoding (s per 1k tokens)",
            Axis::ModelBytes => "model size (MB)",
            Axis::IndexBytes => "index size (MB)",
        }
    }

    /// The point's cost on this axis (lower is better).
    pub fn cost(self, p: &PointResult) -> f64 {
        match self {
            Axis::QueryLatency => p.query_p50_ms,
            Axis::DocSpeed => 1000.0 / p.doc_tokens_per_s.max(1e-9),
            Axis::ModelBytes => (p.query_model_bytes.max(p.doc_model_bytes)) as f64 / 1e6,
            Axis::IndexBytes => p.index_bytes as f64 / 1e6,
        }
    }

    pub fn next(self) -> Self {
        let i = Self::ALL.iter().position(|&a| a == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }
}

impl Frontier {
    /// Which points are Pareto-optimal: nDCG@10 up, `axis` down.
    pub fn pareto(&self, axis: Axis) -> Vec<bool> {
        let pts: Vec<(f64, f64)> = self
            .points
            .iter()
            .map(|p| (p.ndcg10, axis.cost(p)))
            .collect();
        measure::pareto(&pts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_labelled_by_what_differs() {
        let s = |t: &str| t.parse::<EncoderSpec>().unwrap();
        assert_eq!(
            Point::encoder(s("default:q8_0")).to_string(),
            "default:q8_0"
        );
        assert_eq!(
            Point::mixed(s("default"), s("default:q8_0")).to_string(),
            "q default / d default:q8_0"
        );
        let free = Point::encoder(s("default:inference-free"));
        assert!(
            !free.documents.inference_free,
            "documents go through the model"
        );
        assert_eq!(free.to_string(), "default:inference-free");
        let mut p = Point::encoder(s("default:q4_0"));
        p.doc_top_k = 64;
        p.scale = Some(10.0);
        assert!(!p.plain_index());
        assert_eq!(p.to_string(), "default:q4_0 top64 scale10");
    }
}
