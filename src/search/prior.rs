//! A lexical prior on the query side, applied at search time: each term of
//! a query's expansion is multiplied by its inverse document frequency in
//! the index, raised to a power, `q_v · idf(v)^p` with
//! `idf(v) = ln((N + 1) / (df(v) + 0.5))` and df counted over the index's
//! own document vectors. This is what BM25's idf does for a word: frequent
//! terms (" the", " in", ".") that the model still weighs like content words
//! are pushed down. The prior changes only the query vector, so every scorer
//! (exact, tantivy, Seismic) and every explanation sees the same weights.

use crate::encode::{Contribution, SparseVec};
pub use crate::model::encoding::QueryPrior;

impl QueryPrior {
    /// The factor term `id` is multiplied by, given the index's idf table.
    pub fn factor(self, idf: &[f32], id: u32) -> f32 {
        match self {
            QueryPrior::None => 1.0,
            QueryPrior::Idf { power } => {
                let x = idf.get(id as usize).copied().unwrap_or(0.0);
                if power == 1.0 {
                    x
                } else {
                    x.powf(power)
                }
            }
        }
    }

    /// The query as scored: every weight times its factor (terms whose
    /// factor is 0 are dropped).
    pub fn apply(self, query: &SparseVec, idf: &[f32]) -> SparseVec {
        if self == QueryPrior::None {
            return query.clone();
        }
        SparseVec::from_pairs(
            query
                .iter()
                .map(|(id, w)| (id, w * self.factor(idf, id)))
                .collect(),
        )
    }
}

/// Per-term contributions of `query` scored under `prior` and the terms
/// `feedback` added (`search::feedback`; empty without it) against `doc`,
/// largest product first (the factor and the feedback shown beside each
/// weight).
pub fn explain(
    query: &SparseVec,
    doc: &SparseVec,
    prior: QueryPrior,
    idf: &[f32],
    feedback: &SparseVec,
) -> Vec<Contribution> {
    if prior.is_none() && feedback.is_empty() {
        return query.contributions(doc);
    }
    let mut out: Vec<Contribution> = doc
        .iter()
        .filter_map(|(id, doc_weight)| {
            let (query_weight, feedback) = (query.get(id), feedback.get(id));
            if query_weight == 0.0 && feedback == 0.0 {
                return None;
            }
            let prior = prior.factor(idf, id);
            Some(Contribution {
                id,
                query_weight,
                prior,
                feedback,
                doc_weight,
                product: (query_weight * prior + feedback) * doc_weight,
            })
        })
        .collect();
    out.sort_by(|a, b| b.product.total_cmp(&a.product).then(a.id.cmp(&b.id)));
    out
}

/// `ln((N + 1) / (df + 0.5))` for every vocabulary entry, from the document
/// frequencies `df` of a collection of `documents` vectors. A term no
/// document has gets the largest value, which never matters: it matches
/// nothing.
pub fn idf_table(df: &[u32], documents: usize) -> Vec<f32> {
    let n = documents as f64 + 1.0;
    df.iter()
        .map(|&d| (n / (d as f64 + 0.5)).ln() as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priors_parse_print_and_refuse_by_name() {
        for s in ["none", "idf", "idf:0.5", "idf:2"] {
            let p: QueryPrior = s.parse().expect(s);
            assert_eq!(p.to_string(), s);
        }
        assert_eq!("idf:1".parse(), Ok(QueryPrior::Idf { power: 1.0 }));
        for bad in [
            "idf:0", "idf:-1", "idf:NaN", "idf:inf", "idf:5", "bm25", "idf:",
        ] {
            assert!(bad.parse::<QueryPrior>().is_err(), "{bad}");
        }
    }

    #[test]
    fn idf_is_bm25s_and_the_prior_multiplies_each_term() {
        // 3 documents: term 0 in all, term 1 in one, term 2 in none.
        let idf = idf_table(&[3, 1, 0], 3);
        assert!((idf[0] - (4.0f32 / 3.5).ln()).abs() < 1e-6);
        assert!((idf[1] - (4.0f32 / 1.5).ln()).abs() < 1e-6);
        assert!((idf[2] - (4.0f32 / 0.5).ln()).abs() < 1e-6);
        let q = SparseVec::from_pairs(vec![(0, 2.0), (1, 1.0)]);
        let w = QueryPrior::Idf { power: 1.0 }.apply(&q, &idf);
        assert_eq!(w.ids, vec![0, 1]);
        assert!((w.weights[0] - 2.0 * idf[0]).abs() < 1e-6);
        assert!((w.weights[1] - idf[1]).abs() < 1e-6);
        let h = QueryPrior::Idf { power: 0.5 }.apply(&q, &idf);
        assert!((h.weights[1] - idf[1].sqrt()).abs() < 1e-6);
        assert_eq!(QueryPrior::None.apply(&q, &idf), q);
        // The rarer term now outweighs the common one it trailed.
        assert!(w.weights[1] > w.weights[0]);
    }

    #[test]
    fn explained_products_add_up_to_the_weighted_score() {
        let idf = idf_table(&[5, 1, 2, 0], 6);
        let q = SparseVec::from_pairs(vec![(0, 1.5), (1, 0.5), (2, 1.0)]);
        let d = SparseVec::from_pairs(vec![(0, 2.0), (1, 1.0), (3, 4.0)]);
        let prior = QueryPrior::Idf { power: 1.0 };
        let c = explain(&q, &d, prior, &idf, &SparseVec::default());
        assert_eq!(c.len(), 2);
        let total: f32 = c.iter().map(|c| c.product).sum();
        assert!((total - prior.apply(&q, &idf).dot(&d)).abs() < 1e-6);
        // The rare term (df 1) now leads although its expansion weight is lower.
        assert_eq!((c[0].id, c[0].query_weight), (1, 0.5));
        assert_eq!(c[0].prior, idf[1]);
        assert!(
            explain(&q, &d, QueryPrior::None, &idf, &SparseVec::default())
                .iter()
                .all(|c| c.prior == 1.0)
        );
    }
}
