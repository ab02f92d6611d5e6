//! One training step, and the loop of them: each micro-batch's gradients
//! accumulated, clipped, applied at the scheduled learning rates, then
//! reported and checkpointed.

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::Tensor;

use super::{Phase, StepReport, Trainer};
use crate::model::adapter::{SHIFT, TERM_SHIFT};
use crate::train::config::TrainConfig;
use crate::train::data::MicroBatch;
use crate::train::{checkpoint, optim};

impl Trainer {
    /// Train from the start or the last checkpoint until `steps` (or
    /// `stop_after` more), reporting every step; the step reached.
    pub fn run(
        &mut self,
        resume: bool,
        stop_after: Option<usize>,
        mut report: impl FnMut(&StepReport),
    ) -> Result<usize> {
        let cfg = self.cfg.clone();
        let (mut step, mut tokens_seen, elapsed) = match resume {
            true => self.restore_checkpoint(&cfg)?,
            false => (0, 0, 0.0),
        };
        let data = self.training_data(&cfg)?;
        if let Some(t) = self.teacher.as_mut().filter(|_| cfg.teacher_bm25 > 0.0) {
            t.fuse_bm25(cfg.teacher_bm25, &self.model.tokenizer, &data.0);
        }
        let started = Instant::now();
        let first_step = step;
        // Tokens through the backbone in this call (for the rate).
        let mut run_tokens = 0u64;
        while step < cfg.steps && stop_after.is_none_or(|s| step - first_step < s) {
            let step_start = Instant::now();
            let mut sums = self.step_sums(&cfg, step, &data)?;
            let mut rep = sums.report(self.phase, step, &cfg);
            if !rep.loss.is_finite() {
                bail!(
                    "the loss became {} at step {}: nothing was applied; the last checkpoint in {} is intact — lower the learning rate",
                    rep.loss,
                    step + 1,
                    self.out.display()
                );
            }
            let grads = self.gradients(&mut sums)?;
            self.apply(&cfg, step, grads, &mut rep)?;
            step += 1;
            let secs = started.elapsed().as_secs_f64();
            (run_tokens, tokens_seen) = (run_tokens + sums.tokens, tokens_seen + sums.tokens);
            rep.tokens_per_s = run_tokens as f64 / secs.max(1e-9);
            rep.step_tokens = sums.tokens;
            rep.step_seconds = step_start.elapsed().as_secs_f64();
            rep.eta_s = secs / (step - first_step) as f64 * (cfg.steps - step) as f64;
            rep.shift = match &self.shift {
                Some(v) => Some(v.as_tensor().to_vec1::<f32>()?[0]),
                None => None,
            };
            report(&rep);
            let stopping = (cfg.max_seconds > 0.0 && secs >= cfg.max_seconds)
                || stop_after.is_some_and(|s| step - first_step >= s);
            if step % cfg.checkpoint_every.max(1) == 0 || step == cfg.steps || stopping {
                let state = checkpoint::RunState {
                    phase: self.phase.name().into(),
                    step,
                    tokens_seen,
                    elapsed_s: elapsed + secs,
                    config: cfg.clone(),
                    inputs: self.inputs.clone(),
                };
                checkpoint::save(&self.out, &self.params, &self.opt, &state)?;
            }
            if stopping {
                crate::train::export::write_adapter(self, step, elapsed + secs, tokens_seen)?;
                return Ok(step);
            }
        }
        if step == cfg.steps {
            let secs = elapsed + started.elapsed().as_secs_f64();
            crate::train::export::write_adapter(self, step, secs, tokens_seen)?;
        }
        Ok(step)
    }

    /// One step's micro-batches: their gradients summed, their losses,
    /// activity and tokens.
    fn step_sums(
        &self,
        cfg: &TrainConfig,
        step: usize,
        (micro_batches, stream): &(Vec<MicroBatch>, Vec<u32>),
    ) -> Result<StepSums> {
        let mut sums = StepSums {
            acc: vec![None; self.params.len()],
            ..Default::default()
        };
        for a in 0..cfg.grad_accum {
            let k = step * cfg.grad_accum + a;
            let tokens = match self.phase {
                Phase::Contrastive => {
                    let (l, q, d, t) = self.contrastive_micro(
                        &micro_batches[k],
                        step,
                        &mut sums.acc,
                        &mut sums.dshift,
                        &mut sums.dterm,
                    )?;
                    sums.loss += l.total;
                    sums.parts[0] += l.infonce;
                    sums.parts[1] += l.flops_q;
                    sums.parts[2] += l.flops_d;
                    sums.parts[3] += l.distill;
                    (sums.active_q, sums.active_d) = (sums.active_q + q, sums.active_d + d);
                    t
                }
                Phase::Adapt => {
                    let (clm, relu, act, t) = self.adapt_micro(stream, k, &mut sums.acc)?;
                    sums.loss += clm + cfg.lambda_relu * relu;
                    sums.parts[0] += clm;
                    sums.parts[1] += relu;
                    sums.active_q += act;
                    t
                }
            };
            sums.tokens += tokens as u64;
        }
        Ok(sums)
    }

    /// Each parameter's gradient, in parameter order: accumulated by the
    /// backward passes, or the head's shifts computed beside them.
    fn gradients(&self, sums: &mut StepSums) -> Result<Vec<Tensor>> {
        let mut grads = Vec::with_capacity(self.params.len());
        for (i, (name, p)) in self.params.iter().enumerate() {
            let dev = p.as_tensor().device();
            grads.push(
                match (
                    sums.acc[i].take(),
                    sums.dterm.take_if(|_| name == TERM_SHIFT),
                ) {
                    (Some(g), _) => g,
                    (None, Some(d)) => Tensor::from_vec(d, p.as_tensor().dims(), dev)?,
                    (None, None) if name == SHIFT => Tensor::new(&[sums.dshift], dev)?,
                    (None, None) => p.as_tensor().zeros_like()?,
                },
            );
        }
        Ok(grads)
    }

    /// Clip the gradients and take the optimizer step at each parameter
    /// group's scheduled learning rate (recorded in `rep`).
    fn apply(
        &mut self,
        cfg: &TrainConfig,
        step: usize,
        mut grads: Vec<Tensor>,
        rep: &mut StepReport,
    ) -> Result<()> {
        rep.grad_norm = optim::clip_global_norm(&mut grads, cfg.grad_clip)?;
        if !rep.grad_norm.is_finite() {
            bail!(
                "the gradient norm became {} at step {}: nothing was applied; the last checkpoint in {} is intact — lower the learning rate",
                rep.grad_norm,
                step + 1,
                self.out.display()
            );
        }
        let scheduled = |lr| optim::learning_rate(lr, step, cfg.warmup_steps, cfg.steps);
        rep.lr = scheduled(cfg.lr);
        let (shift_lr, term_lr) = (scheduled(cfg.shift_lr), scheduled(cfg.term_shift_lr));
        let lrs: Vec<f64> = self
            .params
            .iter()
            .map(|(n, _)| match n.as_str() {
                SHIFT => shift_lr,
                TERM_SHIFT => term_lr,
                _ => rep.lr,
            })
            .collect();
        self.opt.step(&self.params, &grads, &lrs)?;
        Ok(())
    }
}

/// What one step's micro-batches add up to.
#[derive(Default)]
struct StepSums {
    /// Per parameter, the summed gradient of the backward passes.
    acc: Vec<Option<Tensor>>,
    /// The head's global and per-term shift gradients.
    dshift: f32,
    dterm: Option<Vec<f32>>,
    loss: f32,
    /// InfoNCE, FLOPS on queries, FLOPS on documents; adaptation: CLM, ReLU-CLM.
    parts: [f32; 4],
    active_q: f32,
    active_d: f32,
    tokens: u64,
}

impl StepSums {
    /// The step's report so far: its means over the micro-batches.
    fn report(&self, phase: Phase, step: usize, cfg: &TrainConfig) -> StepReport {
        let m = cfg.grad_accum as f32;
        let p = self.parts.map(|x| x / m);
        StepReport {
            event: "step",
            phase: phase.name(),
            step: step + 1,
            steps: cfg.steps,
            loss: self.loss / m,
            parts: match phase {
                Phase::Contrastive if cfg.distillation().is_some() => serde_json::json!(
                    {"infonce": p[0], "flops_q": p[1], "flops_d": p[2], "distill": p[3]}
                ),
                Phase::Contrastive => {
                    serde_json::json!({"infonce": p[0], "flops_q": p[1], "flops_d": p[2]})
                }
                Phase::Adapt => serde_json::json!({"clm": p[0], "relu_clm": p[1]}),
            },
            active_q: self.active_q / m,
            active_d: self.active_d / m,
            ..Default::default()
        }
    }
}
