//! The plan of a compiled trainer as text and JSON (`weft plan`, `trainer.plan`), and the
//! memory prediction per device made by simulating its programs under the pipeline schedule.

use super::device::Work;
use super::trainer::Trainer;
use crate::exec::Backend;
use crate::exec::{Action, Program};
use crate::ir::{Graph, NodeId, Strategy};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fmt::Write;

/// Predicted peak bytes per category for one device, and of all of them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryEstimate {
    pub params: usize,
    pub grads: usize,
    pub optimizer_state: usize,
    pub activations: usize,
    /// Peak of activations, gradients and fetched parameters together: lower than the sum of
    /// their peaks when backward frees activations as gradients appear (one micro-batch per
    /// step).
    pub transient: usize,
    /// Host memory under offload: master parameters and optimizer state.
    pub host: usize,
    /// Parameter bytes kept on the device between uses: all of them, ZeRO v2's pieces, or
    /// none under offload.
    pub resident: usize,
}

impl MemoryEstimate {
    /// Predicted peak of the device's allocator (what a memory limit is checked against);
    /// offloaded parameters are in `transient` as fetched.
    pub fn total(&self) -> usize {
        self.resident + self.optimizer_state + self.transient
    }

    pub fn to_json(&self) -> Value {
        json!({
            "params": self.params, "grads": self.grads, "optimizer_state": self.optimizer_state,
            "activations": self.activations, "host": self.host, "total": self.total(),
            "resident_params": self.resident,
        })
    }
}

fn bytes(graph: &Graph, id: NodeId) -> usize {
    let n = graph.node(id);
    n.shape.size() * n.dtype.size_bytes()
}

/// What a walk over a program finds.
struct Walk {
    /// Peak of activations alone.
    activations: usize,
    /// Peak of activations, gradients and fetched parameters together.
    joint: usize,
    /// Peak of parameters fetched from host memory (offload).
    fetched: usize,
    /// Activations live at the end.
    end: usize,
}

/// `walk`, also counting gradients as backward creates them when `grads` is given (the
/// parameters holding one already, and whether a gradient is freed once handed to the reducer
/// as ZeRO v1 does), and parameters fetched from host memory.
fn walk_with_grads(
    graph: &Graph,
    actions: &[Action],
    start: usize,
    mut grads: Option<(&mut BTreeSet<NodeId>, bool)>,
) -> Walk {
    let (mut live, mut held, mut fetched) = (start, 0usize, 0usize);
    let mut w = Walk {
        activations: start,
        joint: start,
        fetched: 0,
        end: 0,
    };
    let (mut moved, mut on_loan) = (BTreeSet::new(), BTreeSet::new());
    for a in actions {
        match *a {
            Action::Load(id) | Action::Compute(id) | Action::Recv { node: id, .. } => {
                live += bytes(graph, id)
            }
            Action::Fetch(id) => {
                on_loan.insert(id);
                fetched += bytes(graph, id)
            }
            Action::Free(id) if on_loan.remove(&id) => {
                fetched = fetched.saturating_sub(bytes(graph, id))
            }
            Action::Free(id) if !moved.contains(&id) => {
                live = live.saturating_sub(bytes(graph, id))
            }
            Action::AccumulateGrad { param, grad, take } => {
                if let Some((have, released)) = grads.as_mut()
                    && have.insert(param)
                {
                    // The first gradient of a parameter: moved out of the activations, or
                    // copied into a new buffer; ZeRO v1 frees it once in its bucket.
                    if take {
                        moved.insert(grad);
                        live = live.saturating_sub(bytes(graph, grad));
                    }
                    if !*released {
                        held += bytes(graph, param);
                    }
                }
            }
            Action::Free(_) | Action::Send { .. } => {}
        }
        w.activations = w.activations.max(live);
        w.fetched = w.fetched.max(fetched);
        w.joint = w.joint.max(live + held + fetched);
    }
    w.end = live;
    w
}

/// Most micro-batches whose forward ran but backward has not, over a stage's work list.
pub fn max_in_flight(work: &[Work]) -> usize {
    let (mut open, mut most) = (0usize, 0usize);
    for w in work {
        match w {
            Work::Forward { .. } => open += 1,
            Work::Backward { .. } => open = open.saturating_sub(1),
        }
        most = most.max(open);
    }
    most
}

/// How a stage runs, as far as its memory goes.
struct Mode {
    /// Micro-batches whose forward ran but backward has not, at most.
    in_flight: usize,
    /// Optimizer state buffers per parameter.
    states: usize,
    /// More than one micro-batch per step (gradients accumulate).
    accumulates: bool,
    /// Parameters and optimizer state are host memory.
    offload: bool,
    /// Programs fetch the parameters they read (offload, ZeRO v2).
    fetch: bool,
    /// ZeRO: elements of each state buffer this replica keeps (v2: of the parameters too).
    owned: Option<usize>,
    /// ZeRO v2: the device keeps `owned` parameter elements between uses.
    sharded_params: bool,
    /// ZeRO v1/v2: each gradient is freed once handed to the reducer.
    grads_released: bool,
}

/// A stage's prediction: k micro-batches in flight keep k-1 copies of what a forward retains,
/// on top of the transient peak of one micro-batch's forward and backward.
fn predict(graph: &Graph, program: &Program, stage_of: &[usize], mode: &Mode) -> MemoryEstimate {
    let Mode {
        in_flight,
        states,
        accumulates,
        offload,
        fetch,
        owned,
        sharded_params,
        grads_released,
    } = *mode;
    let local_params: Vec<NodeId> = graph
        .parameters()
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| stage_of[id.index()] == program.stage)
        .collect();
    let params: usize = local_params.iter().map(|id| bytes(graph, *id)).sum();
    let grads: usize = graph
        .grads
        .iter()
        .filter(|(p, _)| local_params.contains(p))
        .map(|(p, _)| bytes(graph, *p))
        .sum();
    let wf = walk_with_grads(graph, &program.forward, 0, None);
    let mut have = BTreeSet::new();
    // ZeRO v1 frees gradients into buckets in the last micro-batch only; with accumulation
    // the earlier ones keep them.
    let released = grads_released && !accumulates;
    let wb = walk_with_grads(
        graph,
        &program.backward,
        wf.end,
        Some((&mut have, released)),
    );
    let earlier = in_flight.saturating_sub(1) * wf.end;
    let activations = earlier + wf.activations.max(wb.activations);
    let fetched = wf.fetched.max(wb.fetched);
    // With accumulation every micro-batch after the first runs beside the whole gradients;
    // with one micro-batch they appear only as backward frees the activations.
    let transient = if accumulates {
        // The last micro-batches run beside the whole accumulated gradients: a backward then
        // adds into them instead of moving its gradients out of the activations.
        let mut all: BTreeSet<NodeId> = local_params.iter().copied().collect();
        let wb_full = walk_with_grads(graph, &program.backward, wf.end, Some((&mut all, false)));
        let first = earlier + wf.joint.max(wb.joint);
        first.max(earlier + wf.joint.max(wb_full.joint) + grads)
    } else {
        earlier + wf.joint.max(wb.joint)
    };
    let owned_bytes = owned.map(|n| n * 4);
    let optimizer_state = owned_bytes.unwrap_or(grads) * states;
    let kept = match owned_bytes {
        Some(b) if sharded_params => b,
        _ => params,
    };
    let resident = if offload { 0 } else { kept };
    MemoryEstimate {
        params: resident + if fetch { fetched } else { 0 },
        grads,
        optimizer_state: if offload { 0 } else { optimizer_state },
        activations,
        transient,
        host: if offload { kept + optimizer_state } else { 0 },
        resident,
    }
}

fn human(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn work_stage(w: &Work) -> usize {
    match *w {
        Work::Forward { stage, .. } | Work::Backward { stage, .. } => stage,
    }
}

impl<B: Backend> Trainer<B> {
    /// Predicted peak bytes of every device, in device order (summed over hosted stages).
    pub fn memory_estimates(&self) -> Vec<MemoryEstimate> {
        let states = self.options.optimizer.rule(0.0).state_count();
        let zero = self.options.config.zero.level;
        let offload = self.options.config.offload.level == crate::config::OffloadLevel::V0;
        self.devices
            .iter()
            .map(|d| {
                let work = &self.layout.work[d.position];
                let execs = d.execs.iter().zip(&d.zero);
                execs.fold(MemoryEstimate::default(), |acc, (e, plan)| {
                    let stage = e.program().stage;
                    let mine: Vec<Work> = work
                        .iter()
                        .copied()
                        .filter(|w| work_stage(w) == stage)
                        .collect();
                    let mode = Mode {
                        in_flight: max_in_flight(&mine),
                        states,
                        accumulates: self.layout.micro_batches > 1,
                        offload,
                        fetch: offload || zero.shards_params(),
                        owned: plan.as_ref().map(|p| p.owned_elements(d.replica)),
                        sharded_params: zero.shards_params(),
                        grads_released: zero.shards_grads(),
                    };
                    let mut m = predict(&self.compiled, e.program(), &self.stages.stage_of, &mode);
                    // v1/v2 free each gradient into its bucket and keep their chunks (or one
                    // whole gradient on its way into a bucket, if larger) once backward is
                    // done; with accumulation the whole gradients still build up over
                    // micro-batches.
                    if let Some(plan) = plan
                        .as_ref()
                        .filter(|_| zero.shards_grads() && !mode.accumulates)
                    {
                        m.grads = plan.owned_elements(d.replica).max(plan.largest()) * 4;
                        m.transient = m.transient.max(m.grads);
                    }
                    MemoryEstimate {
                        params: acc.params + m.params,
                        grads: acc.grads + m.grads,
                        optimizer_state: acc.optimizer_state + m.optimizer_state,
                        activations: acc.activations + m.activations,
                        transient: acc.transient + m.transient,
                        host: acc.host + m.host,
                        resident: acc.resident + m.resident,
                    }
                })
            })
            .collect()
    }

    /// Each device's actions for one step: its pipeline work, reduce-grad, optimizer step.
    fn device_schedule(&self, position: usize) -> Vec<String> {
        let qualified = self.layout.virtual_stages > 1;
        let mut s: Vec<String> = self.layout.work[position]
            .iter()
            .map(|w| w.label(qualified))
            .collect();
        if self.layout.replicas > 1 {
            s.push("ALLREDUCE".into());
        }
        s.push("STEP".into());
        s
    }

    /// The name of the device running rank `i` (replica-major ranks), from EPL's slicing.
    pub(super) fn device_name(&self, i: usize) -> String {
        let Some(slicing) = &self.slicing else {
            return format!("cpu:{i}");
        };
        let (r, s, t) = self.layout.coordinates(i);
        match slicing.taskgraphs[s].replicas.get(r).and_then(|d| d.get(t)) {
            Some(&d) => slicing.cluster.device_name(d),
            None => format!("cpu:{i}"),
        }
    }

    /// Every TaskGraph with its strategy and device indices, [replica][device] as EPL's
    /// VirtualDevice slices (under layout `all` every TaskGraph, each on every device); without
    /// a slicing (interleaved, colocated), each stage on its ranks.
    fn taskgraph_devices(&self) -> Vec<(String, &'static str, Vec<Vec<usize>>)> {
        if let Some(sl) = &self.slicing {
            return sl
                .taskgraphs
                .iter()
                .map(|tg| {
                    let ids = tg
                        .replicas
                        .iter()
                        .map(|r| r.iter().map(|d| d.index()).collect());
                    (
                        tg.name.clone(),
                        crate::strategy::strategy_name(tg.strategy),
                        ids.collect(),
                    )
                })
                .collect();
        }
        (0..self.layout.stages)
            .map(|stage| {
                let name = &self.stages.names[stage];
                let tg = self.model.taskgraphs.iter().find(|t| &t.name == name);
                let split = tg.is_some_and(|t| t.strategy == Strategy::Split);
                let ids = (0..self.layout.replicas).map(|r| vec![self.layout.rank_of(r, stage)]);
                let strategy = if split { "split" } else { "replicate" };
                (name.clone(), strategy, ids.collect())
            })
            .collect()
    }

    /// Mixed precision's decisions (each op's only with `amp.debug_log`).
    fn amp_json(&self) -> Value {
        let Some(a) = &self.amp_report else {
            return Value::Null;
        };
        let debug = self.options.config.amp.debug_log;
        json!({
            "dtype": self.options.config.amp.low_dtype().as_str(), "low": a.low, "full": a.full,
            "casts": a.casts, "decisions": debug.then_some(&a.decisions),
        })
    }

    pub fn plan_json(&self) -> Value {
        let taskgraphs: Vec<Value> = self
            .taskgraph_devices()
            .into_iter()
            .enumerate()
            .map(|(i, (name, strategy, devices))| {
                json!({"name": name, "index": i, "strategy": strategy, "devices": devices})
            })
            .collect();
        let mut schedule = serde_json::Map::new();
        let mut memory = serde_json::Map::new();
        for ((i, d), est) in self.devices.iter().enumerate().zip(self.memory_estimates()) {
            schedule.insert(self.device_name(i), json!(self.device_schedule(d.position)));
            memory.insert(self.device_name(i), est.to_json());
        }
        let (r, m) = (self.layout.replicas, self.layout.micro_batches);
        json!({
            "devices": (0..self.devices.len()).map(|i| self.device_name(i)).collect::<Vec<_>>(),
            "layout": self.slicing.as_ref().map_or("interleaved", |s| s.layout.name()),
            "virtual_stages": self.layout.virtual_stages,
            "batch": {"global": self.options.batch, "replicas": r, "micro_batches": m, "per_micro_batch": self.options.batch / (r * m)},
            "stages": self.layout.stages,
            "pipeline_strategy": self.options.config.pipeline.strategy.as_str(),
            "taskgraphs": taskgraphs,
            "schedule": schedule,
            "memory": memory,
            "parameters": self.param_count(),
            "auto_stages": self.auto_report.as_ref().map(|r| r.to_string()),
            "auto_stage_blocks": self.auto_report.as_ref().map(|r| {
                r.block_stages.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()
            }),
            "amp": self.amp_json(),
            "warnings": self.warnings,
            "executor": if self.cooperative { "cooperative" } else { "threads" },
            "config": self.options.config.to_json(),
            "config_env": self.options.config.env_reads.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "cluster": self.slicing.as_ref().map(|sl| sl.cluster.to_string()),
        })
    }

    pub fn plan_text(&self) -> String {
        let mut t = String::new();
        let (s, r, m) = (
            self.layout.stages,
            self.layout.replicas,
            self.layout.micro_batches,
        );
        let n = self.devices.len();
        let v = self.layout.virtual_stages;
        let _ = writeln!(
            t,
            "devices: {n} x {} ({r} replica(s) x {} device(s) per replica; {s} stage(s), {v} per device{})",
            self.options.devices.kind(),
            self.layout.ranks * self.layout.tp,
            match self.layout.tp {
                1 => String::new(),
                tp => format!("; each stage split over {tp} tensor-parallel devices"),
            }
        );
        let _ = writeln!(
            t,
            "batch: global {} = {r} replica(s) x {m} micro-batch(es) x {} rows",
            self.options.batch,
            self.options.batch / (r * m)
        );
        for (i, (name, _, devices)) in self.taskgraph_devices().into_iter().enumerate() {
            let _ = writeln!(t, "taskgraph {i} '{name}': devices {devices:?}");
        }
        if let Some(sl) = self
            .slicing
            .as_ref()
            .filter(|sl| sl.cluster.num_hosts() > 1)
        {
            let _ = writeln!(t, "cluster: {} (layout {})", sl.cluster, sl.layout.name());
        }
        for read in &self.options.config.env_reads {
            let _ = writeln!(t, "config from the environment: {read}");
        }
        let _ = writeln!(t, "parameters: {}", self.param_count());
        if self.cooperative {
            let _ = writeln!(
                t,
                "executor: cooperative ({n} device(s) interleaved on the calling thread; \
                 gradients reduced after compute, not overlapped with backward)"
            );
        }
        // Device-memory exchanges (GPU engines); the host communicators go unmentioned.
        let device: Vec<String> = self
            .exchange_engines()
            .into_iter()
            .filter(|(_, e)| *e != "host")
            .map(|(what, e)| format!("{what} over {e}"))
            .collect();
        if !device.is_empty() {
            let _ = writeln!(t, "exchange: {} (in device memory)", device.join(", "));
        }
        if let Some(a) = &self.amp_report {
            let low = self.options.config.amp.low_dtype().as_str();
            let _ = writeln!(
                t,
                "mixed precision: {} forward op(s) in {low}, {} in f32, {} cast(s)",
                a.low, a.full, a.casts
            );
            if self.options.config.amp.debug_log {
                for d in &a.decisions {
                    let _ = writeln!(t, "  {d}");
                }
            }
        }
        for w in &self.warnings {
            let _ = writeln!(t, "warning: {w}");
        }
        if let Some(r) = &self.auto_report {
            let _ = writeln!(t, "{}", r.to_string().trim_end());
        }
        let kind = match (s, v) {
            (1, _) => "gradient accumulation",
            (_, 1) => self.options.config.pipeline.strategy.as_str(),
            _ => "interleaved 1F1B",
        };
        let _ = writeln!(t, "schedule ({kind}):");
        match &self.layout.schedule {
            Some(sched) => {
                let _ = writeln!(t, "{}", crate::schedule::render_grid(sched).trim_end());
            }
            None => {
                for i in 0..n {
                    let _ = writeln!(
                        t,
                        "  {} | {}",
                        self.device_name(i),
                        self.device_schedule(self.devices[i].position).join(" ")
                    );
                }
            }
        }
        let _ = writeln!(t, "memory (predicted peak per device):");
        for (i, e) in self.memory_estimates().iter().enumerate() {
            let host = if e.host > 0 {
                format!(" (host: parameters and optimizer {})", human(e.host))
            } else {
                String::new()
            };
            let _ = writeln!(
                t,
                "  {}: params {}, grads {}, optimizer {}, activations {}, total {}{host}",
                self.device_name(i),
                human(e.params),
                human(e.grads),
                human(e.optimizer_state),
                human(e.activations),
                human(e.total())
            );
        }
        let p = self.devices[0].execs[0].program();
        let kernels = p
            .forward
            .iter()
            .chain(&p.backward)
            .filter(|a| matches!(a, Action::Compute(_)))
            .count();
        let _ = write!(t, "program cpu:0: {kernels} kernels per micro-batch");
        t
    }

    /// Measured peaks from each device's allocator, next to the prediction.
    pub fn memory_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for ((i, d), est) in self.devices.iter().enumerate().zip(self.memory_estimates()) {
            let measured: Vec<Value> = d.execs.iter().map(|e| e.memory().to_json()).collect();
            let measured = if measured.len() == 1 {
                measured[0].clone()
            } else {
                json!(measured)
            };
            let mut entry = json!({"measured": measured, "predicted": est.to_json()});
            // ZeRO's all-gather buffers (outside the allocator's categories): v0/v1 gather
            // updated shards after the update, v2 each parameter before use.
            let v2 = self.options.config.zero.level.shards_params();
            let plans = d.execs.iter().zip(&d.zero);
            let zero: Vec<_> = plans
                .filter_map(|(e, z)| z.as_ref().map(|z| (e, z)))
                .collect();
            if !zero.is_empty() {
                let (measured, predicted) = zero.iter().fold((0, 0), |(m, p), (e, z)| {
                    if v2 {
                        (m + e.gather_scratch_bytes(), p + z.param_gather_bytes())
                    } else {
                        (m + z.gather_buffer_bytes(), p + z.gather_bytes())
                    }
                });
                entry["zero_gather_bytes"] = json!({"measured": measured, "predicted": predicted});
            }
            out.insert(self.device_name(i), entry);
        }
        Value::Object(out)
    }
}
