import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import * as weft from '../ts/index.js';
import { gpt, gptOptionsFromHf } from '../ts/models/gpt.js';

// A random GPT-2 saved by Hugging Face `save_pretrained`, with HF's greedy `generate` and the
// logits after two PyTorch AdamW steps (scripts/fixtures/hf_gpt2.py; CI never runs PyTorch).
const HF = join(__dirname, 'fixtures', 'hf_gpt2');

interface Expected {
  readonly seq: number;
  readonly greedy: { readonly prompt: number[]; readonly tokens: number[] };
  readonly train: {
    readonly idx: number[]; readonly targets: number[]; readonly batch: number; readonly steps: number;
    readonly optimizer: { readonly lr: number; readonly beta1: number; readonly beta2: number; readonly eps: number; readonly weightDecay: number };
    readonly losses: number[]; readonly probe: number[]; readonly rows: number[]; readonly logits: number[][];
  };
}
const expected = JSON.parse(fs.readFileSync(join(HF, 'expected.json'), 'utf8')) as Expected;

/** The fixture's GPT-2 at context 32 (its 48-row wpe is cut on load), shape from config.json. */
async function hfTrainer(opts: { batch?: number; stages?: number; tp?: number; devices?: number; outputLogits?: boolean } = {}): Promise<weft.Trainer> {
  const shape = gptOptionsFromHf(HF);
  if (!shape) throw new Error('the fixture has no config.json');
  const { batch = 1, stages = 1, tp = 1, devices = 1, outputLogits = true } = opts;
  const model = gpt({ ...shape, seq: expected.seq, stages, tp, outputLogits });
  const o = expected.train.optimizer;
  const trainer = await weft.compile(model, { batch, devices: weft.cpu(devices), optimizer: weft.optim.adamW(o) });
  await trainer.loadWeights(HF);
  return trainer;
}

test('config.json gives the shape; the HF file loads as it is', async (t) => {
  t.deepEqual(gptOptionsFromHf(HF), { layers: 2, heads: 2, dim: 32, seq: 48, vocab: 96, eps: 1e-5 });
  const trainer = await hfTrainer();
  t.deepEqual(await trainer.loadWeights(HF), [], 'transformers 5 saves neither mask buffers nor the tied head');
});

test('greedy generation equals Hugging Face generate(do_sample=False), with and without the cache', async (t) => {
  const trainer = await hfTrainer();
  const { prompt, tokens } = expected.greedy;
  const cached = await trainer.generate(prompt, { maxTokens: tokens.length, temperature: 0 });
  t.true(cached.cached, cached.note);
  t.deepEqual(cached.tokens, tokens);
  const full = await trainer.generate(prompt, { maxTokens: tokens.length, temperature: 0, cache: false });
  t.false(full.cached);
  t.is(full.note, 'the cache was turned off (cache: false)');
  t.deepEqual(full.tokens, tokens);
});

test('sampling gives the same tokens with and without the cache, past the context, and stops on a stop sequence', async (t) => {
  const trainer = await hfTrainer();
  const opts = { maxTokens: 70, temperature: 0.9, topK: 20, topP: 0.9, seed: 5 };
  const cached = await trainer.generate([1, 2, 3], opts);
  const full = await trainer.generate([1, 2, 3], { ...opts, cache: false });
  t.deepEqual(cached.tokens, full.tokens);
  t.is(cached.tokens.length, 70, 'twice past the 32-position context');
  const again = await trainer.generate([1, 2, 3], opts);
  t.deepEqual(again.tokens, cached.tokens, 'the same seed gives the same tokens');
  const stop = cached.tokens.slice(10, 12);
  const first = cached.tokens.findIndex((_, i) => cached.tokens[i] === stop[0] && cached.tokens[i + 1] === stop[1]);
  const stopped = await trainer.generate([1, 2, 3], { ...opts, stop: [stop] });
  t.true(stopped.stopped);
  t.deepEqual(stopped.tokens, cached.tokens.slice(0, first));
});

test('sampling works under a pipeline and under tensor parallelism (cached and full-window)', async (t) => {
  const { prompt, tokens } = expected.greedy;
  for (const layout of [{ stages: 2, devices: 2 }, { tp: 2, devices: 2 }, { batch: 2, devices: 2 }]) {
    const trainer = await hfTrainer(layout);
    for (const cache of [true, false]) {
      const r = await trainer.generate(prompt, { maxTokens: tokens.length, temperature: 0, cache });
      t.deepEqual(r.tokens, tokens, `${JSON.stringify(layout)} cache ${cache}`);
    }
  }
});

test('a model without GPT-2 structure falls back to the full window and says why', async (t) => {
  const model = weft.model(weft.config(), (m) => {
    const idx = m.input('idx', [null, 8], 'i32');
    const targets = m.input('targets', [null, 8], 'i32');
    const table = m.param('emb', [16, 16], weft.init.normal(0, 1));
    const logits = m.op('embedding', [table, idx]).reshape([-1, 16]);
    m.output('logits', logits);
    return m.losses.softmaxCrossEntropy(logits, targets);
  });
  const trainer = await weft.compile(model, { batch: 1 });
  const r = await trainer.generate([3], { maxTokens: 4, temperature: 0 });
  t.false(r.cached);
  t.is(r.note, "the model is not a GPT-2: it has no parameter 'wte.weight'");
  t.is(r.tokens.length, 4);
  await t.throwsAsync(trainer.generate([3], { topP: 0 }), { instanceOf: weft.WeftConfigError, message: 'generate: topP must be in (0, 1], got 0' });
  await t.throwsAsync(trainer.generate([], {}), { instanceOf: weft.WeftConfigError, message: 'generate: the prompt has no tokens; give at least one token id' });
});

test('HF round trip: the HF file in, two AdamW steps, HF format out; the logits equal PyTorch\'s', async (t) => {
  const { train } = expected;
  const trainer = await hfTrainer({ batch: train.batch });
  const losses: number[] = [];
  for (let i = 0; i < train.steps; i++) losses.push((await trainer.step({ idx: train.idx, targets: train.targets })).loss);
  losses.forEach((l, i) => t.true(Math.abs(l - (train.losses[i] as number)) < 1e-4, `step ${i + 1}: ${l} vs PyTorch ${train.losses[i]}`));
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'weft-hf-'));
  try {
    const saved = await trainer.save(dir);
    t.is(saved, join(dir, 'step-00000002'));
    const config = JSON.parse(fs.readFileSync(join(saved, 'config.json'), 'utf8')) as Record<string, unknown>;
    t.like(config, { model_type: 'gpt2', n_layer: 2, n_head: 2, n_embd: 32, vocab_size: 96, n_positions: 32, layer_norm_epsilon: 1e-5, activation_function: 'gelu_new' });
    // The saved folder is itself an HF checkpoint: shape from its config.json, weights as they
    // are (the root stands for its newest save).
    const shape = gptOptionsFromHf(dir);
    t.is(shape?.seq, 32);
    const fresh = await weft.compile(gpt({ ...(shape as NonNullable<typeof shape>), outputLogits: true }), { batch: 1 });
    await fresh.loadWeights(dir);
    const { outputs } = await fresh.evaluate({ idx: train.probe, targets: new Int32Array(32) });
    const logits = outputs['logits']?.data as Float32Array;
    let worst = 0;
    train.rows.forEach((r, k) => {
      const want = train.logits[k] as number[];
      want.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - (logits[r * 96 + j] as number)))));
    });
    t.true(worst < 2e-4, `logits differ from PyTorch's by ${worst}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a wpe shorter than the context is an error naming both', async (t) => {
  const shape = gptOptionsFromHf(HF) as NonNullable<ReturnType<typeof gptOptionsFromHf>>;
  const trainer = await weft.compile(gpt({ ...shape, seq: 64 }), { batch: 1 });
  await t.throwsAsync(trainer.loadWeights(HF), {
    instanceOf: weft.WeftCheckpointError,
    message: `checkpoint ${join(HF, 'model.safetensors')}: wpe.weight has 48 positions but the model's context (--seq) is 64; use --seq 48 or less`,
  });
});
