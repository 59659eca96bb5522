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

    /// The schedule as a checkpoint stores it: every number that shapes it, so a resumed run
    /// follows the same curve (f32 rates round-trip exactly through JSON's f64).
    pub fn to_json(&self) -> serde_json::Value {
        match *self {
            LrSchedule::Constant { lr } => serde_json::json!({"kind": "constant", "lr": lr}),
            LrSchedule::WarmupCosine {
                lr,
                warmup_steps,
                total_steps,
                min_lr,
            } => serde_json::json!({
                "kind": "cosine", "lr": lr, "warmup_steps": warmup_steps,
                "total_steps": total_steps, "min_lr": min_lr,
            }),
        }
    }

    /// Reads `to_json`'s form; the error says which field is missing or wrong.
    pub fn from_json(v: &serde_json::Value) -> Result<LrSchedule, String> {
        let rate = |k: &str| {
            v[k].as_f64()
                .filter(|x| x.is_finite())
                .map(|x| x as f32)
                .ok_or_else(|| format!("'{k}' must be a finite number, got {}", v[k]))
        };
        let count = |k: &str| {
            v[k].as_u64()
                .ok_or_else(|| format!("'{k}' must be a non-negative integer, got {}", v[k]))
        };
        match v["kind"].as_str() {
            Some("constant") => Ok(LrSchedule::Constant { lr: rate("lr")? }),
            Some("cosine") => Ok(LrSchedule::WarmupCosine {
                lr: rate("lr")?,
                warmup_steps: count("warmup_steps")?,
                total_steps: count("total_steps")?,
                min_lr: rate("min_lr")?,
            }),
            _ => Err(format!(
                "'kind' must be 'constant' or 'cosine', got {}",
                v["kind"]
            )),
        }
    }

    /// In words, for messages: `cosine from 0.01 (2 warm-up steps) to 0.001 at step 10`.
    pub fn describe(&self) -> String {
        match *self {
            LrSchedule::Constant { lr } => format!("constant {lr}"),
            LrSchedule::WarmupCosine {
                lr,
                warmup_steps,
                total_steps,
                min_lr,
            } => format!(
                "cosine from {lr} ({warmup_steps} warm-up steps) to {min_lr} at step {total_steps}"
            ),
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
    fn the_json_form_round_trips_exactly_and_names_a_bad_field() {
        for s in [LrSchedule::Constant { lr: 3e-4 }, COSINE] {
            assert_eq!(LrSchedule::from_json(&s.to_json()), Ok(s));
        }
        let mut bad = COSINE.to_json();
        bad["total_steps"] = serde_json::json!(-1);
        assert_eq!(
            LrSchedule::from_json(&bad),
            Err("'total_steps' must be a non-negative integer, got -1".to_string())
        );
    }

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
