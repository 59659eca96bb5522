//! The cooperative executor mode: every in-process device of a plan runs on the calling thread,
//! interleaved, for builds that cannot start threads (the single-threaded WASM build) and, with
//! `executor.cooperative`, natively (so the mode is tested where threads exist).
//!
//! A work item (the forward or backward of a stage for a micro-batch) is atomic here: a stage's
//! forward receives only from earlier stages and its backward only from later ones, so once
//! every `recv` of its program has its message queued the item runs without waiting. The
//! driver goes round the devices, running each device's next items while they are ready; a
//! round without progress is a deadlock, reported with every device's schedule and the message
//! it waits for, never a hang.
//!
//! Collectives that need all ranks at once cannot be called rank by rank from one thread, so
//! the driver does them over the devices' buffers after everyone's compute: gradient buckets
//! are packed by the threaded reducer's own `Buckets` and summed with the canonical rank-order
//! reduction (so results equal the threaded run's bit for bit), and the initial weights are
//! copied from replica 0; ZeRO v0/v1's reduce-scatter and all-gather of updated shards are done
//! the same way. Gradient reduction therefore never overlaps backward in this mode. Collectives
//! inside kernels (tensor parallelism) and inside programs (ZeRO v2's parameter gathers) are
//! refused.

use super::device::{
    Device, DeviceResult, StepPlan, Work, exec_index, link, local_clip_scale, program_of, run_item,
    sum_squares,
};
use super::options::TrainerOptions;
use super::overlap::Buckets;
use crate::collectives::{ReduceOp, from_fp16_payload, reduce_in_rank_order, to_fp16_payload};
use crate::error::{Error, Result};
use crate::exec::Backend;
use crate::exec::{Awaited, UpdateRule};
use std::fmt::Write;
use std::time::Instant;

/// A build whose devices cannot have threads of their own (`wasm32-wasip1`: no thread can be
/// started), so it always runs cooperatively.
pub(super) const SINGLE_THREADED: bool =
    cfg!(all(target_family = "wasm", not(target_feature = "atomics")));

/// Whether this trainer runs cooperatively: asked for, or the only way this build can.
pub(super) fn select(options: &TrainerOptions) -> Result<bool> {
    let cooperative = options.config.executor.cooperative || SINGLE_THREADED;
    if cooperative && options.processes.is_some() {
        return Err(Error::unsupported(
            "the cooperative executor across processes",
            format!(
                "{}: several processes run one thread per device; set it on one process",
                mode(options)
            ),
        ));
    }
    Ok(cooperative)
}

/// What the mode says it is, in refusals.
fn mode(options: &TrainerOptions) -> &'static str {
    if options.config.executor.cooperative {
        "executor.cooperative=true"
    } else {
        "the single-threaded WASM build, which runs every device on one thread"
    }
}

/// Refuse what the cooperative mode cannot run, naming the feature and the mode (after the
/// model's own checks, so a model error is reported first).
pub(super) fn check_features(options: &TrainerOptions, tp: usize) -> Result<()> {
    let mode = mode(options);
    if tp > 1 {
        return Err(Error::unsupported(
            "tensor parallelism in the cooperative executor",
            format!(
                "{mode}: its collectives run inside kernels, where one thread cannot wait for \
                 its {tp} peers; use the threaded executor (the native addon)"
            ),
        ));
    }
    if options.config.zero.level.shards_params() {
        return Err(Error::unsupported(
            "zero.level='v2' in the cooperative executor",
            format!(
                "{mode}: its programs gather parameters while they run, where one thread cannot \
                 wait for the other replicas; v0 and v1 run"
            ),
        ));
    }
    Ok(())
}

/// Phase one of a step on every device, on this thread: the pipeline work, interleaved, then
/// the gradient reduction across replicas.
/// `dp_groups`: `Layout::dp_groups`, the devices that reduce their gradients together.
pub(super) fn compute_all<B: Backend>(
    devices: &mut [Device<B>],
    plans: &[StepPlan<'_>],
    names: &[String],
    dp_groups: &[Vec<usize>],
) -> Result<Vec<DeviceResult>> {
    crate::error::catch_panic("a device", || interleave(devices, plans, names, dp_groups))
}

fn interleave<B: Backend>(
    devices: &mut [Device<B>],
    plans: &[StepPlan<'_>],
    names: &[String],
    dp_groups: &[Vec<usize>],
) -> Result<Vec<DeviceResult>> {
    let mut outs: Vec<DeviceResult> = devices.iter().map(|_| DeviceResult::default()).collect();
    let mut next = vec![0usize; devices.len()];
    loop {
        let mut progress = false;
        for (i, d) in devices.iter_mut().enumerate() {
            let plan = &plans[i];
            while next[i] < plan.work.len() && awaited(d, plan, next[i])?.is_none() {
                let w = plan.work[next[i]];
                if let Some((_, stage, _)) = program_of(w, plan.train) {
                    let e = exec_index(&d.stages, stage)?;
                    let Device {
                        execs,
                        world,
                        gather,
                        tp,
                        device,
                        ..
                    } = d;
                    let link = link(world, gather, tp, device, plan);
                    run_item(
                        &mut execs[e],
                        link.as_ref(),
                        plan,
                        next[i],
                        &mut outs[i],
                        None,
                    )?;
                }
                next[i] += 1;
                progress = true;
            }
        }
        if next.iter().zip(plans).all(|(&n, p)| n == p.work.len()) {
            break;
        }
        if !progress {
            return Err(deadlock(devices, plans, &next, names));
        }
    }
    if plans.first().is_some_and(|p| p.train) {
        reduce_gradients(devices, plans, &mut outs, dp_groups)?;
    }
    Ok(outs)
}

/// The first message work item `wi` of a device waits for; None when it can run now.
fn awaited<B: Backend>(d: &Device<B>, plan: &StepPlan<'_>, wi: usize) -> Result<Option<Awaited>> {
    let Some((kind, stage, mb)) = program_of(plan.work[wi], plan.train) else {
        return Ok(None);
    };
    let exec = &d.execs[exec_index(&d.stages, stage)?];
    exec.first_awaited(kind, mb, d.link(plan).as_ref())
}

/// The deadlock report: each device's schedule with its next item in brackets and the message
/// that item waits for.
fn deadlock<B: Backend>(
    devices: &[Device<B>],
    plans: &[StepPlan<'_>],
    next: &[usize],
    names: &[String],
) -> Error {
    let mut text = String::from(
        "cooperative executor: no device can run its next work item (the schedule deadlocks):",
    );
    for (i, d) in devices.iter().enumerate() {
        let plan = &plans[i];
        let items: Vec<String> = plan
            .work
            .iter()
            .enumerate()
            .map(|(wi, w)| match wi == next[i] {
                true => format!("[{}]", w.label(plan.qualified)),
                false => w.label(plan.qualified),
            })
            .collect();
        let _ = write!(text, "\n  {} | {}", names[i], items.join(" "));
        let Some(&w) = plan.work.get(next[i]) else {
            let _ = write!(text, " | done");
            continue;
        };
        let label = w.label(plan.qualified);
        let _ = match awaited(d, plan, next[i]) {
            Ok(Some(a)) => write!(
                text,
                " | {label} waits for {} (micro-batch {}) from stage {} on {}",
                a.node,
                mb_of(w),
                a.from_stage,
                names.get(a.from_rank).map_or("?", String::as_str)
            ),
            Ok(None) => write!(text, " | {label} is ready"),
            Err(e) => write!(text, " | {label}: {e}"),
        };
    }
    Error::Collective { message: text }
}

fn mb_of(w: Work) -> usize {
    match w {
        Work::Forward { mb, .. } | Work::Backward { mb, .. } => mb,
    }
}

/// After every device's compute: each replica's gradients packed into the threaded reducer's
/// buckets, each bucket summed over its data-parallel group in rank (replica) order, written
/// back scaled; then each device's share of the global norm.
fn reduce_gradients<B: Backend>(
    devices: &mut [Device<B>],
    plans: &[StepPlan<'_>],
    outs: &mut [DeviceResult],
    dp_groups: &[Vec<usize>],
) -> Result<()> {
    let t0 = Instant::now();
    let mut packed: Vec<(f32, Vec<Buckets>)> = Vec::with_capacity(devices.len());
    for (d, plan) in devices.iter_mut().zip(plans) {
        let scale = local_clip_scale(&mut d.execs, plan)?;
        let buckets = if d.dp.is_empty() {
            if scale != 1.0 {
                d.execs.iter_mut().try_for_each(|e| e.scale_grads(scale))?;
            }
            Vec::new()
        } else {
            pack(d, plan)?
        };
        packed.push((scale, buckets));
    }
    for group in dp_groups {
        let plan = &plans[group[0]];
        let sharded = plan.grad_shard.is_some();
        reduce_group(&mut packed, group, plan.reduce.fp16_scale, sharded);
    }
    for (((d, (scale, buckets)), out), plan) in devices.iter_mut().zip(packed).zip(outs).zip(plans)
    {
        for (exec, mut b) in d.execs.iter_mut().zip(buckets) {
            let reduced = std::mem::take(&mut b.flats).into_iter().map(Some).collect();
            b.write_back(reduced, exec, scale, &mut d.spare)?;
        }
        for exec in &d.execs {
            out.sum_squares += sum_squares(exec, d.tp_rank)?;
        }
        out.trace
            .push(plan.epoch, t0, "allreduce".into(), "allreduce");
    }
    Ok(())
}

/// One device's gradients in buckets, one set per hosted stage (all final after compute).
fn pack<B: Backend>(d: &mut Device<B>, plan: &StepPlan<'_>) -> Result<Vec<Buckets>> {
    let Device {
        execs,
        spare,
        buckets,
        ..
    } = d;
    execs
        .iter()
        .zip(buckets.iter())
        .map(|(exec, layout)| {
            let mut b = Buckets::new(layout, plan.grad_shard, spare);
            exec.each_grad(&mut |p, g| {
                b.ready(p, g);
                Ok(())
            })?;
            b.check_complete()?;
            Ok(b)
        })
        .collect()
}

/// Every bucket of every hosted stage of one data-parallel group, summed over the group as its
/// all-reduce would (fp16 compressed the same way when `fp16` is set): every member keeps the
/// whole result, or, `sharded` (ZeRO v1's reduce-scatter), the r-th of R equal chunks of the
/// bucket padded to them.
fn reduce_group(
    packed: &mut [(f32, Vec<Buckets>)],
    group: &[usize],
    fp16: Option<f32>,
    sharded: bool,
) {
    let stages = packed[group[0]].1.len();
    for s in 0..stages {
        let buckets = packed[group[0]].1[s].flats.len();
        for b in 0..buckets {
            let mut members: Vec<Vec<f32>> = group
                .iter()
                .map(|&i| std::mem::take(&mut packed[i].1[s].flats[b]))
                .collect();
            let chunk = members[0].len().div_ceil(group.len());
            for m in &mut members {
                if sharded {
                    m.resize(chunk * group.len(), 0.0);
                }
                if let Some(scale) = fp16 {
                    to_fp16_payload(m, scale);
                }
            }
            let mut sum = vec![0.0f32; members[0].len()];
            let inputs: Vec<&[f32]> = members.iter().map(Vec::as_slice).collect();
            reduce_in_rank_order(&inputs, ReduceOp::Sum, &mut sum);
            for (r, (&i, mut m)) in group.iter().zip(members).enumerate() {
                if sharded {
                    m.truncate(chunk);
                    m.copy_from_slice(&sum[r * chunk..(r + 1) * chunk]);
                } else {
                    m.copy_from_slice(&sum);
                }
                if let Some(scale) = fp16 {
                    from_fp16_payload(&mut m, scale);
                }
                packed[i].1[s].flats[b] = m;
            }
        }
    }
}

/// The optimizer step on every device, one after another; returns each one's span. Under ZeRO
/// v0/v1 each replica updates its pieces of an apply group, then the driver gathers them into
/// every replica's parameters, group after group, as the threaded all-gather does.
pub(super) fn update<B: Backend>(
    devices: &mut [Device<B>],
    dp_groups: &[Vec<usize>],
    step: u64,
    rule_for: &dyn Fn(&str) -> UpdateRule,
    coef: f32,
) -> Result<Vec<(Instant, Instant)>> {
    let mut spans = Vec::with_capacity(devices.len());
    for d in devices.iter_mut() {
        let start = Instant::now();
        for (exec, zero) in d.execs.iter_mut().zip(&d.zero) {
            if coef < 1.0 {
                exec.scale_grads(coef)?;
            }
            if zero.is_none() {
                exec.apply(step, rule_for)?;
            }
        }
        spans.push((start, Instant::now()));
    }
    for group in dp_groups {
        for s in 0..devices[group[0]].execs.len() {
            let groups = devices[group[0]].zero[s]
                .as_ref()
                .map_or(0, |p| p.group_count());
            for g in 0..groups {
                update_and_gather(devices, group, s, g, step, rule_for)?;
            }
        }
        let end = Instant::now();
        group.iter().for_each(|&i| spans[i].1 = end);
    }
    Ok(spans)
}

/// ZeRO: every replica of `group` updates its pieces of hosted stage `s`'s apply group `g`;
/// their packed pieces, concatenated in replica order, are then unpacked into every replica.
fn update_and_gather<B: Backend>(
    devices: &mut [Device<B>],
    group: &[usize],
    s: usize,
    g: usize,
    step: u64,
    rule_for: &dyn Fn(&str) -> UpdateRule,
) -> Result<()> {
    let no_plan = || Error::internal("ZeRO: a replica without a shard plan");
    let mut all = Vec::new();
    for &i in group {
        let Device {
            execs,
            zero,
            replica,
            ..
        } = &mut devices[i];
        let plan = zero[s].as_ref().ok_or_else(no_plan)?;
        execs[s].apply_where(step, rule_for, &|p| plan.in_group(p, g))?;
        let mut shard = Vec::new();
        plan.pack(*replica, g, &mut execs[s].params_host_mut()?, &mut shard)?;
        all.extend_from_slice(&shard);
    }
    for &i in group {
        let Device { execs, zero, .. } = &mut devices[i];
        let plan = zero[s].as_ref().ok_or_else(no_plan)?;
        plan.unpack(g, &mut execs[s].params_host_mut()?, &all)?;
    }
    Ok(())
}

/// Replica 0's initial weights copied to every other replica (EPL's variable broadcast).
pub(super) fn broadcast_initial_weights<B: Backend>(
    devices: &mut [Device<B>],
    dp_groups: &[Vec<usize>],
) -> Result<()> {
    for group in dp_groups {
        let (root, rest) = group.split_first().unwrap_or((&0, &[]));
        for s in 0..devices[*root].execs.len() {
            let src = &devices[*root].execs[s];
            let values = src
                .parameter_shapes()
                .into_iter()
                .map(|(name, _)| Ok((src.read_parameter(&name)?, name)))
                .collect::<Result<Vec<_>>>()?;
            for &i in rest {
                for (data, name) in &values {
                    devices[i].execs[s].write_parameter(name, data)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::exec::HostData;
    use crate::ir::{DType, Dim, Graph, GraphBuilder, Init, Op, ReduceOp, Shape, Strategy};
    use crate::session::{Trainer, TrainerOptions};
    use std::collections::BTreeMap;

    /// x[B,4] -> matmul (stage 0) -> matmul (stage 1) -> mean.
    fn two_stages() -> Graph {
        let mut b = GraphBuilder::new();
        let shape = Shape(vec![Dim::Batch(1), Dim::Fixed(4)]);
        let x = b.input("x", shape, DType::F32).unwrap();
        let init = Init::Normal {
            mean: 0.0,
            std: 0.5,
        };
        let mm = Op::MatMul {
            trans_a: false,
            trans_b: false,
        };
        b.open_taskgraph("s0", Strategy::Replicate, 1);
        let w0 = b
            .parameter("w0", Shape::fixed(&[4, 4]), init.clone())
            .unwrap();
        let h = b.op(mm.clone(), &[x, w0]).unwrap();
        b.open_taskgraph("s1", Strategy::Replicate, 1);
        let w1 = b.parameter("w1", Shape::fixed(&[4, 1]), init).unwrap();
        let y = b.op(mm, &[h, w1]).unwrap();
        let shape = b.reshape_dims(y, &[-1]).unwrap();
        let y = b.op(Op::Reshape { shape }, &[y]).unwrap();
        let mean = Op::Reduce {
            op: ReduceOp::Mean,
            axis: 0,
            keepdim: false,
        };
        let loss = b.op(mean, &[y]).unwrap();
        b.finish(loss).unwrap()
    }

    #[test]
    fn a_schedule_that_cannot_progress_is_reported_instead_of_hanging() {
        let opts = serde_json::json!({
            "batch": 4, "devices": "cpu:2", "threads": 1,
            "config": {"executor.cooperative": true},
        });
        let opts = TrainerOptions::from_json(&opts).unwrap();
        let mut t = Trainer::compile(two_stages(), opts).unwrap();
        let mut batch = BTreeMap::new();
        batch.insert(
            "x".to_string(),
            HostData::F32((0..16).map(|i| i as f32 / 8.0).collect()),
        );
        // cpu:0 now starts with stage 0's backward, which waits for stage 1's, which waits for
        // stage 0's forward.
        t.layout.work[0].reverse();
        let err = t.step(&batch).unwrap_err();
        assert_eq!(err.code(), "WEFT_COLLECTIVE");
        assert_eq!(
            err.to_string(),
            "cooperative executor: no device can run its next work item (the schedule \
             deadlocks):\n  \
             cpu:0 | [B0] F0 | B0 waits for %12 (micro-batch 0) from stage 1 on cpu:1\n  \
             cpu:1 | [F0] B0 | F0 waits for %2 (micro-batch 0) from stage 0 on cpu:0"
        );
        // The failed step's messages went with its communicators: the trainer steps again.
        t.layout.work[0].reverse();
        assert!(t.step(&batch).unwrap().loss.is_finite());
    }
}
