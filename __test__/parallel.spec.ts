// Parallel training through the TS API: strategy scopes (EPL's rules), CPU virtual devices,
// parity of every layout with single-device training, the plan, and collections.
import test from 'ava';
import * as weft from '../ts/index.js';

const FEATURES = 4;
const HIDDEN = 16;
const CLASSES = 3;
const BATCH = 8;
const STEPS = 5;

type Staging = 'none' | 'scopes' | 'default';

/**
 * A 3-layer MLP with ReLU. `scopes`: two `m.replicate` stages (fc1, fc2 | fc3), the loss built
 * outside scopes (it joins the last replicate TaskGraph). `default`: the same cut made with
 * `setDefaultStrategy` at each stage boundary inside the layer loop (EPL's BERT pattern).
 */
function mlp(staging: Staging, extra?: (m: weft.ModelBuilder, logits: weft.Tensor, loss: weft.Tensor) => void): weft.Model {
  return weft.model((m) => {
    const x = m.input('x', [null, FEATURES]);
    const y = m.input('y', [null], 'i32');
    const sizes = [HIDDEN, HIDDEN, CLASSES];
    const layer = (h: weft.Tensor, i: number): weft.Tensor => {
      const out = m.nn.linear(h, sizes[i] as number, { name: `fc${i + 1}` });
      return i < 2 ? out.relu() : out;
    };
    let logits: weft.Tensor;
    if (staging === 'scopes') {
      const h = m.replicate({ deviceCount: 1, name: 'stage0' }, () => layer(layer(x, 0), 1));
      logits = m.replicate({ deviceCount: 1, name: 'stage1' }, () => layer(h, 2));
    } else {
      let h = x;
      for (let i = 0; i < 3; i++) {
        if (staging === 'default' && (i === 0 || i === 2)) {
          m.setDefaultStrategy(weft.replicate({ deviceCount: 1, name: `stage${i === 0 ? 0 : 1}` }));
        }
        h = layer(h, i);
      }
      logits = h;
    }
    const loss = m.losses.softmaxCrossEntropy(logits, y);
    extra?.(m, logits, loss);
    return loss;
  });
}

/** Step `s`'s global batch (the same for every layout). */
function batch(s: number): { x: Float32Array; y: Int32Array } {
  const x = new Float32Array(BATCH * FEATURES);
  const y = new Int32Array(BATCH);
  for (let r = 0; r < BATCH; r++) {
    for (let c = 0; c < FEATURES; c++) x[r * FEATURES + c] = Math.sin(1 + r * 7 + c * 3 + s * 11);
    y[r] = (r * 5 + s) % CLASSES;
  }
  return { x, y };
}

type Schedule = 'PreferForward' | 'PreferBackward' | 'PreferBackwardOptimizer';

async function compile(model: weft.Model, devices: number, micro: number, strategy: Schedule = 'PreferBackward', b = BATCH) {
  return weft.compile(model, {
    batch: b,
    devices: weft.cpu(devices),
    seed: 3,
    threads: 1,
    optimizer: weft.optim.adamW({ lr: 1e-2, weightDecay: 0.01, gradClip: 1.0 }),
    config: weft.config({ pipeline: { numMicroBatch: micro, strategy } }),
  });
}

async function train(model: weft.Model, devices: number, micro: number, strategy?: Schedule) {
  const trainer = await compile(model, devices, micro, strategy);
  const losses: number[] = [];
  for (let s = 0; s < STEPS; s++) losses.push((await trainer.step(batch(s))).loss);
  return { losses, trainer };
}

let baseline: Promise<{ losses: number[]; trainer: weft.Trainer }> | undefined;
function single() {
  baseline ??= train(mlp('none'), 1, 1);
  return baseline;
}

const layouts: [string, Staging, number, number, Schedule?][] = [
  ['DP2 (cpu(2), no scopes)', 'none', 2, 1],
  ['gradient accumulation (num_micro_batch 4, one device)', 'none', 1, 4],
  ['PP2 M=4 PreferForward (GPipe)', 'scopes', 2, 4, 'PreferForward'],
  ['PP2 M=4 PreferBackward (1F1B)', 'scopes', 2, 4, 'PreferBackward'],
  ['PP2 M=4 PreferBackwardOptimizer (1F1B, extra warm-up)', 'scopes', 2, 4, 'PreferBackwardOptimizer'],
  ['DP2 x PP2 (cpu(4), M=2)', 'scopes', 4, 2],
  ['PP2 M=4 cut by setDefaultStrategy', 'default', 2, 4],
];

for (const [name, staging, devices, micro, strategy] of layouts) {
  test(`${name} matches one device within 1e-5 over ${STEPS} steps`, async (t) => {
    const base = await single();
    const { losses, trainer } = await train(mlp(staging), devices, micro, strategy);
    t.is(losses.length, STEPS);
    const plan = trainer.plan.json as { stages: number; batch: { replicas: number; micro_batches: number } };
    const stages = staging === 'none' ? 1 : 2;
    t.deepEqual([plan.stages, plan.batch.replicas, plan.batch.micro_batches], [stages, devices / stages, micro]);
    losses.forEach((l, i) => {
      const a = base.losses[i] as number;
      t.true(Math.abs(l - a) <= 1e-5 * Math.abs(a), `step ${i + 1}: loss ${l} vs one device ${a}`);
    });
    for (const p of ['fc1.weight', 'fc3.weight']) {
      const want = base.trainer.getParameter(p);
      const got = trainer.getParameter(p);
      const diff = got.reduce((m, v, i) => Math.max(m, Math.abs(v - (want[i] as number))), 0);
      t.true(diff < 1e-4, `${p} differs by ${diff}`);
    }
  });
}

test('scopes make TaskGraphs: inputs before the first scope join it, ops after the last join the last', (t) => {
  const model = mlp('scopes');
  t.deepEqual(
    model.taskgraphs.map((g) => [g.index, g.name, g.strategy, g.deviceCount]),
    [
      [0, 'stage0', 'replicate', 1],
      [1, 'stage1', 'replicate', 1],
    ],
  );
  const text = model.text();
  t.regex(text, /^taskgraph tg0 stage0 Replicate x1\ntaskgraph tg1 stage1 Replicate x1\n/);
  t.regex(text, /input\{name=x\}\(\) : f32\[B,4\] tg0/);
  t.regex(text, /cross_entropy.* tg1 fwd/);
  // EPL's BERT pattern: every setDefaultStrategy opens a new TaskGraph.
  t.deepEqual(
    mlp('default').taskgraphs.map((g) => g.name),
    ['stage0', 'stage1'],
  );
  // Without scopes everything is EPL's default TaskGraph.
  t.deepEqual(
    mlp('none').taskgraphs.map((g) => g.name),
    ['default'],
  );
});

test('nesting strategy scopes is an error naming both scopes and the rule', (t) => {
  const nest = (outer: 'replicate' | 'split', inner: 'replicate' | 'split') =>
    t.throws(
      () =>
        weft.model((m) => {
          const x = m.input('x', [null, 4]);
          return m[outer]({ name: 'outer' }, () => m[inner]({ name: 'inner' }, () => x.mean()));
        }),
      { instanceOf: weft.WeftConfigError },
    )?.message;
  t.is(nest('replicate', 'replicate'), "cannot open replicate scope 'inner' inside replicate scope 'outer': strategy scopes of the same type do not nest");
  t.regex(nest('split', 'split') ?? '', /split scope 'inner' inside split scope 'outer': strategy scopes of the same type do not nest/);
  t.regex(nest('split', 'replicate') ?? '', /replicate scope 'inner' inside split scope 'outer': nothing may be nested inside a split scope/);
  t.regex(nest('replicate', 'split') ?? '', /split scope 'inner' inside replicate scope 'outer': a split scope may not be nested inside a replicate scope/);
});

test('setDefaultStrategy takes only replicate, and not inside a scope', (t) => {
  t.throws(() => weft.model((m) => (m.setDefaultStrategy(weft.split({ name: 'head' })), m.input('x', [null, 4]).mean())), {
    instanceOf: weft.WeftConfigError,
    message: /cannot make split scope 'head' the default strategy: only a replicate strategy can be the default/,
  });
  t.throws(
    () =>
      weft.model((m) =>
        m.replicate({ name: 'body' }, () => {
          m.setDefaultStrategy(weft.replicate({ name: 'next' }));
          return m.input('x', [null, 4]).mean();
        }),
      ),
    { instanceOf: weft.WeftConfigError, message: /inside the open replicate scope 'body'; set the default outside strategy scopes/ },
  );
});

test('a strategy scope under auto.auto_parallel is an error', (t) => {
  const cfg = weft.config({ auto: { autoParallel: true } });
  t.throws(() => weft.model(cfg, (m) => m.replicate({ name: 'stage0' }, () => m.input('x', [null, 4]).mean())), {
    instanceOf: weft.WeftConfigError,
    message: /cannot open replicate scope 'stage0': strategy scopes are not allowed when auto.auto_parallel is true/,
  });
  t.throws(() => weft.model(cfg, (m) => (m.setDefaultStrategy(weft.replicate()), m.input('x', [null, 4]).mean())), {
    instanceOf: weft.WeftConfigError,
    message: /auto.auto_parallel/,
  });
});

test('deviceCount > 1 is refused for replicate (tensor parallelism is split); a split scope with nothing to shard is named', async (t) => {
  const rep = t.throws(() => weft.model((m) => m.replicate({ deviceCount: 2, name: 'wide' }, () => m.input('x', [null, 4]).mean())), {
    instanceOf: weft.WeftUnsupportedError,
  });
  t.regex(rep?.message ?? '', /replicate scope 'wide' with deviceCount 2: a replicate TaskGraph runs one device per replica .*use a split scope \(tensor parallelism\)/);
  // split over 4 devices is tensor parallelism; a scope whose ops have no sharding rule is
  // refused at compile, never run silently replicated.
  const idle = weft.model((m) => m.split({ deviceCount: 4 }, () => m.input('x', [null, 4]).mean()));
  const spl = await t.throwsAsync(weft.compile(idle, { batch: 4, devices: weft.cpu(4) }), { instanceOf: weft.WeftUnsupportedError });
  t.regex(spl?.message ?? '', /no op in split scope 'Split' has a sharding rule for its inputs \(ops: mean\)/);
  t.throws(() => weft.model((m) => (m.setDefaultStrategy(weft.replicate({ deviceCount: 2 })), m.input('x', [null, 4]).mean())), {
    instanceOf: weft.WeftUnsupportedError,
    message: /deviceCount 2/,
  });
  t.throws(() => weft.model((m) => m.replicate({ deviceCount: 1.5 }, () => m.input('x', [null, 4]).mean())), {
    instanceOf: weft.WeftConfigError,
    message: /deviceCount must be a positive integer, got 1.5/,
  });
});

test('an empty TaskGraph is reported: a scope that builds no op, a default strategy no op follows', (t) => {
  t.throws(
    () =>
      weft.model((m) => {
        const x = m.input('x', [null, 4]);
        m.replicate({ name: 'stage0' }, () => undefined);
        return x.mean();
      }),
    { instanceOf: weft.WeftConfigError, message: /replicate scope 'stage0' built no ops: its TaskGraph would be empty/ },
  );
  t.throws(
    () =>
      weft.model((m) => {
        const loss = m.replicate({ name: 'body' }, () => m.input('x', [null, 4]).mean());
        m.setDefaultStrategy(weft.replicate({ name: 'tail' }));
        return loss;
      }),
    { instanceOf: weft.WeftConfigError, message: /TaskGraph 1 'tail' built no ops/ },
  );
});

test('layout errors name the numbers: batch vs replicas x micro-batches, stages vs devices', async (t) => {
  const staged = mlp('scopes');
  await t.throwsAsync(compile(staged, 4, 4, 'PreferBackward', 4), {
    instanceOf: weft.WeftBatchError,
    message: /B=4 does not split into R=2 replicas x M=4 micro-batches/,
  });
  await t.throwsAsync(compile(staged, 1, 1), {
    instanceOf: weft.WeftConfigError,
    message: /2 pipeline stages but only 1 device/,
  });
  await t.throwsAsync(compile(staged, 3, 1), {
    instanceOf: weft.WeftConfigError,
    message: /3 devices do not divide into replicas of 2 stages/,
  });
});

test('ZeRO v0 trains like plain DP with half the optimizer state per replica; without replicas it is refused', async (t) => {
  const run = async (devices: number, level: '' | 'v0') => {
    const trainer = await weft.compile(mlp('none'), {
      batch: BATCH,
      devices: weft.cpu(devices),
      seed: 3,
      threads: 1,
      optimizer: weft.optim.adamW({ lr: 1e-2 }),
      config: weft.config({ zero: { level } }),
    });
    const losses: number[] = [];
    for (let s = 0; s < 3; s++) losses.push((await trainer.step(batch(s))).loss);
    const state = (d: string) => ((trainer.memory()[d] as { measured: { optimizer_state: number } }).measured.optimizer_state);
    return { losses, state: [state('cpu:0'), state('cpu:1')] };
  };
  const [plain, zero] = [await run(2, ''), await run(2, 'v0')];
  t.deepEqual(zero.losses, plain.losses);
  for (const bytes of zero.state) t.true(Math.abs(bytes - (plain.state[0] as number) / 2) <= 8, `${bytes} vs ${String(plain.state[0])}`);
  await t.throwsAsync(run(1, 'v0'), { instanceOf: weft.WeftConfigError, message: /zero.level='v0' shards optimizer state across data-parallel replicas, but this layout has 1 replica/ });
});

test('weft.cpu(n) takes 1..16 devices', (t) => {
  t.is(String(weft.cpu(16)), 'cpu:16');
  t.is(weft.cpu(4).count, 4);
  t.throws(() => weft.cpu(17), { instanceOf: weft.WeftConfigError, message: /at most 16 CPU virtual devices, got cpu\(17\)/ });
  t.throws(() => weft.cpu(0), { instanceOf: weft.WeftConfigError });
  t.throws(() => weft.parseDevices('cpu:32'), { instanceOf: weft.WeftConfigError });
});

test('the plan shows device slices, the schedule grid and per-device memory', async (t) => {
  const trainer = await compile(mlp('scopes'), 4, 2);
  const text = trainer.plan.toString();
  t.regex(text, /taskgraph 0 'stage0': devices \[\[0\], \[2\]\]/);
  t.regex(text, /taskgraph 1 'stage1': devices \[\[1\], \[3\]\]/);
  t.regex(text, /schedule \(PreferBackward\):/);
  t.regex(text, /rank 0 \| F0 F1 /);
  t.regex(text, /rank 1 \| \. +F0 B0/);
  for (let i = 0; i < 4; i++) t.regex(text, new RegExp(`cpu:${i}: params .* total `));
  const json = trainer.plan.json;
  t.deepEqual(json.devices, ['cpu:0', 'cpu:1', 'cpu:2', 'cpu:3']);
  t.deepEqual(
    json.taskgraphs.map((g) => [g.name, g.index, g.devices]),
    [
      ['stage0', 0, [[0], [2]]],
      ['stage1', 1, [[1], [3]]],
    ],
  );
  const schedule = json.schedule as Record<string, string[]>;
  t.deepEqual(Object.keys(schedule), ['cpu:0', 'cpu:1', 'cpu:2', 'cpu:3']);
  t.true(schedule['cpu:0']?.includes('F0'));
  t.deepEqual(Object.keys(json.memory as object), ['cpu:0', 'cpu:1', 'cpu:2', 'cpu:3']);
});

test('collections merge over micro-batches and replicas (DP2 x PP2, M=2)', async (t) => {
  const model = mlp('scopes', (m, logits, loss) => {
    m.addToCollection(loss, weft.GraphKeys.GLOBAL_MEAN, 'loss');
    m.addToCollection(loss.scale(1), weft.GraphKeys.GLOBAL_SUM, 'loss');
    m.addToCollection(loss.scale(1), weft.GraphKeys.GLOBAL_CONCAT, 'loss');
    m.addToCollection(loss.scale(1), weft.GraphKeys.LOCAL_MEAN, 'loss');
    m.addToCollection(logits, weft.GraphKeys.GLOBAL_CONCAT, 'logits');
    m.addToCollection(logits.scale(1), weft.GraphKeys.GLOBAL_MEAN, 'logits');
    m.addToCollection(logits.sum(0), weft.GraphKeys.LOCAL_SUM, 'column_sums');
    m.output('logits', logits);
  });
  t.deepEqual(model.collections.map((c) => [c.key, c.name]), [
    ['global_mean', 'loss'],
    ['global_sum', 'loss'],
    ['global_concat', 'loss'],
    ['local_mean', 'loss'],
    ['global_concat', 'logits'],
    ['global_mean', 'logits'],
    ['local_sum', 'column_sums'],
  ]);
  t.deepEqual(model.outputs.map((o) => o.name), ['logits']);
  const trainer = await compile(model, 4, 2);
  const r = await trainer.step(batch(0));
  const c = r.collections;
  const parts = 4; // 2 replicas x 2 micro-batches, in (replica, micro-batch) order
  const perPart = c.global_concat?.loss;
  t.true(perPart instanceof Float32Array && perPart.length === parts, String(perPart));
  const values = Array.from(perPart as Float32Array);
  const mean = values.reduce((a, b) => a + b, 0) / parts;
  t.is(c.global_mean?.loss, r.loss); // the reported loss is the global mean
  t.true(Math.abs((c.global_mean?.loss as number) - mean) < 1e-6);
  t.true(Math.abs((c.global_sum?.loss as number) - mean * parts) < 1e-5);
  t.is(c.local_mean?.loss, c.global_mean?.loss); // one process: local = global
  // A batch tensor concatenates in batch-row order: the same as the output.
  const logits = r.outputs.logits;
  t.deepEqual(logits?.shape, [BATCH, CLASSES]);
  t.deepEqual(c.global_concat?.logits, logits?.data);
  // Mean over parts is element-wise over the [B/(R*M), C] chunks.
  const rows = BATCH / parts;
  const chunk = rows * CLASSES;
  const want = new Float32Array(chunk);
  for (let i = 0; i < chunk; i++) {
    let s = 0;
    for (let p = 0; p < parts; p++) s += logits?.data[p * chunk + i] as number;
    want[i] = s / parts;
  }
  const got = c.global_mean?.logits as Float32Array;
  t.is(got.length, chunk);
  got.forEach((v, i) => t.true(Math.abs(v - (want[i] as number)) < 1e-6));
  const sums = c.local_sum?.column_sums as Float32Array;
  t.is(sums.length, CLASSES);
  for (let k = 0; k < CLASSES; k++) {
    let s = 0;
    for (let row = 0; row < BATCH; row++) s += logits?.data[row * CLASSES + k] as number;
    t.true(Math.abs((sums[k] as number) - s) < 1e-4);
  }
  const e = await trainer.evaluate(batch(0));
  t.true(typeof e.collections.global_mean?.loss === 'number');
});

test('collections on one device: a scalar mean is the loss; keys and dtypes are checked', async (t) => {
  const model = mlp('none', (m, _logits, loss) => m.addToCollection(loss, weft.GraphKeys.GLOBAL_MEAN_OBJECTS));
  t.deepEqual(model.collections.map((c) => [c.key, c.name]), [['global_mean', `t${model.lossId}`]]);
  const trainer = await compile(model, 1, 1);
  const r = await trainer.step(batch(0));
  t.is(r.collections.global_mean?.[`t${model.lossId}`], r.loss);
  t.deepEqual(Object.keys(r.outputs), []);

  const twice = t.throws(
    () =>
      mlp('none', (m, _logits, loss) => {
        m.addToCollection(loss, weft.GraphKeys.GLOBAL_MEAN, 'loss');
        m.addToCollection(loss, weft.GraphKeys.GLOBAL_SUM, 'loss_sum');
      }),
    { instanceOf: weft.WeftConfigError },
  );
  t.regex(twice?.message ?? '', /tensor 'loss_sum' Tensor\(f32\[\]\) is already in collection 'global_mean' as 'loss'/);
  t.throws(() => mlp('none', (m, _l, loss) => m.addToCollection(loss, 'global_max' as weft.GraphKey)), {
    instanceOf: weft.WeftConfigError,
    message: /unknown collection key "global_max"/,
  });
  t.throws(
    () =>
      weft.model((m) => {
        const y = m.input('y', [null], 'i32');
        m.addToCollection(y, weft.GraphKeys.GLOBAL_CONCAT, 'labels');
        return m.input('x', [null, 4]).mean();
      }),
    { instanceOf: weft.WeftDTypeError, message: /tensor 'labels' is i32; collections hold f32 tensors/ },
  );
});

test('a scalar output has one value per micro-batch per replica', async (t) => {
  const model = mlp('none', (m, _logits, loss) => m.output('loss', loss));
  const trainer = await compile(model, 2, 2);
  const r = await trainer.step(batch(0));
  t.deepEqual(r.outputs.loss?.shape, [4]);
  const mean = Array.from(r.outputs.loss?.data ?? []).reduce((a, b) => a + b, 0) / 4;
  t.true(Math.abs(mean - r.loss) < 1e-6);
});
