//! The packed GEMM against plain loops, per microkernel and end to end.

use super::microkernels::*;
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

/// `v` rounded to bf16 and widened back (the value a bf16 product uses).
fn bf16_round(v: f32) -> f32 {
    half::bf16::from_f32(v).to_f32()
}

/// Both bf16 kernels (native `vdpbf16ps` where the CPU has it, and the
/// widened FMA one) on one full tile of pairs, against f64 sums of the
/// bf16-rounded values: they must agree to f32 accumulation error.
#[test]
fn bf16_microkernels_agree_on_a_tile() {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::test_skip::skip_without(bf16_available(), "AVX-512 bf16 microkernel") {
            return;
        }
        let mut rng = SplitMix::new(5);
        let (k, pairs) = (78, 39);
        let a: Vec<f32> = (0..k * MR).map(|_| rng.uniform()).collect();
        let b: Vec<f32> = (0..k * NR).map(|_| rng.uniform()).collect();
        let bits = |v: f32| half::bf16::from_f32(v).to_bits();
        // a: pairs × MR of (depth 2p, 2p + 1); b: pairs × NR pairs.
        let apairs: Vec<u32> = (0..pairs * MR)
            .map(|pi| {
                let (p, i) = (pi / MR, pi % MR);
                bits(a[2 * p * MR + i]) as u32 | (bits(a[(2 * p + 1) * MR + i]) as u32) << 16
            })
            .collect();
        let bpairs: Vec<u16> = (0..pairs * NR * 2)
            .map(|x| {
                let (p, j, h) = (x / (2 * NR), (x / 2) % NR, x % 2);
                bits(b[(2 * p + h) * NR + j])
            })
            .collect();
        let ar: Vec<f32> = a.iter().map(|&v| bf16_round(v)).collect();
        let br: Vec<f32> = b.iter().map(|&v| bf16_round(v)).collect();
        let want = tile_reference(&ar, &br, k);
        let mut kernels = vec!["widened"];
        if bf16_native() {
            kernels.push("native");
        }
        for name in kernels {
            let mut c = vec![f32::NAN; MR * NR];
            // SAFETY: AVX-512 (and BF16 for the native kernel) checked above;
            // apairs is pairs × MR, bpairs pairs × NR pairs, c MR × NR.
            unsafe {
                let (ap, bp) = (apairs.as_ptr(), bpairs.as_ptr());
                match name {
                    "native" => kernel_bf16(pairs, ap, bp, c.as_mut_ptr(), NR),
                    _ => kernel_bf16_widened(pairs, ap, bp, c.as_mut_ptr(), NR),
                }
            }
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-5 * k as f32, "{name}: {x} vs {y}");
            }
        }
    }
}

/// End to end on bf16 panels, odd depths and partial tiles included: the
/// product of the bf16-rounded inputs, and a visible difference from f32.
#[test]
fn bf16_panels_multiply_rounded_inputs_on_ragged_shapes() {
    if crate::test_skip::skip_without(bf16_available(), "packed bf16 GEMM") {
        return;
    }
    let mut rng = SplitMix::new(9);
    for &(m, n, k) in &[
        (1, 1, 1),
        (5, 16, 7),
        (13, 33, 301),
        (97, 64, 512),
        (3, 500, 65),
    ] {
        let x: Vec<f32> = (0..m * k).map(|_| rng.uniform()).collect();
        let w: Vec<f32> = (0..n * k).map(|_| rng.uniform()).collect();
        let pw = PackedWeight::pack_bf16(&w, n, k);
        assert_eq!(pw.bytes(), n.div_ceil(NR) * k.div_ceil(2) * 2 * NR * 2);
        let mut out = vec![f32::NAN; m * n];
        matmul_t(&x, m, &pw, &mut out);
        let xr: Vec<f32> = x.iter().map(|&v| bf16_round(v)).collect();
        let wr: Vec<f32> = w.iter().map(|&v| bf16_round(v)).collect();
        let want = naive(&xr, m, &wr, n, k);
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-5 * k as f32, "{m}x{n}x{k}: {a} vs {b}");
        }
        let owner: Vec<usize> = (0..m).map(|r| r % 2).collect();
        let mut acc = vec![f32::NEG_INFINITY; 2 * n];
        max_pool_t(&x, m, &owner, &pw, &mut acc);
        for (j, got) in acc.iter().enumerate() {
            let (s, col) = (j / n, j % n);
            let best = (0..m)
                .filter(|&r| owner[r] == s)
                .map(|r| out[r * n + col])
                .fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(*got, best, "pool {m}x{n}x{k}");
        }
    }
    // bf16 keeps 8 bits of mantissa: each product's inputs are off by at
    // most 2⁻⁹ relative, so against the f32 product (inputs in [-1, 1)) the
    // sum of k products with random errors stays well within √k / 128 — and
    // far above f32's own rounding.
    let (m, n, k) = (24, 64, 576);
    let x: Vec<f32> = (0..m * k).map(|_| rng.uniform()).collect();
    let w: Vec<f32> = (0..n * k).map(|_| rng.uniform()).collect();
    let mut out = vec![0f32; m * n];
    matmul_t(&x, m, &PackedWeight::pack_bf16(&w, n, k), &mut out);
    let exact = naive(&x, m, &w, n, k);
    let worst = out
        .iter()
        .zip(&exact)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst > 1e-4 && worst < (k as f32).sqrt() / 128.0,
        "bf16 error {worst}"
    );
}

/// The packing's bf16 rounding is `half`'s: ties to even, overflow to
/// infinity, NaN kept NaN.
#[test]
fn bf16_rounding_matches_half() {
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        1.0 + f32::EPSILON,
        f32::from_bits(0x3F80_8000), // a tie: rounds to even (1.0)
        f32::from_bits(0x3F81_8000), // a tie: rounds to even (up)
        f32::MAX,
        f32::MIN_POSITIVE / 3.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
    ];
    let mut rng = SplitMix::new(13);
    let random = (0..10_000).map(|_| rng.uniform() * 1e3);
    for v in specials.into_iter().chain(random) {
        let want = half::bf16::from_f32(v);
        let got = half::bf16::from_bits(bf16_bits(v) as u16);
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "{v:e}: {:#06x} vs {:#06x}",
            got.to_bits(),
            want.to_bits()
        );
    }
}

/// Causal products: with rows as query positions `i % period` (three
/// heads stacked, a period no multiple of the tile), the scores keep every
/// column up to each row's position, and a product whose left side is zero
/// past the position loses nothing by stopping there.
#[test]
fn causal_products_keep_what_each_position_sees() {
    if !available() {
        return;
    }
    let mut rng = SplitMix::new(11);
    let (period, k, n) = (70, 70, 70);
    let m = 3 * period;
    let w: Vec<f32> = (0..n * k).map(|_| rng.uniform()).collect();
    let packed = PackedWeight::pack(&w, n, k);
    let x: Vec<f32> = (0..m * k).map(|_| rng.uniform()).collect();
    let mut scores = vec![f32::NAN; m * n];
    matmul_t_causal(&x, m, &packed, &mut scores, Causal::Columns(period));
    let want = naive(&x, m, &w, n, k);
    for i in 0..m {
        for j in 0..=(i % period) {
            let (got, exp) = (scores[i * n + j], want[i * n + j]);
            assert!(
                (got - exp).abs() < 1e-4,
                "scores ({i}, {j}): {got} vs {exp}"
            );
        }
    }
    let skipped = scores.iter().filter(|v| v.is_nan()).count();
    assert!(skipped > m * n / 5, "only {skipped} entries left out");
    // Zero past each row's position, as attention weights are.
    let mut weights = x.clone();
    for i in 0..m {
        weights[i * k + i % period + 1..(i + 1) * k].fill(0.0);
    }
    let mut out = vec![0f32; m * n];
    matmul_t_causal(&weights, m, &packed, &mut out, Causal::Depth(period));
    let want = naive(&weights, m, &w, n, k);
    for (i, (got, exp)) in out.iter().zip(&want).enumerate() {
        assert!(
            (got - exp).abs() < 1e-4,
            "depth-limited {i}: {got} vs {exp}"
        );
    }
}

/// The vectorized bf16 packing rounds as the scalar one, value for value,
/// ties, infinities, NaN and an odd last value included.
#[test]
fn bf16_pairs_match_the_scalar_rounding() {
    let mut rng = SplitMix::new(21);
    let mut row: Vec<f32> = (0..71).map(|_| rng.uniform() * 100.0 - 50.0).collect();
    row[3] = f32::from_bits(0x3F80_8000); // a tie, rounds to even
    row[4] = f32::from_bits(0x3F81_8000); // a tie, rounds up
    row[5] = f32::INFINITY;
    row[6] = f32::NEG_INFINITY;
    row[7] = f32::NAN;
    row[8] = f32::from_bits(0xFF80_0001); // a signalling NaN, kept a NaN
    row[20] = -0.0;
    let mut pairs = vec![0u32; row.len().div_ceil(2)];
    bf16_pairs(&row, &mut pairs);
    for (i, &v) in row.iter().enumerate() {
        let half = (pairs[i / 2] >> (16 * (i % 2))) & 0xFFFF;
        assert_eq!(half, bf16_bits(v), "value {i} ({v})");
    }
}

/// A weight packed from its transpose multiplies as the weight packed
/// from its own rows (ragged: the last panel partial).
#[test]
fn packing_from_the_transpose_matches_packing_the_rows() {
    if !available() {
        return;
    }
    let mut rng = SplitMix::new(8);
    let (m, n, k) = (13, 45, 19);
    let w: Vec<f32> = (0..n * k).map(|_| rng.uniform()).collect();
    let mut wt = vec![0f32; k * n];
    for r in 0..n {
        for c in 0..k {
            wt[c * n + r] = w[r * k + c];
        }
    }
    let x: Vec<f32> = (0..m * k).map(|_| rng.uniform()).collect();
    let (mut rows, mut transposed) = (vec![0f32; m * n], vec![0f32; m * n]);
    matmul_t(&x, m, &PackedWeight::pack(&w, n, k), &mut rows);
    matmul_t(
        &x,
        m,
        &PackedWeight::pack_transposed(&wt, n, k),
        &mut transposed,
    );
    assert_eq!(rows, transposed);
}
