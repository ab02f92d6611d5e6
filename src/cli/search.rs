//! `csplade search`: a query against an index — ranked hits, and with
//! `--explain` the per-term contributions that make each score.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use csplade::encode::Encoder;
use csplade::model::{self, LoadedModel};
use csplade::search::{Backend, LsrIndex};

#[derive(Args)]
pub struct SearchArgs {
    /// Index directory built by `csplade index`
    #[arg(long)]
    pub index: PathBuf,
    /// The model that built the index (`base`, a .gguf file or an HF directory)
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Hits shown (at least 1, for every backend)
    #[arg(long, default_value_t = 10, value_parser = super::positive)]
    pub k: usize,
    /// Per hit, the term-contribution table (term, q_w, d_w, q_w × d_w)
    #[arg(long)]
    pub explain: bool,
    /// Contributions shown per hit with --explain
    #[arg(long, default_value_t = 10)]
    pub explain_terms: usize,
    /// LSR scorer: exact (stored f32 vectors), tantivy (quantized impacts),
    /// or seismic[:QUERY_TERMS:HEAP_FACTOR] (approximate blocked postings,
    /// default 10:0.7; built on first use and cached in the index)
    #[arg(long, default_value = "exact")]
    pub backend: Backend,
    /// Encode the query at another precision than the index's documents
    #[arg(long)]
    pub precision: Option<csplade::quant::Precision>,
    /// Rank with BM25 instead of the sparse model
    #[arg(long)]
    pub bm25: bool,
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
    spec: &str,
    precision: Option<csplade::quant::Precision>,
) -> Result<(LsrIndex, LoadedModel)> {
    let idx =
        LsrIndex::open(index).with_context(|| format!("opening index {}", index.display()))?;
    let (indexed, head) = csplade::quant::parse_label(&idx.meta.precision).unwrap_or_default();
    let precision = precision.unwrap_or(indexed);
    let model = model::load_at(spec, &candle_core::Device::Cpu, precision, head)
        .with_context(|| format!("loading model {spec:?} at {precision}"))?;
    csplade::encode::encoder::check_probe(&model)?;
    idx.meta
        .check_model(&model.identity, model.config().vocab_size)?;
    Ok((idx, model))
}

pub fn run(a: SearchArgs) -> Result<()> {
    let text = a.query.join(" ");
    let (idx, model) = open_with_model(&a.index, &a.model, a.precision)?;
    let enc = Encoder::new(&model, idx.meta.encoder_config());
    let q = enc.encode_one(&text)?;
    if q.truncated_tokens > 0 {
        eprintln!(
            "csplade: notice: query truncated to {} tokens, the index's length ({} dropped)",
            q.token_ids.len(),
            q.truncated_tokens
        );
    }
    if a.emit.is_some() {
        let body = csplade::export::opensearch_query(&q.vector, &model.tokenizer, a.k);
        println!("{body:#}");
        return Ok(());
    }
    let hits = if a.bm25 {
        idx.search_bm25(&text, a.k)?
    } else {
        idx.search(&q.vector, a.k, a.backend)?
    };
    let tok = |id: u32| model.tokenizer.token(id).to_string();
    if a.json {
        let mut out = Vec::new();
        for (r, h) in hits.iter().enumerate() {
            let doc = idx.document(h.ordinal)?;
            let mut o =
                json!({"rank": r + 1, "doc_id": h.doc_id, "score": h.score, "title": doc.title});
            if a.explain {
                let terms: Vec<_> = idx
                    .explain(&q.vector, h.ordinal)
                    .iter()
                    .map(|c| json!({"id": c.id, "token": tok(c.id), "query_weight": c.query_weight, "doc_weight": c.doc_weight, "product": c.product}))
                    .collect();
                o["explanation"] = json!(terms);
            }
            out.push(o);
        }
        println!(
            "{}",
            json!({"query": text, "active": q.vector.active(), "system": if a.bm25 {"bm25"} else {"lsr"}, "hits": out})
        );
        return Ok(());
    }
    println!(
        "query: {text}   ({} active terms; index {} documents)",
        q.vector.active(),
        idx.len()
    );
    for (r, h) in hits.iter().enumerate() {
        let doc = idx.document(h.ordinal)?;
        println!(
            "{:>3}  {:>9.4}  {:<16} {}",
            r + 1,
            h.score,
            h.doc_id,
            doc.title
        );
        if a.explain {
            let c = idx.explain(&q.vector, h.ordinal);
            println!(
                "       {:<18} {:>8} {:>8} {:>9}",
                "term", "q_w", "d_w", "q_w×d_w"
            );
            for c in c.iter().take(a.explain_terms) {
                println!(
                    "       {:<18} {:>8.4} {:>8.4} {:>9.4}",
                    format!("{:?}", tok(c.id)),
                    c.query_weight,
                    c.doc_weight,
                    c.product
                );
            }
            if c.len() > a.explain_terms {
                let rest: f32 = c[a.explain_terms..].iter().map(|c| c.product).sum();
                println!(
                    "       … {} more terms contribute {rest:.4}",
                    c.len() - a.explain_terms
                );
            }
        }
    }
    Ok(())
}
