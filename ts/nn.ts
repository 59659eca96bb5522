/**
 * Layers, `m.nn.*`, with PyTorch's initialisation and Hugging Face GPT-2's parameter names and
 * layouts (so real GPT-2 safetensors load): a linear weight is stored `[in, out]` (Conv1D
 * layout, `y = x @ W + b`).
 */
import { WeftShapeError } from './errors.js';
import { type Init, normal, ones, uniform, zeros } from './init.js';
import type { ModelBuilder } from './model.js';
import type { Tensor } from './tensor.js';

/** Options of {@link Nn.linear}. */
export interface LinearOptions {
  /** Local name; parameters are `<scope>.<name>.weight` / `.bias` (default `linear_N`). */
  readonly name?: string;
  /** Add a bias (default true). */
  readonly bias?: boolean;
  /** Weight initialiser (default PyTorch's: uniform ±1/sqrt(in)). */
  readonly init?: Init;
  /** Bias initialiser (default PyTorch's: uniform ±1/sqrt(in)). */
  readonly biasInit?: Init;
}

/** Options of {@link Nn.embedding}. */
export interface EmbeddingOptions {
  /** Local name; the table is `<name>.weight` (default `embedding_N`). */
  readonly name?: string;
  /** Table initialiser (default PyTorch's: normal(0, 1)). */
  readonly init?: Init;
}

/** Options of {@link Nn.layerNorm}. */
export interface LayerNormOptions {
  /** Local name; parameters are `<name>.weight` (ones) and `<name>.bias` (zeros). */
  readonly name?: string;
  /** Added to the variance (default 1e-5). */
  readonly eps?: number;
}

/** Options of {@link Nn.moe}. */
export interface MoeOptions {
  /** Number of experts E (under `m.split({ deviceCount: N })` a multiple of N). */
  readonly experts: number;
  /** Experts per token (default 1: Switch routing; 2: GShard's top-2). */
  readonly topK?: number;
  /**
   * Tokens one expert takes per step: ceil(capacityFactor * tokens * topK / E) (default 1.25).
   * Overflow policy: experts fill with every token's first choice in token order, then second
   * choices; a token over an expert's capacity is dropped for that expert (gate 0), so the
   * layer adds nothing for it and the caller's residual carries it.
   */
  readonly capacityFactor?: number;
  /** Hidden width of each expert's MLP (default 4x the input width). */
  readonly hidden?: number;
  /** Local name (default `moe_N`); parameters `<name>.gate.weight`, `<name>.w1`, `.b1`, `.w2`, `.b2`. */
  readonly name?: string;
}

/** What {@link Nn.moe} returns. */
export interface MoeOutput {
  /** The experts' gated outputs, the input's shape (add it to a residual). */
  readonly y: Tensor;
  /**
   * Switch's load-balancing loss E * sum_e (share of tokens whose first choice is e) x (mean
   * router probability of e): 1 when balanced; add it to the loss with a small coefficient.
   */
  readonly auxLoss: Tensor;
}

/** Initialisers of the linear layers inside attention and MLP blocks. */
export interface BlockInitOptions {
  /** Initialiser of the input projections (`c_attn`, `c_fc`). */
  readonly init?: Init;
  /** Initialiser of the output projections (`c_proj`; GPT-2 scales it by 1/sqrt(2 * layers)). */
  readonly projInit?: Init;
}

/** Options of {@link Nn.causalSelfAttention}. */
export interface AttentionOptions extends BlockInitOptions {
  readonly heads: number;
  /** Local name (default `attn_N`); parameters `<name>.c_attn.*`, `<name>.c_proj.*`. */
  readonly name?: string;
}

/** Options of {@link Nn.mlp}. */
export interface MlpOptions extends BlockInitOptions {
  /** Hidden width (default 4x the input width). */
  readonly hidden?: number;
  /** Local name (default `mlp_N`); parameters `<name>.c_fc.*`, `<name>.c_proj.*`. */
  readonly name?: string;
}

/** Options of {@link Nn.transformerBlock}. */
export interface BlockOptions extends BlockInitOptions {
  readonly heads: number;
  /** Local name (default `h.N`); sub-layers `ln_1`, `attn`, `ln_2`, `mlp` as in GPT-2. */
  readonly name?: string;
  /** MLP hidden width (default 4x). */
  readonly hidden?: number;
  /** Layer-norm epsilon (default 1e-5). */
  readonly eps?: number;
}

/** The layers, bound to one model builder (`m.nn`). */
export class Nn {
  private readonly m: ModelBuilder;
  private blocks = 0;

  /** @internal */
  constructor(m: ModelBuilder) {
    this.m = m;
  }

  private lastDim(what: string, x: Tensor): number {
    const c = x.shape[x.rank - 1];
    if (typeof c !== 'number') {
      throw new WeftShapeError(`${what}: needs a fixed last dimension, got ${x.toString()}`);
    }
    return c;
  }

  /**
   * `y = x @ W + b` with `W: [in, out]`, initialised like PyTorch's `nn.Linear`.
   *
   * @example
   * const h = m.nn.linear(x, 1024).relu();                  // params linear_0.weight, linear_0.bias
   * const q = m.nn.linear(x, 64, { name: 'q', bias: false });
   */
  linear(x: Tensor, outFeatures: number, options: LinearOptions = {}): Tensor {
    const inFeatures = this.lastDim('linear', x);
    const bound = 1 / Math.sqrt(inFeatures);
    const name = options.name ?? this.m.autoName('linear');
    return this.m.scope(name, () => {
      const w = this.m.param('weight', [inFeatures, outFeatures], options.init ?? uniform(-bound, bound));
      const y = x.matmul(w);
      if (options.bias === false) return y;
      return y.add(this.m.param('bias', [outFeatures], options.biasInit ?? uniform(-bound, bound)));
    });
  }

  /**
   * Looks up rows of a `[vocab, dim]` table for i32 indices: `[..] -> [.., dim]`.
   *
   * @example
   * const tok = m.nn.embedding(idx, 50257, 768, { name: 'wte', init: weft.init.normal(0, 0.02) });
   */
  embedding(indices: Tensor, vocab: number, dim: number, options: EmbeddingOptions = {}): Tensor {
    const name = options.name ?? this.m.autoName('embedding');
    const table = this.m.scope(name, () => this.m.param('weight', [vocab, dim], options.init ?? normal(0, 1)));
    return this.m.op('embedding', [table, indices]);
  }

  /**
   * Layer normalisation over the last axis with a learned scale (ones) and shift (zeros).
   *
   * @example
   * const y = m.nn.layerNorm(x, { name: 'ln_f' });
   */
  layerNorm(x: Tensor, options: LayerNormOptions = {}): Tensor {
    const c = this.lastDim('layer_norm', x);
    const name = options.name ?? this.m.autoName('ln');
    const [w, b] = this.m.scope(name, () => [this.m.param('weight', [c], ones()), this.m.param('bias', [c], zeros())]);
    return this.m.op('layer_norm', [x, w as Tensor, b as Tensor], { eps: options.eps ?? 1e-5 });
  }

  /** @example const h = m.nn.relu(x); */
  relu(x: Tensor): Tensor {
    return x.relu();
  }

  /** GELU (tanh approximation). @example const h = m.nn.gelu(x); */
  gelu(x: Tensor): Tensor {
    return x.gelu();
  }

  /** Inverted dropout with probability `p`. @example const h = m.nn.dropout(x, 0.1); */
  dropout(x: Tensor, p: number): Tensor {
    return x.dropout(p);
  }

  /**
   * GPT-2 causal self-attention on `[B, T, C]`: `c_attn` (C -> 3C), causal multi-head
   * attention, `c_proj` (C -> C).
   *
   * @example
   * const a = m.nn.causalSelfAttention(x, { heads: 12, name: 'attn' });
   */
  causalSelfAttention(x: Tensor, options: AttentionOptions): Tensor {
    const c = this.lastDim('causal_attention', x);
    const name = options.name ?? this.m.autoName('attn');
    return this.m.scope(name, () => {
      const qkv = this.linear(x, 3 * c, { name: 'c_attn', ...(options.init && { init: options.init }) });
      const a = this.m.op('causal_attention', [qkv], { heads: options.heads });
      return this.linear(a, c, { name: 'c_proj', ...(options.projInit && { init: options.projInit }) });
    });
  }

  /**
   * GPT-2 MLP: `c_fc` (C -> hidden), GELU, `c_proj` (hidden -> C).
   *
   * @example
   * const y = m.nn.mlp(x, { name: 'mlp' });
   */
  mlp(x: Tensor, options: MlpOptions = {}): Tensor {
    const c = this.lastDim('mlp', x);
    const name = options.name ?? this.m.autoName('mlp');
    return this.m.scope(name, () => {
      const h = this.linear(x, options.hidden ?? 4 * c, { name: 'c_fc', ...(options.init && { init: options.init }) });
      return this.linear(h.gelu(), c, { name: 'c_proj', ...(options.projInit && { init: options.projInit }) });
    });
  }

  /**
   * A mixture of experts: a softmax router picks each token's top-k experts (with per-expert
   * capacity, see {@link MoeOptions.capacityFactor}), each expert is a GELU MLP, and the output
   * is the router-probability-weighted sum of the chosen experts'. Tokens are dispatched into
   * per-expert buffers of `capacity` slots (static shapes), the experts run on their slots only,
   * and the outputs are combined back. Inside `m.split({ deviceCount: N })` the experts are
   * divided among the devices (expert parallelism) and the router stays whole: each device
   * dispatches its N-th of the tokens, an all-to-all sends every slot to its expert's device and
   * a second all-to-all brings the outputs back (both differentiable), so training equals the
   * same layer on one device. The experts and the tokens per micro-batch must divide by N.
   *
   * @example
   * const { y, auxLoss } = m.nn.moe(h, { experts: 4, topK: 2 });
   * const loss = m.losses.softmaxCrossEntropy(m.nn.linear(h.add(y), classes), labels).add(auxLoss.scale(0.01));
   */
  moe(x: Tensor, options: MoeOptions): MoeOutput {
    const c = this.lastDim('moe', x);
    const e = options.experts;
    const k = options.topK ?? 1;
    const factor = options.capacityFactor ?? 1.25;
    if (!Number.isInteger(e) || e < 1 || !Number.isInteger(k) || k < 1 || k > e || !(factor > 0)) {
      throw new WeftShapeError(`moe: experts ${String(e)} and topK ${String(k)} must be integers with 1 <= topK <= experts, capacityFactor ${String(factor)} > 0`);
    }
    const hidden = options.hidden ?? 4 * c;
    const name = options.name ?? this.m.autoName('moe');
    return this.m.scope(name, () => {
      const flat = x.rank > 2 ? x.reshape([-1, c]) : x;
      const bound = 1 / Math.sqrt(c);
      const probs = flat.matmul(this.m.param('gate.weight', [c, e], uniform(-bound, bound))).softmax();
      const gates = this.m.op('moe_gate', [probs], { topK: k, capacityFactor: factor });
      // [E, S, C]: each expert's slots (S = min(tokens, capacity)).
      const slots = this.m.op('moe_dispatch', [flat, gates], { topK: k, capacityFactor: factor });
      const h = slots.matmul(this.m.param('w1', [e, c, hidden], normal(0, 0.02))).add(this.m.param('b1', [e, 1, hidden], zeros())).gelu();
      const ye = h.matmul(this.m.param('w2', [e, hidden, c], normal(0, 0.02))).add(this.m.param('b2', [e, 1, c], zeros()));
      const y = this.m.op('moe_combine', [ye, gates]);
      const first = this.m.op('moe_gate', [probs], { topK: 1, capacityFactor: e, weighted: false });
      const auxLoss = first.mean(0).mul(probs.mean(0)).sum().scale(e);
      return { y: x.rank > 2 ? y.reshape(x.shape) : y, auxLoss };
    });
  }

  /**
   * A GPT-2 (pre-layer-norm) transformer block:
   * `x + attn(ln_1(x))`, then `h + mlp(ln_2(h))`.
   *
   * @example
   * let h = tokens;
   * for (let i = 0; i < 4; i++) h = m.nn.transformerBlock(h, { heads: 4, name: `h.${i}` });
   */
  transformerBlock(x: Tensor, options: BlockOptions): Tensor {
    const name = options.name ?? `h.${this.blocks++}`;
    const inits = { ...(options.init && { init: options.init }), ...(options.projInit && { projInit: options.projInit }) };
    const eps = options.eps ?? 1e-5;
    return this.m.scope(name, () => {
      const a = this.causalSelfAttention(this.layerNorm(x, { name: 'ln_1', eps }), { heads: options.heads, name: 'attn', ...inits });
      const h = x.add(a);
      const hidden = options.hidden ?? 4 * this.lastDim('mlp', h);
      return h.add(this.mlp(this.layerNorm(h, { name: 'ln_2', eps }), { hidden, name: 'mlp', ...inits }));
    });
  }
}
