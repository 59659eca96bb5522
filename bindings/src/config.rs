//! Config: validate explicit values plus `WEFT_<SECTION>_<KEY>` environment variables through
//! the core's key table, and list the keys (for the TS types, the CLI and the docs).

use crate::convert::parse_json;
use crate::error::{self as js, guard};
use serde_json::{Value, json};
use std::collections::HashMap;
use weft_core::config::{Config, Origin, flatten_json, key_table};

/// One config key as the TS side sees it.
#[napi(object)]
pub struct ConfigKey {
    /// Dotted snake_case, e.g. `pipeline.num_micro_batch`.
    pub key: String,
    pub section: String,
    pub attribute: String,
    /// `bool`, `int`, `string`, or `'dynamic' or number`.
    pub value_type: String,
    /// Allowed values of a closed string key (empty: any value of the type).
    pub allowed: Vec<String>,
    pub min: Option<i64>,
    /// The default as JSON text.
    pub default_json: String,
    /// The environment variable that sets it.
    pub env: String,
    pub doc: String,
    /// Why a non-default value cannot run in this build; absent when supported.
    pub unsupported: Option<String>,
    /// `epl` or `weft`.
    pub origin: String,
}

/// Every key of the table, in table order.
#[napi]
pub fn config_keys() -> js::Result<Vec<ConfigKey>> {
    guard(|| {
        Ok(key_table()
            .iter()
            .map(|s| ConfigKey {
                key: s.key.into(),
                section: s.section.into(),
                attribute: s.attribute.into(),
                value_type: s.ty.name().into(),
                allowed: s.allowed.iter().map(|a| a.to_string()).collect(),
                min: s.min,
                default_json: s.default_value().to_json().to_string(),
                env: s.env_var(),
                doc: s.doc.into(),
                unsupported: s.unsupported.map(str::to_string),
                origin: match s.origin {
                    Origin::Epl => "epl",
                    Origin::Weft => "weft",
                }
                .into(),
            })
            .collect())
    })
}

/// Validate `explicitJson` (flat dotted or nested, snake or camel case) over the environment
/// variables in `env` (explicit values win). Resolves to JSON text
/// `{"values": {every key: value}, "changed": {key: value differing from the default}}`.
#[napi]
pub fn resolve_config(explicit_json: String, env: HashMap<String, String>) -> js::Result<String> {
    guard(|| {
        let explicit = flatten_json(&parse_json("config", &explicit_json)?)?;
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort();
        let config = Config::from_sources(&explicit, &env)?;
        let changed: serde_json::Map<String, Value> = config
            .diff_from_default()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_json()))
            .collect();
        Ok(json!({"values": config.to_json(), "changed": changed}).to_string())
    })
}

/// One key's value parsed from `text` by the key's type (`--set key=value`), as JSON text.
#[napi]
pub fn config_value_from_text(key: String, text: String) -> js::Result<String> {
    guard(|| Ok(weft_core::config::value_from_text(&key, &text)?.to_string()))
}

/// The markdown table of every key (for the README and `weft help config`).
#[napi]
pub fn config_docs() -> js::Result<String> {
    guard(|| Ok(weft_core::config::docs_markdown()))
}
