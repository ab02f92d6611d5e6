//! The sparse head as plain candle tensor ops, on any device and with
//! autograd: LM-head scores of each text's pooled positions →
//! (log-softmax for the log-probability head) → max over positions →
//! `+ shift (+ learned per-term shift)` → `log(1 + ReLU(·))`.
//!
//! This is the code the GPU runs, for encoding and for training. On the CPU
//! csplade has faster fused kernels (the LM head fused with max-pooling,
//! `train::pooling`); tests run this path on the CPU against those.

use candle_core::{DType, Device, Result, Tensor, D};

use super::Head;

/// Scores of padding slots: far below any real score, so a max never picks them.
const PADDING: f32 = -1.0e9;

/// Which rows of a `[rows, hidden]` tensor each text pools, padded to the
/// text with the most rows.
pub struct PoolLayout {
    /// `[texts × width]` row indices (padding slots repeat a real row).
    pub index: Tensor,
    /// `[texts, width, 1]`: 0 for real slots, a large negative for padding.
    pub padding: Tensor,
    pub texts: usize,
    pub width: usize,
}

impl PoolLayout {
    /// `rows[i]`: the hidden rows text i pools (at least one each).
    pub fn new(rows: &[Vec<u32>], device: &Device) -> Result<Self> {
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        if width == 0 || rows.iter().any(Vec::is_empty) {
            candle_core::bail!("sparse head: every text needs at least one pooled position");
        }
        let mut index = Vec::with_capacity(rows.len() * width);
        let mut padding = Vec::with_capacity(rows.len() * width);
        for r in rows {
            index.extend_from_slice(r);
            padding.extend(std::iter::repeat_n(0f32, r.len()));
            index.extend(std::iter::repeat_n(r[0], width - r.len()));
            padding.extend(std::iter::repeat_n(PADDING, width - r.len()));
        }
        Ok(Self {
            index: Tensor::from_vec(index, rows.len() * width, device)?,
            padding: Tensor::from_vec(padding, (rows.len(), width, 1), device)?,
            texts: rows.len(),
            width,
        })
    }
}

/// `log_softmax` over the last dimension; the subtracted maximum is a
/// constant for autograd (the result does not depend on it), which saves a
/// pass over the scores in the backward.
pub fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let diff = x.broadcast_sub(&max)?;
    let lse = diff.exp()?.sum_keepdim(D::Minus1)?.log()?;
    diff.broadcast_sub(&lse)
}

/// Expansions `[texts, vocab]` of the texts laid out by `layout` over
/// `hidden [rows, hidden]`, through `lm_head [vocab, hidden]`.
/// `term_shift [vocab]` (learned per-term shifts) applies to the
/// log-probability head only.
pub fn sparse_head(
    hidden: &Tensor,
    layout: &PoolLayout,
    lm_head: &Tensor,
    head: Head,
    term_shift: Option<&Tensor>,
) -> Result<Tensor> {
    let rows = hidden.index_select(&layout.index, 0)?;
    let scores = rows.matmul(&lm_head.t()?)?;
    let vocab = scores.dim(1)?;
    let scores = match head {
        Head::LogProb { .. } => log_softmax_last(&scores)?,
        Head::RawLogits => scores,
        Head::ScaledRaw { scale } => scores.affine(scale as f64, 0.0)?,
        Head::Splade { .. } => {
            candle_core::bail!("{head} pools a masked LM, not a causal LM's head")
        }
    };
    let pooled = scores
        .reshape((layout.texts, layout.width, vocab))?
        .broadcast_add(&layout.padding)?
        .max(1)?;
    let shifted = match head {
        Head::LogProb { shift } => {
            let s = pooled.affine(1.0, shift as f64)?;
            match term_shift {
                Some(b) => s.broadcast_add(&b.unsqueeze(0)?)?,
                None => s,
            }
        }
        _ => pooled,
    };
    shifted.relu()?.affine(1.0, 1.0)?.log()
}

/// [`sparse_head`] in chunks of `chunk` texts without autograd, returned as
/// `[texts × vocab]` f32 on the CPU (encoding).
pub fn sparse_head_values(
    hidden: &Tensor,
    rows: &[Vec<u32>],
    lm_head: &Tensor,
    head: Head,
    term_shift: Option<&Tensor>,
    chunk: usize,
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for part in rows.chunks(chunk.max(1)) {
        let layout = PoolLayout::new(part, hidden.device())?;
        let w = sparse_head(hidden, &layout, lm_head, head, term_shift)?;
        out.extend(w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}
