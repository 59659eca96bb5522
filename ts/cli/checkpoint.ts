/**
 * What the CLI stores with a checkpoint (as the `meta` of `trainer.save`) and reads back before
 * building a model for `--resume` or `sample`: the model's shape, the tokenizer, the data
 * position.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as weft from '../index.js';
import { UsageError } from './args.js';
import type { ModelSpec } from './run-spec.js';

/** The CLI's part of a checkpoint. */
export interface CliMeta {
  readonly model: ModelSpec;
  /** `byte` when trained on byte-tokenised text (the built-in corpus), `gpt2` on a data set
   * prepared with GPT-2's tokenizer, else `file`. */
  readonly tokenizer: (typeof META_TOKENIZERS)[number];
  /** `loader`: the many-shard loader's position (epoch, shard, window), when it was used. */
  readonly data: { readonly path: string | null; readonly position: number; readonly loader?: weft.data.ShardLoaderState } | null;
  /** The optimizer and its options, the defaults of a resumed run. */
  readonly optimizer: weft.Optimizer;
  readonly seed: number;
  /** The run's total `--steps`, the default of a resumed run (absent in older checkpoints). */
  readonly steps?: number;
  /** The fraction of the training tokens held out for evaluation (`--eval-split`), if any. */
  readonly heldOut?: number;
}

/** A checkpoint directory as the CLI sees it. */
export interface SavedRun {
  /** The checkpoint's own directory: the newest complete save under the root given. */
  readonly dir: string;
  /** The root the user named (`--resume DIR`), which holds `dir`. */
  readonly root: string;
  readonly step: number;
  /** The global batch it was trained with (undefined in checkpoints that do not record it). */
  readonly batch: number | undefined;
  readonly meta: CliMeta;
}

/**
 * Reads the `weft.json` of the newest complete save under `root` (written by `trainer.save`;
 * `root` may also be one checkpoint directory) and the CLI meta stored in it.
 *
 * @example
 * const { meta, step, dir } = readCheckpoint('out/demo'); // dir: 'out/demo/step-00000200'
 */
export function readCheckpoint(root: string, flag = 'checkpoint'): SavedRun {
  let dir: string;
  let manifest: { step?: unknown; config?: { meta?: unknown; batch?: unknown } };
  try {
    dir = weft.checkpoint.latest(root);
    manifest = JSON.parse(fs.readFileSync(path.join(dir, 'weft.json'), 'utf8')) as typeof manifest;
  } catch (e) {
    throw new UsageError(`--${flag} ${root}: ${(e as Error).message}`);
  }
  const meta = manifest.config?.meta;
  const model = isRecord(meta) ? meta['model'] : undefined;
  if (!isRecord(meta) || !isRecord(model) || !['gpt', 'mlp'].includes(model['kind'] as string)) {
    throw new UsageError(`--${flag} ${root}: the checkpoint has no model description (it was not saved by weft train --save)`);
  }
  const bad = metaProblem(meta);
  if (bad) throw new UsageError(`--${flag} ${root}: weft.json: ${bad} (the file was edited or damaged)`);
  const batch = manifest.config?.batch;
  return { dir, root, step: typeof manifest.step === 'number' ? manifest.step : 0, batch: typeof batch === 'number' ? batch : undefined, meta: meta as unknown as CliMeta };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const isCount = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 1;
const isIndex = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

/** The tokenizers a CLI checkpoint may name: weft's own, or `file` (an llm.c token file). */
export const META_TOKENIZERS = ['byte', 'gpt2', 'file'] as const;

/**
 * What is wrong with a CLI meta read from a checkpoint (undefined when nothing): every field
 * a resumed or sampled run reads is checked as strictly as the tensors are.
 */
export function metaProblem(meta: Record<string, unknown>): string | undefined {
  const model = meta['model'] as Record<string, unknown>;
  if (model['kind'] === 'gpt') {
    const wrong = ['layers', 'heads', 'dim', 'seq', 'vocab'].find((k) => !isCount(model[k]));
    if (wrong) return `meta.model.${wrong} must be a positive integer, got ${JSON.stringify(model[wrong])}`;
  } else {
    const sizes = model['sizes'];
    if (!Array.isArray(sizes) || sizes.length < 2 || !sizes.every(isCount)) {
      return `meta.model.sizes must be a list of at least two positive integers, got ${JSON.stringify(sizes)}`;
    }
  }
  if (!(META_TOKENIZERS as readonly unknown[]).includes(meta['tokenizer'])) {
    return `meta.tokenizer must be one of ${META_TOKENIZERS.map((t) => `'${t}'`).join(', ')}, got ${JSON.stringify(meta['tokenizer'])}`;
  }
  const data = meta['data'];
  if (data !== null && !(isRecord(data) && (data['path'] === null || typeof data['path'] === 'string') && isIndex(data['position']))) {
    return `meta.data must be null or {path: string | null, position: a non-negative integer}, got ${JSON.stringify(data)}`;
  }
  const loader = isRecord(data) ? data['loader'] : undefined;
  if (loader !== undefined && !(isRecord(loader) && ['epoch', 'shard', 'window'].every((k) => isIndex(loader[k])))) {
    return `meta.data.loader must be {epoch, shard, window}, each a non-negative integer, got ${JSON.stringify(loader)}`;
  }
  const optimizer = meta['optimizer'];
  if (!isRecord(optimizer) || typeof optimizer['kind'] !== 'string') {
    return `meta.optimizer must be an object with a 'kind', got ${JSON.stringify(optimizer)}`;
  }
  if (!Number.isSafeInteger(meta['seed'])) return `meta.seed must be an integer, got ${JSON.stringify(meta['seed'])}`;
  if (meta['steps'] !== undefined && !isCount(meta['steps'])) return `meta.steps must be a positive integer, got ${JSON.stringify(meta['steps'])}`;
  const held = meta['heldOut'];
  if (held !== undefined && !(typeof held === 'number' && held > 0 && held < 1)) return `meta.heldOut must be a fraction between 0 and 1, got ${JSON.stringify(held)}`;
  return undefined;
}

/** The weights file inside a checkpoint directory. */
export function weightsFile(dir: string): string {
  return path.join(dir, 'model.safetensors');
}
