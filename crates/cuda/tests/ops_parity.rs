//! Same tests on every device: the harness's cases (every op of the IR) and optimizer updates
//! run on the CPU backend and on CUDA and must agree within the dtype's tolerance (f32: 1e-5 of
//! the tensor's largest magnitude). The CUDA tests are `#[ignore]`d with the reason, so a run
//! without a GPU lists them as ignored; scripts/gpu-check.sh runs them with `--include-ignored`,
//! and there a missing GPU is a failure. The harness itself runs in every CI: all cases on two
//! CPU configurations.

mod harness;

use std::collections::BTreeSet;
use weft_core::exec::{Backend, CpuBackend, HostData};
use weft_core::ir::Op;
use weft_cuda::CudaBackend;

/// The variant of an op, by an exhaustive match: a new `Op` variant does not compile here until
/// it is given a case (or listed as a leaf).
fn variant(op: &Op) -> &'static str {
    match op {
        Op::Input { .. } => "input",
        Op::Parameter { .. } => "parameter",
        Op::Fill { .. } => "fill",
        Op::LossScale => "loss_scale",
        Op::Cast { .. } => "cast",
        Op::Unary(_) => "unary",
        Op::UnaryBackward(_) => "unary_backward",
        Op::Binary(_) => "binary",
        Op::Scale { .. } => "scale",
        Op::Reshape { .. } => "reshape",
        Op::Permute { .. } => "permute",
        Op::Slice { .. } => "slice",
        Op::SliceBackward { .. } => "slice_backward",
        Op::Concat { .. } => "concat",
        Op::Expand { .. } => "expand",
        Op::SumTo { .. } => "sum_to",
        Op::Reduce { .. } => "reduce",
        Op::MaxBackward { .. } => "max_backward",
        Op::MatMul { .. } => "matmul",
        Op::Softmax => "softmax",
        Op::SoftmaxBackward => "softmax_backward",
        Op::LayerNorm { .. } => "layer_norm",
        Op::LayerNormBackward { .. } => "layer_norm_backward",
        Op::LayerNormBackwardWeight { .. } => "layer_norm_backward_weight",
        Op::Embedding => "embedding",
        Op::EmbeddingBackward { .. } => "embedding_backward",
        Op::CausalAttention { .. } => "causal_attention",
        Op::CausalAttentionBackward { .. } => "causal_attention_backward",
        Op::CrossEntropy => "cross_entropy",
        Op::CrossEntropyBackward => "cross_entropy_backward",
        Op::Dropout { .. } => "dropout",
        Op::DropoutBackward { .. } => "dropout_backward",
        // CPU only in this build (`weft_core::exec::tp::cpu_only`; CUDA refuses them by name).
        Op::TpCopy
        | Op::TpReduce
        | Op::TpGather { .. }
        | Op::TpShard { .. }
        | Op::TpGatherPartial { .. }
        | Op::TpReduceScatter { .. }
        | Op::TpMax
        | Op::ColumnMask { .. }
        | Op::VocabOneHot { .. }
        | Op::MoeGate { .. }
        | Op::MoeGateBackward { .. }
        | Op::MoeDispatch { .. }
        | Op::MoeDispatchBackward { .. }
        | Op::MoeCombine { .. }
        | Op::MoeCombineBackward { .. }
        | Op::MoeCombineGates { .. }
        | Op::TpAllToAll
        | Op::Argmax
        | Op::Equal
        | Op::ArgmaxBid { .. }
        | Op::BidIndex => "cpu_only",
    }
}

const ALL_VARIANTS: usize = 32;

#[test]
fn the_cases_cover_every_op_and_run_alike_on_two_cpu_configurations() {
    let covered: BTreeSet<&str> = harness::cases().iter().map(|c| variant(&c.op)).collect();
    assert_eq!(covered.len(), ALL_VARIANTS - 2, "covered: {covered:?}");
    let bad = harness::compare(&CpuBackend::new(1), &CpuBackend::new(3));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let bad = harness::compare_updates(&CpuBackend::new(1), &CpuBackend::new(3));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_tolerance_check_catches_a_wrong_result() {
    let a = HostData::F32(vec![1.0, -2.0, 3.0]);
    let b = HostData::F32(vec![1.0, -2.0, 3.0001]);
    assert!(harness::rel_err(&a, &b).unwrap() > harness::F32_TOL);
    assert_eq!(harness::rel_err(&a, &a).unwrap(), 0.0);
}

/// GPU 0; these tests only run when asked for (`--include-ignored`), so no GPU is a failure.
fn gpu() -> CudaBackend {
    CudaBackend::new(0).unwrap_or_else(|e| panic!("this test needs a GPU: {e}"))
}

#[test]
#[ignore = "needs an NVIDIA GPU; scripts/gpu-check.sh runs it"]
fn cuda_matches_cpu_on_every_op() {
    let gpu = gpu();
    eprintln!("running on {}", gpu.name());
    let bad = harness::compare(&CpuBackend::new(0), &gpu);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
#[ignore = "needs an NVIDIA GPU; scripts/gpu-check.sh runs it"]
fn cuda_updates_match_cpu() {
    let gpu = gpu();
    let bad = harness::compare_updates(&CpuBackend::new(0), &gpu);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
#[ignore = "needs an NVIDIA GPU; scripts/gpu-check.sh runs it"]
fn cuda_reports_a_bad_token_as_the_cpu_does() {
    let gpu = gpu();
    let mut c = harness::cases()
        .into_iter()
        .find(|c| matches!(c.op, Op::Embedding))
        .expect("an embedding case");
    if let HostData::I32(ix) = &mut c.inputs[1].1 {
        ix[5] = 10;
    }
    let cpu = harness::run(&CpuBackend::new(0), &c).expect_err("cpu rejects index 10");
    let cuda = harness::run(&gpu, &c).expect_err("cuda rejects index 10");
    assert_eq!(cpu, cuda);
    // The backend stays usable after a rejected batch.
    assert!(harness::run(&gpu, &harness::cases()[0]).is_ok());
}

#[test]
#[ignore = "needs an NVIDIA GPU; scripts/gpu-check.sh runs it"]
fn cuda_memory_is_cached_and_reused() {
    let gpu = gpu();
    let a = gpu.alloc(weft_core::ir::DType::F32, 1000).unwrap();
    let reserved = gpu.cache_stats().reserved;
    drop(a);
    let b = gpu.alloc(weft_core::ir::DType::F32, 1000).unwrap();
    assert_eq!(
        gpu.cache_stats().reserved,
        reserved,
        "the freed block was reused"
    );
    assert_eq!(gpu.download(&b).unwrap(), HostData::F32(vec![0.0; 1000]));
}

/// The core's finite-difference gradient checks, every case, on the GPU (ops with CPU kernels
/// only are listed, not failed).
#[test]
#[ignore = "needs an NVIDIA GPU; scripts/gpu-check.sh runs it"]
fn gradient_checks_pass_on_cuda() {
    use weft_core::autodiff::gradcheck::{cases, check};
    let (mut ran, mut cpu_only) = (0, Vec::new());
    for case in cases() {
        match check(&case, gpu()) {
            Ok(Ok(())) => ran += 1,
            Ok(Err(why)) => panic!("{why}"),
            Err(e) if e.code() == "WEFT_UNSUPPORTED" => cpu_only.push(case.name.clone()),
            Err(e) => panic!("{}: {e}", case.name),
        }
    }
    eprintln!("{ran} gradient checks passed on CUDA; CPU-only ops: {cpu_only:?}");
    assert!(ran > 30, "only {ran} cases ran on CUDA");
}

/// Sums of squares (global-norm clipping): one buffer, and several read back at once, equal
/// the CPU's within f64 rounding of different block splits.
#[test]
#[ignore = "needs an NVIDIA GPU; scripts/gpu-check.sh runs it"]
fn cuda_sums_of_squares_match_cpu() {
    let (gpu, cpu) = (gpu(), CpuBackend::new(0));
    let data: Vec<HostData> = [0usize, 7, 300_000, 3_000_001]
        .iter()
        .map(|&n| HostData::F32((0..n).map(|i| ((i % 97) as f32 - 48.0) / 7.0).collect()))
        .collect();
    let on_gpu: Vec<_> = data.iter().map(|d| gpu.upload(d).unwrap()).collect();
    let on_cpu: Vec<_> = data.iter().map(|d| cpu.upload(d).unwrap()).collect();
    let want = cpu
        .sum_squares_all(&on_cpu.iter().collect::<Vec<_>>())
        .unwrap();
    let all = gpu
        .sum_squares_all(&on_gpu.iter().collect::<Vec<_>>())
        .unwrap();
    let one_by_one: f64 = on_gpu.iter().map(|b| gpu.sum_squares(b).unwrap()).sum();
    assert_eq!(
        all, one_by_one,
        "batched and one-by-one sums add the same partials"
    );
    assert!((all - want).abs() <= 1e-9 * want, "{all} vs {want}");
}
