#!/usr/bin/env node
// The layer check (issue 20): the top-level modules of crates/core/src must import each other
// without a cycle, so the crate reads bottom-up (docs/ARCHITECTURE.md, "Layers").
// An edge A -> B is any `crate::B` path written in a file of module A (a `use crate::{B, C}`
// group counts each name). Test-only code is left out: a trailing `#[cfg(test)] mod tests`
// block, and files named in `#[cfg(test)] mod x;` declarations, may reach any layer.
// Prints each cycle with one file:line per edge, and ends with `layers: N passed, N failed`
// (the line scripts/test.mjs counts). Exits non-zero on a cycle.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

const root = new URL('../crates/core/src/', import.meta.url).pathname;

function rustFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return rustFiles(path);
    return name.endsWith('.rs') ? [path] : [];
  });
}

/** The top-level module a file belongs to: its first directory, or its own stem. */
function moduleOf(file) {
  const first = relative(root, file).split(sep)[0];
  return first.replace(/\.rs$/, '');
}

/** Files declared test-only (`#[cfg(test)] mod name;`), as paths relative to `root`. */
function testOnlyFiles(files) {
  const out = new Set();
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const dir = file.endsWith('mod.rs') || file.endsWith('lib.rs')
      ? join(file, '..')
      : file.replace(/\.rs$/, '');
    for (const m of text.matchAll(/#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;/g)) {
      out.add(join(dir, `${m[1]}.rs`));
      out.add(join(dir, m[1], 'mod.rs'));
    }
  }
  return out;
}

/**
 * The production code of a file: cut at a trailing `#[cfg(test)] mod tests {`, and without
 * `//` comments (a doc link to `crate::x` is not an import).
 */
function productionText(text) {
  const m = /^#\[cfg\(test\)\]\s*\nmod \w+ \{/m.exec(text);
  const code = m ? text.slice(0, m.index) : text;
  return code.replace(/\/\/.*$/gm, '');
}

/** Each `crate::name` reference: [name, line]. */
function references(text) {
  const refs = [];
  const lineOf = (i) => text.slice(0, i).split('\n').length;
  for (const m of text.matchAll(/\bcrate::(\w+|\{)/g)) {
    if (m[1] !== '{') {
      refs.push([m[1], lineOf(m.index)]);
      continue;
    }
    // A group: the names at brace depth 1.
    let depth = 0;
    let i = m.index + m[0].length - 1;
    let name = '';
    let expectName = true;
    for (; i < text.length; i++) {
      const c = text[i];
      if (c === '{') depth++;
      else if (c === '}') {
        if (--depth === 0) break;
      } else if (depth === 1) {
        if (/\w/.test(c) && expectName) name += c;
        else if (name) {
          refs.push([name, lineOf(i)]);
          name = '';
          expectName = false;
        }
        if (c === ',') expectName = true;
      }
    }
    if (name) refs.push([name, lineOf(i)]);
  }
  return refs;
}

const files = rustFiles(root);
const testOnly = testOnlyFiles(files);
const modules = new Set(files.map(moduleOf));
/** edges.get(a).get(b) = first "file:line" where a uses b. */
const edges = new Map([...modules].map((m) => [m, new Map()]));
for (const file of files) {
  if (testOnly.has(file)) continue;
  const from = moduleOf(file);
  if (from === 'lib') continue;
  for (const [to, line] of references(productionText(readFileSync(file, 'utf8')))) {
    if (to === from || !modules.has(to) || edges.get(from).has(to)) continue;
    edges.get(from).set(to, `${relative(root, file)}:${line}`);
  }
}

// Tarjan's strongly connected components; every component of more than one module is a cycle.
const index = new Map();
const low = new Map();
const stack = [];
const onStack = new Set();
const cycles = [];
let counter = 0;
function visit(v) {
  index.set(v, counter);
  low.set(v, counter++);
  stack.push(v);
  onStack.add(v);
  for (const w of edges.get(v).keys()) {
    if (!index.has(w)) {
      visit(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
  }
  if (low.get(v) === index.get(v)) {
    const scc = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1) cycles.push(scc.sort());
  }
}
for (const m of [...modules].sort()) if (!index.has(m)) visit(m);

for (const scc of cycles) {
  console.log(`cycle between crates/core/src modules: ${scc.join(', ')}`);
  for (const a of scc) {
    for (const [b, where] of edges.get(a)) {
      if (scc.includes(b)) console.log(`  ${a} -> ${b}  (${where})`);
    }
  }
}
if (process.argv.includes('--print')) {
  for (const [a, outs] of [...edges].sort()) console.log(`${a} -> ${[...outs.keys()].sort().join(', ')}`);
}
console.log(`layers: ${cycles.length === 0 ? 1 : 0} passed, ${cycles.length} failed`);
process.exit(cycles.length === 0 ? 0 : 1);
