//! `NativeEventWriter`: TensorBoard event files (`weft_core::summary`) for the TS layer's
//! training loop and `m.summary` values.

use crate::error::{self as js, guard};
use napi::bindgen_prelude::Float32Array;
use std::path::Path;
use weft_core::summary::EventWriter;

/// An event file in a log directory.
#[napi]
pub struct NativeEventWriter {
    inner: EventWriter,
}

#[napi]
impl NativeEventWriter {
    /// Creates `dir` if needed and a new event file in it.
    #[napi(constructor)]
    pub fn new(dir: String) -> js::Result<Self> {
        guard(|| {
            Ok(NativeEventWriter {
                inner: EventWriter::create(Path::new(&dir))?,
            })
        })
    }

    /// The event file's path.
    #[napi]
    pub fn path(&self) -> String {
        self.inner.path().display().to_string()
    }

    /// Scalars of one step: `tags[i]` has `values[i]`.
    #[napi]
    pub fn scalars(&mut self, step: i64, tags: Vec<String>, values: Vec<f64>) -> js::Result<()> {
        guard(|| {
            if tags.len() != values.len() {
                let m = format!("{} scalar tags for {} values", tags.len(), values.len());
                return Err(weft_core::Error::internal(m));
            }
            let pairs: Vec<(String, f32)> = tags
                .into_iter()
                .zip(values.into_iter().map(|v| v as f32))
                .collect();
            self.inner.scalars(step.max(0) as u64, &pairs)
        })
    }

    /// A histogram of `values` at `step`.
    #[napi]
    pub fn histogram(&mut self, step: i64, tag: String, values: Float32Array) -> js::Result<()> {
        guard(|| self.inner.histogram(step.max(0) as u64, &tag, &values))
    }

    #[napi]
    pub fn flush(&mut self) -> js::Result<()> {
        guard(|| self.inner.flush())
    }
}
