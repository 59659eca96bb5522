//! Training data: llm.c `.bin` token files and their loader, a byte-level tokenizer, and the
//! built-in public-domain corpus.

mod corpus;
pub mod tokenizer;
pub mod tokens;

pub use corpus::{builtin_corpus, builtin_tokens};
pub use tokens::{TokenBatch, TokenFile, TokenLoader, write_tokens};
