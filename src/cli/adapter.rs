//! `csplade adapter export --to peft`: a csplade adapter in Hugging Face
//! `peft`'s layout, for transformers + peft (or any tool reading it);
//! `csplade adapter set-prior`: record the query prior (and pseudo-relevance
//! feedback, and passage split) an adapter is searched with, keeping the
//! identity its indexes were built under.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use csplade::model::adapter::Adapter;

#[derive(Subcommand)]
pub enum AdapterCommand {
    /// Write an adapter in another layout
    Export(ExportArgs),
    /// Record the query-side prior and feedback an adapter is searched with,
    /// and the passage split its indexes are built with (search, index, eval
    /// and the explorer then use them unless told otherwise); documents
    /// encode as before, so indexes built with the adapter still serve it
    SetPrior(SetPriorArgs),
}

#[derive(Args)]
pub struct SetPriorArgs {
    /// A file written by `csplade train`
    #[arg(long)]
    pub adapter: PathBuf,
    /// The base model it adapts
    #[arg(long, default_value = "base")]
    pub model: String,
    /// none, idf or idf:POWER
    #[arg(long)]
    pub prior: csplade::search::QueryPrior,
    /// Pseudo-relevance feedback: none, rocchio or
    /// rocchio:DOCS:WEIGHT:TERMS[:IDF_POWER]
    /// [default: what the adapter records]
    #[arg(long)]
    pub feedback: Option<csplade::search::QueryFeedback>,
    /// The passage split its indexes are built with unless told otherwise
    /// (`index --passages`): WORDS:STRIDE:FROM, or none
    /// [default: what the adapter records]
    #[arg(long, value_name = "none|WORDS:STRIDE:FROM")]
    pub passages: Option<csplade::data::passages::PassagesSetting>,
    /// Also carry the inference-free query table of this adapter (one
    /// trained against another checkpoint's documents: measure it with
    /// `eval --inference-free` before relying on it)
    #[arg(long)]
    pub query_table_from: Option<PathBuf>,
    /// The new adapter file (an existing one only when csplade wrote it
    /// there as an adapter)
    #[arg(long)]
    pub out: PathBuf,
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
    let a = match cmd {
        AdapterCommand::Export(a) => a,
        AdapterCommand::SetPrior(a) => return set_prior(a),
    };
    // Never over (or holding) the adapter or the base model it reads, even
    // with --force.
    let inputs: Vec<&Path> = [a.adapter.as_str(), a.model.as_str()]
        .into_iter()
        .map(Path::new)
        .filter(|p| p.exists())
        .collect();
    let kind = csplade::data::output::PEFT_ADAPTER;
    csplade::data::output::check(&a.out, &kind, &inputs)?;
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

fn set_prior(a: SetPriorArgs) -> Result<()> {
    use csplade::data::output::{self, ADAPTER};
    let mut inputs: Vec<&Path> = vec![&a.adapter];
    inputs.extend(a.query_table_from.as_deref());
    output::check_file(&a.out, &ADAPTER, &inputs)?;
    let spec = format!("{}+{}", a.model, a.adapter.display());
    let model = csplade::model::load_unpacked(&spec, &candle_core::Device::Cpu)
        .with_context(|| format!("loading {spec:?}"))?;
    let mut adapter = Adapter::read(&a.adapter)?;
    adapter.meta.query_prior = a.prior;
    if let Some(f) = a.feedback {
        adapter.meta.query_feedback = f;
    }
    adapter.meta.passages =
        csplade::data::passages::PassagesSetting::or_recorded(a.passages, adapter.meta.passages);
    adapter.meta.documents_as = Some(model.identity.sha256.clone());
    if let Some(from) = &a.query_table_from {
        let vocab = model.llama.config.vocab_size;
        carry_query_table(&mut adapter, from, vocab)?;
    }
    let bytes = adapter.to_bytes(&a.out)?;
    output::write_file(&a.out, &ADAPTER, &inputs, "adapter set-prior", |w| {
        std::io::Write::write_all(w, &bytes)
    })?;
    eprintln!(
        "csplade: {} → {} (query prior {}, feedback {}, passages {}; documents encode as {}'s, identity {}{})",
        a.adapter.display(),
        a.out.display(),
        a.prior,
        adapter.meta.query_feedback,
        adapter
            .meta
            .passages
            .map_or("none".to_string(), |p| p.to_string()),
        spec,
        &model.identity.sha256[..12],
        match &a.query_table_from {
            Some(from) => format!("; query table from {}", from.display()),
            None => String::new(),
        }
    );
    Ok(())
}

/// Copy `from`'s inference-free query table into `adapter`, checked against
/// the model's vocabulary, and say so in the adapter's training summary.
fn carry_query_table(adapter: &mut Adapter, from: &Path, vocab: usize) -> Result<()> {
    use csplade::model::adapter::QUERY_TABLE;
    let mut source = Adapter::read(from)?;
    if source.query_table(vocab, from)?.is_none() {
        bail!(
            "{} has no inference-free query table ({QUERY_TABLE})",
            from.display()
        );
    }
    if let Some(table) = source.tensors.remove(QUERY_TABLE) {
        adapter.tensors.insert(QUERY_TABLE.to_string(), table);
    }
    let name = from
        .file_name()
        .unwrap_or(from.as_os_str())
        .to_string_lossy();
    adapter.meta.trained = format!("{}; query table from {name}", adapter.meta.trained);
    Ok(())
}
