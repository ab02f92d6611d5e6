//! Training objectives with their exact gradients, on dense `[texts × vocab]`
//! expansions and on LM-head logits:
//! - contrastive InfoNCE over in-batch and hard negatives (score = dot
//!   product of sparse vectors) plus FLOPS regularization (SPLADE);
//! - the adaptation phase's causal-LM cross-entropy plus the same
//!   cross-entropy on `log(1 + ReLU(logits))` (CSPLADE §3.2).

use rayon::prelude::*;
use serde::Serialize;

use crate::model::kernels::fast_exp;

/// The parts of one contrastive loss evaluation.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ContrastiveLoss {
    pub total: f32,
    pub infonce: f32,
    pub flops_q: f32,
    pub flops_d: f32,
    /// KL(teacher ‖ student) over each query's documents, when distilling.
    pub distill: f32,
}

/// A teacher's scores for distillation: the loss becomes
/// `(1−β)·InfoNCE + β·KL(softmax(t/τ) ‖ softmax(s))` per query (+ FLOPS),
/// whose gradient with respect to the student's scores is
/// `(softmax(s) − (1−β)·one-hot − β·softmax(t/τ)) / queries`.
#[derive(Clone, Copy, Debug)]
pub struct Distill<'a> {
    /// `[queries × documents]`, row-major, the same pairs as the student's.
    pub scores: &'a [f32],
    /// β in [0, 1].
    pub weight: f32,
    /// τ > 0.
    pub temperature: f32,
}

impl Distill<'_> {
    /// Row `i` of the teacher's distribution `softmax(t/τ)` over `nd` documents.
    pub fn targets(&self, i: usize, nd: usize) -> Vec<f32> {
        let row = &self.scores[i * nd..(i + 1) * nd];
        let t = self.temperature.max(f32::MIN_POSITIVE);
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = row.iter().map(|&x| ((x - max) / t).exp()).collect();
        let sum: f32 = e.iter().sum();
        e.iter().map(|x| x / sum).collect()
    }
}

/// KL(p ‖ softmax(row)) with `lse` the row's log-sum-exp.
fn kl_to(p: &[f32], row: &[f32], lse: f32) -> f32 {
    p.iter()
        .zip(row)
        .filter(|(&pj, _)| pj > 0.0)
        .map(|(&pj, &s)| pj * (pj.ln() - (s - lse)))
        .sum()
}

/// FLOPS(w) = Σ_v (mean_b w[b, v])² for non-negative `w [texts × vocab]`.
pub fn flops(w: &[f32], vocab: usize) -> f32 {
    mean_per_term(w, vocab).iter().map(|m| m * m).sum()
}

fn mean_per_term(w: &[f32], vocab: usize) -> Vec<f32> {
    let texts = (w.len() / vocab).max(1);
    let mut mean = vec![0f32; vocab];
    for row in w.chunks(vocab) {
        for (m, &x) in mean.iter_mut().zip(row) {
            *m += x.abs();
        }
    }
    mean.iter_mut().for_each(|m| *m /= texts as f32);
    mean
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// InfoNCE of queries `wq [nq × vocab]` against documents `wd [nd × vocab]`
/// (query i's positive is document `positive[i]`; every other document is a
/// negative), plus `λ_q·FLOPS(wq) + λ_d·FLOPS(wd)`, with a teacher's term
/// when `teacher` is given (see [`Distill`]). Returns the loss and
/// `(∂L/∂wq, ∂L/∂wd)`.
pub fn contrastive(
    wq: &[f32],
    wd: &[f32],
    vocab: usize,
    positive: &[usize],
    (lambda_q, lambda_d): (f32, f32),
    teacher: Option<&Distill>,
) -> (ContrastiveLoss, Vec<f32>, Vec<f32>) {
    let nq = wq.len() / vocab;
    let nd = wd.len() / vocab;
    let scores: Vec<f32> = (0..nq * nd)
        .into_par_iter()
        .map(|k| {
            let (i, j) = (k / nd, k % nd);
            dot(
                &wq[i * vocab..(i + 1) * vocab],
                &wd[j * vocab..(j + 1) * vocab],
            )
        })
        .collect();
    // ∂L/∂score = (softmax − target) / nq, the target being the one-hot
    // label, mixed with the teacher's distribution when distilling.
    let beta = teacher.map_or(0.0, |t| t.weight);
    let mut dscore = vec![0f32; nq * nd];
    let (mut infonce, mut distill) = (0f32, 0f32);
    for i in 0..nq {
        let row = &scores[i * nd..(i + 1) * nd];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|&s| (s - max).exp()).sum();
        let lse = max + sum.ln();
        infonce += lse - row[positive[i]];
        let soft = teacher.map(|t| t.targets(i, nd));
        if let Some(p) = &soft {
            distill += kl_to(p, row, lse);
        }
        for j in 0..nd {
            let p = (row[j] - lse).exp();
            let onehot = if j == positive[i] { 1.0 } else { 0.0 };
            let target = match &soft {
                Some(t) => (1.0 - beta) * onehot + beta * t[j],
                None => onehot,
            };
            dscore[i * nd + j] = (p - target) / nq as f32;
        }
    }
    infonce /= nq.max(1) as f32;
    distill /= nq.max(1) as f32;
    let mut dq = vec![0f32; wq.len()];
    dq.par_chunks_mut(vocab).enumerate().for_each(|(i, g)| {
        for j in 0..nd {
            let c = dscore[i * nd + j];
            for (x, &d) in g.iter_mut().zip(&wd[j * vocab..(j + 1) * vocab]) {
                *x += c * d;
            }
        }
    });
    let mut dd = vec![0f32; wd.len()];
    dd.par_chunks_mut(vocab).enumerate().for_each(|(j, g)| {
        for i in 0..nq {
            let c = dscore[i * nd + j];
            for (x, &q) in g.iter_mut().zip(&wq[i * vocab..(i + 1) * vocab]) {
                *x += c * q;
            }
        }
    });
    let flops_q = add_flops_grad(wq, vocab, lambda_q, &mut dq);
    let flops_d = add_flops_grad(wd, vocab, lambda_d, &mut dd);
    let loss = ContrastiveLoss {
        total: (1.0 - beta) * infonce + beta * distill + lambda_q * flops_q + lambda_d * flops_d,
        infonce,
        flops_q,
        flops_d,
        distill,
    };
    (loss, dq, dd)
}

/// Adds `λ·∂FLOPS/∂w` to `grad` and returns FLOPS(w). With w ≥ 0,
/// ∂/∂w[b, v] = 2·mean_v / texts.
fn add_flops_grad(w: &[f32], vocab: usize, lambda: f32, grad: &mut [f32]) -> f32 {
    let texts = (w.len() / vocab).max(1);
    let mean = mean_per_term(w, vocab);
    if lambda != 0.0 {
        for (g_row, w_row) in grad.chunks_mut(vocab).zip(w.chunks(vocab)) {
            for ((g, &m), &x) in g_row.iter_mut().zip(&mean).zip(w_row) {
                *g += lambda * 2.0 * m / texts as f32 * x.signum();
            }
        }
    }
    mean.iter().map(|m| m * m).sum()
}

/// SPLADE's FLOPS weight schedule: λ·min(1, step/warmup)².
pub fn flops_weight(lambda: f32, step: usize, warmup: usize) -> f32 {
    if warmup == 0 {
        return lambda;
    }
    let r = (step as f32 / warmup as f32).min(1.0);
    lambda * r * r
}

/// Summed (not averaged) losses of one chunk of adaptation rows.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct AdaptLoss {
    /// Causal-LM cross-entropy, summed over rows.
    pub clm: f64,
    /// The same cross-entropy on log(1 + ReLU(logits)), summed over rows.
    pub relu_clm: f64,
}

/// The adaptation loss of `rows` rows of `logits [rows × vocab]` with next
/// tokens `targets`: CE(logits) + λ·CE(log(1 + ReLU(logits))). Overwrites
/// `logits` with `scale · ∂(loss)/∂logits` and returns the summed parts.
pub fn adapt_rows(
    logits: &mut [f32],
    vocab: usize,
    targets: &[u32],
    lambda: f32,
    scale: f32,
) -> AdaptLoss {
    logits
        .par_chunks_mut(vocab)
        .zip(targets.par_iter())
        .map(|(row, &y)| {
            let y = y as usize;
            let lse = log_sum_exp(row.iter().copied());
            let lse_relu = log_sum_exp(row.iter().map(|&l| relu_log1p(l)));
            let clm = lse - row[y];
            let relu_clm = lse_relu - relu_log1p(row[y]);
            for (v, l) in row.iter_mut().enumerate() {
                let onehot = if v == y { 1.0 } else { 0.0 };
                let g_plain = fast_exp(*l - lse) - onehot;
                let g_relu = if *l > 0.0 {
                    (fast_exp(relu_log1p(*l) - lse_relu) - onehot) / (1.0 + *l)
                } else {
                    0.0
                };
                *l = scale * (g_plain + lambda * g_relu);
            }
            AdaptLoss {
                clm: clm as f64,
                relu_clm: relu_clm as f64,
            }
        })
        .reduce(AdaptLoss::default, |a, b| AdaptLoss {
            clm: a.clm + b.clm,
            relu_clm: a.relu_clm + b.relu_clm,
        })
}

fn relu_log1p(x: f32) -> f32 {
    if x > 0.0 {
        x.ln_1p()
    } else {
        0.0
    }
}

fn log_sum_exp(it: impl Iterator<Item = f32> + Clone) -> f32 {
    let max = it.clone().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = it.map(|x| fast_exp(x - max)).sum();
    max + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(f: &dyn Fn(&[f32]) -> f32, x: &[f32], i: usize) -> f32 {
        let h = 1e-3;
        let mut p = x.to_vec();
        p[i] += h;
        let up = f(&p);
        p[i] -= 2.0 * h;
        let down = f(&p);
        (up - down) / (2.0 * h)
    }

    #[test]
    fn contrastive_gradient_matches_finite_differences() {
        let vocab = 7;
        let wq: Vec<f32> = (0..2 * vocab)
            .map(|i| ((i * 37 % 11) as f32) / 9.0)
            .collect();
        let wd: Vec<f32> = (0..3 * vocab)
            .map(|i| ((i * 53 % 13) as f32) / 10.0)
            .collect();
        let pos = [1, 2];
        // A teacher that prefers other documents than the labels do.
        let teacher_scores = [0.5, 2.0, -1.0, 3.0, 0.0, 1.5];
        let distill = Distill {
            scores: &teacher_scores,
            weight: 0.6,
            temperature: 0.7,
        };
        for teacher in [None, Some(&distill)] {
            let loss_of =
                |q: &[f32], d: &[f32]| contrastive(q, d, vocab, &pos, (0.3, 0.2), teacher).0;
            let (loss, dq, dd) = contrastive(&wq, &wd, vocab, &pos, (0.3, 0.2), teacher);
            assert!(loss.total.is_finite() && loss.infonce > 0.0);
            assert_eq!(loss.distill > 0.0, teacher.is_some(), "{loss:?}");
            let fq = |q: &[f32]| loss_of(q, &wd).total;
            let fd = |d: &[f32]| loss_of(&wq, d).total;
            for i in 0..wq.len() {
                if wq[i] > 0.0 {
                    let n = numeric(&fq, &wq, i);
                    assert!((n - dq[i]).abs() < 2e-3, "dq[{i}] {} vs {n}", dq[i]);
                }
            }
            for i in 0..wd.len() {
                if wd[i] > 0.0 {
                    let n = numeric(&fd, &wd, i);
                    assert!((n - dd[i]).abs() < 2e-3, "dd[{i}] {} vs {n}", dd[i]);
                }
            }
        }
    }

    /// A teacher whose scores are the student's own (τ = 1) is matched
    /// already: KL 0, and with β = 1 no gradient beyond FLOPS's.
    #[test]
    fn a_teacher_that_agrees_with_the_student_pulls_nowhere() {
        let vocab = 5;
        let wq: Vec<f32> = (0..2 * vocab).map(|i| (i % 4) as f32 / 3.0).collect();
        let wd: Vec<f32> = (0..3 * vocab).map(|i| (i % 3) as f32 / 2.0).collect();
        let own: Vec<f32> = (0..6)
            .map(|k| dot(&wq[k / 3 * vocab..][..vocab], &wd[k % 3 * vocab..][..vocab]))
            .collect();
        let same = Distill {
            scores: &own,
            weight: 1.0,
            temperature: 1.0,
        };
        let (loss, dq, dd) = contrastive(&wq, &wd, vocab, &[0, 1], (0.0, 0.0), Some(&same));
        assert!(loss.distill.abs() < 1e-6, "{loss:?}");
        assert!(loss.infonce > 0.0, "the label's term is still measured");
        assert!(dq.iter().chain(&dd).all(|g| g.abs() < 1e-5));
        // A sharper teacher (τ < 1) on the same scores does pull.
        let sharper = Distill {
            temperature: 0.5,
            ..same
        };
        let (loss, dq, _) = contrastive(&wq, &wd, vocab, &[0, 1], (0.0, 0.0), Some(&sharper));
        assert!(loss.distill > 1e-3 && dq.iter().any(|g| g.abs() > 1e-4));
    }

    #[test]
    fn adapt_gradient_matches_finite_differences() {
        let vocab = 9;
        let logits: Vec<f32> = (0..2 * vocab)
            .map(|i| ((i * 29 % 17) as f32 - 8.0) / 3.0)
            .collect();
        let targets = [3u32, 0];
        let total = |l: &[f32]| {
            let mut c = l.to_vec();
            let p = adapt_rows(&mut c, vocab, &targets, 1.0, 1.0);
            (p.clm + p.relu_clm) as f32
        };
        let mut g = logits.clone();
        adapt_rows(&mut g, vocab, &targets, 1.0, 1.0);
        for i in 0..logits.len() {
            if logits[i].abs() > 0.01 {
                let n = numeric(&total, &logits, i);
                assert!((n - g[i]).abs() < 3e-3, "g[{i}] {} vs {n}", g[i]);
            }
        }
    }

    #[test]
    fn flops_warms_up_quadratically() {
        assert_eq!(flops_weight(1.0, 0, 10), 0.0);
        assert!((flops_weight(1.0, 5, 10) - 0.25).abs() < 1e-6);
        assert_eq!(flops_weight(1.0, 50, 10), 1.0);
        assert!((flops(&[1.0, 0.0, 3.0, 2.0], 2) - (4.0 + 1.0)).abs() < 1e-6);
    }
}
