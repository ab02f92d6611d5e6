//! The device-generic contrastive step — the code a GPU runs: the backbone
//! through candle's composite ops, the sparse head of [`crate::encode::head`],
//! InfoNCE + FLOPS as tensor ops, and every gradient from candle's autograd.
//!
//! A micro-batch is forwarded in groups of similar length. The first pass
//! keeps no graph and yields every expansion; the loss over the whole batch
//! gives `∂L/∂w`; a second pass per group back-propagates `Σ w ⊙ ∂L/∂w`
//! (gradient caching). Memory then holds one group's graph rather than the
//! batch's, for the price of one more forward pass. On the CPU the same step
//! runs on fused kernels (`train::run`); tests hold the two to each other.

use candle_core::{DType, Result, Tensor, Var};

use super::loss::{ContrastiveLoss, Distill};
use super::run::Trainer;
use crate::encode::encoder::input_layout;
use crate::encode::head::{log_softmax_last, sparse_head, PoolLayout};
use crate::encode::Head;

/// InfoNCE (query i's positive is document i; every other document in the
/// batch is a negative) plus `λ_q·FLOPS(wq) + λ_d·FLOPS(wd)`, as tensors:
/// `(total, infonce, flops_q, flops_d)`.
pub fn contrastive_loss(
    wq: &Tensor,
    wd: &Tensor,
    (lambda_q, lambda_d): (f32, f32),
    teacher: Option<&Distill>,
) -> Result<(Tensor, ContrastiveLoss)> {
    let (nq, nd) = (wq.dim(0)?, wd.dim(0)?);
    let scores = wq.matmul(&wd.t()?)?;
    let logp = log_softmax_last(&scores)?;
    let mut eye = vec![0f32; nq * nd];
    for i in 0..nq.min(nd) {
        eye[i * nd + i] = 1.0;
    }
    let positive = Tensor::from_vec(eye, (nq, nd), wq.device())?;
    let per_query = -1.0 / nq.max(1) as f64;
    let infonce = ((&logp * positive)?.sum_all()? * per_query)?;
    // Expansions are non-negative: FLOPS = Σ_v (mean_b w[b, v])².
    let flops_q = wq.mean(0)?.sqr()?.sum_all()?;
    let flops_d = wd.mean(0)?.sqr()?.sum_all()?;
    let flops = ((&flops_q * lambda_q as f64)? + (&flops_d * lambda_d as f64)?)?;
    let scalar = |t: &Tensor| t.to_dtype(DType::F32)?.to_scalar::<f32>();
    let (total, distill) = match teacher {
        None => ((&infonce + flops)?, 0.0),
        Some(t) => {
            // KL(p ‖ softmax(s)) = −Σ p·log softmax(s) − H(p), H a constant.
            let p: Vec<f32> = (0..nq).flat_map(|i| t.targets(i, nd)).collect();
            let neg_entropy: f32 = p.iter().filter(|&&x| x > 0.0).map(|x| x * x.ln()).sum();
            let p = Tensor::from_vec(p, (nq, nd), wq.device())?;
            let cross = ((&logp * p)?.sum_all()? * per_query)?;
            let neg_entropy = (neg_entropy / nq.max(1) as f32) as f64;
            let distill = cross.affine(1.0, neg_entropy)?;
            let beta = t.weight as f64;
            let mixed = ((&infonce * (1.0 - beta))? + (&distill * beta)?)?;
            ((mixed + flops)?, scalar(&distill)?)
        }
    };
    let loss = ContrastiveLoss {
        total: scalar(&total)?,
        infonce: scalar(&infonce)?,
        flops_q: scalar(&flops_q)?,
        flops_d: scalar(&flops_d)?,
        distill,
    };
    Ok((total, loss))
}

/// The head's shifts as one `[vocab]` tensor on the graph, when any is learned.
fn learned_shift(tr: &Trainer) -> Result<Option<Tensor>> {
    let Head::LogProb { shift } = tr.cfg.head() else {
        return Ok(None);
    };
    let vocab = tr.model.config().vocab_size;
    Ok(match (&tr.shift, &tr.term_shift) {
        (Some(c), Some(b)) => Some(b.as_tensor().broadcast_add(c.as_tensor())?),
        (Some(c), None) => Some(c.as_tensor().broadcast_as(vocab)?.contiguous()?),
        (None, Some(b)) => Some(b.as_tensor().affine(1.0, shift as f64)?),
        (None, None) => None,
    })
}

/// Expansions `[group, vocab]` of `seqs[i]` for i in `group`, on the graph;
/// and the tokens through the backbone.
fn expansions(tr: &Trainer, seqs: &[&[u32]], group: &[usize]) -> Result<(Tensor, usize)> {
    let llama = &tr.model.llama;
    let dev = llama.device();
    let laid: Vec<(Vec<u32>, usize)> = group
        .iter()
        .map(|&i| input_layout(tr.cfg.variant, seqs[i]))
        .collect();
    let t = laid.iter().map(|l| l.0.len()).max().unwrap_or(0);
    let lengths: Vec<usize> = laid.iter().map(|l| l.0.len()).collect();
    let mut flat = Vec::with_capacity(group.len() * t);
    let mut rows = Vec::with_capacity(group.len());
    for (b, (ids, start)) in laid.iter().enumerate() {
        flat.extend_from_slice(ids);
        flat.extend(std::iter::repeat_n(0u32, t - ids.len()));
        rows.push((*start..ids.len()).map(|p| (b * t + p) as u32).collect());
    }
    let ids = Tensor::from_vec(flat, (group.len(), t), dev)?;
    let hidden = llama.hidden_states(&ids, &lengths, tr.cfg.variant.mask())?;
    let hidden = hidden.reshape((group.len() * t, hidden.dim(2)?))?;
    let layout = PoolLayout::new(&rows, dev)?;
    let shift = learned_shift(tr)?;
    let head = match (tr.cfg.head(), &shift) {
        (Head::LogProb { .. }, Some(_)) => Head::LogProb { shift: 0.0 },
        (h, _) => h,
    };
    let w = sparse_head(
        &hidden,
        &layout,
        llama.lm_head_weight(),
        head,
        shift.as_ref(),
    )?;
    Ok((w, lengths.iter().sum()))
}

/// Texts in groups of `size`, longest first (less padding).
fn groups(seqs: &[&[u32]], size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
    order.chunks(size.max(1)).map(<[usize]>::to_vec).collect()
}

/// Every expansion of `seqs` without a graph, `[n, vocab]` in input order.
fn all_expansions(tr: &Trainer, seqs: &[&[u32]], parts: &[Vec<usize>]) -> Result<(Tensor, usize)> {
    let mut ws = Vec::with_capacity(parts.len());
    let mut tokens = 0;
    for g in parts {
        let (w, t) = expansions(tr, seqs, g)?;
        ws.push(w.detach());
        tokens += t;
    }
    let sorted = Tensor::cat(&ws, 0)?;
    // Row r of `sorted` is text order[r]: invert.
    let order: Vec<usize> = parts.iter().flatten().copied().collect();
    let mut inverse = vec![0u32; order.len()];
    for (r, &i) in order.iter().enumerate() {
        inverse[i] = r as u32;
    }
    let inverse = Tensor::from_vec(inverse, order.len(), sorted.device())?;
    Ok((sorted.index_select(&inverse, 0)?, tokens))
}

fn active_median(w: &Tensor) -> Result<f32> {
    let counts = w.gt(0.0)?.to_dtype(DType::F32)?.sum(1)?.to_vec1::<f32>()?;
    Ok(super::run::median(counts))
}

/// One contrastive micro-batch: `docs` holds the positives (document i for
/// query i) then the hard negatives. Parameter gradients × `scale` are added
/// to `acc`; returns (loss, median active terms of queries and documents,
/// tokens through the backbone).
pub fn contrastive_micro(
    tr: &Trainer,
    queries: &[&[u32]],
    docs: &[&[u32]],
    lambdas: (f32, f32),
    teacher: Option<&Distill>,
    scale: f32,
    acc: &mut [Option<Tensor>],
) -> Result<(ContrastiveLoss, f32, f32, usize)> {
    let group = tr.cfg.forward_group;
    let (q_parts, d_parts) = (groups(queries, group), groups(docs, group));
    let (wq, q_tok) = all_expansions(tr, queries, &q_parts)?;
    let (wd, d_tok) = all_expansions(tr, docs, &d_parts)?;
    let (wq, wd) = (Var::from_tensor(&wq)?, Var::from_tensor(&wd)?);
    let (total, loss) = contrastive_loss(wq.as_tensor(), wd.as_tensor(), lambdas, teacher)?;
    let grads = (&total * scale as f64)?.backward()?;
    for (seqs, parts, w) in [(queries, &q_parts, &wq), (docs, &d_parts, &wd)] {
        let Some(dw) = grads.get(w.as_tensor()) else {
            continue;
        };
        for g in parts.iter() {
            let idx = Tensor::from_vec(
                g.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                g.len(),
                dw.device(),
            )?;
            let (w_g, _) = expansions(tr, seqs, g)?;
            let surrogate = (w_g * dw.index_select(&idx, 0)?)?.sum_all()?;
            tr.accumulate(surrogate, acc)?;
        }
    }
    Ok((
        loss,
        active_median(wq.as_tensor())?,
        active_median(wd.as_tensor())?,
        q_tok + d_tok,
    ))
}
