/**
 * `weft.model(cfg, (m) => loss)`: write an ordinary single-device model with the builder `m`;
 * strategy scopes (`m.replicate`, `m.split`) mark the parts weft parallelises.
 */
import { Config, config as makeConfig } from './config.js';
import { WeftConfigError, WeftDTypeError, WeftShapeError } from './errors.js';
import type { Init } from './init.js';
import { Losses } from './losses.js';
import { Metrics } from './metrics.js';
import { type NativeModel, type TensorInfo, call, native } from './native.js';
import { Nn } from './nn.js';
import { type SummaryReduce, type SummarySpec, checkSummary } from './summaries.js';
import { type DType, type OpAttrs, type OpSink, type Shape, Tensor } from './tensor.js';

/** Options of a strategy scope. */
export interface StrategyOptions {
  /**
   * Devices per replica of this TaskGraph (default 1). Replicas come from the devices left over:
   * `cpu(N)` with S stages runs N / S replicas. Values above 1 need tensor parallelism inside the
   * TaskGraph, which is not in this build: they are refused with a `WeftUnsupportedError`.
   */
  readonly deviceCount?: number;
  /** The TaskGraph's name (default EPL's `Replicate` / `Split`). */
  readonly name?: string;
}

/** A strategy value, made by {@link replicate} / {@link split}, for {@link ModelBuilder.setDefaultStrategy}. */
export interface Strategy extends StrategyOptions {
  readonly kind: 'replicate' | 'split';
}

/** The former name of {@link Strategy}. */
export type DefaultStrategy = Strategy;

/**
 * EPL's `replicate(device_count)` as a value, for {@link ModelBuilder.setDefaultStrategy}.
 *
 * @example
 * m.setDefaultStrategy(weft.replicate({ deviceCount: 1, name: 'stage1' }));
 */
export function replicate(options: StrategyOptions = {}): Strategy {
  return Object.freeze({ ...options, kind: 'replicate' as const });
}

/**
 * EPL's `split(device_count)` as a value. Only `replicate` may be the default strategy, so
 * passing this to `setDefaultStrategy` is an error; it exists for symmetry with EPL.
 *
 * @example
 * const s = weft.split({ deviceCount: 1, name: 'head' });
 */
export function split(options: StrategyOptions = {}): Strategy {
  return Object.freeze({ ...options, kind: 'split' as const });
}

/** A TaskGraph of a built model: one per strategy scope or default strategy (EPL's TaskGraph). */
export interface TaskGraphInfo {
  readonly index: number;
  readonly name: string;
  readonly strategy: 'replicate' | 'split';
  readonly deviceCount: number;
  /** Nodes built in it (parameters and inputs included). */
  readonly nodes: number;
}

/**
 * The collection keys (EPL's `GraphKeys`): a tensor added to a collection comes back from
 * `trainer.step()` merged over micro-batches and replicas. `*_MEAN` averages, `*_SUM` adds,
 * `*_CONCAT` concatenates along axis 0 (batch-row order). `GLOBAL_*` merges across every replica;
 * `LOCAL_*` across this process's replicas only, which in a single process is all of them.
 * The EPL spellings (`GLOBAL_MEAN_OBJECTS`, ...) are aliases.
 *
 * @example
 * m.addToCollection(loss, weft.GraphKeys.GLOBAL_MEAN, 'loss');
 * // after a step: result.collections.global_mean?.loss
 */
export const GraphKeys = Object.freeze({
  GLOBAL_MEAN: 'global_mean',
  GLOBAL_SUM: 'global_sum',
  GLOBAL_CONCAT: 'global_concat',
  LOCAL_MEAN: 'local_mean',
  LOCAL_SUM: 'local_sum',
  LOCAL_CONCAT: 'local_concat',
  GLOBAL_MEAN_OBJECTS: 'global_mean',
  GLOBAL_SUM_OBJECTS: 'global_sum',
  GLOBAL_CONCAT_OBJECTS: 'global_concat',
  LOCAL_MEAN_OBJECTS: 'local_mean',
  LOCAL_SUM_OBJECTS: 'local_sum',
  LOCAL_CONCAT_OBJECTS: 'local_concat',
} as const);

/** A collection key: `'global_mean'`, `'global_sum'`, `'global_concat'`, `'local_mean'`, `'local_sum'`, `'local_concat'`. */
export type GraphKey = (typeof GraphKeys)[keyof typeof GraphKeys];

const GRAPH_KEYS: readonly GraphKey[] = ['global_mean', 'global_sum', 'global_concat', 'local_mean', 'local_sum', 'local_concat'];

/** A tensor registered with {@link ModelBuilder.addToCollection}. */
export interface CollectionSpec {
  readonly key: GraphKey;
  readonly name: string;
  /** The step output that carries it (an internal name). */
  readonly output: string;
  readonly shape: Shape;
  readonly dims: readonly string[];
}

/** Step outputs named with this prefix carry collection tensors. */
const COLLECTION_PREFIX = 'collection:';
/** Step outputs named with this prefix carry summaries. */
const SUMMARY_PREFIX = 'summary:';

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

function info(t: TensorInfo): { id: number; shape: Shape; dims: string[]; dtype: DType } {
  return { id: t.id, shape: t.shape.map((d) => d ?? null), dims: t.dims, dtype: t.dtype as DType };
}

/** A scope's device count and name as the core takes them ('' = EPL's default name). */
function strategyArgs(kind: 'replicate' | 'split', options: StrategyOptions): { deviceCount: number; name: string } {
  if (typeof options !== 'object' || options === null) {
    throw new WeftConfigError(`${kind}: options must be an object like { deviceCount: 1, name: 'stage0' }, got ${String(options)}`);
  }
  const deviceCount = options.deviceCount ?? 1;
  const name = options.name ?? '';
  if (typeof name !== 'string') throw new WeftConfigError(`${kind}: name must be a string, got ${String(name)}`);
  if (!Number.isInteger(deviceCount) || deviceCount < 0 || deviceCount > 0xffff_ffff) {
    throw new WeftConfigError(`${kind} '${name}': deviceCount must be a positive integer, got ${String(deviceCount)}`);
  }
  return { deviceCount, name };
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
  /** Forward-only metrics (`m.metrics.accuracy`). */
  readonly metrics: Metrics;
  /** The config the model is built under. */
  readonly config: Config;

  /** @internal */
  readonly native: NativeModel;
  private readonly prefix: string[] = [];
  private readonly counters = new Map<string, number>();
  private readonly inputList: TensorSpec[] = [];
  private readonly outputList: (TensorSpec & { readonly id: number })[] = [];
  private readonly paramList: ParameterSpec[] = [];
  private readonly collectionList: (CollectionSpec & { readonly id: number })[] = [];
  private readonly summaryList: SummarySpec[] = [];
  private dropouts = 0;

  /** @internal */
  constructor(cfg: Config) {
    this.config = cfg;
    // EPL raises on entering any scope while auto.auto_parallel is true; the core's scope rules need it.
    const autoParallel = cfg.get('auto.auto_parallel') === true;
    this.native = call(() => new (native().NativeModel)(autoParallel));
    this.nn = new Nn(this);
    this.losses = new Losses(this);
    this.metrics = new Metrics(this);
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
    if (typeof name === 'string' && name.startsWith(COLLECTION_PREFIX)) {
      throw new WeftShapeError(`output '${name}': names starting with '${COLLECTION_PREFIX}' are reserved for collections (m.addToCollection)`);
    }
    if (typeof name === 'string' && name.startsWith(SUMMARY_PREFIX)) {
      throw new WeftShapeError(`output '${name}': names starting with '${SUMMARY_PREFIX}' are reserved for summaries (m.summary)`);
    }
    call(() => this.native.output(name, t.id));
    this.outputList.push({ name, shape: t.shape, dims: t.dims, dtype: t.dtype, id: t.id });
  }

  /**
   * The index of the largest value along the last axis (ties to the lowest index): i32, the last
   * axis removed. Forward only: no gradient flows through it.
   *
   * @example
   * const pred = m.argmax(logits); // [N, V] -> i32 [N]
   */
  argmax(t: Tensor): Tensor {
    return this.op('argmax', [t]);
  }

  /**
   * 1 where `a` and `b` (one shape, both i32 or both f32) are equal, else 0, as f32: its mean is
   * an accuracy. Forward only.
   *
   * @example
   * const acc = m.equal(m.argmax(logits), labels).mean();
   */
  equal(a: Tensor, b: Tensor): Tensor {
    return this.op('equal', [a, b]);
  }

  /**
   * Marks a tensor as a recomputation checkpoint, EPL's `gradient_checkpoint` collection: with
   * `gradient_checkpoint.type='collection'` backward keeps the marked tensors and recomputes
   * every other activation from them (fewer activations kept, one more forward per segment).
   * Returns the tensor, so it can wrap an expression.
   *
   * @example
   * x = m.checkpoint(block(x)); // keep each block's output, recompute inside the blocks
   */
  checkpoint(t: Tensor): Tensor {
    if (!(t instanceof Tensor) || t.sink !== this) {
      throw new WeftShapeError('checkpoint: expected a tensor of this model');
    }
    call(() => this.native.checkpoint(t.id));
    return t;
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
   * A `replicate` scope (EPL's `replicate`): the ops built in `fn` form one TaskGraph, a pipeline
   * stage of its own when the model has several. Data parallelism needs no scope: replicas come
   * from the devices left over (`cpu(4)` with two stages runs two replicas of the pipeline).
   * Ops built before the first scope join the first scope's TaskGraph (inputs and parameters
   * anywhere are placed with their first consumer); ops after a scope join the last replicate
   * TaskGraph. Scopes do not nest and do not prefix parameter names. A scope that builds no op
   * is an error, and so is `deviceCount > 1` (tensor parallelism inside a replica).
   *
   * @example
   * const h = m.replicate({ deviceCount: 1, name: 'stage0' }, () => m.nn.linear(x, 1024).relu());
   * const logits = m.replicate({ deviceCount: 1, name: 'stage1' }, () => m.nn.linear(h, 10));
   */
  replicate<T>(options: StrategyOptions, fn: () => T): T {
    return this.strategyScope('replicate', options, fn);
  }

  /**
   * A `split` scope (EPL's `split`): recorded as its own TaskGraph. Splitting it over more than
   * one device (tensor parallelism) is not in this build: `deviceCount > 1` is refused.
   *
   * @example
   * const logits = m.split({ deviceCount: 1 }, () => m.nn.linear(h, vocab));
   */
  split<T>(options: StrategyOptions, fn: () => T): T {
    return this.strategyScope('split', options, fn);
  }

  /**
   * The strategy of ops built outside any scope from here on (EPL's `set_default_strategy`).
   * Only `replicate` is allowed. Every call opens a new TaskGraph, which is how EPL's BERT
   * example cuts pipeline stages: call it at each stage boundary inside the layer loop. Inside
   * an explicit scope the default is suspended, and it applies again after the scope.
   *
   * @example
   * for (let i = 0; i < layers; i++) {
   *   if (i % perStage === 0) m.setDefaultStrategy(weft.replicate({ deviceCount: 1, name: `stage${i / perStage}` }));
   *   x = m.nn.transformerBlock(x, { heads: 4, name: `h.${i}` });
   * }
   */
  setDefaultStrategy(strategy: Strategy): void {
    if (typeof strategy !== 'object' || strategy === null || (strategy.kind !== 'replicate' && strategy.kind !== 'split')) {
      throw new WeftConfigError(`setDefaultStrategy: expected weft.replicate({...}), got ${JSON.stringify(strategy)}`);
    }
    const { deviceCount, name } = strategyArgs(strategy.kind, strategy);
    call(() => this.native.setDefaultStrategy(strategy.kind, deviceCount, name));
  }

  private strategyScope<T>(kind: 'replicate' | 'split', options: StrategyOptions, fn: () => T): T {
    if (typeof fn !== 'function') throw new WeftConfigError(`${kind}(options, fn): expected a build function`);
    const { deviceCount, name } = strategyArgs(kind, options ?? {});
    call(() => this.native.enterScope(kind, deviceCount, name));
    let result: T;
    try {
      result = fn();
    } catch (err) {
      call(() => this.native.exitScope());
      throw err;
    }
    const taskgraph = call(() => this.native.exitScope());
    if (taskgraph === null || taskgraph === undefined) {
      const label = name === '' ? (kind === 'replicate' ? 'Replicate' : 'Split') : name;
      throw new WeftConfigError(
        `${kind} scope '${label}' built no ops: its TaskGraph would be empty, with nothing to run on its devices; build the stage's layers inside the scope or remove it`,
      );
    }
    return result;
  }

  /**
   * Adds `t` to a collection (EPL's `add_to_collection`): `trainer.step()` returns it merged over
   * micro-batches and replicas under `result.collections[key][name]`. Mean and sum merge
   * element-wise (a scalar comes back as a number), concat joins along axis 0 in batch-row order.
   * `name` defaults to the tensor's output name if it has one, else `t<id>`. A tensor may be in
   * one collection only; collections hold f32 tensors.
   *
   * @example
   * const loss = m.losses.softmaxCrossEntropy(logits, y);
   * m.addToCollection(loss, weft.GraphKeys.GLOBAL_MEAN, 'loss');
   */
  addToCollection(t: Tensor, key: GraphKey, name?: string): void {
    if (!GRAPH_KEYS.includes(key)) {
      throw new WeftConfigError(`addToCollection: unknown collection key ${JSON.stringify(key)}; the keys are ${GRAPH_KEYS.join(', ')} (weft.GraphKeys)`);
    }
    if (!(t instanceof Tensor) || t.sink !== this) {
      throw new WeftShapeError(`addToCollection(${key}): expected a tensor of this model`);
    }
    const label = name ?? this.outputList.find((o) => o.id === t.id)?.name ?? `t${t.id}`;
    if (typeof label !== 'string' || label === '') throw new WeftShapeError(`addToCollection(${key}): the name must be a non-empty string`);
    if (t.dtype !== 'f32') {
      throw new WeftDTypeError(`addToCollection(${key}): tensor '${label}' is ${t.dtype}; collections hold f32 tensors`);
    }
    const previous = this.collectionList.find((c) => c.id === t.id);
    if (previous !== undefined) {
      throw new WeftConfigError(
        `addToCollection: tensor '${label}' ${t.toString()} is already in collection '${previous.key}' as '${previous.name}'; a tensor belongs to one collection (EPL drops a tensor registered under two keys from both)`,
      );
    }
    if (this.collectionList.some((c) => c.key === key && c.name === label)) {
      throw new WeftConfigError(`addToCollection: collection '${key}' already has a tensor named '${label}'`);
    }
    const output = `${COLLECTION_PREFIX}${key}/${label}`;
    call(() => this.native.output(output, t.id));
    this.collectionList.push({ key, name: label, output, shape: t.shape, dims: t.dims, id: t.id });
  }

  /**
   * Records `t` as a summary (EPL's `tf.summary` + `update_summaries`): every step returns it
   * merged over micro-batches and replicas under `result.summaries[name]` (`mean`, `sum`, `max`,
   * `min`: a number over all its values; `histogram`: every value), and `weft train` writes it
   * to the run's TensorBoard event files as `summary/<name>`. Summaries hold f32 tensors.
   *
   * @example
   * m.summary('logit_mean', logits.mean(), 'mean');
   * m.summary('logits', logits, 'histogram');
   */
  summary(name: string, t: Tensor, reduce: SummaryReduce = 'mean'): void {
    if (!(t instanceof Tensor) || t.sink !== this) throw new WeftShapeError(`summary '${String(name)}': expected a tensor of this model`);
    checkSummary(name, t, reduce, this.summaryList);
    const output = `${SUMMARY_PREFIX}${name}`;
    call(() => this.native.output(output, t.id));
    this.summaryList.push(Object.freeze({ name, reduce, output, shape: t.shape }));
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

  /** @internal The TaskGraphs so far, as the core's scope rules made them. */
  taskgraphs(): TaskGraphInfo[] {
    return call(() => this.native.taskgraphs()).map((g) =>
      Object.freeze({
        index: g.index,
        name: g.name,
        strategy: g.strategy === 'split' ? ('split' as const) : ('replicate' as const),
        deviceCount: g.deviceCount,
        nodes: g.nodes,
      }),
    );
  }

  /** @internal */
  built(): {
    inputs: TensorSpec[];
    outputs: TensorSpec[];
    parameters: ParameterSpec[];
    taskgraphs: TaskGraphInfo[];
    collections: CollectionSpec[];
    summaries: SummarySpec[];
  } {
    const strip = <X extends { id: number }>(x: X): Omit<X, 'id'> => {
      const { id: _id, ...rest } = x;
      return Object.freeze(rest);
    };
    return {
      inputs: [...this.inputList],
      outputs: this.outputList.map(strip),
      parameters: [...this.paramList],
      taskgraphs: this.taskgraphs(),
      collections: this.collectionList.map(strip),
      summaries: [...this.summaryList],
    };
  }
}

/** A built model: its inputs, outputs, parameters and TaskGraphs. Compile it with `weft.compile`. */
export class Model {
  readonly config: Config;
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  readonly parameters: readonly ParameterSpec[];
  /** The TaskGraphs in index order; with several holding computation, each is a pipeline stage. */
  readonly taskgraphs: readonly TaskGraphInfo[];
  /** Tensors added with `m.addToCollection`, in registration order. */
  readonly collections: readonly CollectionSpec[];
  /** Tensors recorded with `m.summary`, in registration order. */
  readonly summaries: readonly SummarySpec[];
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
    const s = builder.built();
    this.inputs = Object.freeze(s.inputs);
    this.outputs = Object.freeze(s.outputs);
    this.parameters = Object.freeze(s.parameters);
    this.taskgraphs = Object.freeze(s.taskgraphs);
    this.collections = Object.freeze(s.collections);
    this.summaries = Object.freeze(s.summaries);
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
    // Only setDefaultStrategy opens a TaskGraph before its first op; an empty scope threw already.
    const empty = builder.taskgraphs().filter((g) => g.nodes === 0);
    if (empty.length > 0) {
      const names = empty.map((g) => `${g.index} '${g.name}'`).join(', ');
      throw new WeftConfigError(
        `TaskGraph ${names} built no ops: setDefaultStrategy opened it but no op was built outside scopes afterwards, so it would be empty; call setDefaultStrategy where the stage's ops begin`,
      );
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
