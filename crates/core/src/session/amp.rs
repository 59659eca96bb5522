//! Mixed precision in the session: the graph rewrite's options (`amp.*`), and the loss scale of
//! fp16 training, dynamic as PyTorch's GradScaler: start at 2^15, double after 2000 steps with
//! finite gradients, halve on a non-finite one and skip that step. The driver sees every
//! replica's gradient norm at once, so a skip is taken by all replicas alike.

use super::options::TrainerOptions;
use crate::config::{AmpDtype, AmpLevel, LossScale};
use crate::error::Result;
use crate::exec::Backend;
use crate::ir::{DType, Graph};
use crate::passes::{AmpReport, mixed_precision, recast_parameters, run_pass, scale_loss_seed};

/// Dynamic scaling's constants (PyTorch's defaults).
const INITIAL_SCALE: f32 = 32768.0;
const GROWTH_INTERVAL: u64 = 2000;

/// The loss scale of a run and what it has done.
#[derive(Debug, Clone, PartialEq)]
pub struct LossScaler {
    pub scale: f32,
    pub dynamic: bool,
    /// Finite steps since the scale last changed.
    good_steps: u64,
    /// Steps skipped for a non-finite gradient.
    pub skipped: u64,
}

impl LossScaler {
    /// The state a checkpoint keeps.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"scale": self.scale, "good_steps": self.good_steps, "skipped": self.skipped})
    }

    /// Continue from a checkpoint's state (fields it lacks keep their values).
    pub fn restore(&mut self, saved: &serde_json::Value) {
        if let Some(s) = saved["scale"]
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0)
        {
            self.scale = s as f32;
        }
        if let Some(g) = saved["good_steps"].as_u64() {
            self.good_steps = g;
        }
        if let Some(k) = saved["skipped"].as_u64() {
            self.skipped = k;
        }
    }

    /// One step's outcome: with finite gradients the scale may grow; without, a dynamic scale
    /// halves (floor 1) and the step is to be skipped. Returns whether to skip.
    pub fn update(&mut self, finite: bool) -> bool {
        if finite {
            self.good_steps += 1;
            if self.dynamic && self.good_steps == GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
            return false;
        }
        if !self.dynamic {
            return false;
        }
        self.scale = (self.scale / 2.0).max(1.0);
        self.good_steps = 0;
        self.skipped += 1;
        true
    }
}

/// The low type of `amp.dtype`.
fn low_dtype(options: &TrainerOptions) -> DType {
    match options.config.amp.low_dtype() {
        AmpDtype::Bf16 | AmpDtype::Auto => DType::BF16,
        AmpDtype::Fp16 => DType::F16,
    }
}

/// `amp.level='O1'`: the forward graph in mixed precision, and its report.
pub(super) fn amp_forward(
    graph: Graph,
    options: &TrainerOptions,
) -> Result<(Graph, Option<AmpReport>)> {
    if options.config.amp.level == AmpLevel::Off {
        return Ok((graph, None));
    }
    let mut report = None;
    let low = low_dtype(options);
    let g = run_pass(graph, |g| {
        let (g, r) = mixed_precision(g, low)?;
        report = Some(r);
        Ok(g)
    })?;
    Ok((g, report))
}

/// The differentiated graph under AMP: parameters cast again where backward reads them, and
/// for fp16 (bf16 has f32's range and is not scaled) backward's seed made the step's loss
/// scale, with the scaler that sets it.
pub(super) fn amp_backward(
    graph: Graph,
    options: &TrainerOptions,
) -> Result<(Graph, Option<LossScaler>)> {
    let amp = &options.config.amp;
    if amp.level == AmpLevel::Off {
        return Ok((graph, None));
    }
    let graph = run_pass(graph, recast_parameters)?;
    if amp.low_dtype() != AmpDtype::Fp16 {
        return Ok((graph, None));
    }
    let (scale, dynamic) = match amp.loss_scale {
        LossScale::Dynamic => (INITIAL_SCALE, true),
        LossScale::Fixed(s) => (s as f32, false),
    };
    let scaler = LossScaler {
        scale,
        dynamic,
        good_steps: 0,
        skipped: 0,
    };
    Ok((run_pass(graph, scale_loss_seed)?, Some(scaler)))
}

/// Warnings about a configuration that runs but likely not as meant.
pub(super) fn warnings(options: &TrainerOptions) -> Vec<String> {
    let amp = &options.config.amp;
    let mut out = Vec::new();
    if amp.level == AmpLevel::Off {
        // Every amp key but the level itself is idle without it: say which were set.
        let idle: Vec<String> = options
            .config
            .diff_from_default()
            .into_iter()
            .filter(|(k, _)| k.starts_with("amp.") && *k != "amp.level")
            .map(|(k, v)| format!("{k}={}", v.quoted()))
            .collect();
        if !idle.is_empty() {
            out.push(format!(
                "{} {} no effect: mixed precision is off (set amp.level='o1')",
                idle.join(", "),
                if idle.len() == 1 { "has" } else { "have" }
            ));
        }
        return out;
    }
    let fixed = match amp.loss_scale {
        LossScale::Fixed(x) => Some(x),
        LossScale::Dynamic => None,
    };
    match (amp.low_dtype(), fixed) {
        (AmpDtype::Fp16, Some(1.0)) => out.push(
            "amp.dtype='fp16' with amp.loss_scale=1: gradients below 2^-24 (about 6e-8) \
             underflow to zero in fp16 and larger ones lose precision; set amp.loss_scale to \
             'dynamic' (the default) or a power of two such as 1024"
                .into(),
        ),
        (AmpDtype::Bf16 | AmpDtype::Auto, Some(x)) => out.push(format!(
            "amp.loss_scale={x} has no effect under amp.dtype='bf16' (bf16 has f32's range and \
             is never scaled); set amp.dtype='fp16' to scale the loss, or drop amp.loss_scale"
        )),
        _ => {}
    }
    out
}

impl<B: Backend> super::trainer::Trainer<B> {
    /// The report of a step dynamic loss scaling skipped: nothing was updated, the step count
    /// stands, and the scale is already halved.
    pub(super) fn skipped_report(&self, loss: f32, t0: std::time::Instant) -> super::StepReport {
        let scaler = self.scaler.as_ref();
        super::StepReport {
            step: self.step,
            loss,
            lr: self.schedule.lr_at(self.step.max(1)),
            grad_norm: Some(f32::INFINITY),
            ms: t0.elapsed().as_secs_f64() * 1e3,
            outputs: Vec::new(),
            idle: Vec::new(),
            ideal_idle: 0.0,
            loss_scale: scaler.map(|s| s.scale),
            skipped: true,
            skipped_steps: scaler.map_or(0, |s| s.skipped),
        }
    }

    /// Set fp16's current loss scale (e.g. restored from a checkpoint, or to test recovery
    /// from an overflow). An error when the loss is not scaled or the scale is not positive.
    pub fn set_loss_scale(&mut self, scale: f32) -> crate::error::Result<()> {
        let scaler = self.scaler.as_mut().ok_or_else(|| {
            crate::error::Error::config(
                "amp.loss_scale",
                "the loss is scaled only under amp.level='O1' with amp.dtype='fp16'",
            )
        })?;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(crate::error::Error::config(
                "amp.loss_scale",
                format!("a loss scale must be a positive finite number, got {scale}"),
            ));
        }
        scaler.scale = scale;
        Ok(())
    }

    /// Warnings about this configuration (see `amp::warnings`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// What mixed precision did to the graph (None without `amp.level`).
    pub fn amp_report(&self) -> Option<&crate::passes::AmpReport> {
        self.amp_report.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_scale_halves_on_overflow_and_doubles_after_the_growth_interval() {
        let mut s = LossScaler {
            scale: INITIAL_SCALE,
            dynamic: true,
            good_steps: 0,
            skipped: 0,
        };
        assert!(s.update(false));
        assert_eq!((s.scale, s.skipped), (16384.0, 1));
        for _ in 0..GROWTH_INTERVAL - 1 {
            assert!(!s.update(true));
        }
        assert_eq!(s.scale, 16384.0);
        assert!(!s.update(true));
        assert_eq!(s.scale, 32768.0);
        let mut floor = LossScaler {
            scale: 1.0,
            ..s.clone()
        };
        floor.update(false);
        assert_eq!(floor.scale, 1.0);
        let mut fixed = LossScaler {
            dynamic: false,
            ..s
        };
        assert!(!fixed.update(false));
        assert_eq!(fixed.scale, 32768.0);
    }
}
