//! Recognising GPT-2 in a model graph. The cached decoder replays the model's forward one
//! position at a time, which is only right for the exact structure it implements: the built-in
//! GPT (and Hugging Face GPT-2) with pre-LN blocks, packed q|k|v, GELU (tanh) and a head tied to
//! `wte`. Anything else is reported with the first difference found, and generation falls back
//! to recomputing the full window.

use crate::ir::{Graph, Op, UnaryOp};
use std::collections::BTreeMap;

/// The shape of a GPT-2 model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gpt2Shape {
    pub layers: usize,
    pub heads: usize,
    /// Embedding width C.
    pub dim: usize,
    pub vocab: usize,
    /// Learned positions (`wpe` rows): the longest context.
    pub positions: usize,
    pub eps: f32,
}

impl Gpt2Shape {
    /// Every parameter of this shape with its dims, in the order the built-in GPT creates them.
    pub fn parameters(&self) -> Vec<(String, Vec<usize>)> {
        let c = self.dim;
        let mut out = vec![
            ("wte.weight".to_string(), vec![self.vocab, c]),
            ("wpe.weight".to_string(), vec![self.positions, c]),
        ];
        for i in 0..self.layers {
            let block = [
                ("ln_1.weight", vec![c]),
                ("ln_1.bias", vec![c]),
                ("attn.c_attn.weight", vec![c, 3 * c]),
                ("attn.c_attn.bias", vec![3 * c]),
                ("attn.c_proj.weight", vec![c, c]),
                ("attn.c_proj.bias", vec![c]),
                ("ln_2.weight", vec![c]),
                ("ln_2.bias", vec![c]),
                ("mlp.c_fc.weight", vec![c, 4 * c]),
                ("mlp.c_fc.bias", vec![4 * c]),
                ("mlp.c_proj.weight", vec![4 * c, c]),
                ("mlp.c_proj.bias", vec![c]),
            ];
            out.extend(block.into_iter().map(|(n, d)| (format!("h.{i}.{n}"), d)));
        }
        out.push(("ln_f.weight".to_string(), vec![c]));
        out.push(("ln_f.bias".to_string(), vec![c]));
        out
    }
}

/// The GPT-2 shape of `graph`, or why it has none (a sentence naming the first mismatch).
pub fn gpt2_shape(graph: &Graph) -> Result<Gpt2Shape, String> {
    let params: BTreeMap<String, Vec<usize>> = graph
        .parameters()
        .into_iter()
        .map(|(id, n)| (n.to_string(), graph.node(id).shape.to_vec()))
        .collect();
    let dims = |name: &str| {
        params
            .get(name)
            .cloned()
            .ok_or_else(|| format!("it has no parameter '{name}'"))
    };
    let wte = dims("wte.weight")?;
    let wpe = dims("wpe.weight")?;
    let (&[vocab, dim], &[positions, _]) = (wte.as_slice(), wpe.as_slice()) else {
        return Err(format!(
            "wte {wte:?} and wpe {wpe:?} are not [V, C] and [T, C]"
        ));
    };
    let layers = (0..)
        .take_while(|i| params.contains_key(&format!("h.{i}.ln_1.weight")))
        .count();
    let heads = only_value(graph, "causal_attention", (layers, layers), |op| match op {
        Op::CausalAttention { heads } => Some(*heads as f32),
        _ => None,
    })? as usize;
    let eps = only_value(
        graph,
        "layer_norm",
        (2 * layers + 1, layers),
        |op| match op {
            Op::LayerNorm { eps } => Some(*eps),
            _ => None,
        },
    )?;
    only_value(graph, "gelu", (layers, layers), |op| {
        matches!(op, Op::Unary(UnaryOp::Gelu)).then_some(0.0)
    })?;
    let shape = Gpt2Shape {
        layers,
        heads,
        dim,
        vocab,
        positions,
        eps,
    };
    let expected: BTreeMap<String, Vec<usize>> = shape.parameters().into_iter().collect();
    if let Some((name, d)) = params.iter().find(|(n, d)| expected.get(*n) != Some(d)) {
        return Err(format!(
            "parameter '{name}' {d:?} is not part of a GPT-2 of {layers} block(s) and width {dim}"
        ));
    }
    if let Some(name) = expected.keys().find(|n| !params.contains_key(*n)) {
        return Err(format!("it has no parameter '{name}'"));
    }
    Ok(shape)
}

/// The one value `pick` reads from the ops of a kind, which must occur `count` times in a GPT-2
/// of `layers` blocks.
fn only_value(
    graph: &Graph,
    what: &str,
    (count, layers): (usize, usize),
    pick: impl Fn(&Op) -> Option<f32>,
) -> Result<f32, String> {
    let values: Vec<f32> = graph
        .ids()
        .filter_map(|id| pick(&graph.node(id).op))
        .collect();
    let first = values.first().copied();
    match first {
        Some(v) if values.len() == count && values.iter().all(|&x| x == v) => Ok(v),
        _ => Err(format!(
            "it has {} {what} op(s) (values {:?}); a GPT-2 of {layers} block(s) has {count}, all alike",
            values.len(),
            dedup(&values),
        )),
    }
}

fn dedup(values: &[f32]) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::new();
    for &v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}
