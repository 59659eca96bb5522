#!/usr/bin/env node
// `npm test`: the Rust tests (`cargo test --workspace`), a type check of the TS sources and
// specs (`tsc -p tsconfig.test.json`), the ava specs (`ava --tap`), then the layer check
// (`scripts/check-layers.mjs`: no import cycle between crates/core's modules).
// Output streams through; the last line is the plain summary `N passed, N failed[, N skipped]`
// over both runners. Exits non-zero when anything failed (a runner that exits non-zero without
// a parsed failure, e.g. a build error, counts as one failure).
import { run } from './lib.mjs';

const total = { passed: 0, failed: 0, skipped: 0 };

// cargo: one `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line per test binary.
const cargo = { passed: 0, failed: 0, skipped: 0 };
const cargoCode = await run('cargo', ['test', '--workspace'], (line) => {
  const m = /test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored/.exec(line);
  if (m) {
    cargo.passed += Number(m[1]);
    cargo.failed += Number(m[2]);
    cargo.skipped += Number(m[3]);
  }
});
if (cargoCode !== 0 && cargo.failed === 0) cargo.failed = 1;

// tsc: the specs run through tsx, which strips types without checking them.
const tscBin = new URL('../node_modules/typescript/bin/tsc', import.meta.url);
const tscCode = await run(process.execPath, [tscBin.pathname, '-p', 'tsconfig.test.json'], () => {});
// A type error counts as one failure; a clean check adds no count (it is not a test).
const typecheck = { passed: 0, failed: tscCode === 0 ? 0 : 1, skipped: 0 };

// ava --tap: `ok N - title`, `not ok N - title`, `ok N - title # SKIP`.
const ava = { passed: 0, failed: 0, skipped: 0 };
const avaBin = new URL('../node_modules/ava/entrypoints/cli.mjs', import.meta.url);
const avaCode = await run(process.execPath, [avaBin.pathname, '--tap'], (line) => {
  if (/^not ok \d+/.test(line)) ava.failed += 1;
  else if (/^ok \d+.*# (SKIP|TODO)/i.test(line)) ava.skipped += 1;
  else if (/^ok \d+/.test(line)) ava.passed += 1;
});
if (avaCode !== 0 && ava.failed === 0) ava.failed = 1;

/**
 * A script stage run when `process.env[flag] === '1'` (always when `flag` is null), whose last line is
 * `NAME: N passed, N failed`; a non-zero exit without a parsed failure counts as one.
 */
async function scriptStage(name, script, flag) {
  const counts = { passed: 0, failed: 0, skipped: 0, ran: flag === null || process.env[flag] === '1' };
  if (!counts.ran) return counts;
  const re = new RegExp(`^${name}: (\\d+) passed, (\\d+) failed`);
  const code = await run(process.execPath, [new URL(script, import.meta.url).pathname], (line) => {
    const m = re.exec(line);
    if (m) [counts.passed, counts.failed] = [Number(m[1]), Number(m[2])];
  });
  if (code !== 0 && counts.failed === 0) counts.failed = 1;
  return counts;
}
// The layer check: no import cycle between crates/core's top-level modules.
const layers = await scriptStage('layers', './check-layers.mjs', null);
// The WASM build's tests (scripts/test-wasm.mjs), then the install-like-a-user test and the
// glibc-baseline check (scripts/test-install.mjs, which packs the WASM build the stage before made).
const wasm = await scriptStage('wasm', './test-wasm.mjs', 'WEFT_TEST_WASM');
const install = await scriptStage('install', './test-install.mjs', 'WEFT_TEST_INSTALL');

for (const r of [cargo, typecheck, ava, layers, wasm, install]) {
  total.passed += r.passed;
  total.failed += r.failed;
  total.skipped += r.skipped;
}
console.log(`\ncargo: ${cargo.passed} passed, ${cargo.failed} failed, ${cargo.skipped} ignored`);
console.log(`tsc: ${tscCode === 0 ? 'types check' : 'type errors'}`);
console.log(`ava: ${ava.passed} passed, ${ava.failed} failed, ${ava.skipped} skipped`);
for (const [name, r] of [['layers', layers], ['wasm', wasm], ['install', install]]) {
  if (r.ran) console.log(`${name}: ${r.passed} passed, ${r.failed} failed`);
}
const skipped = total.skipped > 0 ? `, ${total.skipped} skipped` : '';
console.log(`${total.passed} passed, ${total.failed} failed${skipped}`);
process.exit(total.failed > 0 ? 1 : 0);
