/**
 * The built-in MLP classifier (W1 of BENCHMARKS.md): linear layers `fc0`, `fc1`, ... with ReLU
 * between them and a softmax cross-entropy loss.
 */
import * as weft from '../index.js';

/** The shape of an MLP. */
export interface MlpOptions {
  /** Layer widths from input to classes, e.g. `[784, 1024, 1024, 10]`. */
  readonly sizes: readonly number[];
  /** Also output the `[B, classes]` logits as `logits`. */
  readonly outputLogits?: boolean;
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
  return (m) => {
    const sizes = opts.sizes;
    let h = m.input('x', [null, sizes[0] as number]);
    const y = m.input('y', [null], 'i32');
    for (let i = 1; i < sizes.length; i++) {
      h = m.nn.linear(h, sizes[i] as number, { name: `fc${i - 1}` });
      if (i < sizes.length - 1) h = h.relu();
    }
    if (opts.outputLogits) m.output('logits', h);
    return m.losses.softmaxCrossEntropy(h, y);
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
