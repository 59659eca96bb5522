//! The IR: a static-shape graph of a closed `Op` enum (plain data, a stable text form, and a
//! `verify()` every pass must leave true).

mod dtype;
mod op;
mod shape;

pub use dtype::DType;
pub use op::{BinaryOp, Init, Op, ReduceOp, UnaryOp, attrs};
pub use shape::{Dim, Numel, Shape, strides};
