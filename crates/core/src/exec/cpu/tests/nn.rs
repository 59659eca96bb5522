use super::*;
use crate::error::Error;

fn softmax_ref(row: &[f32]) -> Vec<f64> {
    let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[test]
fn softmax_forward_and_backward() {
    for (rows, c) in [(3, 7), (4, 1), (200, 300)] {
        // Large offsets: a softmax without max subtraction overflows.
        let x: Vec<f32> = rand(rows * c, 40)
            .iter()
            .enumerate()
            .map(|(i, v)| 8.0 * v + (i % 3) as f32 * 500.0)
            .collect();
        let got = run(&Op::Softmax, &[(&x, &[rows, c])], &[rows, c]).unwrap();
        let want: Vec<f64> = x.chunks(c).flat_map(softmax_ref).collect();
        assert_close(&got, &want, 1e-6, "softmax");
        let dy = rand(rows * c, 41);
        let dx = run(
            &Op::SoftmaxBackward,
            &[(&got, &[rows, c]), (&dy, &[rows, c])],
            &[rows, c],
        )
        .unwrap();
        let mut want = vec![0.0; rows * c];
        for r in 0..rows {
            let y = &got[r * c..(r + 1) * c];
            let g = &dy[r * c..(r + 1) * c];
            let s: f64 = y.iter().zip(g).map(|(&a, &b)| a as f64 * b as f64).sum();
            for j in 0..c {
                want[r * c + j] = y[j] as f64 * (g[j] as f64 - s);
            }
        }
        assert_close(&dx, &want, 1e-6, "softmax_backward");
    }
}

/// f64 layer norm of one row.
fn ln_row(x: &[f32], w: &[f32], b: &[f32], eps: f64) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let rstd = 1.0 / (var + eps).sqrt();
    (0..x.len())
        .map(|j| (x[j] as f64 - mean) * rstd * w[j] as f64 + b[j] as f64)
        .collect()
}

#[test]
fn layer_norm_forward_matches_reference() {
    for (rows, c) in [(3, 10), (300, 128)] {
        let x: Vec<f32> = rand(rows * c, 50).iter().map(|v| 3.0 * v + 10.0).collect();
        let (w, b) = (rand(c, 51), rand(c, 52));
        let op = Op::LayerNorm { eps: 1e-5 };
        let got = run(&op, &[(&x, &[rows, c]), (&w, &[c]), (&b, &[c])], &[rows, c]).unwrap();
        let want: Vec<f64> = x.chunks(c).flat_map(|r| ln_row(r, &w, &b, 1e-5)).collect();
        assert_close(&got, &want, 2e-5, "layer_norm");
    }
}

/// dx and dw by central differences of the f64 reference on the loss sum(y * dy).
#[test]
fn layer_norm_backward_matches_finite_differences() {
    let (rows, c, eps) = (4, 9, 1e-5);
    let x = rand(rows * c, 53);
    let (w, b, dy) = (rand(c, 54), rand(c, 55), rand(rows * c, 56));
    let loss = |x: &[f32], w: &[f32]| -> f64 {
        x.chunks(c)
            .enumerate()
            .flat_map(|(r, xr)| {
                ln_row(xr, w, &b, eps)
                    .into_iter()
                    .enumerate()
                    .map(move |(j, y)| (r, j, y))
            })
            .map(|(r, j, y)| y * dy[r * c + j] as f64)
            .sum()
    };
    let h = 1e-3;
    let fd = |v: &mut Vec<f32>, i: usize, f: &dyn Fn(&[f32]) -> f64| {
        let orig = v[i];
        v[i] = orig + h;
        let up = f(v);
        v[i] = orig - h;
        let down = f(v);
        v[i] = orig;
        (up - down) / (2.0 * h as f64)
    };
    let mut xv = x.clone();
    let want_dx: Vec<f64> = (0..rows * c)
        .map(|i| fd(&mut xv, i, &|xx| loss(xx, &w)))
        .collect();
    let mut wv = w.clone();
    let want_dw: Vec<f64> = (0..c).map(|i| fd(&mut wv, i, &|ww| loss(&x, ww))).collect();
    let sx = [rows, c];
    let dx = run(
        &Op::LayerNormBackward { eps: 1e-5 },
        &[(&x, &sx), (&w, &[c]), (&dy, &sx)],
        &sx,
    )
    .unwrap();
    assert_close(&dx, &want_dx, 2e-3, "layer_norm_backward");
    let dw = run(
        &Op::LayerNormBackwardWeight { eps: 1e-5 },
        &[(&x, &sx), (&dy, &sx)],
        &[c],
    )
    .unwrap();
    assert_close(&dw, &want_dw, 2e-3, "layer_norm_backward_weight");
}

#[test]
fn layer_norm_backward_large_matches_analytic_reference() {
    let (rows, c) = (400, 96);
    let x = rand(rows * c, 57);
    let (w, dy) = (rand(c, 58), rand(rows * c, 59));
    let sx = [rows, c];
    let dx = run(
        &Op::LayerNormBackward { eps: 1e-5 },
        &[(&x, &sx), (&w, &[c]), (&dy, &sx)],
        &sx,
    )
    .unwrap();
    let dw = run(
        &Op::LayerNormBackwardWeight { eps: 1e-5 },
        &[(&x, &sx), (&dy, &sx)],
        &[c],
    )
    .unwrap();
    let (mut want_dx, mut want_dw) = (vec![0.0; rows * c], vec![0.0; c]);
    for r in 0..rows {
        let xr: Vec<f64> = x[r * c..(r + 1) * c].iter().map(|&v| v as f64).collect();
        let mean = xr.iter().sum::<f64>() / c as f64;
        let rstd =
            1.0 / (xr.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / c as f64 + 1e-5).sqrt();
        let xhat: Vec<f64> = xr.iter().map(|v| (v - mean) * rstd).collect();
        let g: Vec<f64> = (0..c).map(|j| dy[r * c + j] as f64 * w[j] as f64).collect();
        let mg = g.iter().sum::<f64>() / c as f64;
        let mgx = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / c as f64;
        for j in 0..c {
            want_dx[r * c + j] = rstd * (g[j] - mg - xhat[j] * mgx);
            want_dw[j] += dy[r * c + j] as f64 * xhat[j];
        }
    }
    assert_close(&dx, &want_dx, 2e-5, "layer_norm_backward");
    assert_close(&dw, &want_dw, 2e-5, "layer_norm_backward_weight");
}

#[test]
fn embedding_gathers_and_scatters_rows() {
    let (v, c) = (7, 5);
    let table = rand(v * c, 60);
    let idx = HostData::I32(vec![3, 0, 6, 3, 3, 1]);
    let tbl = HostData::F32(table.clone());
    let out = run_any(
        &Op::Embedding,
        &[(&tbl, &[v, c]), (&idx, &[2, 3])],
        &[2, 3, c],
        DType::F32,
        0,
    )
    .unwrap();
    let ids = idx.as_i32().unwrap();
    let want: Vec<f64> = ids
        .iter()
        .flat_map(|&i| table[i as usize * c..][..c].iter().map(|&x| x as f64))
        .collect();
    assert_close(out.as_f32().unwrap(), &want, 0.0, "embedding");

    let dy = HostData::F32(rand(6 * c, 61));
    let op = Op::EmbeddingBackward { vocab: v };
    let got = run_any(
        &op,
        &[(&idx, &[2, 3]), (&dy, &[2, 3, c])],
        &[v, c],
        DType::F32,
        0,
    )
    .unwrap();
    let mut want = vec![0.0f64; v * c];
    for (r, &i) in ids.iter().enumerate() {
        for j in 0..c {
            want[i as usize * c + j] += dy.as_f32().unwrap()[r * c + j] as f64;
        }
    }
    assert_close(got.as_f32().unwrap(), &want, 1e-6, "embedding_backward");
}

#[test]
fn embedding_rejects_out_of_range_and_float_indices() {
    let tbl = HostData::F32(rand(14, 62));
    let bad = HostData::I32(vec![0, 7, 1]);
    let err = run_any(
        &Op::Embedding,
        &[(&tbl, &[7, 2]), (&bad, &[3])],
        &[3, 2],
        DType::F32,
        0,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Batch { message } if message.contains('7') && message.contains("[0, 7)")),
        "{err}"
    );
    let neg = HostData::I32(vec![-1]);
    let err = run_any(
        &Op::Embedding,
        &[(&tbl, &[7, 2]), (&neg, &[1])],
        &[1, 2],
        DType::F32,
        0,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Batch { message } if message.contains("-1")),
        "{err}"
    );
    let floats = HostData::F32(vec![0.0, 1.0]);
    let err = run_any(
        &Op::Embedding,
        &[(&tbl, &[7, 2]), (&floats, &[2])],
        &[2, 2],
        DType::F32,
        0,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::DType { what, .. } if what.contains("embedding")),
        "{err}"
    );
}

#[test]
fn cross_entropy_forward_and_backward() {
    for (n, v) in [(5, 7), (64, 1000)] {
        let logits: Vec<f32> = rand(n * v, 70).iter().map(|x| 20.0 * x).collect();
        let labels: Vec<i32> = (0..n).map(|i| ((i * 37) % v) as i32).collect();
        let (lg, lb) = (HostData::F32(logits.clone()), HostData::I32(labels.clone()));
        let out = run_any(
            &Op::CrossEntropy,
            &[(&lg, &[n, v]), (&lb, &[n])],
            &[n],
            DType::F32,
            0,
        )
        .unwrap();
        let want: Vec<f64> = (0..n)
            .map(|r| {
                let row = &logits[r * v..(r + 1) * v];
                let m = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
                let lse = row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln() + m;
                lse - row[labels[r] as usize] as f64
            })
            .collect();
        assert_close(out.as_f32().unwrap(), &want, 1e-5, "cross_entropy");

        let dloss = HostData::F32(rand(n, 71));
        let op = Op::CrossEntropyBackward;
        let got = run_any(
            &op,
            &[(&lg, &[n, v]), (&lb, &[n]), (&dloss, &[n])],
            &[n, v],
            DType::F32,
            0,
        )
        .unwrap();
        let mut want = vec![0.0; n * v];
        for r in 0..n {
            let p = softmax_ref(&logits[r * v..(r + 1) * v]);
            let g = dloss.as_f32().unwrap()[r] as f64;
            for j in 0..v {
                let onehot = if j == labels[r] as usize { 1.0 } else { 0.0 };
                want[r * v + j] = (p[j] - onehot) * g;
            }
        }
        assert_close(got.as_f32().unwrap(), &want, 1e-6, "cross_entropy_backward");
    }
}

#[test]
fn cross_entropy_rejects_bad_labels() {
    let lg = HostData::F32(rand(6, 72));
    let bad = HostData::I32(vec![0, 3]);
    let err = run_any(
        &Op::CrossEntropy,
        &[(&lg, &[2, 3]), (&bad, &[2])],
        &[2],
        DType::F32,
        0,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Batch { message } if message.contains('3')),
        "{err}"
    );
    let floats = HostData::F32(vec![0.0, 1.0]);
    let err = run_any(
        &Op::CrossEntropy,
        &[(&lg, &[2, 3]), (&floats, &[2])],
        &[2],
        DType::F32,
        0,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::DType { what, .. } if what.contains("cross_entropy")),
        "{err}"
    );
}

#[test]
fn dropout_mask_is_reproducible_and_scaled() {
    let n = 50_000;
    let x: Vec<f32> = rand(n, 80).iter().map(|v| v + 2.0).collect();
    let (p, seed) = (0.25f32, 99);
    let xd = HostData::F32(x.clone());
    let fwd = |step| {
        run_any(
            &Op::Dropout { p, seed },
            &[(&xd, &[n])],
            &[n],
            DType::F32,
            step,
        )
        .unwrap()
    };
    let y = fwd(3);
    let y = y.as_f32().unwrap();
    let mut kept = 0;
    for i in 0..n {
        let keep = crate::rng::dropout_keep(seed, 3, i as u64, p);
        let want = if keep { x[i] / (1.0 - p) } else { 0.0 };
        assert!(
            (y[i] - want).abs() <= 1e-6 * want.abs(),
            "element {i}: {} vs {want}",
            y[i]
        );
        kept += usize::from(keep);
    }
    let frac = kept as f64 / n as f64;
    assert!((frac - 0.75).abs() < 0.01, "kept fraction {frac}");
    assert_ne!(
        fwd(4).as_f32().unwrap(),
        y,
        "the mask must change with the step"
    );
    // The backward applies the same mask to dy.
    let ones = HostData::F32(vec![1.0; n]);
    let dx = run_any(
        &Op::DropoutBackward { p, seed },
        &[(&ones, &[n])],
        &[n],
        DType::F32,
        3,
    )
    .unwrap();
    for (i, (&d, &yv)) in dx.as_f32().unwrap().iter().zip(y).enumerate() {
        assert_eq!(d == 0.0, yv == 0.0, "element {i}");
    }
    // Same mask on one thread and on two.
    let refs = [TensorRef {
        buf: &xd,
        shape: &[n][..],
        dtype: DType::F32,
    }];
    let mut one = HostData::zeros(DType::F32, n);
    CpuBackend::new(1)
        .execute(
            &Op::Dropout { p, seed },
            &refs,
            &mut one,
            &[n],
            &KernelCtx {
                step: 3,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(one.as_f32().unwrap(), y);
}

#[test]
fn dropout_edge_probabilities() {
    let x = rand(100, 81);
    let got = run(&Op::Dropout { p: 0.0, seed: 1 }, &[(&x, &[100])], &[100]).unwrap();
    assert_eq!(got, x);
    let got = run(&Op::Dropout { p: 1.0, seed: 1 }, &[(&x, &[100])], &[100]).unwrap();
    assert_eq!(got, vec![0.0; 100]);
    let err = run(&Op::Dropout { p: 1.5, seed: 1 }, &[(&x, &[100])], &[100]).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}
