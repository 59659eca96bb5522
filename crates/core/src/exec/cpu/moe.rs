//! Mixture-of-experts routing: top-k gates with per-expert capacity (`Op::MoeGate`).

/// Each row's `k` likeliest columns, likeliest first (ties: the lower index).
fn choices(row: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Tokens one expert takes: ceil(capacity_factor * N * k / E), at least 1.
pub fn capacity(tokens: usize, experts: usize, k: usize, factor: f32) -> usize {
    ((factor as f64 * tokens as f64 * k as f64 / experts as f64).ceil() as usize).max(1)
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
}
