//! The checkpoint root's checks the CLI runs itself: which directory a root's newest save is,
//! and whether a root can be written before a long run starts.

use crate::error::{self as js, guard};
use std::path::Path;
use weft_core::checkpoint::steps;

/// The checkpoint directory a `--resume`/`sample` path stands for: the newest complete save
/// under a root of step directories, or the path itself when it holds one checkpoint.
#[napi]
pub fn checkpoint_dir(path: String) -> js::Result<String> {
    guard(|| Ok(steps::resolve(Path::new(&path))?.display().to_string()))
}

/// Creates `root` if missing and errors (WEFT_IO, naming it) unless files can be written there.
#[napi]
pub fn check_checkpoint_root(root: String) -> js::Result<()> {
    guard(|| steps::check_writable(Path::new(&root)))
}
