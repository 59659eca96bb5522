//! GPT-2's BPE through `tiktoken-rs`, which embeds the `r50k_base` ranks (GPT-2's 50257 ids) in
//! the binary: no download at run time, pure Rust (builds for wasm32), and the same algorithm and
//! split pattern as OpenAI's tiktoken. HF `tokenizers` was the alternative; it ships no GPT-2
//! vocabulary (a `tokenizer.json` must be fetched) and pulls in far more code.

use tiktoken_rs::CoreBPE;

pub const VOCAB_SIZE: usize = 50257;
pub const END_OF_TEXT: u32 = 50256;

/// The ranks are parsed once per process (about 50k base64 lines) and shared by every thread.
fn bpe() -> &'static CoreBPE {
    tiktoken_rs::r50k_base_singleton()
}

pub fn encode(text: &str) -> Vec<u32> {
    bpe().encode_ordinary(text)
}

/// The bytes token `t` stands for, `None` outside the vocabulary.
pub fn token_bytes(t: u32) -> Option<Vec<u8>> {
    if t as usize >= VOCAB_SIZE {
        return None;
    }
    bpe().decode_bytes(&[t]).ok()
}
