/**
 * `weft demo`: train a small GPT on the built-in Shakespeare corpus for about a minute on the
 * CPU, save it, and print a sample, so that `npm run demo` shows what the model learned.
 */
import * as path from 'node:path';
import { gptParameterCount } from '../models/gpt.js';
import { type ParsedArgs, parseArgs } from './args.js';
import { Flags } from './run-spec.js';
import { sample } from './sample.js';
import { type Io, trainCommand } from './train.js';

/** The demo model: small enough for two cores, big enough to learn words, names and verse. */
const SHAPE = { layers: 3, heads: 4, dim: 128, seq: 64, vocab: 256 };
const DEMO_MODEL = ['--model', 'gpt', ...Object.entries(SHAPE).flatMap(([k, v]) => [`--${k}`, String(v)])];
const DEMO_TRAINING = ['--batch', '32', '--lr', '3e-3', '--schedule', 'cosine', '--grad-clip', '1'];
/** About a minute on two idle cores; the loss reaches about 1.7 nats per byte. */
const DEMO_STEPS = 1000;
const PROMPT = 'Ham.\n';

/**
 * Runs `weft demo`; resolves to the exit code.
 *
 * @example
 * await demoCommand(parseArgs('demo', ['--steps', '50']), io);
 */
export async function demoCommand(args: ParsedArgs, io: Io): Promise<number> {
  const f = new Flags(args);
  const out = f.str('out') ?? path.join('out', 'demo');
  const steps = f.num('steps', DEMO_STEPS);
  const seed = f.num('seed', 0);
  const json = f.bool('json');
  if (!json) {
    const millions = (gptParameterCount(SHAPE) / 1e6).toFixed(2);
    io.out.write(`weft demo: a ${SHAPE.layers}-layer GPT (${millions} M parameters) learns byte-level Shakespeare for ${steps} steps on one CPU device\n`);
  }
  const warmup = String(Math.min(50, Math.floor(steps / 10)));
  const trainArgs = [...DEMO_MODEL, ...DEMO_TRAINING, '--warmup', warmup, '--steps', String(steps), '--seed', String(seed), '--save', out, ...(json ? ['--json'] : [])];
  const code = await trainCommand(parseArgs('train', trainArgs), io);
  if (code !== 0) return code;
  if (!json) io.out.write(`\nsample (prompt 'Ham.', 400 bytes, temperature 0.8, top-k 40; more: weft sample --checkpoint ${out}):\n\n`);
  const sampling = { temperature: 0.8, topK: 40 };
  await sample({ checkpoint: out, prompt: PROMPT, tokens: 400, sampling, seed }, json ? io.err : io.out, io.err);
  return 0;
}
