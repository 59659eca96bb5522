/**
 * Summaries (EPL's `update_summaries`): tensors the model marks with `m.summary(name, t, reduce)`
 * come back from every step merged over micro-batches and replicas, and TensorBoard event files
 * (`EventWriter`, written by the core's `summary` module) record them with the run's scalars.
 */
import { WeftConfigError, WeftDTypeError, WeftShapeError } from './errors.js';
import { type NativeBinding, call, native } from './native.js';
import type { Shape, Tensor } from './tensor.js';

/**
 * How a summary merges over its elements, micro-batches and replicas: `mean`, `sum`, `max`, `min`
 * give a scalar; `histogram` keeps every value (TensorBoard's histogram).
 */
export type SummaryReduce = 'mean' | 'sum' | 'max' | 'min' | 'histogram';

export const SUMMARY_REDUCES: readonly SummaryReduce[] = ['mean', 'sum', 'max', 'min', 'histogram'];

/** A tensor registered with `m.summary`. */
export interface SummarySpec {
  readonly name: string;
  readonly reduce: SummaryReduce;
  /** The step output that carries it (an internal name). */
  readonly output: string;
  readonly shape: Shape;
}

/** `m.summary`'s checks: a new non-empty name, a known reduce, an f32 tensor. */
export function checkSummary(name: string, t: Tensor, reduce: SummaryReduce, existing: readonly SummarySpec[]): void {
  if (typeof name !== 'string' || name === '') throw new WeftShapeError('summary: the name must be a non-empty string');
  if (!SUMMARY_REDUCES.includes(reduce)) {
    throw new WeftConfigError(`summary '${name}': unknown reduce ${JSON.stringify(reduce)}; the reduces are ${SUMMARY_REDUCES.join(', ')}`);
  }
  if (t.dtype !== 'f32') throw new WeftDTypeError(`summary '${name}': tensor ${t.toString()} is ${t.dtype}; summaries hold f32 tensors`);
  if (existing.some((s) => s.name === name)) throw new WeftConfigError(`summary: a summary named '${name}' already exists`);
}

/** A merged summary: a number, or every value for `histogram`. */
export type SummaryValue = number | Float32Array;

/**
 * Merges one summary. `data` is the R*M per-micro-batch values concatenated (the core's output
 * form). As EPL merges summaries over replicas and micro-batches: `mean` is the mean over every
 * value of every part (every part holds as many values, so it is also the mean of the parts'
 * means: the global batch's); `sum`, `max`, `min` run over every value; `histogram` keeps them.
 */
export function mergeSummary(spec: SummarySpec, data: Float32Array): SummaryValue {
  if (spec.reduce === 'histogram') return Float32Array.from(data);
  if (spec.reduce === 'max' || spec.reduce === 'min') {
    let acc = spec.reduce === 'max' ? -Infinity : Infinity;
    for (const v of data) acc = spec.reduce === 'max' ? Math.max(acc, v) : Math.min(acc, v);
    return acc;
  }
  let sum = 0;
  for (const v of data) sum += v;
  if (spec.reduce === 'sum') return Math.fround(sum);
  return Math.fround(sum / Math.max(1, data.length));
}

/**
 * A TensorBoard event file (`events.out.tfevents.*`) in a log directory; `tensorboard --logdir
 * DIR` reads it while it grows.
 *
 * @example
 * const w = new weft.summary.EventWriter('runs/a');
 * w.scalars(1, { 'train/loss': 2.5 });
 * w.flush();
 */
export class EventWriter {
  private readonly inner: InstanceType<NativeBinding['NativeEventWriter']>;

  constructor(dir: string) {
    this.inner = call(() => new (native().NativeEventWriter)(dir));
  }

  /** The event file's path. */
  get path(): string {
    return this.inner.path();
  }

  /** Scalars of one step, by tag. Non-finite values are written as they are. */
  scalars(step: number, values: Readonly<Record<string, number>>): void {
    const tags = Object.keys(values);
    call(() => this.inner.scalars(step, tags, tags.map((t) => values[t] as number)));
  }

  /** A histogram of `values` at `step`. */
  histogram(step: number, tag: string, values: Float32Array): void {
    call(() => this.inner.histogram(step, tag, values));
  }

  /** Writes what is buffered to the file. */
  flush(): void {
    call(() => this.inner.flush());
  }
}
