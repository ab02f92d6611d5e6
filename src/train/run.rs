//! A training run: model with trainable adapters, the step loop of either
//! phase (in `step`), checkpoints every N steps, resume, progress reports,
//! and the final adapter file.
//!
//! Two engines compute a step. On the CPU (fused): gradients flow in two
//! legs, candle's autograd from the adapters to the final hidden states and
//! csplade's own exact gradients from the loss back through pooling and the
//! LM head (`train::pooling`, `train::loss`), joined by back-propagating the
//! surrogate Σ hidden ⊙ ∂L/∂hidden. Elsewhere (generic: a GPU, or the CPU
//! when asked): plain candle ops end to end (`train::graph`).

mod step;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use serde::Serialize;

use super::config::TrainConfig;
use super::data::{self, MicroBatch};
use super::loss::{self, ContrastiveLoss};
use super::optim::AdamW;
use super::{batches, checkpoint, graph, pooling};
use crate::encode::encoder::input_layout;
use crate::encode::Head;
use crate::model::adapter::{self, Adapter, SHIFT, TERM_SHIFT};
use crate::model::{AttentionMask, LoadedModel};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Adapt,
    Contrastive,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Adapt => "adapt",
            Phase::Contrastive => "contrastive",
        }
    }
}

/// One optimizer step, as reported (`--progress-json` prints it as a JSON line).
#[derive(Clone, Debug, Default, Serialize)]
pub struct StepReport {
    pub event: &'static str,
    pub phase: &'static str,
    pub step: usize,
    pub steps: usize,
    pub loss: f32,
    /// Contrastive: InfoNCE and FLOPS parts; adaptation: CLM and ReLU-CLM.
    pub parts: serde_json::Value,
    /// Median active vocabulary dimensions (queries; adaptation: sequences, raw head).
    pub active_q: f32,
    pub active_d: f32,
    pub lr: f64,
    pub grad_norm: f64,
    pub shift: Option<f32>,
    pub tokens_per_s: f64,
    pub eta_s: f64,
    /// Tokens through the backbone in this step and its wall time.
    pub step_tokens: u64,
    pub step_seconds: f64,
}

/// How a step's gradients are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// csplade's CPU step: the head's exact gradients computed on the CPU,
    /// attention / RMSNorm / SwiGLU as fused ops where AVX-512 exists.
    Cpu,
    /// Plain candle ops and autograd on any device ([`super::graph`]).
    Generic,
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Engine::Cpu),
            "generic" => Ok(Engine::Generic),
            other => Err(format!("unknown engine {other:?} (cpu or generic)")),
        }
    }
}

impl Engine {
    /// The CPU step on the CPU, the generic one everywhere else.
    pub fn for_device(device: &Device) -> Self {
        if device.is_cpu() {
            Engine::Cpu
        } else {
            Engine::Generic
        }
    }
}

/// Everything a run needs between steps.
pub struct Trainer {
    /// The run directory stays locked while the trainer lives.
    _lock: crate::data::output::OutputLock,
    pub cfg: TrainConfig,
    pub phase: Phase,
    pub model: LoadedModel,
    pub params: Vec<(String, Var)>,
    /// The learned shift of the log-probability head, when learned.
    pub shift: Option<Var>,
    /// The learned per-vocabulary shifts, when learned.
    pub term_shift: Option<Var>,
    pub engine: Engine,
    pub opt: AdamW,
    pub out: PathBuf,
    /// The adapter the run started from (`init_adapter`), read once.
    pub init: Option<Adapter>,
    /// Bytes of forward activations the CPU engine keeps for the backward
    /// pass per micro-batch (see `activation_memory_gb`).
    pub graph_budget: usize,
    /// The teacher of a distillation run (`teacher` in the recipe).
    pub teacher: Option<super::teacher::Teacher>,
    /// sha256 of the run's inputs named by path (see `RunState::inputs`).
    pub inputs: std::collections::BTreeMap<String, String>,
}

/// The per-term shifts a run starts from when its adapter has none:
/// zero, or `β · (idf_v − max idf)` over the training passages.
fn initial_term_shift(
    cfg: &TrainConfig,
    tok: &crate::model::TextTokenizer,
    vocab: usize,
) -> Result<Tensor> {
    let Some(beta) = cfg.term_shift_beta().map_err(anyhow::Error::msg)? else {
        return Ok(Tensor::zeros(vocab, candle_core::DType::F32, &Device::Cpu)?);
    };
    let (df, n) = data::document_frequencies(&cfg.data_dir(), &cfg.pairs, tok, cfg.doc_max_len)?;
    let idf = crate::search::prior::idf_table(&df, n);
    let top = idf.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut b: Vec<f32> = idf.iter().map(|&x| beta * (x - top)).collect();
    b.resize(vocab, 0.0);
    Ok(Tensor::from_vec(b, vocab, &Device::Cpu)?)
}

pub(super) fn median(mut v: Vec<f32>) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Trainer {
    /// Load the base (plus `init_adapter`), make it trainable and attach
    /// adapters; the engine follows the model's device.
    pub fn new(cfg: TrainConfig, phase: Phase, out: &Path, model: LoadedModel) -> Result<Self> {
        let engine = Engine::for_device(model.llama.device());
        Self::with_engine(cfg, phase, out, model, engine)
    }

    /// [`Trainer::new`] with a chosen engine (the CPU one needs the CPU).
    pub fn with_engine(
        cfg: TrainConfig,
        phase: Phase,
        out: &Path,
        model: LoadedModel,
        engine: Engine,
    ) -> Result<Self> {
        let mut model = model;
        if engine == Engine::Cpu && !model.llama.device().is_cpu() {
            bail!("the CPU training engine needs the model on the CPU");
        }
        if engine == Engine::Generic && phase == Phase::Adapt {
            bail!("the adaptation phase runs on the CPU engine only (--device cpu)");
        }
        let (init, continues) = starting_adapter(&cfg, &mut model)?;
        let mut params = attach_trainable(&cfg, &mut model, engine, init.as_ref(), continues)?;
        let (shift, term_shift) = learned_shifts(
            &cfg,
            phase,
            &model,
            init.as_ref().map(|i| &i.1),
            &mut params,
        )?;
        let opt = AdamW::new(&params, cfg.weight_decay)?;
        let graph_budget = if cfg.activation_memory_gb > 0.0 {
            (cfg.activation_memory_gb * 1e9) as usize
        } else {
            super::groups::available_memory().unwrap_or(8 << 30) / 2
        };
        let teacher = match cfg.distillation() {
            Some((spec, ..)) if phase == Phase::Contrastive => {
                Some(super::teacher::Teacher::open(spec)?)
            }
            _ => None,
        };
        let inputs = input_digests(&cfg, teacher.as_ref())?;
        let lock = cfg.claim_output(out, "train")?;
        Ok(Self {
            _lock: lock,
            cfg,
            phase,
            model,
            params,
            shift,
            term_shift,
            engine,
            opt,
            out: out.to_path_buf(),
            init: init.map(|(_, a)| a),
            graph_budget,
            teacher,
            inputs,
        })
    }

    /// The teacher's scores of a micro-batch's (query, document) pairs, when
    /// distilling.
    fn teacher_scores(&self, queries: &[&[u32]], docs: &[&[u32]]) -> Result<Option<Vec<f32>>> {
        self.teacher
            .as_ref()
            .map(|t| t.scores(&self.model.tokenizer, queries, docs))
            .transpose()
    }

    /// The distillation term over `scores` (see [`loss::Distill`]).
    pub(super) fn distill<'a>(&self, scores: Option<&'a [f32]>) -> Option<loss::Distill<'a>> {
        let (_, weight, temperature) = self.cfg.distillation()?;
        scores.map(|scores| loss::Distill {
            scores,
            weight,
            temperature,
        })
    }

    /// The head as trained so far (with the learned shift, if any).
    pub fn head(&self) -> Result<Head> {
        Ok(match (self.cfg.head(), &self.shift) {
            (Head::LogProb { .. }, Some(v)) => Head::LogProb {
                shift: v.as_tensor().to_vec1::<f32>()?[0],
            },
            (h, _) => h,
        })
    }

    /// Forward with autograd over texts in groups of similar length (less
    /// padding); `(pooled rows [R, hidden] on the graph, owning text of each
    /// row, tokens)`. With `pool_all` every position is a row, in text order.
    pub(super) fn hidden_rows(
        &self,
        seqs: &[&[u32]],
        mask: AttentionMask,
        pool_all: bool,
    ) -> Result<(Tensor, Vec<usize>, usize)> {
        let variant = self.cfg.variant;
        let laid: Vec<(Vec<u32>, usize)> = seqs
            .iter()
            .map(|s| {
                if pool_all {
                    (s.to_vec(), 0)
                } else {
                    input_layout(variant, s)
                }
            })
            .collect();
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        if !pool_all {
            order.sort_by_key(|&i| std::cmp::Reverse(laid[i].0.len()));
        }
        let group = if pool_all {
            seqs.len().max(1)
        } else {
            self.cfg.forward_group
        };
        let dev = self.model.llama.device().clone();
        let (mut parts, mut owner, mut tokens) = (Vec::new(), Vec::new(), 0);
        for chunk in order.chunks(group) {
            let t = chunk.iter().map(|&i| laid[i].0.len()).max().unwrap_or(0);
            let lengths: Vec<usize> = chunk.iter().map(|&i| laid[i].0.len()).collect();
            let mut flat = Vec::with_capacity(chunk.len() * t);
            let mut rows = Vec::new();
            for (b, &i) in chunk.iter().enumerate() {
                let (ids, start) = &laid[i];
                flat.extend_from_slice(ids);
                flat.extend(std::iter::repeat_n(0u32, t - ids.len()));
                for p in *start..ids.len() {
                    rows.push((b * t + p) as u32);
                    owner.push(i);
                }
            }
            tokens += lengths.iter().sum::<usize>();
            let ids = Tensor::from_vec(flat, (chunk.len(), t), &dev)?;
            let hidden = self.model.llama.hidden_states(&ids, &lengths, mask)?;
            let d = hidden.dim(2)?;
            let idx = Tensor::from_vec(rows.clone(), rows.len(), &dev)?;
            parts.push(
                hidden
                    .reshape((chunk.len() * t, d))?
                    .index_select(&idx, 0)?,
            );
        }
        Ok((Tensor::cat(&parts, 0)?, owner, tokens))
    }

    /// The per-term shifts as CPU values (CPU engine).
    fn term_shift_values(&self) -> Result<Option<Vec<f32>>> {
        Ok(match &self.term_shift {
            Some(v) => Some(v.as_tensor().to_vec1::<f32>()?),
            None => None,
        })
    }

    /// Gradients of `surrogate` for every parameter, added to `acc`.
    pub(super) fn accumulate(
        &self,
        surrogate: Tensor,
        acc: &mut [Option<Tensor>],
    ) -> candle_core::Result<()> {
        let grads = surrogate.backward()?;
        for (i, (_, p)) in self.params.iter().enumerate() {
            if let Some(g) = grads.get(p.as_tensor()) {
                acc[i] = Some(match acc[i].take() {
                    Some(a) => (a + g)?,
                    None => g.clone(),
                });
            }
        }
        Ok(())
    }

    /// One contrastive micro-batch; returns (loss, active q, active d,
    /// tokens). Parameter gradients go to `acc`; on the CPU engine the
    /// shifts' gradients go to `dshift` / `dterm` instead.
    pub fn contrastive_micro(
        &self,
        mb: &MicroBatch,
        step: usize,
        acc: &mut [Option<Tensor>],
        dshift: &mut f32,
        dterm: &mut Option<Vec<f32>>,
    ) -> Result<(ContrastiveLoss, f32, f32, usize)> {
        let cfg = &self.cfg;
        let queries: Vec<&[u32]> = mb.queries.iter().map(Vec::as_slice).collect();
        let mut docs: Vec<&[u32]> = mb.positives.iter().map(Vec::as_slice).collect();
        docs.extend(mb.negatives.iter().flatten().map(Vec::as_slice));
        let lq = loss::flops_weight(cfg.lambda_q, step, cfg.flops_warmup_steps);
        let ld = loss::flops_weight(cfg.lambda_d, step, cfg.flops_warmup_steps);
        let scale = 1.0 / cfg.grad_accum as f32;
        let teacher = self.teacher_scores(&queries, &docs)?;
        let distill = self.distill(teacher.as_deref());
        if self.engine == Engine::Generic {
            return Ok(graph::contrastive_micro(
                self,
                &queries,
                &docs,
                (lq, ld),
                distill.as_ref(),
                scale,
                acc,
            )?);
        }
        let head = self.head()?;
        let mask = cfg.variant.mask();
        let q_groups = self.forward_groups(&queries);
        let d_groups = self.forward_groups(&docs);
        let mut budget = self.graph_budget;
        let q = self.pooled_rows(&queries, &q_groups, mask, &mut budget)?;
        let d = self.pooled_rows(&docs, &d_groups, mask, &mut budget)?;
        let (q_rows, q_owner, q_tok) = (q.rows()?, &q.owner, q.tokens);
        let (d_rows, d_owner, d_tok) = (d.rows()?, &d.owner, d.tokens);
        let llama = &self.model.llama;
        let terms = self.term_shift_values()?;
        let pq = pooling::pool(llama, &q_rows, q_owner, queries.len(), head, terms.clone())?;
        let pd = pooling::pool(llama, &d_rows, d_owner, docs.len(), head, terms)?;
        let (wq, wd) = (pq.weights(), pd.weights());
        let vocab = pq.vocab;
        let positive: Vec<usize> = (0..queries.len()).collect();
        let (l, mut gq, mut gd) =
            loss::contrastive(&wq, &wd, vocab, &positive, (lq, ld), distill.as_ref());
        gq.iter_mut().chain(gd.iter_mut()).for_each(|g| *g *= scale);
        let (hq, sq) = pooling::backward(llama, &q_rows, &pq, &gq)?;
        let (hd, sd) = pooling::backward(llama, &d_rows, &pd, &gd)?;
        *dshift += sq.shift + sd.shift;
        for part in [sq.term_shift, sd.term_shift].into_iter().flatten() {
            match dterm {
                Some(acc) => acc.iter_mut().zip(&part).for_each(|(a, b)| *a += b),
                None => *dterm = Some(part),
            }
        }
        self.backpropagate_rows(&queries, &q_groups, mask, q.kept, &hq, acc)?;
        self.backpropagate_rows(&docs, &d_groups, mask, d.kept, &hd, acc)?;
        let active = |w: &[f32]| {
            median(
                w.chunks(vocab)
                    .map(|r| r.iter().filter(|&&x| x > 0.0).count() as f32)
                    .collect(),
            )
        };
        Ok((l, active(&wq), active(&wd), q_tok + d_tok))
    }

    /// Write `out/adapter.safetensors` from the run's latest checkpoint
    /// (e.g. one brought back from another machine); returns its step.
    pub fn export_latest(&mut self) -> Result<usize> {
        let ck = checkpoint::latest(&self.out)
            .with_context(|| format!("{}: no checkpoint to export", self.out.display()))?;
        let state = checkpoint::restore(&ck, &self.params, &mut self.opt)?;
        super::export::write_adapter(self, state.step, state.elapsed_s, state.tokens_seen)?;
        Ok(state.step)
    }

    /// Run to `cfg.steps`, resuming from the checkpoint under `out` when
    /// `resume`; `stop_after` ends early after that many steps of this call,
    /// with a checkpoint and the adapter of the step reached, as
    /// `max_seconds` does. Returns the step reached.
    /// Step, tokens seen and seconds of the latest checkpoint under `--out`
    /// (zeros without one); a checkpoint of another recipe is refused,
    /// naming the settings that differ.
    fn restore_checkpoint(&mut self, cfg: &TrainConfig) -> Result<(usize, u64, f64)> {
        if let Some(ck) = checkpoint::latest(&self.out) {
            let state = checkpoint::restore(&ck, &self.params, &mut self.opt)?;
            let mut saved = state.config.clone();
            saved.steps = cfg.steps;
            saved.checkpoint_every = cfg.checkpoint_every;
            saved.max_seconds = cfg.max_seconds;
            saved.activation_memory_gb = cfg.activation_memory_gb;
            if saved != *cfg || state.phase != self.phase.name() {
                let json = |c: &TrainConfig| serde_json::to_value(c).unwrap_or_default();
                let mut changed = crate::index::meta::differences(&json(&saved), &json(cfg));
                if state.phase != self.phase.name() {
                    changed.push(format!("phase: {} → {}", state.phase, self.phase.name()));
                }
                bail!("{}: the checkpoint was written by a different {} configuration ({}); resume with the same config or start a new --out", ck.display(), state.phase, changed.join(", "));
            }
            for (input, was) in &state.inputs {
                let now = self.inputs.get(input).map_or("none", String::as_str);
                if now != was {
                    bail!("{}: the run's {input} has changed since this checkpoint (sha256 {was} → {now}); put it back or start a new --out", ck.display());
                }
            }
            return Ok((state.step, state.tokens_seen, state.elapsed_s));
        }
        Ok((0, 0, 0.0))
    }

    /// The contrastive phase's micro-batches (drawn once, cached in the run
    /// directory) or the adaptation phase's packed token stream.
    fn training_data(&self, cfg: &TrainConfig) -> Result<(Vec<super::data::MicroBatch>, Vec<u32>)> {
        let tok = &self.model.tokenizer;
        let work = self.out.clone();
        let (micro_batches, stream) = match self.phase {
            Phase::Contrastive => (
                batches::load_or_draw(cfg, tok, &work, cfg.steps * cfg.grad_accum)?,
                Vec::new(),
            ),
            Phase::Adapt => (
                Vec::new(),
                data::packed_corpus(&cfg.data_dir(), &cfg.corpora, tok, 0)?,
            ),
        };
        if self.phase == Phase::Adapt && stream.len() < cfg.seq_len {
            bail!(
                "corpora {:?} hold {} tokens, fewer than one sequence of seq_len = {}",
                cfg.corpora,
                stream.len(),
                cfg.seq_len
            );
        }
        Ok((micro_batches, stream))
    }
}

/// sha256 of the initial adapter's file and of the teacher's weights.
fn input_digests(
    cfg: &TrainConfig,
    teacher: Option<&super::teacher::Teacher>,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut inputs = std::collections::BTreeMap::new();
    if let Some(p) = &cfg.init_adapter {
        let digest = crate::model::fetch::sha256_file(p)
            .with_context(|| format!("{}: reading the initial adapter", p.display()))?;
        inputs.insert("init_adapter".to_string(), digest);
    }
    if let Some(t) = teacher {
        inputs.insert("teacher".to_string(), t.sha256().to_string());
    }
    Ok(inputs)
}

/// The adapter a run starts from (`init_adapter`), and whether it is
/// trained further in place (same layout). Any other is merged into the
/// base here, so that a new adapter is stacked on top.
fn starting_adapter(
    cfg: &TrainConfig,
    model: &mut LoadedModel,
) -> Result<(Option<(PathBuf, Adapter)>, bool)> {
    let init = match &cfg.init_adapter {
        Some(p) => Some((p.clone(), Adapter::read(p)?)),
        None => None,
    };
    let continues = init
        .as_ref()
        .is_some_and(|(_, a)| super::export::continues_adapter(cfg, a));
    if let Some((p, a)) = &init {
        if a.tensors.contains_key(TERM_SHIFT) && !cfg.learn_term_shift {
            bail!("{}: the adapter has learned per-term shifts; set learn_term_shift = true to train on from it", p.display());
        }
    }
    if let (Some((p, a)), false) = (&init, continues) {
        a.merge_into(&mut model.llama, p)?;
        // The per-term shifts are trained on as a variable.
        model.llama.term_shift = None;
    }
    Ok((init, continues))
}

/// Attach the trainable weights (LoRA or full) to the model, set from the
/// starting adapter when the run continues it.
fn attach_trainable(
    cfg: &TrainConfig,
    model: &mut LoadedModel,
    engine: Engine,
    init: Option<&(PathBuf, Adapter)>,
    continues: bool,
) -> Result<Vec<(String, Var)>> {
    // LoRA keeps the base frozen: on the fused engine its projections
    // run on the fast GEMM.
    let fused = engine == Engine::Cpu;
    model.llama.prepare_for_training(
        fused && cfg.adapter != "full",
        fused,
        cfg.bf16_products(engine),
    )?;
    let params = if cfg.adapter == "full" {
        adapter::attach_full(&mut model.llama, &cfg.targets)?
    } else {
        adapter::attach_low_rank(
            &mut model.llama,
            cfg.lora_rank,
            cfg.lora_alpha,
            &cfg.targets,
            cfg.seed,
        )?
    };
    if params.is_empty() {
        bail!("targets {:?} match no projection of the model", cfg.targets);
    }
    if let (Some((p, a)), true) = (init, continues) {
        let dev = model.llama.device().clone();
        for (name, v) in params.iter().filter(|(n, _)| !n.starts_with("head.")) {
            let t = a
                .tensors
                .get(name)
                .with_context(|| format!("{}: no {name}", p.display()))?;
            v.set(&t.to_device(&dev)?)?;
        }
    }
    Ok(params)
}

/// The contrastive phase's learned head shift and per-term shifts, as
/// trainable variables added to `params` (the per-term shifts start from
/// the adapter being continued, else from corpus statistics).
fn learned_shifts(
    cfg: &TrainConfig,
    phase: Phase,
    model: &LoadedModel,
    init: Option<&Adapter>,
    params: &mut Vec<(String, Var)>,
) -> Result<(Option<Var>, Option<Var>)> {
    let dev = model.llama.device().clone();
    let shift = match (phase, cfg.head(), cfg.learn_shift) {
        (Phase::Contrastive, Head::LogProb { shift }, true) => {
            let v = Var::from_tensor(&Tensor::new(&[shift], &dev)?)?;
            params.push((SHIFT.into(), v.clone()));
            Some(v)
        }
        _ => None,
    };
    let term_shift = match (phase, cfg.learn_term_shift) {
        (Phase::Contrastive, true) => {
            let vocab = model.config().vocab_size;
            let start = match init.and_then(|a| a.tensors.get(TERM_SHIFT)) {
                Some(t) => t.to_device(&dev)?,
                None => initial_term_shift(cfg, &model.tokenizer, vocab)?.to_device(&dev)?,
            };
            let v = Var::from_tensor(&start)?;
            params.push((TERM_SHIFT.into(), v.clone()));
            Some(v)
        }
        _ => None,
    };
    Ok((shift, term_shift))
}
