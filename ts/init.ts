/**
 * Parameter initialisers: `weft.init.normal(0, 0.02)`. Deterministic: each parameter's random
 * stream derives from the run seed and the parameter's name, so a model initialises the same in
 * every device layout.
 */
import { WeftShapeError } from './errors.js';

/** A parameter initialiser. */
export type Init =
  | { readonly kind: 'zeros' }
  | { readonly kind: 'ones' }
  | { readonly kind: 'constant'; readonly value: number }
  | { readonly kind: 'normal'; readonly mean: number; readonly std: number }
  | { readonly kind: 'uniform'; readonly low: number; readonly high: number };

/** All zeros. @example m.param('b', [10], weft.init.zeros()) */
export function zeros(): Init {
  return Object.freeze({ kind: 'zeros' as const });
}

/** All ones. @example m.param('ln.weight', [64], weft.init.ones()) */
export function ones(): Init {
  return Object.freeze({ kind: 'ones' as const });
}

/** Every element `value`. @example m.param('scale', [1], weft.init.constant(0.5)) */
export function constant(value: number): Init {
  return Object.freeze({ kind: 'constant' as const, value });
}

/**
 * Normal(mean, std).
 *
 * @example
 * m.param('wte.weight', [vocab, dim], weft.init.normal(0, 0.02))
 */
export function normal(mean: number, std: number): Init {
  if (!(std >= 0)) throw new WeftShapeError(`init normal: std must be >= 0, got ${std}`);
  return Object.freeze({ kind: 'normal' as const, mean, std });
}

/**
 * Uniform on [low, high).
 *
 * @example
 * m.param('w', [in_, out], weft.init.uniform(-0.1, 0.1))
 */
export function uniform(low: number, high: number): Init {
  if (!(low <= high)) throw new WeftShapeError(`init uniform: low ${low} must be <= high ${high}`);
  return Object.freeze({ kind: 'uniform' as const, low, high });
}
