//! `csplade compare`: one text, or every judged query of a collection, under
//! several encoders side by side — variants, heads, base against trained,
//! adapters, precisions — with term and ranking agreement against the first.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use csplade::compare::{self, EncoderSpec, Models};
use csplade::model::SparseModel;
use csplade::quant::Precision;
use csplade::search::{LsrIndex, QueryFeedback, QueryPrior, QueryScoring};

use super::ModelArgs;

#[derive(Args)]
#[command(
    after_help = "Encoders are written MODEL[:VARIANT][:HEAD][:PRECISION], e.g.
  default:echo:logprob:5:q8_0   base:causal   base+run/adapter.safetensors:bi
what is left out comes from the model's adapter,
else causal, logprob:6 and f32. Presets expand --model into several encoders:
  variants         causal / echo / bi
  base-vs-trained  the base model against --model, encoding the same way
  precisions       f32 / f16 / q8_0 / q4_0
Examples:
  csplade compare --encoder variants \"what causes hypertension\"
  csplade compare --encoder base:echo:logprob:5 --encoder default \"…\"
  csplade compare --encoder precisions --index IDX --dataset DIR"
)]
pub struct CompareArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// An encoder (SPEC) or a preset; repeat it. The first is the reference
    #[arg(long = "encoder", value_name = "SPEC|PRESET")]
    pub encoders: Vec<String>,
    /// Without --encoder: these precisions of --model
    #[arg(long, value_delimiter = ',', default_value = "f32,f16,q8_0,q4_0")]
    pub precisions: Vec<Precision>,
    /// Terms shown per encoder (0: all)
    #[arg(long, default_value_t = 10, value_parser = super::within(0, 1_000_000))]
    pub top_k: usize,
    #[arg(long)]
    pub json: bool,
    /// Rank over this index (every encoder whose documents it holds), or
    /// give one --index per encoder, in order
    #[arg(long)]
    pub index: Vec<PathBuf>,
    /// With --index: every judged query of this BEIR collection (nDCG@10 per
    /// encoder, ranking agreement with the first averaged over queries)
    #[arg(long, requires = "index")]
    pub dataset: Option<PathBuf>,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// With --index: the query prior every encoder's rankings use (none, idf
    /// or idf:POWER); default: each model's own, as `search` and `eval`
    /// (none for an inference-free encoder)
    #[arg(long)]
    pub query_prior: Option<QueryPrior>,
    /// With --index: the pseudo-relevance feedback every encoder's rankings
    /// use (none, rocchio or rocchio:DOCS:WEIGHT:TERMS[:IDF_POWER]);
    /// default: each model's own, as `search` and `eval` (none for an
    /// inference-free encoder)
    #[arg(long)]
    pub query_feedback: Option<QueryFeedback>,
    /// The second model of the `families` preset (any family: a SPLADE
    /// directory beside a CSPLADE model, say)
    #[arg(long, value_name = "MODEL")]
    pub second: Option<String>,
    /// The text (not needed with --dataset)
    #[arg(required_unless_present = "dataset")]
    pub text: Vec<String>,
}

impl CompareArgs {
    fn scoring(&self) -> QueryScoring {
        QueryScoring {
            prior: self.query_prior,
            feedback: self.query_feedback,
        }
    }
}

/// The encoders named by `--encoder` (presets expanded), or the precisions.
fn encoder_specs(a: &CompareArgs, main: &SparseModel) -> Result<Vec<EncoderSpec>> {
    let mut base = EncoderSpec::new(a.model.spec());
    base.variant = a.model.variant;
    base.head = a.model.head;
    if a.encoders.is_empty() {
        return Ok(a
            .precisions
            .iter()
            .map(|&p| EncoderSpec {
                precision: p,
                ..base.clone()
            })
            .collect());
    }
    let mut out = Vec::new();
    for e in &a.encoders {
        match compare::preset(
            e,
            a.model.spec(),
            main.trained_encoding(),
            a.second.as_deref(),
        ) {
            Some(specs) => out.extend(specs),
            None if e == "families" => {
                anyhow::bail!(
                    "the families preset needs --second MODEL (the model set beside --model)"
                )
            }
            None => out.push(e.parse().map_err(anyhow::Error::msg)?),
        }
    }
    Ok(out)
}

pub fn run(a: CompareArgs) -> Result<()> {
    let device = a.model.device.open()?;
    let mut models = Models::new(device, a.model.quantize_head, a.model.family);
    let main_spec = EncoderSpec::new(a.model.spec());
    let specs = {
        let main = models.get(&main_spec)?;
        encoder_specs(&a, main)?
    };
    if specs.is_empty() {
        bail!("no encoder to compare");
    }
    for s in &specs {
        models.get(s)?;
    }
    let indexes: Vec<LsrIndex> = a
        .index
        .iter()
        .map(|p| LsrIndex::open(p).with_context(|| format!("opening index {}", p.display())))
        .collect::<Result<_>>()?;
    if indexes.len() > 1 && indexes.len() != specs.len() {
        bail!(
            "{} indexes for {} encoders: give one --index for all, or one per encoder",
            indexes.len(),
            specs.len()
        );
    }
    let index_of = |i: usize| match indexes.len() {
        0 => None,
        1 => indexes.first(),
        _ => indexes.get(i),
    };
    // Texts are read as --max-len says, else as the main model was trained.
    let reading = a.model.reading(models.get(&main_spec)?.as_ref());
    if let Some(dataset) = &a.dataset {
        return over_collection(&a, dataset, &specs, &mut models, &index_of);
    }
    let text = a.text.join(" ");
    let encoders: Vec<(EncoderSpec, csplade::model::ModelRef)> = specs
        .iter()
        .map(|s| (s.clone(), models.loaded(s).as_ref()))
        .collect();
    let c = compare::compare_text(&text, &encoders, (reading, a.scoring()), a.top_k, index_of)?;
    if a.json {
        println!("{}", serde_json::to_string(&c)?);
        return Ok(());
    }
    print_comparison(&c, a.top_k);
    Ok(())
}

fn print_comparison(c: &compare::Comparison, top_k: usize) {
    let f = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.3}"));
    println!("text: {}\n", c.text);
    println!(
        "{:<28} {:>7} {:>9} {:>9} {:>10} {:>8} {:>9} {:>8} {:>7}",
        "encoder",
        "active",
        "latency",
        "model MB",
        "overlap@10",
        "cosine",
        "max |Δw|",
        "hits@10",
        "τ"
    );
    for r in &c.runs {
        println!(
            "{:<28} {:>7} {:>7.1}ms {:>9.1} {:>10} {:>8} {:>9} {:>8} {:>7}",
            r.encoder.to_string(),
            r.active,
            r.latency_ms,
            r.model_bytes as f64 / 1e6,
            f(r.vs_first.map(|d| d.overlap10)),
            f(r.vs_first.map(|d| d.cosine)),
            f(r.vs_first.map(|d| d.max_abs_dw)),
            f(r.rank_overlap10),
            f(r.kendall_tau)
        );
    }
    for r in c.runs.iter().filter(|r| r.ranking.is_some()) {
        println!(
            "{} ranked with query prior {}, feedback {}",
            r.encoder,
            r.prior.as_deref().unwrap_or("none"),
            r.feedback.as_deref().unwrap_or("none")
        );
    }
    println!();
    let width = 24;
    let header: Vec<String> = c
        .runs
        .iter()
        .map(|r| format!("{:<width$.width$}", r.encoder.to_string()))
        .collect();
    println!("{}", header.join(" "));
    // 0 shows every term, as `encode --top-k 0` does.
    let rows = match top_k {
        0 => c.runs.iter().map(|r| r.terms.len()).max().unwrap_or(0),
        k => k,
    };
    for i in 0..rows {
        let cells: Vec<String> = c
            .runs
            .iter()
            .map(|r| {
                r.terms.get(i).map_or(String::new(), |t| {
                    format!("{:<16} {:>6.3}", format!("{:?}", t.token), t.weight)
                })
            })
            .map(|c| format!("{c:<width$}"))
            .collect();
        println!("{}", cells.join(" "));
    }
    print_alignments(c, top_k);
}

/// For each encoder with another vocabulary than the first: the top terms
/// on either side without a counterpart on the other.
fn print_alignments(c: &compare::Comparison, top_k: usize) {
    let show = |v: &[String]| {
        v.iter()
            .take(8)
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for r in &c.runs {
        let Some(al) = &r.alignment else {
            continue;
        };
        println!(
            "\n{} has another vocabulary than {}: terms compared by their surface text (case, leading space and ## ignored)",
            r.encoder, c.runs[0].encoder
        );
        println!(
            "  {} of the first's top {top_k} terms have no counterpart in it: {}",
            al.first_only.len(),
            show(&al.first_only)
        );
        println!(
            "  {} of its top {top_k} terms have none in the first's: {}",
            al.this_only.len(),
            show(&al.this_only)
        );
    }
}

/// Every judged query under every encoder: nDCG@10 over the encoder's
/// index, ranking agreement with the first encoder.
fn over_collection<'a>(
    a: &CompareArgs,
    dataset: &std::path::Path,
    specs: &[EncoderSpec],
    models: &mut Models,
    index_of: &dyn Fn(usize) -> Option<&'a LsrIndex>,
) -> Result<()> {
    use csplade::data::beir;
    let qrels = beir::read_qrels(dataset, &a.split)?;
    let queries: Vec<beir::Query> = beir::read_queries(dataset)?
        .into_iter()
        .filter(|q| qrels.get(&q.id).is_some_and(|j| j.values().any(|&g| g > 0)))
        .collect();
    if queries.is_empty() {
        bail!("no judged query in {}", dataset.display());
    }
    let texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
    let mut rankings: Vec<Vec<Vec<String>>> = Vec::new();
    let mut rows = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let model = models.loaded(s);
        let idx = index_of(i).context("no index")?;
        idx.meta.check_corpus(&idx.dir, dataset)?;
        let config = s.config(model, idx.meta.reading());
        if !compare::index_serves(idx, model, &config) {
            bail!(
                "{} holds documents of {} ({}, {}), not of encoder {s}: give one --index per encoder",
                idx.dir.display(),
                idx.meta.model.id,
                idx.meta.variant,
                idx.meta.head
            );
        }
        let ranked_with = a.scoring().resolve(model.as_ref(), s.inference_free);
        let per_query = top10(s, model, idx, &texts, ranked_with)?;
        let ndcg = mean_ndcg10(&queries, &per_query, &qrels);
        let agreement = rankings
            .first()
            .map(|first| mean_agreement(first, &per_query));
        rankings.push(per_query);
        rows.push(EncoderRow {
            encoder: s.to_string(),
            ndcg,
            agreement,
            prior: ranked_with.0,
            feedback: ranked_with.1,
        });
    }
    report(a.json, dataset, queries.len(), rows)
}

/// Each query's top 10 document ids under encoder `s` over `idx`, ranked
/// with `ranked_with` (prior, feedback).
fn top10(
    s: &EncoderSpec,
    model: &csplade::model::SparseModel,
    idx: &LsrIndex,
    texts: &[&str],
    ranked_with: (QueryPrior, QueryFeedback),
) -> Result<Vec<Vec<String>>> {
    let encoded = s.encoder(model, idx.meta.reading())?.encode(texts)?;
    let mut per_query = Vec::with_capacity(encoded.len());
    for e in &encoded {
        per_query.push(compare::top_documents(idx, &e.vector, ranked_with, 10)?);
    }
    Ok(per_query)
}

/// Mean nDCG@10 of the rankings over the judged queries.
fn mean_ndcg10(
    queries: &[csplade::data::beir::Query],
    rankings: &[Vec<String>],
    qrels: &csplade::data::beir::Qrels,
) -> f64 {
    queries
        .iter()
        .zip(rankings)
        .map(|(q, r)| {
            let r: Vec<&str> = r.iter().map(String::as_str).collect();
            csplade::eval::ndcg_at(&r, &qrels[&q.id], 10)
        })
        .sum::<f64>()
        / queries.len() as f64
}

/// Overlap@10 and Kendall τ against the first encoder's rankings, averaged.
fn mean_agreement(first: &[Vec<String>], rankings: &[Vec<String>]) -> (f64, f64) {
    let (mut ov, mut tau, mut n) = (0.0, 0.0, 0.0);
    for (x, y) in first.iter().zip(rankings) {
        if let Some((o, t)) = compare::agreement(x, y) {
            ov += o;
            tau += t;
            n += 1.0;
        }
    }
    (ov / f64::max(n, 1.0), tau / f64::max(n, 1.0))
}

/// An encoder over a collection: nDCG@10, (overlap@10, τ) against the
/// first, and the prior and feedback its queries were ranked with.
struct EncoderRow {
    encoder: String,
    ndcg: f64,
    agreement: Option<(f64, f64)>,
    prior: QueryPrior,
    feedback: QueryFeedback,
}

/// Per encoder: its nDCG@10 and its agreement with the first, as JSON or a table.
fn report(
    json_out: bool,
    dataset: &std::path::Path,
    queries: usize,
    rows: Vec<EncoderRow>,
) -> Result<()> {
    if json_out {
        let encoders: Vec<_> = rows
            .iter()
            .map(|r| {
                let mut o = json!({
                    "encoder": r.encoder,
                    "ndcg@10": r.ndcg,
                    "query_prior": r.prior.to_string(),
                    "query_feedback": r.feedback.to_string(),
                });
                if let Some((ov, tau)) = r.agreement {
                    o["vs_first"] = json!({"overlap@10": ov, "kendall_tau": tau});
                }
                o
            })
            .collect();
        println!(
            "{}",
            json!({"dataset": dataset.display().to_string(), "queries": queries, "encoders": encoders})
        );
        return Ok(());
    }
    println!(
        "{} judged queries of {}, top 10 per query:",
        queries,
        dataset.display()
    );
    println!(
        "{:<30} {:>8} {:>11} {:>10}  {:<10} feedback",
        "encoder", "nDCG@10", "overlap@10", "kendall τ", "prior"
    );
    for r in rows {
        let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.4}"));
        println!(
            "{:<30} {:>8.4} {:>11} {:>10}  {:<10} {}",
            r.encoder,
            r.ndcg,
            f(r.agreement.map(|a| a.0)),
            f(r.agreement.map(|a| a.1)),
            r.prior.to_string(),
            r.feedback
        );
    }
    Ok(())
}
