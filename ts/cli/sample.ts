/**
 * `weft sample`: rebuild a gpt from a checkpoint at batch 1 and generate text autoregressively
 * with temperature and top-k sampling from a seeded generator.
 */
import * as weft from '../index.js';
import type { ParsedArgs } from './args.js';
import { readCheckpoint, weightsFile } from './checkpoint.js';
import { UsageError } from './cli-error.js';
import type { Out } from './report.js';
import { Flags, type ModelSpec } from './run-spec.js';
import { Rng } from './rng.js';
import { type SamplingOptions, sampleToken } from './sampling.js';
import { buildModel } from './session.js';
import type { Io } from './train.js';

/** What to generate. */
export interface SampleRequest {
  readonly checkpoint: string;
  readonly prompt: string;
  readonly tokens: number;
  readonly sampling: SamplingOptions;
  readonly seed: number;
}

type GptSpec = Extract<ModelSpec, { kind: 'gpt' }>;

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
  await sample(
    {
      checkpoint,
      prompt: f.str('prompt') ?? '',
      tokens: f.num('tokens', 200),
      sampling: { temperature: f.num('temperature', 0.8), topK: f.num('top-k', 40) },
      seed: f.num('seed', 0),
    },
    io.out,
  );
  return 0;
}

/**
 * Generates `tokens` byte-level tokens after `prompt` and writes prompt and continuation to
 * `out` as they come.
 *
 * @example
 * await sample({ checkpoint: 'out/demo', prompt: 'HAMLET.', tokens: 100, sampling: { temperature: 0.8, topK: 40 }, seed: 1 }, process.stdout);
 */
export async function sample(req: SampleRequest, out: Out): Promise<void> {
  const { meta } = readCheckpoint(req.checkpoint);
  if (meta.model.kind !== 'gpt') throw new UsageError(`--checkpoint ${req.checkpoint}: sampling needs a gpt checkpoint, this one is an ${meta.model.kind}`);
  if (meta.tokenizer !== 'byte') {
    throw new UsageError(`--checkpoint ${req.checkpoint}: trained on a token file whose tokenizer weft does not ship; sample decodes byte-level tokens only`);
  }
  const spec = meta.model;
  const trainer = await weft.compile(buildModel(spec, weft.config(), true), { batch: 1, seed: req.seed });
  await trainer.loadWeights(weightsFile(req.checkpoint));
  const context = Array.from(weft.data.encode(req.prompt));
  out.write(req.prompt);
  if (context.length === 0) context.push(10); // an empty prompt starts after a newline
  const decoder = new TextDecoder('utf-8');
  const rng = new Rng(req.seed);
  for (let i = 0; i < req.tokens; i++) {
    const next = await nextToken(trainer, spec, context, req.sampling, rng);
    context.push(next);
    out.write(decoder.decode(Uint8Array.of(next), { stream: true }));
  }
  out.write(`${decoder.decode()}\n`);
}

/**
 * The model's next token after `context`. The window is the last `seq` tokens placed at the
 * start of the row and padded on the right: attention is causal, so the padding cannot change
 * the logits at the last real position, which are exactly those of an unpadded run.
 */
async function nextToken(trainer: weft.Trainer, spec: GptSpec, context: readonly number[], sampling: SamplingOptions, rng: Rng): Promise<number> {
  const window = context.slice(-spec.seq);
  const idx = new Int32Array(spec.seq);
  idx.set(window);
  const { outputs } = await trainer.evaluate({ idx, targets: new Int32Array(spec.seq) });
  const logits = outputs['logits'];
  if (!logits) throw new Error('internal: the sampling model has no logits output');
  const row = window.length - 1;
  // Only byte tokens can be printed: ids >= 256 of a padded vocabulary are never drawn.
  const width = Math.min(spec.vocab, 256);
  const start = row * spec.vocab;
  return sampleToken(logits.data.subarray(start, start + width), sampling, rng);
}
