//! Fused optimizer updates. The step-dependent scalars (bias corrections) are the CPU's own
//! (`AdamScalars`), so both backends apply the same update.

use super::{Launch, elems, launch};
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, DeviceRepr};
use weft_core::exec::UpdateRule;
use weft_core::exec::cpu::optim::AdamScalars;
use weft_core::{Error, Result};

/// Mirrors optim.cu's `SgdArgs`.
#[repr(C)]
#[derive(Clone, Copy)]
struct SgdArgs {
    lr: f32,
    momentum: f32,
    damp: f32,
    weight_decay: f32,
    nesterov: i32,
    first: i32,
}

/// Mirrors optim.cu's `AdamArgs`.
#[repr(C)]
#[derive(Clone, Copy)]
struct AdamArgs {
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    decay: f32,
    neg_step_size: f32,
    bc2_sqrt: f32,
    decoupled: i32,
}

// SAFETY: `repr(C)` structs of 4-byte scalars in the C structs' order.
unsafe impl DeviceRepr for SgdArgs {}
// SAFETY: as above.
unsafe impl DeviceRepr for AdamArgs {}

impl SgdArgs {
    fn new(rule: &UpdateRule, step: u64) -> Option<SgdArgs> {
        let UpdateRule::Sgd(h) = rule else {
            return None;
        };
        Some(SgdArgs {
            lr: h.lr,
            momentum: h.momentum,
            damp: h.damp(),
            weight_decay: h.weight_decay,
            nesterov: i32::from(h.nesterov),
            first: i32::from(step <= 1),
        })
    }
}

impl AdamArgs {
    /// The step's scalars, as the CPU's `AdamScalars` computes them (f64, then rounded).
    fn new(rule: &UpdateRule, step: u64) -> Option<AdamArgs> {
        let UpdateRule::Adam(h) = rule else {
            return None;
        };
        let s = AdamScalars::new(h, step);
        Some(AdamArgs {
            one_minus_beta1: s.one_minus_beta1,
            one_minus_beta2: s.one_minus_beta2,
            beta2: h.beta2,
            eps: h.eps,
            weight_decay: h.weight_decay,
            decay: s.decay,
            neg_step_size: s.neg_step_size,
            bc2_sqrt: s.bc2_sqrt,
            decoupled: i32::from(h.decoupled),
        })
    }
}

impl Launch<'_> {
    pub fn update(
        &self,
        rule: &UpdateRule,
        step: u64,
        p: &mut CudaViewMut<'_, f32>,
        g: &CudaView<'_, f32>,
        mut state: Vec<&mut CudaSlice<f32>>,
    ) -> Result<()> {
        if p.is_empty() {
            return Ok(());
        }
        let (n, cfg) = (p.len() as i64, elems(p.len()));
        if let Some(a) = SgdArgs::new(rule, step) {
            return match state.pop() {
                Some(buf) => launch!(self, "sgd_update_f32".to_string(), cfg; p, g, buf, &n, &a),
                None => {
                    // No momentum buffer: the kernel gets a null pointer.
                    let null = 0u64;
                    launch!(self, "sgd_update_f32".to_string(), cfg; p, g, &null, &n, &a)
                }
            };
        }
        let a = AdamArgs::new(rule, step).ok_or_else(|| Error::internal("update: unknown rule"))?;
        let (v, m) = (state.pop(), state.pop());
        let (Some(m), Some(v)) = (m, v) else {
            return Err(Error::internal("adam: needs two state buffers"));
        };
        launch!(self, "adam_update_f32".to_string(), cfg; p, g, m, v, &n, &a)
    }
}
