//! `weft data prepare`: text or JSON Lines files tokenized in parallel into llm.c `.bin` shards
//! (version 1, u16: every tokenizer weft ships fits), a validation split in shards of its own,
//! and the `data.json` manifest. Streaming: a bounded batch of text (`BATCH_BYTES`) is read,
//! tokenized on all cores, written in input order, then the next; memory does not grow with the
//! corpus.

mod input;
mod shards;

pub use input::Format;

use std::path::PathBuf;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use self::input::{Reader, Unit};
use self::shards::{SplitWriter, hex};
use super::manifest::{self, Manifest};
use super::tokenizer::Tokenizer;
use super::tokens::VERSION;
use crate::checkpoint::atomic;
use crate::error::{Error, Result};

/// Text tokenized per parallel batch: 64 one-megabyte pieces keep 16+ cores busy.
const BATCH_BYTES: usize = 64 * input::PIECE_BYTES;

/// What to prepare and how.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub inputs: Vec<PathBuf>,
    pub out_dir: PathBuf,
    pub tokenizer: Tokenizer,
    /// JSON Lines key holding the document (`--field`, default `text`).
    pub field: String,
    /// Share of tokens that go to the `val` split, in [0, 1).
    pub val_fraction: f64,
    /// Tokens per shard (llm.c's FineWeb uses 1e8).
    pub shard_tokens: u64,
}

/// Where a run is, after each batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub tokens: u64,
}

fn config(key: &str, message: String) -> Error {
    Error::config(key, message)
}

fn check(o: &PrepareOptions) -> Result<u64> {
    if o.inputs.is_empty() {
        return Err(config("inputs", "no input files given".into()));
    }
    if !(0.0..1.0).contains(&o.val_fraction) {
        let m = format!("--val-fraction must be in [0, 1), got {}", o.val_fraction);
        return Err(config("val-fraction", m));
    }
    let mut total = 0;
    for p in &o.inputs {
        let meta = std::fs::metadata(p).map_err(|e| Error::io(p.display().to_string(), e))?;
        total += meta.len();
    }
    std::fs::create_dir_all(&o.out_dir)
        .map_err(|e| Error::io(o.out_dir.display().to_string(), e))?;
    Ok(total)
}

/// Tokenizes every input into shards under `out_dir` and writes `data.json`; `progress` is
/// called after each batch (from the calling thread); its error stops the run.
pub fn prepare(
    o: &PrepareOptions,
    progress: &mut dyn FnMut(Progress) -> Result<()>,
) -> Result<Manifest> {
    let mut p = Progress {
        bytes_total: check(o)?,
        ..Progress::default()
    };
    let mut split = Splitter::new(o);
    let mut documents = 0;
    for path in &o.inputs {
        let mut reader = Reader::open(path, Format::for_path(path, &o.field))?;
        loop {
            let batch = read_batch(&mut reader)?;
            if batch.is_empty() {
                break;
            }
            p.bytes_done += batch.iter().map(|u| u.text.len() as u64).sum::<u64>();
            documents += batch.iter().filter(|u| u.ends_document).count() as u64;
            for tokens in tokenize(o.tokenizer, &batch) {
                p.tokens += tokens.len() as u64;
                split.write(&tokens)?;
            }
            progress(p)?;
        }
    }
    let manifest = split.finish(o, documents)?;
    let json = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::internal(format!("manifest: {e}")))?;
    atomic::write_atomic(&o.out_dir.join(manifest::FILE_NAME), json.as_bytes())?;
    Ok(manifest)
}

fn read_batch(reader: &mut Reader) -> Result<Vec<Unit>> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while bytes < BATCH_BYTES {
        match reader.next_unit()? {
            Some(u) => {
                bytes += u.text.len().max(1);
                batch.push(u);
            }
            None => break,
        }
    }
    Ok(batch)
}

/// Each unit's tokens, in input order, with the end-of-text id after a document's last unit.
fn tokenize(tok: Tokenizer, batch: &[Unit]) -> Vec<Vec<u32>> {
    batch
        .par_iter()
        .map(|u| {
            let mut t = tok.encode(&u.text);
            if let (true, Some(eot)) = (u.ends_document, tok.end_of_text()) {
                t.push(eot);
            }
            t
        })
        .collect()
}

/// Routes whole units (documents, or 1 MB pieces of a text file) to `train` or `val`: a unit goes
/// to val when val is behind its share of the tokens so far by at least half the unit, so val
/// holds about `val_fraction` of the tokens, spread over the corpus rather than taken from its
/// end, and no document is split between the two.
struct Splitter {
    train: SplitWriter,
    val: SplitWriter,
    fraction: f64,
    written: [u64; 2],
}

impl Splitter {
    fn new(o: &PrepareOptions) -> Splitter {
        Splitter {
            train: SplitWriter::new(&o.out_dir, "train", o.shard_tokens),
            val: SplitWriter::new(&o.out_dir, "val", o.shard_tokens),
            fraction: o.val_fraction,
            written: [0, 0],
        }
    }

    fn write(&mut self, tokens: &[u32]) -> Result<()> {
        let n = tokens.len() as u64;
        let total = (self.written[0] + self.written[1] + n) as f64;
        let to_val =
            (self.written[1] + n / 2) as f64 <= self.fraction * total && self.fraction > 0.0;
        let (w, i) = if to_val {
            (&mut self.val, 1)
        } else {
            (&mut self.train, 0)
        };
        self.written[i] += tokens.len() as u64;
        w.write(tokens)
    }

    fn finish(self, o: &PrepareOptions, documents: u64) -> Result<Manifest> {
        let [train, val] = self.written;
        let units = "units are documents, or 1 MB pieces of a text file";
        if train == 0 || (val == 0 && self.fraction > 0.0) {
            let m = format!(
                "{train} train and {val} val tokens: --val-fraction {} cannot be met with whole \
                 units ({units}); give more or smaller documents, or another --val-fraction",
                self.fraction
            );
            return Err(Error::Data {
                path: o.out_dir.display().to_string(),
                message: m,
            });
        }
        let mut shards = self.train.finish()?;
        shards.extend(self.val.finish()?);
        let mut h = Sha256::new();
        shards.iter().for_each(|s| h.update(s.sha256.as_bytes()));
        Ok(Manifest {
            format: manifest::FORMAT.into(),
            tokenizer: o.tokenizer.name().into(),
            vocab_size: o.tokenizer.vocab_size(),
            end_of_text: o.tokenizer.end_of_text(),
            bin_version: VERSION,
            sources: o.inputs.iter().map(|p| p.display().to_string()).collect(),
            documents,
            shards,
            sha256: hex(&h.finalize()),
        })
    }
}
