//! f32 GEMM for inference, `y[M,N] = x[M,K] · Wᵀ` with the weight `W[N,K]`
//! packed once into 32-column panels. On CPUs with AVX-512 a 12×32 register
//! microkernel does the work (candle's `gemm` dependency only uses 256-bit FMA
//! on stable Rust, about half of such a CPU's peak); with AVX2 the same tile
//! runs as four 6×16 quarters, so the fused attention and LM-head kernels
//! built on it run there too. Elsewhere callers fall back to candle's matmul.

use std::ops::Range;

use super::disjoint::SendPtr;
use rayon::prelude::*;

/// Output columns per microkernel tile (two 16-lane registers).
pub const NR: usize = 32;
/// Rows per microkernel tile.
pub const MR: usize = 12;
/// Bytes of packed activations per task (sized for L2).
const A_BLOCK_BYTES: usize = 768 * 1024;

/// A weight `[n, k]` repacked as `ceil(n / 32)` panels of `k × 32` values
/// (panel p holds rows `32p .. 32p + 32`, k-major, zero padded), stored as
/// f32 or as f16 (half the bytes; widened to f32 in registers).
pub struct PackedWeight {
    pub n: usize,
    pub k: usize,
    panels: Panels,
}

enum Panels {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

#[derive(Clone, Copy)]
enum PanelPtr {
    F32(*const f32),
    F16(*const u16),
}

impl PackedWeight {
    /// Pack a row-major `[n, k]` weight, keeping f16 copies of the values
    /// when `half` is set.
    pub fn pack_as(w: &[f32], n: usize, k: usize, half: bool) -> Self {
        let f = Self::pack(w, n, k);
        if !half {
            return f;
        }
        let Panels::F32(v) = &f.panels else { return f };
        let h: Vec<u16> = v
            .par_iter()
            .map(|&x| half::f16::from_f32(x).to_bits())
            .collect();
        Self {
            n,
            k,
            panels: Panels::F16(h),
        }
    }

    /// Pack a row-major `[n, k]` weight.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight size");
        let np = n.div_ceil(NR);
        let mut panels = vec![0f32; np * k * NR];
        panels
            .par_chunks_mut(k * NR)
            .enumerate()
            .for_each(|(p, panel)| {
                for j in 0..NR {
                    let row = p * NR + j;
                    if row >= n {
                        break;
                    }
                    let src = &w[row * k..(row + 1) * k];
                    for (kk, &v) in src.iter().enumerate() {
                        panel[kk * NR + j] = v;
                    }
                }
            });
        Self {
            n,
            k,
            panels: Panels::F32(panels),
        }
    }

    /// Bytes held by the packed values.
    pub fn bytes(&self) -> usize {
        match &self.panels {
            Panels::F32(v) => v.len() * 4,
            Panels::F16(v) => v.len() * 2,
        }
    }

    fn panel(&self, p: usize) -> PanelPtr {
        let off = p * self.k * NR;
        match &self.panels {
            Panels::F32(v) => PanelPtr::F32(v[off..].as_ptr()),
            Panels::F16(v) => PanelPtr::F16(v[off..].as_ptr()),
        }
    }
}

/// Whether a fast kernel can run on this CPU: AVX-512, or AVX2 with FMA
/// and F16C (for f16 panels).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx512()
            || (std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// `out[m, n] = x[m, k] · Wᵀ`. Panics if [`available`] is false.
pub fn matmul_t(x: &[f32], m: usize, w: &PackedWeight, out: &mut [f32]) {
    assert!(available(), "packed GEMM on a CPU without AVX-512 or AVX2");
    let (n, k) = (w.n, w.k);
    assert_eq!(x.len(), m * k, "input size");
    assert_eq!(out.len(), m * n, "output size");
    if m == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(NR);
    let mc = (A_BLOCK_BYTES / (4 * k) / MR).max(1) * MR;
    let m_blocks = m.div_ceil(mc);
    let threads = rayon::current_num_threads().max(1);
    // Enough independent tasks for every thread: split columns when rows are few.
    let n_chunks = if m_blocks >= 2 * threads {
        1
    } else {
        (2 * threads).div_ceil(m_blocks).min(panels)
    };
    let panels_per_chunk = panels.div_ceil(n_chunks);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..m_blocks * n_chunks).into_par_iter().for_each(|task| {
        let (mb, nc) = (task / n_chunks, task % n_chunks);
        let p0 = nc * panels_per_chunk;
        let p1 = (p0 + panels_per_chunk).min(panels);
        let r0 = mb * mc;
        let rows = mc.min(m - r0);
        let out_ptr = &out_ptr;
        block(x, r0..r0 + rows, w, p0..p1, out_ptr.0);
    });
}

/// Fused LM head + max-pooling: for every row r of `x` (a pooled position
/// owned by text `owner[r]`), `acc[owner[r] * n + j] = max(acc[…], (x · Wᵀ)[r, j])`,
/// without ever materializing the `[m, n]` logits. Work is split over
/// columns only, so no two tasks touch the same accumulator.
pub fn max_pool_t(x: &[f32], m: usize, owner: &[usize], w: &PackedWeight, acc: &mut [f32]) {
    assert!(available(), "packed GEMM on a CPU without AVX-512 or AVX2");
    let (n, k) = (w.n, w.k);
    assert_eq!(x.len(), m * k, "input size");
    assert_eq!(owner.len(), m, "owner size");
    let texts = owner.iter().max().map_or(0, |&o| o + 1);
    assert!(acc.len() >= texts * n, "accumulator size");
    if m == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(NR);
    let chunks = (4 * rayon::current_num_threads().max(1)).min(panels);
    let per = panels.div_ceil(chunks);
    let acc_ptr = SendPtr(acc.as_mut_ptr());
    let tiles = m.div_ceil(MR);
    let mut apack = vec![0f32; tiles * MR * k];
    pack_rows(x, k, 0, m, &mut apack);
    (0..chunks).into_par_iter().for_each(|c| {
        let acc_ptr = &acc_ptr;
        let mut scratch = [0f32; MR * NR];
        for p in c * per..((c + 1) * per).min(panels) {
            let bp = w.panel(p);
            let cols = NR.min(n - p * NR);
            for t in 0..tiles {
                let ap = &apack[t * MR * k..(t + 1) * MR * k];
                // SAFETY: scratch is MR × NR; the accumulator columns
                // p*NR .. p*NR+cols belong to this task alone.
                unsafe {
                    kernel(k, ap.as_ptr(), bp, scratch.as_mut_ptr(), NR);
                    for i in 0..MR.min(m - t * MR) {
                        let o = owner[t * MR + i];
                        let dst = acc_ptr.0.add(o * n + p * NR);
                        for j in 0..cols {
                            let v = scratch[i * NR + j];
                            if v > *dst.add(j) {
                                *dst.add(j) = v;
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Pack `rows` rows of `x` (from `r0`) into MR-row micro-panels, k-major.
fn pack_rows(x: &[f32], k: usize, r0: usize, rows: usize, apack: &mut [f32]) {
    for t in 0..rows.div_ceil(MR) {
        let dst = &mut apack[t * MR * k..(t + 1) * MR * k];
        let valid = MR.min(rows - t * MR);
        let base = (r0 + t * MR) * k;
        if valid == MR {
            for (kk, d) in dst.chunks_exact_mut(MR).enumerate() {
                for (i, v) in d.iter_mut().enumerate() {
                    *v = x[base + i * k + kk];
                }
            }
        } else {
            for (kk, d) in dst.chunks_exact_mut(MR).enumerate() {
                for (i, v) in d.iter_mut().enumerate() {
                    *v = if i < valid { x[base + i * k + kk] } else { 0.0 };
                }
            }
        }
    }
}

// Shared output pointer (see `super::disjoint::SendPtr`): each parallel task writes a disjoint rectangle of `out` (see `block`), and `out` outlives the parallel loop that shares the pointer.

/// One row block × a range of column panels. Each task writes a disjoint
/// rectangle of `out`. A is packed once for the whole depth; each tile runs
/// the full depth in registers, so C is written exactly once.
fn block(
    x: &[f32],
    row_range: Range<usize>,
    w: &PackedWeight,
    panels: Range<usize>,
    out: *mut f32,
) {
    let (k, ldc) = (w.k, w.n);
    let (r0, rows) = (row_range.start, row_range.len());
    let tiles = rows.div_ceil(MR);
    let mut apack = vec![0f32; tiles * MR * k];
    pack_rows(x, k, r0, rows, &mut apack);
    for p in panels {
        let bp = w.panel(p);
        let cols = NR.min(w.n - p * NR);
        for t in 0..tiles {
            let ap = &apack[t * MR * k..(t + 1) * MR * k];
            let r = r0 + t * MR;
            let valid_rows = MR.min(r0 + rows - r);
            // SAFETY: the tile lies inside this task's rectangle of `out`
            // (rows r .. r + valid_rows, columns p*NR .. p*NR + cols).
            unsafe {
                let c = out.add(r * ldc + p * NR);
                tile(k, ap, bp, c, ldc, valid_rows, cols);
            }
        }
    }
}

/// One MR × NR tile; partial tiles go through a scratch buffer.
///
/// # Safety
/// [`available`] must hold; `a` holds `kc × MR` packed values, `b` a
/// panel of `kc × NR`, and `c` is valid for writes of `rows` rows of `cols`
/// values at stride `ldc`, written by no other thread meanwhile.
unsafe fn tile(
    kc: usize,
    a: &[f32],
    b: PanelPtr,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    if rows == MR && cols == NR {
        kernel(kc, a.as_ptr(), b, c, ldc);
        return;
    }
    let mut scratch = [0f32; MR * NR];
    kernel(kc, a.as_ptr(), b, scratch.as_mut_ptr(), NR);
    for i in 0..rows {
        for j in 0..cols {
            *c.add(i * ldc + j) = scratch[i * NR + j];
        }
    }
}

/// # Safety
/// As for [`tile`], with a full MR × NR tile at `c`.
#[cfg(target_arch = "x86_64")]
unsafe fn kernel(kc: usize, a: *const f32, b: PanelPtr, c: *mut f32, ldc: usize) {
    match (b, has_avx512()) {
        (PanelPtr::F32(b), true) => kernel_avx512::<false>(kc, a, b as *const u8, c, ldc),
        (PanelPtr::F16(b), true) => kernel_avx512::<true>(kc, a, b as *const u8, c, ldc),
        (PanelPtr::F32(b), false) => kernel_avx2::<false>(kc, a, b as *const u8, c, ldc),
        (PanelPtr::F16(b), false) => kernel_avx2::<true>(kc, a, b as *const u8, c, ldc),
    }
}

/// # Safety
/// Never callable: [`available`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel(_kc: usize, _a: *const f32, _b: PanelPtr, _c: *mut f32, _ldc: usize) {
    unreachable!("matmul_t requires AVX-512 or AVX2")
}

/// The 12×32 register kernel; `HALF` selects f16 panels (widened with
/// `vcvtph2ps`) instead of f32 ones. `b` points at the panel's values.
///
/// # Safety
/// The CPU must have AVX-512F; `a` is valid for `kc × MR` reads, `b` for
/// `kc × NR` values of the panel's type, and `c` for an MR × NR tile of
/// writes at stride `ldc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_avx512<const HALF: bool>(
    kc: usize,
    a: *const f32,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
) {
    use std::arch::x86_64::*;
    let load = |at: usize| {
        if HALF {
            _mm512_cvtph_ps(_mm256_loadu_si256(b.add(2 * at) as *const __m256i))
        } else {
            _mm512_loadu_ps(b.add(4 * at) as *const f32)
        }
    };
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for kk in 0..kc {
        let b0 = load(kk * NR);
        let b1 = load(kk * NR + 16);
        let ak = a.add(kk * MR);
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*ak.add(i));
            row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        let ci = c.add(i * ldc);
        _mm512_storeu_ps(ci, row[0]);
        _mm512_storeu_ps(ci.add(16), row[1]);
    }
}

/// The same 12×32 tile with 256-bit registers: four 6×16 quarters, each
/// with 12 accumulators, two weight registers and a broadcast (15 of the 16
/// registers), each running the whole depth.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; pointers as for [`kernel_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel_avx2<const HALF: bool>(
    kc: usize,
    a: *const f32,
    b: *const u8,
    c: *mut f32,
    ldc: usize,
) {
    use std::arch::x86_64::*;
    const ROWS: usize = MR / 2;
    let load = |at: usize| {
        if HALF {
            _mm256_cvtph_ps(_mm_loadu_si128(b.add(2 * at) as *const __m128i))
        } else {
            _mm256_loadu_ps(b.add(4 * at) as *const f32)
        }
    };
    for r0 in [0, ROWS] {
        for c0 in [0, 16] {
            let mut acc = [[_mm256_setzero_ps(); 2]; ROWS];
            for kk in 0..kc {
                let b0 = load(kk * NR + c0);
                let b1 = load(kk * NR + c0 + 8);
                let ak = a.add(kk * MR + r0);
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm256_set1_ps(*ak.add(i));
                    row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
                }
            }
            for (i, row) in acc.iter().enumerate() {
                let ci = c.add((r0 + i) * ldc + c0);
                _mm256_storeu_ps(ci, row[0]);
                _mm256_storeu_ps(ci.add(8), row[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix;

    fn naive(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|kk| x[i * k + kk] as f64 * w[j * k + kk] as f64)
                    .sum::<f64>() as f32;
            }
        }
        out
    }

    /// Both microkernels on one full tile (each where the CPU runs it), on
    /// f32 panels and on f16 panels (each value widened from its f16 bits).
    #[test]
    fn microkernels_agree_on_a_tile() {
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = has_avx512();
            crate::test_skip::skip_without(avx512, "AVX-512 f32 microkernel");
            if !available() {
                return;
            }
            let mut rng = SplitMix::new(3);
            let k = 77;
            let a: Vec<f32> = (0..k * MR).map(|_| rng.uniform()).collect();
            let b: Vec<f32> = (0..k * NR).map(|_| rng.uniform()).collect();
            let b16: Vec<u16> = b
                .iter()
                .map(|&x| half::f16::from_f32(x).to_bits())
                .collect();
            let widened: Vec<f32> = b16
                .iter()
                .map(|&h| half::f16::from_bits(h).to_f32())
                .collect();
            for (half, panel, values) in [
                (false, b.as_ptr() as *const u8, &b),
                (true, b16.as_ptr() as *const u8, &widened),
            ] {
                let want = tile_reference(&a, values, k);
                for (kernel, got) in run_kernels(k, &a, panel, half, avx512) {
                    // Every element (one left NaN fails).
                    for (x, y) in got.iter().zip(&want) {
                        assert!(
                            (x - y).abs() <= 1e-4 * (k as f32).sqrt(),
                            "{kernel} (f16 panel: {half}): {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    /// An MR × NR tile of `a` (k × MR) times `b` (k × NR), summed in f64.
    fn tile_reference(a: &[f32], b: &[f32], k: usize) -> Vec<f32> {
        (0..MR * NR)
            .map(|ij| {
                let (i, j) = (ij / NR, ij % NR);
                (0..k)
                    .map(|kk| a[kk * MR + i] as f64 * b[kk * NR + j] as f64)
                    .sum::<f64>() as f32
            })
            .collect()
    }

    /// The tile from each microkernel this CPU runs, over f32 or f16 panels.
    #[cfg(target_arch = "x86_64")]
    fn run_kernels(
        k: usize,
        a: &[f32],
        b: *const u8,
        half: bool,
        avx512: bool,
    ) -> Vec<(&'static str, Vec<f32>)> {
        let avx2 = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        let mut out = Vec::new();
        // SAFETY: the features were checked; a is k × MR, b k × NR values
        // of the panel's type, c MR × NR.
        unsafe {
            if avx2 {
                let mut c = vec![f32::NAN; MR * NR];
                match half {
                    true => kernel_avx2::<true>(k, a.as_ptr(), b, c.as_mut_ptr(), NR),
                    false => kernel_avx2::<false>(k, a.as_ptr(), b, c.as_mut_ptr(), NR),
                }
                out.push(("avx2", c));
            }
            if avx512 {
                let mut c = vec![f32::NAN; MR * NR];
                match half {
                    true => kernel_avx512::<true>(k, a.as_ptr(), b, c.as_mut_ptr(), NR),
                    false => kernel_avx512::<false>(k, a.as_ptr(), b, c.as_mut_ptr(), NR),
                }
                out.push(("avx512", c));
            }
        }
        out
    }

    #[test]
    fn matches_naive_on_ragged_shapes() {
        if crate::test_skip::skip_without(available(), "packed f32/f16 GEMM") {
            return;
        }
        let mut rng = SplitMix::new(1);
        for &(m, n, k) in &[
            (1, 1, 1),
            (5, 16, 7),
            (13, 33, 300),
            (97, 64, 513),
            (200, 70, 40),
            (3, 500, 64),
        ] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.uniform()).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.uniform()).collect();
            let pw = PackedWeight::pack(&w, n, k);
            let mut out = vec![f32::NAN; m * n];
            matmul_t(&x, m, &pw, &mut out);
            let want = naive(&x, m, &w, n, k);
            for (a, b) in out.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= 1e-4 * (k as f32).sqrt(),
                    "{m}x{n}x{k}: {a} vs {b}"
                );
            }
            // Fused max-pool: rows alternate between three texts.
            let owner: Vec<usize> = (0..m).map(|r| (r * 7 / m.max(1)) % 3).collect();
            let mut acc = vec![f32::NEG_INFINITY; 3 * n];
            max_pool_t(&x, m, &owner, &pw, &mut acc);
            for s in 0..3 {
                for j in 0..n {
                    let want_max = (0..m)
                        .filter(|&r| owner[r] == s)
                        .map(|r| want[r * n + j])
                        .fold(f32::NEG_INFINITY, f32::max);
                    let got = acc[s * n + j];
                    assert!(
                        got == want_max || (got - want_max).abs() <= 1e-4 * (k as f32).sqrt(),
                        "pool {m}x{n}x{k}"
                    );
                }
            }
        }
    }
}
