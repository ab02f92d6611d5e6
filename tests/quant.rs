//! Precision variants: quantization error bounds per format, a q8_0 tiny
//! model close to f32, and a GGUF written by `quantize` that loads back
//! identically.

use candle_core::{Device, Tensor};
use csplade::encode::{Encoder, EncoderConfig, Head};
use csplade::model;
use csplade::quant::{self, Precision};

mod common;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = model::tiny::SplitMix::new(seed);
    (0..n).map(|_| 3.0 * r.uniform()).collect()
}

/// csplade's own linear layer at each precision (packed panels, the VNNI
/// kernel or candle's QMatMul, whichever this CPU runs) against the exact f32
/// product: relative error within what the format's rounding allows.
#[test]
fn linear_layers_at_each_precision_stay_within_their_rounding() {
    use csplade::model::linear::Weights;
    let (n, k, m) = (96, 256, 7);
    let w = Tensor::from_vec(random(n * k, 31), (n, k), &Device::Cpu).unwrap();
    let x = Tensor::from_vec(random(m * k, 32), (m, k), &Device::Cpu).unwrap();
    let exact: Vec<f32> = x
        .matmul(&w.t().unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let norm = exact.iter().map(|v| v * v).sum::<f32>().sqrt();
    let mut errors = Vec::new();
    // Relative L2 error bounds: f16 rounds to 11 bits; q8_0 to 1/254 of a
    // block's range (and q8 activations on the VNNI path); q4_0 to 1/16.
    for (p, bound) in [
        (Precision::F32, 1e-5),
        (Precision::F16, 1e-3),
        (Precision::Q8_0, 0.02),
        (Precision::Q4_0, 0.2),
    ] {
        let y: Vec<f32> = Weights::new(&w, p)
            .unwrap()
            .matmul(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let err = exact
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt()
            / norm;
        eprintln!("{p}: relative L2 error {err:.2e}");
        assert!(err <= bound, "{p}: relative error {err} above {bound}");
        errors.push(err);
    }
    // Each format loses more than the one with more bits.
    assert!(errors.windows(2).all(|e| e[0] < e[1]), "{errors:?}");
}

/// Each weight as csplade's linear layer holds it at each precision (its
/// own f16 panels and int8 q8_0/q4_0 codes where this CPU runs them, else
/// candle's), read back through the layer's own product with the identity:
/// every value within the format's rounding of its block.
#[test]
fn quantize_dequantize_error_bounds() {
    let (n, k) = (64, 256);
    let v = random(n * k, 5);
    let w = Tensor::from_vec(v.clone(), (n, k), &Device::Cpu).unwrap();
    let identity = Tensor::eye(k, candle_core::DType::F32, &Device::Cpu).unwrap();
    // Error bound as a fraction of the block's largest |x|: q8_0 rounds to
    // the nearest of ±127 steps (half a step); q4_0 maps the signed extreme
    // to -8 steps, so the opposite side tops out at +7 and may lose a whole
    // step. The int8 GEMM also quantizes the identity's rows (1.0 → 127
    // codes of an f16 scale): within the amax·1e-3 term.
    for (precision, bound_per_block) in [
        (Precision::F16, None),
        (Precision::Q8_0, Some(0.5 / 127.0)),
        (Precision::Q4_0, Some(1.0 / 8.0)),
    ] {
        let layer = model::linear::Weights::new(&w, precision).unwrap();
        // x · Wᵀ with x = I is Wᵀ: out[i][j] = W[j][i].
        let back: Vec<Vec<f32>> = layer.matmul(&identity).unwrap().to_vec2().unwrap();
        for (row, values) in v.chunks(k).enumerate() {
            for (b, chunk) in values.chunks(32).enumerate() {
                let amax = chunk.iter().fold(0f32, |m, x| m.max(x.abs()));
                for (t, x) in chunk.iter().enumerate() {
                    let y = back[b * 32 + t][row];
                    let err = (x - y).abs();
                    match bound_per_block {
                        Some(frac) => assert!(
                            err <= amax * frac + amax * 1e-3 + 1e-6,
                            "{precision:?} row {row} block {b}: |{x} - {y}| = {err}"
                        ),
                        None => assert!(err <= x.abs() * 2f32.powi(-11) + 1e-7, "f16: {x} vs {y}"),
                    }
                }
            }
        }
    }
}

fn cfg() -> EncoderConfig {
    EncoderConfig {
        head: Head::LogProb { shift: 3.0 },
        ..Default::default()
    }
}

#[test]
fn q8_0_encoding_of_a_tiny_model_stays_close_to_f32() {
    let dir = tempfile::tempdir().unwrap();
    model::tiny::write_tiny_model(dir.path(), 21).unwrap();
    let spec = dir.path().join("tiny.gguf");
    let spec = spec.to_str().unwrap();
    let f32m = model::load_at(spec, &Device::Cpu, Precision::F32, false).unwrap();
    let texts = [
        "the thin otter ran on the other bank",
        "inner theory and heat",
        "on and on",
    ];
    let mut mean_cos = std::collections::HashMap::new();
    for p in [Precision::F16, Precision::Q8_0, Precision::Q4_0] {
        let m = model::load_at(spec, &Device::Cpu, p, true).unwrap();
        assert!(
            m.llama.weight_bytes() < f32m.llama.weight_bytes(),
            "{p} should be smaller"
        );
        let mut cos = 0.0;
        for t in texts {
            let a = Encoder::new(&f32m, cfg()).encode_one(t).unwrap().vector;
            let b = Encoder::new(&m, cfg()).encode_one(t).unwrap().vector;
            let d = quant::diff(&a, &b);
            cos += d.cosine / texts.len() as f64;
            match p {
                Precision::F16 => assert!(
                    d.cosine >= 0.9999 && d.max_abs_dw <= 0.01,
                    "f16 on {t:?}: {d:?}"
                ),
                Precision::Q8_0 => assert!(
                    d.cosine >= 0.995 && d.max_abs_dw <= 0.1,
                    "q8_0 on {t:?}: {d:?}"
                ),
                // int4 of random weights is coarse; it must still point the same way.
                _ => assert!(d.cosine >= 0.9, "q4_0 on {t:?}: {d:?}"),
            }
        }
        mean_cos.insert(p, cos);
    }
    // Fewer bits, further from f32.
    assert!(mean_cos[&Precision::F16] >= mean_cos[&Precision::Q8_0]);
    assert!(mean_cos[&Precision::Q8_0] >= mean_cos[&Precision::Q4_0]);
}

#[test]
fn a_quantized_gguf_reloads_identically() {
    let dir = tempfile::tempdir().unwrap();
    model::tiny::write_tiny_model(dir.path(), 22).unwrap();
    let src = dir.path().join("tiny.gguf");
    let out = dir.path().join("tiny-q8_0.gguf");
    quant::write_variant(&src, None, &out, Precision::Q8_0, false).unwrap();
    // Tensor by tensor: the file holds exactly the quantized blocks.
    let mut a = model::gguf::GgufFile::open(&src).unwrap();
    let mut b = model::gguf::GgufFile::open(&out).unwrap();
    assert_eq!(a.llama_config().unwrap(), b.llama_config().unwrap());
    let ta = a.hf_tensors(&Device::Cpu).unwrap();
    let tb = b.hf_tensors(&Device::Cpu).unwrap();
    // Checked against q8_0 written out here from its definition (GGML's
    // block_q8_0: per 32 weights, d = max|x| / 127 stored as f16, codes =
    // round(x / d)), not against the quantizer the writer calls.
    let reference_q8_0 = |x: &[f32]| -> Vec<f32> {
        x.chunks(32)
            .flat_map(|b| {
                let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
                let d16 = half::f16::from_f32(d).to_f32();
                b.iter()
                    .map(move |v| (v * inv).round().clamp(-127.0, 127.0) * d16)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let mut quantized = 0;
    for (name, t) in &ta {
        let x: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let y: Vec<f32> = tb[name].flatten_all().unwrap().to_vec1().unwrap();
        if t.rank() == 2 && name != "model.embed_tokens.weight" {
            assert_eq!(reference_q8_0(&x), y, "{name}");
            quantized += 1;
        } else {
            assert_eq!(x, y, "{name}");
        }
    }
    assert!(quantized >= 7, "only {quantized} tensors were quantized");
    match b.meta("csplade.precision") {
        Some(candle_core::quantized::gguf_file::Value::String(s)) => assert_eq!(s, "q8_0"),
        other => panic!("precision not recorded: {other:?}"),
    }
    // Encoding: the reloaded file at q8_0 equals the in-memory q8_0 variant.
    let mem = model::load_at(src.to_str().unwrap(), &Device::Cpu, Precision::Q8_0, false).unwrap();
    let file = model::load_at(out.to_str().unwrap(), &Device::Cpu, Precision::Q8_0, false).unwrap();
    for t in ["the thin otter", "heat and theory on the bank"] {
        let x = Encoder::new(&mem, cfg()).encode_one(t).unwrap().vector;
        let y = Encoder::new(&file, cfg()).encode_one(t).unwrap().vector;
        assert_eq!(x, y, "{t}");
    }
}

#[test]
fn compare_ranks_every_judged_query_per_precision() {
    let dir = tempfile::tempdir().unwrap();
    model::tiny::write_tiny_model(dir.path(), 23).unwrap();
    let spec = dir.path().join("tiny.gguf");
    let corpus = dir.path().join("c");
    std::fs::create_dir_all(corpus.join("qrels")).unwrap();
    let docs = [
        "the otter and the river",
        "heat theory on the bank",
        "thin stone in the water",
        "other inner night fish",
    ];
    let mut c = String::new();
    let mut q = String::new();
    let mut r = String::from("query-id\tcorpus-id\tscore\n");
    for (i, d) in docs.iter().enumerate() {
        c.push_str(&format!(
            "{{\"_id\":\"d{i}\",\"title\":\"\",\"text\":\"{d}\"}}\n"
        ));
        q.push_str(&format!("{{\"_id\":\"q{i}\",\"text\":\"{}\"}}\n", &d[..9]));
        r.push_str(&format!("q{i}\td{i}\t1\n"));
    }
    std::fs::write(corpus.join("corpus.jsonl"), c).unwrap();
    std::fs::write(corpus.join("queries.jsonl"), q).unwrap();
    std::fs::write(corpus.join("qrels/test.tsv"), r).unwrap();
    let m = model::load(spec.to_str().unwrap(), &Device::Cpu).unwrap();
    let out = dir.path().join("idx");
    let opts = common::build_options(&corpus, &out);
    csplade::index::build(&Encoder::new(&m, cfg()), &opts, |_| {}).unwrap();
    let v = common::json_output(
        std::process::Command::new(env!("CARGO_BIN_EXE_csplade")).args([
            "compare",
            "--model",
            spec.to_str().unwrap(),
            "--head",
            "logprob:3",
            "--index",
            out.to_str().unwrap(),
            "--dataset",
            corpus.to_str().unwrap(),
            "--json",
        ]),
    );
    assert_eq!(v["queries"], 4);
    // f32 scores exactly what `csplade eval` reports for the same index.
    let eval = std::process::Command::new(env!("CARGO_BIN_EXE_csplade"))
        .args([
            "eval",
            "--system",
            "lsr",
            "--json",
            "--model",
            spec.to_str().unwrap(),
        ])
        .args(["--head", "logprob:3", "--index", out.to_str().unwrap()])
        .args(["--dataset", corpus.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let e: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    let encoders = v["encoders"].as_array().unwrap();
    let names: Vec<&str> = encoders
        .iter()
        .map(|x| x["encoder"].as_str().unwrap())
        .collect();
    let m = spec.to_str().unwrap();
    assert_eq!(
        names,
        [
            format!("{m}:logprob:3"),
            format!("{m}:logprob:3:f16"),
            format!("{m}:logprob:3:q8_0"),
            format!("{m}:logprob:3:q4_0")
        ]
    );
    assert_eq!(encoders[0]["ndcg@10"], e["systems"]["lsr"]["ndcg@10"]);
    assert!(encoders[0].get("vs_first").is_none());
    for x in &encoders[1..] {
        assert!(x["ndcg@10"].is_number(), "{x}");
        // Four documents: every ranking holds all of them in its top 10.
        assert_eq!(x["vs_first"]["overlap@10"], 1.0, "{x}");
    }
}

/// A GGUF variant of an adapted model (`quantize --model BASE+ADAPTER`)
/// carries the merged projections, the per-term shifts, the query table and
/// the adapter's encoding: loaded alone, it encodes as the adapted model
/// does at that precision.
#[test]
fn a_quantized_adapted_model_keeps_its_shifts_table_and_encoding() {
    use csplade::model::adapter::{Adapter, QUERY_TABLE, TERM_SHIFT};
    let dir = tempfile::tempdir().unwrap();
    model::tiny::write_tiny_model(dir.path(), 21).unwrap();
    let lora = common::lora_adapter(dir.path());
    let mut a = Adapter::read(&lora).unwrap();
    let vocab = model::load(dir.path().join("tiny.gguf").to_str().unwrap(), &Device::Cpu)
        .unwrap()
        .config()
        .vocab_size;
    let shifts: Vec<f32> = (0..vocab).map(|i| (i % 7) as f32 * 0.25 - 0.5).collect();
    let table: Vec<f32> = (0..vocab).map(|i| (i % 5) as f32 * 0.5).collect();
    a.tensors.insert(
        TERM_SHIFT.into(),
        Tensor::from_vec(shifts.clone(), vocab, &Device::Cpu).unwrap(),
    );
    a.tensors.insert(
        QUERY_TABLE.into(),
        Tensor::from_vec(table.clone(), vocab, &Device::Cpu).unwrap(),
    );
    let adapter = dir.path().join("shifted.safetensors");
    a.write(&adapter).unwrap();
    let spec = format!(
        "{}+{}",
        dir.path().join("tiny.gguf").display(),
        adapter.display()
    );
    let out = dir.path().join("variant.gguf");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_csplade"))
        .args(["quantize", "--model", &spec, "--precision", "f16", "--out"])
        .arg(&out)
        .env("CSPLADE_HOME", dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let variant = model::load(out.to_str().unwrap(), &Device::Cpu).unwrap();
    let adapted = model::load_at(&spec, &Device::Cpu, Precision::F16, false).unwrap();
    let meta = variant
        .adapter
        .clone()
        .expect("the variant records its encoding");
    assert_eq!(meta, a.meta);
    let got: Vec<f32> = variant
        .llama
        .term_shift
        .as_ref()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(got, shifts);
    assert_eq!(variant.query_table.as_deref(), Some(&table[..]));
    let (variant_enc, head) = variant.trained_encoding();
    assert_eq!((variant_enc, head), (a.meta.variant, a.meta.head));
    let cfg = EncoderConfig {
        variant: variant_enc,
        head,
        max_len: 64,
        batch_size: 2,
        windows: 1,
    };
    for text in ["the thin otter", "on and on in the inner other bank"] {
        let x = Encoder::new(&variant, cfg.clone())
            .encode_one(text)
            .unwrap()
            .vector;
        let y = Encoder::new(&adapted, cfg.clone())
            .encode_one(text)
            .unwrap()
            .vector;
        let (x, y) = (x.to_dense(vocab), y.to_dense(vocab));
        let worst = x
            .iter()
            .zip(&y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(worst < 0.02, "{text}: the variant drifts by {worst}");
    }
}
