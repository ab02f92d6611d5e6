//! Effectiveness: nDCG@10, MRR@10, Recall@100 and Recall@1000 with
//! trec_eval's definitions (graded gains, log2 discount, relevant = grade > 0),
//! per query and averaged over the judged queries; how an index's documents
//! weigh their terms; and TREC run files.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::search::Hit;

/// Metrics of one ranking against one query's judgements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    #[serde(rename = "ndcg@10")]
    pub ndcg10: f64,
    #[serde(rename = "mrr@10")]
    pub mrr10: f64,
    #[serde(rename = "recall@100")]
    pub recall100: f64,
    #[serde(rename = "recall@1000")]
    pub recall1000: f64,
}

impl Metrics {
    pub fn add(&mut self, o: &Metrics) {
        self.ndcg10 += o.ndcg10;
        self.mrr10 += o.mrr10;
        self.recall100 += o.recall100;
        self.recall1000 += o.recall1000;
    }
    pub fn scale(&mut self, f: f64) {
        self.ndcg10 *= f;
        self.mrr10 *= f;
        self.recall100 *= f;
        self.recall1000 *= f;
    }
}

/// nDCG@k: Σ gain / log2(rank + 1) over the top k, divided by the same sum
/// for the ideal ordering of all judged documents (trec_eval `ndcg_cut`).
pub fn ndcg_at(ranking: &[&str], judged: &HashMap<String, i32>, k: usize) -> f64 {
    let dcg: f64 = ranking
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| judged.get(*d).copied().unwrap_or(0).max(0) as f64 / ((i + 2) as f64).log2())
        .sum();
    let mut gains: Vec<i32> = judged.values().copied().filter(|&g| g > 0).collect();
    gains.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = gains
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, &g)| g as f64 / ((i + 2) as f64).log2())
        .sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

/// Reciprocal rank of the first relevant document within the top k.
pub fn mrr_at(ranking: &[&str], judged: &HashMap<String, i32>, k: usize) -> f64 {
    ranking
        .iter()
        .take(k)
        .position(|d| judged.get(*d).is_some_and(|&g| g > 0))
        .map_or(0.0, |p| 1.0 / (p + 1) as f64)
}

/// Fraction of the relevant documents found in the top k.
pub fn recall_at(ranking: &[&str], judged: &HashMap<String, i32>, k: usize) -> f64 {
    let relevant = judged.values().filter(|&&g| g > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = ranking
        .iter()
        .take(k)
        .filter(|d| judged.get(**d).is_some_and(|&g| g > 0))
        .count();
    found as f64 / relevant as f64
}

pub fn evaluate(ranking: &[&str], judged: &HashMap<String, i32>) -> Metrics {
    Metrics {
        ndcg10: ndcg_at(ranking, judged, 10),
        mrr10: mrr_at(ranking, judged, 10),
        recall100: recall_at(ranking, judged, 100),
        recall1000: recall_at(ranking, judged, 1000),
    }
}

/// Per-query metrics and their mean over the queries that have at least one
/// relevant judgement (a query missing from `runs` scores 0, as in trec_eval).
pub fn evaluate_run(
    runs: &HashMap<String, Vec<String>>,
    qrels: &crate::data::beir::Qrels,
) -> (Metrics, Vec<(String, Metrics)>) {
    let mut per_query = Vec::new();
    let mut mean = Metrics::default();
    let mut qids: Vec<&String> = qrels
        .keys()
        .filter(|q| qrels[*q].values().any(|&g| g > 0))
        .collect();
    qids.sort();
    for q in &qids {
        let ranking: Vec<&str> = runs
            .get(*q)
            .map(|r| r.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let m = evaluate(&ranking, &qrels[*q]);
        mean.add(&m);
        per_query.push(((*q).clone(), m));
    }
    if !qids.is_empty() {
        mean.scale(1.0 / qids.len() as f64);
    }
    (mean, per_query)
}

/// How an index's documents weigh their terms, as medians over the documents
/// with at least 10 active terms. A flat bag of words (every term at one
/// cap) has gap 0 and all of its terms within 0.05 of the largest.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DocumentWeights {
    /// The gap between a document's 1st and 10th weight.
    #[serde(rename = "median_gap_1st_10th")]
    pub gap: f64,
    /// That gap as a fraction of the document's largest weight: unlike the
    /// gap it does not grow with the scale of the weights, which a
    /// dot-product ranking ignores.
    #[serde(rename = "median_relative_gap_1st_10th")]
    pub relative_gap: f64,
    /// The document's largest weight.
    #[serde(rename = "median_largest_weight")]
    pub largest: f64,
    /// How many of its terms lie within 0.05 of its largest weight.
    #[serde(rename = "median_terms_within_0.05_of_max")]
    pub near_largest: f64,
}

/// The median of `values` (the upper one of an even count; 0 for none).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// [`DocumentWeights`] of the documents' weight lists (any order); `None`
/// when no document has 10 active terms.
pub fn document_weights<'a>(
    documents: impl IntoIterator<Item = &'a [f32]>,
) -> Option<DocumentWeights> {
    let (mut gap, mut relative, mut largest, mut near) = (vec![], vec![], vec![], vec![]);
    for weights in documents {
        let mut w: Vec<f32> = weights.iter().copied().filter(|&x| x > 0.0).collect();
        if w.len() < 10 {
            continue;
        }
        w.sort_by(|a, b| b.total_cmp(a));
        let (top, tenth) = (f64::from(w[0]), f64::from(w[9]));
        gap.push(top - tenth);
        relative.push((top - tenth) / top);
        largest.push(top);
        near.push(w.iter().filter(|&&x| x >= w[0] - 0.05).count() as f64);
    }
    (!gap.is_empty()).then(|| DocumentWeights {
        gap: median(gap),
        relative_gap: median(relative),
        largest: median(largest),
        near_largest: median(near),
    })
}

/// Write a TREC run file (`qid Q0 docid rank score tag`, one line per
/// retrieved document) under the output policy (never inside `inputs`),
/// atomically. A query or document id holding whitespace cannot be
/// written in the format, and is refused naming it.
pub fn write_trec_run(
    path: &Path,
    tag: &str,
    runs: &[(String, Vec<Hit>)],
    inputs: &[&Path],
) -> Result<(), crate::data::output::OutputError> {
    use crate::data::output::{self, OutputError};
    let spaced = |s: &str| s.is_empty() || s.chars().any(char::is_whitespace);
    for (qid, hits) in runs {
        let bad = std::iter::once(qid.as_str())
            .chain(hits.iter().map(|h| h.doc_id.as_str()))
            .find(|s| spaced(s));
        if let Some(id) = bad {
            let msg = format!(
                "the id {id:?} is empty or holds whitespace, which a TREC run line cannot carry; \
                 rename it in the collection to write a run"
            );
            return Err(OutputError::io(path, std::io::Error::other(msg)));
        }
    }
    output::write_file(path, &output::TREC_RUN, inputs, "eval", |w| {
        for (qid, hits) in runs {
            for (rank, h) in hits.iter().enumerate() {
                writeln!(w, "{qid} Q0 {} {} {:.6} {tag}", h.doc_id, rank + 1, h.score)?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    #[test]
    fn ndcg_hand_computed() {
        // gains at ranks 1..3: 0, 2, 1; ideal: 2, 1
        let j = judged(&[("a", 2), ("b", 1), ("z", 0)]);
        let r = ["x", "a", "b"];
        let dcg = 2.0 / 3f64.log2() + 1.0 / 4f64.log2();
        let idcg = 2.0 + 1.0 / 3f64.log2();
        assert!((ndcg_at(&r, &j, 10) - dcg / idcg).abs() < 1e-12);
        assert_eq!(ndcg_at(&["a", "b"], &j, 10), 1.0);
        // cut at 1: only "x" counts
        assert_eq!(ndcg_at(&r, &j, 1), 0.0);
        // grade 0 documents are not relevant
        assert_eq!(ndcg_at(&["z"], &j, 10), 0.0);
    }

    #[test]
    fn mrr_and_recall_hand_computed() {
        let j = judged(&[("a", 1), ("b", 3), ("c", 0)]);
        assert_eq!(mrr_at(&["c", "x", "b", "a"], &j, 10), 1.0 / 3.0);
        assert_eq!(mrr_at(&["c", "x", "b"], &j, 2), 0.0);
        assert_eq!(recall_at(&["c", "x", "b"], &j, 100), 0.5);
        assert_eq!(recall_at(&["a", "b"], &j, 1), 0.5);
    }

    #[test]
    fn run_means_over_judged_queries_and_missing_runs_score_zero() {
        let mut qrels = crate::data::beir::Qrels::new();
        qrels.insert("q1".into(), judged(&[("a", 1)]));
        qrels.insert("q2".into(), judged(&[("b", 1)]));
        qrels.insert("q3".into(), judged(&[("c", 0)])); // no relevant document: not evaluated
        let mut runs = HashMap::new();
        runs.insert("q1".to_string(), vec!["a".to_string()]);
        let (mean, per) = evaluate_run(&runs, &qrels);
        assert_eq!(per.len(), 2);
        assert_eq!(mean.ndcg10, 0.5);
        assert_eq!(mean.mrr10, 0.5);
    }

    #[test]
    fn document_weights_are_medians_over_documents_of_ten_terms() {
        // Weights 2.0, 1.9, …, 1.1 (gap 0.9, 1 term within 0.05 of the
        // largest), a flat document at 1.5 (gap 0, all 12 near), the first
        // again with zeros, and a document of 3 terms, which is left out.
        let graded: Vec<f32> = (0..10).map(|i| 2.0 - 0.1 * i as f32).collect();
        let flat = vec![1.5f32; 12];
        let short = vec![9.0f32, 0.1, 0.2];
        let mut with_zeros = graded.clone();
        with_zeros.extend([0.0; 5]); // zeros are not active terms
        let w = document_weights([
            graded.as_slice(),
            flat.as_slice(),
            short.as_slice(),
            with_zeros.as_slice(),
        ])
        .unwrap();
        // Medians of three documents: gaps [0.9, 0, 0.9], near [1, 12, 1].
        assert!((w.gap - 0.9).abs() < 1e-6, "{w:?}");
        assert!((w.relative_gap - 0.45).abs() < 1e-6, "{w:?}");
        assert!((w.largest - 2.0).abs() < 1e-6, "{w:?}");
        assert_eq!(w.near_largest, 1.0);
        // Scaling every weight scales the gap, not the relative gap.
        let scaled: Vec<f32> = graded.iter().map(|x| 3.0 * x).collect();
        let s = document_weights([scaled.as_slice()]).unwrap();
        assert!((s.gap - 2.7).abs() < 1e-5 && (s.relative_gap - 0.45).abs() < 1e-6);
        assert_eq!(document_weights([short.as_slice()]), None);
    }
}
