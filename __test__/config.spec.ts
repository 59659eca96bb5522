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
