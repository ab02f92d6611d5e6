//! BM25 inside a distillation teacher: each micro-batch's (query, document)
//! pairs scored by BM25 as csplade's BM25 system scores them (the index's
//! English analysis; k1 = 1.2, b = 0.75; Lucene's idf), with document
//! frequencies and lengths counted over the run's own training documents,
//! then fused with the teacher's scores as `--system hybrid` fuses rankings:
//! each query's row min-max normalised, `w · bm25 + (1 − w) · teacher`.
//! The hybrid of a sparse model and BM25 ranks better than either (README
//! "Ranking"); whether it teaches better is a recipe's question (MODEL_CARD,
//! run 8: not at w = 0.7, τ = 0.1).

use std::collections::{HashMap, HashSet};

use crate::index::bm25::analyzed_terms as terms;

const K1: f32 = 1.2;
const B: f32 = 0.75;

/// Document frequencies and the average length over a set of documents.
pub struct Bm25Stats {
    df: HashMap<String, u32>,
    docs: usize,
    avg_len: f32,
}

impl Bm25Stats {
    /// Count over `docs`, each distinct text once.
    pub fn count<'a>(docs: impl IntoIterator<Item = &'a str>) -> Self {
        let (mut df, mut n, mut total) = (HashMap::<String, u32>::new(), 0usize, 0usize);
        let mut seen = HashSet::new();
        for d in docs {
            if !seen.insert(d) {
                continue;
            }
            let t = terms(d);
            total += t.len();
            n += 1;
            for term in t.into_iter().collect::<HashSet<_>>() {
                *df.entry(term).or_default() += 1;
            }
        }
        Self {
            df,
            docs: n,
            avg_len: total as f32 / n.max(1) as f32,
        }
    }

    fn idf(&self, term: &str) -> f32 {
        let df = self.df.get(term).copied().unwrap_or(0) as f32;
        (1.0 + (self.docs as f32 - df + 0.5) / (df + 0.5)).ln()
    }

    /// BM25 of every (query, document) pair, row-major `[queries × docs]`.
    pub fn scores(&self, queries: &[&str], docs: &[&str]) -> Vec<f32> {
        let docs: Vec<(HashMap<String, f32>, f32)> = docs
            .iter()
            .map(|d| {
                let t = terms(d);
                let len = t.len() as f32;
                let mut tf = HashMap::new();
                for term in t {
                    *tf.entry(term).or_insert(0.0) += 1.0;
                }
                (tf, len)
            })
            .collect();
        let avg = self.avg_len.max(1e-6);
        let mut out = Vec::with_capacity(queries.len() * docs.len());
        for q in queries {
            let q: Vec<(String, f32)> = terms(q)
                .into_iter()
                .map(|t| {
                    let idf = self.idf(&t);
                    (t, idf)
                })
                .collect();
            for (tf, len) in &docs {
                let norm = K1 * (1.0 - B + B * len / avg);
                let score = q
                    .iter()
                    .filter_map(|(t, idf)| tf.get(t).map(|&f| idf * f * (K1 + 1.0) / (f + norm)))
                    .sum();
                out.push(score);
            }
        }
        out
    }
}

/// Fuse, per query row of `docs` columns, `teacher` with `bm25` in place:
/// both rows min-max normalised (a row of equal scores is all 0), then
/// `weight · bm25 + (1 − weight) · teacher`.
pub fn fuse(teacher: &mut [f32], bm25: &[f32], docs: usize, weight: f32) {
    fn normalise(row: &[f32]) -> impl Iterator<Item = f32> + '_ {
        let lo = row.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let span = hi - lo;
        row.iter()
            .map(move |&x| if span > 0.0 { (x - lo) / span } else { 0.0 })
    }
    for (t, b) in teacher
        .chunks_mut(docs.max(1))
        .zip(bm25.chunks(docs.max(1)))
    {
        let fused: Vec<f32> = normalise(t)
            .zip(normalise(b))
            .map(|(t, b)| weight * b + (1.0 - weight) * t)
            .collect();
        t.copy_from_slice(&fused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::beir::Document;
    use crate::index::bm25::Bm25Index;

    const DOCS: [&str; 6] = [
        "Aspirin lowers the risk of heart attacks in adults",
        "Heart attacks and strokes: aspirin, statins and their risks",
        "The violin sonatas of the baroque period",
        "Statins lower cholesterol; cholesterol and heart disease",
        "A heart, a heart, a heart: the poetry of the heart",
        "Risk factors for strokes in older adults",
    ];

    /// Over the same documents, the scores are the BM25 index's own (short
    /// documents, whose lengths the index stores exactly).
    #[test]
    fn scores_are_the_bm25_systems() {
        let dir = tempfile::tempdir().unwrap();
        let docs: Vec<Document> = DOCS
            .iter()
            .enumerate()
            .map(|(i, t)| Document {
                id: format!("d{i}"),
                title: String::new(),
                text: t.to_string(),
            })
            .collect();
        Bm25Index::build(&dir.path().join("bm25"), &docs).unwrap();
        let index = Bm25Index::open(&dir.path().join("bm25")).unwrap();
        let stats = Bm25Stats::count(DOCS.iter().copied().chain([DOCS[0]]));
        for q in [
            "aspirin heart attacks",
            "stroke risk in adults",
            "heart heart",
        ] {
            let ours = stats.scores(&[q], &DOCS);
            let hits = index.search(q, 10).unwrap();
            assert!(!hits.is_empty(), "{q}");
            for (d, s) in ours.iter().enumerate() {
                let want = hits
                    .iter()
                    .find(|h| h.ordinal == d)
                    .map_or(0.0, |h| h.score);
                assert!(
                    (s - want).abs() < 1e-4 * want.max(1.0),
                    "{q} / d{d}: {s} vs {want}"
                );
            }
        }
    }

    #[test]
    fn fusion_normalises_each_query_row() {
        let mut teacher = vec![2.0, 4.0, 3.0, 7.0, 7.0, 7.0];
        let bm25 = [0.0, 5.0, 10.0, 1.0, 3.0, 2.0];
        fuse(&mut teacher, &bm25, 3, 0.25);
        let want = [0.0, 0.75 + 0.125, 0.375 + 0.25, 0.0, 0.25, 0.125];
        for (g, w) in teacher.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{teacher:?}");
        }
    }
}
