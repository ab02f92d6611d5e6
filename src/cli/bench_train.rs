//! `csplade bench train`: tokens/s of a few contrastive (or adaptation)
//! steps on the chosen engine; with `--compare-pytorch`, the fused CPU
//! engine, the generic engine and a PyTorch reference of the same step
//! (transformers + peft, `tests/tools/pytorch_train.py`, compiled in) on the
//! same micro-batches in one run, with each one's peak memory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use csplade::encode::encoder::input_layout;
use csplade::model::DeviceKind;
use csplade::train::{batches, Engine, Phase, TrainConfig, Trainer};

const SCRIPT: &str = include_str!("../../tests/tools/pytorch_train.py");

#[derive(Args)]
pub struct TrainBench {
    /// adapt or contrastive
    #[arg(long, default_value = "contrastive")]
    pub phase: String,
    /// Steps timed after one warm-up step
    #[arg(long, default_value_t = 3, value_parser = super::within(1, 100_000))]
    pub steps: usize,
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub overrides: Vec<String>,
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceKind,
    #[arg(long)]
    pub engine: Option<Engine>,
    #[arg(long)]
    pub no_tf32: bool,
    /// Time the fused and generic CPU engines and a PyTorch reference of the
    /// same contrastive step (transformers + peft on the same model file and
    /// micro-batches) in one run
    #[arg(long)]
    pub compare_pytorch: bool,
    /// Python with torch, transformers, peft (and gguf, accelerate for a
    /// .gguf model); default `$CSPLADE_PYTORCH_PYTHON`, else python3
    #[arg(long)]
    pub python: Option<PathBuf>,
}

/// One timed system: name, tokens, seconds, peak resident memory (bytes).
struct Timed {
    name: String,
    /// The csplade engine timed, `None` for the PyTorch reference.
    engine: Option<Engine>,
    tokens: u64,
    seconds: f64,
    peak: Option<u64>,
}

/// Reset the process's peak resident memory (Linux `clear_refs`), so the
/// next reading is this system's own.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory since the last reset (`VmHWM`).
fn peak_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `steps + 1` steps of `engine` in `run` (micro-batches copied from
/// `batches_from` when given); the warm-up step is not counted.
fn time_engine(
    a: &TrainBench,
    cfg: &TrainConfig,
    phase: Phase,
    engine: Option<Engine>,
    run: &Path,
    batches_from: Option<&Path>,
) -> Result<Timed> {
    if let Some(from) = batches_from {
        // A training run directory from the start, so the trainer takes it.
        csplade::data::output::claim_dir(run, &csplade::data::output::TRAINING_RUN, &[])?;
        std::fs::copy(from.join(batches::FILE), run.join(batches::FILE))?;
    }
    reset_peak();
    let (model, engine) = super::train::trainer_parts(cfg, a.device, engine, a.no_tf32)?;
    let mut trainer = Trainer::with_engine(cfg.clone(), phase, run, model, engine)?;
    let mut steps: Vec<(u64, f64)> = Vec::new();
    trainer.run(false, None, |r| steps.push((r.step_tokens, r.step_seconds)))?;
    let timed = &steps[1.min(steps.len())..];
    Ok(Timed {
        engine: Some(engine),
        name: format!(
            "csplade {} engine{}",
            engine_name(engine),
            if cfg.bf16_products(engine) {
                ", bf16 products"
            } else {
                ""
            }
        ),
        tokens: timed.iter().map(|s| s.0).sum(),
        seconds: timed.iter().map(|s| s.1).sum(),
        peak: peak_memory(),
    })
}

fn engine_name(e: Engine) -> &'static str {
    match e {
        Engine::Cpu => "fused CPU",
        Engine::Generic => "generic",
    }
}

pub fn run(a: TrainBench) -> Result<()> {
    let phase = match a.phase.as_str() {
        "adapt" => Phase::Adapt,
        "contrastive" => Phase::Contrastive,
        other => bail!("--phase {other:?}: adapt or contrastive"),
    };
    let mut overrides = a.overrides.clone();
    overrides.push(format!("steps={}", a.steps + 1));
    overrides.push("checkpoint_every=1000000".into());
    let cfg = TrainConfig::load(a.config.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
    let scratch =
        Scratch(std::env::temp_dir().join(format!("csplade-bench-train-{}", std::process::id())));
    let mut rows = Vec::new();
    if !a.compare_pytorch {
        rows.push(time_engine(&a, &cfg, phase, a.engine, &scratch.0, None)?);
        return report(&a, &cfg, rows, Value::Null);
    }
    if phase != Phase::Contrastive || a.device != DeviceKind::Cpu {
        bail!("--compare-pytorch times the contrastive step on the CPU");
    }
    if cfg.init_adapter.is_some() {
        bail!("--compare-pytorch starts both sides from fresh LoRA adapters: leave init_adapter unset");
    }
    let python = python(&a)?;
    // Draw the micro-batches once; every system trains on the same ones.
    let tok = csplade::model::load_tokenizer(&cfg.model)?;
    std::fs::create_dir_all(&scratch.0)?;
    let micro = batches::load_or_draw(&cfg, &tok, &scratch.0, cfg.steps * cfg.grad_accum)?;
    // PyTorch first, while this process holds little: the two must never
    // need the machine's memory at once.
    let (torch, versions) = pytorch(&cfg, &micro, &python, &scratch.0)?;
    // The fused engine at f32, and with bf16 products where the CPU runs them.
    let mut systems = vec![(Engine::Cpu, "f32")];
    if csplade::model::gemm::bf16_available() {
        systems.push((Engine::Cpu, "bf16"));
    }
    systems.push((Engine::Generic, "f32"));
    for (engine, precision) in systems {
        let cfg = TrainConfig {
            frozen_precision: precision.into(),
            ..cfg.clone()
        };
        let run = scratch.0.join(format!(
            "{}-{precision}",
            engine_name(engine).replace(' ', "-")
        ));
        rows.push(time_engine(
            &a,
            &cfg,
            phase,
            Some(engine),
            &run,
            Some(&scratch.0),
        )?);
        csplade::release_free_memory();
    }
    rows.push(torch);
    report(&a, &cfg, rows, versions)
}

fn python(a: &TrainBench) -> Result<PathBuf> {
    let py = a
        .python
        .clone()
        .or_else(|| std::env::var_os("CSPLADE_PYTORCH_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"));
    super::python_reference::require(
        &py,
        "torch, transformers, peft",
        "torch, transformers and peft (and gguf, accelerate for a .gguf model)",
    )?;
    Ok(py)
}

/// The PyTorch reference of the same step on the same micro-batches.
fn pytorch(
    cfg: &TrainConfig,
    micro: &[csplade::train::data::MicroBatch],
    py: &Path,
    dir: &Path,
) -> Result<(Timed, Value)> {
    let req = pytorch_request(cfg, micro)?;
    let (res, peak) = run_reference(py, dir, &req)?;
    let steps = res["steps"]
        .as_array()
        .context("no steps in the PyTorch result")?;
    let timed = &steps[1.min(steps.len())..];
    // Tokens as csplade counts them: every text laid out for the variant.
    let count = |mb: &csplade::train::data::MicroBatch| -> u64 {
        mb.queries
            .iter()
            .chain(&mb.positives)
            .chain(mb.negatives.iter().flatten())
            .map(|t| input_layout(cfg.variant, t).0.len() as u64)
            .sum()
    };
    let tokens: u64 = micro.iter().skip(1).map(count).sum();
    let reported: u64 = timed.iter().filter_map(|s| s["tokens"].as_u64()).sum();
    if reported != tokens {
        bail!(
            "the PyTorch reference counted {reported} tokens, csplade {tokens}: not the same step"
        );
    }
    let seconds: f64 = timed.iter().filter_map(|s| s["seconds"].as_f64()).sum();
    let versions =
        json!({"torch": res["torch"], "transformers": res["transformers"], "peft": res["peft"]});
    Ok((
        Timed {
            name: "PyTorch + peft".into(),
            engine: None,
            tokens,
            seconds,
            peak,
        },
        versions,
    ))
}

/// What the reference script is asked to run: the model, the micro-batches
/// and the recipe's training settings.
fn pytorch_request(cfg: &TrainConfig, micro: &[csplade::train::data::MicroBatch]) -> Result<Value> {
    let model = match cfg.model.as_str() {
        "base" => json!({"gguf": csplade::model::fetch::base_model_path()?}),
        m if Path::new(m).is_dir() => json!({"hf": m}),
        m if m.ends_with(".gguf") => json!({"gguf": m}),
        m => bail!(
            "--compare-pytorch: model {m:?} is neither `base`, a .gguf file nor an HF directory"
        ),
    };
    let batches: Vec<Value> = micro
        .iter()
        .map(|mb| {
            let mut docs = mb.positives.clone();
            docs.extend(mb.negatives.iter().flatten().cloned());
            json!({"queries": mb.queries, "docs": docs})
        })
        .collect();
    Ok(
        json!({"model": model, "micro_batches": batches, "variant": cfg.variant.to_string(),
        "head": cfg.head, "rank": cfg.lora_rank, "alpha": cfg.lora_alpha, "targets": cfg.targets,
        "lr": cfg.lr, "lambda_q": cfg.lambda_q, "lambda_d": cfg.lambda_d,
        "learn_term_shift": cfg.learn_term_shift, "threads": candle_core::utils::get_num_threads()}),
    )
}

/// Run the reference script on `req` under GNU time (for its peak memory,
/// when GNU time is installed): its result and the peak in bytes.
fn run_reference(py: &Path, dir: &Path, req: &Value) -> Result<(Value, Option<u64>)> {
    let (script, request, result) = (
        dir.join("pytorch_train.py"),
        dir.join("request.json"),
        dir.join("result.json"),
    );
    std::fs::write(&script, SCRIPT)?;
    std::fs::write(&request, serde_json::to_vec(req)?)?;
    let out = super::python_reference::hub_off(&mut Command::new("/usr/bin/time"))
        .arg("-f")
        .arg("csplade-peak-kb %M")
        .arg(py)
        .arg(&script)
        .arg(&request)
        .arg(&result)
        .output();
    // Without GNU time, run it directly (no peak memory then).
    let (status, stderr) = match out {
        Ok(o) => (o.status, String::from_utf8_lossy(&o.stderr).to_string()),
        Err(_) => {
            let o = super::python_reference::offline(py, &script, &request, &result)
                .output()
                .with_context(|| format!("running the PyTorch reference with {}", py.display()))?;
            (o.status, String::from_utf8_lossy(&o.stderr).to_string())
        }
    };
    if !status.success() {
        bail!("the PyTorch reference failed ({status}): {}", stderr.trim());
    }
    let peak = stderr
        .lines()
        .find_map(|l| l.strip_prefix("csplade-peak-kb "))
        .and_then(|k| k.trim().parse::<u64>().ok())
        .map(|k| k * 1024);
    let res: Value = serde_json::from_slice(&std::fs::read(&result)?)
        .context("reading the PyTorch reference's result")?;
    Ok((res, peak))
}

fn report(a: &TrainBench, cfg: &TrainConfig, rows: Vec<Timed>, versions: Value) -> Result<()> {
    let threads = rayon::current_num_threads();
    let rate = |t: &Timed| t.tokens as f64 / t.seconds.max(1e-9);
    let base = rows.first().map(rate).unwrap_or(1.0);
    // The generic engine's rate in this run, which the fused engine's
    // speed-up is stated against.
    let generic = rows
        .iter()
        .find(|t| t.engine == Some(Engine::Generic))
        .map(rate);
    if a.json {
        let systems: Vec<Value> = rows
            .iter()
            .map(|t| {
                json!({"system": t.name, "tokens": t.tokens, "seconds": t.seconds,
                "tokens_per_s": rate(t), "vs_first": rate(t) / base,
                "vs_generic": generic.map(|g| rate(t) / g), "peak_bytes": t.peak})
            })
            .collect();
        println!(
            "{}",
            json!({"phase": a.phase, "steps": a.steps, "threads": threads, "variant": cfg.variant.to_string(),
                "batch": cfg.batch, "hard_negatives": cfg.hard_negatives, "device": a.device.to_string(),
                "systems": systems, "versions": versions})
        );
        return Ok(());
    }
    println!(
        "train {}: {} timed steps after one warm-up, batch {} ({} hard negatives), variant {}, {threads} threads",
        a.phase, a.steps, cfg.batch, cfg.hard_negatives, cfg.variant
    );
    let width = rows.iter().map(|t| t.name.len()).max().unwrap_or(0).max(26);
    println!(
        "{:<width$} {:>9} {:>9} {:>10} {:>9} {:>9} {:>11}",
        "system", "tokens", "seconds", "tokens/s", "× first", "× generic", "peak memory"
    );
    for t in &rows {
        let peak = t
            .peak
            .map_or("-".to_string(), |b| format!("{:.1} GB", b as f64 / 1e9));
        let vs_generic = generic.map_or("-".to_string(), |g| format!("{:.2}", rate(t) / g));
        println!(
            "{:<width$} {:>9} {:>9.1} {:>10.1} {:>9.2} {:>9} {:>11}",
            t.name,
            t.tokens,
            t.seconds,
            rate(t),
            rate(t) / base,
            vs_generic,
            peak
        );
    }
    Ok(())
}
