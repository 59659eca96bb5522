use super::*;
use crate::error::Error;

/// Stored shape of a logical [rows, cols] operand with `batch` dims, transposed if `t`.
fn stored(batch: &[usize], rows: usize, cols: usize, t: bool) -> Vec<usize> {
    let mut s = batch.to_vec();
    s.extend(if t { [cols, rows] } else { [rows, cols] });
    s
}

/// Element (i, j) of logical matrix `bi` of a stored operand.
fn at(x: &[f32], bi: usize, rows: usize, cols: usize, t: bool, i: usize, j: usize) -> f64 {
    let base = bi * rows * cols;
    (if t {
        x[base + j * rows + i]
    } else {
        x[base + i * cols + j]
    }) as f64
}

/// Triple-loop reference; `ab`/`bb` are the batch counts (1 when that side is shared).
fn matmul_ref(
    a: &[f32],
    b: &[f32],
    (batch, m, n, k): (usize, usize, usize, usize),
    (ta, tb): (bool, bool),
    (ab, bb): (usize, usize),
) -> Vec<f64> {
    let mut out = vec![0.0; batch * m * n];
    for p in 0..batch {
        let (pa, pb) = (if ab == 1 { 0 } else { p }, if bb == 1 { 0 } else { p });
        for i in 0..m {
            for j in 0..n {
                out[(p * m + i) * n + j] = (0..k)
                    .map(|l| at(a, pa, m, k, ta, i, l) * at(b, pb, k, n, tb, l, j))
                    .sum();
            }
        }
    }
    out
}

/// Runs matmul with a's batch dims `a_batch` and b's `b_batch` (one may be empty: shared).
fn check(
    a_batch: &[usize],
    b_batch: &[usize],
    (m, n, k): (usize, usize, usize),
    ta: bool,
    tb: bool,
) {
    let sa = stored(a_batch, m, k, ta);
    let sb = stored(b_batch, k, n, tb);
    let a = rand(numel(&sa), 11);
    let b = rand(numel(&sb), 12);
    let batch_dims = if a_batch.is_empty() { b_batch } else { a_batch };
    let so = stored(batch_dims, m, n, false);
    let op = Op::MatMul {
        trans_a: ta,
        trans_b: tb,
    };
    let got = run(&op, &[(&a, &sa), (&b, &sb)], &so).unwrap();
    let batch = numel(batch_dims);
    let want = matmul_ref(
        &a,
        &b,
        (batch, m, n, k),
        (ta, tb),
        (numel(a_batch), numel(b_batch)),
    );
    let tol = 1e-6 * (k as f64).sqrt().max(1.0) * 4.0;
    assert_close(
        &got,
        &want,
        tol,
        &format!("matmul a{sa:?} b{sb:?} ta={ta} tb={tb}"),
    );
}

#[test]
fn rank2_all_transposes_non_square() {
    for ta in [false, true] {
        for tb in [false, true] {
            check(&[], &[], (5, 3, 7), ta, tb);
            check(&[], &[], (1, 9, 4), ta, tb);
        }
    }
}

#[test]
fn batched_equal_batch_dims() {
    for ta in [false, true] {
        for tb in [false, true] {
            check(&[2, 3], &[2, 3], (4, 5, 6), ta, tb);
        }
    }
}

#[test]
fn shared_right_operand_folds_or_loops() {
    for ta in [false, true] {
        for tb in [false, true] {
            check(&[3], &[], (4, 6, 5), ta, tb);
            check(&[2, 2], &[], (7, 3, 2), ta, tb);
        }
    }
}

#[test]
fn shared_left_operand() {
    for ta in [false, true] {
        for tb in [false, true] {
            check(&[], &[3], (4, 6, 5), ta, tb);
        }
    }
}

#[test]
fn large_products_take_the_threaded_path() {
    check(&[], &[], (130, 90, 70), false, true);
    check(&[], &[], (70, 130, 90), true, false);
    check(&[4], &[], (96, 64, 80), false, false);
    // Many small products: parallel over the batch.
    check(&[16], &[16], (8, 8, 8), false, true);
}

#[test]
fn empty_inner_dimension_gives_zeros() {
    let got = run(
        &Op::MatMul {
            trans_a: false,
            trans_b: false,
        },
        &[(&[], &[2, 0]), (&[], &[0, 3])],
        &[2, 3],
    )
    .unwrap();
    assert_eq!(got, vec![0.0; 6]);
}

#[test]
fn mismatched_operands_are_shape_errors() {
    let a = rand(12, 1);
    let op = Op::MatMul {
        trans_a: false,
        trans_b: false,
    };
    let err = run(&op, &[(&a, &[3, 4]), (&a, &[3, 4])], &[3, 4]).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let b = rand(24, 2);
    let err = run(&op, &[(&b, &[2, 3, 4]), (&b, &[3, 4, 2])], &[2, 3, 2]).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let err = run(&op, &[(&a, &[3, 4]), (&a, &[4, 3])], &[3, 4]).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}
