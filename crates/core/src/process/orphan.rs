//! A launched rank dies with its launcher. `weft launch` hands every child one end of a pipe
//! (`WEFT_LAUNCHER_FD`) and never writes to it; the kernel closes the launcher's end however the
//! launcher ends (`kill -9` included), so a thread blocked reading the child's end sees end of
//! file and stops the process. No polling, no process-id reuse, any Unix.

use crate::error::Result;

/// Stop this process when the launcher's pipe `fd` closes. Started once per process; a second
/// call (a second trainer) does nothing.
#[cfg(unix)]
pub(super) fn exit_with_launcher(fd: i32, rank: usize) -> Result<()> {
    use crate::error::Error;
    use std::fs::File;
    use std::io::Read;
    use std::mem::ManuallyDrop;
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::io::FromRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};

    static WATCHING: AtomicBool = AtomicBool::new(false);
    if WATCHING.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let bad =
        |why: String| Error::config("WEFT_LAUNCHER_FD", format!("WEFT_LAUNCHER_FD={fd}: {why}"));
    // SAFETY: `weft launch` opened this descriptor for us and nothing else owns it;
    // `ManuallyDrop` never closes it, so no other owner can be disturbed.
    let pipe = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    let kind = pipe
        .metadata()
        .map_err(|e| bad(format!("not an open descriptor: {e}")))?
        .file_type();
    if !(kind.is_socket() || kind.is_fifo()) {
        return Err(bad("not the launcher's pipe".into()));
    }
    std::thread::Builder::new()
        .name("weft-launcher-watch".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            loop {
                match (&*pipe).read(&mut buf) {
                    Ok(0) => break,
                    Err(e) if e.kind() != std::io::ErrorKind::Interrupted => break,
                    _ => {}
                }
            }
            eprintln!("weft: rank {rank}: its launcher (weft launch) is gone; exiting");
            std::process::exit(1);
        })
        .map(|_| ())
        .map_err(|e| bad(format!("cannot start the watching thread: {e}")))
}

/// Elsewhere the launcher's children are not watched (documented).
#[cfg(not(unix))]
pub(super) fn exit_with_launcher(_fd: i32, _rank: usize) -> Result<()> {
    Ok(())
}
