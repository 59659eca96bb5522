/**
 * Choosing the next token from a row of logits: temperature, top-k, top-p (nucleus), and a
 * seeded draw.
 */
import type { Rng } from './rng.js';

/** Sampling knobs. */
export interface SamplingOptions {
  /** 0 picks the arg-max (greedy). */
  readonly temperature: number;
  /** Keep only the K likeliest tokens; 0 keeps all. */
  readonly topK: number;
  /** Keep the fewest likeliest tokens whose probability sums to at least P (default 1: all). */
  readonly topP?: number;
}

/**
 * Draws a token id from `logits` (one row of length V).
 *
 * @example
 * sampleToken(new Float32Array([0, 5, 1]), { temperature: 0, topK: 0 }, rng) // 1
 */
export function sampleToken(logits: ArrayLike<number>, opts: SamplingOptions, rng: Rng): number {
  if (opts.temperature === 0) return argmax(logits);
  const order = candidates(logits, opts.topK);
  const top = logits[order[0] as number] as number;
  let weights = order.map((i) => Math.exp(((logits[i] as number) - top) / opts.temperature));
  let total = weights.reduce((a, b) => a + b, 0);
  const keep = nucleus(weights, total, opts.topP ?? 1);
  if (keep < weights.length) {
    weights = weights.slice(0, keep);
    total = weights.reduce((a, b) => a + b, 0);
  }
  let r = rng.uniform() * total;
  for (let k = 0; k < weights.length; k++) {
    r -= weights[k] as number;
    if (r < 0) return order[k] as number;
  }
  return order[weights.length - 1] as number;
}

/** How many of the (descending) weights make up at least `p` of `total` (at least one). */
function nucleus(weights: readonly number[], total: number, p: number): number {
  if (p >= 1) return weights.length;
  let sum = 0;
  for (let k = 0; k < weights.length; k++) {
    sum += weights[k] as number;
    if (sum >= p * total) return k + 1;
  }
  return weights.length;
}

/** Token ids by decreasing logit, cut to the top K (all when K is 0 or too big). */
function candidates(logits: ArrayLike<number>, topK: number): number[] {
  const ids = Array.from({ length: logits.length }, (_, i) => i);
  ids.sort((a, b) => (logits[b] as number) - (logits[a] as number));
  return topK > 0 && topK < ids.length ? ids.slice(0, topK) : ids;
}

/** The first index of the largest logit (HF's greedy choice too). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if ((logits[i] as number) > (logits[best] as number)) best = i;
  return best;
}
