//! Learning-rate schedules (llm.c / nanoGPT convention): linear warm-up, then cosine decay.

/// A learning rate as a function of the optimizer step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrSchedule {
    Constant {
        lr: f32,
    },
    /// Linear warm-up to `lr` over `warmup_steps`, cosine decay to `min_lr` by step
    /// `total_steps + 1`, then `min_lr`. With `min_lr == lr` this is a constant rate after a
    /// warm-up.
    WarmupCosine {
        lr: f32,
        warmup_steps: u64,
        total_steps: u64,
        min_lr: f32,
    },
}

impl LrSchedule {
    /// The learning rate of 1-based optimizer step `step` (0 is treated as 1). For 0-based
    /// step `i` this is llm.c's formula: `lr * (i + 1) / warmup` while `i < warmup`, then
    /// `min_lr + 0.5 * (1 + cos(pi * (i - warmup) / (total - warmup))) * (lr - min_lr)`,
    /// held at `min_lr` once the ratio reaches 1.
    pub fn lr_at(&self, step: u64) -> f32 {
        match *self {
            LrSchedule::Constant { lr } => lr,
            LrSchedule::WarmupCosine {
                lr,
                warmup_steps,
                total_steps,
                min_lr,
            } => {
                let step = step.max(1);
                if step <= warmup_steps {
                    return (f64::from(lr) * step as f64 / warmup_steps as f64) as f32;
                }
                if total_steps <= warmup_steps {
                    return min_lr;
                }
                let done = (step - 1 - warmup_steps) as f64;
                let ratio = (done / (total_steps - warmup_steps) as f64).min(1.0);
                let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
                let (lr, min_lr) = (f64::from(lr), f64::from(min_lr));
                (min_lr + coeff * (lr - min_lr)) as f32
            }
        }
    }

    /// The largest rate the schedule reaches.
    pub fn peak_lr(&self) -> f32 {
        match *self {
            LrSchedule::Constant { lr } | LrSchedule::WarmupCosine { lr, .. } => lr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-6 * b.abs().max(1.0)
    }

    const COSINE: LrSchedule = LrSchedule::WarmupCosine {
        lr: 1.0,
        warmup_steps: 10,
        total_steps: 110,
        min_lr: 0.1,
    };

    #[test]
    fn constant_is_constant() {
        let s = LrSchedule::Constant { lr: 3e-4 };
        assert_eq!(s.lr_at(1), 3e-4);
        assert_eq!(s.lr_at(1_000_000), 3e-4);
        assert_eq!(s.peak_lr(), 3e-4);
    }

    #[test]
    fn warmup_is_linear_from_lr_over_warmup() {
        assert!(close(COSINE.lr_at(1), 0.1));
        assert!(close(COSINE.lr_at(5), 0.5));
        assert!(close(COSINE.lr_at(10), 1.0));
        assert!(close(COSINE.lr_at(0), 0.1), "step 0 is treated as step 1");
    }

    #[test]
    fn cosine_decays_to_min_lr_and_stays() {
        assert!(
            close(COSINE.lr_at(11), 1.0),
            "first decay step is the peak (llm.c)"
        );
        assert!(
            close(COSINE.lr_at(61), 0.55),
            "half-way: {}",
            COSINE.lr_at(61)
        );
        let quarter = 0.1 + 0.5 * (1.0 + (std::f64::consts::FRAC_PI_4).cos()) * 0.9;
        assert!(close(COSINE.lr_at(36), quarter as f32));
        assert!(COSINE.lr_at(110) > 0.1);
        assert!(close(COSINE.lr_at(111), 0.1));
        assert_eq!(COSINE.lr_at(10_000), 0.1);
        for step in 11..200 {
            assert!(
                COSINE.lr_at(step + 1) <= COSINE.lr_at(step),
                "not decreasing at {step}"
            );
        }
    }

    #[test]
    fn no_warmup_and_degenerate_totals() {
        let s = LrSchedule::WarmupCosine {
            lr: 2.0,
            warmup_steps: 0,
            total_steps: 4,
            min_lr: 0.0,
        };
        let got: Vec<f32> = (1..=6).map(|i| s.lr_at(i)).collect();
        let want = [2.0, 1.7071068, 1.0, 0.29289323, 0.0, 0.0];
        for (g, w) in got.iter().zip(want) {
            assert!(close(*g, w), "{got:?}");
        }
        let flat = LrSchedule::WarmupCosine {
            lr: 1.0,
            warmup_steps: 4,
            total_steps: 4,
            min_lr: 1.0,
        };
        assert!(close(flat.lr_at(2), 0.5));
        assert_eq!(flat.lr_at(5), 1.0);
        assert_eq!(flat.lr_at(50), 1.0);
    }
}
