/**
 * `weft train`'s metrics: every step's scalars (and `m.summary` values) as TensorBoard event
 * files and as JSON lines in `metrics.jsonl`, both in the run's log directory. The tags are the
 * same in both: `train/*`, `eval/*`, `memory/peak_bytes/<device>`, `pipeline/idle/<device>`,
 * `summary/<name>`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as weft from '../index.js';
import { CliError } from './cli-error.js';

/** What one step contributes besides its StepResult. */
export interface StepExtras {
  readonly tokensPerS: number;
  /** Device names in device order (for the per-device tags). */
  readonly devices: readonly string[];
  /** Eval loss (and perplexity for a language model) when this step evaluated. */
  readonly evaluation?: Readonly<Record<string, number>>;
}

/**
 * The log directory of a run: `--logdir`, else `<save dir>.logs` beside the checkpoint (outside
 * it, so that replacing or retiring a checkpoint never touches the logs), else none.
 *
 * @example
 * logDir(undefined, 'ck') // 'ck.logs'
 */
export function logDir(logdir: string | undefined, save: string | undefined): string | undefined {
  if (logdir !== undefined) return logdir;
  return save === undefined ? undefined : `${save.replace(/[\\/]+$/, '')}.logs`;
}

/** The scalars of one step, by tag. */
export function stepScalars(r: weft.StepResult, x: StepExtras, memory: weft.MemoryReport | undefined): Record<string, number> {
  const out: Record<string, number> = { 'train/loss': r.loss, 'train/lr': r.lr, 'train/step_ms': r.ms, 'train/tokens_per_s': x.tokensPerS };
  if (r.gradNorm !== undefined) out['train/grad_norm'] = r.gradNorm;
  if (r.lossScale !== undefined) {
    out['train/loss_scale'] = r.lossScale;
    out['train/skipped_steps'] = r.skippedSteps;
  }
  for (const [tag, v] of Object.entries(x.evaluation ?? {})) out[`eval/${tag}`] = v;
  r.idle.forEach((v, i) => {
    out[`pipeline/idle/${x.devices[i] ?? `cpu:${i}`}`] = v;
  });
  for (const [device, m] of Object.entries(memory ?? {})) out[`memory/peak_bytes/${device}`] = peakBytes(m);
  for (const [name, v] of Object.entries(r.summaries)) if (typeof v === 'number') out[`summary/${name}`] = v;
  return out;
}

/** A device's measured peak: its executors' peaks added (an interleaved device hosts several). */
function peakBytes(m: weft.MemoryReport[string]): number {
  const all = Array.isArray(m.measured) ? m.measured : [m.measured as (typeof m.measured & object)];
  return (all as { peak_total: number }[]).reduce((a, e) => a + e.peak_total, 0);
}

/** Writes a run's metrics to its log directory. */
export class RunLog {
  private readonly events: weft.summary.EventWriter;
  private readonly jsonl: number;

  private constructor(readonly dir: string) {
    try {
      fs.mkdirSync(dir, { recursive: true });
      this.jsonl = fs.openSync(path.join(dir, 'metrics.jsonl'), 'a');
    } catch (e) {
      throw new CliError(`--logdir ${dir}: ${(e as Error).message}`);
    }
    this.events = new weft.summary.EventWriter(dir);
  }

  /** The run's log, or undefined when it keeps none. Fails before training when `dir` is unwritable. */
  static open(dir: string | undefined): RunLog | undefined {
    return dir === undefined ? undefined : new RunLog(dir);
  }

  /** One step's scalars and histograms (`m.summary(..., 'histogram')`). */
  write(step: number, scalars: Readonly<Record<string, number>>, summaries: Readonly<Record<string, weft.SummaryValue>>): void {
    this.events.scalars(step, scalars);
    for (const [name, v] of Object.entries(summaries)) if (typeof v !== 'number') this.events.histogram(step, `summary/${name}`, v);
    const finite = Object.fromEntries(Object.entries(scalars).map(([k, v]) => [k, Number.isFinite(v) ? v : String(v)]));
    fs.writeSync(this.jsonl, `${JSON.stringify({ step, ...finite })}\n`);
  }

  /** Makes what was written readable (TensorBoard reads the file while it grows). */
  flush(): void {
    this.events.flush();
  }

  close(): void {
    this.events.flush();
    fs.closeSync(this.jsonl);
  }
}
