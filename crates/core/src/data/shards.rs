//! Many shards: `--data` resolved to a shard list (a file, a comma-separated list, a glob, or a
//! prepared directory / its `data.json`), and a loader that draws batches from all of them in a
//! seeded order. Each epoch visits the shards in a shuffled order; inside a shard the batch
//! windows (B*T+1 tokens, B*T apart, as llm.c's) start at a random shift and are visited in a
//! shuffled order. Everything is a pure function of (seed, epoch, shard), so the position is
//! three integers and a resumed run continues exactly.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::manifest::{self, Manifest};
use super::scan::check_token_range;
use super::tokens::{TokenBatch, TokenFile, token_count};
use crate::error::{Error, Result};
use crate::rng::mix64;

/// `--data` resolved: the training shards and, for a prepared directory, its manifest.
#[derive(Debug, Clone)]
pub struct DataSet {
    pub shards: Vec<PathBuf>,
    pub manifest: Option<Manifest>,
}

fn data_err(path: &str, message: impl Into<String>) -> Error {
    Error::Data {
        path: path.into(),
        message: message.into(),
    }
}

impl DataSet {
    /// Resolves `spec`: a directory or `.json` is a manifest (its `train` shards), a spec with
    /// `*`, `?` or `[` a glob (sorted), one with commas a list, anything else one file.
    pub fn resolve(spec: &str) -> Result<DataSet> {
        let path = Path::new(spec);
        if path.is_dir() || spec.ends_with(".json") {
            let file = if path.is_dir() {
                path.join(manifest::FILE_NAME)
            } else {
                path.into()
            };
            let m = Manifest::open(&file)?;
            let dir = file.parent().unwrap_or(Path::new("."));
            let shards = m.shard_paths(dir, "train");
            return DataSet::checked(spec, shards, Some(m));
        }
        let shards = if spec.contains(['*', '?', '[']) {
            glob_paths(spec)?
        } else {
            spec.split(',')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        };
        DataSet::checked(spec, shards, None)
    }

    fn checked(spec: &str, shards: Vec<PathBuf>, manifest: Option<Manifest>) -> Result<DataSet> {
        if shards.is_empty() {
            return Err(data_err(spec, "names no shard files"));
        }
        Ok(DataSet { shards, manifest })
    }

    /// A model must have room for every id the data holds: an error before step 1, naming both.
    /// A manifest's vocabulary is compared first; then every shard is scanned (in parallel,
    /// the first failing shard in order reported) for its first token out of range.
    pub fn check_vocab(&self, model_vocab: usize) -> Result<()> {
        match &self.manifest {
            Some(m) if model_vocab < m.vocab_size => Err(Error::config(
                "vocab",
                format!(
                    "the model's vocabulary ({model_vocab}) is smaller than the data's \
                     ({} ids, tokenizer {}): give --vocab {} or more",
                    m.vocab_size, m.tokenizer, m.vocab_size
                ),
            )),
            _ => {
                use rayon::prelude::*;
                let scans: Vec<Result<()>> = self
                    .shards
                    .par_iter()
                    .map(|s| check_token_range(s, model_vocab))
                    .collect();
                scans.into_iter().collect()
            }
        }
    }
}

fn glob_paths(pattern: &str) -> Result<Vec<PathBuf>> {
    let paths = glob::glob(pattern).map_err(|e| data_err(pattern, format!("bad glob: {e}")))?;
    let mut out = Vec::new();
    for p in paths {
        out.push(p.map_err(|e| data_err(pattern, e.to_string()))?);
    }
    out.sort();
    Ok(out)
}

/// Where a `ShardLoader` is: the epoch, the index into that epoch's shard order, and the index
/// into the current shard's window order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    pub epoch: u64,
    pub shard: usize,
    pub window: usize,
}

/// The seeded many-shard loader. Only the current shard is in memory.
#[derive(Debug)]
pub struct ShardLoader {
    shards: Vec<PathBuf>,
    counts: Vec<usize>,
    seed: u64,
    b: usize,
    t: usize,
    state: LoaderState,
    current: Option<(usize, TokenFile)>,
}

/// Fisher-Yates driven by (key, i): the same permutation on every machine.
fn permutation(n: usize, key: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (mix64(key ^ mix64(i as u64)) % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

impl ShardLoader {
    /// Reads only the shards' headers; a shard too short for one batch is skipped by the
    /// order, but if all are, the error names the largest.
    pub fn new(shards: Vec<PathBuf>, seed: u64, b: usize, t: usize) -> Result<ShardLoader> {
        let need =
            b.checked_mul(t).filter(|&n| n > 0).ok_or_else(|| {
                Error::batch(format!("B and T must be positive, got B={b}, T={t}"))
            })? + 1;
        let counts = shards
            .iter()
            .map(|p| token_count(p))
            .collect::<Result<Vec<_>>>()?;
        let (max, at) = counts
            .iter()
            .zip(&shards)
            .max_by_key(|(c, _)| **c)
            .unwrap_or((&0, &shards[0]));
        if *max < need {
            let m = format!(
                "the largest of {} shards has {max} tokens, fewer than the B*T+1 = {need} one \
                 batch needs (B={b}, T={t})",
                shards.len()
            );
            return Err(data_err(&at.display().to_string(), m));
        }
        let state = LoaderState::default();
        Ok(ShardLoader {
            shards,
            counts,
            seed,
            b,
            t,
            state,
            current: None,
        })
    }

    pub fn state(&self) -> LoaderState {
        self.state
    }

    /// Resume where a saved run stopped.
    pub fn set_state(&mut self, state: LoaderState) -> Result<()> {
        if state.shard > self.shards.len() {
            let m = format!(
                "saved shard index {} but only {} shards",
                state.shard,
                self.shards.len()
            );
            return Err(data_err("loader state", m));
        }
        self.state = state;
        Ok(())
    }

    /// Total tokens over the shards.
    pub fn token_count(&self) -> usize {
        self.counts.iter().sum()
    }

    fn key(&self, shard: Option<usize>) -> u64 {
        let s = shard.map_or(u64::MAX, |s| s as u64);
        mix64(self.seed ^ mix64(self.state.epoch ^ mix64(s)))
    }

    /// (shift, windows) of shard `s` this epoch.
    fn grid(&self, s: usize) -> (usize, usize) {
        let n = self.b * self.t;
        let len = self.counts[s];
        if len <= n {
            return (0, 0);
        }
        let shift = (self.key(Some(s)) >> 32) as usize % n;
        let shift = if (len - 1 - shift) / n == 0 { 0 } else { shift };
        (shift, (len - 1 - shift) / n)
    }

    pub fn next_batch(&mut self) -> Result<TokenBatch> {
        loop {
            if self.state.shard >= self.shards.len() {
                self.state = LoaderState {
                    epoch: self.state.epoch + 1,
                    shard: 0,
                    window: 0,
                };
            }
            let s = permutation(self.shards.len(), self.key(None))[self.state.shard];
            let (shift, windows) = self.grid(s);
            if self.state.window >= windows {
                self.state.shard += 1;
                self.state.window = 0;
                continue;
            }
            let w = permutation(windows, self.key(Some(s)))[self.state.window];
            self.state.window += 1;
            return self.window(s, shift + w * self.b * self.t);
        }
    }

    fn window(&mut self, s: usize, start: usize) -> Result<TokenBatch> {
        if self.current.as_ref().is_none_or(|(c, _)| *c != s) {
            self.current = Some((s, TokenFile::open(&self.shards[s])?));
        }
        let n = self.b * self.t;
        let tokens = &self
            .current
            .as_ref()
            .map(|(_, f)| f.tokens())
            .unwrap_or_default()[start..start + n + 1];
        Ok(TokenBatch {
            inputs: tokens[..n].iter().map(|&x| i32::from(x)).collect(),
            targets: tokens[1..].iter().map(|&x| i32::from(x)).collect(),
            shape: [self.b, self.t],
        })
    }
}

#[cfg(test)]
mod tests;
