//! The harness's cases: every op of the IR with deterministic inputs, f32 first, then the
//! mixed-precision ones.

use weft_core::exec::HostData;
use weft_core::ir::{BinaryOp, DType, Op, ReduceOp, Shape, UnaryOp};
use weft_core::rng;
use weft_core::tensor::half::narrow_into;

#[derive(Clone)]
pub struct Case {
    pub label: String,
    pub op: Op,
    pub inputs: Vec<(Vec<usize>, HostData)>,
}

/// Deterministic data in [lo, hi).
pub(super) fn data(seed: u64, shape: &[usize], lo: f32, hi: f32) -> (Vec<usize>, HostData) {
    let n: usize = shape.iter().product();
    let v = (0..n as u64)
        .map(|i| lo + (hi - lo) * rng::uniform(seed, 11, i))
        .collect();
    (shape.to_vec(), HostData::F32(v))
}

/// Deterministic data of a 16-bit float type (the f32 values rounded).
fn half(dtype: DType, seed: u64, shape: &[usize], lo: f32, hi: f32) -> (Vec<usize>, HostData) {
    let (shape, wide) = data(seed, shape, lo, hi);
    let mut out = HostData::zeros(dtype, wide.len());
    narrow_into(wide.as_f32().unwrap_or_default(), &mut out);
    (shape, out)
}

fn ints(shape: &[usize], vals: impl Fn(usize) -> i32) -> (Vec<usize>, HostData) {
    let n: usize = shape.iter().product();
    (shape.to_vec(), HostData::I32((0..n).map(vals).collect()))
}

fn case(label: impl Into<String>, op: Op, inputs: Vec<(Vec<usize>, HostData)>) -> Case {
    Case {
        label: label.into(),
        op,
        inputs,
    }
}

fn elementwise_cases() -> Vec<Case> {
    let mut v = vec![case(
        "fill",
        Op::Fill {
            value: 1.5,
            shape: Shape::fixed(&[3, 4]),
        },
        vec![],
    )];
    for (i, u) in [
        UnaryOp::Relu,
        UnaryOp::Gelu,
        UnaryOp::Tanh,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Neg,
        UnaryOp::Sqrt,
    ]
    .into_iter()
    .enumerate()
    {
        let lo = if matches!(u, UnaryOp::Log | UnaryOp::Sqrt) {
            0.1
        } else {
            -3.0
        };
        let x = data(i as u64, &[4, 33], lo, 3.0);
        v.push(case(u.name(), Op::Unary(u), vec![x.clone()]));
        let dy = data(100 + i as u64, &[4, 33], -1.0, 1.0);
        v.push(case(u.backward_name(), Op::UnaryBackward(u), vec![x, dy]));
    }
    for b in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
        let x = data(20, &[2, 3, 4], -2.0, 2.0);
        let y = data(21, &[3, 1], 0.5, 2.0);
        v.push(case(
            format!("{} broadcast", b.name()),
            Op::Binary(b),
            vec![x, y.clone()],
        ));
        v.push(case(
            format!("{} left broadcast", b.name()),
            Op::Binary(b),
            vec![y, data(22, &[2, 3, 4], 0.5, 2.0)],
        ));
    }
    v.push(case(
        "scale",
        Op::Scale { factor: -0.75 },
        vec![data(23, &[5, 7], -1.0, 1.0)],
    ));
    v.push(case(
        "sum_to",
        Op::SumTo {
            shape: Shape::fixed(&[3, 1]),
        },
        vec![data(24, &[2, 3, 4], -1.0, 1.0)],
    ));
    v.push(case(
        "sum_to rank-1",
        Op::SumTo {
            shape: Shape::fixed(&[4]),
        },
        vec![data(25, &[2, 3, 4], -1.0, 1.0)],
    ));
    v
}

fn shape_cases() -> Vec<Case> {
    let x = || data(30, &[2, 3, 4], -1.0, 1.0);
    let idx = || ints(&[2, 3, 4], |i| i as i32 * 7 - 20);
    vec![
        case(
            "reshape",
            Op::Reshape {
                shape: Shape::fixed(&[6, 4]),
            },
            vec![x()],
        ),
        case(
            "reshape i32",
            Op::Reshape {
                shape: Shape::fixed(&[4, 6]),
            },
            vec![idx()],
        ),
        case(
            "permute",
            Op::Permute {
                perm: vec![2, 0, 1],
            },
            vec![x()],
        ),
        case(
            "permute i32",
            Op::Permute {
                perm: vec![1, 2, 0],
            },
            vec![idx()],
        ),
        case(
            "slice",
            Op::Slice {
                axis: 1,
                start: 1,
                end: 3,
            },
            vec![x()],
        ),
        case(
            "slice_backward",
            Op::SliceBackward {
                axis: 2,
                start: 1,
                len: 6,
            },
            vec![x()],
        ),
        case(
            "concat",
            Op::Concat { axis: 1 },
            vec![x(), data(31, &[2, 1, 4], -1.0, 1.0)],
        ),
        case(
            "expand",
            Op::Expand {
                shape: Shape::fixed(&[2, 3, 4]),
            },
            vec![data(32, &[3, 1], -1.0, 1.0)],
        ),
    ]
}

fn reduce_cases() -> Vec<Case> {
    let mut v = Vec::new();
    for r in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
        for keepdim in [false, true] {
            let op = Op::Reduce {
                op: r,
                axis: 1,
                keepdim,
            };
            v.push(case(
                format!("{} keepdim={keepdim}", r.name()),
                op,
                vec![data(40, &[3, 17, 5], -2.0, 2.0)],
            ));
        }
    }
    v.push(case(
        "max_backward",
        Op::MaxBackward {
            axis: 1,
            keepdim: false,
        },
        vec![
            data(40, &[3, 17, 5], -2.0, 2.0),
            data(41, &[3, 5], -1.0, 1.0),
        ],
    ));
    v
}

fn matmul_cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = if ta { [2, 7, 5] } else { [2, 5, 7] };
        let b = if tb { [2, 3, 7] } else { [2, 7, 3] };
        let op = Op::MatMul {
            trans_a: ta,
            trans_b: tb,
        };
        v.push(case(
            format!("matmul ta={ta} tb={tb}"),
            op.clone(),
            vec![data(50, &a, -1.0, 1.0), data(51, &b, -1.0, 1.0)],
        ));
        let b2 = if tb { [3, 7] } else { [7, 3] };
        v.push(case(
            format!("matmul shared b ta={ta} tb={tb}"),
            op,
            vec![data(52, &a, -1.0, 1.0), data(53, &b2, -1.0, 1.0)],
        ));
    }
    v.push(case(
        "matmul shared a",
        Op::MatMul {
            trans_a: false,
            trans_b: false,
        },
        vec![
            data(54, &[5, 7], -1.0, 1.0),
            data(55, &[4, 7, 3], -1.0, 1.0),
        ],
    ));
    v
}

fn nn_cases() -> Vec<Case> {
    let (n, c) = (6, 40);
    let x = || data(60, &[n, c], -2.0, 2.0);
    let qkv = || data(64, &[2, 9, 48], -1.0, 1.0);
    vec![
        case("softmax", Op::Softmax, vec![data(61, &[5, 37], -4.0, 4.0)]),
        case(
            "softmax_backward",
            Op::SoftmaxBackward,
            vec![data(62, &[5, 37], 0.0, 0.1), data(63, &[5, 37], -1.0, 1.0)],
        ),
        case(
            "layer_norm",
            Op::LayerNorm { eps: 1e-5 },
            vec![x(), data(65, &[c], 0.5, 1.5), data(66, &[c], -0.5, 0.5)],
        ),
        case(
            "layer_norm_backward",
            Op::LayerNormBackward { eps: 1e-5 },
            vec![x(), data(65, &[c], 0.5, 1.5), data(67, &[n, c], -1.0, 1.0)],
        ),
        case(
            "layer_norm_backward_weight",
            Op::LayerNormBackwardWeight { eps: 1e-5 },
            vec![x(), data(67, &[n, c], -1.0, 1.0)],
        ),
        case(
            "embedding",
            Op::Embedding,
            vec![
                data(68, &[10, 8], -1.0, 1.0),
                ints(&[3, 4], |i| (i * 7 % 10) as i32),
            ],
        ),
        case(
            "embedding_backward",
            Op::EmbeddingBackward { vocab: 10 },
            vec![
                ints(&[3, 4], |i| (i * 3 % 10) as i32),
                data(69, &[3, 4, 8], -1.0, 1.0),
            ],
        ),
        case(
            "causal_attention",
            Op::CausalAttention { heads: 2 },
            vec![qkv()],
        ),
        case(
            "causal_attention_backward",
            Op::CausalAttentionBackward { heads: 2 },
            vec![qkv(), data(70, &[2, 9, 16], -1.0, 1.0)],
        ),
    ]
}

/// Cross-entropy and dropout.
fn loss_cases() -> Vec<Case> {
    let v_ = 11;
    let labels = || ints(&[7], |i| (i * 3 % v_) as i32);
    vec![
        case(
            "cross_entropy",
            Op::CrossEntropy,
            vec![data(71, &[7, v_], -3.0, 3.0), labels()],
        ),
        case(
            "cross_entropy_backward",
            Op::CrossEntropyBackward,
            vec![
                data(71, &[7, v_], -3.0, 3.0),
                labels(),
                data(72, &[7], 0.0, 1.0),
            ],
        ),
        case(
            "dropout",
            Op::Dropout { p: 0.3, seed: 9 },
            vec![data(73, &[3, 50], -1.0, 1.0)],
        ),
        case(
            "dropout_backward",
            Op::DropoutBackward { p: 0.3, seed: 9 },
            vec![data(74, &[3, 50], -1.0, 1.0)],
        ),
        case(
            "dropout p=1",
            Op::Dropout { p: 1.0, seed: 9 },
            vec![data(73, &[3, 50], -1.0, 1.0)],
        ),
    ]
}

/// Casts between every pair of float types, and the loss-scale leaf.
fn cast_cases() -> Vec<Case> {
    use DType::{BF16, F16, F32};
    let mut v = vec![case("loss_scale", Op::LossScale, vec![])];
    for (from, to) in [
        (F32, BF16),
        (F32, F16),
        (BF16, F32),
        (F16, F32),
        (BF16, F16),
        (F16, BF16),
    ] {
        let x = if from == F32 {
            data(90, &[3, 41], -70.0, 70.0)
        } else {
            half(from, 90, &[3, 41], -3.0, 3.0)
        };
        v.push(case(format!("cast {from}->{to}"), Op::Cast { to }, vec![x]));
    }
    v
}

/// Ops on bf16/f16 tensors: launches of one float type and launches mixing types.
fn half_cases() -> Vec<Case> {
    use DType::{BF16, F16};
    let mut v = vec![
        case(
            "layer_norm all bf16",
            Op::LayerNorm { eps: 1e-5 },
            vec![
                half(BF16, 106, &[6, 40], -2.0, 2.0),
                half(BF16, 107, &[40], 0.5, 1.5),
                half(BF16, 108, &[40], -0.5, 0.5),
            ],
        ),
        case(
            "gelu bf16",
            Op::Unary(UnaryOp::Gelu),
            vec![half(BF16, 92, &[4, 33], -3.0, 3.0)],
        ),
        case(
            "gelu_backward f16",
            Op::UnaryBackward(UnaryOp::Gelu),
            vec![
                half(F16, 93, &[4, 33], -3.0, 3.0),
                half(F16, 94, &[4, 33], -1.0, 1.0),
            ],
        ),
        case(
            "mul f16 broadcast",
            Op::Binary(BinaryOp::Mul),
            vec![
                half(F16, 95, &[2, 3, 4], -2.0, 2.0),
                half(F16, 96, &[3, 1], -2.0, 2.0),
            ],
        ),
        case(
            "matmul bf16",
            Op::MatMul {
                trans_a: false,
                trans_b: true,
            },
            vec![
                half(BF16, 97, &[2, 5, 7], -1.0, 1.0),
                half(BF16, 98, &[3, 7], -1.0, 1.0),
            ],
        ),
    ];
    v.extend(mixed_half_cases());
    v
}

/// bf16 activations with f32 parameters or gradients, and 16-bit data movement.
fn mixed_half_cases() -> Vec<Case> {
    use DType::{BF16, F16};
    let (x, w, b) = (
        half(BF16, 91, &[6, 40], -2.0, 2.0),
        data(65, &[40], 0.5, 1.5),
        data(66, &[40], -0.5, 0.5),
    );
    vec![
        case(
            "cross_entropy bf16 logits",
            Op::CrossEntropy,
            vec![
                half(BF16, 109, &[7, 11], -3.0, 3.0),
                ints(&[7], |i| (i * 3 % 11) as i32),
            ],
        ),
        case(
            "cross_entropy_backward bf16 logits",
            Op::CrossEntropyBackward,
            vec![
                half(BF16, 109, &[7, 11], -3.0, 3.0),
                ints(&[7], |i| (i * 3 % 11) as i32),
                data(110, &[7], 0.0, 1.0),
            ],
        ),
        case(
            "layer_norm_backward_weight bf16",
            Op::LayerNormBackwardWeight { eps: 1e-5 },
            vec![x.clone(), half(BF16, 111, &[6, 40], -1.0, 1.0)],
        ),
        case(
            "layer_norm bf16 x, f32 w b",
            Op::LayerNorm { eps: 1e-5 },
            vec![x.clone(), w.clone(), b],
        ),
        case(
            "layer_norm_backward bf16",
            Op::LayerNormBackward { eps: 1e-5 },
            vec![x.clone(), w, half(BF16, 99, &[6, 40], -1.0, 1.0)],
        ),
        case(
            "causal_attention bf16",
            Op::CausalAttention { heads: 2 },
            vec![half(BF16, 100, &[2, 9, 48], -1.0, 1.0)],
        ),
        case(
            "embedding_backward bf16 dy",
            Op::EmbeddingBackward { vocab: 10 },
            vec![
                ints(&[3, 4], |i| (i * 3 % 10) as i32),
                half(BF16, 101, &[3, 4, 8], -1.0, 1.0),
            ],
        ),
        case(
            "dropout f16",
            Op::Dropout { p: 0.3, seed: 9 },
            vec![half(F16, 102, &[3, 50], -1.0, 1.0)],
        ),
        case(
            "scale bf16",
            Op::Scale { factor: 0.3 },
            vec![half(BF16, 103, &[3, 17, 5], -2.0, 2.0)],
        ),
        case("permute bf16", Op::Permute { perm: vec![1, 0] }, vec![x]),
        case(
            "concat f16",
            Op::Concat { axis: 0 },
            vec![
                half(F16, 104, &[2, 3], -1.0, 1.0),
                half(F16, 105, &[1, 3], -1.0, 1.0),
            ],
        ),
    ]
}

/// Every case: each op of the IR except the two leaves the executor feeds (input, parameter).
pub fn cases() -> Vec<Case> {
    [
        elementwise_cases(),
        shape_cases(),
        reduce_cases(),
        matmul_cases(),
        nn_cases(),
        loss_cases(),
        cast_cases(),
        half_cases(),
    ]
    .concat()
}
