//! Scoring documents by their best passage (MaxP): the passages of an
//! index built with `--passages`, held with their own exact postings; a
//! document's score is the largest of its first read's and its passages'.

use super::postings::Postings;
use super::{LsrIndex, QueryPrior, StoredDoc};
use crate::encode::SparseVec;
use crate::index::passages::PassageSpec;

/// The passages of an index, grouped by document.
pub struct PassageIndex {
    pub spec: PassageSpec,
    /// Each passage's document ordinal (ascending).
    owners: Vec<u32>,
    vectors: Vec<SparseVec>,
    postings: Postings,
    /// Passages of document `d`: `starts[d]..starts[d + 1]`.
    starts: Vec<usize>,
}

impl PassageIndex {
    /// `passages` as read by [`crate::index::passages::read`]: document
    /// order, each document below `documents`.
    pub fn new(
        spec: PassageSpec,
        passages: Vec<(usize, SparseVec)>,
        documents: usize,
        vocab: usize,
    ) -> Self {
        let (owners, vectors): (Vec<u32>, Vec<SparseVec>) =
            passages.into_iter().map(|(d, v)| (d as u32, v)).unzip();
        let mut starts = vec![0usize; documents + 1];
        for &d in &owners {
            starts[d as usize + 1] += 1;
        }
        for d in 0..documents {
            starts[d + 1] += starts[d];
        }
        let postings = Postings::new(vectors.iter(), vocab);
        Self {
            spec,
            owners,
            vectors,
            postings,
            starts,
        }
    }

    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// Raise each document's score in `scores` to its best passage's.
    pub fn raise(&self, query: &SparseVec, scores: &mut [f32]) {
        let acc = self.postings.scores(query, self.vectors.len());
        for (&d, s) in self.owners.iter().zip(acc) {
            if let Some(best) = scores.get_mut(d as usize) {
                *best = best.max(s);
            }
        }
    }

    /// Where document `ordinal`'s passages lie in `vectors`.
    fn range(&self, ordinal: usize) -> std::ops::Range<usize> {
        match (self.starts.get(ordinal), self.starts.get(ordinal + 1)) {
            (Some(&a), Some(&b)) => a..b,
            _ => 0..0,
        }
    }

    /// Document `ordinal`'s passages (1-based, as the explorer names them).
    pub fn of(&self, ordinal: usize) -> impl Iterator<Item = (usize, &SparseVec)> + '_ {
        self.vectors[self.range(ordinal)]
            .iter()
            .enumerate()
            .map(|(k, v)| (k + 1, v))
    }

    /// How many passages document `ordinal` has.
    pub fn count(&self, ordinal: usize) -> usize {
        self.range(ordinal).len()
    }

    /// The passage of document `ordinal` that `score` rates highest, if
    /// one rates above `first` (the document's first read).
    pub fn best(
        &self,
        ordinal: usize,
        first: f32,
        score: impl Fn(&SparseVec) -> f32,
    ) -> Option<(usize, f32)> {
        let mut best: Option<(usize, f32)> = None;
        for (k, v) in self.of(ordinal) {
            let s = score(v);
            if s > best.map_or(first, |b| b.1) {
                best = Some((k, s));
            }
        }
        best
    }

    /// Passage `k` (1-based) of document `ordinal`.
    pub fn vector(&self, ordinal: usize, k: usize) -> Option<&SparseVec> {
        self.vectors[self.range(ordinal)].get(k.checked_sub(1)?)
    }
}

impl LsrIndex {
    /// The passage (1-based) and its score when one of document
    /// `ordinal`'s passages scores `query` (under `prior`, plus the
    /// `feedback` terms) above its first read, as the document was ranked.
    pub fn best_passage(
        &self,
        query: &SparseVec,
        prior: QueryPrior,
        feedback: &SparseVec,
        ordinal: usize,
    ) -> Option<(usize, f32)> {
        let passages = self.passages.as_ref()?;
        let weighed = self.weigh(query, prior);
        let score = |v: &SparseVec| weighed.dot(v) + feedback.dot(v);
        let first = self.vectors.get(ordinal).map_or(0.0, score);
        passages.best(ordinal, first, score)
    }

    /// The words of passage `k` (1-based) of `doc` (as [`LsrIndex::document`]
    /// returns it), as they were encoded after its title.
    pub fn passage_text(&self, doc: &StoredDoc, k: usize) -> Option<String> {
        self.passages.as_ref()?.spec.passage_words(&doc.text, k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pairs: &[(u32, f32)]) -> SparseVec {
        SparseVec::from_pairs(pairs.to_vec())
    }

    #[test]
    fn a_document_scores_as_its_best_passage_and_names_it() {
        let spec = "2:1:1".parse().unwrap();
        let p = PassageIndex::new(
            spec,
            vec![
                (0, v(&[(1, 1.0)])),
                (0, v(&[(1, 3.0), (2, 1.0)])),
                (2, v(&[(2, 5.0)])),
            ],
            3,
            4,
        );
        assert_eq!((p.len(), p.count(0), p.count(1), p.count(2)), (3, 2, 0, 1));
        let q = v(&[(1, 1.0), (2, 0.5)]);
        let mut scores = vec![2.0, 1.0, 0.0];
        p.raise(&q, &mut scores);
        assert_eq!(scores, vec![3.5, 1.0, 2.5]);
        let dot = |d: &SparseVec| q.dot(d);
        assert_eq!(p.best(0, 2.0, dot), Some((2, 3.5)));
        assert_eq!(p.best(0, 4.0, dot), None);
        assert_eq!(p.best(1, 1.0, dot), None);
        assert_eq!(p.vector(2, 1), Some(&v(&[(2, 5.0)])));
        assert_eq!(p.vector(2, 2), None);
        assert_eq!(p.vector(9, 1), None);
    }
}
