//! GPU and CPU kinds as data: peak FLOP/s per dtype, memory capacity and bandwidth, the links
//! inside a node and between nodes, and the fraction of peak each op class reaches. The built-in
//! table is `hardware.json` (vendor datasheets); a user's JSON file of the same form overrides or
//! adds kinds field by field (`weft plan --hardware FILE`).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

const BUILT_IN: &str = include_str!("hardware.json");

/// Peak dense FLOP/s by the dtype matmuls run in.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeakFlops {
    pub fp32: f64,
    pub fp16: f64,
    /// 0 where the kind has no bf16 (V100).
    pub bf16: f64,
}

/// One link class: bandwidth one way per device (bytes/s) and per-message latency (s).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub bandwidth: f64,
    pub latency: f64,
}

/// Fractions of peak reached: matmul-class ops of FLOP/s, memory-bound ops of memory bandwidth,
/// collectives of link bandwidth.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Efficiency {
    pub matmul: f64,
    pub memory: f64,
    pub network: f64,
}

/// One device kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hardware {
    #[serde(skip_deserializing)]
    pub name: String,
    pub description: String,
    pub peak_flops: PeakFlops,
    pub memory_bytes: f64,
    pub memory_bandwidth: f64,
    pub intra_node: Link,
    pub inter_node: Link,
    /// The table's default unless the kind sets its own.
    pub efficiency: Efficiency,
}

/// The computation dtype of a run's matmuls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Fp16,
    Bf16,
}

impl Precision {
    /// `amp.dtype` spelling; '' / 'fp32' is full precision.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "" | "fp32" | "f32" => Ok(Precision::Fp32),
            "fp16" | "f16" => Ok(Precision::Fp16),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(Error::config(
                "amp.dtype",
                format!("precision '{text}' is not one of 'fp32', 'fp16', 'bf16'"),
            )),
        }
    }

    /// Bytes of one activation element.
    pub fn bytes(self) -> f64 {
        match self {
            Precision::Fp32 => 4.0,
            _ => 2.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
        }
    }
}

impl Hardware {
    /// Peak FLOP/s in `p`; an error on a kind without it.
    pub fn peak(&self, p: Precision) -> Result<f64> {
        let v = match p {
            Precision::Fp32 => self.peak_flops.fp32,
            Precision::Fp16 => self.peak_flops.fp16,
            Precision::Bf16 => self.peak_flops.bf16,
        };
        if v > 0.0 {
            return Ok(v);
        }
        Err(Error::config(
            "amp.dtype",
            format!(
                "{} has no {} matmul peak; use fp16 or fp32",
                self.name,
                p.as_str()
            ),
        ))
    }
}

/// The kinds a plan can name.
#[derive(Clone, Debug, PartialEq)]
pub struct HardwareTable {
    kinds: BTreeMap<String, Hardware>,
}

impl HardwareTable {
    /// The built-in table.
    pub fn built_in() -> Result<Self> {
        Self::from_value(parse(BUILT_IN, "the built-in hardware table")?)
    }

    /// The built-in table with a user's JSON merged over it: each field given replaces the
    /// built-in one; a new name adds a kind (then every field is required).
    pub fn with_overrides(json: &str, source: &str) -> Result<Self> {
        let mut base = parse(BUILT_IN, "the built-in hardware table")?;
        merge(&mut base, parse(json, source)?);
        Self::from_value(base).map_err(|e| Error::config("hardware", format!("{source}: {e}")))
    }

    fn from_value(mut v: Value) -> Result<Self> {
        let obj = v
            .as_object_mut()
            .ok_or_else(|| Error::config("hardware", "the hardware table must be an object"))?;
        let default_eff = obj.remove("efficiency").unwrap_or(Value::Null);
        let mut kinds = BTreeMap::new();
        for (name, mut entry) in std::mem::take(obj) {
            if name.starts_with('_') {
                continue;
            }
            if let Some(e) = entry.as_object_mut() {
                let mut eff = default_eff.clone();
                merge(&mut eff, e.remove("efficiency").unwrap_or(Value::Null));
                e.insert("efficiency".into(), eff);
                e.remove("_comment");
            }
            let mut hw: Hardware = serde_json::from_value(entry)
                .map_err(|e| Error::config("hardware", format!("kind '{name}': {e}")))?;
            hw.name = name.clone();
            kinds.insert(name, hw);
        }
        Ok(HardwareTable { kinds })
    }

    /// The kind named `name`, or an error listing the known kinds.
    pub fn get(&self, name: &str) -> Result<&Hardware> {
        self.kinds.get(&name.to_ascii_lowercase()).ok_or_else(|| {
            let known: Vec<&str> = self.kinds.keys().map(String::as_str).collect();
            Error::config(
                "cluster",
                format!(
                    "unknown hardware kind '{name}'; known kinds: {}",
                    known.join(", ")
                ),
            )
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }
}

fn parse(text: &str, source: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::config("hardware", format!("{source} is not valid JSON: {e}")))
}

/// Objects merge key by key; anything else replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, Value::Null) if !b.is_null() => {}
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_kinds_load_with_the_default_efficiency() {
        let t = HardwareTable::built_in().unwrap();
        let names: Vec<&str> = t.names().collect();
        assert_eq!(
            names,
            ["a100-40g", "a100-80g", "cpu", "h100", "h200", "v100"]
        );
        let a = t.get("A100-80G").unwrap();
        assert_eq!(a.name, "a100-80g");
        assert_eq!(a.peak(Precision::Bf16).unwrap(), 312e12);
        assert_eq!(a.memory_bytes, 80.0 * (1u64 << 30) as f64);
        assert_eq!(a.efficiency, t.get("h100").unwrap().efficiency);
        let v = t.get("v100").unwrap().peak(Precision::Bf16).unwrap_err();
        assert_eq!(
            v.to_string(),
            "v100 has no bf16 matmul peak; use fp16 or fp32"
        );
        let e = t.get("tpu").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown hardware kind 'tpu'; known kinds: a100-40g, a100-80g, cpu, h100, h200, v100"
        );
    }

    #[test]
    fn overrides_replace_fields_and_add_kinds() {
        let json = r#"{"h100": {"inter_node": {"bandwidth": 100e9}},
                       "efficiency": {"matmul": 0.5}}"#;
        let t = HardwareTable::with_overrides(json, "my.json").unwrap();
        let h = t.get("h100").unwrap();
        assert_eq!(h.inter_node.bandwidth, 100e9);
        assert_eq!(h.inter_node.latency, 10e-6);
        assert_eq!(h.efficiency.matmul, 0.5);
        let bad = HardwareTable::with_overrides(r#"{"mi300": {"memory_bytes": 1}}"#, "my.json");
        let msg = bad.unwrap_err().to_string();
        assert!(
            msg.starts_with("my.json: kind 'mi300': missing field"),
            "{msg}"
        );
        let msg = HardwareTable::with_overrides("{", "my.json")
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("my.json is not valid JSON"), "{msg}");
    }
}
