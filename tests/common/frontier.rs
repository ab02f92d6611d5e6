//! A trade-off frontier as `csplade tradeoff` writes it (four precisions
//! and a mixed point, one with a full-index check), for the explorer's
//! Frontier view tests.

use csplade::tradeoff::{Cost, Frontier, PointResult, PoolSpec};

fn point(label: &str, ndcg: f64, p50: f64, model_mb: f64, full: Option<f64>) -> PointResult {
    PointResult {
        label: label.to_string(),
        query_encoder: label
            .split(" / d ")
            .next()
            .unwrap_or(label)
            .trim_start_matches("q ")
            .to_string(),
        document_encoder: label.split(" / d ").last().unwrap_or(label).to_string(),
        doc_top_k: 0,
        scale: None,
        seismic: None,
        queries: 80,
        pool_depth: 10,
        pool_documents: 1152,
        ndcg10: ndcg,
        ndcg10_ci: [ndcg - 0.05, ndcg + 0.05],
        recall100_in_pool: 0.9,
        overlap10: 0.95,
        kendall_tau: 0.9,
        doc_tokens_per_s: 300.0,
        query_p50_ms: p50,
        query_p99_ms: p50 * 1.8,
        query_model_bytes: (model_mb * 1e6) as usize,
        doc_model_bytes: (model_mb * 1e6) as usize,
        index_bytes: 12_000_000,
        full_ndcg10: full,
        full_ndcg10_ci: full.map(|x| [x - 0.05, x + 0.05]),
        per_query_ndcg10: vec![ndcg; 80],
    }
}

pub fn sample_frontier() -> Frontier {
    Frontier {
        dataset: "scifact".into(),
        split: "test".into(),
        reference: "default (lsr-scifact-f32)".into(),
        pool: PoolSpec::default(),
        pool_key: "0123456789abcdef".into(),
        pool_documents: 1152,
        corpus_documents: 5183,
        queries: 80,
        points: vec![
            point("default", 0.487, 64.0, 651.0, Some(0.487)),
            point("default:f16", 0.486, 90.0, 326.0, None),
            point("default:q8_0", 0.489, 40.0, 180.0, Some(0.4875)),
            point("default:q4_0", 0.452, 35.0, 105.0, None),
            point("q default:q8_0 / d default", 0.488, 40.0, 651.0, None),
        ],
        cost: Cost {
            pool_tokens: 441_327,
            full_index_tokens: 1_980_102,
            encoders: 3,
            encode_seconds: 1500.0,
            wall_seconds: 1600.0,
        },
    }
}
