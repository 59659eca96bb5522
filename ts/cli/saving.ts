/**
 * When `weft train` saves and what it checks first: `--save DIR` is a root of step directories
 * (the core's layout: `DIR/step-00000400/`, `DIR/latest`), `--save-every N` adds a save every N
 * steps, `--keep K` keeps the newest K. Everything a run will write is checked before step 1:
 * the save root is writable, the trace file's folder exists.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as weft from '../index.js';
import { CliError, UsageError } from './cli-error.js';
import type { Flags } from './run-spec.js';
import { STOPS, type StopReason } from './signals.js';

/** Where and how often a run saves. */
export interface SavePolicy {
  /** `--save DIR`: the checkpoint root (undefined: nothing is saved). */
  readonly dir: string | undefined;
  /** `--save-every N` (undefined: only at the end and on a stop request). */
  readonly every: number | undefined;
  /** `--keep K`: saves kept under `dir` (default 1). */
  readonly keep: number;
}

/**
 * `--save`, `--save-every`, `--keep`; the last two mean nothing without a place to save.
 *
 * @example
 * const policy = savePolicy(new Flags(parseArgs('train', ['--save', 'ck', '--save-every', '50'])));
 */
export function savePolicy(f: Flags): SavePolicy {
  const dir = f.str('save');
  const every = f.num('save-every');
  const keep = f.num('keep');
  const orphan = every !== undefined ? 'save-every' : keep !== undefined ? 'keep' : undefined;
  if (dir === undefined && orphan) throw new UsageError(`--${orphan} needs --save DIR (where the checkpoints go)`);
  return { dir, every, keep: keep ?? 1 };
}

/**
 * Fails now, not after the last step, when an output cannot be written: the trace file's
 * folder must exist and the save root must be writable (created if missing). Only the process
 * that writes files checks.
 */
export function checkOutputs(policy: SavePolicy, trace: string | undefined): void {
  if (trace !== undefined) {
    const folder = path.dirname(path.resolve(trace));
    if (!fs.statSync(folder, { throwIfNoEntry: false })?.isDirectory()) {
      throw new UsageError(`--trace ${trace}: the folder ${folder} does not exist (create it first)`);
    }
  }
  if (policy.dir !== undefined) {
    try {
      weft.checkpoint.checkWritable(policy.dir);
    } catch (e) {
      throw new CliError(`--save ${policy.dir}: ${(e as Error).message}`);
    }
  }
}

/** Whether a periodic save is due after `step`. */
export function periodicDue(policy: SavePolicy, step: number): boolean {
  return policy.dir !== undefined && policy.every !== undefined && weft.checkpoint.saveDue(step, policy.every);
}

/** Whether `root` holds a complete checkpoint to fall back on. */
export function hasCheckpoint(root: string): boolean {
  try {
    weft.checkpoint.latest(root);
    return true;
  } catch {
    return false;
  }
}

/**
 * The line a stopped run prints (to stderr) and its exit status: where the checkpoint went, or
 * that nothing was saved.
 */
export function stopReport(reason: StopReason, step: number, root: string | undefined, saved: string | undefined): { line: string; code: number } {
  const cause = reason === 'EPIPE' ? 'stdout was closed (broken pipe)' : `${reason} received`;
  const where = saved !== undefined
    ? `checkpoint saved to ${saved}; continue with --resume ${root}`
    : root !== undefined ? `the checkpoint in ${root} is already at this step` : 'nothing saved (no --save)';
  return { line: `stopped after step ${step}: ${cause}; ${where}\n`, code: STOPS[reason] };
}
