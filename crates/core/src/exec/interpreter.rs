//! The executor: a plain interpreter over a device program, one arm per action. All device work
//! goes through the `Backend`; all buffers through the pool. Parameters, accumulated gradients
//! and optimizer state persist across steps; everything else is freed at its last use.

use super::backend::{Backend, HostData, KernelCtx, TensorRef, UpdateRule};
use super::memory::{Category, MemoryStats, Pool};
use super::plan::{Action, DeviceId, Program, ProgramKind};
use crate::error::{Error, Result};
use crate::ir::{Graph, Init, NodeId, Op};
use crate::rng;
use std::collections::BTreeMap;

pub struct Executor<B: Backend> {
    pub backend: B,
    graph: Graph,
    /// Concrete dims per node.
    dims: Vec<Vec<usize>>,
    train: Program,
    eval: Program,
    slots: Vec<Option<B::Buffer>>,
    /// Accumulated gradient per parameter node (None between steps).
    grads: Vec<Option<B::Buffer>>,
    /// Optimizer state per parameter node, created on its first update.
    state: Vec<Vec<B::Buffer>>,
    /// How many readers each gradient node has among `graph.grads` (shared: copy, not move).
    grad_sharers: Vec<usize>,
    pool: Pool<B>,
}

fn numel(d: &[usize]) -> usize {
    d.iter().product()
}

/// Host values of a parameter initialiser, a pure function of (seed, name, index).
pub fn init_values(init: &Init, name: &str, len: usize, seed: u64) -> Vec<f32> {
    let stream = rng::hash_name(name);
    match *init {
        Init::Zeros => vec![0.0; len],
        Init::Ones => vec![1.0; len],
        Init::Constant(v) => vec![v; len],
        Init::Normal { mean, std } => (0..len)
            .map(|i| mean + std * rng::normal(seed, stream, i as u64))
            .collect(),
        Init::Uniform { low, high } => (0..len)
            .map(|i| low + (high - low) * rng::uniform(seed, stream, i as u64))
            .collect(),
    }
}

impl<B: Backend> Executor<B> {
    /// `graph` must be batch-resolved and differentiated. Parameters are initialised here.
    pub fn new(backend: B, graph: Graph, seed: u64) -> Result<Self> {
        let dims = graph
            .nodes
            .iter()
            .map(|n| n.shape.concrete())
            .collect::<Result<Vec<_>>>()?;
        let train = Program::build(&graph, DeviceId(0), ProgramKind::Train);
        let eval = Program::build(&graph, DeviceId(0), ProgramKind::Eval);
        let n = graph.nodes.len();
        let mut grad_sharers = vec![0; n];
        for (_, g) in &graph.grads {
            grad_sharers[g.index()] += 1;
        }
        let mut ex = Executor {
            backend,
            dims,
            train,
            eval,
            slots: (0..n).map(|_| None).collect(),
            grads: (0..n).map(|_| None).collect(),
            state: (0..n).map(|_| Vec::new()).collect(),
            grad_sharers,
            pool: Pool::default(),
            graph,
        };
        for (id, _) in ex.graph.parameters() {
            let (name, init) = match &ex.graph.node(id).op {
                Op::Parameter { name, init, .. } => (name.clone(), init.clone()),
                _ => unreachable!("parameters() returns parameter nodes"),
            };
            let len = numel(&ex.dims[id.index()]);
            let values = HostData::F32(init_values(&init, &name, len, seed));
            ex.slots[id.index()] = Some(ex.backend.upload(&values)?);
            ex.pool
                .adopt(Category::Parameters, crate::ir::DType::F32, len);
        }
        Ok(ex)
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn program(&self, kind: ProgramKind) -> &Program {
        match kind {
            ProgramKind::Train => &self.train,
            ProgramKind::Eval => &self.eval,
        }
    }

    pub fn memory(&self) -> &MemoryStats {
        &self.pool.stats
    }

    pub fn reset_peaks(&mut self) {
        self.pool.reset_peaks();
    }

    /// Run one micro-batch through the train or eval program. `inputs` are keyed by input name
    /// and already sized for this micro-batch.
    pub fn run(
        &mut self,
        kind: ProgramKind,
        inputs: &BTreeMap<String, HostData>,
        ctx: &KernelCtx,
    ) -> Result<()> {
        let actions = std::mem::take(match kind {
            ProgramKind::Train => &mut self.train.actions,
            ProgramKind::Eval => &mut self.eval.actions,
        });
        let result = actions.iter().try_for_each(|a| self.act(a, inputs, ctx));
        match kind {
            ProgramKind::Train => self.train.actions = actions,
            ProgramKind::Eval => self.eval.actions = actions,
        }
        if result.is_err() {
            self.release_transients();
        }
        result
    }

    fn act(
        &mut self,
        action: &Action,
        inputs: &BTreeMap<String, HostData>,
        ctx: &KernelCtx,
    ) -> Result<()> {
        match *action {
            Action::Load(id) => self.load(id, inputs),
            Action::Compute(id) => self.compute(id, ctx),
            Action::Free(id) => {
                self.free(id);
                Ok(())
            }
            Action::AccumulateGrad { param, grad } => self.accumulate(param, grad),
        }
    }

    fn load(&mut self, id: NodeId, inputs: &BTreeMap<String, HostData>) -> Result<()> {
        let node = self.graph.node(id);
        let Op::Input { name, dtype, .. } = &node.op else {
            return Err(Error::internal(format!("load of non-input {id}")));
        };
        let data = inputs
            .get(name)
            .ok_or_else(|| Error::batch(format!("missing input '{name}'")))?;
        let len = numel(&self.dims[id.index()]);
        if data.dtype() != *dtype || data.len() != len {
            return Err(Error::batch(format!(
                "input '{name}' must be {dtype} with {len} elements (shape {:?}), got {} with {}",
                self.dims[id.index()],
                data.dtype(),
                data.len()
            )));
        }
        self.slots[id.index()] = Some(self.backend.upload(data)?);
        self.pool.adopt(Category::Activations, *dtype, len);
        Ok(())
    }

    fn compute(&mut self, id: NodeId, ctx: &KernelCtx) -> Result<()> {
        let node = &self.graph.nodes[id.index()];
        let dims = &self.dims;
        let slots = &self.slots;
        let mut refs = Vec::with_capacity(node.inputs.len());
        for x in &node.inputs {
            let buf = slots[x.index()]
                .as_ref()
                .ok_or_else(|| Error::internal(format!("{id} reads {x}, which is not live")))?;
            let dtype = self.graph.nodes[x.index()].dtype;
            refs.push(TensorRef {
                buf,
                shape: &dims[x.index()],
                dtype,
            });
        }
        let len = numel(&dims[id.index()]);
        let mut out = self
            .pool
            .take(&self.backend, Category::Activations, node.dtype, len)?;
        self.backend
            .execute(&node.op, &refs, &mut out, &dims[id.index()], ctx)?;
        self.slots[id.index()] = Some(out);
        Ok(())
    }

    fn free(&mut self, id: NodeId) {
        if let Some(buf) = self.slots[id.index()].take() {
            let n = self.graph.node(id);
            self.pool.give(
                Category::Activations,
                n.dtype,
                numel(&self.dims[id.index()]),
                buf,
            );
        }
    }

    fn accumulate(&mut self, param: NodeId, grad: NodeId) -> Result<()> {
        let len = numel(&self.dims[param.index()]);
        let f32 = crate::ir::DType::F32;
        if let Some(acc) = self.grads[param.index()].as_mut() {
            let g = self.slots[grad.index()]
                .as_ref()
                .ok_or_else(|| Error::internal("grad not live"))?;
            return self.backend.add_inplace(acc, g);
        }
        if self.grad_sharers[grad.index()] == 1 {
            // Sole reader: move the buffer instead of copying it.
            let g = self.slots[grad.index()]
                .take()
                .ok_or_else(|| Error::internal("grad not live"))?;
            self.pool.drop_buffer(Category::Activations, f32, len);
            self.pool.adopt(Category::Gradients, f32, len);
            self.grads[param.index()] = Some(g);
            return Ok(());
        }
        let g = self.slots[grad.index()]
            .as_ref()
            .ok_or_else(|| Error::internal("grad not live"))?;
        let mut acc = self
            .pool
            .take(&self.backend, Category::Gradients, f32, len)?;
        let src = TensorRef {
            buf: g,
            shape: &self.dims[grad.index()],
            dtype: f32,
        };
        let ctx = KernelCtx::default();
        self.backend.execute(
            &Op::Scale { factor: 1.0 },
            &[src],
            &mut acc,
            &self.dims[param.index()],
            &ctx,
        )?;
        self.grads[param.index()] = Some(acc);
        Ok(())
    }

    /// Free everything but parameters, gradients and state (after an error mid-program).
    fn release_transients(&mut self) {
        for i in 0..self.slots.len() {
            if !matches!(self.graph.nodes[i].op, Op::Parameter { .. }) {
                self.free(NodeId(i as u32));
            }
        }
    }

    /// Download a value kept by the last program (loss, outputs) and free it.
    pub fn take_value(&mut self, id: NodeId) -> Result<HostData> {
        let buf = self.slots[id.index()]
            .as_ref()
            .ok_or_else(|| Error::internal(format!("value {id} was not kept")))?;
        let data = self.backend.download(buf)?;
        self.free(id);
        Ok(data)
    }

    /// Parameter nodes with an accumulated gradient.
    fn grad_params(&self) -> Vec<NodeId> {
        self.graph
            .grads
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| self.grads[p.index()].is_some())
            .collect()
    }

    /// Global L2 norm of all accumulated gradients.
    pub fn grad_norm(&self) -> Result<f64> {
        let mut s = 0.0;
        for p in self.grad_params() {
            s += self
                .backend
                .sum_squares(self.grads[p.index()].as_ref().expect("checked"))?;
        }
        Ok(s.sqrt())
    }

    /// The accumulated gradient of a parameter, if the last step produced one.
    pub fn read_grad(&self, name: &str) -> Result<Option<HostData>> {
        let id = self.param_id(name)?;
        self.grads[id.index()].as_ref().map(|g| self.backend.download(g)).transpose()
    }

    pub fn scale_grads(&mut self, factor: f32) -> Result<()> {
        for p in self.grad_params() {
            self.backend
                .scale_inplace(self.grads[p.index()].as_mut().expect("checked"), factor)?;
        }
        Ok(())
    }

    /// Apply `rule_for(param name)` to every parameter with a gradient, then drop the gradients.
    pub fn apply(&mut self, step: u64, rule_for: &dyn Fn(&str) -> UpdateRule) -> Result<()> {
        for p in self.grad_params() {
            let name = self.param_name(p).to_string();
            let rule = rule_for(&name);
            let len = numel(&self.dims[p.index()]);
            while self.state[p.index()].len() < rule.state_count() {
                let b = self.backend.alloc(crate::ir::DType::F32, len)?;
                self.pool
                    .adopt(Category::OptimizerState, crate::ir::DType::F32, len);
                self.state[p.index()].push(b);
            }
            let grad = self.grads[p.index()].take().expect("checked");
            let param = self.slots[p.index()].as_mut().expect("parameters are live");
            self.backend
                .update(&rule, step, param, &grad, &mut self.state[p.index()])?;
            self.pool
                .give(Category::Gradients, crate::ir::DType::F32, len, grad);
        }
        Ok(())
    }

    /// Drop accumulated gradients without applying them (a skipped step).
    pub fn discard_grads(&mut self) {
        for p in self.grad_params() {
            let len = numel(&self.dims[p.index()]);
            let g = self.grads[p.index()].take().expect("checked");
            self.pool
                .give(Category::Gradients, crate::ir::DType::F32, len, g);
        }
    }

    fn param_name(&self, id: NodeId) -> &str {
        match &self.graph.node(id).op {
            Op::Parameter { name, .. } => name,
            _ => "",
        }
    }

    fn param_id(&self, name: &str) -> Result<NodeId> {
        self.graph
            .parameters()
            .into_iter()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| id)
            .ok_or_else(|| Error::Checkpoint {
                path: String::new(),
                message: format!("no parameter '{name}'"),
            })
    }

    /// (name, shape) of every parameter, in creation order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.graph
            .parameters()
            .into_iter()
            .map(|(id, n)| (n.to_string(), self.dims[id.index()].clone()))
            .collect()
    }

    pub fn read_parameter(&self, name: &str) -> Result<HostData> {
        let id = self.param_id(name)?;
        self.backend.download(
            self.slots[id.index()]
                .as_ref()
                .expect("parameters are live"),
        )
    }

    pub fn write_parameter(&mut self, name: &str, data: &HostData) -> Result<()> {
        let id = self.param_id(name)?;
        if data.dtype() != crate::ir::DType::F32 || data.len() != numel(&self.dims[id.index()]) {
            return Err(Error::internal(format!("parameter '{name}' size mismatch")));
        }
        self.slots[id.index()] = Some(self.backend.upload(data)?);
        Ok(())
    }

    /// Optimizer state buffers of a parameter (empty before its first update).
    pub fn read_state(&self, name: &str) -> Result<Vec<HostData>> {
        let id = self.param_id(name)?;
        self.state[id.index()]
            .iter()
            .map(|b| self.backend.download(b))
            .collect()
    }

    pub fn write_state(&mut self, name: &str, state: &[HostData]) -> Result<()> {
        let id = self.param_id(name)?;
        let len = numel(&self.dims[id.index()]);
        let mut bufs = Vec::new();
        for s in state {
            if s.len() != len {
                return Err(Error::internal(format!(
                    "state of '{name}' has the wrong size"
                )));
            }
            bufs.push(self.backend.upload(s)?);
        }
        for _ in self.state[id.index()].len()..bufs.len() {
            self.pool
                .adopt(Category::OptimizerState, crate::ir::DType::F32, len);
        }
        self.state[id.index()] = bufs;
        Ok(())
    }
}
