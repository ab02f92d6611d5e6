//! The learned-sparse side of the tantivy index: a field whose terms are
//! vocabulary ids carrying quantized impacts as term frequencies
//! (tf = round(w × scale), Anserini's impact trick), a tokenizer that expands
//! `id:tf` pairs without building repeated strings, and an impact
//! Query/Weight/Scorer computing Σ_v q_v × d_v.

use tantivy::postings::Postings;
use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use tantivy::{DocId, DocSet, Score, SegmentReader, Term, TERMINATED};

pub const TOKENIZER: &str = "csplade_impact";

/// `"17:42 305:7"` → token "17" 42 times, token "305" 7 times.
#[derive(Clone, Default)]
pub struct ImpactTokenizer;

pub struct ImpactStream<'a> {
    pairs: std::str::SplitWhitespace<'a>,
    remaining: u32,
    token: Token,
}

impl Tokenizer for ImpactTokenizer {
    type TokenStream<'a> = ImpactStream<'a>;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> ImpactStream<'a> {
        ImpactStream {
            pairs: text.split_whitespace(),
            remaining: 0,
            token: Token::default(),
        }
    }
}

impl TokenStream for ImpactStream<'_> {
    fn advance(&mut self) -> bool {
        while self.remaining == 0 {
            let Some(pair) = self.pairs.next() else {
                return false;
            };
            let Some((id, tf)) = pair.split_once(':') else {
                continue;
            };
            let Ok(tf) = tf.parse::<u32>() else { continue };
            self.token.text.clear();
            self.token.text.push_str(id);
            self.remaining = tf;
        }
        self.remaining -= 1;
        self.token.position = self.token.position.wrapping_add(1);
        true
    }
    fn token(&self) -> &Token {
        &self.token
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// The integer impact the index stores for weight `w`: `round(w × scale)`.
/// Every reader of the quantized index (tantivy's scorer, exports, the
/// trade-off's projection, `index verify`) goes through this.
pub fn impact(w: f32, scale: f32) -> u32 {
    (w * scale).round() as u32
}

/// The weight tantivy scores with for `w`: its impact read back.
pub fn as_scored(w: f32, scale: f32) -> f32 {
    impact(w, scale) as f32 / scale
}

/// The impact text of a document vector: `id:impact` pairs.
pub fn impact_text(v: &crate::encode::SparseVec, scale: f32) -> String {
    let mut s = String::with_capacity(v.active() * 8);
    for (id, w) in v.iter() {
        let tf = impact(w, scale);
        if tf > 0 {
            use std::fmt::Write;
            let _ = write!(s, "{id}:{tf} ");
        }
    }
    s
}

/// Σ_v q_v × tf_v / scale over the query's terms.
#[derive(Clone, Debug)]
pub struct ImpactQuery {
    field: Field,
    terms: Vec<(Term, f32)>,
    scale: f32,
}

impl ImpactQuery {
    pub fn new(field: Field, query: &crate::encode::SparseVec, scale: f32) -> Self {
        let terms = query
            .iter()
            .map(|(id, w)| (Term::from_field_text(field, &id.to_string()), w))
            .collect();
        Self {
            field,
            terms,
            scale,
        }
    }
}

impl Query for ImpactQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(ImpactWeight {
            field: self.field,
            terms: self.terms.clone(),
            scale: self.scale,
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        for (t, _) in &self.terms {
            visitor(t, false);
        }
    }
}

pub struct ImpactWeight {
    field: Field,
    terms: Vec<(Term, f32)>,
    scale: f32,
}

impl Weight for ImpactWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let inverted = reader.inverted_index(self.field)?;
        let mut acc = vec![0f32; reader.max_doc() as usize];
        for (term, q) in &self.terms {
            if let Some(mut postings) =
                inverted.read_postings(term, IndexRecordOption::WithFreqs)?
            {
                let factor = q / self.scale;
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    acc[doc as usize] += factor * postings.term_freq() as f32;
                    doc = postings.advance();
                }
            }
        }
        let alive = reader.alive_bitset();
        let hits: Vec<(DocId, Score)> = acc
            .into_iter()
            .enumerate()
            .filter(|&(d, s)| s > 0.0 && alive.is_none_or(|a| a.is_alive(d as DocId)))
            .map(|(d, s)| (d as DocId, s * boost))
            .collect();
        Ok(Box::new(ScoredDocs { hits, pos: 0 }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let inverted = reader.inverted_index(self.field)?;
        let mut parts = Vec::new();
        let mut total = 0.0;
        for (term, q) in &self.terms {
            if let Some(mut postings) =
                inverted.read_postings(term, IndexRecordOption::WithFreqs)?
            {
                if postings.seek(doc) == doc {
                    let d = postings.term_freq() as f32 / self.scale;
                    total += q * d;
                    let text = term.value().as_str().unwrap_or("?").to_string();
                    parts.push(Explanation::new_with_string(
                        format!("term {text}: q {q:.4} × d {d:.4}"),
                        q * d,
                    ));
                }
            }
        }
        if parts.is_empty() {
            return Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )));
        }
        let mut e = Explanation::new("impact sum Σ q_v × d_v", total);
        for p in parts {
            e.add_detail(p);
        }
        Ok(e)
    }
}

/// A scorer over precomputed (doc, score) pairs in doc order.
struct ScoredDocs {
    hits: Vec<(DocId, Score)>,
    pos: usize,
}

impl DocSet for ScoredDocs {
    fn advance(&mut self) -> DocId {
        if self.pos < self.hits.len() {
            self.pos += 1;
        }
        self.doc()
    }
    fn doc(&self) -> DocId {
        self.hits.get(self.pos).map_or(TERMINATED, |h| h.0)
    }
    fn size_hint(&self) -> u32 {
        (self.hits.len() - self.pos) as u32
    }
}

impl Scorer for ScoredDocs {
    fn score(&mut self) -> Score {
        self.hits.get(self.pos).map_or(0.0, |h| h.1)
    }
}
