/**
 * `Tensor`: a typed node of a model graph under construction. Methods add ops; every op is
 * shape-checked by the core when it is added, so a mistake throws where it is written, naming
 * the op and the shapes.
 */
import { WeftShapeError } from './errors.js';

/** Element types. */
export type DType = 'f32' | 'i32';

/** A dimension: a fixed size, or `null` for the batch dimension. */
export type Dim = number | null;

/** A shape as written in the API: `[null, 784]` is a batch of 784-vectors. */
export type Shape = readonly Dim[];

/** Attribute values of an op, as sent to the core. */
export type OpAttrs = Readonly<Record<string, number | boolean | readonly (number | null)[]>>;

/** @internal What a tensor needs from the model that owns it. */
export interface OpSink {
  op(kind: string, inputs: readonly Tensor[], attrs?: OpAttrs): Tensor;
  constant(value: number, shape: Shape): Tensor;
  dropoutSeed(): number;
}

/** Options of {@link Tensor.matmul}. */
export interface MatmulOptions {
  /** Use the transpose of this tensor's last two axes. */
  readonly transA?: boolean;
  /** Use the transpose of the other tensor's last two axes. */
  readonly transB?: boolean;
}

/** Options of the reductions. */
export interface ReduceOptions {
  /** Keep the reduced axis with size 1. */
  readonly keepdim?: boolean;
}

/** A node of a model under construction. Create tensors through the model builder `m`. */
export class Tensor {
  /** @internal */
  readonly sink: OpSink;
  /** The node id in the model graph. */
  readonly id: number;
  /** The shape; `null` marks batch dimensions (see {@link dims} for `B` multiples). */
  readonly shape: Shape;
  /** The dimensions as text: `"B"`, `"2B"`, `"128"`. */
  readonly dims: readonly string[];
  readonly dtype: DType;

  /** @internal */
  constructor(sink: OpSink, info: { id: number; shape: Shape; dims: readonly string[]; dtype: DType }) {
    this.sink = sink;
    this.id = info.id;
    this.shape = Object.freeze([...info.shape]);
    this.dims = Object.freeze([...info.dims]);
    this.dtype = info.dtype;
    Object.freeze(this);
  }

  /** Number of axes. */
  get rank(): number {
    return this.shape.length;
  }

  private operand(other: Tensor | number): Tensor {
    if (typeof other === 'number') return this.sink.constant(other, []);
    if (other.sink !== this.sink) {
      throw new WeftShapeError('tensors from different models cannot be combined');
    }
    return other;
  }

  private unary(kind: string): Tensor {
    return this.sink.op(kind, [this]);
  }

  /**
   * Element-wise sum with numpy broadcasting.
   *
   * @example
   * const y = x.add(bias); const z = x.add(1);
   */
  add(other: Tensor | number): Tensor {
    return this.sink.op('add', [this, this.operand(other)]);
  }

  /**
   * Element-wise difference with broadcasting.
   *
   * @example
   * const d = pred.sub(target);
   */
  sub(other: Tensor | number): Tensor {
    return typeof other === 'number' ? this.add(-other) : this.sink.op('sub', [this, this.operand(other)]);
  }

  /**
   * Element-wise product with broadcasting (a number scales).
   *
   * @example
   * const y = x.mul(gate); const half = x.mul(0.5);
   */
  mul(other: Tensor | number): Tensor {
    return typeof other === 'number' ? this.scale(other) : this.sink.op('mul', [this, this.operand(other)]);
  }

  /**
   * Element-wise quotient with broadcasting.
   *
   * @example
   * const y = x.div(norm); const avg = total.div(4);
   */
  div(other: Tensor | number): Tensor {
    return typeof other === 'number' ? this.scale(1 / other) : this.sink.op('div', [this, this.operand(other)]);
  }

  /**
   * Multiplies every element by a constant.
   *
   * @example
   * const y = x.scale(0.125);
   */
  scale(factor: number): Tensor {
    return this.sink.op('scale', [this], { factor });
  }

  /**
   * Batched matrix product over the last two axes; a rank-2 operand is shared across the
   * other's leading axes.
   *
   * @example
   * const y = x.matmul(w);                       // [B, K] x [K, N] -> [B, N]
   * const s = q.matmul(k, { transB: true });     // [.., T, D] x [.., T, D]^T
   */
  matmul(other: Tensor, options: MatmulOptions = {}): Tensor {
    const attrs = { transA: options.transA ?? false, transB: options.transB ?? false };
    return this.sink.op('matmul', [this, this.operand(other)], attrs);
  }

  /** max(x, 0). @example const h = x.relu(); */
  relu(): Tensor {
    return this.unary('relu');
  }

  /** GELU, tanh approximation (GPT-2's). @example const h = x.gelu(); */
  gelu(): Tensor {
    return this.unary('gelu');
  }

  /** @example const h = x.tanh(); */
  tanh(): Tensor {
    return this.unary('tanh');
  }

  /** @example const e = x.exp(); */
  exp(): Tensor {
    return this.unary('exp');
  }

  /** Natural logarithm. @example const l = p.log(); */
  log(): Tensor {
    return this.unary('log');
  }

  /** @example const r = v.sqrt(); */
  sqrt(): Tensor {
    return this.unary('sqrt');
  }

  /** @example const n = x.neg(); */
  neg(): Tensor {
    return this.unary('neg');
  }

  /**
   * Same elements, new shape. One `-1` takes whatever is left (including the batch); `null`
   * is the batch dimension itself.
   *
   * @example
   * const flat = logits.reshape([-1, vocab]);   // [B, T, V] -> [B*T, V]
   * const img = x.reshape([null, 28, 28]);
   */
  reshape(shape: readonly number[] | Shape): Tensor {
    return this.sink.op('reshape', [this], { shape: [...shape] });
  }

  /**
   * Reorders axes: output axis i is input axis `perm[i]` (negative axes count from the end).
   *
   * @example
   * const t = x.permute([0, 2, 1]);
   */
  permute(perm: readonly number[]): Tensor {
    return this.sink.op('permute', [this], { perm: [...perm] });
  }

  /**
   * Swaps two axes (default: the last two).
   *
   * @example
   * const wt = w.transpose();
   */
  transpose(a = -2, b = -1): Tensor {
    const norm = (x: number): number => (x < 0 ? x + this.rank : x);
    const perm = this.shape.map((_, i) => (i === norm(a) ? norm(b) : i === norm(b) ? norm(a) : i));
    return this.permute(perm);
  }

  /**
   * `x[.., start:end, ..]` along `axis` (a fixed dimension).
   *
   * @example
   * const firstHalf = x.slice(-1, 0, 64);
   */
  slice(axis: number, start: number, end: number): Tensor {
    return this.sink.op('slice', [this], { axis, start, end });
  }

  /**
   * Splits this tensor along `axis` into pieces of the given sizes (which must add up to the
   * axis length), each a `slice`, so the gradient of every piece flows back to its range.
   *
   * @example
   * const [q, k, v] = qkv.split([c, c, c], -1);
   */
  split(sizes: readonly number[], axis: number): Tensor[] {
    const a = axis < 0 ? axis + this.shape.length : axis;
    const dim = this.shape[a];
    const total = sizes.reduce((x, y) => x + y, 0);
    if (typeof dim !== 'number' || total !== dim) {
      throw new WeftShapeError(`split: sizes [${sizes.join(', ')}] (sum ${total}) do not cover axis ${axis} of shape [${this.dims.join(',')}]`);
    }
    const pieces: Tensor[] = [];
    let start = 0;
    for (const size of sizes) {
      pieces.push(this.slice(axis, start, start + size));
      start += size;
    }
    return pieces;
  }

  /**
   * Concatenates this tensor and `others` along `axis`.
   *
   * @example
   * const both = a.concat([b], -1);
   */
  concat(others: readonly Tensor[], axis: number): Tensor {
    return this.sink.op('concat', [this, ...others.map((t) => this.operand(t))], { axis });
  }

  private reduce(kind: string, axis: number | undefined, options: ReduceOptions): Tensor {
    if (axis !== undefined) return this.sink.op(kind, [this], { axis, keepdim: options.keepdim ?? false });
    // Over every axis: one reduction per axis (equal-size groups, so a mean of means is the mean).
    let t: Tensor = this;
    const keepdim = options.keepdim ?? false;
    for (let i = 0; i < this.rank; i++) t = this.sink.op(kind, [t], { axis: keepdim ? i : 0, keepdim });
    return t;
  }

  /**
   * Sum over `axis`, or over every axis when it is omitted.
   *
   * @example
   * const rowSums = x.sum(-1); const total = x.sum();
   */
  sum(axis?: number, options: ReduceOptions = {}): Tensor {
    return this.reduce('sum', axis, options);
  }

  /**
   * Mean over `axis`, or over every axis when it is omitted.
   *
   * @example
   * const loss = perRow.mean();
   */
  mean(axis?: number, options: ReduceOptions = {}): Tensor {
    return this.reduce('mean', axis, options);
  }

  /**
   * Maximum over `axis`, or over every axis when it is omitted.
   *
   * @example
   * const m = scores.max(-1, { keepdim: true });
   */
  max(axis?: number, options: ReduceOptions = {}): Tensor {
    return this.reduce('max', axis, options);
  }

  /**
   * Softmax over the last axis.
   *
   * @example
   * const probs = logits.softmax();
   */
  softmax(): Tensor {
    return this.unary('softmax');
  }

  /**
   * Inverted dropout with drop probability `p` during training; the mask is a pure function
   * of the run seed, the step and the element, so recomputation reproduces it.
   *
   * @example
   * const h = x.dropout(0.1);
   */
  dropout(p: number): Tensor {
    if (!(p >= 0 && p < 1)) throw new WeftShapeError(`dropout: p must be in [0, 1), got ${p}`);
    return this.sink.op('dropout', [this], { p, seed: this.sink.dropoutSeed() });
  }

  /** `Tensor(f32[B,784])`. */
  toString(): string {
    return `Tensor(${this.dtype}[${this.dims.join(',')}])`;
  }
}
