//! Training data: (query, positive, hard negatives) examples from BEIR
//! collections' train qrels with BM25-mined negatives — SciFact, and the
//! training collections under `train/` (SQuAD, NQ via QED, MedQuAD, Debian) —
//! and from Climate-FEVER's claim/evidence pairs (NOT_ENOUGH_INFO sentences
//! as negatives); per-source sampling weights; packed corpus text for the
//! adaptation phase; and the deterministic order in which a run visits the
//! examples (a function of seed and micro-batch only, so resumed runs match).
//!
//! Only the examples a run will visit are mined and tokenized: the plan of
//! micro-batches is drawn first, from the sources' sizes alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use crate::data::beir;
use crate::index::bm25::Bm25Index;
use crate::model::TextTokenizer;

/// One micro-batch, tokenized and truncated: query i's positive is
/// `positives[i]`, its hard negatives `negatives[i]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MicroBatch {
    pub queries: Vec<Vec<u32>>,
    pub positives: Vec<Vec<u32>>,
    pub negatives: Vec<Vec<Vec<u32>>>,
}

/// What a micro-batch is drawn from.
#[derive(Clone, Debug)]
pub struct DrawSettings {
    pub seed: u64,
    pub batch: usize,
    pub hard_negatives: usize,
    /// Hard negatives come from these BM25 ranks (1-based, judged and
    /// near-duplicate documents skipped).
    pub negative_depth: usize,
    pub query_max_len: usize,
    pub doc_max_len: usize,
    /// Source name → sampling weight (empty: every pair equally likely).
    pub weights: BTreeMap<String, f64>,
}

/// Words compared to call a negative a near-copy of the positive.
const LEAD_WORDS: usize = 25;

/// The first [`LEAD_WORDS`] words, lowercased: Debian's `-dev`/`-doc`
/// siblings share them with their package and must not be its negatives.
fn lead(text: &str) -> Vec<String> {
    text.split_whitespace()
        .take(LEAD_WORDS)
        .map(str::to_lowercase)
        .collect()
}

/// A source's pairs before mining.
struct Source {
    name: String,
    /// Query text and positive document of each pair.
    pairs: Vec<(String, usize)>,
    /// Document texts (what the encoder reads) and bodies (for near-copies).
    docs: Vec<String>,
    bodies: Vec<String>,
    kind: SourceKind,
}

enum SourceKind {
    /// BM25 negatives from the collection; relevant documents per query text.
    Beir {
        dir: PathBuf,
        relevant: HashMap<String, HashSet<usize>>,
    },
    /// Fixed negatives per pair (document indices).
    Fixed(Vec<Vec<usize>>),
}

/// `climate-fever`, a collection directly under `data` with train qrels
/// (`scifact`), or one under `data/train/` (`squad`, `nq-qed`, `medquad`,
/// `debian`).
pub fn source_dir(data: &Path, name: &str) -> PathBuf {
    let direct = data.join(name);
    if direct.join("qrels/train.tsv").is_file() {
        return direct;
    }
    let nested = data.join("train").join(name);
    if nested.join("qrels/train.tsv").is_file() {
        return nested;
    }
    direct
}

fn load_beir(data: &Path, name: &str) -> Result<Source> {
    let dir = source_dir(data, name);
    if !dir.join("qrels/train.tsv").is_file() {
        bail!(
            "no {}/qrels/train.tsv (nor under {}/train/); collections are read from the recipe's data_dir, default $CSPLADE_DATA, else $CSPLADE_HOME/data",
            data.join(name).display(),
            data.display()
        );
    }
    let docs = beir::read_corpus(&dir)?;
    let queries = beir::read_queries(&dir)?;
    let qrels = beir::read_qrels(&dir, "train")?;
    let ordinal: HashMap<&str, usize> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.as_str(), i))
        .collect();
    let text_of: HashMap<&str, &str> = queries
        .iter()
        .map(|q| (q.id.as_str(), q.text.as_str()))
        .collect();
    let mut ids: Vec<&String> = qrels.keys().collect();
    ids.sort();
    let mut pairs = Vec::new();
    let mut relevant: HashMap<String, HashSet<usize>> = HashMap::new();
    for qid in ids {
        let Some(&text) = text_of.get(qid.as_str()) else {
            continue;
        };
        let mut rel: Vec<usize> = qrels[qid]
            .iter()
            .filter(|(_, &g)| g > 0)
            .filter_map(|(d, _)| ordinal.get(d.as_str()).copied())
            .collect();
        rel.sort_unstable();
        relevant
            .entry(text.to_string())
            .or_default()
            .extend(rel.iter().copied());
        for d in rel {
            pairs.push((text.to_string(), d));
        }
    }
    Ok(Source {
        name: name.to_string(),
        pairs,
        bodies: docs.iter().map(|d| d.text.clone()).collect(),
        docs: docs.iter().map(|d| d.full_text()).collect(),
        kind: SourceKind::Beir { dir, relevant },
    })
}

#[derive(serde::Deserialize)]
struct Claim {
    claim: String,
    evidences: Vec<Evidence>,
}

#[derive(serde::Deserialize)]
struct Evidence {
    evidence_label: String,
    article: String,
    evidence: String,
}

/// Climate-FEVER claims paired with each SUPPORTS / REFUTES sentence; the
/// claim's NOT_ENOUGH_INFO sentences are its hard negatives.
fn load_climate_fever(file: &Path) -> Result<Source> {
    let f = std::fs::File::open(file).with_context(|| file.display().to_string())?;
    let (mut pairs, mut docs, mut negatives) = (Vec::new(), Vec::new(), Vec::new());
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", file.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let c: Claim = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a Climate-FEVER claim", file.display(), n + 1))?;
        let text = |e: &Evidence| format!("{} {}", e.article, e.evidence);
        let mut neg = Vec::new();
        for e in c
            .evidences
            .iter()
            .filter(|e| e.evidence_label == "NOT_ENOUGH_INFO")
        {
            neg.push(docs.len());
            docs.push(text(e));
        }
        for e in c
            .evidences
            .iter()
            .filter(|e| e.evidence_label == "SUPPORTS" || e.evidence_label == "REFUTES")
        {
            pairs.push((c.claim.clone(), docs.len()));
            docs.push(text(e));
            negatives.push(neg.clone());
        }
    }
    Ok(Source {
        name: "climate-fever".into(),
        pairs,
        bodies: docs.clone(),
        docs,
        kind: SourceKind::Fixed(negatives),
    })
}

fn load_source(data: &Path, name: &str) -> Result<Source> {
    if name == "climate-fever" {
        load_climate_fever(&data.join("climate-fever/climate-fever.jsonl"))
    } else {
        load_beir(data, name)
    }
}

/// `(source, pair)` of every slot of micro-batches `0..count`.
fn plan(
    sizes: &[usize],
    names: &[String],
    d: &DrawSettings,
    count: usize,
) -> Result<Vec<Vec<(usize, usize)>>> {
    let total: usize = sizes.iter().sum();
    if total == 0 {
        bail!("no training pairs in {names:?}");
    }
    if d.weights.is_empty() {
        let starts: Vec<usize> = sizes
            .iter()
            .scan(0, |s, &n| {
                let at = *s;
                *s += n;
                Some(at)
            })
            .collect();
        let locate = |g: usize| {
            let s = starts.partition_point(|&st| st <= g) - 1;
            (s, g - starts[s])
        };
        return Ok((0..count)
            .map(|k| {
                batch_indices(d.seed, total, d.batch, k)
                    .into_iter()
                    .map(locate)
                    .collect()
            })
            .collect());
    }
    for k in d.weights.keys() {
        if !names.contains(k) {
            bail!("pair_weights names {k:?}, which is not in pairs {names:?}");
        }
    }
    let mut cumulative = Vec::with_capacity(names.len());
    let mut sum = 0.0;
    for (n, &size) in names.iter().zip(sizes) {
        let w = *d
            .weights
            .get(n)
            .with_context(|| format!("pair_weights has no weight for {n:?}"))?;
        if !(w.is_finite() && w >= 0.0) {
            bail!("pair_weights.{n} = {w}: weights must be finite and ≥ 0");
        }
        if size == 0 && w > 0.0 {
            bail!("training pairs {n:?} are empty but weighted {w}");
        }
        sum += w;
        cumulative.push(sum);
    }
    if sum <= 0.0 {
        bail!("pair_weights sum to 0");
    }
    Ok((0..count)
        .map(|k| {
            (0..d.batch)
                .map(|j| {
                    let r = mix(d.seed ^ mix(((k as u64) << 20) ^ j as u64 ^ 0x5EED));
                    let u = (r >> 11) as f64 / (1u64 << 53) as f64 * sum;
                    let s = cumulative.partition_point(|&c| c <= u).min(names.len() - 1);
                    (s, mix(r) as usize % sizes[s])
                })
                .collect()
        })
        .collect())
}

/// BM25 index of a source's corpus, built once under `work`.
fn bm25_of(src: &Source, dir: &Path, work: &Path) -> Result<Bm25Index> {
    let bm25_dir = work.join(format!("bm25-{}", src.name));
    if !bm25_dir.join("meta.json").is_file() {
        let tmp = work.join(format!("bm25-{}.tmp", src.name));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| tmp.display().to_string())?;
        }
        let docs = beir::read_corpus(dir)?;
        Bm25Index::build(&tmp, &docs)?;
        std::fs::rename(&tmp, &bm25_dir).with_context(|| bm25_dir.display().to_string())?;
    }
    Ok(Bm25Index::open(&bm25_dir)?)
}

/// Hard-negative pools (document indices) of the given pairs of `src`.
fn negative_pools(
    src: &Source,
    pairs: &[usize],
    depth: usize,
    work: &Path,
) -> Result<HashMap<usize, Vec<usize>>> {
    match &src.kind {
        SourceKind::Fixed(neg) => Ok(pairs.iter().map(|&p| (p, neg[p].clone())).collect()),
        SourceKind::Beir { dir, relevant } => {
            let bm25 = bm25_of(src, dir, work)?;
            pairs
                .par_iter()
                .map(|&p| {
                    let (q, pos) = (&src.pairs[p].0, src.pairs[p].1);
                    let rel = &relevant[q];
                    let pos_lead = lead(&src.bodies[pos]);
                    // Extra depth for the documents skipped below.
                    let hits = bm25.search(q, 2 * depth + rel.len())?;
                    let pool = hits
                        .into_iter()
                        .map(|h| h.ordinal)
                        .filter(|o| !rel.contains(o) && lead(&src.bodies[*o]) != pos_lead)
                        .take(depth)
                        .collect();
                    Ok((p, pool))
                })
                .collect()
        }
    }
}

/// A pair of a source with its hard-negative pool, for inspection: the
/// passages' bodies (without titles), as the near-copy rule compares them.
pub struct MinedPair {
    pub query: String,
    pub positive: String,
    pub negatives: Vec<String>,
}

/// How many (query, positive) pairs each named source holds under `data`.
pub fn source_sizes(data: &Path, sources: &[String]) -> Result<Vec<usize>> {
    sources
        .iter()
        .map(|s| Ok(load_source(data, s)?.pairs.len()))
        .collect()
}

/// Pairs `pairs` of source `name` with their mined negative pools (BM25
/// indexes cached in `work`), as texts.
pub fn mined_pairs(
    data: &Path,
    name: &str,
    pairs: &[usize],
    depth: usize,
    work: &Path,
) -> Result<Vec<MinedPair>> {
    let src = load_source(data, name)?;
    if let Some(&p) = pairs.iter().find(|&&p| p >= src.pairs.len()) {
        bail!("{name} has {} pairs, no pair {p}", src.pairs.len());
    }
    let pools = negative_pools(&src, pairs, depth, work)?;
    Ok(pairs
        .iter()
        .map(|p| MinedPair {
            query: src.pairs[*p].0.clone(),
            positive: src.bodies[src.pairs[*p].1].clone(),
            negatives: pools[p].iter().map(|&d| src.bodies[d].clone()).collect(),
        })
        .collect())
}

/// Document frequency of every vocabulary entry over the passages of
/// `sources` as training encodes them (tokenized, cut to `max_len`), and the
/// number of passages.
pub fn document_frequencies(
    data: &Path,
    sources: &[String],
    tok: &TextTokenizer,
    max_len: usize,
) -> Result<(Vec<u32>, usize)> {
    let mut df = vec![0u32; tok.vocab_size()];
    let mut passages = 0;
    for name in sources {
        let src = load_source(data, name)?;
        let counts: Vec<Vec<u32>> = src
            .bodies
            .par_iter()
            .map(|b| {
                let mut ids = tokenize(tok, b, max_len)?;
                ids.sort_unstable();
                ids.dedup();
                Ok(ids)
            })
            .collect::<Result<_>>()?;
        for ids in counts {
            for id in ids {
                if let Some(d) = df.get_mut(id as usize) {
                    *d += 1;
                }
            }
        }
        passages += src.bodies.len();
    }
    Ok((df, passages))
}

/// Whether two passages share their first words (near-copies: never each
/// other's negative).
pub fn near_copies(a: &str, b: &str) -> bool {
    lead(a) == lead(b)
}

fn tokenize(tok: &TextTokenizer, text: &str, max_len: usize) -> Result<Vec<u32>> {
    let mut ids = tok.encode(text).context("tokenizing training text")?;
    ids.truncate(max_len);
    if ids.is_empty() {
        // An empty text still needs one position to pool.
        ids.push(0);
    }
    Ok(ids)
}

/// Micro-batches `0..count` of the contrastive phase, drawn from `sources`
/// under `data`, mined (BM25 indexes cached in `work`) and tokenized.
pub fn draw_micro_batches(
    data: &Path,
    sources: &[String],
    tok: &TextTokenizer,
    d: &DrawSettings,
    count: usize,
    work: &Path,
) -> Result<Vec<MicroBatch>> {
    let loaded: Vec<Source> = sources
        .iter()
        .map(|s| load_source(data, s).with_context(|| format!("training pairs {s:?}")))
        .collect::<Result<_>>()?;
    let sizes: Vec<usize> = loaded.iter().map(|s| s.pairs.len()).collect();
    let slots = plan(&sizes, sources, d, count)?;
    // Mine only the pairs the plan visits.
    let mut pools: Vec<HashMap<usize, Vec<usize>>> = Vec::with_capacity(loaded.len());
    for (s, src) in loaded.iter().enumerate() {
        let mut used: Vec<usize> = slots
            .iter()
            .flatten()
            .filter(|(si, _)| *si == s)
            .map(|&(_, p)| p)
            .collect();
        used.sort_unstable();
        used.dedup();
        pools.push(negative_pools(src, &used, d.negative_depth, work)?);
    }
    slots
        .par_iter()
        .enumerate()
        .map(|(k, slots)| {
            let mut mb = MicroBatch::default();
            for (j, &(s, p)) in slots.iter().enumerate() {
                let src = &loaded[s];
                let (q, pos) = (&src.pairs[p].0, src.pairs[p].1);
                mb.queries.push(tokenize(tok, q, d.query_max_len)?);
                mb.positives
                    .push(tokenize(tok, &src.docs[pos], d.doc_max_len)?);
                let pool = &pools[s][&p];
                let mut negs = Vec::with_capacity(d.hard_negatives);
                for h in 0..d.hard_negatives {
                    let r = mix(d.seed ^ mix((k * 131 + j * 7 + h) as u64)) as usize;
                    let doc = if pool.is_empty() {
                        // No mined negative: another pair's positive.
                        let n = src.pairs.len();
                        src.pairs[(p + 1 + r % (n - 1).max(1)) % n].1
                    } else {
                        pool[r % pool.len()]
                    };
                    negs.push(tokenize(tok, &src.docs[doc], d.doc_max_len)?);
                }
                mb.negatives.push(negs);
            }
            Ok(mb)
        })
        .collect()
}

/// Corpus text of BEIR collections, tokenized and concatenated (documents
/// separated by `separator`) for packed causal-LM sequences.
pub fn packed_corpus(
    data: &Path,
    corpora: &[String],
    tok: &TextTokenizer,
    separator: u32,
) -> Result<Vec<u32>> {
    let mut stream = Vec::new();
    for c in corpora {
        let docs = beir::read_corpus(&source_dir(data, c))?;
        let texts: Vec<String> = docs.iter().map(|d| d.full_text()).collect();
        let ids: Vec<Vec<u32>> = texts
            .par_iter()
            .map(|t| tok.encode(t))
            .collect::<Result<_, _>>()
            .context("tokenizing corpus text")?;
        for ids in ids {
            stream.extend(ids);
            stream.push(separator);
        }
    }
    Ok(stream)
}

/// SplitMix64 of `x` (the generator's first output from seed `x`): the
/// run's only source of randomness.
pub fn mix(x: u64) -> u64 {
    crate::rng::SplitMix::new(x).next_u64()
}

/// Example indices of micro-batch `k` (of `size`) over `n` examples: epochs
/// are seeded permutations, so the batch depends only on (seed, k).
pub fn batch_indices(seed: u64, n: usize, size: usize, k: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(size);
    let mut epoch_cache: Option<(usize, Vec<usize>)> = None;
    for j in 0..size {
        let flat = k * size + j;
        let (epoch, at) = (flat / n, flat % n);
        if epoch_cache.as_ref().map(|c| c.0) != Some(epoch) {
            let mut perm: Vec<usize> = (0..n).collect();
            let mut s = mix(seed ^ mix(epoch as u64));
            for i in (1..n).rev() {
                s = mix(s);
                perm.swap(i, (s % (i as u64 + 1)) as usize);
            }
            epoch_cache = Some((epoch, perm));
        }
        out.push(epoch_cache.as_ref().map_or(0, |c| c.1[at]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_each_epoch_once() {
        let n = 10;
        let mut seen: Vec<usize> = (0..5).flat_map(|k| batch_indices(3, n, 2, k)).collect();
        seen.sort();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        assert_eq!(batch_indices(3, n, 2, 7), batch_indices(3, n, 2, 7));
        assert_ne!(batch_indices(3, n, 4, 0), batch_indices(4, n, 4, 0));
    }

    fn settings(weights: &[(&str, f64)]) -> DrawSettings {
        DrawSettings {
            seed: 5,
            batch: 64,
            hard_negatives: 1,
            negative_depth: 10,
            query_max_len: 8,
            doc_max_len: 8,
            weights: weights.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn weighted_sources_fill_batches_in_proportion() {
        let names = vec!["a".to_string(), "b".to_string()];
        // b is 100× larger but weighted 1:3 against a.
        let p = plan(
            &[10, 1000],
            &names,
            &settings(&[("a", 3.0), ("b", 1.0)]),
            50,
        )
        .unwrap();
        let from_a = p.iter().flatten().filter(|s| s.0 == 0).count() as f64;
        let share = from_a / (50.0 * 64.0);
        assert!((share - 0.75).abs() < 0.03, "share of a: {share}");
        assert!(p.iter().flatten().all(|&(s, i)| i < [10, 1000][s]));
        assert_eq!(
            p,
            plan(
                &[10, 1000],
                &names,
                &settings(&[("a", 3.0), ("b", 1.0)]),
                50
            )
            .unwrap()
        );
        // Unweighted: proportional to size, every pair once per epoch.
        let p = plan(&[3, 5], &names, &settings(&[]), 1).unwrap();
        assert_eq!(p[0].len(), 64);
        assert!(plan(&[3, 5], &names, &settings(&[("a", 1.0)]), 1).is_err());
        assert!(plan(&[3, 5], &names, &settings(&[("a", 1.0), ("c", 1.0)]), 1).is_err());
    }

    #[test]
    fn near_copies_share_their_lead() {
        let a = "Library for X. This package contains the development files";
        assert_eq!(lead(a), lead(&a.to_uppercase()));
        assert_ne!(lead(a), lead("Library for Y. This package contains"));
    }
}
