//! Why one document matched one query, for the explorer's detail pane:
//! each shared term's contribution, the document's own terms, the terms
//! the query's expansion lacks, where the model stopped reading and, with
//! passages in the index, the passage the document was ranked by.

use serde::Serialize;

use super::Explorer;
use crate::encode::{Contribution, Encoder, SparseVec};
use crate::search::StoredDoc;

/// Why one document matched one query.
#[derive(Clone, Debug, Serialize)]
pub struct DocDetail {
    pub ordinal: usize,
    pub doc_id: String,
    pub title: String,
    pub text: String,
    /// Each shared term's token and share of the score, largest first.
    pub contributions: Vec<(String, Contribution)>,
    /// The document's own heaviest terms.
    pub top_terms: Vec<(String, f32)>,
    /// Relevant-document terms the query's expansion lacks (heaviest first).
    pub missed_terms: Vec<(String, f32)>,
    /// Where the model stopped reading `text` (bytes into it) and after how
    /// many tokens, when the document is longer than the encoder's length.
    pub encoded_window: Option<(usize, usize)>,
    /// Query terms the document has only after that point: matches the
    /// model could not see, a common and otherwise invisible failure (none
    /// when the index reads the rest as passages).
    pub beyond_window: Vec<String>,
    /// How many passages the index holds of this document beyond its first
    /// read (0 without `--passages`).
    pub passages: usize,
    /// The passage that outscored the first read, when one did: its number
    /// (1-based) and words. The contributions and terms are then its own.
    pub passage: Option<(usize, String)>,
}

/// The vector a document was scored by, and the passage it is when not
/// the document's first read (see [`DocDetail::passage`]).
struct ScoringRead {
    passages: usize,
    passage: Option<(usize, String)>,
    vector: SparseVec,
}

impl Explorer {
    /// Contributions, document text and terms for one hit of `query` (the
    /// expansion), whose feedback added `feedback` (empty without it).
    pub fn detail(
        &self,
        query: &SparseVec,
        feedback: &SparseVec,
        ordinal: usize,
    ) -> anyhow::Result<DocDetail> {
        let (doc, dv) = match (&self.index, &self.partial) {
            (Some(idx), _) => (idx.document(ordinal)?, idx.vectors[ordinal].clone()),
            (None, Some(p)) => {
                let d = self
                    .corpus
                    .get(ordinal)
                    .ok_or_else(|| anyhow::anyhow!("no document {ordinal}"))?;
                let v = p
                    .vector(ordinal)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("document {ordinal} is not encoded yet"))?;
                (
                    StoredDoc {
                        doc_id: d.id.clone(),
                        title: d.title.clone(),
                        text: d.text.clone(),
                    },
                    v,
                )
            }
            _ => anyhow::bail!("no index loaded"),
        };
        let tok = |id: u32| self.model.tokenizer().token(id).to_string();
        let idf = match (&self.index, &self.partial) {
            (Some(idx), _) => idx.idf.as_slice(),
            (None, Some(p)) => p.idf.as_slice(),
            _ => &[],
        };
        let ScoringRead {
            passages,
            passage,
            vector: dv,
        } = self.scoring_read(query, feedback, (ordinal, &doc), dv);
        let contributions = crate::search::prior::explain(query, &dv, self.prior, idf, feedback)
            .into_iter()
            .map(|c| (tok(c.id), c))
            .collect();
        let dv = &dv;
        let top_terms = dv
            .top_k(30)
            .into_iter()
            .map(|(id, w)| (tok(id), w))
            .collect();
        let missed_terms = dv
            .top_k(0)
            .into_iter()
            .filter(|(id, _)| query.get(*id) == 0.0 && feedback.get(*id) == 0.0)
            .take(20)
            .map(|(id, w)| (tok(id), w))
            .collect();
        let encoded_window = self.encoded_window(&doc.title, &doc.text);
        let beyond_window = match encoded_window {
            Some((at, _)) if passages == 0 => self.beyond_window(query, &doc.title, &doc.text, at),
            _ => Vec::new(),
        };
        Ok(DocDetail {
            ordinal,
            doc_id: doc.doc_id,
            title: doc.title,
            text: doc.text,
            contributions,
            top_terms,
            missed_terms,
            encoded_window,
            beyond_window,
            passages,
            passage,
        })
    }

    /// What document `ordinal` (stored as `doc`) was scored by for
    /// `query`: with passages in the index, the passage that outscored its
    /// first read `first`, if one did; else `first` itself.
    fn scoring_read(
        &self,
        query: &SparseVec,
        feedback: &SparseVec,
        (ordinal, doc): (usize, &StoredDoc),
        first: SparseVec,
    ) -> ScoringRead {
        let mut read = ScoringRead {
            passages: 0,
            passage: None,
            vector: first,
        };
        let Some((idx, p)) = self
            .index
            .as_ref()
            .and_then(|i| Some((i, i.passages.as_ref()?)))
        else {
            return read;
        };
        read.passages = p.count(ordinal);
        let best = idx.best_passage(query, self.prior, feedback, ordinal);
        if let Some((k, _)) = best {
            if let (Some(text), Some(v)) = (idx.passage_text(doc, k), p.vector(ordinal, k)) {
                read.passage = Some((k, text));
                read.vector = v.clone();
            }
        }
        read
    }

    /// The query's terms (by surface text) that occur in `text` after byte
    /// `at` but nowhere in the title or before it.
    pub(super) fn beyond_window(
        &self,
        query: &SparseVec,
        title: &str,
        text: &str,
        at: usize,
    ) -> Vec<String> {
        use crate::encode::encoder::surface;
        let tok = self.model.tokenizer();
        let words = |s: &str| -> std::collections::HashSet<String> {
            tok.encode(s)
                .unwrap_or_default()
                .into_iter()
                .map(|id| surface(tok.token(id)))
                .filter(|w| w.chars().any(char::is_alphanumeric))
                .collect()
        };
        let read = words(&format!("{title} {}", &text[..at]));
        let unread = words(&text[at..]);
        let mut seen = std::collections::HashSet::new();
        query
            .top_k(0)
            .into_iter()
            .map(|(id, _)| tok.token(id).to_string())
            .filter(|t| {
                let s = surface(t);
                unread.contains(&s) && !read.contains(&s) && seen.insert(s)
            })
            .collect()
    }

    /// Where the encoder stops reading a document's text (see
    /// [`DocDetail::encoded_window`]): the title and text are read as one,
    /// title first, as the index encoded them.
    pub(super) fn encoded_window(&self, title: &str, text: &str) -> Option<(usize, usize)> {
        let doc = crate::data::beir::Document {
            id: String::new(),
            title: title.to_string(),
            text: text.to_string(),
        };
        let full = doc.full_text();
        let tokens = Encoder::new(self.model.as_ref(), self.config.clone()).max_tokens();
        let end = self.model.tokenizer().prefix_bytes(&full, tokens)?;
        let body_start = full.len() - text.len();
        let mut at = end.saturating_sub(body_start).min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        Some((at, tokens))
    }
}
