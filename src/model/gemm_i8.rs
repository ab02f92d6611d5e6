//! int8 GEMM for q8_0 weights, `y[M,N] = x[M,K] · Wᵀ`, with AVX-512 VNNI.
//!
//! Weights use GGML's q8_0 blocks (32 values, one scale d = max|w|/127, codes
//! round(w/d)) — the same blocks `QTensor::quantize` writes — repacked into
//! 32-column panels where each 32-bit lane holds 4 consecutive codes of one
//! output column. Activations are quantized the same way per row and block
//! on the fly, shifted to unsigned (+128) for `vpdpbusd`; the shift is taken
//! back with per-block column sums of the codes. Each 32-deep block is summed
//! exactly in int32, then scaled into f32 accumulators.

use rayon::prelude::*;

/// Output columns per tile (two 16-lane registers).
const NR: usize = 32;
/// Rows per tile (int32 and f32 accumulators must both fit in registers).
const MR: usize = 6;
/// Values per quantization block.
pub const QK: usize = 32;

/// Whether the VNNI kernel can run here.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// GGML's q8_0 rounding of one block: (f16-rounded scale, codes).
pub fn quantize_block(x: &[f32]) -> (f32, [i8; QK]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0i8; QK];
    for (o, &v) in q.iter_mut().zip(x) {
        // roundf (half away from zero) without a libm call.
        let y = v * id;
        *o = (y + 0.5f32.copysign(y)) as i32 as i8;
    }
    (half::f16::from_f32(d).to_f32(), q)
}

/// GGML's q4_0 rounding of one block: the signed extreme maps to -8, codes
/// in -8..=7 (returned as i8 so the int8 kernel can use them directly).
pub fn quantize_block_q4(x: &[f32]) -> (f32, [i8; QK]) {
    let mut amax = 0f32;
    let mut max = 0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0i8; QK];
    for (o, &v) in q.iter_mut().zip(x) {
        *o = ((v * id + 8.5) as i32).min(15) as i8 - 8;
    }
    (half::f16::from_f32(d).to_f32(), q)
}

/// A `[n, k]` weight as q8_0 (or q4_0, widened to int8) codes in VNNI
/// panels (k a multiple of 32).
pub struct PackedQ8 {
    pub n: usize,
    pub k: usize,
    /// Per panel: for each group of 4 k, 32 columns × 4 codes.
    codes: Vec<i8>,
    /// Per panel, per block: 32 column scales.
    scales: Vec<f32>,
    /// Per panel, per block: 32 column sums of codes × 128 (the +128 shift).
    shift: Vec<i32>,
}

impl PackedQ8 {
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        Self::pack_as(w, n, k, false)
    }

    /// `int4`: use q4_0 blocks (codes -8..=7, stored one per byte).
    pub fn pack_as(w: &[f32], n: usize, k: usize, int4: bool) -> Self {
        let quantize = if int4 {
            quantize_block_q4
        } else {
            quantize_block
        };
        assert_eq!(w.len(), n * k);
        assert_eq!(k % QK, 0, "q8_0 needs a depth divisible by 32");
        let panels = n.div_ceil(NR);
        let blocks = k / QK;
        let mut codes = vec![0i8; panels * k * NR];
        let mut scales = vec![0f32; panels * blocks * NR];
        let mut shift = vec![0i32; panels * blocks * NR];
        codes
            .par_chunks_mut(k * NR)
            .zip(
                scales
                    .par_chunks_mut(blocks * NR)
                    .zip(shift.par_chunks_mut(blocks * NR)),
            )
            .enumerate()
            .for_each(|(p, (c, (s, sh)))| {
                for j in 0..NR {
                    let row = p * NR + j;
                    if row >= n {
                        break;
                    }
                    for b in 0..blocks {
                        let (d, q) = quantize(&w[row * k + b * QK..row * k + (b + 1) * QK]);
                        s[b * NR + j] = d;
                        sh[b * NR + j] = 128 * q.iter().map(|&v| v as i32).sum::<i32>();
                        for (t, &v) in q.iter().enumerate() {
                            let kk = b * QK + t;
                            c[(kk / 4) * NR * 4 + j * 4 + kk % 4] = v;
                        }
                    }
                }
            });
        Self {
            n,
            k,
            codes,
            scales,
            shift,
        }
    }

    pub fn bytes(&self) -> usize {
        self.codes.len() + self.scales.len() * 4 + self.shift.len() * 4
    }
}

/// Activations of `MR` rows quantized per block: u8 codes laid out
/// `[k/4][MR]` as 4-byte groups, and `[block][MR]` scales.
fn quantize_rows(
    x: &[f32],
    k: usize,
    r0: usize,
    rows: usize,
    codes: &mut [u32],
    scales: &mut [f32],
) {
    let blocks = k / QK;
    for i in 0..MR {
        if i >= rows {
            for k4 in 0..k / 4 {
                codes[k4 * MR + i] = 0x8080_8080;
            }
            for b in 0..blocks {
                scales[b * MR + i] = 0.0;
            }
            continue;
        }
        let row = &x[(r0 + i) * k..(r0 + i + 1) * k];
        for b in 0..blocks {
            let (d, q) = quantize_block(&row[b * QK..(b + 1) * QK]);
            scales[b * MR + i] = d;
            for g in 0..QK / 4 {
                let u = |t: usize| (q[g * 4 + t] as i32 + 128) as u32;
                codes[(b * QK / 4 + g) * MR + i] = u(0) | (u(1) << 8) | (u(2) << 16) | (u(3) << 24);
            }
        }
    }
}

/// A raw output pointer shared by parallel tasks that write disjoint parts.
struct SendPtr(*mut f32);
// SAFETY: each parallel task writes a disjoint tile of `out`, and `out` outlives the parallel loop that shares the pointer.
unsafe impl Send for SendPtr {}
// SAFETY: as for `Send`: no two threads write the same element, and nothing
// reads through the pointer while the tasks run.
unsafe impl Sync for SendPtr {}

/// `out[m, n] = x[m, k] · Wᵀ`. Panics if [`available`] is false.
pub fn matmul_t(x: &[f32], m: usize, w: &PackedQ8, out: &mut [f32]) {
    assert!(available(), "VNNI GEMM on a CPU without AVX-512 VNNI");
    let (n, k) = (w.n, w.k);
    assert_eq!(x.len(), m * k);
    assert_eq!(out.len(), m * n);
    if m == 0 || n == 0 {
        return;
    }
    let tiles = m.div_ceil(MR);
    let blocks = k / QK;
    // Quantize every row tile once.
    let mut acodes = vec![0u32; tiles * (k / 4) * MR];
    let mut ascales = vec![0f32; tiles * blocks * MR];
    acodes
        .par_chunks_mut((k / 4) * MR)
        .zip(ascales.par_chunks_mut(blocks * MR))
        .enumerate()
        .for_each(|(t, (c, s))| quantize_rows(x, k, t * MR, MR.min(m - t * MR), c, s));
    let panels = n.div_ceil(NR);
    let threads = rayon::current_num_threads().max(1);
    let chunks = (4 * threads).min(panels).max(1);
    let per = panels.div_ceil(chunks);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..chunks).into_par_iter().for_each(|c| {
        let out_ptr = &out_ptr;
        let mut scratch = [0f32; MR * NR];
        for p in c * per..((c + 1) * per).min(panels) {
            let cols = NR.min(n - p * NR);
            let bc = &w.codes[p * k * NR..(p + 1) * k * NR];
            let bs = &w.scales[p * blocks * NR..(p + 1) * blocks * NR];
            let bsh = &w.shift[p * blocks * NR..(p + 1) * blocks * NR];
            for t in 0..tiles {
                let ac = &acodes[t * (k / 4) * MR..(t + 1) * (k / 4) * MR];
                let asc = &ascales[t * blocks * MR..(t + 1) * blocks * MR];
                let rows = MR.min(m - t * MR);
                // SAFETY: the VNNI feature was checked; slices match the layouts above;
                // this task owns columns p*NR .. p*NR+cols of every row.
                unsafe {
                    kernel(
                        blocks,
                        ac.as_ptr(),
                        asc.as_ptr(),
                        bc.as_ptr(),
                        bs.as_ptr(),
                        bsh.as_ptr(),
                        scratch.as_mut_ptr(),
                    );
                    for i in 0..rows {
                        let dst = out_ptr.0.add((t * MR + i) * n + p * NR);
                        std::ptr::copy_nonoverlapping(scratch.as_ptr().add(i * NR), dst, cols);
                    }
                }
            }
        }
    });
}

/// One MR × NR tile over `blocks` blocks of 32.
///
/// # Safety
/// The CPU must have AVX-512F/BW/VNNI; `a`, `asc`, `b`, `bs`, `bsh` hold the
/// packed codes and scales of `blocks` blocks for MR rows and NR columns, and
/// `c` is valid for an MR × NR tile of writes, by no other thread meanwhile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn kernel(
    blocks: usize,
    a: *const u32,
    asc: *const f32,
    b: *const i8,
    bs: *const f32,
    bsh: *const i32,
    c: *mut f32,
) {
    use std::arch::x86_64::*;
    let mut facc = [[_mm512_setzero_ps(); 2]; MR];
    for blk in 0..blocks {
        let mut iacc = [[_mm512_setzero_si512(); 2]; MR];
        for g in 0..QK / 4 {
            let k4 = blk * QK / 4 + g;
            let b0 = _mm512_loadu_si512(b.add(k4 * NR * 4) as *const __m512i);
            let b1 = _mm512_loadu_si512(b.add(k4 * NR * 4 + 64) as *const __m512i);
            let ak = a.add(k4 * MR);
            for (i, row) in iacc.iter_mut().enumerate() {
                let ai = _mm512_set1_epi32(*ak.add(i) as i32);
                row[0] = _mm512_dpbusd_epi32(row[0], ai, b0);
                row[1] = _mm512_dpbusd_epi32(row[1], ai, b1);
            }
        }
        let sh0 = _mm512_loadu_si512(bsh.add(blk * NR) as *const __m512i);
        let sh1 = _mm512_loadu_si512(bsh.add(blk * NR + 16) as *const __m512i);
        let s0 = _mm512_loadu_ps(bs.add(blk * NR));
        let s1 = _mm512_loadu_ps(bs.add(blk * NR + 16));
        for (i, (f, ia)) in facc.iter_mut().zip(iacc.iter()).enumerate() {
            let xs = _mm512_set1_ps(*asc.add(blk * MR + i));
            let v0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(ia[0], sh0));
            let v1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(ia[1], sh1));
            f[0] = _mm512_fmadd_ps(v0, _mm512_mul_ps(s0, xs), f[0]);
            f[1] = _mm512_fmadd_ps(v1, _mm512_mul_ps(s1, xs), f[1]);
        }
    }
    for (i, f) in facc.iter().enumerate() {
        _mm512_storeu_ps(c.add(i * NR), f[0]);
        _mm512_storeu_ps(c.add(i * NR + 16), f[1]);
    }
}

/// # Safety
/// Never callable: [`available`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel(
    _: usize,
    _: *const u32,
    _: *const f32,
    _: *const i8,
    _: *const f32,
    _: *const i32,
    _: *mut f32,
) {
    unreachable!("requires AVX-512 VNNI")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tiny::SplitMix;

    #[test]
    fn blocks_match_ggml() {
        use candle_core::quantized::{GgmlDType, QTensor};
        let mut rng = SplitMix::new(4);
        let v: Vec<f32> = (0..4 * QK).map(|_| 2.0 * rng.uniform()).collect();
        let t =
            candle_core::Tensor::from_vec(v.clone(), (4, QK), &candle_core::Device::Cpu).unwrap();
        for (dtype, f) in [
            (
                GgmlDType::Q8_0,
                quantize_block as fn(&[f32]) -> (f32, [i8; QK]),
            ),
            (GgmlDType::Q4_0, quantize_block_q4),
        ] {
            let back: Vec<f32> = QTensor::quantize(&t, dtype)
                .unwrap()
                .dequantize(&candle_core::Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (b, chunk) in v.chunks(QK).enumerate() {
                let (d, q) = f(chunk);
                for (t, &c) in q.iter().enumerate() {
                    assert_eq!(
                        d * c as f32,
                        back[b * QK + t],
                        "{dtype:?} block {b} value {t}"
                    );
                }
            }
        }
    }

    #[test]
    fn matches_block_quantized_reference() {
        if crate::model::gemm::skip_test_without(available(), "VNNI int8 GEMM") {
            return;
        }
        let mut rng = SplitMix::new(8);
        for &(m, n, k) in &[(1, 1, 32), (7, 33, 64), (13, 64, 576), (40, 100, 96)] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.uniform()).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.uniform()).collect();
            for int4 in [false, true] {
                let wq = if int4 {
                    quantize_block_q4
                } else {
                    quantize_block
                };
                let pw = PackedQ8::pack_as(&w, n, k, int4);
                let mut out = vec![f32::NAN; m * n];
                matmul_t(&x, m, &pw, &mut out);
                // Reference: the same block quantization of both sides, summed in f64.
                for i in 0..m {
                    for j in 0..n {
                        let mut want = 0f64;
                        for b in 0..k / QK {
                            let (dx, qx) = quantize_block(&x[i * k + b * QK..i * k + (b + 1) * QK]);
                            let (dw, qw) = wq(&w[j * k + b * QK..j * k + (b + 1) * QK]);
                            let dot: i32 = qx
                                .iter()
                                .zip(qw.iter())
                                .map(|(&a, &c)| a as i32 * c as i32)
                                .sum();
                            want += dx as f64 * dw as f64 * dot as f64;
                        }
                        let got = out[i * n + j] as f64;
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{m}x{n}x{k} int4={int4} [{i},{j}]: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
