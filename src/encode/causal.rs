//! A causal LM's side of encoding (CSPLADE): the text laid out for the
//! variant, the backbone's hidden states, and the LM head pooled over the
//! pooled positions — through the CPU's fused LM-head kernels, or the
//! device-generic head ([`super::head`]) on a GPU.

use candle_core::Tensor;

use super::encoder::{input_layout, EncodeError, EncoderConfig, Head};
use super::sparse::SparseVec;
use crate::model::linear::with_f32_slice;
use crate::model::LoadedModel;

/// Rows of logits computed at once by the LM head (× vocabulary × 4 bytes).
const HEAD_CHUNK_ROWS: usize = 128;

/// Texts whose pooled scores are held at once by the device-generic head.
const GENERIC_HEAD_TEXTS: usize = 8;

/// One padded forward pass of a causal LM over a batch (Echo lays each text
/// out twice and pools the second copy).
pub fn encode_batch(
    model: &LoadedModel,
    config: &EncoderConfig,
    generic: bool,
    batch: &[&[u32]],
) -> Result<Vec<SparseVec>, EncodeError> {
    let dev = model.llama.device();
    let laid: Vec<(Vec<u32>, usize)> = batch
        .iter()
        .map(|ids| input_layout(config.variant, ids))
        .collect();
    let t = laid.iter().map(|l| l.0.len()).max().unwrap_or(0);
    let lengths: Vec<usize> = laid.iter().map(|l| l.0.len()).collect();
    let mut flat = Vec::with_capacity(batch.len() * t);
    for (ids, _) in &laid {
        flat.extend_from_slice(ids);
        flat.extend(std::iter::repeat_n(0u32, t - ids.len()));
    }
    let ids = Tensor::from_vec(flat, (batch.len(), t), dev)?;
    let hidden = model
        .llama
        .hidden_states(&ids, &lengths, config.variant.mask())?;
    let d = hidden.dim(2)?;
    let hidden = hidden.reshape((batch.len() * t, d))?;
    // Rows to pool, grouped by text.
    let mut rows = Vec::new();
    let mut owner = Vec::new();
    for (b, (ids, start)) in laid.iter().enumerate() {
        for p in *start..ids.len() {
            rows.push((b * t + p) as u32);
            owner.push(b);
        }
    }
    let vocab = model.config().vocab_size;
    let llama = &model.llama;
    if generic {
        let mut per_text = vec![Vec::new(); batch.len()];
        for (&r, &o) in rows.iter().zip(&owner) {
            per_text[o].push(r);
        }
        let w = super::head::sparse_head_values(
            &hidden,
            &per_text,
            llama.lm_head_weight(),
            config.head,
            llama.term_shift.as_ref(),
            GENERIC_HEAD_TEXTS,
        )?;
        return Ok(w.chunks(vocab).map(SparseVec::from_dense).collect());
    }
    let maxes = fused_head_maxima(model, config, &hidden, &rows, &owner, batch.len())?;
    Ok(maxes
        .chunks(vocab)
        .map(|m| {
            let w: Vec<f32> = m
                .iter()
                .map(|&x| if x > 0.0 { x.ln_1p() } else { 0.0 })
                .collect();
            SparseVec::from_dense(&w)
        })
        .collect())
}

/// Per text, every vocabulary entry's head value max-pooled over the text's
/// `rows` of `hidden` (the fused heads: raw, scaled raw, or log-prob with
/// its shift and per-term shifts), before log(1 + ReLU).
fn fused_head_maxima(
    model: &LoadedModel,
    config: &EncoderConfig,
    hidden: &Tensor,
    rows: &[u32],
    owner: &[usize],
    texts: usize,
) -> Result<Vec<f32>, EncodeError> {
    let (dev, llama, vocab) = (
        model.llama.device(),
        &model.llama,
        model.config().vocab_size,
    );
    let rows_t = Tensor::from_vec(rows.to_vec(), rows.len(), dev)?;
    let pooled_hidden = hidden.index_select(&rows_t, 0)?;
    let mut maxes = vec![f32::NEG_INFINITY; texts * vocab];
    match config.head {
        Head::RawLogits => model
            .llama
            .head_max_pool(&pooled_hidden, owner, &mut maxes)?,
        Head::ScaledRaw { scale } => {
            model
                .llama
                .head_max_pool(&pooled_hidden, owner, &mut maxes)?;
            // A positive scale keeps the maximum where it was.
            maxes.iter_mut().for_each(|m| *m *= scale);
        }
        Head::Splade { .. } => {
            return Err(EncodeError::Model(crate::model::ModelError::Unsupported(format!(
                "head {}: SPLADE pooling belongs to masked LMs; a causal LM uses raw, raw:SCALE or logprob:C",
                config.head
            ))))
        }
        Head::LogProb { shift } => {
            let mut start = 0;
            while start < rows.len() {
                let n = HEAD_CHUNK_ROWS.min(rows.len() - start);
                let logits = model
                    .llama
                    .head(&pooled_hidden.narrow(0, start, n)?)?
                    .contiguous()?;
                with_f32_slice(&logits, |data| {
                    crate::model::kernels::logprob_max_pool(
                        data,
                        vocab,
                        &owner[start..start + n],
                        &mut maxes,
                    )
                })?;
                start += n;
            }
            for m in maxes.iter_mut() {
                *m += shift;
            }
            if let Some(b) = &llama.term_shift {
                let b = b.to_vec1::<f32>()?;
                for row in maxes.chunks_mut(vocab) {
                    row.iter_mut().zip(&b).for_each(|(m, s)| *m += s);
                }
            }
        }
    }
    Ok(maxes)
}
