/**
 * Batches for `weft train`: llm.c token files or the byte-tokenised built-in corpus for the gpt,
 * and seeded synthetic data labelled by a fixed random "teacher" for the mlp (so loss can fall).
 */
import * as weft from '../index.js';
import type { CliMeta } from './checkpoint.js';
import { Rng } from '../rng.js';
import type { ModelSpec } from './run-spec.js';
import { UsageError } from './cli-error.js';

/** An endless stream of global batches. */
export interface BatchSource {
  next(): weft.Batch;
  /** Tokens (gpt) or samples (mlp) per global batch, for throughput. */
  readonly itemsPerBatch: number;
  /** What to store in the checkpoint to resume the stream. */
  state(): CliMeta['data'];
  readonly tokenizer: CliMeta['tokenizer'];
}

/**
 * The batch stream of a run; `resume` is the data state saved with a checkpoint.
 *
 * @example
 * const src = batchSource(spec.model, 8, undefined, 0);
 * await trainer.step(src.next());
 */
export function batchSource(model: ModelSpec, batch: number, data: string | undefined, seed: number, resume?: CliMeta['data'], workers?: Workers, heldOut?: HeldOut): BatchSource {
  if (model.kind === 'gpt') return tokenSource(model.seq, batch, data, seed, resume, workers, heldOut);
  return teacherSource(model.sizes, batch, seed, resume?.path === null ? resume.position : 0, heldOut?.part === 'eval');
}

/**
 * `--eval-split`: which side of the held-out cut a source reads. A token file (or the corpus)
 * is cut once: the last `fraction` of its tokens is the eval part (`TokenFile::held_out`).
 * Synthetic mlp data has no end to cut: the eval part is a stream of batches the training
 * stream never draws.
 */
export interface HeldOut {
  readonly fraction: number;
  readonly part: 'train' | 'eval';
}

function tokenSource(seq: number, batch: number, data: string | undefined, seed: number, resume: CliMeta['data'] | undefined, workers: Workers | undefined, heldOut: HeldOut | undefined): BatchSource {
  const set = data === undefined ? undefined : weft.data.resolve(data);
  if (data !== undefined && set && (set.manifest || set.shards.length > 1)) {
    if (heldOut) throw new UsageError(`--eval-split: ${data} is a set of shards; hold one out with --eval-data (weft data prepare writes val shards) instead`);
    const mine = workers ? workerShards(set.shards, workers, workers.rank).files : set.shards;
    return shardSource(seq, batch, data, { ...set, shards: mine }, seed, resume);
  }
  const loader = weft.data.tokenLoader({ batch, seq, ...(data !== undefined && { path: data }), ...(heldOut && { heldOut }) });
  if (resume && resume.path === (data ?? null)) loader.seek(resume.position);
  return {
    next: () => {
      const b = loader.next();
      return { idx: b.inputs, targets: b.targets };
    },
    itemsPerBatch: batch * seq,
    state: () => ({ path: data ?? null, position: loader.position }),
    tokenizer: data === undefined ? 'byte' : 'file',
  };
}

/** The processes of a run and the options of EPL's IO slicing. */
export interface Workers {
  /** This process's rank (0 alone). */
  readonly rank: number;
  /** Data-parallel replicas hosted by each process (every process hosts as many). */
  readonly localReplicas: readonly number[];
  readonly slicing: boolean;
  readonly dropLastFiles: boolean;
  readonly unbalanced: boolean;
}

/** The run's workers: one per process, each with dp / processes replicas. */
export function workersOf(config: weft.Config, dp: number, process: { rank: number; world: number } | null): Workers {
  const world = process?.world ?? 1;
  return {
    rank: process?.rank ?? 0,
    localReplicas: Array.from({ length: world }, () => Math.max(1, Math.floor(dp / world))),
    slicing: config.get('io.slicing') === true,
    dropLastFiles: config.get('io.drop_last_files') === true,
    unbalanced: config.get('io.unbalanced_io_slicing') === true,
  };
}

/**
 * The shards worker `worker` reads: all of them, or under `io.slicing` its share by EPL's rule
 * (the core's `data::slicing`). A process's replicas share its shards, each reading its own rows.
 */
export function workerShards(shards: readonly string[], w: Workers, worker: number): weft.data.WorkerShards | { files: readonly string[]; kind: 'all' } {
  if (!w.slicing) return { files: shards, kind: 'all' };
  return weft.data.sliceShards(shards, w.localReplicas, worker, { dropLastFiles: w.dropLastFiles, unbalanced: w.unbalanced });
}

/**
 * Many shards (a list, a glob, a prepared directory): batches in the seeded shuffled order of
 * `weft.data.shardLoader`; the checkpoint keeps the loader's state, so a resume continues it.
 * One plain file keeps llm.c's sequential loader above.
 */
function shardSource(seq: number, batch: number, data: string, set: weft.data.DataSet, seed: number, resume: CliMeta['data'] | undefined): BatchSource {
  const loader = weft.data.shardLoader({ shards: set.shards, batch, seq, seed });
  if (resume && resume.path === data && resume.loader) loader.seek(resume.loader);
  return {
    next: () => {
      const b = loader.next();
      return { idx: b.inputs, targets: b.targets };
    },
    itemsPerBatch: batch * seq,
    state: () => ({ path: data, position: 0, loader: loader.state }),
    tokenizer: set.manifest?.tokenizer === 'gpt2' ? 'gpt2' : 'file',
  };
}

/** Gaussian inputs labelled by the arg-max of a fixed random linear map. */
function teacherSource(sizes: readonly number[], batch: number, seed: number, start: number, heldOut = false): BatchSource {
  const inputs = sizes[0] as number;
  const classes = sizes[sizes.length - 1] as number;
  const teacherRng = new Rng(seed * 2 + 1);
  const teacher = Float32Array.from({ length: inputs * classes }, () => teacherRng.normal());
  let drawn = start;
  return {
    next: () => {
      // One stream per batch index, so a resumed run continues where the saved one stopped;
      // training draws the even streams, held-out evaluation the odd ones.
      const rng = new Rng(Math.imul(seed + 1, 0x9e3779b1) ^ (drawn++ * 2 + (heldOut ? 3 : 2)));
      const x = Float32Array.from({ length: batch * inputs }, () => rng.normal());
      return { x, y: labels(x, teacher, inputs, classes) };
    },
    itemsPerBatch: batch,
    state: () => ({ path: null, position: drawn }),
    tokenizer: 'file',
  };
}

function labels(x: Float32Array, teacher: Float32Array, inputs: number, classes: number): Int32Array {
  const rows = x.length / inputs;
  const y = new Int32Array(rows);
  const scores = new Float64Array(classes);
  for (let r = 0; r < rows; r++) {
    scores.fill(0);
    for (let i = 0; i < inputs; i++) {
      const v = x[r * inputs + i] as number;
      for (let c = 0; c < classes; c++) scores[c] = (scores[c] as number) + v * (teacher[i * classes + c] as number);
    }
    let best = 0;
    for (let c = 1; c < classes; c++) if ((scores[c] as number) > (scores[best] as number)) best = c;
    y[r] = best;
  }
  return y;
}
