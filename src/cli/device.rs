//! `csplade check-device`: run the device-generic code on a device (a GPU)
//! and on the CPU over a tiny random model written to a temporary directory,
//! and compare the expansions of a few texts and one training micro-batch's
//! loss and gradients. Tells in seconds whether a CUDA build works on its GPU.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use clap::Args;
use serde_json::json;

use csplade::encode::{Encoder, EncoderConfig, Head, Variant};
use csplade::model::{self, adapter, DeviceKind};
use csplade::train::{batches, Engine, Phase, TrainConfig, Trainer};

#[derive(Args)]
pub struct CheckArgs {
    /// The device checked against the CPU
    #[arg(long, default_value = "cuda")]
    pub device: DeviceKind,
    #[arg(long)]
    pub json: bool,
}

/// A BEIR collection where each query shares a rare word with its document.
fn toy_collection(dir: &Path) -> Result<()> {
    let words = [
        "zebra", "quartz", "violin", "glacier", "pepper", "orbit", "walnut", "falcon",
    ];
    std::fs::create_dir_all(dir.join("qrels"))?;
    let (mut corpus, mut queries) = (String::new(), String::new());
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for (i, w) in words.iter().enumerate() {
        corpus.push_str(&format!(
            "{{\"_id\":\"d{i}\",\"title\":\"\",\"text\":\"notes about the {w} and other things\"}}\n"
        ));
        queries.push_str(&format!("{{\"_id\":\"q{i}\",\"text\":\"{w}?\"}}\n"));
        qrels.push_str(&format!("q{i}\td{i}\t1\n"));
    }
    std::fs::write(dir.join("corpus.jsonl"), corpus)?;
    std::fs::write(dir.join("queries.jsonl"), queries)?;
    std::fs::write(dir.join("qrels/train.tsv"), qrels)?;
    Ok(())
}

fn worst_relative(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().map(|x| x.abs()).fold(1e-6, f32::max);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / scale)
        .fold(0f32, f32::max)
}

/// One generic training micro-batch on `device`: (loss, gradients, seconds).
fn train_step(
    dir: &Path,
    cfg: &TrainConfig,
    device: &Device,
    name: &str,
) -> Result<(f32, Vec<Vec<f32>>, f64)> {
    let spec = dir.join("tiny.gguf");
    let m = model::load_unpacked(&spec.to_string_lossy(), device)?;
    let run = dir.join(format!("run-{name}"));
    let t = Trainer::with_engine(cfg.clone(), Phase::Contrastive, &run, m, Engine::Generic)?;
    for (i, (_, v)) in t.params.iter().enumerate() {
        let n = v.as_tensor().elem_count();
        let vals = if n == 1 {
            vec![3.0]
        } else {
            adapter::uniform(300 + i as u64, n, 0.3)
        };
        v.set(&Tensor::from_vec(vals, v.as_tensor().dims(), device)?)?;
    }
    let mb = batches::load_or_draw(cfg, &t.model.tokenizer, &run, 1)?.remove(0);
    let mut out = None;
    let mut seconds = 0.0;
    // The second step is timed (the first loads the device's kernels).
    for _ in 0..2 {
        let start = Instant::now();
        let mut acc = vec![None; t.params.len()];
        let (l, ..) = t.contrastive_micro(&mb, 10, &mut acc, &mut 0.0, &mut None)?;
        let grads = acc
            .into_iter()
            .map(|g| {
                g.context("a parameter got no gradient")?
                    .flatten_all()?
                    .to_vec1::<f32>()
                    .map_err(anyhow::Error::from)
            })
            .collect::<Result<Vec<_>>>()?;
        seconds = start.elapsed().as_secs_f64();
        out = Some((l.total, grads));
    }
    let (loss, grads) = out.context("no step ran")?;
    Ok((loss, grads, seconds))
}

pub fn run(a: CheckArgs) -> Result<()> {
    let started = Instant::now();
    let device = a.device.open()?;
    let dir = std::env::temp_dir().join(format!("csplade-check-device-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    let result = check(&dir, &device);
    let _ = std::fs::remove_dir_all(&dir);
    let (encode_diff, loss_cpu, loss_dev, grad_diff, cpu_s, dev_s) = result?;
    let ok = encode_diff < 1e-3 && (loss_cpu - loss_dev).abs() < 1e-3 && grad_diff < 2e-3;
    if a.json {
        println!(
            "{}",
            json!({"device": a.device.to_string(), "ok": ok, "encode_max_abs_diff": encode_diff,
                "loss_cpu": loss_cpu, "loss_device": loss_dev, "gradient_max_rel_diff": grad_diff,
                "step_seconds_cpu": cpu_s, "step_seconds_device": dev_s,
                "seconds": started.elapsed().as_secs_f64()})
        );
    } else {
        println!("{}: expansions within {encode_diff:.2e} of the CPU's; training loss {loss_dev:.5} (CPU {loss_cpu:.5}), gradients within {grad_diff:.2e} (relative); tiny step {:.1} ms (CPU {:.1} ms)", a.device, dev_s * 1e3, cpu_s * 1e3);
    }
    if !ok {
        bail!("{} disagrees with the CPU beyond tolerance", a.device);
    }
    Ok(())
}

type Check = (f32, f32, f32, f32, f64, f64);

fn check(dir: &Path, device: &Device) -> Result<Check> {
    model::tiny::write_tiny_model(dir, 23)?;
    let spec = dir.join("tiny.gguf").to_string_lossy().to_string();
    let on_cpu = model::load(&spec, &Device::Cpu)?;
    let on_dev = model::load(&spec, device)?;
    let texts = ["the thin otter", "a", "on and on in the inner other bank"];
    let vocab = on_cpu.config().vocab_size;
    let mut encode_diff = 0f32;
    for variant in [Variant::Causal, Variant::Echo, Variant::Bi] {
        for head in [Head::RawLogits, Head::LogProb { shift: 4.0 }] {
            let cfg = EncoderConfig {
                variant,
                head,
                max_len: 64,
                batch_size: 2,
                windows: 1,
            };
            let a = Encoder::new(&on_cpu, cfg.clone()).encode(&texts)?;
            let b = Encoder::new(&on_dev, cfg).encode(&texts)?;
            for (x, y) in a.iter().zip(&b) {
                let (dx, dy) = (x.vector.to_dense(vocab), y.vector.to_dense(vocab));
                for (p, q) in dx.iter().zip(&dy) {
                    encode_diff = encode_diff.max((p - q).abs());
                }
            }
        }
    }
    toy_collection(&dir.join("toy"))?;
    let cfg = TrainConfig::load(
        None,
        &[
            "batch=4".into(),
            "variant=echo".into(),
            "head=\"logprob:3\"".into(),
            "lora_rank=4".into(),
            "learn_shift=true".into(),
            "learn_term_shift=true".into(),
            "forward_group=3".into(),
            "pairs=[\"toy\"]".into(),
            format!("data_dir={:?}", dir.to_string_lossy()),
        ],
    )
    .map_err(anyhow::Error::msg)?;
    let (loss_cpu, g_cpu, cpu_s) = train_step(dir, &cfg, &Device::Cpu, "cpu")?;
    let (loss_dev, g_dev, dev_s) = train_step(dir, &cfg, device, "device")?;
    let grad_diff = g_cpu
        .iter()
        .zip(&g_dev)
        .map(|(a, b)| worst_relative(a, b))
        .fold(0f32, f32::max);
    Ok((encode_diff, loss_cpu, loss_dev, grad_diff, cpu_s, dev_s))
}
