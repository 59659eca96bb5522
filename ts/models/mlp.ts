/**
 * The built-in MLP classifier (W1 of BENCHMARKS.md): linear layers `fc0`, `fc1`, ... with ReLU
 * between them and a softmax cross-entropy loss.
 */
import * as weft from '../index.js';
import { inStage, stageSizes } from './stages.js';

/** The shape of an MLP. */
export interface MlpOptions {
  /** Layer widths from input to classes, e.g. `[784, 1024, 1024, 10]`. */
  readonly sizes: readonly number[];
  /** Also output the `[B, classes]` logits as `logits`. */
  readonly outputLogits?: boolean;
  /**
   * Pipeline stages (default 1): the linear layers cut as evenly as possible into this many
   * `m.replicate({ deviceCount: 1, name: 'stage<i>' })` scopes, the loss with the last.
   * Parameter names do not change.
   */
  readonly stages?: number;
}

/**
 * The build function of an MLP: inputs `x` (f32 `[B, sizes[0]]`) and `y` (i32 `[B]`), returns
 * the mean cross-entropy.
 *
 * @example
 * const model = weft.model(weft.config(), mlpBuild({ sizes: [784, 1024, 1024, 10] }));
 */
export function mlpBuild(opts: MlpOptions): weft.BuildFn {
  checkSizes(opts.sizes);
  const sizes = opts.sizes;
  const layers = sizes.length - 1;
  const stages = opts.stages ?? 1;
  const perStage = stageSizes('mlp', layers, stages);
  const last = stages - 1;
  // Each input is made in the stage that reads it (x: the first, y: the last).
  return (m) => {
    let first = 0;
    const run = (s: number, h: weft.Tensor): weft.Tensor => {
      for (let i = first; i < first + (perStage[s] as number); i++) {
        h = m.nn.linear(h, sizes[i + 1] as number, { name: `fc${i}` });
        if (i < layers - 1) h = h.relu();
      }
      first += perStage[s] as number;
      return h;
    };
    const input = (): weft.Tensor => m.input('x', [null, sizes[0] as number]);
    let h: weft.Tensor | undefined;
    for (let s = 0; s < last; s++) h = inStage(m, s, stages, () => run(s, h ?? input()));
    // The loss joins the last stage's layers.
    return inStage(m, last, stages, () => {
      const logits = run(last, h ?? input());
      if (opts.outputLogits) m.output('logits', logits);
      return m.losses.softmaxCrossEntropy(logits, m.input('y', [null], 'i32'));
    });
  };
}

/**
 * An MLP model under `cfg` (default: an empty config).
 *
 * @example
 * const trainer = await weft.compile(mlp({ sizes: [784, 1024, 1024, 10] }), { batch: 256 });
 */
export function mlp(opts: MlpOptions, cfg: weft.Config = weft.config()): weft.Model {
  return weft.model(cfg, mlpBuild(opts));
}

/**
 * The number of parameters (weights and biases) of an MLP.
 *
 * @example
 * mlpParameterCount([784, 1024, 1024, 10]) // 1863690
 */
export function mlpParameterCount(sizes: readonly number[]): number {
  let n = 0;
  for (let i = 1; i < sizes.length; i++) n += ((sizes[i - 1] as number) + 1) * (sizes[i] as number);
  return n;
}

function checkSizes(sizes: readonly number[]): void {
  if (!Array.isArray(sizes) || sizes.length < 2 || sizes.some((s) => !Number.isInteger(s) || s < 1)) {
    throw new weft.WeftShapeError(`mlp: sizes must be at least two positive integers (inputs ... classes), got [${String(sizes)}]`);
  }
}
