//! `csplade quantize`: save a precision variant as GGUF.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use csplade::quant::{self, Precision};

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
    } else if a.model == csplade::model::DEFAULT_SPEC || a.model.contains('+') {
        bail!(
            "--model {}: quantize writes a GGUF file of a backbone, and this model is a backbone \
             with a csplade adapter merged at load (its per-term shifts and query table have no place \
             in GGUF); to run it at {} use --precision {} (encode, index, search, eval, the explorer), \
             or quantize `base` and keep the adapter beside it",
            a.model,
            a.precision,
            a.precision
        );
    } else {
        PathBuf::from(&a.model)
    };
    if !source.exists() {
        bail!(
            "--model {}: no such file (quantize reads a .gguf file, or `base`)",
            source.display()
        );
    }
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
