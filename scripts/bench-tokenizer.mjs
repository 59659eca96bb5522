#!/usr/bin/env node
// Tokenizer speed: GPT-2 BPE encoding in MB/s, weft's native tokenizer (tiktoken-rs behind
// weft.data.tokenizer('gpt2')) against npm js-tiktoken (pure JS, bundled ranks) in the same run
// on the same text; ids are checked equal first. The text is the built-in corpus (English) plus
// a multilingual block, repeated to about 4 MB. Prints medians of 5 runs and the ratio.
// (npm `tiktoken`'s WASM build is not benchmarked: it is not a dependency of weft.)
//   node scripts/bench-tokenizer.mjs [--mb 4]
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getEncoding } from 'js-tiktoken';
import { median } from './lib.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const weft = createRequire(import.meta.url)(join(root, 'dist', 'index.js'));
const args = process.argv.slice(2);
const mb = args.includes('--mb') ? Number(args[args.indexOf('--mb') + 1]) : 4;

const multilingual = '日本語のテキストと中文文本，还有한국어 텍스트. Emoji 🎭🦀 café naïve Ελληνικά Русский   \t\n';
const unit = `${weft.data.corpus()}\n${multilingual.repeat(200)}`;
const text = unit.repeat(Math.max(1, Math.ceil((mb * 1e6) / Buffer.byteLength(unit)))).slice(0, mb * 1e6);
const bytes = Buffer.byteLength(text);

const ours = weft.data.tokenizer('gpt2');
const js = getEncoding('gpt2');
const a = ours.encode(text);
const b = js.encode(text, [], []);
if (a.length !== b.length || a.some((x, i) => x !== b[i])) throw new Error('weft and js-tiktoken disagree on the benchmark text');

function mbPerS(encode) {
  const times = [];
  for (let i = 0; i < 5; i++) {
    const t0 = process.hrtime.bigint();
    encode(text);
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return bytes / 1e6 / median(times);
}
const weftRate = mbPerS((t) => ours.encode(t));
const jsRate = mbPerS((t) => js.encode(t, [], []));
console.log(`text: ${(bytes / 1e6).toFixed(2)} MB, ${a.length} tokens (ids equal in both)`);
console.log(`weft gpt2 (tiktoken-rs, one thread): ${weftRate.toFixed(2)} MB/s`);
console.log(`js-tiktoken 1.0.21:                 ${jsRate.toFixed(2)} MB/s`);
console.log(`ratio weft / js-tiktoken: ${(weftRate / jsRate).toFixed(2)}x`);
