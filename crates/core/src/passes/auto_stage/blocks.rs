//! Repeated-block detection: EPL's repeated-layer rule, adapted to an IR without name scopes.
//!
//! EPL groups TF ops by name-scope prefix. weft's ops have no names, but its parameters carry
//! dotted ones (`h.3.attn.c_attn.weight`), so an op's scope is the longest `<prefix>.<integer>`
//! shared by the parameters it reads (`h.3`); an op reading no parameter (attention, residual
//! adds, activations) takes the scope of its nearest producer (its latest-created compute input).
//! Blocks are scopes `<family>.<i>` of one family; each is fingerprinted by its sorted op-type
//! histogram, and a fingerprint found in at least `MIN_REPEAT_BLOCKS` blocks of a family makes
//! those blocks repeated layers. As in EPL, shallow scopes are tried first and scopes nested in an
//! accepted block are not considered again.

use crate::ir::{Graph, NodeId, Op};
use std::collections::BTreeMap;

/// EPL's `min_dup`: fewer repeats than this is not a stack of layers.
pub(super) const MIN_REPEAT_BLOCKS: usize = 4;

/// EPL's `min_ops` (a block needs more than 20 TF ops), scaled to weft's fused ops: a BERT/GPT
/// layer is on the order of a hundred TF ops (each layer-norm is ~8, attention ~15, each dense
/// layer a matmul, a bias add and a variable read) but 14 weft ops (one `layer_norm`, one
/// `causal_attention`, matmul + add per linear). The smallest thing still worth calling a layer
/// is a residual MLP block (2 matmuls, 2 bias adds, an activation, a residual add = 6 ops); a
/// lone linear (matmul + add) is a sub-layer and is left to the cost model.
pub(super) const MIN_BLOCK_OPS: usize = 6;

/// EPL's `min_type_num` (more than 5 distinct TF op types), scaled the same way: a weft
/// transformer layer has 5 types (layer_norm, matmul, add, causal_attention, gelu) and a
/// residual MLP block 3 (matmul, add, activation).
pub(super) const MIN_BLOCK_OP_TYPES: usize = 3;

/// One repeated block: its scope (`h.3`) and its compute units (indices into the unit list).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Block {
    pub scope: String,
    pub units: Vec<usize>,
}

/// The accepted blocks, ordered by their first unit.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Blocks {
    pub list: Vec<Block>,
}

impl Blocks {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The block each of the `n` units belongs to, if any.
    pub fn block_of_unit(&self, n: usize) -> Vec<Option<usize>> {
        let mut of = vec![None; n];
        for (b, block) in self.list.iter().enumerate() {
            for &u in &block.units {
                of[u] = Some(b);
            }
        }
        of
    }

    /// EPL's even assignment (block count divisible by `stages`): consecutive blocks share a
    /// stage; ops outside blocks stay on the stage of the last block seen (stage 0 before the
    /// first). The running maximum keeps stages non-decreasing along node order even if a
    /// block's ops interleave with a later block's.
    pub fn even_stages(&self, n: usize, stages: usize) -> Vec<usize> {
        let per = self.len() / stages;
        let mut stage = 0;
        self.block_of_unit(n)
            .into_iter()
            .map(|b| {
                if let Some(b) = b {
                    stage = stage.max(b / per);
                }
                stage
            })
            .collect()
    }

    /// `allowed[k]`: whether a stage may start at unit k without splitting a block, i.e. block
    /// membership changes between units k-1 and k (length n+1, both ends allowed).
    pub fn boundaries(&self, n: usize) -> Vec<bool> {
        let of = self.block_of_unit(n);
        (0..=n)
            .map(|k| k == 0 || k == n || of[k - 1] != of[k])
            .collect()
    }
}

/// Every prefix of a dotted name that ends in an integer component:
/// `h.3.mlp.experts.2.w` -> [`h.3`, `h.3.mlp.experts.2`]; `fc2.bias` -> [].
pub(super) fn indexed_prefixes(name: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut end = 0;
    for (k, part) in name.split('.').enumerate() {
        end += part.len() + usize::from(k > 0);
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push(&name[..end]);
        }
    }
    out
}

/// The longest indexed prefix every name shares.
fn common_scope(names: &[&str]) -> Option<String> {
    let first = indexed_prefixes(names.first()?);
    first
        .into_iter()
        .rev()
        .find(|p| names[1..].iter().all(|n| indexed_prefixes(n).contains(p)))
        .map(str::to_string)
}

/// Each node's scope (None for leaves and ops outside any indexed scope).
pub(super) fn node_scopes(graph: &Graph) -> Vec<Option<String>> {
    let mut scope: Vec<Option<String>> = vec![None; graph.nodes.len()];
    for id in graph.ids() {
        let n = graph.node(id);
        if n.op.is_leaf() {
            continue;
        }
        let params: Vec<&str> = n
            .inputs
            .iter()
            .filter_map(|&x| match &graph.node(x).op {
                Op::Parameter { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        scope[id.index()] = if params.is_empty() {
            let producer = n
                .inputs
                .iter()
                .filter(|&&x| !graph.node(x).op.is_leaf())
                .max();
            producer.and_then(|p| scope[p.index()].clone())
        } else {
            common_scope(&params)
        };
    }
    scope
}

/// Sorted op-type histogram: EPL's `get_strategy_counter_key`.
type Fingerprint = Vec<(&'static str, usize)>;

fn fingerprint(graph: &Graph, units: &[NodeId], members: &[usize]) -> Fingerprint {
    let mut hist: BTreeMap<&'static str, usize> = BTreeMap::new();
    for &u in members {
        *hist.entry(graph.node(units[u]).op.name()).or_default() += 1;
    }
    hist.into_iter().collect()
}

/// Detect repeated blocks among the compute `units`.
pub(super) fn find_repeated_blocks(graph: &Graph, units: &[NodeId]) -> Blocks {
    let scopes = node_scopes(graph);
    // Candidate block scope -> its units, for every nesting level of every op's scope.
    let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (u, id) in units.iter().enumerate() {
        if let Some(s) = &scopes[id.index()] {
            for p in indexed_prefixes(s) {
                members.entry(p).or_default().push(u);
            }
        }
    }
    let depth = |s: &str| indexed_prefixes(s).len();
    let max_depth = members.keys().map(|s| depth(s)).max().unwrap_or(0);
    let mut accepted: Vec<Block> = Vec::new();
    for level in 1..=max_depth {
        let mut groups: BTreeMap<(&str, Fingerprint), Vec<&str>> = BTreeMap::new();
        for (&scope, us) in &members {
            let nested = accepted
                .iter()
                .any(|b| scope.starts_with(&format!("{}.", b.scope)));
            if depth(scope) != level || nested || !is_layer_sized(graph, units, us) {
                continue;
            }
            let family = scope.rfind('.').map_or("", |i| &scope[..i]);
            let key = (family, fingerprint(graph, units, us));
            groups.entry(key).or_default().push(scope);
        }
        for scopes in groups
            .into_values()
            .filter(|g| g.len() >= MIN_REPEAT_BLOCKS)
        {
            accepted.extend(scopes.into_iter().map(|s| Block {
                scope: s.to_string(),
                units: members[s].clone(),
            }));
        }
    }
    accepted.sort_by_key(|b| b.units[0]);
    Blocks { list: accepted }
}

/// EPL's per-block thresholds (scaled, see the constants).
fn is_layer_sized(graph: &Graph, units: &[NodeId], members: &[usize]) -> bool {
    members.len() >= MIN_BLOCK_OPS && fingerprint(graph, units, members).len() >= MIN_BLOCK_OP_TYPES
}
