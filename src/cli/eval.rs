//! `csplade eval`: nDCG@10, MRR@10, Recall@100/1000 of LSR and BM25 on a
//! BEIR collection, side by side, with the queries where LSR loses most.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use csplade::data::beir;
use csplade::data::passages::PassagesSetting;
use csplade::encode::Encoder;
use csplade::eval::{evaluate_run, Metrics};
use csplade::index::bm25::Bm25Index;
use csplade::model::fetch::data_dir;
use csplade::search::{Backend, Fusion, Hit, LsrIndex, QueryFeedback, QueryPrior, QueryScoring};

use super::ModelArgs;

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// BEIR collection directory
    #[arg(long)]
    pub dataset: PathBuf,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// LSR index of the dataset (default: build or reuse one cached in the data directory)
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Build (or reuse) the cached index with each document's later words
    /// also indexed as passages, a document ranked by its best (see `index
    /// --passages`), or with first reads only (`none`); an --index records
    /// its own [default: what the model's adapter records, else none]
    #[arg(long, value_name = "none|WORDS:STRIDE:FROM", conflicts_with = "index")]
    pub passages: Option<PassagesSetting>,
    /// Systems ranked and reported: lsr, bm25, hybrid (their fusion), both
    /// (lsr and bm25) or all three
    #[arg(long, value_enum, default_value = "both")]
    pub system: SystemChoice,
    /// Query-side prior: none, idf or idf:POWER (query term weights times
    /// the index's idf to that power); default: the model's own (the
    /// shipped model records one; see MODEL_CARD.md), else none
    #[arg(long)]
    pub query_prior: Option<QueryPrior>,
    /// Pseudo-relevance feedback: none, rocchio or
    /// rocchio:DOCS:WEIGHT:TERMS[:IDF_POWER]
    /// (see `csplade search --help`); default: the model's own, else none
    #[arg(long)]
    pub query_feedback: Option<QueryFeedback>,
    /// How --system hybrid fuses LSR and BM25: convex:ALPHA (α × min-max
    /// normalised LSR score + (1 − α) × BM25's; α chosen on Cranfield) or
    /// rrf:K (reciprocal rank fusion)
    #[arg(long, default_value_t = Fusion::default())]
    pub fusion: Fusion,
    /// Write the TREC run here (with .lsr / .bm25 / .hybrid appended when
    /// several systems are reported)
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// LSR scorer: exact, tantivy or seismic[:QUERY_TERMS:HEAP_FACTOR]
    /// (see `csplade search --help`)
    #[arg(long, default_value = "exact")]
    pub backend: Backend,
    /// Documents retrieved per query (at least 1)
    #[arg(long, default_value_t = 1000, value_parser = super::within(1, 100_000))]
    pub depth: usize,
    /// Queries listed in the LSR-vs-BM25 loss table
    #[arg(long, default_value_t = 10, value_parser = super::within(0, 100_000))]
    pub losses: usize,
    #[arg(long)]
    pub json: bool,
    /// Report progress as JSON lines on stdout (for the explorer); the
    /// result table follows as plain lines
    #[arg(long)]
    pub progress_json: bool,
    /// Drop (with a warning) judgements of queries missing from
    /// queries.jsonl instead of refusing the qrels file
    #[arg(long)]
    pub lenient: bool,
    /// Explain the N queries where LSR loses most to BM25: each missed
    /// relevant document's ranks, the query words that score it under BM25
    /// but are missing or weak in the expansion, and the expansion terms that
    /// lifted the wrong hits (needs --system both)
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = super::within(0, 10_000))]
    pub explain_failures: usize,
}

/// One system's ranking per query.
type Run = Vec<(String, Vec<Hit>)>;

/// Which systems `--system` ranks with and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SystemChoice {
    /// The sparse model alone
    Lsr,
    /// BM25 alone
    Bm25,
    /// The fusion of the two (`--fusion`)
    Hybrid,
    /// LSR and BM25 side by side
    Both,
    /// LSR, BM25 and their fusion
    All,
}

impl SystemChoice {
    pub(super) fn lsr(self) -> bool {
        self != SystemChoice::Bm25
    }
    pub(super) fn bm25(self) -> bool {
        self != SystemChoice::Lsr
    }
    pub(super) fn hybrid(self) -> bool {
        matches!(self, SystemChoice::Hybrid | SystemChoice::All)
    }
    /// LSR and BM25 are reported (not only ranked for the fusion).
    pub(super) fn reports_parts(self) -> bool {
        self != SystemChoice::Hybrid
    }
    /// The systems reported, in the report's order.
    pub(super) fn reported(self) -> Vec<&'static str> {
        let parts = [("lsr", self.lsr()), ("bm25", self.bm25())];
        let mut names: Vec<&str> = parts
            .iter()
            .filter(|(_, on)| *on && self.reports_parts())
            .map(|(n, _)| *n)
            .collect();
        if self.hybrid() {
            names.push("hybrid");
        }
        names
    }
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// A collection's corpus fingerprint and directory name: what its cached
/// indexes are keyed by.
fn collection_identity(dataset: &Path) -> Result<(String, String)> {
    let fp = csplade::index::build::fingerprint(&csplade::data::beir::collection_file(
        dataset,
        "corpus.jsonl",
    ))?;
    let name = dataset
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    Ok((fp, name))
}

/// Cached BM25 index for a dataset, built on demand.
fn bm25_for(dataset: &Path, docs: &[beir::Document]) -> Result<Bm25Index> {
    let (fp, name) = collection_identity(dataset)?;
    let dir = data_dir()
        .join("indexes")
        .join(format!("bm25-{name}-{}", short(&fp)));
    if !dir.join("meta.json").is_file() {
        let stage = dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&stage);
        Bm25Index::build(&stage, docs)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::rename(&stage, &dir)?;
    }
    Ok(Bm25Index::open(&dir)?)
}

/// The collection under evaluation: documents, judgements, and the judged
/// queries that are averaged.
pub(super) struct Collection {
    pub name: String,
    pub docs: Vec<beir::Document>,
    pub qrels: beir::Qrels,
    pub evaluated: Vec<beir::Query>,
}

impl Collection {
    /// Read and check the corpus, queries and qrels (unknown judged queries
    /// refused unless `--lenient`).
    pub(super) fn read(dataset: &Path, split: &str, lenient: bool) -> Result<Self> {
        let docs = beir::read_corpus(dataset)?;
        let queries = beir::read_queries(dataset)?;
        let file = beir::read_qrels_file(dataset, split)?;
        for n in &file.notes {
            eprintln!("csplade: warning: {n}");
        }
        let doc_set: HashSet<&str> = docs.iter().map(|d| d.id.as_str()).collect();
        let query_set: HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
        let mut qrels = file.qrels.clone();
        let phantom = file.unknown_queries(&query_set);
        if let Some((q, line)) = phantom.first() {
            let msg = format!(
                "{}:{line}: query {q:?} is judged but not in {} ({} such queries)",
                file.path.display(),
                beir::collection_file(dataset, "queries.jsonl").display(),
                phantom.len()
            );
            if !lenient {
                bail!("{msg}; fix the qrels, or pass --lenient to drop their judgements");
            }
            eprintln!("csplade: warning: {msg}; dropped (--lenient)");
            for (q, _) in &phantom {
                qrels.remove(q);
            }
        }
        let unknown = beir::unknown_judgements(&qrels, &doc_set, &query_set);
        if !unknown.is_empty() {
            eprintln!(
                "csplade: warning: {} judgements name documents or queries missing from the collection (first: {} → {}); they count as relevant but can never be retrieved",
                unknown.len(),
                unknown[0].0,
                unknown[0].1
            );
        }
        let evaluated: Vec<beir::Query> = queries
            .into_iter()
            .filter(|q| qrels.get(&q.id).is_some_and(|j| j.values().any(|&g| g > 0)))
            .collect();
        if evaluated.is_empty() {
            bail!(
                "no query of {} has a relevant judgement in qrels/{}.tsv",
                dataset.display(),
                split
            );
        }
        let name = dataset
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        Ok(Self {
            name,
            docs,
            qrels,
            evaluated,
        })
    }
}

/// The LSR side, kept for explaining failures: index, model, the queries'
/// expansions as the model wrote them, and the prior they were scored with.
pub(super) struct LsrSide {
    pub index: LsrIndex,
    pub model: csplade::model::SparseModel,
    pub expansions: Vec<csplade::encode::SparseVec>,
    /// The expansions as scored (times the prior, plus the feedback).
    pub scored: Vec<csplade::encode::SparseVec>,
    pub prior: QueryPrior,
    pub feedback: QueryFeedback,
    /// With feedback, LSR's ranking without it (the prior alone), so the
    /// report can say what the feedback did.
    pub unfed: Option<Run>,
}

fn phase(a: &EvalArgs, name: &str) {
    if a.progress_json {
        println!("{}", json!({"event": "phase", "name": name}));
    }
}

fn bm25_run(a: &EvalArgs, c: &Collection) -> Result<Run> {
    phase(a, "BM25 ranking");
    let bm = match &a.index {
        Some(i) => {
            csplade::index::IndexMeta::read(i)?.check_corpus(i, &a.dataset)?;
            Bm25Index::open(&i.join(csplade::index::build::BM25_DIR))?
        }
        None => bm25_for(&a.dataset, &c.docs)?,
    };
    let mut runs = Vec::new();
    for q in &c.evaluated {
        let hits = bm
            .search(&q.text, a.depth)?
            .into_iter()
            .map(|h| Hit {
                ordinal: h.ordinal,
                doc_id: c
                    .docs
                    .get(h.ordinal)
                    .map(|d| d.id.clone())
                    .unwrap_or_default(),
                score: h.score,
            })
            .collect();
        runs.push((q.id.clone(), hits));
    }
    Ok(runs)
}

/// The index `--index` names, or the cached one for this dataset and model
/// (built now when missing).
fn lsr_index_dir(a: &EvalArgs, model: &csplade::model::SparseModel) -> Result<PathBuf> {
    match &a.index {
        Some(i) => Ok(i.clone()),
        None => cached_index(&a.dataset, &a.model, model, a.passages),
    }
}

/// The index cached in the data directory for `dataset` encoded as `margs`
/// says with `model`, built now when missing.
pub(super) fn cached_index(
    dataset: &Path,
    margs: &super::ModelArgs,
    model: &csplade::model::SparseModel,
    passages: Option<PassagesSetting>,
) -> Result<PathBuf> {
    let passages = super::index::passages_for(passages, model, margs)?;
    let (fp, name) = collection_identity(dataset)?;
    let config = margs.encoder_config(model);
    let head = config.head.to_string().replace(':', "");
    // Windows only in the names of indexes that read more than one, so
    // indexes cached before windows existed are found again.
    let windows = match config.windows {
        1 => String::new(),
        n => format!("x{n}"),
    };
    let passages_key = passages.map_or(String::new(), |p| {
        format!("-p{}.{}.{}", p.words, p.stride, p.from)
    });
    let dir = data_dir().join("indexes").join(format!(
        "lsr-{name}-{}-{}-{}-{head}-{}-{}{windows}{passages_key}",
        short(&fp),
        short(&model.identity().sha256),
        config.variant,
        csplade::quant::label(margs.precision, margs.quantize_head),
        config.max_len
    ));
    if !dir.join("meta.json").is_file() {
        eprintln!(
            "csplade: no cached LSR index for this dataset and model; building {}",
            dir.display()
        );
        let settings = super::index::IndexSettings {
            passages,
            ..Default::default()
        };
        super::index::build_with_progress(model, margs, dataset, &dir, &settings, false)?;
    }
    Ok(dir)
}

fn lsr_run(a: &EvalArgs, c: &Collection) -> Result<(Run, LsrSide)> {
    phase(a, "LSR: loading the model and index");
    // With --index and no --model: the model the index records.
    let recorded = match (&a.index, &a.model.model) {
        (Some(i), None) => csplade::index::IndexMeta::read(i)
            .ok()
            .and_then(|m| m.model_spec),
        _ => None,
    };
    let margs = super::ModelArgs {
        model: recorded.or_else(|| a.model.model.clone()),
        ..a.model.clone()
    };
    let model = margs.load()?;
    let index_dir = lsr_index_dir(a, &model)?;
    let idx =
        LsrIndex::open(&index_dir).with_context(|| format!("opening {}", index_dir.display()))?;
    idx.meta.check_corpus(&index_dir, &a.dataset)?;
    idx.meta.check_model(model.identity(), model.vocab_size())?;
    a.model.check_index_encoding(&idx.meta)?;
    // The table already weighs its tokens: no prior (nor feedback) unless
    // asked for.
    let scoring = QueryScoring {
        prior: a.query_prior,
        feedback: a.query_feedback,
    };
    let (prior, feedback) = scoring.resolve(model.as_ref(), a.model.inference_free);
    let enc = Encoder::new(&model, idx.meta.encoder_config())
        .with_inference_free(a.model.inference_free)?;
    phase(a, "LSR: encoding the queries");
    let texts: Vec<&str> = c.evaluated.iter().map(|q| q.text.as_str()).collect();
    let expansions: Vec<_> = enc.encode(&texts)?.into_iter().map(|e| e.vector).collect();
    // With feedback, the first ranking is also the run without it.
    let (mut scored, mut runs, mut first_runs) = (Vec::new(), Vec::new(), Vec::new());
    for (q, e) in c.evaluated.iter().zip(&expansions) {
        let (s, _, first) = idx.scored_query_and_first(e, prior, feedback, a.backend, a.depth)?;
        runs.push((q.id.clone(), idx.search(&s, a.depth, a.backend)?));
        first_runs.push((q.id.clone(), first));
        scored.push(s);
    }
    let unfed = (!feedback.is_none()).then_some(first_runs);
    let side = LsrSide {
        index: idx,
        model,
        expansions,
        scored,
        prior,
        feedback,
        unfed,
    };
    Ok((runs, side))
}

/// The mean and per-query metrics of a run against `qrels`.
pub(super) fn evaluate(
    runs: &Run,
    qrels: &csplade::data::beir::Qrels,
) -> (Metrics, Vec<(String, Metrics)>) {
    let ranked: HashMap<String, Vec<String>> = runs
        .iter()
        .map(|(q, h)| (q.clone(), h.iter().map(|h| h.doc_id.clone()).collect()))
        .collect();
    evaluate_run(&ranked, qrels)
}

/// A system's mean and per-query metrics.
pub(super) type Scored<'a> = (&'a str, Metrics, HashMap<String, Metrics>);

/// Where `--run FILE` writes the run of `name` among `count` reported
/// systems: FILE itself for one, FILE.NAME for several.
fn run_path(path: &Path, name: &str, count: usize) -> PathBuf {
    if count > 1 {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{name}"));
        PathBuf::from(p)
    } else {
        path.to_path_buf()
    }
}

/// Write each reported system's TREC run (see [`run_path`]).
fn write_runs(path: &Path, systems: &[(&str, Run)], inputs: &[&Path]) -> Result<()> {
    for (name, runs) in systems {
        let path = run_path(path, name, systems.len());
        csplade::eval::write_trec_run(&path, &format!("csplade-{name}"), runs, inputs)?;
    }
    Ok(())
}

pub fn run(a: EvalArgs) -> Result<()> {
    let inputs: Vec<&Path> = std::iter::once(a.dataset.as_path())
        .chain(a.index.as_deref())
        .collect();
    if let Some(path) = &a.run {
        // Refused now, not after the evaluation.
        let names = a.system.reported();
        for name in &names {
            let p = run_path(path, name, names.len());
            csplade::data::output::check_file(&p, &csplade::data::output::TREC_RUN, &inputs)?;
        }
    }
    let c = Collection::read(&a.dataset, &a.split, a.lenient)?;
    if a.explain_failures > 0 && !(a.system.lsr() && a.system.bm25() && a.system.reports_parts()) {
        bail!("--explain-failures compares LSR with BM25: use --system both or all");
    }
    let bm25 = if a.system.bm25() {
        Some(bm25_run(&a, &c)?)
    } else {
        None
    };
    let (lsr, side) = match a.system.lsr() {
        true => {
            let (r, s) = lsr_run(&a, &c)?;
            (Some(r), Some(s))
        }
        false => (None, None),
    };
    let mut systems: Vec<(&str, Run)> = Vec::new();
    if let (true, Some(l), Some(b)) = (a.system.hybrid(), &lsr, &bm25) {
        let fused = l
            .iter()
            .zip(b)
            .map(|((q, lh), (_, bh))| (q.clone(), a.fusion.fuse(lh, bh, a.depth)))
            .collect();
        systems.push(("hybrid", fused));
    }
    if a.system.reports_parts() {
        if let Some(b) = bm25 {
            systems.insert(0, ("bm25", b));
        }
        if let Some(l) = lsr {
            systems.insert(0, ("lsr", l));
        }
    }
    let results: Vec<Scored> = systems
        .iter()
        .map(|(name, runs)| {
            let (mean, per) = evaluate(runs, &c.qrels);
            (*name, mean, per.into_iter().collect())
        })
        .collect();
    if let Some(path) = &a.run {
        write_runs(path, &systems, &inputs)?;
    }
    let explained = match &side {
        Some(s) if a.explain_failures > 0 => {
            phase(&a, "explaining failures");
            explain_failures(a.explain_failures, &systems, &results, &c, s)?
        }
        _ => Vec::new(),
    };
    let report = super::eval_report::Report {
        a: &a,
        c: &c,
        results: &results,
        side: side.as_ref(),
        explained: &explained,
    };
    if a.json {
        report.json()
    } else {
        report.text();
        Ok(())
    }
}

/// The `n` queries where BM25's nDCG@10 exceeds LSR's the most, explained.
fn explain_failures(
    n: usize,
    systems: &[(&str, Run)],
    results: &[Scored],
    c: &Collection,
    side: &LsrSide,
) -> Result<Vec<csplade::failures::FailureExplanation>> {
    let run = |name: &str| -> HashMap<&str, &Vec<Hit>> {
        systems
            .iter()
            .filter(|s| s.0 == name)
            .flat_map(|s| s.1.iter().map(|(q, h)| (q.as_str(), h)))
            .collect()
    };
    let per = |name: &str| results.iter().find(|r| r.0 == name).map(|r| &r.2);
    let (lsr, bm25) = (run("lsr"), run("bm25"));
    let (Some(per_lsr), Some(per_bm25)) = (per("lsr"), per("bm25")) else {
        bail!("--explain-failures needs both systems");
    };
    let ndcg = |m: &HashMap<String, Metrics>, q: &str| m.get(q).map_or(0.0, |x| x.ndcg10);
    let evaluated = &c.evaluated;
    let mut order: Vec<(usize, f64)> = evaluated
        .iter()
        .enumerate()
        .map(|(i, q)| (i, ndcg(per_bm25, &q.id) - ndcg(per_lsr, &q.id)))
        .filter(|x| x.1 > 0.0)
        .collect();
    order.sort_by(|x, y| {
        y.1.total_cmp(&x.1)
            .then_with(|| evaluated[x.0].id.cmp(&evaluated[y.0].id))
    });
    let empty = Vec::new();
    order
        .into_iter()
        .take(n)
        .map(|(i, _)| {
            let q = &evaluated[i];
            let case = csplade::failures::FailureCase {
                query_id: &q.id,
                text: &q.text,
                expansion: &side.scored[i],
                judged: &c.qrels[&q.id],
                lsr: lsr.get(q.id.as_str()).map_or(&empty, |h| *h),
                bm25: bm25.get(q.id.as_str()).map_or(&empty, |h| *h),
                ndcg_lsr: ndcg(per_lsr, &q.id),
                ndcg_bm25: ndcg(per_bm25, &q.id),
            };
            Ok(csplade::failures::explain(
                &side.index,
                side.model.tokenizer(),
                &case,
            )?)
        })
        .collect()
}
