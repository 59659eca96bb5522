/**
 * Stopping a training run cleanly. The first SIGINT or SIGTERM, or a broken stdout pipe (`weft
 * train --json | head -1`), asks the run to stop after its current step: it saves (with `--save`),
 * says where, and exits with the conventional status, 128 + the signal's number. A second signal
 * exits at once; checkpoints stay consistent anyway, since a save is made visible by one
 * rename (a save cut short leaves the previous one loadable).
 */
import type { Out } from './report.js';

/** Why a run was asked to stop, with the exit status it ends with. */
export const STOPS = { SIGINT: 130, SIGTERM: 143, EPIPE: 141 } as const;
export type StopReason = keyof typeof STOPS;

/** A running training loop's view of stop requests. */
export interface StopWatch {
  /** The first stop request, if one came. */
  readonly requested: StopReason | undefined;
  /** Stop watching: signals get their default behaviour back. */
  dispose(): void;
}

/** The watch of the training loop in progress (one per process). */
let active: { request(reason: StopReason): void } | undefined;

/**
 * Watches SIGINT and SIGTERM (and broken pipes reported through {@link brokenPipe}) while a
 * run trains; `err` gets a line on each.
 *
 * @example
 * const stops = watchStops(process.stderr);
 * try { while (!stops.requested) await step(); } finally { stops.dispose(); }
 */
export function watchStops(err: Out): StopWatch {
  let requested: StopReason | undefined;
  const request = (reason: StopReason): void => {
    if (requested === undefined) {
      requested = reason;
      if (reason !== 'EPIPE') err.write(`\n${reason}: finishing this step and saving; send it again to exit at once\n`);
      return;
    }
    if (reason === 'EPIPE') return;
    err.write(`${reason} again: exiting now; the last complete checkpoint is kept\n`);
    process.exit(STOPS[reason]);
  };
  const onInt = (): void => request('SIGINT');
  const onTerm = (): void => request('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  active = { request };
  return {
    get requested() {
      return requested;
    },
    dispose() {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      active = undefined;
    },
  };
}

/**
 * stdout's reader went away (EPIPE). A training run stops after its step and saves, exiting
 * 141 (never 0 without the checkpoint asked for); any other command has nothing to lose and
 * ends quietly. Returns whether a run took the request.
 */
export function brokenPipe(): boolean {
  if (!active) return false;
  active.request('EPIPE');
  return true;
}
