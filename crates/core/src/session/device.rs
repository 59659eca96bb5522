//! One device of a compiled layout: an executor for one stage of one pipeline replica, its
//! communicators, and what it does in a step (its pipeline work, then gradient reduction).

use crate::collectives::Communicator;
use crate::error::Result;
use crate::exec::cpu::CpuBackend;
use crate::exec::{Executor, GradReduce, HostData, KernelCtx, Link, ProgramKind};
use crate::ir::NodeId;
use super::trace::DeviceTrace;
use std::collections::BTreeMap;
use std::time::Instant;

/// One unit of pipeline work for a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Forward(usize),
    Backward(usize),
}

pub(super) struct Device {
    pub exec: Executor<CpuBackend>,
    pub stage: usize,
    pub replica: usize,
    /// All devices; ranks are `replica * stages + stage`.
    pub world: Option<Box<dyn Communicator>>,
    /// Channels to this stage's replicas (data parallelism; `communication.num_communicators`),
    /// empty with one replica.
    pub dp: Vec<Box<dyn Communicator>>,
}

/// What a device hands back from the compute phase of a step.
#[derive(Default)]
pub(super) struct DeviceResult {
    /// Loss per micro-batch (only on the stage computing the loss).
    pub losses: Vec<f32>,
    /// Outputs per micro-batch: (name, data) in micro-batch order.
    pub outputs: Vec<(usize, String, HostData)>,
    pub sum_squares: f64,
    pub trace: DeviceTrace,
}

pub(super) struct StepPlan<'a> {
    pub work: &'a [Work],
    pub rank_of_stage: &'a [usize],
    pub micro_inputs: &'a [BTreeMap<String, HostData>],
    pub loss: NodeId,
    pub outputs: &'a [(String, NodeId)],
    pub ctx: KernelCtx,
    pub train: bool,
    /// Gradient reduction across replicas; its scale is 1/(R*M) for the mean.
    pub reduce: GradReduce,
    /// When the step started on the driver (all spans are relative to it).
    pub epoch: Instant,
}

impl Device {
    fn owns(&self, id: NodeId, stage_of: &[usize]) -> bool {
        stage_of[id.index()] == self.stage
    }

    /// Run this device's pipeline work for one step, then reduce gradients across replicas.
    pub fn compute(&mut self, plan: &StepPlan<'_>, stage_of: &[usize]) -> Result<DeviceResult> {
        let mut out = DeviceResult::default();
        let link = self.world.as_deref().map(|comm| Link { comm, rank_of_stage: plan.rank_of_stage });
        for w in plan.work {
            let (kind, mb) = match *w {
                Work::Forward(mb) if plan.train => (ProgramKind::Forward, mb),
                Work::Forward(mb) => (ProgramKind::Eval, mb),
                Work::Backward(mb) => (ProgramKind::Backward, mb),
            };
            if !plan.train && kind == ProgramKind::Backward {
                continue;
            }
            let (t0, wait0) = (Instant::now(), self.exec.recv_wait);
            self.exec.run(kind, mb, &plan.micro_inputs[mb], &plan.ctx, link.as_ref())?;
            let category = if kind == ProgramKind::Backward { "backward" } else { "forward" };
            let label = if kind == ProgramKind::Backward { "B" } else { "F" };
            out.trace.push(plan.epoch, t0, format!("{label}{mb}"), category);
            out.trace.recv_wait_us += (self.exec.recv_wait - wait0).as_secs_f64() * 1e6;
            // Backward may still read the loss or an output (e.g. logits): take them after it.
            if kind != ProgramKind::Forward {
                if self.owns(plan.loss, stage_of) {
                    let l = self.exec.take_value(mb, plan.loss)?;
                    out.losses.push(l.as_f32().map_or(f32::NAN, |v| v[0]));
                }
                for (name, id) in plan.outputs {
                    if self.owns(*id, stage_of) {
                        out.outputs.push((mb, name.clone(), self.exec.take_value(mb, *id)?));
                    }
                }
            }
        }
        if plan.train {
            let t0 = Instant::now();
            if self.dp.is_empty() {
                if plan.reduce.scale != 1.0 {
                    self.exec.scale_grads(plan.reduce.scale)?;
                }
            } else {
                let channels: Vec<&dyn Communicator> = self.dp.iter().map(|c| c.as_ref()).collect();
                self.exec.all_reduce_grads(&channels, &plan.reduce)?;
            }
            out.trace.push(plan.epoch, t0, "allreduce".into(), "allreduce");
            out.sum_squares = self.exec.grad_sum_squares()?;
        }
        Ok(out)
    }
}
