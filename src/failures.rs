//! Why learned sparse retrieval loses to BM25 on a judged query. For each
//! relevant document LSR leaves out of its top 10: its rank under both
//! systems, the query words that earn it BM25 score with the weight the
//! query's expansion and the document's vector give their tokens (the usual
//! cause is a vocabulary mismatch: a word BM25 matches that the expansion
//! lacks or weighs low), and the terms it does share with the expansion. For
//! the non-relevant documents LSR ranks above it: the expansion terms that
//! lifted them.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::encode::SparseVec;
use crate::index::bm25;
use crate::index::IndexError;
use crate::model::TextTokenizer;
use crate::search::{Hit, LsrIndex};

/// One term's share of an LSR score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TermEvidence {
    pub token: String,
    pub query_weight: f32,
    pub doc_weight: f32,
    pub product: f32,
}

/// A query word that scores under BM25 for a document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WordEvidence {
    /// The word as written in the query, and BM25's analyzed term.
    pub word: String,
    pub term: String,
    /// Its BM25 contribution to the document.
    pub bm25: f32,
    /// The model's tokens for the word, and the largest weight the query's
    /// expansion and the document's vector give any of them.
    pub tokens: Vec<String>,
    pub query_weight: f32,
    pub doc_weight: f32,
    /// In the expansion at less than a tenth of its heaviest term, or absent.
    pub missing_from_expansion: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MissedDocument {
    pub doc_id: String,
    pub grade: i32,
    /// 1-based; `None` beyond the runs' depth.
    pub lsr_rank: Option<usize>,
    pub bm25_rank: Option<usize>,
    pub bm25_words: Vec<WordEvidence>,
    /// What the document shares with the expansion, heaviest first.
    pub shared_terms: Vec<TermEvidence>,
    pub ordinal: usize,
    /// The query's terms that the document has only beyond what the model
    /// read of it (its first `max_len` tokens): they cannot match. Filled
    /// where the document's text is at hand (the explorer).
    pub beyond_window: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WrongHit {
    pub doc_id: String,
    pub rank: usize,
    pub score: f32,
    /// The expansion terms that scored it, heaviest first.
    pub lifted_by: Vec<TermEvidence>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailureExplanation {
    pub query_id: String,
    pub text: String,
    pub ndcg_lsr: f64,
    pub ndcg_bm25: f64,
    /// The query's heaviest expansion terms.
    pub expansion: Vec<(String, f32)>,
    pub missed: Vec<MissedDocument>,
    pub wrong_hits: Vec<WrongHit>,
}

/// Everything one query's explanation reads.
pub struct FailureCase<'a> {
    pub query_id: &'a str,
    pub text: &'a str,
    pub expansion: &'a SparseVec,
    /// Document id → grade.
    pub judged: &'a HashMap<String, i32>,
    pub lsr: &'a [Hit],
    pub bm25: &'a [Hit],
    pub ndcg_lsr: f64,
    pub ndcg_bm25: f64,
}

/// Terms listed per document.
const TERMS: usize = 8;
/// Missed relevant documents and wrongly ranked hits explained per query.
const DOCS: usize = 3;

fn rank_of(run: &[Hit], doc: &str) -> Option<usize> {
    run.iter().position(|h| h.doc_id == doc).map(|r| r + 1)
}

fn evidence(tok: &TextTokenizer, terms: Vec<crate::encode::Contribution>) -> Vec<TermEvidence> {
    terms
        .into_iter()
        .take(TERMS)
        .map(|c| TermEvidence {
            token: tok.token(c.id).to_string(),
            query_weight: c.query_weight,
            doc_weight: c.doc_weight,
            product: c.product,
        })
        .collect()
}

/// Query words by BM25's analyzed term (the first spelling seen).
fn surface_words(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut a = bm25::analyzer();
        let mut stream = a.token_stream(word);
        while let Some(t) = stream.next() {
            out.entry(t.text.clone())
                .or_insert_with(|| word.to_string());
        }
    }
    out
}

/// The relevant documents of a case: highest grade first, then the worst
/// LSR rank.
fn relevant_worst_first<'c>(case: &'c FailureCase) -> Vec<(&'c String, i32)> {
    let mut relevant: Vec<(&String, i32)> = case
        .judged
        .iter()
        .filter(|(_, &g)| g > 0)
        .map(|(d, &g)| (d, g))
        .collect();
    relevant.sort_by_key(|(d, g)| {
        (
            std::cmp::Reverse(*g),
            std::cmp::Reverse(rank_of(case.lsr, d).unwrap_or(usize::MAX)),
            (*d).clone(),
        )
    });
    relevant
}

/// Why BM25 matched document `o`: each query word it scores, strongest
/// first, with the weights the model gave its tokens on both sides.
fn bm25_evidence(
    idx: &LsrIndex,
    tok: &TextTokenizer,
    case: &FailureCase,
    o: usize,
) -> Result<Vec<WordEvidence>, IndexError> {
    let heaviest = case.expansion.weights.iter().copied().fold(0f32, f32::max);
    let words = surface_words(case.text);
    let vector = &idx.vectors[o];
    let mut out = Vec::new();
    for (term, score) in idx.bm25.term_scores(case.text, o)? {
        if score <= 0.0 {
            continue;
        }
        let word = words.get(&term).cloned().unwrap_or_else(|| term.clone());
        let ids = tok.encode(&format!(" {word}")).unwrap_or_default();
        let qw = ids
            .iter()
            .map(|&i| case.expansion.get(i))
            .fold(0f32, f32::max);
        let dw = ids.iter().map(|&i| vector.get(i)).fold(0f32, f32::max);
        out.push(WordEvidence {
            word,
            term,
            bm25: score,
            tokens: ids.iter().map(|&i| tok.token(i).to_string()).collect(),
            query_weight: qw,
            doc_weight: dw,
            missing_from_expansion: qw < 0.1 * heaviest,
        });
    }
    out.sort_by(|a, b| b.bm25.total_cmp(&a.bm25));
    Ok(out)
}

/// LSR's top hits that are not relevant, and the terms that lifted them.
fn wrong_hits(idx: &LsrIndex, tok: &TextTokenizer, case: &FailureCase) -> Vec<WrongHit> {
    let relevant_ids: HashSet<&str> = case
        .judged
        .iter()
        .filter(|(_, &g)| g > 0)
        .map(|(d, _)| d.as_str())
        .collect();
    case.lsr
        .iter()
        .enumerate()
        .filter(|(_, h)| !relevant_ids.contains(h.doc_id.as_str()))
        .take(DOCS)
        .map(|(r, h)| WrongHit {
            doc_id: h.doc_id.clone(),
            rank: r + 1,
            score: h.score,
            lifted_by: evidence(tok, idx.explain(case.expansion, h.ordinal)),
        })
        .collect()
}

/// Explain one query where LSR ranks relevant documents below BM25.
pub fn explain(
    idx: &LsrIndex,
    tok: &TextTokenizer,
    case: &FailureCase,
) -> Result<FailureExplanation, IndexError> {
    let ordinal: HashMap<&str, usize> = (0..idx.len()).map(|o| (idx.doc_id(o), o)).collect();
    let mut missed = Vec::new();
    for (doc, grade) in relevant_worst_first(case) {
        let lsr_rank = rank_of(case.lsr, doc);
        if lsr_rank.is_some_and(|r| r <= 10) || missed.len() == DOCS {
            continue;
        }
        let Some(&o) = ordinal.get(doc.as_str()) else {
            continue;
        };
        missed.push(MissedDocument {
            doc_id: doc.clone(),
            grade,
            lsr_rank,
            bm25_rank: rank_of(case.bm25, doc),
            bm25_words: bm25_evidence(idx, tok, case, o)?,
            shared_terms: evidence(tok, idx.explain(case.expansion, o)),
            ordinal: o,
            beyond_window: Vec::new(),
        });
    }
    let wrong_hits = wrong_hits(idx, tok, case);
    Ok(FailureExplanation {
        query_id: case.query_id.to_string(),
        text: case.text.to_string(),
        ndcg_lsr: case.ndcg_lsr,
        ndcg_bm25: case.ndcg_bm25,
        expansion: case
            .expansion
            .top_k(12)
            .into_iter()
            .map(|(id, w)| (tok.token(id).to_string(), w))
            .collect(),
        missed,
        wrong_hits,
    })
}
