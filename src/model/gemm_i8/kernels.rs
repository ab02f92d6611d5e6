//! The int8 microkernels behind [`super`]: one `MR × NR` tile of
//! `x · Wᵀ` over whole 32-deep blocks, with AVX-512 VNNI or with AVX2.

use super::{MR, NR, QK};

/// One MR × NR tile over `blocks` blocks of 32, with VNNI.
///
/// # Safety
/// The CPU must have AVX-512F/BW/VNNI; `a`, `asc`, `b`, `bs`, `bsh` hold the
/// packed codes and scales of `blocks` blocks for MR rows and NR columns, and
/// `c` is valid for an MR × NR tile of writes, by no other thread meanwhile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn kernel_vnni(
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

/// One MR × NR tile over `blocks` blocks of 32, with AVX2: `a` signed
/// activation codes, `ua` their magnitudes (same layout), the rest as for
/// [`kernel_vnni`].
///
/// # Safety
/// The CPU must have AVX2 and FMA; pointers as for [`kernel_vnni`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn kernel_avx2(
    blocks: usize,
    a: *const u32,
    ua: *const u32,
    asc: *const f32,
    b: *const i8,
    bs: *const f32,
    c: *mut f32,
) {
    use std::arch::x86_64::*;
    const ROWS: usize = MR / 2;
    let ones = _mm256_set1_epi16(1);
    // Three rows × sixteen columns per pass: each broadcast activation
    // feeds two weight registers, and 6 int32 + 6 f32 accumulators, two
    // weight registers and four temporaries fit the 16 registers.
    for half in 0..2 {
        for v in 0..NR / 16 {
            let mut facc = [[_mm256_setzero_ps(); 2]; ROWS];
            for blk in 0..blocks {
                let mut iacc = [[_mm256_setzero_si256(); 2]; ROWS];
                for g in 0..QK / 4 {
                    let k4 = blk * QK / 4 + g;
                    let bp = b.add(k4 * NR * 4 + v * 64);
                    let b0 = _mm256_loadu_si256(bp as *const __m256i);
                    let b1 = _mm256_loadu_si256(bp.add(32) as *const __m256i);
                    for (i, acc) in iacc.iter_mut().enumerate() {
                        let r = half * ROWS + i;
                        let ai = _mm256_set1_epi32(*a.add(k4 * MR + r) as i32);
                        let ui = _mm256_set1_epi32(*ua.add(k4 * MR + r) as i32);
                        let p0 = _mm256_maddubs_epi16(ui, _mm256_sign_epi8(b0, ai));
                        let p1 = _mm256_maddubs_epi16(ui, _mm256_sign_epi8(b1, ai));
                        acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(p0, ones));
                        acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(p1, ones));
                    }
                }
                let s0 = _mm256_loadu_ps(bs.add(blk * NR + v * 16));
                let s1 = _mm256_loadu_ps(bs.add(blk * NR + v * 16 + 8));
                for (i, (f, ia)) in facc.iter_mut().zip(iacc.iter()).enumerate() {
                    let xs = _mm256_set1_ps(*asc.add(blk * MR + half * ROWS + i));
                    f[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[0]), _mm256_mul_ps(s0, xs), f[0]);
                    f[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[1]), _mm256_mul_ps(s1, xs), f[1]);
                }
            }
            for (i, f) in facc.iter().enumerate() {
                let dst = c.add((half * ROWS + i) * NR + v * 16);
                _mm256_storeu_ps(dst, f[0]);
                _mm256_storeu_ps(dst.add(8), f[1]);
            }
        }
    }
}

/// # Safety
/// Never callable: no int8 kernel is detected off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn kernel_vnni(
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

/// # Safety
/// Never callable: no int8 kernel is detected off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn kernel_avx2(
    _: usize,
    _: *const u32,
    _: *const u32,
    _: *const f32,
    _: *const i8,
    _: *const f32,
    _: *mut f32,
) {
    unreachable!("requires AVX2")
}
