//! JSON op descriptions -> IR values: the text -> `Op` direction of the op vocabulary (`Op::name`
//! and `attrs` are the other). Shapes (`null` is the batch dimension), initialisers, and op kind +
//! attribute objects as the TS layer writes them; every failure is a `WEFT_SHAPE` error naming
//! the op, and an attribute nobody reads is an error rather than a silent default.

use serde_json::{Map, Value};

use super::{BinaryOp, Dim, GraphBuilder, Init, NodeId, Op, ReduceOp, Shape, TokenSlice, UnaryOp};
use crate::error::{Error, Result};

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
pub fn shape_from_json(what: &str, v: &Value) -> Result<Shape> {
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
    } else if let Some(op) = ReduceOp::parse(kind) {
        Op::Reduce {
            op,
            axis: a.axis("axis", &first_shape)?,
            keepdim: a.bool_or("keepdim", false)?,
        }
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

/// Who writes an op into a graph: a model description (`op_from_json` parses it by name), a
/// model's own method (`input()`, `parameter()`), or weft itself (passes, autodiff's own
/// backward ops, AMP). An exhaustive match, so a new `Op` does not compile until it is placed
/// here; `from_json_tests` then checks that `op_from_json` agrees for every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    Model,
    ModelMethod,
    Weft,
}

pub fn author(op: &Op) -> Author {
    use Author::*;
    match op {
        Op::Input { .. } | Op::Parameter { .. } => ModelMethod,
        Op::Fill { .. }
        | Op::Unary(_)
        | Op::UnaryBackward(_)
        | Op::Binary(_)
        | Op::Scale { .. }
        | Op::Reshape { .. }
        | Op::Permute { .. }
        | Op::Slice { .. }
        | Op::SliceBackward { .. }
        | Op::Concat { .. }
        | Op::Expand { .. }
        | Op::SumTo { .. }
        | Op::Reduce { .. }
        | Op::MaxBackward { .. }
        | Op::MatMul { .. }
        | Op::Softmax
        | Op::SoftmaxBackward
        | Op::LayerNorm { .. }
        | Op::LayerNormBackward { .. }
        | Op::LayerNormBackwardWeight { .. }
        | Op::Embedding
        | Op::EmbeddingBackward { .. }
        | Op::CausalAttention { .. }
        | Op::CausalAttentionBackward { .. }
        | Op::CrossEntropy
        | Op::CrossEntropyBackward
        | Op::Dropout { .. }
        | Op::DropoutBackward { .. }
        | Op::MoeGate { .. }
        | Op::MoeDispatch { .. }
        | Op::MoeCombine { .. }
        | Op::Argmax
        | Op::Equal => Model,
        Op::LossScale
        | Op::Cast { .. }
        | Op::MoeGateBackward { .. }
        | Op::MoeDispatchBackward { .. }
        | Op::MoeCombineBackward { .. }
        | Op::MoeCombineGates { .. }
        | Op::TpCopy
        | Op::TpReduce
        | Op::TpGather { .. }
        | Op::TpShard { .. }
        | Op::TpGatherPartial { .. }
        | Op::TpReduceScatter { .. }
        | Op::TpMax
        | Op::ColumnMask { .. }
        | Op::VocabOneHot { .. }
        | Op::ArgmaxBid { .. }
        | Op::BidIndex
        | Op::TpAllToAll => Weft,
    }
}

#[cfg(test)]
#[path = "from_json_tests.rs"]
mod tests;
