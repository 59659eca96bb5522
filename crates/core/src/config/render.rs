//! Writing a config out: stable `key=value` text, the difference from the defaults, JSON, and
//! the markdown table of every key for the README.

use std::fmt;

use super::table::{Config, KeySpec, Origin, key_table};
use super::value::{ConfigValue, ValueType};

impl Config {
    /// Every key with its value, sorted by key.
    pub fn to_pairs(&self) -> Vec<(&'static str, ConfigValue)> {
        let mut pairs: Vec<_> = key_table().iter().map(|s| (s.key, s.get(self))).collect();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        pairs
    }

    /// The keys whose value differs from the default, sorted by key.
    pub fn diff_from_default(&self) -> Vec<(&'static str, ConfigValue)> {
        let mut pairs: Vec<_> = key_table()
            .iter()
            .filter_map(|s| {
                let value = s.get(self);
                (value != s.default_value()).then_some((s.key, value))
            })
            .collect();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        pairs
    }

    /// A flat JSON object `{"section.attribute": value}` of every key.
    pub fn to_json(&self) -> serde_json::Value {
        let map = self
            .to_pairs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_json()))
            .collect();
        serde_json::Value::Object(map)
    }
}

/// One `key=value` line per key, sorted by key; values as `Config::set_text` reads them.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in self.to_pairs() {
            writeln!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

/// A markdown table of every key (key, type, default, meaning), in section order.
pub fn docs_markdown() -> String {
    let mut out = String::from(
        "Each key can also be set by the environment variable `WEFT_<SECTION>_<KEY>` (upper \
         case, e.g. `WEFT_PIPELINE_NUM_MICRO_BATCH=4`), or by EPL's `EPL_<SECTION>_<KEY>` \
         (the WEFT name wins when both are set); explicit values win over both. Any other \
         `WEFT_*` variable that weft does not read is an error naming the nearest one. Keys \
         marked (weft) are weft's additions to EPL's.\n\n\
         | Key | Type | Default | Meaning |\n|---|---|---|---|\n",
    );
    for spec in key_table() {
        let origin = if spec.origin == Origin::Weft {
            " (weft)"
        } else {
            ""
        };
        let row = format!(
            "| `{}`{origin} | {} | {} | {}{} |\n",
            spec.key,
            type_cell(spec),
            default_cell(&spec.default_value()),
            spec.doc.replace('|', "\\|"),
            support_note(spec),
        );
        out.push_str(&row);
    }
    out
}

fn type_cell(spec: &KeySpec) -> String {
    let mut cell = spec.ty.name().to_string();
    if !spec.allowed.is_empty() {
        let allowed: Vec<String> = spec.allowed.iter().map(|a| format!("`'{a}'`")).collect();
        cell = format!("one of {}", allowed.join(", "));
    } else if let (ValueType::Int, Some(min)) = (spec.ty, spec.min) {
        cell = format!("int >= {min}");
    }
    cell
}

fn default_cell(value: &ConfigValue) -> String {
    match value {
        ConfigValue::Str(s) if s.is_empty() => "`''`".to_string(),
        ConfigValue::Str(s) => format!("`'{s}'`"),
        other => format!("`{other}`"),
    }
}

fn support_note(spec: &KeySpec) -> &'static str {
    if spec.unsupported.is_some() {
        " *Not yet supported beyond the default.*"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn display_lists_every_key_sorted() {
        let text = Config::default().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), key_table().len());
        let mut sorted = lines.clone();
        sorted.sort_unstable();
        assert_eq!(lines, sorted);
        assert_eq!(lines[0], "amp.debug_log=false");
        assert!(lines.contains(&"amp.level="));
        assert!(lines.contains(&"amp.loss_scale=dynamic"));
        assert!(lines.contains(&"pipeline.strategy=PreferBackward"));
        assert!(lines.contains(&"pipeline.num_stages=-1"));
    }

    #[test]
    fn display_round_trips_through_set_text() {
        let mut c = Config::default();
        c.set("pipeline.strategy", &json!("preferforward")).unwrap();
        c.set("amp.loss_scale", &json!(512)).unwrap();
        c.set("cluster.run_visible_devices", &json!("0,1")).unwrap();
        c.set("communication.fp16", &json!(true)).unwrap();
        let mut back = Config::default();
        for line in c.to_string().lines() {
            let (key, value) = line.split_once('=').unwrap();
            back.set_text(key, value).unwrap();
        }
        assert_eq!(back, c);
    }

    #[test]
    fn diff_from_default_lists_only_changes() {
        assert!(Config::default().diff_from_default().is_empty());
        let c = Config::from_json_object(&json!({
            "zero": {"level": "v1"},
            "pipeline": {"numMicroBatch": 4, "strategy": "PreferBackward"},
        }))
        .unwrap();
        assert_eq!(
            c.diff_from_default(),
            [
                ("pipeline.num_micro_batch", ConfigValue::Int(4)),
                ("zero.level", ConfigValue::Str("v1".into())),
            ]
        );
    }

    #[test]
    fn to_json_is_flat_and_reads_back() {
        let mut c = Config::default();
        c.set("io.drop_last_files", &json!(true)).unwrap();
        let j = c.to_json();
        assert_eq!(j["io.drop_last_files"], json!(true));
        assert_eq!(j["communication.timeout_s"], json!(300));
        assert_eq!(Config::from_json_object(&j).unwrap(), c);
    }

    #[test]
    fn docs_table_has_a_row_per_key() {
        let md = docs_markdown();
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| `")).collect();
        assert_eq!(rows.len(), key_table().len());
        assert!(
            md.contains("| `pipeline.num_micro_batch` | int >= 1 | `1` | Micro-batches per step.")
        );
        assert!(md.contains("| `amp.dtype` (weft) | one of `''`, `'bf16'`, `'fp16'` | `''` |"));
        assert!(md.contains("| `zero.level` | one of `''`, `'v0'`, `'v1'`, `'v2'` | `''` |"));
        // io.slicing was the last refused key; its row no longer carries the refusal.
        let slicing = md
            .lines()
            .find(|l| l.starts_with("| `io.slicing`"))
            .unwrap();
        assert!(!slicing.contains("Not yet supported"), "{slicing}");
        for row in rows {
            assert_eq!(
                row.matches(" | ").count(),
                3,
                "a '|' in a cell must be escaped: {row}"
            );
        }
    }
}
