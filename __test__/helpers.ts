// Shared fixtures for the specs: a tiny MLP and a deterministic batch for it.
import * as weft from '../ts/index.js';

export const BATCH = 8;
export const FEATURES = 4;
export const CLASSES = 3;

/** A 4 -> 16 -> 3 MLP classifier with a `logits` output. */
export function tinyMlp(cfg: weft.Config = weft.config()): weft.Model {
  return weft.model(cfg, (m) => {
    const x = m.input('x', [null, FEATURES]);
    const y = m.input('y', [null], 'i32');
    const logits = m.nn.linear(m.nn.linear(x, 16, { name: 'fc1' }).relu(), CLASSES, { name: 'fc2' });
    m.output('logits', logits);
    return m.losses.softmaxCrossEntropy(logits, y);
  });
}

/** A fixed batch whose label is a simple function of the features (learnable). */
export function tinyBatch(): { x: Float32Array; y: Int32Array } {
  const x = new Float32Array(BATCH * FEATURES);
  const y = new Int32Array(BATCH);
  for (let r = 0; r < BATCH; r++) {
    for (let c = 0; c < FEATURES; c++) x[r * FEATURES + c] = Math.sin(1 + r * 7 + c * 3);
    y[r] = r % CLASSES;
  }
  return { x, y };
}
