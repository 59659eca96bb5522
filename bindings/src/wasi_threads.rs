//! The non-threaded WASM build (`wasm32-wasip1`) has no threads, yet std's thread code links
//! against the pthread entry points and wasi-libc's non-threaded `libc.a` does not define them.
//! Left undefined they become JS imports and the module fails to instantiate. These definitions
//! refuse every spawn with `ENOTSUP`, which std turns into `io::ErrorKind::Unsupported`: rayon
//! then runs its pool on the calling thread, and weft's own spawns fail with a typed error.

use std::ffi::{c_int, c_void};

/// wasi's `ENOTSUP` (`__WASI_ERRNO_NOTSUP`).
const ENOTSUP: c_int = 58;

#[unsafe(no_mangle)]
extern "C" fn pthread_create(
    _thread: *mut c_void,
    _attr: *const c_void,
    _start: Option<extern "C" fn(*mut c_void) -> *mut c_void>,
    _arg: *mut c_void,
) -> c_int {
    ENOTSUP
}

/// Unreachable in practice: no thread was ever created to join or detach.
#[unsafe(no_mangle)]
extern "C" fn pthread_join(_thread: *mut c_void, _result: *mut *mut c_void) -> c_int {
    ENOTSUP
}

#[unsafe(no_mangle)]
extern "C" fn pthread_detach(_thread: *mut c_void) -> c_int {
    ENOTSUP
}
