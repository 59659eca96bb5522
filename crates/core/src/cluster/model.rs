//! Models as shapes: the built-in GPT (Megatron's layer: attention + 4x MLP, pre-norm) and MLP
//! described by their sizes, and what one layer costs on one tensor-parallel rank for one
//! micro-batch: matmul FLOPs, memory-bound traffic, parameters, saved activations (Korthikanti
//! et al., "Reducing Activation Recomputation in Large Transformer Models", without sequence
//! parallelism) and tensor-parallel all-reduces. Nothing here allocates a tensor: sizes are f64,
//! so a 100-million-wide layer is a number, not a buffer.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Most layers a plan costs (each one is a few numbers).
pub const MAX_LAYERS: u64 = 1 << 20;

/// A model by its sizes (the CLI's `--model gpt|mlp` flags, `weft.plan`'s model description).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ModelShape {
    Gpt {
        layers: usize,
        heads: usize,
        dim: usize,
        seq: usize,
        vocab: usize,
    },
    Mlp {
        sizes: Vec<usize>,
    },
}

/// One layer (or the embedding / head) on one tensor-parallel rank, one micro-batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LayerCost {
    /// Forward FLOPs of matmul-class ops (matmuls, attention products).
    pub flops: f64,
    /// Forward bytes read and written by memory-bound ops (norms, activations, softmax, adds).
    pub mem_bytes: f64,
    /// Parameter elements held.
    pub params: f64,
    /// Bytes kept for backward without recompute.
    pub act_saved: f64,
    /// Bytes kept for backward under full recompute (the layer's input).
    pub act_input: f64,
    /// Tensor-parallel all-reduces in forward (backward has as many) and bytes of each.
    pub tp_reduces: f64,
    pub tp_bytes: f64,
}

impl ModelShape {
    /// Layers a pipeline partitions.
    pub fn layers(&self) -> usize {
        match self {
            ModelShape::Gpt { layers, .. } => *layers,
            ModelShape::Mlp { sizes } => sizes.len().saturating_sub(1),
        }
    }

    /// Checks the sizes and that `tp` divides what it splits.
    pub fn check(&self, tp: usize) -> Result<()> {
        let bad = |m: String| Err(Error::config("model", m));
        // Each layer is costed one by one.
        crate::resource::check_count(
            "model layers",
            self.layers() as u64,
            MAX_LAYERS,
            "a plan costs each layer",
        )?;
        match self {
            ModelShape::Gpt {
                layers,
                heads,
                dim,
                seq,
                vocab,
            } => {
                if [*layers, *heads, *dim, *seq, *vocab].contains(&0) {
                    return bad("a gpt needs layers, heads, dim, seq and vocab >= 1".into());
                }
                if dim % heads != 0 {
                    return bad(format!("gpt dim {dim} is not a multiple of heads {heads}"));
                }
                if heads % tp != 0 {
                    return bad(format!(
                        "tensor parallel size {tp} does not divide heads {heads}"
                    ));
                }
                Ok(())
            }
            ModelShape::Mlp { sizes } if sizes.len() < 2 || sizes.contains(&0) => {
                bad("an mlp needs at least two sizes, each >= 1".into())
            }
            ModelShape::Mlp { .. } if tp > 1 => Err(Error::unsupported(
                "tensor parallelism of the built-in mlp",
                "plan the mlp with tensor parallel size 1",
            )),
            ModelShape::Mlp { .. } => Ok(()),
        }
    }

    /// Tokens (GPT) or rows (MLP) one batch row carries.
    pub fn tokens_per_row(&self) -> f64 {
        match self {
            ModelShape::Gpt { seq, .. } => *seq as f64,
            ModelShape::Mlp { .. } => 1.0,
        }
    }

    /// Every parameter element of the whole model.
    pub fn parameters(&self) -> f64 {
        let body: f64 = (0..self.layers())
            .map(|i| self.layer(i, 1.0, 1, 4.0).params)
            .sum();
        body + self.embedding(1.0, 1, 4.0).params
    }

    /// Layer `i` for `b` rows per micro-batch, tensor-parallel size `tp`, `p` bytes per
    /// activation element.
    pub fn layer(&self, i: usize, b: f64, tp: usize, p: f64) -> LayerCost {
        let t = tp as f64;
        match self {
            ModelShape::Gpt {
                heads, dim, seq, ..
            } => {
                let (h, s, a) = (*dim as f64, *seq as f64, *heads as f64);
                let sbh = s * b * h;
                LayerCost {
                    flops: (24.0 * sbh * h + 4.0 * b * s * s * h) / t,
                    // Element passes: two norms, two residual adds and dropouts on [s,b,h];
                    // bias, GeLU and dropout on the 4h MLP; softmax, mask and dropout on scores.
                    mem_bytes: p * (12.0 * sbh + 16.0 * sbh / t + 4.0 * a * s * s * b / t),
                    params: 12.0 * h * h / t + 13.0 * h,
                    act_saved: p / 2.0 * (sbh * (10.0 + 24.0 / t) + 5.0 * a * s * s * b / t),
                    act_input: p * sbh,
                    tp_reduces: if tp > 1 { 2.0 } else { 0.0 },
                    tp_bytes: p * sbh,
                }
            }
            ModelShape::Mlp { sizes } => {
                let (n_in, n_out) = (sizes[i] as f64, sizes[i + 1] as f64);
                LayerCost {
                    flops: 2.0 * b * n_in * n_out,
                    mem_bytes: p * 3.0 * b * n_out,
                    params: n_in * n_out + n_out,
                    act_saved: p * b * (n_in + n_out),
                    act_input: p * b * n_in,
                    tp_reduces: 0.0,
                    tp_bytes: 0.0,
                }
            }
        }
    }

    /// The GPT's token and position embeddings (vocabulary-parallel under tp); nothing for an
    /// MLP.
    pub fn embedding(&self, b: f64, tp: usize, p: f64) -> LayerCost {
        match self {
            ModelShape::Gpt {
                dim, seq, vocab, ..
            } => {
                let (h, s, v) = (*dim as f64, *seq as f64, *vocab as f64);
                LayerCost {
                    mem_bytes: p * 2.0 * s * b * h,
                    params: v * h / tp as f64 + s * h,
                    act_saved: p * s * b * h,
                    act_input: p * s * b * h,
                    tp_reduces: if tp > 1 { 1.0 } else { 0.0 },
                    tp_bytes: p * s * b * h,
                    ..LayerCost::default()
                }
            }
            ModelShape::Mlp { .. } => LayerCost::default(),
        }
    }

    /// The GPT's final norm, logits (weights tied to the embedding; a last stage apart from the
    /// first keeps its own copy, as Megatron does) and cross-entropy in f32.
    pub fn head(&self, b: f64, tp: usize, p: f64, own_copy: bool) -> LayerCost {
        match self {
            ModelShape::Gpt {
                dim, seq, vocab, ..
            } => {
                let (h, s, v, t) = (*dim as f64, *seq as f64, *vocab as f64, tp as f64);
                let logits = s * b * v / t;
                LayerCost {
                    flops: 2.0 * s * b * h * v / t,
                    mem_bytes: (p + 4.0) * 3.0 * logits,
                    params: 2.0 * h + if own_copy { v * h / t } else { 0.0 },
                    act_saved: (p + 4.0) * logits + p * s * b * h,
                    act_input: (p + 4.0) * logits + p * s * b * h,
                    ..LayerCost::default()
                }
            }
            ModelShape::Mlp { .. } => LayerCost::default(),
        }
    }

    /// FLOPs of one training step over `rows` batch rows as the model defines them (forward and
    /// backward, no recompute): for the GPT Megatron's 72*B*s*l*h^2*(1 + s/6h + V/12lh); for
    /// the MLP 6 x weights x rows. `recompute` counts the extra forward as Megatron's
    /// "TFLOP/s per GPU" does (96*B*s*l*h^2*(1 + s/6h + V/16lh)).
    pub fn step_flops(&self, rows: f64, recompute: bool) -> f64 {
        match self {
            ModelShape::Gpt {
                layers,
                dim,
                seq,
                vocab,
                ..
            } => {
                let (l, h, s, v) = (*layers as f64, *dim as f64, *seq as f64, *vocab as f64);
                let (k, head) = if recompute {
                    (96.0, 16.0)
                } else {
                    (72.0, 12.0)
                };
                k * rows * s * l * h * h * (1.0 + s / (6.0 * h) + v / (head * l * h))
            }
            ModelShape::Mlp { sizes } => {
                let weights: f64 = sizes.windows(2).map(|w| (w[0] * w[1]) as f64).sum();
                let passes = if recompute { 8.0 } else { 6.0 };
                passes * weights * rows
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt(layers: usize, heads: usize, dim: usize) -> ModelShape {
        ModelShape::Gpt {
            layers,
            heads,
            dim,
            seq: 2048,
            vocab: 51200,
        }
    }

    /// Megatron's table names its models by parameters, 12*l*h^2*(1 + 13/12h + (V+s)/12lh),
    /// rounded (1.65B is its "1.7B").
    #[test]
    fn parameter_counts_match_the_megatron_table() {
        for (params_b, heads, dim, layers) in [
            (1.7, 24, 2304, 24),
            (18.4, 48, 6144, 40),
            (145.6, 96, 12288, 80),
            (1008.0, 160, 25600, 128),
        ] {
            let p = gpt(layers, heads, dim).parameters() / 1e9;
            assert!((p - params_b).abs() / params_b < 0.03, "{params_b}B: {p}");
        }
    }

    #[test]
    fn a_hundred_million_wide_mlp_is_a_number() {
        let m = ModelShape::Mlp {
            sizes: vec![100_000_000, 100_000_000],
        };
        assert_eq!(m.parameters(), 1e16 + 1e8);
        assert_eq!(m.layer(0, 8.0, 1, 4.0).flops, 1.6e17);
    }

    #[test]
    fn shape_errors_name_the_sizes() {
        let err = |m: ModelShape, tp| m.check(tp).unwrap_err().to_string();
        assert_eq!(
            err(gpt(2, 5, 2304), 1),
            "gpt dim 2304 is not a multiple of heads 5"
        );
        assert_eq!(
            err(gpt(2, 24, 2304), 5),
            "tensor parallel size 5 does not divide heads 24"
        );
        let deep = gpt(1 << 21, 8, 512);
        assert_eq!(
            err(deep, 1),
            "model layers=2097152 is more than the limit of 1048576 (a plan costs each layer)"
        );
        let m = ModelShape::Mlp { sizes: vec![4] };
        assert_eq!(err(m, 1), "an mlp needs at least two sizes, each >= 1");
    }
}
