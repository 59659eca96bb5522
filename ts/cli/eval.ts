/**
 * `weft train --eval-every N`: evaluation during training under the run's compiled layout
 * (`trainer.evaluate`, no recompile). The eval data is `--eval-data`, or the held-out tail of the
 * training data (`--eval-split`, default 0.01 without `--eval-data`); the same first K batches
 * (`--eval-batches`) are evaluated every time, so evaluations compare.
 */
import type * as weft from '../index.js';
import { UsageError } from './cli-error.js';
import { type HeldOut, batchSource } from './data-source.js';
import type { Flags, RunSpec } from './run-spec.js';

/** The fraction held out when `--eval-every` is given without `--eval-data` or `--eval-split`. */
const DEFAULT_SPLIT = 0.01;
const DEFAULT_BATCHES = 10;

/** The flags of evaluation and metrics, which only `weft train` takes. */
export const WATCH_FLAGS = ['eval-every', 'eval-data', 'eval-split', 'eval-batches', 'eval-batch', 'logdir'] as const;

/** The evaluation flags, checked. */
export interface EvalSpec {
  readonly every: number;
  readonly batches: number;
  readonly batch: number;
  readonly data: string | undefined;
  /** `--eval-split`: the training side of the cut goes to the training source. */
  readonly split: number | undefined;
}

/**
 * The run's evaluation, or undefined without `--eval-every` (any other eval flag then is an
 * error, not ignored). A resumed run's `--eval-split` defaults to the cut it was trained with.
 *
 * @example
 * evalSpec(flags, spec) // { every: 50, batches: 10, batch: 8, data: undefined, split: 0.01 }
 */
export function evalSpec(f: Flags, spec: RunSpec, savedSplit?: number): EvalSpec | undefined {
  const every = f.num('eval-every');
  if (every === undefined) {
    const stray = WATCH_FLAGS.filter((n) => n !== 'logdir').find((n) => f.has(n));
    if (stray !== undefined) throw new UsageError(`--${stray} needs --eval-every N`);
    return undefined;
  }
  const data = f.str('eval-data');
  if (data !== undefined && f.has('eval-split')) throw new UsageError('--eval-data and --eval-split both say what to evaluate on; give one of them');
  if (data !== undefined && spec.model.kind !== 'gpt') throw new UsageError('--eval-data applies to --model gpt (the mlp evaluates on held-out synthetic batches)');
  const split = data === undefined ? f.num('eval-split', savedSplit ?? DEFAULT_SPLIT) : undefined;
  if (split !== undefined && split >= 1) throw new UsageError(`--eval-split ${split}: the held-out fraction must be below 1`);
  return { every, batches: f.num('eval-batches', DEFAULT_BATCHES), batch: f.num('eval-batch', spec.batch), data, split };
}

/**
 * The fraction of a gpt's training tokens held out (the tail cut off for evaluation), or
 * undefined when it trains on all of them. A resumed run keeps its checkpoint's cut even without
 * evaluation flags, so it never trains on its held-out tail and its data position means what it
 * meant; a different cut on resume is an error.
 */
export function heldOutFraction(e: EvalSpec | undefined, spec: RunSpec, resumed: { readonly heldOut?: number } | undefined): number | undefined {
  if (spec.model.kind !== 'gpt') return undefined;
  const given = e?.split;
  if (resumed === undefined || given === undefined || given === resumed.heldOut) return resumed?.heldOut ?? given;
  throw new UsageError(
    resumed.heldOut === undefined
      ? `--eval-split ${given}: the run being resumed trained on all of its data, so none of it can be held out now; evaluate on --eval-data instead`
      : `--eval-split ${given}: the run being resumed held out the last ${resumed.heldOut} of its data; give --eval-split ${resumed.heldOut} or leave it out`,
  );
}

/** What the training source reads under a held-out cut: the tokens before it. */
export function trainPart(fraction: number | undefined): HeldOut | undefined {
  return fraction === undefined ? undefined : { fraction, part: 'train' };
}

/** Runs the evaluations of a run. */
export class Evaluator {
  /** The first K batches of the eval data, read up front (a missing or short file fails before step 1). */
  private readonly cached: readonly weft.Batch[];

  constructor(
    readonly spec: EvalSpec,
    private readonly run: RunSpec,
  ) {
    const heldOut: HeldOut | undefined = spec.split === undefined ? undefined : { fraction: spec.split, part: 'eval' };
    const source = batchSource(run.model, spec.batch, spec.data ?? run.data, run.seed, undefined, undefined, heldOut);
    this.cached = Array.from({ length: spec.batches }, () => source.next());
  }

  /** Whether the step just finished evaluates: every N steps, and after the run's last. */
  due(step: number, last: boolean): boolean {
    return step % this.spec.every === 0 || last;
  }

  /** Eval loss over the K batches (their mean: equal rows each), and perplexity for a language model. */
  async evaluate(trainer: weft.Trainer): Promise<Record<string, number>> {
    let sum = 0;
    for (const b of this.cached) sum += (await trainer.evaluate(b)).loss;
    const loss = sum / this.cached.length;
    return this.run.model.kind === 'gpt' ? { loss, perplexity: Math.exp(loss) } : { loss };
  }

  /** Where the eval data comes from, for the closing line. */
  describe(): string {
    const { data, split } = this.spec;
    if (data !== undefined) return data;
    if (this.run.model.kind === 'mlp') return 'held-out synthetic batches';
    return `the held-out last ${(split ?? 0) * 100}% of ${this.run.data ?? 'the built-in corpus'}`;
  }
}
