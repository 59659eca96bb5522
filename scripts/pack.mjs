#!/usr/bin/env node
// `npm run pack:dist`: the npm tarballs a release publishes, into target/dist/tarballs/:
// `weft-ml` and one package per directory of npm/ (napi-rs's platform packages). Each package is
// staged under target/dist/pkg/ and packed there, so what ships is exactly this:
//  - weft-ml: dist/, the generated loader (bindings/index.js, .d.ts), README, LICENSE, and a
//    package.json without scripts or devDependencies (a consumer never compiles), listing every
//    platform package as an optional dependency (what `napi prepublish` adds at publish time);
//  - each platform package: its npm/<dir>/package.json, with the name, version, license,
//    repository, homepage, bugs and engines of the root package.json (the one place they are
//    written), and the files it lists, taken from target/dist/native/ (the release builds of
//    scripts/build-dist.sh) or else bindings/ (`npm run build:native` / `build:wasm`).
// `node scripts/pack.mjs [DIR...]` packs the platform packages of those npm/ dirs only.
// Prints one `packed FILE (N bytes)` line per tarball; a missing artifact is an error naming it.
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'target', 'dist');
const stage = join(out, 'pkg');
const tarballs = join(out, 'tarballs');
const ARTIFACT_DIRS = [join(out, 'native'), join(root, 'bindings')];
const SHARED = ['version', 'license', 'repository', 'homepage', 'bugs'];

const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'));
const writeJson = (file, value) => writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
const main = readJson(join(root, 'package.json'));

/** Packs the staged directory `dir`; returns the tarball's path. */
function pack(dir) {
  const name = execFileSync('npm', ['pack', '--ignore-scripts', '--loglevel=warn', '--pack-destination', tarballs], { cwd: dir, encoding: 'utf8' })
    .trim()
    .split('\n')
    .pop();
  const file = join(tarballs, name);
  console.log(`packed ${file} (${statSync(file).size} bytes)`);
  return file;
}

/** Stages and packs the platform package of npm/<dir>. */
function platformPackage(dir) {
  const pkg = readJson(join(root, 'npm', dir, 'package.json'));
  for (const key of SHARED) pkg[key] = main[key];
  const to = join(stage, dir);
  mkdirSync(to, { recursive: true });
  for (const file of pkg.files) {
    // Committed files (napi-rs's `.wasm.d.ts`) sit beside the package.json.
    const dirs = [join(root, 'npm', dir), ...ARTIFACT_DIRS];
    const from = dirs.map((d) => join(d, file)).find((f) => existsSync(f));
    if (from === undefined) {
      throw new Error(`pack: ${pkg.name} needs ${file}, in none of ${dirs.join(', ')} (scripts/build-dist.sh builds it)`);
    }
    copyFileSync(from, join(to, file));
  }
  copyFileSync(join(root, 'npm', dir, 'README.md'), join(to, 'README.md'));
  copyFileSync(join(root, 'LICENSE'), join(to, 'LICENSE'));
  writeJson(join(to, 'package.json'), pkg);
  pack(to);
}

// Packs made earlier for other platforms stay (a tarball of the same name is replaced).
rmSync(stage, { recursive: true, force: true });
mkdirSync(tarballs, { recursive: true });
// Every platform is listed in weft-ml's optionalDependencies; only those named on the command
// line (default: all of npm/) are packed here, so a contributor's machine packs its own.
const platforms = readdirSync(join(root, 'npm')).sort();
const only = process.argv.slice(2);
for (const p of only) if (!platforms.includes(p)) throw new Error(`pack: no npm/${p} (platforms: ${platforms.join(', ')})`);
for (const p of only.length > 0 ? only : platforms) platformPackage(p);

const to = join(stage, 'weft-ml');
mkdirSync(join(to, 'bindings'), { recursive: true });
cpSync(join(root, 'dist'), join(to, 'dist'), { recursive: true });
for (const f of ['bindings/index.js', 'bindings/index.d.ts', 'README.md', 'LICENSE']) copyFileSync(join(root, f), join(to, f));
const { scripts: _scripts, devDependencies: _dev, napi: _napi, ava: _ava, ...published } = main;
const names = platforms.map((p) => readJson(join(root, 'npm', p, 'package.json')).name);
published.optionalDependencies = Object.fromEntries(names.map((name) => [name, main.version]));
writeJson(join(to, 'package.json'), published);
pack(to);
