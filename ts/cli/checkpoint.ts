/**
 * What the CLI stores with a checkpoint (as the `meta` of `trainer.save`) and reads back before
 * building a model for `--resume` or `sample`: the model's shape, the tokenizer, the data
 * position.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as weft from '../index.js';
import { UsageError } from './args.js';
import type { ModelSpec } from './run-spec.js';

/** The CLI's part of a checkpoint. */
export interface CliMeta {
  readonly model: ModelSpec;
  /** `byte` when trained on byte-tokenised text (the built-in corpus), `gpt2` on a data set
   * prepared with GPT-2's tokenizer, else `file`. */
  readonly tokenizer: 'byte' | 'gpt2' | 'file';
  /** `loader`: the many-shard loader's position (epoch, shard, window), when it was used. */
  readonly data: { readonly path: string | null; readonly position: number; readonly loader?: weft.data.ShardLoaderState } | null;
  /** The optimizer and its options, the defaults of a resumed run. */
  readonly optimizer: weft.Optimizer;
  readonly seed: number;
}

/** A checkpoint directory as the CLI sees it. */
export interface SavedRun {
  readonly dir: string;
  readonly step: number;
  /** The global batch it was trained with (undefined in checkpoints that do not record it). */
  readonly batch: number | undefined;
  readonly meta: CliMeta;
}

/**
 * Reads `DIR/weft.json` (written by `trainer.save`) and the CLI meta stored in it.
 *
 * @example
 * const { meta, step } = readCheckpoint('out/demo');
 */
export function readCheckpoint(dir: string, flag = 'checkpoint'): SavedRun {
  const file = path.join(dir, 'weft.json');
  let manifest: { step?: unknown; config?: { meta?: unknown; batch?: unknown } };
  try {
    manifest = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof manifest;
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no weft.json there (not a checkpoint saved by weft train --save)' : (e as Error).message;
    throw new UsageError(`--${flag} ${dir}: ${why}`);
  }
  const meta = manifest.config?.meta as CliMeta | undefined;
  if (!meta || typeof meta !== 'object' || !meta.model || !['gpt', 'mlp'].includes(meta.model.kind)) {
    throw new UsageError(`--${flag} ${dir}: the checkpoint has no model description (it was not saved by weft train --save)`);
  }
  const batch = manifest.config?.batch;
  return { dir, step: typeof manifest.step === 'number' ? manifest.step : 0, batch: typeof batch === 'number' ? batch : undefined, meta };
}

/** The weights file inside a checkpoint directory. */
export function weightsFile(dir: string): string {
  return path.join(dir, 'model.safetensors');
}
