//! Tokenizers behind one interface, so the CLI, the TS API, every process of a job and the WASM
//! build encode alike: `byte` (one token per UTF-8 byte, the zero-download default) and `gpt2`
//! (GPT-2's byte-level BPE, exactly as tiktoken encodes it).

mod byte;
mod gpt2;

pub use byte::{VOCAB_SIZE, decode, encode};

use crate::error::{Error, Result};

/// A tokenizer weft ships. Tokens are `u32` here; GPT-2's 50257 ids fit u16 on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenizer {
    Byte,
    Gpt2,
}

/// Every name `Tokenizer::by_name` accepts, for error messages and help.
pub const NAMES: [&str; 2] = ["byte", "gpt2"];

impl Tokenizer {
    /// The tokenizer called `name` (`byte` or `gpt2`); anything else is a `WEFT_CONFIG` error.
    pub fn by_name(name: &str) -> Result<Tokenizer> {
        match name {
            "byte" => Ok(Tokenizer::Byte),
            "gpt2" => Ok(Tokenizer::Gpt2),
            other => Err(Error::config(
                "tokenizer",
                format!("unknown tokenizer '{other}' (known: {})", NAMES.join(", ")),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tokenizer::Byte => "byte",
            Tokenizer::Gpt2 => "gpt2",
        }
    }

    /// Distinct ids the tokenizer emits.
    pub fn vocab_size(self) -> usize {
        match self {
            Tokenizer::Byte => VOCAB_SIZE,
            Tokenizer::Gpt2 => gpt2::VOCAB_SIZE,
        }
    }

    /// The end-of-text id that separates documents; the byte tokenizer has none (all 256 ids are
    /// bytes), so its documents are simply concatenated.
    pub fn end_of_text(self) -> Option<u32> {
        match self {
            Tokenizer::Byte => None,
            Tokenizer::Gpt2 => Some(gpt2::END_OF_TEXT),
        }
    }

    /// Tokens of `text`. Special-token spellings such as `<|endoftext|>` are ordinary text here
    /// (tiktoken's `encode_ordinary`): only `end_of_text` inserted by the caller is special.
    pub fn encode(self, text: &str) -> Vec<u32> {
        match self {
            Tokenizer::Byte => text.bytes().map(u32::from).collect(),
            Tokenizer::Gpt2 => gpt2::encode(text),
        }
    }

    /// Text of `tokens`. Bytes that are not UTF-8 (a character split across tokens, a token cut
    /// off by a length limit) and ids outside the vocabulary become U+FFFD: decoded text is for
    /// display, as tiktoken's `errors="replace"`.
    pub fn decode(self, tokens: &[u32]) -> String {
        lossy(tokens.iter().copied(), |t| match self {
            Tokenizer::Byte => byte::token_bytes(t),
            Tokenizer::Gpt2 => gpt2::token_bytes(t),
        })
    }
}

/// Joins the bytes of each token; an unknown id flushes the bytes so far (lossily) and becomes
/// one U+FFFD, so a multi-byte character is never glued across it.
pub(super) fn lossy(
    tokens: impl IntoIterator<Item = u32>,
    bytes_of: impl Fn(u32) -> Option<Vec<u8>>,
) -> String {
    let mut out = String::new();
    let mut bytes = Vec::new();
    for t in tokens {
        match bytes_of(t) {
            Some(b) => bytes.extend_from_slice(&b),
            None => {
                out.push_str(&String::from_utf8_lossy(&bytes));
                bytes.clear();
                out.push(char::REPLACEMENT_CHARACTER);
            }
        }
    }
    out.push_str(&String::from_utf8_lossy(&bytes));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_listed() {
        for name in NAMES {
            assert_eq!(Tokenizer::by_name(name).unwrap().name(), name);
        }
        let e = Tokenizer::by_name("gpt3").unwrap_err();
        assert_eq!(e.code(), "WEFT_CONFIG");
        assert!(
            e.to_string()
                .contains("unknown tokenizer 'gpt3' (known: byte, gpt2)")
        );
    }

    #[test]
    fn byte_tokenizer_agrees_with_the_u16_functions() {
        let s = "To be — ça va? 🎭";
        let t = Tokenizer::Byte.encode(s);
        assert_eq!(
            t,
            encode(s).iter().map(|&x| u32::from(x)).collect::<Vec<_>>()
        );
        assert_eq!(Tokenizer::Byte.decode(&t), s);
        assert_eq!(Tokenizer::Byte.decode(&[65, 300, 66]), "A\u{fffd}B");
        assert_eq!(Tokenizer::Byte.end_of_text(), None);
        assert_eq!(Tokenizer::Byte.vocab_size(), 256);
    }
}
