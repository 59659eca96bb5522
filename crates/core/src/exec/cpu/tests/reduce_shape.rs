use super::*;
use crate::error::Error;
use crate::ir::{ReduceOp, Shape};

fn reduced(shape: &[usize], axis: usize, keepdim: bool) -> Vec<usize> {
    let mut s = shape.to_vec();
    if keepdim {
        s[axis] = 1;
    } else {
        s.remove(axis);
    }
    s
}

#[test]
fn reductions_over_every_axis() {
    let shape = [3, 4, 5];
    let x = rand(60, 21);
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
        for axis in 0..3 {
            for keepdim in [false, true] {
                let so = reduced(&shape, axis, keepdim);
                let got = run(&Op::Reduce { op, axis, keepdim }, &[(&x, &shape)], &so).unwrap();
                let mut want = vec![0.0f64; numel(&so)];
                let mut seen = vec![false; want.len()];
                for (i, &v) in x.iter().enumerate() {
                    let mut idx = unravel(i, &shape);
                    idx[axis] = 0;
                    let o = ravel(&idx, &reduced(&shape, axis, true));
                    match op {
                        ReduceOp::Max if seen[o] => want[o] = want[o].max(v as f64),
                        ReduceOp::Max => want[o] = v as f64,
                        ReduceOp::Sum => want[o] += v as f64,
                        ReduceOp::Mean => want[o] += v as f64 / shape[axis] as f64,
                    }
                    seen[o] = true;
                }
                assert_close(
                    &got,
                    &want,
                    1e-6,
                    &format!("{} axis {axis} keepdim {keepdim}", op.name()),
                );
            }
        }
    }
}

#[test]
fn max_propagates_nan_and_backward_picks_the_first_argmax() {
    let x = [1.0, f32::NAN, 0.5, 2.0, 2.0, 1.0];
    let got = run(
        &Op::Reduce {
            op: ReduceOp::Max,
            axis: 1,
            keepdim: false,
        },
        &[(&x, &[2, 3])],
        &[2],
    )
    .unwrap();
    assert!(got[0].is_nan() && got[1] == 2.0, "{got:?}");
    let dy = [3.0, 4.0];
    let op = Op::MaxBackward {
        axis: 1,
        keepdim: true,
    };
    let got = run(&op, &[(&x, &[2, 3]), (&dy, &[2, 1])], &[2, 3]).unwrap();
    assert_eq!(got, vec![0.0, 3.0, 0.0, 4.0, 0.0, 0.0]);
}

#[test]
fn max_backward_over_a_middle_axis() {
    let shape = [2, 3, 4];
    let x = rand(24, 22);
    let dy = rand(8, 23);
    let got = run(
        &Op::MaxBackward {
            axis: 1,
            keepdim: false,
        },
        &[(&x, &shape), (&dy, &[2, 4])],
        &shape,
    )
    .unwrap();
    let mut want = vec![0.0f64; 24];
    for o in 0..2 {
        for i in 0..4 {
            let best = (0..3)
                .max_by(|&p, &q| x[(o * 3 + p) * 4 + i].total_cmp(&x[(o * 3 + q) * 4 + i]))
                .unwrap();
            want[(o * 3 + best) * 4 + i] = dy[o * 4 + i] as f64;
        }
    }
    assert_close(&got, &want, 0.0, "max_backward");
}

#[test]
fn reshape_copies_and_checks_counts() {
    let x = rand(12, 1);
    let got = run(
        &Op::Reshape {
            shape: Shape::fixed(&[4, 3]),
        },
        &[(&x, &[3, 4])],
        &[4, 3],
    )
    .unwrap();
    assert_eq!(got, x);
    let err = run(
        &Op::Reshape {
            shape: Shape::fixed(&[5, 3]),
        },
        &[(&x, &[3, 4])],
        &[5, 3],
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Internal { .. } | Error::Shape { .. }),
        "{err}"
    );
}

#[test]
fn permute_matches_index_mapping() {
    let shape = [2, 3, 4, 5];
    let x = rand(120, 2);
    for perm in [
        vec![0, 2, 1, 3],
        vec![3, 0, 2, 1],
        vec![1, 0, 3, 2],
        vec![0, 1, 2, 3],
    ] {
        let so: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let got = run(&Op::Permute { perm: perm.clone() }, &[(&x, &shape)], &so).unwrap();
        let want: Vec<f64> = (0..120)
            .map(|o| {
                let oi = unravel(o, &so);
                let mut xi = [0; 4];
                for (d, &p) in perm.iter().enumerate() {
                    xi[p] = oi[d];
                }
                x[ravel(&xi, &shape)] as f64
            })
            .collect();
        assert_close(&got, &want, 0.0, &format!("permute {perm:?}"));
    }
    let err = run(
        &Op::Permute {
            perm: vec![0, 0, 1, 2],
        },
        &[(&x, &shape)],
        &shape,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}

#[test]
fn slice_and_its_backward() {
    let shape = [3, 5, 2];
    let x = rand(30, 3);
    let got = run(
        &Op::Slice {
            axis: 1,
            start: 1,
            end: 4,
        },
        &[(&x, &shape)],
        &[3, 3, 2],
    )
    .unwrap();
    let want: Vec<f64> = (0..18)
        .map(|o| {
            let i = unravel(o, &[3, 3, 2]);
            x[ravel(&[i[0], i[1] + 1, i[2]], &shape)] as f64
        })
        .collect();
    assert_close(&got, &want, 0.0, "slice");
    let dy = rand(18, 4);
    let op = Op::SliceBackward {
        axis: 1,
        start: 1,
        len: 5,
    };
    let got = run(&op, &[(&dy, &[3, 3, 2])], &shape).unwrap();
    let want: Vec<f64> = (0..30)
        .map(|o| {
            let i = unravel(o, &shape);
            if (1..4).contains(&i[1]) {
                dy[ravel(&[i[0], i[1] - 1, i[2]], &[3, 3, 2])] as f64
            } else {
                0.0
            }
        })
        .collect();
    assert_close(&got, &want, 0.0, "slice_backward");
    let err = run(
        &Op::Slice {
            axis: 1,
            start: 2,
            end: 6,
        },
        &[(&x, &shape)],
        &[3, 4, 2],
    )
    .unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}

#[test]
fn slice_works_on_i32() {
    let x = HostData::I32((0..12).collect());
    let got = run_any(
        &Op::Slice {
            axis: 0,
            start: 1,
            end: 3,
        },
        &[(&x, &[4, 3])],
        &[2, 3],
        DType::I32,
        0,
    )
    .unwrap();
    assert_eq!(got.as_i32().unwrap(), &[3, 4, 5, 6, 7, 8]);
}

#[test]
fn concat_along_each_axis() {
    for axis in 0..3 {
        let sizes = [1, 3, 2];
        let shapes: Vec<Vec<usize>> = sizes
            .iter()
            .map(|&n| {
                let mut s = vec![2, 3, 4];
                s[axis] = n;
                s
            })
            .collect();
        let xs: Vec<Vec<f32>> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| rand(numel(s), 30 + i as u64))
            .collect();
        let mut so = vec![2, 3, 4];
        so[axis] = 6;
        let inputs: Vec<(&[f32], &[usize])> = xs
            .iter()
            .zip(&shapes)
            .map(|(x, s)| (&x[..], &s[..]))
            .collect();
        let got = run(&Op::Concat { axis }, &inputs, &so).unwrap();
        let want: Vec<f64> = (0..numel(&so))
            .map(|o| {
                let mut i = unravel(o, &so);
                let mut part = 0;
                while i[axis] >= sizes[part] {
                    i[axis] -= sizes[part];
                    part += 1;
                }
                xs[part][ravel(&i, &shapes[part])] as f64
            })
            .collect();
        assert_close(&got, &want, 0.0, &format!("concat axis {axis}"));
    }
    let a = rand(6, 1);
    let err = run(
        &Op::Concat { axis: 0 },
        &[(&a, &[2, 3]), (&a, &[3, 2])],
        &[4, 3],
    )
    .unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let (f, i) = (HostData::F32(a.clone()), HostData::I32(vec![0; 6]));
    let err = run_any(
        &Op::Concat { axis: 0 },
        &[(&f, &[2, 3]), (&i, &[2, 3])],
        &[4, 3],
        DType::F32,
        0,
    )
    .unwrap_err();
    assert!(matches!(err, Error::DType { .. }), "{err}");
}
