/**
 * `weft.compile(model, options)` and the `Trainer`: steps, evaluation, checkpoints, the plan.
 * Calls on one trainer run one at a time, in call order.
 */
import type { Config } from './config.js';
import { type GenerateOptions, type GenerateResult, generate } from './generate.js';
import { type Devices, cpu } from './devices.js';
import { WeftBatchError, WeftConfigError, WeftDTypeError, WeftInternalError, WeftUnsupportedError } from './errors.js';
import type { CollectionSpec, GraphKey, Model } from './model.js';
import { type NativeTrainer, call, callAsync, native } from './native.js';
import type { Optimizer } from './optim.js';
import { type SummarySpec, type SummaryValue, mergeSummary } from './summaries.js';
import type { DType } from './tensor.js';
import type { MemoryReport, PlanJson, Trace } from './reports.js';

/** A batch tensor: a typed array of the input's dtype, or plain numbers (converted). */
export type BatchTensor = Float32Array | Int32Array | readonly number[];

/** One global batch: a value for every model input, by name. */
export type Batch = Readonly<Record<string, BatchTensor>>;

/**
 * A named output's value for the whole global batch: the per-micro-batch values concatenated
 * along axis 0 in batch-row order (replica by replica, micro-batch by micro-batch). A scalar
 * output has one value per micro-batch per replica, so its shape is `[R*M]` (`[]` on one device
 * without accumulation).
 */
export interface OutputValue {
  readonly shape: readonly number[];
  readonly data: Float32Array | Int32Array;
}

/** What a step returns. */
export interface StepResult {
  /** Optimizer steps taken, this one included. */
  readonly step: number;
  /** Mean loss over the global batch. */
  readonly loss: number;
  /** Learning rate used by this step. */
  readonly lr: number;
  /** Wall-clock milliseconds of the step. */
  readonly ms: number;
  /** Global gradient norm before clipping (undefined for evaluation). */
  readonly gradNorm: number | undefined;
  /** Measured idle fraction of each device over the pipeline phase of this step. */
  readonly idle: readonly number[];
  /** The pipeline's ideal idle fraction (S-1)/(M+S-1). */
  readonly idealIdle: number;
  /** fp16 mixed precision: the loss scale after this step (undefined when the loss is not scaled). */
  readonly lossScale: number | undefined;
  /** Whether dynamic loss scaling skipped this step (a non-finite gradient: nothing was updated). */
  readonly skipped: boolean;
  /** Steps skipped so far in this run. */
  readonly skippedSteps: number;
  /** The model's named outputs (`m.output`). */
  readonly outputs: Readonly<Record<string, OutputValue>>;
  /**
   * Tensors of `m.addToCollection`, merged over micro-batches and replicas, by key and name:
   * `collections.global_mean?.loss`. A scalar merged by mean or sum is a number.
   */
  readonly collections: Collections;
  /** Tensors of `m.summary`, merged over micro-batches and replicas, by name. */
  readonly summaries: Readonly<Record<string, SummaryValue>>;
}

/** A merged collection tensor: a number for a scalar merged by mean or sum, else its values. */
export type CollectionValue = number | Float32Array;

/** `step()`'s collections: key -> tensor name -> merged value (keys with no tensor are absent). */
export type Collections = Readonly<Partial<Record<GraphKey, Readonly<Record<string, CollectionValue>>>>>;

/** What `evaluate` returns. */
export type EvalResult = Omit<StepResult, 'gradNorm' | 'lr' | 'idle' | 'idealIdle' | 'skipped' | 'skippedSteps' | 'lossScale'>;

/** Options of {@link compile}. */
export interface CompileOptions {
  /** Global batch of one optimizer step (split across replicas and micro-batches). */
  readonly batch: number;
  /** Devices to run on (default `weft.cpu(1)`). */
  readonly devices?: Devices;
  /** Optimizer (default `weft.optim.adamW()`). */
  readonly optimizer?: Optimizer;
  /** Seed of parameter initialisation and dropout (default 0). */
  readonly seed?: number;
  /** CPU kernel threads (default: all cores). */
  readonly threads?: number;
  /** Config overriding the model's (default: the config the model was built with). */
  readonly config?: Config;
  /** Called after every successful step with its result. */
  readonly onProgress?: (result: StepResult) => void;
  /**
   * `'env'` (default): when a launcher (`weft launch`, torchrun, Slurm, Open MPI) started this
   * process as one of several, join the others and train data-parallel across them;
   * `'single'`: train in this process only, whatever the environment says.
   */
  readonly processes?: 'env' | 'single';
  /**
   * A simulated cluster `'HOSTSxDEVICES'` (e.g. `'2x4'`) for EPL's device slicing in this
   * process, so multi-host placement can be inspected (`weft plan --cluster`); the device count
   * must be HOSTS x DEVICES.
   */
  readonly cluster?: string;
}

/** This process's place in a multi-process job ({@link Trainer.process}). */
export interface ProcessInfo {
  /** Global process rank (rank 0 hosts the rendezvous store and writes the files). */
  readonly rank: number;
  /** Number of processes. */
  readonly world: number;
  readonly localRank: number;
  readonly localWorld: number;
  /** Who started the processes: `weft launch`, `torchrun`, `Slurm` or `Open MPI`. */
  readonly launcher: string;
}

/** A batch input of the compiled model at the global batch size. */
export interface InputShape {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/** The compiled plan: TaskGraphs, device slices, schedule grid and memory estimate. */
export interface Plan {
  /** The plan as JSON (`weft plan --json` prints the same). */
  readonly json: PlanJson;
  /** The human-readable plan. */
  toString(): string;
}

function typeName(data: unknown): string {
  if (ArrayBuffer.isView(data)) return data.constructor.name;
  return Array.isArray(data) ? 'an array' : typeof data;
}

/** A compiled model. Create it with {@link compile}. */
export class Trainer {
  /** The model's batch inputs at the global batch size. */
  readonly inputs: readonly InputShape[];
  /** The global batch. */
  readonly batch: number;
  /**
   * Configurations that run but likely not as meant (e.g. fp16 without loss scaling), each with
   * its reason; also emitted once as a process warning (`WeftWarning`) when compiled.
   */
  readonly warnings: readonly string[];
  private readonly nativeTrainer: NativeTrainer;
  private readonly onProgress: ((result: StepResult) => void) | undefined;
  private readonly merge: OutputMerge;
  /** Element count of each input at the global batch, in `inputs` order. */
  private readonly lengths: readonly number[];
  private queue: Promise<unknown> = Promise.resolve();
  private inFlight = 0;

  /** @internal Use {@link compile}. */
  constructor(
    t: NativeTrainer,
    batch: number,
    onProgress: ((r: StepResult) => void) | undefined,
    collections: readonly CollectionSpec[] = [],
    summaries: readonly SummarySpec[] = [],
  ) {
    this.nativeTrainer = t;
    this.batch = batch;
    this.onProgress = onProgress;
    const plan = JSON.parse(call(() => t.planJson())) as {
      batch?: { replicas?: unknown; micro_batches?: unknown };
      warnings?: string[];
    };
    this.warnings = Object.freeze([...(plan.warnings ?? [])]);
    for (const w of this.warnings) process.emitWarning(w, 'WeftWarning');
    const replicas = Number(plan.batch?.replicas ?? 1);
    const microBatches = Number(plan.batch?.micro_batches ?? 1);
    this.merge = { parts: replicas * microBatches, collections, summaries };
    this.inputs = Object.freeze(
      call(() => t.inputs()).map((s) => Object.freeze({ name: s.name, shape: Object.freeze([...s.shape]), dtype: s.dtype as DType })),
    );
    this.lengths = this.inputs.map((spec) => spec.shape.reduce((a, b) => a * b, 1));
  }

  /** Runs `fn` after every earlier call on this trainer has settled. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    this.inFlight += 1;
    const next = this.queue.then(fn, fn).finally(() => {
      this.inFlight -= 1;
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Synchronous reads would race a running step: they require an idle trainer. */
  private idle<T>(what: string, fn: () => T): T {
    if (this.inFlight > 0) {
      throw new WeftUnsupportedError(`${what} while a step or checkpoint is running is not supported; await it first`);
    }
    return call(fn);
  }

  /**
   * Checks names, dtypes and lengths against the compiled inputs; converts plain arrays.
   * Returns one tensor per input in model order (what the native trainer takes).
   */
  private prepare(batch: Batch): Array<Float32Array | Int32Array>;
  private prepare(batch: Batch, forEvaluate: true): Array<Float32Array | Int32Array | null>;
  /** The batch's typed arrays in input order; `forEvaluate`: any rows, a missing input is null. */
  private prepare(batch: Batch, forEvaluate = false): Array<Float32Array | Int32Array | null> {
    if (typeof batch !== 'object' || batch === null) {
      throw new WeftBatchError(`batch must be an object of input name -> typed array, got ${String(batch)}`);
    }
    for (const key of Object.keys(batch)) {
      if (!this.inputs.some((i) => i.name === key)) {
        const names = this.inputs.map((i) => `'${i.name}'`).join(', ');
        throw new WeftBatchError(`batch has unknown input '${key}'; the model's inputs are ${names}`);
      }
    }
    // A plain loop with no closures: this runs on every step, right after the step has
    // flushed the caches, where every touched object costs.
    const out = new Array<Float32Array | Int32Array | null>(this.inputs.length);
    for (let i = 0; i < out.length; i++) {
      const spec = this.inputs[i] as InputShape;
      const data: unknown = batch[spec.name];
      if (data === undefined && forEvaluate) {
        out[i] = null;
        continue;
      }
      if (data === undefined) throw new WeftBatchError(`batch is missing input '${spec.name}' (expected ${this.want(i)})`);
      const typed = toTyped(spec, data);
      if (!forEvaluate && typed.length !== this.lengths[i]) {
        throw new WeftBatchError(`input '${spec.name}' has ${typed.length} values, expected ${this.want(i)}`);
      }
      out[i] = typed;
    }
    return out;
  }

  /** Input `i`'s expected dtype, shape and size, for messages. */
  private want(i: number): string {
    const spec = this.inputs[i] as InputShape;
    return `${spec.dtype} [${spec.shape.join(', ')}] = ${String(this.lengths[i])} values for global batch ${this.batch}`;
  }

  /**
   * One optimizer step on a global batch. The batch is checked (names, dtypes, lengths) before
   * anything runs, and copied, so the arrays may be reused as soon as this returns.
   *
   * @example
   * const { loss } = await trainer.step({ x: new Float32Array(8 * 784), y: new Int32Array(8) });
   */
  step(batch: Batch): Promise<StepResult> {
    let inputs: Array<Float32Array | Int32Array>;
    try {
      inputs = this.prepare(batch);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.serial(async () => {
      const r = await callAsync(() => call(() => this.nativeTrainer.step(inputs)));
      const result = report(r, this.merge);
      this.onProgress?.(result);
      return result;
    });
  }

  /**
   * `step` on the calling thread, for scripts that need no event loop while training: the
   * batch's arrays are read in place (no copy, no thread hand-off), so its overhead over the
   * native step is about 70 us on W1 instead of `step`'s 250 us (a copy and two thread
   * wake-ups). It blocks the event loop for the step, and throws while an asynchronous call
   * is still running.
   *
   * @example
   * const { loss } = trainer.stepSync({ x: new Float32Array(8 * 784), y: new Int32Array(8) });
   */
  stepSync(batch: Batch): StepResult {
    const inputs = this.prepare(batch);
    const result = report(this.idle('stepSync', () => this.nativeTrainer.stepSync(inputs)), this.merge);
    this.onProgress?.(result);
    return result;
  }

  /**
   * Loss, outputs and summaries on a batch without updating the parameters, under the compiled
   * layout (nothing is recompiled). The batch may hold any number of rows that is a multiple or
   * a divisor of the compiled global batch: a multiple runs as that many global batches, a
   * divisor is repeated to fill one (its outputs cut back to its rows); the loss is the mean
   * over the rows given either way. Inputs no output reads (labels) may be left out: the loss
   * is then NaN.
   *
   * @example
   * const { loss, outputs } = await trainer.evaluate(batch);
   */
  evaluate(batch: Batch): Promise<EvalResult> {
    let inputs: Array<Float32Array | Int32Array | null>;
    try {
      inputs = this.prepare(batch, true);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.serial(async () => {
      const r = report(await callAsync(() => call(() => this.nativeTrainer.evaluate(inputs))), this.merge);
      return Object.freeze({ step: r.step, loss: r.loss, ms: r.ms, outputs: r.outputs, collections: r.collections, summaries: r.summaries });
    });
  }

  /**
   * Generates token ids after `prompt` (ids): temperature, top-k, top-p and stop sequences,
   * seeded. A GPT-2-shaped model (the built-in GPT, Hugging Face GPT-2) decodes through a
   * key/value cache, one position per token, on the host with the current weights, whatever
   * the layout; any other model with an i32 `idx` input and a `logits` output recomputes the
   * full window through `evaluate` on its own layout (`note` says why).
   *
   * @example
   * const { tokens } = await trainer.generate(weft.data.encode('To be'), { maxTokens: 50, temperature: 0 });
   */
  generate(prompt: ArrayLike<number>, options: GenerateOptions = {}): Promise<GenerateResult> {
    return this.serial(() =>
      generate(
        {
          inputs: this.inputs,
          decoder: () => call(() => this.nativeTrainer.kvDecoder()),
          evaluate: async (batch) => report(await callAsync(() => call(() => this.nativeTrainer.evaluate(this.prepare(batch)))), this.merge).outputs,
        },
        prompt,
        options,
      ),
    );
  }

  /**
   * Saves parameters, optimizer state and the step count as a new step directory under `dir`
   * (`dir/step-00000400/`, made visible by one rename and named by `dir/latest`; a save killed
   * at any instant leaves the previous ones loadable), then removes all but the newest
   * `keep` (default 1). `meta` is stored with it. Resolves to the new step directory.
   *
   * @example
   * await trainer.save('ckpt/', { model: 'mlp' }, { keep: 3 });
   */
  save(dir: string, meta?: unknown, options: { readonly keep?: number } = {}): Promise<string> {
    const metaJson = meta === undefined ? undefined : JSON.stringify(meta);
    return this.serial(async () => JSON.parse(await callAsync(() => call(() => this.nativeTrainer.save(dir, metaJson, options.keep)))) as string);
  }

  /**
   * Restores a checkpoint written by {@link save}: the newest complete save under `dir`, or `dir`
   * itself when it is one checkpoint directory. Resolves to the `meta` stored with it. The
   * run continues exactly: weights, optimizer state, step, fp16's loss scaler; the trainer must
   * have been compiled with the checkpoint's learning-rate schedule (length included), else a
   * `WeftCheckpointError` names both.
   *
   * @example
   * const meta = await trainer.load('ckpt/');
   */
  load(dir: string): Promise<unknown> {
    return this.serial(async () => JSON.parse(await callAsync(() => call(() => this.nativeTrainer.load(dir)))) as unknown);
  }

  /**
   * Initialises parameters from a safetensors file or a Hugging Face `save_pretrained`
   * directory (GPT-2's `transformer.` prefix, tied `lm_head.weight`, f16/bf16, a longer `wpe`
   * cut to the model's context); resolves to the names of tensors set aside (mask buffers, a
   * tied head).
   *
   * @example
   * const skipped = await trainer.loadWeights('gpt2.safetensors');
   */
  loadWeights(file: string): Promise<string[]> {
    return this.serial(async () => JSON.parse(await callAsync(() => call(() => this.nativeTrainer.loadWeights(file)))) as string[]);
  }

  /**
   * The compiled plan; `String(trainer.plan)` renders TaskGraphs, device slices, the schedule
   * grid and the memory estimate.
   *
   * @example
   * console.log(trainer.plan.toString());
   */
  get plan(): Plan {
    const text = this.idle('plan', () => this.nativeTrainer.planText());
    const json = JSON.parse(this.idle('plan', () => this.nativeTrainer.planJson())) as PlanJson;
    return Object.freeze({ json: Object.freeze(json), toString: () => text });
  }

  /**
   * Measured and predicted memory per device, in bytes.
   *
   * @example
   * console.log(trainer.memory()['cpu:0']);
   */
  memory(): MemoryReport {
    return JSON.parse(this.idle('memory()', () => this.nativeTrainer.memoryJson())) as MemoryReport;
  }

  /**
   * This process's place in a multi-process job, or `null` when it trains alone. Only rank 0
   * should write shared files (checkpoints, reports).
   *
   * @example
   * if ((trainer.process?.rank ?? 0) === 0) await trainer.save('ckpt');
   */
  get process(): ProcessInfo | null {
    return JSON.parse(this.idle('process', () => this.nativeTrainer.processJson())) as ProcessInfo | null;
  }

  /** Optimizer steps taken so far. @example trainer.stepCount */
  get stepCount(): number {
    return this.idle('stepCount', () => this.nativeTrainer.stepCount());
  }

  /**
   * The parameters' names and shapes, in creation order.
   *
   * @example
   * for (const p of trainer.parameters()) console.log(p.name, p.shape);
   */
  parameters(): readonly { readonly name: string; readonly shape: readonly number[] }[] {
    return this.idle('parameters()', () => this.nativeTrainer.parameters());
  }

  /** The parameter names. @example trainer.parameterNames().includes('h.0.attn.c_attn.weight') */
  parameterNames(): readonly string[] {
    return this.idle('parameterNames()', () => this.nativeTrainer.parameterNames());
  }

  /**
   * A copy of a parameter's current value.
   *
   * @example
   * const w = trainer.getParameter('linear_0.weight');
   */
  getParameter(name: string): Float32Array {
    const data = this.idle('getParameter()', () => this.nativeTrainer.getParameter(name));
    if (!(data instanceof Float32Array)) throw new WeftDTypeError(`parameter '${name}': expected f32 data`);
    return data;
  }

  /**
   * The Chrome/Perfetto trace of the last training step (`{traceEvents: [...]}`, one track per
   * device: forward, backward, all-reduce and optimizer spans); open it in ui.perfetto.dev.
   *
   * @example
   * fs.writeFileSync('trace.json', JSON.stringify(trainer.trace()));
   */
  trace(): Trace {
    return JSON.parse(this.idle('trace()', () => this.nativeTrainer.traceJson())) as Trace;
  }
}

function toTyped(spec: InputShape, data: unknown): Float32Array | Int32Array {
  const f32 = spec.dtype === 'f32';
  if (f32 ? data instanceof Float32Array : data instanceof Int32Array) return data as Float32Array | Int32Array;
  if (Array.isArray(data)) {
    // Float32Array.from would turn a string (or anything else) into NaN without a word.
    const bad = data.findIndex((v) => typeof v !== 'number');
    if (bad >= 0) {
      throw new WeftDTypeError(`input '${spec.name}': expected numbers, got ${typeName(data[bad])} at index ${bad}`);
    }
    if (!f32 && !data.every((v) => Number.isInteger(v))) {
      throw new WeftDTypeError(`input '${spec.name}': expected i32 values, got a non-integer in the array`);
    }
    return f32 ? Float32Array.from(data as number[]) : Int32Array.from(data as number[]);
  }
  throw new WeftDTypeError(
    `input '${spec.name}': expected dtype ${spec.dtype} (${f32 ? 'Float32Array' : 'Int32Array'}), got ${typeName(data)}`,
  );
}

type NativeReport = Awaited<ReturnType<NativeTrainer['step']>>;

/** What a trainer needs to merge outputs: R*M (the core's parts), the collection tensors and summaries. */
interface OutputMerge {
  readonly parts: number;
  readonly collections: readonly CollectionSpec[];
  readonly summaries: readonly SummarySpec[];
}

/**
 * Merges one collection tensor. `data` is what the core returns for every output: the R*M
 * per-micro-batch values concatenated in (replica, micro-batch) order.
 */
function mergeCollection(spec: CollectionSpec, data: Float32Array, parts: number): CollectionValue {
  const op = spec.key.slice(spec.key.indexOf('_') + 1);
  if (op === 'concat') return Float32Array.from(data);
  const len = data.length / parts;
  if (!Number.isInteger(len)) {
    throw new WeftInternalError(`collection ${spec.key}/${spec.name}: ${data.length} values do not split into ${parts} micro-batch parts`);
  }
  const acc = new Float64Array(len);
  for (let p = 0; p < parts; p++) {
    for (let i = 0; i < len; i++) acc[i] = (acc[i] as number) + (data[p * len + i] as number);
  }
  if (op === 'mean') for (let i = 0; i < len; i++) acc[i] = (acc[i] as number) / parts;
  if (spec.shape.length === 0) return shortestF32(acc[0] as number);
  return Float32Array.from(acc);
}

/** `x` rounded to f32, as the shortest decimal that reads back as that f32 (how the loss is reported). */
function shortestF32(x: number): number {
  const f = Math.fround(x);
  if (!Number.isFinite(f)) return f;
  for (let digits = 1; digits < 9; digits++) {
    const d = Number(f.toPrecision(digits));
    if (Math.fround(d) === f) return d;
  }
  return f;
}

function report(r: NativeReport, merge: OutputMerge): StepResult {
  const outputs: Record<string, OutputValue> = {};
  const collections: Partial<Record<GraphKey, Record<string, CollectionValue>>> = {};
  const summaries: Record<string, SummaryValue> = {};
  for (const o of r.outputs) {
    const spec = merge.collections.find((c) => c.output === o.name);
    if (spec !== undefined) {
      if (!(o.data instanceof Float32Array)) throw new WeftInternalError(`collection ${spec.key}/${spec.name}: expected f32 data`);
      const bucket = (collections[spec.key] ??= {});
      bucket[spec.name] = mergeCollection(spec, o.data, merge.parts);
      continue;
    }
    const summary = merge.summaries.find((c) => c.output === o.name);
    if (summary !== undefined) {
      if (!(o.data instanceof Float32Array)) throw new WeftInternalError(`summary ${summary.name}: expected f32 data`);
      summaries[summary.name] = mergeSummary(summary, o.data);
      continue;
    }
    // A scalar output carries one value per micro-batch per replica.
    const shape = o.shape.length === 0 && o.data.length > 1 ? [o.data.length] : [...o.shape];
    outputs[o.name] = Object.freeze({ shape: Object.freeze(shape), data: o.data });
  }
  for (const bucket of Object.values(collections)) Object.freeze(bucket);
  return Object.freeze({
    step: r.step,
    loss: r.loss,
    lr: r.lr,
    ms: r.ms,
    gradNorm: r.gradNorm ?? undefined,
    idle: r.idle,
    idealIdle: r.idealIdle,
    lossScale: r.lossScale ?? undefined,
    skipped: r.skipped,
    skippedSteps: r.skippedSteps,
    outputs: Object.freeze(outputs),
    collections: Object.freeze(collections),
    summaries: Object.freeze(summaries),
  });
}

/**
 * Compiles a model for a device layout and optimizer. Rejects with a typed error for an
 * unsupported layout (`WeftUnsupportedError`), a device this build cannot use
 * (`WeftDeviceError`), or an invalid option (`WeftConfigError`).
 *
 * @example
 * const trainer = await weft.compile(model, {
 *   batch: 32, devices: weft.cpu(1), optimizer: weft.optim.adamW({ lr: 1e-3 }),
 * });
 */
export async function compile(model: Model, options: CompileOptions): Promise<Trainer> {
  if (typeof options !== 'object' || options === null) {
    throw new WeftConfigError('compile options must be an object with at least { batch }');
  }
  const { batch, onProgress } = options;
  if (!Number.isInteger(batch) || batch < 1) {
    throw new WeftConfigError(`compile option 'batch' (the global batch) must be a positive integer, got ${String(batch)}`);
  }
  const devices = options.devices ?? cpu(1);
  const cfg = options.config ?? model.config;
  const json = JSON.stringify({
    batch,
    seed: options.seed ?? 0,
    threads: options.threads ?? 0,
    devices: devices.toString(),
    optimizer: options.optimizer ?? { kind: 'adamw' },
    config: cfg.changed,
    processes: options.processes ?? 'env',
    cluster: options.cluster ?? null,
  });
  const nativeModel = model.takeNative();
  const t = await callAsync(() => call(() => native().compile(nativeModel, model.lossId, json)));
  return new Trainer(t, batch, onProgress, model.collections, model.summaries);
}
