//! Generation: `NativeDecoder`, a trainer's key/value-cached decoder (or the reason its model
//! has none), and the shape a Hugging Face `config.json` describes.

use crate::error::{self as js, guard};
use napi::bindgen_prelude::Float32Array;
use std::path::Path;
use weft_core::Error;
use weft_core::checkpoint::hf;
use weft_core::generate::{Gpt2Shape, KvDecoder};

/// A key/value-cached decoder holding a copy of the trainer's weights at the time it was made.
/// Without one (`reason` set), generation recomputes the full window.
#[napi]
pub struct NativeDecoder {
    inner: Option<KvDecoder>,
    reason: Option<String>,
}

impl NativeDecoder {
    pub fn new(made: std::result::Result<KvDecoder, String>) -> Self {
        match made {
            Ok(d) => NativeDecoder {
                inner: Some(d),
                reason: None,
            },
            Err(why) => NativeDecoder {
                inner: None,
                reason: Some(why),
            },
        }
    }

    fn decoder(&mut self) -> weft_core::Result<&mut KvDecoder> {
        let why = self.reason.clone().unwrap_or_default();
        self.inner
            .as_mut()
            .ok_or_else(|| Error::unsupported("the key/value cache", why))
    }
}

#[napi]
impl NativeDecoder {
    /// Why the model has no cache (null: it has one).
    #[napi(getter)]
    pub fn reason(&self) -> Option<String> {
        self.reason.clone()
    }

    /// Positions the cache holds at most (the model's context).
    #[napi(getter)]
    pub fn positions(&self) -> u32 {
        self.inner
            .as_ref()
            .map_or(0, |d| d.shape().positions as u32)
    }

    /// Positions fed since the last reset.
    #[napi(getter)]
    pub fn position(&self) -> u32 {
        self.inner.as_ref().map_or(0, |d| d.position() as u32)
    }

    /// Feeds one token at the next position; returns the logits there.
    #[napi]
    pub fn feed(&mut self, token: u32) -> js::Result<Float32Array> {
        guard(|| Ok(Float32Array::new(self.decoder()?.feed(token)?)))
    }

    /// Empties the cache.
    #[napi]
    pub fn reset(&mut self) -> js::Result<()> {
        guard(|| {
            self.decoder()?.reset();
            Ok(())
        })
    }
}

fn shape_json(s: &Gpt2Shape) -> String {
    serde_json::json!({
        "layers": s.layers, "heads": s.heads, "dim": s.dim, "vocab": s.vocab,
        "positions": s.positions, "eps": hf::eps_json(s.eps),
    })
    .to_string()
}

/// The GPT-2 shape in the `config.json` of a `--init` directory (`save_pretrained`'s) as JSON
/// text, or null when there is none.
#[napi]
pub fn read_hf_config(path: String) -> js::Result<Option<String>> {
    guard(|| match hf::config_path(Path::new(&path)) {
        Some(cfg) => Ok(Some(shape_json(&hf::read_config(&cfg)?))),
        None => Ok(None),
    })
}
