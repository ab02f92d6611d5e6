//! `csplade adapter export --to peft`: a csplade adapter in Hugging Face
//! `peft`'s layout, for transformers + peft (or any tool reading it).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use csplade::model::adapter::Adapter;

#[derive(Subcommand)]
pub enum AdapterCommand {
    /// Write an adapter in another layout
    Export(ExportArgs),
}

#[derive(Args)]
pub struct ExportArgs {
    /// peft (adapter_config.json + adapter_model.safetensors)
    #[arg(long, value_parser = ["peft"])]
    pub to: String,
    /// The adapter: a file written by `csplade train`, or `default` (the
    /// shipped one)
    #[arg(long, default_value = "default")]
    pub adapter: String,
    /// The base model it adapts (its layout decides how Q/K rows map)
    #[arg(long, default_value = "base")]
    pub model: String,
    /// The base model's name recorded in adapter_config.json
    #[arg(long, default_value = "HuggingFaceTB/SmolLM2-135M-Instruct")]
    pub base_name: String,
    /// Directory to write (replaced atomically; refused when it holds
    /// anything but a PEFT adapter)
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(cmd: AdapterCommand) -> Result<()> {
    let AdapterCommand::Export(a) = cmd;
    let adapter = if a.adapter == "default" {
        Adapter::from_bytes(csplade::model::DEFAULT_ADAPTER, Path::new("default"))?
    } else {
        Adapter::read(Path::new(&a.adapter))?
    };
    if a.model.contains('+') || a.model == "default" {
        bail!("--model names the base the adapter was trained on (e.g. base), without an adapter");
    }
    let base = csplade::model::load_unpacked(&a.model, &candle_core::Device::Cpu)
        .with_context(|| format!("loading the base model {:?}", a.model))?;
    csplade::model::peft::write(&adapter, &base.llama.config, &a.base_name, &a.out)?;
    eprintln!(
        "csplade: LoRA rank {} (alpha {}) on {} tensors → {} (encoding: csplade_encoding.json)",
        adapter.meta.rank,
        adapter.meta.alpha,
        adapter
            .tensors
            .keys()
            .filter(|k| !k.starts_with("head."))
            .count(),
        a.out.display()
    );
    Ok(())
}
