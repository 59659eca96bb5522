/**
 * The built-in GPT-2: pre-LN blocks, GELU (tanh), learned positions, tied embeddings, biases
 * everywhere, with Hugging Face GPT-2's parameter names and layouts so that a real GPT-2
 * `model.safetensors` loads into it.
 */
import * as weft from '../index.js';
import { call, native } from '../native.js';
import { inStage, stageSizes } from './stages.js';

/** The shape of a GPT-2 model. */
export interface GptOptions {
  /** Transformer blocks (`h.0` ... `h.{layers-1}`). */
  readonly layers: number;
  readonly heads: number;
  /** Embedding width C (a multiple of `heads`). */
  readonly dim: number;
  /** Context length T: inputs are `[B, T]`. */
  readonly seq: number;
  /** Vocabulary size V. */
  readonly vocab: number;
  /** Layer-norm epsilon (default 1e-5, GPT-2's). */
  readonly eps?: number;
  /** Dropout after the embeddings and on each residual branch (default 0). */
  readonly dropout?: number;
  /** Also output the `[B*T, V]` logits as `logits` (for sampling). */
  readonly outputLogits?: boolean;
  /**
   * Pipeline stages (default 1): the blocks cut as evenly as possible into this many
   * `m.replicate({ deviceCount: 1, name: 'stage<i>' })` scopes, the embeddings with the first
   * stage, `ln_f`, the tied head and the loss with the last. Parameter names do not change.
   */
  readonly stages?: number;
  /**
   * Tensor-parallel devices per stage (default 1): every stage (the whole model with one stage)
   * is an `m.split({ deviceCount: tp })` scope, so attention heads, `c_attn`/`c_fc`
   * (column-parallel) and `c_proj` (row-parallel) are divided among tp devices. `heads` and
   * `4 * dim` must divide by it.
   */
  readonly tp?: number;
}

/**
 * The build function of a GPT-2 model: inputs `idx` and `targets` (i32 `[B, T]`), returns the
 * mean next-token cross-entropy.
 *
 * @example
 * const model = weft.model(weft.config(), gptBuild({ layers: 2, heads: 2, dim: 64, seq: 32, vocab: 256 }));
 */
export function gptBuild(opts: GptOptions): weft.BuildFn {
  checkGpt(opts);
  const stages = opts.stages ?? 1;
  const sizes = stageSizes('gpt', opts.layers, stages);
  const starts = sizes.map((_, s) => sizes.slice(0, s).reduce((a, b) => a + b, 0));
  const last = stages - 1;
  // Each input is made in the stage that reads it (idx: the first, targets: the last), so that
  // only f32 activations cross stages.
  const tp = opts.tp ?? 1;
  const build = (m: weft.ModelBuilder): weft.Tensor => {
    const blocks = (s: number, x: weft.Tensor): weft.Tensor => {
      const first = starts[s] as number;
      // Each block's output is a recomputation checkpoint (used by gradient_checkpoint.type='collection').
      for (let i = first; i < first + (sizes[s] as number); i++) x = m.checkpoint(block(m, x, i, opts));
      return x;
    };
    const [wte, h] = inStage(m, 0, stages, () => {
      const idx = m.input('idx', [null, opts.seq], 'i32');
      const wte = m.param('wte.weight', [opts.vocab, opts.dim], weft.init.normal(0, 0.02));
      const wpe = m.param('wpe.weight', [opts.seq, opts.dim], weft.init.normal(0, 0.02));
      // Inputs always have T = seq, so wpe[0:T] is all of wpe: it broadcasts over the batch.
      const x = dropout(m.op('embedding', [wte, idx]).add(wpe), opts.dropout);
      return [wte, blocks(0, x)] as const;
    }, tp);
    let x = h;
    for (let s = 1; s < last; s++) x = inStage(m, s, stages, () => blocks(s, x), tp);
    // One stage: the head follows the blocks unscoped; several: it joins the last stage's blocks.
    return inStage(m, last, stages, () => {
      const y = last > 0 ? blocks(last, x) : x;
      return head(m, y, wte, m.input('targets', [null, opts.seq], 'i32'), opts);
    }, tp);
  };
  // One stage with tensor parallelism: the whole model is one split scope.
  return (m) => (tp > 1 && stages === 1 ? m.split({ deviceCount: tp, name: 'tp' }, () => build(m)) : build(m));
}

/** `ln_f`, the output projection tied to `wte`, and the mean next-token cross-entropy. */
function head(m: weft.ModelBuilder, x: weft.Tensor, wte: weft.Tensor, targets: weft.Tensor, opts: GptOptions): weft.Tensor {
  const h = m.nn.layerNorm(x, { name: 'ln_f', eps: opts.eps ?? 1e-5 });
  const logits = h.reshape([-1, opts.dim]).matmul(wte, { transB: true });
  if (opts.outputLogits) m.output('logits', logits);
  return m.losses.softmaxCrossEntropy(logits, targets);
}

/**
 * A GPT-2 model under `cfg` (default: an empty config).
 *
 * @example
 * const trainer = await weft.compile(gpt({ layers: 4, heads: 4, dim: 256, seq: 128, vocab: 4096 }), { batch: 8 });
 */
export function gpt(opts: GptOptions, cfg: weft.Config = weft.config()): weft.Model {
  return weft.model(cfg, gptBuild(opts));
}

/**
 * The shape the `config.json` of a Hugging Face GPT-2 `save_pretrained` directory describes
 * (`seq` is its `n_positions`); undefined when `path` is not a directory with a `config.json`. A value weft does not implement (another activation, ...) throws
 * `WeftConfigError` naming it.
 *
 * @example
 * const shape = gptOptionsFromHf('gpt2/'); // { layers: 12, heads: 12, dim: 768, seq: 1024, vocab: 50257, eps: 1e-5 }
 */
export function gptOptionsFromHf(path: string): Required<Pick<GptOptions, 'layers' | 'heads' | 'dim' | 'seq' | 'vocab' | 'eps'>> | undefined {
  const text = call(() => native().readHfConfig(path));
  if (text === null) return undefined;
  const s = JSON.parse(text) as { layers: number; heads: number; dim: number; vocab: number; positions: number; eps: number };
  return { layers: s.layers, heads: s.heads, dim: s.dim, seq: s.positions, vocab: s.vocab, eps: s.eps };
}

/**
 * The number of parameters of a GPT-2 of this shape (tied embeddings counted once).
 *
 * @example
 * gptParameterCount({ layers: 4, heads: 4, dim: 256, seq: 128, vocab: 4096 }) // 4240896
 */
export function gptParameterCount(opts: GptOptions): number {
  const c = opts.dim;
  const perBlock = 2 * c + (3 * c * c + 3 * c) + (c * c + c) + 2 * c + (4 * c * c + 4 * c) + (4 * c * c + c);
  return opts.vocab * c + opts.seq * c + opts.layers * perBlock + 2 * c;
}

/** Block `h.{i}`: `x + attn(ln_1(x))`, then `h + mlp(ln_2(h))`. */
function block(m: weft.ModelBuilder, x: weft.Tensor, i: number, opts: GptOptions): weft.Tensor {
  return m.scope(`h.${i}`, () => {
    const a = attention(m, m.nn.layerNorm(x, { name: 'ln_1', eps: opts.eps ?? 1e-5 }), opts);
    const h = x.add(dropout(a, opts.dropout));
    const f = mlp(m, m.nn.layerNorm(h, { name: 'ln_2', eps: opts.eps ?? 1e-5 }), opts);
    return h.add(dropout(f, opts.dropout));
  });
}

/** `attn.c_attn` (C -> 3C, packed q|k|v), causal multi-head attention, `attn.c_proj` (C -> C). */
function attention(m: weft.ModelBuilder, x: weft.Tensor, opts: GptOptions): weft.Tensor {
  return m.scope('attn', () => {
    const qkv = linear(m, x, 3 * opts.dim, 'c_attn', 0.02);
    const y = m.op('causal_attention', [qkv], { heads: opts.heads });
    return linear(m, y, opts.dim, 'c_proj', projStd(opts));
  });
}

/** `mlp.c_fc` (C -> 4C), GELU (tanh), `mlp.c_proj` (4C -> C). */
function mlp(m: weft.ModelBuilder, x: weft.Tensor, opts: GptOptions): weft.Tensor {
  return m.scope('mlp', () => {
    const h = linear(m, x, 4 * opts.dim, 'c_fc', 0.02).gelu();
    return linear(m, h, opts.dim, 'c_proj', projStd(opts));
  });
}

/** A Conv1D-layout linear layer with GPT-2's init: weight normal(0, std), bias zero. */
function linear(m: weft.ModelBuilder, x: weft.Tensor, out: number, name: string, std: number): weft.Tensor {
  return m.nn.linear(x, out, { name, init: weft.init.normal(0, std), biasInit: weft.init.zeros() });
}

/** GPT-2 scales the residual output projections by 1/sqrt(2 * layers). */
function projStd(opts: GptOptions): number {
  return 0.02 / Math.sqrt(2 * opts.layers);
}

function dropout(x: weft.Tensor, p: number | undefined): weft.Tensor {
  return p !== undefined && p > 0 ? x.dropout(p) : x;
}

function checkGpt(opts: GptOptions): void {
  for (const key of ['layers', 'heads', 'dim', 'seq', 'vocab'] as const) {
    const v = opts[key];
    if (!Number.isInteger(v) || v < 1) throw new weft.WeftShapeError(`gpt: ${key} must be a positive integer, got ${String(v)}`);
  }
  const tp = opts.tp ?? 1;
  if (!Number.isInteger(tp) || tp < 1) throw new weft.WeftShapeError(`gpt: tp must be a positive integer, got ${String(tp)}`);
  if (opts.dim % opts.heads !== 0) {
    throw new weft.WeftShapeError(`gpt: dim ${opts.dim} must be a multiple of heads ${opts.heads}`);
  }
}
