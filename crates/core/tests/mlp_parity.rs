//! The MLP of `fixtures/mlp_tiny` (made by benches/reference/mlp.py with PyTorch) trained by
//! weft from the same init and batches: losses must match PyTorch's step for step.

use std::collections::BTreeMap;
use std::path::Path;
use weft_core::checkpoint::safetensors;
use weft_core::exec::HostData;
use weft_core::ir::{BinaryOp, DType, Dim, GraphBuilder, Init, Op, ReduceOp, Shape, UnaryOp};
use weft_core::session::{Trainer, TrainerOptions};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mlp_tiny")
        .join(name)
}

fn mlp(sizes: &[usize]) -> weft_core::ir::Graph {
    let mut b = GraphBuilder::new();
    let mut h = b
        .input(
            "x",
            Shape(vec![Dim::Batch(1), Dim::Fixed(sizes[0])]),
            DType::F32,
        )
        .unwrap();
    let y = b
        .input("y", Shape(vec![Dim::Batch(1)]), DType::I32)
        .unwrap();
    for i in 0..sizes.len() - 1 {
        let w = b
            .parameter(
                &format!("fc{i}.weight"),
                Shape::fixed(&[sizes[i], sizes[i + 1]]),
                Init::Zeros,
            )
            .unwrap();
        let bias = b
            .parameter(
                &format!("fc{i}.bias"),
                Shape::fixed(&[sizes[i + 1]]),
                Init::Zeros,
            )
            .unwrap();
        h = b
            .op(
                Op::MatMul {
                    trans_a: false,
                    trans_b: false,
                },
                &[h, w],
            )
            .unwrap();
        h = b.op(Op::Binary(BinaryOp::Add), &[h, bias]).unwrap();
        if i + 2 < sizes.len() {
            h = b.op(Op::Unary(UnaryOp::Relu), &[h]).unwrap();
        }
    }
    let ce = b.op(Op::CrossEntropy, &[h, y]).unwrap();
    let loss = b
        .op(
            Op::Reduce {
                op: ReduceOp::Mean,
                axis: 0,
                keepdim: false,
            },
            &[ce],
        )
        .unwrap();
    b.finish(loss).unwrap()
}

fn run(micro_batches: u64) -> Vec<f64> {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let opts = serde_json::json!({
        "batch": 4, "seed": 1,
        "optimizer": {"kind": "adam", "lr": 1e-3},
        "config": {"pipeline.num_micro_batch": micro_batches},
    });
    let mut t =
        Trainer::compile(mlp(&[8, 16, 4]), TrainerOptions::from_json(&opts).unwrap()).unwrap();
    t.load_weights(&fixture("init.safetensors")).unwrap();
    let data = safetensors::read(&fixture("inputs.safetensors")).unwrap();
    let x = data.get("x").unwrap().data.as_f32().unwrap().to_vec();
    let y = data.get("y").unwrap().data.as_i32().unwrap().to_vec();
    let mut losses = Vec::new();
    for (step, want) in expected["losses"].as_array().unwrap().iter().enumerate() {
        let mut batch = BTreeMap::new();
        batch.insert(
            "x".to_string(),
            HostData::F32(x[step * 32..(step + 1) * 32].to_vec()),
        );
        batch.insert(
            "y".to_string(),
            HostData::I32(y[step * 4..(step + 1) * 4].to_vec()),
        );
        let r = t.step(&batch).unwrap();
        let want = want.as_f64().unwrap();
        assert!(
            (f64::from(r.loss) - want).abs() < 1e-5,
            "step {step}: weft {} vs pytorch {want}",
            r.loss
        );
        losses.push(f64::from(r.loss));
    }
    losses
}

#[test]
fn mlp_matches_pytorch_step_for_step() {
    run(1);
}

#[test]
fn gradient_accumulation_over_micro_batches_matches_the_full_batch() {
    let full = run(1);
    let accumulated = run(2);
    for (a, b) in full.iter().zip(&accumulated) {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "{a} vs {b}");
    }
}
