use super::*;
use crate::error::Error;

/// Naive causal attention in f64: per (b, h), softmax(Q K^T / sqrt(D) + mask) V.
fn attention_ref(qkv: &[f64], (b, t, c, h): (usize, usize, usize, usize)) -> Vec<f64> {
    let d = c / h;
    let scale = 1.0 / (d as f64).sqrt();
    let at = |bi: usize, ti: usize, part: usize, hi: usize, di: usize| {
        qkv[(bi * t + ti) * 3 * c + part * c + hi * d + di]
    };
    let mut out = vec![0.0; b * t * c];
    for bi in 0..b {
        for hi in 0..h {
            for i in 0..t {
                let s: Vec<f64> = (0..=i)
                    .map(|j| {
                        (0..d)
                            .map(|k| at(bi, i, 0, hi, k) * at(bi, j, 1, hi, k))
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for k in 0..d {
                    out[(bi * t + i) * c + hi * d + k] =
                        (0..=i).map(|j| e[j] / z * at(bi, j, 2, hi, k)).sum();
                }
            }
        }
    }
    out
}

fn run_forward(qkv: &[f32], (b, t, c, h): (usize, usize, usize, usize)) -> Vec<f32> {
    run(
        &Op::CausalAttention { heads: h },
        &[(qkv, &[b, t, 3 * c])],
        &[b, t, c],
    )
    .unwrap()
}

fn run_backward(qkv: &[f32], dy: &[f32], (b, t, c, h): (usize, usize, usize, usize)) -> Vec<f32> {
    let op = Op::CausalAttentionBackward { heads: h };
    run(
        &op,
        &[(qkv, &[b, t, 3 * c]), (dy, &[b, t, c])],
        &[b, t, 3 * c],
    )
    .unwrap()
}

#[test]
fn forward_matches_naive_per_head_softmax() {
    // The second and third shapes span several causal row blocks (BLOCK = 64).
    for g in [(2, 5, 8, 2), (1, 70, 12, 3), (2, 130, 8, 1), (3, 1, 6, 3)] {
        let (b, t, c, _) = g;
        let qkv: Vec<f32> = rand(b * t * 3 * c, 90).iter().map(|v| 2.0 * v).collect();
        let got = run_forward(&qkv, g);
        let want = attention_ref(&qkv.iter().map(|&v| v as f64).collect::<Vec<_>>(), g);
        assert_close(&got, &want, 2e-6, &format!("attention {g:?}"));
    }
}

/// Gradient of L = sum(out * dy) with respect to qkv by central differences of `f`.
fn finite_differences(qkv: &[f64], dy: &[f32], h: f64, f: &dyn Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
    let loss = |x: &[f64]| f(x).iter().zip(dy).map(|(o, &g)| o * g as f64).sum::<f64>();
    let mut x = qkv.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + h;
            let up = loss(&x);
            x[i] = orig - h;
            let down = loss(&x);
            x[i] = orig;
            (up - down) / (2.0 * h)
        })
        .collect()
}

#[test]
fn backward_matches_finite_differences_of_the_reference() {
    for g in [(2, 5, 8, 2), (1, 67, 4, 2)] {
        let (b, t, c, _) = g;
        let qkv = rand(b * t * 3 * c, 91);
        let dy = rand(b * t * c, 92);
        let got = run_backward(&qkv, &dy, g);
        let x64: Vec<f64> = qkv.iter().map(|&v| v as f64).collect();
        let want = finite_differences(&x64, &dy, 1e-5, &|x| attention_ref(x, g));
        assert_close(&got, &want, 1e-4, &format!("attention backward {g:?}"));
    }
}

#[test]
fn backward_matches_finite_differences_of_the_kernel_forward() {
    let g = (2, 6, 8, 2);
    let (b, t, c, _) = g;
    let qkv = rand(b * t * 3 * c, 93);
    let dy = rand(b * t * c, 94);
    let got = run_backward(&qkv, &dy, g);
    let forward = |x: &[f64]| {
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        run_forward(&x32, g).iter().map(|&v| v as f64).collect()
    };
    let x64: Vec<f64> = qkv.iter().map(|&v| v as f64).collect();
    let want = finite_differences(&x64, &dy, 1e-2, &forward);
    assert_close(&got, &want, 2e-3, "attention backward vs kernel forward");
}

#[test]
fn long_sequence_backward_matches_analytic_reference() {
    // T = 150 spans three row blocks, exercising the blocked dK/dV products.
    let g = (1, 150, 8, 2);
    let (b, t, c, h) = g;
    let d = c / h;
    let qkv = rand(b * t * 3 * c, 95);
    let dy = rand(b * t * c, 96);
    let got = run_backward(&qkv, &dy, g);
    let at = |ti: usize, part: usize, hi: usize, k: usize| {
        qkv[ti * 3 * c + part * c + hi * d + k] as f64
    };
    let mut want = vec![0.0; t * 3 * c];
    let scale = 1.0 / (d as f64).sqrt();
    for hi in 0..h {
        for i in 0..t {
            let s: Vec<f64> = (0..=i)
                .map(|j| {
                    (0..d)
                        .map(|k| at(i, 0, hi, k) * at(j, 1, hi, k))
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
            let p: Vec<f64> = s.iter().map(|v| (v - m).exp() / z).collect();
            let d_o = |k: usize| dy[i * c + hi * d + k] as f64;
            let dp: Vec<f64> = (0..=i)
                .map(|j| (0..d).map(|k| d_o(k) * at(j, 2, hi, k)).sum())
                .collect();
            let dot: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
            for j in 0..=i {
                let ds = p[j] * (dp[j] - dot) * scale;
                for k in 0..d {
                    want[i * 3 * c + hi * d + k] += ds * at(j, 1, hi, k);
                    want[j * 3 * c + c + hi * d + k] += ds * at(i, 0, hi, k);
                    want[j * 3 * c + 2 * c + hi * d + k] += p[j] * d_o(k);
                }
            }
        }
    }
    assert_close(&got, &want, 1e-5, "attention backward T=150");
}

#[test]
fn bad_geometry_is_a_shape_error() {
    let qkv = rand(2 * 3 * 12, 97);
    let err = run(
        &Op::CausalAttention { heads: 3 },
        &[(&qkv, &[2, 3, 12])],
        &[2, 3, 4],
    )
    .unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let err = run(
        &Op::CausalAttention { heads: 2 },
        &[(&qkv, &[6, 12])],
        &[6, 4],
    )
    .unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}
