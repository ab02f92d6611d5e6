//! Gradient caching for the CPU engine: a micro-batch is forwarded in
//! groups of similar length; each group's graph is kept for the backward
//! pass while a memory budget lasts, and the others are forwarded again for
//! theirs, so a step never holds more than the budget plus one group's
//! activations (a batch of 8 Echo queries with positives and BM25 negatives
//! fits in 24 GB).

use anyhow::{Context, Result};
use candle_core::Tensor;

use super::run::Trainer;
use crate::encode::encoder::input_layout;
use crate::model::AttentionMask;

/// A micro-batch side's pooled rows, from [`Trainer::pooled_rows`].
#[derive(Default)]
pub(super) struct PooledRows {
    pub rows: Option<Tensor>,
    pub owner: Vec<usize>,
    pub tokens: usize,
    pub kept: Vec<Option<Tensor>>,
}

impl PooledRows {
    pub fn rows(&self) -> Result<Tensor> {
        self.rows.clone().context("no pooled rows")
    }
}

/// Bytes of memory available to new allocations (`MemAvailable`), if the
/// system says.
pub(super) fn available_memory() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Activation bytes one position of a forward group keeps for the
/// backward pass, attention over `t` positions: every layer's saved
/// inputs of the norms, projections, attention and MLP, times 2 for
/// candle's intermediate copies (measured: a batch of 8 Echo queries with
/// 16 documents of 128 tokens peaked at 14.1 GB holding all, 5.0 GB holding
/// one group of 4).
pub fn activation_bytes_per_position(c: &crate::model::Config, t: usize) -> usize {
    let per_layer = 8 * c.hidden_size + 3 * c.intermediate_size + c.num_attention_heads * t;
    per_layer * c.num_hidden_layers * 4 * 2
}

impl Trainer {
    /// Texts in forward groups of `forward_group`, longest first — the
    /// order [`Trainer::hidden_rows`] forwards them in.
    pub(super) fn forward_groups(&self, seqs: &[&[u32]]) -> Vec<Vec<usize>> {
        let variant = self.cfg.variant;
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(input_layout(variant, seqs[i]).0.len()));
        order
            .chunks(self.cfg.forward_group.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// The pooled hidden rows of every text, forwarded group by group
    /// (`[R, hidden]` without a graph, the owning text of each row, tokens),
    /// and per group its rows on the graph while `budget` bytes of kept
    /// activations last (`None`: the group's graph was dropped at once and
    /// its backward pass forwards it again).
    pub(super) fn pooled_rows(
        &self,
        seqs: &[&[u32]],
        groups: &[Vec<usize>],
        mask: AttentionMask,
        budget: &mut usize,
    ) -> Result<PooledRows> {
        let mut out = PooledRows::default();
        let mut parts = Vec::new();
        for g in groups {
            let sub: Vec<&[u32]> = g.iter().map(|&i| seqs[i]).collect();
            let (rows, local, t) = self.hidden_rows(&sub, mask, false)?;
            let longest = sub
                .iter()
                .map(|s| input_layout(self.cfg.variant, s).0.len())
                .max()
                .unwrap_or(0);
            let cost =
                sub.len() * longest * activation_bytes_per_position(self.model.config(), longest);
            parts.push(rows.detach());
            out.kept.push(if cost <= *budget {
                *budget -= cost;
                Some(rows)
            } else {
                None
            });
            out.owner.extend(local.into_iter().map(|j| g[j]));
            out.tokens += t;
        }
        out.rows = Some(Tensor::cat(&parts, 0)?);
        Ok(out)
    }

    /// Back-propagate `Σ rows ⊙ ∂L/∂rows` group by group, `grad` holding
    /// the rows in the order [`Trainer::pooled_rows`] returned them: on the
    /// kept graph, or on a second forward pass of the group (gradient
    /// caching), so memory never holds more than the budget plus one group.
    pub(super) fn backpropagate_rows(
        &self,
        seqs: &[&[u32]],
        groups: &[Vec<usize>],
        mask: AttentionMask,
        kept: Vec<Option<Tensor>>,
        grad: &Tensor,
        acc: &mut [Option<Tensor>],
    ) -> Result<()> {
        let mut offset = 0;
        for (g, kept) in groups.iter().zip(kept) {
            let rows = match kept {
                Some(r) => r,
                None => {
                    let sub: Vec<&[u32]> = g.iter().map(|&i| seqs[i]).collect();
                    self.hidden_rows(&sub, mask, false)?.0
                }
            };
            let n = rows.dim(0)?;
            let surrogate = (rows * grad.narrow(0, offset, n)?)?.sum_all()?;
            self.accumulate(surrogate, acc)?;
            offset += n;
        }
        Ok(())
    }
}
