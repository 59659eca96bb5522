//! Batch tensors, step reports and input specs between JS and the core: typed arrays copied
//! (async steps) or borrowed (synchronous ones), reports widened for JS.

use napi::bindgen_prelude::{Either, Float32Array, Float32ArraySlice, Int32Array, Int32ArraySlice};
use weft_core::exec::{HostData, HostView};
use weft_core::session::{InputSpec, StepReport};

/// A batch tensor as JS hands it over.
pub type JsTensor = Either<Float32Array, Int32Array>;
/// A batch tensor borrowed for the length of one synchronous call.
pub type JsTensorView<'a> = Either<Float32ArraySlice<'a>, Int32ArraySlice<'a>>;

/// One named output of a step: concrete dims and a fresh typed array.
#[napi(object)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<u32>,
    #[napi(ts_type = "Float32Array | Int32Array")]
    pub data: JsTensor,
}

/// What `step()`/`evaluate()` resolve to.
#[napi(object)]
pub struct JsStepReport {
    pub step: i64,
    pub loss: f64,
    pub lr: f64,
    /// Global gradient norm before clipping; absent for evaluation.
    pub grad_norm: Option<f64>,
    pub ms: f64,
    pub outputs: Vec<NamedTensor>,
    /// Measured idle fraction of each device over the pipeline phase (training steps).
    pub idle: Vec<f64>,
    /// The pipeline's ideal idle fraction (S-1)/(M+S-1).
    pub ideal_idle: f64,
    /// fp16 mixed precision: the loss scale after this step; absent when the loss is unscaled.
    pub loss_scale: Option<f64>,
    /// Whether dynamic loss scaling skipped this step (a non-finite gradient).
    pub skipped: bool,
    /// Steps skipped so far in the run.
    pub skipped_steps: i64,
}

/// A compiled model's batch input at the global batch size.
#[napi(object)]
pub struct JsInputSpec {
    pub name: String,
    pub shape: Vec<u32>,
    pub dtype: String,
    /// Whether axis 0 is the batch axis.
    pub batched: bool,
}

/// A parameter's name and concrete shape.
#[napi(object)]
pub struct ParameterInfo {
    pub name: String,
    pub shape: Vec<u32>,
}

/// A JS typed array -> host data, copied so the worker thread never reads JS memory.
pub fn host_data(t: &JsTensor) -> HostData {
    match t {
        Either::A(f) => HostData::F32(f.to_vec()),
        Either::B(i) => HostData::I32(i.to_vec()),
    }
}

pub fn host_view<'a>(t: &'a JsTensorView<'_>) -> HostView<'a> {
    match t {
        Either::A(f) => HostView::F32(f),
        Either::B(i) => HostView::I32(i),
    }
}

/// Overwrites `buf` with `t`, keeping its allocation when the dtype matches.
pub fn copy_into(buf: &mut HostData, t: &JsTensor) {
    match (buf, t) {
        (HostData::F32(v), Either::A(f)) => {
            v.clear();
            v.extend_from_slice(f);
        }
        (HostData::I32(v), Either::B(i)) => {
            v.clear();
            v.extend_from_slice(i);
        }
        (buf, t) => *buf = host_data(t),
    }
}

/// Host data -> a fresh JS typed array (the Vec becomes its backing store, no copy).
pub fn to_js_tensor(d: HostData) -> JsTensor {
    match d {
        HostData::F32(v) => Either::A(Float32Array::new(v)),
        HostData::I32(v) => Either::B(Int32Array::new(v)),
        // The core hands 16-bit values out as f32; widen any that get here all the same.
        half => Either::A(Float32Array::new(
            half.to_f32().map(|v| v.into_owned()).unwrap_or_default(),
        )),
    }
}

pub fn step_report(r: StepReport) -> JsStepReport {
    JsStepReport {
        step: r.step as i64,
        loss: widen(r.loss),
        lr: widen(r.lr),
        grad_norm: r.grad_norm.map(widen),
        ms: r.ms,
        outputs: r
            .outputs
            .into_iter()
            .map(|(name, dims, data)| NamedTensor {
                name,
                shape: dims_u32(&dims),
                data: to_js_tensor(data),
            })
            .collect(),
        idle: r.idle,
        ideal_idle: r.ideal_idle,
        loss_scale: r.loss_scale.map(widen),
        skipped: r.skipped,
        skipped_steps: r.skipped_steps as i64,
    }
}

/// An f32 as the f64 with the same shortest decimal form (0.01f32 -> 0.01, not 0.0099999998).
fn widen(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

pub fn input_spec(s: &InputSpec) -> JsInputSpec {
    JsInputSpec {
        name: s.name.clone(),
        shape: dims_u32(&s.dims),
        dtype: s.dtype.name().into(),
        batched: s.batched,
    }
}

pub fn dims_u32(dims: &[usize]) -> Vec<u32> {
    dims.iter().map(|&d| d as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_widens_to_its_shortest_decimal() {
        assert_eq!(widen(0.1), 0.1);
        assert!(widen(f32::NAN).is_nan());
    }
}
