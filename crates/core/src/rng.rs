//! Counter-based randomness. Every random number is a pure function of (seed, stream, index),
//! never of call order, so parameter init is identical in every parallel layout and a
//! recomputed dropout reproduces its mask exactly.

/// SplitMix64 finaliser: a strong 64-bit mixing function.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a hash of a name, to derive a per-parameter stream from its name.
pub fn hash_name(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Uniform in [0, 1) from (seed, stream, index); 24 random bits, exact in f32.
pub fn uniform(seed: u64, stream: u64, index: u64) -> f32 {
    let r = mix64(mix64(seed ^ mix64(stream)) ^ index);
    (r >> 40) as f32 / (1u64 << 24) as f32
}

/// Standard normal from (seed, stream, index) by Box-Muller on two counter draws.
pub fn normal(seed: u64, stream: u64, index: u64) -> f32 {
    let u1 = uniform(seed, stream, 2 * index).max(1e-7);
    let u2 = uniform(seed, stream, 2 * index + 1);
    ((-2.0 * (u1 as f64).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2 as f64).cos()) as f32
}

/// Dropout keep decision for element `index` of the dropout op `seed` at optimizer `step`.
pub fn dropout_keep(seed: u64, step: u64, index: u64, p: f32) -> bool {
    uniform(seed, step, index) >= p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_a_pure_function_of_its_counters() {
        assert_eq!(uniform(1, 2, 3), uniform(1, 2, 3));
        assert_ne!(uniform(1, 2, 3), uniform(1, 2, 4));
        let mean: f32 = (0..10_000).map(|i| uniform(7, 0, i)).sum::<f32>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
    }

    #[test]
    fn normal_has_unit_variance() {
        let xs: Vec<f32> = (0..20_000).map(|i| normal(3, 9, i)).collect();
        let m = xs.iter().sum::<f32>() / xs.len() as f32;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / xs.len() as f32;
        assert!(m.abs() < 0.03 && (v - 1.0).abs() < 0.05, "mean {m} var {v}");
    }
}
