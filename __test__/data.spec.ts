import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as weft from '../ts/index.js';

test('the byte tokenizer round-trips and the corpus is built in', (t) => {
  const tokens = weft.data.encode('To be, or not to be');
  t.is(tokens[0], 'T'.charCodeAt(0));
  t.is(weft.data.decode(tokens), 'To be, or not to be');
  t.is(weft.data.vocabSize(), 256);
  t.true(weft.data.corpus().includes('To be, or not to be,'));
});

test('token files round-trip and the loader shifts targets by one', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-data-'));
  try {
    const path = join(dir, 't.bin');
    weft.data.writeTokens(path, Uint16Array.from({ length: 100 }, (_, i) => i));
    t.deepEqual(Array.from(weft.data.readTokens(path).slice(0, 3)), [0, 1, 2]);
    const loader = weft.data.tokenLoader({ path, batch: 2, seq: 4 });
    const b = loader.next();
    t.deepEqual(b.shape, [2, 4]);
    t.deepEqual(Array.from(b.inputs), [0, 1, 2, 3, 4, 5, 6, 7]);
    t.deepEqual(Array.from(b.targets), [1, 2, 3, 4, 5, 6, 7, 8]);
    t.is(loader.position, 8);
    const bad = join(dir, 'bad.bin');
    writeFileSync(bad, Buffer.alloc(10));
    t.throws(() => weft.data.readTokens(bad), { instanceOf: weft.WeftDataError });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the built-in corpus loader needs no file', (t) => {
  const loader = weft.data.tokenLoader({ batch: 2, seq: 8 });
  t.true(loader.tokenCount > 100_000);
  t.is(loader.next().inputs.length, 16);
});
