//! Scalar building blocks written so LLVM vectorises the loops that use them: reductions over
//! 8 independent lanes (a strict left-to-right f32 sum cannot be vectorised without fast-math,
//! and the lanes also halve the rounding error growth), and a polynomial `exp` that inlines into
//! SIMD code where libm's `expf` is a scalar call per element.

use super::simd::simd_fn;

const LANES: usize = 8;

/// Sum of `x` over 8 lanes.
#[inline(always)]
pub(super) fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    let mut s = tail.iter().sum::<f32>();
    for a in acc {
        s += a;
    }
    s
}

/// Dot product of two equal-length slices over 8 lanes.
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Sum of squared deviations from `mean`, over 8 lanes (the second pass of a two-pass variance).
#[inline(always)]
pub(super) fn sum_sq_dev(x: &[f32], mean: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    for c in chunks {
        for l in 0..LANES {
            let d = c[l] - mean;
            acc[l] += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Maximum of a non-empty slice; NaNs are skipped (callers that must propagate NaN check for it).
/// An empty slice gives -inf.
#[inline(always)]
pub(super) fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in acc.iter().chain(tail) {
        if v > m {
            m = v;
        }
    }
    m
}

/// e^x to about 2 ulp (Cephes' expf polynomial), branch-free so it vectorises. Underflows to
/// exactly 0 below -87.33 (where the true value is subnormal), so exp(-inf) = 0 as softmax with a
/// causal mask needs; +inf above 88; NaN propagates (the clamps are comparisons NaN fails).
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const HI: f32 = 88.0;
    const LO: f32 = -87.33;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to the nearest integer in the mantissa's low bits.
    const MAGIC: f32 = 12_582_912.0;
    // clamp keeps NaN as NaN.
    let xc = x.clamp(LO, HI);
    let t = xc * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let poly = p * r * r + r + 1.0;
    // n is in [-126, 127] after the clamp, so (n + 127) << 23 is a normal float's exponent.
    let n_int = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let two_n = f32::from_bits(((n_int + 127) << 23) as u32);
    let y = poly * two_n;
    if x < LO {
        0.0
    } else if x > HI {
        f32::INFINITY
    } else {
        y
    }
}

/// tanh through `exp`: 1 - 2/(e^{2x}+1). Accurate to ~1e-7 absolute (not relative near 0), which
/// is what GELU needs since it only uses 1 + tanh and 1 - tanh^2; saturates cleanly to +-1.
#[inline(always)]
pub(super) fn tanh_abs(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

simd_fn! {
    /// Sum of squares accumulated in f64 over 4 lanes (gradient-norm clipping).
    pub(super) fn sum_squares_f64(x: &[f32]) -> f64 {
        let mut acc = [0.0f64; 4];
        let chunks = x.chunks_exact(4);
        let mut tail = 0.0f64;
        for &v in chunks.remainder() {
            tail += v as f64 * v as f64;
        }
        for q in chunks {
            for l in 0..4 {
                acc[l] += q[l] as f64 * q[l] as f64;
            }
        }
        acc[0] + acc[1] + acc[2] + acc[3] + tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0.0f32;
        for i in 0..200_000 {
            let x = -87.0 + 175.0 * (i as f32) / 200_000.0;
            let want = x.exp();
            let rel = ((exp(x) - want) / want).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(100.0), f32::INFINITY);
    }

    #[test]
    fn tanh_abs_is_close_in_absolute_terms() {
        for i in 0..20_000 {
            let x = -20.0 + 40.0 * (i as f32) / 20_000.0;
            let err = (tanh_abs(x) - (x as f64).tanh() as f32).abs();
            assert!(err < 3e-7, "x {x} err {err}");
        }
    }

    #[test]
    fn lane_reductions_match_naive() {
        let x: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let y: Vec<f32> = (0..37)
            .map(|i| ((i * 104_729) % 97) as f32 / 10.0 - 4.0)
            .collect();
        let naive_sum: f64 = x.iter().map(|&v| v as f64).sum();
        assert!((sum(&x) as f64 - naive_sum).abs() < 1e-4);
        let naive_dot: f64 = x.iter().zip(&y).map(|(&a, &b)| a as f64 * b as f64).sum();
        assert!((dot(&x, &y) as f64 - naive_dot).abs() < 1e-3);
        let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(max(&x), m);
        let mean = naive_sum as f32 / 37.0;
        let naive_ss: f64 = x.iter().map(|&v| ((v - mean) as f64).powi(2)).sum();
        assert!((sum_sq_dev(&x, mean) as f64 - naive_ss).abs() < 1e-3);
    }
}
