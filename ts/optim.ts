/**
 * Optimizers, PyTorch's semantics and defaults: `weft.optim.adamW({ lr })`. The options are
 * validated by the core when the model is compiled (unknown or inapplicable keys are errors).
 */

/** Options every optimizer accepts. */
export interface CommonOptions {
  /** Peak learning rate (default 1e-3). */
  readonly lr?: number;
  /** L2 penalty (SGD, Adam) or decoupled weight decay (AdamW; default 0.01 there, else 0). */
  readonly weightDecay?: number;
  /** Clip the global gradient norm to this value. */
  readonly gradClip?: number;
  /** Linear warm-up steps. */
  readonly warmup?: number;
  /** Learning-rate schedule after warm-up (default `constant`). */
  readonly schedule?: 'constant' | 'cosine';
  /** Step at which the cosine schedule reaches `minLr` (required for `cosine`). */
  readonly totalSteps?: number;
  /** The rate the cosine schedule decays to (default 0). */
  readonly minLr?: number;
}

/** Adam and AdamW options. */
export interface AdamOptions extends CommonOptions {
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
}

/** SGD options. */
export interface SgdOptions extends CommonOptions {
  readonly momentum?: number;
  readonly dampening?: number;
  readonly nesterov?: boolean;
}

/** A configured optimizer, as passed to `weft.compile`. */
export type Optimizer =
  | ({ readonly kind: 'adamw' } & AdamOptions)
  | ({ readonly kind: 'adam' } & AdamOptions)
  | ({ readonly kind: 'sgd' } & SgdOptions);

/**
 * AdamW (decoupled weight decay; default weight decay 0.01).
 *
 * @example
 * weft.compile(model, { batch: 8, optimizer: weft.optim.adamW({ lr: 3e-4, weightDecay: 0.1 }) });
 */
export function adamW(options: AdamOptions = {}): Optimizer {
  return Object.freeze({ ...options, kind: 'adamw' as const });
}

/**
 * Adam (L2 weight decay, default 0).
 *
 * @example
 * weft.optim.adam({ lr: 1e-3, beta2: 0.99 })
 */
export function adam(options: AdamOptions = {}): Optimizer {
  return Object.freeze({ ...options, kind: 'adam' as const });
}

/**
 * Stochastic gradient descent, with optional momentum and Nesterov.
 *
 * @example
 * weft.optim.sgd({ lr: 0.1, momentum: 0.9 })
 */
export function sgd(options: SgdOptions = {}): Optimizer {
  return Object.freeze({ ...options, kind: 'sgd' as const });
}
