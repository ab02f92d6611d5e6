//! Inference-only kernels on raw f32 slices (no autograd): a vectorizable
//! `exp`, masked row softmax for attention, and SwiGLU. They replace chains of
//! candle ops that each allocate a tensor and call libm's scalar `expf`.

use super::disjoint::SendPtr;
use rayon::prelude::*;

/// `e^x` for f32 within 1e-5 relative error over the range softmax and SiLU use;
/// branch-free so loops over it auto-vectorize.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // e^x = 2^(x·log2 e) = 2^n · 2^f, f ∈ [-0.5, 0.5]
    let t = x * std::f32::consts::LOG2_E;
    // Round to nearest without a libm call (|t| < 2^22 here): keeps the loop vectorizable.
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    let n = (t + MAGIC) - MAGIC;
    let f = t - n;
    // 2^f by a degree-6 minimax-style polynomial (Taylor of e^(f ln 2)).
    let l = std::f32::consts::LN_2;
    let y = f * l;
    let p = 1.0
        + y * (1.0
            + y * (0.5
                + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0 + y * (1.0 / 720.0))))));
    let bits = ((n as i32 + 127) as u32) << 23;
    p * f32::from_bits(bits)
}

/// The attention pattern of one sequence from its scores, in place: rows of
/// `t` scores (a query position `i % t` each; several heads stacked), each
/// softmaxed over the positions it may see — all `len` real tokens when
/// `bidirectional`, else those up to its own. The forward kernel and the
/// training backward (which recomputes it) both use this.
pub fn masked_softmax(scores: &mut [f32], t: usize, len: usize, bidirectional: bool) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { masked_softmax_avx512(scores, t, len, bidirectional) };
    }
    masked_softmax_rows(scores, t, len, bidirectional)
}

/// [`masked_softmax`] compiled for AVX-512, so that its loops run 16 wide.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn masked_softmax_avx512(scores: &mut [f32], t: usize, len: usize, bidirectional: bool) {
    masked_softmax_rows(scores, t, len, bidirectional)
}

#[inline(always)]
fn masked_softmax_rows(scores: &mut [f32], t: usize, len: usize, bidirectional: bool) {
    let len = len.max(1);
    for (i, row) in scores.chunks_mut(t).enumerate() {
        let visible = if bidirectional {
            len
        } else {
            (i % t + 1).min(len)
        };
        softmax_row(row, visible);
    }
}

/// Lanes of the partial maxima and sums in [`softmax_row`]: independent
/// accumulators, so its reductions vectorize.
const LANES: usize = 16;

/// Softmax of `row[..visible]` in place; the rest of the row becomes 0.
#[inline(always)]
pub fn softmax_row(row: &mut [f32], visible: usize) {
    let (keep, blocked) = row.split_at_mut(visible.min(row.len()));
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = keep.chunks_exact(LANES);
    let mut max = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = m.max(v);
        }
    }
    max = lanes.iter().copied().fold(max, f32::max);
    for v in keep.iter_mut() {
        *v = fast_exp(*v - max);
    }
    let mut sums = [0f32; LANES];
    let chunks = keep.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (s, &v) in sums.iter_mut().zip(c) {
            *s += v;
        }
    }
    let inv = 1.0 / (sums.iter().sum::<f32>() + tail);
    for v in keep.iter_mut() {
        *v *= inv;
    }
    blocked.fill(0.0);
}

/// RoPE tables and layout for [`attention`].
pub struct RopeTables<'a> {
    /// `[positions, head_dim / 2]`
    pub cos: &'a [f32],
    pub sin: &'a [f32],
    /// Adjacent pairs (GGUF) instead of rotated halves (HF).
    pub interleaved: bool,
}

impl RopeTables<'_> {
    /// Rotate one head vector at position `pos` by `sign`·θ.
    #[inline]
    fn rotate(&self, x: &mut [f32], pos: usize, sign: f32) {
        let half = x.len() / 2;
        let cos = &self.cos[pos * half..(pos + 1) * half];
        let sin = &self.sin[pos * half..(pos + 1) * half];
        if self.interleaved {
            for i in 0..half {
                let (a, b, s) = (x[2 * i], x[2 * i + 1], sign * sin[i]);
                x[2 * i] = a * cos[i] - b * s;
                x[2 * i + 1] = a * s + b * cos[i];
            }
        } else {
            for i in 0..half {
                let (a, b, s) = (x[i], x[i + half], sign * sin[i]);
                x[i] = a * cos[i] - b * s;
                x[i + half] = b * cos[i] + a * s;
            }
        }
    }

    /// RoPE: rotate by θ.
    #[inline]
    pub fn apply_forward(&self, x: &mut [f32], pos: usize) {
        self.rotate(x, pos, 1.0)
    }

    /// The inverse rotation (by −θ): RoPE's backward pass.
    #[inline]
    pub fn apply_inverse(&self, x: &mut [f32], pos: usize) {
        self.rotate(x, pos, -1.0)
    }
}

/// Shape of one attention call.
pub struct AttentionShape<'a> {
    pub batch: usize,
    pub t: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub lengths: &'a [usize],
    pub bidirectional: bool,
}

/// Grouped-query attention from a fused `[batch·t, (heads + 2·kv_heads)·d]`
/// Q|K|V projection, RoPE included; returns the context `[batch·t, heads·d]`.
/// One task per (sequence, KV head): its query heads are stacked into one
/// GEMM against the packed keys, softmaxed under the mask, then multiplied
/// by the packed values.
pub fn attention(qkv: &[f32], s: &AttentionShape, rope: &RopeTables) -> Vec<f32> {
    use super::gemm::{matmul_t_causal, Causal, PackedWeight};
    let (t, h, kvh, d) = (s.t, s.heads, s.kv_heads, s.head_dim);
    let (scores_of, weights_of) = Causal::for_attention(t, s.bidirectional);
    let width = (h + 2 * kvh) * d;
    let rep = h / kvh;
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0f32; s.batch * t * h * d];
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..s.batch * kvh).into_par_iter().for_each(|task| {
        let out_ptr = &out_ptr;
        let (bi, g) = (task / kvh, task % kvh);
        let row = |p: usize| &qkv[(bi * t + p) * width..(bi * t + p + 1) * width];
        let mut keys = vec![0f32; t * d];
        let mut values = vec![0f32; t * d];
        for p in 0..t {
            let r = row(p);
            let k = &mut keys[p * d..(p + 1) * d];
            k.copy_from_slice(&r[(h + g) * d..(h + g + 1) * d]);
            rope.apply_forward(k, p);
            values[p * d..(p + 1) * d]
                .copy_from_slice(&r[(h + kvh + g) * d..(h + kvh + g + 1) * d]);
        }
        let keys = PackedWeight::pack(&keys, t, d);
        let values = PackedWeight::pack_transposed(&values, d, t);
        let mut q = vec![0f32; rep * t * d];
        for r in 0..rep {
            let head = g * rep + r;
            for p in 0..t {
                let dst = &mut q[(r * t + p) * d..(r * t + p + 1) * d];
                dst.copy_from_slice(&row(p)[head * d..(head + 1) * d]);
                rope.apply_forward(dst, p);
                for x in dst.iter_mut() {
                    *x *= scale;
                }
            }
        }
        let mut scores = vec![0f32; rep * t * t];
        matmul_t_causal(&q, rep * t, &keys, &mut scores, scores_of);
        masked_softmax(&mut scores, t, s.lengths[bi], s.bidirectional);
        let mut ctx = vec![0f32; rep * t * d];
        matmul_t_causal(&scores, rep * t, &values, &mut ctx, weights_of);
        for r in 0..rep {
            let head = g * rep + r;
            for p in 0..t {
                // SAFETY: (sequence bi, head) blocks are disjoint across tasks.
                unsafe {
                    let dst = out_ptr.0.add((bi * t + p) * h * d + head * d);
                    std::ptr::copy_nonoverlapping(ctx.as_ptr().add((r * t + p) * d), dst, d);
                }
            }
        }
    });
    out
}

// Shared output pointer (see `super::disjoint::SendPtr`): each parallel task writes only its own rows of the output buffer, which outlives the parallel loop that shares the pointer.

/// Log-probability pooling: for logits `[rows, vocab]` whose row r belongs to
/// text `owner[r]`, `acc[owner[r] * vocab + v] = max(…, logit[r, v] − lse[r])`
/// where `lse[r]` is the row's log-sum-exp (so the pooled value is the
/// maximum log-probability of v). Parallel over rows, then over vocabulary.
pub fn logprob_max_pool(logits: &[f32], vocab: usize, owner: &[usize], acc: &mut [f32]) {
    let lse: Vec<f32> = logits
        .par_chunks(vocab)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row.iter().map(|&x| fast_exp(x - max)).sum();
            max + sum.ln()
        })
        .collect();
    let texts = owner.iter().max().map_or(0, |&o| o + 1);
    const CHUNK: usize = 2048;
    column_spans(&mut acc[..texts * vocab], vocab, CHUNK)
        .into_par_iter()
        .enumerate()
        .for_each(|(c, mut slices)| {
            let v0 = c * CHUNK;
            for (r, &o) in owner.iter().enumerate() {
                let row = &logits[r * vocab + v0..r * vocab + (v0 + slices[o].len())];
                let l = lse[r];
                for (a, &x) in slices[o].iter_mut().zip(row) {
                    let v = x - l;
                    if v > *a {
                        *a = v;
                    }
                }
            }
        });
}

/// Rows of `width` (`rows`: `[R, width]`) cut into spans of `span`
/// columns and gathered by span: element c holds span c of every row, in
/// row order, so that one parallel task can own a span across all rows.
pub fn column_spans<T>(rows: &mut [T], width: usize, span: usize) -> Vec<Vec<&mut [T]>> {
    let mut by_span: Vec<Vec<&mut [T]>> = (0..width.div_ceil(span)).map(|_| Vec::new()).collect();
    for row in rows.chunks_mut(width) {
        for (c, part) in row.chunks_mut(span).enumerate() {
            by_span[c].push(part);
        }
    }
    by_span
}

/// SwiGLU on a fused `[rows, 2·inter]` gate|up projection: `silu(g) · u`.
pub fn swiglu(gate_up: &[f32], inter: usize) -> Vec<f32> {
    let rows = gate_up.len() / (2 * inter);
    let mut out = vec![0f32; rows * inter];
    out.par_chunks_mut(inter)
        .zip(gate_up.par_chunks(2 * inter))
        .for_each(|(o, gu)| {
            let (g, u) = gu.split_at(inter);
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = g / (1.0 + fast_exp(-g)) * u;
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        let mut x = -80.0f32;
        while x < 80.0 {
            let (a, b) = (fast_exp(x), x.exp());
            assert!(((a - b) / b).abs() < 1e-5, "exp({x}): {a} vs {b}");
            x += 0.173;
        }
        assert_eq!(fast_exp(-1e30), fast_exp(-87.0));
    }

    #[test]
    fn softmax_row_masks_the_tail() {
        let mut s = vec![1.0, 2.0, 3.0];
        softmax_row(&mut s, 1);
        assert_eq!(s, vec![1.0, 0.0, 0.0]);
        let mut s = vec![1.0, 2.0, 3.0];
        softmax_row(&mut s, 2);
        let e = (1.0f32).exp();
        assert!(
            (s[0] - 1.0 / (1.0 + e)).abs() < 1e-6
                && (s[1] - e / (1.0 + e)).abs() < 1e-6
                && s[2] == 0.0
        );
    }

    #[test]
    fn logprob_pooling_matches_log_softmax() {
        let vocab = 5000;
        let mut rng = crate::rng::SplitMix::new(3);
        let logits: Vec<f32> = (0..4 * vocab).map(|_| 8.0 * rng.uniform()).collect();
        let owner = [0, 1, 1, 0];
        let mut acc = vec![f32::NEG_INFINITY; 2 * vocab];
        logprob_max_pool(&logits, vocab, &owner, &mut acc);
        let lse = |r: usize| {
            let row = &logits[r * vocab..(r + 1) * vocab];
            row.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln() as f32
        };
        for v in [0, 1, 2047, 2048, 4999] {
            let want0 = (logits[v] - lse(0)).max(logits[3 * vocab + v] - lse(3));
            let want1 = (logits[vocab + v] - lse(1)).max(logits[2 * vocab + v] - lse(2));
            assert!((acc[v] - want0).abs() < 1e-4 && (acc[vocab + v] - want1).abs() < 1e-4);
        }
    }

    #[test]
    fn swiglu_matches_definition() {
        let gu = vec![1.0, -2.0, 3.0, 4.0];
        let o = swiglu(&gu, 2);
        let silu = |x: f32| x / (1.0 + (-x).exp());
        assert!((o[0] - silu(1.0) * 3.0).abs() < 1e-5);
        assert!((o[1] - silu(-2.0) * 4.0).abs() < 1e-5);
    }
}
