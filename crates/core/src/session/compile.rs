//! Compile-time helpers of the trainer: batch inputs, the device count, the automatic stage
//! partition and EPL's device slicing of the stages.

use super::options::{DeviceSpec, TrainerOptions};
use super::trainer::{InputSpec, Trainer};
use crate::config::GcType;
use crate::error::{Error, Result};
use crate::exec::CpuBackend;
use crate::ir::{Dim, Graph};
use crate::passes::{
    assign_stages, block_ends, live_across, recompute, run_pass, sqrt_segment_ends,
};
use std::collections::BTreeSet;

pub(super) fn input_specs(model: &Graph, batch: usize) -> Result<Vec<InputSpec>> {
    let mut specs = Vec::new();
    for (id, name) in model.inputs() {
        let n = model.node(id);
        let dims = n.shape.dims();
        if dims.iter().skip(1).any(|d| matches!(d, Dim::Batch(_))) {
            return Err(Error::shape(
                "input",
                format!(
                    "input '{name}': only axis 0 may be the batch, got {}",
                    n.shape
                ),
            ));
        }
        let batched = matches!(dims.first(), Some(Dim::Batch(_)));
        specs.push(InputSpec {
            name: name.to_string(),
            dims: n.shape.resolve(batch).to_vec(),
            dtype: n.dtype,
            batched,
        });
    }
    Ok(specs)
}

/// This process's devices: `devices` cpu:N / cuda:N, narrowed by `cluster.run_visible_devices`
/// (EPL's visible device list: the process uses the listed ones, renumbered from 0).
pub(super) fn device_count(options: &TrainerOptions) -> Result<usize> {
    let n = match options.devices {
        DeviceSpec::Cpu(n) if n <= 16 => n,
        DeviceSpec::Cpu(n) => {
            return Err(Error::config(
                "devices",
                format!("devices cpu:{n}: at most 16 CPU virtual devices"),
            ));
        }
        // A GPU's virtual devices share it (each its own streams); the count bounds alike.
        DeviceSpec::Cuda(n) if n <= 16 => n,
        DeviceSpec::Cuda(n) => {
            return Err(Error::config(
                "devices",
                format!("devices cuda:{n}: at most 16 virtual devices"),
            ));
        }
    };
    let text = &options.config.cluster.run_visible_devices;
    match (crate::strategy::visible_devices(text, n)?, options.devices) {
        (None, _) => Ok(n),
        (Some(_), DeviceSpec::Cuda(_)) => Err(Error::Unsupported {
            feature: "cluster.run_visible_devices".into(),
            message: format!(
                "cluster.run_visible_devices='{text}' selects CPU virtual devices; on cuda \
                 devices the GPUs a process sees are CUDA_VISIBLE_DEVICES'"
            ),
        }),
        (Some(visible), DeviceSpec::Cpu(_)) => Ok(visible.len()),
    }
}

/// The hosts EPL slices: the processes of a multi-process job (one host each, named
/// `node<N>:<local rank>` from the launcher's variables so `aware_row` groups a node's
/// workers), else the simulated `hosts x devices` of the `cluster` option, else one host.
pub(super) fn device_cluster(
    options: &TrainerOptions,
    n: usize,
    processes: Option<&super::processes::Cluster>,
) -> Result<crate::strategy::Cluster> {
    use crate::strategy::{Cluster, DeviceKind};
    let kind = match options.devices {
        DeviceSpec::Cpu(_) => DeviceKind::Cpu,
        DeviceSpec::Cuda(_) => DeviceKind::Cuda,
    };
    if let Some(p) = processes {
        return Cluster::new(kind, p.hosts());
    }
    match options.hosts {
        None => Cluster::uniform(kind, 1, n),
        Some((h, d)) if h * d == n => Cluster::uniform(kind, h, d),
        Some((h, d)) => Err(Error::config(
            "cluster",
            format!(
                "cluster {h}x{d} has {} devices, but devices {}:{n} has {n}",
                h * d,
                options.devices.kind()
            ),
        )),
    }
}

/// With `auto.auto_parallel`, cut the model into `pipeline.num_stages` stages (EPL's rule: no
/// strategy scopes; a stage count <= 1 keeps one stage).
pub(super) fn auto_partition(
    model: Graph,
    options: &TrainerOptions,
) -> Result<(Graph, Option<crate::passes::AutoStageReport>)> {
    if !options.config.auto.auto_parallel {
        return Ok((model, None));
    }
    let s = options.config.pipeline.num_stages.max(1) as usize;
    let policy = options.config.auto.stage_policy;
    let (g, report) = run_pass_with(model, |g| crate::passes::auto_stages(g, s, policy))?;
    Ok((g, Some(report)))
}

fn run_pass_with<T>(
    g: Graph,
    pass: impl FnOnce(Graph) -> Result<(Graph, T)>,
) -> Result<(Graph, T)> {
    let (g, t) = pass(g)?;
    g.verify()?;
    Ok((g, t))
}

/// EPL's slicing of the stages (TaskGraphs that compute) over `cluster`. With one-device
/// stages and the default enumeration it is replica-major, the order of the trainer's ranks.
pub(super) fn stage_slicing(
    model: &Graph,
    cluster: &crate::strategy::Cluster,
    options: &TrainerOptions,
) -> Result<crate::strategy::Slicing> {
    let stages = assign_stages(model)?;
    let tgs: Vec<crate::ir::TaskGraph> = stages
        .names
        .iter()
        .map(|name| {
            model
                .taskgraphs
                .iter()
                .find(|t| &t.name == name)
                .cloned()
                .unwrap_or(crate::ir::TaskGraph {
                    name: name.clone(),
                    strategy: crate::ir::Strategy::Replicate,
                    device_count: 1,
                })
        })
        .collect();
    crate::strategy::slice_for_config(cluster, &tgs, &options.config)
}

/// `gradient_checkpoint`: the differentiated graph with backward recomputing every forward
/// value but the checkpoints (see `passes::recompute`).
pub(super) fn recompute_activations(graph: Graph, options: &TrainerOptions) -> Result<Graph> {
    let gc = &options.config.gradient_checkpoint;
    let (keep, end) = match gc.kind {
        GcType::Off => return Ok(graph),
        GcType::Collection if graph.checkpoints.is_empty() => {
            return Err(Error::config(
                "gradient_checkpoint.type",
                "gradient_checkpoint.type='collection' keeps the tensors marked with \
                 m.checkpoint(t) and recomputes the rest, but no tensor is marked",
            ));
        }
        GcType::Collection => (graph.checkpoints.iter().copied().collect(), None),
        GcType::Auto => {
            let mut ends = block_ends(&graph);
            if ends.is_empty() {
                ends = sqrt_segment_ends(&graph);
            }
            let end = usize::try_from(gc.end_taskgraph).ok();
            (live_across(&graph, &ends), end)
        }
    };
    let keep: BTreeSet<_> = keep;
    let before = gc.check_gradients.then(|| graph.clone());
    let after = run_pass(graph, |g| recompute(g, &keep, end))?;
    if let Some(before) = before {
        check_same_gradients(&before, &after)?;
    }
    Ok(after)
}

/// `gradient_checkpoint.check_gradients`: the recomputed graph has the same gradients as the
/// plain one, in count, shape and op kind.
fn check_same_gradients(before: &Graph, after: &Graph) -> Result<()> {
    let kinds = |g: &Graph| -> Vec<(String, String)> {
        g.grads
            .iter()
            .map(|&(_, x)| (g.node(x).op.name().to_string(), g.node(x).shape.to_string()))
            .collect()
    };
    let (a, b) = (kinds(before), kinds(after));
    if a.len() != b.len() {
        return Err(Error::internal(format!(
            "gradient_checkpoint.check_gradients: {} gradients without recomputation, {} with",
            a.len(),
            b.len()
        )));
    }
    for (((p, _), x), y) in before.grads.iter().zip(&a).zip(&b) {
        if x != y {
            return Err(Error::internal(format!(
                "gradient_checkpoint.check_gradients: the gradient of {} is {} {} without \
                 recomputation and {} {} with",
                before.node_line(*p),
                x.0,
                x.1,
                y.0,
                y.1
            )));
        }
    }
    Ok(())
}

/// The compiled graph of every tensor-parallel index (one without tensor parallelism): the
/// same nodes, each index holding its own shards; mixed precision's report and loss scaler are
/// the first index's (every index makes the same).
#[allow(clippy::type_complexity)]
pub(super) fn compile_per_tp(
    resolved: &Graph,
    options: &TrainerOptions,
    tp: usize,
    colocate: bool,
) -> Result<(
    Vec<Graph>,
    Option<crate::passes::AmpReport>,
    Option<super::amp::LossScaler>,
)> {
    use super::amp::{amp_backward, amp_forward};
    let mut graphs = Vec::with_capacity(tp);
    let mut first = None;
    for t in 0..tp {
        let how = crate::passes::SplitOptions {
            sequence: options.config.split.sequence_parallel,
            colocate,
        };
        let split = run_pass(resolved.clone(), |g| {
            crate::passes::tensor_split(g, t, tp, how)
        })?;
        // The tensor-parallel collectives are `Precision::Full`: AMP casts their inputs to f32,
        // so partial sums are added in f32 across the group.
        let (split, amp_report) = amp_forward(split, options)?;
        let compiled = run_pass(split, crate::autodiff::differentiate)?;
        let (compiled, scaler) = amp_backward(compiled, options)?;
        graphs.push(recompute_activations(compiled, options)?);
        first.get_or_insert((amp_report, scaler));
    }
    let (amp_report, scaler) = first.ok_or_else(|| Error::internal("no tensor-parallel index"))?;
    Ok((graphs, amp_report, scaler))
}

/// Makes the backend of each virtual device this process hosts: (its rank in the job, the
/// intra-op threads it may use).
pub type BackendFactory<'a, B> = dyn Fn(usize, usize) -> Result<B> + 'a;

impl Trainer<CpuBackend> {
    /// Compile `model` for CPU virtual devices (`devices: cpu:N`).
    pub fn compile(model: Graph, options: TrainerOptions) -> Result<Trainer> {
        if let DeviceSpec::Cuda(n) = options.devices {
            return Err(Error::Device {
                message: format!(
                    "devices cuda:{n} run on weft-cuda's backend (weft_cuda::compile, or the \
                     native addon with CUDA); this entry point builds CPU devices"
                ),
            });
        }
        Self::compile_with(model, options, &|_, threads| Ok(CpuBackend::new(threads)))
    }
}
