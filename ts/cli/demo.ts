/**
 * `weft demo`: train a small GPT on the built-in Shakespeare corpus for about a minute on the
 * CPU, save it, and print a sample, so that `npm run demo` shows what the model learned.
 */
import * as path from 'node:path';
import { type ParsedArgs, parseArgs } from './args.js';
import { Flags } from './run-spec.js';
import { sample } from './sample.js';
import { type Io, trainCommand } from './train.js';

/** The demo model: small enough for two cores, big enough to learn words and line breaks. */
const DEMO_MODEL = ['--model', 'gpt', '--layers', '2', '--heads', '4', '--dim', '128', '--seq', '64', '--vocab', '256'];
const DEMO_TRAINING = ['--batch', '16', '--lr', '2e-3', '--warmup', '20', '--schedule', 'cosine', '--grad-clip', '1'];
const DEMO_STEPS = 600;

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
    io.out.write(`weft demo: a 2-layer GPT (0.4 M parameters) learns byte-level Shakespeare for ${steps} steps on the CPU\n`);
  }
  const trainArgs = [...DEMO_MODEL, ...DEMO_TRAINING, '--steps', String(steps), '--seed', String(seed), '--save', out, ...(json ? ['--json'] : [])];
  const code = await trainCommand(parseArgs('train', trainArgs), io);
  if (code !== 0) return code;
  if (!json) io.out.write(`\nsample (weft sample --checkpoint ${out} --prompt 'HAMLET.' --tokens 300):\n\n`);
  const sampling = { temperature: 0.8, topK: 40 };
  await sample({ checkpoint: out, prompt: 'HAMLET.', tokens: 300, sampling, seed }, json ? io.err : io.out);
  return 0;
}
