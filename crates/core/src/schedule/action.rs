//! One step of a rank's program and its compact text form (`F0.3`, `SA0.3>1`, `RG1.2<1`, `RED`).
//!
//! Every stage-level action names its stage explicitly (`F<stage>.<mb>`), because with
//! interleaving a rank hosts several stages and `F3` alone would be ambiguous. A send and the
//! receive it pairs with carry the same stage: the stage that PRODUCED the tensor, so pairing is
//! a plain equality test (`SA0.3>1` on rank 0 pairs with `RA0.3<0` on rank 1).

use super::ids::{MicroBatch, Rank, StageId};
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// What one rank does next. Compute actions come from the generators; the rest from lowering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Forward of `stage` on micro-batch `mb` (text `F<stage>.<mb>`).
    Forward { stage: StageId, mb: MicroBatch },
    /// Backward (input and weight gradients) of `stage` on `mb` (text `B<stage>.<mb>`).
    Backward { stage: StageId, mb: MicroBatch },
    /// Send the output activation of `stage` for `mb` to the rank of `stage + 1`; buffered, never
    /// blocks (text `SA<stage>.<mb>><to>`).
    SendActivation {
        stage: StageId,
        mb: MicroBatch,
        to: Rank,
    },
    /// Receive the output activation of `stage` for `mb`; blocks until it arrived
    /// (text `RA<stage>.<mb><<from>`).
    RecvActivation {
        stage: StageId,
        mb: MicroBatch,
        from: Rank,
    },
    /// Send the input gradient computed by `stage`'s backward to the rank of `stage - 1`;
    /// buffered (text `SG<stage>.<mb>><to>`).
    SendGrad {
        stage: StageId,
        mb: MicroBatch,
        to: Rank,
    },
    /// Receive the input gradient computed by `stage`'s backward; blocks (text `RG<stage>.<mb><<from>`).
    RecvGrad {
        stage: StageId,
        mb: MicroBatch,
        from: Rank,
    },
    /// Reduce this rank's accumulated gradients across data-parallel replicas (text `RED`).
    ReduceGrads,
    /// Apply the optimizer to this rank's parameters (text `OPT`).
    OptimizerStep,
}

/// Which tensor a transfer carries; a send and a receive pair when kind, stage, micro-batch and
/// both ranks agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Payload {
    /// A stage's output activation, flowing to the next stage.
    Activation,
    /// A stage's input gradient, flowing to the previous stage.
    Grad,
}

/// A point-to-point transfer seen from one side: what, whose, and the other rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub payload: Payload,
    pub stage: StageId,
    pub mb: MicroBatch,
    /// The other end: the destination of a send, the source of a receive.
    pub peer: Rank,
    pub is_send: bool,
}

impl Action {
    /// The (stage, micro-batch) a stage-level action concerns; `None` for `RED` and `OPT`.
    pub fn stage_mb(&self) -> Option<(StageId, MicroBatch)> {
        match *self {
            Action::Forward { stage, mb }
            | Action::Backward { stage, mb }
            | Action::SendActivation { stage, mb, .. }
            | Action::RecvActivation { stage, mb, .. }
            | Action::SendGrad { stage, mb, .. }
            | Action::RecvGrad { stage, mb, .. } => Some((stage, mb)),
            Action::ReduceGrads | Action::OptimizerStep => None,
        }
    }

    /// True for `Forward` and `Backward`, the actions that take device time.
    pub fn is_compute(&self) -> bool {
        matches!(self, Action::Forward { .. } | Action::Backward { .. })
    }

    /// The transfer a communication action performs; `None` for everything else.
    pub fn transfer(&self) -> Option<Transfer> {
        let (payload, stage, mb, peer, is_send) = match *self {
            Action::SendActivation { stage, mb, to } => (Payload::Activation, stage, mb, to, true),
            Action::RecvActivation { stage, mb, from } => {
                (Payload::Activation, stage, mb, from, false)
            }
            Action::SendGrad { stage, mb, to } => (Payload::Grad, stage, mb, to, true),
            Action::RecvGrad { stage, mb, from } => (Payload::Grad, stage, mb, from, false),
            _ => return None,
        };
        Some(Transfer {
            payload,
            stage,
            mb,
            peer,
            is_send,
        })
    }

    /// The action label without the stage, for grids where every rank hosts one stage (`F3`).
    pub fn short_label(&self) -> String {
        match *self {
            Action::Forward { mb, .. } => format!("F{mb}"),
            Action::Backward { mb, .. } => format!("B{mb}"),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Action::Forward { stage, mb } => write!(f, "F{stage}.{mb}"),
            Action::Backward { stage, mb } => write!(f, "B{stage}.{mb}"),
            Action::SendActivation { stage, mb, to } => write!(f, "SA{stage}.{mb}>{to}"),
            Action::RecvActivation { stage, mb, from } => write!(f, "RA{stage}.{mb}<{from}"),
            Action::SendGrad { stage, mb, to } => write!(f, "SG{stage}.{mb}>{to}"),
            Action::RecvGrad { stage, mb, from } => write!(f, "RG{stage}.{mb}<{from}"),
            Action::ReduceGrads => f.write_str("RED"),
            Action::OptimizerStep => f.write_str("OPT"),
        }
    }
}

impl FromStr for Action {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        parse_action(text).ok_or_else(|| {
            parse_error(format!(
                "cannot parse schedule action `{text}`: expected F<stage>.<mb>, B<stage>.<mb>, \
                 SA|SG<stage>.<mb>><rank>, RA|RG<stage>.<mb><<rank>, RED or OPT"
            ))
        })
    }
}

/// A malformed schedule text is a verification failure of hand-written schedule data.
pub(crate) fn parse_error(message: String) -> Error {
    Error::Verify { message }
}

fn parse_action(text: &str) -> Option<Action> {
    match text {
        "RED" => return Some(Action::ReduceGrads),
        "OPT" => return Some(Action::OptimizerStep),
        _ => {}
    }
    let split = text.find(|c: char| c.is_ascii_digit())?;
    let (kind, rest) = text.split_at(split);
    // Compute actions have no peer; communication actions have exactly one, after `>` or `<`.
    let (ids, peer) = match kind {
        "F" | "B" => (rest, None),
        "SA" | "SG" => rest.split_once('>').map(|(a, b)| (a, Some(b)))?,
        "RA" | "RG" => rest.split_once('<').map(|(a, b)| (a, Some(b)))?,
        _ => return None,
    };
    let (stage, mb) = ids.split_once('.')?;
    let stage = StageId(parse_u32(stage)?);
    let mb = MicroBatch(parse_u32(mb)?);
    let peer = match peer {
        Some(p) => Some(Rank(parse_u32(p)?)),
        None => None,
    };
    Some(match (kind, peer) {
        ("F", None) => Action::Forward { stage, mb },
        ("B", None) => Action::Backward { stage, mb },
        ("SA", Some(to)) => Action::SendActivation { stage, mb, to },
        ("RA", Some(from)) => Action::RecvActivation { stage, mb, from },
        ("SG", Some(to)) => Action::SendGrad { stage, mb, to },
        ("RG", Some(from)) => Action::RecvGrad { stage, mb, from },
        _ => return None,
    })
}

/// Digits only: `u32::from_str` would also accept a leading `+`, which breaks round-tripping.
fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
