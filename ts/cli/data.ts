/**
 * `weft data prepare FILE... --out DIR`: text and JSON Lines files tokenized in parallel into
 * llm.c `.bin` shards with a `data.json` manifest (the work is the core's `data::prepare`); on a
 * terminal a progress line shows bytes done and MB/s.
 */
import * as weft from '../index.js';
import type { ParsedArgs } from './args.js';
import { UsageError } from './cli-error.js';
import { Flags } from './run-spec.js';
import type { Io } from './train.js';

/**
 * Runs `weft data <subcommand>`; resolves to the exit code.
 *
 * @example
 * await dataCommand(parseArgs('data', ['prepare', 'book.txt', '--out', 'data/book']), io);
 */
export async function dataCommand(args: ParsedArgs, io: Io): Promise<number> {
  const [sub, ...inputs] = args.positional ?? [];
  if (sub !== 'prepare') throw new UsageError(`weft data: expected the subcommand 'prepare', got ${sub === undefined ? 'none' : `'${sub}'`}`);
  const f = new Flags(args);
  const out = f.str('out');
  if (out === undefined) throw new UsageError('weft data prepare: --out DIR is required');
  if (inputs.length === 0) throw new UsageError('weft data prepare: give at least one input file (text, or .jsonl with --field)');
  const started = Date.now();
  const tty = (io.err as { isTTY?: boolean }).isTTY === true && !f.bool('json');
  const m = weft.data.prepare({
    inputs,
    outDir: out,
    tokenizer: f.str('tokenizer') ?? 'gpt2',
    field: f.str('field') ?? 'text',
    valFraction: f.num('val-fraction', 0),
    shardTokens: f.num('shard-tokens', 1e8),
    ...(tty && { progress: (p) => io.err.write(`\r${progressLine(p, Date.now() - started)}`) }),
  });
  if (tty) io.err.write('\n');
  const secs = Math.max((Date.now() - started) / 1000, 1e-3);
  const tokens = (split: string) => m.shards.filter((s) => s.split === split).reduce((a, s) => a + s.tokens, 0);
  const bytes = await totalBytes(inputs);
  const summary = {
    out, tokenizer: m.tokenizer, vocab: m.vocab_size, documents: m.documents, shards: m.shards.length,
    trainTokens: tokens('train'), valTokens: tokens('val'), seconds: Number(secs.toFixed(2)), mbPerS: Number((bytes / 1e6 / secs).toFixed(2)), sha256: m.sha256,
  };
  if (f.bool('json')) io.out.write(`${JSON.stringify(summary)}\n`);
  else io.out.write(`${out}: ${summary.documents} documents -> ${summary.trainTokens} train + ${summary.valTokens} val tokens (${m.tokenizer}) in ${summary.shards} shards, ${summary.seconds}s, ${summary.mbPerS} MB/s\n`);
  return 0;
}

function progressLine(p: { bytesDone: number; bytesTotal: number; tokens: number }, ms: number): string {
  const width = 30;
  const frac = p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : 1;
  const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
  const mbs = p.bytesDone / 1e6 / Math.max(ms / 1000, 1e-3);
  return `[${bar}] ${(frac * 100).toFixed(1)}% ${(p.bytesDone / 1e6).toFixed(1)}/${(p.bytesTotal / 1e6).toFixed(1)} MB, ${mbs.toFixed(1)} MB/s, ${p.tokens} tokens`;
}

async function totalBytes(files: readonly string[]): Promise<number> {
  const fs = await import('node:fs/promises');
  let n = 0;
  for (const f of files) n += (await fs.stat(f)).size;
  return n;
}
