//! `OptimizerConfig` from a JSON object (the TS `weft.optim.*` options and the CLI flags):
//! keys in snake or camel case, unknown keys suggested, options that do not apply rejected.

use serde_json::{Map, Value};

use super::options::{OptimizerConfig, OptimizerKind, ScheduleKind};
use crate::config::suggest::{camel_to_snake, nearest, snake_to_camel};
use crate::error::{Error, Result};

/// What an option applies to.
#[derive(Clone, Copy, PartialEq)]
enum Applies {
    All,
    Adam,
    Sgd,
    Cosine,
}

/// Every accepted option (snake_case; camelCase is accepted too) and what it applies to.
const OPTIONS: &[(&str, Applies)] = &[
    ("kind", Applies::All),
    ("lr", Applies::All),
    ("beta1", Applies::Adam),
    ("beta2", Applies::Adam),
    ("eps", Applies::Adam),
    ("weight_decay", Applies::All),
    ("momentum", Applies::Sgd),
    ("dampening", Applies::Sgd),
    ("nesterov", Applies::Sgd),
    ("grad_clip", Applies::All),
    ("warmup", Applies::All),
    ("schedule", Applies::All),
    ("total_steps", Applies::All),
    ("min_lr", Applies::Cosine),
];

/// One option as written: its canonical name, the name the user wrote, and the value.
type Entry<'a> = (&'static str, &'a str, &'a Value);

impl OptimizerConfig {
    /// Parse and validate `{"kind": "adamw", "lr": 3e-4, "weightDecay": 0.1, ...}`. `kind`
    /// defaults to `adamw`; every other option defaults as in `OptimizerConfig::new`.
    /// `warmup_steps` is accepted for `warmup`.
    pub fn from_json(value: &Value) -> Result<OptimizerConfig> {
        let Value::Object(map) = value else {
            let message = format!("optimizer options must be a JSON object, got {value}");
            return Err(Error::config("", message));
        };
        let entries = entries(map)?;
        let find = |name: &str| entries.iter().find(|e| e.0 == name);
        let kind = match find("kind") {
            Some(&(_, written, v)) => choice(written, v, OptimizerKind::NAMES)
                .map(|s| OptimizerKind::parse(s).unwrap_or(OptimizerKind::AdamW))?,
            None => OptimizerKind::AdamW,
        };
        let mut config = OptimizerConfig::new(kind);
        for &(name, written, v) in &entries {
            apply(&mut config, name, written, v)?;
        }
        for &(name, written, _) in &entries {
            check_applies(&config, name, written)?;
        }
        config.validate()?;
        Ok(config)
    }
}

/// Canonical names for every key; unknown and repeated keys are errors.
fn entries(map: &Map<String, Value>) -> Result<Vec<Entry<'_>>> {
    let mut out: Vec<Entry<'_>> = Vec::new();
    for (written, value) in map {
        let mut snake = camel_to_snake(written);
        if snake == "warmup_steps" {
            snake = "warmup".to_string();
        }
        let Some(&(name, _)) = OPTIONS.iter().find(|(n, _)| *n == snake) else {
            return Err(unknown(written));
        };
        if let Some((_, first, _)) = out.iter().find(|e| e.0 == name) {
            let message =
                format!("optimizer key '{name}' is given twice (as '{first}' and '{written}')");
            return Err(Error::config(name, message));
        }
        out.push((name, written.as_str(), value));
    }
    Ok(out)
}

fn unknown(written: &str) -> Error {
    let camel = written.chars().any(|c| c.is_ascii_uppercase());
    let near = nearest(&camel_to_snake(written), OPTIONS.iter().map(|(n, _)| *n));
    let message = match near {
        Some(n) if camel => format!(
            "unknown optimizer key '{written}'; did you mean '{}'?",
            snake_to_camel(n)
        ),
        Some(n) => format!("unknown optimizer key '{written}'; did you mean '{n}'?"),
        None => {
            let names: Vec<&str> = OPTIONS.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown optimizer key '{written}'; keys are {}",
                names.join(", ")
            )
        }
    };
    Error::config(written, message)
}

fn apply(c: &mut OptimizerConfig, name: &str, written: &str, v: &Value) -> Result<()> {
    match name {
        "lr" => c.lr = number(written, v)?,
        "beta1" => c.beta1 = number(written, v)?,
        "beta2" => c.beta2 = number(written, v)?,
        "eps" => c.eps = number(written, v)?,
        "weight_decay" => c.weight_decay = number(written, v)?,
        "momentum" => c.momentum = number(written, v)?,
        "dampening" => c.dampening = number(written, v)?,
        "nesterov" => {
            c.nesterov = v
                .as_bool()
                .ok_or_else(|| type_error(written, "a bool", v))?
        }
        "grad_clip" if v.is_null() => c.grad_clip = None,
        "grad_clip" => c.grad_clip = Some(number(written, v)?),
        "warmup" => c.warmup_steps = count(written, v)?,
        "total_steps" => c.total_steps = Some(count(written, v)?),
        "min_lr" => c.min_lr = number(written, v)?,
        "schedule" => {
            let s = choice(written, v, ScheduleKind::NAMES)?;
            c.schedule = ScheduleKind::parse(s).unwrap_or(ScheduleKind::Constant);
        }
        _ => {}
    }
    Ok(())
}

/// Options that mean nothing for this optimizer or schedule are errors, not ignored.
fn check_applies(c: &OptimizerConfig, name: &str, written: &str) -> Result<()> {
    let applies = OPTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(Applies::All, |o| o.1);
    let (ok, target) = match applies {
        Applies::All => (true, String::new()),
        Applies::Adam => (c.kind.is_adam(), format!("optimizer '{}'", c.kind)),
        Applies::Sgd => (
            c.kind == OptimizerKind::Sgd,
            format!("optimizer '{}'", c.kind),
        ),
        Applies::Cosine => (
            c.schedule == ScheduleKind::Cosine,
            format!("schedule '{}'", c.schedule.as_str()),
        ),
    };
    if ok {
        return Ok(());
    }
    Err(Error::config(
        written,
        format!("{written} does not apply to {target}"),
    ))
}

fn type_error(written: &str, expected: &str, v: &Value) -> Error {
    Error::config(written, format!("{written} must be {expected}, got {v}"))
}

fn number(written: &str, v: &Value) -> Result<f32> {
    v.as_f64()
        .map(|x| x as f32)
        .ok_or_else(|| type_error(written, "a number", v))
}

fn count(written: &str, v: &Value) -> Result<u64> {
    let integral = v
        .as_f64()
        .filter(|x| x.fract() == 0.0 && *x >= 0.0 && *x < 9.0e15);
    v.as_u64()
        .or(integral.map(|x| x as u64))
        .ok_or_else(|| type_error(written, "a non-negative integer", v))
}

fn choice<'a>(written: &str, v: &'a Value, allowed: &[&str]) -> Result<&'a str> {
    match v.as_str() {
        Some(s) if allowed.iter().any(|a| a.eq_ignore_ascii_case(s)) => Ok(s),
        _ => {
            let list: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
            Err(type_error(
                written,
                &format!("one of {}", list.join(", ")),
                v,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::LrSchedule;
    use serde_json::json;

    fn message(v: Value) -> String {
        match OptimizerConfig::from_json(&v) {
            Err(Error::Config { message, .. }) => message,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn parses_camel_and_snake_keys() {
        let c = OptimizerConfig::from_json(&json!({
            "kind": "AdamW", "lr": 3e-4, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6,
            "weightDecay": 0.1, "gradClip": 1.0, "warmup": 10, "schedule": "cosine",
            "totalSteps": 100, "minLr": 3e-5,
        }))
        .unwrap();
        let want = OptimizerConfig {
            beta1: 0.8,
            beta2: 0.95,
            eps: 1e-6,
            weight_decay: 0.1,
            grad_clip: Some(1.0),
            warmup_steps: 10,
            schedule: ScheduleKind::Cosine,
            total_steps: Some(100),
            min_lr: 3e-5,
            ..OptimizerConfig::adamw(3e-4)
        };
        assert_eq!(c, want);
        assert_eq!(
            c.lr_schedule().unwrap(),
            LrSchedule::WarmupCosine {
                lr: 3e-4,
                warmup_steps: 10,
                total_steps: 100,
                min_lr: 3e-5
            }
        );
        let sgd = json!({"kind": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": true,
                         "weight_decay": 5e-4, "grad_clip": null, "warmup_steps": 3.0});
        let c = OptimizerConfig::from_json(&sgd).unwrap();
        assert_eq!(
            (c.kind, c.momentum, c.nesterov, c.grad_clip),
            (OptimizerKind::Sgd, 0.9, true, None)
        );
        assert_eq!((c.weight_decay, c.warmup_steps), (5e-4, 3));
    }

    #[test]
    fn kind_defaults_to_adamw_with_torch_defaults() {
        assert_eq!(
            OptimizerConfig::from_json(&json!({})).unwrap(),
            OptimizerConfig::adamw(1e-3)
        );
        let c = OptimizerConfig::from_json(&json!({"kind": "adam", "lr": 2})).unwrap();
        assert_eq!(c, OptimizerConfig::adam(2.0));
    }

    #[test]
    fn unknown_keys_suggest_in_the_callers_case() {
        assert_eq!(
            message(json!({"weightDecy": 0.1})),
            "unknown optimizer key 'weightDecy'; did you mean 'weightDecay'?"
        );
        assert_eq!(
            message(json!({"weight_decy": 0.1})),
            "unknown optimizer key 'weight_decy'; did you mean 'weight_decay'?"
        );
        assert_eq!(
            message(json!({"betas": [0.9, 0.99]})),
            "unknown optimizer key 'betas'; did you mean 'beta1'?"
        );
        assert_eq!(
            message(json!({"learningRateSchedule": "x"})),
            "unknown optimizer key 'learningRateSchedule'; keys are kind, lr, beta1, beta2, eps, \
             weight_decay, momentum, dampening, nesterov, grad_clip, warmup, schedule, \
             total_steps, min_lr"
        );
    }

    #[test]
    fn type_and_choice_errors() {
        assert_eq!(
            message(json!({"lr": "fast"})),
            "lr must be a number, got \"fast\""
        );
        assert_eq!(
            message(json!({"kind": "sgd", "nesterov": 1})),
            "nesterov must be a bool, got 1"
        );
        assert_eq!(
            message(json!({"warmup": -5})),
            "warmup must be a non-negative integer, got -5"
        );
        assert_eq!(
            message(json!({"totalSteps": 1.5})),
            "totalSteps must be a non-negative integer, got 1.5"
        );
        assert_eq!(
            message(json!({"kind": "lamb"})),
            "kind must be one of 'sgd', 'adam', 'adamw', got \"lamb\""
        );
        assert_eq!(
            message(json!({"schedule": "linear"})),
            "schedule must be one of 'constant', 'cosine', got \"linear\""
        );
        assert_eq!(
            message(json!([1])),
            "optimizer options must be a JSON object, got [1]"
        );
    }

    #[test]
    fn options_that_do_not_apply_are_errors() {
        assert_eq!(
            message(json!({"kind": "sgd", "beta1": 0.9})),
            "beta1 does not apply to optimizer 'sgd'"
        );
        assert_eq!(
            message(json!({"kind": "adamw", "momentum": 0.9})),
            "momentum does not apply to optimizer 'adamw'"
        );
        assert_eq!(
            message(json!({"minLr": 0.0})),
            "minLr does not apply to schedule 'constant'"
        );
        assert_eq!(
            message(json!({"weightDecay": 0.1, "weight_decay": 0.2})),
            "optimizer key 'weight_decay' is given twice (as 'weightDecay' and 'weight_decay')"
        );
    }

    #[test]
    fn values_are_validated() {
        assert_eq!(
            message(json!({"lr": -1})),
            "lr must be a finite number >= 0, got -1"
        );
        assert_eq!(
            message(json!({"beta2": 1})),
            "beta2 must be in [0, 1), got 1"
        );
        assert_eq!(
            message(json!({"kind": "sgd", "nesterov": true})),
            "nesterov requires momentum > 0 and dampening 0, got momentum 0 and dampening 0"
        );
        assert_eq!(
            message(json!({"schedule": "cosine"})),
            "total_steps is required by schedule 'cosine' (the step the decay ends at)"
        );
    }
}
