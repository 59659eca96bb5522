//! Op descriptions from JSON: attributes, axes, errors, and that every op kind is either parsed
//! by its own name or refused by name.

use serde_json::{Value, json};

use super::*;
use crate::ir::DType;

fn builder_with_x() -> (GraphBuilder, NodeId) {
    let mut b = GraphBuilder::new();
    let shape = shape_from_js("input", &[None, Some(3), Some(8)]).unwrap();
    let x = b.input("x", shape, DType::F32).unwrap();
    (b, x)
}

#[test]
fn null_is_the_batch_dimension() {
    let s = shape_from_js("input", &[None, Some(4)]).unwrap();
    assert_eq!(s, Shape(vec![Dim::Batch(1), Dim::Fixed(4)]));
    let e = shape_from_js("input", &[Some(-2)]).unwrap_err();
    assert_eq!(e.code(), "WEFT_SHAPE");
}

#[test]
fn attributes_become_ops_with_normalised_axes() {
    let (b, x) = builder_with_x();
    let op = |kind: &str, attrs: Value| op_from_json(&b, kind, &[x], attrs).unwrap();
    assert_eq!(
        op("matmul", json!({"transB": true})),
        Op::MatMul {
            trans_a: false,
            trans_b: true
        }
    );
    assert_eq!(
        op("sum", json!({"axis": -1})),
        Op::Reduce {
            op: ReduceOp::Sum,
            axis: 2,
            keepdim: false
        }
    );
    assert_eq!(
        op("permute", json!({"perm": [0, -1, 1]})),
        Op::Permute {
            perm: vec![0, 2, 1]
        }
    );
    assert_eq!(
        op("slice", json!({"axis": 1, "start": 0, "end": 2})),
        Op::Slice {
            axis: 1,
            start: 0,
            end: 2
        }
    );
    assert_eq!(op("gelu", json!({})), Op::Unary(UnaryOp::Gelu));
    assert_eq!(
        op("gelu_backward", Value::Null),
        Op::UnaryBackward(UnaryOp::Gelu)
    );
    assert_eq!(op("layer_norm", json!({})), Op::LayerNorm { eps: 1e-5 });
    assert_eq!(
        op("reshape", json!({"shape": [null, 24]})),
        Op::Reshape {
            shape: shape_from_js("", &[None, Some(24)]).unwrap()
        }
    );
}

#[test]
fn bad_attributes_are_shape_errors_naming_the_op() {
    let (b, x) = builder_with_x();
    let err =
        |kind: &str, attrs: Value| op_from_json(&b, kind, &[x], attrs).unwrap_err().to_string();
    assert_eq!(
        err("matmul", json!({"transpose": true})),
        "matmul: unknown attribute 'transpose'"
    );
    assert_eq!(
        err("sum", json!({"axis": 3})),
        "sum: axis 3 is out of range for shape [B,3,8]"
    );
    assert_eq!(err("scale", json!({})), "scale: missing attribute 'factor'");
    assert_eq!(
        err("scale", json!({"factor": "2"})),
        "scale: attribute 'factor' must be a number, got \"2\""
    );
    assert_eq!(err("conv2d", json!({})), "conv2d: unknown op kind");
}

#[test]
fn initialisers_parse() {
    assert_eq!(
        init_from_json(json!({"kind": "normal", "std": 0.02})).unwrap(),
        Init::Normal {
            mean: 0.0,
            std: 0.02
        }
    );
    assert_eq!(
        init_from_json(json!({"kind": "uniform", "low": -1, "high": 1})).unwrap(),
        Init::Uniform {
            low: -1.0,
            high: 1.0
        }
    );
    assert_eq!(
        init_from_json(json!({"kind": "zeros"})).unwrap(),
        Init::Zeros
    );
    let e = init_from_json(json!({"kind": "xavier"})).unwrap_err();
    assert_eq!(
        e.to_string(),
        "parameter: unknown init 'xavier' (zeros, ones, constant, normal, uniform)"
    );
}

/// The index of `op`'s variant: exhaustive, so a new `Op` must be numbered here (and
/// `VARIANTS` raised), and then `every_op_is_parsed_by_name_or_refused` fails until it has a
/// sample.
fn variant(op: &Op) -> usize {
    match op {
        Op::Input { .. } => 0,
        Op::Parameter { .. } => 1,
        Op::Fill { .. } => 2,
        Op::LossScale => 3,
        Op::Unary(_) => 4,
        Op::UnaryBackward(_) => 5,
        Op::Binary(_) => 6,
        Op::Scale { .. } => 7,
        Op::Cast { .. } => 8,
        Op::Reshape { .. } => 9,
        Op::Permute { .. } => 10,
        Op::Slice { .. } => 11,
        Op::SliceBackward { .. } => 12,
        Op::Concat { .. } => 13,
        Op::Expand { .. } => 14,
        Op::SumTo { .. } => 15,
        Op::Reduce { .. } => 16,
        Op::MaxBackward { .. } => 17,
        Op::MatMul { .. } => 18,
        Op::Softmax => 19,
        Op::SoftmaxBackward => 20,
        Op::LayerNorm { .. } => 21,
        Op::LayerNormBackward { .. } => 22,
        Op::LayerNormBackwardWeight { .. } => 23,
        Op::Embedding => 24,
        Op::EmbeddingBackward { .. } => 25,
        Op::CausalAttention { .. } => 26,
        Op::CausalAttentionBackward { .. } => 27,
        Op::CrossEntropy => 28,
        Op::CrossEntropyBackward => 29,
        Op::Dropout { .. } => 30,
        Op::DropoutBackward { .. } => 31,
        Op::MoeGate { .. } => 32,
        Op::MoeGateBackward { .. } => 33,
        Op::MoeDispatch { .. } => 34,
        Op::MoeDispatchBackward { .. } => 35,
        Op::MoeCombine { .. } => 36,
        Op::MoeCombineBackward { .. } => 37,
        Op::MoeCombineGates { .. } => 38,
        Op::TpCopy => 39,
        Op::TpReduce => 40,
        Op::TpGather { .. } => 41,
        Op::TpShard { .. } => 42,
        Op::TpGatherPartial { .. } => 43,
        Op::TpReduceScatter { .. } => 44,
        Op::TpMax => 45,
        Op::ColumnMask { .. } => 46,
        Op::VocabOneHot { .. } => 47,
        Op::ArgmaxBid { .. } => 48,
        Op::BidIndex => 49,
        Op::TpAllToAll => 50,
        Op::Argmax => 51,
        Op::Equal => 52,
    }
}

const VARIANTS: usize = 53;

/// One op of every variant, with the attributes a model description gives it (`{}` for ops
/// weft inserts itself).
fn samples() -> Vec<(Op, Value)> {
    use crate::ir::{Cut, Dim, Init};
    let s = |d: &[Dim]| Shape(d.to_vec());
    let (b, f) = (Dim::Batch(1), Dim::Fixed);
    let cut = Cut {
        axis: 1,
        groups: 1,
        parts: 2,
    };
    let all = TokenSlice::ALL;
    let none = json!({});
    vec![
        (
            Op::Input {
                name: "x".into(),
                shape: s(&[b]),
                dtype: DType::F32,
            },
            none.clone(),
        ),
        (
            Op::Parameter {
                name: "w".into(),
                shape: s(&[f(2)]),
                init: Init::Zeros,
            },
            none.clone(),
        ),
        (
            Op::Fill {
                value: 1.5,
                shape: s(&[f(2), f(3)]),
            },
            json!({"value": 1.5, "shape": [2, 3]}),
        ),
        (Op::LossScale, none.clone()),
        (Op::Unary(UnaryOp::Gelu), none.clone()),
        (Op::UnaryBackward(UnaryOp::Tanh), none.clone()),
        (Op::Binary(BinaryOp::Mul), none.clone()),
        (Op::Scale { factor: 0.5 }, json!({"factor": 0.5})),
        (Op::Cast { to: DType::BF16 }, none.clone()),
        (
            Op::Reshape {
                shape: s(&[b, f(24)]),
            },
            json!({"shape": [null, 24]}),
        ),
        (
            Op::Permute {
                perm: vec![0, 2, 1],
            },
            json!({"perm": [0, -1, 1]}),
        ),
        (
            Op::Slice {
                axis: 1,
                start: 0,
                end: 2,
            },
            json!({"axis": 1, "start": 0, "end": 2}),
        ),
        (
            Op::SliceBackward {
                axis: 2,
                start: 1,
                len: 8,
            },
            json!({"axis": -1, "start": 1, "len": 8}),
        ),
        (Op::Concat { axis: 1 }, json!({"axis": 1})),
        (
            Op::Expand {
                shape: s(&[b, f(3), f(8)]),
            },
            json!({"shape": [null, 3, 8]}),
        ),
        (Op::SumTo { shape: s(&[f(8)]) }, json!({"shape": [8]})),
        (
            Op::Reduce {
                op: ReduceOp::Mean,
                axis: 2,
                keepdim: true,
            },
            json!({"axis": 2, "keepdim": true}),
        ),
        (
            Op::MaxBackward {
                axis: 1,
                keepdim: false,
            },
            json!({"axis": 1}),
        ),
        (
            Op::MatMul {
                trans_a: true,
                trans_b: false,
            },
            json!({"transA": true}),
        ),
        (Op::Softmax, none.clone()),
        (Op::SoftmaxBackward, none.clone()),
        (Op::LayerNorm { eps: 1e-6 }, json!({"eps": 1e-6})),
        (Op::LayerNormBackward { eps: 1e-5 }, none.clone()),
        (Op::LayerNormBackwardWeight { eps: 1e-5 }, none.clone()),
        (Op::Embedding, none.clone()),
        (Op::EmbeddingBackward { vocab: 50 }, json!({"vocab": 50})),
        (Op::CausalAttention { heads: 2 }, json!({"heads": 2})),
        (
            Op::CausalAttentionBackward { heads: 2 },
            json!({"heads": 2}),
        ),
        (Op::CrossEntropy, none.clone()),
        (Op::CrossEntropyBackward, none.clone()),
        (
            Op::Dropout { p: 0.25, seed: 7 },
            json!({"p": 0.25, "seed": 7}),
        ),
        (Op::DropoutBackward { p: 0.25, seed: 0 }, json!({"p": 0.25})),
        (
            Op::MoeGate {
                top_k: 2,
                capacity_factor: 1.25,
                weighted: false,
            },
            json!({"topK": 2, "capacityFactor": 1.25, "weighted": false}),
        ),
        (
            Op::MoeGateBackward {
                top_k: 2,
                capacity_factor: 1.25,
            },
            none.clone(),
        ),
        (
            Op::MoeDispatch {
                top_k: 1,
                capacity_factor: 1.0,
                tokens: all,
            },
            json!({"topK": 1, "capacityFactor": 1.0}),
        ),
        (Op::MoeDispatchBackward { tokens: all }, none.clone()),
        (Op::MoeCombine { tokens: all }, none.clone()),
        (Op::MoeCombineBackward { tokens: all }, none.clone()),
        (Op::MoeCombineGates { tokens: all }, none.clone()),
        (Op::TpCopy, none.clone()),
        (Op::TpReduce, none.clone()),
        (Op::TpGather { cut, index: 0 }, none.clone()),
        (Op::TpShard { cut, index: 1 }, none.clone()),
        (Op::TpGatherPartial { cut, index: 0 }, none.clone()),
        (Op::TpReduceScatter { cut, index: 0 }, none.clone()),
        (Op::TpMax, none.clone()),
        (
            Op::ColumnMask {
                start: 0,
                valid: 4,
                fill: -1e9,
            },
            none.clone(),
        ),
        (Op::VocabOneHot { start: 0, width: 4 }, none.clone()),
        (Op::ArgmaxBid { start: 0 }, none.clone()),
        (Op::BidIndex, none.clone()),
        (Op::TpAllToAll, none.clone()),
        (Op::Argmax, none.clone()),
        (Op::Equal, none),
    ]
}

#[test]
fn every_op_is_parsed_by_name_or_refused() {
    let (b, x) = builder_with_x();
    let samples = samples();
    let mut seen = [false; VARIANTS];
    for (op, attrs) in samples {
        let v = variant(&op);
        assert!(
            v < VARIANTS && !seen[v],
            "variant {v} of {op:?}: raise VARIANTS or drop a duplicate"
        );
        seen[v] = true;
        let name = op.name();
        let parsed = op_from_json(&b, name, &[x], attrs);
        match author(&op) {
            Author::Model => assert_eq!(parsed.unwrap(), op, "{name}"),
            Author::ModelMethod => assert_eq!(
                parsed.unwrap_err().to_string(),
                format!("{name}: use the model's {name}() method")
            ),
            Author::Weft => assert_eq!(
                parsed.unwrap_err().to_string(),
                format!("{name}: unknown op kind"),
            ),
        }
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|&v| !seen[v]).collect();
    assert!(missing.is_empty(), "no sample for variants {missing:?}");
}

#[test]
fn every_unary_and_binary_op_parses_by_its_name() {
    let (b, x) = builder_with_x();
    for u in UnaryOp::ALL {
        let fwd = op_from_json(&b, u.name(), &[x], Value::Null).unwrap();
        assert_eq!(fwd, Op::Unary(u));
        let bwd = op_from_json(&b, u.backward_name(), &[x], Value::Null).unwrap();
        assert_eq!(bwd, Op::UnaryBackward(u));
    }
    for o in BinaryOp::ALL {
        assert_eq!(
            op_from_json(&b, o.name(), &[x], Value::Null).unwrap(),
            Op::Binary(o)
        );
    }
}
