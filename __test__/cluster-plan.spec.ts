// Cluster planning (issue 22; issue 15 item 7): `weft plan --cluster NODESxGPUS:KIND` and
// `weft.plan` predict from shapes alone. The formulas and the published-row comparison are the
// core's tests (crates/core/src/cluster, crates/core/tests/cluster_plan.rs); these check the
// binding, the TS types and the CLI around them.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import test from 'ava';
import * as weft from '../ts/index.js';
import { runCli } from './helpers.js';

const GPT_1T = ['--model', 'gpt', '--layers', '128', '--heads', '160', '--dim', '25600', '--seq', '2048', '--vocab', '51200'];
const HUGE_MLP = ['--model', 'mlp', '--sizes', '100000000,100000000', '--batch', '8'];
const GPT_13B = { kind: 'gpt', layers: 40, heads: 40, dim: 5120, seq: 2048, vocab: 51200 } as const;

test('weft.plan: the report carries exactly the typed keys, and the step adds up', (t) => {
  const p = weft.plan(GPT_13B, { cluster: '2x8:h100', tp: 8, pp: 2, global_batch: 64, recompute: true });
  const keys: (keyof weft.ClusterPlanJson)[] = [
    'bubble_fraction', 'closed_form_bubble', 'cluster', 'critical', 'devices', 'fits', 'hardware', 'hardware_flops_per_gpu',
    'layout', 'memory', 'mfu', 'model_flops_per_gpu', 'overflow', 'parameters', 'step', 'step_s', 'tokens_per_s',
  ];
  t.deepEqual(Object.keys(p).sort(), keys.sort());
  t.deepEqual([p.devices, p.layout.dp, p.layout.micro_batches, p.layout.stages, p.hardware], [16, 1, 64, 2, 'h100']);
  t.true(p.fits);
  t.is(p.memory.length, 2);
  for (const s of p.step) {
    t.true(Math.abs(s.compute_s + s.exposed_comm_s + s.bubble_s + s.optimizer_s - p.step_s) < 1e-6 * p.step_s);
  }
  t.true(p.critical.exposed_comm_s > 0, 'tp 8 all-reduces are on the critical path');
  t.true(Math.abs(p.tokens_per_s - (64 * 2048) / p.step_s) < 1e-6 * p.tokens_per_s);
});

test('weft.plan: bad kinds and layouts are typed errors naming the value', (t) => {
  const kind = t.throws(() => weft.plan(GPT_13B, { cluster: '2x8:tpu' }));
  t.is((kind as weft.WeftError).code, 'WEFT_CONFIG');
  t.is(kind?.message, "unknown hardware kind 'tpu'; known kinds: a100-40g, a100-80g, cpu, h100, h200, v100");
  const tp = t.throws(() => weft.plan(GPT_13B, { cluster: '2x8:h100', tp: 3 }));
  t.is(tp?.message, 'tensor parallel size 3 does not divide heads 40');
  const io = t.throws(() => weft.plan(GPT_13B, { cluster: '2x8:h100', hardware: '/no/such/hw.json' }));
  t.is((io as weft.WeftError).code, 'WEFT_IO');
});

test('weft plan --cluster: a 1T GPT on 384x8:a100-80g plans from shapes (--json)', async (t) => {
  const run = await runCli('plan', ...GPT_1T, '--batch', '3072', '--cluster', '384x8:a100-80g', '--tp', '8', '--pp', '64', '--set', 'amp.level=o1', '--set', 'gradient_checkpoint.type=auto', '--json');
  t.is(run.code, 0, run.stderr);
  const p = JSON.parse(run.stdout) as weft.ClusterPlanJson;
  t.deepEqual([p.devices, p.layout.dp, p.layout.micro_batches, p.layout.precision, p.layout.recompute], [3072, 6, 512, 'bf16', true]);
  t.true(p.fits);
  t.true(Math.abs(p.parameters / 1e12 - 1.008) < 0.01);
});

test('issue 15 item 7: a 1e8 x 1e8 MLP is planned or refused, never allocated', async (t) => {
  const cluster = await runCli('plan', ...HUGE_MLP, '--cluster', '1x8:h100');
  t.is(cluster.code, 1);
  t.regex(cluster.stdout, /memory per device/);
  t.regex(cluster.stderr, /pipeline rank 0 needs 149\.2 PiB > capacity 80\.0 GiB \(optimizer state 71\.1 PiB, parameters 35\.5 PiB, gradients 35\.5 PiB\)/);
  const local = await runCli('plan', ...HUGE_MLP);
  t.is(local.code, 1);
  t.regex(local.stderr, /parameter 'fc0\.weight' \[100000000, 100000000\] f32 needs 35\.5 PiB/);
  t.notRegex(local.stderr + cluster.stderr, /memory allocation|backtrace|panicked/);
});

test('weft plan --cluster: --hardware overrides the table; cluster-only flags are refused elsewhere', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-hw-'));
  const file = path.join(dir, 'hw.json');
  fs.writeFileSync(file, JSON.stringify({ h100: { memory_bytes: 1e9 } }));
  const args = ['plan', '--model', 'gpt', '--layers', '4', '--dim', '1024', '--heads', '8', '--seq', '512', '--vocab', '32000', '--batch', '8', '--cluster', '1x8:h100', '--json'];
  const base = await runCli(...args);
  t.is(base.code, 0, base.stderr);
  t.is((JSON.parse(base.stdout) as weft.ClusterPlanJson).memory[0]!.capacity, 80 * 2 ** 30);
  const small = await runCli(...args, '--hardware', file);
  t.is(small.code, 1);
  t.is((JSON.parse(small.stdout) as weft.ClusterPlanJson).memory[0]!.capacity, 1e9);
  const refused = await runCli('plan', '--model', 'mlp', '--micro-batch', '2');
  t.is(refused.code, 2);
  t.regex(refused.stderr, /--micro-batch applies to a cluster plan/);
});
