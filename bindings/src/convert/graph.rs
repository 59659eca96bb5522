//! JS model descriptions -> core graph values: JSON documents, dtype names and the tensor info
//! JS sees back. Shapes, initialisers and op attributes (JSON -> `Op`) are parsed by the core
//! (`weft_core::ir::op_from_json`).

use serde_json::Value;
// The op vocabulary's text -> `Op` direction is the core's; re-exported for `model.rs`.
use weft_core::ir::{DType, GraphBuilder, NodeId};
pub use weft_core::ir::{init_from_json, op_from_json, shape_from_js};
use weft_core::{Error, Result};

/// What JS sees of a tensor: its node id, shape (`null` for batch dims), dim strings
/// (`"B"`, `"2B"`, `"128"`) and dtype name.
#[napi(object)]
pub struct TensorInfo {
    pub id: u32,
    pub shape: Vec<Option<u32>>,
    pub dims: Vec<String>,
    pub dtype: String,
}

/// Parse a JSON document that the TS layer produced.
pub fn parse_json(what: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::internal(format!("{what}: invalid JSON from the TS layer: {e}")))
}

pub fn parse_dtype(what: &str, name: &str) -> Result<DType> {
    DType::parse(name).ok_or_else(|| Error::DType {
        what: what.to_string(),
        expected: "f32 or i32".into(),
        got: name.to_string(),
    })
}

/// Core node -> what JS sees.
pub fn tensor_info(b: &GraphBuilder, id: NodeId) -> Result<TensorInfo> {
    let n = b.node(id)?;
    Ok(TensorInfo {
        id: id.0,
        shape: n
            .shape
            .dims()
            .iter()
            .map(|d| d.fixed().map(|x| x as u32))
            .collect(),
        dims: n.shape.dims().iter().map(|d| d.to_string()).collect(),
        dtype: n.dtype.name().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weft_core::ir::Op;

    fn builder_with_x() -> (GraphBuilder, NodeId) {
        let mut b = GraphBuilder::new();
        let shape = shape_from_js("input", &[None, Some(3), Some(8)]).unwrap();
        let x = b.input("x", shape, DType::F32).unwrap();
        (b, x)
    }

    #[test]
    fn tensor_info_reports_batch_dims() {
        let (mut b, x) = builder_with_x();
        let op = op_from_json(&b, "reshape", &[x], json!({"shape": [-1, 8]})).unwrap();
        let y = b.op(op, &[x]).unwrap();
        let info = tensor_info(&b, y).unwrap();
        assert_eq!(info.shape, vec![None, Some(8)]);
        assert_eq!(info.dims, vec!["3B".to_string(), "8".to_string()]);
        assert_eq!(info.dtype, "f32");
    }

    #[test]
    fn argmax_drops_the_last_axis_as_i32_and_equal_wants_one_dtype() {
        let (mut b, x) = builder_with_x();
        let op = op_from_json(&b, "argmax", &[x], json!({})).unwrap();
        let pred = b.op(op, &[x]).unwrap();
        let info = tensor_info(&b, pred).unwrap();
        assert_eq!(
            (info.shape, info.dtype.as_str()),
            (vec![None, Some(3)], "i32")
        );
        let hit = b.op(Op::Equal, &[pred, pred]).unwrap();
        assert_eq!(tensor_info(&b, hit).unwrap().dtype, "f32");
        let e = b.op(Op::Equal, &[pred, x]).unwrap_err();
        assert_eq!(e.to_string(), "equal rhs: expected dtype i32, got f32");
    }
}
