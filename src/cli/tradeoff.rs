//! `csplade tradeoff`: quality against speed and size for several encoders
//! and index-side settings over one BEIR collection, measured on a fixed
//! candidate pool instead of one full index per encoder (see
//! `csplade::tradeoff`), as a table, JSON or CSV.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use csplade::compare::{self, EncoderSpec, Models};
use csplade::data::passages::PassagesSetting;
use csplade::search::seismic::SeismicQuery;
use csplade::search::{Backend, LsrIndex, QueryPrior};
use csplade::tradeoff::{self, Event, Frontier, Point, PoolSpec, Setup};

use super::ModelArgs;

#[derive(Args)]
#[command(
    after_help = "Each point re-ranks one pool: per sampled query, BM25's and the
reference index's top --depth documents plus every judged document. Only
the pool is encoded, once per encoder, and cached under the data home; an
interrupted run resumes, and adding an encoder encodes only its pool.
Examples:
  csplade tradeoff --dataset DIR --index IDX                 # f32 f16 q8_0 q4_0
  csplade tradeoff --dataset DIR --index IDX --mixed --doc-top-k 64,128 --scale 10
  csplade tradeoff --dataset DIR --index IDX --full-index IDX_Q8 --csv points.csv"
)]
pub struct TradeoffArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// BEIR collection directory
    #[arg(long)]
    pub dataset: PathBuf,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// The reference: a full index (default: the one of first reads cached
    /// for the dataset and --model, built when missing). Its encoder is the
    /// first point, and its rankings seed the pool; points score documents'
    /// first reads, even where the index also ranks by passages
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Encoders (SPEC or a Compare preset), repeatable [default: the
    /// reference model's precisions]
    #[arg(long = "encoder", value_name = "SPEC|PRESET")]
    pub encoders: Vec<String>,
    /// Also each encoder's documents with the reference's queries, and the
    /// reference's documents with each encoder's queries (precision per side)
    #[arg(long)]
    pub mixed: bool,
    /// Index-side axis: documents pruned to their top K terms (comma list)
    #[arg(long, value_delimiter = ',', value_parser = super::within(1, 100_000))]
    pub doc_top_k: Vec<usize>,
    /// Index-side axis: impacts rounded to integers at this scale (comma list)
    #[arg(long, value_delimiter = ',', value_parser = super::real_within(1.0, 1000.0))]
    pub scale: Vec<f32>,
    /// Index-side axis: Seismic query settings QUERY_TERMS:HEAP_FACTOR (comma list)
    #[arg(long, value_delimiter = ',', value_name = "T:H")]
    pub seismic: Vec<String>,
    /// Judged queries sampled (0: all)
    #[arg(long, default_value_t = PoolSpec::default().queries, value_parser = super::within(0, 1_000_000))]
    pub queries: usize,
    #[arg(long, default_value_t = PoolSpec::default().seed)]
    pub seed: u64,
    /// Documents pooled from each of BM25's and the reference's rankings
    #[arg(long, default_value_t = PoolSpec::default().depth, value_parser = super::within(10, 10_000))]
    pub depth: usize,
    /// Full indexes of other encoders: each matching point prints its
    /// full-index nDCG@10 over the same queries beside the estimate
    #[arg(long = "full-index", value_name = "DIR")]
    pub full: Vec<PathBuf>,
    /// Pool documents the reference encodes to time itself
    #[arg(long, default_value_t = 32, value_parser = super::within(1, 100_000))]
    pub speed_sample: usize,
    /// Query-side prior: none, idf or idf:POWER [default: each model's own]
    #[arg(long)]
    pub query_prior: Option<QueryPrior>,
    /// Second model of the `families` preset
    #[arg(long, value_name = "MODEL")]
    pub second: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Write the points as CSV here (for plotting)
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Only draw the pool and say what each encoder would encode, against
    /// a full index
    #[arg(long)]
    pub plan: bool,
    /// Report progress as JSON lines on stdout (for the explorer)
    #[arg(long)]
    pub progress_json: bool,
}

/// The reference encoder: the one that built `idx` (model as recorded, or
/// as given).
fn reference_spec(a: &TradeoffArgs, idx: &LsrIndex) -> Result<EncoderSpec> {
    let model = match (&a.model.model, &idx.meta.model_spec) {
        (Some(m), _) => m.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => bail!(
            "{} does not record the model that built it; name it with --model",
            idx.dir.display()
        ),
    };
    let (precision, head) = csplade::quant::parse_label(&idx.meta.precision)
        .with_context(|| format!("{}: precision {:?}", idx.dir.display(), idx.meta.precision))?;
    if head {
        bail!(
            "{} was built with --quantize-head, which tradeoff does not compare",
            idx.dir.display()
        );
    }
    let mut s = EncoderSpec::new(&model);
    s.variant = Some(idx.meta.variant);
    s.head = Some(idx.meta.head);
    s.precision = precision;
    Ok(s)
}

/// Every point: the encoders (presets expanded), the mixed pairs, then each
/// index-side setting over each of them.
fn points(a: &TradeoffArgs, reference: &EncoderSpec, models: &mut Models) -> Result<Vec<Point>> {
    let trained = models.get(reference)?.trained_encoding();
    let mut specs: Vec<EncoderSpec> = Vec::new();
    let names = if a.encoders.is_empty() {
        vec!["precisions".to_string()]
    } else {
        a.encoders.clone()
    };
    for e in &names {
        match compare::preset(e, &reference.model, trained, a.second.as_deref()) {
            Some(list) => specs.extend(list),
            None if e == "families" => bail!("the families preset needs --second MODEL"),
            None => specs.push(e.parse().map_err(anyhow::Error::msg)?),
        }
    }
    let specs: Vec<EncoderSpec> = specs
        .into_iter()
        .map(|s| canonical(s, models))
        .collect::<Result<_>>()?;
    let mut base: Vec<Point> = specs.iter().cloned().map(Point::encoder).collect();
    if a.mixed {
        for s in specs
            .iter()
            .filter(|s| **s != *reference && !s.inference_free)
        {
            base.push(Point::mixed(reference.clone(), s.clone()));
            base.push(Point::mixed(s.clone(), reference.clone()));
        }
    }
    let seismic: Vec<SeismicQuery> = a
        .seismic
        .iter()
        .map(|t| match format!("seismic:{t}").parse::<Backend>() {
            Ok(Backend::Seismic(q)) => Ok(q),
            Ok(_) => unreachable!("a seismic backend parses as one"),
            Err(e) => Err(anyhow::anyhow!("--seismic {t}: {e}")),
        })
        .collect::<Result<_>>()?;
    let mut out = base.clone();
    for p in &base {
        out.extend(a.doc_top_k.iter().map(|&k| Point {
            doc_top_k: k,
            ..p.clone()
        }));
        out.extend(a.scale.iter().map(|&s| Point {
            scale: Some(s),
            ..p.clone()
        }));
        out.extend(seismic.iter().map(|&q| Point {
            seismic: Some(q),
            ..p.clone()
        }));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.to_string()));
    Ok(out)
}

/// `spec` without the settings its model's adapter already implies, so
/// that `default` and `default:echo:logprob:5` are one point.
fn canonical(mut s: EncoderSpec, models: &mut Models) -> Result<EncoderSpec> {
    let (variant, head) = models.get(&s)?.trained_encoding();
    if s.variant == Some(variant) {
        s.variant = None;
    }
    if s.head == Some(head) {
        s.head = None;
    }
    Ok(s)
}

pub fn run(a: TradeoffArgs) -> Result<()> {
    let progress_json = a.progress_json;
    let phase = |name: &str| {
        if progress_json {
            println!("{}", json!({"event": "phase", "name": name}));
        } else {
            eprintln!("csplade: {name}");
        }
    };
    phase("reading the collection and the reference index");
    let c = super::eval::Collection::read(&a.dataset, &a.split, false)?;
    let (index_dir, idx, full) = open_indexes(&a)?;
    let mut models = Models::new(a.model.device.open()?, false, a.model.family);
    let reference = canonical(reference_spec(&a, &idx)?, &mut models)?;
    let mut inputs = vec![a.dataset.as_path(), index_dir.as_path()];
    inputs.extend(a.full.iter().map(PathBuf::as_path));
    if let Some(path) = &a.csv {
        // Refused before any work, not after it.
        csplade::data::output::check_file(path, &csplade::data::output::TRADEOFF, &inputs)?;
    }
    let points = points(&a, &reference, &mut models)?;
    let setup = Setup {
        dataset: &c.name,
        split: &a.split,
        index: &idx,
        reference,
        corpus: &c.docs,
        evaluated: &c.evaluated,
        qrels: &c.qrels,
        pool: PoolSpec {
            queries: a.queries,
            seed: a.seed,
            depth: a.depth,
        },
        prior: a.query_prior,
        full: &full,
        speed_sample: a.speed_sample,
    };
    let mut on = |e: Event| match e {
        Event::Phase(name) => phase(&name),
        Event::Progress {
            done,
            total,
            tokens_per_s,
            eta_s,
        } if progress_json => println!(
            "{}",
            json!({"event": "progress", "done": done, "total": total, "tokens_per_s": tokens_per_s, "eta_s": eta_s})
        ),
        Event::Progress { .. } => {}
    };
    if a.plan {
        let p = tradeoff::plan(&setup, &mut models, &mut on)?;
        return print_plan(&p, a.json);
    }
    let f = tradeoff::run(&setup, &points, &mut models, &mut on)?;
    if let Some(path) = &a.csv {
        write_csv(path, &f, &inputs)?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&f)?);
    } else {
        print_table(&f);
    }
    Ok(())
}

/// The reference index (`--index`, else the one cached for the dataset
/// and model, built when missing) and the `--full-index` ones, each checked
/// against the collection.
fn open_indexes(a: &TradeoffArgs) -> Result<(PathBuf, LsrIndex, Vec<LsrIndex>)> {
    let index_dir = match &a.index {
        Some(i) => i.clone(),
        // Variants are compared on documents' first reads (pooled, each
        // re-encoded), so the reference index holds first reads only.
        None => super::eval::cached_index(
            &a.dataset,
            &a.model,
            &a.model.load()?,
            Some(PassagesSetting::None),
        )?,
    };
    let idx =
        LsrIndex::open(&index_dir).with_context(|| format!("opening {}", index_dir.display()))?;
    idx.meta.check_corpus(&index_dir, &a.dataset)?;
    let full: Vec<LsrIndex> = a
        .full
        .iter()
        .map(|p| LsrIndex::open(p).with_context(|| format!("opening {}", p.display())))
        .collect::<Result<_>>()?;
    for (f, p) in full.iter().zip(&a.full) {
        f.meta.check_corpus(p, &a.dataset)?;
    }
    for (i, dir) in std::iter::once((&idx, &index_dir)).chain(full.iter().zip(&a.full)) {
        if let Some(p) = &i.passages {
            eprintln!(
                "csplade: notice: {} ranks documents by their best of {} passages ({}); the frontier compares encoders on documents' first reads (passages are not re-encoded), so this index serves as a pool of candidates, not as a full-index check",
                dir.display(),
                p.len(),
                p.spec
            );
        }
    }
    Ok((index_dir, idx, full))
}

/// What `--plan` found: the pool and its share of a full index.
fn print_plan(p: &tradeoff::Plan, json_out: bool) -> Result<()> {
    if json_out {
        println!("{}", serde_json::to_string(p)?);
    } else {
        println!(
            "{} queries, depth {}: {} of {} documents pooled, {} of {} tokens ({:.1}% of a full index per encoder)",
            p.queries,
            p.depth,
            p.pool_documents,
            p.corpus_documents,
            p.pool_tokens,
            p.corpus_tokens,
            100.0 * p.pool_tokens as f64 / p.corpus_tokens.max(1) as f64
        );
    }
    Ok(())
}

/// The points as CSV, one row each.
fn write_csv(path: &std::path::Path, f: &Frontier, inputs: &[&std::path::Path]) -> Result<()> {
    use std::io::Write;
    csplade::data::output::atomic::write_file(
        path,
        &csplade::data::output::TRADEOFF,
        inputs,
        "tradeoff",
        |w| {
            writeln!(w, "label,query_encoder,document_encoder,doc_top_k,scale,seismic,queries,pool_depth,pool_documents,ndcg10,ndcg10_lo,ndcg10_hi,full_ndcg10,full_ndcg10_lo,full_ndcg10_hi,recall100_in_pool,overlap10,kendall_tau,doc_tokens_per_s,query_p50_ms,query_p99_ms,query_model_bytes,doc_model_bytes,index_bytes")?;
            for p in &f.points {
                let opt = |x: Option<String>| x.unwrap_or_default();
                writeln!(
                w,
                "\"{}\",\"{}\",\"{}\",{},{},{},{},{},{},{:.5},{:.5},{:.5},{},{},{},{:.5},{:.5},{:.5},{:.1},{:.3},{:.3},{},{},{}",
                p.label.replace('"', "\"\""),
                p.query_encoder.replace('"', "\"\""),
                p.document_encoder.replace('"', "\"\""),
                p.doc_top_k,
                opt(p.scale.map(|s| s.to_string())),
                opt(p.seismic.clone()),
                p.queries,
                p.pool_depth,
                p.pool_documents,
                p.ndcg10,
                p.ndcg10_ci[0],
                p.ndcg10_ci[1],
                opt(p.full_ndcg10.map(|x| format!("{x:.5}"))),
                opt(p.full_ndcg10_ci.map(|c| format!("{:.5}", c[0]))),
                opt(p.full_ndcg10_ci.map(|c| format!("{:.5}", c[1]))),
                p.recall100_in_pool,
                p.overlap10,
                p.kendall_tau,
                p.doc_tokens_per_s,
                p.query_p50_ms,
                p.query_p99_ms,
                p.query_model_bytes,
                p.doc_model_bytes,
                p.index_bytes
            )?;
            }
            Ok(())
        },
    )?;
    Ok(())
}

fn print_table(f: &Frontier) {
    println!(
        "{} ({}): {} queries, pool depth {} → {} of {} documents (key {})",
        f.dataset,
        f.split,
        f.queries,
        f.pool.depth,
        f.pool_documents,
        f.corpus_documents,
        f.pool_key
    );
    println!("reference: {}\n", f.reference);
    println!(
        "{:<34} {:>7} {:>15} {:>8} {:>7} {:>9} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "point",
        "nDCG@10",
        "95% CI",
        "full",
        "Δ",
        "R@100 pool",
        "ov@10",
        "τ",
        "doc t/s",
        "q p50",
        "q p99",
        "model MB",
        "index MB"
    );
    let pareto = f.pareto(tradeoff::Axis::QueryLatency);
    for (p, front) in f.points.iter().zip(pareto) {
        let full = p.full_ndcg10.map_or("-".into(), |x| format!("{x:.4}"));
        let delta = p
            .full_ndcg10
            .map_or("-".into(), |x| format!("{:+.4}", p.ndcg10 - x));
        println!(
            "{:<34} {:>7.4} {:>15} {:>8} {:>7} {:>9.3} {:>6.3} {:>6.3} {:>8.0} {:>6.1}ms {:>6.1}ms {:>8.1} {:>8.2}{}",
            p.label,
            p.ndcg10,
            format!("[{:.3}, {:.3}]", p.ndcg10_ci[0], p.ndcg10_ci[1]),
            full,
            delta,
            p.recall100_in_pool,
            p.overlap10,
            p.kendall_tau,
            p.doc_tokens_per_s,
            p.query_p50_ms,
            p.query_p99_ms,
            p.query_model_bytes.max(p.doc_model_bytes) as f64 / 1e6,
            p.index_bytes as f64 / 1e6,
            if front { "  ◆" } else { "" }
        );
    }
    let c = &f.cost;
    println!(
        "\n◆ Pareto-optimal in nDCG@10 against query latency. Δ = pooled − full over the same {} queries.",
        f.queries
    );
    println!(
        "encoding: {} pool tokens for {} encoder(s) = {:.1}% of their {} full-index tokens; {:.0} s encoding in all runs, {:.0} s wall this run",
        c.pool_tokens,
        c.encoders,
        100.0 * c.share(),
        c.full_index_tokens,
        c.encode_seconds,
        c.wall_seconds
    );
}
