/**
 * `weft sample`: rebuild a gpt from a checkpoint, on one device or the layout given with
 * `--dp/--pp/--tp/--devices`, and generate text through `trainer.generate` (key/value-cached
 * for the built-in GPT), decoding with the tokenizer the checkpoint names.
 */
import * as weft from '../index.js';
import type { ParsedArgs } from './args.js';
import { readCheckpoint, weightsFile } from './checkpoint.js';
import { UsageError } from './cli-error.js';
import type { Out } from './report.js';
import { Flags, type Layout, devicesSpec } from './run-spec.js';
import { buildModel } from './session.js';
import type { Io } from './train.js';

/** Text to ids and back, looked up by the name a checkpoint stores. */
export interface TextTokenizer {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  /** What an empty prompt starts from. */
  readonly start: readonly number[];
}

/** Ids as decimal numbers: any vocabulary, no tokenizer needed (`--tokenizer ids`). */
const IDS: TextTokenizer = {
  encode: (text) => text.split(/[\s,]+/).filter((s) => s !== '').map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`--tokenizer ids: the prompt must be token ids separated by spaces or commas, got '${s}'`);
    return n;
  }),
  decode: (ids) => ids.map((i) => ` ${i}`).join(''),
  start: [0],
};

/**
 * A tokenizer of the core's (`byte`, `gpt2`); unknown ids (a padded vocabulary) decode to U+FFFD.
 * An empty prompt starts at GPT-2's <|endoftext|>, or at a newline for bytes.
 */
function core(name: 'byte' | 'gpt2'): TextTokenizer {
  const tok = weft.data.tokenizer(name);
  return {
    encode: (text) => Array.from(tok.encode(text)),
    decode: (ids) => tok.decode(ids),
    start: [tok.endOfText ?? 10],
  };
}

/** Tokenizers by name (made when asked for). */
export const TOKENIZERS: Readonly<Record<string, () => TextTokenizer>> = { byte: () => core('byte'), gpt2: () => core('gpt2'), ids: () => IDS };

/** What to generate. */
export interface SampleRequest {
  readonly checkpoint: string;
  readonly prompt: string;
  readonly tokens: number;
  readonly sampling: { readonly temperature: number; readonly topK: number; readonly topP?: number };
  readonly seed: number;
  /** Text that ends generation (not printed). */
  readonly stop?: string;
  /** false: recompute the full window per token even when the model has a cache. */
  readonly cache?: boolean;
  /** The tokenizer's name; default: the checkpoint's. */
  readonly tokenizer?: string;
  /** Devices and layout to sample on (default one CPU device). */
  readonly layout?: { readonly devices: weft.Devices; readonly layout: Layout };
}

/**
 * Runs `weft sample`; resolves to the exit code.
 *
 * @example
 * await sampleCommand(parseArgs('sample', ['--checkpoint', 'out/demo', '--prompt', 'To be']), io);
 */
export async function sampleCommand(args: ParsedArgs, io: Io): Promise<number> {
  const f = new Flags(args);
  const checkpoint = f.str('checkpoint');
  if (checkpoint === undefined) throw new UsageError("'weft sample' needs --checkpoint DIR (a directory saved by weft train --save)");
  const stop = f.str('stop');
  const tokenizer = f.str('tokenizer');
  const layout = ['devices', 'dp', 'pp', 'tp'].some((n) => f.has(n)) ? devicesSpec(f) : undefined;
  await sample(
    {
      checkpoint,
      prompt: f.str('prompt') ?? '',
      tokens: f.num('tokens', 200),
      sampling: { temperature: f.num('temperature', 0.8), topK: f.num('top-k', 40), topP: f.num('top-p', 1) },
      seed: f.num('seed', 0),
      cache: !f.bool('no-cache'),
      ...(stop !== undefined && { stop }),
      ...(tokenizer !== undefined && { tokenizer }),
      ...(layout && { layout }),
    },
    io.out,
    io.err,
  );
  return 0;
}

/** The tokenizer for a checkpoint: `--tokenizer`, else the one it names. */
function tokenizerFor(req: SampleRequest, named: string, err: Out | undefined): TextTokenizer {
  // 'file': trained on a token file that names no tokenizer (an llm.c .bin); bytes are the
  // likeliest (weft's own encode + writeTokens), and --tokenizer says otherwise.
  const name = req.tokenizer ?? (named === 'file' ? 'byte' : named);
  const make = TOKENIZERS[name];
  if (!make) throw new UsageError(`--checkpoint ${req.checkpoint}: tokenizer '${name}' is not one weft ships (${Object.keys(TOKENIZERS).join(', ')}); pick one with --tokenizer`);
  if (req.tokenizer === undefined && named === 'file') err?.write(`note: ${req.checkpoint} was trained on a token file that names no tokenizer; decoding as bytes (--tokenizer ids prints ids)\n`);
  return make();
}

/**
 * Generates `tokens` tokens after `prompt` and writes prompt and continuation to `out` as they
 * come; notes (no key/value cache, an assumed tokenizer) go to `err`.
 *
 * @example
 * await sample({ checkpoint: 'out/demo', prompt: 'HAMLET.', tokens: 100, sampling: { temperature: 0.8, topK: 40 }, seed: 1 }, process.stdout);
 */
export async function sample(req: SampleRequest, out: Out, err?: Out): Promise<void> {
  const { meta, dir } = readCheckpoint(req.checkpoint);
  if (meta.model.kind !== 'gpt') throw new UsageError(`--checkpoint ${req.checkpoint}: sampling needs a gpt checkpoint, this one is an ${meta.model.kind}`);
  const tok = tokenizerFor(req, meta.tokenizer, err);
  const { devices, layout } = req.layout ?? { devices: weft.cpu(1), layout: { dp: 1, pp: 1, tp: 1 } };
  const model = buildModel(meta.model, weft.config(), true, layout.pp, layout.tp);
  const trainer = await weft.compile(model, { batch: layout.dp, devices, seed: req.seed });
  await trainer.loadWeights(weightsFile(dir));
  const prompt = tok.encode(req.prompt);
  out.write(req.prompt);
  const stream = textStream(tok, out, req.stop === undefined ? 0 : tok.encode(req.stop).length);
  const result = await trainer.generate(prompt.length > 0 ? prompt : tok.start, {
    maxTokens: req.tokens,
    ...req.sampling,
    seed: req.seed,
    cache: req.cache ?? true,
    ...(req.stop !== undefined && { stop: [tok.encode(req.stop)] }),
    onToken: stream.push,
  });
  if (result.note !== undefined) err?.write(`note: no key/value cache, each token recomputed the full window: ${result.note}\n`);
  stream.end(result.tokens);
}

/**
 * Writes decoded text as tokens arrive, holding back the last `holdback` tokens (a stop
 * sequence may be forming) and text that ends in U+FFFD (a character may be incomplete).
 */
function textStream(tok: TextTokenizer, out: Out, holdback: number): { push: (id: number) => void; end: (final: readonly number[]) => void } {
  const ids: number[] = [];
  let written = '';
  const flush = (text: string): void => {
    out.write(text.slice(written.length));
    written = text;
  };
  return {
    push: (id) => {
      ids.push(id);
      // The token completing a stop sequence arrives before generation sees the stop.
      const text = tok.decode(ids.slice(0, Math.max(0, ids.length - holdback)));
      if (!text.endsWith('\uFFFD') && text.startsWith(written)) flush(text);
    },
    end: (final) => {
      const text = tok.decode(final);
      if (text.startsWith(written)) flush(text);
      out.write('\n');
    },
  };
}
