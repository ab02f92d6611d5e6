//! `csplade index`: encode a BEIR corpus into an LSR index (resumable, atomic)
//! with its BM25 companion.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use csplade::data::passages::{PassageSpec, PassagesSetting};
use csplade::encode::Encoder;
use csplade::index::{build, BuildOptions, BuildProgress};
use csplade::model::SparseModel;

use super::ModelArgs;

#[derive(Args)]
pub struct IndexArgs {
    #[command(subcommand)]
    pub sub: Option<IndexSub>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// BEIR collection directory (corpus.jsonl)
    #[arg(long, required = true)]
    pub corpus: Option<PathBuf>,
    /// Index directory to create (replaced atomically when the build completes)
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// Impact quantization for tantivy: term frequency = round(weight × scale),
    /// from 1 to 1000 (below 1 most impacts round to 0; above, postings grow
    /// without gain)
    #[arg(long, default_value_t = 100.0, value_parser = super::real_within(1.0, 1000.0))]
    pub scale: f32,
    /// Keep only the heaviest terms of each document (0 = all)
    #[arg(long, default_value_t = 0, value_parser = super::within(0, 1_000_000))]
    pub doc_top_k: usize,
    /// Documents encoded between resumable commits
    #[arg(long, default_value_t = 64, value_parser = super::within(1, 1_000_000))]
    pub commit_every: usize,
    /// Encode at most N commit batches (--commit-every documents each) in
    /// this run, then stop; rerunning the same command resumes (for jobs
    /// with a time limit)
    #[arg(long, value_name = "N", value_parser = super::within(1, 1_000_000_000))]
    pub stop_after: Option<usize>,
    /// Print progress as JSON lines on stdout (for the explorer)
    #[arg(long)]
    pub progress_json: bool,
    /// Encode only shard I of N (every N-th commit batch) into a partial
    /// index at --out; `csplade index merge` joins the N shards
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// Also index each document's later words as passages, scored apart:
    /// the title plus WORDS words every STRIDE words from word FROM of the
    /// text (e.g. 80:60:70); a document then ranks by the best of its first
    /// --max-len tokens and its passages (MaxP); `none`: first reads only
    /// [default: what the model's adapter records (the shipped model's:
    /// 80:60:70), else none]
    #[arg(long, value_name = "none|WORDS:STRIDE:FROM")]
    pub passages: Option<PassagesSetting>,
}

#[derive(clap::Subcommand)]
pub enum IndexSub {
    /// Join the N shards of one build (`index --shard I/N`) into the index a
    /// one-process build would write
    Merge(MergeArgs),
    /// Check every file of an index: metadata, the vectors' checksum and
    /// count, tantivy's and BM25's documents, the document order and ids,
    /// tantivy's impacts against the vectors, a Seismic cache; each failure
    /// says whether a rebuild or a resume fixes it
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The index directory
    pub index: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct MergeArgs {
    /// Index directory to create (replaced atomically when complete)
    #[arg(long)]
    pub out: PathBuf,
    /// The shards' directories, all N of them
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: write the shard as I/N, e.g. 0/4"))?;
    let whole = |x: &str, what: &str| {
        x.trim()
            .parse::<usize>()
            .ok()
            .filter(|&v| v <= 1_000_000)
            .ok_or_else(|| format!("{s:?}: {what} must be a whole number from 0 to 1,000,000"))
    };
    let (i, n) = (whole(i, "I")?, whole(n, "N")?);
    if n == 0 || i >= n {
        return Err(format!("{s:?}: needs 0 ≤ I < N"));
    }
    Ok((i, n))
}

/// `index verify`: each check on a line; failing checks make the exit
/// status 1.
fn verify(v: &VerifyArgs) -> Result<()> {
    let checks = csplade::search::verify::verify(&v.index);
    if v.json {
        println!("{}", serde_json::to_string(&checks)?);
    } else {
        for c in &checks {
            println!(
                "{:<5} {:<16} {}",
                if c.ok { "ok" } else { "FAIL" },
                c.what,
                c.detail
            );
            if let Some(fix) = &c.fix {
                println!("      {:<16} fix: {fix}", "");
            }
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} checks failed for {}",
            checks.len(),
            v.index.display()
        );
    }
    Ok(())
}

pub fn run(a: IndexArgs) -> Result<()> {
    if let Some(IndexSub::Verify(v)) = &a.sub {
        return verify(v);
    }
    if let Some(IndexSub::Merge(m)) = a.sub {
        let meta = csplade::index::shard::merge(&m.shards, &m.out, |p| {
            if let BuildProgress::Phase { name } = &p {
                eprintln!("csplade: {name} …");
            }
        })?;
        eprintln!(
            "csplade: merged {} shards: {} documents → {}",
            m.shards.len(),
            meta.documents,
            m.out.display()
        );
        return Ok(());
    }
    let (Some(corpus), Some(out)) = (&a.corpus, &a.out) else {
        anyhow::bail!("index needs --corpus and --out (or the merge subcommand)");
    };
    let model = a.model.load()?;
    let settings = IndexSettings {
        scale: a.scale,
        doc_top_k: a.doc_top_k,
        commit_every: a.commit_every,
        shard: a.shard,
        stop_after: a.stop_after,
        passages: passages_for(a.passages, &model, &a.model)?,
    };
    match build_with_progress(&model, &a.model, corpus, out, &settings, a.progress_json) {
        Err(e) if a.stop_after.is_some() => match e.downcast_ref::<csplade::index::IndexError>() {
            Some(csplade::index::IndexError::Interrupted { done, total, .. }) => {
                eprintln!(
                    "csplade: stopped after {} commits as asked ({done} of {total} documents encoded); rerun the same command to resume",
                    a.stop_after.unwrap_or_default()
                );
                Ok(())
            }
            _ => Err(e),
        },
        r => r.map(|_| ()),
    }
}

/// The passage split a build uses: what it was told, else what the model
/// records. A recorded split that cannot go with --windows is refused with
/// the way out (`--passages none`), not dropped, so that the index is never
/// silently other than the model's default one.
pub fn passages_for(
    told: Option<PassagesSetting>,
    model: &SparseModel,
    margs: &ModelArgs,
) -> Result<Option<PassageSpec>> {
    let recorded = model.passages();
    if let (None, Some(spec)) = (told, recorded) {
        if margs.windows.unwrap_or(1) > 1 {
            anyhow::bail!(
                "the model records passages {spec} (its documents rank by their best passage) and \
                 --windows reads the rest of a document a second way; pass --passages none to read \
                 it as windows"
            );
        }
    }
    Ok(PassagesSetting::or_recorded(told, recorded))
}

/// How an index is built, beside the model: impacts, pruning, commits,
/// sharding and where this run stops.
#[derive(Clone, Copy, Debug)]
pub struct IndexSettings {
    pub scale: f32,
    pub doc_top_k: usize,
    pub commit_every: usize,
    pub shard: Option<(usize, usize)>,
    pub stop_after: Option<usize>,
    pub passages: Option<PassageSpec>,
}

impl Default for IndexSettings {
    fn default() -> Self {
        Self {
            scale: 100.0,
            doc_top_k: 0,
            commit_every: 64,
            shard: None,
            stop_after: None,
            passages: None,
        }
    }
}

pub fn build_with_progress(
    model: &SparseModel,
    margs: &ModelArgs,
    corpus: &std::path::Path,
    out: &std::path::Path,
    settings: &IndexSettings,
    json: bool,
) -> Result<csplade::index::IndexMeta> {
    let &IndexSettings {
        scale,
        doc_top_k,
        commit_every,
        shard,
        stop_after,
        passages,
    } = settings;
    if margs.inference_free {
        anyhow::bail!(
            "--inference-free encodes queries only: documents are always encoded by the model"
        );
    }
    let encoder = Encoder::new(model, margs.encoder_config(model));
    let opts = BuildOptions {
        corpus: corpus.to_path_buf(),
        out: out.to_path_buf(),
        scale,
        doc_top_k,
        commit_every,
        precision: csplade::quant::label(margs.precision, margs.quantize_head),
        stop_after_commits: stop_after,
        shard,
        passages,
    };
    let mut bar: Option<ProgressBar> = None;
    let out_dir = opts.out.clone();
    let meta = build(&encoder, &opts, |p| {
        if json {
            if let Ok(line) = serde_json::to_string(&p) {
                println!("{line}");
            }
            return;
        }
        show_progress(&p, &mut bar, &out_dir);
    })?;
    // A complete index records the model that built it, for the commands
    // that open it without being told one (a shard's merge does not).
    let mut meta = meta;
    if shard.is_none() {
        meta.model_spec = Some(recorded_spec(margs.spec()));
        meta.write(out)?;
    }
    Ok(meta)
}

/// A build's progress on the terminal: notices, a progress bar, phases.
fn show_progress(p: &BuildProgress, bar: &mut Option<ProgressBar>, out: &std::path::Path) {
    match p {
        BuildProgress::Start {
            documents,
            passages,
            passages_truncated,
            resumed_from,
            tokens,
            truncated,
            max_len,
            windows,
        } => {
            if *truncated > 0 {
                let read = max_len * windows;
                let flags = if *windows > 1 {
                    format!("--max-len {max_len} × --windows {windows}")
                } else if *passages > 0 {
                    "--max-len; their later words are also indexed as passages".to_string()
                } else {
                    "--max-len; --windows N reads N windows of it".to_string()
                };
                eprintln!("csplade: notice: {truncated} of {documents} documents are longer than {read} tokens and are encoded from their first {read} ({flags})");
            }
            if *passages_truncated > 0 {
                eprintln!("csplade: notice: {passages_truncated} of {passages} passages are longer than {max_len} tokens and are encoded from their first {max_len} (fewer --passages WORDS keep them whole)");
            }
            let texts = documents + passages;
            if *resumed_from > 0 {
                eprintln!(
                    "csplade: resuming an interrupted build at text {resumed_from} of {texts}"
                );
            }
            let with = match passages {
                0 => String::new(),
                n => format!(" and {n} passages of their later words"),
            };
            eprintln!(
                "csplade: encoding {documents} documents{with} ({tokens} tokens) into {}",
                out.display()
            );
            let b = ProgressBar::new(texts as u64);
            b.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} texts  {msg}  ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_position(*resumed_from as u64);
            *bar = Some(b);
        }
        BuildProgress::Progress {
            done,
            docs_per_s,
            tokens_per_s,
            ..
        } => {
            if let Some(b) = bar.as_ref() {
                b.set_position(*done as u64);
                b.set_message(format!(
                    "{docs_per_s:.1} docs/s, {tokens_per_s:.0} tokens/s"
                ));
            }
        }
        BuildProgress::Phase { name } => {
            if let Some(b) = bar.take() {
                b.finish();
            }
            eprintln!("csplade: {name} …");
        }
        BuildProgress::Done {
            documents,
            seconds,
            path,
        } => {
            eprintln!("csplade: indexed {documents} documents in {seconds:.1} s → {path}");
        }
    }
}

/// `spec` with every part that names a file or directory made absolute, so
/// the index finds its model from any directory.
fn recorded_spec(spec: &str) -> String {
    spec.split('+')
        .map(|part| match std::fs::canonicalize(part) {
            Ok(p) if std::path::Path::new(part).exists() => p.display().to_string(),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join("+")
}
