// EPL conformance through the CLI and the TS API (the Rust side is
// crates/core/tests/epl_conformance.rs). Each case cites the EPL file::test it is ported from;
// docs/EPL.md lists where weft differs on purpose.
import test from 'ava';
import * as weft from '../ts/index.js';
import { runCli } from './helpers.js';

const MLP = ['--model', 'mlp', '--sizes', '32,64,10', '--batch', '32'];


const weftCli = runCli;

type Plan = {
  devices: string[];
  batch: { replicas: number };
  taskgraphs: { devices: number[][] }[];
  cluster: string | null;
};

async function planJson(...args: string[]): Promise<Plan> {
  const r = await weftCli('plan', ...MLP, '--json', ...args);
  if (r.code !== 0) throw new Error(`weft plan failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Plan;
}

function withEnv<T>(vars: Record<string, string>, fn: () => T): T {
  Object.assign(process.env, vars);
  try {
    return fn();
  } finally {
    for (const k of Object.keys(vars)) delete process.env[k];
  }
}

test('cluster_test_with_visible_devices.py: --set cluster.run_visible_devices=1 is a string and limits the devices', async (t) => {
  const plan = await planJson('--devices', 'cpu:2', '--set', 'cluster.run_visible_devices=1');
  t.deepEqual(plan.devices, ['cpu:0']);
  t.is(weft.configValueFromText('cluster.run_visible_devices', '1'), '1');
  t.is(weft.configValueFromText('pipeline.num_micro_batch', '4'), 4);
});

test('cluster_test.py::test_cluster_with_all: layout all gives every TaskGraph every device, once each', async (t) => {
  const plan = await planJson('--devices', 'cpu:4', '--pp', '2', '--set', 'cluster.layout=all');
  t.deepEqual(plan.devices, ['cpu:0', 'cpu:1', 'cpu:2', 'cpu:3']);
  t.is(plan.batch.replicas, 4);
  const every = [[0], [1], [2], [3]];
  t.deepEqual(plan.taskgraphs.map((tg) => tg.devices), [every, every]);
});

test('cluster.py::get_device_list(prefer_row=False): weft plan --cluster simulates the hosts', async (t) => {
  const plan = await planJson('--devices', 'cpu:4', '--pp', '2', '--cluster', '2x2', '--set', 'cluster.device_place_prefer_intra_node=false');
  t.deepEqual(plan.taskgraphs.map((tg) => tg.devices), [[[0], [1]], [[2], [3]]]);
  t.is(plan.cluster, '2 hosts x 2 cpu devices');
  // A hardware kind makes it a cluster plan, whose kinds are named (a config error: exit 2).
  const kind = await weftCli('plan', ...MLP, '--cluster', '2x2:a100');
  t.is(kind.code, 2);
  t.regex(kind.stderr, /unknown hardware kind 'a100'; known kinds: a100-40g, a100-80g, cpu, h100, h200, v100/);
});

test('config_test.py::test_config_env: EPL_<SECTION>_<KEY> are aliases, WEFT_ wins', (t) => {
  t.is(withEnv({ EPL_PIPELINE_NUM_MICRO_BATCH: '4' }, () => weft.config().get('pipeline.num_micro_batch')), 4);
  const both = { EPL_PIPELINE_NUM_MICRO_BATCH: '4', WEFT_PIPELINE_NUM_MICRO_BATCH: '2' };
  t.is(withEnv(both, () => weft.config().get('pipeline.num_micro_batch')), 2);
});

test('an unknown WEFT_ variable is an error naming the nearest one', (t) => {
  const err = withEnv({ WEFT_PIPELIN_NUM_MICRO_BATCH: '4' }, () => t.throws(() => weft.config(), { instanceOf: weft.WeftConfigError }));
  t.is(err?.message, "unknown environment variable 'WEFT_PIPELIN_NUM_MICRO_BATCH'; did you mean 'WEFT_PIPELINE_NUM_MICRO_BATCH'?");
  t.is(withEnv({ WEFT_STORE_TOKEN: 'x' }, () => weft.config().get('pipeline.num_micro_batch')), 1);
});

test('amp_test.py::test_amp_fix: amp.loss_scale without amp.dtype means fp16', async (t) => {
  const fix = (await planJson('--set', 'amp.level=O1', '--set', 'amp.loss_scale=128')) as Plan & { amp: { dtype: string } };
  t.is(fix.amp.dtype, 'fp16');
  const bf16 = (await planJson('--set', 'amp.level=O1', '--set', 'amp.dtype=bf16', '--set', 'amp.loss_scale=128')) as Plan & { amp: { dtype: string }; warnings: string[] };
  t.is(bf16.amp.dtype, 'bf16');
  t.regex(bf16.warnings[0] ?? '', /amp\.loss_scale=128 has no effect under amp\.dtype='bf16'/);
});
