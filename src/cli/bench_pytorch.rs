//! `csplade bench encode --compare-pytorch`: csplade at f32, q8_0 and q8_0
//! with the quantized LM head, then a PyTorch reference of the same encode
//! (transformers reading the same model file, f32 and torch's dynamic int8)
//! on the same token sequences, in one run, as ratios to csplade f32. The
//! reference is `tests/tools/pytorch_encode.py`, compiled in and run with the
//! Python named by `--python` (or `CSPLADE_PYTORCH_PYTHON`, else `python3`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use csplade::encode::encoder::input_layout;
use csplade::encode::{Encoder, SparseVec, Variant};
use csplade::quant::Precision;

use super::bench::EncodeBench;

const SCRIPT: &str = include_str!("../../tests/tools/pytorch_encode.py");
/// Terms per text compared between csplade and PyTorch.
const TOP: usize = 100;

/// A private directory for the request, the script and the result, removed
/// when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let p = std::env::temp_dir().join(format!("csplade-pytorch-{}", std::process::id()));
        std::fs::create_dir_all(&p)
            .with_context(|| format!("creating {} for the PyTorch reference", p.display()))?;
        Ok(Self(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The model file PyTorch reads for a csplade model spec.
fn backbone(spec: &str) -> Result<Value> {
    if spec == "base" {
        let path = csplade::model::fetch::base_model_path()?;
        return Ok(json!({"gguf": path}));
    }
    let path = Path::new(spec);
    if spec.contains('+') || spec == csplade::model::DEFAULT_SPEC {
        bail!(
            "--compare-pytorch runs the backbone alone in PyTorch: use --model base, a .gguf file or an HF model directory (not {spec:?}, which merges an adapter)"
        );
    }
    if path.is_dir() {
        return Ok(json!({"hf": path}));
    }
    if path.extension().is_some_and(|e| e == "gguf") && path.is_file() {
        return Ok(json!({"gguf": path}));
    }
    bail!("--compare-pytorch: {spec:?} is neither `base`, a .gguf file nor an HF model directory")
}

fn python(a: &EncodeBench) -> PathBuf {
    a.python
        .clone()
        .or_else(|| std::env::var_os("CSPLADE_PYTORCH_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// One csplade configuration: best seconds over `repeat` passes, and the
/// vectors of the last pass.
fn time_csplade(
    a: &EncodeBench,
    precision: Precision,
    quantize_head: bool,
    seqs: &[Vec<u32>],
) -> Result<(f64, Vec<SparseVec>)> {
    let mut args = a.model.clone();
    args.precision = precision;
    args.quantize_head = quantize_head;
    let model = args.load()?;
    let enc = Encoder::new(&model, args.encoder_config(&model));
    super::bench::time_encode(&enc, seqs, a.repeat)
}

/// Each text's top `TOP` term ids.
fn top_ids(vecs: &[SparseVec]) -> Vec<Vec<u64>> {
    vecs.iter()
        .map(|v| v.top_k(TOP).into_iter().map(|(id, _)| id as u64).collect())
        .collect()
}

/// The same from the reference's `[[id, weight], …]` lists.
fn reference_ids(top: &Value) -> Vec<Vec<u64>> {
    top.as_array()
        .map(|texts| {
            texts
                .iter()
                .map(|t| {
                    t.as_array()
                        .map(|terms| terms.iter().filter_map(|p| p.get(0)?.as_u64()).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Mean share of `a`'s top terms that `b`'s top terms also hold.
fn overlap(a: &[Vec<u64>], b: &[Vec<u64>]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return f64::NAN;
    }
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            let y: std::collections::HashSet<&u64> = y.iter().collect();
            x.iter().filter(|id| y.contains(id)).count() as f64 / x.len().max(1) as f64
        })
        .sum();
    sum / a.len() as f64
}

pub fn run(a: &EncodeBench, seqs: &[Vec<u32>], variant: Variant, head: String) -> Result<()> {
    if variant == Variant::Bi {
        bail!("--compare-pytorch: transformers' Llama has no bidirectional mode; use --variant causal or echo");
    }
    let model_file = backbone(a.model.spec())?;
    let py = python(a);
    super::python_reference::require(
        &py,
        "torch, transformers",
        "torch and transformers (and gguf for a .gguf model)",
    )?;
    let tokens: usize = seqs.iter().map(Vec::len).sum();
    let threads = candle_core::utils::get_num_threads();
    let mut rows = Vec::new();
    let mut ours = Vec::new();
    for (name, precision, qhead) in [
        ("csplade f32", Precision::F32, false),
        ("csplade q8_0", Precision::Q8_0, false),
        ("csplade q8_0 --quantize-head", Precision::Q8_0, true),
    ] {
        let (s, v) = time_csplade(a, precision, qhead, seqs)?;
        rows.push((name.to_string(), s));
        ours.push(v);
    }
    let (inputs, pool_from): (Vec<Vec<u32>>, Vec<usize>) =
        seqs.iter().map(|s| input_layout(variant, s)).unzip();
    let res = reference_run(a, &py, &model_file, &inputs, &pool_from, threads, &head)?;
    let mut tops: Vec<Vec<Vec<u64>>> = ours.iter().map(|v| top_ids(v)).collect();
    for mode in ["f32", "int8"] {
        let s = res["modes"][mode]["seconds"]
            .as_f64()
            .with_context(|| format!("the PyTorch result has no {mode} timing"))?;
        rows.push((format!("PyTorch {mode}"), s));
        tops.push(reference_ids(&res["modes"][mode]["top"]));
    }
    // Agreement with PyTorch f32 (the outside reference), system by system.
    let agree: Vec<f64> = tops.iter().map(|t| overlap(t, &tops[3])).collect();
    let base = rows[0].1;
    if a.json {
        let systems: Vec<Value> = rows
            .iter()
            .zip(&agree)
            .map(|((n, s), o)| json!({"system": n, "tokens_per_s": tokens as f64 / s, "vs_csplade_f32": base / s, "top100_shared_with_pytorch_f32": o}))
            .collect();
        println!(
            "{}",
            json!({"docs": seqs.len(), "tokens": tokens, "threads": threads, "variant": variant.to_string(),
                "head": head, "torch": res["torch"], "transformers": res["transformers"], "systems": systems})
        );
        return Ok(());
    }
    println!(
        "{} docs, {tokens} tokens, variant {variant}, head {head}, {threads} threads; torch {}, transformers {}",
        seqs.len(),
        res["torch"].as_str().unwrap_or("?"),
        res["transformers"].as_str().unwrap_or("?")
    );
    println!(
        "{:<30} {:>10} {:>14} {:>22}",
        "system",
        "tokens/s",
        "× csplade f32",
        format!("top-{TOP} ∩ PyTorch f32")
    );
    for ((n, s), o) in rows.iter().zip(&agree) {
        println!(
            "{n:<30} {:>10.0} {:>14.2} {o:>22.3}",
            tokens as f64 / s,
            base / s
        );
    }
    Ok(())
}

/// Run the PyTorch reference script over the same inputs (laid out as the
/// variant reads them) and read its result: timings and top terms per mode.
fn reference_run(
    a: &EncodeBench,
    py: &std::path::Path,
    model_file: &Value,
    inputs: &[Vec<u32>],
    pool_from: &[usize],
    threads: usize,
    head: &str,
) -> Result<Value> {
    let dir = TempDir::new()?;
    let script = dir.0.join("pytorch_encode.py");
    let request = dir.0.join("request.json");
    let result = dir.0.join("result.json");
    std::fs::write(&script, SCRIPT)?;
    let req = json!({"model": model_file, "inputs": inputs, "pool_from": pool_from,
        "batch": a.model.batch, "threads": threads, "repeat": a.repeat.max(1),
        "modes": ["f32", "int8"], "head": head, "top": TOP});
    std::fs::write(&request, serde_json::to_vec(&req)?)?;
    let status = super::python_reference::offline(py, &script, &request, &result)
        .status()
        .with_context(|| format!("running the PyTorch reference with {}", py.display()))?;
    if !status.success() {
        bail!("the PyTorch reference failed ({status}); its messages are above");
    }
    serde_json::from_slice(&std::fs::read(&result)?)
        .context("reading the PyTorch reference's result")
}
