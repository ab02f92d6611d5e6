//! int8 GEMM for q8_0 weights, `y[M,N] = x[M,K] · Wᵀ`, and the LM head
//! fused with max-pooling, on AVX-512 VNNI or on AVX2.
//!
//! Weights use GGML's q8_0 blocks (32 values, one scale d = max|w|/127, codes
//! round(w/d)) — the same blocks `QTensor::quantize` writes — repacked into
//! 32-column panels where each 32-bit lane holds 4 consecutive codes of one
//! output column. Activations are quantized the same way per row and block
//! on the fly. Each 32-deep block is summed exactly in int32, then scaled
//! into f32 accumulators; the two kernels give identical sums:
//! - **VNNI** (`vpdpbusd`, unsigned × signed bytes): activations shifted to
//!   unsigned (+128); the shift is taken back with per-block column sums.
//! - **AVX2** (`vpmaddubsw` + `vpmaddwd`): |activation| as the unsigned side
//!   and the weight carrying the activation's sign (`vpsignb`), GGML's trick:
//!   pair sums stay within 2·127·127, so the 16-bit step never saturates.

use rayon::prelude::*;

mod kernels;
use crate::model::disjoint::SendPtr;
use kernels::{kernel_avx2, kernel_vnni};

/// Output columns per tile (two 16-lane registers).
const NR: usize = 32;
/// Rows per tile (int32 and f32 accumulators must both fit in registers).
const MR: usize = 6;
/// Values per quantization block.
pub const QK: usize = 32;

/// The int8 microkernel a CPU can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Kernel {
    /// AVX-512 VNNI.
    Vnni,
    /// AVX2 (with FMA for the f32 scaling).
    Avx2,
}

impl Int8Kernel {
    /// The fastest kernel this CPU runs, if any.
    pub fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vnni")
            {
                return Some(Self::Vnni);
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Some(Self::Avx2);
            }
        }
        None
    }

    /// Every kernel this CPU runs (tests compare them).
    pub fn all_here() -> Vec<Self> {
        match Self::detect() {
            Some(Self::Vnni) => vec![Self::Vnni, Self::Avx2],
            Some(Self::Avx2) => vec![Self::Avx2],
            None => Vec::new(),
        }
    }

    /// As `bench` reports it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vnni => "VNNI int8",
            Self::Avx2 => "AVX2 int8",
        }
    }
}

/// Whether an int8 kernel can run here.
pub fn available() -> bool {
    Int8Kernel::detect().is_some()
}

/// GGML's q8_0 rounding of one block: (f16-rounded scale, codes).
#[inline(always)]
pub fn quantize_block(x: &[f32]) -> (f32, [i8; QK]) {
    // Eight independent running maxima, so the reduction vectorizes.
    let mut lanes = [0f32; 8];
    for c in x.chunks(8) {
        for (m, v) in lanes.iter_mut().zip(c) {
            *m = m.max(v.abs());
        }
    }
    let amax = lanes.iter().fold(0f32, |m, &v| m.max(v));
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

/// Activations quantized per row and block, in `MR`-row tiles: per tile
/// `[k/4][MR]` 4-byte code groups and `[block][MR]` scales. VNNI reads
/// `codes` shifted to unsigned; AVX2 reads signed `codes` and their
/// magnitudes `abs`.
struct Activations {
    codes: Vec<u32>,
    abs: Vec<u32>,
    scales: Vec<f32>,
}

fn quantize_activations(x: &[f32], m: usize, k: usize, kernel: Int8Kernel) -> Activations {
    let tiles = m.div_ceil(MR);
    let blocks = k / QK;
    let shifted = kernel == Int8Kernel::Vnni;
    let mut codes = vec![0u32; tiles * (k / 4) * MR];
    let mut abs = vec![0u32; if shifted { 0 } else { codes.len() }];
    let mut scales = vec![0f32; tiles * blocks * MR];
    let per_tile = (k / 4) * MR;
    codes
        .par_chunks_mut(per_tile)
        .zip(scales.par_chunks_mut(blocks * MR))
        .enumerate()
        .for_each(|(t, (c, s))| {
            let rows = MR.min(m - t * MR);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: both kernels need AVX2 (VNNI implies it); one was detected.
            unsafe {
                quantize_rows_avx2(x, k, t * MR, rows, shifted, c, s)
            }
            #[cfg(not(target_arch = "x86_64"))]
            quantize_rows(x, k, t * MR, rows, shifted, c, s)
        });
    if !shifted {
        // Magnitudes of the signed codes, for the unsigned side of `vpmaddubsw`.
        abs.par_iter_mut()
            .zip(codes.par_iter())
            .for_each(|(a, &c)| {
                *a = u32::from_le_bytes(c.to_le_bytes().map(|v| (v as i8).unsigned_abs()))
            });
    }
    Activations { codes, abs, scales }
}

/// [`quantize_rows`] compiled for AVX2 (the crate's baseline is SSE2).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_rows_avx2(
    x: &[f32],
    k: usize,
    r0: usize,
    rows: usize,
    shifted: bool,
    codes: &mut [u32],
    scales: &mut [f32],
) {
    quantize_rows(x, k, r0, rows, shifted, codes, scales)
}

/// Quantize `rows` rows (from `r0`) into one tile; missing rows get code 0
/// and scale 0. `shifted`: codes as unsigned (+128) bytes.
#[inline(always)]
fn quantize_rows(
    x: &[f32],
    k: usize,
    r0: usize,
    rows: usize,
    shifted: bool,
    codes: &mut [u32],
    scales: &mut [f32],
) {
    let blocks = k / QK;
    // i8 → u8 + 128 is a flip of each byte's top bit.
    let flip = if shifted { 0x8080_8080u32 } else { 0 };
    for i in 0..MR {
        if i >= rows {
            let zero = if shifted { 0x8080_8080 } else { 0 };
            for k4 in 0..k / 4 {
                codes[k4 * MR + i] = zero;
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
            for (g, four) in q.chunks_exact(4).enumerate() {
                let bytes = [four[0] as u8, four[1] as u8, four[2] as u8, four[3] as u8];
                codes[(b * QK / 4 + g) * MR + i] = u32::from_le_bytes(bytes) ^ flip;
            }
        }
    }
}

// Shared output pointer (see `crate::model::disjoint::SendPtr`): each parallel task writes a disjoint set of columns of the output, and the output outlives the parallel loop that shares the pointer.

/// Receives each finished tile: (first row, rows, first column, columns,
/// tile values `[MR][NR]`).
type TileSink<'a> = dyn Fn(usize, usize, usize, usize, &[f32]) + Sync + 'a;

/// Run the kernel over every `MR × NR` tile, parallel over column panels
/// (so tasks own disjoint columns), handing each finished tile to `sink` as
/// (first row, rows, first column, columns, tile values `[MR][NR]`).
fn for_each_tile(kernel: Int8Kernel, x: &[f32], m: usize, w: &PackedQ8, sink: &TileSink) {
    let (n, k) = (w.n, w.k);
    assert_eq!(x.len(), m * k, "input size");
    if m == 0 || n == 0 {
        return;
    }
    let tiles = m.div_ceil(MR);
    let blocks = k / QK;
    // Quantize every row tile once.
    let act = quantize_activations(x, m, k, kernel);
    let panels = n.div_ceil(NR);
    let threads = rayon::current_num_threads().max(1);
    let chunks = (4 * threads).min(panels).max(1);
    let per = panels.div_ceil(chunks);
    (0..chunks).into_par_iter().for_each(|c| {
        let mut scratch = [0f32; MR * NR];
        for p in c * per..((c + 1) * per).min(panels) {
            let cols = NR.min(n - p * NR);
            let bc = &w.codes[p * k * NR..(p + 1) * k * NR];
            let bs = &w.scales[p * blocks * NR..(p + 1) * blocks * NR];
            let bsh = &w.shift[p * blocks * NR..(p + 1) * blocks * NR];
            for t in 0..tiles {
                let ac = &act.codes[t * (k / 4) * MR..(t + 1) * (k / 4) * MR];
                let asc = &act.scales[t * blocks * MR..(t + 1) * blocks * MR];
                // SAFETY: `kernel` was detected on this CPU; the slices hold
                // the layouts the kernels read; scratch is MR × NR.
                unsafe {
                    match kernel {
                        Int8Kernel::Vnni => kernel_vnni(
                            blocks,
                            ac.as_ptr(),
                            asc.as_ptr(),
                            bc.as_ptr(),
                            bs.as_ptr(),
                            bsh.as_ptr(),
                            scratch.as_mut_ptr(),
                        ),
                        Int8Kernel::Avx2 => kernel_avx2(
                            blocks,
                            ac.as_ptr(),
                            act.abs[t * (k / 4) * MR..].as_ptr(),
                            asc.as_ptr(),
                            bc.as_ptr(),
                            bs.as_ptr(),
                            scratch.as_mut_ptr(),
                        ),
                    }
                }
                sink(t * MR, MR.min(m - t * MR), p * NR, cols, &scratch);
            }
        }
    });
}

/// `out[m, n] = x[m, k] · Wᵀ`. Panics if [`available`] is false.
pub fn matmul_t(x: &[f32], m: usize, w: &PackedQ8, out: &mut [f32]) {
    let kernel = Int8Kernel::detect().expect("int8 GEMM on a CPU without AVX2 or AVX-512 VNNI");
    matmul_t_with(kernel, x, m, w, out);
}

fn matmul_t_with(kernel: Int8Kernel, x: &[f32], m: usize, w: &PackedQ8, out: &mut [f32]) {
    let n = w.n;
    assert_eq!(out.len(), m * n, "output size");
    let out_ptr = SendPtr(out.as_mut_ptr());
    let out_ptr = &out_ptr;
    for_each_tile(kernel, x, m, w, &|r0, rows, c0, cols, tile| {
        for i in 0..rows {
            // SAFETY: rows r0..r0+rows, columns c0..c0+cols lie inside `out`
            // and belong to this task's panel alone.
            unsafe {
                let dst = out_ptr.0.add((r0 + i) * n + c0);
                std::ptr::copy_nonoverlapping(tile.as_ptr().add(i * NR), dst, cols);
            }
        }
    });
}

/// Fused LM head + max-pooling at int8: for every row r of `x` (a pooled
/// position of text `owner[r]`), `acc[owner[r] * n + j] = max(acc[…], (x · Wᵀ)[r, j])`,
/// without materializing the `[m, n]` logits. Panics if [`available`] is false.
pub fn max_pool_t(x: &[f32], m: usize, owner: &[usize], w: &PackedQ8, acc: &mut [f32]) {
    let kernel = Int8Kernel::detect().expect("int8 GEMM on a CPU without AVX2 or AVX-512 VNNI");
    max_pool_t_with(kernel, x, m, owner, w, acc);
}

fn max_pool_t_with(
    kernel: Int8Kernel,
    x: &[f32],
    m: usize,
    owner: &[usize],
    w: &PackedQ8,
    acc: &mut [f32],
) {
    let n = w.n;
    assert_eq!(owner.len(), m, "owner size");
    let texts = owner.iter().max().map_or(0, |&o| o + 1);
    assert!(acc.len() >= texts * n, "accumulator size");
    let acc_ptr = SendPtr(acc.as_mut_ptr());
    let acc_ptr = &acc_ptr;
    for_each_tile(kernel, x, m, w, &|r0, rows, c0, cols, tile| {
        for i in 0..rows {
            // SAFETY: accumulator columns c0..c0+cols of every text belong
            // to this task's panel alone; `owner` < texts was checked.
            unsafe {
                let dst = acc_ptr.0.add(owner[r0 + i] * n + c0);
                for (j, &v) in tile[i * NR..i * NR + cols].iter().enumerate() {
                    if v > *dst.add(j) {
                        *dst.add(j) = v;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix;

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

    /// One q8_0 and one q4_0 block whose scale is exactly 1, so every code
    /// is worked out by hand from GGML's rounding (q8_0: round half away
    /// from zero; q4_0: min(15, trunc(x/d + 8.5)) − 8 with d = signed
    /// extreme / −8): csplade's own blocks and the bytes of the GGUF blocks
    /// a variant file stores (candle's quantizer) both have these codes.
    #[test]
    fn q8_0_and_q4_0_blocks_have_the_hand_computed_codes() {
        use candle_core::quantized::{GgmlDType, QTensor};
        let mut q8_in = vec![
            127.0f32, -126.6, 0.4, 0.5, -0.5, 1.49, 1.5, -2.5, 2.51, 63.5, -63.5, 100.2, 0.0, -0.0,
            3.0, -3.0,
        ];
        q8_in.extend((16..32).map(|t| t as f32 * 0.25));
        let q8_want: [i8; QK] = [
            127, -127, 0, 1, -1, 1, 2, -3, 3, 64, -64, 100, 0, 0, 3, -3, 4, 4, 5, 5, 5, 5, 6, 6, 6,
            6, 7, 7, 7, 7, 8, 8,
        ];
        let mut q4_in = vec![
            -8.0f32, 7.0, 7.9, 0.49, 0.5, -0.5, -0.51, -7.6, 1.2, -3.0, 3.0, 2.5, -2.5, 0.0,
        ];
        q4_in.extend((14..32).map(|t| (t as f32 - 23.0) * 0.5));
        let q4_want: [i8; QK] = [
            -8, 7, 7, 0, 1, 0, -1, -8, 1, -3, 3, 3, -2, 0, -4, -4, -3, -3, -2, -2, -1, -1, 0, 0, 1,
            1, 2, 2, 3, 3, 4, 4,
        ];
        assert_eq!(quantize_block(&q8_in), (1.0, q8_want));
        assert_eq!(quantize_block_q4(&q4_in), (1.0, q4_want));
        let one = half::f16::from_f32(1.0).to_le_bytes();
        let stored = |x: &[f32], dtype| {
            let t = candle_core::Tensor::new(x, &candle_core::Device::Cpu).unwrap();
            let q = QTensor::quantize(&t.reshape((1, QK)).unwrap(), dtype).unwrap();
            q.data().unwrap().to_vec()
        };
        let mut q8_bytes = one.to_vec();
        q8_bytes.extend(q8_want.iter().map(|&c| c as u8));
        assert_eq!(stored(&q8_in, GgmlDType::Q8_0), q8_bytes);
        // q4_0 packs code j (+8) in the low nibble of byte j, code j + 16 in the high.
        let mut q4_bytes = one.to_vec();
        q4_bytes.extend(
            (0..QK / 2).map(|j| ((q4_want[j] + 8) as u8) | (((q4_want[j + 16] + 8) as u8) << 4)),
        );
        assert_eq!(stored(&q4_in, GgmlDType::Q4_0), q4_bytes);
    }

    /// The kernels this CPU runs; a note (and a SKIP) for VNNI where absent.
    fn kernels() -> Vec<Int8Kernel> {
        let here = Int8Kernel::all_here();
        crate::test_skip::skip_without(here.contains(&Int8Kernel::Vnni), "VNNI int8 GEMM");
        here
    }

    /// Inputs whose blocks hit every saturation edge: random values, a
    /// block of equal magnitudes (every code ±127), zeros and one spike.
    fn inputs(rng: &mut SplitMix, rows: usize, k: usize) -> Vec<f32> {
        (0..rows * k)
            .map(|i| match (i / k + i / QK) % 4 {
                0 => 1.0f32.copysign(rng.uniform()),
                1 => 0.0,
                2 if i % QK == 3 => -40.0,
                _ => rng.uniform(),
            })
            .collect()
    }

    #[test]
    fn matches_block_quantized_reference() {
        let mut rng = SplitMix::new(8);
        for kernel in kernels() {
            for &(m, n, k) in &[(1, 1, 32), (7, 33, 64), (13, 64, 576), (40, 100, 96)] {
                let x = inputs(&mut rng, m, k);
                let w = inputs(&mut rng, n, k);
                for int4 in [false, true] {
                    let wq = if int4 {
                        quantize_block_q4
                    } else {
                        quantize_block
                    };
                    let pw = PackedQ8::pack_as(&w, n, k, int4);
                    let mut out = vec![f32::NAN; m * n];
                    matmul_t_with(kernel, &x, m, &pw, &mut out);
                    // Reference: the same block quantization of both sides, summed in f64.
                    for i in 0..m {
                        for j in 0..n {
                            let mut want = 0f64;
                            for b in 0..k / QK {
                                let (dx, qx) =
                                    quantize_block(&x[i * k + b * QK..i * k + (b + 1) * QK]);
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
                                "{kernel:?} {m}x{n}x{k} int4={int4} [{i},{j}]: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fused_max_pooling_equals_logits_then_max() {
        let mut rng = SplitMix::new(11);
        let (m, n, k) = (23, 70, 128);
        let owner: Vec<usize> = (0..m).map(|r| [0, 0, 2, 1, 2][r % 5]).collect();
        let x = inputs(&mut rng, m, k);
        let w = inputs(&mut rng, n, k);
        let pw = PackedQ8::pack(&w, n, k);
        let mut outs = Vec::new();
        for kernel in kernels() {
            let mut logits = vec![0f32; m * n];
            matmul_t_with(kernel, &x, m, &pw, &mut logits);
            let mut want = vec![f32::NEG_INFINITY; 3 * n];
            for (r, &o) in owner.iter().enumerate() {
                for j in 0..n {
                    want[o * n + j] = want[o * n + j].max(logits[r * n + j]);
                }
            }
            let mut got = vec![f32::NEG_INFINITY; 3 * n];
            max_pool_t_with(kernel, &x, m, &owner, &pw, &mut got);
            assert_eq!(got, want, "{kernel:?}");
            outs.push(got);
        }
        // Both kernels sum the same integers: identical results.
        assert!(outs.windows(2).all(|p| p[0] == p[1]));
    }
}
