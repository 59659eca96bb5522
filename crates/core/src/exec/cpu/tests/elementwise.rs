use super::*;
use crate::error::Error;
use crate::ir::{BinaryOp, Shape, UnaryOp};

const UNARY: [UnaryOp; 7] = [
    UnaryOp::Relu,
    UnaryOp::Gelu,
    UnaryOp::Tanh,
    UnaryOp::Exp,
    UnaryOp::Log,
    UnaryOp::Neg,
    UnaryOp::Sqrt,
];

fn gelu_ref(x: f64) -> f64 {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

fn unary_ref(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Gelu => gelu_ref(x),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Neg => -x,
        UnaryOp::Sqrt => x.sqrt(),
    }
}

/// Derivatives by central differences of the f64 reference: independent of any formula.
fn unary_grad_ref(op: UnaryOp, x: f64) -> f64 {
    if op == UnaryOp::Relu {
        return if x > 0.0 { 1.0 } else { 0.0 };
    }
    let h = 1e-6;
    (unary_ref(op, x + h) - unary_ref(op, x - h)) / (2.0 * h)
}

/// Inputs spread over [-4, 4) (positive for log/sqrt); `n` large takes the parallel path.
fn unary_inputs(op: UnaryOp, n: usize) -> Vec<f32> {
    let x = rand(n, 3);
    match op {
        UnaryOp::Log | UnaryOp::Sqrt => x.iter().map(|v| 0.05 + 2.0 * (v + 1.0)).collect(),
        _ => x.iter().map(|v| 4.0 * v).collect(),
    }
}

#[test]
fn unary_forward_matches_reference() {
    for op in UNARY {
        for n in [37, 50_000] {
            let x = unary_inputs(op, n);
            let got = run(&Op::Unary(op), &[(&x, &[n])], &[n]).unwrap();
            let want: Vec<f64> = x.iter().map(|&v| unary_ref(op, v as f64)).collect();
            assert_close(&got, &want, 2e-6, op.name());
        }
    }
}

#[test]
fn unary_backward_matches_finite_differences() {
    for op in UNARY {
        for n in [41, 40_000] {
            let x = unary_inputs(op, n);
            let dy = rand(n, 9);
            let got = run(&Op::UnaryBackward(op), &[(&x, &[n]), (&dy, &[n])], &[n]).unwrap();
            let want: Vec<f64> = x
                .iter()
                .zip(&dy)
                .map(|(&v, &g)| g as f64 * unary_grad_ref(op, v as f64))
                .collect();
            assert_close(&got, &want, 2e-5, op.backward_name());
        }
    }
}

#[test]
fn gelu_matches_pytorch_values() {
    // torch.nn.functional.gelu(torch.tensor([-3., -1., -0.5, 0., 0.5, 1., 3.]), approximate='tanh')
    let x = [-3.0f32, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0];
    let want = [
        -0.0036373, -0.1588080, -0.1542859, 0.0, 0.3457141, 0.8411920, 2.9963627,
    ];
    let got = run(&Op::Unary(UnaryOp::Gelu), &[(&x, &[7])], &[7]).unwrap();
    assert_close(&got, &want, 1e-6, "gelu");
}

/// Naive numpy broadcasting: out[idx] = f(a[idx mapped], b[idx mapped]).
fn binary_ref(
    op: BinaryOp,
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    so: &[usize],
) -> Vec<f64> {
    let pick = |x: &[f32], s: &[usize], idx: &[usize]| {
        let lead = idx.len() - s.len();
        let sub: Vec<usize> = s
            .iter()
            .enumerate()
            .map(|(d, &n)| if n == 1 { 0 } else { idx[lead + d] })
            .collect();
        x[ravel(&sub, s)] as f64
    };
    (0..numel(so))
        .map(|i| {
            let idx = unravel(i, so);
            let (x, y) = (pick(a, sa, &idx), pick(b, sb, &idx));
            match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
            }
        })
        .collect()
}

#[test]
fn binary_broadcasting_matches_reference() {
    let cases: &[(&[usize], &[usize], &[usize])] = &[
        (&[3, 4], &[3, 4], &[3, 4]),
        (&[2, 3, 4], &[4], &[2, 3, 4]),
        (&[4], &[2, 3, 4], &[2, 3, 4]),
        (&[2, 3, 4], &[1, 3, 4], &[2, 3, 4]),
        (&[2, 1, 4], &[3, 1], &[2, 3, 4]),
        (&[2, 3, 1], &[1, 3, 4], &[2, 3, 4]),
        (&[5, 1], &[1, 6], &[5, 6]),
        (&[1], &[2, 3], &[2, 3]),
        (&[2, 3], &[], &[2, 3]),
        (&[], &[], &[]),
        (&[600, 96], &[96], &[600, 96]),
        (&[600, 96], &[600, 96], &[600, 96]),
    ];
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
        for &(sa, sb, so) in cases {
            let a = rand(numel(sa), 1);
            // Keep divisors away from zero.
            let b: Vec<f32> = rand(numel(sb), 2).iter().map(|v| v + 2.5).collect();
            let got = run(&Op::Binary(op), &[(&a, sa), (&b, sb)], so).unwrap();
            let want = binary_ref(op, &a, sa, &b, sb, so);
            assert_close(&got, &want, 1e-6, &format!("{} {sa:?} {sb:?}", op.name()));
        }
    }
}

#[test]
fn binary_rejects_bad_shapes_and_dtypes() {
    let a = rand(6, 1);
    let err = run(
        &Op::Binary(BinaryOp::Add),
        &[(&a, &[2, 3]), (&a, &[3, 2])],
        &[2, 3],
    )
    .unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let err = run(
        &Op::Binary(BinaryOp::Add),
        &[(&a, &[2, 3]), (&a[..3], &[3])],
        &[3, 3],
    )
    .unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let ints = HostData::I32(vec![1; 6]);
    let floats = HostData::F32(a.clone());
    let err = run_any(
        &Op::Binary(BinaryOp::Mul),
        &[(&floats, &[6]), (&ints, &[6])],
        &[6],
        DType::F32,
        0,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::DType { what, .. } if what.contains("mul")),
        "{err}"
    );
    let err = run_any(
        &Op::Unary(UnaryOp::Relu),
        &[(&ints, &[6])],
        &[6],
        DType::F32,
        0,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::DType { what, .. } if what.contains("relu")),
        "{err}"
    );
}

#[test]
fn scale_multiplies() {
    let x = rand(100, 4);
    let got = run(&Op::Scale { factor: -0.25 }, &[(&x, &[10, 10])], &[10, 10]).unwrap();
    let want: Vec<f64> = x.iter().map(|&v| v as f64 * -0.25).collect();
    assert_close(&got, &want, 1e-7, "scale");
}

#[test]
fn expand_broadcasts_f32_and_i32() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[3, 1], &[2, 3, 4]),
        (&[4], &[3, 4]),
        (&[1], &[5]),
        (&[2, 1, 3], &[2, 4, 3]),
        (&[2, 3], &[2, 3]),
    ];
    for &(sx, so) in cases {
        let x = rand(numel(sx), 5);
        let op = Op::Expand {
            shape: Shape::fixed(so),
        };
        let got = run(&op, &[(&x, sx)], so).unwrap();
        let ones = vec![1.0f32; numel(so)];
        let want = binary_ref(BinaryOp::Mul, &x, sx, &ones, so, so);
        assert_close(&got, &want, 0.0, &format!("expand {sx:?}->{so:?}"));
        let ints: Vec<i32> = (0..numel(sx) as i32).collect();
        let as_f: Vec<f32> = ints.iter().map(|&v| v as f32).collect();
        let want_i: Vec<i32> = binary_ref(BinaryOp::Mul, &as_f, sx, &ones, so, so)
            .iter()
            .map(|&v| v as i32)
            .collect();
        let got = run_any(&op, &[(&HostData::I32(ints), sx)], so, DType::I32, 0).unwrap();
        assert_eq!(got.as_i32().unwrap(), &want_i[..]);
    }
    let x = rand(3, 5);
    let err = run(
        &Op::Expand {
            shape: Shape::fixed(&[4]),
        },
        &[(&x, &[3])],
        &[4],
    )
    .unwrap_err();
    assert!(matches!(err, Error::Shape { .. }));
}

#[test]
fn sum_to_is_the_adjoint_of_expand() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[2, 3, 4], &[4]),
        (&[2, 3, 4], &[3, 1]),
        (&[2, 3, 4], &[2, 1, 4]),
        (&[2, 3, 4], &[1, 3, 4]),
        (&[2, 3, 4], &[]),
        (&[2, 3, 4], &[1]),
        (&[2, 3, 4], &[2, 3, 4]),
        (&[1000, 64], &[64]),
        (&[1000, 64], &[1000, 1]),
    ];
    for &(sx, so) in cases {
        let x = rand(numel(sx), 6);
        let got = run(
            &Op::SumTo {
                shape: Shape::fixed(so),
            },
            &[(&x, sx)],
            so,
        )
        .unwrap();
        let mut want = vec![0.0f64; numel(so)];
        for (i, &v) in x.iter().enumerate() {
            let idx = unravel(i, sx);
            let lead = sx.len() - so.len();
            let sub: Vec<usize> = so
                .iter()
                .enumerate()
                .map(|(d, &n)| if n == 1 { 0 } else { idx[lead + d] })
                .collect();
            want[ravel(&sub, so)] += v as f64;
        }
        assert_close(&got, &want, 1e-6, &format!("sum_to {sx:?}->{so:?}"));
    }
}

#[test]
fn fill_writes_the_value() {
    let got = run(
        &Op::Fill {
            value: 2.5,
            shape: Shape::fixed(&[2, 3]),
        },
        &[],
        &[2, 3],
    )
    .unwrap();
    assert_eq!(got, vec![2.5; 6]);
    let err = run(
        &Op::Fill {
            value: 2.5,
            shape: Shape::fixed(&[2, 3]),
        },
        &[],
        &[3, 2],
    )
    .unwrap_err();
    assert!(matches!(err, Error::Shape { .. }));
}
