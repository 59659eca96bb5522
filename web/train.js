// Trains weft's MLP in the browser through the WASM package's browser loader and plots the loss
// after every step. The page publishes its progress on `window.weftRun` for the end-to-end test:
// { steps, losses, done, error }.
import * as weft from '../bindings/weft.wasip1-browser.js';

const STEPS = 150;
const BATCH = 64;
const run = { steps: 0, losses: [], done: false, error: null, target: weft.__napiBindingTarget };
window.weftRun = run;
const status = document.getElementById('status');

/** MLP 2-32-32-2 with a mean cross-entropy loss, through the binding's model builder. */
function buildMlp(sizes) {
  const m = new weft.NativeModel(false);
  let h = m.input('x', [null, sizes[0]], 'f32').id;
  for (let i = 0; i + 1 < sizes.length; i++) {
    const [fanIn, fanOut] = [sizes[i], sizes[i + 1]];
    const bound = 1 / Math.sqrt(fanIn);
    const init = JSON.stringify({ kind: 'uniform', low: -bound, high: bound });
    const w = m.parameter(`fc${i}.weight`, [fanIn, fanOut], init).id;
    h = m.op('matmul', [h, w], JSON.stringify({ transA: false, transB: false })).id;
    const b = m.parameter(`fc${i}.bias`, [fanOut], init).id;
    h = m.op('add', [h, b], '{}').id;
    if (i + 2 < sizes.length) h = m.op('relu', [h], '{}').id;
  }
  const y = m.input('y', [null], 'i32').id;
  const ce = m.op('cross_entropy', [h, y], '{}').id;
  const loss = m.op('mean', [ce], JSON.stringify({ axis: 0, keepdim: false })).id;
  return { m, loss };
}

/** A batch of two-spiral points with a seeded generator, so every run sees the same data. */
function spiralBatch(seed) {
  let s = seed >>> 0 || 1;
  const rand = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const x = new Float32Array(BATCH * 2);
  const y = new Int32Array(BATCH);
  for (let i = 0; i < BATCH; i++) {
    const cls = i % 2;
    const r = rand();
    const a = 3 * Math.PI * r + cls * Math.PI;
    x[2 * i] = r * Math.cos(a) + 0.05 * (rand() - 0.5);
    x[2 * i + 1] = r * Math.sin(a) + 0.05 * (rand() - 0.5);
    y[i] = cls;
  }
  return [x, y];
}

function plot(losses) {
  const c = document.getElementById('curve');
  const g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  const max = Math.max(...losses, 1e-6);
  g.beginPath();
  losses.forEach((l, i) => {
    const px = (i / (STEPS - 1)) * (c.width - 10) + 5;
    const py = c.height - 5 - (l / max) * (c.height - 10);
    i === 0 ? g.moveTo(px, py) : g.lineTo(px, py);
  });
  g.strokeStyle = '#c33';
  g.stroke();
}

async function main() {
  const { m, loss } = buildMlp([2, 32, 32, 2]);
  const options = { batch: BATCH, seed: 0, threads: 1, devices: 'cpu:1',
    optimizer: { kind: 'adam', lr: 0.01 }, config: {} };
  const trainer = await weft.compile(m, loss, JSON.stringify(options));
  for (let step = 0; step < STEPS; step++) {
    const report = await trainer.step(spiralBatch(step + 1));
    run.losses.push(report.loss);
    run.steps = step + 1;
    status.textContent = `step ${step + 1}/${STEPS}  loss ${report.loss.toFixed(4)}`;
    plot(run.losses);
    // Let the page paint between steps: the curve is live, not drawn at the end.
    await new Promise((r) => setTimeout(r, 0));
  }
  run.done = true;
}

main().catch((err) => {
  run.error = String(err && err.stack ? err.stack : err);
  status.textContent = `error: ${run.error}`;
});
