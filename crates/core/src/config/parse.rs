//! Reading config values: from JSON (explicit values, flat or nested, snake or camel case) and
//! from environment variables (`env.rs`), each checked against its key's spec.

use serde_json::Value;

use super::env::config_vars;
use super::suggest::camel_to_snake;
use super::table::{Config, KeySpec, lookup, sections, spec_or_err};
use super::value::{ConfigValue, ValueType};
use crate::error::{Error, Result};

impl KeySpec {
    /// Check a JSON value against this key's type and constraints; returns the canonical value.
    pub(crate) fn parse_json(&self, value: &Value) -> Result<ConfigValue> {
        let parsed = match (self.ty, value) {
            (ValueType::Bool, Value::Bool(b)) => Some(ConfigValue::Bool(*b)),
            (ValueType::Int, Value::Number(n)) => json_int(n).map(ConfigValue::Int),
            (ValueType::Str, Value::String(s)) => Some(ConfigValue::Str(s.clone())),
            (ValueType::LossScale, Value::String(s)) => loss_scale_text(s),
            (ValueType::LossScale, Value::Number(n)) => n.as_f64().map(ConfigValue::Float),
            (ValueType::List, Value::Array(items)) => Some(ConfigValue::List(items.clone())),
            _ => None,
        };
        match parsed {
            Some(v) => self.validate(v, value),
            None => Err(self.type_error(value)),
        }
    }

    /// Parse text (an environment variable, `--set key=value`) by this key's type: bools are
    /// `true`/`false` in any case, ints are decimal, strings are taken as written.
    pub(crate) fn parse_text(&self, text: &str) -> Result<ConfigValue> {
        let trimmed = text.trim();
        let parsed = match self.ty {
            ValueType::Bool if trimmed.eq_ignore_ascii_case("true") => {
                Some(ConfigValue::Bool(true))
            }
            ValueType::Bool if trimmed.eq_ignore_ascii_case("false") => {
                Some(ConfigValue::Bool(false))
            }
            ValueType::Bool => None,
            ValueType::Int => trimmed.parse().ok().map(ConfigValue::Int),
            ValueType::Str => Some(ConfigValue::Str(text.to_string())),
            ValueType::LossScale => loss_scale_text(trimmed),
            ValueType::List => match serde_json::from_str(trimmed) {
                Ok(Value::Array(items)) => Some(ConfigValue::List(items)),
                _ => None,
            },
        };
        let received = Value::String(text.to_string());
        match parsed {
            Some(v) => self.validate(v, &received),
            None => Err(self.type_error(&received)),
        }
    }

    /// Range and allowed-value checks; strings come back canonical (the allowed spelling, or
    /// lower-cased as EPL does for free strings).
    fn validate(&self, value: ConfigValue, received: &Value) -> Result<ConfigValue> {
        match value {
            ConfigValue::Int(i) if self.min.is_some_and(|m| i < m) => {
                let min = self.min.unwrap_or_default();
                Err(self.error(format!("must be >= {min}, got {i}")))
            }
            ConfigValue::Float(x) if !(x.is_finite() && x > 0.0) => Err(self.type_error(received)),
            ConfigValue::Str(s) if self.ty == ValueType::Str => self.canonical_string(&s, received),
            other => Ok(other),
        }
    }

    fn canonical_string(&self, s: &str, received: &Value) -> Result<ConfigValue> {
        if self.allowed.is_empty() {
            return Ok(ConfigValue::Str(s.to_lowercase()));
        }
        match self.allowed.iter().find(|a| a.eq_ignore_ascii_case(s)) {
            Some(a) => Ok(ConfigValue::Str(a.to_string())),
            None => {
                let allowed: Vec<String> = self.allowed.iter().map(|a| format!("'{a}'")).collect();
                Err(self.error(format!(
                    "must be one of {} (case-insensitive), got {received}",
                    allowed.join(", ")
                )))
            }
        }
    }

    fn type_error(&self, received: &Value) -> Error {
        self.error(format!("must be {}, got {received}", self.ty.expectation()))
    }

    fn error(&self, what: String) -> Error {
        Error::config(self.key, format!("{} {what}", self.key))
    }
}

/// An integral JSON number (`4` or `4.0`), else None.
fn json_int(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let x = n.as_f64()?;
    let in_range = x.fract() == 0.0 && x.abs() < 9.0e15;
    in_range.then_some(x as i64)
}

/// `amp.loss_scale` text: "dynamic" in any case, or a number.
fn loss_scale_text(text: &str) -> Option<ConfigValue> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("dynamic") {
        return Some(ConfigValue::Str("dynamic".into()));
    }
    text.parse::<f64>().ok().map(ConfigValue::Float)
}

/// `pipeline.numMicroBatch` → `pipeline.num_micro_batch`.
fn normalize_key(key: &str) -> String {
    key.split('.')
        .map(camel_to_snake)
        .collect::<Vec<_>>()
        .join(".")
}

fn spec_for(key: &str) -> Result<&'static KeySpec> {
    match lookup(&normalize_key(key)) {
        Some(spec) => Ok(spec),
        None => spec_or_err(key),
    }
}

impl Config {
    /// One key's current value. Keys are dotted, snake or camel case.
    pub fn get(&self, key: &str) -> Result<ConfigValue> {
        Ok(spec_for(key)?.get(self))
    }

    /// Set one key from a JSON value, checked against the key's type and constraints.
    pub fn set(&mut self, key: &str, value: &Value) -> Result<()> {
        let spec = spec_for(key)?;
        let value = spec.parse_json(value)?;
        spec.set(self, &value)
    }

    /// Set one key from text, parsed by the key's type (as an environment variable is).
    pub fn set_text(&mut self, key: &str, text: &str) -> Result<()> {
        let spec = spec_for(key)?;
        let value = spec.parse_text(text)?;
        spec.set(self, &value)
    }

    /// Defaults, then the environment (`WEFT_<SECTION>_<KEY>`, or EPL's `EPL_<SECTION>_<KEY>`
    /// where no WEFT name is set; see `env.rs`), then the explicit values (which win; a later
    /// explicit value for the same key wins over an earlier one).
    pub fn from_sources(explicit: &[(String, Value)], env: &[(String, String)]) -> Result<Config> {
        let mut config = Config::default();
        for (spec, text, read) in config_vars(env)? {
            let value = spec
                .parse_text(&text)
                .map_err(|e| from_env(e, &read.variable))?;
            spec.set(&mut config, &value)?;
            config.env_reads.push(read);
        }
        for (key, value) in explicit {
            config.set(key, value)?;
        }
        Ok(config)
    }

    /// Explicit values from one JSON object: flat (`{"pipeline.num_micro_batch": 4}`), nested
    /// (`{"pipeline": {"num_micro_batch": 4}}`) or nested camelCase (`{"pipeline":
    /// {"numMicroBatch": 4}}`), or a mix.
    pub fn from_json_object(object: &Value) -> Result<Config> {
        Config::from_sources(&flatten_json(object)?, &[])
    }
}

/// One key's value parsed from text by the key's type (as an environment variable is), as
/// JSON: what `weft plan --set key=value` passes on, so `"1"` stays a string for a string key.
pub fn value_from_text(key: &str, text: &str) -> Result<Value> {
    Ok(spec_for(key)?.parse_text(text)?.to_json())
}

/// The (key, value) pairs of a flat or nested config object, keys as written, joined by '.'.
/// A key given twice (e.g. once camel, once snake case) is an error.
pub fn flatten_json(object: &Value) -> Result<Vec<(String, Value)>> {
    let Value::Object(map) = object else {
        return Err(Error::config(
            "",
            format!("config must be a JSON object, got {object}"),
        ));
    };
    let mut pairs: Vec<(String, Value)> = Vec::new();
    for (name, value) in map {
        match value {
            Value::Object(inner) if !name.contains('.') => {
                for (attribute, v) in inner {
                    pairs.push((format!("{name}.{attribute}"), v.clone()));
                }
            }
            _ if sections().contains(&camel_to_snake(name).as_str()) => {
                let message =
                    format!("config section '{name}' must be an object of its keys, got {value}");
                return Err(Error::config(name.as_str(), message));
            }
            _ => pairs.push((name.clone(), value.clone())),
        }
    }
    check_no_duplicates(&pairs)?;
    Ok(pairs)
}

fn check_no_duplicates(pairs: &[(String, Value)]) -> Result<()> {
    for (i, (a, _)) in pairs.iter().enumerate() {
        let norm = normalize_key(a);
        if let Some((b, _)) = pairs[..i].iter().find(|(b, _)| normalize_key(b) == norm) {
            let message = format!("config key '{norm}' is given twice (as '{b}' and '{a}')");
            return Err(Error::config(norm, message));
        }
    }
    Ok(())
}

fn from_env(err: Error, name: &str) -> Error {
    match err {
        Error::Config { key, message } => Error::Config {
            key,
            message: format!("{message} (from environment variable {name})"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::value::{AmpLevel, LossScale, PipelineStrategy, ReduceMethod, ZeroLevel};
    use serde_json::json;

    fn message(err: Error) -> String {
        match err {
            Error::Config { message, .. } => message,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn explicit(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn env_is_parsed_by_type_and_explicit_wins() {
        let vars = env(&[
            ("WEFT_PIPELINE_NUM_MICRO_BATCH", "4"),
            ("WEFT_COMMUNICATION_FP16", "TRUE"),
            ("WEFT_PIPELINE_STRATEGY", "preferforward"),
            ("WEFT_ZERO_LEVEL", "V1"),
            ("WEFT_CLUSTER_RUN_VISIBLE_DEVICES", "0,1"),
            ("WEFT_AMP_LOSS_SCALE", "1024"),
            ("PATH", "/usr/bin"),
            ("WEFT_STORE_TOKEN", "not config"),
        ]);
        let c = Config::from_sources(&[], &vars).unwrap();
        assert_eq!(c.pipeline.num_micro_batch, 4);
        assert!(c.communication.fp16);
        assert_eq!(c.pipeline.strategy, PipelineStrategy::PreferForward);
        assert_eq!(c.zero.level, ZeroLevel::V1);
        assert_eq!(c.cluster.run_visible_devices, "0,1");
        assert_eq!(c.amp.loss_scale, LossScale::Fixed(1024.0));
        let c = Config::from_sources(&explicit(&[("pipeline.num_micro_batch", json!(8))]), &vars)
            .unwrap();
        assert_eq!(c.pipeline.num_micro_batch, 8);
        assert!(c.communication.fp16);
    }

    #[test]
    fn env_errors_name_the_variable() {
        let err = Config::from_sources(&[], &env(&[("WEFT_COMMUNICATION_FP16", "yes")]));
        assert_eq!(
            message(err.unwrap_err()),
            "communication.fp16 must be a bool (true or false), got \"yes\" \
             (from environment variable WEFT_COMMUNICATION_FP16)"
        );
        let err = Config::from_sources(&[], &env(&[("WEFT_PIPELINE_NUM_MICRO_BATCHES", "4")]));
        assert_eq!(
            message(err.unwrap_err()),
            "unknown environment variable 'WEFT_PIPELINE_NUM_MICRO_BATCHES'; \
             did you mean 'WEFT_PIPELINE_NUM_MICRO_BATCH'?"
        );
    }

    #[test]
    fn later_explicit_value_wins() {
        let pairs = explicit(&[("zero.level", json!("v0")), ("zero.level", json!("v1"))]);
        assert_eq!(
            Config::from_sources(&pairs, &[]).unwrap().zero.level,
            ZeroLevel::V1
        );
    }

    #[test]
    fn json_object_flat_nested_and_camel() {
        let flat = Config::from_json_object(&json!({"pipeline.num_micro_batch": 4})).unwrap();
        let nested =
            Config::from_json_object(&json!({"pipeline": {"num_micro_batch": 4}})).unwrap();
        let camel = Config::from_json_object(&json!({"pipeline": {"numMicroBatch": 4}})).unwrap();
        assert_eq!(flat.pipeline.num_micro_batch, 4);
        assert_eq!(flat, nested);
        assert_eq!(flat, camel);
        let mixed = json!({
            "gradientCheckpoint": {"endTaskgraph": 2},
            "amp.level": "O1",
            "communication": {"gradientsReduceMethod": "SUM", "fp16Scale": 64},
        });
        let c = Config::from_json_object(&mixed).unwrap();
        assert_eq!(c.gradient_checkpoint.end_taskgraph, 2);
        assert_eq!(c.amp.level, AmpLevel::O1);
        assert_eq!(c.communication.gradients_reduce_method, ReduceMethod::Sum);
        assert_eq!(c.communication.fp16_scale, 64);
    }

    #[test]
    fn json_object_errors() {
        let err = Config::from_json_object(&json!([1])).unwrap_err();
        assert_eq!(message(err), "config must be a JSON object, got [1]");
        let err = Config::from_json_object(&json!({"zero": "v1"})).unwrap_err();
        assert_eq!(
            message(err),
            "config section 'zero' must be an object of its keys, got \"v1\""
        );
        let err = Config::from_json_object(&json!({"loss_scale": 128})).unwrap_err();
        assert_eq!(
            message(err),
            "unknown config key 'loss_scale'; did you mean 'amp.loss_scale'?"
        );
        let err = Config::from_json_object(&json!({"pipline": {"numMicroBatch": 4}})).unwrap_err();
        assert_eq!(
            message(err),
            "unknown config key 'pipline.numMicroBatch'; did you mean 'pipeline.num_micro_batch'?"
        );
        let twice = json!({"pipeline": {"numMicroBatch": 4}, "pipeline.num_micro_batch": 2});
        let err = Config::from_json_object(&twice).unwrap_err();
        assert_eq!(
            message(err),
            "config key 'pipeline.num_micro_batch' is given twice \
             (as 'pipeline.numMicroBatch' and 'pipeline.num_micro_batch')"
        );
    }

    #[test]
    fn unknown_key_error_is_exact() {
        let mut c = Config::default();
        let err = c.set("pipline.num_micro_batch", &json!(4)).unwrap_err();
        assert_eq!(
            err,
            Error::Config {
                key: "pipline.num_micro_batch".into(),
                message: "unknown config key 'pipline.num_micro_batch'; \
                          did you mean 'pipeline.num_micro_batch'?"
                    .into(),
            }
        );
    }

    #[test]
    fn type_errors_name_key_type_and_value() {
        let mut c = Config::default();
        let cases = [
            (
                "pipeline.num_micro_batch",
                json!("4"),
                "must be an int, got \"4\"",
            ),
            (
                "pipeline.num_micro_batch",
                json!(2.5),
                "must be an int, got 2.5",
            ),
            (
                "io.slicing",
                json!(1),
                "must be a bool (true or false), got 1",
            ),
            (
                "cluster.run_visible_devices",
                json!([0, 1]),
                "must be a string, got [0,1]",
            ),
            (
                "amp.loss_scale",
                json!(true),
                "must be 'dynamic' or a positive number, got true",
            ),
            (
                "amp.loss_scale",
                json!(-1),
                "must be 'dynamic' or a positive number, got -1",
            ),
            (
                "amp.loss_scale",
                json!("huge"),
                "must be 'dynamic' or a positive number, got \"huge\"",
            ),
            (
                "amp.loss_scale",
                json!(0.0),
                "must be 'dynamic' or a positive number, got 0.0",
            ),
        ];
        for (key, value, what) in cases {
            let err = c.set(key, &value).unwrap_err();
            assert_eq!(err.code(), "WEFT_CONFIG");
            assert_eq!(message(err), format!("{key} {what}"));
        }
        assert_eq!(
            c,
            Config::default(),
            "failed sets must not change the config"
        );
    }

    #[test]
    fn enum_and_range_errors() {
        let mut c = Config::default();
        let err = c
            .set("communication.gradients_reduce_method", &json!("max"))
            .unwrap_err();
        assert_eq!(
            message(err),
            "communication.gradients_reduce_method must be one of 'mean', 'sum' \
             (case-insensitive), got \"max\""
        );
        let err = c.set("pipeline.strategy", &json!("gpipe")).unwrap_err();
        assert_eq!(
            message(err),
            "pipeline.strategy must be one of 'PreferForward', 'PreferBackward', \
             'PreferBackwardOptimizer' (case-insensitive), got \"gpipe\""
        );
        let err = c.set("zero.level", &json!("v3")).unwrap_err();
        assert_eq!(
            message(err),
            "zero.level must be one of '', 'v0', 'v1', 'v2' (case-insensitive), got \"v3\""
        );
        let err = c.set("pipeline.num_micro_batch", &json!(-2)).unwrap_err();
        assert_eq!(
            message(err),
            "pipeline.num_micro_batch must be >= 1, got -2"
        );
        let err = c.set_text("communication.max_splits", "0").unwrap_err();
        assert_eq!(message(err), "communication.max_splits must be >= 1, got 0");
        let err = c.set("pipeline.num_stages", &json!(-2)).unwrap_err();
        assert_eq!(message(err), "pipeline.num_stages must be >= -1, got -2");
    }

    #[test]
    fn accepted_forms() {
        let mut c = Config::default();
        c.set("pipeline.num_micro_batch", &json!(4.0)).unwrap();
        assert_eq!(c.pipeline.num_micro_batch, 4);
        c.set("pipeline.strategy", &json!("preferbackwardoptimizer"))
            .unwrap();
        assert_eq!(
            c.get("pipeline.strategy").unwrap().to_string(),
            "PreferBackwardOptimizer"
        );
        c.set("amp.loss_scale", &json!("DYNAMIC")).unwrap();
        assert_eq!(c.amp.loss_scale, LossScale::Dynamic);
        c.set("amp.loss_scale", &json!("256")).unwrap();
        assert_eq!(c.amp.loss_scale, LossScale::Fixed(256.0));
        c.set("amp.lossScale", &json!(0.5)).unwrap();
        assert_eq!(c.amp.loss_scale, LossScale::Fixed(0.5));
        c.set("cluster.run_visible_devices", &json!("GPU:0"))
            .unwrap();
        assert_eq!(
            c.cluster.run_visible_devices, "gpu:0",
            "EPL lower-cases strings"
        );
        c.set_text("pipeline.num_stages", " -1 ").unwrap();
        assert_eq!(c.pipeline.num_stages, -1);
        c.set_text("auto.auto_parallel", "False").unwrap();
        assert!(!c.auto.auto_parallel);
        c.set_text("gradient_checkpoint.type", "Collection")
            .unwrap();
        assert_eq!(
            c.get("gradient_checkpoint.type").unwrap(),
            ConfigValue::Str("collection".into())
        );
    }
}
