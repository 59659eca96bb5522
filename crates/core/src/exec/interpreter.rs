//! The executor: a plain interpreter over a device program, one arm per action. All device work
//! goes through the `Backend`; all buffers through the pool. Parameters, accumulated gradients
//! and optimizer state persist across steps; everything else is freed at its last use.

use super::backend::{Backend, KernelCtx, TensorRef, UpdateRule};
use super::memory::{Category, MemoryStats, Pool};
use super::plan::{Action, Program, ProgramKind};
use crate::collectives::{Communicator, DeviceCommunicator};
use crate::error::{Error, Result};
use crate::ir::StageMap;
use crate::ir::{DType, Graph, Init, NodeId, Op};
use crate::rng;
use crate::tensor::{AsHostView, HostData, HostView};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

mod grads;
mod shards;
mod transfer;

use shards::ParamShards;
pub use shards::Residency;
pub use transfer::Awaited;

/// Called with (parameter, its accumulated gradient) after every gradient accumulation.
pub type GradHook<'a> = dyn FnMut(NodeId, &[f32]) -> Result<()> + 'a;

/// Where a final gradient goes during backward: a host reducer copies it (`Host`), a device
/// reducer takes the buffer itself and gives it back reduced (`Device`, then `put_grad`).
pub enum GradSink<'h, Buf> {
    Host(&'h mut GradHook<'h>),
    Device(&'h mut (dyn FnMut(NodeId, Buf) -> Result<()> + 'h)),
}

/// How gradients are reduced across replicas (`communication.*` config keys).
#[derive(Debug, Clone, PartialEq)]
pub struct GradReduce {
    /// Target bucket size (`communication.bucket_size_mb`).
    pub bucket_bytes: usize,
    /// Most buckets (`communication.max_splits`).
    pub max_splits: usize,
    /// Some(scale): all-reduce an fp16 payload scaled by it (`communication.fp16`, `fp16_scale`).
    pub fp16_scale: Option<f32>,
    /// Applied after the sum (1/(R*M) for the mean).
    pub scale: f32,
}

/// How a device reaches the other stages of its pipeline replica.
pub struct Link<'a, Buf> {
    pub comm: &'a dyn Communicator,
    /// The same group over device memory, when the engine has one: sends and receives use it.
    pub device: Option<&'a dyn DeviceCommunicator<Buf>>,
    /// Rank (in `comm`) of each stage of this device's pipeline replica.
    pub rank_of_stage: &'a [usize],
    /// ZeRO v2: the channel to this stage's other replicas over which parameters are gathered.
    pub params: Option<&'a dyn Communicator>,
    /// The tensor-parallel group of this device (`TpReduce` and `TpGather` run on it).
    pub tp: Option<&'a dyn Communicator>,
}

/// Message tag of a tensor: the micro-batch and the node, so concurrent transfers never mix.
fn tag(mb: usize, node: NodeId) -> u64 {
    ((mb as u64) << 32) | u64::from(node.0)
}

pub struct Executor<B: Backend> {
    pub backend: B,
    /// Time spent blocked in receives (idle time inside pipeline work), for traces.
    pub recv_wait: std::time::Duration,
    graph: Graph,
    /// Concrete dims per node.
    dims: Vec<Vec<usize>>,
    program: Program,
    /// Parameters owned by this device's stage (persistent).
    params: Vec<Option<B::Buffer>>,
    /// Transient values per micro-batch slot: several micro-batches are in flight under 1F1B.
    slots: Vec<Vec<Option<B::Buffer>>>,
    /// Accumulated gradient per parameter node (None between steps).
    grads: Vec<Option<B::Buffer>>,
    /// Optimizer state per parameter node, created on its first update; each buffer covers
    /// the parameter's `owned` range.
    state: Vec<Vec<B::Buffer>>,
    /// Under ZeRO, the range of each parameter this replica updates (None: all of every one).
    owned: Option<HashMap<NodeId, Range<usize>>>,
    /// ZeRO v1: gradients are freed once handed to the reduction hook.
    release_notified: bool,
    /// Parameters whose gradient buffer holds only their owned range (ZeRO v1, after reduction).
    shard_grads: std::collections::HashSet<NodeId>,
    /// `offload.level='v0'`: `params` and `state` are host memory; programs fetch parameters.
    offload: bool,
    /// ZeRO v2: `params` hold this replica's piece of each parameter; fetches gather them.
    shards: Option<ParamShards>,
    pool: Pool<B>,
}

/// Field-level lookup, so callers can hold it while borrowing the pool or gradients mutably.
fn lookup<'a, T>(
    params: &'a [Option<T>],
    slots: &'a [Vec<Option<T>>],
    mb: usize,
    id: NodeId,
) -> Result<&'a T> {
    // A parameter fetched for this program (offload) is read from its slot.
    slots
        .get(mb)
        .and_then(|s| s[id.index()].as_ref())
        .or_else(|| params[id.index()].as_ref())
        .ok_or_else(|| Error::internal(format!("{id} is not live for micro-batch {mb}")))
}

fn numel(d: &[usize]) -> usize {
    d.iter().product()
}

/// Host values of a parameter initialiser, a pure function of (seed, name, index).
pub fn init_values(init: &Init, name: &str, len: usize, seed: u64) -> Vec<f32> {
    let stream = rng::hash_name(name);
    match *init {
        // The whole tensor, cut: a shard starts as that part of the unsplit parameter.
        Init::Shard {
            ref base,
            ref full,
            cut,
            index,
        } => {
            // A vocabulary that does not divide is padded with zero rows first.
            let whole = init_values(base, name, full.iter().product(), seed);
            // The executor checked the cut (`check_cut`) before asking for the values.
            super::tp::cut_padded(&whole, full, cut, index).unwrap_or_else(|_| vec![f32::NAN; len])
        }
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
    /// `graph` must be batch-resolved and differentiated. The parameters of `stage` are
    /// initialised here (every replica initialises identically from the seed).
    pub fn new(
        backend: B,
        graph: Graph,
        stages: &StageMap,
        stage: usize,
        seed: u64,
    ) -> Result<Self> {
        Self::with_residency(backend, graph, stages, stage, seed, Residency::default())
    }

    /// `new`, with parameters kept where `residency` says: under offload in host memory,
    /// and with `fetch` each program fetches the parameters it reads right before use.
    pub fn with_residency(
        backend: B,
        graph: Graph,
        stages: &StageMap,
        stage: usize,
        seed: u64,
        residency: Residency,
    ) -> Result<Self> {
        let dims = graph
            .nodes
            .iter()
            .map(|n| n.shape.concrete())
            .collect::<Result<Vec<_>>>()?;
        let program = Program::build(&graph, stages, stage, residency.fetches());
        let n = graph.nodes.len();
        let mut ex = Executor {
            backend,
            recv_wait: std::time::Duration::ZERO,
            dims,
            program,
            params: (0..n).map(|_| None).collect(),
            slots: Vec::new(),
            grads: (0..n).map(|_| None).collect(),
            state: (0..n).map(|_| Vec::new()).collect(),
            owned: None,
            release_notified: false,
            shard_grads: Default::default(),
            offload: residency.offload,
            shards: None,
            pool: Pool::default(),
            graph,
        };
        for (id, _) in ex.graph.parameters() {
            if stages.stage_of[id.index()] != stage {
                continue;
            }
            let (name, init) = match &ex.graph.node(id).op {
                Op::Parameter { name, init, .. } => (name.clone(), init.clone()),
                _ => unreachable!("parameters() returns parameter nodes"),
            };
            let len = numel(&ex.dims[id.index()]);
            if let Init::Shard { full, cut, .. } = &init {
                super::tp::check_cut(full, *cut)?;
            }
            let values = HostData::F32(init_values(&init, &name, len, seed));
            ex.params[id.index()] = Some(ex.backend.upload(&values)?);
            let home = ex.home(Category::Parameters);
            ex.pool.adopt(home, DType::F32, len);
        }
        Ok(ex)
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    pub fn memory(&self) -> &MemoryStats {
        &self.pool.stats
    }

    pub fn reset_peaks(&mut self) {
        self.pool.reset_peaks();
    }

    fn slot(&mut self, mb: usize) -> &mut Vec<Option<B::Buffer>> {
        while self.slots.len() <= mb {
            self.slots
                .push((0..self.graph.nodes.len()).map(|_| None).collect());
        }
        &mut self.slots[mb]
    }

    /// Run one micro-batch through one of this stage's programs. `inputs` are keyed by input
    /// name and already sized for one micro-batch.
    pub fn run<D: AsHostView>(
        &mut self,
        kind: ProgramKind,
        mb: usize,
        inputs: &BTreeMap<String, D>,
        ctx: &KernelCtx,
        link: Option<&Link<'_, B::Buffer>>,
    ) -> Result<()> {
        self.run_with(kind, mb, inputs, ctx, link, None)
    }

    /// `run`, calling `on_grad(param, gradient)` each time a parameter's accumulated gradient is
    /// updated (the data-parallel reducer starts a bucket's all-reduce once all of it is final).
    pub fn run_with<D: AsHostView>(
        &mut self,
        kind: ProgramKind,
        mb: usize,
        inputs: &BTreeMap<String, D>,
        ctx: &KernelCtx,
        link: Option<&Link<'_, B::Buffer>>,
        mut on_grad: Option<&mut GradSink<'_, B::Buffer>>,
    ) -> Result<()> {
        self.slot(mb);
        // Taken out for the run so `act` can borrow the executor mutably; put back after.
        let actions = std::mem::take(self.program.list_mut(kind));
        let mut run = |ex: &mut Self| {
            actions.iter().try_for_each(|a| {
                ex.act(a, mb, inputs, ctx, link)?;
                match (a, on_grad.as_deref_mut()) {
                    (Action::AccumulateGrad { param, .. }, Some(GradSink::Host(hook))) => {
                        ex.notify(*param, hook)?;
                        if ex.release_notified {
                            ex.release_grad(*param);
                        }
                        Ok(())
                    }
                    (Action::AccumulateGrad { param, .. }, Some(GradSink::Device(take))) => {
                        ex.hand_over(*param, take)
                    }
                    _ => Ok(()),
                }
            })
        };
        // ZeRO v2: a thread gathers the next parameter while this one is in use.
        let result = match self.prefetch_order(&actions, link) {
            Some((order, comm)) => self.run_prefetching(order, comm, run),
            None => run(self),
        };
        *self.program.list_mut(kind) = actions;
        if result.is_err() {
            self.release_transients();
        }
        result
    }

    fn notify(&self, param: NodeId, hook: &mut GradHook<'_>) -> Result<()> {
        let g = self.grads[param.index()]
            .as_ref()
            .ok_or_else(|| Error::internal("no gradient"))?;
        self.read_f32(g, |host| hook(param, host))
    }

    fn act<D: AsHostView>(
        &mut self,
        action: &Action,
        mb: usize,
        inputs: &BTreeMap<String, D>,
        ctx: &KernelCtx,
        link: Option<&Link<'_, B::Buffer>>,
    ) -> Result<()> {
        let no_link = || Error::internal("a cross-stage transfer needs a communicator");
        match *action {
            Action::Load(id) => self.load(id, mb, inputs),
            Action::Compute(id) => match self.graph.node(id).op {
                Op::TpReduce
                | Op::TpMax
                | Op::TpGather { .. }
                | Op::TpGatherPartial { .. }
                | Op::TpReduceScatter { .. }
                | Op::TpAllToAll => self.tp_collective(id, mb, link),
                _ => self.compute(id, mb, ctx),
            },
            Action::Free(id) => {
                self.free(mb, id);
                Ok(())
            }
            Action::Fetch(p) => self.fetch(p, mb),
            Action::AccumulateGrad { param, grad, take } => self.accumulate(param, grad, take, mb),
            Action::Send { node, to_stage } => {
                let link = link.ok_or_else(no_link)?;
                let to = link.rank_of_stage[to_stage];
                if let Some(device) = link.device {
                    return device.send(self.value(mb, node)?, to, tag(mb, node));
                }
                self.read_f32(self.value(mb, node)?, |buf| {
                    link.comm.send(buf, to, tag(mb, node))
                })
            }
            Action::Recv { node, from_stage } => {
                let link = link.ok_or_else(no_link)?;
                let len = numel(&self.dims[node.index()]);
                let dtype = self.graph.node(node).dtype;
                let mut b = self
                    .pool
                    .take(&self.backend, Category::Activations, dtype, len)?;
                let t0 = std::time::Instant::now();
                let from = link.rank_of_stage[from_stage];
                let got = match link.device {
                    Some(device) => device.recv(&mut b, from, tag(mb, node)),
                    None => self.write_values(&mut b, dtype, len, |buf| {
                        link.comm.recv(buf, from, tag(mb, node))
                    }),
                };
                self.recv_wait += t0.elapsed();
                if let Err(e) = got {
                    self.pool.give(Category::Activations, dtype, len, b);
                    return Err(e);
                }
                self.slot(mb)[node.index()] = Some(b);
                Ok(())
            }
        }
    }

    /// The buffer of a value as seen by micro-batch `mb` (local parameters are shared).
    fn value(&self, mb: usize, id: NodeId) -> Result<&B::Buffer> {
        lookup(&self.params, &self.slots, mb, id)
    }

    fn load<D: AsHostView>(
        &mut self,
        id: NodeId,
        mb: usize,
        inputs: &BTreeMap<String, D>,
    ) -> Result<()> {
        let node = self.graph.node(id);
        let Op::Input { name, dtype, .. } = &node.op else {
            return Err(Error::internal(format!("load of non-input {id}")));
        };
        let data = inputs
            .get(name)
            .ok_or_else(|| Error::batch(format!("missing input '{name}'")))?
            .view();
        let len = numel(&self.dims[id.index()]);
        if data.dtype() != *dtype || data.len() != len {
            return Err(Error::batch(format!(
                "input '{name}' must be {dtype} with {len} elements (shape {:?}), got {} with {}",
                self.dims[id.index()],
                data.dtype(),
                data.len()
            )));
        }
        let dtype = *dtype;
        let mut b = self
            .pool
            .take(&self.backend, Category::Activations, dtype, len)?;
        if let Err(e) = self.backend.write(&mut b, data) {
            self.pool.give(Category::Activations, dtype, len, b);
            return Err(e);
        }
        self.slot(mb)[id.index()] = Some(b);
        Ok(())
    }

    fn compute(&mut self, id: NodeId, mb: usize, ctx: &KernelCtx) -> Result<()> {
        let node = &self.graph.nodes[id.index()];
        let mut refs = Vec::with_capacity(node.inputs.len());
        for x in &node.inputs {
            let buf = lookup(&self.params, &self.slots, mb, *x)?;
            let dtype = self.graph.nodes[x.index()].dtype;
            refs.push(TensorRef {
                buf,
                shape: &self.dims[x.index()],
                dtype,
            });
        }
        let len = numel(&self.dims[id.index()]);
        let mut out = self
            .pool
            .take(&self.backend, Category::Activations, node.dtype, len)?;
        self.backend
            .execute(&node.op, &refs, &mut out, &self.dims[id.index()], ctx)?;
        self.slots[mb][id.index()] = Some(out);
        Ok(())
    }

    /// A tensor-parallel collective node: all-reduce (`TpReduce` sums, `TpMax` takes the max)
    /// or all-gather (`TpGather`) of its input over the device's tensor-parallel group.
    fn tp_collective(
        &mut self,
        id: NodeId,
        mb: usize,
        link: Option<&Link<'_, B::Buffer>>,
    ) -> Result<()> {
        let node = &self.graph.nodes[id.index()];
        let op = node.op.clone();
        let x = node.inputs[0];
        let comm = link.and_then(|l| l.tp).ok_or_else(|| {
            Error::internal(format!(
                "{id} {}: a tensor-parallel collective needs the device's tensor-parallel group",
                op.name()
            ))
        })?;
        let input = self.read_f32(self.value(mb, x)?, |v| Ok(v.to_vec()))?;
        let dims = self.dims[id.index()].clone();
        let len = numel(&dims);
        let mut out = self
            .pool
            .take(&self.backend, Category::Activations, DType::F32, len)?;
        let done = self.write_f32(&mut out, len, |y| match op {
            Op::TpGather { cut, .. } | Op::TpGatherPartial { cut, .. } => {
                let mut shards = vec![0.0; len];
                comm.all_gather(&input, &mut shards)?;
                super::tp::assemble(&shards, &dims, cut, y)
            }
            // Each rank's shard laid out contiguously, in rank order, then reduce-scattered.
            Op::TpReduceScatter { cut, .. } => {
                let whole = &self.dims[x.index()];
                let mut by_rank = vec![0.0; input.len()];
                let n = input.len() / cut.parts.max(1);
                for (r, part) in by_rank.chunks_exact_mut(n.max(1)).enumerate() {
                    super::tp::cut_into(&input, whole, cut, r, part)?;
                }
                comm.reduce_scatter(&by_rank, y, crate::collectives::ReduceOp::Sum)
            }
            Op::TpAllToAll => comm.all_to_all(&input, y),
            Op::TpMax => {
                y.copy_from_slice(&input);
                comm.all_reduce(y, crate::collectives::ReduceOp::Max)
            }
            _ => {
                y.copy_from_slice(&input);
                comm.all_reduce(y, crate::collectives::ReduceOp::Sum)
            }
        });
        if let Err(e) = done {
            self.pool.give(Category::Activations, DType::F32, len, out);
            return Err(e);
        }
        self.slot(mb)[id.index()] = Some(out);
        Ok(())
    }

    /// The whole parameter for this micro-batch's program: a device copy of the host one
    /// (offload), or gathered from every replica's piece (ZeRO v2).
    fn fetch(&mut self, p: NodeId, mb: usize) -> Result<()> {
        let len = numel(&self.dims[p.index()]);
        let f32 = DType::F32;
        let mut b = self
            .pool
            .take(&self.backend, Category::Parameters, f32, len)?;
        let copied = if self.is_sharded(p) {
            self.gather_param(p, &mut b)
        } else {
            let host = self.params[p.index()].as_ref().ok_or_else(|| {
                Error::internal(format!("fetch of {p}: not a parameter of this stage"))
            })?;
            self.read_f32(host, |v| self.backend.write(&mut b, HostView::F32(v)))
        };
        if let Err(e) = copied {
            self.pool.give(Category::Parameters, f32, len, b);
            return Err(e);
        }
        self.slot(mb)[p.index()] = Some(b);
        Ok(())
    }

    /// Where a persistent buffer of category `c` is accounted: host memory under offload.
    pub(crate) fn home(&self, c: Category) -> Category {
        match c {
            Category::Parameters | Category::OptimizerState if self.offload => Category::Host,
            c => c,
        }
    }

    fn free(&mut self, mb: usize, id: NodeId) {
        if let Some(buf) = self.slots.get_mut(mb).and_then(|s| s[id.index()].take()) {
            let n = self.graph.node(id);
            // A local parameter fetched from host memory (offload); a parameter received from
            // another stage is an activation like any received value.
            let fetched = matches!(n.op, Op::Parameter { .. }) && self.params[id.index()].is_some();
            let category = if fetched {
                Category::Parameters
            } else {
                Category::Activations
            };
            self.pool
                .give(category, n.dtype, numel(&self.dims[id.index()]), buf);
        }
    }

    fn accumulate(&mut self, param: NodeId, grad: NodeId, take: bool, mb: usize) -> Result<()> {
        let len = numel(&self.dims[param.index()]);
        let f32 = DType::F32;
        if self.grads[param.index()].is_some() {
            let g = lookup(&self.params, &self.slots, mb, grad)?;
            let acc = self.grads[param.index()].as_mut().expect("checked");
            return self.backend.add_inplace(acc, g);
        }
        if take {
            // Last reader: move the buffer instead of copying it.
            let g = self.slots[mb][grad.index()]
                .take()
                .ok_or_else(|| Error::internal("grad not live"))?;
            self.pool.drop_buffer(Category::Activations, f32, len);
            self.pool.adopt(Category::Gradients, f32, len);
            self.grads[param.index()] = Some(g);
            return Ok(());
        }
        let mut acc = self
            .pool
            .take(&self.backend, Category::Gradients, f32, len)?;
        let g = lookup(&self.params, &self.slots, mb, grad)?;
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

    /// Free every transient value of every micro-batch (after an error mid-program).
    pub fn release_transients(&mut self) {
        for mb in 0..self.slots.len() {
            for i in 0..self.graph.nodes.len() {
                self.free(mb, NodeId(i as u32));
            }
        }
    }

    /// Download a value kept by the last program of micro-batch `mb` (loss, outputs) and free it.
    /// 16-bit values come back as f32.
    pub fn take_value(&mut self, mb: usize, id: NodeId) -> Result<HostData> {
        let data = self.backend.download(self.value(mb, id)?)?;
        self.free(mb, id);
        Ok(match data {
            HostData::BF16(_) | HostData::F16(_) => {
                HostData::F32(data.to_f32().expect("float").into_owned())
            }
            data => data,
        })
    }
}
