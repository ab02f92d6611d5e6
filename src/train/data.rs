//! Training data: (query, positive, hard-negative pool) triples from SciFact's
//! train qrels with BM25-mined negatives and from Climate-FEVER's
//! claim/evidence pairs (NOT_ENOUGH_INFO sentences as negatives), and packed
//! corpus text for the adaptation phase; plus the deterministic order in which
//! a run visits them (a function of seed and step, so resumed runs match).

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use crate::data::beir;
use crate::index::bm25::Bm25Index;
use crate::model::TextTokenizer;

/// One training example, tokenized and truncated.
pub struct Triple {
    pub query: Vec<u32>,
    pub positive: Vec<u32>,
    /// Candidates for the hard negative (may be empty).
    pub negatives: Vec<Vec<u32>>,
}

fn tokenize_all(tok: &TextTokenizer, texts: &[String], max_len: usize) -> Result<Vec<Vec<u32>>> {
    texts
        .par_iter()
        .map(|t| {
            let mut ids = tok.encode(t)?;
            ids.truncate(max_len);
            Ok(ids)
        })
        .collect::<Result<Vec<_>, crate::model::ModelError>>()
        .context("tokenizing training text")
}

/// SciFact-style BEIR pairs from `split` qrels, with up to `depth` BM25
/// negatives per query (judged documents excluded). The BM25 index is built
/// once under `work`.
pub fn beir_triples(
    dir: &Path,
    split: &str,
    tok: &TextTokenizer,
    q_len: usize,
    d_len: usize,
    depth: usize,
    work: &Path,
) -> Result<Vec<Triple>> {
    let docs = beir::read_corpus(dir)?;
    let queries = beir::read_queries(dir)?;
    let qrels = beir::read_qrels(dir, split)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let bm25_dir = work.join(format!("bm25-{name}"));
    if !bm25_dir.join("meta.json").is_file() {
        let tmp = work.join(format!("bm25-{name}.tmp"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| tmp.display().to_string())?;
        }
        Bm25Index::build(&tmp, &docs)?;
        std::fs::rename(&tmp, &bm25_dir).with_context(|| bm25_dir.display().to_string())?;
    }
    let bm25 = Bm25Index::open(&bm25_dir)?;
    let ordinal: std::collections::HashMap<&str, usize> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.as_str(), i))
        .collect();
    let mut q_text = Vec::new();
    let mut pos = Vec::new();
    let mut negs: Vec<Vec<usize>> = Vec::new();
    let mut ids: Vec<&String> = qrels.keys().collect();
    ids.sort();
    for qid in ids {
        let Some(q) = queries.iter().find(|q| &q.id == qid) else {
            continue;
        };
        let judged = &qrels[qid];
        let relevant: HashSet<usize> = judged
            .iter()
            .filter(|(_, &g)| g > 0)
            .filter_map(|(d, _)| ordinal.get(d.as_str()).copied())
            .collect();
        let hard: Vec<usize> = bm25
            .search(&q.text, depth + relevant.len())?
            .into_iter()
            .map(|h| h.ordinal)
            .filter(|o| !relevant.contains(o))
            .take(depth)
            .collect();
        let mut rel: Vec<usize> = relevant.into_iter().collect();
        rel.sort();
        for d in rel {
            q_text.push(q.text.clone());
            pos.push(d);
            negs.push(hard.clone());
        }
    }
    let doc_text: Vec<String> = docs.iter().map(|d| d.full_text()).collect();
    let used: Vec<usize> = {
        let mut u: Vec<usize> = pos.iter().chain(negs.iter().flatten()).copied().collect();
        u.sort();
        u.dedup();
        u
    };
    let used_text: Vec<String> = used.iter().map(|&i| doc_text[i].clone()).collect();
    let used_ids = tokenize_all(tok, &used_text, d_len)?;
    let lookup = |o: usize| used_ids[used.binary_search(&o).unwrap_or(0)].clone();
    let q_ids = tokenize_all(tok, &q_text, q_len)?;
    Ok(q_ids
        .into_iter()
        .zip(pos)
        .zip(negs)
        .map(|((query, p), n)| Triple {
            query,
            positive: lookup(p),
            negatives: n.into_iter().map(lookup).collect(),
        })
        .collect())
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
pub fn climate_fever_triples(
    file: &Path,
    tok: &TextTokenizer,
    q_len: usize,
    d_len: usize,
) -> Result<Vec<Triple>> {
    let f = std::fs::File::open(file).with_context(|| file.display().to_string())?;
    let mut queries = Vec::new();
    let mut positives = Vec::new();
    let mut negatives: Vec<Vec<String>> = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", file.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let c: Claim = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a Climate-FEVER claim", file.display(), n + 1))?;
        let text = |e: &Evidence| format!("{} {}", e.article, e.evidence);
        let neg: Vec<String> = c
            .evidences
            .iter()
            .filter(|e| e.evidence_label == "NOT_ENOUGH_INFO")
            .map(text)
            .collect();
        for e in c
            .evidences
            .iter()
            .filter(|e| e.evidence_label == "SUPPORTS" || e.evidence_label == "REFUTES")
        {
            queries.push(c.claim.clone());
            positives.push(text(e));
            negatives.push(neg.clone());
        }
    }
    let q = tokenize_all(tok, &queries, q_len)?;
    let p = tokenize_all(tok, &positives, d_len)?;
    let counts: Vec<usize> = negatives.iter().map(Vec::len).collect();
    let flat: Vec<String> = negatives.into_iter().flatten().collect();
    let mut flat_ids = tokenize_all(tok, &flat, d_len)?.into_iter();
    Ok(q.into_iter()
        .zip(p)
        .zip(counts)
        .map(|((query, positive), k)| Triple {
            query,
            positive,
            negatives: flat_ids.by_ref().take(k).collect(),
        })
        .collect())
}

/// The triples named by `sources` (`scifact`, `climate-fever`, or any BEIR
/// collection directory name with train qrels) under `data`.
pub fn load_triples(
    data: &Path,
    sources: &[String],
    tok: &TextTokenizer,
    q_len: usize,
    d_len: usize,
    depth: usize,
    work: &Path,
) -> Result<Vec<Triple>> {
    let mut all = Vec::new();
    for s in sources {
        let t = if s == "climate-fever" {
            climate_fever_triples(
                &data.join("climate-fever/climate-fever.jsonl"),
                tok,
                q_len,
                d_len,
            )?
        } else {
            beir_triples(&data.join(s), "train", tok, q_len, d_len, depth, work)?
        };
        all.extend(t);
    }
    if all.is_empty() {
        bail!("no training pairs in {sources:?} under {}", data.display());
    }
    Ok(all)
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
        let docs = beir::read_corpus(&data.join(c))?;
        let texts: Vec<String> = docs.iter().map(|d| d.full_text()).collect();
        for ids in tokenize_all(tok, &texts, usize::MAX)? {
            stream.extend(ids);
            stream.push(separator);
        }
    }
    Ok(stream)
}

/// SplitMix64 of `x`: the run's only source of randomness.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
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
}
