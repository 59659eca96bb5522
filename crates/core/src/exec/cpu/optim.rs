//! Optimizer update math on plain slices, mirroring PyTorch's single-tensor (for-loop)
//! implementations of torch.optim.SGD, Adam and AdamW operation for operation, so that a weft
//! run and a PyTorch run agree to f32 rounding.
//!
//! PyTorch computes the scalar coefficients (bias corrections, step size, 1 - lr*wd) in Python
//! doubles and hands them to float kernels, which round them to f32; we do the same in f64 and
//! round once. Large tensors are updated in parallel chunks (each element is independent).

use super::simd::simd_fn;
use super::util::PAR_MIN_ELEMS;
use crate::exec::{Adam, Sgd};
use rayon::prelude::*;

const CHUNK: usize = 8 * 1024;

fn parallel(len: usize) -> bool {
    len >= PAR_MIN_ELEMS && rayon::current_num_threads() > 1
}

/// One SGD step. `buf` is the momentum buffer (None when momentum is 0); `first` marks the
/// first step, on which PyTorch initialises the buffer to the gradient instead of decaying it.
pub fn sgd_step(h: &Sgd, p: &mut [f32], g: &[f32], buf: Option<&mut [f32]>, first: bool) {
    match buf {
        Some(buf) if parallel(p.len()) => p
            .par_chunks_mut(CHUNK)
            .zip(buf.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|((p, b), g)| sgd_chunk(h, p, g, Some(b), first)),
        None if parallel(p.len()) => p
            .par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(p, g)| sgd_chunk(h, p, g, None, first)),
        buf => sgd_chunk(h, p, g, buf, first),
    }
}

simd_fn! {
    fn sgd_chunk(h: &Sgd, p: &mut [f32], g: &[f32], buf: Option<&mut [f32]>, first: bool) {
        let (lr, wd, mom) = (h.lr, h.weight_decay, h.momentum);
        let damp = h.damp();
        match buf {
            None => {
                for (p, &g) in p.iter_mut().zip(g) {
                    // grad = grad.add(param, alpha=wd); param.add_(grad, alpha=-lr)
                    let d = if wd != 0.0 { g + wd * *p } else { g };
                    *p += -lr * d;
                }
            }
            Some(buf) => {
                for ((p, b), &g) in p.iter_mut().zip(buf.iter_mut()).zip(g) {
                    let d = if wd != 0.0 { g + wd * *p } else { g };
                    // First step: buf = clone(grad); later: buf.mul_(momentum).add_(grad, alpha=1-dampening).
                    *b = if first { d } else { *b * mom + damp * d };
                    let step = if h.nesterov { d + mom * *b } else { *b };
                    *p += -lr * step;
                }
            }
        }
    }
}

/// Scalars of one Adam step, computed in f64 as PyTorch does in Python, rounded once to f32.
#[derive(Clone, Copy)]
pub struct AdamScalars {
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    pub decay: f32,
    pub neg_step_size: f32,
    pub bc2_sqrt: f32,
}

impl AdamScalars {
    /// Computed in f64 and rounded once; every backend's Adam kernel takes these, so all round
    /// alike.
    pub fn new(h: &Adam, step: u64) -> AdamScalars {
        let t = step.max(1) as i32;
        let (b1, b2, lr) = (h.beta1 as f64, h.beta2 as f64, h.lr as f64);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        AdamScalars {
            one_minus_beta1: (1.0 - b1) as f32,
            one_minus_beta2: (1.0 - b2) as f32,
            decay: (1.0 - lr * h.weight_decay as f64) as f32,
            neg_step_size: (-(lr / bc1)) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
        }
    }
}

/// One Adam/AdamW step (1-based `step`) with state m (exp_avg) and v (exp_avg_sq).
pub fn adam_step(h: &Adam, step: u64, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let s = AdamScalars::new(h, step);
    if parallel(p.len()) {
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| adam_chunk(h, s, p, g, m, v));
    } else {
        adam_chunk(h, s, p, g, m, v);
    }
}

simd_fn! {
    fn adam_chunk(h: &Adam, s: AdamScalars, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let (wd, eps, beta2) = (h.weight_decay, h.eps, h.beta2);
        let w = s.one_minus_beta1;
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            let mut g = g;
            if wd != 0.0 {
                if h.decoupled {
                    *p *= s.decay; // param.mul_(1 - lr * weight_decay)
                } else {
                    g += wd * *p; // grad = grad.add(param, alpha=weight_decay)
                }
            }
            // exp_avg.lerp_(grad, 1 - beta1), in ATen's lerp form for weights below 0.5.
            *m = if w.abs() < 0.5 {
                *m + w * (g - *m)
            } else {
                g - (g - *m) * (1.0 - w)
            };
            // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            *v = *v * beta2 + s.one_minus_beta2 * g * g;
            // denom = (exp_avg_sq.sqrt() / sqrt(bias_correction2)).add_(eps)
            let denom = v.sqrt() / s.bc2_sqrt + eps;
            // param.addcdiv_(exp_avg, denom, value=-step_size)
            *p += s.neg_step_size * *m / denom;
        }
    }
}
