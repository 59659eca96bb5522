/**
 * Training data, `weft.data.*`: llm.c `.bin` token files, llm.c's sequential loader, the
 * byte-level tokenizer and the built-in public-domain corpus (so demos train offline).
 */
import { WeftBatchError } from './errors.js';
import { type NativeBinding, call, native } from './native.js';

type NativeLoader = InstanceType<NativeBinding['NativeTokenLoader']>;

/** One `[B, T]` batch of tokens: `targets[i]` is the token after `inputs[i]`. */
export interface TokenBatch {
  readonly inputs: Int32Array;
  readonly targets: Int32Array;
  readonly shape: readonly [number, number];
}

/** Options of {@link tokenLoader}. */
export interface TokenLoaderOptions {
  /** An llm.c `.bin` file; the built-in corpus when omitted. */
  readonly path?: string;
  /** Rows per batch (B). */
  readonly batch: number;
  /** Tokens per row (T). */
  readonly seq: number;
}

/** llm.c's sequential loader: each batch reads B*T+1 tokens, then advances by B*T, wrapping at the end. */
export class TokenLoader {
  private readonly inner: NativeLoader;

  /** @internal Use {@link tokenLoader}. */
  constructor(inner: NativeLoader) {
    this.inner = inner;
  }

  /** Tokens in the file. */
  get tokenCount(): number {
    return call(() => this.inner.tokenCount());
  }

  /** Token index the next batch starts at. */
  get position(): number {
    return call(() => this.inner.position());
  }

  /** Resumes at a saved position. @example loader.seek(saved.position) */
  seek(position: number): void {
    call(() => this.inner.setPosition(position));
  }

  /** Back to the first batch. @example loader.reset() */
  reset(): void {
    call(() => this.inner.reset());
  }

  /**
   * The next batch.
   *
   * @example
   * const { inputs, targets } = loader.next();
   * await trainer.step({ idx: inputs, targets });
   */
  next(): TokenBatch {
    const b = call(() => this.inner.nextBatch());
    return Object.freeze({ inputs: b.inputs, targets: b.targets, shape: [b.shape[0] ?? 0, b.shape[1] ?? 0] as const });
  }
}

/**
 * A loader over a token file or the built-in corpus.
 *
 * @example
 * const loader = weft.data.tokenLoader({ batch: 8, seq: 64 }); // built-in corpus
 */
export function tokenLoader(options: TokenLoaderOptions): TokenLoader {
  const { batch, seq } = options;
  if (!Number.isInteger(batch) || batch < 1 || !Number.isInteger(seq) || seq < 1) {
    throw new WeftBatchError(`token loader: batch and seq must be positive integers, got batch=${batch}, seq=${seq}`);
  }
  return new TokenLoader(call(() => new (native().NativeTokenLoader)(options.path ?? null, batch, seq)));
}

/** The tokens of an llm.c `.bin` file. @example const tokens = weft.data.readTokens('train.bin'); */
export function readTokens(path: string): Uint16Array {
  return call(() => native().readTokens(path));
}

/** Writes tokens as an llm.c version-1 `.bin` file. @example weft.data.writeTokens('t.bin', tokens); */
export function writeTokens(path: string, tokens: Uint16Array): void {
  call(() => native().writeTokenFile(path, tokens));
}

/** The built-in corpus text (public-domain Shakespeare). @example weft.data.corpus().length */
export function corpus(): string {
  return call(() => native().corpusText());
}

/** Byte-level tokens of `text`. @example weft.data.encode('hi') // Uint16Array [104, 105] */
export function encode(text: string): Uint16Array {
  return call(() => native().encodeText(text));
}

/** Tokens back to text (invalid bytes become U+FFFD). @example weft.data.decode(tokens) */
export function decode(tokens: Uint16Array | readonly number[]): string {
  const t = tokens instanceof Uint16Array ? tokens : Uint16Array.from(tokens);
  return call(() => native().decodeTokens(t));
}

/** The byte-level tokenizer's vocabulary size (256). @example weft.data.vocabSize() */
export function vocabSize(): number {
  return call(() => native().tokenizerVocabSize());
}
