//! Training on `cuda:N`: weft_core's session over the CUDA backend. Without a GPU, compiling for
//! cuda devices is a typed `WEFT_DEVICE` error (never a panic); on a GPU (`--include-ignored`,
//! scripts/gpu-check.sh) data- and pipeline-parallel plans of several virtual devices on one
//! GPU train like the CPU backend.

use weft_core::exec::HostData;
use weft_core::ir::{
    BinaryOp, DType, Dim, Graph, GraphBuilder, Init, Op, ReduceOp, Shape, Strategy, UnaryOp,
};
use weft_core::session::{Trainer, TrainerOptions};
use weft_cuda::loader::{Lib, ensure};

const B: usize = 16;
const IN: usize = 8;
const HID: usize = 32;
const OUT: usize = 4;

/// x [B, 8] -> linear 32 -> relu -> linear 4 -> cross-entropy; `staged`: the layers in two
/// pipeline stages.
fn mlp(staged: bool) -> Graph {
    let mut b = GraphBuilder::new();
    let x = b
        .input("x", Shape(vec![Dim::Batch(1), Dim::Fixed(IN)]), DType::F32)
        .unwrap();
    let y = b
        .input("y", Shape(vec![Dim::Batch(1)]), DType::I32)
        .unwrap();
    let init = Init::Normal {
        mean: 0.0,
        std: 0.3,
    };
    let mm = Op::MatMul {
        trans_a: false,
        trans_b: false,
    };
    if staged {
        b.open_taskgraph("stage0", Strategy::Replicate, 1);
    }
    let w1 = b
        .parameter("w1", Shape::fixed(&[IN, HID]), init.clone())
        .unwrap();
    let h = b.op(mm.clone(), &[x, w1]).unwrap();
    let h = b.op(Op::Unary(UnaryOp::Relu), &[h]).unwrap();
    if staged {
        b.open_taskgraph("stage1", Strategy::Replicate, 1);
    }
    let w2 = b.parameter("w2", Shape::fixed(&[HID, OUT]), init).unwrap();
    let bias = b
        .parameter("b2", Shape::fixed(&[OUT]), Init::Constant(0.1))
        .unwrap();
    let logits = b.op(mm, &[h, w2]).unwrap();
    let logits = b.op(Op::Binary(BinaryOp::Add), &[logits, bias]).unwrap();
    let ce = b.op(Op::CrossEntropy, &[logits, y]).unwrap();
    let mean = Op::Reduce {
        op: ReduceOp::Mean,
        axis: 0,
        keepdim: false,
    };
    let loss = b.op(mean, &[ce]).unwrap();
    b.finish(loss).unwrap()
}

fn options(devices: &str, micro: usize) -> TrainerOptions {
    let opts = serde_json::json!({
        "batch": B, "seed": 5, "devices": devices, "threads": 1,
        "optimizer": {"kind": "adamw", "lr": 1e-2},
        "config": {"pipeline.num_micro_batch": micro},
    });
    TrainerOptions::from_json(&opts).unwrap()
}

fn batch(step: usize) -> std::collections::BTreeMap<String, HostData> {
    let x = (0..B * IN)
        .map(|i| (((i * 37 + step * 11) % 17) as f32 / 8.0) - 1.0)
        .collect();
    let y = (0..B).map(|i| ((i + step) % OUT) as i32).collect();
    [
        ("x".to_string(), HostData::F32(x)),
        ("y".to_string(), HostData::I32(y)),
    ]
    .into()
}

fn losses<Bk: weft_core::exec::Backend>(t: &mut Trainer<Bk>) -> Vec<f32> {
    // One batch, so the loss falls step by step.
    (0..5).map(|_| t.step(&batch(0)).unwrap().loss).collect()
}

#[test]
fn cuda_devices_without_a_gpu_are_a_device_error_never_a_panic() {
    if ensure(Lib::Driver).is_ok() {
        eprintln!("SKIPPED cuda_devices_without_a_gpu_are_a_device_error: libcuda.so is present");
        return;
    }
    let e = weft_cuda::compile(mlp(false), options("cuda:2", 1))
        .err()
        .unwrap();
    assert_eq!(e.code(), "WEFT_DEVICE");
    assert!(
        e.to_string().contains("libcuda.so (the NVIDIA driver)"),
        "{e}"
    );
    // ... and the CPU entry point names the one to use.
    let e = Trainer::compile(mlp(false), options("cuda:2", 1))
        .err()
        .unwrap();
    assert!(e.to_string().contains("weft_cuda::compile"), "{e}");
}

/// (devices, micro-batches, two stages): one device, DP2, PP2 with two micro-batches, and
/// DP2 x PP2.
const LAYOUTS: [(usize, usize, bool); 4] =
    [(1, 1, false), (2, 1, false), (2, 2, true), (4, 2, true)];

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    for (i, (a, b)) in want.iter().zip(got).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs(),
            "{what}: step {} loss {b} vs {a}",
            i + 1
        );
    }
}

#[test]
fn the_layouts_of_the_gpu_test_train_alike_on_the_cpu_backend() {
    let want = losses(&mut Trainer::compile(mlp(false), options("cpu:1", 1)).unwrap());
    assert!(want[4] < want[0], "the MLP learns: {want:?}");
    for (n, micro, staged) in LAYOUTS {
        let mut t = Trainer::compile(mlp(staged), options(&format!("cpu:{n}"), micro)).unwrap();
        assert_close(&losses(&mut t), &want, &format!("cpu:{n} m{micro}"));
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU; scripts/gpu-check.sh runs it"]
fn several_virtual_devices_on_one_gpu_train_like_the_cpu() {
    for (n, micro, staged) in LAYOUTS {
        let cpu = options(&format!("cpu:{n}"), micro);
        let want = losses(&mut Trainer::compile(mlp(staged), cpu).unwrap());
        let cuda = options(&format!("cuda:{n}"), micro);
        let mut t = weft_cuda::compile(mlp(staged), cuda).unwrap();
        let got = losses(&mut t);
        assert_close(&got, &want, &format!("cuda:{n} m{micro} vs cpu:{n}"));
        // Virtual devices on one GPU exchange tensors in GPU memory, not through the host.
        for (purpose, engine) in t.exchange_engines() {
            assert_eq!(engine, "gpu-group", "cuda:{n} m{micro}: {purpose}");
        }
    }
}
