//! `KvDecoder`: GPT-2's forward one position at a time, keeping each block's keys and values
//! so that position t attends over the cached 0..t instead of recomputing them. The dense
//! parts (layer norms, matmuls, GELU) run through the CPU backend's `execute`, the very
//! kernels training uses; only the one-query attention over the cache is its own loop.

use super::structure::Gpt2Shape;
use crate::error::{Error, Result};
use crate::exec::{Backend, CpuBackend, HostData, KernelCtx, TensorRef};
use crate::ir::{DType, Op, UnaryOp};
use rayon::prelude::*;

/// One block's weights, as f32 on the host.
struct Block {
    ln_1: [HostData; 2],
    c_attn: [HostData; 2],
    attn_proj: [HostData; 2],
    ln_2: [HostData; 2],
    c_fc: [HostData; 2],
    mlp_proj: [HostData; 2],
}

/// A GPT-2 with a key/value cache. `feed` one token at a time; `reset` to start over.
pub struct KvDecoder {
    cpu: CpuBackend,
    shape: Gpt2Shape,
    wte: HostData,
    wpe: Vec<f32>,
    blocks: Vec<Block>,
    ln_f: [HostData; 2],
    /// Per block, keys and values of the positions fed so far, `[pos, C]` row-major.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    pos: usize,
}

impl KvDecoder {
    /// A decoder of `shape` with the weights `fetch` gives by parameter name (each checked
    /// against its expected element count).
    pub fn new(shape: Gpt2Shape, mut fetch: impl FnMut(&str) -> Result<Vec<f32>>) -> Result<Self> {
        let expected: std::collections::BTreeMap<String, usize> = shape
            .parameters()
            .into_iter()
            .map(|(n, d)| (n, d.iter().product()))
            .collect();
        let mut get = |name: String| -> Result<HostData> {
            let data = fetch(&name)?;
            match expected.get(&name) {
                Some(&len) if len == data.len() => Ok(HostData::F32(data)),
                _ => Err(Error::internal(format!(
                    "decoder weight '{name}' has {} values, not {:?}",
                    data.len(),
                    expected.get(&name)
                ))),
            }
        };
        let mut pair = |prefix: String| -> Result<[HostData; 2]> {
            Ok([
                get(format!("{prefix}.weight"))?,
                get(format!("{prefix}.bias"))?,
            ])
        };
        let mut blocks = Vec::with_capacity(shape.layers);
        for i in 0..shape.layers {
            blocks.push(Block {
                ln_1: pair(format!("h.{i}.ln_1"))?,
                c_attn: pair(format!("h.{i}.attn.c_attn"))?,
                attn_proj: pair(format!("h.{i}.attn.c_proj"))?,
                ln_2: pair(format!("h.{i}.ln_2"))?,
                c_fc: pair(format!("h.{i}.mlp.c_fc"))?,
                mlp_proj: pair(format!("h.{i}.mlp.c_proj"))?,
            });
        }
        let ln_f = pair("ln_f".to_string())?;
        let wte = get("wte.weight".to_string())?;
        let HostData::F32(wpe) = get("wpe.weight".to_string())? else {
            return Err(Error::internal("wpe is not f32"));
        };
        Ok(KvDecoder {
            // One thread: a single position is too little work to share, and callers may run
            // several decoders side by side.
            cpu: CpuBackend::new(1),
            shape,
            wte,
            wpe,
            blocks,
            ln_f,
            keys: vec![Vec::new(); shape.layers],
            values: vec![Vec::new(); shape.layers],
            pos: 0,
        })
    }

    pub fn shape(&self) -> Gpt2Shape {
        self.shape
    }

    /// Positions fed since the last reset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Forget the cache: the next token is at position 0.
    pub fn reset(&mut self) {
        self.keys
            .iter_mut()
            .chain(&mut self.values)
            .for_each(Vec::clear);
        self.pos = 0;
    }

    /// Feeds `token` at the next position and returns the logits `[V]` there.
    pub fn feed(&mut self, token: u32) -> Result<Vec<f32>> {
        let Gpt2Shape {
            vocab,
            positions,
            dim,
            ..
        } = self.shape;
        if token as usize >= vocab {
            return Err(Error::batch(format!(
                "token id {token} is outside the model's vocabulary of {vocab} (ids 0 to {})",
                vocab - 1
            )));
        }
        if self.pos >= positions {
            return Err(Error::batch(format!(
                "the key/value cache is full: the model has {positions} positions; reset it and feed the last tokens again"
            )));
        }
        let row = |t: &[f32], r: usize| t[r * dim..(r + 1) * dim].to_vec();
        let wte = self
            .wte
            .as_f32()
            .ok_or_else(|| Error::internal("wte is not f32"))?;
        let mut x: Vec<f32> = row(wte, token as usize);
        x.iter_mut()
            .zip(row(&self.wpe, self.pos))
            .for_each(|(a, b)| *a += b);
        for layer in 0..self.shape.layers {
            x = self.block(layer, x)?;
        }
        let h = self.layer_norm(x, &self.ln_f)?;
        let logits = self.matmul(&h, &self.wte, vocab, true)?;
        self.pos += 1;
        Ok(logits)
    }

    /// Block `layer` at the current position: `x + attn(ln_1(x))`, then `h + mlp(ln_2(h))`.
    fn block(&mut self, layer: usize, x: Vec<f32>) -> Result<Vec<f32>> {
        let c = self.shape.dim;
        let b = &self.blocks[layer];
        let a = self.layer_norm(x.clone(), &b.ln_1)?;
        let qkv = self.linear(&a, &b.c_attn, 3 * c)?;
        self.keys[layer].extend_from_slice(&qkv[c..2 * c]);
        self.values[layer].extend_from_slice(&qkv[2 * c..]);
        let y = self.attend(layer, &qkv[..c]);
        let b = &self.blocks[layer];
        let h = add(x, &self.linear(&y, &b.attn_proj, c)?);
        let m = self.layer_norm(h.clone(), &b.ln_2)?;
        let f = self.linear(&m, &b.c_fc, 4 * c)?;
        let f = self.run(
            &Op::Unary(UnaryOp::Gelu),
            &[(&HostData::F32(f), &[1, 4 * c])],
            &[1, 4 * c],
        )?;
        Ok(add(h, &self.linear(&f, &b.mlp_proj, c)?))
    }

    /// The one query `q [C]` against every cached key of `layer`, head by head (scale
    /// 1/sqrt(C/H), as the training kernel), weighting the cached values.
    fn attend(&self, layer: usize, q: &[f32]) -> Vec<f32> {
        let (c, heads, t) = (self.shape.dim, self.shape.heads, self.pos + 1);
        let d = c / heads;
        let scale = 1.0 / (d as f32).sqrt();
        let (keys, values) = (&self.keys[layer], &self.values[layer]);
        let per_head: Vec<Vec<f32>> = (0..heads)
            .into_par_iter()
            .map(|h| {
                let qh = &q[h * d..(h + 1) * d];
                let mut p: Vec<f32> = (0..t)
                    .map(|j| dot(qh, &keys[j * c + h * d..][..d]) * scale)
                    .collect();
                let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                p.iter_mut().for_each(|v| *v = (*v - max).exp());
                let inv = 1.0 / p.iter().sum::<f32>();
                let mut out = vec![0.0f32; d];
                for (j, &w) in p.iter().enumerate() {
                    let v = &values[j * c + h * d..][..d];
                    out.iter_mut()
                        .zip(v)
                        .for_each(|(o, &vv)| *o += w * inv * vv);
                }
                out
            })
            .collect();
        per_head.concat()
    }

    fn layer_norm(&self, x: Vec<f32>, wb: &[HostData; 2]) -> Result<Vec<f32>> {
        let c = self.shape.dim;
        let op = Op::LayerNorm {
            eps: self.shape.eps,
        };
        let x = HostData::F32(x);
        self.run(
            &op,
            &[(&x, &[1, c]), (&wb[0], &[c]), (&wb[1], &[c])],
            &[1, c],
        )
    }

    /// `x [K] @ w [K, out] + b` (Conv1D layout, as GPT-2 stores it).
    fn linear(&self, x: &[f32], wb: &[HostData; 2], out: usize) -> Result<Vec<f32>> {
        let y = self.matmul(x, &wb[0], out, false)?;
        let b = wb[1]
            .as_f32()
            .ok_or_else(|| Error::internal("bias is not f32"))?;
        Ok(add(y, b))
    }

    /// `x [K] @ w` (`w [K, n]`, or `[n, K]` when `trans_b`).
    fn matmul(&self, x: &[f32], w: &HostData, n: usize, trans_b: bool) -> Result<Vec<f32>> {
        let k = x.len();
        let op = Op::MatMul {
            trans_a: false,
            trans_b,
        };
        let w_dims = if trans_b { [n, k] } else { [k, n] };
        let x = HostData::F32(x.to_vec());
        self.run(&op, &[(&x, &[1, k]), (w, &w_dims)], &[1, n])
    }

    /// One op on the CPU backend, f32 in and out.
    fn run(
        &self,
        op: &Op,
        inputs: &[(&HostData, &[usize])],
        out_dims: &[usize],
    ) -> Result<Vec<f32>> {
        let refs: Vec<TensorRef<'_, HostData>> = inputs
            .iter()
            .map(|&(buf, shape)| TensorRef {
                buf,
                shape,
                dtype: DType::F32,
            })
            .collect();
        let mut out = self.cpu.alloc(DType::F32, out_dims.iter().product())?;
        self.cpu
            .execute(op, &refs, &mut out, out_dims, &KernelCtx::default())?;
        match out {
            HostData::F32(v) => Ok(v),
            _ => Err(Error::internal("decoder op did not give f32")),
        }
    }
}

fn add(mut a: Vec<f32>, b: &[f32]) -> Vec<f32> {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    a
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
