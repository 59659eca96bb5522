import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as weft from '../ts/index.js';
import { latestSave, runCli } from './helpers.js';

// The real path through the CLI: prepare a multi-shard GPT-2 data set with a validation split,
// train on it, resume, and check the resumed run continues the uninterrupted one exactly.
const GPT = ['--model', 'gpt', '--layers', '1', '--heads', '2', '--dim', '32', '--seq', '16', '--batch', '4', '--lr', '3e-3'];

const run = runCli;

const losses = (stdout: string): number[] =>
  stdout.trim().split('\n').map((l) => JSON.parse(l) as { loss?: number }).filter((l) => l.loss !== undefined).map((l) => l.loss as number);

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-data-'));
test.after.always(() => fs.rmSync(root, { recursive: true, force: true }));

/** A corpus of two text files and a JSON Lines file; prepared once for the tests below. */
async function prepared(): Promise<string> {
  const out = path.join(root, 'prepared');
  if (fs.existsSync(path.join(out, 'data.json'))) return out;
  const text = weft.data.corpus();
  fs.writeFileSync(path.join(root, 'a.txt'), text.slice(0, 20000));
  fs.writeFileSync(path.join(root, 'b.txt'), text.slice(20000, 40000));
  const lines = Array.from({ length: 50 }, (_, i) => JSON.stringify({ body: `Document ${i}: ${text.slice(40000 + i * 300, 40300 + i * 300)}` }));
  fs.writeFileSync(path.join(root, 'c.jsonl'), `${lines.join('\n')}\n`);
  const r = await run('data', 'prepare', path.join(root, 'a.txt'), path.join(root, 'b.txt'), path.join(root, 'c.jsonl'), '--field', 'body', '--out', out, '--val-fraction', '0.1', '--shard-tokens', '3000', '--json');
  if (r.code !== 0) throw new Error(r.stderr);
  return out;
}

test('data prepare writes train and val shards and a manifest of them', async (t) => {
  const dir = await prepared();
  const m = JSON.parse(fs.readFileSync(path.join(dir, 'data.json'), 'utf8')) as weft.data.DataManifest;
  t.is(m.tokenizer, 'gpt2');
  t.is(m.vocab_size, 50257);
  t.is(m.documents, 52);
  const train = m.shards.filter((s) => s.split === 'train');
  const val = m.shards.filter((s) => s.split === 'val');
  t.true(train.length >= 3, `${train.length} train shards`);
  t.true(val.length >= 1);
  for (const s of m.shards) t.is(weft.data.readTokens(path.join(dir, s.path)).length, s.tokens);
  // Every document ends with <|endoftext|>: 52 of them over all shards.
  const eot = m.shards.flatMap((s) => Array.from(weft.data.readTokens(path.join(dir, s.path)))).filter((x) => x === 50256).length;
  t.is(eot, 52);
  t.deepEqual(weft.data.resolve(dir).shards, train.map((s) => path.join(dir, s.path)));
});

test('train on the prepared directory, resume, and match the uninterrupted run', async (t) => {
  const dir = await prepared();
  const whole = await run('train', ...GPT, '--data', dir, '--steps', '6', '--json');
  t.is(whole.code, 0, whole.stderr);
  const ckpt = path.join(root, 'ckpt');
  const first = await run('train', ...GPT, '--data', dir, '--steps', '3', '--json', '--save', ckpt);
  t.is(first.code, 0, first.stderr);
  const meta = (JSON.parse(fs.readFileSync(path.join(latestSave(ckpt), 'weft.json'), 'utf8')) as { config: { meta: { tokenizer: string; model: { vocab: number }; data: { loader: unknown } } } }).config.meta;
  t.is(meta.tokenizer, 'gpt2');
  t.is(meta.model.vocab, 50257, 'the vocabulary comes from the manifest');
  t.deepEqual(Object.keys(meta.data.loader as object).sort(), ['epoch', 'shard', 'window']);
  const resumed = path.join(root, 'ckpt-resumed');
  const rest = await run('train', '--resume', ckpt, '--steps', '6', '--json', '--save', resumed);
  t.is(rest.code, 0, rest.stderr);
  const got = [...losses(first.stdout), ...losses(rest.stdout)];
  const want = losses(whole.stdout);
  t.is(got.length, 6);
  t.deepEqual(got, want, 'the resumed run continues the shuffled shards exactly, bit for bit');

  // Sample from the resumed checkpoint: the prompt is GPT-2 tokens and the continuation is
  // decoded with GPT-2's tokenizer (the ids `--tokenizer ids` prints decode to the same text).
  const prompt = 'The king';
  const greedy = ['sample', '--checkpoint', resumed, '--prompt', prompt, '--tokens', '8', '--temperature', '0'];
  const text = await run(...greedy);
  t.is(text.code, 0, text.stderr);
  const gpt2 = weft.data.tokenizer('gpt2');
  const promptIds = Array.from(gpt2.encode(prompt)).join(' ');
  const ids = await run(...greedy.map((a) => (a === prompt ? promptIds : a)), '--tokenizer', 'ids');
  t.is(ids.code, 0, ids.stderr);
  const generated = ids.stdout.trim().split(/\s+/).map(Number).slice(promptIds.split(' ').length);
  t.is(generated.length, 8);
  // Decoded as bytes, GPT-2 ids would read as other characters (198, GPT-2's newline, is a lone
  // byte 0xC6 there), so equal text means GPT-2's tokenizer decoded the sample.
  t.is(text.stdout, `${prompt}${gpt2.decode(generated)}\n`);
});

test('a model vocabulary smaller than the data\'s is refused before step 1', async (t) => {
  const dir = await prepared();
  const r = await run('train', ...GPT, '--vocab', '1000', '--data', dir, '--steps', '1');
  t.is(r.code, 2);
  t.regex(r.stderr, /the model's vocabulary \(1000\) is smaller than the data's \(50257 ids, tokenizer gpt2\): give --vocab 50257 or more/);
});

test('a glob of shards trains too; prepare needs --out and inputs', async (t) => {
  const dir = await prepared();
  const r = await run('train', ...GPT, '--vocab', '50257', '--data', path.join(dir, 'train_*.bin'), '--steps', '1', '--json');
  t.is(r.code, 0, r.stderr);
  const none = await run('data', 'prepare', '--out', path.join(root, 'x'));
  t.is(none.code, 2);
  t.regex(none.stderr, /give at least one input file/);
  const noOut = await run('data', 'prepare', path.join(root, 'a.txt'));
  t.regex(noOut.stderr, /--out DIR is required/);
});

test('the GPT-2 tokenizer through the API', (t) => {
  const gpt2 = weft.data.tokenizer('gpt2');
  t.deepEqual(Array.from(gpt2.encode('Hello, world!')), [15496, 11, 995, 0]);
  t.is(gpt2.decode([15496, 11, 995, 0]), 'Hello, world!');
  t.is(gpt2.vocabSize, 50257);
  t.is(gpt2.endOfText, 50256);
  t.is(weft.data.tokenizer('byte').endOfText, undefined);
  t.throws(() => weft.data.tokenizer('gpt3'), { message: /unknown tokenizer 'gpt3' \(known: byte, gpt2\)/ });
});

test('EPL\'s IO slicing through the API', (t) => {
  t.deepEqual(weft.data.sliceShards(['a', 'b', 'c', 'd'], [2, 2], 1), { files: ['b', 'd'], kind: 'sliced' });
  t.deepEqual(weft.data.sliceShards(['a', 'b', 'c'], [2, 2], 1), { files: ['a', 'b', 'c'], kind: 'uneven' });
  t.deepEqual(weft.data.sliceShards(['a', 'b', 'c'], [2, 2], 1, { dropLastFiles: true }), { files: ['b'], kind: 'sliced' });
});

test('weft plan shows the shards each worker reads', async (t) => {
  const dir = await prepared();
  const train = weft.data.resolve(dir).shards.map((s) => path.basename(s));
  const r = await run('plan', ...GPT, '--data', dir, '--dp', '2', '--set', 'io.slicing=true');
  t.is(r.code, 0, r.stderr);
  t.true(r.stdout.includes(`data: ${train.length} shards (gpt2, vocabulary 50257); io.slicing on\n  worker 0 (2 replicas): ${train.join(', ')}\n`), r.stdout);
});
