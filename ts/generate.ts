/**
 * `trainer.generate(prompt, options)`: autoregressive generation from token ids. A model with
 * GPT-2's structure (the built-in GPT, Hugging Face GPT-2) runs through the core's key/value
 * cache, so each new token costs one position; any other model with an `idx` input and a
 * `logits` output recomputes the full window per token, and the result says why. Both paths
 * see the same window and share one sampler, so they give the same tokens.
 */
import { WeftConfigError, WeftUnsupportedError } from './errors.js';
import type { NativeDecoder } from './native.js';
import { Rng } from './rng.js';
import { sampleToken } from './sampling.js';
import type { Batch, InputShape, OutputValue } from './trainer.js';

/** Options of {@link Trainer.generate}. */
export interface GenerateOptions {
  /** New tokens to generate at most (default 64). */
  readonly maxTokens?: number;
  /** Softmax temperature; 0 is greedy (arg-max, HF's `do_sample=False`). Default 1. */
  readonly temperature?: number;
  /** Keep only the K likeliest tokens (0, the default, keeps all). */
  readonly topK?: number;
  /** Nucleus sampling: keep the likeliest tokens summing to P (default 1: all). */
  readonly topP?: number;
  /** Seed of the draws (default 0): the same seed gives the same tokens. */
  readonly seed?: number;
  /** Stop after any of these: a token id, or a sequence of ids. The stop is not returned. */
  readonly stop?: ReadonlyArray<number | readonly number[]>;
  /** Use the key/value cache when the model has one (default true). */
  readonly cache?: boolean;
  /** Called with each new token id as it is drawn (stop tokens included). */
  readonly onToken?: (id: number) => void;
}

/** What {@link Trainer.generate} returns. */
export interface GenerateResult {
  /** The new token ids, without the prompt and without a stop sequence. */
  readonly tokens: number[];
  /** Whether a stop sequence ended generation (else `maxTokens` did). */
  readonly stopped: boolean;
  /** Whether the key/value cache was used. */
  readonly cached: boolean;
  /** Why the cache was not used (undefined when it was). */
  readonly note: string | undefined;
}

/** What generation needs from a trainer. */
export interface GenerateHost {
  readonly inputs: readonly InputShape[];
  /** The trainer's cached decoder (its `reason` set when the model has none). */
  decoder(): NativeDecoder;
  /** The named outputs on a global batch. */
  evaluate(batch: Batch): Promise<Readonly<Record<string, OutputValue>>>;
}

/** Logits after a window of tokens, then after each token pushed onto it. */
interface Stepper {
  /** The longest window (the model's context). */
  readonly context: number;
  restart(window: readonly number[]): Promise<ArrayLike<number>>;
  push(token: number): Promise<ArrayLike<number>>;
}

/**
 * Generates up to `maxTokens` ids after `prompt`. When the window reaches the model's context
 * it restarts from its last half (learned positions cannot slide), on both paths alike.
 */
export async function generate(host: GenerateHost, prompt: ArrayLike<number>, opts: GenerateOptions): Promise<GenerateResult> {
  const o = checkOptions(opts);
  if (prompt.length === 0) throw new WeftConfigError('generate: the prompt has no tokens; give at least one token id');
  const decoder = o.cache ? host.decoder() : undefined;
  const note = o.cache ? (decoder?.reason ?? undefined) : 'the cache was turned off (cache: false)';
  const stepper = decoder && note === undefined ? cachedStepper(decoder) : windowStepper(host);
  let window = Array.from(prompt).slice(-stepper.context);
  let logits = await stepper.restart(window);
  const rng = new Rng(o.seed);
  const tokens: number[] = [];
  for (let i = 0; i < o.maxTokens; i++) {
    const next = sampleToken(logits, o, rng);
    tokens.push(next);
    o.onToken?.(next);
    const hit = o.stop.find((s) => s.length <= tokens.length && s.every((id, k) => tokens[tokens.length - s.length + k] === id));
    if (hit) return { tokens: tokens.slice(0, tokens.length - hit.length), stopped: true, cached: note === undefined, note };
    if (i === o.maxTokens - 1) break;
    if (window.length < stepper.context) {
      window.push(next);
      logits = await stepper.push(next);
    } else {
      window = [...window, next].slice(-Math.ceil(stepper.context / 2));
      logits = await stepper.restart(window);
    }
  }
  return { tokens, stopped: false, cached: note === undefined, note };
}

/** The options with their defaults, each checked. */
function checkOptions(opts: GenerateOptions): Required<Omit<GenerateOptions, 'onToken' | 'stop'>> & Pick<GenerateOptions, 'onToken'> & { stop: number[][] } {
  const o = { maxTokens: 64, temperature: 1, topK: 0, topP: 1, seed: 0, cache: true, ...opts };
  const bad = (what: string, v: unknown): never => {
    throw new WeftConfigError(`generate: ${what}, got ${String(v)}`);
  };
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 0) bad('maxTokens must be a non-negative integer', o.maxTokens);
  if (!(o.temperature >= 0) || !Number.isFinite(o.temperature)) bad('temperature must be a finite number >= 0', o.temperature);
  if (!Number.isInteger(o.topK) || o.topK < 0) bad('topK must be a non-negative integer (0 keeps all)', o.topK);
  if (!(o.topP > 0 && o.topP <= 1)) bad('topP must be in (0, 1]', o.topP);
  if (!Number.isInteger(o.seed)) bad('seed must be an integer', o.seed);
  const stop = (opts.stop ?? []).map((s) => (typeof s === 'number' ? [s] : [...s]));
  if (stop.some((s) => s.length === 0 || !s.every(Number.isInteger))) bad('stop must hold token ids or non-empty sequences of them', JSON.stringify(opts.stop));
  return { ...o, stop };
}

function cachedStepper(d: NativeDecoder): Stepper {
  return {
    context: d.positions,
    restart: async (window) => {
      d.reset();
      let logits: ArrayLike<number> = [];
      for (const t of window) logits = d.feed(t);
      return logits;
    },
    push: async (token) => d.feed(token),
  };
}

/**
 * Full-window recomputation: the window at the start of row 0 of `idx`, padded on the right.
 * Attention is causal, so the padding cannot change the logits at the last real position.
 */
function windowStepper(host: GenerateHost): Stepper {
  const idx = host.inputs.find((i) => i.name === 'idx');
  const other = host.inputs.filter((i) => i.name !== 'idx' && i.name !== 'targets');
  if (!idx || idx.dtype !== 'i32' || idx.shape.length !== 2 || other.length > 0) {
    const names = host.inputs.map((i) => `'${i.name}' ${i.dtype} [${i.shape.join(', ')}]`).join(', ');
    throw new WeftUnsupportedError(`generate: the model needs an i32 input 'idx' [B, T] (and at most 'targets'); its inputs are ${names}`);
  }
  const [rows, context] = idx.shape as [number, number];
  let window: number[] = [];
  const run = async (): Promise<ArrayLike<number>> => {
    const batch: Record<string, Int32Array> = { idx: new Int32Array(rows * context) };
    (batch['idx'] as Int32Array).set(window);
    if (host.inputs.some((i) => i.name === 'targets')) batch['targets'] = new Int32Array(rows * context);
    const logits = (await host.evaluate(batch))['logits'];
    if (!logits) throw new WeftUnsupportedError("generate: the model has no 'logits' output (m.output('logits', ...)) to sample from");
    const vocab = logits.data.length / (rows * context);
    const row = window.length - 1;
    return logits.data.subarray(row * vocab, (row + 1) * vocab);
  };
  return {
    context,
    restart: async (w) => {
      window = [...w];
      return run();
    },
    push: async (token) => {
      window.push(token);
      return run();
    },
  };
}
