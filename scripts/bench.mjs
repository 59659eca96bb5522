#!/usr/bin/env node
// `npm run bench`: benchmarks W1 (MLP step), W2 (small GPT step) and G (fp32 GEMM) of
// BENCHMARKS.md for weft and, in the same invocation on the same machine, for the reference
// (PyTorch eager with 2 threads, numpy/OpenBLAS for G) when benches/reference's virtual
// environment exists. Prints medians after warm-up and the ratio reference/weft (> 1: weft is
// faster). Never fails for a missing reference: it says how to install it.
// P (pipeline idle vs ideal) and D (data-parallel scaling) run weft alone: their reference is
// the ideal bubble and the same model on one device.
// M (memory) compares ZeRO against plain data parallelism in the same run.
//   npm run bench [-- --only W1,W2,G,P,D,M] [--quick]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './lib.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const weft = require(join(root, 'dist', 'index.js'));
const { mlp } = require(join(root, 'dist', 'models', 'mlp.js'));
const { gpt } = require(join(root, 'dist', 'models', 'gpt.js'));
const native = require(join(root, 'bindings', 'index.js'));

const args = process.argv.slice(2);
const only = (args.includes('--only') ? args[args.indexOf('--only') + 1] : 'W1,W2,G,P,D,M').split(',');
const quick = args.includes('--quick');
const python = join(root, '.venv', 'bin', 'python');
const haveRef = existsSync(python);

const fmt = (x, d = 1) => (x === undefined ? '—' : x.toFixed(d));

/** Lines of JSON printed by a reference script (empty when it is not installed or fails). */
function reference(script, extra = []) {
  if (!haveRef) return [];
  const env = { ...process.env };
  // OpenBLAS core-type overrides slow a current numpy (env skill notes); unset for the bench.
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync(python, [join(root, 'benches', 'reference', script), '--bench', ...extra], { encoding: 'utf8', env });
  if (r.status !== 0) {
    process.stderr.write(`reference ${script} failed:\n${r.stderr}\n`);
    return [];
  }
  return r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

/**
 * Median wall ms of `trainer.step` (JS call to resolved promise; or `stepSync`, call to return)
 * and median per-step overhead: wall minus the native step's own time.
 */
async function timeSteps(trainer, batch, warmup, steps, sync = false) {
  const run = sync ? (b) => trainer.stepSync(b) : (b) => trainer.step(b);
  for (let i = 0; i < warmup; i++) await run(batch);
  const wall = [];
  const overhead = [];
  for (let i = 0; i < steps; i++) {
    const t0 = process.hrtime.bigint();
    const r = await run(batch);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    wall.push(ms);
    overhead.push(ms - r.ms);
  }
  return { wall: median(wall), overhead: median(overhead) };
}

function randomInts(n, max, seed) {
  let s = seed >>> 0;
  return Int32Array.from({ length: n }, () => ((s = (s * 1664525 + 1013904223) >>> 0) % max));
}

async function w1() {
  const B = 256;
  const trainer = await weft.compile(mlp({ sizes: [784, 1024, 1024, 10] }), { batch: B, optimizer: weft.optim.adam({ lr: 1e-3 }) });
  const x = Float32Array.from(randomInts(B * 784, 1000, 1), (v) => v / 1000);
  const batch = { x, y: randomInts(B, 10, 2) };
  const t = await timeSteps(trainer, batch, 3, quick ? 5 : 30);
  const s = await timeSteps(trainer, batch, 3, quick ? 5 : 30, true);
  const ref = reference('mlp.py').find((r) => r.workload === 'W1');
  const pct = (o, w) => `${fmt((o / w) * 100, 2)}% (${fmt(o * 1000, 0)} us)`;
  console.log(`W1 mlp 784-1024-1024-10 b256 adam | weft ${fmt(t.wall)} ms/step (${fmt((B * 1000) / t.wall, 0)} samples/s)` +
    ` | pytorch ${fmt(ref?.ms_per_step_median)} ms | ratio pytorch/weft ${ref ? fmt(ref.ms_per_step_median / t.wall, 2) : '—'}`);
  console.log(`W1 JS->Rust overhead per step | stepSync ${pct(s.overhead, s.wall)} | step (async: copy + 2 thread hand-offs) ${pct(t.overhead, t.wall)}`);
}

/** W2 with `threads` compute threads for weft and for PyTorch alike. */
async function w2(threads) {
  const B = 8;
  const trainer = await w2Trainer({ threads, batch: B });
  const t = await timeSteps(trainer, gptBatch(B, 3), 2, quick ? 3 : 8);
  const ref = reference('gpt2.py', ['--threads', String(threads)]).find((r) => r.workload === 'W2');
  console.log(`W2 gpt L4 H4 C256 T128 V4096 b8 adamw ${threads} thread${threads > 1 ? 's' : ''} | weft ${fmt(t.wall)} ms/step (${fmt((B * W2.seq * 1000) / t.wall, 0)} tokens/s)` +
    ` | pytorch ${fmt(ref?.ms_per_step_median)} ms | ratio pytorch/weft ${ref ? fmt(ref.ms_per_step_median / t.wall, 2) : '—'}`);
}

// Two alternating rounds (numpy, weft, numpy, weft), the better median of each side: on a
// shared machine a build starting mid-benchmark would otherwise decide the ratio.
function g() {
  const sizes = [256, 512, 1024, 2048];
  const best = { weft: new Map(), numpy: new Map() };
  const keep = (side, n, gf) => best[side].set(n, Math.max(best[side].get(n) ?? 0, gf));
  for (let round = 0; round < (quick ? 1 : 2); round++) {
    for (const r of reference('gemm.py')) if (r.impl === 'numpy') keep('numpy', r.n, r.gflops);
    for (const n of sizes) {
      const reps = n >= 2048 ? 5 : n >= 1024 ? 10 : 30;
      keep('weft', n, native.benchGemm(n, quick ? 3 : reps, 0));
    }
  }
  for (const n of sizes) {
    const [gf, ref] = [best.weft.get(n), best.numpy.get(n)];
    console.log(`G  gemm n=${n} | weft ${fmt(gf)} GFLOP/s | numpy ${fmt(ref)} GFLOP/s | ratio weft/numpy ${ref ? fmt(gf / ref, 2) : '—'}`);
  }
}

const W2 = { layers: 4, heads: 4, dim: 256, seq: 128, vocab: 4096 };

function gptBatch(b, seed) {
  return { idx: randomInts(b * W2.seq, W2.vocab, seed), targets: randomInts(b * W2.seq, W2.vocab, seed + 1) };
}

/** W2 with AdamW(3e-4), compiled for `devices` CPU devices (`threads` each; default: all cores). */
function w2Trainer({ config = {}, devices = 1, threads, batch = 8 } = {}) {
  return weft.compile(gpt(W2, weft.config(config)), {
    batch, devices: weft.cpu(devices), threads, optimizer: weft.optim.adamW({ lr: 3e-4 }),
  });
}

const mib = (bytes, digits = 1) => `${fmt(bytes / 2 ** 20, digits)} MiB`;

// P: W2 cut into S stages by the cost-model partitioner (auto.auto_parallel: stages balanced by
// its roofline time estimate, as the ideal bubble assumes), M micro-batches, 1F1B; global
// batch 16 so that M = 16 divides it.
async function p() {
  const B = 16;
  for (const S of [2, 4]) {
    for (const M of [4, 8, 16]) {
      const config = { auto: { autoParallel: true }, pipeline: { numStages: S, numMicroBatch: M, strategy: 'PreferBackward' } };
      const trainer = await w2Trainer({ config, devices: S, threads: 1, batch: B });
      const batch = gptBatch(B, 7);
      await trainer.step(batch);
      const idles = [];
      let ideal = 0;
      for (let i = 0; i < (quick ? 1 : 3); i++) {
        const r = await trainer.step(batch);
        idles.push(Math.max(...r.idle));
        ideal = r.idealIdle;
      }
      const idle = median(idles);
      console.log(`P  W2 S=${S} M=${M} 1F1B | worst-device idle ${fmt(idle * 100)}% | ideal ${fmt(ideal * 100)}% | excess ${fmt((idle - ideal) * 100)} points`);
    }
  }
}

// D: W2 on 2 devices x 1 thread (data parallel) vs 1 device x 2 threads, same global batch.
async function d() {
  const B = 8;
  const run = async (devices, threads) => {
    const trainer = await w2Trainer({ devices, threads, batch: B });
    return (await timeSteps(trainer, gptBatch(B, 9), 2, quick ? 3 : 6)).wall;
  };
  const one = await run(1, 2);
  const two = await run(2, 1);
  console.log(`D  W2 b8 | 1 device x 2 threads ${fmt(one)} ms/step | 2 devices x 1 thread ${fmt(two)} ms/step | throughput ratio ${fmt(one / two, 2)}`);
}

// M: W2 on 2 devices x 1 thread, batch 8: per-device optimizer-state, gradient and parameter
// bytes (the allocator's measured peaks; parameters kept between steps) and step time under
// ZeRO v0, v1 and v2 against plain data parallelism, and ZeRO v0's all-gather buffers with 4
// apply groups against 1.
async function m() {
  const run = async (level, numApplyGroup = 1) => {
    const config = { zero: { level }, optimizer: { numApplyGroup } };
    const trainer = await w2Trainer({ config, devices: 2, threads: 1 });
    const t = await timeSteps(trainer, gptBatch(8, 9), 2, quick ? 3 : 6);
    const devices = Object.values(trainer.memory());
    const most = (f) => Math.max(...devices.map(f));
    return {
      ms: t.wall,
      state: most((d) => d.measured.optimizer_state),
      statePredicted: most((d) => d.predicted.optimizer_state),
      grads: most((d) => d.measured.grads),
      gradsPredicted: most((d) => d.predicted.grads),
      gather: most((d) => d.zero_gather_bytes?.measured ?? 0),
      resident: most((d) => d.measured.resident_params),
      residentPredicted: most((d) => d.predicted.resident_params),
      params: most((d) => d.measured.params),
    };
  };
  const plain = await run('');
  const zero = { v0: await run('v0'), v1: await run('v1'), v2: await run('v2') };
  for (const [level, z] of Object.entries(zero)) {
    console.log(`M  W2 dp2 zero ${level} | optimizer state per device ${mib(z.state, 2)} (predicted ${mib(z.statePredicted, 2)}) vs ${mib(plain.state, 2)}: ratio ${fmt(z.state / plain.state, 3)}` +
      ` | gradients ${mib(z.grads, 2)} (predicted ${mib(z.gradsPredicted, 2)}) vs ${mib(plain.grads, 2)}: ratio ${fmt(z.grads / plain.grads, 3)} | step ${fmt(z.ms)} vs ${fmt(plain.ms)} ms`);
  }
  const v2 = zero.v2;
  console.log(`M  W2 dp2 zero v2 | parameters kept per device ${mib(v2.resident, 2)} (predicted ${mib(v2.residentPredicted, 2)}) vs ${mib(plain.resident, 2)}: ratio ${fmt(v2.resident / plain.resident, 3)}` +
    ` | parameter peak with gathered ones ${mib(v2.params, 2)}: ratio ${fmt(v2.params / plain.params, 3)}`);
  const [one, four] = [zero.v0, await run('v0', 4)];
  console.log(`M  W2 dp2 zero v0 num_apply_group 4 | all-gather buffers ${mib(four.gather, 2)} vs ${mib(one.gather, 2)} with 1 group: ratio ${fmt(four.gather / one.gather, 3)} | step ${fmt(four.ms)} vs ${fmt(one.ms)} ms`);
}

/** Median step time and the measured memory of cpu:0 for W2 on one device with `config`. */
async function w2OneDevice(config) {
  const trainer = await w2Trainer({ config });
  const t = await timeSteps(trainer, gptBatch(8, 13), 2, quick ? 3 : 6);
  return { ms: t.wall, memory: trainer.memory()['cpu:0'].measured };
}

// M, recomputation: W2 on one device (2 threads), activation peak and step time with
// gradient_checkpoint.type='auto' against keeping every activation.
async function recomputeBench() {
  const plain = await w2OneDevice({});
  const auto = await w2OneDevice({ gradientCheckpoint: { type: 'auto' } });
  const [a, p] = [auto.memory.activations, plain.memory.activations];
  console.log(`M  W2 recompute auto | activations ${mib(a)} vs ${mib(p)}: cut ${fmt((1 - a / p) * 100, 1)}%` +
    ` | step ${fmt(auto.ms)} vs ${fmt(plain.ms)} ms: +${fmt((auto.ms / plain.ms - 1) * 100, 1)}%`);
}

// M, offload: W2 on one device, device peak and host bytes with offload.level='v0'.
async function offloadBench() {
  const plain = await w2OneDevice({});
  const off = await w2OneDevice({ offload: { level: 'v0' } });
  const resident = (m) => m.params + m.optimizer_state;
  console.log(`M  W2 offload v0 | device peak ${mib(off.memory.peak_total)} vs ${mib(plain.memory.peak_total)}` +
    ` | parameters + optimizer state on the device ${mib(resident(off.memory))} vs ${mib(resident(plain.memory))}, host ${mib(off.memory.host)}` +
    ` | step ${fmt(off.ms)} vs ${fmt(plain.ms)} ms`);
}

// M, mixed precision: W2 on one device, activation peak and step time with amp.level='O1' in
// bf16 and fp16 against f32. The CPU kernels widen 16-bit inputs to f32, so on CPU the gain is
// memory only (the speed is a GPU matter).
async function ampBench() {
  const plain = await w2OneDevice({});
  for (const dtype of ['bf16', 'fp16']) {
    const low = await w2OneDevice({ amp: { level: 'O1', dtype } });
    const [a, p] = [low.memory.activations, plain.memory.activations];
    console.log(`M  W2 amp O1 ${dtype} | activations ${mib(a)} vs ${mib(p)} f32: ratio ${fmt(a / p, 3)}` +
      ` | device peak ${mib(low.memory.peak_total)} vs ${mib(plain.memory.peak_total)} | step ${fmt(low.ms)} vs ${fmt(plain.ms)} ms`);
  }
}

// M, prediction: each layout's predicted per-device peak (`weft plan`) against the peak the
// allocator measured over two steps of W2.
async function memoryPrediction() {
  const layouts = [
    ['1 device', 1, {}],
    ['dp2', 2, {}],
    ['pp2 m4', 2, { auto: { autoParallel: true }, pipeline: { numStages: 2, numMicroBatch: 4 } }],
    ['accumulation m4', 1, { pipeline: { numMicroBatch: 4 } }],
    ['dp2 zero v0', 2, { zero: { level: 'v0' } }],
    ['dp2 zero v1', 2, { zero: { level: 'v1' } }],
    ['dp2 zero v2', 2, { zero: { level: 'v2' } }],
    ['recompute auto', 1, { gradientCheckpoint: { type: 'auto' } }],
    ['offload v0', 1, { offload: { level: 'v0' } }],
    ['dp2 x pp2 m4 zero v1 recompute', 4, { auto: { autoParallel: true }, pipeline: { numStages: 2, numMicroBatch: 4 }, zero: { level: 'v1' }, gradientCheckpoint: { type: 'auto' } }],
    ['dp2 x pp2 m4 zero v2', 4, { auto: { autoParallel: true }, pipeline: { numStages: 2, numMicroBatch: 4 }, zero: { level: 'v2' } }],
    ['amp bf16', 1, { amp: { level: 'O1' } }],
    ['dp2 x pp2 m4 amp fp16 zero v2 recompute', 4, { auto: { autoParallel: true }, pipeline: { numStages: 2, numMicroBatch: 4 }, zero: { level: 'v2' }, amp: { level: 'O1', dtype: 'fp16' }, gradientCheckpoint: { type: 'auto' } }],
  ];
  for (const [name, devices, config] of layouts) {
    const trainer = await w2Trainer({ config, devices, threads: 1 });
    for (let i = 0; i < 2; i++) await trainer.step(gptBatch(8, 11));
    const worst = Object.values(trainer.memory()).map((d) => {
      const measured = [d.measured].flat().reduce((a, x) => a + x.peak_total, 0);
      return { measured, predicted: d.predicted.total, error: d.predicted.total / measured - 1 };
    }).sort((a, b) => Math.abs(b.error) - Math.abs(a.error))[0];
    console.log(`M  W2 ${name} | peak per device predicted ${mib(worst.predicted)} measured ${mib(worst.measured)} | error ${fmt(worst.error * 100, 1)}%`);
  }
}

console.log(`weft bench (${new Date().toISOString()}), ${(await import('node:os')).cpus().length} cores, medians after warm-up`);
if (!haveRef) {
  console.log('reference not installed: run `bash benches/reference/setup.sh` (a local .venv with torch and numpy from PyPI) to print ratios');
}
if (only.includes('W1')) await w1();
if (only.includes('W2')) {
  await w2(2);
  await w2(1);
}
if (only.includes('G')) g();
if (only.includes('P')) await p();
if (only.includes('D')) await d();
if (only.includes('M')) {
  await m();
  await recomputeBench();
  await offloadBench();
  await ampBench();
  await memoryPrediction();
}
