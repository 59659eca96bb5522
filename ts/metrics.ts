/**
 * Metrics, `m.metrics.*`: forward-only values to report (they take no gradient), EPL's
 * `argmax`/`equal` composed into an accuracy.
 */
import { WeftShapeError } from './errors.js';
import type { ModelBuilder } from './model.js';
import type { Tensor } from './tensor.js';

/** The metrics, bound to one model builder (`m.metrics`). */
export class Metrics {
  private readonly m: ModelBuilder;

  /** @internal */
  constructor(m: ModelBuilder) {
    this.m = m;
  }

  /**
   * The fraction of rows whose largest logit (ties to the lowest index) is the i32 label: an f32
   * scalar. `logits` `[N, V]` (or `[B, T, V]`), `labels` `[N]` (or `[B, T]`). Under `m.split`
   * with vocabulary-sharded logits it is computed without gathering them.
   *
   * @example
   * m.output('accuracy', m.metrics.accuracy(logits, y));
   */
  accuracy(logits: Tensor, labels: Tensor): Tensor {
    const v = logits.shape[logits.rank - 1];
    if (logits.rank < 2 || typeof v !== 'number' || labels.dtype !== 'i32') {
      throw new WeftShapeError(`accuracy: logits must be [N, V] or [B, T, V] with a fixed V and labels i32, got ${logits.toString()} and labels ${labels.toString()}`);
    }
    const rows = logits.rank > 2 ? logits.reshape([-1, v]) : logits;
    const targets = labels.rank > 1 ? labels.reshape([-1]) : labels;
    return this.m.equal(this.m.argmax(rows), targets).mean(0);
  }
}
