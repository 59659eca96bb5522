#!/usr/bin/env node
// Generation tokens/s with and without the key/value cache, in one run on the same weights:
// the built-in GPT at W2's shape (4 layers, 4 heads, width 256, vocabulary 4096) with a
// 256-token context, greedy, from a 16-token prompt. With the cache each new token costs one
// position; without it, a full-window forward. Prints both rates and their ratio.
//   node scripts/bench-generate.mjs [--tokens N] [--seq T]
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const weft = require(join(root, 'dist', 'index.js'));
const { gpt } = require(join(root, 'dist', 'models', 'gpt.js'));

const args = process.argv.slice(2);
const flag = (name, fallback) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback);
const tokens = flag('--tokens', 200);
const seq = flag('--seq', 256);
const shape = { layers: 4, heads: 4, dim: 256, seq, vocab: 4096, outputLogits: true };
const trainer = await weft.compile(gpt(shape), { batch: 1, seed: 1 });
const prompt = Array.from({ length: 16 }, (_, i) => (i * 37 + 5) % shape.vocab);

async function rate(cache) {
  await trainer.generate(prompt, { maxTokens: 4, temperature: 0, cache }); // warm-up
  const t0 = process.hrtime.bigint();
  const r = await trainer.generate(prompt, { maxTokens: tokens, temperature: 0, cache });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return { perS: r.tokens.length / s, r };
}

const cached = await rate(true);
const full = await rate(false);
const same = cached.r.tokens.every((t, i) => t === full.r.tokens[i]);
console.log(`gpt ${shape.layers}x${shape.dim}, context ${seq}, ${tokens} greedy tokens after a 16-token prompt, CPU`);
console.log(`  key/value cache:    ${cached.perS.toFixed(1)} tokens/s`);
console.log(`  full-window recompute: ${full.perS.toFixed(1)} tokens/s`);
console.log(`  cache speed-up: ${(cached.perS / full.perS).toFixed(2)}x (same tokens: ${same})`);
