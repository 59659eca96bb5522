//! Training data: llm.c token files, their sequential loader, the byte-level tokenizer and the
//! built-in corpus.

use crate::error::{self as js, guard};
use napi::bindgen_prelude::{Int32Array, Uint16Array};
use std::path::Path;
use weft_core::data::{
    TokenFile, TokenLoader, builtin_corpus, builtin_tokens, tokenizer, write_tokens,
};

/// The tokens of an llm.c `.bin` file.
#[napi]
pub fn read_tokens(path: String) -> js::Result<Uint16Array> {
    guard(|| {
        Ok(Uint16Array::new(
            TokenFile::open(Path::new(&path))?.tokens().to_vec(),
        ))
    })
}

/// Write tokens as an llm.c version-1 `.bin` file (atomically).
#[napi]
pub fn write_token_file(path: String, tokens: Uint16Array) -> js::Result<()> {
    guard(|| write_tokens(Path::new(&path), &tokens))
}

/// The built-in public-domain corpus text.
#[napi]
pub fn corpus_text() -> js::Result<String> {
    guard(|| Ok(builtin_corpus().to_string()))
}

/// Byte-level tokens of `text` (vocabulary 256).
#[napi]
pub fn encode_text(text: String) -> js::Result<Uint16Array> {
    guard(|| Ok(Uint16Array::new(tokenizer::encode(&text))))
}

/// Tokens back to text (invalid bytes become U+FFFD).
#[napi]
pub fn decode_tokens(tokens: Uint16Array) -> js::Result<String> {
    guard(|| Ok(tokenizer::decode(&tokens)))
}

/// The byte-level tokenizer's vocabulary size (256).
#[napi]
pub fn tokenizer_vocab_size() -> js::Result<u32> {
    guard(|| Ok(tokenizer::VOCAB_SIZE as u32))
}

/// One `[B, T]` batch: `inputs` and next-token `targets`, row-major.
#[napi(object)]
pub struct TokenBatch {
    pub inputs: Int32Array,
    pub targets: Int32Array,
    pub shape: Vec<u32>,
}

/// llm.c's sequential loader over a token file (or the built-in corpus when `path` is absent).
#[napi]
pub struct NativeTokenLoader {
    inner: TokenLoader,
}

#[napi]
impl NativeTokenLoader {
    /// `heldOut`: the fraction of the tokens at the end set aside for evaluation (`TokenFile::
    /// held_out`); `part` says which side this loader reads: `"train"` or `"eval"`.
    #[napi(constructor)]
    pub fn new(
        path: Option<String>,
        batch: u32,
        seq: u32,
        held_out: Option<f64>,
        part: Option<String>,
    ) -> js::Result<Self> {
        guard(|| {
            let mut file = match path {
                Some(p) => TokenFile::open(Path::new(&p))?,
                None => TokenFile::from_tokens("<built-in corpus>", builtin_tokens()),
            };
            if let Some(fraction) = held_out {
                let (train, eval) = file.held_out(fraction)?;
                file = match part.as_deref() {
                    Some("eval") => eval,
                    Some("train") | None => train,
                    Some(other) => {
                        let m =
                            format!("token loader part must be 'train' or 'eval', got '{other}'");
                        return Err(weft_core::Error::batch(m));
                    }
                };
            }
            Ok(NativeTokenLoader {
                inner: TokenLoader::new(file, batch as usize, seq as usize)?,
            })
        })
    }

    /// Tokens in the file.
    #[napi]
    pub fn token_count(&self) -> js::Result<u32> {
        guard(|| Ok(self.inner.file().len() as u32))
    }

    /// Token index the next batch starts at.
    #[napi]
    pub fn position(&self) -> js::Result<u32> {
        guard(|| Ok(self.inner.position() as u32))
    }

    #[napi]
    pub fn set_position(&mut self, pos: u32) -> js::Result<()> {
        guard(|| self.inner.set_position(pos as usize))
    }

    #[napi]
    pub fn reset(&mut self) -> js::Result<()> {
        guard(|| {
            self.inner.reset();
            Ok(())
        })
    }

    /// The next batch (wrapping to the start when the file runs out).
    #[napi]
    pub fn next_batch(&mut self) -> js::Result<TokenBatch> {
        guard(|| {
            let b = self.inner.next_batch();
            Ok(TokenBatch {
                inputs: Int32Array::new(b.inputs),
                targets: Int32Array::new(b.targets),
                shape: b.shape.iter().map(|&d| d as u32).collect(),
            })
        })
    }
}
