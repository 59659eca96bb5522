/**
 * Pipeline stages of the built-in models: consecutive layers cut as evenly as possible into S
 * `m.replicate({ deviceCount: 1, name: 'stage<i>' })` scopes. Scopes do not prefix parameter
 * names, so a staged model keeps the names of the unstaged one.
 */
import * as weft from '../index.js';

/**
 * How many of `layers` consecutive layers each of `stages` stages gets: as even as possible, the
 * first `layers % stages` stages one more.
 *
 * @example
 * stageSizes(5, 2) // [3, 2]
 */
export function stageSizes(model: string, layers: number, stages: number): number[] {
  if (!Number.isInteger(stages) || stages < 1) {
    throw new weft.WeftShapeError(`${model}: stages must be a positive integer, got ${String(stages)}`);
  }
  if (stages > layers) {
    throw new weft.WeftShapeError(
      `${model}: ${stages} stages for ${layers} layer(s); each stage needs at least one layer, so stages must be at most ${layers}`,
    );
  }
  const base = Math.floor(layers / stages);
  return Array.from({ length: stages }, (_, s) => base + (s < layers % stages ? 1 : 0));
}

/**
 * Runs `fn` inside stage `s`'s scope when there are several stages, else directly; the scope
 * is `m.split({ deviceCount: tp })` when `tp` > 1 (tensor parallelism), else `m.replicate`.
 *
 * @example
 * const h = inStage(m, 0, 2, () => m.nn.linear(x, 64));
 */
export function inStage<T>(m: weft.ModelBuilder, s: number, stages: number, fn: () => T, tp = 1): T {
  if (stages <= 1) return fn();
  // With tensor parallelism every stage is a split scope over tp devices.
  return tp > 1 ? m.split({ deviceCount: tp, name: `stage${s}` }, fn) : m.replicate({ deviceCount: 1, name: `stage${s}` }, fn);
}
