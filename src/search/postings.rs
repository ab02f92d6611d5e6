//! Exact term-at-a-time scoring over vectors held in memory: the postings
//! of an index's exact scorer, and the partial index a build in progress
//! can already be searched through.

use super::prior;
use crate::encode::SparseVec;

/// Term id → (slot, weight): the exact term-at-a-time scorer over a list
/// of vectors (terms beyond the vocabulary are left out).
pub(super) struct Postings(Vec<Vec<(u32, f32)>>);

impl Postings {
    pub(super) fn new<'a>(vectors: impl Iterator<Item = &'a SparseVec>, vocab: usize) -> Self {
        let mut lists: Vec<Vec<(u32, f32)>> = vec![Vec::new(); vocab];
        for (slot, v) in vectors.enumerate() {
            for (id, w) in v.iter() {
                if let Some(p) = lists.get_mut(id as usize) {
                    p.push((slot as u32, w));
                }
            }
        }
        Self(lists)
    }

    /// The idf of every term over the `documents` slots.
    pub(super) fn idf(&self, documents: usize) -> Vec<f32> {
        let df: Vec<u32> = self.0.iter().map(|p| p.len() as u32).collect();
        prior::idf_table(&df, documents)
    }

    /// Every slot's dot product with `query`, accumulated term at a time.
    pub(super) fn scores(&self, query: &SparseVec, slots: usize) -> Vec<f32> {
        let mut acc = vec![0f32; slots];
        for (id, q) in query.iter() {
            for &(slot, w) in self.0.get(id as usize).map_or(&[][..], Vec::as_slice) {
                acc[slot as usize] += q * w;
            }
        }
        acc
    }
}

/// The part of a corpus an unfinished build has already encoded: exact
/// search over it while the index is still being built. It ranks documents'
/// first reads; passages (journaled after the corpus's positions) join when
/// the build completes.
pub struct PartialIndex {
    /// Corpus position and vector of every encoded document.
    pub vectors: Vec<(usize, SparseVec)>,
    /// Exact-scorer lists by slot in `vectors`.
    postings: Postings,
    /// Inverse document frequencies over the documents encoded so far.
    pub idf: Vec<f32>,
    pub total: usize,
}

impl PartialIndex {
    /// Over the journal's entries `vectors` of a corpus of `total`
    /// documents (entries past it, passages, are left out).
    pub fn new(mut vectors: Vec<(usize, SparseVec)>, vocab: usize, total: usize) -> Self {
        vectors.retain(|(ordinal, _)| *ordinal < total);
        let postings = Postings::new(vectors.iter().map(|(_, v)| v), vocab);
        let idf = postings.idf(vectors.len());
        Self {
            vectors,
            postings,
            idf,
            total,
        }
    }

    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// Top-k (corpus position, score) by exact dot product.
    pub fn search(&self, query: &SparseVec, k: usize) -> Vec<(usize, f32)> {
        let acc = self.postings.scores(query, self.vectors.len());
        let mut hits: Vec<(usize, f32)> = acc
            .into_iter()
            .enumerate()
            .filter(|h| h.1 > 0.0)
            .map(|(slot, s)| (self.vectors[slot].0, s))
            .collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(k);
        hits
    }

    pub fn vector(&self, ordinal: usize) -> Option<&SparseVec> {
        self.vectors.iter().find(|v| v.0 == ordinal).map(|v| &v.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_index_ranks_the_documents_encoded_so_far_not_their_passages() {
        let v = |id: u32, w: f32| SparseVec::from_pairs(vec![(id, w)]);
        // Documents 0 and 2 of 3, and passages (journaled as 3 and 4).
        let journal = vec![
            (4, v(1, 9.0)),
            (2, v(1, 2.0)),
            (3, v(1, 5.0)),
            (0, v(1, 1.0)),
        ];
        let p = PartialIndex::new(journal, 4, 3);
        assert_eq!(p.len(), 2);
        assert_eq!(p.search(&v(1, 1.0), 10), vec![(2, 2.0), (0, 1.0)]);
        assert!(p.vector(3).is_none());
    }
}
