//! Fused training ops: candle custom ops whose forward is one of csplade's
//! kernels and whose backward is written out by hand — attention (RoPE, mask,
//! softmax, GQA), RMSNorm and SwiGLU. Built from candle's elementwise ops the
//! same layers make dozens of graph nodes, each allocating and zero-filling
//! its gradient; these make one node each. Tested against that composite
//! (candle autograd) path.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::disjoint::SendPtr;
use super::gemm::{matmul_t, matmul_t_causal, Causal, PackedWeight};
use super::kernels::{self, fast_exp, AttentionShape, RopeTables};
use super::linear::with_f32_slice;

fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    if !l.is_contiguous() {
        candle_core::bail!("fused op: expected a contiguous input");
    }
    let n = l.shape().elem_count();
    Ok(&s.as_slice::<f32>()?[l.start_offset()..l.start_offset() + n])
}

/// Run `f` over the f32 data of `a` and `b`, borrowed (copied only when
/// not contiguous).
fn with2<R>(a: &Tensor, b: &Tensor, f: impl FnOnce(&[f32], &[f32]) -> R) -> Result<R> {
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    with_f32_slice(&a, |a| with_f32_slice(&b, |b| f(a, b)))?
}

/// [`with2`] over three tensors.
fn with3<R>(
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    f: impl FnOnce(&[f32], &[f32], &[f32]) -> R,
) -> Result<R> {
    let c = c.contiguous()?;
    with2(a, b, |a, b| with_f32_slice(&c, |c| f(a, b, c)))?
}

/// Grouped-query attention over a fused `[batch·t, (heads + 2·kv)·d]` Q|K|V,
/// RoPE and mask included → context `[batch·t, heads·d]`.
#[derive(Clone)]
pub struct AttentionOp {
    pub batch: usize,
    pub t: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub lengths: Vec<usize>,
    pub bidirectional: bool,
    pub interleaved: bool,
    /// `[positions, head_dim / 2]`
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl AttentionOp {
    fn shape(&self) -> AttentionShape<'_> {
        AttentionShape {
            batch: self.batch,
            t: self.t,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            lengths: &self.lengths,
            bidirectional: self.bidirectional,
        }
    }

    fn rope(&self) -> RopeTables<'_> {
        RopeTables {
            cos: &self.cos,
            sin: &self.sin,
            interleaved: self.interleaved,
        }
    }

    /// `∂L/∂qkv` from `∂L/∂context`, recomputing the attention pattern.
    /// One task per (sequence, KV group): its query heads, key and value.
    pub fn backward(&self, qkv: &[f32], dctx: &[f32]) -> Vec<f32> {
        let (t, h, kvh, d) = (self.t, self.heads, self.kv_heads, self.head_dim);
        let width = (h + 2 * kvh) * d;
        let rep = h / kvh;
        let scale = 1.0 / (d as f32).sqrt();
        let rope = self.rope();
        let mut dqkv = vec![0f32; self.batch * t * width];
        let ptr = SendPtr(dqkv.as_mut_ptr());
        (0..self.batch * kvh).into_par_iter().for_each(|task| {
            let ptr = &ptr;
            let (bi, g) = (task / kvh, task % kvh);
            let (q, k, v) = self.group_inputs(qkv, bi, g);
            let dc = self.group_dctx(dctx, bi, g);
            let probs = self.group_probs(&q, &k, bi);
            let (dq, dk, dv) = self.group_grads(&q, &k, &v, &dc, &probs);
            for p in 0..t {
                // SAFETY: each task writes only its own (sequence, KV group)
                // slots: query heads g·rep.., key head g, value head g.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(ptr.0.add((bi * t + p) * width), width)
                };
                for j in 0..rep {
                    let head = g * rep + j;
                    let dst = &mut out[head * d..(head + 1) * d];
                    dst.copy_from_slice(&dq[(j * t + p) * d..(j * t + p + 1) * d]);
                    dst.iter_mut().for_each(|x| *x *= scale);
                    rope.apply_inverse(dst, p);
                }
                let dst = &mut out[(h + g) * d..(h + g + 1) * d];
                dst.copy_from_slice(&dk[p * d..(p + 1) * d]);
                rope.apply_inverse(dst, p);
                out[(h + kvh + g) * d..(h + kvh + g + 1) * d]
                    .copy_from_slice(&dv[p * d..(p + 1) * d]);
            }
        });
        dqkv
    }

    /// Sequence `bi`, KV group `g`: scaled rotated queries `[rep·t, d]`,
    /// rotated keys `[t, d]` and values `[t, d]`.
    fn group_inputs(&self, qkv: &[f32], bi: usize, g: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (t, h, kvh, d) = (self.t, self.heads, self.kv_heads, self.head_dim);
        let width = (h + 2 * kvh) * d;
        let rep = h / kvh;
        let scale = 1.0 / (d as f32).sqrt();
        let rope = self.rope();
        let row = |p: usize| &qkv[(bi * t + p) * width..(bi * t + p + 1) * width];
        let mut k = vec![0f32; t * d];
        let mut v = vec![0f32; t * d];
        let mut q = vec![0f32; rep * t * d];
        for p in 0..t {
            let r = row(p);
            k[p * d..(p + 1) * d].copy_from_slice(&r[(h + g) * d..(h + g + 1) * d]);
            rope.apply_forward(&mut k[p * d..(p + 1) * d], p);
            v[p * d..(p + 1) * d].copy_from_slice(&r[(h + kvh + g) * d..(h + kvh + g + 1) * d]);
            for j in 0..rep {
                let head = g * rep + j;
                let dst = &mut q[(j * t + p) * d..(j * t + p + 1) * d];
                dst.copy_from_slice(&r[head * d..(head + 1) * d]);
                rope.apply_forward(dst, p);
                dst.iter_mut().for_each(|x| *x *= scale);
            }
        }
        (q, k, v)
    }

    /// `∂L/∂context` of the query heads of group `g` in sequence `bi`, `[rep·t, d]`.
    fn group_dctx(&self, dctx: &[f32], bi: usize, g: usize) -> Vec<f32> {
        let (t, h, d) = (self.t, self.heads, self.head_dim);
        let rep = h / self.kv_heads;
        let mut dc = vec![0f32; rep * t * d];
        for j in 0..rep {
            let head = g * rep + j;
            for p in 0..t {
                let src = &dctx[(bi * t + p) * h * d + head * d..][..d];
                dc[(j * t + p) * d..(j * t + p + 1) * d].copy_from_slice(src);
            }
        }
        dc
    }

    /// P = softmax(q kᵀ) under sequence `bi`'s mask, `[rep·t, t]`.
    fn group_probs(&self, q: &[f32], k: &[f32], bi: usize) -> Vec<f32> {
        let (t, d) = (self.t, self.head_dim);
        let rep = self.heads / self.kv_heads;
        let mut probs = vec![0f32; rep * t * t];
        let (scores_of, _) = Causal::for_attention(t, self.bidirectional);
        matmul_t_causal(
            q,
            rep * t,
            &PackedWeight::pack(k, t, d),
            &mut probs,
            scores_of,
        );
        kernels::masked_softmax(&mut probs, t, self.lengths[bi], self.bidirectional);
        probs
    }

    /// (dq, dk, dv) of one group, dq still without the query scale.
    fn group_grads(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        dc: &[f32],
        probs: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (t, d) = (self.t, self.head_dim);
        let rep = self.heads / self.kv_heads;
        // dP = dC vᵀ; dS = P ⊙ (dP − Σ_j dP·P).
        let mut ds = vec![0f32; rep * t * t];
        let (columns, depth) = Causal::for_attention(t, self.bidirectional);
        matmul_t_causal(dc, rep * t, &PackedWeight::pack(v, t, d), &mut ds, columns);
        for (dr, pr) in ds.chunks_mut(t).zip(probs.chunks(t)) {
            let dot: f32 = dr.iter().zip(pr).map(|(a, b)| a * b).sum();
            dr.iter_mut()
                .zip(pr)
                .for_each(|(a, &b)| *a = b * (*a - dot));
        }
        // dq = dS k (scaled by the caller); dk = dSᵀ q; dv = Pᵀ dC.
        let mut dq = vec![0f32; rep * t * d];
        let k_packed = PackedWeight::pack_transposed(k, d, t);
        matmul_t_causal(&ds, rep * t, &k_packed, &mut dq, depth);
        let ds_t = transpose(&ds, rep * t, t);
        let mut dk = vec![0f32; t * d];
        matmul_t(
            &ds_t,
            t,
            &PackedWeight::pack_transposed(q, d, rep * t),
            &mut dk,
        );
        let p_t = transpose(probs, rep * t, t);
        let mut dv = vec![0f32; t * d];
        matmul_t(
            &p_t,
            t,
            &PackedWeight::pack_transposed(dc, d, rep * t),
            &mut dv,
        );
        (dq, dk, dv)
    }
}

/// `x [rows, cols]` transposed, in 16 × 16 blocks (each block's reads and
/// writes stay within a few cache lines).
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const BLOCK: usize = 16;
    let mut out = vec![0f32; rows * cols];
    for r0 in (0..rows).step_by(BLOCK) {
        for c0 in (0..cols).step_by(BLOCK) {
            for r in r0..(r0 + BLOCK).min(rows) {
                for c in c0..(c0 + BLOCK).min(cols) {
                    out[c * rows + r] = x[r * cols + c];
                }
            }
        }
    }
    out
}

// Shared output pointer (see `super::disjoint::SendPtr`): each parallel task writes only its own (sequence, KV group) slots of the output, so the shared pointer never carries overlapping writes across threads; the buffer outlives the parallel loop.

impl CustomOp1 for AttentionOp {
    fn name(&self) -> &'static str {
        "csplade-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l)?;
        let ctx = kernels::attention(x, &self.shape(), &self.rope());
        Ok((
            CpuStorage::F32(ctx),
            (self.batch * self.t, self.heads * self.head_dim).into(),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let d = with2(arg, grad, |qkv, dctx| self.backward(qkv, dctx))?;
        Ok(Some(Tensor::from_vec(d, arg.dims(), arg.device())?))
    }
}

/// RMSNorm `y = x / rms(x) · g` over the last dimension, gradient to `x` only
/// (the norm weights stay frozen).
pub struct RmsNormOp {
    pub eps: f32,
}

fn rms_rows(x: &[f32], dim: usize, eps: f32) -> Vec<f32> {
    x.par_chunks(dim)
        .map(|r| 1.0 / (r.iter().map(|v| v * v).sum::<f32>() / dim as f32 + eps).sqrt())
        .collect()
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "csplade-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (slice(s1, l1)?, slice(s2, l2)?);
        let dim = g.len();
        let inv = rms_rows(x, dim, self.eps);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(dim)
            .zip(x.par_chunks(dim))
            .zip(inv.par_iter())
            .for_each(|((yr, xr), &r)| {
                for ((o, &v), &w) in yr.iter_mut().zip(xr).zip(g) {
                    *o = v * r * w;
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        g: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = with3(x, g, grad, |xs, gs, dy| {
            let dim = gs.len();
            let inv = rms_rows(xs, dim, self.eps);
            let mut dx = vec![0f32; xs.len()];
            dx.par_chunks_mut(dim).enumerate().for_each(|(i, out)| {
                let (xr, dr, r) = (
                    &xs[i * dim..(i + 1) * dim],
                    &dy[i * dim..(i + 1) * dim],
                    inv[i],
                );
                // dx = r·g⊙dy − r³/D · x · Σ x⊙g⊙dy
                let dot: f32 = xr.iter().zip(dr).zip(gs).map(|((a, b), c)| a * b * c).sum();
                let c = r * r * r * dot / dim as f32;
                for j in 0..dim {
                    out[j] = r * gs[j] * dr[j] - c * xr[j];
                }
            });
            dx
        })?;
        Ok((Some(Tensor::from_vec(dx, x.dims(), x.device())?), None))
    }
}

fn silu_parts(g: f32) -> (f32, f32) {
    let s = 1.0 / (1.0 + fast_exp(-g));
    (g * s, s * (1.0 + g * (1.0 - s)))
}

/// SwiGLU `silu(gate) ⊙ up` over one `[rows, 2·i]` tensor holding each
/// row's gate in its first half and its up projection in the second (a
/// [`FrozenGroup`]'s output), `[rows, i]`, with the gradient to both halves.
///
/// [`FrozenGroup`]: super::frozen_lora::FrozenGroup
pub struct SwiGluPairOp;

impl CustomOp1 for SwiGluPairOp {
    fn name(&self) -> &'static str {
        "csplade-swiglu-pair"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (rows, width) = l.shape().dims2()?;
        let y = kernels::swiglu(slice(s, l)?, width / 2);
        Ok((CpuStorage::F32(y), (rows, width / 2).into()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (rows, width) = arg.dims2()?;
        let i = width / 2;
        let mut d = vec![0f32; rows * width];
        with2(arg, grad, |gu, dy| {
            d.par_chunks_mut(width.max(1))
                .zip(gu.par_chunks(width.max(1)))
                .zip(dy.par_chunks(i.max(1)))
                .for_each(|((d, row), dy)| {
                    let (g, u) = row.split_at(i);
                    let (dg, du) = d.split_at_mut(i);
                    for j in 0..i {
                        let (silu, dsilu) = silu_parts(g[j]);
                        dg[j] = dy[j] * u[j] * dsilu;
                        du[j] = dy[j] * silu;
                    }
                });
        })?;
        Ok(Some(Tensor::from_vec(d, (rows, width), arg.device())?))
    }
}
