//! `data.json`, the manifest `weft data prepare` writes next to its shards: which tokenizer made
//! them, the vocabulary, every shard with its split, token count and SHA-256, and one hash of the
//! whole data set (over the shards' hashes in order), so a run can name exactly what it read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::tokenizer::Tokenizer;
use crate::error::{Error, Result};

/// The manifest's file name inside a prepared directory.
pub const FILE_NAME: &str = "data.json";
/// The `format` field: bumped if the manifest's meaning changes.
pub const FORMAT: &str = "weft-data/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    /// Relative to the manifest's directory.
    pub path: String,
    /// `train` or `val`.
    pub split: String,
    pub tokens: u64,
    /// SHA-256 of the token bytes after the 1024-byte header.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub tokenizer: String,
    pub vocab_size: usize,
    /// The id between documents; `None` for the byte tokenizer, which has none.
    pub end_of_text: Option<u32>,
    /// llm.c `.bin` version of the shards (1: u16 tokens).
    pub bin_version: i32,
    /// The input files, as given.
    pub sources: Vec<String>,
    pub documents: u64,
    pub shards: Vec<Shard>,
    pub sha256: String,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        message: message.into(),
    }
}

impl Manifest {
    /// Read and check a manifest: known format and tokenizer, matching vocabulary size.
    pub fn open(path: &Path) -> Result<Manifest> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| bad(path, format!("not a weft data manifest: {e}")))?;
        if m.format != FORMAT {
            let msg = format!("manifest format '{}' (this build reads {FORMAT})", m.format);
            return Err(bad(path, msg));
        }
        let tok = Tokenizer::by_name(&m.tokenizer).map_err(|e| bad(path, e.to_string()))?;
        if tok.vocab_size() != m.vocab_size {
            let msg = format!(
                "vocab_size {} does not match tokenizer {} ({})",
                m.vocab_size,
                m.tokenizer,
                tok.vocab_size()
            );
            return Err(bad(path, msg));
        }
        Ok(m)
    }

    /// Paths of the shards of `split`, resolved against the manifest's directory `dir`.
    pub fn shard_paths(&self, dir: &Path, split: &str) -> Vec<PathBuf> {
        self.shards
            .iter()
            .filter(|s| s.split == split)
            .map(|s| dir.join(&s.path))
            .collect()
    }

    /// Tokens in `split`.
    pub fn tokens(&self, split: &str) -> u64 {
        self.shards
            .iter()
            .filter(|s| s.split == split)
            .map(|s| s.tokens)
            .sum()
    }
}
