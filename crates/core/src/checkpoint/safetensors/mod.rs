//! The safetensors format, on top of the `safetensors` crate (the reference implementation): an 8-byte
//! little-endian header length N, N bytes of JSON `{name: {dtype, shape, data_offsets}, ...,
//! "__metadata__": {string: string}}`, then the raw little-endian data buffer. Offsets are
//! relative to the buffer. The reader is as strict as the reference implementation (tensors must
//! tile the buffer exactly), because a lenient reader would load a corrupt file silently.
//!
//! `read` validates and decodes (widening f16/bf16 to f32); `write` serializes and replaces the
//! target atomically.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::Error;
use crate::tensor::HostData;

mod read;
mod write;

pub use read::{parse, read};
pub use write::{to_bytes, write};

/// One named tensor: row-major data with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: HostData,
}

impl TensorEntry {
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: HostData) -> TensorEntry {
        TensorEntry {
            name: name.into(),
            shape,
            data,
        }
    }
}

/// A whole safetensors file: tensors in buffer order, plus the free-form string metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SafeTensors {
    pub tensors: Vec<TensorEntry>,
    pub metadata: BTreeMap<String, String>,
}

impl SafeTensors {
    pub fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.iter().find(|t| t.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }
}

/// The key the format reserves for metadata; it can never name a tensor.
pub const METADATA_KEY: &str = "__metadata__";

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// A file with a hand-written header, for tests of exact bytes and malformed cases.
#[cfg(test)]
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}
