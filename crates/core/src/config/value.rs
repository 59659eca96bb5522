//! Config values: the untyped `ConfigValue` every key reads and writes through, the value types
//! of the key table, and the typed field types (`LossScale` and the string enums) of `Config`.

use std::fmt;

use crate::error::{Error, Result};

/// The type of a config key, as listed in the key table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Bool,
    Int,
    /// A string; when the key lists allowed values, one of them (matched case-insensitively).
    Str,
    /// `"dynamic"` or a positive number (`amp.loss_scale`).
    LossScale,
    /// A JSON list (`cluster.specific`'s device slices); text is parsed as JSON.
    List,
}

impl ValueType {
    /// Short name used in docs and in the TS key listing.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Bool => "bool",
            ValueType::Int => "int",
            ValueType::Str => "string",
            ValueType::LossScale => "'dynamic' or number",
            ValueType::List => "list",
        }
    }

    /// The phrase used in "must be ..." error messages.
    pub(crate) fn expectation(self) -> &'static str {
        match self {
            ValueType::Bool => "a bool (true or false)",
            ValueType::Int => "an int",
            ValueType::Str => "a string",
            ValueType::LossScale => "'dynamic' or a positive number",
            ValueType::List => "a list",
        }
    }
}

/// One key's value, untyped: what the key table reads from and writes into `Config`.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A JSON list, kept as written.
    List(Vec<serde_json::Value>),
}

impl ConfigValue {
    /// The value as `key=value` text shows it in error messages: strings in single quotes.
    pub fn quoted(&self) -> String {
        match self {
            ConfigValue::Str(s) => format!("'{s}'"),
            other => other.to_string(),
        }
    }

    /// The value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ConfigValue::Bool(b) => serde_json::Value::Bool(*b),
            ConfigValue::Int(i) => serde_json::Value::from(*i),
            ConfigValue::Float(f) => serde_json::Value::from(*f),
            ConfigValue::Str(s) => serde_json::Value::String(s.clone()),
            ConfigValue::List(items) => serde_json::Value::Array(items.clone()),
        }
    }
}

/// Raw text: `true`, `4`, `128`, `PreferBackward`, or nothing for an empty string; the form
/// `Config`'s Display prints and `set_text` reads back.
impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigValue::Bool(b) => write!(f, "{b}"),
            ConfigValue::Int(i) => write!(f, "{i}"),
            ConfigValue::Float(x) => write!(f, "{x}"),
            ConfigValue::Str(s) => f.write_str(s),
            ConfigValue::List(items) => write!(f, "{}", serde_json::Value::Array(items.clone())),
        }
    }
}

/// A Rust type that can hold one config key. The key table reads the value type and the
/// allowed values from here; conversions see only values the table already validated.
pub(crate) trait Field: Sized {
    const TYPE: ValueType;
    const ALLOWED: &'static [&'static str] = &[];
    fn to_value(&self) -> ConfigValue;
    fn from_value(key: &str, value: &ConfigValue) -> Result<Self>;
}

/// A value reached a typed field in a form validation should have rejected: a weft bug.
fn mismatch(key: &str, value: &ConfigValue) -> Error {
    Error::internal(format!(
        "config key '{key}' got unvalidated value {value:?}"
    ))
}

impl Field for bool {
    const TYPE: ValueType = ValueType::Bool;
    fn to_value(&self) -> ConfigValue {
        ConfigValue::Bool(*self)
    }
    fn from_value(key: &str, value: &ConfigValue) -> Result<Self> {
        match value {
            ConfigValue::Bool(b) => Ok(*b),
            other => Err(mismatch(key, other)),
        }
    }
}

impl Field for i64 {
    const TYPE: ValueType = ValueType::Int;
    fn to_value(&self) -> ConfigValue {
        ConfigValue::Int(*self)
    }
    fn from_value(key: &str, value: &ConfigValue) -> Result<Self> {
        match value {
            ConfigValue::Int(i) => Ok(*i),
            other => Err(mismatch(key, other)),
        }
    }
}

impl Field for usize {
    const TYPE: ValueType = ValueType::Int;
    fn to_value(&self) -> ConfigValue {
        ConfigValue::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
    fn from_value(key: &str, value: &ConfigValue) -> Result<Self> {
        match value {
            ConfigValue::Int(i) => usize::try_from(*i).map_err(|_| mismatch(key, value)),
            other => Err(mismatch(key, other)),
        }
    }
}

impl Field for String {
    const TYPE: ValueType = ValueType::Str;
    fn to_value(&self) -> ConfigValue {
        ConfigValue::Str(self.clone())
    }
    fn from_value(key: &str, value: &ConfigValue) -> Result<Self> {
        match value {
            ConfigValue::Str(s) => Ok(s.clone()),
            other => Err(mismatch(key, other)),
        }
    }
}

/// A list key's value: empty when not given.
impl Field for Vec<serde_json::Value> {
    const TYPE: ValueType = ValueType::List;
    fn to_value(&self) -> ConfigValue {
        ConfigValue::List(self.clone())
    }
    fn from_value(key: &str, value: &ConfigValue) -> Result<Self> {
        match value {
            ConfigValue::List(items) => Ok(items.clone()),
            other => Err(mismatch(key, other)),
        }
    }
}

/// `amp.loss_scale`: dynamic loss scaling, or a fixed positive factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossScale {
    /// Start at 2^15, double after 2000 finite steps, halve (floor 1) and skip on overflow.
    Dynamic,
    Fixed(f64),
}

impl Field for LossScale {
    const TYPE: ValueType = ValueType::LossScale;
    fn to_value(&self) -> ConfigValue {
        match self {
            LossScale::Dynamic => ConfigValue::Str("dynamic".into()),
            LossScale::Fixed(x) => ConfigValue::Float(*x),
        }
    }
    fn from_value(key: &str, value: &ConfigValue) -> Result<Self> {
        match value {
            ConfigValue::Str(s) if s == "dynamic" => Ok(LossScale::Dynamic),
            ConfigValue::Float(x) => Ok(LossScale::Fixed(*x)),
            other => Err(mismatch(key, other)),
        }
    }
}

/// A closed set of string values, matched case-insensitively and printed canonically.
macro_rules! config_enum {
    (
        $(#[doc = $doc:literal])*
        $name:ident { $($(#[doc = $vdoc:literal])* $variant:ident = $text:literal,)+ }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[doc = $vdoc])* $variant,)+ }

        impl $name {
            /// Every value's canonical text, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// Case-insensitive parse.
            pub fn parse(text: &str) -> Option<Self> {
                $(if text.eq_ignore_ascii_case($text) { return Some($name::$variant); })+
                None
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Field for $name {
            const TYPE: ValueType = ValueType::Str;
            const ALLOWED: &'static [&'static str] = $name::NAMES;
            fn to_value(&self) -> ConfigValue {
                ConfigValue::Str(self.as_str().to_string())
            }
            fn from_value(key: &str, value: &ConfigValue) -> Result<Self> {
                match value {
                    ConfigValue::Str(s) => $name::parse(s).ok_or_else(|| mismatch(key, value)),
                    other => Err(mismatch(key, other)),
                }
            }
        }
    };
}

config_enum! {
    /// `pipeline.strategy`: the order of forward and backward micro-batches.
    PipelineStrategy {
        /// GPipe: all forwards, then all backwards.
        PreferForward = "PreferForward",
        /// 1F1B (PipeDream-flush-like).
        PreferBackward = "PreferBackward",
        /// 1F1B with each stage's optimizer update issued as soon as its backwards finish.
        PreferBackwardOptimizer = "PreferBackwardOptimizer",
    }
}

config_enum! {
    /// `gradient_checkpoint.type`.
    GcType {
        Off = "",
        /// Checkpoint the tensors the user marked.
        Collection = "collection",
        /// Search for checkpoints automatically.
        Auto = "auto",
    }
}

config_enum! {
    /// `zero.level`.
    ZeroLevel {
        Off = "",
        /// Shard optimizer states.
        V0 = "v0",
        /// Shard optimizer states and gradients.
        V1 = "v1",
        /// Shard optimizer states, gradients and parameters.
        V2 = "v2",
    }
}

impl ZeroLevel {
    /// v1 and v2 reduce-scatter gradients and keep only their shard.
    pub fn shards_grads(self) -> bool {
        matches!(self, ZeroLevel::V1 | ZeroLevel::V2)
    }

    /// v2 keeps only a shard of each parameter between uses.
    pub fn shards_params(self) -> bool {
        self == ZeroLevel::V2
    }
}

config_enum! {
    /// `offload.level`.
    OffloadLevel {
        Off = "",
        /// Keep all variables on the host, stream them to the device.
        V0 = "v0",
    }
}

config_enum! {
    /// `amp.level`.
    AmpLevel {
        Off = "",
        /// EPL's memory-efficient automatic mixed precision.
        O1 = "o1",
    }
}

config_enum! {
    /// `amp.dtype`: the low-precision type AMP computes in.
    AmpDtype {
        /// Unset: fp16 when `amp.loss_scale` is a number (EPL's O1 with a fixed scale), else
        /// bf16 (`AmpConfig::low_dtype`).
        Auto = "",
        Bf16 = "bf16",
        Fp16 = "fp16",
    }
}

config_enum! {
    /// `cluster.layout`: how TaskGraphs are mapped onto devices.
    ClusterLayout {
        /// Every TaskGraph uses all devices.
        All = "all",
        /// Devices are split evenly between TaskGraphs.
        Auto = "auto",
        /// Placement given explicitly per TaskGraph (`cluster.specific`).
        Specific = "specific",
        /// Topology-aware slices of `cluster.aware_row` one-device workers.
        AwareRow = "aware_row",
    }
}

config_enum! {
    /// `auto.stage_policy`: how `auto.auto_parallel` cuts stages.
    StagePolicyChoice {
        /// EPL's rule: repeated blocks dealt out evenly when their count divides the stages,
        /// else the cost model.
        Epl = "epl",
        /// Always the cost model's min-max partition.
        CostModel = "cost_model",
    }
}

config_enum! {
    /// `communication.gradients_reduce_method`: how replicas and micro-batches combine gradients.
    ReduceMethod {
        Mean = "mean",
        Sum = "sum",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_parse_case_insensitively_and_print_canonically() {
        assert_eq!(
            PipelineStrategy::parse("preferforward"),
            Some(PipelineStrategy::PreferForward)
        );
        assert_eq!(
            PipelineStrategy::parse("PREFERBACKWARDOPTIMIZER").map(PipelineStrategy::as_str),
            Some("PreferBackwardOptimizer")
        );
        assert_eq!(PipelineStrategy::parse("gpipe"), None);
        assert_eq!(AmpLevel::parse("O1"), Some(AmpLevel::O1));
        assert_eq!(AmpLevel::O1.to_string(), "o1");
        assert_eq!(ZeroLevel::parse(""), Some(ZeroLevel::Off));
        assert_eq!(ReduceMethod::NAMES, &["mean", "sum"]);
    }

    #[test]
    fn values_print_raw_and_quoted() {
        assert_eq!(ConfigValue::Str("v1".into()).quoted(), "'v1'");
        assert_eq!(ConfigValue::Str(String::new()).to_string(), "");
        assert_eq!(ConfigValue::Float(128.0).to_string(), "128");
        assert_eq!(ConfigValue::Float(0.5).quoted(), "0.5");
        assert_eq!(ConfigValue::Bool(true).quoted(), "true");
        assert_eq!(ConfigValue::Int(-1).to_json(), serde_json::json!(-1));
    }

    #[test]
    fn fields_round_trip_and_reject_mismatches_as_internal() {
        let v = LossScale::Fixed(64.0).to_value();
        assert_eq!(
            LossScale::from_value("amp.loss_scale", &v),
            Ok(LossScale::Fixed(64.0))
        );
        assert_eq!(
            LossScale::Dynamic.to_value(),
            ConfigValue::Str("dynamic".into())
        );
        assert_eq!(usize::from_value("k", &ConfigValue::Int(3)), Ok(3));
        let err = usize::from_value("k", &ConfigValue::Int(-3)).unwrap_err();
        assert_eq!(err.code(), "WEFT_INTERNAL");
        let err = ZeroLevel::from_value("zero.level", &ConfigValue::Str("v9".into())).unwrap_err();
        assert_eq!(err.code(), "WEFT_INTERNAL");
        assert_eq!(<ZeroLevel as Field>::ALLOWED, &["", "v0", "v1", "v2"]);
        assert_eq!(<String as Field>::ALLOWED.len(), 0);
    }
}
