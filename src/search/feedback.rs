//! Pseudo-relevance feedback in the model's vocabulary (Rocchio's method),
//! applied at search time after the prior: the query, as its prior weighs
//! it, is ranked once; the mean vector of its top documents (each weighed
//! by its score over the first one's), every entry times the index's idf to
//! a power, cut to its heaviest terms, is added to it; the sum is ranked
//! again. A sparse query that dropped words (or never expanded to a
//! collection's own vocabulary) borrows them from the documents it already
//! finds, and the idf keeps the documents' frequent words out. What was
//! added stays separate (`Feedback`), so every explanation can say which
//! part of a term's weight came from the documents.

use std::collections::HashMap;

use serde::Serialize;

use super::{Backend, Hit, IndexError, LsrIndex, QueryPrior};
use crate::encode::SparseVec;
pub use crate::model::encoding::QueryFeedback;
use crate::model::ModelRef;

/// How a query is scored over an index: the prior on its terms and the
/// pseudo-relevance feedback. A field left `None` is the model's own — the
/// prior and feedback its adapter records — or none for an inference-free
/// query, whose table weights already are the query's. `search`, `eval`,
/// `bench search`, `compare` and the explorer all resolve them here, so a
/// model scores the same everywhere.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QueryScoring {
    pub prior: Option<QueryPrior>,
    pub feedback: Option<QueryFeedback>,
}

impl QueryScoring {
    /// The prior and feedback a query of `model` is ranked with.
    pub fn resolve(self, model: ModelRef<'_>, inference_free: bool) -> (QueryPrior, QueryFeedback) {
        let prior = self.prior.unwrap_or_else(|| match inference_free {
            true => QueryPrior::None,
            false => model.query_prior(),
        });
        let feedback = self.feedback.unwrap_or_else(|| match inference_free {
            true => QueryFeedback::None,
            false => model.query_feedback(),
        });
        (prior, feedback)
    }
}

/// What feedback added to one query.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Feedback {
    /// The documents (ordinals) it came from, best first.
    pub docs: Vec<usize>,
    /// The weights it added (times the feedback weight and the idf factor).
    pub terms: SparseVec,
}

impl Feedback {
    /// The query as scored: `weighed` (the expansion under its prior) plus
    /// the feedback's terms.
    pub fn apply(&self, weighed: &SparseVec) -> SparseVec {
        if self.terms.is_empty() {
            return weighed.clone();
        }
        let mut sum: HashMap<u32, f32> = weighed.iter().collect();
        for (id, w) in self.terms.iter() {
            *sum.entry(id).or_default() += w;
        }
        SparseVec::from_pairs(sum.into_iter().collect())
    }
}

impl QueryFeedback {
    /// The feedback a first ranking `first` gives, with the index's
    /// `vectors` and `idf` (see [`QueryFeedback::Rocchio`]); ties by id.
    pub fn from_ranking(self, first: &[Hit], vectors: &[SparseVec], idf: &[f32]) -> Feedback {
        let QueryFeedback::Rocchio {
            docs,
            weight,
            terms,
            idf_power,
        } = self
        else {
            return Feedback::default();
        };
        let top: Vec<&Hit> = first
            .iter()
            .filter(|h| h.ordinal < vectors.len() && h.score > 0.0)
            .take(docs)
            .collect();
        let Some(best) = top.first().map(|h| h.score) else {
            return Feedback::default();
        };
        let total: f32 = top.iter().map(|h| h.score / best).sum();
        let mut mean: HashMap<u32, f32> = HashMap::new();
        for h in &top {
            let share = h.score / best / total;
            for (id, w) in vectors[h.ordinal].iter() {
                *mean.entry(id).or_default() += share * w;
            }
        }
        // The prior's idf factor, at the feedback's own power (0 allowed).
        let idf_factor = QueryPrior::Idf { power: idf_power };
        let mut entries: Vec<(u32, f32)> = mean
            .into_iter()
            .map(|(id, w)| (id, weight * w * idf_factor.factor(idf, id)))
            .filter(|&(_, w)| w > 0.0 && w.is_finite())
            .collect();
        entries.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        entries.truncate(terms);
        Feedback {
            docs: top.iter().map(|h| h.ordinal).collect(),
            terms: SparseVec::from_pairs(entries),
        }
    }
}

impl LsrIndex {
    /// A query's expansion as scored under `prior` and `feedback`: weighed
    /// by the prior, then (with feedback) ranked once by `backend` and
    /// given what its top documents lend it. Returns the scored query and
    /// the feedback on its own.
    pub fn scored_query(
        &self,
        expansion: &SparseVec,
        prior: QueryPrior,
        feedback: QueryFeedback,
        backend: Backend,
    ) -> Result<(SparseVec, Feedback), IndexError> {
        let (scored, fb, _) =
            self.scored_query_and_first(expansion, prior, feedback, backend, 0)?;
        Ok((scored, fb))
    }

    /// As [`LsrIndex::scored_query`], also returning the first ranking the
    /// feedback came from (the query under its prior alone), kept to
    /// `depth` hits (at least the feedback's documents); empty without
    /// feedback. A caller that also reports the ranking without feedback
    /// ranks once instead of twice.
    pub fn scored_query_and_first(
        &self,
        expansion: &SparseVec,
        prior: QueryPrior,
        feedback: QueryFeedback,
        backend: Backend,
        depth: usize,
    ) -> Result<(SparseVec, Feedback, Vec<Hit>), IndexError> {
        let weighed = self.weigh(expansion, prior);
        let QueryFeedback::Rocchio { docs, .. } = feedback else {
            return Ok((weighed, Feedback::default(), Vec::new()));
        };
        let first = self.search(&weighed, depth.max(docs), backend)?;
        let fb = feedback.from_ranking(&first, &self.vectors, &self.idf);
        Ok((fb.apply(&weighed), fb, first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(ordinal: usize, score: f32) -> Hit {
        Hit {
            ordinal,
            doc_id: ordinal.to_string(),
            score,
        }
    }

    fn rocchio(docs: usize, weight: f32, terms: usize, idf_power: f32) -> QueryFeedback {
        QueryFeedback::Rocchio {
            docs,
            weight,
            terms,
            idf_power,
        }
    }

    #[test]
    fn feedback_parses_prints_and_refuses_by_name() {
        for s in [
            "none",
            "rocchio:5:0.75:30:1",
            "rocchio:1:0.25:1:0",
            "rocchio:1000:100:10000:4",
        ] {
            let f: QueryFeedback = s.parse().expect(s);
            assert_eq!(f.to_string(), s);
        }
        assert_eq!("rocchio".parse(), Ok(QueryFeedback::ROCCHIO));
        assert_eq!("rocchio:1:0.1:30".parse(), Ok(QueryFeedback::ROCCHIO));
        for bad in [
            "rocchio:",
            "rocchio:0:1:30",
            "rocchio:5:0:30",
            "rocchio:5:-1:30",
            "rocchio:5:NaN:30",
            "rocchio:5:1:0",
            "rocchio:5:1",
            "rocchio:5:1:30:2:1",
            "rocchio:5:1:30:-1",
            "rocchio:5:1:30:5",
            "rocchio:1001:1:30",
            "rocchio:5:101:30",
            "rm3",
            "",
        ] {
            assert!(bad.parse::<QueryFeedback>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rocchio_adds_the_score_weighted_mean_of_the_top_documents_heaviest_terms() {
        let vectors = vec![
            SparseVec::from_pairs(vec![(1, 2.0), (2, 1.0)]),
            SparseVec::from_pairs(vec![(1, 1.0), (3, 3.0)]),
            SparseVec::from_pairs(vec![(4, 9.0)]),
        ];
        let idf = [1.0f32; 5];
        // Document 1 scores 4, document 0 half that: shares 2/3 and 1/3;
        // the third document is ranked below the feedback depth.
        let first = [hit(1, 4.0), hit(0, 2.0), hit(2, 1.0)];
        let f = rocchio(2, 0.5, 2, 1.0).from_ranking(&first, &vectors, &idf);
        assert_eq!(f.docs, vec![1, 0]);
        // Means: term 1 2/3·1 + 1/3·2 = 4/3, term 2 1/3, term 3 2; the two
        // heaviest, times 0.5.
        assert_eq!(f.terms.ids, vec![1, 3]);
        for (got, want) in f.terms.weights.iter().zip([2.0 / 3.0, 1.0]) {
            assert!((got - want).abs() < 1e-6, "{:?}", f.terms);
        }
        let q = SparseVec::from_pairs(vec![(1, 1.0), (5, 2.0)]);
        let scored = f.apply(&q);
        assert_eq!(scored.ids, vec![1, 3, 5]);
        assert!((scored.weights[0] - 5.0 / 3.0).abs() < 1e-6);
        // No feedback, or no first ranking: the query unchanged.
        let none = QueryFeedback::None.from_ranking(&first, &vectors, &idf);
        assert_eq!(none.apply(&q), q);
        let empty = rocchio(2, 0.5, 2, 1.0).from_ranking(&[], &vectors, &idf);
        assert_eq!(empty.apply(&q), q);
        assert!(empty.docs.is_empty());
    }

    #[test]
    fn idf_weighs_feedback_terms_before_they_are_cut() {
        let vectors = vec![SparseVec::from_pairs(vec![(0, 2.0), (1, 1.0)])];
        // Term 0 is in every document (low idf), term 1 is rare.
        let idf = [0.1f32, 3.0];
        let first = [hit(0, 1.0)];
        let f = rocchio(1, 1.0, 1, 1.0).from_ranking(&first, &vectors, &idf);
        assert_eq!(f.terms.ids, vec![1]);
        assert!((f.terms.weights[0] - 3.0).abs() < 1e-6);
        // Power 0: the documents' own weights decide.
        let f = rocchio(1, 1.0, 1, 0.0).from_ranking(&first, &vectors, &idf);
        assert_eq!((f.terms.ids[0], f.terms.weights[0]), (0, 2.0));
        // Power 2: idf squared.
        let f = rocchio(1, 1.0, 2, 2.0).from_ranking(&first, &vectors, &idf);
        assert!((f.terms.get(1) - 9.0).abs() < 1e-5 && (f.terms.get(0) - 0.02).abs() < 1e-6);
    }
}
