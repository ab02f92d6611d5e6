//! The adaptation phase's micro-step (CSPLADE §3.2): causal-LM
//! cross-entropy plus the same cross-entropy on log(1 + ReLU(logits)) over
//! packed corpus sequences, with the logits' gradients computed in chunks of
//! rows on the CPU and joined to candle's autograd through a surrogate.

use anyhow::Result;
use candle_core::Tensor;

use super::run::{median, Trainer};
use super::{data, loss};
use crate::model::AttentionMask;

impl Trainer {
    /// One adaptation micro-batch over packed sequences; returns
    /// (CLM, ReLU-CLM, median active dims of the raw head, tokens).
    pub(super) fn adapt_micro(
        &self,
        stream: &[u32],
        k: usize,
        acc: &mut [Option<Tensor>],
    ) -> Result<(f32, f32, f32, usize)> {
        let cfg = &self.cfg;
        let l = cfg.seq_len;
        let n_seq = (stream.len() / l).max(1);
        let picks = data::batch_indices(cfg.seed, n_seq, cfg.batch, k);
        let seqs: Vec<&[u32]> = picks
            .iter()
            .map(|&i| &stream[i * l..((i + 1) * l).min(stream.len())])
            .collect();
        // Every position but the last predicts the next token.
        let (rows, owner, tokens) = self.hidden_rows(&seqs, AttentionMask::Causal, true)?;
        let mut keep = Vec::new();
        let mut targets = Vec::new();
        let mut pos = 0;
        for s in &seqs {
            for t in 0..s.len() {
                if t + 1 < s.len() {
                    keep.push(pos as u32);
                    targets.push(s[t + 1]);
                }
                pos += 1;
            }
        }
        let dev = rows.device().clone();
        let rows = rows.index_select(&Tensor::from_vec(keep.clone(), keep.len(), &dev)?, 0)?;
        let owner: Vec<usize> = keep.iter().map(|&r| owner[r as usize]).collect();
        let llama = &self.model.llama;
        let vocab = llama.config.vocab_size;
        let detached = rows.detach();
        let n = keep.len();
        let scale = 1.0 / (n as f32 * cfg.grad_accum as f32);
        let mut grad_parts = Vec::new();
        let mut totals = loss::AdaptLoss::default();
        let mut seq_max = vec![f32::NEG_INFINITY; seqs.len() * vocab];
        let mut start = 0;
        while start < n {
            let c = 128.min(n - start);
            let logits = llama.head(&detached.narrow(0, start, c)?)?;
            let mut g = logits.flatten_all()?.to_vec1::<f32>()?;
            for (i, row) in g.chunks(vocab).enumerate() {
                let m = &mut seq_max[owner[start + i] * vocab..(owner[start + i] + 1) * vocab];
                m.iter_mut().zip(row).for_each(|(a, &x)| *a = a.max(x));
            }
            let part = loss::adapt_rows(
                &mut g,
                vocab,
                &targets[start..start + c],
                cfg.lambda_relu,
                scale,
            );
            totals.clm += part.clm;
            totals.relu_clm += part.relu_clm;
            grad_parts.push(llama.head_backward(&Tensor::from_vec(g, (c, vocab), &dev)?)?);
            start += c;
        }
        let grad = Tensor::cat(&grad_parts, 0)?;
        self.accumulate((rows * grad)?.sum_all()?, acc)?;
        let active = median(
            seq_max
                .chunks(vocab)
                .map(|r| r.iter().filter(|&&x| x > 0.0).count() as f32)
                .collect(),
        );
        Ok((
            (totals.clm / n as f64) as f32,
            (totals.relu_clm / n as f64) as f32,
            active,
            tokens,
        ))
    }
}
