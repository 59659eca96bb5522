//! Crash-safe file replacement. A reader must only ever see the old file or the complete new
//! one, so bytes go to a temp file in the same directory (same filesystem, so `rename` is atomic),
//! are fsynced, and only then renamed over the target.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The temp name used while `path` is being replaced: `path.tmp-<pid>`. The pid keeps two
/// processes saving to the same place from clobbering each other's half-written files.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp-{}", process_id()));
    path.with_file_name(name)
}

/// This process's id; 0 on WASI, which has no pids (`std::process::id` panics there) and where
/// the instance is the only writer its sandbox sees.
pub fn process_id() -> u32 {
    #[cfg(target_os = "wasi")]
    return 0;
    #[cfg(not(target_os = "wasi"))]
    std::process::id()
}

/// Write `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = stage(path, bytes)?;
    commit(&tmp, path)
}

/// First half of an atomic write: the complete, fsynced temp file. Returns its path; the caller
/// must `commit` or `discard` it. Splitting the halves lets a multi-file save stage everything
/// before replacing anything.
pub fn stage(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = temp_path(path);
    stage_at(&tmp, bytes)?;
    Ok(tmp)
}

/// `stage` under a temp name the caller chose (e.g. one that records its writer).
pub fn stage_at(tmp: &Path, bytes: &[u8]) -> Result<()> {
    let written = File::create(tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        discard(tmp);
        return Err(Error::io(tmp.display().to_string(), e));
    }
    Ok(())
}

/// Second half: rename the staged file over `path` and make the rename itself durable.
pub fn commit(tmp: &Path, path: &Path) -> Result<()> {
    if let Err(e) = fs::rename(tmp, path) {
        discard(tmp);
        return Err(Error::io(path.display().to_string(), e));
    }
    sync_parent(path)
}

/// Remove a staged file that will not be committed. Best effort: it may never have been created.
pub fn discard(tmp: &Path) {
    let _ = fs::remove_file(tmp);
}

/// A rename is only durable once the directory entry is flushed (POSIX); other systems cannot
/// open a directory as a file, and there the rename is as durable as the OS makes it.
fn sync_parent(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir.display().to_string(), e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// A fresh, empty directory under the system temp dir, unique per process, call and time.
#[cfg(test)]
pub(crate) fn unique_temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "weft-test-{tag}-{}-{n}-{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = unique_temp_dir("atomic");
        let path = dir.join("f.bin");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new contents").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new contents");
        assert!(!temp_path(&path).exists());
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.bin")]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn temp_path_is_a_sibling_named_with_the_pid() {
        let tmp = temp_path(Path::new("/a/b/model.safetensors"));
        let expected = format!("/a/b/model.safetensors.tmp-{}", std::process::id());
        assert_eq!(tmp, PathBuf::from(expected));
    }

    #[test]
    fn failed_stage_keeps_the_old_file() {
        let dir = unique_temp_dir("atomic-fail");
        let path = dir.join("f.bin");
        write_atomic(&path, b"old").unwrap();
        // A directory squatting on the temp name makes creating the temp file fail.
        fs::create_dir(temp_path(&path)).unwrap();
        let err = write_atomic(&path, b"new").unwrap_err();
        assert_eq!(err.code(), "WEFT_IO");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        fs::remove_dir_all(dir).unwrap();
    }
}
