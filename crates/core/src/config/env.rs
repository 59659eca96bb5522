//! Config from environment variables: `WEFT_<SECTION>_<KEY>` for every key, EPL's
//! `EPL_<SECTION>_<KEY>` as its alias (the WEFT name wins when both are set), and the one table
//! of the other `WEFT_*` variables weft reads. Any other `WEFT_*` variable is an error that
//! suggests the nearest known name, like an unknown config key: a misspelt variable must not
//! silently leave its key at the default.

use super::suggest::nearest;
use super::table::{KeySpec, key_table, sections};
use crate::error::{Error, Result};

/// The `WEFT_*` variables weft reads that are not config keys, with who reads them.
pub const OTHER_WEFT_VARIABLES: &[(&str, &str)] = &[
    (
        "WEFT_LAUNCH",
        "set by weft launch in the processes it starts",
    ),
    (
        "WEFT_STORE_TOKEN",
        "the job's shared secret for the rendezvous store",
    ),
    ("WEFT_STORE_PORT", "the rendezvous store's port"),
    ("WEFT_CUDA_LIB", "path of libcuda (weft-cuda's loader)"),
    ("WEFT_NVRTC_LIB", "path of libnvrtc (weft-cuda's loader)"),
    ("WEFT_CUBLAS_LIB", "path of libcublas (weft-cuda's loader)"),
    ("WEFT_NCCL_LIB", "path of libnccl (weft-cuda's loader)"),
    (
        "WEFT_CUDA_LIB_DIR",
        "directory of the CUDA libraries (weft-cuda's loader)",
    ),
    (
        "WEFT_REQUIRE_NVRTC",
        "tests: fail instead of skipping without NVRTC",
    ),
    (
        "WEFT_TEST_WASM",
        "tests: run the specs against the WASM build",
    ),
    ("WEFT_TEST_CHILD", "tests: marks a test's child process"),
    (
        "WEFT_TEST_INSTALL",
        "tests: run the install-like-a-user stage",
    ),
    (
        "WEFT_NATIVE_ZIG",
        "build:native: build the glibc-2.28 addon with Zig",
    ),
    (
        "WEFT_CHROMIUM",
        "scripts/test-browser.mjs: the Chromium binary",
    ),
    (
        "WEFT_LAUNCHER_FD",
        "set by weft launch: the pipe whose closing ends the rank",
    ),
    ("WEFT_FUZZ_CASES", "tests: cases per fuzz target"),
    (
        "WEFT_KILL_CASES",
        "tests: kills in the kill-during-save test",
    ),
    ("WEFT_BLESS", "tests: rewrite golden fixtures"),
    (
        "WEFT_TENSORBOARD_PYTHON",
        ".ci/run: the python with tensorboard that reads the event files back",
    ),
    (
        "WEFT_GPU_BIN",
        "scripts/gpu-check.sh: the test binaries' directory",
    ),
    (
        "WEFT_W3_STEPS",
        "scripts/gpu-check.sh: steps of the GPT check",
    ),
];

/// The EPL spelling of a key's variable: `EPL_<SECTION>_<KEY>`.
pub(crate) fn epl_var(spec: &KeySpec) -> String {
    format!("EPL_{}", &spec.env_var()["WEFT_".len()..])
}

/// Which variable set a key, and the alias it shadowed (an `EPL_*` name also set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRead {
    pub key: &'static str,
    pub variable: String,
    pub shadowed: Option<String>,
}

impl std::fmt::Display for EnvRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} from {}", self.key, self.variable)?;
        if let Some(other) = &self.shadowed {
            write!(f, " ({other} is also set and ignored: WEFT_ wins)")?;
        }
        Ok(())
    }
}

/// The config variables among `env`, in key-table order: each key's spec, the text to parse and
/// where it came from. Variables of neither prefix are not config and are skipped.
pub(crate) fn config_vars(
    env: &[(String, String)],
) -> Result<Vec<(&'static KeySpec, String, EnvRead)>> {
    let mut weft: Vec<(&'static KeySpec, &str, &str)> = Vec::new();
    let mut epl: Vec<(&'static KeySpec, &str, &str)> = Vec::new();
    for (name, text) in env {
        if name.starts_with("WEFT_") {
            if let Some(spec) = weft_spec(name)? {
                weft.push((spec, name, text));
            }
        } else if name.starts_with("EPL_")
            && let Some(spec) = epl_spec(name)?
        {
            epl.push((spec, name, text));
        }
    }
    let mut out = Vec::new();
    for spec in key_table() {
        let mine = weft.iter().find(|(s, ..)| s.key == spec.key);
        let alias = epl.iter().find(|(s, ..)| s.key == spec.key);
        let (chosen, shadowed) = match (mine, alias) {
            (Some(w), e) => (w, e.map(|e| e.1.to_string())),
            (None, Some(e)) => (e, None),
            (None, None) => continue,
        };
        let read = EnvRead {
            key: spec.key,
            variable: chosen.1.to_string(),
            shadowed,
        };
        out.push((spec, chosen.2.to_string(), read));
    }
    Ok(out)
}

/// A `WEFT_*` variable: its key, None when it is one of the other variables weft reads, or the
/// unknown-variable error with the nearest known name.
fn weft_spec(name: &str) -> Result<Option<&'static KeySpec>> {
    if let Some(spec) = key_table().iter().find(|s| s.env_var() == name) {
        return Ok(Some(spec));
    }
    if OTHER_WEFT_VARIABLES.iter().any(|(n, _)| *n == name) {
        return Ok(None);
    }
    let mut names: Vec<String> = key_table().iter().map(KeySpec::env_var).collect();
    names.extend(OTHER_WEFT_VARIABLES.iter().map(|(n, _)| n.to_string()));
    Err(unknown(name, &names))
}

/// An `EPL_*` variable: its key when it names one, None when it is not an `EPL_<SECTION>_`
/// name (EPL's own other variables are none of weft's business), an error with the nearest
/// alias when the section is right but the key is not.
fn epl_spec(name: &str) -> Result<Option<&'static KeySpec>> {
    if let Some(spec) = key_table().iter().find(|s| epl_var(s) == name) {
        return Ok(Some(spec));
    }
    let is_config = sections()
        .iter()
        .any(|s| name.starts_with(&format!("EPL_{}_", s.to_ascii_uppercase())));
    if !is_config {
        return Ok(None);
    }
    let names: Vec<String> = key_table().iter().map(epl_var).collect();
    Err(unknown(name, &names))
}

fn unknown(name: &str, names: &[String]) -> Error {
    let message = match nearest(name, names.iter().map(String::as_str)) {
        Some(near) => format!("unknown environment variable '{name}'; did you mean '{near}'?"),
        None => format!(
            "unknown environment variable '{name}': not a config key's variable nor one of the \
             other WEFT_* variables weft reads"
        ),
    };
    Error::config(name, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn message(pairs: &[(&str, &str)]) -> String {
        Config::from_sources(&[], &env(pairs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn unknown_weft_variables_are_errors_with_the_nearest_name() {
        assert_eq!(
            message(&[("WEFT_PIPELIN_NUM_MICRO_BATCH", "4")]),
            "unknown environment variable 'WEFT_PIPELIN_NUM_MICRO_BATCH'; did you mean \
             'WEFT_PIPELINE_NUM_MICRO_BATCH'?"
        );
        assert_eq!(
            message(&[("WEFT_STORE_TOKN", "x")]),
            "unknown environment variable 'WEFT_STORE_TOKN'; did you mean 'WEFT_STORE_TOKEN'?"
        );
        assert_eq!(
            message(&[("WEFT_XYZZY_FROB_NICATE_Q", "1")]),
            "unknown environment variable 'WEFT_XYZZY_FROB_NICATE_Q': not a config key's \
             variable nor one of the other WEFT_* variables weft reads"
        );
    }

    #[test]
    fn the_other_weft_variables_are_not_config() {
        let all: Vec<(&str, &str)> = OTHER_WEFT_VARIABLES
            .iter()
            .map(|(n, _)| (*n, "1"))
            .collect();
        let c = Config::from_sources(&[], &env(&all)).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn epl_names_are_aliases_and_weft_wins() {
        let c = Config::from_sources(&[], &env(&[("EPL_PIPELINE_NUM_MICRO_BATCH", "4")])).unwrap();
        assert_eq!(c.pipeline.num_micro_batch, 4);
        assert_eq!(
            c.env_reads[0].to_string(),
            "pipeline.num_micro_batch from EPL_PIPELINE_NUM_MICRO_BATCH"
        );
        let both = env(&[
            ("EPL_PIPELINE_NUM_MICRO_BATCH", "4"),
            ("WEFT_PIPELINE_NUM_MICRO_BATCH", "2"),
        ]);
        let c = Config::from_sources(&[], &both).unwrap();
        assert_eq!(c.pipeline.num_micro_batch, 2);
        assert_eq!(
            c.env_reads[0].to_string(),
            "pipeline.num_micro_batch from WEFT_PIPELINE_NUM_MICRO_BATCH \
             (EPL_PIPELINE_NUM_MICRO_BATCH is also set and ignored: WEFT_ wins)"
        );
        assert_eq!(
            message(&[("EPL_PIPELINE_NUM_MICRO_BATCHES", "4")]),
            "unknown environment variable 'EPL_PIPELINE_NUM_MICRO_BATCHES'; did you mean \
             'EPL_PIPELINE_NUM_MICRO_BATCH'?"
        );
        let other = Config::from_sources(&[], &env(&[("EPL_LOG_LEVEL", "1")])).unwrap();
        assert_eq!(other, Config::default());
    }

    #[test]
    fn alias_errors_name_the_variable() {
        assert_eq!(
            message(&[("EPL_COMMUNICATION_FP16", "yes")]),
            "communication.fp16 must be a bool (true or false), got \"yes\" \
             (from environment variable EPL_COMMUNICATION_FP16)"
        );
    }
}
