//! Streaming shard writer: tokens go straight to disk, a shard is closed (its header's count
//! written, fsynced, renamed into place) once it holds `shard_tokens`, so memory never grows with
//! the corpus.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::super::manifest::Shard;
use super::super::tokens::header;
use crate::checkpoint::atomic::{self, temp_path};
use crate::error::{Error, Result};

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::io(path.display().to_string(), e)
}

/// The open shard: its temp file, the tokens written so far and their running hash.
struct Open {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    tokens: u64,
    hash: Sha256,
}

/// Writes one split (`train` or `val`) as `<split>_000000.bin`, `<split>_000001.bin`, ...
pub struct SplitWriter {
    dir: PathBuf,
    split: &'static str,
    shard_tokens: u64,
    open: Option<Open>,
    pub done: Vec<Shard>,
}

impl SplitWriter {
    pub fn new(dir: &Path, split: &'static str, shard_tokens: u64) -> SplitWriter {
        SplitWriter {
            dir: dir.to_path_buf(),
            split,
            shard_tokens: shard_tokens.max(1),
            open: None,
            done: Vec::new(),
        }
    }

    /// Appends tokens (all < 65536: version-1 shards), starting new shards as they fill.
    pub fn write(&mut self, mut tokens: &[u32]) -> Result<()> {
        while !tokens.is_empty() {
            let open = match self.open.take() {
                Some(o) => o,
                None => self.start()?,
            };
            let room = (self.shard_tokens - open.tokens) as usize;
            let (now, rest) = tokens.split_at(room.min(tokens.len()));
            let open = append(open, now)?;
            tokens = rest;
            if open.tokens == self.shard_tokens {
                self.done.push(self.close(open)?);
            } else {
                self.open = Some(open);
            }
        }
        Ok(())
    }

    fn start(&self) -> Result<Open> {
        let name = format!("{}_{:06}.bin", self.split, self.done.len());
        let path = self.dir.join(name);
        let tmp = temp_path(&path);
        let mut out = BufWriter::new(File::create(&tmp).map_err(|e| io(&tmp, e))?);
        // The count is patched in on close; a zero-count header keeps the file parseable.
        out.write_all(&header(&path, 0)?).map_err(|e| io(&tmp, e))?;
        Ok(Open {
            path,
            tmp,
            out,
            tokens: 0,
            hash: Sha256::new(),
        })
    }

    /// Closes the last, partly filled shard; returns every shard written.
    pub fn finish(mut self) -> Result<Vec<Shard>> {
        if let Some(open) = self.open.take() {
            let shard = self.close(open)?;
            self.done.push(shard);
        }
        Ok(self.done)
    }

    fn close(&self, open: Open) -> Result<Shard> {
        let Open {
            path,
            tmp,
            out,
            tokens,
            hash,
        } = open;
        let head = header(&path, tokens as usize)?;
        let mut file = out.into_inner().map_err(|e| io(&tmp, e.into_error()))?;
        let patched = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&head))
            .and_then(|_| file.sync_all());
        if let Err(e) = patched {
            atomic::discard(&tmp);
            return Err(io(&tmp, e));
        }
        atomic::commit(&tmp, &path)?;
        Ok(Shard {
            path: path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into(),
            split: self.split.into(),
            tokens,
            sha256: hex(&hash.finalize()),
        })
    }
}

fn append(mut open: Open, tokens: &[u32]) -> Result<Open> {
    let mut bytes = Vec::with_capacity(tokens.len() * 2);
    for &t in tokens {
        // The tokenizers weft ships all fit u16; a wider one would need llm.c's version 2.
        let t = u16::try_from(t).map_err(|_| {
            Error::internal(format!("token {t} does not fit a version-1 (u16) shard"))
        })?;
        bytes.extend_from_slice(&t.to_le_bytes());
    }
    open.out.write_all(&bytes).map_err(|e| io(&open.tmp, e))?;
    open.hash.update(&bytes);
    open.tokens += tokens.len() as u64;
    Ok(open)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
