/**
 * Checkpoint roots: where the newest complete save is, whether a root can be written, and
 * periodic saves for a training loop (the API's `--save-every`). The layout and its guarantees
 * are the core's (`crates/core/src/checkpoint/steps.rs`); this module only calls it.
 */
import { WeftConfigError } from './errors.js';
import { call, native } from './native.js';
import type { Trainer } from './trainer.js';

/**
 * The checkpoint directory `path` stands for: the newest complete save under a root written by
 * `trainer.save`, or `path` itself when it holds one checkpoint. Throws `WeftCheckpointError`
 * naming `path` when there is none.
 *
 * @example
 * weft.checkpoint.latest('ckpt') // 'ckpt/step-00000400'
 */
export function latest(path: string): string {
  return call(() => native().checkpointDir(path));
}

/**
 * Creates `root` if missing and throws `WeftIoError` naming it unless checkpoints can be
 * written there: call it before a long run, not after.
 *
 * @example
 * weft.checkpoint.checkWritable('ckpt');
 */
export function checkWritable(root: string): void {
  call(() => native().checkCheckpointRoot(root));
}

/** Whether a save every `every` steps is due after step `step` (1-based count). @example weft.checkpoint.saveDue(100, 50) // true */
export function saveDue(step: number, every: number): boolean {
  return step > 0 && step % every === 0;
}

/** When and where {@link periodic} saves. */
export interface PeriodicOptions {
  /** The checkpoint root. */
  readonly dir: string;
  /** Save after every step whose count divides by this. */
  readonly every: number;
  /** Saves kept under `dir` (default 1). */
  readonly keep?: number;
  /** The meta stored with each save, computed when it is written. */
  readonly meta?: () => unknown;
}

/** Periodic saves of one trainer; call {@link PeriodicSaver.afterStep} after each step. */
export interface PeriodicSaver {
  /** Saves when the trainer's step count is a multiple of `every`; resolves to the new step
   * directory, or undefined when no save was due. */
  afterStep(): Promise<string | undefined>;
  /** The step of the last save made through this saver (undefined before the first). */
  readonly lastSavedStep: number | undefined;
}

/**
 * Periodic saves for a training loop.
 *
 * @example
 * const saver = weft.checkpoint.periodic(trainer, { dir: 'ckpt', every: 100, keep: 3 });
 * for (;;) { await trainer.step(batch); await saver.afterStep(); }
 */
export function periodic(trainer: Trainer, options: PeriodicOptions): PeriodicSaver {
  if (!Number.isSafeInteger(options.every) || options.every < 1) {
    throw new WeftConfigError(`checkpoint.periodic: every must be a positive integer, got ${options.every}`);
  }
  let lastSavedStep: number | undefined;
  return {
    async afterStep() {
      const step = trainer.stepCount;
      if (!saveDue(step, options.every) || step === lastSavedStep) return undefined;
      const dir = await trainer.save(options.dir, options.meta?.(), { keep: options.keep });
      lastSavedStep = step;
      return dir;
    },
    get lastSavedStep() {
      return lastSavedStep;
    },
  };
}
