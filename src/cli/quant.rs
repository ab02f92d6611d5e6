//! `csplade quantize` (save a precision variant as GGUF) and `csplade
//! compare` (one text under several precisions, side by side).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};

use csplade::encode::Encoder;
use csplade::quant::{self, Precision};

use super::ModelArgs;

#[derive(Args)]
pub struct QuantizeArgs {
    /// Source model: `base` or a .gguf file
    #[arg(long, default_value = "default")]
    pub model: String,
    /// f16, q8_0 or q4_0
    #[arg(long)]
    pub precision: Precision,
    /// Quantize the embeddings / tied LM head too
    #[arg(long)]
    pub quantize_head: bool,
    /// Output .gguf file
    #[arg(long)]
    pub out: PathBuf,
    /// Report phases as JSON lines on stdout (for the explorer)
    #[arg(long)]
    pub progress_json: bool,
}

pub fn quantize(a: QuantizeArgs) -> Result<()> {
    if a.progress_json {
        println!(
            "{}",
            json!({"event": "phase", "name": format!("quantizing to {}", quant::label(a.precision, a.quantize_head))})
        );
    }
    let source = if a.model == "base" {
        csplade::model::fetch::base_model_path()?
    } else {
        PathBuf::from(&a.model)
    };
    if source.is_dir() {
        bail!("quantize reads GGUF models; {} is a directory (HF checkpoints are not supported as a source yet)", source.display());
    }
    quant::write_variant(&source, &a.out, a.precision, a.quantize_head)
        .with_context(|| format!("writing {}", a.out.display()))?;
    let bytes = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    let msg = format!(
        "wrote {} ({}, {:.1} MB)",
        a.out.display(),
        quant::label(a.precision, a.quantize_head),
        bytes as f64 / 1e6
    );
    if a.progress_json {
        println!("{}", json!({"event": "phase", "name": msg}));
        println!("{}", json!({"event": "done"}));
    } else {
        println!("{msg}");
    }
    Ok(())
}

#[derive(Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Precisions compared (the first is the reference when f32 is absent)
    #[arg(long, value_delimiter = ',', default_value = "f32,f16,q8_0,q4_0")]
    pub precisions: Vec<Precision>,
    /// Terms shown per precision
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Timed encodings per precision (the median is reported)
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    #[arg(long)]
    pub json: bool,
    /// Rank over this index: per precision, queries re-encoded at that
    /// precision against the index's documents
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// With --index: every judged query of this BEIR collection (nDCG@10 per
    /// precision, ranking agreement with f32 averaged over queries)
    #[arg(long, requires = "index")]
    pub dataset: Option<PathBuf>,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// The text (not needed with --dataset)
    #[arg(required_unless_present = "dataset")]
    pub text: Vec<String>,
}

/// Rankings per precision over an index: for one text, or for every judged
/// query of a collection with nDCG@10.
fn compare_retrieval(a: &CompareArgs, index: &std::path::Path) -> Result<()> {
    use csplade::data::beir;
    use csplade::search::{Backend, LsrIndex};
    let idx =
        LsrIndex::open(index).with_context(|| format!("opening index {}", index.display()))?;
    let (queries, qrels) = match &a.dataset {
        Some(d) => {
            let qrels = beir::read_qrels(d, &a.split)?;
            let qs: Vec<beir::Query> = beir::read_queries(d)?
                .into_iter()
                .filter(|q| qrels.get(&q.id).is_some_and(|j| j.values().any(|&g| g > 0)))
                .collect();
            (qs, Some(qrels))
        }
        None => (
            vec![beir::Query {
                id: "text".into(),
                text: a.text.join(" "),
            }],
            None,
        ),
    };
    let texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
    let mut rankings: Vec<(Precision, Vec<Vec<String>>)> = Vec::new();
    for &p in &a.precisions {
        let mut margs = a.model.clone();
        margs.precision = p;
        let model = margs.load()?;
        idx.meta
            .check_model(&model.identity, model.config().vocab_size)?;
        let enc = Encoder::new(&model, idx.meta.encoder_config());
        let encoded = enc.encode(&texts)?;
        let mut per_query = Vec::with_capacity(encoded.len());
        for e in &encoded {
            per_query.push(
                idx.search(&e.vector, 10, Backend::Exact)?
                    .into_iter()
                    .map(|h| h.doc_id)
                    .collect(),
            );
        }
        rankings.push((p, per_query));
    }
    let reference = rankings
        .iter()
        .find(|r| r.0 == Precision::F32)
        .map(|r| r.1.clone());
    let mut precs = Map::new();
    let mut rows = Vec::new();
    for (p, per_query) in &rankings {
        let ndcg = qrels.as_ref().map(|qr| {
            let refs: Vec<f64> = queries
                .iter()
                .zip(per_query)
                .map(|(q, r)| {
                    csplade::eval::ndcg_at(
                        &r.iter().map(String::as_str).collect::<Vec<_>>(),
                        &qr[&q.id],
                        10,
                    )
                })
                .collect();
            refs.iter().sum::<f64>() / refs.len().max(1) as f64
        });
        let agreement = reference
            .as_ref()
            .filter(|_| *p != Precision::F32)
            .map(|f| {
                let n = f.len().max(1) as f64;
                let overlap = f
                    .iter()
                    .zip(per_query)
                    .map(|(a, b)| {
                        if a.is_empty() {
                            1.0
                        } else {
                            b.iter().filter(|d| a.contains(d)).count() as f64 / a.len() as f64
                        }
                    })
                    .sum::<f64>()
                    / n;
                let tau = f
                    .iter()
                    .zip(per_query)
                    .map(|(a, b)| quant::kendall_tau(a, b))
                    .sum::<f64>()
                    / n;
                (overlap, tau)
            });
        let mut o = json!({});
        if let Some(n) = ndcg {
            o["ndcg@10"] = json!(n);
        }
        if a.dataset.is_none() {
            o["ranking"] = json!(per_query.first().cloned().unwrap_or_default());
        }
        if let Some((ov, tau)) = agreement {
            o["vs_f32"] = json!({"overlap@10": ov, "kendall_tau": tau});
        }
        precs.insert(p.to_string(), o);
        rows.push((*p, ndcg, agreement));
    }
    if a.json {
        println!(
            "{}",
            json!({"index": index.display().to_string(), "queries": queries.len(), "precisions": Value::Object(precs)})
        );
        return Ok(());
    }
    println!(
        "{} queries over {} (documents at {}), top 10 per query:",
        queries.len(),
        index.display(),
        idx.meta.precision
    );
    println!(
        "{:<6} {:>8} {:>11} {:>10}",
        "prec", "nDCG@10", "overlap@10", "kendall τ"
    );
    for (p, ndcg, ag) in rows {
        let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.4}"));
        println!(
            "{:<6} {:>8} {:>11} {:>10}",
            p.to_string(),
            f(ndcg),
            f(ag.map(|a| a.0)),
            f(ag.map(|a| a.1))
        );
    }
    Ok(())
}

pub fn compare(a: CompareArgs) -> Result<()> {
    let text = a.text.join(" ");
    if a.precisions.is_empty() {
        bail!("--precisions is empty");
    }
    if let Some(index) = &a.index {
        return compare_retrieval(&a, index);
    }
    let mut runs = Vec::new();
    for &p in &a.precisions {
        let mut margs = a.model.clone();
        margs.precision = p;
        let model = margs.load()?;
        let enc = Encoder::new(&model, margs.encoder_config(&model));
        let first = enc.encode_one(&text)?; // warm-up
        let mut times = Vec::new();
        for _ in 0..a.repeat.max(1) {
            let t0 = Instant::now();
            enc.encode_one(&text)?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let terms: Vec<(u32, String, f32)> = first
            .vector
            .top_k(a.top_k)
            .into_iter()
            .map(|(id, w)| (id, model.tokenizer.token(id).to_string(), w))
            .collect();
        runs.push((
            p,
            first.vector,
            terms,
            times[times.len() / 2],
            model.llama.weight_bytes(),
        ));
    }
    let reference = runs
        .iter()
        .find(|r| r.0 == Precision::F32)
        .map(|r| r.1.clone());
    if a.json {
        let mut precs = Map::new();
        for (p, v, terms, ms, bytes) in &runs {
            let mut o = json!({
                "terms": terms.iter().map(|(id, tok, w)| json!({"id": id, "token": tok, "weight": w})).collect::<Vec<_>>(),
                "active": v.active(), "latency_ms": ms, "model_bytes": bytes,
            });
            if let (Some(r), true) = (&reference, *p != Precision::F32) {
                o["vs_f32"] = serde_json::to_value(quant::diff(r, v))?;
            }
            precs.insert(p.to_string(), o);
        }
        println!(
            "{}",
            json!({"text": text, "precisions": Value::Object(precs)})
        );
        return Ok(());
    }
    println!("text: {text}\n");
    println!(
        "{:<6} {:>7} {:>10} {:>9} {:>10} {:>10} {:>8} {:>8} {:>10}",
        "prec",
        "active",
        "latency",
        "model MB",
        "overlap@10",
        "overlap@50",
        "jaccard",
        "cosine",
        "max |Δw|"
    );
    for (p, v, _, ms, bytes) in &runs {
        let d = reference
            .as_ref()
            .filter(|_| *p != Precision::F32)
            .map(|r| quant::diff(r, v));
        let f = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.3}"));
        println!(
            "{:<6} {:>7} {:>8.1}ms {:>9.1} {:>10} {:>10} {:>8} {:>8} {:>10}",
            p.to_string(),
            v.active(),
            ms,
            *bytes as f64 / 1e6,
            f(d.map(|d| d.overlap10)),
            f(d.map(|d| d.overlap50)),
            f(d.map(|d| d.jaccard)),
            f(d.map(|d| d.cosine)),
            f(d.map(|d| d.max_abs_dw))
        );
    }
    println!();
    let width = 22;
    let header: Vec<String> = runs
        .iter()
        .map(|r| format!("{:<width$}", r.0.to_string()))
        .collect();
    println!("{}", header.join(" "));
    for i in 0..a.top_k {
        let cells: Vec<String> = runs
            .iter()
            .map(|r| {
                r.2.get(i).map_or(String::new(), |(_, tok, w)| {
                    format!("{:<14} {w:>6.3}", format!("{tok:?}"))
                })
            })
            .map(|c| format!("{c:<width$}"))
            .collect();
        println!("{}", cells.join(" "));
    }
    Ok(())
}
