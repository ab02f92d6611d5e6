//! The engine behind the explorer (no terminal code): a query's expansion,
//! its ranked hits with BM25 ranks and judgements, why a document matched,
//! and the queries where the sparse model loses to BM25.

mod detail;
pub mod session;

pub use detail::DocDetail;

pub use session::{Session, SessionTasks};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::data::beir::{Qrels, Query};
use crate::encode::{Encoder, EncoderConfig, SparseVec};
use crate::eval;
use crate::model::SparseModel;
pub use crate::search::Backend;
pub use crate::search::{Feedback, Fusion, QueryFeedback, QueryPrior};
use crate::search::{Hit, LsrIndex};

pub use crate::compare::EncoderSpec;
pub use crate::compare::PRESETS as COMPARE_PRESETS;
pub use crate::encode::ExpansionTerm;
pub use crate::tradeoff::{Axis as FrontierAxis, Frontier, PointResult as FrontierPoint};

/// Which system ranks the hits in Search.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ranking {
    /// The sparse model (with its query prior).
    #[default]
    Lsr,
    /// The fusion of LSR and BM25.
    Hybrid,
    Bm25,
}

impl Ranking {
    pub fn name(self) -> &'static str {
        match self {
            Ranking::Lsr => "LSR",
            Ranking::Hybrid => "hybrid",
            Ranking::Bm25 => "BM25",
        }
    }

    /// The next in LSR → hybrid → BM25 → LSR.
    pub fn next(self) -> Self {
        match self {
            Ranking::Lsr => Ranking::Hybrid,
            Ranking::Hybrid => Ranking::Bm25,
            Ranking::Bm25 => Ranking::Lsr,
        }
    }
}

/// Candidates each system ranks before a hybrid fuses them.
const FUSION_DEPTH: usize = 1000;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HitRow {
    pub rank: usize,
    pub ordinal: usize,
    pub doc_id: String,
    pub title: String,
    pub score: f32,
    /// Rank of the document under LSR alone (within its top 1,000).
    pub lsr_rank: Option<usize>,
    /// Rank under BM25 (within its top 1,000).
    pub bm25_rank: Option<usize>,
    /// Judged relevance, when the collection's qrels know this query.
    pub relevance: Option<i32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct QueryResult {
    pub text: String,
    pub query_id: Option<String>,
    /// The expansion as the model wrote it.
    pub vector: SparseVec,
    pub terms: Vec<ExpansionTerm>,
    /// The system that ranked `hits`, and the query prior and feedback
    /// LSR scored with.
    pub ranking: Ranking,
    pub prior: QueryPrior,
    pub feedback: QueryFeedback,
    /// What the feedback added to the query, and from which documents
    /// (empty without feedback, and while the index is being built).
    pub feedback_terms: Feedback,
    /// The same terms as tokens, heaviest first.
    pub feedback_tokens: Vec<(String, f32)>,
    /// The ids of the documents they came from, best first.
    pub feedback_docs: Vec<String>,
    pub hits: Vec<HitRow>,
    pub encode_ms: f64,
    pub search_ms: f64,
    /// The scorer that ranked the hits (`exact over 120 of 300 documents`
    /// while the index is being built).
    pub scorer: String,
}

/// Per-query effectiveness of the sparse model against BM25.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailureRow {
    pub query_id: String,
    pub text: String,
    pub lsr_ndcg10: f64,
    pub bm25_ndcg10: f64,
    /// nDCG@10 of the fusion of the two (the explorer's `--fusion`).
    pub hybrid_ndcg10: f64,
    /// With feedback: LSR's nDCG@10 without it (the prior alone).
    pub unfed_ndcg10: Option<f64>,
    /// A relevant document among LSR's top 100 (false: LSR misses them all).
    pub relevant_in_lsr_top100: bool,
}

impl FailureRow {
    /// LSR's nDCG@10 minus BM25's (negative: LSR loses).
    pub fn delta(&self) -> f64 {
        self.lsr_ndcg10 - self.bm25_ndcg10
    }
}

#[derive(Clone)]
pub struct Explorer {
    pub model: Arc<SparseModel>,
    pub config: EncoderConfig,
    pub index: Option<Arc<LsrIndex>>,
    /// While the index is being built: what is encoded so far, and the corpus.
    pub partial: Option<Arc<crate::search::PartialIndex>>,
    pub corpus: Arc<Vec<crate::data::beir::Document>>,
    pub queries: Arc<Vec<Query>>,
    pub qrels: Option<Arc<Qrels>>,
    /// The LSR scorer behind every ranking.
    pub backend: Backend,
    /// How query expansions are weighed before LSR scores them.
    pub prior: QueryPrior,
    /// The pseudo-relevance feedback LSR adds to them.
    pub feedback: QueryFeedback,
    /// How the hybrid ranking fuses LSR and BM25.
    pub fusion: Fusion,
    /// Queries through the model's inference-free query table.
    pub inference_free: bool,
}

impl Explorer {
    /// The same explorer, LSR ranking without pseudo-relevance feedback.
    pub fn without_feedback(&self) -> Self {
        Self {
            feedback: QueryFeedback::None,
            ..self.clone()
        }
    }

    /// The query encoder: the model, or its inference-free table.
    fn encoder(&self) -> anyhow::Result<Encoder<'_>> {
        Ok(Encoder::new(self.model.as_ref(), self.config.clone())
            .with_inference_free(self.inference_free)?)
    }

    /// The expansion of a text, heaviest terms first.
    pub fn expand(&self, text: &str) -> anyhow::Result<(SparseVec, Vec<ExpansionTerm>)> {
        let e = self.encoder()?.encode_one(text)?;
        let terms = e.terms(self.model.tokenizer(), 0);
        Ok((e.vector, terms))
    }

    /// Expansion plus hits ranked by `ranking` (when an index is loaded).
    pub fn query(&self, text: &str, k: usize, ranking: Ranking) -> anyhow::Result<QueryResult> {
        let t0 = Instant::now();
        let (vector, terms) = self.expand(text)?;
        let encode_ms = t0.elapsed().as_secs_f64() * 1e3;
        let query_id = self
            .queries
            .iter()
            .find(|q| q.text == text)
            .map(|q| q.id.clone());
        let judged = query_id
            .as_ref()
            .and_then(|q| self.qrels.as_ref().and_then(|r| r.get(q)));
        let t1 = Instant::now();
        let (hits, feedback_terms, scorer) = match (&self.index, &self.partial) {
            (Some(idx), _) => {
                let (hits, feedback) = self.ranked(idx, text, &vector, k, ranking, judged)?;
                let scorer = match ranking {
                    Ranking::Lsr => self.backend.to_string(),
                    Ranking::Hybrid => format!("{} of {} and BM25", self.fusion, self.backend),
                    Ranking::Bm25 => "BM25".to_string(),
                };
                (hits, feedback, scorer)
            }
            (None, Some(p)) => (
                self.partial_hits(p, &vector, k, judged),
                Feedback::default(),
                format!("exact over {} of {} documents", p.len(), p.total),
            ),
            (None, None) => (Vec::new(), Feedback::default(), "no index".to_string()),
        };
        let (feedback_tokens, feedback_docs) = self.feedback_shown(&feedback_terms);
        Ok(QueryResult {
            text: text.to_string(),
            query_id,
            vector,
            terms,
            ranking: if self.index.is_some() {
                ranking
            } else {
                Ranking::Lsr
            },
            prior: self.prior,
            // A build in progress is searched without feedback.
            feedback: match self.index {
                Some(_) => self.feedback,
                None => QueryFeedback::None,
            },
            feedback_terms,
            feedback_tokens,
            feedback_docs,
            hits,
            encode_ms,
            search_ms: t1.elapsed().as_secs_f64() * 1e3,
            scorer,
        })
    }

    /// What feedback added, as (token, weight) heaviest first, and the ids
    /// of its documents.
    fn feedback_shown(&self, feedback: &Feedback) -> (Vec<(String, f32)>, Vec<String>) {
        let tok = self.model.tokenizer();
        let terms = feedback
            .terms
            .top_k(0)
            .into_iter()
            .map(|(id, w)| (tok.token(id).to_string(), w))
            .collect();
        let docs = feedback
            .docs
            .iter()
            .filter_map(|&o| self.index.as_ref().map(|i| i.doc_id(o).to_string()))
            .collect();
        (terms, docs)
    }

    /// LSR hits over what a build in progress has encoded.
    fn partial_hits(
        &self,
        p: &crate::search::PartialIndex,
        vector: &SparseVec,
        k: usize,
        judged: Option<&HashMap<String, i32>>,
    ) -> Vec<HitRow> {
        let scored = self.prior.apply(vector, &p.idf);
        p.search(&scored, k)
            .into_iter()
            .enumerate()
            .map(|(r, (ordinal, score))| {
                let doc = self.corpus.get(ordinal);
                let doc_id = doc.map(|d| d.id.clone()).unwrap_or_default();
                HitRow {
                    rank: r + 1,
                    ordinal,
                    relevance: judged.map(|j| j.get(&doc_id).copied().unwrap_or(0)),
                    title: doc.map(|d| d.title.clone()).unwrap_or_default(),
                    doc_id,
                    score,
                    lsr_rank: Some(r + 1),
                    bm25_rank: None,
                }
            })
            .collect()
    }

    /// The top `k` of `ranking` over the complete index, each hit with its
    /// LSR and BM25 ranks, and what feedback added to the query.
    fn ranked(
        &self,
        idx: &LsrIndex,
        text: &str,
        vector: &SparseVec,
        k: usize,
        ranking: Ranking,
        judged: Option<&HashMap<String, i32>>,
    ) -> anyhow::Result<(Vec<HitRow>, Feedback)> {
        let depth = FUSION_DEPTH.max(k);
        let (scored, feedback) =
            idx.scored_query(vector, self.prior, self.feedback, self.backend)?;
        let lsr = idx.search(&scored, depth, self.backend)?;
        let bm25 = idx.search_bm25(text, depth)?;
        let ranks = |run: &[Hit]| -> HashMap<usize, usize> {
            run.iter()
                .enumerate()
                .map(|(r, h)| (h.ordinal, r + 1))
                .collect()
        };
        let (lsr_ranks, bm25_ranks) = (ranks(&lsr), ranks(&bm25));
        let mut hits = match ranking {
            Ranking::Lsr => lsr,
            Ranking::Bm25 => bm25,
            Ranking::Hybrid => self.fusion.fuse(&lsr, &bm25, k),
        };
        hits.truncate(k);
        let rows = hits
            .into_iter()
            .enumerate()
            .map(|(r, h)| HitRow {
                rank: r + 1,
                ordinal: h.ordinal,
                relevance: judged.map(|j| j.get(&h.doc_id).copied().unwrap_or(0)),
                title: idx.document(h.ordinal).map(|d| d.title).unwrap_or_default(),
                lsr_rank: lsr_ranks.get(&h.ordinal).copied(),
                bm25_rank: bm25_ranks.get(&h.ordinal).copied(),
                doc_id: h.doc_id,
                score: h.score,
            })
            .collect();
        Ok((rows, feedback))
    }

    /// The complete index and the judgements, which failure analysis needs.
    fn judged_index(&self) -> anyhow::Result<(&LsrIndex, &Qrels)> {
        let idx = self
            .index
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("no index loaded"))?;
        let qrels = self
            .qrels
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("no judgements loaded"))?;
        Ok((idx, qrels))
    }

    /// Every judged query: nDCG@10 of LSR and BM25, biggest LSR loss first.
    pub fn failures(&self) -> anyhow::Result<Vec<FailureRow>> {
        let (idx, qrels) = self.judged_index()?;
        let judged: Vec<&Query> = self
            .queries
            .iter()
            .filter(|q| qrels.get(&q.id).is_some_and(|j| j.values().any(|&g| g > 0)))
            .collect();
        let texts: Vec<&str> = judged.iter().map(|q| q.text.as_str()).collect();
        let encoded = self.encoder()?.encode(&texts)?;
        let mut rows = Vec::with_capacity(judged.len());
        for (q, e) in judged.iter().zip(encoded) {
            // With feedback, its first ranking is LSR without it.
            let (scored, _, first) =
                idx.scored_query_and_first(&e.vector, self.prior, self.feedback, self.backend, 10)?;
            let lsr = idx.search(&scored, 100, self.backend)?;
            let unfed = (!self.feedback.is_none()).then_some(first);
            let bm = idx.search_bm25(&q.text, 100)?;
            let hybrid = self.fusion.fuse(&lsr, &bm, 10);
            let j = &qrels[&q.id];
            let ndcg = |run: &[Hit]| {
                let ids: Vec<&str> = run.iter().map(|h| h.doc_id.as_str()).collect();
                eval::ndcg_at(&ids, j, 10)
            };
            rows.push(FailureRow {
                query_id: q.id.clone(),
                text: q.text.clone(),
                lsr_ndcg10: ndcg(&lsr),
                bm25_ndcg10: ndcg(&bm),
                hybrid_ndcg10: ndcg(&hybrid),
                unfed_ndcg10: unfed.as_deref().map(ndcg),
                relevant_in_lsr_top100: lsr
                    .iter()
                    .any(|h| j.get(&h.doc_id).is_some_and(|&g| g > 0)),
            });
        }
        rows.sort_by(|a, b| {
            (a.lsr_ndcg10 - a.bm25_ndcg10)
                .total_cmp(&(b.lsr_ndcg10 - b.bm25_ndcg10))
                .then(a.query_id.cmp(&b.query_id))
        });
        Ok(rows)
    }
}

pub use crate::compare::{surface, Comparison, EncoderRun};
pub use crate::failures::{FailureExplanation, MissedDocument};

impl Explorer {
    /// Why LSR ranks judged query `query_id` below BM25: its missed relevant
    /// documents, the words BM25 matches that the expansion lacks, and the
    /// terms that lifted the wrong hits.
    pub fn explain_failure(&self, query_id: &str) -> anyhow::Result<FailureExplanation> {
        let (idx, qrels) = self.judged_index()?;
        let q = self
            .queries
            .iter()
            .find(|q| q.id == query_id)
            .ok_or_else(|| anyhow::anyhow!("no query {query_id:?}"))?;
        let judged = qrels
            .get(query_id)
            .ok_or_else(|| anyhow::anyhow!("query {query_id:?} has no judgements"))?;
        let e = self.encoder()?.encode_one(&q.text)?;
        let (scored, _) = idx.scored_query(&e.vector, self.prior, self.feedback, self.backend)?;
        let lsr = idx.search(&scored, 100, self.backend)?;
        let bm25 = idx.search_bm25(&q.text, 100)?;
        let ndcg = |run: &[crate::search::Hit]| {
            let ids: Vec<&str> = run.iter().map(|h| h.doc_id.as_str()).collect();
            eval::ndcg_at(&ids, judged, 10)
        };
        let case = crate::failures::FailureCase {
            query_id,
            text: &q.text,
            expansion: &scored,
            judged,
            lsr: &lsr,
            bm25: &bm25,
            ndcg_lsr: ndcg(&lsr),
            ndcg_bm25: ndcg(&bm25),
        };
        let mut explained = crate::failures::explain(idx, self.model.tokenizer(), &case)?;
        for m in &mut explained.missed {
            // A document's passages read the words past its first read.
            if idx
                .passages
                .as_ref()
                .is_some_and(|p| p.count(m.ordinal) > 0)
            {
                continue;
            }
            let doc = idx.document(m.ordinal)?;
            if let Some((at, _)) = self.encoded_window(&doc.title, &doc.text) {
                m.beyond_window = self.beyond_window(&e.vector, &doc.title, &doc.text, at);
            }
        }
        Ok(explained)
    }
}

impl Explorer {
    /// Encode `text` with every encoder and rank it over the open index
    /// where the index holds that encoder's documents.
    pub fn compare(
        &self,
        text: &str,
        encoders: &[(crate::compare::EncoderSpec, Arc<SparseModel>)],
    ) -> anyhow::Result<Comparison> {
        let refs: Vec<(crate::compare::EncoderSpec, crate::model::ModelRef)> = encoders
            .iter()
            .map(|(s, m)| (s.clone(), m.as_ref().as_ref()))
            .collect();
        let index = self.index.as_deref();
        let scoring = crate::search::QueryScoring::default();
        crate::compare::compare_text(text, &refs, (self.config.reading(), scoring), 30, |_| index)
    }
}
