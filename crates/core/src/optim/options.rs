//! Optimizer choice and hyper-parameters with PyTorch's defaults and checks, and the
//! `UpdateRule` each step hands to the backend.

use std::fmt;

use super::schedule::LrSchedule;
use crate::error::{Error, Result};
use crate::exec::{Adam, Sgd, UpdateRule};

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptimizerKind {
    Sgd,
    Adam,
    /// Adam with decoupled weight decay.
    AdamW,
}

impl OptimizerKind {
    pub const NAMES: &'static [&'static str] = &["sgd", "adam", "adamw"];

    pub fn as_str(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
        }
    }

    /// Case-insensitive: `sgd`, `adam`, `adamw` (`AdamW`).
    pub fn parse(text: &str) -> Option<Self> {
        let all = [
            OptimizerKind::Sgd,
            OptimizerKind::Adam,
            OptimizerKind::AdamW,
        ];
        all.into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(text))
    }

    pub fn is_adam(self) -> bool {
        matches!(self, OptimizerKind::Adam | OptimizerKind::AdamW)
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The shape of the learning-rate schedule; the rates come from `OptimizerConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    Constant,
    Cosine,
}

impl ScheduleKind {
    pub const NAMES: &'static [&'static str] = &["constant", "cosine"];

    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleKind::Constant => "constant",
            ScheduleKind::Cosine => "cosine",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [ScheduleKind::Constant, ScheduleKind::Cosine]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(text))
    }
}

/// An optimizer and its hyper-parameters. Fields that do not apply to `kind` keep their
/// defaults and are ignored by `rule`.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// Peak learning rate.
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// L2 penalty (SGD, Adam) or decoupled decay (AdamW).
    pub weight_decay: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub nesterov: bool,
    /// Clip the global gradient norm to this value; None = no clipping.
    pub grad_clip: Option<f32>,
    pub schedule: ScheduleKind,
    /// Linear warm-up steps (either schedule).
    pub warmup_steps: u64,
    /// Steps of the cosine decay's end; required by `ScheduleKind::Cosine`.
    pub total_steps: Option<u64>,
    /// Rate the cosine schedule decays to.
    pub min_lr: f32,
}

impl OptimizerConfig {
    /// PyTorch's defaults for `kind` with lr 1e-3: betas (0.9, 0.999), eps 1e-8, weight
    /// decay 0 (AdamW: 0.01), momentum 0, dampening 0, no nesterov; no clipping, constant rate.
    pub fn new(kind: OptimizerKind) -> Self {
        OptimizerConfig {
            kind,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: if kind == OptimizerKind::AdamW {
                0.01
            } else {
                0.0
            },
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            grad_clip: None,
            schedule: ScheduleKind::Constant,
            warmup_steps: 0,
            total_steps: None,
            min_lr: 0.0,
        }
    }

    pub fn sgd(lr: f32) -> Self {
        OptimizerConfig {
            lr,
            ..Self::new(OptimizerKind::Sgd)
        }
    }

    pub fn adam(lr: f32) -> Self {
        OptimizerConfig {
            lr,
            ..Self::new(OptimizerKind::Adam)
        }
    }

    pub fn adamw(lr: f32) -> Self {
        OptimizerConfig {
            lr,
            ..Self::new(OptimizerKind::AdamW)
        }
    }

    /// PyTorch's argument checks, plus the schedule's and clipping's.
    pub fn validate(&self) -> Result<()> {
        at_least_zero("lr", self.lr)?;
        at_least_zero("eps", self.eps)?;
        at_least_zero("weight_decay", self.weight_decay)?;
        at_least_zero("momentum", self.momentum)?;
        unit_interval("beta1", self.beta1)?;
        unit_interval("beta2", self.beta2)?;
        if !self.dampening.is_finite() {
            return Err(invalid(
                "dampening",
                format!("must be a finite number, got {}", self.dampening),
            ));
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            let got = format!(
                "got momentum {} and dampening {}",
                self.momentum, self.dampening
            );
            return Err(invalid(
                "nesterov",
                format!("requires momentum > 0 and dampening 0, {got}"),
            ));
        }
        if let Some(clip) = self.grad_clip
            && !(clip.is_finite() && clip > 0.0)
        {
            let what = format!("must be a finite number > 0, got {clip}");
            return Err(invalid("grad_clip", what));
        }
        self.lr_schedule().map(|_| ())
    }

    /// The learning-rate schedule these settings describe.
    pub fn lr_schedule(&self) -> Result<LrSchedule> {
        match (self.schedule, self.total_steps) {
            (ScheduleKind::Constant, _) if self.warmup_steps == 0 => {
                Ok(LrSchedule::Constant { lr: self.lr })
            }
            (ScheduleKind::Constant, _) => Ok(LrSchedule::WarmupCosine {
                lr: self.lr,
                warmup_steps: self.warmup_steps,
                total_steps: self.warmup_steps,
                min_lr: self.lr,
            }),
            (ScheduleKind::Cosine, None) => Err(invalid(
                "total_steps",
                "is required by schedule 'cosine' (the step the decay ends at)".to_string(),
            )),
            (ScheduleKind::Cosine, Some(total)) => self.cosine(total),
        }
    }

    fn cosine(&self, total_steps: u64) -> Result<LrSchedule> {
        if self.warmup_steps > total_steps {
            let got = format!(
                "got warmup {} and total_steps {total_steps}",
                self.warmup_steps
            );
            return Err(invalid("warmup", format!("must be <= total_steps, {got}")));
        }
        if !(self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            let got = format!("got min_lr {} and lr {}", self.min_lr, self.lr);
            return Err(invalid("min_lr", format!("must be in [0, lr], {got}")));
        }
        Ok(LrSchedule::WarmupCosine {
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            total_steps,
            min_lr: self.min_lr,
        })
    }

    /// The backend's update rule for one step at learning rate `lr` (from the schedule).
    pub fn rule(&self, lr: f32) -> UpdateRule {
        match self.kind {
            OptimizerKind::Sgd => UpdateRule::Sgd(Sgd {
                lr,
                momentum: self.momentum,
                dampening: self.dampening,
                nesterov: self.nesterov,
                weight_decay: self.weight_decay,
            }),
            OptimizerKind::Adam | OptimizerKind::AdamW => UpdateRule::Adam(Adam {
                lr,
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay: self.weight_decay,
                decoupled: self.kind == OptimizerKind::AdamW,
            }),
        }
    }
}

/// An `Error::Config` for optimizer option `name`: the message is "`name` `what`".
pub(crate) fn invalid(name: &str, what: String) -> Error {
    Error::config(name, format!("{name} {what}"))
}

fn at_least_zero(name: &str, x: f32) -> Result<()> {
    if x.is_finite() && x >= 0.0 {
        return Ok(());
    }
    Err(invalid(
        name,
        format!("must be a finite number >= 0, got {x}"),
    ))
}

fn unit_interval(name: &str, x: f32) -> Result<()> {
    if (0.0..1.0).contains(&x) {
        return Ok(());
    }
    Err(invalid(name, format!("must be in [0, 1), got {x}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<()>) -> String {
        match result {
            Err(Error::Config { message, .. }) => message,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn pytorch_defaults() {
        let adam = OptimizerConfig::adam(1e-3);
        assert_eq!(
            (adam.beta1, adam.beta2, adam.eps, adam.weight_decay),
            (0.9, 0.999, 1e-8, 0.0)
        );
        assert_eq!(OptimizerConfig::adamw(3e-4).weight_decay, 0.01);
        assert_eq!(OptimizerConfig::adamw(3e-4).lr, 3e-4);
        let sgd = OptimizerConfig::sgd(0.1);
        assert_eq!(
            (sgd.momentum, sgd.dampening, sgd.nesterov, sgd.weight_decay),
            (0.0, 0.0, false, 0.0)
        );
        for kind in [
            OptimizerKind::Sgd,
            OptimizerKind::Adam,
            OptimizerKind::AdamW,
        ] {
            assert_eq!(OptimizerConfig::new(kind).validate(), Ok(()));
        }
    }

    #[test]
    fn kinds_parse_case_insensitively() {
        assert_eq!(OptimizerKind::parse("AdamW"), Some(OptimizerKind::AdamW));
        assert_eq!(OptimizerKind::parse("SGD"), Some(OptimizerKind::Sgd));
        assert_eq!(OptimizerKind::parse("lamb"), None);
        assert_eq!(ScheduleKind::parse("Cosine"), Some(ScheduleKind::Cosine));
        assert!(OptimizerKind::AdamW.is_adam() && !OptimizerKind::Sgd.is_adam());
    }

    #[test]
    fn rules_carry_the_hyper_parameters() {
        let sgd = OptimizerConfig {
            momentum: 0.9,
            nesterov: true,
            ..OptimizerConfig::sgd(0.1)
        };
        assert_eq!(
            sgd.rule(0.05),
            UpdateRule::Sgd(Sgd {
                lr: 0.05,
                momentum: 0.9,
                dampening: 0.0,
                nesterov: true,
                weight_decay: 0.0
            })
        );
        let want = |decoupled, weight_decay| {
            UpdateRule::Adam(Adam {
                lr: 0.5,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay,
                decoupled,
            })
        };
        assert_eq!(OptimizerConfig::adamw(1.0).rule(0.5), want(true, 0.01));
        assert_eq!(OptimizerConfig::adam(1.0).rule(0.5), want(false, 0.0));
    }

    #[test]
    fn validation_messages() {
        type Edit = fn(&mut OptimizerConfig);
        let cases: [(OptimizerKind, Edit, &str); 11] = [
            (
                OptimizerKind::Adam,
                |c| c.lr = -0.1,
                "lr must be a finite number >= 0, got -0.1",
            ),
            (
                OptimizerKind::Adam,
                |c| c.lr = f32::NAN,
                "lr must be a finite number >= 0, got NaN",
            ),
            (
                OptimizerKind::Adam,
                |c| c.beta1 = 1.0,
                "beta1 must be in [0, 1), got 1",
            ),
            (
                OptimizerKind::Adam,
                |c| c.beta2 = -0.5,
                "beta2 must be in [0, 1), got -0.5",
            ),
            (
                OptimizerKind::Adam,
                |c| c.eps = -1.0,
                "eps must be a finite number >= 0, got -1",
            ),
            (
                OptimizerKind::AdamW,
                |c| c.weight_decay = -0.01,
                "weight_decay must be a finite number >= 0, got -0.01",
            ),
            (
                OptimizerKind::Adam,
                |c| c.grad_clip = Some(0.0),
                "grad_clip must be a finite number > 0, got 0",
            ),
            (
                OptimizerKind::Sgd,
                |c| c.momentum = -0.9,
                "momentum must be a finite number >= 0, got -0.9",
            ),
            (
                OptimizerKind::Sgd,
                |c| c.dampening = f32::INFINITY,
                "dampening must be a finite number, got inf",
            ),
            (
                OptimizerKind::Sgd,
                |c| c.nesterov = true,
                "nesterov requires momentum > 0 and dampening 0, got momentum 0 and dampening 0",
            ),
            (
                OptimizerKind::Sgd,
                |c| (c.nesterov, c.momentum, c.dampening) = (true, 0.9, 0.1),
                "nesterov requires momentum > 0 and dampening 0, \
                 got momentum 0.9 and dampening 0.1",
            ),
        ];
        for (kind, edit, want) in cases {
            let mut c = OptimizerConfig::new(kind);
            edit(&mut c);
            assert_eq!(message(c.validate()), want);
        }
        let nesterov = OptimizerConfig {
            nesterov: true,
            momentum: 0.9,
            ..OptimizerConfig::sgd(0.1)
        };
        assert_eq!(nesterov.validate(), Ok(()));
    }

    #[test]
    fn schedules() {
        let base = OptimizerConfig::adamw(1.0);
        assert_eq!(base.lr_schedule(), Ok(LrSchedule::Constant { lr: 1.0 }));
        let warm = OptimizerConfig {
            warmup_steps: 4,
            ..base.clone()
        };
        let s = warm.lr_schedule().unwrap();
        assert_eq!(
            (s.lr_at(2), s.lr_at(4), s.lr_at(5), s.lr_at(1000)),
            (0.5, 1.0, 1.0, 1.0)
        );
        let cosine = OptimizerConfig {
            schedule: ScheduleKind::Cosine,
            ..base.clone()
        };
        assert_eq!(
            message(cosine.validate()),
            "total_steps is required by schedule 'cosine' (the step the decay ends at)"
        );
        let cosine = OptimizerConfig {
            total_steps: Some(10),
            min_lr: 0.1,
            ..cosine
        };
        assert_eq!(
            cosine.lr_schedule(),
            Ok(LrSchedule::WarmupCosine {
                lr: 1.0,
                warmup_steps: 0,
                total_steps: 10,
                min_lr: 0.1
            })
        );
        let late = OptimizerConfig {
            warmup_steps: 11,
            ..cosine.clone()
        };
        assert_eq!(
            message(late.validate()),
            "warmup must be <= total_steps, got warmup 11 and total_steps 10"
        );
        let high = OptimizerConfig {
            min_lr: 2.0,
            ..cosine
        };
        assert_eq!(
            message(high.validate()),
            "min_lr must be in [0, lr], got min_lr 2 and lr 1"
        );
    }
}
