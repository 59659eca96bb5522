//! Temp entries of a checkpoint root and the writers that own them. A save stages everything
//! under `.weft-tmp-<pid>-<n>@<host>`; a writer killed mid-save leaves that entry behind, and
//! the next save on the same host removes it once its pid is no longer alive. Entries of live
//! writers, of other hosts (a shared filesystem) or of unknown hosts are never touched.

use std::fs;
use std::path::{Path, PathBuf};

use super::atomic;
use crate::error::{Error, Result};

const TEMP_PREFIX: &str = ".weft-tmp-";

/// A fresh temp name in `root`, unique per process, call and time.
pub fn temp_entry(root: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let host = host_name().unwrap_or_else(|| "unknown".into());
    root.join(format!(
        "{TEMP_PREFIX}{}-{nanos:x}{n:x}@{host}",
        atomic::process_id()
    ))
}

/// The writer (pid, host) that a temp entry's name records.
fn owner(name: &str) -> Option<(u32, &str)> {
    let (id, host) = name.strip_prefix(TEMP_PREFIX)?.split_once('@')?;
    let pid = id.split_once('-')?.0.parse().ok()?;
    Some((pid, host))
}

/// Remove the temp entries in `root` left by writers on this host that are no longer running.
/// Returns how many were removed.
pub fn remove_dead(root: &Path) -> Result<usize> {
    let Some(host) = host_name() else {
        return Ok(0);
    };
    let mut removed = 0;
    for name in entry_names(root)? {
        let Some((pid, h)) = owner(&name) else {
            continue;
        };
        if h != host || pid == atomic::process_id() || is_alive(pid) {
            continue;
        }
        remove_entry(&root.join(&name))?;
        removed += 1;
    }
    Ok(removed)
}

/// The names of `root`'s entries (non-UTF-8 names are no entry of weft's).
pub fn entry_names(root: &Path) -> Result<Vec<String>> {
    let io = |e| Error::io(root.display().to_string(), e);
    let mut names = Vec::new();
    for entry in fs::read_dir(root).map_err(io)? {
        if let Ok(name) = entry.map_err(io)?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Remove a file or a whole directory.
pub fn remove_entry(path: &Path) -> Result<()> {
    let removed = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(path.display().to_string(), e))
        }
        _ => Ok(()),
    }
}

/// This machine's name, as the kernel reports it; `None` where it cannot be read (then no
/// writer's liveness can be judged and nothing is removed).
fn host_name() -> Option<String> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Whether process `pid` runs on this host: it has a `/proc` entry and is not a zombie (a
/// killed writer its parent has not reaped yet wrote its last byte already).
fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_none_or(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::atomic::unique_temp_dir;

    #[test]
    fn temp_names_record_their_writer() {
        let root = Path::new("/ck");
        let name = temp_entry(root)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with(TEMP_PREFIX));
        let (pid, host) = owner(&name).unwrap();
        assert_eq!(pid, std::process::id());
        assert_eq!(Some(host.to_string()), host_name());
        assert_ne!(temp_entry(root), temp_entry(root));
    }

    #[test]
    fn only_dead_writers_entries_are_removed() {
        let root = unique_temp_dir("writers");
        let host = host_name().unwrap();
        // A child that has exited and been reaped: its pid is dead.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let dead_dir = root.join(format!("{TEMP_PREFIX}{dead}-1@{host}"));
        fs::create_dir(&dead_dir).unwrap();
        fs::write(dead_dir.join("model.safetensors"), b"half").unwrap();
        fs::write(root.join(format!("{TEMP_PREFIX}{dead}-2@{host}")), b"x").unwrap();
        let keep = [
            format!("{TEMP_PREFIX}{}-3@{host}", std::process::id()),
            format!("{TEMP_PREFIX}1-4@{host}"),
            format!("{TEMP_PREFIX}{dead}-5@another-host"),
            "step-00000001".to_string(),
        ];
        keep.iter()
            .for_each(|k| fs::create_dir(root.join(k)).unwrap());
        assert_eq!(remove_dead(&root).unwrap(), 2);
        let mut left = entry_names(&root).unwrap();
        left.sort();
        let mut want = keep.to_vec();
        want.sort();
        assert_eq!(left, want);
        fs::remove_dir_all(root).unwrap();
    }
}
