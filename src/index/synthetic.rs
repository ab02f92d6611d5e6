//! Synthetic collections for measuring search at scale: N document vectors
//! drawn to match a real index's term statistics — the number of active
//! terms per document, how many documents each term occurs in, and each
//! term's own impact distribution — written as a complete csplade index
//! (exact vectors, tantivy impacts, an empty-text BM25 side, metadata).
//!
//! Terms are not drawn independently: real expansions co-occur by topic,
//! which is what clustered indexes such as Seismic exploit. Each synthetic
//! document starts from a random source document, keeps each of its terms
//! with probability one half, and is filled up to its drawn length with
//! terms drawn by document frequency. Both halves follow the source's
//! document frequencies, so the marginals match while topics survive.

use std::collections::HashSet;
use std::path::Path;

use crate::data::beir::Document;
use crate::encode::SparseVec;
use crate::rng::SplitMix;

use super::{IndexError, IndexMeta};

/// What is drawn from: the source's per-document lengths, each term's
/// impacts (its posting list's weights), and the cumulative document
/// frequencies for drawing terms in proportion to them.
pub struct TermStatistics {
    lengths: Vec<u32>,
    weights: Vec<Vec<f32>>,
    cumulative_df: Vec<u64>,
    /// Terms that occur at all: no document can have more distinct ones.
    terms_used: usize,
}

impl TermStatistics {
    pub fn of(vectors: &[SparseVec], vocab: usize) -> Self {
        let mut weights = vec![Vec::new(); vocab];
        for v in vectors {
            for (t, w) in v.iter() {
                if let Some(list) = weights.get_mut(t as usize) {
                    list.push(w);
                }
            }
        }
        let mut cumulative_df = Vec::with_capacity(vocab);
        let mut acc = 0u64;
        for list in &weights {
            acc += list.len() as u64;
            cumulative_df.push(acc);
        }
        Self {
            lengths: vectors.iter().map(|v| v.active() as u32).collect(),
            terms_used: weights.iter().filter(|w| !w.is_empty()).count(),
            weights,
            cumulative_df,
        }
    }

    /// Postings in the source (the sum of its document frequencies).
    pub fn postings(&self) -> u64 {
        self.cumulative_df.last().copied().unwrap_or(0)
    }

    /// One document: a length drawn from the source's; half of a random
    /// source document's terms (see the module notes), then distinct terms
    /// drawn by document frequency up to that length; each weight drawn from
    /// that term's own postings.
    pub fn draw(&self, source: &[SparseVec], rng: &mut SplitMix) -> SparseVec {
        let total = self.postings();
        if total == 0 || self.lengths.is_empty() {
            return SparseVec::default();
        }
        let len = (self.lengths[(rng.next_u64() % self.lengths.len() as u64) as usize] as usize)
            .min(self.terms_used);
        let mut seen = HashSet::with_capacity(len);
        let mut pairs = Vec::with_capacity(len);
        let weight = |t: usize, rng: &mut SplitMix| {
            let list = &self.weights[t];
            list[(rng.next_u64() % list.len() as u64) as usize]
        };
        if !source.is_empty() {
            let seed = &source[(rng.next_u64() % source.len() as u64) as usize];
            for &t in &seed.ids {
                let t = t as usize;
                if pairs.len() < len && t < self.weights.len() && rng.next_u64().is_multiple_of(2) {
                    seen.insert(t);
                    pairs.push((t as u32, weight(t, rng)));
                }
            }
        }
        while pairs.len() < len {
            let r = rng.next_u64() % total;
            let t = self.cumulative_df.partition_point(|&c| c <= r);
            if !seen.insert(t) {
                continue;
            }
            pairs.push((t as u32, weight(t, rng)));
        }
        SparseVec::from_pairs(pairs)
    }
}

/// Draw `n` documents (deterministic for a seed).
pub fn draw_collection(
    stats: &TermStatistics,
    source: &[SparseVec],
    n: usize,
    seed: u64,
) -> Vec<SparseVec> {
    let mut rng = SplitMix::new(seed);
    (0..n).map(|_| stats.draw(source, &mut rng)).collect()
}

/// Write `vectors` as a complete index at `out` (staged, then renamed into
/// place), with the source index's model, encoding and scale; documents are
/// named `s0`, `s1`, … and have no text.
pub fn write_index(
    out: &Path,
    source_dir: &Path,
    source: &IndexMeta,
    vectors: &[SparseVec],
    description: &str,
) -> Result<IndexMeta, IndexError> {
    use crate::data::output::{self, SYNTHETIC_INDEX};
    let t0 = std::time::Instant::now();
    let _lock = output::lock::acquire(out, "bench seismic")?;
    output::check(out, &SYNTHETIC_INDEX, &[source_dir])?;
    let stage = super::build::staging_dir(out);
    output::fresh_stage(&stage, &SYNTHETIC_INDEX, &[source_dir])?;
    let docs: Vec<Document> = (0..vectors.len())
        .map(|i| Document {
            id: format!("s{i}"),
            title: String::new(),
            text: String::new(),
        })
        .collect();
    let meta = IndexMeta {
        documents: vectors.len(),
        corpus: description.to_string(),
        corpus_fingerprint: format!("synthetic-{}", vectors.len()),
        encoded_tokens: 0,
        passages: None,
        ..source.clone()
    };
    super::build::finish(&stage, out, &docs, vectors, meta, t0, |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_documents_follow_the_source_statistics() {
        // A source where term 7 is in every document with weight 2.0, term 3
        // in half of them with weight 0.5, and documents have 1 or 2 terms.
        let source: Vec<SparseVec> = (0..100)
            .map(|i| {
                let mut p = vec![(7, 2.0)];
                if i % 2 == 0 {
                    p.push((3, 0.5));
                }
                SparseVec::from_pairs(p)
            })
            .collect();
        let stats = TermStatistics::of(&source, 10);
        assert_eq!(stats.postings(), 150);
        let drawn = draw_collection(&stats, &source, 4000, 1);
        let mut df = [0usize; 10];
        for v in &drawn {
            assert!((1..=2).contains(&v.active()));
            for (t, w) in v.iter() {
                df[t as usize] += 1;
                assert_eq!(w, if t == 7 { 2.0 } else { 0.5 });
            }
        }
        let two = drawn.iter().filter(|v| v.active() == 2).count() as f64 / 4000.0;
        assert!((two - 0.5).abs() < 0.05, "share of 2-term documents {two}");
        // A single-term document: from a two-term source document (ids 3, 7)
        // it keeps 3 with p 1/2, else 7 with p 1/2, else draws 7 with p 2/3
        // (5/12 for 7); from a one-term source it keeps 7 with p 1/2, else
        // draws it with p 2/3 (5/6). Averaged: 5/8.
        let single7 = drawn
            .iter()
            .filter(|v| v.active() == 1 && v.get(7) > 0.0)
            .count() as f64;
        let single = drawn.iter().filter(|v| v.active() == 1).count() as f64;
        assert!(
            (single7 / single - 0.625).abs() < 0.04,
            "{}",
            single7 / single
        );
        assert_eq!(
            draw_collection(&stats, &source, 50, 9),
            draw_collection(&stats, &source, 50, 9)
        );
        // Without a source to start from, terms are drawn independently.
        let independent = draw_collection(&stats, &[], 2000, 2);
        let share7 = independent.iter().filter(|v| v.get(7) > 0.0).count() as f64 / 2000.0;
        assert!(share7 > 0.8, "term 7 in {share7} of documents");
    }
}
