// The cooperative executor (`executor.cooperative`; always on the single-threaded WASM build):
// every device on one thread, interleaved. Natively it must train exactly like the threaded
// executor; on the WASM build, where it is the only mode, like the native addon (within the
// parity harness's 1e-5: the two builds' kernels round differently).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as weft from '../ts/index.js';
import { LAYOUTS, STEPS, bindingTarget, train } from './cooperative-fixture.js';

const WASM = bindingTarget() === 'wasm32-wasip1';

let cached: Record<string, number[]> | undefined;

/** The native addon's losses, from a process that is not forced onto the WASM build. */
function nativeLosses(): Record<string, number[]> {
  if (cached !== undefined) return cached;
  const env = { ...process.env };
  delete env.NAPI_RS_FORCE_WASI;
  const out = execFileSync(process.execPath, ['--import', 'tsx', `${__dirname}/cooperative-native.ts`], { env, encoding: 'utf8' });
  const parsed = JSON.parse(out) as { target: string; losses: Record<string, number[]> };
  if (parsed.target === 'wasm32-wasip1') throw new Error('the native run loaded the WASM build');
  cached = parsed.losses;
  return cached;
}

const CLOSE = 1e-5;

for (const name of Object.keys(LAYOUTS)) {
  if (WASM) {
    test(`${name} on the WASM build runs cooperatively and matches the native addon within ${CLOSE}`, async (t) => {
      const native = nativeLosses()[name] ?? [];
      // Without the key: the single-threaded build picks the mode itself.
      const { losses, plan } = await train(name, false);
      t.regex(plan, /executor: cooperative \(2 device\(s\) interleaved on the calling thread/);
      t.is(losses.length, STEPS);
      t.is(native.length, STEPS);
      losses.forEach((l, i) => {
        const n = native[i] as number;
        t.true(Math.abs(l - n) <= CLOSE * Math.abs(n), `step ${i + 1}: wasm ${l} vs native ${n}`);
      });
    });
  } else {
    test(`${name} with executor.cooperative trains exactly like the threaded executor`, async (t) => {
      const threaded = await train(name, false);
      const coop = await train(name, true);
      t.deepEqual(coop.losses, threaded.losses);
      t.true((coop.losses[STEPS - 1] as number) < (coop.losses[0] as number), `${coop.losses.join(', ')}`);
      t.regex(coop.plan, /executor: cooperative \(2 device\(s\) interleaved on the calling thread/);
      t.notRegex(threaded.plan, /executor: cooperative/);
    });
  }
}

test('the mode refuses tensor parallelism by name', async (t) => {
  const cfg = weft.config({ executor: { cooperative: true } });
  const model = weft.model(cfg, (m) => {
    const x = m.input('x', [null, 4]);
    const y = m.input('y', [null], 'i32');
    return m.split({ deviceCount: 2, name: 'tp' }, () => {
      const h = m.nn.linear(x, 8, { name: 'fc' }).relu();
      return m.losses.softmaxCrossEntropy(m.nn.linear(h, 3, { name: 'out' }), y);
    });
  });
  const err = await t.throwsAsync(weft.compile(model, { batch: 4, devices: weft.cpu(2) }), { instanceOf: weft.WeftUnsupportedError });
  t.regex(err?.message ?? '', /^tensor parallelism in the cooperative executor is not yet supported: /);
});
