//! The one place where JS values become core values and back. Every conversion failure is a
//! core `Error` with the group the user would expect (a bad dtype name is `WEFT_DTYPE`, a bad
//! axis is `WEFT_SHAPE`), so the TS layer sees one error model.
//!
//! - `graph`: shapes, dtypes, initialisers, op attributes, JSON documents.
//! - `data`: batch tensors (copied or borrowed), step reports, input specs.

mod data;
mod graph;

pub use data::*;
pub use graph::*;
