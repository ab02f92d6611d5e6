//! BM25 baseline: a tantivy index over each document's title + text as one
//! field ("flat", as Anserini indexes BEIR), English analysis (lower-casing,
//! stop words, Porter stemming), scored by tantivy's BM25 (k1 = 1.2, b = 0.75).

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

use super::IndexError;
use crate::data::beir::Document;

pub const ANALYZER: &str = "csplade_en";

/// The English analyzer shared by indexing and querying.
pub fn analyzer() -> TextAnalyzer {
    let stop = StopWordFilter::new(Language::English)
        .unwrap_or_else(|| StopWordFilter::remove(Vec::<String>::new()));
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(stop)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The terms the analyzer makes of `text`, in order, duplicates kept.
pub fn analyzed_terms(text: &str) -> Vec<String> {
    let mut a = analyzer();
    let mut stream = a.token_stream(text);
    let mut out = Vec::new();
    while let Some(t) = stream.next() {
        out.push(t.text.clone());
    }
    out
}

fn tv(e: tantivy::TantivyError, dir: &Path) -> IndexError {
    IndexError::Tantivy {
        path: dir.to_path_buf(),
        msg: e.to_string(),
    }
}

/// One ranked BM25 result: corpus position and score.
#[derive(Clone, Debug, PartialEq)]
pub struct Bm25Hit {
    pub ordinal: usize,
    pub score: f32,
}

pub struct Bm25Index {
    index: Index,
    reader: IndexReader,
    contents: tantivy::schema::Field,
    /// Corpus position of every (segment, doc).
    ordinals: Vec<Vec<u32>>,
}

impl Bm25Index {
    /// Build into `dir` (which must not exist yet).
    pub fn build(dir: &Path, docs: &[Document]) -> Result<(), IndexError> {
        let mut sb = Schema::builder();
        let ordinal =
            sb.add_u64_field("ordinal", NumericOptions::default().set_stored().set_fast());
        let text_opts = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let contents = sb.add_text_field("contents", text_opts);
        std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
        let index = Index::create_in_dir(dir, sb.build()).map_err(|e| tv(e, dir))?;
        index.tokenizers().register(ANALYZER, analyzer());
        let mut w = index
            .writer_with_num_threads(1, 200_000_000)
            .map_err(|e| tv(e, dir))?;
        for (i, d) in docs.iter().enumerate() {
            let mut doc = TantivyDocument::default();
            doc.add_u64(ordinal, i as u64);
            doc.add_text(contents, d.full_text());
            w.add_document(doc).map_err(|e| tv(e, dir))?;
        }
        w.commit().map_err(|e| tv(e, dir))?;
        w.wait_merging_threads().map_err(|e| tv(e, dir))?;
        Ok(())
    }

    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        let index = Index::open_in_dir(dir).map_err(|e| super::unreadable_tantivy(dir, &e))?;
        index.tokenizers().register(ANALYZER, analyzer());
        let schema = index.schema();
        let field = |n: &str| {
            schema.get_field(n).map_err(|_| IndexError::Corrupt {
                path: dir.to_path_buf(),
                msg: format!("BM25 index has no {n} field"),
            })
        };
        let contents = field("contents")?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| tv(e, dir))?;
        let ordinals = super::ordinal_table(&reader, dir)?;
        Ok(Self {
            index,
            reader,
            contents,
            ordinals,
        })
    }

    /// The analyzed terms of a query text (duplicates kept, as Lucene does).
    pub fn query_terms(&self, text: &str) -> Vec<String> {
        analyzed_terms(text)
    }

    pub fn search(&self, text: &str, k: usize) -> Result<Vec<Bm25Hit>, IndexError> {
        let clauses: Vec<(Occur, Box<dyn Query>)> = self
            .query_terms(text)
            .into_iter()
            .map(|t| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(self.contents, &t),
                    IndexRecordOption::WithFreqs,
                ));
                (Occur::Should, q)
            })
            .collect();
        if clauses.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        // No ranking is longer than the collection.
        let k = k.min(searcher.num_docs().max(1) as usize);
        let top = searcher
            .search(&BooleanQuery::new(clauses), &TopDocs::with_limit(k))
            .map_err(|e| IndexError::Tantivy {
                path: Default::default(),
                msg: e.to_string(),
            })?;
        Ok(top
            .into_iter()
            .map(|(score, a)| Bm25Hit {
                ordinal: self.ordinals[a.segment_ord as usize][a.doc_id as usize] as usize,
                score,
            })
            .collect())
    }

    /// Each distinct analyzed term of `text` with its BM25 contribution to
    /// the document at corpus position `ordinal` (0 where it does not occur).
    pub fn term_scores(
        &self,
        text: &str,
        ordinal: usize,
    ) -> Result<Vec<(String, f32)>, IndexError> {
        let address = self.ordinals.iter().enumerate().find_map(|(seg, docs)| {
            docs.iter()
                .position(|&o| o as usize == ordinal)
                .map(|d| tantivy::DocAddress::new(seg as u32, d as u32))
        });
        let Some(address) = address else {
            return Err(IndexError::Corrupt {
                path: Default::default(),
                msg: format!("BM25 index has no document at position {ordinal}"),
            });
        };
        let searcher = self.reader.searcher();
        let mut terms = self.query_terms(text);
        terms.sort();
        terms.dedup();
        Ok(terms
            .into_iter()
            .map(|t| {
                let q = TermQuery::new(
                    Term::from_field_text(self.contents, &t),
                    IndexRecordOption::WithFreqs,
                );
                // A document without the term does not match: it contributes 0.
                let score = q.explain(&searcher, address).map_or(0.0, |e| e.value());
                (t, score)
            })
            .collect())
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn index(&self) -> &Index {
        &self.index
    }
}
