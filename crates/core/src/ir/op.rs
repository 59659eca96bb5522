//! The closed set of operations. Every node has exactly one output; ops that would have several
//! (layer-norm backward, attention backward) are split into single-output ops or pack their
//! outputs (attention's dqkv), so the IR stays one value per node.
//!
//! Layout convention: tensors are dense, row-major, contiguous. "Last axis" means the innermost.
//! Shape letters: B batch, T sequence, C channels, V vocabulary, H heads, N rows (B*T).

use super::shape::Shape;
use crate::tensor::DType;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Relu,
    /// GELU, tanh approximation: 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))).
    Gelu,
    Tanh,
    Exp,
    Log,
    Neg,
    Sqrt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
}

/// Parameter initialisers. Deterministic: each parameter's stream is derived from the run seed
/// and the parameter's name, so the same model initialises identically in every layout.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    Constant(f32),
    Normal {
        mean: f32,
        std: f32,
    },
    Uniform {
        low: f32,
        high: f32,
    },
    /// One tensor-parallel shard of the parameter `base` would initialise at `full` dims: the
    /// values are generated whole and cut, so a split model starts equal to the unsplit one.
    Shard {
        base: Box<Init>,
        full: Vec<usize>,
        cut: Cut,
        index: usize,
    },
}

/// How a tensor-parallel placement cuts one axis: the axis is read as `[groups, parts, chunk]`
/// and part `i` keeps `[groups, chunk]` (groups > 1 for packed tensors such as attention's
/// q|k|v, so each device gets whole heads of each of q, k and v).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cut {
    pub axis: usize,
    pub groups: usize,
    pub parts: usize,
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "axis={},groups={},parts={}",
            self.axis, self.groups, self.parts
        )
    }
}

/// Which tokens (rows) of a mixture-of-experts layer one device dispatches and combines: part
/// `index` of `parts` equal parts (`0/1`: all of them, the layer on one device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenSlice {
    pub index: usize,
    pub parts: usize,
}

impl TokenSlice {
    pub const ALL: TokenSlice = TokenSlice { index: 0, parts: 1 };
}

impl fmt::Display for TokenSlice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tokens={}/{}", self.index, self.parts)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    // ---- leaves ----
    /// A batch input fed by `step()`; its shape usually has a symbolic batch dimension.
    Input {
        name: String,
        shape: Shape,
        dtype: DType,
    },
    /// A trainable f32 parameter.
    Parameter {
        name: String,
        shape: Shape,
        init: Init,
    },
    /// A constant tensor filled with `value` (f32).
    Fill { value: f32, shape: Shape },
    /// The step's loss scale, an f32 scalar: the seed of backward when mixed precision scales
    /// the loss (a value of the step, not of the graph, so dynamic scaling changes no graph).
    LossScale,

    // ---- elementwise ----
    /// y = f(x).
    Unary(UnaryOp),
    /// (x, dy) -> dx = dy * f'(x). For Exp/Sqrt f' is computed from x as well.
    UnaryBackward(UnaryOp),
    /// Numpy-broadcasting binary op; output is the broadcast shape.
    Binary(BinaryOp),
    /// y = x * factor.
    Scale { factor: f32 },
    /// y = x converted to the float type `to` (rounded to nearest even). Mixed precision
    /// inserts these just in time; the gradient casts back.
    Cast { to: DType },

    // ---- shape ----
    /// Same elements, new shape (element counts equal).
    Reshape { shape: Shape },
    /// y = x.permute(perm): output dim i is input dim perm[i].
    Permute { perm: Vec<usize> },
    /// y = x[.., start..end, ..] along `axis`.
    Slice {
        axis: usize,
        start: usize,
        end: usize,
    },
    /// (dy) -> dx: dy placed at [start, start+dy.len) along `axis` of a zero tensor of length `len`.
    SliceBackward {
        axis: usize,
        start: usize,
        len: usize,
    },
    /// Concatenate all inputs along `axis`.
    Concat { axis: usize },
    /// Broadcast x (numpy rules) to `shape`.
    Expand { shape: Shape },
    /// Sum x over broadcast dimensions down to `shape` (the adjoint of Expand).
    SumTo { shape: Shape },

    // ---- reductions ----
    /// Reduce over one axis. keepdim keeps it as size 1.
    Reduce {
        op: ReduceOp,
        axis: usize,
        keepdim: bool,
    },
    /// (x, dy) -> dx for Reduce Max over `axis`: dy (with or without the kept dim, as `keepdim`)
    /// goes to the first arg-max position; zero elsewhere.
    MaxBackward { axis: usize, keepdim: bool },

    // ---- linear algebra ----
    /// Batched matmul. a: [..., M, K] ([..., K, M] if trans_a); b: [..., K, N] ([..., N, K] if
    /// trans_b). Batch dims equal, or one side rank 2 (shared across the other's batch).
    /// Output [..., M, N].
    MatMul { trans_a: bool, trans_b: bool },

    // ---- neural-network ----
    /// Softmax over the last axis.
    Softmax,
    /// (y, dy) -> dx, y the softmax output: dx = y * (dy - sum(dy*y, last)).
    SoftmaxBackward,
    /// (x [.., C], w [C], b [C]) -> y: normalise over the last axis, biased variance.
    LayerNorm { eps: f32 },
    /// (x, w, dy) -> dx.
    LayerNormBackward { eps: f32 },
    /// (x, dy) -> dw [C] = sum over rows of dy * xhat. (db is a SumTo of dy.)
    LayerNormBackwardWeight { eps: f32 },
    /// (table [V, C], idx i32 [...]) -> [..., C]. An index outside [0, V) is an error at run time.
    Embedding,
    /// (idx i32 [...], dy [..., C]) -> dtable [vocab, C], rows accumulated.
    EmbeddingBackward { vocab: usize },
    /// (qkv [B, T, 3C]) -> [B, T, C]: causal multi-head attention, q|k|v packed on the last axis
    /// as in GPT-2's c_attn, head h uses channels [h*C/H, (h+1)*C/H), scale 1/sqrt(C/H).
    CausalAttention { heads: usize },
    /// (qkv, dy [B, T, C]) -> dqkv [B, T, 3C].
    CausalAttentionBackward { heads: usize },
    /// (logits [N, V], labels i32 [N]) -> per-row loss [N] = logsumexp(row) - row[label].
    CrossEntropy,
    /// (logits, labels, dloss [N]) -> dlogits [N, V] = (softmax(row) - onehot(label)) * dloss.
    CrossEntropyBackward,
    /// Inverted dropout: y = x * mask / (1 - p). The mask is a pure function of
    /// (seed, step, element index), so a recomputed dropout reproduces it exactly.
    Dropout { p: f32, seed: u64 },
    /// (dy) -> dx with the same mask as the forward of the same (p, seed).
    DropoutBackward { p: f32, seed: u64 },

    // ---- mixture of experts ----
    /// (probs [N, E]) -> gates [N, E]: each token's `top_k` likeliest experts (ties: the lower
    /// index) keep their probability (1 when not `weighted`), the rest 0. Each expert takes at
    /// most capacity = ceil(capacity_factor * N * top_k / E) tokens, filled first choices
    /// first, in token order (GShard's priority); a token over capacity is dropped for that
    /// expert (its gate is 0: the layer passes nothing for it, the caller's residual does).
    MoeGate {
        top_k: usize,
        capacity_factor: f32,
        weighted: bool,
    },
    /// (probs, dgates) -> dprobs: dgates where `MoeGate` kept a probability, else 0.
    MoeGateBackward { top_k: usize, capacity_factor: f32 },
    /// (x [M, C], gates [N, E]) -> [E, S, C]: each expert's tokens in token order, one per slot
    /// (S = min(N, capacity as in `MoeGate`); unused slots 0). A token is routed to expert e
    /// where its gate is non-zero; this device holds rows `tokens` of the N (M = N / parts) and
    /// fills only their slots.
    MoeDispatch {
        top_k: usize,
        capacity_factor: f32,
        tokens: TokenSlice,
    },
    /// (dbuf [E, S, C], gates [N, E]) -> dx [M, C]: each token sums its slots' gradients.
    MoeDispatchBackward { tokens: TokenSlice },
    /// (buf [E, S, C], gates [N, E]) -> [M, C]: each of this device's tokens sums its experts'
    /// slots weighted by its gates.
    MoeCombine { tokens: TokenSlice },
    /// (dy [M, C], buf [E, S, C], gates [N, E]) -> dbuf [E, S, C]: each slot of this device's
    /// tokens gets its token's dy times its gate (buf gives only the shape).
    MoeCombineBackward { tokens: TokenSlice },
    /// (dy [M, C], buf [E, S, C], gates [N, E]) -> dgates [N, E]: dy . buf[slot] where routed
    /// and the token is this device's, else 0.
    MoeCombineGates { tokens: TokenSlice },

    // ---- metrics (forward only: they take no gradient) ----
    /// (x [.., V]) -> i32 [..]: the index of the largest value of each row of the last axis,
    /// ties to the lowest index.
    Argmax,
    /// (a, b) of one shape and dtype (i32 or float) -> f32 of that shape: 1 where the elements
    /// are equal, else 0 (so a mean of it is an accuracy).
    Equal,

    // ---- tensor-parallel collectives (inserted by `passes::tensor_split`) ----
    /// Identity forward; backward all-reduces the gradient over the tensor-parallel group
    /// (Megatron's `f`: a replicated value read by sharded computation).
    TpCopy,
    /// All-reduce (sum) over the tensor-parallel group; backward is `TpCopy` (Megatron's `g`).
    TpReduce,
    /// All-gather the shards of `cut` into the whole tensor (this device holds shard `index`);
    /// backward is `TpShard`.
    TpGather { cut: Cut, index: usize },
    /// This device's shard `index` of a replicated tensor (no communication); backward is
    /// `TpGather`.
    TpShard { cut: Cut, index: usize },
    /// All-gather the shards of `cut` into the whole tensor when its readers' gradients are
    /// partial sums (sequence parallelism before a column-parallel layer): backward is
    /// `TpReduceScatter`.
    TpGatherPartial { cut: Cut, index: usize },
    /// Sum over the tensor-parallel group, keeping this device's shard `index` of `cut`
    /// (reduce-scatter); backward is `TpGather`.
    TpReduceScatter { cut: Cut, index: usize },
    /// All-reduce (max) over the tensor-parallel group. It has no gradient: the pass uses it
    /// only for the shift of a log-sum-exp, which the result does not depend on.
    TpMax,
    /// (x [.., W]) -> x with every column whose global index `start + col` is `valid` or more
    /// set to `fill` (the padding of a vocabulary that does not divide over the devices).
    ColumnMask {
        start: usize,
        valid: usize,
        fill: f32,
    },
    /// (labels i32 [...]) -> f32 [..., width]: 1 at column `label - start` when the label falls
    /// in `[start, start + width)`, else 0 (a vocabulary shard's view of the labels).
    VocabOneHot { start: usize, width: usize },
    /// (x [.., W], m [..]) -> f32 [..]: a vocabulary shard's bid for the argmax of the whole
    /// row, `-(start + c)` for the first column `c` where `x` equals the row's global max `m`,
    /// or -inf where no column does. The all-reduced max of the bids is the lowest global
    /// index holding the max, negated (exact: global indices stay below 2^24).
    ArgmaxBid { start: usize },
    /// (bid f32 [..]) -> i32 [..] = -bid: the index an all-reduced `ArgmaxBid` names.
    BidIndex,
    /// All-to-all over the tensor-parallel group: axis 0 of `x` is read as `[parts, chunk]`,
    /// chunk j goes to device j, and device j's chunk for this device lands at j (expert
    /// parallelism's dispatch and combine). Its gradient is the same all-to-all.
    TpAllToAll,
}

impl Op {
    /// Stable short name, used in the text form, errors and traces.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Parameter { .. } => "parameter",
            Op::Fill { .. } => "fill",
            Op::LossScale => "loss_scale",
            Op::Unary(u) => u.name(),
            Op::UnaryBackward(u) => u.backward_name(),
            Op::Binary(b) => b.name(),
            Op::Scale { .. } => "scale",
            Op::Cast { .. } => "cast",
            Op::Reshape { .. } => "reshape",
            Op::Permute { .. } => "permute",
            Op::Slice { .. } => "slice",
            Op::SliceBackward { .. } => "slice_backward",
            Op::Concat { .. } => "concat",
            Op::Expand { .. } => "expand",
            Op::SumTo { .. } => "sum_to",
            Op::Reduce { op, .. } => op.name(),
            Op::MaxBackward { .. } => "max_backward",
            Op::MatMul { .. } => "matmul",
            Op::Softmax => "softmax",
            Op::SoftmaxBackward => "softmax_backward",
            Op::LayerNorm { .. } => "layer_norm",
            Op::LayerNormBackward { .. } => "layer_norm_backward",
            Op::LayerNormBackwardWeight { .. } => "layer_norm_backward_weight",
            Op::Embedding => "embedding",
            Op::EmbeddingBackward { .. } => "embedding_backward",
            Op::CausalAttention { .. } => "causal_attention",
            Op::CausalAttentionBackward { .. } => "causal_attention_backward",
            Op::CrossEntropy => "cross_entropy",
            Op::CrossEntropyBackward => "cross_entropy_backward",
            Op::Dropout { .. } => "dropout",
            Op::DropoutBackward { .. } => "dropout_backward",
            Op::MoeGate { .. } => "moe_gate",
            Op::MoeGateBackward { .. } => "moe_gate_backward",
            Op::MoeDispatch { .. } => "moe_dispatch",
            Op::MoeDispatchBackward { .. } => "moe_dispatch_backward",
            Op::MoeCombine { .. } => "moe_combine",
            Op::MoeCombineBackward { .. } => "moe_combine_backward",
            Op::MoeCombineGates { .. } => "moe_combine_gates",
            Op::TpCopy => "tp_copy",
            Op::TpReduce => "tp_reduce",
            Op::TpGather { .. } => "tp_gather",
            Op::TpShard { .. } => "tp_shard",
            Op::TpGatherPartial { .. } => "tp_gather_partial",
            Op::TpReduceScatter { .. } => "tp_reduce_scatter",
            Op::TpMax => "tp_max",
            Op::ColumnMask { .. } => "column_mask",
            Op::VocabOneHot { .. } => "vocab_one_hot",
            Op::Argmax => "argmax",
            Op::Equal => "equal",
            Op::ArgmaxBid { .. } => "argmax_bid",
            Op::BidIndex => "bid_index",
            Op::TpAllToAll => "tp_all_to_all",
        }
    }

    /// Number of inputs the op takes; `None` for variadic (Concat).
    pub fn arity(&self) -> Option<usize> {
        Some(match self {
            Op::Input { .. } | Op::Parameter { .. } | Op::Fill { .. } | Op::LossScale => 0,
            Op::Concat { .. } => return None,
            Op::Unary(_)
            | Op::Scale { .. }
            | Op::Cast { .. }
            | Op::Reshape { .. }
            | Op::Permute { .. }
            | Op::Slice { .. }
            | Op::SliceBackward { .. }
            | Op::Expand { .. }
            | Op::SumTo { .. }
            | Op::Reduce { .. }
            | Op::Softmax
            | Op::CausalAttention { .. }
            | Op::Dropout { .. }
            | Op::DropoutBackward { .. }
            | Op::TpCopy
            | Op::TpReduce
            | Op::TpGather { .. }
            | Op::TpShard { .. }
            | Op::TpGatherPartial { .. }
            | Op::TpReduceScatter { .. }
            | Op::MoeGate { .. }
            | Op::TpMax
            | Op::ColumnMask { .. }
            | Op::VocabOneHot { .. }
            | Op::Argmax
            | Op::BidIndex
            | Op::TpAllToAll => 1,
            Op::UnaryBackward(_)
            | Op::Binary(_)
            | Op::MaxBackward { .. }
            | Op::MatMul { .. }
            | Op::SoftmaxBackward
            | Op::LayerNormBackwardWeight { .. }
            | Op::Embedding
            | Op::EmbeddingBackward { .. }
            | Op::CausalAttentionBackward { .. }
            | Op::CrossEntropy
            | Op::MoeGateBackward { .. }
            | Op::MoeDispatch { .. }
            | Op::MoeDispatchBackward { .. }
            | Op::MoeCombine { .. }
            | Op::Equal
            | Op::ArgmaxBid { .. } => 2,
            Op::LayerNorm { .. }
            | Op::LayerNormBackward { .. }
            | Op::CrossEntropyBackward
            | Op::MoeCombineBackward { .. }
            | Op::MoeCombineGates { .. } => 3,
        })
    }

    /// Ops that only move elements (any dtype, bits copied): every backend runs them without
    /// widening 16-bit values.
    pub fn moves_data(&self) -> bool {
        matches!(
            self,
            Op::Reshape { .. }
                | Op::Permute { .. }
                | Op::Slice { .. }
                | Op::SliceBackward { .. }
                | Op::Concat { .. }
                | Op::Expand { .. }
        )
    }

    pub fn is_leaf(&self) -> bool {
        matches!(
            self,
            Op::Input { .. } | Op::Parameter { .. } | Op::Fill { .. } | Op::LossScale
        )
    }
}

impl UnaryOp {
    /// Every unary op, in the order of their CUDA kernel codes.
    pub const ALL: [UnaryOp; 7] = [
        UnaryOp::Relu,
        UnaryOp::Gelu,
        UnaryOp::Tanh,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Neg,
        UnaryOp::Sqrt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Relu => "relu",
            UnaryOp::Gelu => "gelu",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Neg => "neg",
            UnaryOp::Sqrt => "sqrt",
        }
    }

    pub fn backward_name(self) -> &'static str {
        match self {
            UnaryOp::Relu => "relu_backward",
            UnaryOp::Gelu => "gelu_backward",
            UnaryOp::Tanh => "tanh_backward",
            UnaryOp::Exp => "exp_backward",
            UnaryOp::Log => "log_backward",
            UnaryOp::Neg => "neg_backward",
            UnaryOp::Sqrt => "sqrt_backward",
        }
    }

    /// The op named `s`: the inverse of `name`, from the same table.
    pub fn parse(s: &str) -> Option<UnaryOp> {
        UnaryOp::ALL.into_iter().find(|u| u.name() == s)
    }
}

impl BinaryOp {
    /// Every binary op, in the order of their CUDA kernel codes.
    pub const ALL: [BinaryOp; 4] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div];

    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }

    /// The op named `s`: the inverse of `name`, from the same table.
    pub fn parse(s: &str) -> Option<BinaryOp> {
        BinaryOp::ALL.into_iter().find(|o| o.name() == s)
    }
}

impl ReduceOp {
    /// Every reduction, in the order of their CUDA kernel codes.
    pub const ALL: [ReduceOp; 3] = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max];

    /// The reduction named `s`: the inverse of `name`, from the same table.
    pub fn parse(s: &str) -> Option<ReduceOp> {
        ReduceOp::ALL.into_iter().find(|r| r.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
        }
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Zeros => f.write_str("zeros"),
            Init::Ones => f.write_str("ones"),
            Init::Constant(v) => write!(f, "constant({v})"),
            Init::Normal { mean, std } => write!(f, "normal({mean},{std})"),
            Init::Uniform { low, high } => write!(f, "uniform({low},{high})"),
            Init::Shard {
                base,
                full,
                cut,
                index,
            } => write!(f, "shard({base},full={full:?},{cut},index={index})"),
        }
    }
}

/// Attribute text of an op, for the stable text form (`matmul{ta=false,tb=true}`).
pub fn attrs(op: &Op) -> String {
    match op {
        Op::Input { name, .. } => format!("{{name={name}}}"),
        Op::Parameter { name, init, .. } => format!("{{name={name},init={init}}}"),
        Op::Fill { value, .. } => format!("{{value={value}}}"),
        Op::Scale { factor } => format!("{{factor={factor}}}"),
        Op::Cast { to } => format!("{{to={to}}}"),
        Op::Permute { perm } => format!("{{perm={perm:?}}}"),
        Op::Slice { axis, start, end } => format!("{{axis={axis},start={start},end={end}}}"),
        Op::SliceBackward { axis, start, len } => {
            format!("{{axis={axis},start={start},len={len}}}")
        }
        Op::Concat { axis } => format!("{{axis={axis}}}"),
        Op::Reduce { axis, keepdim, .. } => format!("{{axis={axis},keepdim={keepdim}}}"),
        Op::MaxBackward { axis, keepdim } => format!("{{axis={axis},keepdim={keepdim}}}"),
        Op::MatMul { trans_a, trans_b } => format!("{{ta={trans_a},tb={trans_b}}}"),
        Op::LayerNorm { eps }
        | Op::LayerNormBackward { eps }
        | Op::LayerNormBackwardWeight { eps } => format!("{{eps={eps}}}"),
        Op::EmbeddingBackward { vocab } => format!("{{vocab={vocab}}}"),
        Op::CausalAttention { heads } | Op::CausalAttentionBackward { heads } => {
            format!("{{heads={heads}}}")
        }
        Op::Dropout { p, seed } | Op::DropoutBackward { p, seed } => {
            format!("{{p={p},seed={seed}}}")
        }
        Op::TpGather { cut, index }
        | Op::TpShard { cut, index }
        | Op::TpGatherPartial { cut, index }
        | Op::TpReduceScatter { cut, index } => format!("{{{cut},index={index}}}"),
        Op::ColumnMask { start, valid, fill } => {
            format!("{{start={start},valid={valid},fill={fill}}}")
        }
        Op::VocabOneHot { start, width } => format!("{{start={start},width={width}}}"),
        Op::ArgmaxBid { start } => format!("{{start={start}}}"),
        Op::MoeGate {
            top_k,
            capacity_factor,
            weighted,
        } => format!("{{top_k={top_k},capacity_factor={capacity_factor},weighted={weighted}}}"),
        Op::MoeGateBackward {
            top_k,
            capacity_factor,
        } => format!("{{top_k={top_k},capacity_factor={capacity_factor}}}"),
        Op::MoeDispatch {
            top_k,
            capacity_factor,
            tokens,
        } => format!("{{top_k={top_k},capacity_factor={capacity_factor},{tokens}}}"),
        Op::MoeDispatchBackward { tokens }
        | Op::MoeCombine { tokens }
        | Op::MoeCombineBackward { tokens }
        | Op::MoeCombineGates { tokens } => format!("{{{tokens}}}"),
        _ => String::new(),
    }
}
