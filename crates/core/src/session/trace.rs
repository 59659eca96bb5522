//! Observability of a step: per-device spans (forward, backward, all-reduce, optimizer), each
//! device's measured idle fraction next to the pipeline's ideal (S-1)/(M+S-1), and the Chrome /
//! Perfetto trace format (`--trace out.json`: one track per device).

use super::trainer::Trainer;
use crate::exec::Backend;
use serde_json::{Value, json};
use std::time::Instant;

impl<B: Backend> Trainer<B> {
    /// Chrome/Perfetto trace of the last training step: one track per device.
    pub fn trace_json(&self) -> Value {
        let names: Vec<String> = (0..self.devices.len())
            .map(|i| self.device_name(i))
            .collect();
        chrome_trace(&self.last_trace, &names)
    }
}

/// One timed piece of a device's step.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub name: String,
    /// forward | backward | allreduce | optimizer | recv-wait
    pub category: &'static str,
    /// Microseconds since the step started.
    pub start_us: f64,
    pub dur_us: f64,
}

/// Spans of one device for the last step, and the time it spent blocked on receives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceTrace {
    pub spans: Vec<Span>,
    pub recv_wait_us: f64,
}

impl DeviceTrace {
    pub fn push(&mut self, epoch: Instant, start: Instant, name: String, category: &'static str) {
        let start_us = start.duration_since(epoch).as_secs_f64() * 1e6;
        let dur_us = start.elapsed().as_secs_f64() * 1e6;
        self.spans.push(Span {
            name,
            category,
            start_us,
            dur_us,
        });
    }

    /// Busy time in the pipeline phase: forward and backward work minus receive waits.
    fn pipeline_busy_us(&self) -> f64 {
        let work: f64 = self
            .spans
            .iter()
            .filter(|s| matches!(s.category, "forward" | "backward"))
            .map(|s| s.dur_us)
            .sum();
        (work - self.recv_wait_us).max(0.0)
    }

    fn pipeline_end_us(&self) -> f64 {
        self.spans
            .iter()
            .filter(|s| matches!(s.category, "forward" | "backward"))
            .map(|s| s.start_us + s.dur_us)
            .fold(0.0, f64::max)
    }
}

/// The ideal pipeline idle fraction of S stages and M micro-batches.
pub fn ideal_idle(stages: usize, micro_batches: usize) -> f64 {
    (stages - 1) as f64 / (micro_batches + stages - 1) as f64
}

/// Measured idle fraction of each device over the pipeline phase (start of the step to the end
/// of the last forward/backward on any device).
pub fn measured_idle(traces: &[DeviceTrace]) -> Vec<f64> {
    let makespan = traces
        .iter()
        .map(DeviceTrace::pipeline_end_us)
        .fold(0.0, f64::max);
    traces
        .iter()
        .map(|t| {
            if makespan > 0.0 {
                1.0 - t.pipeline_busy_us() / makespan
            } else {
                0.0
            }
        })
        .collect()
}

/// Chrome trace JSON: one process, one thread (track) per device.
pub fn chrome_trace(traces: &[DeviceTrace], names: &[String]) -> Value {
    let mut events = Vec::new();
    for (tid, (t, name)) in traces.iter().zip(names).enumerate() {
        events.push(
            json!({"name": "thread_name", "ph": "M", "pid": 0, "tid": tid, "args": {"name": name}}),
        );
        for s in &t.spans {
            events.push(json!({"name": s.name, "cat": s.category, "ph": "X", "pid": 0, "tid": tid, "ts": s.start_us, "dur": s.dur_us}));
        }
    }
    json!({"traceEvents": events, "displayTimeUnit": "ms"})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(category: &'static str, start_us: f64, dur_us: f64) -> Span {
        Span {
            name: category.into(),
            category,
            start_us,
            dur_us,
        }
    }

    #[test]
    fn idle_is_the_share_of_the_makespan_not_spent_computing() {
        let a = DeviceTrace {
            spans: vec![span("forward", 0.0, 10.0), span("backward", 10.0, 30.0)],
            recv_wait_us: 0.0,
        };
        let b = DeviceTrace {
            spans: vec![span("forward", 0.0, 20.0), span("backward", 20.0, 20.0)],
            recv_wait_us: 10.0,
        };
        let idle = measured_idle(&[a, b]);
        assert!(
            (idle[0] - 0.0).abs() < 1e-12 && (idle[1] - 0.25).abs() < 1e-12,
            "{idle:?}"
        );
        assert!((ideal_idle(4, 8) - 3.0 / 11.0).abs() < 1e-12);
    }
}
