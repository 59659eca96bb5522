//! attention.cu transcribed kernel by kernel, with its launch geometry (`nn::warps`): blocks of
//! `ATT_WARPS` rows of one (batch, head), keys or queries staged `att_tile(D)` rows at a time,
//! every warp walking its own rows in order. A row's channels are one vector here instead of a
//! warp's lanes. Checked against the CPU backend on shapes with partial blocks and several
//! tiles, for both tile sizes.

use super::nn::{ATT_WARPS, att_tile};
use super::tests::{cpu, data};
use weft_core::ir::Op;

struct Geom {
    b: usize,
    t: usize,
    h: usize,
    d: usize,
}

impl Geom {
    fn c(&self) -> usize {
        self.h * self.d
    }
    /// Channels of head `hi` of row `i` of batch `bi` in an array of rows `width` wide, at part
    /// `p` of the row (q, k, v for qkv; 0 for dy and y).
    fn at(&self, width: usize, bi: usize, i: usize, p: usize, hi: usize) -> usize {
        (bi * self.t + i) * width + p * self.c() + hi * self.d
    }
}

fn dot(x: &[f32], y: &[f32]) -> f32 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// `att_stage`: rows j0..j0+n of part `p` of `src` (rows `width` wide) into a tile.
fn stage(
    g: &Geom,
    src: &[f32],
    width: usize,
    (bi, hi, p): (usize, usize, usize),
    j0: usize,
    n: usize,
) -> Vec<f32> {
    (0..n)
        .flat_map(|jj| src[g.at(width, bi, j0 + jj, p, hi)..][..g.d].to_vec())
        .collect()
}

/// Each block of the launch: (batch, head, first row, last row), as `att_row` derives them.
fn blocks(g: &Geom) -> Vec<(usize, usize, usize, usize)> {
    let w = ATT_WARPS as usize;
    let mut out = Vec::new();
    for y in 0..g.b * g.h {
        for x in 0..g.t.div_ceil(w) {
            let first = x * w;
            out.push((y / g.h, y % g.h, first, (first + w).min(g.t) - 1));
        }
    }
    out
}

/// The forward and backward kernels on `qkv` and `dy`: (y, dqkv).
fn kernels(g: &Geom, qkv: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (c, d, w) = (g.c(), g.d, ATT_WARPS as usize);
    let tile = att_tile(d as i32) as usize;
    let scale = 1.0 / (d as f32).sqrt();
    let (mut y, mut stats) = (vec![0.0; g.b * g.t * c], vec![0.0f32; 2 * g.b * g.h * g.t]);
    let mut dqkv = vec![0.0; g.b * g.t * 3 * c];
    // causal_attention_forward, then _backward_stats (the same walk, kept together here).
    for &(bi, hi, first, last) in &blocks(g) {
        let rows: Vec<usize> = (first..first + w).filter(|&i| i < g.t).collect();
        let mut state: Vec<(f32, f32, Vec<f32>)> = rows
            .iter()
            .map(|_| (f32::NEG_INFINITY, 0.0, vec![0.0; d]))
            .collect();
        for j0 in (0..=last).step_by(tile) {
            let n = tile.min(last + 1 - j0);
            let (kt, vt) = (
                stage(g, qkv, 3 * c, (bi, hi, 1), j0, n),
                stage(g, qkv, 3 * c, (bi, hi, 2), j0, n),
            );
            for (&i, (m, l, o)) in rows.iter().zip(&mut state) {
                let q = &qkv[g.at(3 * c, bi, i, 0, hi)..][..d];
                for jj in (0..n).take_while(|jj| j0 + jj <= i) {
                    let s = dot(q, &kt[jj * d..][..d]) * scale;
                    let mn = m.max(s);
                    let (corr, p) = ((*m - mn).exp(), (s - mn).exp());
                    *l = *l * corr + p;
                    for (ok, vk) in o.iter_mut().zip(&vt[jj * d..][..d]) {
                        *ok = *ok * corr + p * vk;
                    }
                    *m = mn;
                }
            }
        }
        for (&i, (m, l, o)) in rows.iter().zip(&state) {
            let yo = g.at(c, bi, i, 0, hi);
            let out: Vec<f32> = o.iter().map(|x| x / l).collect();
            y[yo..yo + d].copy_from_slice(&out);
            let row = (bi * g.h + hi) * g.t + i;
            stats[2 * row] = m + l.ln();
            stats[2 * row + 1] = dot(&dy[yo..yo + d], &out);
        }
    }
    // causal_attention_backward_dq.
    for &(bi, hi, first, last) in &blocks(g) {
        for i in (first..first + w).filter(|&i| i < g.t) {
            let row = (bi * g.h + hi) * g.t + i;
            let (q, dyr) = (
                &qkv[g.at(3 * c, bi, i, 0, hi)..][..d],
                &dy[g.at(c, bi, i, 0, hi)..][..d],
            );
            let mut dq = vec![0.0f32; d];
            for j0 in (0..=last).step_by(tile) {
                let n = tile.min(last + 1 - j0);
                let (kt, vt) = (
                    stage(g, qkv, 3 * c, (bi, hi, 1), j0, n),
                    stage(g, qkv, 3 * c, (bi, hi, 2), j0, n),
                );
                for jj in (0..n).take_while(|jj| j0 + jj <= i) {
                    let kj = &kt[jj * d..][..d];
                    let p = (dot(q, kj) * scale - stats[2 * row]).exp();
                    let ds = p * (dot(dyr, &vt[jj * d..][..d]) - stats[2 * row + 1]);
                    dq.iter_mut().zip(kj).for_each(|(a, k)| *a += ds * k);
                }
            }
            let out = g.at(3 * c, bi, i, 0, hi);
            dq.iter()
                .enumerate()
                .for_each(|(k, v)| dqkv[out + k] = v * scale);
        }
    }
    // causal_attention_backward_dkv: warps are key rows; queries staged from the block's first.
    for &(bi, hi, first, _) in &blocks(g) {
        let st = &stats[2 * (bi * g.h + hi) * g.t..];
        for j in (first..first + w).filter(|&j| j < g.t) {
            let (kj, vj) = (
                &qkv[g.at(3 * c, bi, j, 1, hi)..][..d],
                &qkv[g.at(3 * c, bi, j, 2, hi)..][..d],
            );
            let (mut dk, mut dv) = (vec![0.0f32; d], vec![0.0f32; d]);
            for i0 in (first..g.t).step_by(tile) {
                let n = tile.min(g.t - i0);
                let (qt, gt) = (
                    stage(g, qkv, 3 * c, (bi, hi, 0), i0, n),
                    stage(g, dy, c, (bi, hi, 0), i0, n),
                );
                for ii in (0..n).filter(|ii| i0 + ii >= j) {
                    let (qi, dyi) = (&qt[ii * d..][..d], &gt[ii * d..][..d]);
                    let i = i0 + ii;
                    let p = (dot(qi, kj) * scale - st[2 * i]).exp();
                    let ds = p * (dot(dyi, vj) - st[2 * i + 1]);
                    for k in 0..d {
                        dv[k] += p * dyi[k];
                        dk[k] += ds * qi[k];
                    }
                }
            }
            let out = g.at(3 * c, bi, j, 0, hi);
            for k in 0..d {
                dqkv[out + c + k] = dk[k] * scale;
                dqkv[out + 2 * c + k] = dv[k];
            }
        }
    }
    (y, dqkv)
}

#[test]
fn the_tiled_attention_kernels_match_the_cpu() {
    // 37 rows: a partial last block and two key tiles (D 8: tiles of 32); D 136: tiles of 16.
    for g in [
        Geom {
            b: 2,
            t: 37,
            h: 2,
            d: 8,
        },
        Geom {
            b: 1,
            t: 21,
            h: 1,
            d: 136,
        },
    ] {
        let (c, b, t, h) = (g.c(), g.b, g.t, g.h);
        let (qkv, dy) = (data(8, &[b, t, 3 * c]), data(9, &[b, t, c]));
        let (y, dqkv) = kernels(&g, &qkv, &dy);
        let shape = vec![b, t, 3 * c];
        let (_, want_y) = cpu(
            &Op::CausalAttention { heads: h },
            &[(shape.clone(), qkv.clone())],
        );
        let back = Op::CausalAttentionBackward { heads: h };
        let (_, want_d) = cpu(&back, &[(shape, qkv), (vec![b, t, c], dy)]);
        for (what, got, want) in [("y", y, want_y), ("dqkv", dqkv, want_d)] {
            let big = want.iter().fold(1.0f32, |m, x| m.max(x.abs()));
            let err = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .fold(0.0, f32::max);
            assert!(
                err <= 1e-5 * big,
                "T {t} D {}: {what} max abs error {err}",
                g.d
            );
        }
    }
}
