//! `csplade search`: a query against an index — ranked hits, and with
//! `--explain` the per-term contributions that make each score.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use csplade::encode::Encoder;
use csplade::model::SparseModel;
use csplade::search::{
    Backend, Feedback, Fusion, Hit, LsrIndex, QueryFeedback, QueryPrior, QueryScoring, StoredDoc,
};

#[derive(Args)]
pub struct SearchArgs {
    /// Index directory built by `csplade index`
    #[arg(long)]
    pub index: PathBuf,
    /// The model that built the index (`base`, a .gguf file or an HF directory)
    /// [default: the model the index records, else default]
    #[arg(long)]
    pub model: Option<String>,
    /// Hits shown (at least 1, for every backend)
    #[arg(long, default_value_t = 10, value_parser = super::within(1, 100_000))]
    pub k: usize,
    /// Per hit, the term-contribution table (term, q_w, d_w, q_w × d_w)
    #[arg(long)]
    pub explain: bool,
    /// Contributions shown per hit with --explain
    #[arg(long, default_value_t = 10, value_parser = super::within(0, 10_000))]
    pub explain_terms: usize,
    /// LSR scorer: exact (stored f32 vectors), tantivy (quantized impacts),
    /// or seismic[:QUERY_TERMS:HEAP_FACTOR] (approximate blocked postings,
    /// default 10:0.7; built on first use and cached in the index)
    #[arg(long, default_value = "exact")]
    pub backend: Backend,
    /// Encode the query at another precision than the index's documents
    #[arg(long)]
    pub precision: Option<csplade::quant::Precision>,
    /// Rank with BM25 instead of the sparse model (same as --system bm25)
    #[arg(long, conflicts_with = "system")]
    pub bm25: bool,
    /// lsr (the sparse model), bm25, or hybrid (their fusion, --fusion)
    #[arg(long, value_parser = ["lsr", "bm25", "hybrid"], default_value = "lsr")]
    pub system: String,
    /// Query-side prior: none, idf or idf:POWER (each query term's weight
    /// times the index's idf to that power); default: the model's own
    #[arg(long)]
    pub query_prior: Option<QueryPrior>,
    /// Pseudo-relevance feedback: none, rocchio (rocchio:1:0.1:30:1) or
    /// rocchio:DOCS:WEIGHT:TERMS[:IDF_POWER] (the query ranked once, then
    /// again with WEIGHT × the TERMS heaviest entries of its top DOCS
    /// documents' score-weighted mean, each times idf^IDF_POWER, added);
    /// default: the model's own
    #[arg(long)]
    pub query_feedback: Option<QueryFeedback>,
    /// How --system hybrid fuses LSR and BM25: convex:ALPHA or rrf:K
    #[arg(long, default_value_t = Fusion::default())]
    pub fusion: Fusion,
    /// Encode the query through the model's inference-free query table
    #[arg(long)]
    pub inference_free: bool,
    /// With an inference-free checkpoint, encode the query with its
    /// document model instead of its table
    #[arg(long, conflicts_with = "inference_free")]
    pub full_query_encoder: bool,
    #[arg(long)]
    pub json: bool,
    /// Print the query body for another engine instead of searching:
    /// `opensearch-query` (rank_feature clauses over an index exported with
    /// `csplade export --format opensearch`)
    #[arg(long, value_parser = ["opensearch-query"])]
    pub emit: Option<String>,
    /// The query
    #[arg(required = true)]
    pub query: Vec<String>,
}

/// Open an index and the model that built it, refusing a mismatch.
/// Queries are encoded at the index's precision unless `precision` overrides
/// it (documents keep the precision they were indexed at).
pub fn open_with_model(
    index: &std::path::Path,
    spec: Option<&str>,
    precision: Option<csplade::quant::Precision>,
) -> Result<(LsrIndex, SparseModel)> {
    let idx =
        LsrIndex::open(index).with_context(|| format!("opening index {}", index.display()))?;
    // Not told a model: the one that built the index.
    let spec = spec.or(idx.meta.model_spec.as_deref()).unwrap_or("default");
    let (indexed, head) = csplade::quant::parse_label(&idx.meta.precision).unwrap_or_default();
    let precision = precision.unwrap_or(indexed);
    let model = csplade::model::family::open(
        spec,
        &candle_core::Device::Cpu,
        precision,
        head,
        csplade::model::Family::Auto,
    )
    .with_context(|| format!("loading model {spec:?} at {precision}"))?;
    csplade::encode::encoder::check_probe(&model)?;
    idx.meta.check_model(model.identity(), model.vocab_size())?;
    Ok((idx, model))
}

/// Candidates each system ranks before a hybrid fuses them.
const FUSION_DEPTH: usize = 1000;

pub fn run(a: SearchArgs) -> Result<()> {
    let text = a.query.join(" ");
    let (idx, model) = open_with_model(&a.index, a.model.as_deref(), a.precision)?;
    let inference_free =
        a.inference_free || (!a.full_query_encoder && model.inference_free_by_default());
    let enc =
        Encoder::new(&model, idx.meta.encoder_config()).with_inference_free(inference_free)?;
    let q = enc.encode_one(&text)?;
    if q.truncated_tokens > 0 {
        eprintln!(
            "csplade: notice: query truncated to {} tokens, the index's length ({} dropped)",
            q.token_ids.len(),
            q.truncated_tokens
        );
    }
    let scoring = QueryScoring {
        prior: a.query_prior,
        feedback: a.query_feedback,
    };
    let (prior, feedback) = scoring.resolve(model.as_ref(), inference_free);
    let (scored, feedback_terms) = idx.scored_query(&q.vector, prior, feedback, a.backend)?;
    if a.emit.is_some() {
        let body = csplade::export::opensearch_query(&scored, model.tokenizer(), a.k);
        println!("{body:#}");
        return Ok(());
    }
    let system = if a.bm25 { "bm25" } else { a.system.as_str() };
    let hits: Vec<Hit> = match system {
        "bm25" => idx.search_bm25(&text, a.k)?,
        "hybrid" => {
            let depth = FUSION_DEPTH.max(a.k);
            let lsr = idx.search(&scored, depth, a.backend)?;
            let bm = idx.search_bm25(&text, depth)?;
            a.fusion.fuse(&lsr, &bm, a.k)
        }
        _ => idx.search(&scored, a.k, a.backend)?,
    };
    // A BM25 hit's score is not a sum of expansion terms: no term table.
    let explain = a.explain && system != "bm25";
    if a.explain && !explain {
        eprintln!("csplade: notice: --explain shows the sparse model's terms; BM25 hits have none");
    }
    let report = Hits {
        a: &a,
        idx: &idx,
        model: &model,
        query: &q.vector,
        prior,
        feedback,
        feedback_terms: &feedback_terms,
        system,
        explain,
    };
    if a.json {
        report.json(&text, &hits)
    } else {
        report.text(&text, &hits)
    }
}

/// What `search` prints.
struct Hits<'a> {
    a: &'a SearchArgs,
    idx: &'a LsrIndex,
    model: &'a SparseModel,
    query: &'a csplade::encode::SparseVec,
    prior: QueryPrior,
    feedback: QueryFeedback,
    /// What the feedback added, and from which documents.
    feedback_terms: &'a Feedback,
    system: &'a str,
    explain: bool,
}

impl Hits<'_> {
    fn token(&self, id: u32) -> String {
        self.model.tokenizer().token(id).to_string()
    }

    fn json(&self, text: &str, hits: &[Hit]) -> Result<()> {
        let mut out = Vec::new();
        for (r, h) in hits.iter().enumerate() {
            let doc = self.idx.document(h.ordinal)?;
            let mut o =
                json!({"rank": r + 1, "doc_id": h.doc_id, "score": h.score, "title": doc.title});
            if let Some((k, text)) = self.passage(h.ordinal, &doc) {
                o["passage"] = json!({"number": k, "text": text});
            }
            if self.explain {
                let terms: Vec<_> = self
                    .idx
                    .explain_with(self.query, self.prior, &self.feedback_terms.terms, h.ordinal)
                    .iter()
                    .map(|c| json!({"id": c.id, "token": self.token(c.id), "query_weight": c.query_weight, "prior": c.prior, "feedback": c.feedback, "doc_weight": c.doc_weight, "product": c.product}))
                    .collect();
                o["explanation"] = json!(terms);
            }
            out.push(o);
        }
        let mut body = json!({"query": text, "active": self.query.active(), "system": self.system, "hits": out});
        if self.system != "bm25" {
            body["query_prior"] = json!(self.prior.to_string());
            body["query_feedback"] = json!(self.feedback.to_string());
            if !self.feedback.is_none() {
                body["feedback"] = json!({
                    "documents": self.feedback_docs(),
                    "terms": self.feedback_terms.terms.top_k(0).iter()
                        .map(|&(id, w)| json!({"id": id, "token": self.token(id), "weight": w}))
                        .collect::<Vec<_>>(),
                });
            }
        }
        if self.system == "hybrid" {
            body["fusion"] = json!(self.a.fusion.to_string());
        }
        println!("{body}");
        Ok(())
    }

    fn text(&self, text: &str, hits: &[Hit]) -> Result<()> {
        let how = match self.system {
            "bm25" => "BM25".to_string(),
            "hybrid" => format!("hybrid {} of LSR and BM25", self.a.fusion),
            _ => "LSR".to_string(),
        };
        let lsr = self.system != "bm25";
        let prior = match self.prior {
            QueryPrior::None => String::new(),
            p if lsr => format!(", query prior {p}"),
            _ => String::new(),
        };
        let feedback = match self.feedback {
            QueryFeedback::None => String::new(),
            f if lsr => format!(", feedback {f}"),
            _ => String::new(),
        };
        println!(
            "query: {text}   ({} active terms; index {} documents; {how}{prior}{feedback})",
            self.query.active(),
            self.idx.len()
        );
        if lsr && !self.feedback.is_none() {
            let terms: Vec<String> = self
                .feedback_terms
                .terms
                .top_k(8)
                .iter()
                .map(|&(id, w)| format!("{:?} {w:.2}", self.token(id)))
                .collect();
            println!(
                "feedback from {}: {} terms added ({}{})",
                self.feedback_docs().join(" "),
                self.feedback_terms.terms.active(),
                terms.join(", "),
                if self.feedback_terms.terms.active() > 8 {
                    ", …"
                } else {
                    ""
                }
            );
        }
        for (r, h) in hits.iter().enumerate() {
            let doc = self.idx.document(h.ordinal)?;
            println!(
                "{:>3}  {:>9.4}  {:<16} {}",
                r + 1,
                h.score,
                h.doc_id,
                doc.title
            );
            if let Some((k, text)) = self.passage(h.ordinal, &doc) {
                println!("{:>16}passage {k}: {}", "", clip(&text, 90));
            }
            if self.explain {
                self.print_terms(h.ordinal);
            }
        }
        Ok(())
    }

    /// The passage (number, words) a hit ranked by, when the index has
    /// passages and one of the hit's (stored as `doc`) beat its first read.
    fn passage(&self, ordinal: usize, doc: &StoredDoc) -> Option<(usize, String)> {
        if self.system == "bm25" {
            return None;
        }
        let (k, _) =
            self.idx
                .best_passage(self.query, self.prior, &self.feedback_terms.terms, ordinal)?;
        Some((k, self.idx.passage_text(doc, k)?))
    }

    /// The ids of the documents the feedback came from, best first.
    fn feedback_docs(&self) -> Vec<String> {
        self.feedback_terms
            .docs
            .iter()
            .map(|&o| self.idx.doc_id(o).to_string())
            .collect()
    }

    /// The term-contribution table of one hit: q_w, the prior's factor and
    /// the feedback's weight where they apply, d_w and the product.
    fn print_terms(&self, ordinal: usize) {
        let n = self.a.explain_terms;
        let c = self
            .idx
            .explain_with(self.query, self.prior, &self.feedback_terms.terms, ordinal);
        let factor = match self.prior {
            QueryPrior::None => None,
            QueryPrior::Idf { power } if power != 1.0 => Some(format!("idf^{power}")),
            QueryPrior::Idf { .. } => Some("idf".to_string()),
        };
        let with_feedback = !self.feedback.is_none();
        let mut head = format!("       {:<18} {:>8}", "term", "q_w");
        if let Some(f) = &factor {
            head += &format!(" {f:>7}");
        }
        if with_feedback {
            head += &format!(" {:>8}", "feedback");
        }
        let product = match (&factor, with_feedback) {
            (None, false) => "q_w×d_w",
            _ => "product",
        };
        println!("{head} {:>8} {product:>9}", "d_w");
        for c in c.iter().take(n) {
            let mut row = format!(
                "       {:<18} {:>8.4}",
                format!("{:?}", self.token(c.id)),
                c.query_weight
            );
            if factor.is_some() {
                row += &format!(" {:>7.3}", c.prior);
            }
            if with_feedback {
                row += &format!(" {:>8.4}", c.feedback);
            }
            println!("{row} {:>8.4} {:>9.4}", c.doc_weight, c.product);
        }
        if c.len() > n {
            let rest: f32 = c[n..].iter().map(|c| c.product).sum();
            println!("       … {} more terms contribute {rest:.4}", c.len() - n);
        }
    }
}

/// `text` cut to `n` characters, with an ellipsis when cut.
fn clip(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}
