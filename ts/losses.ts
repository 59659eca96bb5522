/**
 * Losses, `m.losses.*`: each returns an f32 scalar, the mean over the rows of the batch.
 */
import { WeftShapeError } from './errors.js';
import type { ModelBuilder } from './model.js';
import type { Tensor } from './tensor.js';

/** The loss functions, bound to one model builder (`m.losses`). */
export class Losses {
  private readonly m: ModelBuilder;

  /** @internal */
  constructor(m: ModelBuilder) {
    this.m = m;
  }

  /**
   * Mean softmax cross-entropy of `logits` `[N, V]` (or `[B, T, V]`) against i32 class
   * `labels` `[N]` (or `[B, T]`).
   *
   * @example
   * return m.losses.softmaxCrossEntropy(logits, y);
   */
  softmaxCrossEntropy(logits: Tensor, labels: Tensor): Tensor {
    const v = logits.shape[logits.rank - 1];
    if (logits.rank < 2 || typeof v !== 'number') {
      throw new WeftShapeError(`cross_entropy: logits must be [N, V] or [B, T, V] with a fixed V, got ${logits.toString()} and labels ${labels.toString()}`);
    }
    const rows = logits.rank > 2 ? logits.reshape([-1, v]) : logits;
    const targets = labels.rank > 1 ? labels.reshape([-1]) : labels;
    return this.m.op('cross_entropy', [rows, targets]).mean(0);
  }

  /**
   * Mean squared error over every element.
   *
   * @example
   * return m.losses.meanSquaredError(pred, target);
   */
  meanSquaredError(prediction: Tensor, target: Tensor): Tensor {
    const d = prediction.sub(target);
    return d.mul(d).mean();
  }
}
