#!/usr/bin/env node
// The WASM half of the tests (`npm run test:wasm`; `npm test` runs it when WEFT_TEST_WASM=1, as
// .ci/run sets): builds the WASI package (`npm run build:wasm`), runs the ava specs that a
// single-threaded WASM build can run against it with NAPI_RS_FORCE_WASI=error, then the browser
// end-to-end test. Prints `wasm: N passed, N failed` last; exits non-zero on any failure.
// Multi-device plans run there with the cooperative executor (every device on one thread).
// Left out, with the reason (docs/WASM.md has the evidence):
//  - what the cooperative executor refuses: ZeRO v2 (its programs gather parameters while they
//    run) and tensor parallelism (tensor-parallel.spec; collectives inside kernels);
//  - cli (spawns processes), and the specs that read or write files through WASI (the token
//    file test, gpt-parity's safetensors load): Node 20's WASI crashes intermittently on them.
import { run } from './lib.mjs';

const SPECS = ['config', 'data', 'model', 'trainer', 'models', 'parallel', 'memory', 'cooperative']
  .map((s) => `__test__/${s}.spec.ts`);
const EXCLUDE = ['token files round-trip*', 'ZeRO v2 trains exactly like plain data parallelism*'];

const counts = { passed: 0, failed: 0 };
const tap = (line) => {
  if (/^not ok\b/.test(line)) counts.failed += 1;
  else if (/^ok\b/.test(line) && !/# (SKIP|TODO)/i.test(line)) counts.passed += 1;
};
/** Runs one stage; a non-zero exit without a parsed failure counts as one failure. */
async function stage(cmd, args, env = {}) {
  const before = counts.failed;
  const code = await run(cmd, args, tap, env);
  if (code !== 0 && counts.failed === before) counts.failed += 1;
  return code;
}

const started = Date.now();
const built = await stage('npm', ['run', 'build:wasm'], {});
const buildSeconds = Math.round((Date.now() - started) / 1000);
if (built === 0) {
  const force = { NAPI_RS_FORCE_WASI: 'error' };
  // The specs below must really run on the WASM build, not fall back to the native addon.
  await stage(process.execPath, ['-e', `
    const b = require('./bindings/index.js');
    const ok = b.__napiBindingTarget === 'wasm32-wasip1';
    console.log((ok ? 'ok' : 'not ok') + ' - NAPI_RS_FORCE_WASI=error loads the WASM build: ' + b.__napiBindingTarget);
    process.exit(ok ? 0 : 1);`], force);
  const avaBin = new URL('../node_modules/ava/entrypoints/cli.mjs', import.meta.url).pathname;
  const match = EXCLUDE.flatMap((t) => ['--match', `!${t}`]);
  // Node 20's V8 can die in a full GC that runs while the WASM memory grows ("Fatal error ...
  // unreachable code" in MarkCompactCollector::ProcessEphemerons under WasmMemoryObject::Grow):
  // 9 of 20 runs of one models spec crashed with SIGTRAP, 0 of 20 with incremental marking off.
  // The flag reaches ava's worker processes through execArgv (workerThreads is false).
  await stage(process.execPath, ['--no-incremental-marking', avaBin, '--tap', '--serial', ...SPECS, ...match], force);
  await stage(process.execPath, [new URL('./test-browser.mjs', import.meta.url).pathname]);
}
console.log(`\nbuild:wasm took ${buildSeconds} s`);
console.log(`wasm: ${counts.passed} passed, ${counts.failed} failed`);
process.exit(counts.failed > 0 ? 1 : 0);
