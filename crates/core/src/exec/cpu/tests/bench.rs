//! Kernel timings at the W2 workload's sizes (GPT: N = B*T = 1024 rows, C = 256, T = 128,
//! H = 4, V = 4096). Not a test: run with
//! `cargo test --release -p weft-core --lib exec::cpu::tests::bench -- --ignored --nocapture`.

use super::*;
use crate::ir::{BinaryOp, Shape, UnaryOp};
use std::time::Instant;

fn time(label: &str, op: &Op, inputs: &[(&HostData, &[usize])], out_shape: &[usize]) {
    let be = CpuBackend::new(2);
    let refs: Vec<TensorRef<'_, HostData>> = inputs
        .iter()
        .map(|&(buf, shape)| TensorRef {
            buf,
            shape,
            dtype: buf.dtype(),
        })
        .collect();
    let mut out = be.alloc(DType::F32, numel(out_shape)).unwrap();
    let mut times = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        be.execute(
            op,
            &refs,
            &mut out,
            out_shape,
            &KernelCtx {
                step: 1,
                ..Default::default()
            },
        )
        .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!("{label:<40} {:8.3} ms", times[times.len() / 2]);
}

fn f(shape: &[usize], seed: u64) -> HostData {
    HostData::F32(rand(numel(shape), seed))
}

#[test]
#[ignore]
fn w2_kernel_timings() {
    let (n, c, t, b, v) = (1024, 256, 128, 8, 4096);
    let x = f(&[n, c], 1);
    let w = f(&[c], 2);
    let dy = f(&[n, c], 3);
    time(
        "layer_norm [1024,256]",
        &Op::LayerNorm { eps: 1e-5 },
        &[(&x, &[n, c]), (&w, &[c]), (&w, &[c])],
        &[n, c],
    );
    time(
        "layer_norm_backward",
        &Op::LayerNormBackward { eps: 1e-5 },
        &[(&x, &[n, c]), (&w, &[c]), (&dy, &[n, c])],
        &[n, c],
    );
    time(
        "layer_norm_backward_weight",
        &Op::LayerNormBackwardWeight { eps: 1e-5 },
        &[(&x, &[n, c]), (&dy, &[n, c])],
        &[c],
    );
    let w_attn = f(&[c, 3 * c], 4);
    time(
        "matmul [1024,256]x[256,768]",
        &Op::MatMul {
            trans_a: false,
            trans_b: false,
        },
        &[(&x, &[n, c]), (&w_attn, &[c, 3 * c])],
        &[n, 3 * c],
    );
    let h4 = f(&[n, 4 * c], 5);
    let w_fc = f(&[c, 4 * c], 6);
    time(
        "matmul [1024,1024]x[1024,256]^T-ish",
        &Op::MatMul {
            trans_a: false,
            trans_b: true,
        },
        &[(&h4, &[n, 4 * c]), (&w_fc, &[c, 4 * c])],
        &[n, c],
    );
    time(
        "matmul dW x^T dy [256,1024]",
        &Op::MatMul {
            trans_a: true,
            trans_b: false,
        },
        &[(&x, &[n, c]), (&h4, &[n, 4 * c])],
        &[c, 4 * c],
    );
    let wte = f(&[v, c], 7);
    time(
        "matmul logits x wte^T [1024,4096]",
        &Op::MatMul {
            trans_a: false,
            trans_b: true,
        },
        &[(&x, &[n, c]), (&wte, &[v, c])],
        &[n, v],
    );
    row_kernels(n, c, v);
    nn_kernels(n, c, v, (b, t));
    adamw();
}

/// Elementwise and reduction kernels of one GPT layer.
fn row_kernels(n: usize, c: usize, _v: usize) {
    let (x, dy, h4) = (f(&[n, c], 1), f(&[n, c], 3), f(&[n, 4 * c], 5));
    let bias = f(&[4 * c], 8);
    time(
        "add bias [1024,1024]+[1024]",
        &Op::Binary(BinaryOp::Add),
        &[(&h4, &[n, 4 * c]), (&bias, &[4 * c])],
        &[n, 4 * c],
    );
    time(
        "add residual [1024,256]",
        &Op::Binary(BinaryOp::Add),
        &[(&x, &[n, c]), (&dy, &[n, c])],
        &[n, c],
    );
    time(
        "gelu [1024,1024]",
        &Op::Unary(UnaryOp::Gelu),
        &[(&h4, &[n, 4 * c])],
        &[n, 4 * c],
    );
    time(
        "gelu_backward [1024,1024]",
        &Op::UnaryBackward(UnaryOp::Gelu),
        &[(&h4, &[n, 4 * c]), (&h4, &[n, 4 * c])],
        &[n, 4 * c],
    );
    time(
        "sum_to bias grad [1024,1024]->[1024]",
        &Op::SumTo {
            shape: Shape::fixed(&[4 * c]),
        },
        &[(&h4, &[n, 4 * c])],
        &[4 * c],
    );
}

/// Attention, loss, embedding, softmax and dropout kernels.
fn nn_kernels(n: usize, c: usize, v: usize, (b, t): (usize, usize)) {
    let (dy, h4, wte) = (f(&[n, c], 3), f(&[n, 4 * c], 5), f(&[v, c], 7));
    let qkv = f(&[b, t, 3 * c], 9);
    time(
        "attention fwd [8,128,768] H4",
        &Op::CausalAttention { heads: 4 },
        &[(&qkv, &[b, t, 3 * c])],
        &[b, t, c],
    );
    time(
        "attention bwd",
        &Op::CausalAttentionBackward { heads: 4 },
        &[(&qkv, &[b, t, 3 * c]), (&dy, &[b, t, c])],
        &[b, t, 3 * c],
    );
    let logits = f(&[n, v], 10);
    let labels = HostData::I32((0..n as i32).map(|i| (i * 37) % v as i32).collect());
    let dl = f(&[n], 11);
    time(
        "cross_entropy [1024,4096]",
        &Op::CrossEntropy,
        &[(&logits, &[n, v]), (&labels, &[n])],
        &[n],
    );
    time(
        "cross_entropy_backward",
        &Op::CrossEntropyBackward,
        &[(&logits, &[n, v]), (&labels, &[n]), (&dl, &[n])],
        &[n, v],
    );
    let idx = HostData::I32((0..n as i32).map(|i| (i * 13) % v as i32).collect());
    time(
        "embedding [4096,256] x 1024",
        &Op::Embedding,
        &[(&wte, &[v, c]), (&idx, &[n])],
        &[n, c],
    );
    time(
        "embedding_backward",
        &Op::EmbeddingBackward { vocab: v },
        &[(&idx, &[n]), (&dy, &[n, c])],
        &[v, c],
    );
    time(
        "softmax [1024,4096]",
        &Op::Softmax,
        &[(&logits, &[n, v])],
        &[n, v],
    );
    time(
        "dropout [1024,1024]",
        &Op::Dropout { p: 0.1, seed: 1 },
        &[(&h4, &[n, 4 * c])],
        &[n, 4 * c],
    );
}

/// One AdamW update over W2's 4.24 M parameters.
fn adamw() {
    let be = CpuBackend::new(2);
    let np = 4_240_000;
    let mut p = f(&[np], 12);
    let g = f(&[np], 13);
    let mut st = vec![f(&[np], 14), f(&[np], 15)];
    let rule = crate::exec::UpdateRule::Adam(crate::exec::Adam {
        lr: 3e-4,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
        decoupled: true,
    });
    let mut times = Vec::new();
    for s in 1..10 {
        let t0 = Instant::now();
        be.update(&rule, s, &mut p, &g, &mut st, 0..np).unwrap();
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{:<40} {:8.3} ms",
        "adamw 4.24M params",
        times[times.len() / 2]
    );
}
