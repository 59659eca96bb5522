#!/usr/bin/env node
// `npm run test:install` (`npm test` runs it when WEFT_TEST_INSTALL=1, as .ci/run sets): installs
// weft-ml as a user would and checks the packages a release publishes.
//  1. scripts/build-dist.sh: the linux-x64-gnu addon built for glibc 2.28 with Zig, the WASM
//     build, and `scripts/pack.mjs`'s tarballs.
//  2. The addon's glibc baseline (its highest GLIBC_x.y symbol version, at most 2.28) and that it
//     is stripped.
//  3. An empty folder gets the tarballs (and the WASM runtime's own dependencies, packed from
//     node_modules) through `npm install --offline` with a dead registry, no Rust toolchain and
//     no tsc on PATH (tripwires that fail the install if anything calls them).
//  4. There, a two-stage pipeline MLP on cpu(4) trains through the public API, from CommonJS and
//     from ESM (same losses), then `npx weft train`; then with the native package removed the
//     WASM package loads and trains to the same losses (1e-5); with both removed the load error
//     names the platform and the WASM package.
// Prints `install: N passed, N failed` last; exits non-zero on any failure.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const counts = { passed: 0, failed: 0 };
/** Runs one named check; a throw is its failure. */
function check(name, fn) {
  try {
    const note = fn();
    console.log(`ok - ${name}${note ? `: ${note}` : ''}`);
    counts.passed += 1;
  } catch (err) {
    console.log(`not ok - ${name}: ${String(err?.message ?? err).split('\n').join('\n    ')}`);
    counts.failed += 1;
  }
}
function finish() {
  console.log(`install: ${counts.passed} passed, ${counts.failed} failed`);
  process.exit(counts.failed > 0 ? 1 : 0);
}
/** Runs a command, returning stdout; a non-zero exit throws with its output. */
function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

// --- 1. build and pack ---------------------------------------------------------------------------
const GLIBC_BASELINE = [2, 28];
const NATIVE = 'weft-ml-linux-x64-gnu';
const WASM = 'weft-ml-wasm32-wasip1';
let built = false;
check('build the platform packages and pack them (scripts/build-dist.sh)', () => {
  execFileSync('bash', [join(root, 'scripts', 'build-dist.sh')], { stdio: 'inherit' });
  built = true;
});
if (!built) finish();
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const tarballs = ['weft-ml', NATIVE, WASM].map((p) => join(root, 'target', 'dist', 'tarballs', `${p}-${version}.tgz`));

// --- 2. the native addon's glibc baseline --------------------------------------------------------
const addon = join(root, 'target', 'dist', 'pkg', 'linux-x64-gnu', 'weft.linux-x64-gnu.node');
check(`the linux-x64-gnu addon needs glibc <= ${GLIBC_BASELINE.join('.')} and is stripped`, () => {
  const versions = [...sh('objdump', ['-T', addon]).matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
  if (versions.length === 0) throw new Error(`no GLIBC symbol versions in ${addon}`);
  const [major, minor] = versions.reduce((a, b) => (b[0] > a[0] || (b[0] === a[0] && b[1] > a[1]) ? b : a));
  const [bMajor, bMinor] = GLIBC_BASELINE;
  if (major > bMajor || (major === bMajor && minor > bMinor)) throw new Error(`needs GLIBC_${major}.${minor}`);
  if (/\.symtab\b/.test(sh('readelf', ['-S', '-W', addon]))) throw new Error(`${addon} has a .symtab: not stripped`);
  return `highest symbol version GLIBC_${major}.${minor}`;
});

/** The names of a WebAssembly module's custom sections. */
function customSections(file) {
  const b = readFileSync(file);
  let i = 8; // magic and version
  const leb = () => {
    let [r, shift, x] = [0, 0, 0];
    do {
      x = b[i++];
      r += (x & 0x7f) * 2 ** shift;
      shift += 7;
    } while (x & 0x80);
    return r;
  };
  const names = [];
  while (i < b.length) {
    const id = b[i++];
    const end = leb() + i;
    if (id === 0) names.push(b.subarray(i + 1, i + 1 + b[i]).toString()); // names here are < 128 bytes
    i = end;
  }
  return names;
}
check('the WASM package ships a stripped module (no name or debug sections)', () => {
  const names = customSections(join(root, 'target', 'dist', 'pkg', 'wasm32-wasip1', 'weft.wasm32-wasip1.wasm'));
  const debug = names.filter((n) => n === 'name' || n.startsWith('.debug'));
  if (debug.length > 0) throw new Error(`custom sections ${debug.join(', ')}`);
  return `custom sections: ${names.join(', ') || 'none'}`;
});

// --- 3. install into an empty folder -------------------------------------------------------------
const dir = mkdtempSync(join(tmpdir(), 'weft-install-'));
const bin = join(dir, '.bin');
mkdirSync(bin);
// Only node, npm, npx and sh on PATH; cargo, rustc, tsc, napi and zig are tripwires.
const nodeDir = dirname(process.execPath);
for (const tool of ['node', 'npm', 'npx']) symlinkSync(join(nodeDir, tool), join(bin, tool));
symlinkSync('/bin/sh', join(bin, 'sh'));
const tripped = join(dir, 'tripped');
for (const tool of ['cargo', 'rustc', 'rustup', 'tsc', 'napi', 'zig']) {
  writeFileSync(join(bin, tool), `#!/bin/sh\necho "${tool} $*" >> "${tripped}"\nexit 1\n`);
  chmodSync(join(bin, tool), 0o755);
}
const env = {
  ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm_|NAPI_RS_|WEFT_|CARGO|RUSTUP)/.test(k))),
  PATH: bin,
  npm_config_registry: 'http://127.0.0.1:9/',
  npm_config_offline: 'true',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
};
const app = join(dir, 'app');
mkdirSync(app);
writeFileSync(join(app, 'package.json'), '{ "name": "app", "private": true }\n');

/** The WASM runtime's dependencies, packed from this checkout's node_modules. */
function runtimeTarballs() {
  const deps = new Set();
  const visit = (name) => {
    if (deps.has(name)) return;
    deps.add(name);
    const pkg = JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8'));
    for (const d of Object.keys(pkg.dependencies ?? {})) visit(d);
  };
  const wasmPkg = JSON.parse(readFileSync(join(root, 'npm', 'wasm32-wasip1', 'package.json'), 'utf8'));
  for (const d of Object.keys(wasmPkg.dependencies ?? {})) visit(d);
  const to = join(dir, 'deps');
  mkdirSync(to);
  return [...deps].map((d) => join(to, sh('npm', ['pack', '--ignore-scripts', '--pack-destination', to, join(root, 'node_modules', d)]).trim().split('\n').pop()));
}

check('npm install of the tarballs: offline, no toolchain, nothing compiled', () => {
  sh('npm', ['install', '--no-package-lock', ...tarballs, ...runtimeTarballs()], { cwd: app, env });
  if (existsSync(tripped)) throw new Error(`the install called: ${readFileSync(tripped, 'utf8')}`);
  for (const p of ['weft-ml', NATIVE, WASM]) {
    if (!existsSync(join(app, 'node_modules', p, 'package.json'))) throw new Error(`${p} is not installed`);
  }
});

check('strict tsc over an ESM and a CommonJS consumer (a misspelt config key is an error)', () => {
  writeFileSync(join(app, 'use.mts'), [
    "import * as weft from 'weft-ml';",
    'const model = weft.mlp({ sizes: [4, 2] }, weft.config({ pipeline: { numMicroBatch: 2 } }));',
    '// @ts-expect-error misspelt key',
    'weft.config({ pipeline: { numMicroBatchs: 2 } });',
    'const trainer = await weft.compile(model, { batch: 4 });',
    "const total: number = trainer.memory()['cpu:0']!.predicted.total;",
    'const plan: weft.PlanJson = trainer.plan.json;',
    'console.log(total, plan.stages, weft.runtime().binding);',
    '',
  ].join('\n'));
  writeFileSync(join(app, 'use.cts'), [
    "import weft = require('weft-ml');",
    "const n: number = weft.config({ 'pipeline.num_micro_batch': 2 }).get('pipeline.num_micro_batch');",
    'console.log(n);',
    '',
  ].join('\n'));
  const options = { strict: true, module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', noEmit: true, types: [] };
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: options, files: ['use.mts', 'use.cts'] }));
  // This checkout's TypeScript, run by path: the consumer folder has none, and `tsc` on PATH is a tripwire.
  sh('node', [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], { cwd: app, env });
});

// --- 4. train through the public API -------------------------------------------------------------
const body = `
async function main() {
  const cfg = weft.config({ pipeline: { numMicroBatch: 2 } });
  const model = weft.mlp({ sizes: [16, 32, 32, 4], stages: 2 }, cfg);
  const trainer = await weft.compile(model, {
    batch: 16, devices: weft.cpu(4), seed: 3, optimizer: weft.optim.adam({ lr: 1e-2 }),
  });
  const x = Float32Array.from({ length: 16 * 16 }, (_, i) => Math.sin(i * 0.37));
  const y = Int32Array.from({ length: 16 }, (_, i) => i % 4);
  const losses = [];
  for (let s = 0; s < 5; s++) losses.push((await trainer.step({ x, y })).loss);
  console.log(JSON.stringify({ runtime: weft.runtime(), stages: trainer.plan.json.stages, losses }));
}
main().catch((err) => { console.error(err.message); process.exit(1); });
`;
writeFileSync(join(app, 'train.cjs'), `const weft = require('weft-ml');\n${body}`);
writeFileSync(join(app, 'train.mjs'), `import * as weft from 'weft-ml';\n${body}`);
/** Runs one of the consumer programs; its JSON line. */
const train = (file) => JSON.parse(sh('node', [file], { cwd: app, env }).trim().split('\n').pop());
const close = (a, b) => a.length === b.length && a.every((v, i) => Math.abs(v - b[i]) <= 1e-5);

let native;
check('CommonJS: require("weft-ml") trains a two-stage pipeline MLP on cpu(4) with the native addon', () => {
  native = train('train.cjs');
  if (native.runtime.binding !== 'native') throw new Error(`loaded ${JSON.stringify(native.runtime)}`);
  if (native.stages !== 2) throw new Error(`${native.stages} stages`);
  if (!(native.losses[4] < native.losses[0])) throw new Error(`no learning: ${native.losses}`);
  return native.losses.map((l) => l.toFixed(5)).join(' ');
});
check('ESM: import * as weft from "weft-ml" trains the same', () => {
  const esm = train('train.mjs');
  if (esm.runtime.binding !== 'native' || !close(esm.losses, native?.losses ?? [])) throw new Error(JSON.stringify(esm));
});
check('npx weft train runs from the install folder', () => {
  const out = sh('npx', ['weft', 'train', '--model', 'mlp', '--sizes', '16,8,4', '--batch', '8', '--steps', '2', '--json'], { cwd: app, env });
  if (!/"loss"/.test(out)) throw new Error(out);
});
rmSync(join(app, 'node_modules', NATIVE), { recursive: true, force: true });
check(`without ${NATIVE} the WASM package loads and trains to the same losses (1e-5)`, () => {
  const wasm = train('train.cjs');
  if (wasm.runtime.binding !== 'wasm32-wasip1') throw new Error(`loaded ${JSON.stringify(wasm.runtime)}`);
  if (!close(wasm.losses, native?.losses ?? [])) throw new Error(`${wasm.losses} vs native ${native?.losses}`);
  return wasm.losses.map((l) => l.toFixed(5)).join(' ');
});
rmSync(join(app, 'node_modules', WASM), { recursive: true, force: true });
check('without either, the load error names the platform, what was tried and the WASM package', () => {
  const r = spawnSync('node', ['train.cjs'], { cwd: app, env, encoding: 'utf8' });
  const want = [/no build of the engine loads on linux-x64-gnu/, new RegExp(NATIVE), new RegExp(`npm install ${WASM}`)];
  if (r.status === 0 || !want.every((re) => re.test(r.stderr))) throw new Error(`exit ${r.status}: ${r.stderr}`);
});
rmSync(dir, { recursive: true, force: true });
finish();
