//! How TaskGraphs are mapped onto devices: EPL's layouts `all`, `auto`, `specific` and
//! `aware_row`, read from the config or from EPL's `Cluster(layout=...)` JSON form.

use super::cluster::{Cluster, GlobalDevice};
use crate::config::{ClusterConfig, ClusterLayout};
use crate::error::{Error, Result};
use serde_json::Value;

const KEY: &str = "cluster.layout";

/// Devices per TaskGraph, per replica: `slices[taskgraph][replica][device]`.
pub type Slices = Vec<Vec<Vec<GlobalDevice>>>;

/// A layout, as EPL's `Layout` class accepts it (exactly one kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One VirtualDevice holding every device, each device one replica slot; every TaskGraph
    /// shares it (`cluster.colocate_split_and_replicate`).
    All,
    /// Devices per replica from each TaskGraph's `device_count`; the rest become replicas.
    Auto,
    /// Given by the user: `[taskgraph][replica][device]`.
    Specific(Slices),
    /// Topology-aware for one-device hosts: hosts grouped by machine, then slices of this many
    /// consecutive workers.
    AwareRow(usize),
}

impl Layout {
    pub fn name(&self) -> &'static str {
        match self {
            Layout::All => "all",
            Layout::Auto => "auto",
            Layout::Specific(_) => "specific",
            Layout::AwareRow(_) => "aware_row",
        }
    }

    /// The layout the config asks for. `colocate_split_and_replicate` forces `all` (as EPL's
    /// `init` does); `specific` takes its slices from `cluster.specific` (device ids or names
    /// of `cluster`), `aware_row` its slice size from `cluster.aware_row`. A slice key given
    /// for another layout is an error, never ignored.
    pub fn from_config(config: &ClusterConfig, cluster: &Cluster) -> Result<Layout> {
        let wanted = match config.layout {
            ClusterLayout::Specific => "specific",
            ClusterLayout::AwareRow => "aware_row",
            _ => "",
        };
        if config.colocate_split_and_replicate && !wanted.is_empty() {
            return Err(Error::config(
                KEY,
                format!(
                    "cluster.colocate_split_and_replicate=true puts every TaskGraph on all \
                     devices (layout 'all'); it conflicts with cluster.layout='{wanted}'"
                ),
            ));
        }
        if !config.specific.is_empty() && wanted != "specific" {
            return Err(idle_key("cluster.specific", "specific", config));
        }
        if config.aware_row != 0 && wanted != "aware_row" {
            return Err(idle_key("cluster.aware_row", "aware_row", config));
        }
        match config.layout {
            _ if shares_all_devices(config) => Ok(Layout::All),
            ClusterLayout::Specific if config.specific.is_empty() => Err(Error::config(
                KEY,
                "cluster.layout='specific' needs the device slices in cluster.specific \
                 ([taskgraph][replica][device]); none were given",
            )),
            ClusterLayout::Specific => {
                let value = Value::Array(config.specific.clone());
                parse_specific(&value, cluster, "cluster.specific").map(Layout::Specific)
            }
            ClusterLayout::AwareRow if config.aware_row == 0 => Err(Error::config(
                KEY,
                "cluster.layout='aware_row' needs cluster.aware_row, the workers per slice \
                 (>= 1)",
            )),
            ClusterLayout::AwareRow => Ok(Layout::AwareRow(config.aware_row)),
            ClusterLayout::All | ClusterLayout::Auto => Ok(Layout::Auto),
        }
    }

    /// EPL's `layout` argument as JSON: `"all"`, `"auto"`, `{"specific": [[[...]]]}` or
    /// `{"aware_row": N}`. Specific devices are global ids or canonical names of `cluster`.
    pub fn from_json(value: &Value, cluster: &Cluster) -> Result<Layout> {
        match value {
            Value::String(name) => from_name(name),
            Value::Object(map) if map.len() == 1 => {
                let (name, arg) = map.iter().next().expect("one entry");
                match name.to_ascii_lowercase().as_str() {
                    "specific" => parse_specific(arg, cluster, "specific").map(Layout::Specific),
                    "aware_row" => parse_aware_row(arg),
                    "all" | "auto" => from_name(name),
                    _ => Err(unknown(name)),
                }
            }
            Value::Object(map) if map.len() > 1 => {
                let names: Vec<&str> = map.keys().map(String::as_str).collect();
                let msg = format!("only one layout may be given, got {}", names.join(", "));
                Err(Error::config(KEY, msg))
            }
            other => Err(Error::config(
                KEY,
                format!("a layout is a name or a one-entry object, got {other}"),
            )),
        }
    }
}

/// Layout `all` (`cluster.layout='all'` or `cluster.colocate_split_and_replicate`): every
/// TaskGraph on every device.
pub fn shares_all_devices(config: &ClusterConfig) -> bool {
    config.colocate_split_and_replicate || config.layout == ClusterLayout::All
}

fn idle_key(key: &str, layout: &str, config: &ClusterConfig) -> Error {
    Error::config(
        key,
        format!(
            "{key} is set but cluster.layout is '{}'; it only takes effect with \
             cluster.layout='{layout}'",
            config.layout
        ),
    )
}

fn unknown(name: &str) -> Error {
    Error::config(
        KEY,
        format!(
            "unknown layout '{name}'; expected 'all', 'auto', {{\"specific\": [[[...]]]}} or \
             {{\"aware_row\": N}}"
        ),
    )
}

fn from_name(name: &str) -> Result<Layout> {
    match name.to_ascii_lowercase().as_str() {
        "all" => Ok(Layout::All),
        "auto" => Ok(Layout::Auto),
        "specific" | "aware_row" => Err(Error::config(
            KEY,
            format!("layout '{name}' needs an argument: {{\"{name}\": ...}}"),
        )),
        _ => Err(unknown(name)),
    }
}

fn parse_aware_row(arg: &Value) -> Result<Layout> {
    match arg.as_u64() {
        Some(n) if n >= 1 => Ok(Layout::AwareRow(n as usize)),
        _ => Err(Error::config(
            KEY,
            format!("aware_row takes the number of workers per slice (>= 1), got {arg}"),
        )),
    }
}

fn as_list<'a>(value: &'a Value, at: &str) -> Result<&'a [Value]> {
    let msg = || format!("{at} must be a list, got {value}");
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| Error::config(KEY, msg()))
}

/// `[taskgraph][replica][device]` slices; errors name the position under `label`.
fn parse_specific(arg: &Value, cluster: &Cluster, label: &str) -> Result<Slices> {
    let mut slices = Vec::new();
    for (t, tg) in as_list(arg, label)?.iter().enumerate() {
        let mut replicas = Vec::new();
        for (r, replica) in as_list(tg, &format!("{label}[{t}]"))?.iter().enumerate() {
            let at = format!("{label}[{t}][{r}]");
            let devices = as_list(replica, &at)?.iter().enumerate();
            let devices = devices.map(|(i, d)| parse_device(d, cluster, &format!("{at}[{i}]")));
            replicas.push(devices.collect::<Result<Vec<_>>>()?);
        }
        slices.push(replicas);
    }
    Ok(slices)
}

/// A global id (range-checked later, with the other slice rules) or a canonical name.
fn parse_device(value: &Value, cluster: &Cluster, at: &str) -> Result<GlobalDevice> {
    if let Some(id) = value.as_u64().and_then(|id| u32::try_from(id).ok()) {
        return Ok(GlobalDevice(id));
    }
    if let Some(d) = value.as_str().and_then(|name| cluster.parse_device(name)) {
        return Ok(d);
    }
    let first = cluster.device_name(GlobalDevice(0));
    Err(Error::config(
        KEY,
        format!("{at} is {value}, not a device of the cluster (an id or a name like '{first}')"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::cluster::DeviceKind;
    use serde_json::json;

    fn cluster() -> Cluster {
        Cluster::uniform(DeviceKind::Cuda, 2, 2).unwrap()
    }

    fn parse(v: Value) -> Result<Layout> {
        Layout::from_json(&v, &cluster())
    }

    fn err(v: Value) -> String {
        parse(v).unwrap_err().to_string()
    }

    #[test]
    fn names_and_objects_parse() {
        assert_eq!(parse(json!("all")), Ok(Layout::All));
        assert_eq!(parse(json!("AUTO")), Ok(Layout::Auto));
        assert_eq!(parse(json!({"auto": "none"})), Ok(Layout::Auto));
        assert_eq!(parse(json!({"aware_row": 2})), Ok(Layout::AwareRow(2)));
        let d = GlobalDevice;
        assert_eq!(
            parse(json!({"specific": [[[0, "host1/cuda:1"]], [[2]]]})),
            Ok(Layout::Specific(vec![
                vec![vec![d(0), d(3)]],
                vec![vec![d(2)]]
            ]))
        );
    }

    #[test]
    fn parse_errors_name_the_problem() {
        assert_eq!(
            err(json!({"unkown_layout": 2})),
            "unknown layout 'unkown_layout'; expected 'all', 'auto', {\"specific\": [[[...]]]} \
             or {\"aware_row\": N}"
        );
        assert_eq!(
            err(json!("rows")),
            "unknown layout 'rows'; expected 'all', 'auto', {\"specific\": [[[...]]]} \
             or {\"aware_row\": N}"
        );
        assert_eq!(
            err(json!({"all": 1, "auto": 1})),
            "only one layout may be given, got all, auto"
        );
        assert_eq!(
            err(json!(3)),
            "a layout is a name or a one-entry object, got 3"
        );
        assert_eq!(
            err(json!("specific")),
            "layout 'specific' needs an argument: {\"specific\": ...}"
        );
        assert_eq!(
            err(json!({"aware_row": 0})),
            "aware_row takes the number of workers per slice (>= 1), got 0"
        );
        assert_eq!(
            err(json!({"specific": 1})),
            "specific must be a list, got 1"
        );
        assert_eq!(
            err(json!({"specific": [[1]]})),
            "specific[0][0] must be a list, got 1"
        );
        assert_eq!(
            err(json!({"specific": [[["gpu:0"]]]})),
            "specific[0][0][0] is \"gpu:0\", not a device of the cluster (an id or a name like \
             'host0/cuda:0')"
        );
    }

    #[test]
    fn layout_errors_are_config_errors_on_the_layout_key() {
        match parse(json!("rows")).unwrap_err() {
            Error::Config { key, .. } => assert_eq!(key, KEY),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn from_config() {
        let cl = cluster();
        let mut c = ClusterConfig::default();
        assert_eq!(Layout::from_config(&c, &cl), Ok(Layout::Auto));
        c.layout = ClusterLayout::All;
        assert_eq!(Layout::from_config(&c, &cl), Ok(Layout::All));
        c.layout = ClusterLayout::Auto;
        c.colocate_split_and_replicate = true;
        assert_eq!(Layout::from_config(&c, &cl), Ok(Layout::All));
        c.layout = ClusterLayout::Specific;
        assert_eq!(
            Layout::from_config(&c, &cl).unwrap_err().to_string(),
            "cluster.colocate_split_and_replicate=true puts every TaskGraph on all devices \
             (layout 'all'); it conflicts with cluster.layout='specific'"
        );
        c.colocate_split_and_replicate = false;
        assert_eq!(
            Layout::from_config(&c, &cl).unwrap_err().to_string(),
            "cluster.layout='specific' needs the device slices in cluster.specific \
             ([taskgraph][replica][device]); none were given"
        );
        c.specific = vec![json!([[1]]), json!([["host1/cuda:0"]])];
        assert_eq!(
            Layout::from_config(&c, &cl),
            Ok(Layout::Specific(vec![
                vec![vec![GlobalDevice(1)]],
                vec![vec![GlobalDevice(2)]]
            ]))
        );
        c.specific = vec![json!([[1]]), json!([[0, "gpu:9"]])];
        assert_eq!(
            Layout::from_config(&c, &cl).unwrap_err().to_string(),
            "cluster.specific[1][0][1] is \"gpu:9\", not a device of the cluster (an id or a \
             name like 'host0/cuda:0')"
        );
        c.layout = ClusterLayout::Auto;
        assert_eq!(
            Layout::from_config(&c, &cl).unwrap_err().to_string(),
            "cluster.specific is set but cluster.layout is 'auto'; it only takes effect with \
             cluster.layout='specific'"
        );
        c.specific.clear();
        c.layout = ClusterLayout::AwareRow;
        assert_eq!(
            Layout::from_config(&c, &cl).unwrap_err().to_string(),
            "cluster.layout='aware_row' needs cluster.aware_row, the workers per slice (>= 1)"
        );
        c.aware_row = 2;
        assert_eq!(Layout::from_config(&c, &cl), Ok(Layout::AwareRow(2)));
    }
}
