//! `csplade bench`: throughput measurements (never timed tests).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use csplade::data::{beir, shared_data_dir};
use csplade::encode::Encoder;

use super::ModelArgs;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Encoding throughput over a fixed SciFact sample (tokens/s)
    Encode(EncodeBench),
    /// GEMM throughput (GFLOP/s) of the inference kernel vs candle's matmul
    Gemm(GemmBench),
}

#[derive(Args)]
pub struct GemmBench {
    /// Rows (tokens in a batch)
    #[arg(long, default_value_t = 2048)]
    pub m: usize,
    /// Output columns
    #[arg(long, default_value_t = 1536)]
    pub n: usize,
    /// Inner dimension
    #[arg(long, default_value_t = 576)]
    pub k: usize,
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
}

#[derive(Args)]
pub struct EncodeBench {
    #[command(flatten)]
    pub model: ModelArgs,
    /// BEIR collection to sample (default: $CSPLADE_DATA/scifact)
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Documents encoded (the first N of the corpus)
    #[arg(long, default_value_t = 64)]
    pub docs: usize,
    /// Timed repetitions; the best is reported
    #[arg(long, default_value_t = 2)]
    pub repeat: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Encode(a) => encode(a),
        BenchCommand::Gemm(a) => gemm(a),
    }
}

fn best_of(repeat: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..repeat.max(1) {
        let t0 = Instant::now();
        f()?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn gemm(a: GemmBench) -> Result<()> {
    use candle_core::{Device, Tensor};
    use csplade::model::linear::{matmul_packed, pack};
    let x = Tensor::randn(0f32, 1.0, (a.m, a.k), &Device::Cpu)?;
    let w = Tensor::randn(0f32, 1.0, (a.n, a.k), &Device::Cpu)?;
    let flop = 2.0 * (a.m * a.n * a.k) as f64;
    let candle = best_of(a.repeat, || {
        x.matmul(&w.t()?)?;
        Ok(())
    })?;
    println!(
        "{}x{}x{}: candle matmul {:.1} GFLOP/s",
        a.m,
        a.n,
        a.k,
        flop / candle / 1e9
    );
    match pack(&w)? {
        Some(p) => {
            let ours = best_of(a.repeat, || {
                matmul_packed(&x, &p)?;
                Ok(())
            })?;
            println!(
                "{}x{}x{}: packed AVX-512 {:.1} GFLOP/s ({:.2}x candle)",
                a.m,
                a.n,
                a.k,
                flop / ours / 1e9,
                candle / ours
            );
        }
        None => println!("packed kernel unavailable on this CPU (no AVX-512)"),
    }
    Ok(())
}

fn encode(a: EncodeBench) -> Result<()> {
    let dir = a
        .dataset
        .clone()
        .unwrap_or_else(|| shared_data_dir().join("scifact"));
    let docs = beir::read_corpus(&dir)
        .with_context(|| format!("reading the benchmark sample from {}", dir.display()))?;
    if a.docs == 0 {
        bail!("--docs must be at least 1");
    }
    let model = a.model.load()?;
    let enc = Encoder::new(&model, a.model.encoder_config());
    let seqs: Vec<Vec<u32>> = docs
        .iter()
        .take(a.docs)
        .map(|d| enc.tokenize(&d.full_text()).map(|t| t.0))
        .collect::<Result<_, _>>()?;
    let tokens: usize = seqs.iter().map(Vec::len).sum();
    // Warm-up: one batch.
    enc.encode_ids(&seqs[..enc.config.batch_size.min(seqs.len())])?;
    let mut best = f64::INFINITY;
    for _ in 0..a.repeat.max(1) {
        let t0 = Instant::now();
        enc.encode_ids(&seqs)?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    let tps = tokens as f64 / best;
    let threads = candle_core::utils::get_num_threads();
    if a.json {
        println!(
            "{}",
            json!({"precision": a.model.precision, "tokens_per_s": tps, "threads": threads, "variant": a.model.variant.to_string(), "docs": seqs.len(), "tokens": tokens})
        );
    } else {
        println!(
            "encode: {} docs, {tokens} tokens (≤ {} each), batch {}, variant {}, precision {}: {tps:.0} tokens/s ({:.1} docs/s) on {threads} threads",
            seqs.len(),
            enc.max_tokens(),
            enc.config.batch_size,
            a.model.variant,
            a.model.precision,
            seqs.len() as f64 / best
        );
    }
    Ok(())
}
