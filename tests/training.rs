//! Training on tiny random-weight models written in the test: a toy
//! retrieval task whose loss falls, exact resume, the written adapter
//! encoding like the model that trained it, learned term shifts, recipes,
//! progress lines, and runs that diverge or would write over a user's files.

use std::path::Path;

use candle_core::{Device, Tensor};
use csplade::encode::{Encoder, EncoderConfig, Head, Variant};
use csplade::model::{self, adapter, AttentionMask};
use csplade::train::{pooling, Phase, TrainConfig, Trainer};

mod common;
use common::{tiny, toy_collection, toy_config};

#[test]
fn contrastive_loss_falls_on_a_toy_task() {
    let dir = tempfile::tempdir().unwrap();
    toy_collection(&dir.path().join("toy"));
    let m = tiny(&dir.path().join("m"), false);
    let cfg = toy_config(dir.path(), 40);
    let mut t = Trainer::new(cfg, Phase::Contrastive, &dir.path().join("run"), m).unwrap();
    let mut losses = Vec::new();
    t.run(false, None, |r| losses.push(r.loss)).unwrap();
    assert_eq!(losses.len(), 40);
    let first: f32 = losses[..8].iter().sum::<f32>() / 8.0;
    let last: f32 = losses[32..].iter().sum::<f32>() / 8.0;
    assert!(
        last < 0.7 * first,
        "loss did not fall: first steps {first:.3}, last steps {last:.3} ({losses:?})"
    );
    assert!(dir.path().join("run/adapter.safetensors").is_file());
}

fn adapter_values(path: &Path) -> Vec<(String, Vec<f32>)> {
    let a = adapter::Adapter::read(path).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = a
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn interrupted_then_resumed_run_ends_where_an_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    toy_collection(&dir.path().join("toy"));
    let steps = 7;
    let whole = dir.path().join("whole");
    let mut t = Trainer::new(
        toy_config(dir.path(), steps),
        Phase::Contrastive,
        &whole,
        tiny(&dir.path().join("m"), false),
    )
    .unwrap();
    assert_eq!(t.run(false, None, |_| {}).unwrap(), steps);
    let split = dir.path().join("split");
    let mut first = Trainer::new(
        toy_config(dir.path(), steps),
        Phase::Contrastive,
        &split,
        tiny(&dir.path().join("m"), false),
    )
    .unwrap();
    // Stopped after 4 steps (checkpoint every 3): a stop checkpoints where it
    // stops and writes that step's adapter (a kill -9 is tests/kill_resume.rs).
    assert_eq!(first.run(false, Some(4), |_| {}).unwrap(), 4);
    assert!(split.join("adapter.safetensors").exists());
    drop(first);
    let mut second = Trainer::new(
        toy_config(dir.path(), steps),
        Phase::Contrastive,
        &split,
        tiny(&dir.path().join("m"), false),
    )
    .unwrap();
    let mut resumed_at = Vec::new();
    assert_eq!(
        second.run(true, None, |r| resumed_at.push(r.step)).unwrap(),
        steps
    );
    assert_eq!(
        resumed_at.first(),
        Some(&5),
        "resume goes on after the step the run stopped at"
    );
    let (a, b) = (
        adapter_values(&whole.join("adapter.safetensors")),
        adapter_values(&split.join("adapter.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert_eq!(va, vb, "{na} differs after resume");
    }
    // While a trainer holds the run, a second one is refused at once.
    let e = Trainer::new(
        toy_config(dir.path(), steps),
        Phase::Contrastive,
        &split,
        tiny(&dir.path().join("m"), false),
    )
    .err()
    .expect("locked");
    assert!(
        e.to_string().contains("another csplade is writing it"),
        "{e}"
    );
    drop(second);
    // A different recipe refuses to resume.
    let mut other = toy_config(dir.path(), steps);
    other.lr = 0.5;
    let mut wrong = Trainer::new(
        other,
        Phase::Contrastive,
        &split,
        tiny(&dir.path().join("m"), false),
    )
    .unwrap();
    let e = wrong
        .run(true, None, |_| {})
        .expect_err("mismatched recipe");
    assert!(e.to_string().contains("different"), "{e}");
    // It names the setting that changed, and only that one.
    assert!(e.to_string().contains("lr: 0.01 → 0.5"), "{e}");
    assert!(!e.to_string().contains("seed:"), "{e}");
}

#[test]
fn written_adapter_encodes_like_the_model_that_trained_it() {
    let dir = tempfile::tempdir().unwrap();
    toy_collection(&dir.path().join("toy"));
    let mdir = dir.path().join("m");
    let run = dir.path().join("run");
    let mut t = Trainer::new(
        toy_config(dir.path(), 30),
        Phase::Contrastive,
        &run,
        tiny(&mdir, false),
    )
    .unwrap();
    t.run(false, None, |_| {}).unwrap();
    let spec = format!(
        "{}+{}",
        mdir.join("tiny.gguf").display(),
        run.join("adapter.safetensors").display()
    );
    let merged = model::load(&spec, &Device::Cpu).unwrap();
    let meta = merged.adapter.clone().expect("adapter metadata");
    assert_eq!(
        (meta.variant, meta.head),
        (Variant::Echo, Head::LogProb { shift: 3.0 })
    );
    let base = model::load(mdir.join("tiny.gguf").to_str().unwrap(), &Device::Cpu).unwrap();
    assert_ne!(merged.identity.sha256, base.identity.sha256);
    let cfg = EncoderConfig {
        variant: Variant::Echo,
        head: meta.head,
        max_len: 64,
        batch_size: 2,
        windows: 1,
    };
    let text = "notes about the zebra";
    let ids = t.model.tokenizer.encode(text).unwrap();
    // The training model (adapters live, autograd path) and the merged, packed one.
    let merged_weights: Vec<f32> = {
        let enc = Encoder::new(&merged, cfg.clone());
        let v = enc.encode_one(text).unwrap().vector;
        let mut dense = vec![0f32; merged.config().vocab_size];
        for (i, w) in v.ids.iter().zip(&v.weights) {
            dense[*i as usize] = *w;
        }
        dense
    };
    let live = live_echo_weights(&t, &ids, meta.head, None);
    let worst = max_abs_diff(&live, &merged_weights);
    assert!(
        worst < 0.02,
        "merged f16 adapter drifts from the trained model by {worst}"
    );
    // …and the adapter changed something: the base encodes differently.
    let base_vec = Encoder::new(&base, cfg).encode_one(text).unwrap().vector;
    let mut base_dense = vec![0f32; base.config().vocab_size];
    for (i, w) in base_vec.ids.iter().zip(&base_vec.weights) {
        base_dense[*i as usize] = *w;
    }
    let moved = base_dense
        .iter()
        .zip(&merged_weights)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        moved > 0.05 && worst < 0.1 * moved,
        "training moved the expansion by {moved}; merged vs trained differ by {worst}"
    );
}

#[test]
fn adaptation_loss_falls_on_packed_text() {
    let dir = tempfile::tempdir().unwrap();
    toy_collection(&dir.path().join("toy"));
    let cfg = TrainConfig::load(
        None,
        &[
            "steps=30".into(),
            "batch=4".into(),
            "lr=0.01".into(),
            "warmup_steps=2".into(),
            "seq_len=16".into(),
            "head=\"raw\"".into(),
            "lora_rank=4".into(),
            "corpora=[\"toy\"]".into(),
            format!("data_dir={:?}", dir.path().to_str().unwrap()),
        ],
    )
    .unwrap();
    let m = tiny(&dir.path().join("m"), false);
    let mut t = Trainer::new(cfg, Phase::Adapt, &dir.path().join("run"), m).unwrap();
    let mut reports = Vec::new();
    t.run(false, None, |r| reports.push(r.clone())).unwrap();
    let clm = |r: &csplade::train::StepReport| r.parts["clm"].as_f64().unwrap();
    let first: f64 = reports[..5].iter().map(clm).sum::<f64>() / 5.0;
    let last: f64 = reports[25..].iter().map(clm).sum::<f64>() / 5.0;
    assert!(
        last < 0.8 * first,
        "causal-LM loss did not fall: {first:.3} → {last:.3}"
    );
    assert!(reports
        .iter()
        .all(|r| r.parts["relu_clm"].as_f64().unwrap().is_finite() && r.active_q > 0.0));
}

#[test]
fn training_progress_lines_feed_the_explorers_loss_chart() {
    let r = csplade::train::StepReport {
        event: "step",
        phase: "contrastive",
        step: 12,
        steps: 100,
        loss: 2.5,
        parts: serde_json::json!({"infonce": 2.0, "flops_q": 30.0, "flops_d": 40.0}),
        ..Default::default()
    };
    let line = serde_json::to_string(&r).unwrap();
    assert_eq!(
        csplade::tasks::parse_line(4, &line),
        csplade::tasks::TaskEvent::Loss {
            id: 4,
            step: 12,
            loss: 2.5
        }
    );
}

#[test]
fn the_shipped_recipes_parse() {
    for r in [
        "csplade-echo-1.toml",
        "csplade-echo-2.toml",
        "csplade-cpu-3.toml",
        "csplade-cpu-4.toml",
        "csplade-cpu-5.toml",
        "csplade-cpu-6.toml",
        "csplade-cpu-7.toml",
        "csplade-cpu-8.toml",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/recipes")
            .join(r);
        let c = TrainConfig::load(
            Some(&path),
            &["init_adapter=RUN1/adapter.safetensors".into()],
        )
        .unwrap();
        assert_eq!(
            (c.variant, c.head()),
            (Variant::Echo, Head::LogProb { shift: 5.0 })
        );
        assert_eq!(
            c.init_adapter.as_deref(),
            Some(Path::new("RUN1/adapter.safetensors"))
        );
        let distils = matches!(
            r,
            "csplade-cpu-6.toml" | "csplade-cpu-7.toml" | "csplade-cpu-8.toml"
        );
        assert_eq!(c.distillation().is_some(), distils, "{r}");
        assert_eq!(c.teacher_bm25 > 0.0, r == "csplade-cpu-8.toml", "{r}");
    }
}

/// A run that only distils (β = 1) learns its teacher's preferences: the KL
/// to the teacher (a SPLADE checkpoint of another tokenizer) falls, and the
/// progress reports it. The teacher's hybrid with BM25 over the run's
/// documents (`teacher_bm25`) is another teacher: on the toy task, where a
/// query's one word is in its positive alone, BM25 pulls it towards the
/// labels the student already nearly follows, so from the same first step
/// the student is far closer to it.
#[test]
fn a_distilled_run_moves_towards_its_teacher() {
    let kl = distil_toy(0.0, 30);
    let first: f32 = kl[..6].iter().sum::<f32>() / 6.0;
    let last: f32 = kl[24..].iter().sum::<f32>() / 6.0;
    assert!(first > 0.05, "the teacher must disagree at first: {kl:?}");
    assert!(
        last < 0.7 * first,
        "KL to the teacher did not fall: first steps {first:.3}, last {last:.3} ({kl:?})"
    );
    let hybrid = distil_toy(0.5, 1);
    assert!(
        hybrid[0] < 0.5 * kl[0],
        "BM25 in the teacher: KL {} at the first step, {} for the model alone",
        hybrid[0],
        kl[0]
    );
}

/// `steps` steps of pure distillation on the toy collection (τ 0.1); the KL
/// to the teacher at each.
fn distil_toy(teacher_bm25: f32, steps: usize) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    toy_collection(&dir.path().join("toy"));
    let m = tiny(&dir.path().join("m"), false);
    let mut cfg = toy_config(dir.path(), steps);
    let teacher = common::bert_splade();
    cfg.teacher = Some(teacher.to_str().unwrap().to_string());
    cfg.distill_weight = 1.0;
    cfg.teacher_temperature = 0.1;
    cfg.teacher_bm25 = teacher_bm25;
    cfg.validate().unwrap();
    let mut t = Trainer::new(cfg, Phase::Contrastive, &dir.path().join("run"), m).unwrap();
    let mut kl = Vec::new();
    t.run(false, None, |r| {
        kl.push(r.parts["distill"].as_f64().expect("distill reported") as f32)
    })
    .unwrap();
    assert_eq!(kl.len(), steps);
    kl
}

/// Learned per-term shifts are stored with the adapter, loaded with it, and
/// applied at encode time: the merged model encodes like the model that
/// trained them, and differently without them.
#[test]
fn learned_term_shifts_travel_with_the_adapter() {
    let dir = tempfile::tempdir().unwrap();
    toy_collection(&dir.path().join("toy"));
    let mdir = dir.path().join("m");
    let run = dir.path().join("run");
    let mut cfg = toy_config(dir.path(), 12);
    cfg.learn_term_shift = true;
    cfg.term_shift_lr = 0.05;
    let mut t = Trainer::new(cfg, Phase::Contrastive, &run, tiny(&mdir, false)).unwrap();
    t.run(false, None, |_| {}).unwrap();
    let file = run.join("adapter.safetensors");
    let a = adapter::Adapter::read(&file).unwrap();
    let shifts: Vec<f32> = a.tensors[adapter::TERM_SHIFT].to_vec1().unwrap();
    let moved = shifts.iter().map(|x| x.abs()).fold(0f32, f32::max);
    assert!(moved > 0.05, "per-term shifts did not move ({moved})");
    let spec = format!("{}+{}", mdir.join("tiny.gguf").display(), file.display());
    let mut merged = model::load(&spec, &Device::Cpu).unwrap();
    assert!(merged.llama.term_shift.is_some());
    let head = merged.adapter.as_ref().unwrap().head;
    let cfg = EncoderConfig {
        variant: Variant::Echo,
        head,
        max_len: 64,
        batch_size: 2,
        windows: 1,
    };
    let text = "notes about the violin";
    let vocab = merged.config().vocab_size;
    let with = Encoder::new(&merged, cfg.clone())
        .encode_one(text)
        .unwrap()
        .vector
        .to_dense(vocab);
    // The training model, live: its pooled weights with the trained shifts.
    let ids = t.model.tokenizer.encode(text).unwrap();
    let live_shifts = t
        .term_shift
        .as_ref()
        .unwrap()
        .as_tensor()
        .to_vec1()
        .unwrap();
    let live = live_echo_weights(&t, &ids, head, Some(live_shifts));
    let worst = max_abs_diff(&live, &with);
    assert!(
        worst < 0.02,
        "merged model drifts from the trained one by {worst}"
    );
    merged.llama.term_shift = None;
    let without = Encoder::new(&merged, cfg)
        .encode_one(text)
        .unwrap()
        .vector
        .to_dense(vocab);
    let gap = with
        .iter()
        .zip(&without)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        gap > 10.0 * worst.max(1e-3),
        "the shifts change nothing ({gap})"
    );
}

/// A training run's --out must be new, empty or a run: a directory of the
/// user's files is refused before anything is written.
#[test]
fn a_run_is_never_written_over_the_users_files() {
    let dir = tempfile::tempdir().unwrap();
    toy_collection(&dir.path().join("toy"));
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.md"), "keep").unwrap();
    let e = Trainer::new(
        toy_config(dir.path(), 2),
        Phase::Contrastive,
        &mine,
        tiny(&dir.path().join("m"), false),
    )
    .err()
    .expect("refused");
    assert!(e.to_string().contains("notes.md"), "{e}");
    let e = Trainer::new(
        toy_config(dir.path(), 2),
        Phase::Contrastive,
        &dir.path().join("toy/run"),
        tiny(&dir.path().join("m"), false),
    )
    .err()
    .expect("inside the collection");
    assert!(e.to_string().contains("inside"), "{e}");
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 1);
}

/// A run whose loss or gradients blow up stops at that step, names it, and
/// leaves the last checkpoint (finite, from an earlier step) in place.
#[test]
fn a_diverging_run_stops_and_keeps_its_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    toy_collection(&dir.path().join("toy"));
    let mut cfg = toy_config(dir.path(), 30);
    cfg.lr = 1e30;
    cfg.grad_clip = 0.0;
    cfg.warmup_steps = 0;
    cfg.checkpoint_every = 1;
    let run = dir.path().join("run");
    let mut t = Trainer::new(
        cfg,
        Phase::Contrastive,
        &run,
        tiny(&dir.path().join("m"), false),
    )
    .unwrap();
    let mut steps = 0;
    let e = t
        .run(false, None, |_| steps += 1)
        .expect_err("must diverge");
    let msg = e.to_string();
    assert!(msg.contains(&format!("step {}", steps + 1)), "{msg}");
    assert!(msg.contains("intact"), "{msg}");
    let state =
        candle_core::safetensors::load(run.join("checkpoint/state.safetensors"), &Device::Cpu)
            .unwrap();
    for (name, v) in state {
        let v: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{name} is not finite in the kept checkpoint"
        );
    }
    assert!(!run.join("adapter.safetensors").exists());
}

/// The training model's own weights for `ids` under Echo (adapters live,
/// the autograd path), pooled with `head` and the per-term `shifts`.
fn live_echo_weights(t: &Trainer, ids: &[u32], head: Head, shifts: Option<Vec<f32>>) -> Vec<f32> {
    let (laid, start) = csplade::encode::encoder::input_layout(Variant::Echo, ids);
    let x = Tensor::new(laid.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let h = t
        .model
        .llama
        .hidden_states(&x, &[laid.len()], AttentionMask::Causal)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let rows = h.narrow(0, start, laid.len() - start).unwrap();
    let owner = vec![0usize; laid.len() - start];
    pooling::pool(&t.model.llama, &rows, &owner, 1, head, shifts)
        .unwrap()
        .weights()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// A checkpoint whose tensors changed on disk after they were written (a
/// flipped byte) is refused on resume, never trained on.
#[test]
fn a_checkpoint_changed_on_disk_is_refused_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    toy_collection(&dir.path().join("toy"));
    let run = dir.path().join("run");
    let trainer = || {
        Trainer::new(
            toy_config(dir.path(), 5),
            Phase::Contrastive,
            &run,
            tiny(&dir.path().join("m"), false),
        )
        .unwrap()
    };
    assert_eq!(trainer().run(false, Some(2), |_| {}).unwrap(), 2);
    let tensors = run.join("checkpoint/state.safetensors");
    let mut bytes = std::fs::read(&tensors).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    std::fs::write(&tensors, &bytes).unwrap();
    let e = trainer().run(true, None, |_| {}).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
}

/// A checkpoint records its teacher's and initial adapter's sha256: a resume
/// whose teacher was replaced at the same path is refused, naming it, and
/// one with the same teacher continues.
#[test]
fn a_resume_with_another_teacher_at_the_same_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    toy_collection(&dir.path().join("toy"));
    let teacher = dir.path().join("teacher");
    common::copy_dir(&common::bert_splade(), &teacher);
    let run = dir.path().join("run");
    let trainer = || {
        let mut cfg = toy_config(dir.path(), 6);
        cfg.teacher = Some(teacher.to_str().unwrap().to_string());
        cfg.distill_weight = 0.5;
        Trainer::new(
            cfg,
            Phase::Contrastive,
            &run,
            tiny(&dir.path().join("m"), false),
        )
    };
    assert_eq!(trainer().unwrap().run(false, Some(3), |_| {}).unwrap(), 3);
    let state = std::fs::read_to_string(run.join("checkpoint/state.json")).unwrap();
    assert!(state.contains("\"teacher\""), "{state}");
    // The same teacher: the run goes on.
    assert_eq!(trainer().unwrap().run(true, Some(1), |_| {}).unwrap(), 4);
    // Other weights under the same path: one value changed.
    let file = teacher.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let bias = tensors
        .get_mut("cls.predictions.bias")
        .expect("decoder bias");
    *bias = (&*bias + 0.5).unwrap();
    candle_core::safetensors::save(&tensors, &file).unwrap();
    let e = trainer()
        .unwrap()
        .run(true, None, |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("teacher has changed"), "{e}");
    assert!(e.contains("state.json") || e.contains("checkpoint"), "{e}");
}
