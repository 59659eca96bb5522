//! Kernel tests through the public `Backend` interface, each against a naive f64 reference
//! written independently of the kernel (index arithmetic, no shared helpers), on small random
//! inputs plus a few sizes large enough to take the parallel paths.

mod attention;
mod bench;
mod elementwise;
mod matmul;
mod nn;
mod optim;
mod reduce_shape;

use super::CpuBackend;
use crate::error::Result;
use crate::exec::{Backend, HostData, KernelCtx, TensorRef};
use crate::ir::{DType, Op};

/// Two threads: the kernels' parallel paths run even on a single-core test machine.
pub(super) fn backend() -> CpuBackend {
    CpuBackend::new(2)
}

/// `n` deterministic values uniform in [-1, 1).
pub(super) fn rand(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| 2.0 * crate::rng::uniform(seed, 77, i as u64) - 1.0)
        .collect()
}

pub(super) fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// Runs `op` on `inputs` (data, shape) and returns the output buffer.
pub(super) fn run_any(
    op: &Op,
    inputs: &[(&HostData, &[usize])],
    out_shape: &[usize],
    out_dtype: DType,
    step: u64,
) -> Result<HostData> {
    let be = backend();
    let refs: Vec<TensorRef<'_, HostData>> = inputs
        .iter()
        .map(|&(buf, shape)| TensorRef {
            buf,
            shape,
            dtype: buf.dtype(),
        })
        .collect();
    let mut out = be.alloc(out_dtype, numel(out_shape))?;
    // Poison the output: kernels must overwrite every element, never accumulate.
    if let HostData::F32(v) = &mut out {
        v.fill(f32::NAN);
    }
    be.execute(
        op,
        &refs,
        &mut out,
        out_shape,
        &KernelCtx {
            step,
            ..Default::default()
        },
    )?;
    Ok(out)
}

/// Runs an f32-output op with f32 inputs.
pub(super) fn run(op: &Op, inputs: &[(&[f32], &[usize])], out_shape: &[usize]) -> Result<Vec<f32>> {
    let bufs: Vec<HostData> = inputs
        .iter()
        .map(|(d, _)| HostData::F32(d.to_vec()))
        .collect();
    let with: Vec<(&HostData, &[usize])> =
        bufs.iter().zip(inputs).map(|(b, (_, s))| (b, *s)).collect();
    let out = run_any(op, &with, out_shape, DType::F32, 0)?;
    Ok(out.as_f32().unwrap().to_vec())
}

/// Asserts |got - want| <= tol * max(1, |want|) elementwise.
#[track_caller]
pub(super) fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= tol * w.abs().max(1.0),
            "{what}[{i}]: got {g}, want {w} (err {err:e}, tol {tol:e})"
        );
    }
}

/// Row-major multi-index of flat index `i` in `shape`.
pub(super) fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

/// Flat index of multi-index `idx` in `shape`.
pub(super) fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
}
