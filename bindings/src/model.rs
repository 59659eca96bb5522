//! `NativeModel`: the core `GraphBuilder` as a JS class. The TS `weft.model()` drives it; every
//! node is typed on insertion, so shape errors surface where the model is written.

use crate::convert::{TensorInfo, init_from_json, op_from_json, parse_dtype, parse_json, shape_from_js, tensor_info};
use crate::error::{self as js, guard};
use weft_core::ir::{Graph, GraphBuilder, NodeId, Strategy, TaskGraphId};
use weft_core::{Error, Result};

#[napi]
pub struct NativeModel {
    /// `None` once the model has been finished into a graph.
    builder: Option<GraphBuilder>,
}

impl NativeModel {
    fn builder(&self) -> Result<&GraphBuilder> {
        self.builder.as_ref().ok_or_else(finished)
    }

    fn builder_mut(&mut self) -> Result<&mut GraphBuilder> {
        self.builder.as_mut().ok_or_else(finished)
    }

    /// Finish the model into a training graph with `loss` as its objective. The builder is
    /// consumed: a model compiles once (the TS layer rebuilds it for a second compile).
    pub fn finish(&mut self, loss: u32) -> Result<Graph> {
        let b = self.builder.take().ok_or_else(finished)?;
        b.finish(NodeId(loss))
    }
}

fn finished() -> Error {
    Error::internal("this native model was already compiled; build a new one")
}

#[napi]
impl NativeModel {
    #[napi(constructor)]
    pub fn new() -> js::Result<Self> {
        guard(|| Ok(NativeModel { builder: Some(GraphBuilder::new()) }))
    }

    /// A batch input; `null` in `shape` is the batch dimension.
    #[napi]
    pub fn input(&mut self, name: String, shape: Vec<Option<i64>>, dtype: String) -> js::Result<TensorInfo> {
        guard(|| {
            let shape = shape_from_js("input", &shape)?;
            let dtype = parse_dtype(&format!("input '{name}'"), &dtype)?;
            let b = self.builder_mut()?;
            let id = b.input(&name, shape, dtype)?;
            tensor_info(b, id)
        })
    }

    /// A trainable f32 parameter; `initJson` is `{"kind":"normal","mean":0,"std":0.02}` etc.
    #[napi]
    pub fn parameter(&mut self, name: String, shape: Vec<Option<i64>>, init_json: String) -> js::Result<TensorInfo> {
        guard(|| {
            let shape = shape_from_js("parameter", &shape)?;
            let init = init_from_json(parse_json("init", &init_json)?)?;
            let b = self.builder_mut()?;
            let id = b.parameter(&name, shape, init)?;
            tensor_info(b, id)
        })
    }

    /// Add an op by its stable name (`"matmul"`, `"layer_norm"`, ...) with JSON attributes.
    #[napi]
    pub fn op(&mut self, kind: String, inputs: Vec<u32>, attrs_json: String) -> js::Result<TensorInfo> {
        guard(|| {
            let attrs = parse_json("attributes", &attrs_json)?;
            let inputs: Vec<NodeId> = inputs.into_iter().map(NodeId).collect();
            let b = self.builder_mut()?;
            let op = op_from_json(b, &kind, &inputs, attrs)?;
            let id = b.op(op, &inputs)?;
            tensor_info(b, id)
        })
    }

    /// The shape and dtype of an existing node.
    #[napi]
    pub fn info(&self, id: u32) -> js::Result<TensorInfo> {
        guard(|| tensor_info(self.builder()?, NodeId(id)))
    }

    /// Name a node as a step output (returned by `step()`/`evaluate()`).
    #[napi]
    pub fn output(&mut self, name: String, id: u32) -> js::Result<()> {
        guard(|| self.builder_mut()?.output(&name, NodeId(id)))
    }

    /// Open a TaskGraph (strategy scope); `strategy` is `"replicate"` or `"split"`. Nodes added
    /// afterwards belong to it until `setTaskgraph` selects another. Returns its index.
    #[napi]
    pub fn open_taskgraph(&mut self, name: String, strategy: String, device_count: u32) -> js::Result<u32> {
        guard(|| {
            let strategy = match strategy.as_str() {
                "replicate" => Strategy::Replicate,
                "split" => Strategy::Split,
                other => {
                    return Err(Error::Unsupported {
                        feature: format!("strategy '{other}'"),
                        message: format!("strategy '{other}' is not supported; the strategies are replicate and split"),
                    });
                }
            };
            let b = self.builder_mut()?;
            Ok(b.open_taskgraph(&name, strategy, device_count as usize).0)
        })
    }

    #[napi]
    pub fn set_taskgraph(&mut self, id: u32) -> js::Result<()> {
        guard(|| self.builder_mut()?.set_taskgraph(TaskGraphId(id)))
    }

    #[napi]
    pub fn current_taskgraph(&self) -> js::Result<u32> {
        guard(|| Ok(self.builder()?.current_taskgraph().0))
    }

    /// The graph's stable text form.
    #[napi]
    pub fn text(&self) -> js::Result<String> {
        guard(|| Ok(self.builder()?.text()))
    }
}
