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
  /**
   * Hold out the last `fraction` of the tokens (at least one) for evaluation: `part: 'train'`
   * reads the tokens before the cut only, `'eval'` the tokens after it, so training never
   * sees an evaluation token.
   */
  readonly heldOut?: { readonly fraction: number; readonly part: 'train' | 'eval' };
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
  const held = options.heldOut;
  return new TokenLoader(call(() => new (native().NativeTokenLoader)(options.path ?? null, batch, seq, held?.fraction ?? null, held?.part ?? null)));
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

/** A tokenizer weft ships: `byte` (one id per UTF-8 byte) or `gpt2` (GPT-2's BPE, as tiktoken). */
export interface Tokenizer {
  readonly name: string;
  readonly vocabSize: number;
  /** The id between documents (`gpt2`: 50256); undefined for `byte`. */
  readonly endOfText: number | undefined;
  encode(text: string): Uint32Array;
  /** Text of `tokens`; bytes that are not UTF-8 and unknown ids become U+FFFD. */
  decode(tokens: Uint32Array | readonly number[]): string;
}

/**
 * A tokenizer by name.
 *
 * @example
 * const gpt2 = weft.data.tokenizer('gpt2');
 * gpt2.encode('Hello, world!') // Uint32Array [15496, 11, 995, 0]
 */
export function tokenizer(name: 'byte' | 'gpt2' | string): Tokenizer {
  const info = call(() => native().tokenizerInfo(name));
  return Object.freeze({
    name: info.name,
    vocabSize: info.vocabSize,
    endOfText: info.endOfText ?? undefined,
    encode: (text: string) => call(() => native().tokenizerEncode(name, text)),
    decode: (tokens: Uint32Array | readonly number[]) => {
      const t = tokens instanceof Uint32Array ? tokens : Uint32Array.from(tokens);
      return call(() => native().tokenizerDecode(name, t));
    },
  });
}

/** Options of {@link prepare}. */
export interface PrepareOptions {
  /** Text files (one document each) and JSON Lines files (`.jsonl`: one document per line). */
  readonly inputs: readonly string[];
  readonly outDir: string;
  /** Default `gpt2`. */
  readonly tokenizer?: string;
  /** JSON Lines key of the document text (default `text`). */
  readonly field?: string;
  /** Share of tokens written as `val_*.bin` shards (default 0). */
  readonly valFraction?: number;
  /** Tokens per shard (default 1e8, as llm.c's FineWeb shards). */
  readonly shardTokens?: number;
  /** Called after each batch of about 64 MB. */
  readonly progress?: (p: { bytesDone: number; bytesTotal: number; tokens: number }) => void;
}

/** A shard of a prepared data set, as `data.json` lists it. */
export interface ShardInfo {
  readonly path: string;
  readonly split: 'train' | 'val';
  readonly tokens: number;
  readonly sha256: string;
}

/** `data.json`: the manifest `prepare` writes next to its shards. */
export interface DataManifest {
  readonly format: string;
  readonly tokenizer: string;
  readonly vocab_size: number;
  readonly end_of_text: number | null;
  readonly bin_version: number;
  readonly sources: readonly string[];
  readonly documents: number;
  readonly shards: readonly ShardInfo[];
  readonly sha256: string;
}

/**
 * Tokenizes text and JSON Lines files in parallel into llm.c `.bin` shards plus `data.json`.
 *
 * @example
 * const m = weft.data.prepare({ inputs: ['book.txt'], outDir: 'data/book', valFraction: 0.05 });
 */
export function prepare(options: PrepareOptions): DataManifest {
  const o = {
    inputs: [...options.inputs],
    outDir: options.outDir,
    tokenizer: options.tokenizer ?? 'gpt2',
    field: options.field ?? 'text',
    valFraction: options.valFraction ?? 0,
    shardTokens: options.shardTokens ?? 1e8,
  };
  return JSON.parse(call(() => native().prepareData(o, options.progress ?? null))) as DataManifest;
}

/** `--data` resolved: the train shards, and the manifest of a prepared directory. */
export interface DataSet {
  readonly shards: readonly string[];
  readonly manifest: DataManifest | undefined;
}

/**
 * Resolves a shard, a comma-separated list, a glob, or a prepared directory / its `data.json`.
 *
 * @example
 * weft.data.resolve('data/book').manifest?.tokenizer // 'gpt2'
 */
export function resolve(spec: string): DataSet {
  const d = call(() => native().resolveData(spec));
  return { shards: d.shards, manifest: d.manifest ? (JSON.parse(d.manifest) as DataManifest) : undefined };
}

/** Throws `WeftConfigError` when a model of `vocab` ids cannot hold the data's. @example weft.data.checkVocab('data/book', 50257) */
export function checkVocab(spec: string, vocab: number): void {
  call(() => native().checkDataVocab(spec, vocab));
}

/** Where a {@link ShardLoader} is; store it to resume. */
export interface ShardLoaderState {
  readonly epoch: number;
  readonly shard: number;
  readonly window: number;
}

/** Batches from many shards in a seeded order: shuffled shards and windows, per epoch. */
export class ShardLoader {
  private readonly inner: InstanceType<NativeBinding['NativeShardLoader']>;
  private readonly shape: readonly [number, number];

  /** @internal Use {@link shardLoader}. */
  constructor(inner: InstanceType<NativeBinding['NativeShardLoader']>, shape: readonly [number, number]) {
    this.inner = inner;
    this.shape = shape;
  }

  get tokenCount(): number {
    return call(() => this.inner.tokenCount());
  }

  get state(): ShardLoaderState {
    return call(() => this.inner.state());
  }

  /** Resumes at a saved state. @example loader.seek(saved) */
  seek(state: ShardLoaderState): void {
    call(() => this.inner.setState({ ...state }));
  }

  /** The next `[B, T]` batch. @example const { inputs, targets } = loader.next(); */
  next(): TokenBatch {
    const b = call(() => this.inner.nextBatch());
    return Object.freeze({ inputs: b.inputs, targets: b.targets, shape: this.shape });
  }
}

/**
 * A seeded loader over shard files.
 *
 * @example
 * const loader = weft.data.shardLoader({ shards: weft.data.resolve('data/book').shards, batch: 8, seq: 64, seed: 0 });
 */
export function shardLoader(options: { shards: readonly string[]; batch: number; seq: number; seed: number }): ShardLoader {
  const { batch, seq, seed } = options;
  return new ShardLoader(call(() => new (native().NativeShardLoader)([...options.shards], seed, batch, seq)), [batch, seq]);
}

/** One worker's shards under EPL's IO slicing, and whether slicing applied. */
export interface WorkerShards {
  readonly files: readonly string[];
  readonly kind: 'sliced' | 'too-few-files' | 'uneven';
}

/**
 * EPL's division of `files` among workers with `localReplicas` each (`io.slicing`).
 *
 * @example
 * weft.data.sliceShards(['a', 'b', 'c', 'd'], [2, 2], 1) // { files: ['b', 'd'], kind: 'sliced' }
 */
export function sliceShards(files: readonly string[], localReplicas: readonly number[], worker: number, options: { dropLastFiles?: boolean; unbalanced?: boolean } = {}): WorkerShards {
  const o = { dropLastFiles: options.dropLastFiles ?? false, unbalanced: options.unbalanced ?? false };
  return call(() => native().sliceShards([...files], [...localReplicas], worker, o)) as WorkerShards;
}
