#!/usr/bin/env node
// `npm run bench:wasm`: W1 of BENCHMARKS.md (MLP 784-1024-1024-10, ReLU, batch 256, softmax
// cross-entropy, Adam lr 1e-3) in one invocation on the same machine, each engine in a child
// process of its own: weft native, weft WASM (NAPI_RS_FORCE_WASI=error) and TensorFlow.js's
// `wasm` backend. Medians of ms/step after warm-up, and the ratios. An engine that is not there
// (no native addon, no WASM build, TensorFlow.js not installed) prints why and is skipped.
// TensorFlow.js is not a dependency: `npm install --no-save @tensorflow/tfjs@4.22.0
// @tensorflow/tfjs-backend-wasm@4.22.0` for a bench run.
//   npm run bench:wasm [-- --steps 20]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { median } from './lib.mjs';

const B = 256;
const SIZES = [784, 1024, 1024, 10];
const args = process.argv.slice(2);
const steps = args.includes('--steps') ? Number(args[args.indexOf('--steps') + 1]) : 20;
const warmup = 3;
const self = fileURLToPath(import.meta.url);

function data() {
  let s = 1;
  const next = (max) => ((s = (s * 1664525 + 1013904223) >>> 0) % max);
  const x = Float32Array.from({ length: B * SIZES[0] }, () => next(1000) / 1000);
  const y = Int32Array.from({ length: B }, () => next(10));
  return { x, y };
}

async function timeSteps(step) {
  const ms = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = process.hrtime.bigint();
    await step();
    if (i >= warmup) ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(ms);
}

/** One engine, in this (child) process: prints `{"ms": ...}` or `{"skip": why}`. */
async function child(engine) {
  const { createRequire } = await import('node:module');
  const require = createRequire(import.meta.url);
  const root = fileURLToPath(new URL('..', import.meta.url));
  const batch = data();
  if (engine === 'tfjs-wasm') {
    const tf = require('@tensorflow/tfjs');


    require('@tensorflow/tfjs-backend-wasm');
    await tf.setBackend('wasm');
    await tf.ready();
    const params = [];
    for (let i = 0; i + 1 < SIZES.length; i++) {
      const bound = 1 / Math.sqrt(SIZES[i]);
      params.push(tf.variable(tf.randomUniform([SIZES[i], SIZES[i + 1]], -bound, bound)));
      params.push(tf.variable(tf.randomUniform([SIZES[i + 1]], -bound, bound)));
    }
    const opt = tf.train.adam(1e-3);
    const x = tf.tensor2d(batch.x, [B, SIZES[0]]);
    const y = tf.oneHot(tf.tensor1d(batch.y, 'int32'), SIZES.at(-1));
    const loss = () => {
      let h = x;
      for (let i = 0; i < params.length; i += 2) {
        h = tf.add(tf.matMul(h, params[i]), params[i + 1]);
        if (i + 2 < params.length) h = tf.relu(h);
      }
      return tf.neg(tf.mean(tf.sum(tf.mul(y, tf.logSoftmax(h)), 1)));
    };
    const ms = await timeSteps(async () => {
      const l = opt.minimize(loss, true);
      await l.data();
      l.dispose();
    });
    return { ms, threads: tf.backend().getThreadsCount?.() };
  }
  const weft = require(`${root}dist/index.js`);
  const { mlp } = require(`${root}dist/models/mlp.js`);
  const target = require(`${root}bindings/index.js`).__napiBindingTarget;
  // The loader falls back to WASM when the native addon is missing: that is not a native figure.
  const want = engine === 'weft-native' ? 'native' : 'wasm32-wasip1';
  if (target !== want) return { skip: `the binding loaded is ${target}, not ${want} (build it first)` };
  const trainer = await weft.compile(mlp({ sizes: SIZES }), { batch: B, optimizer: weft.optim.adam({ lr: 1e-3 }) });
  const ms = await timeSteps(() => trainer.step(batch));
  return { ms, target };
}

if (args[0] === '--child') {
  try {
    console.log(JSON.stringify(await child(args[1])));
  } catch (err) {
    console.log(JSON.stringify({ skip: String(err?.message ?? err).split('\n')[0] }));
  }
  process.exit(0);
}

const engines = [
  ['weft native', 'weft-native', {}],
  ['weft wasm (wasm32-wasip1, 1 thread)', 'weft-wasm', { NAPI_RS_FORCE_WASI: 'error' }],
  ['tfjs 4.22 wasm backend', 'tfjs-wasm', {}],
];
const results = {};
for (const [name, engine, env] of engines) {
  const r = spawnSync(process.execPath, [self, '--child', engine, '--steps', String(steps)], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  let out;
  try {
    out = JSON.parse(line);
  } catch {
    out = { skip: `exit ${r.status}: ${r.stderr.trim().split('\n').at(-1)}` };
  }
  results[name] = out;
  const extra = out.target ? ` [${out.target}]` : out.threads ? ` [${out.threads} threads]` : '';
  console.log(out.ms !== undefined ? `W1 ${name}: ${out.ms.toFixed(1)} ms/step${extra}` : `W1 ${name}: skipped (${out.skip})`);
}
const ms = (n) => results[n]?.ms;
const [nat, wasm, tfjs] = engines.map(([n]) => ms(n));
if (wasm !== undefined && nat !== undefined) console.log(`ratio wasm/native ${(wasm / nat).toFixed(2)} (time; > 1: WASM slower)`);
if (wasm !== undefined && tfjs !== undefined) console.log(`ratio tfjs-wasm/weft-wasm ${(tfjs / wasm).toFixed(2)} (> 1: weft faster)`);
