/**
 * Batches for `weft train`: llm.c token files or the byte-tokenised built-in corpus for the gpt,
 * and seeded synthetic data labelled by a fixed random "teacher" for the mlp (so loss can fall).
 */
import * as weft from '../index.js';
import type { CliMeta } from './checkpoint.js';
import { Rng } from '../rng.js';
import type { ModelSpec } from './run-spec.js';

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
export function batchSource(model: ModelSpec, batch: number, data: string | undefined, seed: number, resume?: CliMeta['data']): BatchSource {
  if (model.kind === 'gpt') return tokenSource(model.seq, batch, data, resume);
  return teacherSource(model.sizes, batch, seed, resume?.path === null ? resume.position : 0);
}

function tokenSource(seq: number, batch: number, data: string | undefined, resume: CliMeta['data'] | undefined): BatchSource {
  const loader = weft.data.tokenLoader({ batch, seq, ...(data !== undefined && { path: data }) });
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

/** Gaussian inputs labelled by the arg-max of a fixed random linear map. */
function teacherSource(sizes: readonly number[], batch: number, seed: number, start: number): BatchSource {
  const inputs = sizes[0] as number;
  const classes = sizes[sizes.length - 1] as number;
  const teacherRng = new Rng(seed * 2 + 1);
  const teacher = Float32Array.from({ length: inputs * classes }, () => teacherRng.normal());
  let drawn = start;
  return {
    next: () => {
      // One stream per batch index, so a resumed run continues where the saved one stopped.
      const rng = new Rng(Math.imul(seed + 1, 0x9e3779b1) ^ (drawn++ * 2 + 2));
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
