//! A masked LM's side of encoding (SPLADE): `[CLS] text [SEP]` through
//! BERT or DistilBERT, MLM logits at every token the attention mask keeps,
//! `log(1 + ReLU(·))` (twice with `log1p_relu`), max (or, SPLADE v1, sum)
//! over the tokens, special tokens zeroed where the checkpoint's family does
//! so — exactly sentence-transformers' `SpladePooling` (tested against it).

use candle_core::Tensor;

use super::encoder::{EncodeError, Head};
use super::sparse::SparseVec;
use crate::model::family::MlmModel;
use crate::model::linear::with_f32_slice;

/// Token rows whose logits are held at once for sum pooling (× vocabulary × 4 bytes).
const SUM_CHUNK_ROWS: usize = 256;

fn activate(x: f32, double_log: bool) -> f32 {
    let y = if x > 0.0 { x.ln_1p() } else { 0.0 };
    if double_log {
        y.ln_1p()
    } else {
        y
    }
}

/// One padded forward pass over texts already tokenized (without special
/// tokens) and cut to fit the frame.
pub fn encode_batch(m: &MlmModel, batch: &[&[u32]]) -> Result<Vec<SparseVec>, EncodeError> {
    let Head::Splade {
        sum,
        double_log,
        zero_special,
    } = m.head
    else {
        return Err(EncodeError::Model(crate::model::ModelError::Unsupported(
            format!(
                "{}: a masked LM pools with splade:…, not {}",
                m.identity.id, m.head
            ),
        )));
    };
    let (before, after) = &m.frame;
    let framed: Vec<Vec<u32>> = batch
        .iter()
        .map(|ids| {
            let mut v = before.clone();
            v.extend_from_slice(ids);
            v.extend_from_slice(after);
            v
        })
        .collect();
    let t = framed.iter().map(Vec::len).max().unwrap_or(0);
    let lengths: Vec<usize> = framed.iter().map(Vec::len).collect();
    let mut flat = Vec::with_capacity(batch.len() * t);
    for ids in &framed {
        flat.extend_from_slice(ids);
        flat.extend(std::iter::repeat_n(0u32, t - ids.len()));
    }
    let dev = m.mlm.device();
    let ids = Tensor::from_vec(flat, (batch.len(), t), dev)?;
    let hidden = m.mlm.hidden_states(&ids, &lengths)?;
    let d = hidden.dim(2)?;
    let hidden = hidden.reshape((batch.len() * t, d))?;
    let (mut rows, mut owner) = (Vec::new(), Vec::new());
    for (b, &n) in lengths.iter().enumerate() {
        for p in 0..n {
            rows.push((b * t + p) as u32);
            owner.push(b);
        }
    }
    let rows_t = Tensor::from_vec(rows.clone(), rows.len(), dev)?;
    let pooled = hidden.index_select(&rows_t, 0)?;
    let vocab = m.mlm.config.vocab_size;
    let mut acc = if sum {
        sum_pool(m, &pooled, &owner, batch.len(), double_log)?
    } else {
        // log(1 + ReLU(·)) rises with its argument: pool the logits first.
        let mut maxes = vec![f32::NEG_INFINITY; batch.len() * vocab];
        m.mlm.max_pool(&pooled, &owner, &mut maxes)?;
        maxes.iter().map(|&x| activate(x, double_log)).collect()
    };
    if zero_special {
        for row in acc.chunks_mut(vocab) {
            for &s in &m.special_ids {
                if let Some(x) = row.get_mut(s as usize) {
                    *x = 0.0;
                }
            }
        }
    }
    Ok(acc.chunks(vocab).map(SparseVec::from_dense).collect())
}

/// SPLADE v1: Σ over tokens of the activated logits.
fn sum_pool(
    m: &MlmModel,
    rows: &Tensor,
    owner: &[usize],
    texts: usize,
    double_log: bool,
) -> Result<Vec<f32>, EncodeError> {
    let vocab = m.mlm.config.vocab_size;
    let mut acc = vec![0f32; texts * vocab];
    let mut start = 0;
    while start < owner.len() {
        let n = SUM_CHUNK_ROWS.min(owner.len() - start);
        let logits = m.mlm.logits(&rows.narrow(0, start, n)?)?.contiguous()?;
        with_f32_slice(&logits, |d| {
            for (r, &o) in owner[start..start + n].iter().enumerate() {
                let dst = &mut acc[o * vocab..(o + 1) * vocab];
                for (a, &x) in dst.iter_mut().zip(&d[r * vocab..(r + 1) * vocab]) {
                    *a += activate(x, double_log);
                }
            }
        })?;
        start += n;
    }
    Ok(acc)
}
