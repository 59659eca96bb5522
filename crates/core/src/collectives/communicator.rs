//! The engine-independent part of collectives: the `Communicator` trait, the reduce operators,
//! and the rules every engine shares so that all engines give identical results and identical
//! error messages: the fixed-order reduction and the per-rank buffer-size checks.

use std::fmt;

use crate::error::{Error, Result};
use crate::tensor::HostData;

/// How contributions of several ranks combine, element by element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    /// The sum divided by the group size (gradient averaging across replicas).
    Mean,
    /// The maximum; a NaN anywhere makes the result NaN (see `combine`).
    Max,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
        }
    }

    /// Combine an accumulator with the next rank's value. Mean accumulates a sum and divides once
    /// at the end (`reduce_in_rank_order`), so it rounds like Sum followed by one division.
    fn combine(self, acc: f32, x: f32) -> f32 {
        match self {
            ReduceOp::Sum | ReduceOp::Mean => acc + x,
            // f32::max drops NaNs; a NaN gradient must survive the reduction so that divergence
            // is detected on every replica instead of silently vanishing on some.
            ReduceOp::Max if acc.is_nan() || x.is_nan() => f32::NAN,
            ReduceOp::Max => acc.max(x),
        }
    }
}

impl fmt::Display for ReduceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The collectives of the trait, as values: used in messages and by engines to match calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CollectiveKind {
    AllReduce,
    AllGather,
    ReduceScatter,
    Broadcast,
    Reduce,
    AllToAll,
    Barrier,
}

impl CollectiveKind {
    pub fn name(self) -> &'static str {
        match self {
            CollectiveKind::AllReduce => "all_reduce",
            CollectiveKind::AllGather => "all_gather",
            CollectiveKind::ReduceScatter => "reduce_scatter",
            CollectiveKind::Broadcast => "broadcast",
            CollectiveKind::Reduce => "reduce",
            CollectiveKind::AllToAll => "all_to_all",
            CollectiveKind::Barrier => "barrier",
        }
    }
}

impl fmt::Display for CollectiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One rank's view of a communication group. Ranks (`root`, `to`, `from`) are ranks within the
/// group, `0..size()`. Every rank of the group must call the same collectives in the same order
/// with matching sizes; an engine reports a violation (or a rank that never arrives) as
/// `Error::Collective` on every waiting rank instead of hanging.
///
/// The trait is about the operation over host f32 slices, not about an engine: the in-process
/// engine implements it with shared memory, others with sockets or NCCL.
pub trait Communicator: Send + Sync {
    /// This rank's index within the group.
    fn rank(&self) -> usize;
    /// Number of ranks in the group.
    fn size(&self) -> usize;
    /// Every rank's `buf` becomes the element-wise reduction of all ranks' `buf`.
    fn all_reduce(&self, buf: &mut [f32], op: ReduceOp) -> Result<()>;
    /// `output` (size x input) becomes the rank-major concatenation of every rank's `input`.
    fn all_gather(&self, input: &[f32], output: &mut [f32]) -> Result<()>;
    /// Reduce every rank's `input` (size x output); rank r gets the r-th chunk of the result.
    fn reduce_scatter(&self, input: &[f32], output: &mut [f32], op: ReduceOp) -> Result<()>;
    /// Every rank's `buf` becomes `root`'s `buf`.
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<()>;
    /// `root`'s `buf` becomes the reduction of all ranks' `buf`; other ranks' `buf` is unchanged.
    fn reduce(&self, buf: &mut [f32], root: usize, op: ReduceOp) -> Result<()>;
    /// `input` and `output` hold `size` equal chunks: chunk j of rank i's input becomes chunk i of
    /// rank j's output.
    fn all_to_all(&self, input: &[f32], output: &mut [f32]) -> Result<()>;
    /// Point-to-point send to group rank `to`; buffered, so it returns without waiting for the
    /// receiver. Messages with the same (sender, receiver, tag) arrive in send order.
    fn send(&self, buf: &[f32], to: usize, tag: u64) -> Result<()>;
    /// Receive the oldest message from group rank `from` with `tag`; its length must equal
    /// `buf.len()`.
    fn recv(&self, buf: &mut [f32], from: usize, tag: u64) -> Result<()>;
    /// Wait until every rank of the group has arrived.
    fn barrier(&self) -> Result<()>;

    /// Whether `recv(.., from, tag)` would find its message already queued, without waiting.
    /// The cooperative executor runs every device on one thread, so it may start a work item
    /// only once all its receives can complete; engines that cannot tell say so.
    fn has_message(&self, from: usize, tag: u64) -> Result<bool> {
        Err(collective_error(format!(
            "probing for a message from group rank {from} (tag {tag}): this engine cannot \
             tell without waiting (the cooperative executor needs in-process devices)"
        )))
    }

    /// This rank failed outside communication (a bad batch, a kernel error): peers waiting on
    /// it fail at once with `reason` instead of waiting out the timeout. The group stays failed.
    fn abort(&self, reason: &str) {
        let _ = reason;
    }
}

/// The canonical reduction: `out = inputs[0] op inputs[1] op ...` in rank order, in f32, then
/// one division by the rank count for Mean. A fixed order (rather than arrival order) is what
/// makes every rank, every run and every engine produce the same bits.
pub fn reduce_in_rank_order(inputs: &[&[f32]], op: ReduceOp, out: &mut [f32]) {
    let Some((first, rest)) = inputs.split_first() else {
        return;
    };
    out.copy_from_slice(first);
    for input in rest {
        if op == ReduceOp::Max {
            for (acc, &x) in out.iter_mut().zip(input.iter()) {
                *acc = op.combine(*acc, x);
            }
        } else {
            // The same additions in the same order as `combine`, in a loop LLVM vectorises.
            for (acc, &x) in out.iter_mut().zip(input.iter()) {
                *acc += x;
            }
        }
    }
    if op == ReduceOp::Mean {
        let n = inputs.len() as f32;
        out.iter_mut().for_each(|x| *x /= n);
    }
}

/// Check one rank's buffers for a collective before it communicates, so every engine refuses the
/// same calls with the same words. `input` is the length every rank must agree on (the buffer
/// for in-place collectives); `output` is the separate output buffer's length, where there is
/// one. Returns the reason, to be prefixed with the collective's description.
pub fn check_buffers(
    kind: CollectiveKind,
    size: usize,
    input: usize,
    output: Option<usize>,
    root: Option<usize>,
) -> Result<(), String> {
    if let Some(root) = root.filter(|&r| r >= size) {
        return Err(format!(
            "root {root} is not a rank of this {size}-rank group"
        ));
    }
    let out = output.unwrap_or(input);
    let expected = match kind {
        CollectiveKind::AllGather => input * size,
        CollectiveKind::ReduceScatter | CollectiveKind::AllToAll if !input.is_multiple_of(size) => {
            return Err(format!(
                "input has {input} f32, which does not split into {size} equal chunks"
            ));
        }
        CollectiveKind::ReduceScatter => input / size,
        _ => input,
    };
    if out != expected {
        return Err(format!(
            "output has {out} f32 but {kind} of {input} f32 on {size} ranks needs {expected}"
        ));
    }
    Ok(())
}

/// u64 values as f32 words (two each, high half first) for an f32 collective: bit patterns,
/// never arithmetic, so they come back exact (a seed of 2^24 or more, a device address).
pub fn u64s_to_words(values: &[u64]) -> Vec<f32> {
    values
        .iter()
        .flat_map(|&v| [(v >> 32) as u32, v as u32].map(f32::from_bits))
        .collect()
}

/// The inverse of `u64s_to_words`.
pub fn words_to_u64s(words: &[f32]) -> Vec<u64> {
    words
        .chunks_exact(2)
        .map(|w| (u64::from(w[0].to_bits()) << 32) | u64::from(w[1].to_bits()))
        .collect()
}

/// A CPU buffer as the f32 slice the collectives take; i32 buffers are never communicated.
pub fn host_f32_mut<'a>(data: &'a mut HostData, what: &str) -> Result<&'a mut [f32]> {
    match data {
        HostData::F32(v) => Ok(v),
        other => Err(collective_error(format!(
            "{what}: collectives take f32 buffers, got an {} buffer",
            other.dtype()
        ))),
    }
}

/// The one constructor of `Error::Collective`, so engines word nothing differently.
/// A received point-to-point `message` into `buf`, or the error every engine words alike when
/// the lengths differ (`desc` describes the receive; only built on error).
pub(crate) fn deliver(
    message: &[f32],
    buf: &mut [f32],
    desc: impl FnOnce() -> String,
) -> Result<()> {
    if message.len() != buf.len() {
        return Err(collective_error(format!(
            "{}: the message has {} f32 but the buffer has {} f32",
            desc(),
            message.len(),
            buf.len()
        )));
    }
    buf.copy_from_slice(message);
    Ok(())
}

pub(crate) fn collective_error(message: String) -> Error {
    Error::Collective { message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduction_is_a_left_fold_in_rank_order() {
        // 1e8 + 1 rounds back to 1e8 in f32, so the order of the adds decides the result.
        let a = [1e8f32];
        let b = [1.0f32];
        let c = [-1e8f32];
        let mut out = [0.0f32];
        reduce_in_rank_order(&[&a, &b, &c, &b], ReduceOp::Sum, &mut out);
        assert_eq!(out, [1.0]);
        reduce_in_rank_order(&[&b, &b, &a, &c], ReduceOp::Sum, &mut out);
        assert_eq!(out, [0.0]);
    }

    #[test]
    fn mean_divides_the_sum_once_and_max_keeps_nan() {
        let mut out = [0.0f32; 2];
        reduce_in_rank_order(&[&[1.0, 2.0], &[2.0, f32::NAN]], ReduceOp::Mean, &mut out);
        assert_eq!(out[0], 1.5);
        assert!(out[1].is_nan());
        reduce_in_rank_order(&[&[1.0, f32::NAN], &[3.0, 0.0]], ReduceOp::Max, &mut out);
        assert_eq!(out[0], 3.0);
        assert!(out[1].is_nan(), "max must not drop a NaN contribution");
        reduce_in_rank_order(&[&[1.0, 0.0], &[3.0, f32::NAN]], ReduceOp::Max, &mut out);
        assert!(out[1].is_nan());
    }

    #[test]
    fn buffer_checks_name_the_sizes() {
        use CollectiveKind::*;
        assert_eq!(check_buffers(AllGather, 3, 4, Some(12), None), Ok(()));
        assert_eq!(
            check_buffers(AllGather, 3, 4, Some(11), None).unwrap_err(),
            "output has 11 f32 but all_gather of 4 f32 on 3 ranks needs 12"
        );
        assert_eq!(check_buffers(ReduceScatter, 2, 8, Some(4), None), Ok(()));
        assert_eq!(
            check_buffers(ReduceScatter, 3, 8, Some(2), None).unwrap_err(),
            "input has 8 f32, which does not split into 3 equal chunks"
        );
        assert_eq!(
            check_buffers(AllToAll, 2, 8, Some(6), None).unwrap_err(),
            "output has 6 f32 but all_to_all of 8 f32 on 2 ranks needs 8"
        );
        assert_eq!(
            check_buffers(Broadcast, 2, 8, None, Some(2)).unwrap_err(),
            "root 2 is not a rank of this 2-rank group"
        );
        assert_eq!(check_buffers(Reduce, 2, 8, None, Some(1)), Ok(()));
    }

    #[test]
    fn i32_buffers_are_refused_by_name() {
        let mut data = HostData::I32(vec![1, 2]);
        let err = host_f32_mut(&mut data, "gradient bucket 0").unwrap_err();
        assert_eq!(err.code(), "WEFT_COLLECTIVE");
        assert_eq!(
            err.to_string(),
            "gradient bucket 0: collectives take f32 buffers, got an i32 buffer"
        );
        let mut data = HostData::F32(vec![1.0]);
        host_f32_mut(&mut data, "x").unwrap()[0] = 2.0;
        assert_eq!(data, HostData::F32(vec![2.0]));
    }
}
