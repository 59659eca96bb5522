//! Evaluation under the compiled layout at any batch size that divides into, or is divided by,
//! the compiled global batch. The compiled programs have fixed per-micro-batch shapes, so
//! nothing is recompiled: a multiple of the global batch runs as that many global batches, and
//! a divisor is repeated until it fills one (a mean over identical copies is the mean over the
//! rows given), its outputs cut back to the rows given.

use super::batch::{mean_loss, views};
use super::report::StepReport;
use super::trainer::{InputSpec, Trainer};
use crate::error::{Error, Result};
use crate::exec::{AsHostView, Backend, HostData, HostView};
use crate::ir::Op;
use std::collections::BTreeMap;
use std::time::Instant;

/// Batch inputs with their rows repeated.
type Owned = BTreeMap<String, HostData>;

impl<B: Backend> Trainer<B> {
    /// Loss and outputs on a batch of any number of rows that is a multiple or a divisor of the
    /// compiled global batch, without updating anything.
    ///
    /// Inputs that no output reads may be left out (labels, when only outputs are wanted): they
    /// run as zeros, and the loss is NaN when it reads one of them. An output that reads a
    /// missing input is an error naming both.
    pub fn evaluate<D: AsHostView>(&mut self, batch: &BTreeMap<String, D>) -> Result<StepReport> {
        let given = views(batch);
        let rows = self.rows_of(&given)?;
        let (zeros, loss_reads_missing) = self.missing_inputs(&given, rows)?;
        let mut batch = given;
        for (name, data) in &zeros {
            batch.insert(name.as_str(), data.view());
        }
        let mut report = self.evaluate_rows(&batch, rows)?;
        if loss_reads_missing {
            report.loss = f32::NAN;
        }
        Ok(report)
    }

    fn evaluate_rows(
        &mut self,
        batch: &BTreeMap<&str, HostView<'_>>,
        rows: usize,
    ) -> Result<StepReport> {
        let global = self.options.batch;
        if rows == global {
            return self.evaluate_compiled(batch);
        }
        if rows > global && rows.is_multiple_of(global) {
            return self.evaluate_chunks(batch, rows / global);
        }
        if rows > 0 && global.is_multiple_of(rows) {
            let tiled = self.tile(batch, global / rows);
            let mut report = self.evaluate_compiled(&views(&tiled))?;
            for (_, dims, data) in &mut report.outputs {
                keep_share(dims, data, rows, global);
            }
            return Ok(report);
        }
        Err(Error::batch(format!(
            "evaluate: a batch of {rows} rows does not fit the compiled global batch {global}; give a multiple or a divisor of {global}"
        )))
    }

    /// Zeros for every input the batch lacks, after checking that no output reads one; and
    /// whether the loss reads one.
    fn missing_inputs(
        &self,
        batch: &BTreeMap<&str, HostView<'_>>,
        rows: usize,
    ) -> Result<(Owned, bool)> {
        let missing: Vec<&InputSpec> = self
            .inputs
            .iter()
            .filter(|s| !batch.contains_key(s.name.as_str()))
            .collect();
        if missing.is_empty() {
            return Ok((Owned::new(), false));
        }
        // Which missing input each node reads, directly or through others (topological order).
        let g = &self.compiled;
        let mut reads: Vec<Option<&str>> = vec![None; g.nodes.len()];
        for id in g.ids() {
            let node = g.node(id);
            reads[id.index()] = match &node.op {
                Op::Input { name, .. } => missing
                    .iter()
                    .find(|s| &s.name == name)
                    .map(|s| s.name.as_str()),
                _ => node.inputs.iter().find_map(|i| reads[i.index()]),
            };
        }
        for (output, id) in &g.outputs {
            if let Some(input) = reads[id.index()] {
                return Err(Error::batch(format!(
                    "evaluate: output '{output}' reads input '{input}', which the batch leaves out"
                )));
            }
        }
        let loss_reads = g.loss.is_some_and(|l| reads[l.index()].is_some());
        let zeros = missing
            .iter()
            .map(|s| {
                let per_row = s.dims.iter().product::<usize>() / self.options.batch.max(1);
                let len = if s.batched {
                    per_row * rows
                } else {
                    s.dims.iter().product()
                };
                (s.name.clone(), HostData::zeros(s.dtype, len))
            })
            .collect();
        Ok((zeros, loss_reads))
    }

    /// Rows of an evaluation batch, the same for every batched input; other inputs whole.
    fn rows_of(&self, batch: &BTreeMap<&str, HostView<'_>>) -> Result<usize> {
        let mut rows: Option<(usize, &str)> = None;
        for s in self.inputs.iter().filter(|s| s.batched) {
            // A missing input is `missing_inputs`' business.
            let Some(data) = batch.get(s.name.as_str()) else {
                continue;
            };
            // The batch axis may carry a factor (`[B*T]`), so a row is the global size / batch.
            let per_row = s.dims.iter().product::<usize>() / self.options.batch.max(1);
            if per_row == 0 || !data.len().is_multiple_of(per_row) {
                return Err(Error::batch(format!(
                    "evaluate: input '{}' has {} values, not whole rows of {per_row} (shape {:?} per global batch)",
                    s.name,
                    data.len(),
                    s.dims
                )));
            }
            let n = data.len() / per_row;
            match rows {
                Some((m, other)) if m != n => {
                    return Err(Error::batch(format!(
                        "evaluate: input '{}' has {n} rows but '{other}' has {m}",
                        s.name
                    )));
                }
                _ => rows = Some((n, s.name.as_str())),
            }
        }
        Ok(rows.map_or(self.options.batch, |(n, _)| n))
    }

    /// Loss and outputs on exactly the compiled global batch.
    fn evaluate_compiled(&mut self, batch: &BTreeMap<&str, HostView<'_>>) -> Result<StepReport> {
        let t0 = Instant::now();
        let (results, _) = self.run_devices(batch, false)?;
        let (loss, outputs) = self.merge(&results);
        let (loss, _, outputs) = self.across_processes(&results, loss, 0.0, outputs)?;
        let lr = self.schedule.lr_at(self.step.max(1));
        Ok(StepReport {
            step: self.step,
            loss,
            lr,
            grad_norm: None,
            ms: t0.elapsed().as_secs_f64() * 1e3,
            outputs,
            idle: Vec::new(),
            ideal_idle: 0.0,
            loss_scale: self.scaler.as_ref().map(|s| s.scale),
            skipped: false,
            skipped_steps: self.scaler.as_ref().map_or(0, |s| s.skipped),
        })
    }

    /// `count` global batches one after the other: the mean of their losses (equal rows each),
    /// outputs concatenated along their first axis.
    fn evaluate_chunks(
        &mut self,
        batch: &BTreeMap<&str, HostView<'_>>,
        count: usize,
    ) -> Result<StepReport> {
        let mut losses = Vec::with_capacity(count);
        let mut merged: Option<StepReport> = None;
        let batched: Vec<(&str, bool)> = batch.keys().map(|k| (*k, self.is_batched(k))).collect();
        for c in 0..count {
            let chunk: BTreeMap<&str, HostView<'_>> = batched
                .iter()
                .map(|&(name, batched)| {
                    let data = batch[name];
                    let len = if batched { data.len() / count } else { 0 };
                    let range = if batched {
                        c * len..(c + 1) * len
                    } else {
                        0..data.len()
                    };
                    (name, data.slice(range))
                })
                .collect();
            let report = self.evaluate_compiled(&chunk)?;
            losses.push(report.loss);
            merged = Some(match merged {
                None => report,
                Some(mut all) => {
                    append_outputs(&mut all, report);
                    all
                }
            });
        }
        let mut report = merged.ok_or_else(|| Error::internal("evaluate: no chunk"))?;
        report.loss = mean_loss(&losses);
        Ok(report)
    }

    fn is_batched(&self, name: &str) -> bool {
        self.inputs.iter().any(|s| s.name == name && s.batched)
    }

    /// Every batched input repeated `times` times (whole inputs as they are).
    fn tile(&self, batch: &BTreeMap<&str, HostView<'_>>, times: usize) -> Owned {
        let mut out = Owned::new();
        for (name, data) in batch {
            let n = if self.is_batched(name) { times } else { 1 };
            out.insert((*name).to_string(), repeat(*data, n));
        }
        out
    }
}

fn repeat(data: HostView<'_>, times: usize) -> HostData {
    match data {
        HostView::F32(v) => HostData::F32(v.repeat(times)),
        HostView::I32(v) => HostData::I32(v.repeat(times)),
        HostView::BF16(v) => HostData::BF16(v.repeat(times)),
        HostView::F16(v) => HostData::F16(v.repeat(times)),
    }
}

/// Appends `next`'s outputs to `all`'s along the first axis; times add up.
fn append_outputs(all: &mut StepReport, next: StepReport) {
    all.ms += next.ms;
    for ((_, dims, data), (_, next_dims, next_data)) in all.outputs.iter_mut().zip(next.outputs) {
        if let (Some(first), Some(more)) = (dims.first_mut(), next_dims.first()) {
            *first += more;
        }
        match (data, next_data) {
            (HostData::F32(a), HostData::F32(b)) => a.extend(b),
            (HostData::I32(a), HostData::I32(b)) => a.extend(b),
            (HostData::BF16(a), HostData::BF16(b)) | (HostData::F16(a), HostData::F16(b)) => {
                a.extend(b)
            }
            _ => {}
        }
    }
}

/// Cuts an output of a repeated batch back to the share of the `rows` given out of `global`:
/// its first axis, when that axis counts rows (or micro-batches) in proportion.
fn keep_share(dims: &mut [usize], data: &mut HostData, rows: usize, global: usize) {
    let Some(first) = dims.first_mut() else {
        return;
    };
    if !(*first * rows).is_multiple_of(global) {
        return;
    }
    let keep = *first * rows / global;
    let len = data.len() / (*first).max(1) * keep;
    *first = keep;
    match data {
        HostData::F32(v) => v.truncate(len),
        HostData::I32(v) => v.truncate(len),
        HostData::BF16(v) | HostData::F16(v) => v.truncate(len),
    }
}
