//! The fixed candidate pool every point of a trade-off re-ranks: a seeded
//! sample of the judged queries and, for each, BM25's top `depth`, the
//! reference index's top `depth` and every judged document (TREC pooling).
//! A pool is cached under a key made of everything that decides it (corpus,
//! reference encoding, split, sample, seed, depth), and the cached file
//! names those again, so a pool made for another corpus or reference is
//! never served.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::beir::{Qrels, Query};
use crate::encode::SparseVec;
use crate::rng::SplitMix;
use crate::search::prior::QueryPrior;
use crate::search::LsrIndex;

/// How the pool is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// Judged queries sampled (0: all of them).
    pub queries: usize,
    pub seed: u64,
    /// Documents taken from each of BM25's and the reference's rankings.
    pub depth: usize,
}

impl Default for PoolSpec {
    /// The default pool: 80 queries at depth 10, chosen on SciFact test
    /// (5,183 documents), where it pools 1,152 documents, 22% of a full
    /// index's tokens per encoder (see the README's precision table).
    fn default() -> Self {
        Self {
            queries: 80,
            seed: 1,
            depth: 10,
        }
    }
}

/// What a pool was built for; a cached pool must match all of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolIdentity {
    pub corpus_fingerprint: String,
    /// The reference index's model (sha256), variant, head, precision and
    /// token budget.
    pub reference: String,
    pub split: String,
    pub spec: PoolSpec,
    /// The query prior the reference's candidates were ranked with.
    pub prior: String,
}

impl PoolIdentity {
    pub fn new(index: &LsrIndex, split: &str, spec: PoolSpec, prior: QueryPrior) -> Self {
        let m = &index.meta;
        Self {
            corpus_fingerprint: m.corpus_fingerprint.clone(),
            // An index with passages draws other candidates than one of
            // first reads only (older keys stay as they were).
            reference: format!(
                "{}:{}:{}:{}:{}{}",
                m.model.sha256,
                m.variant,
                m.head,
                m.precision,
                m.max_len,
                m.passages.map_or(String::new(), |p| format!(":p{p}"))
            ),
            split: split.to_string(),
            spec,
            prior: prior.to_string(),
        }
    }

    /// A short stable key for cache paths.
    pub fn key(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        let h = format!("{:x}", Sha256::digest(text.as_bytes()));
        h[..16].to_string()
    }
}

/// The sampled queries and the documents pooled for them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub identity: PoolIdentity,
    /// (query id, text), in sample order.
    pub queries: Vec<(String, String)>,
    /// Ordinals in the reference index, ascending.
    pub documents: Vec<usize>,
    /// Documents judged for a sampled query that the index does not hold.
    pub missing_judged: usize,
}

/// The judged queries (a relevant judgement each), sorted by id, shuffled
/// with `seed` and cut to `n` (all when 0 or more than there are).
pub fn sample_queries(evaluated: &[Query], n: usize, seed: u64) -> Vec<Query> {
    let mut q: Vec<Query> = evaluated.to_vec();
    q.sort_by(|a, b| a.id.cmp(&b.id));
    let mut rng = SplitMix::new(seed);
    for i in (1..q.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        q.swap(i, j);
    }
    if n > 0 {
        q.truncate(n);
    }
    q
}

/// Pool `queries`: BM25's and the reference's top `depth` (the reference
/// queries given as scored, one per query) plus every judged document.
pub fn build(
    index: &LsrIndex,
    identity: PoolIdentity,
    queries: &[Query],
    reference: &[SparseVec],
    qrels: &Qrels,
) -> Result<Pool, crate::index::IndexError> {
    let depth = identity.spec.depth;
    let ordinal: HashMap<&str, usize> = (0..index.len()).map(|o| (index.doc_id(o), o)).collect();
    let mut docs = BTreeSet::new();
    let mut missing_judged = 0;
    for (q, v) in queries.iter().zip(reference) {
        docs.extend(index.search_exact(v, depth).into_iter().map(|h| h.ordinal));
        docs.extend(
            index
                .search_bm25(&q.text, depth)?
                .into_iter()
                .map(|h| h.ordinal),
        );
        for d in qrels.get(&q.id).into_iter().flat_map(|j| j.keys()) {
            match ordinal.get(d.as_str()) {
                Some(&o) => {
                    docs.insert(o);
                }
                None => missing_judged += 1,
            }
        }
    }
    Ok(Pool {
        identity,
        queries: queries
            .iter()
            .map(|q| (q.id.clone(), q.text.clone()))
            .collect(),
        documents: docs.into_iter().collect(),
        missing_judged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: &str) -> Query {
        Query {
            id: id.to_string(),
            text: format!("text of {id}"),
        }
    }

    #[test]
    fn samples_are_seeded_and_independent_of_input_order() {
        let qs: Vec<Query> = (0..50).map(|i| query(&format!("q{i:02}"))).collect();
        let mut reversed = qs.clone();
        reversed.reverse();
        let a = sample_queries(&qs, 10, 7);
        assert_eq!(a, sample_queries(&reversed, 10, 7));
        assert_eq!(a.len(), 10);
        assert_ne!(
            a,
            sample_queries(&qs, 10, 8),
            "another seed, another sample"
        );
        let all = sample_queries(&qs, 0, 7);
        assert_eq!(all.len(), 50);
        let mut ids: Vec<&str> = all.iter().map(|q| q.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 50, "a permutation: no query twice");
        assert_eq!(sample_queries(&qs, 500, 7).len(), 50);
    }

    #[test]
    fn the_key_changes_with_everything_that_decides_the_pool() {
        let base = PoolIdentity {
            corpus_fingerprint: "c".into(),
            reference: "sha:echo:logprob:5:f32:128".into(),
            split: "test".into(),
            spec: PoolSpec::default(),
            prior: "idf:0.5".into(),
        };
        let mut keys = vec![base.key()];
        let mut v = base.clone();
        v.prior = "none".into();
        keys.push(v.key());
        let mut v = base.clone();
        v.corpus_fingerprint = "d".into();
        keys.push(v.key());
        let mut v = base.clone();
        v.reference = "sha:echo:logprob:5:q8_0:128".into();
        keys.push(v.key());
        let mut v = base.clone();
        v.split = "train".into();
        keys.push(v.key());
        for f in [
            |s: &mut PoolSpec| s.queries += 1,
            |s: &mut PoolSpec| s.seed += 1,
            |s: &mut PoolSpec| s.depth += 1,
        ] {
            let mut v = base.clone();
            f(&mut v.spec);
            keys.push(v.key());
        }
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n, "every change gives another key");
        assert_eq!(base.key(), base.clone().key());
    }
}
