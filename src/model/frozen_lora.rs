//! Training's frozen projections and their LoRA updates as one candle op,
//! `y = x Wᵀ + s · (x Aᵀ) Bᵀ`: the frozen product on the packed GEMM and the
//! rank-r update added into the same buffer, with a backward that returns
//! the gradients of x, A and B directly (the rank-r products on the `gemm`
//! crate's kernels, which add into their output). Through candle's ops the
//! same layer costs two matmuls, a scale and an add forward (each a fresh
//! tensor kept for the backward graph, most of them serial): fusing them
//! made a training step about 1.2× faster and halved its peak memory.
//!
//! Projections that read the same input (an attention layer's Q, K and V;
//! an MLP's gate and up) run as one [`FrozenGroup`]: their frozen weights
//! stacked into one packed GEMM, their LoRA factors stacked so that the
//! rank-r products of all of them are one product each way, and the input
//! packed and its gradient formed once instead of once per projection.

use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Module, Result, Shape, Tensor};

use super::gemm;
use super::linear::{with_f32_slice, FrozenMatmul, Linear, LowRank};

/// `x Wᵀ + scale · (x Aᵀ) Bᵀ` for a frozen `W [n, k]` stacked from parts
/// of `widths` rows, trainable `A [P·r, k]` (part p's factor in rows
/// `p·r ..`) and `B [n, r]` (part p's factor in part p's rows).
pub struct FrozenLora {
    frozen: FrozenMatmul,
    widths: Vec<usize>,
    scale: f32,
    /// `x Aᵀ` from the forward pass, reused by the backward pass.
    xa: OnceLock<Vec<f32>>,
}

impl FrozenLora {
    /// `x [rows, k]` through one frozen weight and its update, with
    /// autograd to `x`, A and B.
    pub fn apply(frozen: &FrozenMatmul, low_rank: &LowRank, x: &Tensor) -> Result<Tensor> {
        let widths = vec![frozen.packed().n];
        Self::stacked(frozen, widths, low_rank.scale, &low_rank.a, &low_rank.b, x)
    }

    fn stacked(
        frozen: &FrozenMatmul,
        widths: Vec<usize>,
        scale: f64,
        a: &Tensor,
        b: &Tensor,
        x: &Tensor,
    ) -> Result<Tensor> {
        let op = FrozenLora {
            frozen: frozen.clone(),
            widths,
            scale: scale as f32,
            xa: Default::default(),
        };
        x.contiguous()?
            .apply_op3(&a.contiguous()?, &b.contiguous()?, op)
    }
}

/// Projections of one input multiplied as one (see the module header).
pub struct FrozenGroup {
    frozen: FrozenMatmul,
    widths: Vec<usize>,
}

impl FrozenGroup {
    /// The stacked weights `[W_1; …; W_P]` (`None` where the fast GEMM is
    /// unavailable; `bf16` as for [`FrozenMatmul::new`]).
    pub fn new(weights: &[&Tensor], bf16: bool) -> Result<Option<Self>> {
        let widths = weights
            .iter()
            .map(|w| w.dim(0))
            .collect::<Result<Vec<_>>>()?;
        let stacked = Tensor::cat(weights, 0)?;
        Ok(FrozenMatmul::new(&stacked, bf16)?.map(|frozen| Self { frozen, widths }))
    }

    /// Freeze `projections` of one input for training: as one group on the
    /// fast GEMM, else (`None`) each on its own.
    pub fn freeze(projections: &mut [&mut Linear], bf16: bool) -> Result<Option<Self>> {
        let weights: Vec<&Tensor> = projections.iter().map(|p| &p.weight).collect();
        let group = Self::new(&weights, bf16)?;
        if group.is_none() {
            for p in projections.iter_mut() {
                p.freeze_for_training(bf16)?;
            }
        }
        Ok(group)
    }

    /// `x [rows, k]` through every one of `projections`, `[rows, Σ out]`:
    /// as `group` (their biases added after) where they were frozen as one
    /// ([`FrozenGroup::freeze`]), else each projection's output side by side.
    pub fn project(group: Option<&Self>, projections: &[&Linear], x: &Tensor) -> Result<Tensor> {
        let Some(group) = group else {
            let parts = projections.iter().map(|p| p.forward(x));
            return Tensor::cat(&parts.collect::<Result<Vec<_>>>()?, 1);
        };
        let low_ranks: Vec<_> = projections.iter().map(|p| p.low_rank.as_ref()).collect();
        let y = group.apply(&low_ranks, x)?;
        if projections.iter().all(|p| p.bias.is_none()) {
            return Ok(y);
        }
        let biases = projections
            .iter()
            .map(|p| match &p.bias {
                Some(b) => Ok(b.clone()),
                None => Tensor::zeros(p.out_dim(), DType::F32, x.device()),
            })
            .collect::<Result<Vec<_>>>()?;
        y.broadcast_add(&Tensor::cat(&biases, 0)?)
    }

    /// `x [rows, k]` through every part, `[rows, Σ widths]`, each part's
    /// LoRA update (`low_ranks[p]`, if any) added; autograd to `x` and the
    /// factors. Parts without one add nothing; the others must share their
    /// rank and scale, as [`super::adapter::attach_low_rank`] gives them.
    pub fn apply(&self, low_ranks: &[Option<&LowRank>], x: &Tensor) -> Result<Tensor> {
        if low_ranks.len() != self.widths.len() {
            candle_core::bail!(
                "frozen group: {} updates for {} parts",
                low_ranks.len(),
                self.widths.len()
            );
        }
        let Some(first) = low_ranks.iter().flatten().next() else {
            return self.frozen.apply(x);
        };
        let (r, k) = first.a.dims2()?;
        let dev = x.device();
        let mut a_parts = Vec::new();
        let mut b_parts = Vec::new();
        for (lr, &n) in low_ranks.iter().zip(&self.widths) {
            match lr {
                Some(lr) if lr.a.dims2()? == (r, k) && lr.scale == first.scale => {
                    a_parts.push(lr.a.to_dtype(DType::F32)?);
                    b_parts.push(lr.b.to_dtype(DType::F32)?);
                }
                Some(_) => {
                    candle_core::bail!("frozen group: LoRA updates of different ranks or scales")
                }
                None => {
                    a_parts.push(Tensor::zeros((r, k), DType::F32, dev)?);
                    b_parts.push(Tensor::zeros((n, r), DType::F32, dev)?);
                }
            }
        }
        let (a, b) = (Tensor::cat(&a_parts, 0)?, Tensor::cat(&b_parts, 0)?);
        FrozenLora::stacked(&self.frozen, self.widths.clone(), first.scale, &a, &b, x)
    }
}

/// The f32 data of a contiguous CPU storage under `layout`, with its 2-D
/// shape.
fn matrix<'a>(s: &'a CpuStorage, l: &Layout) -> Result<(&'a [f32], usize, usize)> {
    let (rows, cols) = l.shape().dims2()?;
    if !l.is_contiguous() {
        candle_core::bail!("frozen-lora: expected contiguous inputs");
    }
    let start = l.start_offset();
    Ok((
        &s.as_slice::<f32>()?[start..start + rows * cols],
        rows,
        cols,
    ))
}

/// A strided view of an f32 matrix: data, row stride, column stride.
#[derive(Clone, Copy)]
struct View<'a>(&'a [f32], usize, usize);

impl<'a> View<'a> {
    /// `[rows, cols]` stored row by row.
    fn rows(d: &'a [f32], cols: usize) -> Self {
        View(d, cols, 1)
    }

    /// The transpose of a `[rows, cols]` matrix stored row by row.
    fn t(d: &'a [f32], cols: usize) -> Self {
        View(d, 1, cols)
    }

    /// Whether reading it as `[rows, cols]` stays within its data.
    fn reaches(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.1 + (cols - 1) * self.2 < self.0.len()
    }
}

/// `dst [m, n] (row stride ld) = (dst if accumulate, else 0) + scale · lhs
/// [m, k] · rhs [k, n]` on the `gemm` crate's kernels (chosen for the CPU at
/// run time), on the rayon threads.
fn product(
    (dst, ld): (&mut [f32], usize),
    accumulate: bool,
    lhs: View,
    rhs: View,
    (m, k, n): (usize, usize, usize),
    scale: f32,
) {
    let dst_reaches = m == 0 || n == 0 || (ld >= n && dst.len() >= (m - 1) * ld + n);
    assert!(
        dst_reaches && lhs.reaches(m, k) && rhs.reaches(k, n),
        "frozen-lora: shapes"
    );
    let threads = rayon::current_num_threads().max(1);
    // SAFETY: every offset the kernel reads or writes is within the slices
    // (checked above), and `dst` does not alias `lhs` or `rhs`.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ld as isize,
            accumulate,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            scale,
            false,
            false,
            false,
            ::gemm::Parallelism::Rayon(threads),
        );
    }
}

/// `scale · lhs [m, k] · rhs [k, n]` in a new buffer.
fn new_product(lhs: View, rhs: View, dims: (usize, usize, usize), scale: f32) -> Vec<f32> {
    let mut dst = vec![0f32; dims.0 * dims.2];
    product((&mut dst, dims.2), false, lhs, rhs, dims, scale);
    dst
}

impl FrozenLora {
    /// Each part's first output column and width.
    fn parts(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        self.widths.iter().enumerate().scan(0, |off, (p, &w)| {
            let at = *off;
            *off += w;
            Some((p, at, w))
        })
    }

    /// `x Aᵀ`, `[m, P·r]`.
    fn x_a(&self, x: &[f32], a: &[f32], (m, k, pr): (usize, usize, usize)) -> Vec<f32> {
        new_product(View::rows(x, k), View::t(a, k), (m, k, pr), 1.0)
    }
}

impl CustomOp3 for FrozenLora {
    fn name(&self) -> &'static str {
        "frozen-lora"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, m, k) = matrix(s1, l1)?;
        let (a, pr, ka) = matrix(s2, l2)?;
        let (b, n, r) = matrix(s3, l3)?;
        let w = self.frozen.packed();
        let parts = self.widths.len();
        if ka != k
            || w.k != k
            || w.n != n
            || pr != parts * r
            || self.widths.iter().sum::<usize>() != n
        {
            candle_core::bail!(
                "frozen-lora: x {m}×{k}, A {pr}×{ka}, B {n}×{r}, W {}×{} in {parts} parts",
                w.n,
                w.k
            );
        }
        let mut out = vec![0f32; m * n];
        gemm::matmul_t(x, m, w, &mut out);
        // out[:, part p] += s · (x A_pᵀ) B_pᵀ
        let xa = self.x_a(x, a, (m, k, pr));
        for (p, at, width) in self.parts() {
            let (lhs, rhs) = (View(&xa[p * r..], pr, 1), View::t(&b[at * r..], r));
            product(
                (&mut out[at..], n),
                true,
                lhs,
                rhs,
                (m, r, width),
                self.scale,
            );
        }
        // Kept for the backward pass (no-op if a forward ran before).
        let _ = self.xa.set(xa);
        Ok((CpuStorage::F32(out), (m, n).into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (m, k) = x.dims2()?;
        let (n, r) = b.dims2()?;
        let pr = a.dim(0)?;
        let g = g.contiguous()?;
        let (dx, da, db) = with_f32_slice(&g, |g| {
            with_f32_slice(x, |x| {
                with_f32_slice(a, |a| {
                    with_f32_slice(b, |b| self.gradients(g, x, a, b, (m, k, n, r, pr)))
                })
            })
        })????;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (m, k), dev)?),
            Some(Tensor::from_vec(da, (pr, k), dev)?),
            Some(Tensor::from_vec(db, (n, r), dev)?),
        ))
    }
}

impl FrozenLora {
    /// `(dx, dA, dB)` from `g = ∂L/∂y`: with `G = [g_1 B_1, …, g_P B_P]`
    /// (`[m, P·r]`), dx = g W + s G A, dA = s Gᵀ x and dB_p = s g_pᵀ (x A_pᵀ).
    fn gradients(
        &self,
        g: &[f32],
        x: &[f32],
        a: &[f32],
        b: &[f32],
        (m, k, n, r, pr): (usize, usize, usize, usize, usize),
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let s = self.scale;
        let mut gb = vec![0f32; m * pr];
        for (p, at, width) in self.parts() {
            let (lhs, rhs) = (View(&g[at..], n, 1), View::rows(&b[at * r..], r));
            product((&mut gb[p * r..], pr), false, lhs, rhs, (m, width, r), 1.0);
        }
        let mut dx = vec![0f32; m * k];
        gemm::matmul_t(g, m, self.frozen.packed_t(), &mut dx);
        let (lhs, rhs) = (View::rows(&gb, pr), View::rows(a, k));
        product((&mut dx, k), true, lhs, rhs, (m, pr, k), s);
        let da = new_product(View::t(&gb, pr), View::rows(x, k), (pr, m, k), s);
        let recomputed;
        let xa = match self.xa.get() {
            Some(xa) if xa.len() == m * pr => xa,
            _ => {
                recomputed = self.x_a(x, a, (m, k, pr));
                &recomputed
            }
        };
        let mut db = vec![0f32; n * r];
        for (p, at, width) in self.parts() {
            let (lhs, rhs) = (View(&g[at..], 1, n), View(&xa[p * r..], pr, 1));
            product((&mut db[at * r..], r), false, lhs, rhs, (width, m, r), s);
        }
        (dx, da, db)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::*;

    fn random(seed: u64, dims: (usize, usize)) -> Tensor {
        let v = crate::model::adapter::uniform(seed, dims.0 * dims.1, 1.0);
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    fn close(p: &Tensor, q: &Tensor, what: &str) {
        let (p, q): (Vec<f32>, Vec<f32>) = (
            p.flatten_all().unwrap().to_vec1().unwrap(),
            q.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(p.len(), q.len(), "{what}");
        for (u, v) in p.iter().zip(&q) {
            assert!(
                (u - v).abs() <= 1e-4 * (1.0 + v.abs()),
                "{what}: {u} vs {v}"
            );
        }
    }

    /// `x Wᵀ + s (x Aᵀ) Bᵀ` through candle's own ops.
    fn composite(x: &Tensor, w: &Tensor, lr: Option<&LowRank>) -> Tensor {
        let y = x.matmul(&w.t().unwrap()).unwrap();
        let Some(lr) = lr else { return y };
        let update = x
            .matmul(&lr.a.t().unwrap())
            .unwrap()
            .matmul(&lr.b.t().unwrap())
            .unwrap();
        (y + (update * lr.scale).unwrap()).unwrap()
    }

    /// Forward and the gradients of x, A and B against candle's own ops on
    /// ragged shapes (no dimension a multiple of a SIMD width).
    #[test]
    fn fused_lora_matches_candle_ops_forward_and_backward() {
        let (m, k, n, r) = (7, 37, 53, 3);
        let w = random(1, (n, k));
        let Some(frozen) = FrozenMatmul::new(&w, false).unwrap() else {
            assert!(!gemm::available(), "the packed GEMM runs here");
            return;
        };
        let x = Var::from_tensor(&random(2, (m, k))).unwrap();
        let a = Var::from_tensor(&random(3, (r, k))).unwrap();
        let b = Var::from_tensor(&random(4, (n, r))).unwrap();
        let lr = LowRank {
            a: a.as_tensor().clone(),
            b: b.as_tensor().clone(),
            scale: 2.5,
        };
        let g = random(5, (m, n));
        let fused = FrozenLora::apply(&frozen, &lr, x.as_tensor()).unwrap();
        let plain = composite(x.as_tensor(), &w, Some(&lr));
        close(&fused, &plain, "forward");
        let gf = (fused * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (plain * &g).unwrap().sum_all().unwrap().backward().unwrap();
        for (v, what) in [(&x, "dx"), (&a, "dA"), (&b, "dB")] {
            close(
                gf.get(v.as_tensor()).unwrap(),
                gp.get(v.as_tensor()).unwrap(),
                what,
            );
        }
    }

    /// Three projections of one input as a group — the middle one without
    /// an update, the widths ragged — against each one through candle's
    /// ops, forward and the gradients of x and every factor.
    #[test]
    fn grouped_projections_match_each_one_through_candle_ops() {
        let (m, k, r) = (9, 37, 3);
        let widths = [53, 19, 21];
        let ws: Vec<Tensor> = (0..3)
            .map(|p| random(10 + p, (widths[p as usize], k)))
            .collect();
        let Some(group) = FrozenGroup::new(&ws.iter().collect::<Vec<_>>(), false).unwrap() else {
            assert!(!gemm::available(), "the packed GEMM runs here");
            return;
        };
        let x = Var::from_tensor(&random(2, (m, k))).unwrap();
        let vars: Vec<(Var, Var)> = [0usize, 2]
            .iter()
            .map(|&p| {
                let a = Var::from_tensor(&random(20 + p as u64, (r, k))).unwrap();
                let b = Var::from_tensor(&random(30 + p as u64, (widths[p], r))).unwrap();
                (a, b)
            })
            .collect();
        let lr = |(a, b): &(Var, Var)| LowRank {
            a: a.as_tensor().clone(),
            b: b.as_tensor().clone(),
            scale: 1.5,
        };
        let lrs = [Some(lr(&vars[0])), None, Some(lr(&vars[1]))];
        let fused = group
            .apply(&[lrs[0].as_ref(), None, lrs[2].as_ref()], x.as_tensor())
            .unwrap();
        let parts: Vec<Tensor> = (0..3)
            .map(|p| composite(x.as_tensor(), &ws[p], lrs[p].as_ref()))
            .collect();
        let plain = Tensor::cat(&parts, 1).unwrap();
        close(&fused, &plain, "forward");
        let g = random(5, (m, widths.iter().sum()));
        let gf = (fused * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (plain * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let mut checked = vec![(&x, "dx")];
        for (a, b) in &vars {
            checked.extend([(a, "dA"), (b, "dB")]);
        }
        for (v, what) in checked {
            close(
                gf.get(v.as_tensor()).unwrap(),
                gp.get(v.as_tensor()).unwrap(),
                what,
            );
        }
    }
}
