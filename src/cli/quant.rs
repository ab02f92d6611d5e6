//! `csplade quantize`: save a precision variant as GGUF.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use csplade::quant::{self, Precision};

#[derive(Args)]
pub struct QuantizeArgs {
    /// Source model: `default` (with its trained adapter), `base`, a .gguf
    /// file, or either with `+ADAPTER.safetensors`
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
    let (source, adapted) = sources(&a.model)?;
    quant::write_variant(&source, adapted, &a.out, a.precision, a.quantize_head)
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

/// The GGUF file a model spec rests on, and the model itself loaded with its
/// adapter merged when the spec names one (`default`, `BASE+ADAPTER`).
fn sources(spec: &str) -> Result<(PathBuf, Option<csplade::model::LoadedModel>)> {
    let base = match spec.rsplit_once('+') {
        _ if spec == csplade::model::DEFAULT_SPEC => "base",
        Some((base, _)) => base,
        None => spec,
    };
    // `default` rests on `base` too (its adapter is merged below).
    let source = if base == "base" || base == csplade::model::DEFAULT_SPEC {
        csplade::model::fetch::base_model_path()?
    } else {
        PathBuf::from(base)
    };
    if !source.exists() {
        bail!(
            "--model {spec}: {} does not exist (quantize reads a .gguf file or `base`, with or without an adapter)",
            source.display()
        );
    }
    if source.is_dir() {
        bail!("--model {spec}: quantize reads GGUF models; {} is a directory (HF checkpoints are not supported as a source yet)", source.display());
    }
    let adapted = if base == spec {
        None
    } else {
        let m = csplade::model::load_unpacked(spec, &candle_core::Device::Cpu)
            .with_context(|| format!("reading --model {spec}"))?;
        Some(m)
    };
    Ok((source, adapted))
}
