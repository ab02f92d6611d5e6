//! The sparse head with its gradient: max-pooling of the LM-head scores over
//! a text's pooled positions, `w = log(1 + ReLU(m + shift))`, and the way back
//! from `∂L/∂w` to the hidden states.
//!
//! candle never sees the `[positions × vocabulary]` scores: the forward pass
//! keeps, per text and vocabulary entry, only the maximum and the position
//! that produced it, so the backward pass is a sparse scatter of LM-head rows
//! (plus, for the log-probability head, each winning position's softmax
//! pulled back through its log-sum-exp).

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use crate::encode::Head;
use crate::model::kernels::{column_spans, fast_exp};
use crate::model::linear::with_f32_slice;
use crate::model::Llama;

/// Rows of scores computed at once (× vocabulary × 4 bytes).
const CHUNK_ROWS: usize = 128;

/// The pooled vectors of a batch of texts and what the backward pass needs.
pub struct Pooled {
    pub texts: usize,
    pub vocab: usize,
    /// `[texts × vocab]`: `max_t score[t, v]` (before the shift).
    pub max: Vec<f32>,
    /// `[texts × vocab]`: the pooled row that produced each maximum.
    pub argmax: Vec<u32>,
    /// Per pooled row, the log-sum-exp of its logits (log-probability head).
    pub lse: Option<Vec<f32>>,
    /// The shift added before the ReLU (0 for the raw head).
    pub shift: f32,
    /// Learned per-vocabulary shifts added with it (log-probability head).
    pub term_shift: Option<Vec<f32>>,
}

impl Pooled {
    /// `max + shift (+ term shift)` of entry `i` of `[texts × vocab]`.
    fn pre_activation(&self, i: usize) -> f32 {
        let b = self.term_shift.as_ref().map_or(0.0, |t| t[i % self.vocab]);
        self.max[i] + self.shift + b
    }

    /// `w = log(1 + ReLU(max + shift (+ term shift)))`, `[texts × vocab]`.
    pub fn weights(&self) -> Vec<f32> {
        (0..self.max.len())
            .map(|i| {
                let x = self.pre_activation(i);
                if x > 0.0 {
                    x.ln_1p()
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// Fold logit rows `first_row ..` (their log-sum-exps `lse`, 0 for the
/// raw head; `owner` their texts) into each text's running maximum and
/// its row, in parallel over vocabulary spans: each task owns one span of
/// every text's row.
fn fold_max(
    logits: &[f32],
    (lse, first_row): (&[f32], usize),
    owner: &[usize],
    vocab: usize,
    (max, argmax): (&mut [f32], &mut [u32]),
) {
    const SPAN: usize = 4096;
    column_spans(max, vocab, SPAN)
        .into_par_iter()
        .zip(column_spans(argmax, vocab, SPAN))
        .enumerate()
        .for_each(|(span, (mut maxima, mut rows))| {
            let v0 = span * SPAN;
            for (i, (&l, &o)) in lse.iter().zip(owner).enumerate() {
                let (m, a) = (&mut maxima[o], &mut rows[o]);
                let row = &logits[i * vocab + v0..i * vocab + v0 + m.len()];
                for ((m, a), &x) in m.iter_mut().zip(a.iter_mut()).zip(row) {
                    let x = x - l;
                    if x > *m {
                        *m = x;
                        *a = (first_row + i) as u32;
                    }
                }
            }
        });
}

/// What the way back returns besides `∂L/∂rows`.
pub struct ShiftGrads {
    /// `∂L/∂shift` (the scalar C).
    pub shift: f32,
    /// `∂L/∂term_shift[v]`, when the pooling had per-term shifts.
    pub term_shift: Option<Vec<f32>>,
}

fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| fast_exp(x - max)).sum();
    max + sum.ln()
}

/// Pool `rows [R, hidden]` (each owned by text `owner[r]`) through the LM
/// head; `term_shift [vocab]` applies with the log-probability head.
pub fn pool(
    llama: &Llama,
    rows: &Tensor,
    owner: &[usize],
    texts: usize,
    head: Head,
    term_shift: Option<Vec<f32>>,
) -> Result<Pooled> {
    let vocab = llama.config.vocab_size;
    let r_total = rows.dim(0)?;
    if owner.len() != r_total || owner.iter().any(|&o| o >= texts) {
        candle_core::bail!(
            "pool: {} owners for {r_total} rows of {texts} texts",
            owner.len()
        );
    }
    let mut max = vec![f32::NEG_INFINITY; texts * vocab];
    let mut argmax = vec![0u32; texts * vocab];
    let logprob = matches!(head, Head::LogProb { .. });
    let mut lse_all = Vec::with_capacity(if logprob { r_total } else { 0 });
    let mut start = 0;
    while start < r_total {
        let n = CHUNK_ROWS.min(r_total - start);
        let logits = llama.head(&rows.narrow(0, start, n)?)?.contiguous()?;
        with_f32_slice(&logits, |data| {
            let lse: Vec<f32> = if logprob {
                data.par_chunks(vocab).map(log_sum_exp).collect()
            } else {
                vec![0.0; n]
            };
            let running = (&mut max[..], &mut argmax[..]);
            fold_max(
                data,
                (&lse, start),
                &owner[start..start + n],
                vocab,
                running,
            );
            if logprob {
                lse_all.extend_from_slice(&lse);
            }
        })?;
        start += n;
    }
    let shift = match head {
        Head::LogProb { shift } => shift,
        Head::RawLogits => 0.0,
        other => candle_core::bail!("training pools with raw or logprob:C heads, not {other}"),
    };
    Ok(Pooled {
        texts,
        vocab,
        max,
        argmax,
        lse: logprob.then_some(lse_all),
        shift,
        term_shift: if logprob { term_shift } else { None },
    })
}

/// The way back: given `∂L/∂w` (`[texts × vocab]`), returns `∂L/∂rows`
/// (`[R, hidden]`) and the shifts' gradients.
pub fn backward(
    llama: &Llama,
    rows: &Tensor,
    pooled: &Pooled,
    dw: &[f32],
) -> Result<(Tensor, ShiftGrads)> {
    let vocab = pooled.vocab;
    let (r_total, hidden) = rows.dims2()?;
    if dw.len() != pooled.texts * vocab {
        candle_core::bail!(
            "pool backward: gradient of {} for {} texts",
            dw.len(),
            pooled.texts
        );
    }
    let head = llama.lm_head_weight().contiguous()?;
    let mut grad = vec![0f32; r_total * hidden];
    // Per pooled row, −Σ ∂L/∂m over the entries it won (log-probability head).
    let mut lse_coef = vec![0f32; r_total];
    let mut dshift = 0f32;
    let mut dterm = pooled.term_shift.as_ref().map(|_| vec![0f32; vocab]);
    with_f32_slice(&head, |w| {
        for (i, &g) in dw.iter().enumerate() {
            let x = pooled.pre_activation(i);
            if x <= 0.0 || g == 0.0 {
                continue;
            }
            let dm = g / (1.0 + x);
            dshift += dm;
            let v = i % vocab;
            if let Some(d) = dterm.as_mut() {
                d[v] += dm;
            }
            let r = pooled.argmax[i] as usize;
            let dst = &mut grad[r * hidden..(r + 1) * hidden];
            for (d, &wv) in dst.iter_mut().zip(&w[v * hidden..(v + 1) * hidden]) {
                *d += dm * wv;
            }
            lse_coef[r] -= dm;
        }
    })?;
    let mut grad = Tensor::from_vec(grad, (r_total, hidden), rows.device())?;
    if let Some(lse) = &pooled.lse {
        grad = (grad + normaliser_backward(llama, rows, lse, &lse_coef, vocab)?)?;
    }
    Ok((
        grad,
        ShiftGrads {
            shift: dshift,
            term_shift: dterm,
        },
    ))
}

/// The log-probability head's normaliser on the way back: for the rows
/// that won anything, `coef_r · ∂lse_r/∂h_r = coef_r · softmax(logits_r) · W`
/// (`[R, hidden]`, zero for the other rows).
fn normaliser_backward(
    llama: &Llama,
    rows: &Tensor,
    lse: &[f32],
    lse_coef: &[f32],
    vocab: usize,
) -> Result<Tensor> {
    let (r_total, hidden) = rows.dims2()?;
    let active: Vec<u32> = (0..r_total as u32)
        .filter(|&r| lse_coef[r as usize] != 0.0)
        .collect();
    let mut pulled = vec![0f32; r_total * hidden];
    for chunk in active.chunks(CHUNK_ROWS) {
        let idx = Tensor::from_vec(chunk.to_vec(), chunk.len(), rows.device())?;
        let logits = llama.head(&rows.index_select(&idx, 0)?)?.contiguous()?;
        let mut probs = logits.flatten_all()?.to_vec1::<f32>()?;
        probs
            .par_chunks_mut(vocab)
            .zip(chunk.par_iter())
            .for_each(|(row, &r)| {
                let (l, c) = (lse[r as usize], lse_coef[r as usize]);
                for p in row.iter_mut() {
                    *p = c * fast_exp(*p - l);
                }
            });
        let probs = Tensor::from_vec(probs, (chunk.len(), vocab), rows.device())?;
        let back = llama
            .head_backward(&probs)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for (j, &r) in chunk.iter().enumerate() {
            let r = r as usize;
            pulled[r * hidden..(r + 1) * hidden]
                .copy_from_slice(&back[j * hidden..(j + 1) * hidden]);
        }
    }
    Tensor::from_vec(pulled, (r_total, hidden), rows.device())
}
