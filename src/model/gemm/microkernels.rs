//! The register microkernels behind [`super::matmul_t`]: one MR × NR tile
//! over the whole depth, for f32 and f16 panels (AVX-512, or AVX2 as four
//! quarters) and for bf16 pairs (`vdpbf16ps` on AVX-512 BF16; elsewhere on
//! AVX-512 each pair is widened to f32 and multiplied with FMAs, the same
//! products in the same f32 accumulators).

use super::{MR, NR};

/// Where a panel's values start, by their type.
#[derive(Clone, Copy)]
pub(super) enum PanelPtr {
    F32(*const f32),
    F16(*const u16),
    /// bf16 pairs: `depth / 2` rows of NR pairs.
    Bf16(*const u16),
}

/// One tile's packed activations: `k × MR` f32 values, or `k/2 × MR` bf16
/// pairs (matching a bf16 panel).
#[derive(Clone, Copy)]
pub(super) enum ATile<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u32]),
}

impl<'a> ATile<'a> {
    /// The tile's first `depth` depths (whole bf16 pairs: `depth` rounded
    /// up to even), for a product whose left side is zero past them.
    pub(super) fn prefix(self, depth: usize) -> Self {
        match self {
            ATile::F32(a) => ATile::F32(&a[..(depth * MR).min(a.len())]),
            ATile::Bf16(a) => ATile::Bf16(&a[..(depth.div_ceil(2) * MR).min(a.len())]),
        }
    }
}

/// # Safety
/// The CPU runs the kernel for the panel's type ([`super::available`], and
/// [`super::bf16_available`] for bf16); `b` holds the same depth as `a`,
/// and `c` is valid for an MR × NR tile of writes at stride `ldc`.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn kernel(a: ATile, b: PanelPtr, c: *mut f32, ldc: usize) {
    let avx512 = super::has_avx512();
    match (a, b) {
        (ATile::F32(a), PanelPtr::F32(b)) if avx512 => {
            kernel_avx512::<false>(a.len() / MR, a.as_ptr(), b as *const u8, c, ldc)
        }
        (ATile::F32(a), PanelPtr::F16(b)) if avx512 => {
            kernel_avx512::<true>(a.len() / MR, a.as_ptr(), b as *const u8, c, ldc)
        }
        (ATile::F32(a), PanelPtr::F32(b)) => {
            kernel_avx2::<false>(a.len() / MR, a.as_ptr(), b as *const u8, c, ldc)
        }
        (ATile::F32(a), PanelPtr::F16(b)) => {
            kernel_avx2::<true>(a.len() / MR, a.as_ptr(), b as *const u8, c, ldc)
        }
        (ATile::Bf16(a), PanelPtr::Bf16(b)) if super::bf16_native() => {
            kernel_bf16(a.len() / MR, a.as_ptr(), b, c, ldc)
        }
        (ATile::Bf16(a), PanelPtr::Bf16(b)) => {
            kernel_bf16_widened(a.len() / MR, a.as_ptr(), b, c, ldc)
        }
        _ => unreachable!("activations packed for another panel type"),
    }
}

/// # Safety
/// Never callable: [`super::available`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn kernel(_a: ATile, _b: PanelPtr, _c: *mut f32, _ldc: usize) {
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
pub(super) unsafe fn kernel_avx512<const HALF: bool>(
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
    store_tile(&acc, c, ldc);
}

/// The same 12×32 tile with 256-bit registers: four 6×16 quarters, each
/// with 12 accumulators, two weight registers and a broadcast (15 of the 16
/// registers), each running the whole depth.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; pointers as for [`kernel_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn kernel_avx2<const HALF: bool>(
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

/// The 12×32 tile over bf16 pairs with `vdpbf16ps`: each instruction adds
/// two products per lane, so a depth pair costs what one f32 depth does.
///
/// # Safety
/// The CPU must have AVX-512F and AVX-512 BF16; `a` is valid for
/// `pairs × MR` reads, `b` for `pairs × NR` pairs, `c` as for [`kernel_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn kernel_bf16(
    pairs: usize,
    a: *const u32,
    b: *const u16,
    c: *mut f32,
    ldc: usize,
) {
    use std::arch::x86_64::*;
    let load = |at: usize| -> __m512bh {
        std::mem::transmute(_mm512_loadu_si512(b.add(at) as *const __m512i))
    };
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for kk in 0..pairs {
        let b0 = load(kk * 2 * NR);
        let b1 = load(kk * 2 * NR + NR);
        let ak = a.add(kk * MR);
        for (i, row) in acc.iter_mut().enumerate() {
            let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ak.add(i) as i32));
            row[0] = _mm512_dpbf16_ps(row[0], ai, b0);
            row[1] = _mm512_dpbf16_ps(row[1], ai, b1);
        }
    }
    store_tile(&acc, c, ldc);
}

/// [`kernel_bf16`] for AVX-512 CPUs without BF16: each pair is widened to
/// two f32 values (a bf16 is the high half of an f32) and multiplied with
/// two FMAs — at the f32 kernel's rate, with bf16's rounding of the inputs.
///
/// # Safety
/// The CPU must have AVX-512F; pointers as for [`kernel_bf16`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn kernel_bf16_widened(
    pairs: usize,
    a: *const u32,
    b: *const u16,
    c: *mut f32,
    ldc: usize,
) {
    use std::arch::x86_64::*;
    let high = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
    // (lower depth, upper depth) of 16 columns' pairs, as f32.
    let load = |at: usize| {
        let v = _mm512_loadu_si512(b.add(at) as *const __m512i);
        (
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v)),
            _mm512_castsi512_ps(_mm512_and_si512(v, high)),
        )
    };
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for kk in 0..pairs {
        let (b0l, b0h) = load(kk * 2 * NR);
        let (b1l, b1h) = load(kk * 2 * NR + NR);
        let ak = a.add(kk * MR);
        for (i, row) in acc.iter_mut().enumerate() {
            let pair = *ak.add(i);
            let lo = _mm512_set1_ps(f32::from_bits(pair << 16));
            let hi = _mm512_set1_ps(f32::from_bits(pair & 0xFFFF_0000));
            row[0] = _mm512_fmadd_ps(hi, b0h, _mm512_fmadd_ps(lo, b0l, row[0]));
            row[1] = _mm512_fmadd_ps(hi, b1h, _mm512_fmadd_ps(lo, b1l, row[1]));
        }
    }
    store_tile(&acc, c, ldc);
}

/// Write the 12×32 accumulators to `c` (rows at stride `ldc`).
///
/// # Safety
/// The CPU must have AVX-512F; `c` is valid for an MR × NR tile of writes
/// at stride `ldc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn store_tile(acc: &[[std::arch::x86_64::__m512; 2]; MR], c: *mut f32, ldc: usize) {
    use std::arch::x86_64::*;
    for (i, row) in acc.iter().enumerate() {
        let ci = c.add(i * ldc);
        _mm512_storeu_ps(ci, row[0]);
        _mm512_storeu_ps(ci.add(16), row[1]);
    }
}
