//! The checkpoint directory: `model.safetensors` (parameters), `optimizer.safetensors`
//! (optimizer state named `<param>.<state>`, e.g. `h.0.ln_1.weight.exp_avg`) and `weft.json`
//! (format version, step, optimizer name, opaque config). Generic: it stores named host tensors
//! and knows nothing about the trainer.
//!
//! Crash safety: every file is staged (written and fsynced under a temp name) before any is
//! renamed, so a failure while writing leaves the previous checkpoint untouched. `weft.json` is
//! renamed last and every file carries the same random save id, so the one window that remains
//! (a crash between two renames) is detected on load as a torn checkpoint instead of silently
//! mixing parameters from one step with optimizer state from another.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::atomic;
use super::safetensors::{self, SafeTensors, TensorEntry};
use crate::error::{Error, Result};

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const MANIFEST_FILE: &str = "weft.json";
/// Version of the directory layout written by this weft; loading any other is refused.
pub const FORMAT_VERSION: u64 = 1;
const FORMAT_NAME: &str = "weft-checkpoint";
/// Metadata key tying the files of one save together.
const SAVE_ID_KEY: &str = "weft_save_id";

/// Optimizer state: the optimizer's name and its per-parameter state tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    pub name: String,
    pub tensors: Vec<TensorEntry>,
}

/// Everything a checkpoint directory holds.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointData {
    pub step: u64,
    /// Opaque to this module; stored verbatim in `weft.json`.
    pub config: Value,
    pub params: Vec<TensorEntry>,
    /// `None` for a parameters-only checkpoint (e.g. for inference).
    pub optimizer: Option<OptimizerState>,
}

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Save `ckpt` into `dir` (created if missing), replacing any checkpoint there only once every
/// new file is safely on disk.
pub fn save_dir(dir: &Path, ckpt: &CheckpointData) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    let save_id = new_save_id();
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = stage_files(dir, ckpt, &save_id, &mut staged).and_then(|()| commit_all(&staged));
    if result.is_err() {
        staged.iter().for_each(|(tmp, _)| atomic::discard(tmp));
        return result;
    }
    if ckpt.optimizer.is_none() {
        // The manifest already says there is no optimizer state; this only tidies a stale file.
        let _ = fs::remove_file(dir.join(OPTIMIZER_FILE));
    }
    Ok(())
}

/// Stage every file, recording each (temp, final) pair in `staged` as soon as it exists so the
/// caller can discard them all if a later one fails. The manifest is staged last.
fn stage_files(
    dir: &Path,
    ckpt: &CheckpointData,
    save_id: &str,
    staged: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<()> {
    let step = ckpt.step.to_string();
    // `format: pt` is what Hugging Face's loaders require of a safetensors file's metadata.
    let mut meta = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        ("step".to_string(), step),
        (SAVE_ID_KEY.to_string(), save_id.to_string()),
    ]);
    let model = dir.join(MODEL_FILE);
    // Each file is encoded and staged before the next is encoded, so at most one serialized
    // copy is in memory at a time.
    let bytes = safetensors::to_bytes(&ckpt.params, &meta, &model)?;
    staged.push((atomic::stage(&model, &bytes)?, model));
    if let Some(opt) = &ckpt.optimizer {
        let path = dir.join(OPTIMIZER_FILE);
        check_state_names(&ckpt.params, &opt.tensors, &path)?;
        meta.insert("optimizer".to_string(), opt.name.clone());
        let bytes = safetensors::to_bytes(&opt.tensors, &meta, &path)?;
        staged.push((atomic::stage(&path, &bytes)?, path));
    }
    let manifest = json!({
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "step": ckpt.step,
        "save_id": save_id,
        "optimizer": ckpt.optimizer.as_ref().map(|o| o.name.as_str()),
        "config": ckpt.config,
    });
    let path = dir.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| err(&path, e.to_string()))?;
    staged.push((atomic::stage(&path, text.as_bytes())?, path));
    Ok(())
}

fn commit_all(staged: &[(PathBuf, PathBuf)]) -> Result<()> {
    staged
        .iter()
        .try_for_each(|(tmp, path)| atomic::commit(tmp, path))
}

/// Unique per process, call and time: two saves must never share an id, or a torn checkpoint
/// made of their files would pass the check.
fn new_save_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{nanos:x}-{n:x}", atomic::process_id())
}

/// State tensors must be named `<param>.<state>` for a parameter of the model, or a restore
/// could not tell which parameter a buffer belongs to.
fn check_state_names(params: &[TensorEntry], state: &[TensorEntry], path: &Path) -> Result<()> {
    for t in state {
        let owner = t
            .name
            .rsplit_once('.')
            .filter(|(_, s)| !s.is_empty())
            .map(|(p, _)| p);
        if !owner.is_some_and(|p| params.iter().any(|q| q.name == p)) {
            return Err(err(
                path,
                format!(
                    "optimizer tensor '{}' is not named <param>.<state> for a parameter of the \
                        model",
                    t.name
                ),
            ));
        }
    }
    Ok(())
}

/// Load a checkpoint directory, refusing unknown versions and torn saves.
pub fn load_dir(dir: &Path) -> Result<CheckpointData> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest = read_manifest(&manifest_path)?;
    let model_path = dir.join(MODEL_FILE);
    let model = safetensors::read(&model_path)?;
    check_same_save(&model, &manifest.save_id, &model_path)?;
    let optimizer = match manifest.optimizer {
        None => None,
        Some(name) => {
            let path = dir.join(OPTIMIZER_FILE);
            let file = safetensors::read(&path)?;
            check_same_save(&file, &manifest.save_id, &path)?;
            check_state_names(&model.tensors, &file.tensors, &path)?;
            Some(OptimizerState {
                name,
                tensors: file.tensors,
            })
        }
    };
    Ok(CheckpointData {
        step: manifest.step,
        config: manifest.config,
        params: model.tensors,
        optimizer,
    })
}

pub(crate) struct Manifest {
    step: u64,
    save_id: String,
    optimizer: Option<String>,
    config: Value,
}

fn read_manifest(path: &Path) -> Result<Manifest> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err(path, "missing: not a weft checkpoint directory"));
        }
        Err(e) => return Err(Error::io(path.display().to_string(), e)),
    };
    parse_manifest(&text, path)
}

/// The manifest in `text` (read from `path`, for messages): format, version, step, save id,
/// optimizer name and config, each checked for its type.
pub(crate) fn parse_manifest(text: &str, path: &Path) -> Result<Manifest> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| err(path, format!("invalid JSON: {e}")))?;
    if v.get("format").and_then(Value::as_str) != Some(FORMAT_NAME) {
        return Err(err(path, format!("\"format\" is not \"{FORMAT_NAME}\"")));
    }
    let version = v.get("version").and_then(Value::as_u64);
    if version != Some(FORMAT_VERSION) {
        let found = v
            .get("version")
            .map(Value::to_string)
            .unwrap_or_else(|| "missing".into());
        return Err(err(
            path,
            format!(
                "format version {found} is not supported (this weft reads version {FORMAT_VERSION})"
            ),
        ));
    }
    let field = |k: &str| err(path, format!("\"{k}\" is missing or has the wrong type"));
    let step = v
        .get("step")
        .and_then(Value::as_u64)
        .ok_or_else(|| field("step"))?;
    let save_id = v
        .get("save_id")
        .and_then(Value::as_str)
        .ok_or_else(|| field("save_id"))?;
    let optimizer = match v.get("optimizer") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(field("optimizer")),
    };
    let config = v.get("config").cloned().unwrap_or(Value::Null);
    Ok(Manifest {
        step,
        save_id: save_id.to_string(),
        optimizer,
        config,
    })
}

/// When `path` is the weights file of a checkpoint directory (read on its own, e.g. to sample),
/// refuse it unless it belongs to the directory's manifest, as `load_dir` would.
pub fn check_weights_of_dir(file: &SafeTensors, path: &Path) -> Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let manifest = dir.join(MANIFEST_FILE);
    if path.file_name() != Some(MODEL_FILE.as_ref()) || !manifest.exists() {
        return Ok(());
    }
    check_same_save(file, &read_manifest(&manifest)?.save_id, path)
}

fn check_same_save(file: &SafeTensors, save_id: &str, path: &Path) -> Result<()> {
    if file.metadata.get(SAVE_ID_KEY).map(String::as_str) == Some(save_id) {
        return Ok(());
    }
    Err(err(
        path,
        format!(
            "belongs to a different save than {MANIFEST_FILE} (a save was interrupted); \
             this checkpoint is torn and cannot be resumed"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::atomic::unique_temp_dir;
    use crate::tensor::HostData;

    fn ckpt(step: u64, with_optimizer: bool) -> CheckpointData {
        let s = step as f32;
        let params = vec![
            TensorEntry::new("h.0.ln_1.weight", vec![3], HostData::F32(vec![s, 1.0, 2.0])),
            TensorEntry::new(
                "wte.weight",
                vec![2, 2],
                HostData::F32(vec![0.5, -0.5, s, 4.0]),
            ),
        ];
        let state = |p: &str, st: &str, n: usize| {
            TensorEntry::new(
                format!("{p}.{st}"),
                vec![n],
                HostData::F32(vec![s * 0.1; n]),
            )
        };
        let optimizer = with_optimizer.then(|| OptimizerState {
            name: "adamw".into(),
            tensors: vec![
                state("h.0.ln_1.weight", "exp_avg", 3),
                state("h.0.ln_1.weight", "exp_avg_sq", 3),
                TensorEntry::new("wte.weight.exp_avg", vec![2, 2], HostData::F32(vec![s; 4])),
                TensorEntry::new(
                    "wte.weight.exp_avg_sq",
                    vec![2, 2],
                    HostData::F32(vec![1.0; 4]),
                ),
            ],
        });
        let config = json!({"model": {"n_layer": 1}, "lr": 3e-4});
        CheckpointData {
            step,
            config,
            params,
            optimizer,
        }
    }

    fn cleanup(dir: &Path) {
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn round_trips_with_optimizer_state() {
        let dir = unique_temp_dir("ckdir-rt").join("ckpt");
        let c = ckpt(12, true);
        save_dir(&dir, &c).unwrap();
        assert_eq!(load_dir(&dir).unwrap(), c);
        let manifest: Value =
            serde_json::from_str(&fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap()).unwrap();
        assert_eq!(manifest["version"], json!(1));
        assert_eq!(manifest["step"], json!(12));
        assert_eq!(manifest["optimizer"], json!("adamw"));
        let opt = safetensors::read(&dir.join(OPTIMIZER_FILE)).unwrap();
        assert_eq!(opt.metadata["step"], "12");
        assert_eq!(opt.metadata["optimizer"], "adamw");
        cleanup(dir.parent().unwrap());
    }

    #[test]
    fn parameters_only_save_replaces_one_with_optimizer() {
        let dir = unique_temp_dir("ckdir-noopt");
        save_dir(&dir, &ckpt(1, true)).unwrap();
        let c = ckpt(2, false);
        save_dir(&dir, &c).unwrap();
        assert_eq!(load_dir(&dir).unwrap(), c);
        assert!(!dir.join(OPTIMIZER_FILE).exists());
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, [MODEL_FILE, MANIFEST_FILE]);
        cleanup(&dir);
    }

    #[test]
    fn failure_mid_save_leaves_the_previous_checkpoint_intact() {
        let dir = unique_temp_dir("ckdir-fail");
        let old = ckpt(5, true);
        save_dir(&dir, &old).unwrap();
        // Squat on the optimizer's temp name: the model is staged, then staging the optimizer
        // fails with a real I/O error.
        let squat = atomic::temp_path(&dir.join(OPTIMIZER_FILE));
        fs::create_dir(&squat).unwrap();
        let e = save_dir(&dir, &ckpt(6, true)).unwrap_err();
        assert_eq!(e.code(), "WEFT_IO");
        assert_eq!(load_dir(&dir).unwrap(), old);
        assert!(
            !atomic::temp_path(&dir.join(MODEL_FILE)).exists(),
            "staged model not discarded"
        );
        fs::remove_dir(&squat).unwrap();
        cleanup(&dir);
    }

    #[test]
    fn torn_checkpoint_is_detected() {
        let (a, b) = (
            unique_temp_dir("ckdir-torn-a"),
            unique_temp_dir("ckdir-torn-b"),
        );
        save_dir(&a, &ckpt(1, true)).unwrap();
        save_dir(&b, &ckpt(2, true)).unwrap();
        // Simulate a crash after the optimizer of save 2 was renamed but before its manifest.
        fs::copy(b.join(OPTIMIZER_FILE), a.join(OPTIMIZER_FILE)).unwrap();
        let e = load_dir(&a).unwrap_err();
        let want = format!(
            "checkpoint {}: belongs to a different save than weft.json (a save was \
             interrupted); this checkpoint is torn and cannot be resumed",
            a.join(OPTIMIZER_FILE).display()
        );
        assert_eq!(e.to_string(), want);
        cleanup(&a);
        cleanup(&b);
    }

    #[test]
    fn a_torn_weights_file_read_alone_is_detected() {
        let (a, b) = (
            unique_temp_dir("ckdir-torn-w-a"),
            unique_temp_dir("ckdir-torn-w-b"),
        );
        save_dir(&a, &ckpt(1, false)).unwrap();
        save_dir(&b, &ckpt(2, false)).unwrap();
        let path = a.join(MODEL_FILE);
        let own = crate::checkpoint::safetensors::read(&path).unwrap();
        assert_eq!(check_weights_of_dir(&own, &path), Ok(()));
        // A crash after save 2's weights were renamed but before its manifest.
        fs::copy(b.join(MODEL_FILE), &path).unwrap();
        let torn = crate::checkpoint::safetensors::read(&path).unwrap();
        let e = check_weights_of_dir(&torn, &path).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("this checkpoint is torn and cannot be resumed")
        );
        cleanup(&a);
        cleanup(&b);
    }

    #[test]
    fn missing_manifest_is_reported() {
        let dir = unique_temp_dir("ckdir-empty");
        let e = load_dir(&dir).unwrap_err();
        let want = format!(
            "checkpoint {}: missing: not a weft checkpoint directory",
            dir.join(MANIFEST_FILE).display()
        );
        assert_eq!(e.to_string(), want);
        cleanup(&dir);
    }

    #[test]
    fn unknown_format_version_is_refused() {
        let dir = unique_temp_dir("ckdir-version");
        save_dir(&dir, &ckpt(1, false)).unwrap();
        let path = dir.join(MANIFEST_FILE);
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("\"version\": 1", "\"version\": 2");
        fs::write(&path, text).unwrap();
        let want = format!(
            "checkpoint {}: format version 2 is not supported (this weft reads version 1)",
            path.display()
        );
        assert_eq!(load_dir(&dir).unwrap_err().to_string(), want);
        cleanup(&dir);
    }

    #[test]
    fn misnamed_optimizer_state_is_refused_before_writing() {
        let dir = unique_temp_dir("ckdir-names");
        let mut c = ckpt(1, true);
        c.optimizer.as_mut().unwrap().tensors[0].name = "wpe.weight.exp_avg".into();
        let e = save_dir(&dir, &c).unwrap_err();
        let want = format!(
            "checkpoint {}: optimizer tensor 'wpe.weight.exp_avg' is not named <param>.<state> \
             for a parameter of the model",
            dir.join(OPTIMIZER_FILE).display()
        );
        assert_eq!(e.to_string(), want);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "nothing may be left behind"
        );
        cleanup(&dir);
    }
}
