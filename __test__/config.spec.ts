import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import test from 'ava';
import * as weft from '../ts/index.js';

test('nested camelCase and flat dotted keys give the same config', (t) => {
  const nested = weft.config({ pipeline: { numMicroBatch: 4 } });
  const flat = weft.config({ 'pipeline.num_micro_batch': 4 });
  t.is(nested.get('pipeline.num_micro_batch'), 4);
  t.is(nested.get('pipeline.numMicroBatch'), 4);
  t.deepEqual(nested.values, flat.values);
  t.deepEqual(nested.changed, { 'pipeline.num_micro_batch': 4 });
  t.true(Object.isFrozen(nested));
  t.true(Object.isFrozen(nested.values));
});

test('an unknown key is a WeftConfigError that suggests the nearest key', (t) => {
  // The key types come from the core's table (ts/config-keys.ts), so the typo is a compile error
  // too: `tsc -p tsconfig.test.json` fails if this line type-checks.
  // @ts-expect-error 'pipline' is not a config section
  const err = t.throws(() => weft.config({ pipline: { numMicroBatch: 4 } }), { instanceOf: weft.WeftConfigError });
  t.is(err?.code, 'WEFT_CONFIG');
  t.is(err?.message, "unknown config key 'pipline.numMicroBatch'; did you mean 'pipeline.num_micro_batch'?");
});

test('a wrong type names the key and the expected type', (t) => {
  const err = t.throws(() => weft.config({ pipeline: { numMicroBatch: '4' as unknown as number } }), {
    instanceOf: weft.WeftConfigError,
  });
  t.regex(err?.message ?? '', /pipeline\.num_micro_batch must be an int, got "4"/);
});

test('environment variables fill keys; explicit values win', (t) => {
  process.env.WEFT_PIPELINE_NUM_MICRO_BATCH = '4';
  try {
    t.is(weft.config().get('pipeline.num_micro_batch'), 4);
    t.is(weft.config({ pipeline: { numMicroBatch: 2 } }).get('pipeline.num_micro_batch'), 2);
  } finally {
    delete process.env.WEFT_PIPELINE_NUM_MICRO_BATCH;
  }
  t.is(weft.config().get('pipeline.num_micro_batch'), 1);
});

test('a bad environment value names the variable', (t) => {
  process.env.WEFT_COMMUNICATION_FP16 = 'yes';
  try {
    t.throws(() => weft.config(), { instanceOf: weft.WeftConfigError, message: /WEFT_COMMUNICATION_FP16/ });
  } finally {
    delete process.env.WEFT_COMMUNICATION_FP16;
  }
});

test('configKeys lists every key with its type, default and env variable', (t) => {
  const keys = weft.configKeys();
  const nmb = keys.find((k) => k.key === 'pipeline.num_micro_batch');
  t.truthy(nmb);
  t.is(nmb?.type, 'int');
  t.is(nmb?.default, 1);
  t.is(nmb?.env, 'WEFT_PIPELINE_NUM_MICRO_BATCH');
  t.true(keys.length >= 26);
});

test('optimizer options are validated at compile with a suggestion', async (t) => {
  const model = weft.model((m) => m.nn.linear(m.input('x', [null, 2]), 1).mean());
  const bad = { kind: 'adamw', lr: 0.1, weightDecy: 0.1 } as unknown as weft.Optimizer;
  const err = await t.throwsAsync(weft.compile(model, { batch: 2, optimizer: bad }), { instanceOf: weft.WeftConfigError });
  t.regex(err?.message ?? '', /did you mean 'weightDecay'\?/);
});

test('config keys and values are typed from the key table', (t) => {
  // Each line below is a compile error (misspelt attribute, flat key, wrong value type, value
  // outside the allowed ones); the core refuses each at run time as well.
  // @ts-expect-error misspelt attribute in a nested section
  t.throws(() => weft.config({ pipeline: { numMicroBatchs: 4 } }), { instanceOf: weft.WeftConfigError });
  // @ts-expect-error misspelt flat key
  t.throws(() => weft.config({ 'pipeline.num_micro_batchs': 4 }), { instanceOf: weft.WeftConfigError });
  // @ts-expect-error a string for an int key
  t.throws(() => weft.config({ pipeline: { numMicroBatch: 'four' } }), { instanceOf: weft.WeftConfigError });
  // @ts-expect-error not one of the allowed values
  t.throws(() => weft.config({ zero: { level: 'v3' } }), { instanceOf: weft.WeftConfigError });
  // @ts-expect-error get() of an unknown key
  t.throws(() => weft.config().get('pipeline.num_micro_batchs'), { instanceOf: weft.WeftConfigError });
  const n: number = weft.config({ 'pipeline.numMicroBatch': 2, amp: { level: 'O1' } }).get('pipeline.num_micro_batch');
  t.is(n, 2);
});

test('ts/config-keys.ts is what the key table generates', (t) => {
  const script = path.join(__dirname, '..', 'scripts', 'gen-config-types.mjs');
  const r = spawnSync(process.execPath, [script, '--check'], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
});
