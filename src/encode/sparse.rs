//! `SparseVec`: a text's expansion — vocabulary ids with positive impacts —
//! plus the operations retrieval needs (dot product, top terms, per-term
//! contributions, statistics).

use serde::{Deserialize, Serialize};

/// Sparse vector over the vocabulary; ids strictly increasing, weights > 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseVec {
    pub ids: Vec<u32>,
    pub weights: Vec<f32>,
}

/// One term's share of a query–document score:
/// `product = (query_weight × prior + feedback) × doc_weight`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Contribution {
    pub id: u32,
    /// The weight the query's expansion gives the term.
    pub query_weight: f32,
    /// The factor a search-time prior multiplies it by (1 without one).
    pub prior: f32,
    /// The weight pseudo-relevance feedback added (0 without it).
    pub feedback: f32,
    pub doc_weight: f32,
    pub product: f32,
}

impl SparseVec {
    /// Keep the strictly positive entries of a dense vector.
    pub fn from_dense(dense: &[f32]) -> Self {
        let mut ids = Vec::new();
        let mut weights = Vec::new();
        for (i, &w) in dense.iter().enumerate() {
            if w > 0.0 {
                ids.push(i as u32);
                weights.push(w);
            }
        }
        Self { ids, weights }
    }

    /// From (id, weight) pairs in any order; non-positive weights dropped,
    /// duplicate ids keep the larger weight.
    pub fn from_pairs(mut pairs: Vec<(u32, f32)>) -> Self {
        pairs.sort_by_key(|p| p.0);
        let mut out = Self::default();
        for (id, w) in pairs {
            if w <= 0.0 || !w.is_finite() {
                continue;
            }
            if out.ids.last() == Some(&id) {
                let last = out.weights.len() - 1;
                out.weights[last] = out.weights[last].max(w);
            } else {
                out.ids.push(id);
                out.weights.push(w);
            }
        }
        out
    }

    /// The dense vector over a vocabulary of `vocab` entries.
    pub fn to_dense(&self, vocab: usize) -> Vec<f32> {
        let mut d = vec![0f32; vocab];
        for (&i, &w) in self.ids.iter().zip(&self.weights) {
            if let Some(x) = d.get_mut(i as usize) {
                *x = w;
            }
        }
        d
    }

    /// Number of active (non-zero) vocabulary dimensions.
    pub fn active(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn l1(&self) -> f32 {
        self.weights.iter().sum()
    }

    pub fn get(&self, id: u32) -> f32 {
        match self.ids.binary_search(&id) {
            Ok(i) => self.weights[i],
            Err(_) => 0.0,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, f32)> + '_ {
        self.ids.iter().copied().zip(self.weights.iter().copied())
    }

    /// The term-wise maximum of two vectors (max pooling across windows of
    /// one text).
    pub fn max(&self, other: &SparseVec) -> SparseVec {
        Self::from_pairs(self.iter().chain(other.iter()).collect())
    }

    /// Dot product, the CSPLADE relevance score.
    pub fn dot(&self, other: &SparseVec) -> f32 {
        let (mut i, mut j, mut s) = (0, 0, 0f32);
        while i < self.ids.len() && j < other.ids.len() {
            match self.ids[i].cmp(&other.ids[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    s += self.weights[i] * other.weights[j];
                    i += 1;
                    j += 1;
                }
            }
        }
        s
    }

    /// Cosine similarity (for comparing two expansions of one text).
    pub fn cosine(&self, other: &SparseVec) -> f32 {
        let n = (self.dot(self) * other.dot(other)).sqrt();
        if n == 0.0 {
            0.0
        } else {
            self.dot(other) / n
        }
    }

    /// The `k` heaviest terms, heaviest first (ties by id); `k = 0` means all.
    pub fn top_k(&self, k: usize) -> Vec<(u32, f32)> {
        let mut v: Vec<(u32, f32)> = self.iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if k > 0 {
            v.truncate(k);
        }
        v
    }

    /// Per-term contributions to `self · doc`, largest product first.
    pub fn contributions(&self, doc: &SparseVec) -> Vec<Contribution> {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < self.ids.len() && j < doc.ids.len() {
            match self.ids[i].cmp(&doc.ids[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    let (q, d) = (self.weights[i], doc.weights[j]);
                    out.push(Contribution {
                        id: self.ids[i],
                        query_weight: q,
                        prior: 1.0,
                        feedback: 0.0,
                        doc_weight: d,
                        product: q * d,
                    });
                    i += 1;
                    j += 1;
                }
            }
        }
        out.sort_by(|a, b| b.product.total_cmp(&a.product).then(a.id.cmp(&b.id)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_and_contributions() {
        let q = SparseVec::from_pairs(vec![(5, 2.0), (1, 1.0), (9, 0.5)]);
        let d = SparseVec::from_pairs(vec![(1, 3.0), (9, 4.0), (7, 1.0)]);
        assert_eq!(q.ids, vec![1, 5, 9]);
        assert_eq!(q.dot(&d), 1.0 * 3.0 + 0.5 * 4.0);
        let c = q.contributions(&d);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].id, 1);
        assert_eq!(c[0].product, 3.0);
        assert_eq!(c[1].product, 2.0);
        let total: f32 = c.iter().map(|c| c.product).sum();
        assert_eq!(total, q.dot(&d));
    }

    #[test]
    fn top_k_and_dense() {
        let v = SparseVec::from_dense(&[0.0, 3.0, -1.0, 1.0, 2.0]);
        assert_eq!(v.active(), 3);
        assert_eq!(v.top_k(2), vec![(1, 3.0), (4, 2.0)]);
        assert_eq!(v.top_k(0).len(), 3);
        assert_eq!(v.get(3), 1.0);
        assert_eq!(v.get(2), 0.0);
        assert!((v.cosine(&v) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn pairs_drop_nonpositive_and_merge_duplicates() {
        let v = SparseVec::from_pairs(vec![(3, 1.0), (3, 2.0), (4, 0.0), (5, f32::NAN)]);
        assert_eq!(v.ids, vec![3]);
        assert_eq!(v.weights, vec![2.0]);
    }
}
