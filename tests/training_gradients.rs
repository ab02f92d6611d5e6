//! The training engines' gradients on tiny random-weight models: the fused
//! ops' backward passes against candle's autograd, the pooling gradient
//! against finite differences, and the generic step against the CPU step.

use candle_core::{Device, Tensor};
use csplade::encode::Head;
use csplade::model::{self, adapter, AttentionMask, LoadedModel};
use csplade::train::{pooling, Phase, TrainConfig, Trainer};

mod common;
use common::{tiny, toy_collection, toy_config};

/// Gradients of Σ hidden ⊙ G for every LoRA variable.
/// With `bf16`, the frozen projections multiply in bf16 (fused engine only).
fn lora_grads(m: &mut LoadedModel, fused: bool, bf16: bool, mask: AttentionMask) -> Vec<Vec<f32>> {
    m.llama.prepare_for_training(fused, fused, bf16).unwrap();
    // Every projection of every layer.
    let targets = TrainConfig::default().targets;
    let vars = adapter::attach_low_rank(&mut m.llama, 4, 8.0, &targets, 5).unwrap();
    // Non-zero B so that gradients reach A too.
    for (i, (name, v)) in vars.iter().enumerate() {
        if name.ends_with("lora_b") {
            let n = v.as_tensor().elem_count();
            let vals = adapter::uniform(100 + i as u64, n, 0.2);
            v.set(&Tensor::from_vec(vals, v.as_tensor().dims(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let ids = Tensor::new(
        &[[5u32, 77, 140, 9, 31, 200, 3], [8, 66, 120, 0, 0, 0, 0]],
        &Device::Cpu,
    )
    .unwrap();
    let h = m.llama.hidden_states(&ids, &[7, 3], mask).unwrap();
    let g = Tensor::from_vec(
        adapter::uniform(9, h.elem_count(), 1.0),
        h.dims(),
        &Device::Cpu,
    )
    .unwrap();
    // Padding rows are excluded from the loss, as in training.
    let keep = Tensor::new(&[0u32, 1, 2, 3, 4, 5, 6, 7, 8, 9], &Device::Cpu).unwrap();
    let d = h.dim(2).unwrap();
    let rows = h.reshape((14, d)).unwrap().index_select(&keep, 0).unwrap();
    let g = g.reshape((14, d)).unwrap().index_select(&keep, 0).unwrap();
    let grads = (rows * g).unwrap().sum_all().unwrap().backward().unwrap();
    vars.iter()
        .map(|(_, v)| {
            grads
                .get(v.as_tensor())
                .expect("gradient")
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect()
}

#[test]
fn fused_training_ops_match_candle_autograd() {
    if common::skip_without(model::gemm::available(), "fused training ops") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for hf in [false, true] {
        for mask in [AttentionMask::Causal, AttentionMask::Bidirectional] {
            let composite = lora_grads(&mut tiny(dir.path(), hf), false, false, mask);
            let fused = lora_grads(&mut tiny(dir.path(), hf), true, false, mask);
            let worst = relative_difference(&composite, &fused);
            assert!(
                worst < 1e-3,
                "hf={hf} {mask:?}: fused gradients differ by {worst} (relative)"
            );
        }
    }
}

/// The largest difference between two sets of gradients, each variable's
/// relative to its largest magnitude.
fn relative_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    let mut worst = 0f32;
    for (a, b) in a.iter().zip(b) {
        let scale = a.iter().map(|x| x.abs()).fold(1e-3, f32::max);
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs() / scale);
        }
    }
    worst
}

/// Mixed precision: with the frozen projections multiplied in bf16, the
/// LoRA gradients are f32's to bf16 precision — visibly rounded (so the
/// bf16 products did run), and within a few percent.
#[test]
fn bf16_frozen_products_give_the_f32_gradients_to_bf16_precision() {
    if common::skip_without(model::gemm::bf16_available(), "bf16 training products") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for mask in [AttentionMask::Causal, AttentionMask::Bidirectional] {
        let f32_grads = lora_grads(&mut tiny(dir.path(), false), true, false, mask);
        let bf16_grads = lora_grads(&mut tiny(dir.path(), false), true, true, mask);
        let worst = relative_difference(&f32_grads, &bf16_grads);
        assert!(
            worst > 1e-5 && worst < 3e-2,
            "{mask:?}: bf16 gradients differ from f32 by {worst} (relative)"
        );
    }
}

#[test]
fn pooling_gradient_matches_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = tiny(dir.path(), false);
    m.llama.prepare_for_training(true, true, false).unwrap();
    let d = m.config().hidden_size;
    let vocab = m.config().vocab_size;
    let rows_n = 5;
    let owner = [0usize, 0, 1, 1, 1];
    let base = adapter::uniform(3, rows_n * d, 2.0);
    let coef = adapter::uniform(4, 2 * vocab, 1.0);
    for head in [Head::RawLogits, Head::LogProb { shift: 4.0 }] {
        let loss = |x: &[f32]| -> f64 {
            let t = Tensor::from_vec(x.to_vec(), (rows_n, d), &Device::Cpu).unwrap();
            let p = pooling::pool(&m.llama, &t, &owner, 2, head, None).unwrap();
            p.weights()
                .iter()
                .zip(&coef)
                .map(|(w, c)| (*w as f64) * (*c as f64))
                .sum()
        };
        let t = Tensor::from_vec(base.clone(), (rows_n, d), &Device::Cpu).unwrap();
        let p = pooling::pool(&m.llama, &t, &owner, 2, head, None).unwrap();
        let active = p.weights().iter().filter(|&&w| w > 0.0).count();
        assert!(
            active > 10,
            "{head:?}: only {active} active terms; the check would be vacuous"
        );
        let (g, shifts) = pooling::backward(&m.llama, &t, &p, &coef).unwrap();
        let dshift = shifts.shift;
        if let Head::LogProb { shift } = head {
            // The (learnable) shift: d/dC of Σ c·w.
            let at = |c: f32| -> f64 {
                let p = pooling::pool(&m.llama, &t, &owner, 2, Head::LogProb { shift: c }, None)
                    .unwrap();
                p.weights()
                    .iter()
                    .zip(&coef)
                    .map(|(w, k)| (*w as f64) * (*k as f64))
                    .sum()
            };
            let numeric = ((at(shift + 1e-3) - at(shift - 1e-3)) / 2e-3) as f32;
            assert!(
                (numeric - dshift).abs() < 2e-2 * numeric.abs().max(1.0),
                "shift: analytic {dshift} vs numeric {numeric}"
            );
        }
        let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        let mut checked = 0;
        for i in (0..rows_n * d).step_by(7) {
            let h = 1e-3f32;
            let mut x = base.clone();
            x[i] += h;
            let up = loss(&x);
            x[i] -= 2.0 * h;
            let down = loss(&x);
            let numeric = ((up - down) / (2.0 * h as f64)) as f32;
            let tol = 2e-2 * numeric.abs().max(g[i].abs()).max(0.5);
            assert!(
                (numeric - g[i]).abs() < tol,
                "{head:?} row-dim {i}: analytic {} vs numeric {numeric}",
                g[i]
            );
            checked += 1;
        }
        assert!(checked > 15);
    }
}

/// The device-generic step (the code a GPU runs) against the CPU step (its
/// own head gradients; fused attention, RMSNorm and SwiGLU where the CPU has
/// AVX-512) on one micro-batch: the same loss, the same gradients for every LoRA
/// matrix, the learned shift C and the per-term shifts — for Echo and Bi,
/// with texts forwarded in several groups, and with a teacher (a SPLADE
/// checkpoint of another tokenizer) distilled into the step.
#[test]
fn generic_step_matches_the_cpu_step() {
    use csplade::train::{batches, Engine};
    let dir = tempfile::tempdir().unwrap();
    toy_collection(&dir.path().join("toy"));
    let splade = common::bert_splade();
    for variant in ["echo", "bi", "echo-distilled"] {
        let mut cfg = toy_config(dir.path(), 3);
        cfg.variant = variant.trim_end_matches("-distilled").parse().unwrap();
        if variant.ends_with("-distilled") {
            cfg.teacher = Some(splade.to_str().unwrap().to_string());
            cfg.distill_weight = 0.5;
            cfg.teacher_temperature = 0.5;
            cfg.validate().unwrap();
        }
        cfg.learn_shift = true;
        cfg.learn_term_shift = true;
        cfg.forward_group = 3;
        cfg.hard_negatives = 2;
        // The engines must agree to f32 rounding: the fused engine's
        // default (`auto`) would multiply in bf16 on CPUs with AVX-512 BF16.
        cfg.frozen_precision = "f32".into();
        let make = |engine: Engine, name: &str| {
            let run = dir.path().join(format!("{variant}-{name}"));
            let mut cfg = cfg.clone();
            if name == "recompute" {
                // One byte for kept activations: every group is forwarded
                // again for its backward pass.
                cfg.activation_memory_gb = 1e-9;
            }
            let t = Trainer::with_engine(
                cfg,
                Phase::Contrastive,
                &run,
                tiny(&dir.path().join("m"), false),
                engine,
            )
            .unwrap();
            // Start away from B = 0 and shifts = 0, identically in both.
            for (i, (_, v)) in t.params.iter().enumerate() {
                let n = v.as_tensor().elem_count();
                let vals = adapter::uniform(300 + i as u64, n, 0.3);
                let vals = if n == 1 { vec![3.0] } else { vals };
                v.set(&Tensor::from_vec(vals, v.as_tensor().dims(), &Device::Cpu).unwrap())
                    .unwrap();
            }
            (t, run)
        };
        let (fused, run) = make(Engine::Cpu, "cpu");
        let (generic, _) = make(Engine::Generic, "generic");
        let mb = batches::load_or_draw(&cfg, &fused.model.tokenizer, &run, 1)
            .unwrap()
            .remove(0);
        assert_eq!(mb.queries.len(), 4);
        let step = |t: &Trainer| {
            let mut acc = vec![None; t.params.len()];
            let (mut dshift, mut dterm) = (0f32, None);
            let (l, aq, ad, tokens) = t
                .contrastive_micro(&mb, 20, &mut acc, &mut dshift, &mut dterm)
                .unwrap();
            let grads: Vec<Vec<f32>> = t
                .params
                .iter()
                .zip(acc)
                .map(|((name, _), g)| match (g, name.as_str()) {
                    (Some(g), _) => g.flatten_all().unwrap().to_vec1().unwrap(),
                    (None, "head.shift") => vec![dshift],
                    (None, "head.term_shift") => dterm.clone().expect("per-term gradient"),
                    (None, other) => panic!("no gradient for {other}"),
                })
                .collect();
            (l, aq, ad, tokens, grads)
        };
        let (recompute, _) = make(Engine::Cpu, "recompute");
        assert!(fused.graph_budget > 1 << 20 && recompute.graph_budget == 1);
        let (lf, aqf, adf, tf, gf) = step(&fused);
        let (lg, aqg, adg, tg, gg) = step(&generic);
        // Gradient caching changes where activations live, not the numbers.
        let (lr, _, _, tr, gr) = step(&recompute);
        assert_eq!((lr.total, tr), (lf.total, tf), "{variant}: recomputed loss");
        for (((name, _), a), b) in fused.params.iter().zip(&gf).zip(&gr) {
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            let scale = a.iter().map(|x| x.abs()).fold(1e-6, f32::max);
            assert!(
                worst <= 1e-6 * scale,
                "{variant} {name}: kept and recomputed graphs differ by {worst}"
            );
        }
        assert!(lf.infonce > 0.1 && lf.flops_d > 0.0, "{lf:?}");
        assert_eq!(
            lf.distill > 1e-4,
            cfg.teacher.is_some(),
            "{variant}: {lf:?}"
        );
        for (a, b) in [
            (lf.total, lg.total),
            (lf.infonce, lg.infonce),
            (lf.flops_q, lg.flops_q),
            (lf.flops_d, lg.flops_d),
            (lf.distill, lg.distill),
        ] {
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                "{variant}: loss {lf:?} vs {lg:?}"
            );
        }
        assert_eq!(
            (aqf, adf, tf),
            (aqg, adg, tg),
            "{variant}: active terms and tokens"
        );
        let mut worst = 0f32;
        for (((name, _), a), b) in fused.params.iter().zip(&gf).zip(&gg) {
            let scale = a.iter().map(|x| x.abs()).fold(1e-6, f32::max);
            assert!(
                scale > 1e-5,
                "{variant} {name}: zero gradient, the check would be vacuous"
            );
            for (x, y) in a.iter().zip(b) {
                worst = worst.max((x - y).abs() / scale);
            }
            assert!(
                worst < 2e-3,
                "{variant} {name}: generic and fused gradients differ by {worst} (relative)"
            );
        }
    }
}
