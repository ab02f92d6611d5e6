//! Seismic: approximate top-k retrieval over learned sparse vectors (Bruch,
//! Nardini, Rulli, Venturini, "Efficient Inverted Indexes for Approximate
//! Retrieval over Learned Sparse Representations", SIGIR 2024), built from
//! an index's exact document vectors.
//!
//! Each term's posting list keeps only its `postings_per_term` highest-impact
//! documents (static pruning) and is split into blocks of similar documents
//! by one round of random-centroid clustering (a document joins the centroid
//! its top `doc_cut` terms overlap most). Every block carries a summary: the
//! per-term maximum over its documents, cut to the largest entries holding
//! `summary_energy` of its mass, quantized to 8 bits. A query visits the
//! blocks of its `query_terms` heaviest terms and scores a block's documents
//! exactly (against the full query) only when the summary's dot product
//! reaches `heap_factor` × the current k-th score.
//!
//! This follows the algorithm and defaults of the authors' `seismic` crate,
//! written here because that crate needs a nightly compiler.

mod cache;
pub use cache::CacheKey;

use crate::encode::SparseVec;
use std::collections::BinaryHeap;

/// How the structure is built (recorded in the cache file).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeismicBuild {
    /// λ: documents kept per term's posting list (highest impact first).
    pub postings_per_term: usize,
    /// β as a fraction: blocks per posting list = ⌈fraction × its length⌉.
    pub block_fraction: f32,
    /// α: share of a block's summed maxima its summary keeps.
    pub summary_energy: f32,
    /// Terms of a document compared with the centroids when clustering.
    pub doc_cut: usize,
    /// Blocks of at most this many documents are dissolved into the others.
    pub min_block: usize,
}

impl Default for SeismicBuild {
    fn default() -> Self {
        Self {
            postings_per_term: 3500,
            block_fraction: 0.1,
            summary_energy: 0.4,
            doc_cut: 15,
            min_block: 2,
        }
    }
}

/// How a query is answered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeismicQuery {
    /// The query's heaviest terms whose blocks are visited.
    pub query_terms: usize,
    /// A block is scored when its summary · q ≥ heap_factor × the k-th score.
    pub heap_factor: f32,
}

impl Default for SeismicQuery {
    fn default() -> Self {
        Self {
            query_terms: 10,
            heap_factor: 0.7,
        }
    }
}

/// The blocked, summarized posting lists of one index.
#[derive(Debug, PartialEq)]
pub struct SeismicIndex {
    pub build: SeismicBuild,
    documents: u32,
    vocab: u32,
    /// Term t's blocks are `term_blocks[t]..term_blocks[t + 1]`.
    term_blocks: Vec<u32>,
    /// Block b's documents are `docs[block_docs[b]..block_docs[b + 1]]`.
    block_docs: Vec<u32>,
    docs: Vec<u32>,
    /// Block b's summary entries are `block_summary[b]..block_summary[b + 1]`.
    block_summary: Vec<u32>,
    summary_terms: Vec<u32>,
    summary_codes: Vec<u8>,
    /// Per block: value of code 0 and the step between codes.
    summary_min: Vec<f32>,
    summary_step: Vec<f32>,
}

/// A block as built: its documents and its summary's (term, weight) pairs.
type BuiltBlock = (Vec<u32>, Vec<(u32, f32)>);

/// One term's blocks, as built by a worker.
#[derive(Default)]
struct TermPart {
    blocks: Vec<BuiltBlock>,
}

impl SeismicIndex {
    /// Build from the exact vectors (document order = ordinal).
    pub fn build(vectors: &[SparseVec], vocab: usize, build: SeismicBuild) -> Self {
        // Posting lists as one flat array, by counting first.
        let mut start = vec![0usize; vocab + 1];
        for v in vectors {
            for &t in &v.ids {
                if (t as usize) < vocab {
                    start[t as usize + 1] += 1;
                }
            }
        }
        for t in 0..vocab {
            start[t + 1] += start[t];
        }
        let mut fill = start.clone();
        let mut postings = vec![(0u32, 0f32); start[vocab]];
        for (d, v) in vectors.iter().enumerate() {
            for (t, w) in v.iter() {
                if (t as usize) < vocab {
                    let at = &mut fill[t as usize];
                    postings[*at] = (d as u32, w);
                    *at += 1;
                }
            }
        }
        // Each document's heaviest terms, for clustering.
        let cut: Vec<Vec<u32>> = vectors
            .iter()
            .map(|v| v.top_k(build.doc_cut).into_iter().map(|p| p.0).collect())
            .collect();
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 16);
        let parts: Vec<Vec<TermPart>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let (postings, start, cut) = (&postings, &start, &cut);
                    s.spawn(move || {
                        let mut scratch = Scratch::new(vocab);
                        (w..vocab)
                            .step_by(workers)
                            .map(|t| {
                                let list = &postings[start[t]..start[t + 1]];
                                term_blocks(t, list, vectors, cut, &build, &mut scratch)
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        let mut index = Self {
            build,
            documents: vectors.len() as u32,
            vocab: vocab as u32,
            term_blocks: vec![0],
            block_docs: vec![0],
            docs: Vec::new(),
            block_summary: vec![0],
            summary_terms: Vec::new(),
            summary_codes: Vec::new(),
            summary_min: Vec::new(),
            summary_step: Vec::new(),
        };
        let mut iters: Vec<_> = parts.into_iter().map(|p| p.into_iter()).collect();
        for t in 0..vocab {
            let part = iters[t % workers].next().unwrap_or_default();
            for (docs, summary) in part.blocks {
                index.push_block(&docs, &summary);
            }
            index.term_blocks.push(index.block_docs.len() as u32 - 1);
        }
        index
    }

    fn push_block(&mut self, docs: &[u32], summary: &[(u32, f32)]) {
        self.docs.extend_from_slice(docs);
        self.block_docs.push(self.docs.len() as u32);
        let lo = summary.iter().map(|s| s.1).fold(f32::INFINITY, f32::min);
        let hi = summary.iter().map(|s| s.1).fold(0f32, f32::max);
        let lo = if lo.is_finite() { lo } else { 0.0 };
        let step = (hi - lo) / 255.0;
        for &(t, w) in summary {
            self.summary_terms.push(t);
            let code = if step > 0.0 {
                ((w - lo) / step).round().clamp(0.0, 255.0) as u8
            } else {
                0
            };
            self.summary_codes.push(code);
        }
        self.block_summary.push(self.summary_terms.len() as u32);
        self.summary_min.push(lo);
        self.summary_step.push(step);
    }

    pub fn documents(&self) -> usize {
        self.documents as usize
    }

    pub fn blocks(&self) -> usize {
        self.block_docs.len() - 1
    }

    /// Postings kept after pruning (a document counted once per term).
    pub fn postings(&self) -> usize {
        self.docs.len()
    }

    /// Bytes held by the structure (the forward vectors not counted).
    pub fn heap_bytes(&self) -> usize {
        4 * (self.term_blocks.len()
            + self.block_docs.len()
            + self.docs.len()
            + self.block_summary.len()
            + self.summary_terms.len()
            + self.summary_min.len()
            + self.summary_step.len())
            + self.summary_codes.len()
    }

    /// Approximate top-k (ordinal, exact score) of `query` over `vectors`,
    /// the same vectors the structure was built from.
    pub fn search(
        &self,
        query: &SparseVec,
        k: usize,
        vectors: &[SparseVec],
        params: SeismicQuery,
    ) -> Vec<(usize, f32)> {
        let mut dense = vec![0f32; self.vocab as usize];
        for (t, w) in query.iter() {
            if let Some(d) = dense.get_mut(t as usize) {
                *d = w;
            }
        }
        let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(k + 1);
        let mut visited = vec![0u64; (self.documents as usize).div_ceil(64)];
        let mut order: Vec<(usize, f32)> = Vec::new();
        for (t, _) in query.top_k(params.query_terms) {
            let t = t as usize;
            if t + 1 >= self.term_blocks.len() {
                continue;
            }
            let (b0, b1) = (
                self.term_blocks[t] as usize,
                self.term_blocks[t + 1] as usize,
            );
            order.clear();
            order.extend((b0..b1).map(|b| (b, self.summary_dot(b, &dense))));
            order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            for &(b, bound) in &order {
                if heap.len() >= k {
                    let kth = heap.peek().map_or(0.0, |c| c.score);
                    if bound < params.heap_factor * kth {
                        continue;
                    }
                }
                let docs = &self.docs[self.block_docs[b] as usize..self.block_docs[b + 1] as usize];
                for &d in docs {
                    let (word, bit) = (d as usize / 64, 1u64 << (d % 64));
                    match visited.get_mut(word) {
                        Some(v) if *v & bit == 0 => *v |= bit,
                        _ => continue,
                    }
                    let score = vectors.get(d as usize).map_or(0.0, |v| {
                        v.iter()
                            .map(|(t, w)| dense.get(t as usize).copied().unwrap_or(0.0) * w)
                            .sum()
                    });
                    if score <= 0.0 {
                        continue;
                    }
                    let c = Candidate { score, doc: d };
                    if heap.len() < k {
                        heap.push(c);
                    } else if heap.peek().is_some_and(|m| c < *m) {
                        heap.pop();
                        heap.push(c);
                    }
                }
            }
        }
        let mut hits: Vec<(usize, f32)> = heap
            .into_iter()
            .map(|c| (c.doc as usize, c.score))
            .collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits
    }

    fn summary_dot(&self, b: usize, dense: &[f32]) -> f32 {
        let (s0, s1) = (
            self.block_summary[b] as usize,
            self.block_summary[b + 1] as usize,
        );
        let (lo, step) = (self.summary_min[b], self.summary_step[b]);
        self.summary_terms[s0..s1]
            .iter()
            .zip(&self.summary_codes[s0..s1])
            .map(|(&t, &c)| dense.get(t as usize).copied().unwrap_or(0.0) * (lo + step * c as f32))
            .sum()
    }
}

/// A scored document; ordered so that the heap's top is the weakest hit
/// (lowest score, then highest ordinal).
#[derive(Clone, Copy, PartialEq)]
struct Candidate {
    score: f32,
    doc: u32,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.doc.cmp(&other.doc))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A worker's reusable dense buffers.
struct Scratch {
    max: Vec<f32>,
    touched: Vec<u32>,
}

impl Scratch {
    fn new(vocab: usize) -> Self {
        Self {
            max: vec![0.0; vocab],
            touched: Vec::new(),
        }
    }
}

/// Prune, cluster and summarize one term's posting list.
fn term_blocks(
    term: usize,
    list: &[(u32, f32)],
    vectors: &[SparseVec],
    cut: &[Vec<u32>],
    build: &SeismicBuild,
    scratch: &mut Scratch,
) -> TermPart {
    if list.is_empty() {
        return TermPart::default();
    }
    let mut kept: Vec<(u32, f32)> = list.to_vec();
    let by_weight = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if kept.len() > build.postings_per_term.max(1) {
        kept.select_nth_unstable_by(build.postings_per_term.max(1) - 1, by_weight);
        kept.truncate(build.postings_per_term.max(1));
    }
    let docs: Vec<u32> = kept.iter().map(|p| p.0).collect();
    let clusters =
        ((docs.len() as f32 * build.block_fraction).ceil() as usize).clamp(1, docs.len());
    let groups = cluster(term as u64, &docs, clusters, vectors, cut, build.min_block);
    let blocks = groups
        .into_iter()
        .filter(|g| !g.is_empty())
        .map(|mut g| {
            g.sort_unstable();
            let s = summary(&g, vectors, build.summary_energy, scratch);
            (g, s)
        })
        .collect();
    TermPart { blocks }
}

/// Random-centroid clustering of `docs` into at most `clusters` groups by
/// approximate dot product (each document's top terms against the centroids'
/// full vectors); groups of at most `min_block` documents are dissolved and
/// their documents joined to the nearest surviving centroid.
fn cluster(
    seed: u64,
    docs: &[u32],
    clusters: usize,
    vectors: &[SparseVec],
    cut: &[Vec<u32>],
    min_block: usize,
) -> Vec<Vec<u32>> {
    if clusters <= 1 || docs.len() <= min_block + 1 {
        return vec![docs.to_vec()];
    }
    // A partial Fisher-Yates shuffle picks the centroids.
    let mut rng = crate::rng::SplitMix::new(0x5e15_u64 ^ seed.wrapping_mul(0x9E37));
    let mut pick: Vec<usize> = (0..docs.len()).collect();
    for i in 0..clusters {
        let j = i + (rng.next_u64() % (docs.len() - i) as u64) as usize;
        pick.swap(i, j);
    }
    let centroids: Vec<u32> = pick[..clusters].iter().map(|&i| docs[i]).collect();
    // The centroids' inverted index: (term, centroid, weight) sorted by term.
    let mut inverted: Vec<(u32, u32, f32)> = Vec::new();
    for (c, &d) in centroids.iter().enumerate() {
        if let Some(v) = vectors.get(d as usize) {
            inverted.extend(v.iter().map(|(t, w)| (t, c as u32, w)));
        }
    }
    inverted.sort_unstable_by_key(|e| (e.0, e.1));
    let mut score = vec![0f32; clusters];
    let nearest = |d: u32, alive: &[bool], score: &mut Vec<f32>| -> Option<usize> {
        score.iter_mut().for_each(|s| *s = 0.0);
        let v = vectors.get(d as usize)?;
        for &t in cut.get(d as usize)? {
            let w = v.get(t);
            let from = inverted.partition_point(|e| e.0 < t);
            for e in inverted[from..].iter().take_while(|e| e.0 == t) {
                score[e.1 as usize] += w * e.2;
            }
        }
        (0..clusters)
            .filter(|&c| alive[c])
            .max_by(|&a, &b| score[a].total_cmp(&score[b]).then(b.cmp(&a)))
    };
    let mut alive = vec![true; clusters];
    let mut groups: Vec<Vec<u32>> = vec![Vec::new(); clusters];
    for &d in docs {
        let c = nearest(d, &alive, &mut score).unwrap_or(0);
        groups[c].push(d);
    }
    let mut orphans = Vec::new();
    for (c, g) in groups.iter_mut().enumerate() {
        if g.len() <= min_block {
            alive[c] = false;
            orphans.append(g);
        }
    }
    if !alive.iter().any(|&a| a) {
        return vec![docs.to_vec()];
    }
    for d in orphans {
        if let Some(c) = nearest(d, &alive, &mut score) {
            groups[c].push(d);
        }
    }
    groups
}

/// The block's per-term maxima, cut to the largest entries holding
/// `energy` of their sum, sorted by term.
fn summary(block: &[u32], vectors: &[SparseVec], energy: f32, s: &mut Scratch) -> Vec<(u32, f32)> {
    for &d in block {
        let Some(v) = vectors.get(d as usize) else {
            continue;
        };
        for (t, w) in v.iter() {
            let Some(m) = s.max.get_mut(t as usize) else {
                continue;
            };
            if *m == 0.0 {
                s.touched.push(t);
            }
            if w > *m {
                *m = w;
            }
        }
    }
    let mut entries: Vec<(u32, f32)> = s.touched.iter().map(|&t| (t, s.max[t as usize])).collect();
    for &t in &s.touched {
        s.max[t as usize] = 0.0;
    }
    s.touched.clear();
    entries.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: f32 = entries.iter().map(|e| e.1).sum();
    let mut acc = 0f32;
    let mut keep = 0;
    for e in &entries {
        acc += e.1;
        keep += 1;
        if acc > energy * total {
            break;
        }
    }
    entries.truncate(keep);
    entries.sort_unstable_by_key(|e| e.0);
    entries
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::rng::SplitMix;

    /// Vectors with a skewed term distribution, like a model's expansions.
    pub(super) fn collection(n: usize, vocab: u32, seed: u64) -> Vec<SparseVec> {
        let mut rng = SplitMix::new(seed);
        (0..n)
            .map(|_| {
                let len = 5 + (rng.next_u64() % 30) as usize;
                let pairs = (0..len)
                    .map(|_| {
                        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                        let t = ((u * u * u) * vocab as f64) as u32;
                        (t.min(vocab - 1), 0.05 + (rng.uniform() + 1.0))
                    })
                    .collect::<std::collections::BTreeMap<u32, f32>>();
                SparseVec::from_pairs(pairs.into_iter().collect())
            })
            .collect()
    }

    fn exact(q: &SparseVec, vs: &[SparseVec], k: usize) -> Vec<(usize, f32)> {
        let mut s: Vec<(usize, f32)> = vs
            .iter()
            .enumerate()
            .map(|(d, v)| (d, q.dot(v)))
            .filter(|h| h.1 > 0.0)
            .collect();
        s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        s.truncate(k);
        s
    }

    #[test]
    fn without_pruning_it_is_exact() {
        let vs = collection(600, 300, 1);
        let queries = collection(40, 300, 2);
        let build = SeismicBuild {
            postings_per_term: usize::MAX,
            summary_energy: 1.0,
            ..SeismicBuild::default()
        };
        let index = SeismicIndex::build(&vs, 300, build);
        // Every term's blocks partition its full posting list.
        let postings: usize = vs.iter().map(|v| v.active()).sum();
        assert_eq!(index.postings(), postings);
        assert!(
            index.blocks() > 300,
            "lists split into blocks: {}",
            index.blocks()
        );
        let all = SeismicQuery {
            query_terms: usize::MAX,
            heap_factor: 0.0,
        };
        for q in &queries {
            let got = index.search(q, 10, &vs, all);
            let want = exact(q, &vs, 10);
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g.1 - w.1).abs() <= 1e-4 * w.1.max(1.0),
                    "{got:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn pruned_search_keeps_most_of_the_top_ten_and_scores_exactly() {
        let vs = collection(3000, 400, 3);
        let queries = collection(50, 400, 4);
        let build = SeismicBuild {
            postings_per_term: 300,
            ..SeismicBuild::default()
        };
        let index = SeismicIndex::build(&vs, 400, build);
        assert!(index.postings() < vs.iter().map(|v| v.active()).sum::<usize>());
        let (mut found, mut total) = (0, 0);
        for q in &queries {
            let got = index.search(q, 10, &vs, SeismicQuery::default());
            for &(d, s) in &got {
                assert!(
                    (s - q.dot(&vs[d])).abs() < 1e-4,
                    "scores are exact dot products"
                );
            }
            assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
            let want: std::collections::HashSet<usize> =
                exact(q, &vs, 10).into_iter().map(|h| h.0).collect();
            found += got.iter().filter(|h| want.contains(&h.0)).count();
            total += want.len();
        }
        let recall = found as f64 / total as f64;
        assert!(recall > 0.8, "recall@10 against exact search: {recall:.3}");
        assert!(recall < 1.0 + 1e-9);
    }
}
