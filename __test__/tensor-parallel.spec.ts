// Tensor parallelism through the TS API: a user's own model split with m.split, and the
// built-in gpt's tp option, train to the losses of the same model on one device.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as weft from '../ts/index.js';
import { gpt } from '../ts/models/gpt.js';

const T = 8;
const C = 16;
const V = 32;
const BATCH = 4;
const STEPS = 5;

/** A user's transformer block and head from m.nn layers, inside m.split over `tp` devices. */
function userModel(tp: number): weft.Model {
  return weft.model((m) =>
    m.split({ deviceCount: tp, name: 'tp' }, () => {
      const idx = m.input('idx', [null, T], 'i32');
      const targets = m.input('targets', [null, T], 'i32');
      const table = m.param('emb', [V, C], weft.init.normal(0, 0.2));
      const x = m.op('embedding', [table, idx]);
      const h = m.nn.layerNorm(x, { name: 'ln' });
      const qkv = m.nn.linear(h, 3 * C, { name: 'qkv' });
      const a = m.nn.linear(m.op('causal_attention', [qkv], { heads: 4 }), C, { name: 'proj' });
      const r = x.add(a);
      const f = m.nn.linear(m.nn.linear(r, 4 * C, { name: 'fc' }).gelu(), C, { name: 'out' });
      const logits = m.nn.linear(r.add(f).reshape([-1, C]), V, { name: 'head', bias: false });
      return m.losses.softmaxCrossEntropy(m.nn.linear(logits, V, { name: 'mix' }), targets);
    }),
  );
}

function batch(s: number): { idx: Int32Array; targets: Int32Array } {
  const tok = (i: number, salt: number): number => (i * 7 + s * 13 + salt) % V;
  return {
    idx: Int32Array.from({ length: BATCH * T }, (_, i) => tok(i, 1)),
    targets: Int32Array.from({ length: BATCH * T }, (_, i) => tok(i, 5)),
  };
}

async function train(model: weft.Model, devices: number): Promise<{ losses: number[]; trainer: weft.Trainer }> {
  const trainer = await weft.compile(model, { batch: BATCH, devices: weft.cpu(devices), seed: 7, optimizer: weft.optim.adamW({ lr: 1e-2 }) });
  const losses: number[] = [];
  for (let s = 0; s < STEPS; s++) losses.push((await trainer.step(batch(s))).loss);
  return { losses, trainer };
}

function same(t: import('ava').ExecutionContext, got: number[], want: number[], what: string): void {
  got.forEach((l, i) => {
    const w = want[i] as number;
    t.true(Math.abs(l - w) <= 1e-5 * Math.abs(w), `${what} step ${i + 1}: ${l} vs one device ${w}`);
  });
}

test('a user model split with m.split over 2 devices trains like one device, weights gathered whole', async (t) => {
  const one = await train(userModel(1), 1);
  const two = await train(userModel(2), 2);
  t.log(`one ${one.losses.join(' ')} | tp2 ${two.losses.join(' ')}`);
  same(t, two.losses, one.losses, 'tp 2');
  for (const name of ['qkv.weight', 'fc.bias', 'out.weight', 'head.weight', 'mix.weight']) {
    const [a, b] = [one.trainer.getParameter(name), two.trainer.getParameter(name)];
    t.is(b.length, a.length, name);
    const diff = a.reduce((m, v, i) => Math.max(m, Math.abs(v - (b[i] as number))), 0);
    t.true(diff < 1e-4, `${name} differs by ${diff}`);
  }
});

test('the built-in gpt with tp 4 trains like one device', async (t) => {
  const opts = { layers: 2, heads: 4, dim: 16, seq: T, vocab: V };
  const one = await train(gpt(opts), 1);
  const four = await train(gpt({ ...opts, tp: 4 }), 4);
  same(t, four.losses, one.losses, 'tp 4');
});

test('the gpt saved at tp 2 under ZeRO v1 resumes at tp 1 like an uninterrupted run', async (t) => {
  const opts = { layers: 2, heads: 4, dim: 16, seq: T, vocab: V };
  const whole = await train(gpt(opts), 1);
  const dir = mkdtempSync(join(tmpdir(), 'weft-tp-'));
  const options = { batch: BATCH, seed: 7, optimizer: weft.optim.adamW({ lr: 1e-2 }) };
  const first = await weft.compile(gpt({ ...opts, tp: 2 }, weft.config({ zero: { level: 'v1' } })), { ...options, devices: weft.cpu(4) });
  for (let s = 0; s < 2; s++) await first.step(batch(s));
  await first.save(dir);
  const second = await weft.compile(gpt(opts), { ...options, devices: weft.cpu(1) });
  await second.load(dir);
  const resumed: number[] = [];
  for (let s = 2; s < STEPS; s++) resumed.push((await second.step(batch(s))).loss);
  rmSync(dir, { recursive: true, force: true });
  same(t, resumed, whole.losses.slice(2), 'tp 2 x dp 2 (ZeRO v1) -> tp 1');
});

/** Tokens -> embedding -> h + moe(h) -> head, with the load-balancing loss; split over `tp`. */
function moeModel(tp: number): weft.Model {
  return weft.model((m) =>
    m.split({ deviceCount: tp, name: 'moe' }, () => {
      const idx = m.input('idx', [null, T], 'i32');
      const targets = m.input('targets', [null, T], 'i32');
      const h = m.op('embedding', [m.param('emb', [V, C], weft.init.normal(0, 0.5)), idx]);
      const { y, auxLoss } = m.nn.moe(h, { experts: 4, topK: 2, capacityFactor: 1, name: 'moe' });
      const logits = m.nn.linear(h.add(y).reshape([-1, C]), V, { name: 'head' });
      return m.losses.softmaxCrossEntropy(logits, targets).add(auxLoss.scale(0.01));
    }),
  );
}

test('m.nn.moe trains with experts divided over 2 and 4 devices like on one device', async (t) => {
  const one = await train(moeModel(1), 1);
  t.true((one.losses.at(-1) as number) < (one.losses[0] as number), `the MoE learns: ${one.losses.join(' ')}`);
  for (const n of [2, 4]) {
    const ep = await train(moeModel(n), n);
    same(t, ep.losses, one.losses, `ep ${n}`);
    t.deepEqual(ep.trainer.parameters().find((p) => p.name === 'moe.w1')?.shape, [4, C, 4 * C]);
  }
  const bad = await t.throwsAsync(train(weft.model((m) => m.split({ deviceCount: 3 }, () => {
    const x = m.input('x', [null, C]);
    return m.nn.moe(x, { experts: 4 }).y.mean();
  })), 3));
  t.regex(bad?.message ?? '', /layer 'moe_0.gate', op moe_dispatch %\d+: 4 experts do not divide over 3 devices/);
});

/** A tied vocabulary-parallel head over an indivisible vocabulary, with argmax and accuracy outputs. */
function metricsModel(tp: number, vocab: number): weft.Model {
  return weft.model((m) =>
    m.split({ deviceCount: tp, name: 'head' }, () => {
      const idx = m.input('idx', [null, T], 'i32');
      const targets = m.input('targets', [null, T], 'i32');
      const table = m.param('emb', [vocab, C], weft.init.normal(0, 0.5));
      const x = m.op('embedding', [table, idx]).reshape([-1, C]);
      const logits = x.matmul(table, { transB: true });
      m.output('pred', m.argmax(logits));
      m.output('accuracy', m.metrics.accuracy(logits, targets));
      return m.losses.softmaxCrossEntropy(logits, targets);
    }),
  );
}

test('argmax and accuracy over a vocabulary of 30 split over 4 devices equal one device exactly', async (t) => {
  const vocab = 30;
  const idx = Int32Array.from({ length: BATCH * T }, (_, i) => (i * 7 + 3) % vocab);
  // Every other target is the token itself, which its own row's logit (its squared norm) favours.
  const targets = idx.map((v, i) => (i % 2 === 0 ? v : (v + 1) % vocab));
  const evaluate = async (tp: number): Promise<{ pred: number[]; accuracy: number }> => {
    const trainer = await weft.compile(metricsModel(tp, vocab), { batch: BATCH, devices: weft.cpu(tp), seed: 7 });
    const { outputs } = await trainer.evaluate({ idx, targets });
    t.true(outputs.pred?.data instanceof Int32Array, 'argmax is i32');
    return { pred: Array.from(outputs.pred?.data ?? []), accuracy: outputs.accuracy?.data[0] ?? NaN };
  };
  const one = await evaluate(1);
  t.true(one.accuracy > 0 && one.accuracy < 1, `a non-trivial accuracy: ${one.accuracy}`);
  t.is(one.pred.length, BATCH * T);
  t.deepEqual(await evaluate(4), one);
  const bad = t.throws(() => weft.model((m) => m.metrics.accuracy(m.input('x', [null, 4]), m.input('y', [null]))));
  t.regex(bad?.message ?? '', /accuracy: logits must be .* and labels i32/);
});
