//! Training data: tokenizers (byte, GPT-2 BPE), llm.c `.bin` token files and their loaders,
//! the up-front token-range scan, `prepare` (corpus -> shards + manifest), EPL's IO slicing of
//! shard lists, and the built-in public-domain corpus.

mod corpus;
pub mod manifest;
pub mod prepare;
mod scan;
pub mod shards;
pub mod slicing;
pub mod tokenizer;
pub mod tokens;

pub use corpus::{builtin_corpus, builtin_tokens};
pub use manifest::Manifest;
pub use scan::check_token_range;
pub use tokens::{TokenBatch, TokenFile, TokenLoader, write_tokens};
