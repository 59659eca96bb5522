import test from 'ava';
import * as weft from '../ts/index.js';
import { gpt, gptParameterCount } from '../ts/models/gpt.js';
import { mlp, mlpParameterCount } from '../ts/models/mlp.js';

const TINY = { layers: 2, heads: 2, dim: 16, seq: 8, vocab: 32 } as const;

/** Hugging Face GPT-2's parameter names and shapes (Conv1D weights [in, out]), in its order. */
function hfGpt2Parameters(o: { layers: number; dim: number; seq: number; vocab: number }): [string, number[]][] {
  const c = o.dim;
  const out: [string, number[]][] = [['wte.weight', [o.vocab, c]], ['wpe.weight', [o.seq, c]]];
  for (let i = 0; i < o.layers; i++) {
    out.push(
      [`h.${i}.ln_1.weight`, [c]], [`h.${i}.ln_1.bias`, [c]],
      [`h.${i}.attn.c_attn.weight`, [c, 3 * c]], [`h.${i}.attn.c_attn.bias`, [3 * c]],
      [`h.${i}.attn.c_proj.weight`, [c, c]], [`h.${i}.attn.c_proj.bias`, [c]],
      [`h.${i}.ln_2.weight`, [c]], [`h.${i}.ln_2.bias`, [c]],
      [`h.${i}.mlp.c_fc.weight`, [c, 4 * c]], [`h.${i}.mlp.c_fc.bias`, [4 * c]],
      [`h.${i}.mlp.c_proj.weight`, [4 * c, c]], [`h.${i}.mlp.c_proj.bias`, [c]],
    );
  }
  out.push(['ln_f.weight', [c]], ['ln_f.bias', [c]]);
  return out;
}

function count(params: readonly weft.ParameterSpec[]): number {
  return params.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
}

function std(values: Float32Array): number {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
}

test('the gpt has exactly Hugging Face GPT-2\'s parameter names, shapes and order', (t) => {
  const model = gpt(TINY);
  t.deepEqual(model.parameters.map((p) => [p.name, [...p.shape]]), hfGpt2Parameters(TINY));
});

test('the gpt ties its output projection to wte (no lm_head parameter)', (t) => {
  const names = gpt(TINY).parameters.map((p) => p.name);
  t.false(names.some((n) => n.includes('lm_head')));
  t.is(names.filter((n) => n === 'wte.weight').length, 1);
});

test('W2 (layers 4, heads 4, dim 256, seq 128, vocab 4096) has 4,240,896 parameters, the 4.24 M of BENCHMARKS.md', (t) => {
  const w2 = { layers: 4, heads: 4, dim: 256, seq: 128, vocab: 4096 };
  t.is(count(gpt(w2).parameters), 4_240_896);
  t.is(gptParameterCount(w2), 4_240_896);
});

test('GPT-124M counts 124,439,808 parameters, as Hugging Face gpt2', (t) => {
  t.is(gptParameterCount({ layers: 12, heads: 12, dim: 768, seq: 1024, vocab: 50257 }), 124_439_808);
});

test('the gpt has inputs idx and targets, and outputs logits only when asked', (t) => {
  const plain = gpt(TINY);
  t.deepEqual(plain.inputs.map((i) => [i.name, i.dtype, [...i.shape]]), [
    ['idx', 'i32', [null, 8]],
    ['targets', 'i32', [null, 8]],
  ]);
  t.deepEqual(plain.outputs, []);
  const sampling = gpt({ ...TINY, outputLogits: true });
  t.deepEqual(sampling.outputs.map((o) => o.name), ['logits']);
  t.is(sampling.outputs[0]?.shape[1], 32);
});

test('the gpt initialises like GPT-2: normal(0, 0.02), scaled c_proj, zero biases, unit layer norms', async (t) => {
  const o = { layers: 8, heads: 2, dim: 64, seq: 16, vocab: 256 };
  const trainer = await weft.compile(gpt(o), { batch: 1, seed: 3 });
  const near = (got: number, want: number) => t.true(Math.abs(got - want) < 0.1 * want, `std ${got} vs ${want}`);
  near(std(trainer.getParameter('wte.weight')), 0.02);
  near(std(trainer.getParameter('h.0.attn.c_attn.weight')), 0.02);
  near(std(trainer.getParameter('h.3.mlp.c_fc.weight')), 0.02);
  near(std(trainer.getParameter('h.0.attn.c_proj.weight')), 0.02 / Math.sqrt(16));
  near(std(trainer.getParameter('h.7.mlp.c_proj.weight')), 0.02 / Math.sqrt(16));
  for (const name of ['h.0.attn.c_attn.bias', 'h.1.attn.c_proj.bias', 'h.2.mlp.c_fc.bias', 'h.5.mlp.c_proj.bias', 'ln_f.bias']) {
    t.true(trainer.getParameter(name).every((v) => v === 0), `${name} is zero`);
  }
  t.true(trainer.getParameter('h.4.ln_2.weight').every((v) => v === 1));
});

test('a fresh gpt predicts about uniformly: the first loss is close to ln(vocab)', async (t) => {
  const trainer = await weft.compile(gpt({ ...TINY, outputLogits: true }), { batch: 2 });
  const idx = Int32Array.from({ length: 16 }, (_, i) => (i * 7) % 32);
  const targets = idx.map((v) => (v + 13) % 32);
  const r = await trainer.evaluate({ idx, targets });
  t.true(Math.abs(r.loss - Math.log(32)) < 0.1, `loss ${r.loss}`);
  t.deepEqual([...(r.outputs['logits']?.shape ?? [])], [16, 32]);
});

test('the gpt rejects a width that heads do not divide', (t) => {
  const err = t.throws(() => gpt({ ...TINY, dim: 18, heads: 4 }));
  t.true(err instanceof weft.WeftShapeError);
  t.regex(err?.message ?? '', /dim 18 must be a multiple of heads 4/);
});

test('gpt with stages 2 keeps Hugging Face GPT-2\'s names, shapes, order and count', (t) => {
  const o = { ...TINY, layers: 3 };
  const staged = gpt({ ...o, stages: 2 });
  t.deepEqual(staged.parameters.map((p) => [p.name, [...p.shape]]), hfGpt2Parameters(o));
  t.is(count(staged.parameters), count(gpt(o).parameters));
  t.is(count(staged.parameters), gptParameterCount(o));
  t.deepEqual(staged.inputs.map((i) => i.name), ['idx', 'targets']);
});

test('gpt stages are replicate scopes stage0..stageS-1 holding the blocks evenly, head on the last', (t) => {
  const text = gpt({ ...TINY, layers: 5, stages: 3 }).text();
  const tgOf = (param: string): string => {
    const line = text.split('\n').find((l) => l.includes(`{name=${param},`));
    return / (tg\d+) /.exec(line ?? '')?.[1] ?? `no line for ${param}`;
  };
  const names = gpt({ ...TINY, layers: 5, stages: 3 }).taskgraphs.filter((g) => g.name.startsWith('stage')).map((g) => g.name);
  t.deepEqual(names, ['stage0', 'stage1', 'stage2']);
  const stage = (p: string): number => Number(tgOf(p).slice(2));
  // 5 blocks in 3 stages: 2, 2, 1; embeddings first; ln_f last.
  t.deepEqual(['wte.weight', 'wpe.weight', 'h.0.ln_1.weight', 'h.1.ln_1.weight', 'h.2.ln_1.weight', 'h.3.ln_1.weight', 'h.4.ln_1.weight', 'ln_f.weight'].map(stage).map((s) => s - stage('wte.weight')), [0, 0, 0, 0, 1, 1, 2, 2]);
});

test('gpt with more stages than layers is an error naming both', (t) => {
  const err = t.throws(() => gpt({ ...TINY, stages: 3 }));
  t.true(err instanceof weft.WeftShapeError);
  t.regex(err?.message ?? '', /gpt: 3 stages for 2 layer\(s\)/);
});

test('a gpt in 2 stages on 2 devices computes the loss of the unstaged gpt on one', async (t) => {
  const idx = Int32Array.from({ length: 32 }, (_, i) => (i * 7) % 32);
  const targets = idx.map((v) => (v + 13) % 32);
  const one = await weft.compile(gpt(TINY), { batch: 4, seed: 1 });
  const two = await weft.compile(gpt({ ...TINY, stages: 2 }, weft.config({ pipeline: { numMicroBatch: 2 } })), { batch: 4, seed: 1, devices: weft.cpu(2) });
  const [a, b] = [(await one.step({ idx, targets })).loss, (await two.step({ idx, targets })).loss];
  t.true(Math.abs(a - b) <= 1e-5 * a, `${a} vs ${b}`);
  const [a2, b2] = [(await one.step({ idx, targets })).loss, (await two.step({ idx, targets })).loss];
  t.true(Math.abs(a2 - b2) <= 1e-5 * a2, `step 2: ${a2} vs ${b2}`);
});

test('mlp with stages splits its layers evenly and keeps the names fc0, fc1, ...', (t) => {
  const sizes = [8, 16, 16, 16, 4];
  const staged = mlp({ sizes, stages: 3 });
  t.deepEqual(staged.parameters, mlp({ sizes }).parameters);
  t.deepEqual(staged.taskgraphs.filter((g) => g.name.startsWith('stage')).map((g) => g.name), ['stage0', 'stage1', 'stage2']);
  t.throws(() => mlp({ sizes, stages: 5 }), { instanceOf: weft.WeftShapeError, message: /mlp: 5 stages for 4 layer\(s\)/ });
});

test('the mlp names its layers fc0, fc1, ... with [in, out] weights', (t) => {
  const model = mlp({ sizes: [784, 1024, 1024, 10] });
  t.deepEqual(model.parameters.map((p) => [p.name, [...p.shape]]), [
    ['fc0.weight', [784, 1024]], ['fc0.bias', [1024]],
    ['fc1.weight', [1024, 1024]], ['fc1.bias', [1024]],
    ['fc2.weight', [1024, 10]], ['fc2.bias', [10]],
  ]);
  t.is(count(model.parameters), mlpParameterCount([784, 1024, 1024, 10]));
  t.deepEqual(model.inputs.map((i) => [i.name, i.dtype]), [['x', 'f32'], ['y', 'i32']]);
});

test('the mlp learns a fixed batch', async (t) => {
  const trainer = await weft.compile(mlp({ sizes: [4, 16, 3] }), { batch: 6, optimizer: weft.optim.adam({ lr: 0.05 }) });
  const x = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i * 1.7));
  const y = Int32Array.from([0, 1, 2, 0, 1, 2]);
  const first = (await trainer.step({ x, y })).loss;
  let last = first;
  for (let i = 0; i < 30; i++) last = (await trainer.step({ x, y })).loss;
  t.true(last < first * 0.5, `loss ${first} -> ${last}`);
});

test('the mlp rejects fewer than two sizes', (t) => {
  t.throws(() => mlp({ sizes: [10] }), { instanceOf: weft.WeftShapeError });
});

test('recomputing activations (auto, and the gpt\'s block checkpoints) trains exactly like keeping them, dropout included', async (t) => {
  const opts = { ...TINY, dropout: 0.2 };
  const idx = Int32Array.from({ length: 4 * TINY.seq }, (_, i) => (i * 7) % TINY.vocab);
  const targets = Int32Array.from({ length: 4 * TINY.seq }, (_, i) => (i * 5 + 1) % TINY.vocab);
  const run = async (type: '' | 'auto' | 'collection') => {
    const trainer = await weft.compile(gpt(opts, weft.config({ gradientCheckpoint: { type } })), {
      batch: 4, seed: 5, optimizer: weft.optim.adamW({ lr: 1e-2 }),
    });
    const losses: number[] = [];
    for (let s = 0; s < 3; s++) losses.push((await trainer.step({ idx, targets })).loss);
    const act = (trainer.memory()['cpu:0'] as { measured: { activations: number } }).measured.activations;
    return { losses, act };
  };
  const plain = await run('');
  for (const type of ['auto', 'collection'] as const) {
    const r = await run(type);
    t.deepEqual(r.losses, plain.losses, type);
    t.true(r.act < plain.act, `${type}: ${r.act} vs ${plain.act} activation bytes`);
  }
});
