/**
 * How `weft train` reports progress: JSON lines (`--json`), a progress bar on a terminal, or a
 * plain log line every few steps when the output is piped.
 */
import { ProgressBar, formatDuration, formatRate } from './progress.js';

/** One finished step as reported. */
export interface StepLine {
  readonly step: number;
  readonly loss: number;
  /** The learning rate the step used (the schedule's, so a resumed run shows it continuing). */
  readonly lr: number;
  readonly ms: number;
  readonly tokensPerS: number;
  /** Steps of this run done so far (1-based). */
  readonly done: number;
  readonly gradNorm?: number | undefined;
  /** `loss` (and `perplexity` for a language model) when this step evaluated. */
  readonly evaluation?: Readonly<Record<string, number>> | undefined;
}

/** A progress reporter. */
export interface Reporter {
  step(line: StepLine): void;
  /** The run ended (normally or not); `summary` is printed in JSON mode. */
  finish(summary: Record<string, unknown> | undefined): void;
}

/** A writable text stream (stdout in production, a buffer in tests). */
export interface Out {
  write(s: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/**
 * Picks the reporter: JSON lines when asked, a bar on a TTY, else a log line every ~5%, at least
 * every 10 s, and at every evaluation.
 *
 * @example
 * const rep = reporter(true, 100, process.stdout);
 */
export function reporter(json: boolean, total: number, out: Out, now: () => number = Date.now): Reporter {
  if (json) return jsonReporter(out);
  if (out.isTTY) return barReporter(total, out);
  return logReporter(total, out, now);
}

function round(v: number, digits: number): number {
  return Number.isFinite(v) ? Number(v.toFixed(digits)) : v;
}

function jsonReporter(out: Out): Reporter {
  return {
    step: (l) => {
      const line: Record<string, unknown> = { step: l.step, loss: l.loss, ms: round(l.ms, 3), tokens_per_s: round(l.tokensPerS, 1), lr: l.lr, grad_norm: l.gradNorm };
      for (const [k, v] of Object.entries(l.evaluation ?? {})) line[`eval_${k}`] = v;
      out.write(`${JSON.stringify(line)}\n`);
    },
    finish: (summary) => {
      if (summary) out.write(`${JSON.stringify({ summary })}\n`);
    },
  };
}

function barReporter(total: number, out: Out): Reporter {
  const bar = new ProgressBar(total, out);
  return {
    step: (l) => bar.update(l.done, l.loss, l.tokensPerS, l.evaluation?.loss),
    finish: () => bar.finish(),
  };
}

/** Piped output gets a line at least this often, however long a step takes. */
const LOG_EVERY_MS = 10_000;

function logReporter(total: number, out: Out, now: () => number): Reporter {
  const every = Math.max(1, Math.round(total / 20));
  const started = now();
  let printed = started;
  return {
    step: (l) => {
      const t = now();
      const due = l.done % every === 0 || l.done === total || l.done === 1 || t - printed >= LOG_EVERY_MS || l.evaluation !== undefined;
      if (!due) return;
      printed = t;
      const eta = ((t - started) / 1000 / l.done) * (total - l.done);
      out.write(`step ${l.step} (${l.done}/${total})  loss ${l.loss.toFixed(4)}${evalText(l.evaluation)}  ${l.ms.toFixed(1)} ms  ${formatRate(l.tokensPerS)} tok/s  ETA ${formatDuration(eta)}\n`);
    },
    finish: () => undefined,
  };
}

/** `  eval loss 2.1000 (ppl 8.17)`, or nothing when the step did not evaluate. */
export function evalText(e: Readonly<Record<string, number>> | undefined): string {
  if (e?.loss === undefined) return '';
  return `  eval loss ${e.loss.toFixed(4)}${e.perplexity === undefined ? '' : ` (ppl ${e.perplexity.toFixed(2)})`}`;
}
