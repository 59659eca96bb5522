//! The IR: a static-shape graph of a closed `Op` enum (plain data, a stable text form, and a
//! `verify()` every pass must leave true).

mod builder;
mod display;
mod from_json;
mod graph;
mod infer;
mod op;
mod shape;
mod stage_map;
mod verify;

pub use crate::tensor::DType;
pub use builder::GraphBuilder;
pub use from_json::{Author, author, init_from_json, op_from_json, shape_from_js, shape_from_json};
pub use graph::{Graph, Node, NodeId, Phase, Strategy, TaskGraph, TaskGraphId};
pub use infer::{TensorType, infer, moe_capacity};
pub use op::{BinaryOp, Cut, Init, Op, ReduceOp, TokenSlice, UnaryOp, attrs};
pub use shape::{Dim, Numel, Shape, strides};
pub use stage_map::StageMap;
