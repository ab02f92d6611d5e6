//! f32 GEMM for inference and training, `y[M,N] = x[M,K] · Wᵀ` with the
//! weight `W[N,K]` packed once into 32-column panels. On CPUs with AVX-512 a
//! 12×32 register microkernel does the work (candle's `gemm` dependency only
//! uses 256-bit FMA on stable Rust, about half of such a CPU's peak); with
//! AVX2 the same tile runs as four 6×16 quarters, so the fused attention and
//! LM-head kernels built on it run there too. Elsewhere callers fall back to
//! candle's matmul.
//!
//! Panels hold f32, f16 (widened in registers) or bf16 pairs. A bf16 product
//! rounds the activations to bf16 as well and accumulates in f32 — mixed
//! precision for frozen weights in training — which AVX-512 BF16 CPUs run
//! with `vdpbf16ps`, two products per lane and instruction, at up to twice
//! the f32 rate (see [`microkernels`]).

mod microkernels;
#[cfg(test)]
mod tests;

use std::ops::Range;

use super::disjoint::SendPtr;
use microkernels::{kernel, ATile, PanelPtr};
use rayon::prelude::*;

/// Output columns per microkernel tile (two 16-lane registers).
pub const NR: usize = 32;
/// Rows per microkernel tile.
pub const MR: usize = 12;
/// Bytes of packed activations per task (sized for L2).
const A_BLOCK_BYTES: usize = 768 * 1024;

/// A weight `[n, k]` repacked as `ceil(n / 32)` panels of `k × 32` values
/// (panel p holds rows `32p .. 32p + 32`, k-major, zero padded), stored as
/// f32, as f16 (half the bytes; widened to f32 in registers), or as bf16
/// pairs (`k` rounded up to even; the values of depths `2i` and `2i + 1`
/// side by side for each column, as `vdpbf16ps` reads them).
pub struct PackedWeight {
    pub n: usize,
    pub k: usize,
    panels: Panels,
}

enum Panels {
    F32(Vec<f32>),
    F16(Vec<u16>),
    Bf16(Vec<u16>),
}

/// Whether bf16 panels can be multiplied here (any AVX-512 CPU: with
/// AVX-512 BF16 natively, otherwise widened to f32 with the same rounding).
pub fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx512()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether bf16 products run on the CPU's own bf16 dot-product instruction
/// (up to twice the f32 rate) rather than widened.
pub fn bf16_native() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx512() && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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

    /// Pack the weight `[n, k]` whose transpose `wt [k, n]` is given row
    /// by row: each depth of a panel is `NR` consecutive values of `wt`, so
    /// no transposed copy is made.
    pub fn pack_transposed(wt: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(wt.len(), n * k, "weight size");
        let mut panels = vec![0f32; n.div_ceil(NR) * k * NR];
        panels
            .par_chunks_mut(k * NR)
            .enumerate()
            .for_each(|(p, panel)| {
                let (c0, cols) = (p * NR, NR.min(n - p * NR));
                for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
                    dst[..cols].copy_from_slice(&wt[kk * n + c0..kk * n + c0 + cols]);
                }
            });
        Self {
            n,
            k,
            panels: Panels::F32(panels),
        }
    }

    /// Pack a row-major `[n, k]` weight as bf16 pairs (rounded to nearest
    /// even). Multiplying with it needs [`bf16_available`].
    pub fn pack_bf16(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight size");
        let kp = k.div_ceil(2);
        let mut panels = vec![0u16; n.div_ceil(NR) * kp * 2 * NR];
        panels
            .par_chunks_mut(kp * 2 * NR)
            .enumerate()
            .for_each(|(p, panel)| {
                for j in 0..NR.min(n - p * NR) {
                    let src = &w[(p * NR + j) * k..(p * NR + j + 1) * k];
                    for (kk, &v) in src.iter().enumerate() {
                        panel[((kk / 2) * NR + j) * 2 + kk % 2] = bf16_bits(v) as u16;
                    }
                }
            });
        Self {
            n,
            k,
            panels: Panels::Bf16(panels),
        }
    }

    /// Bytes held by the packed values.
    pub fn bytes(&self) -> usize {
        match &self.panels {
            Panels::F32(v) => v.len() * 4,
            Panels::F16(v) | Panels::Bf16(v) => v.len() * 2,
        }
    }

    fn is_bf16(&self) -> bool {
        matches!(self.panels, Panels::Bf16(_))
    }

    /// Values per panel column: `k`, or `k` rounded up to even for bf16 pairs.
    fn depth(&self) -> usize {
        if self.is_bf16() {
            self.k.div_ceil(2) * 2
        } else {
            self.k
        }
    }

    fn panel(&self, p: usize) -> PanelPtr {
        let off = p * self.depth() * NR;
        match &self.panels {
            Panels::F32(v) => PanelPtr::F32(v[off..].as_ptr()),
            Panels::F16(v) => PanelPtr::F16(v[off..].as_ptr()),
            Panels::Bf16(v) => PanelPtr::Bf16(v[off..].as_ptr()),
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

fn assert_runs_here(w: &PackedWeight) {
    assert!(available(), "packed GEMM on a CPU without AVX-512 or AVX2");
    assert!(
        !w.is_bf16() || bf16_available(),
        "bf16 panels on a CPU without AVX-512"
    );
}

/// What each row of a product may leave out when row `i` is the query at
/// position `i % period` under a causal mask (the query heads of one
/// sequence stacked, `period` positions each): the columns past its
/// position (attention scores, keys as columns), or the depths past it
/// (products whose left side is zero there: attention weights times
/// values). Left-out entries of `out` keep what they held.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Causal {
    Off,
    Columns(usize),
    Depth(usize),
}

impl Causal {
    /// What attention over `t` positions may leave out: of its scores
    /// (keys as columns), and of its weights times the values (depths);
    /// nothing when `bidirectional`.
    pub fn for_attention(t: usize, bidirectional: bool) -> (Causal, Causal) {
        match bidirectional {
            true => (Causal::Off, Causal::Off),
            false => (Causal::Columns(t), Causal::Depth(t)),
        }
    }

    /// The columns (of `n`) and depths (of `k`) that the tile of rows
    /// `r .. r + rows` (`rows` ≥ 1) needs, each counted from 0.
    fn extent(self, r: usize, rows: usize, (n, k): (usize, usize)) -> (usize, usize) {
        // Positions up to the tile's last one.
        let seen = |period: usize| ((r % period) + rows).min(period);
        match self {
            Causal::Columns(period) if period > 0 => (seen(period).min(n), k),
            Causal::Depth(period) if period > 0 => (n, seen(period).min(k)),
            _ => (n, k),
        }
    }
}

/// `out[m, n] = x[m, k] · Wᵀ`. Panics if [`available`] is false (or, for
/// bf16 panels, [`bf16_available`]).
pub fn matmul_t(x: &[f32], m: usize, w: &PackedWeight, out: &mut [f32]) {
    matmul_t_causal(x, m, w, out, Causal::Off)
}

/// [`matmul_t`] computing only what `causal` says each row needs.
pub fn matmul_t_causal(x: &[f32], m: usize, w: &PackedWeight, out: &mut [f32], causal: Causal) {
    assert_runs_here(w);
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
    let rows_of = |mb: usize| mb * mc..(mb * mc + mc).min(m);
    // Row blocks that several tasks share are packed once, up front (there
    // are fewer than 2 per thread then, so this holds little memory).
    let shared: Vec<APack> = match n_chunks {
        1 => Vec::new(),
        _ => (0..m_blocks)
            .into_par_iter()
            .map(|mb| APack::new(x, k, rows_of(mb), w.is_bf16()))
            .collect(),
    };
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..m_blocks * n_chunks).into_par_iter().for_each(|task| {
        let (mb, nc) = (task / n_chunks, task % n_chunks);
        let p0 = nc * panels_per_chunk;
        let p1 = (p0 + panels_per_chunk).min(panels);
        let out_ptr = &out_ptr;
        let own;
        let apack = match shared.get(mb) {
            Some(a) => a,
            None => {
                own = APack::new(x, k, rows_of(mb), w.is_bf16());
                &own
            }
        };
        block(apack, rows_of(mb), w, p0..p1, (out_ptr.0, causal));
    });
}

/// Fused LM head + max-pooling: for every row r of `x` (a pooled position
/// owned by text `owner[r]`), `acc[owner[r] * n + j] = max(acc[…], (x · Wᵀ)[r, j])`,
/// without ever materializing the `[m, n]` logits. Work is split over
/// columns only, so no two tasks touch the same accumulator.
pub fn max_pool_t(x: &[f32], m: usize, owner: &[usize], w: &PackedWeight, acc: &mut [f32]) {
    assert_runs_here(w);
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
    let apack = APack::new(x, k, 0..m, w.is_bf16());
    (0..chunks).into_par_iter().for_each(|c| {
        let acc_ptr = &acc_ptr;
        let mut scratch = [0f32; MR * NR];
        for p in c * per..((c + 1) * per).min(panels) {
            let bp = w.panel(p);
            let cols = NR.min(n - p * NR);
            for t in 0..tiles {
                // SAFETY: scratch is MR × NR; the accumulator columns
                // p*NR .. p*NR+cols belong to this task alone.
                unsafe {
                    kernel(apack.tile(t), bp, scratch.as_mut_ptr(), NR);
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

/// Rows of activations packed into MR-row micro-panels, k-major: f32
/// values, or bf16 pairs (one `u32` per row and pair of depths, the lower
/// depth in the low half) for bf16 panels.
enum APack {
    F32 { k: usize, values: Vec<f32> },
    Bf16 { pairs: usize, values: Vec<u32> },
}

impl APack {
    /// Pack the rows `row_range` of `x`, zero padded to whole tiles.
    fn new(x: &[f32], k: usize, row_range: Range<usize>, bf16: bool) -> Self {
        let (r0, rows) = (row_range.start, row_range.len());
        let tiles = rows.div_ceil(MR);
        if bf16 {
            let pairs = k.div_ceil(2);
            let mut values = vec![0u32; tiles * MR * pairs];
            pack_rows_bf16(x, k, r0, rows, &mut values);
            return APack::Bf16 { pairs, values };
        }
        let mut values = vec![0f32; tiles * MR * k];
        pack_rows(x, k, r0, rows, &mut values);
        APack::F32 { k, values }
    }

    fn tile(&self, t: usize) -> ATile<'_> {
        match self {
            APack::F32 { k, values } => ATile::F32(&values[t * MR * k..(t + 1) * MR * k]),
            APack::Bf16 { pairs, values } => {
                ATile::Bf16(&values[t * MR * pairs..(t + 1) * MR * pairs])
            }
        }
    }
}

/// `v` rounded to the nearest bf16 (ties to even), as its 16 bits in a
/// `u32`; NaN stays NaN (as `half::bf16::from_f32` rounds, without its
/// branches, so the packing loop stays cheap beside the products).
#[inline(always)]
fn bf16_bits(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x7FFF_FFFF > 0x7F80_0000 {
        return (b >> 16) | 0x40;
    }
    (b + 0x7FFF + ((b >> 16) & 1)) >> 16
}

/// [`pack_rows`] for bf16 panels: each row's values rounded to bf16 and
/// paired by depth (`k` rounded up to even, the missing value 0), one `u32`
/// per row and pair; rows past `rows` stay 0.
fn pack_rows_bf16(x: &[f32], k: usize, r0: usize, rows: usize, apack: &mut [u32]) {
    let pairs = k.div_ceil(2);
    let mut row_pairs = vec![0u32; pairs];
    for (t, dst) in apack.chunks_exact_mut(MR * pairs).enumerate() {
        for i in 0..MR.min(rows - t * MR) {
            let row = &x[(r0 + t * MR + i) * k..(r0 + t * MR + i + 1) * k];
            bf16_pairs(row, &mut row_pairs);
            for (pi, &pair) in row_pairs.iter().enumerate() {
                dst[pi * MR + i] = pair;
            }
        }
    }
}

/// `row`'s values as bf16 pairs ([`bf16_bits`] of depths `2i` and `2i + 1`
/// in the low and high half of `pairs[i]`; an odd last value alone).
fn bf16_pairs(row: &[f32], pairs: &mut [u32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU has AVX-512F (checked just above).
        done = unsafe { bf16_pairs_avx512(row, pairs) };
    }
    let whole = row[2 * done..].chunks_exact(2);
    if let Some(&v) = whole.remainder().first() {
        pairs[row.len() / 2] = bf16_bits(v);
    }
    for (pair, v) in pairs[done..].iter_mut().zip(whole) {
        *pair = bf16_bits(v[0]) | bf16_bits(v[1]) << 16;
    }
}

/// [`bf16_pairs`] for the first `8·⌊len / 16⌋` pairs, 16 values at a time;
/// returns how many pairs it wrote.
///
/// # Safety
/// The CPU must have AVX-512F; `pairs` holds at least `row.len() / 2`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn bf16_pairs_avx512(row: &[f32], pairs: &mut [u32]) -> usize {
    use std::arch::x86_64::*;
    let chunks = row.len() / 16;
    assert!(pairs.len() >= chunks * 8, "bf16 pairs: output too short");
    let one = _mm512_set1_epi32(1);
    for c in 0..chunks {
        let b = _mm512_loadu_si512(row.as_ptr().add(c * 16) as *const _);
        // (b + 0x7FFF + ((b >> 16) & 1)) >> 16, NaN kept quiet: as bf16_bits.
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), one);
        let biased = _mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7FFF)), lsb);
        let rounded = _mm512_srli_epi32::<16>(biased);
        let magnitude = _mm512_and_si512(b, _mm512_set1_epi32(0x7FFF_FFFF));
        let nan = _mm512_cmpgt_epu32_mask(magnitude, _mm512_set1_epi32(0x7F80_0000));
        let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(0x40));
        let bits = _mm512_mask_blend_epi32(nan, rounded, quiet);
        // 16 values → 16 halves in order: 8 pairs, low half the even depth.
        let halves = _mm512_cvtepi32_epi16(bits);
        _mm256_storeu_si256(pairs.as_mut_ptr().add(c * 8) as *mut __m256i, halves);
    }
    chunks * 8
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

/// One row block (`apack`, the rows `row_range`) × a range of column
/// panels. Each task writes a disjoint rectangle of `out`. A is packed for
/// the whole depth; each tile runs the full depth in registers, so C is
/// written exactly once.
fn block(
    apack: &APack,
    row_range: Range<usize>,
    w: &PackedWeight,
    panels: Range<usize>,
    (out, causal): (*mut f32, Causal),
) {
    let ldc = w.n;
    let (r0, rows) = (row_range.start, row_range.len());
    let tiles = rows.div_ceil(MR);
    for p in panels {
        let bp = w.panel(p);
        let cols = NR.min(w.n - p * NR);
        for t in 0..tiles {
            let r = r0 + t * MR;
            let valid_rows = MR.min(r0 + rows - r);
            let (columns, depth) = causal.extent(r, valid_rows, (w.n, w.depth()));
            if p * NR >= columns {
                continue;
            }
            let a = apack.tile(t).prefix(depth);
            // SAFETY: the tile lies inside this task's rectangle of `out`
            // (rows r .. r + valid_rows, columns p*NR .. p*NR + cols).
            unsafe {
                let c = out.add(r * ldc + p * NR);
                tile(a, bp, c, ldc, valid_rows, cols);
            }
        }
    }
}

/// One MR × NR tile; partial tiles go through a scratch buffer.
///
/// # Safety
/// [`available`] must hold (and [`bf16_available`] for bf16 panels); `a`
/// and `b` hold the same depth, and `c` is valid for writes of `rows` rows
/// of `cols` values at stride `ldc`, written by no other thread meanwhile.
unsafe fn tile(a: ATile, b: PanelPtr, c: *mut f32, ldc: usize, rows: usize, cols: usize) {
    if rows == MR && cols == NR {
        kernel(a, b, c, ldc);
        return;
    }
    let mut scratch = [0f32; MR * NR];
    kernel(a, b, scratch.as_mut_ptr(), NR);
    for i in 0..rows {
        for j in 0..cols {
            *c.add(i * ldc + j) = scratch[i * NR + j];
        }
    }
}
