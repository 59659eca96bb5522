//! The checkpoint root, laid out as PyTorch DCP and Orbax lay theirs out: every save is a
//! complete directory of its own, made visible by one atomic rename, so a writer killed at any
//! instant leaves either the new checkpoint or none, never a mix.
//!
//! ```text
//! ck/
//!   step-00000400/              one complete checkpoint (model, optimizer, weft.json, ...)
//!   step-00000500/
//!   step-00000500.1/            a second save at the same step (names are never reused)
//!   latest                      "step-00000500.1": the newest save, replaced atomically
//!   .weft-tmp-<pid>-<n>@<host>  a save in progress, or a killed writer's leftovers
//! ```
//!
//! A save stages its directory under a temp name, fsyncs it, renames it to its step name,
//! fsyncs the root, replaces `latest`, and then retires the saves beyond the newest `keep`
//! (renamed to a temp name first, so a half-removed one never looks complete).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::{atomic, dir::MANIFEST_FILE, writers};
use crate::error::{Error, Result};

/// The pointer file naming the newest save.
pub const LATEST_FILE: &str = "latest";
/// Saves kept when the caller does not say: the newest only, the footprint of one checkpoint.
pub const DEFAULT_KEEP: usize = 1;
const STEP_PREFIX: &str = "step-";

/// A step directory's name, parsed: `step-<step>` or `step-<step>.<version>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct StepName {
    step: u64,
    version: u64,
}

impl StepName {
    fn parse(name: &str) -> Option<StepName> {
        let rest = name.strip_prefix(STEP_PREFIX)?;
        let (step, version) = match rest.split_once('.') {
            Some((s, v)) => (s, v.parse().ok().filter(|&v| v > 0)?),
            None => (rest, 0),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        digits(step).then_some(())?;
        Some(StepName {
            step: step.parse().ok()?,
            version,
        })
    }

    fn name(self) -> String {
        match self.version {
            0 => format!("{STEP_PREFIX}{:08}", self.step),
            v => format!("{STEP_PREFIX}{:08}.{v}", self.step),
        }
    }
}

/// Write a checkpoint of `step` into `root`: `write` fills a fresh staging directory, which then
/// becomes `root/step-<step>` by one rename. Returns the new directory. Temp entries of dead
/// writers are removed first; saves beyond the newest `keep` (at least 1) are removed last.
pub fn save_step(
    root: &Path,
    step: u64,
    keep: usize,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    if keep == 0 {
        return Err(Error::config(
            "keep",
            "keep must be at least 1 (the save just written is always kept)",
        ));
    }
    fs::create_dir_all(root).map_err(|e| Error::io(root.display().to_string(), e))?;
    writers::remove_dead(root)?;
    let staging = writers::temp_entry(root);
    fs::create_dir(&staging).map_err(|e| Error::io(staging.display().to_string(), e))?;
    if let Err(e) = write(&staging).and_then(|()| sync_dir(&staging)) {
        let _ = writers::remove_entry(&staging);
        return Err(e);
    }
    let name = free_name(root, step)?;
    let dir = root.join(name.name());
    if let Err(e) = fs::rename(&staging, &dir) {
        let _ = writers::remove_entry(&staging);
        return Err(Error::io(dir.display().to_string(), e));
    }
    sync_dir(root)?;
    let pointer = writers::temp_entry(root);
    atomic::stage_at(&pointer, format!("{}\n", name.name()).as_bytes())?;
    atomic::commit(&pointer, &root.join(LATEST_FILE))?;
    retire(root, keep, name)?;
    Ok(dir)
}

/// The first unused name for `step`: names are never reused, so no rename replaces a
/// directory and `latest` never names one that is being written.
fn free_name(root: &Path, step: u64) -> Result<StepName> {
    let taken = step_dirs(root)?;
    let version = taken
        .iter()
        .filter(|n| n.step == step)
        .map(|n| n.version + 1)
        .max()
        .unwrap_or(0);
    Ok(StepName { step, version })
}

/// The step directories in `root`, oldest first (by step, then version).
fn step_dirs(root: &Path) -> Result<Vec<StepName>> {
    let mut dirs: Vec<StepName> = writers::entry_names(root)?
        .iter()
        .filter_map(|n| StepName::parse(n))
        .filter(|n| root.join(n.name()).is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Remove all step directories but `newest` and the newest `keep - 1` others. Each is renamed to
/// a temp name before its files go, so a kill midway leaves only a dead writer's temp entry.
fn retire(root: &Path, keep: usize, newest: StepName) -> Result<()> {
    let others: Vec<StepName> = step_dirs(root)?
        .into_iter()
        .filter(|&n| n != newest)
        .collect();
    let excess = others.len().saturating_sub(keep - 1);
    for name in &others[..excess] {
        let doomed = writers::temp_entry(root);
        let from = root.join(name.name());
        fs::rename(&from, &doomed).map_err(|e| Error::io(from.display().to_string(), e))?;
        writers::remove_entry(&doomed)?;
    }
    Ok(())
}

/// The step directory name a `latest` pointer's text names, re-rendered from its parsed form
/// (so it can only be a plain `step-*` entry of the root), or `None` for any other text.
pub(crate) fn parse_pointer(text: &str) -> Option<String> {
    StepName::parse(text.trim()).map(StepName::name)
}

/// The newest complete checkpoint under `root`: the one `latest` names, or, when the pointer is
/// missing or names no complete directory, the highest step directory. `None` when there is
/// no step directory.
pub fn find_latest(root: &Path) -> Option<PathBuf> {
    let complete = |name: &String| root.join(name).join(MANIFEST_FILE).is_file();
    let pointed = fs::read_to_string(root.join(LATEST_FILE))
        .ok()
        .and_then(|text| parse_pointer(&text));
    if let Some(name) = pointed.filter(complete) {
        return Some(root.join(name));
    }
    let dirs = step_dirs(root).ok()?;
    dirs.into_iter()
        .rev()
        .map(StepName::name)
        .find(complete)
        .map(|name| root.join(name))
}

/// The checkpoint directory to load for `path`: the newest save under a root, or `path` itself
/// when it holds a checkpoint's files directly (one step directory, or the single-directory
/// layout of weft before step directories, which loads as it is).
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if let Some(dir) = find_latest(path) {
        return Ok(dir);
    }
    if path.join(MANIFEST_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    let why = if path.is_dir() {
        "no checkpoint here: no step-* directory with a weft.json, and no weft.json (not saved \
         by weft, or every save was interrupted before it completed)"
    } else {
        "no such directory"
    };
    Err(Error::Checkpoint {
        path: path.display().to_string(),
        message: why.into(),
    })
}

/// Check before a long run that checkpoints can be written under `root`: it is created if
/// missing and a probe file is written and removed, so an unwritable place fails before step 1
/// rather than after the last.
pub fn check_writable(root: &Path) -> Result<()> {
    let fail = |p: &Path, e: std::io::Error| Error::Io {
        path: p.display().to_string(),
        message: format!("checkpoints cannot be written here: {e}"),
    };
    fs::create_dir_all(root).map_err(|e| fail(root, e))?;
    let probe = writers::temp_entry(root);
    File::create(&probe).map_err(|e| fail(root, e))?;
    fs::remove_file(&probe).map_err(|e| fail(&probe, e))
}

/// Flush a directory's entries (POSIX makes a rename durable only then); elsewhere a no-op.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir.display().to_string(), e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
#[path = "steps_tests.rs"]
mod tests;
