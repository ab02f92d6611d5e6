//! What a trade-off measures on the pool: the index-side settings applied
//! to pooled document vectors (top-k pruning, impact quantization), the
//! ranking of every sampled query over the pool, nDCG@10 with a bootstrap
//! confidence interval over queries, recall within the pool, agreement with
//! the reference, projected index size and the Pareto front.

use serde::{Deserialize, Serialize};

use crate::data::beir::Qrels;
use crate::encode::SparseVec;
use crate::rng::SplitMix;

/// A document vector as the index would store it: its `top_k` heaviest
/// terms (0: all) and, with a scale, each weight rounded to an integer
/// impact `round(w × scale)` and read back as `impact / scale` (terms whose
/// impact rounds to 0 dropped), as the tantivy scorer sees it.
pub fn as_indexed(v: &SparseVec, top_k: usize, scale: Option<f32>) -> SparseVec {
    let pairs: Vec<(u32, f32)> = if top_k > 0 && v.active() > top_k {
        v.top_k(top_k)
    } else {
        v.iter().collect()
    };
    let pairs = match scale {
        Some(s) => pairs
            .into_iter()
            .map(|(id, w)| (id, crate::index::impact::as_scored(w, s)))
            .collect(),
        None => pairs,
    };
    SparseVec::from_pairs(pairs)
}

/// Bytes a posting takes for vectors stored this way: a 4-byte document id
/// and the weight (4 bytes as f32, else the fewest bytes holding the
/// largest integer impact).
pub fn posting_bytes(scale: Option<f32>, max_weight: f32) -> usize {
    match scale {
        None => 8,
        Some(s) => {
            let top = crate::index::impact::impact(max_weight, s).max(1) as u64;
            4 + (64 - top.leading_zeros() as usize).div_ceil(8)
        }
    }
}

/// Index bytes for `corpus_docs` documents projected from the pooled
/// vectors: their mean postings times the corpus size, times a posting's
/// bytes.
pub fn projected_index_bytes(pooled: &[SparseVec], scale: Option<f32>, corpus_docs: usize) -> u64 {
    if pooled.is_empty() {
        return 0;
    }
    let postings: usize = pooled.iter().map(SparseVec::active).sum();
    let max = pooled
        .iter()
        .flat_map(|v| v.weights.iter().copied())
        .fold(0f32, f32::max);
    let per_doc = postings as f64 / pooled.len() as f64;
    (per_doc * corpus_docs as f64 * posting_bytes(scale, max) as f64).round() as u64
}

/// Per-query quality of one ranking.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryScore {
    pub ndcg10: f64,
    /// Relevant documents in the top 100 over relevant documents judged.
    pub recall100: f64,
    /// Agreement of the top 10 with the reference point's: overlap and τ.
    pub overlap10: f64,
    pub kendall_tau: f64,
}

/// Score `ranking` (document ids, best first) for query `qid`.
pub fn score(
    ranking: &[String],
    reference_top10: &[String],
    qrels: &Qrels,
    qid: &str,
) -> QueryScore {
    let empty = Default::default();
    let judged = qrels.get(qid).unwrap_or(&empty);
    let ids: Vec<&str> = ranking.iter().map(String::as_str).collect();
    let top10: Vec<String> = ranking.iter().take(10).cloned().collect();
    let (overlap10, kendall_tau) =
        crate::compare::agreement(reference_top10, &top10).unwrap_or((1.0, 1.0));
    QueryScore {
        ndcg10: crate::eval::ndcg_at(&ids, judged, 10),
        recall100: crate::eval::recall_at(&ids, judged, 100),
        overlap10,
        kendall_tau,
    }
}

/// Mean of `xs` (0 for none).
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// 95% percentile bootstrap interval of the mean of `xs` over `rounds`
/// resamples of the queries (seeded: the same data gives the same interval).
pub fn bootstrap_ci(xs: &[f64], rounds: usize, seed: u64) -> (f64, f64) {
    if xs.len() < 2 || rounds == 0 {
        let m = mean(xs);
        return (m, m);
    }
    let mut rng = SplitMix::new(seed);
    let n = xs.len() as u64;
    let mut means: Vec<f64> = (0..rounds)
        .map(|_| {
            (0..n)
                .map(|_| xs[(rng.next_u64() % n) as usize])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |p: f64| means[((p * (rounds - 1) as f64).round() as usize).min(rounds - 1)];
    (at(0.025), at(0.975))
}

/// Whether each point is on the Pareto front of (quality up, cost down):
/// no other point is at least as good on both and better on one.
pub fn pareto(points: &[(f64, f64)]) -> Vec<bool> {
    points
        .iter()
        .map(|&(q, c)| {
            !points
                .iter()
                .any(|&(q2, c2)| q2 >= q && c2 <= c && (q2 > q || c2 < c))
        })
        .collect()
}

/// The p-th percentile (0–100, nearest rank) of `xs`.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pairs: &[(u32, f32)]) -> SparseVec {
        SparseVec::from_pairs(pairs.to_vec())
    }

    #[test]
    fn indexed_vectors_are_pruned_then_quantized() {
        let d = v(&[(1, 0.5), (2, 1.234), (3, 0.004), (4, 2.0)]);
        assert_eq!(as_indexed(&d, 0, None), d);
        assert_eq!(as_indexed(&d, 2, None), v(&[(2, 1.234), (4, 2.0)]));
        // scale 100: 0.004 rounds to 0 and is dropped, 1.234 → 1.23
        assert_eq!(
            as_indexed(&d, 0, Some(100.0)),
            v(&[(1, 0.5), (2, 1.23), (4, 2.0)])
        );
        assert_eq!(as_indexed(&d, 1, Some(1.0)), v(&[(4, 2.0)]));
    }

    #[test]
    fn posting_bytes_follow_the_largest_impact() {
        assert_eq!(posting_bytes(None, 3.0), 8);
        assert_eq!(posting_bytes(Some(100.0), 2.5), 5); // 250 fits a byte
        assert_eq!(posting_bytes(Some(100.0), 2.6), 6); // 260 does not
        assert_eq!(posting_bytes(Some(1.0), 0.1), 5);
        let pooled = [v(&[(1, 1.0), (2, 1.0)]), v(&[(3, 1.0)])];
        // 1.5 postings a document, 10 documents, 8 bytes
        assert_eq!(projected_index_bytes(&pooled, None, 10), 120);
        assert_eq!(projected_index_bytes(&pooled, Some(10.0), 10), 75);
        assert_eq!(projected_index_bytes(&[], None, 10), 0);
    }

    #[test]
    fn scores_hand_computed() {
        let mut qrels = Qrels::new();
        qrels.insert(
            "q".into(),
            [("a".to_string(), 1), ("b".to_string(), 1)].into(),
        );
        let ranking: Vec<String> = ["x", "a"].iter().map(|s| s.to_string()).collect();
        let reference: Vec<String> = ["a", "x"].iter().map(|s| s.to_string()).collect();
        let s = score(&ranking, &reference, &qrels, "q");
        let ideal = 1.0 + 1.0 / 3f64.log2();
        assert!((s.ndcg10 - (1.0 / 3f64.log2()) / ideal).abs() < 1e-12);
        assert_eq!(s.recall100, 0.5);
        assert_eq!(s.overlap10, 1.0);
        assert_eq!(s.kendall_tau, -1.0);
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_shrinks_with_more_queries() {
        let few: Vec<f64> = (0..20).map(|i| (i % 2) as f64).collect();
        let many: Vec<f64> = (0..2000).map(|i| (i % 2) as f64).collect();
        let (lo, hi) = bootstrap_ci(&few, 1000, 3);
        assert!(lo < 0.5 && hi > 0.5, "{lo} {hi}");
        let (lo2, hi2) = bootstrap_ci(&many, 1000, 3);
        assert!(lo2 < 0.5 && hi2 > 0.5);
        assert!(hi2 - lo2 < (hi - lo) / 5.0, "{lo2} {hi2} vs {lo} {hi}");
        assert_eq!(bootstrap_ci(&few, 1000, 3), (lo, hi), "seeded");
        // constant data: a point interval
        let (lo, hi) = bootstrap_ci(&[0.3; 10], 100, 1);
        assert!(
            (lo - 0.3).abs() < 1e-12 && (hi - 0.3).abs() < 1e-12,
            "{lo} {hi}"
        );
    }

    #[test]
    fn pareto_front_and_percentiles() {
        // (quality, cost)
        let pts = [
            (0.5, 10.0),
            (0.6, 20.0),
            (0.4, 15.0),
            (0.6, 25.0),
            (0.5, 10.0),
        ];
        assert_eq!(pareto(&pts), [true, true, false, false, true]);
        let xs = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&xs, 50.0), 3.0);
        assert_eq!(percentile(&xs, 99.0), 5.0);
        assert_eq!(percentile(&xs, 0.0), 1.0);
    }
}
