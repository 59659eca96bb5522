//! Mixture-of-experts routing: top-k gates with per-expert capacity (`Op::MoeGate`), and the
//! dispatch of tokens into per-expert slots and the weighted combine back (`Op::MoeDispatch`,
//! `Op::MoeCombine` and their gradients).

use super::util::F32In;
use crate::error::{Error, Result};
use crate::ir::{Op, TokenSlice, moe_capacity as capacity};

/// Each row's `k` likeliest columns, likeliest first (ties: the lower index).
fn choices(row: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Which (token, expert) pairs are routed: first choices of every token in token order, then
/// second choices, ..., each expert taking at most its capacity.
fn routed(probs: &[f32], experts: usize, k: usize, factor: f32) -> Vec<bool> {
    let tokens = probs.len() / experts;
    let cap = capacity(tokens, experts, k, factor);
    let picks: Vec<Vec<usize>> = probs.chunks(experts).map(|r| choices(r, k)).collect();
    let mut taken = vec![0usize; experts];
    let mut keep = vec![false; probs.len()];
    for j in 0..k {
        for (t, p) in picks.iter().enumerate() {
            let e = p[j];
            if taken[e] < cap {
                taken[e] += 1;
                keep[t * experts + e] = true;
            }
        }
    }
    keep
}

/// `Op::MoeGate` forward: the kept probabilities (or 1s), zero elsewhere.
pub fn gate(probs: &[f32], experts: usize, k: usize, factor: f32, weighted: bool, y: &mut [f32]) {
    let keep = routed(probs, experts, k, factor);
    for ((y, &p), kept) in y.iter_mut().zip(probs).zip(keep) {
        *y = match (kept, weighted) {
            (false, _) => 0.0,
            (true, true) => p,
            (true, false) => 1.0,
        };
    }
}

/// `Op::MoeGateBackward`: the gradient of the kept probabilities.
pub fn gate_backward(
    probs: &[f32],
    dy: &[f32],
    experts: usize,
    k: usize,
    factor: f32,
    dx: &mut [f32],
) {
    let keep = routed(probs, experts, k, factor);
    for ((dx, &g), kept) in dx.iter_mut().zip(dy).zip(keep) {
        *dx = if kept { g } else { 0.0 };
    }
}

/// One routed (token, expert) pair of this device: its row among the device's tokens, the
/// expert, the slot, and the token's row in the gates.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Route {
    row: usize,
    expert: usize,
    slot: usize,
    token: usize,
}

/// The routes of this device's tokens, expert by expert: slots are numbered over all N tokens
/// in token order (so every device agrees on them); only this device's rows are kept.
fn routes(name: &str, gates: &F32In, slots: usize, tokens: TokenSlice) -> Result<Vec<Route>> {
    let (n, e) = (gates.shape[0], gates.shape[1]);
    let m = n / tokens.parts;
    let mine = tokens.index * m..(tokens.index + 1) * m;
    let mut out = Vec::new();
    for expert in 0..e {
        let mut slot = 0;
        for token in 0..n {
            if gates.data[token * e + expert] == 0.0 {
                continue;
            }
            if slot == slots {
                return Err(Error::shape(
                    name,
                    format!(
                        "expert {expert} has more routed tokens than slots ({slots}); its \
                         gates must come from moe_gate with the dispatch's top_k and \
                         capacity_factor"
                    ),
                ));
            }
            if mine.contains(&token) {
                let row = token - mine.start;
                out.push(Route {
                    row,
                    expert,
                    slot,
                    token,
                });
            }
            slot += 1;
        }
    }
    Ok(out)
}

/// The dispatch family, one launch: `ins` are the op's inputs, `y` its output.
pub fn execute(op: &Op, ins: &[F32In], y: &mut [f32]) -> Result<()> {
    let name = op.name();
    y.fill(0.0);
    match *op {
        // (x [M, C], gates) -> buf [E, S, C]
        Op::MoeDispatch { tokens, .. } => {
            let (x, gates) = (&ins[0], &ins[1]);
            let c = x.shape[1];
            let s = y.len() / (gates.shape[1] * c);
            for r in routes(name, gates, s, tokens)? {
                let at = (r.expert * s + r.slot) * c;
                y[at..at + c].copy_from_slice(&x.data[r.row * c..(r.row + 1) * c]);
            }
        }
        // (buf | dbuf [E, S, C], gates) -> [M, C]
        Op::MoeDispatchBackward { tokens } | Op::MoeCombine { tokens } => {
            let (buf, gates) = (&ins[0], &ins[1]);
            let (s, c) = (buf.shape[1], buf.shape[2]);
            let weighted = matches!(op, Op::MoeCombine { .. });
            for r in routes(name, gates, s, tokens)? {
                let g = match weighted {
                    true => gates.data[r.token * gates.shape[1] + r.expert],
                    false => 1.0,
                };
                let at = (r.expert * s + r.slot) * c;
                let row = &mut y[r.row * c..(r.row + 1) * c];
                for (y, &b) in row.iter_mut().zip(&buf.data[at..at + c]) {
                    *y += g * b;
                }
            }
        }
        // (dy [M, C], buf [E, S, C], gates) -> dbuf [E, S, C] | dgates [N, E]
        Op::MoeCombineBackward { tokens } | Op::MoeCombineGates { tokens } => {
            let (dy, buf, gates) = (&ins[0], &ins[1], &ins[2]);
            let (s, c, e) = (buf.shape[1], buf.shape[2], gates.shape[1]);
            for r in routes(name, gates, s, tokens)? {
                let at = (r.expert * s + r.slot) * c;
                let dy = &dy.data[r.row * c..(r.row + 1) * c];
                if let Op::MoeCombineGates { .. } = op {
                    let slot = &buf.data[at..at + c];
                    y[r.token * e + r.expert] = dy.iter().zip(slot).map(|(a, b)| a * b).sum();
                } else {
                    let g = gates.data[r.token * e + r.expert];
                    for (d, &v) in y[at..at + c].iter_mut().zip(dy) {
                        *d = g * v;
                    }
                }
            }
        }
        _ => return Err(Error::internal(format!("{name} is not a routing op"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_2_with_capacity_drops_late_tokens_first_choices_first() {
        // 4 tokens, 2 experts, top-2, factor 0.5: capacity ceil(0.5*4*2/2) = 2 per expert.
        // First choices: t0->e0, t1->e0, t2->e1, t3->e0 (full after t1: dropped).
        // Second choices: t0->e1, t1->e1 (e1 full after t2 and t0: dropped), ...
        let probs = [0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.6, 0.4];
        let mut y = [0.0; 8];
        gate(&probs, 2, 2, 0.5, true, &mut y);
        assert_eq!(y, [0.9, 0.1, 0.8, 0.0, 0.0, 0.7, 0.0, 0.0]);
        gate(&probs, 2, 1, 100.0, false, &mut y);
        assert_eq!(y, [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
        let mut dx = [0.0; 8];
        gate_backward(&probs, &[1.0; 8], 2, 2, 0.5, &mut dx);
        assert_eq!(dx, [1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    }

    fn f32_in<'a>(data: &'a [f32], shape: &'a [usize]) -> F32In<'a> {
        F32In { data, shape }
    }

    #[test]
    fn dispatch_fills_slots_in_token_order_and_combine_weights_them_back() {
        // 3 tokens of width 2, 2 experts, 2 slots each: t0 -> e0, t1 -> e0 and e1, t2 -> e1.
        let gates = [0.5, 0.0, 0.25, 0.75, 0.0, 1.0];
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let (gs, xs) = ([3, 2], [3, 2]);
        let all = TokenSlice::ALL;
        let dispatch = Op::MoeDispatch {
            top_k: 2,
            capacity_factor: 1.0,
            tokens: all,
        };
        let mut buf = [9.0; 8];
        execute(&dispatch, &[f32_in(&x, &xs), f32_in(&gates, &gs)], &mut buf).unwrap();
        assert_eq!(buf, [1.0, 2.0, 3.0, 4.0, 3.0, 4.0, 5.0, 6.0]);
        let bs = [2, 2, 2];
        let mut y = [0.0; 6];
        let combine = Op::MoeCombine { tokens: all };
        execute(&combine, &[f32_in(&buf, &bs), f32_in(&gates, &gs)], &mut y).unwrap();
        assert_eq!(y, [0.5, 1.0, 3.0, 4.0, 5.0, 6.0]);
        // The second of two devices holds t1 only of [t0 t1] and fills only its slots.
        let half = TokenSlice { index: 1, parts: 2 };
        let g2 = [0.5, 0.0, 0.25, 0.75];
        let dispatch = Op::MoeDispatch {
            top_k: 2,
            capacity_factor: 1.0,
            tokens: half,
        };
        let mut buf = [9.0; 8];
        let x1 = [3.0, 4.0];
        execute(
            &dispatch,
            &[f32_in(&x1, &[1, 2]), f32_in(&g2, &[2, 2])],
            &mut buf,
        )
        .unwrap();
        assert_eq!(buf, [0.0, 0.0, 3.0, 4.0, 3.0, 4.0, 0.0, 0.0]);
        let mut dg = [9.0; 4];
        let op = Op::MoeCombineGates { tokens: half };
        let ins = [
            f32_in(&[1.0, 1.0], &[1, 2]),
            f32_in(&buf, &bs),
            f32_in(&g2, &[2, 2]),
        ];
        execute(&op, &ins, &mut dg).unwrap();
        assert_eq!(dg, [0.0, 0.0, 7.0, 7.0]);
    }

    #[test]
    fn gates_routing_more_tokens_than_slots_are_refused_by_expert() {
        let gates = [1.0, 0.0, 1.0, 0.0];
        let dispatch = Op::MoeDispatch {
            top_k: 1,
            capacity_factor: 1.0,
            tokens: TokenSlice::ALL,
        };
        // Two tokens for expert 0, one slot.
        let mut buf = [0.0; 2];
        let x = [1.0, 2.0];
        let e = execute(
            &dispatch,
            &[f32_in(&x, &[2, 1]), f32_in(&gates, &[2, 2])],
            &mut buf,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "moe_dispatch: expert 0 has more routed tokens than slots (1); its gates must come \
             from moe_gate with the dispatch's top_k and capacity_factor"
        );
    }
}
