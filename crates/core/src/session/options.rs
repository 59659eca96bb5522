//! Compile options: what `weft.compile` and `weft train` pass down, parsed from one JSON object.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::optim::OptimizerConfig;
use serde_json::Value;

/// Where a trainer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu(usize),
    Cuda(usize),
}

impl DeviceSpec {
    /// `cpu:N` or `cuda:N` (N >= 1; a bare `cpu` means one device).
    pub fn parse(text: &str) -> Result<DeviceSpec> {
        let bad = || {
            Error::config(
                "devices",
                format!("devices '{text}' is not of the form cpu:N or cuda:N"),
            )
        };
        let (kind, n) = text.split_once(':').unwrap_or((text, "1"));
        let n: usize = n.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        match kind {
            "cpu" => Ok(DeviceSpec::Cpu(n)),
            "cuda" => Ok(DeviceSpec::Cuda(n)),
            _ => Err(bad()),
        }
    }

    /// `cpu` or `cuda`.
    pub fn kind(&self) -> &'static str {
        match self {
            DeviceSpec::Cpu(_) => "cpu",
            DeviceSpec::Cuda(_) => "cuda",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrainerOptions {
    /// Global batch of one optimizer step (DESIGN.md, batch semantics).
    pub batch: usize,
    pub seed: u64,
    /// CPU threads for kernels (0: all cores).
    pub threads: usize,
    pub devices: DeviceSpec,
    pub optimizer: OptimizerConfig,
    pub config: Config,
    /// This process's place in a multi-process job; None for a single process. The option
    /// `"processes": "env"` discovers it from the launcher's environment (`process::discover`).
    pub processes: Option<crate::process::ProcessRank>,
    /// A simulated cluster of (hosts, devices per host) for slicing in one process (`"cluster":
    /// "2x4"`, `weft plan --cluster`); the device count must be hosts x devices.
    pub hosts: Option<(usize, usize)>,
}

const KEYS: [&str; 8] = [
    "batch",
    "seed",
    "threads",
    "devices",
    "optimizer",
    "config",
    "processes",
    "cluster",
];

impl TrainerOptions {
    /// Parse `{batch, seed?, threads?, devices?, optimizer?, config?, processes?, cluster?}`;
    /// unknown keys are errors.
    pub fn from_json(v: &Value) -> Result<TrainerOptions> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::config("options", "compile options must be a JSON object"))?;
        for k in obj.keys() {
            if !KEYS.contains(&k.as_str()) {
                return Err(Error::config(
                    k,
                    format!("unknown compile option '{k}'; expected one of {KEYS:?}"),
                ));
            }
        }
        let uint = |k: &str, default: u64| -> Result<u64> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x.as_u64().ok_or_else(|| {
                    Error::config(k, format!("{k} must be a non-negative integer, got {x}"))
                }),
            }
        };
        let batch = uint("batch", 0)?;
        if batch == 0 {
            return Err(Error::config(
                "batch",
                "batch (the global batch) must be a positive integer",
            ));
        }
        let why = "batch sizes travel as 32-bit integers";
        crate::resource::check_count("batch", batch, crate::resource::MAX_BATCH, why)?;
        let batch = batch as usize;
        let devices = match obj.get("devices") {
            None | Some(Value::Null) => DeviceSpec::Cpu(1),
            Some(Value::String(s)) => DeviceSpec::parse(s)?,
            Some(x) => {
                return Err(Error::config(
                    "devices",
                    format!("devices must be a string like \"cpu:1\", got {x}"),
                ));
            }
        };
        let optimizer = match obj.get("optimizer") {
            None | Some(Value::Null) => {
                OptimizerConfig::from_json(&serde_json::json!({"kind": "adamw"}))?
            }
            Some(o) => OptimizerConfig::from_json(o)?,
        };
        // Environment variables first, explicit values win (DESIGN.md); the config decides
        // which variables are its own (`config/env.rs`).
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let explicit = match obj.get("config") {
            None | Some(Value::Null) => Vec::new(),
            Some(c) => crate::config::flatten_json(c)?,
        };
        let config = Config::from_sources(&explicit, &env)?;
        let processes = match obj.get("processes") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "single" => None,
            Some(Value::String(s)) if s == "env" => {
                crate::process::discover(&crate::process::process_env())?
            }
            Some(x) => {
                return Err(Error::config(
                    "processes",
                    format!("processes must be \"env\" or \"single\", got {x}"),
                ));
            }
        };
        let hosts = match obj.get("cluster") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(crate::strategy::parse_cluster_shape(s)?),
            Some(x) => {
                return Err(Error::config(
                    "cluster",
                    format!("cluster must be a string like \"2x4\", got {x}"),
                ));
            }
        };
        Ok(TrainerOptions {
            hosts,
            batch,
            seed: uint("seed", 0)?,
            threads: uint("threads", 0)? as usize,
            devices,
            optimizer,
            config,
            processes,
        })
    }
}
