//! Tokenizers by name, `prepare` (corpus -> shards + data.json), and the many-shard loader with
//! EPL's IO slicing. Thin: every rule lives in `weft_core::data`.

use crate::error::{self as js, guard};
use napi::bindgen_prelude::{Function, Int32Array, Uint32Array};
use std::path::PathBuf;
use weft_core::data::prepare::{PrepareOptions, Progress, prepare};
use weft_core::data::shards::{DataSet, LoaderState, ShardLoader};
use weft_core::data::slicing::{SliceKind, SliceOptions, slice_files};
use weft_core::data::tokenizer::Tokenizer;

/// Tokens of `text` under the tokenizer `name` (`byte` or `gpt2`).
#[napi]
pub fn tokenizer_encode(name: String, text: String) -> js::Result<Uint32Array> {
    guard(|| Ok(Uint32Array::new(Tokenizer::by_name(&name)?.encode(&text))))
}

/// Text of `tokens`; bytes that are not UTF-8 and unknown ids become U+FFFD.
#[napi]
pub fn tokenizer_decode(name: String, tokens: Uint32Array) -> js::Result<String> {
    guard(|| Ok(Tokenizer::by_name(&name)?.decode(&tokens)))
}

#[napi(object)]
pub struct TokenizerInfo {
    pub name: String,
    pub vocab_size: u32,
    pub end_of_text: Option<u32>,
}

#[napi]
pub fn tokenizer_info(name: String) -> js::Result<TokenizerInfo> {
    guard(|| {
        let t = Tokenizer::by_name(&name)?;
        Ok(TokenizerInfo {
            name: t.name().into(),
            vocab_size: t.vocab_size() as u32,
            end_of_text: t.end_of_text(),
        })
    })
}

#[napi(object)]
pub struct JsPrepareOptions {
    pub inputs: Vec<String>,
    pub out_dir: String,
    pub tokenizer: String,
    pub field: String,
    pub val_fraction: f64,
    pub shard_tokens: f64,
}

#[napi(object)]
pub struct JsProgress {
    pub bytes_done: f64,
    pub bytes_total: f64,
    pub tokens: f64,
}

/// Runs `prepare`; `progress` is called after each batch. Resolves to `data.json`'s text.
#[napi]
pub fn prepare_data(
    options: JsPrepareOptions,
    progress: Option<Function<'_, JsProgress, ()>>,
) -> js::Result<String> {
    guard(|| {
        let o = PrepareOptions {
            inputs: options.inputs.iter().map(PathBuf::from).collect(),
            out_dir: options.out_dir.into(),
            tokenizer: Tokenizer::by_name(&options.tokenizer)?,
            field: options.field,
            val_fraction: options.val_fraction,
            shard_tokens: options.shard_tokens as u64,
        };
        let mut report = |p: Progress| {
            let Some(f) = &progress else { return Ok(()) };
            let p = JsProgress {
                bytes_done: p.bytes_done as f64,
                bytes_total: p.bytes_total as f64,
                tokens: p.tokens as f64,
            };
            f.call(p)
                .map_err(|e| weft_core::Error::internal(format!("progress callback: {e}")))
        };
        let m = prepare(&o, &mut report)?;
        serde_json::to_string(&m).map_err(|e| weft_core::Error::internal(e.to_string()))
    })
}

/// `--data` resolved: shard paths and the manifest's text (when a prepared directory).
#[napi(object)]
pub struct DataSetInfo {
    pub shards: Vec<String>,
    pub manifest: Option<String>,
}

#[napi]
pub fn resolve_data(spec: String) -> js::Result<DataSetInfo> {
    guard(|| {
        let d = DataSet::resolve(&spec)?;
        let manifest = d.manifest.as_ref().map(serde_json::to_string).transpose();
        Ok(DataSetInfo {
            shards: d.shards.iter().map(|p| p.display().to_string()).collect(),
            manifest: manifest.map_err(|e| weft_core::Error::internal(e.to_string()))?,
        })
    })
}

/// Errors when the model's vocabulary cannot hold the data's ids.
#[napi]
pub fn check_data_vocab(spec: String, model_vocab: u32) -> js::Result<()> {
    guard(|| DataSet::resolve(&spec)?.check_vocab(model_vocab as usize))
}

#[napi(object)]
pub struct JsSliceOptions {
    pub drop_last_files: bool,
    pub unbalanced: bool,
}

#[napi(object)]
pub struct WorkerShards {
    pub files: Vec<String>,
    /// `sliced`, `too-few-files` or `uneven` (then every worker reads everything).
    pub kind: String,
}

/// EPL's division of `files` for worker `worker` of workers with `local_replicas` each.
#[napi]
pub fn slice_shards(
    files: Vec<String>,
    local_replicas: Vec<u32>,
    worker: u32,
    options: JsSliceOptions,
) -> js::Result<WorkerShards> {
    guard(|| {
        let counts: Vec<usize> = local_replicas.iter().map(|&n| n as usize).collect();
        let o = SliceOptions {
            drop_last_files: options.drop_last_files,
            unbalanced: options.unbalanced,
        };
        let s = slice_files(&files, &counts, worker as usize, o);
        let kind = match s.kind {
            SliceKind::Sliced => "sliced",
            SliceKind::TooFewFiles => "too-few-files",
            SliceKind::Uneven => "uneven",
        };
        Ok(WorkerShards {
            files: s.files,
            kind: kind.into(),
        })
    })
}

#[napi(object)]
pub struct JsLoaderState {
    pub epoch: u32,
    pub shard: u32,
    pub window: u32,
}

#[napi(object)]
pub struct ShardBatch {
    pub inputs: Int32Array,
    pub targets: Int32Array,
}

/// The seeded many-shard loader over explicit shard paths.
#[napi]
pub struct NativeShardLoader {
    inner: ShardLoader,
}

#[napi]
impl NativeShardLoader {
    #[napi(constructor)]
    pub fn new(shards: Vec<String>, seed: u32, batch: u32, seq: u32) -> js::Result<Self> {
        guard(|| {
            let paths = shards.iter().map(PathBuf::from).collect();
            let inner = ShardLoader::new(paths, u64::from(seed), batch as usize, seq as usize)?;
            Ok(NativeShardLoader { inner })
        })
    }

    #[napi]
    pub fn state(&self) -> js::Result<JsLoaderState> {
        guard(|| {
            let s = self.inner.state();
            Ok(JsLoaderState {
                epoch: s.epoch as u32,
                shard: s.shard as u32,
                window: s.window as u32,
            })
        })
    }

    #[napi]
    pub fn set_state(&mut self, state: JsLoaderState) -> js::Result<()> {
        guard(|| {
            self.inner.set_state(LoaderState {
                epoch: u64::from(state.epoch),
                shard: state.shard as usize,
                window: state.window as usize,
            })
        })
    }

    #[napi]
    pub fn token_count(&self) -> js::Result<f64> {
        guard(|| Ok(self.inner.token_count() as f64))
    }

    #[napi]
    pub fn next_batch(&mut self) -> js::Result<ShardBatch> {
        guard(|| {
            let b = self.inner.next_batch()?;
            Ok(ShardBatch {
                inputs: Int32Array::new(b.inputs),
                targets: Int32Array::new(b.targets),
            })
        })
    }
}
