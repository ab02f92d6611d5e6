//! `csplade train adapt|contrastive`: run a training phase from a TOML
//! recipe with per-field overrides; checkpoints, resume, progress.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use csplade::model::DeviceKind;
use csplade::train::{batches, Engine, Phase, StepReport, TrainConfig, Trainer};

#[derive(Subcommand)]
pub enum TrainCommand {
    /// Phase 1: causal-LM + ReLU-CLM loss on packed corpus text (paper §3.2)
    Adapt(TrainArgs),
    /// Phase 2: InfoNCE with BM25 hard negatives + FLOPS regularization
    Contrastive(TrainArgs),
    /// The inference-free query side: a weight per vocabulary entry, trained
    /// against the model's document vectors (encoded once, cached), written
    /// with the model's adapter
    QueryTable(QueryTableArgs),
}

#[derive(Args)]
pub struct QueryTableArgs {
    /// The model whose documents the table is trained against (`default`,
    /// `base`, or `MODEL+ADAPTER.safetensors`); its adapter is copied into
    /// the output with the table
    #[arg(long, default_value = "default")]
    pub model: String,
    /// TOML recipe for the training pairs (pairs, pair_weights, seed, batch,
    /// hard_negatives, negative_depth, query_max_len, doc_max_len)
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub overrides: Vec<String>,
    /// Micro-batches of `batch` queries drawn; the last tenth is held out
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
    pub batches: u32,
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub epochs: u32,
    /// AdamW learning rate of the table (its weights start at the idf,
    /// 0–12)
    #[arg(long, default_value_t = 0.02, value_parser = super::positive_real)]
    pub lr: f32,
    /// Weight of FLOPS on the queries' weights
    #[arg(long, default_value_t = 0.001)]
    pub lambda: f32,
    /// Run directory: drawn batches, encoded documents, adapter.safetensors
    #[arg(long)]
    pub out: PathBuf,
    /// Print progress as JSON lines on stdout (for the explorer)
    #[arg(long)]
    pub progress_json: bool,
}

#[derive(Args)]
pub struct TrainArgs {
    /// TOML recipe (every field optional; see README "Training")
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one recipe field, e.g. `--set steps=400 --set variant=echo`
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub overrides: Vec<String>,
    /// Shorthand for `--set steps=N`
    #[arg(long, value_parser = super::within(1, 100_000_000))]
    pub steps: Option<usize>,
    /// Stop after N optimizer steps of this call (the schedule still spans
    /// `steps`): checkpoint and write the adapter there; `--resume` goes on
    #[arg(long, value_name = "N", value_parser = super::within(1, 100_000_000))]
    pub stop_after: Option<usize>,
    /// Run directory: checkpoints, BM25 negatives, the final adapter.safetensors
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from the checkpoint in --out (same recipe required); an
    /// error when there is none
    #[arg(long, conflicts_with = "resume_or_start")]
    pub resume: bool,
    /// Continue from the checkpoint in --out if there is one, else start
    #[arg(long)]
    pub resume_or_start: bool,
    /// Print progress as JSON lines on stdout (for the explorer)
    #[arg(long)]
    pub progress_json: bool,
    /// cpu, or cuda (GPU 0; needs a build with the `cuda` feature)
    #[arg(long, default_value = "cpu")]
    pub device: DeviceKind,
    /// How gradients are computed: `cpu` (the CPU's own head gradients and
    /// fused kernels) or `generic` (plain candle ops and autograd, the code a
    /// GPU runs); default: cpu on the CPU, generic on a GPU
    #[arg(long)]
    pub engine: Option<Engine>,
    /// On a GPU, multiply f32 matrices at full f32 precision instead of on
    /// the TF32 tensor cores (slower)
    #[arg(long)]
    pub no_tf32: bool,
    /// Draw, mine and tokenize the contrastive batches into --out
    /// (batches.bin.gz) and stop: the run can then be trained on a machine
    /// without the collections
    #[arg(long)]
    pub prepare_only: bool,
    /// Write --out/adapter.safetensors from the run's latest checkpoint and
    /// stop (a checkpoint brought back from another machine, say)
    #[arg(long)]
    pub export_only: bool,
}

/// The model on its device and the engine that trains it there.
pub(super) fn trainer_parts(
    cfg: &TrainConfig,
    device: DeviceKind,
    engine: Option<Engine>,
    no_tf32: bool,
) -> Result<(csplade::model::LoadedModel, Engine)> {
    let dev = device.open()?;
    if dev.is_cuda() && !no_tf32 {
        candle_core::cuda::set_gemm_reduced_precision_f32(true);
    }
    let model = csplade::model::load_unpacked(&cfg.model, &dev)
        .with_context(|| format!("loading model {:?} on {device}", cfg.model))?;
    Ok((model, engine.unwrap_or_else(|| Engine::for_device(&dev))))
}

pub fn run(cmd: TrainCommand) -> Result<()> {
    let (phase, a) = match cmd {
        TrainCommand::Adapt(a) => (Phase::Adapt, a),
        TrainCommand::Contrastive(a) => (Phase::Contrastive, a),
        TrainCommand::QueryTable(a) => return query_table(a),
    };
    let mut overrides = a.overrides.clone();
    if let Some(n) = a.steps {
        overrides.push(format!("steps={n}"));
    }
    let cfg = TrainConfig::load(a.config.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
    cfg.check_output(&a.out)?;
    if a.prepare_only {
        return prepare_only(phase, &cfg, &a);
    }
    if (a.resume || a.export_only) && csplade::train::checkpoint::latest(&a.out).is_none() {
        anyhow::bail!(
            "{}: no checkpoint there to {}; start the run without --resume (or use --resume-or-start)",
            a.out.display(),
            if a.export_only { "export" } else { "resume" }
        );
    }
    let (model, engine) = trainer_parts(&cfg, a.device, a.engine, a.no_tf32)?;
    let mut trainer = Trainer::with_engine(cfg.clone(), phase, &a.out, model, engine)?;
    if a.export_only {
        let step = trainer.export_latest()?;
        eprintln!(
            "csplade: step {step} → {}",
            a.out.join("adapter.safetensors").display()
        );
        return Ok(());
    }
    announce(&trainer, phase, &cfg, &a, engine);
    let log_path = a.out.join("progress.jsonl");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| log_path.display().to_string())?;
    let bar = (!a.progress_json).then(|| {
        let b = ProgressBar::new(cfg.steps as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let json = a.progress_json;
    let reached = trainer.run(a.resume || a.resume_or_start, a.stop_after, |r: &StepReport| {
        let line = serde_json::to_string(r).unwrap_or_default();
        use std::io::Write;
        let _ = writeln!(log, "{line}");
        if json {
            println!("{line}");
            println!("{}", serde_json::json!({"event": "progress", "done": r.step, "total": r.steps, "tokens_per_s": r.tokens_per_s, "eta_s": r.eta_s}));
        } else if let Some(b) = &bar {
            b.set_position(r.step as u64);
            b.set_message(format!("loss {:.3}  active q {:.0} d {:.0}  {:.0} tok/s", r.loss, r.active_q, r.active_d, r.tokens_per_s));
        }
    })?;
    if let Some(b) = bar {
        b.finish();
    }
    finished(json, reached, &cfg.model, &a.out);
    Ok(())
}

/// `--prepare-only`: draw the contrastive phase's batches, train nothing.
fn prepare_only(phase: Phase, cfg: &TrainConfig, a: &TrainArgs) -> Result<()> {
    if phase != Phase::Contrastive {
        anyhow::bail!("--prepare-only draws contrastive batches; the adaptation phase reads its corpora directly");
    }
    let _lock = cfg.claim_output(&a.out, "train --prepare-only")?;
    let tok = csplade::model::load_tokenizer(&cfg.model)
        .with_context(|| format!("loading the tokenizer of {:?}", cfg.model))?;
    let count = cfg.steps * cfg.grad_accum;
    batches::load_or_draw(cfg, &tok, &a.out, count)?;
    eprintln!(
        "csplade: {count} micro-batches of {} queries → {}",
        cfg.batch,
        a.out.join(batches::FILE).display()
    );
    Ok(())
}

/// What is about to train, as a phase line for the explorer or a line on
/// the terminal.
fn announce(trainer: &Trainer, phase: Phase, cfg: &TrainConfig, a: &TrainArgs, engine: Engine) {
    // What the frozen base's products actually run at on this CPU.
    let products = match (engine, cfg.frozen_precision.as_str()) {
        _ if cfg.bf16_products(engine) => ", bf16 products",
        (Engine::Cpu, "bf16") => ", f32 products: bf16 needs AVX-512",
        (Engine::Cpu, "auto") => ", f32 products: no AVX-512 BF16",
        _ => "",
    };
    let trainable: usize = trainer
        .params
        .iter()
        .map(|(_, p)| p.as_tensor().elem_count())
        .sum();
    if a.progress_json {
        println!(
            "{}",
            serde_json::json!({"event": "phase", "name": format!("{} training ({trainable} trainable parameters{products})", phase.name())})
        );
    } else {
        eprintln!("csplade: {} phase, {} variant, head {}, {} {} ({trainable} trainable parameters), {} steps on {} ({:?} engine{products}) → {}", phase.name(), cfg.variant, cfg.head, cfg.adapter, if cfg.adapter == "lora" { format!("rank {}", cfg.lora_rank) } else { String::new() }, cfg.steps, a.device, engine, a.out.display());
    }
}

/// Where the adapter went, as the explorer's done event or a line.
fn finished(json: bool, reached: usize, model: &str, out: &std::path::Path) {
    let adapter = out.join("adapter.safetensors");
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "done", "step": reached, "adapter": adapter})
        );
    } else {
        eprintln!(
            "csplade: {reached} steps; adapter → {} (use --model {}+{})",
            adapter.display(),
            model,
            adapter.display()
        );
    }
}

/// One step of `train query-table`, as JSON lines or as a line on stderr.
fn report_table_progress(p: &csplade::train::query_table::TableProgress, json: bool) {
    use csplade::train::query_table::TableProgress;
    if json {
        if let TableProgress::Encoding { done, total } = p {
            println!(
                "{}",
                serde_json::json!({"event": "progress", "done": done, "total": total, "unit": "micro-batches"})
            );
        }
        println!("{}", serde_json::to_string(p).unwrap_or_default());
        return;
    }
    match p {
        TableProgress::Encoding { done, total } if done % 10 == 0 || done == total => {
            eprintln!("csplade: encoded the documents of {done} of {total} micro-batches")
        }
        TableProgress::Epoch { epoch, epochs, loss, held_out_infonce, active_q, .. } => eprintln!(
            "csplade: epoch {epoch}/{epochs}: loss {loss:.4}, held-out InfoNCE {held_out_infonce:.4}, median {active_q} weighted tokens per query"
        ),
        _ => {}
    }
}

/// An adapter with no weights of its own, recording the model's encoding:
/// what a query table is stored in when the model has no adapter.
fn empty_adapter(
    model: &csplade::model::LoadedModel,
    max_len: usize,
) -> csplade::model::adapter::Adapter {
    let (variant, head) = model.trained_encoding();
    csplade::model::adapter::Adapter {
        meta: csplade::model::adapter::AdapterMeta {
            base_id: model.identity.id.clone(),
            base_sha256: model.identity.sha256.clone(),
            kind: "lora".into(),
            rank: 1,
            alpha: 1.0,
            variant,
            head,
            max_len,
            trained: String::new(),
            query_prior: Default::default(),
            query_feedback: Default::default(),
            passages: None,
            documents_as: None,
        },
        tensors: Default::default(),
    }
}

/// `train query-table`: draw, encode the documents once (resumable), train
/// the table, write the model's adapter with it.
fn query_table(a: QueryTableArgs) -> Result<()> {
    use csplade::train::query_table::{self, TableOptions};
    let mut overrides = a.overrides.clone();
    overrides.push(format!("model={:?}", a.model));
    let cfg = TrainConfig::load(a.config.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
    if !a.lambda.is_finite() || a.lambda < 0.0 {
        anyhow::bail!("--lambda {}: must be a finite number ≥ 0", a.lambda);
    }
    let _lock = cfg.claim_output(&a.out, "train query-table")?;
    let source = csplade::model::adapter_of(&a.model)
        .with_context(|| format!("reading the adapter of {:?}", a.model))?;
    let model = csplade::model::load(&a.model, &candle_core::Device::Cpu)
        .with_context(|| format!("loading model {:?}", a.model))?;
    std::fs::create_dir_all(&a.out).with_context(|| a.out.display().to_string())?;
    let opts = TableOptions {
        micro_batches: a.batches as usize,
        epochs: a.epochs as usize,
        lr: a.lr as f64,
        lambda: a.lambda,
    };
    let json = a.progress_json;
    let table = query_table::train(&model, &cfg, &a.out, &opts, |p| {
        report_table_progress(p, json)
    })?;
    let mut adapter = source.unwrap_or_else(|| empty_adapter(&model, cfg.doc_max_len));
    // The documents are encoded as the source model encodes them.
    adapter.meta.documents_as = Some(model.identity.sha256.clone());
    let vocab = table.len();
    adapter.tensors.insert(
        csplade::model::adapter::QUERY_TABLE.into(),
        candle_core::Tensor::from_vec(table, vocab, &candle_core::Device::Cpu)?,
    );
    adapter.meta.trained = format!(
        "{}{}inference-free query table: {} micro-batches of {} queries, {} epochs",
        adapter.meta.trained,
        if adapter.meta.trained.is_empty() {
            ""
        } else {
            "; "
        },
        a.batches,
        cfg.batch,
        a.epochs
    );
    let path = query_table::adapter_path(&a.out);
    adapter.write(&path)?;
    eprintln!(
        "csplade: adapter with its query table → {} (query with --model BASE+{} --inference-free)",
        path.display(),
        path.display()
    );
    Ok(())
}
