import test from 'ava';
import * as weft from '../ts/index.js';
import { BATCH, CLASSES, FEATURES, tinyBatch, tinyMlp } from './helpers.js';

test('a tiny MLP\'s loss goes down over 20 steps', async (t) => {
  const seen: number[] = [];
  const trainer = await weft.compile(tinyMlp(), {
    batch: BATCH,
    devices: weft.cpu(1),
    optimizer: weft.optim.adamW({ lr: 5e-2 }),
    seed: 1,
    onProgress: (r) => seen.push(r.step),
  });
  const batch = tinyBatch();
  const losses: number[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await trainer.step(batch);
    t.is(r.step, i + 1);
    t.true(Number.isFinite(r.loss));
    losses.push(r.loss);
  }
  t.true((losses[19] ?? Infinity) < (losses[0] ?? 0) * 0.7, `losses: ${losses.join(', ')}`);
  t.deepEqual(seen, Array.from({ length: 20 }, (_, i) => i + 1));
  t.is(trainer.stepCount, 20);
});

test('step returns outputs, lr and grad norm', async (t) => {
  const trainer = await weft.compile(tinyMlp(), { batch: BATCH, optimizer: weft.optim.sgd({ lr: 0.1 }) });
  const r = await trainer.step(tinyBatch());
  t.is(r.lr, 0.1);
  t.true((r.gradNorm ?? -1) > 0);
  t.deepEqual(r.outputs.logits?.shape, [BATCH, CLASSES]);
  t.true(r.outputs.logits?.data instanceof Float32Array);
  t.is(r.outputs.logits?.data.length, BATCH * CLASSES);
});

test('reading a trainer while a step runs is a typed error, not a race', async (t) => {
  const trainer = await weft.compile(tinyMlp(), { batch: BATCH });
  const running = trainer.step(tinyBatch());
  t.throws(() => trainer.getParameter('fc1.weight'), { instanceOf: weft.WeftUnsupportedError, message: /await it first/ });
  await running;
  t.is(trainer.getParameter('fc1.weight').length, FEATURES * 16);
});

test('stepSync trains exactly like step, and refuses to run beside an asynchronous call', async (t) => {
  const options = { batch: BATCH, seed: 3, optimizer: weft.optim.adamW({ lr: 5e-2 }) };
  const [a, b] = [await weft.compile(tinyMlp(), options), await weft.compile(tinyMlp(), options)];
  const batch = tinyBatch();
  for (let i = 0; i < 3; i++) {
    const [ra, rb] = [await a.step(batch), b.stepSync(batch)];
    t.is(rb.step, i + 1);
    t.is(rb.loss, ra.loss);
    t.deepEqual(rb.outputs.logits?.data, ra.outputs.logits?.data);
  }
  t.deepEqual(b.getParameter('fc1.weight'), a.getParameter('fc1.weight'));
  const running = a.step(batch);
  t.throws(() => a.stepSync(batch), { instanceOf: weft.WeftUnsupportedError, message: /stepSync while a step/ });
  await running;
  t.throws(() => a.stepSync({ x: batch.x }), { instanceOf: weft.WeftBatchError, message: /missing input 'y'/ });
  t.is(a.stepCount, 4);
});

test('a model compiles twice (the second compile rebuilds it)', async (t) => {
  const model = tinyMlp();
  const a = await weft.compile(model, { batch: BATCH, seed: 3 });
  const b = await weft.compile(model, { batch: BATCH, seed: 3 });
  t.deepEqual(a.getParameter('fc1.weight'), b.getParameter('fc1.weight'));
  t.deepEqual(a.parameterNames(), ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
});

test('plain arrays are accepted and converted to the input dtype', async (t) => {
  const trainer = await weft.compile(tinyMlp(), { batch: BATCH });
  const { x, y } = tinyBatch();
  const r = await trainer.step({ x: Array.from(x), y: Array.from(y) });
  t.true(Number.isFinite(r.loss));
});

test('a step with a missing input is rejected before running', async (t) => {
  const trainer = await weft.compile(tinyMlp(), { batch: BATCH });
  const { x } = tinyBatch();
  const err = await t.throwsAsync(trainer.step({ x }), { instanceOf: weft.WeftBatchError });
  t.is(err?.code, 'WEFT_BATCH');
  t.regex(err?.message ?? '', /missing input 'y' \(expected i32 \[8\] = 8 values for global batch 8\)/);
  t.is(trainer.stepCount, 0);
});

test('a step with a wrong length is rejected before running', async (t) => {
  const trainer = await weft.compile(tinyMlp(), { batch: BATCH });
  const { y } = tinyBatch();
  const err = await t.throwsAsync(trainer.step({ x: new Float32Array(5), y }), { instanceOf: weft.WeftBatchError });
  t.regex(err?.message ?? '', new RegExp(`input 'x' has 5 values, expected f32 \\[8, ${FEATURES}\\] = 32 values`));
  t.is(trainer.stepCount, 0);
});

test('a step with the wrong typed array or an unknown input is rejected', async (t) => {
  const trainer = await weft.compile(tinyMlp(), { batch: BATCH });
  const { x, y } = tinyBatch();
  await t.throwsAsync(trainer.step({ x, y: new Float32Array(y) }), {
    instanceOf: weft.WeftDTypeError,
    message: /input 'y': expected dtype i32 \(Int32Array\), got Float32Array/,
  });
  await t.throwsAsync(trainer.step({ x, y, z: new Float32Array(1) }), {
    instanceOf: weft.WeftBatchError,
    message: /unknown input 'z'; the model's inputs are 'x', 'y'/,
  });
});

test('a Rust-side error arrives as a typed error with a code, and the trainer survives', async (t) => {
  const model = weft.model((m) => {
    const idx = m.input('idx', [null, 2], 'i32');
    return m.nn.embedding(idx, 4, 3, { name: 'wte' }).mean();
  });
  const trainer = await weft.compile(model, { batch: 2 });
  // Index 9 is outside the 4-row table: only the executor can see that.
  const err = await t.throwsAsync(trainer.step({ idx: new Int32Array([0, 1, 2, 9]) }));
  t.true(err instanceof weft.WeftError, String(err));
  t.regex((err as weft.WeftError).code, /^WEFT_[A-Z_]+$/);
  const ok = await trainer.step({ idx: new Int32Array([0, 1, 2, 3]) });
  t.true(Number.isFinite(ok.loss));
});

test('compile rejects an indivisible global batch, CUDA and a bad batch option with typed errors', async (t) => {
  const cfg = weft.config({ pipeline: { numMicroBatch: 3 } });
  await t.throwsAsync(weft.compile(tinyMlp(cfg), { batch: BATCH }), { instanceOf: weft.WeftBatchError, message: /B=8/ });
  await t.throwsAsync(weft.compile(tinyMlp(), { batch: BATCH, devices: weft.cuda(1) }), {
    instanceOf: weft.WeftDeviceError,
    // Without a GPU (CI): the libraries it lacks are named; with one: the session is not wired;
    // on the WASM build: there is no CUDA.
    message: /devices cuda:1 needs CUDA libraries that could not be loaded: libcuda\.so \(the NVIDIA driver\)|devices cuda:1 needs CUDA, which the WASM build does not have/,
  });
  await t.throwsAsync(weft.compile(tinyMlp(), { batch: 0 }), { instanceOf: weft.WeftConfigError });
});

test('evaluate does not update; save/load round-trips parameters and step', async (t) => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'weft-ckpt-'));
  try {
    const trainer = await weft.compile(tinyMlp(), { batch: BATCH, seed: 5 });
    const batch = tinyBatch();
    await trainer.step(batch);
    const e1 = await trainer.evaluate(batch);
    const e2 = await trainer.evaluate(batch);
    t.is(e1.loss, e2.loss);
    await trainer.save(join(dir, 'ck'), { note: 'tiny' });
    const saved = trainer.getParameter('fc1.weight');
    await trainer.step(batch);
    t.notDeepEqual(trainer.getParameter('fc1.weight'), saved);
    t.deepEqual(await trainer.load(join(dir, 'ck')), { note: 'tiny' });
    t.deepEqual(trainer.getParameter('fc1.weight'), saved);
    t.is(trainer.stepCount, 1);
    await t.throwsAsync(trainer.load(join(dir, 'missing')), { instanceOf: weft.WeftError });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the plan renders as text and JSON', async (t) => {
  const trainer = await weft.compile(tinyMlp(), { batch: BATCH });
  t.regex(String(trainer.plan), /cpu:0/);
  t.regex(String(trainer.plan), /parameters: 131/);
  t.truthy(trainer.plan.json.schedule);
  t.truthy(trainer.plan.json.memory);
  t.deepEqual(
    trainer.inputs.map((i) => [i.name, i.shape, i.dtype]),
    [
      ['x', [BATCH, FEATURES], 'f32'],
      ['y', [BATCH], 'i32'],
    ],
  );
});

/** `keys` sorted, where the compiler checks that they are exactly the keys of `T`. */
const exactKeys =
  <T>() =>
  <const K extends readonly (keyof T & string)[]>(...keys: K & ([Exclude<keyof T, K[number]>] extends [never] ? unknown : never)) =>
    [...keys].sort();

test('plan.json, memory() and trace() have the typed shapes (ts/reports.ts)', async (t) => {
  const trainer = await weft.compile(tinyMlp(), { batch: BATCH, devices: weft.cpu(2) });
  await trainer.step(tinyBatch());
  const plan = trainer.plan.json;
  t.deepEqual(
    Object.keys(plan).sort(),
    exactKeys<weft.PlanJson>()(
      'devices', 'layout', 'virtual_stages', 'batch', 'stages', 'pipeline_strategy', 'taskgraphs', 'schedule',
      'memory', 'parameters', 'auto_stages', 'auto_stage_blocks', 'amp', 'warnings', 'executor', 'config',
      'config_env', 'cluster',
    ),
  );
  t.deepEqual(Object.keys(plan.batch).sort(), ['global', 'micro_batches', 'per_micro_batch', 'replicas']);
  t.deepEqual(Object.keys(plan.taskgraphs[0]!).sort(), exactKeys<weft.PlanTaskGraph>()('name', 'index', 'strategy', 'devices'));
  const estimateKeys = exactKeys<weft.MemoryEstimate>()(
    'params', 'grads', 'optimizer_state', 'activations', 'host', 'total', 'resident_params',
  );
  t.deepEqual(Object.keys(plan.memory['cpu:0']!).sort(), estimateKeys);
  t.is(plan.config['pipeline.num_micro_batch'], 1);
  const memory = trainer.memory()['cpu:1']!;
  t.deepEqual(Object.keys(memory).sort(), exactKeys<weft.DeviceMemory>()('measured', 'predicted', 'zero_gather_bytes').filter((k) => k !== 'zero_gather_bytes'));
  t.deepEqual(Object.keys(memory.predicted).sort(), estimateKeys);
  t.deepEqual(
    Object.keys(memory.measured).sort(),
    exactKeys<weft.MemoryMeasured>()('params', 'grads', 'optimizer_state', 'activations', 'host', 'peak_total', 'resident_params'),
  );
  const trace = trainer.trace();
  t.deepEqual(Object.keys(trace).sort(), exactKeys<weft.Trace>()('traceEvents', 'displayTimeUnit'));
  const names = trace.traceEvents.filter((e) => e.ph === 'M').map((e) => e.args.name);
  t.deepEqual(names, ['cpu:0', 'cpu:1']);
  const span = trace.traceEvents.find((e) => e.ph === 'X');
  t.deepEqual(Object.keys(span ?? {}).sort(), ['cat', 'dur', 'name', 'ph', 'pid', 'tid', 'ts']);
});
