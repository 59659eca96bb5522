//! Global-norm gradient clipping math (`torch.nn.utils.clip_grad_norm_`); the executor computes
//! the per-tensor sums of squares and applies the coefficient.

/// The global L2 norm from each gradient tensor's sum of squares.
pub fn total_norm(sums_of_squares: &[f64]) -> f64 {
    sums_of_squares.iter().sum::<f64>().sqrt()
}

/// The factor to multiply every gradient by: `max_norm / (total_norm + 1e-6)`, clamped to at
/// most 1.0. A NaN norm gives NaN (as torch's clamp does), so a diverged step is not hidden.
pub fn clip_coefficient(total_norm: f64, max_norm: f32) -> f32 {
    let coef = f64::from(max_norm) / (total_norm + 1e-6);
    if coef > 1.0 { 1.0 } else { coef as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_of_sums_of_squares() {
        assert_eq!(total_norm(&[9.0, 16.0]), 5.0);
        assert_eq!(total_norm(&[]), 0.0);
    }

    #[test]
    fn clips_only_above_max_norm() {
        let c = clip_coefficient(10.0, 1.0);
        // torch: 1.0 / (10.0 + 1e-6) in f32.
        assert_eq!(c, 0.099_999_99);
        assert!(c < 0.1);
        assert_eq!(clip_coefficient(0.5, 1.0), 1.0);
        assert_eq!(clip_coefficient(0.0, 1.0), 1.0);
        // Exactly at max_norm the epsilon makes the factor just below 1, as in torch.
        assert!(clip_coefficient(1.0, 1.0) < 1.0);
        assert!(clip_coefficient(1.0, 1.0) > 0.999_998);
    }

    #[test]
    fn non_finite_norms() {
        assert!(clip_coefficient(f64::NAN, 1.0).is_nan());
        assert_eq!(clip_coefficient(f64::INFINITY, 1.0), 0.0);
    }
}
