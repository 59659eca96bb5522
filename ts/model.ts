/**
 * `weft.model(cfg, (m) => loss)`: write an ordinary single-device model with the builder `m`;
 * strategy scopes (`m.replicate`, `m.split`) mark the parts weft parallelises.
 */
import { Config, config as makeConfig } from './config.js';
import { WeftConfigError, WeftShapeError, WeftUnsupportedError } from './errors.js';
import type { Init } from './init.js';
import { Losses } from './losses.js';
import { type NativeModel, type TensorInfo, call, native } from './native.js';
import { Nn } from './nn.js';
import { type DType, type OpAttrs, type OpSink, type Shape, Tensor } from './tensor.js';

/** Options of a strategy scope. */
export interface StrategyOptions {
  /** Devices this scope spans (default 1). Values above 1 land with the parallel-training issue. */
  readonly deviceCount?: number;
  /** The TaskGraph's name (default `replicate_N` / `split_N`). */
  readonly name?: string;
}

/** A strategy for {@link ModelBuilder.setDefaultStrategy}. */
export interface DefaultStrategy extends StrategyOptions {
  readonly kind: 'replicate' | 'split';
}

/** A TaskGraph recorded by a strategy scope. */
export interface TaskGraphInfo {
  readonly index: number;
  readonly name: string;
  readonly strategy: 'replicate' | 'split';
  readonly deviceCount: number;
}

/** A named tensor of a built model (an input or an output). */
export interface TensorSpec {
  readonly name: string;
  readonly shape: Shape;
  readonly dims: readonly string[];
  readonly dtype: DType;
}

/** A parameter of a built model. */
export interface ParameterSpec {
  readonly name: string;
  readonly shape: readonly number[];
}

/** The function that builds a model: it receives the builder and returns the scalar loss. */
export type BuildFn = (m: ModelBuilder) => Tensor;

/** The initialiser as the core reads it. */
function initJson(init: Init): string {
  if (typeof init !== 'object' || init === null || typeof init.kind !== 'string') {
    throw new WeftShapeError(`parameter init must be one of weft.init.*, got ${JSON.stringify(init)}`);
  }
  return JSON.stringify(init);
}

/** Largest device count the strategy scopes accept in this build. */
const MAX_SCOPE_DEVICES = 1;

function info(t: TensorInfo): { id: number; shape: Shape; dims: string[]; dtype: DType } {
  return { id: t.id, shape: t.shape.map((d) => d ?? null), dims: t.dims, dtype: t.dtype as DType };
}

function checkShape(what: string, shape: Shape): void {
  if (!Array.isArray(shape)) throw new WeftShapeError(`${what}: shape must be an array, got ${String(shape)}`);
  for (const d of shape) {
    if (d !== null && !(Number.isInteger(d) && d >= 1)) {
      throw new WeftShapeError(`${what}: dimensions must be positive integers or null (batch), got [${shape.map(String).join(', ')}]`);
    }
  }
}

/** The model builder `m` handed to the build function. */
export class ModelBuilder implements OpSink {
  /** Neural-network layers (`m.nn.linear`, `m.nn.transformerBlock`, ...). */
  readonly nn: Nn;
  /** Loss functions (`m.losses.softmaxCrossEntropy`). */
  readonly losses: Losses;
  /** The config the model is built under. */
  readonly config: Config;

  /** @internal */
  readonly native: NativeModel;
  private readonly prefix: string[] = [];
  private readonly counters = new Map<string, number>();
  private readonly inputList: TensorSpec[] = [];
  private readonly outputList: TensorSpec[] = [];
  private readonly paramList: ParameterSpec[] = [];
  private readonly taskgraphList: TaskGraphInfo[] = [
    { index: 0, name: 'default', strategy: 'replicate', deviceCount: 1 },
  ];
  private inScope = false;
  private dropouts = 0;

  /** @internal */
  constructor(cfg: Config) {
    this.config = cfg;
    this.native = call(() => new (native().NativeModel)());
    this.nn = new Nn(this);
    this.losses = new Losses(this);
  }

  /** @internal Adds an op by its core name. */
  op(kind: string, inputs: readonly Tensor[], attrs: OpAttrs = {}): Tensor {
    for (const t of inputs) {
      if (!(t instanceof Tensor) || t.sink !== this) {
        throw new WeftShapeError(`${kind}: every input must be a tensor of this model`);
      }
    }
    const ids = inputs.map((t) => t.id);
    return new Tensor(this, info(call(() => this.native.op(kind, ids, JSON.stringify(attrs)))));
  }

  /** @internal A fresh seed for the next dropout site. */
  dropoutSeed(): number {
    return this.dropouts++;
  }

  /**
   * A constant tensor filled with `value`.
   *
   * @example
   * const one = m.constant(1);            // scalar
   * const bias = m.constant(0.5, [4]);
   */
  constant(value: number, shape: Shape = []): Tensor {
    checkShape('constant', shape);
    return this.op('fill', [], { value, shape: [...shape] });
  }

  /**
   * A batch input fed by `trainer.step()`. `null` marks the batch dimension.
   *
   * @example
   * const x = m.input('x', [null, 784]);
   * const y = m.input('y', [null], 'i32');
   */
  input(name: string, shape: Shape, dtype: DType = 'f32'): Tensor {
    checkShape(`input '${name}'`, shape);
    const t = new Tensor(this, info(call(() => this.native.input(name, [...shape], dtype))));
    this.inputList.push({ name, shape: t.shape, dims: t.dims, dtype: t.dtype });
    return t;
  }

  /**
   * A trainable f32 parameter, named under the current {@link scope}.
   *
   * @example
   * const w = m.param('w', [784, 10], weft.init.normal(0, 0.02));
   */
  param(name: string, shape: readonly number[], init: Init): Tensor {
    const full = this.scopedName(name);
    checkShape(`parameter '${full}'`, shape);
    if (shape.some((d) => d === null)) {
      throw new WeftShapeError(`parameter '${full}': shape [${shape.map(String).join(', ')}] must not depend on the batch`);
    }
    const t = new Tensor(this, info(call(() => this.native.parameter(full, [...shape], initJson(init)))));
    this.paramList.push({ name: full, shape: Object.freeze([...shape]) });
    return t;
  }

  /**
   * Names `t` as a step output: `trainer.step()` returns its value.
   *
   * @example
   * m.output('logits', logits);
   */
  output(name: string, t: Tensor): void {
    if (!(t instanceof Tensor) || t.sink !== this) {
      throw new WeftShapeError(`output '${name}': expected a tensor of this model`);
    }
    call(() => this.native.output(name, t.id));
    this.outputList.push({ name, shape: t.shape, dims: t.dims, dtype: t.dtype });
  }

  /**
   * Prefixes the names of parameters created inside `fn` with `name.`.
   *
   * @example
   * m.scope('h.0', () => m.nn.linear(x, 64, { name: 'attn.c_attn' })); // h.0.attn.c_attn.weight
   */
  scope<T>(name: string, fn: () => T): T {
    this.prefix.push(name);
    try {
      return fn();
    } finally {
      this.prefix.pop();
    }
  }

  /**
   * Data parallelism scope (EPL's `replicate`): the ops built in `fn` form one TaskGraph that is
   * replicated over `deviceCount` devices.
   *
   * @example
   * const h = m.replicate({ deviceCount: 1, name: 'stage0' }, () => m.nn.linear(x, 1024).relu());
   */
  replicate<T>(options: StrategyOptions, fn: () => T): T {
    return this.strategyScope('replicate', options, fn);
  }

  /**
   * Tensor parallelism scope (EPL's `split`): the ops built in `fn` are split over `deviceCount`
   * devices.
   *
   * @example
   * const logits = m.split({ deviceCount: 1 }, () => m.nn.linear(h, vocab));
   */
  split<T>(options: StrategyOptions, fn: () => T): T {
    return this.strategyScope('split', options, fn);
  }

  /**
   * The strategy of ops built outside any scope from here on (EPL's `set_default_strategy`).
   *
   * @example
   * m.setDefaultStrategy({ kind: 'replicate', deviceCount: 1 });
   */
  setDefaultStrategy(strategy: DefaultStrategy): void {
    if (this.inScope) throw new WeftUnsupportedError('setDefaultStrategy inside a strategy scope is not supported');
    this.openTaskGraph(strategy.kind, strategy);
  }

  private openTaskGraph(kind: 'replicate' | 'split', options: StrategyOptions): TaskGraphInfo {
    const deviceCount = options.deviceCount ?? 1;
    const name = options.name ?? `${kind}_${this.taskgraphList.length}`;
    if (!Number.isInteger(deviceCount) || deviceCount < 1) {
      throw new WeftShapeError(`${kind} '${name}': deviceCount must be a positive integer, got ${deviceCount}`);
    }
    if (deviceCount > MAX_SCOPE_DEVICES) {
      throw new WeftUnsupportedError(
        `${kind} '${name}' with deviceCount ${deviceCount} is not yet supported: parallel strategy scopes land with the parallel-training issue; use deviceCount 1`,
      );
    }
    const index = call(() => this.native.openTaskgraph(name, kind, deviceCount));
    const tg = Object.freeze({ index, name, strategy: kind, deviceCount });
    this.taskgraphList.push(tg);
    return tg;
  }

  private strategyScope<T>(kind: 'replicate' | 'split', options: StrategyOptions, fn: () => T): T {
    if (this.inScope) throw new WeftUnsupportedError(`nesting strategy scopes (${kind} inside another scope) is not supported`);
    const previous = call(() => this.native.currentTaskgraph());
    this.openTaskGraph(kind, options);
    this.inScope = true;
    try {
      return fn();
    } finally {
      this.inScope = false;
      call(() => this.native.setTaskgraph(previous));
    }
  }

  /** @internal `name` under the current scope prefix. */
  scopedName(name: string): string {
    if (typeof name !== 'string' || name === '') throw new WeftShapeError('names must be non-empty strings');
    return [...this.prefix, name].join('.');
  }

  /** @internal A fresh local name `kind_N` for an unnamed layer. */
  autoName(kind: string): string {
    const key = `${this.prefix.join('.')}/${kind}`;
    const n = this.counters.get(key) ?? 0;
    this.counters.set(key, n + 1);
    return `${kind}_${n}`;
  }

  /** @internal */
  summary(): { inputs: TensorSpec[]; outputs: TensorSpec[]; parameters: ParameterSpec[]; taskgraphs: TaskGraphInfo[] } {
    return {
      inputs: [...this.inputList],
      outputs: [...this.outputList],
      parameters: [...this.paramList],
      taskgraphs: [...this.taskgraphList],
    };
  }
}

/** A built model: its inputs, outputs, parameters and TaskGraphs. Compile it with `weft.compile`. */
export class Model {
  readonly config: Config;
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  readonly parameters: readonly ParameterSpec[];
  readonly taskgraphs: readonly TaskGraphInfo[];
  /** The loss tensor's node id. */
  readonly lossId: number;
  private readonly build: BuildFn;
  private pending: ModelBuilder | undefined;
  private readonly graphText: string;

  /** @internal Use {@link model}. */
  constructor(cfg: Config, build: BuildFn) {
    this.config = cfg;
    this.build = build;
    const { builder, loss } = Model.run(cfg, build);
    const s = builder.summary();
    this.inputs = Object.freeze(s.inputs);
    this.outputs = Object.freeze(s.outputs);
    this.parameters = Object.freeze(s.parameters);
    this.taskgraphs = Object.freeze(s.taskgraphs);
    this.lossId = loss.id;
    this.graphText = call(() => builder.native.text());
    this.pending = builder;
  }

  private static run(cfg: Config, build: BuildFn): { builder: ModelBuilder; loss: Tensor } {
    const builder = new ModelBuilder(cfg);
    const loss: unknown = build(builder);
    if (!(loss instanceof Tensor) || loss.sink !== builder) {
      throw new WeftShapeError('loss: the model function must return the loss tensor it built');
    }
    if (loss.dtype !== 'f32' || loss.rank !== 0) {
      throw new WeftShapeError(`loss: the loss must be an f32 scalar, got ${loss.dtype}[${loss.dims.join(',')}] (reduce it with .mean())`);
    }
    return { builder, loss };
  }

  /** @internal A native graph builder holding this model, for one compile (rebuilt after the first). */
  takeNative(): NativeModel {
    const builder = this.pending ?? Model.run(this.config, this.build).builder;
    this.pending = undefined;
    return builder.native;
  }

  /**
   * The graph's stable text form (one line per node with dtype, shape and TaskGraph).
   *
   * @example
   * console.log(model.text());
   */
  text(): string {
    return this.graphText;
  }
}

/**
 * Builds a model. `build` receives the builder `m` and returns the scalar loss; shape errors
 * throw here, naming the op and the shapes.
 *
 * @example
 * const model = weft.model(weft.config(), (m) => {
 *   const x = m.input('x', [null, 784]);
 *   const y = m.input('y', [null], 'i32');
 *   const logits = m.nn.linear(m.nn.linear(x, 128).relu(), 10);
 *   return m.losses.softmaxCrossEntropy(logits, y);
 * });
 */
export function model(cfg: Config, build: BuildFn): Model;
export function model(build: BuildFn): Model;
export function model(a: Config | BuildFn, b?: BuildFn): Model {
  if (typeof a === 'function') return new Model(makeConfig(), a);
  if (!(a instanceof Config) || typeof b !== 'function') {
    throw new WeftConfigError('weft.model(cfg, (m) => loss): expected a Config and a build function');
  }
  return new Model(a, b);
}
