//! Core errors -> JS errors. A thrown JS error's `code` is `Error::code()` (`WEFT_SHAPE`, ...)
//! and its message is the core's Display text; the TS layer maps codes to typed classes.
//!
//! Every entry point runs its body through `guard`, which also turns a Rust panic into a
//! `WEFT_INTERNAL` error, so no panic ever unwinds into Node.

use napi::bindgen_prelude::{Env, JsError, Unknown};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The status type of our napi errors: napi-rs puts it in the JS error's `code` property.
pub struct Code(pub String);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What every synchronous `#[napi]` entry point returns. Named `Result` because napi-derive
/// recognises a fallible return type by that last path segment: write it as `js::Result<T>`.
pub type Result<T> = std::result::Result<T, napi::Error<Code>>;

/// A core error as a napi error carrying its stable code.
pub fn to_js(e: weft_core::Error) -> napi::Error<Code> {
    napi::Error::new(Code(e.code().to_string()), e.to_string())
}

/// A panic payload as a core internal error.
pub fn panic_error(payload: Box<dyn std::any::Any + Send>) -> weft_core::Error {
    let msg = weft_core::error::panic_message(payload.as_ref());
    weft_core::Error::internal(format!("panic: {msg}"))
}

/// Run `f`, catching panics; a panic becomes `WEFT_INTERNAL`.
pub fn catch<T>(f: impl FnOnce() -> weft_core::Result<T>) -> weft_core::Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(panic_error(p)))
}

/// The body of a synchronous entry point: core errors and panics become coded JS errors.
pub fn guard<T>(f: impl FnOnce() -> weft_core::Result<T>) -> Result<T> {
    catch(f).map_err(to_js)
}

/// For `Task::resolve`: the rejection value of a failed async task. napi-rs tasks reject with
/// `napi::Error<Status>`, whose `code` would be a napi status; so the coded JS error object is
/// created here on the JS thread and handed back by reference, which napi-rs rejects with
/// verbatim. `from_unknown_without_coercion` keeps the object itself on every target; the plain
/// `From<Unknown>` keeps only its message on WASM, which would drop the code.
pub fn reject(env: &Env, e: weft_core::Error) -> napi::Error {
    let value: Unknown<'_> = JsError::from(to_js(e)).into_unknown(*env);
    napi::Error::from_unknown_without_coercion(value)
}
