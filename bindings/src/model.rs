//! `NativeModel`: the core `GraphBuilder` as a JS class. The TS `weft.model()` drives it; every
//! node is typed on insertion, so shape errors surface where the model is written.
//!
//! Strategy scopes go through the core's `ScopeStack` (EPL's rules: no nesting, only replicate
//! as the default strategy, no scopes under `auto.auto_parallel`, ops outside scopes join the
//! default or the last replicate TaskGraph). Before every node the stack says which TaskGraph
//! it belongs to; the builder mirrors the stack's TaskGraphs, and `finish` hands the graph the
//! stack's list (the stack may rename TaskGraph 0 when the first scope takes it over).

use crate::convert::{
    TensorInfo, init_from_json, op_from_json, parse_dtype, parse_json, shape_from_js, tensor_info,
};
use crate::error::{self as js, guard};
use weft_core::ir::{
    Graph, GraphBuilder, Node, NodeId, Op, Phase, Strategy, TaskGraph, TaskGraphId,
};
use weft_core::strategy::{ScopeStack, check_device_count, strategy_name};
use weft_core::{Error, Result};

/// A TaskGraph of the model being built, as JS sees it.
#[napi(object)]
pub struct JsTaskGraph {
    pub index: u32,
    pub name: String,
    /// `"replicate"` or `"split"`.
    pub strategy: String,
    pub device_count: u32,
    /// Nodes created in it so far.
    pub nodes: u32,
}

#[napi]
pub struct NativeModel {
    /// `None` once the model has been finished into a graph.
    builder: Option<GraphBuilder>,
    scopes: ScopeStack,
    /// TaskGraphs the builder holds; it starts with its own TaskGraph 0.
    mirrored: usize,
    /// Nodes per TaskGraph of the stack.
    nodes: Vec<u32>,
}

fn parse_strategy(strategy: &str) -> Result<Strategy> {
    match strategy {
        "replicate" => Ok(Strategy::Replicate),
        "split" => Ok(Strategy::Split),
        other => Err(Error::Unsupported {
            feature: format!("strategy '{other}'"),
            message: format!(
                "strategy '{other}' is not supported; the strategies are replicate and split"
            ),
        }),
    }
}

impl NativeModel {
    /// Open a scope or a default strategy on a copy of the scope stack, keeping it only when
    /// both EPL's rules and the deviceCount rule accept it (a refused call changes nothing).
    fn open_scope(
        &mut self,
        strategy: &str,
        device_count: u32,
        name: &str,
        open: fn(&mut ScopeStack, Strategy, usize, &str) -> Result<TaskGraphId>,
    ) -> js::Result<u32> {
        guard(|| {
            self.builder()?;
            let strategy = parse_strategy(strategy)?;
            let mut trial = self.scopes.clone();
            let tg = open(&mut trial, strategy, device_count as usize, name)?;
            check_device_count(strategy, device_count as usize, name)?;
            self.scopes = trial;
            Ok(tg.0)
        })
    }

    fn builder(&self) -> Result<&GraphBuilder> {
        self.builder.as_ref().ok_or_else(finished)
    }

    fn builder_mut(&mut self) -> Result<&mut GraphBuilder> {
        self.builder.as_mut().ok_or_else(finished)
    }

    /// Select the TaskGraph the next node belongs to (opening it in the builder if the stack
    /// just opened it); returns its index.
    fn place(&mut self) -> Result<usize> {
        let b = self.builder.as_mut().ok_or_else(finished)?;
        let tg = self.scopes.op_taskgraph()?;
        let specs = self.scopes.taskgraphs();
        while self.mirrored < specs.len() {
            let s = &specs[self.mirrored];
            b.open_taskgraph(&s.name, s.strategy, s.device_count);
            self.mirrored += 1;
        }
        b.set_taskgraph(tg)?;
        Ok(tg.0 as usize)
    }

    /// Count a node created in TaskGraph `tg`.
    fn count(&mut self, tg: usize) {
        if self.nodes.len() <= tg {
            self.nodes.resize(tg + 1, 0);
        }
        self.nodes[tg] += 1;
    }

    /// The TaskGraphs so far: the stack's, or the builder's default before any node exists.
    fn taskgraph_specs(&self) -> Vec<TaskGraph> {
        if self.scopes.taskgraphs().is_empty() {
            vec![TaskGraph {
                name: "default".into(),
                strategy: Strategy::Replicate,
                device_count: 1,
            }]
        } else {
            self.scopes.taskgraphs().to_vec()
        }
    }

    /// Finish the model into a training graph with `loss` as its objective. The builder is
    /// consumed: a model compiles once (the TS layer rebuilds it for a second compile).
    pub fn finish(&mut self, loss: u32) -> Result<Graph> {
        if let Some(open) = self.scopes.open_scope() {
            return Err(Error::internal(format!(
                "the {} scope '{}' is still open",
                strategy_name(open.strategy),
                open.name
            )));
        }
        let b = self.builder.take().ok_or_else(finished)?;
        let mut g = b.finish(NodeId(loss))?;
        g.taskgraphs = self.taskgraph_specs();
        distinct_outputs(&mut g);
        g.verify()?;
        Ok(g)
    }
}

/// The core hands each micro-batch's value of the loss and of every output back once (it frees
/// the value as it takes it), so a node that is the loss and an output, or two outputs (e.g. a
/// tensor under `m.output` and in a collection), fails with "not live". Until the core reads a
/// node once per use, such an output reads an identity copy (a reshape to its own shape) in the
/// same TaskGraph.
fn distinct_outputs(g: &mut Graph) {
    let mut taken: Vec<NodeId> = g.loss.into_iter().collect();
    for i in 0..g.outputs.len() {
        let id = g.outputs[i].1;
        if taken.contains(&id) {
            let n = g.node(id).clone();
            let copy = Node {
                op: Op::Reshape {
                    shape: n.shape.clone(),
                },
                inputs: vec![id],
                phase: Phase::Forward,
                ..n
            };
            g.outputs[i].1 = g.push(copy);
        } else {
            taken.push(id);
        }
    }
}

fn finished() -> Error {
    Error::internal("this native model was already compiled; build a new one")
}

#[napi]
impl NativeModel {
    /// `autoParallel` is the model config's `auto.auto_parallel`: strategy scopes are then
    /// refused.
    #[napi(constructor)]
    pub fn new(auto_parallel: Option<bool>) -> js::Result<Self> {
        guard(|| {
            Ok(NativeModel {
                builder: Some(GraphBuilder::new()),
                scopes: ScopeStack::new(auto_parallel.unwrap_or(false)),
                mirrored: 1,
                nodes: Vec::new(),
            })
        })
    }

    /// A batch input; `null` in `shape` is the batch dimension.
    #[napi]
    pub fn input(
        &mut self,
        name: String,
        shape: Vec<Option<i64>>,
        dtype: String,
    ) -> js::Result<TensorInfo> {
        guard(|| {
            let shape = shape_from_js("input", &shape)?;
            let dtype = parse_dtype(&format!("input '{name}'"), &dtype)?;
            let tg = self.place()?;
            let b = self.builder_mut()?;
            let id = b.input(&name, shape, dtype)?;
            let info = tensor_info(b, id)?;
            self.count(tg);
            Ok(info)
        })
    }

    /// A trainable f32 parameter; `initJson` is `{"kind":"normal","mean":0,"std":0.02}` etc.
    #[napi]
    pub fn parameter(
        &mut self,
        name: String,
        shape: Vec<Option<i64>>,
        init_json: String,
    ) -> js::Result<TensorInfo> {
        guard(|| {
            let shape = shape_from_js("parameter", &shape)?;
            let init = init_from_json(parse_json("init", &init_json)?)?;
            let tg = self.place()?;
            let b = self.builder_mut()?;
            let id = b.parameter(&name, shape, init)?;
            let info = tensor_info(b, id)?;
            self.count(tg);
            Ok(info)
        })
    }

    /// Add an op by its stable name (`"matmul"`, `"layer_norm"`, ...) with JSON attributes.
    #[napi]
    pub fn op(
        &mut self,
        kind: String,
        inputs: Vec<u32>,
        attrs_json: String,
    ) -> js::Result<TensorInfo> {
        guard(|| {
            let attrs = parse_json("attributes", &attrs_json)?;
            let inputs: Vec<NodeId> = inputs.into_iter().map(NodeId).collect();
            let op = op_from_json(self.builder()?, &kind, &inputs, attrs)?;
            let tg = self.place()?;
            let b = self.builder_mut()?;
            let id = b.op(op, &inputs)?;
            let info = tensor_info(b, id)?;
            self.count(tg);
            Ok(info)
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

    /// Mark a computed node as a recomputation checkpoint (`gradient_checkpoint.type=
    /// 'collection'`).
    #[napi]
    pub fn checkpoint(&mut self, id: u32) -> js::Result<()> {
        guard(|| self.builder_mut()?.checkpoint(NodeId(id)))
    }

    /// Enter a `replicate` / `split` scope (EPL's rules, see the module doc); `name` may be
    /// empty for EPL's default (`Replicate` / `Split`). Returns the index its TaskGraph takes
    /// when its first op arrives.
    #[napi]
    pub fn enter_scope(
        &mut self,
        strategy: String,
        device_count: u32,
        name: String,
    ) -> js::Result<u32> {
        self.open_scope(&strategy, device_count, &name, ScopeStack::enter)
    }

    /// Leave the open scope; returns its TaskGraph, or `null` when no op was created in it.
    #[napi]
    pub fn exit_scope(&mut self) -> js::Result<Option<u32>> {
        guard(|| Ok(self.scopes.exit()?.map(|tg: TaskGraphId| tg.0)))
    }

    /// EPL's `set_default_strategy`: opens a new TaskGraph now that every op outside explicit
    /// scopes joins from here on. Returns its index.
    #[napi]
    pub fn set_default_strategy(
        &mut self,
        strategy: String,
        device_count: u32,
        name: String,
    ) -> js::Result<u32> {
        self.open_scope(&strategy, device_count, &name, ScopeStack::set_default)
    }

    /// The TaskGraphs so far, in index order, with their node counts.
    #[napi]
    pub fn taskgraphs(&self) -> js::Result<Vec<JsTaskGraph>> {
        guard(|| {
            Ok(self
                .taskgraph_specs()
                .into_iter()
                .enumerate()
                .map(|(i, t)| JsTaskGraph {
                    index: i as u32,
                    name: t.name,
                    strategy: strategy_name(t.strategy).to_string(),
                    device_count: t.device_count as u32,
                    nodes: self.nodes.get(i).copied().unwrap_or(0),
                })
                .collect())
        })
    }

    /// The graph's stable text form, headed by the TaskGraphs as the scopes define them.
    #[napi]
    pub fn text(&self) -> js::Result<String> {
        guard(|| {
            let body = self.builder()?.text();
            let mut out = String::new();
            for (i, tg) in self.taskgraph_specs().iter().enumerate() {
                out.push_str(&format!(
                    "taskgraph tg{i} {} {:?} x{}\n",
                    tg.name, tg.strategy, tg.device_count
                ));
            }
            for line in body.lines().filter(|l| !l.starts_with("taskgraph tg")) {
                out.push_str(line);
                out.push('\n');
            }
            Ok(out)
        })
    }
}
