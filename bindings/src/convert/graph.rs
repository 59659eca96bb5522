//! JS model descriptions -> core graph values: shapes (with `null` batch dims), dtypes,
//! initialisers, op attributes (JSON -> `Op`) and the tensor info JS sees back.

use serde_json::{Map, Value};
use weft_core::ir::{
    BinaryOp, DType, Dim, GraphBuilder, Init, NodeId, Op, ReduceOp, Shape, TokenSlice, UnaryOp,
};
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

/// JS shape -> core shape: `null` is the batch dimension (`Dim::Batch(1)`).
pub fn shape_from_js(what: &str, dims: &[Option<i64>]) -> Result<Shape> {
    dims.iter()
        .map(|d| match *d {
            None => Ok(Dim::Batch(1)),
            Some(n) if n >= 0 => Ok(Dim::Fixed(n as usize)),
            Some(n) => Err(Error::shape(
                what,
                format!("invalid dimension {n} in shape {dims:?}"),
            )),
        })
        .collect::<Result<Vec<_>>>()
        .map(Shape)
}

/// A shape written as a JSON array of numbers and nulls (op attributes).
fn shape_from_json(what: &str, v: &Value) -> Result<Shape> {
    let arr = v
        .as_array()
        .ok_or_else(|| Error::shape(what, format!("shape must be an array, got {v}")))?;
    let dims =
        arr.iter()
            .map(|d| match d {
                Value::Null => Ok(None),
                d => d.as_i64().map(Some).ok_or_else(|| {
                    Error::shape(what, format!("invalid dimension {d} in shape {v}"))
                }),
            })
            .collect::<Result<Vec<_>>>()?;
    shape_from_js(what, &dims)
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

/// Attribute object of one op, read key by key; keys nobody read are an error so a typo in
/// the TS layer never silently becomes a default.
struct Attrs<'a> {
    op: &'a str,
    map: Map<String, Value>,
}

impl<'a> Attrs<'a> {
    fn new(op: &'a str, v: Value) -> Result<Self> {
        match v {
            Value::Object(map) => Ok(Attrs { op, map }),
            Value::Null => Ok(Attrs {
                op,
                map: Map::new(),
            }),
            other => Err(Error::shape(
                op,
                format!("attributes must be an object, got {other}"),
            )),
        }
    }

    fn bad(&self, key: &str, want: &str, v: &Value) -> Error {
        Error::shape(
            self.op,
            format!("attribute '{key}' must be {want}, got {v}"),
        )
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    fn need(&mut self, key: &str) -> Result<Value> {
        self.take(key)
            .ok_or_else(|| Error::shape(self.op, format!("missing attribute '{key}'")))
    }

    fn int(&mut self, key: &str) -> Result<i64> {
        let v = self.need(key)?;
        v.as_i64().ok_or_else(|| self.bad(key, "an integer", &v))
    }

    fn usize(&mut self, key: &str) -> Result<usize> {
        let v = self.need(key)?;
        v.as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| self.bad(key, "a non-negative integer", &v))
    }

    fn f32(&mut self, key: &str) -> Result<f32> {
        let v = self.need(key)?;
        v.as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| self.bad(key, "a number", &v))
    }

    fn f32_or(&mut self, key: &str, default: f32) -> Result<f32> {
        if self.map.get(key).is_none_or(Value::is_null) {
            return Ok(default);
        }
        self.f32(key)
    }

    fn bool_or(&mut self, key: &str, default: bool) -> Result<bool> {
        match self.take(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(b),
            Some(v) => Err(self.bad(key, "a boolean", &v)),
        }
    }

    fn u64_or(&mut self, key: &str, default: u64) -> Result<u64> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| self.bad(key, "a non-negative integer", &v)),
        }
    }

    fn shape(&mut self, key: &str) -> Result<Shape> {
        let v = self.need(key)?;
        shape_from_json(self.op, &v)
    }

    /// An axis, possibly negative, normalised against `shape`.
    fn axis(&mut self, key: &str, shape: &Shape) -> Result<usize> {
        let a = self.int(key)?;
        shape.axis(self.op, a)
    }

    fn finish(self) -> Result<()> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(Error::shape(self.op, format!("unknown attribute '{k}'"))),
        }
    }
}

/// `{"kind":"normal","mean":0,"std":0.02}` and friends -> `Init`.
pub fn init_from_json(v: Value) -> Result<Init> {
    let mut a = Attrs::new("parameter", v)?;
    let kind = match a.need("kind")? {
        Value::String(s) => s,
        other => return Err(a.bad("kind", "a string", &other)),
    };
    let init = match kind.as_str() {
        "zeros" => Init::Zeros,
        "ones" => Init::Ones,
        "constant" => Init::Constant(a.f32("value")?),
        "normal" => Init::Normal {
            mean: a.f32_or("mean", 0.0)?,
            std: a.f32("std")?,
        },
        "uniform" => Init::Uniform {
            low: a.f32("low")?,
            high: a.f32("high")?,
        },
        other => {
            return Err(Error::shape(
                "parameter",
                format!("unknown init '{other}' (zeros, ones, constant, normal, uniform)"),
            ));
        }
    };
    a.finish()?;
    Ok(init)
}

/// Op kind + attribute JSON -> a core `Op` ready for `GraphBuilder::op`. Axes may be negative
/// (normalised against the first input's shape); a reshape target may use `-1` (resolved by
/// the builder, absorbing the batch) or `null` (the batch dimension itself).
pub fn op_from_json(b: &GraphBuilder, kind: &str, inputs: &[NodeId], attrs: Value) -> Result<Op> {
    let first =
        match inputs.first() {
            Some(&id) => Some(b.node(id).map_err(|_| {
                Error::shape(kind, format!("input {id} does not exist in this model"))
            })?),
            None => None,
        };
    let first_shape = first.map(|n| n.shape.clone()).unwrap_or_default();
    let mut a = Attrs::new(kind, attrs)?;
    let op = if let Some(u) = UnaryOp::parse(kind) {
        Op::Unary(u)
    } else if let Some(u) = kind.strip_suffix("_backward").and_then(UnaryOp::parse) {
        Op::UnaryBackward(u)
    } else if let Some(o) = BinaryOp::parse(kind) {
        Op::Binary(o)
    } else {
        match kind {
            "fill" => Op::Fill {
                value: a.f32("value")?,
                shape: a.shape("shape")?,
            },
            "scale" => Op::Scale {
                factor: a.f32("factor")?,
            },
            "reshape" => {
                let v = a.need("shape")?;
                let wildcard = v
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x.as_i64() == Some(-1)));
                let shape = if wildcard {
                    let dims = v
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|d| {
                            d.as_i64()
                                .ok_or_else(|| a.bad("shape", "numbers with one -1", &v))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let x = *inputs
                        .first()
                        .ok_or_else(|| Error::shape(kind, "takes 1 input, got 0"))?;
                    b.reshape_dims(x, &dims)?
                } else {
                    shape_from_json(kind, &v)?
                };
                Op::Reshape { shape }
            }
            "permute" => {
                let v = a.need("perm")?;
                let perm = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        p.as_i64()
                            .ok_or_else(|| a.bad("perm", "an array of axes", &v))
                            .and_then(|p| first_shape.axis(kind, p))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Op::Permute { perm }
            }
            "slice" => Op::Slice {
                axis: a.axis("axis", &first_shape)?,
                start: a.usize("start")?,
                end: a.usize("end")?,
            },
            "slice_backward" => Op::SliceBackward {
                axis: a.axis("axis", &first_shape)?,
                start: a.usize("start")?,
                len: a.usize("len")?,
            },
            "concat" => Op::Concat {
                axis: a.axis("axis", &first_shape)?,
            },
            "expand" => Op::Expand {
                shape: a.shape("shape")?,
            },
            "sum_to" => Op::SumTo {
                shape: a.shape("shape")?,
            },
            "sum" | "mean" | "max" => Op::Reduce {
                op: match kind {
                    "sum" => ReduceOp::Sum,
                    "mean" => ReduceOp::Mean,
                    _ => ReduceOp::Max,
                },
                axis: a.axis("axis", &first_shape)?,
                keepdim: a.bool_or("keepdim", false)?,
            },
            "max_backward" => Op::MaxBackward {
                axis: a.axis("axis", &first_shape)?,
                keepdim: a.bool_or("keepdim", false)?,
            },
            "matmul" => Op::MatMul {
                trans_a: a.bool_or("transA", false)?,
                trans_b: a.bool_or("transB", false)?,
            },
            "softmax" => Op::Softmax,
            "softmax_backward" => Op::SoftmaxBackward,
            "layer_norm" => Op::LayerNorm {
                eps: a.f32_or("eps", 1e-5)?,
            },
            "layer_norm_backward" => Op::LayerNormBackward {
                eps: a.f32_or("eps", 1e-5)?,
            },
            "layer_norm_backward_weight" => Op::LayerNormBackwardWeight {
                eps: a.f32_or("eps", 1e-5)?,
            },
            "embedding" => Op::Embedding,
            "embedding_backward" => Op::EmbeddingBackward {
                vocab: a.usize("vocab")?,
            },
            "causal_attention" => Op::CausalAttention {
                heads: a.usize("heads")?,
            },
            "causal_attention_backward" => Op::CausalAttentionBackward {
                heads: a.usize("heads")?,
            },
            "cross_entropy" => Op::CrossEntropy,
            "cross_entropy_backward" => Op::CrossEntropyBackward,
            "dropout" => Op::Dropout {
                p: a.f32("p")?,
                seed: a.u64_or("seed", 0)?,
            },
            "dropout_backward" => Op::DropoutBackward {
                p: a.f32("p")?,
                seed: a.u64_or("seed", 0)?,
            },
            "moe_gate" => Op::MoeGate {
                top_k: a.usize("topK")?,
                capacity_factor: a.f32("capacityFactor")?,
                weighted: a.bool_or("weighted", true)?,
            },
            "moe_dispatch" => Op::MoeDispatch {
                top_k: a.usize("topK")?,
                capacity_factor: a.f32("capacityFactor")?,
                tokens: TokenSlice::ALL,
            },
            "moe_combine" => Op::MoeCombine {
                tokens: TokenSlice::ALL,
            },
            "argmax" => Op::Argmax,
            "equal" => Op::Equal,
            "input" | "parameter" => {
                return Err(Error::shape(
                    kind,
                    format!("use the model's {kind}() method"),
                ));
            }
            other => return Err(Error::shape(other, "unknown op kind")),
        }
    };
    a.finish()?;
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn builder_with_x() -> (GraphBuilder, NodeId) {
        let mut b = GraphBuilder::new();
        let shape = shape_from_js("input", &[None, Some(3), Some(8)]).unwrap();
        let x = b.input("x", shape, DType::F32).unwrap();
        (b, x)
    }

    #[test]
    fn null_is_the_batch_dimension() {
        let s = shape_from_js("input", &[None, Some(4)]).unwrap();
        assert_eq!(s, Shape(vec![Dim::Batch(1), Dim::Fixed(4)]));
        let e = shape_from_js("input", &[Some(-2)]).unwrap_err();
        assert_eq!(e.code(), "WEFT_SHAPE");
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

    #[test]
    fn attributes_become_ops_with_normalised_axes() {
        let (b, x) = builder_with_x();
        let op = |kind: &str, attrs: Value| op_from_json(&b, kind, &[x], attrs).unwrap();
        assert_eq!(
            op("matmul", json!({"transB": true})),
            Op::MatMul {
                trans_a: false,
                trans_b: true
            }
        );
        assert_eq!(
            op("sum", json!({"axis": -1})),
            Op::Reduce {
                op: ReduceOp::Sum,
                axis: 2,
                keepdim: false
            }
        );
        assert_eq!(
            op("permute", json!({"perm": [0, -1, 1]})),
            Op::Permute {
                perm: vec![0, 2, 1]
            }
        );
        assert_eq!(
            op("slice", json!({"axis": 1, "start": 0, "end": 2})),
            Op::Slice {
                axis: 1,
                start: 0,
                end: 2
            }
        );
        assert_eq!(op("gelu", json!({})), Op::Unary(UnaryOp::Gelu));
        assert_eq!(
            op("gelu_backward", Value::Null),
            Op::UnaryBackward(UnaryOp::Gelu)
        );
        assert_eq!(op("layer_norm", json!({})), Op::LayerNorm { eps: 1e-5 });
        assert_eq!(
            op("reshape", json!({"shape": [null, 24]})),
            Op::Reshape {
                shape: shape_from_js("", &[None, Some(24)]).unwrap()
            }
        );
    }

    #[test]
    fn bad_attributes_are_shape_errors_naming_the_op() {
        let (b, x) = builder_with_x();
        let err =
            |kind: &str, attrs: Value| op_from_json(&b, kind, &[x], attrs).unwrap_err().to_string();
        assert_eq!(
            err("matmul", json!({"transpose": true})),
            "matmul: unknown attribute 'transpose'"
        );
        assert_eq!(
            err("sum", json!({"axis": 3})),
            "sum: axis 3 is out of range for shape [B,3,8]"
        );
        assert_eq!(err("scale", json!({})), "scale: missing attribute 'factor'");
        assert_eq!(
            err("scale", json!({"factor": "2"})),
            "scale: attribute 'factor' must be a number, got \"2\""
        );
        assert_eq!(err("conv2d", json!({})), "conv2d: unknown op kind");
    }

    #[test]
    fn initialisers_parse() {
        assert_eq!(
            init_from_json(json!({"kind": "normal", "std": 0.02})).unwrap(),
            Init::Normal {
                mean: 0.0,
                std: 0.02
            }
        );
        assert_eq!(
            init_from_json(json!({"kind": "uniform", "low": -1, "high": 1})).unwrap(),
            Init::Uniform {
                low: -1.0,
                high: 1.0
            }
        );
        assert_eq!(
            init_from_json(json!({"kind": "zeros"})).unwrap(),
            Init::Zeros
        );
        let e = init_from_json(json!({"kind": "xavier"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter: unknown init 'xavier' (zeros, ones, constant, normal, uniform)"
        );
    }
}
