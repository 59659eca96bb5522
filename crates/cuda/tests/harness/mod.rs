//! The backend-generic op harness: one list of cases covering every op of the IR, run on any
//! `Backend`, so the same cases check CPU against CUDA (or one CPU configuration against
//! another). A case is an op, its inputs (deterministic data from weft_core::rng) and a step.

use weft_core::exec::{Adam, Backend, HostData, KernelCtx, Sgd, TensorRef, UpdateRule};
use weft_core::ir::{DType, Shape, TensorType, infer};
use weft_core::{Error, Result};

mod cases;

use cases::data;
pub use cases::{Case, cases};

/// Runs one case on `b` at optimizer step 3 and downloads the output.
pub fn run<B: Backend>(b: &B, c: &Case) -> Result<HostData> {
    let bufs = c
        .inputs
        .iter()
        .map(|(_, d)| b.upload(d))
        .collect::<Result<Vec<_>>>()?;
    let types: Vec<TensorType> = c
        .inputs
        .iter()
        .map(|(s, d)| TensorType {
            shape: Shape::fixed(s),
            dtype: d.dtype(),
        })
        .collect();
    let ty = infer(&c.op, &types)?;
    let out_shape = ty.shape.concrete()?;
    let refs: Vec<TensorRef<'_, B::Buffer>> = bufs
        .iter()
        .zip(&c.inputs)
        .map(|(buf, (s, d))| TensorRef {
            buf,
            shape: s,
            dtype: d.dtype(),
        })
        .collect();
    let mut out = b.alloc(ty.dtype, out_shape.iter().product())?;
    let ctx = KernelCtx {
        step: 3,
        loss_scale: 1024.0,
    };
    b.execute(&c.op, &refs, &mut out, &out_shape, &ctx)?;
    b.download(&out)
}

/// Largest |a - b| relative to the largest |a| of the reference (at least 1): a tensor-wide
/// relative error, robust to elements that are near zero by cancellation. 16-bit outputs are
/// compared as their f32 values.
pub fn rel_err(reference: &HostData, got: &HostData) -> Result<f64> {
    if reference.dtype() != got.dtype() {
        return Err(Error::internal("outputs differ in dtype"));
    }
    match (reference.to_f32(), got.to_f32()) {
        (Some(a), Some(b)) if a.len() == b.len() => {
            let scale = a.iter().fold(1.0f64, |m, &x| m.max((x as f64).abs()));
            let diff = a.iter().zip(b.iter()).fold(0.0f64, |m, (&x, &y)| {
                if x.is_nan() && y.is_nan() {
                    m
                } else {
                    m.max(((x - y) as f64).abs())
                }
            });
            Ok(if diff.is_nan() {
                f64::INFINITY
            } else {
                diff / scale
            })
        }
        _ => match (reference.as_i32(), got.as_i32()) {
            (Some(a), Some(b)) => Ok(if a == b { 0.0 } else { f64::INFINITY }),
            _ => Err(Error::internal("outputs differ in length")),
        },
    }
}

/// The f32 tolerance.
pub const F32_TOL: f64 = 1e-5;
/// bf16/f16 outputs: one rounding step of a 16-bit float may differ (bf16 has 8 mantissa bits).
pub const HALF_TOL: f64 = 1e-2;

fn tolerance(d: &HostData) -> f64 {
    match d.dtype() {
        DType::BF16 | DType::F16 => HALF_TOL,
        _ => F32_TOL,
    }
}

/// Runs every case on `reference` and `other`; returns one line per disagreement.
pub fn compare<A: Backend, B: Backend>(reference: &A, other: &B) -> Vec<String> {
    let mut bad = Vec::new();
    for c in cases() {
        let r = run(reference, &c).and_then(|a| Ok((a.clone(), run(other, &c)?)));
        match r.and_then(|(a, b)| Ok((tolerance(&a), rel_err(&a, &b)?))) {
            Ok((tol, e)) if e <= tol => {}
            Ok((tol, e)) => bad.push(format!("{}: relative error {e:.3e} > {tol:e}", c.label)),
            Err(e) => bad.push(format!("{}: {e}", c.label)),
        }
    }
    bad
}

/// One update of each rule on both backends, over a sub-range (as ZeRO shards do).
pub fn compare_updates<A: Backend, B: Backend>(reference: &A, other: &B) -> Vec<String> {
    let rules = [
        UpdateRule::Sgd(Sgd {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.01,
        }),
        UpdateRule::Sgd(Sgd {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.1,
            nesterov: true,
            weight_decay: 0.0,
        }),
        UpdateRule::Adam(Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            decoupled: true,
        }),
        UpdateRule::Adam(Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
            decoupled: false,
        }),
    ];
    let mut bad = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let a = update_once(reference, rule);
        let b = update_once(other, rule);
        match a.and_then(|a| Ok((a, b?))) {
            Ok((a, b)) => {
                for (x, y) in a.iter().zip(&b) {
                    match rel_err(x, y) {
                        Ok(e) if e <= F32_TOL => {}
                        other => bad.push(format!("update rule {i}: {other:?}")),
                    }
                }
            }
            Err(e) => bad.push(format!("update rule {i}: {e}")),
        }
    }
    bad
}

/// Two steps of `rule` on range 5..45 of a 50-element parameter; returns param and state.
fn update_once<B: Backend>(b: &B, rule: &UpdateRule) -> Result<Vec<HostData>> {
    let (_, p) = data(80, &[50], -1.0, 1.0);
    let (_, g) = data(81, &[50], -1.0, 1.0);
    let mut p = b.upload(&p)?;
    let g = b.upload(&g)?;
    let mut state = (0..rule.state_count())
        .map(|_| b.alloc(DType::F32, 40))
        .collect::<Result<Vec<_>>>()?;
    for step in 1..=2 {
        b.update(rule, step, &mut p, &g, &mut state, 5..45)?;
    }
    let mut out = vec![b.download(&p)?];
    for s in &state {
        out.push(b.download(s)?);
    }
    Ok(out)
}
