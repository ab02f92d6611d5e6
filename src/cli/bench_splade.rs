//! `csplade bench splade`: a BERT-base-sized SPLADE encoder with random
//! weights (speed does not depend on them), written by sentence-transformers
//! in its own layout; then the same texts encoded by sentence-transformers'
//! `SparseEncoder` (PyTorch, CPU) and by csplade at f32 and q8_0, in one run,
//! as tokens/s and ratios. The reference is `tests/tools/pytorch_splade.py`,
//! compiled in.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use csplade::encode::{Encoder, EncoderConfig};
use csplade::model::family::{self, Family};
use csplade::quant::Precision;

const SCRIPT: &str = include_str!("../../tests/tools/pytorch_splade.py");

#[derive(Args)]
pub struct SpladeBench {
    /// Texts encoded
    #[arg(long, default_value_t = 64, value_parser = super::within(1, 100_000))]
    pub texts: usize,
    /// Words per text (each one WordPiece token: 2 more with [CLS], [SEP])
    #[arg(long, default_value_t = 126, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub words: u32,
    /// Texts per forward pass, on both sides
    #[arg(long, default_value_t = 16, value_parser = super::within(1, 4096))]
    pub batch: usize,
    /// Timed passes (the best counts), after one warm-up batch
    #[arg(long, default_value_t = 2, value_parser = super::within(1, 1000))]
    pub repeat: usize,
    /// Python with torch, transformers and sentence-transformers; default
    /// `$CSPLADE_PYTORCH_PYTHON`, else python3
    #[arg(long)]
    pub python: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(a: SpladeBench) -> Result<()> {
    let dir =
        Scratch(std::env::temp_dir().join(format!("csplade-bench-splade-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let model_dir = dir.0.join("splade-base");
    let threads = candle_core::utils::get_num_threads();
    let res = reference_run(&a, &dir.0, &model_dir, threads)?;
    let texts: Vec<String> = serde_json::from_value(res["texts"].clone())?;
    let st_tokens = res["tokens"].as_u64().context("no token count")? as usize;
    let st_seconds = res["seconds"].as_f64().context("no timing")?;
    let mut rows = vec![(
        format!(
            "sentence-transformers {} (torch {})",
            res["sentence_transformers"].as_str().unwrap_or("?"),
            res["torch"].as_str().unwrap_or("?")
        ),
        st_seconds,
    )];
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for p in [Precision::F32, Precision::Q8_0] {
        let s = time_csplade(&model_dir, p, &refs, a.batch, a.repeat, st_tokens)?;
        rows.push((format!("csplade {p}"), s));
    }
    report(&a, &rows, st_tokens, threads);
    Ok(())
}

/// Write the script and its request, run the sentence-transformers
/// reference (it also writes the random-weight model csplade reads) and
/// read its result.
fn reference_run(
    a: &SpladeBench,
    dir: &std::path::Path,
    model_dir: &std::path::Path,
    threads: usize,
) -> Result<Value> {
    let py = a
        .python
        .clone()
        .or_else(|| std::env::var_os("CSPLADE_PYTORCH_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let (script, request, result) = (
        dir.join("pytorch_splade.py"),
        dir.join("request.json"),
        dir.join("result.json"),
    );
    std::fs::write(&script, SCRIPT)?;
    let req = json!({"dir": model_dir, "texts": a.texts, "words": a.words, "batch": a.batch,
        "threads": threads, "repeat": a.repeat, "seed": 7});
    std::fs::write(&request, serde_json::to_vec(&req)?)?;
    let out = super::python_reference::offline(&py, &script, &request, &result)
        .output()
        .with_context(|| {
            format!(
                "running the sentence-transformers reference with {}",
                py.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "the sentence-transformers reference failed ({}); it needs torch, transformers and sentence-transformers importable by {}: {}",
            out.status,
            py.display(),
            String::from_utf8_lossy(&out.stderr).trim().lines().last().unwrap_or("")
        );
    }
    serde_json::from_slice(&std::fs::read(&result)?)
        .context("reading the sentence-transformers result")
}

/// Seconds csplade takes to encode `texts` at precision `p` (the same
/// tokens as the reference, checked).
fn time_csplade(
    model_dir: &std::path::Path,
    p: Precision,
    texts: &[&str],
    batch: usize,
    repeat: usize,
    st_tokens: usize,
) -> Result<f64> {
    let m = family::open(
        model_dir.to_str().unwrap_or(""),
        &candle_core::Device::Cpu,
        p,
        false,
        Family::Auto,
    )?;
    let (variant, head) = m.trained_encoding();
    let enc = Encoder::new(
        &m,
        EncoderConfig {
            variant,
            head,
            max_len: 512,
            batch_size: batch,
            windows: 1,
        },
    );
    let prepared: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| enc.tokenize(t).map(|x| x.0))
        .collect::<Result<_, _>>()?;
    let ours: usize = prepared.iter().map(|s| s.len() + 2).sum();
    if ours != st_tokens {
        bail!("csplade reads {ours} tokens, sentence-transformers {st_tokens}: not the same texts");
    }
    Ok(super::bench::time_encode(&enc, &prepared, repeat)?.0)
}

/// Each system's seconds, tokens/s and speed against sentence-transformers.
fn report(a: &SpladeBench, rows: &[(String, f64)], st_tokens: usize, threads: usize) {
    let base = rows[0].1;
    if a.json {
        let systems: Vec<Value> = rows
            .iter()
            .map(|(n, s)| json!({"system": n, "seconds": s, "tokens_per_s": st_tokens as f64 / s, "vs_sentence_transformers": base / s}))
            .collect();
        println!(
            "{}",
            json!({"texts": a.texts, "tokens": st_tokens, "batch": a.batch, "threads": threads, "systems": systems})
        );
        return;
    }
    println!(
        "BERT-base SPLADE (random weights), {} texts, {st_tokens} tokens, batch {}, {threads} threads",
        a.texts, a.batch
    );
    println!(
        "{:<48} {:>10} {:>10} {:>10}",
        "system", "seconds", "tokens/s", "× s-t"
    );
    for (n, s) in rows {
        println!(
            "{n:<48} {s:>10.2} {:>10.0} {:>10.2}",
            st_tokens as f64 / s,
            base / s
        );
    }
}
