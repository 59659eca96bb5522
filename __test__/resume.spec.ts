// `weft train --resume`: a run stopped at step k and resumed equals the uninterrupted run bit
// for bit (losses, learning rates, saved weights and optimizer state), `--steps` is the run's
// total, and a finished run has nothing left to do.
import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { latestSave, runCli as weft } from './helpers.js';

const gpt = (layers: number): string[] => ['--model', 'gpt', '--layers', String(layers), '--heads', '2', '--dim', '32', '--seq', '16', '--vocab', '256', '--batch', '4'];
const TINY_GPT = gpt(1);
const COSINE = ['--schedule', 'cosine', '--warmup', '2', '--lr', '3e-3'];

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-resume-'));
test.after.always(() => fs.rmSync(root, { recursive: true, force: true }));

type Line = Record<string, unknown>;

function stepLines(stdout: string): Line[] {
  return stdout.trim().split('\n').map((l) => JSON.parse(l) as Line).filter((l) => 'step' in l);
}

/** A safetensors file's tensor table (without the per-save metadata) and its data bytes. */
function tensors(file: string): { header: unknown; data: Buffer } {
  const bytes = fs.readFileSync(file);
  const len = Number(bytes.readBigUInt64LE(0));
  const { __metadata__: _meta, ...header } = JSON.parse(bytes.subarray(8, 8 + len).toString('utf8')) as Record<string, unknown>;
  return { header, data: bytes.subarray(8 + len) };
}

/**
 * Trains 10 steps at once, and 4 + resume to 10, both on the devices `layout` gives; asserts
 * the two runs are the same run. (The layout is not the checkpoint's to choose: resumed on
 * another one, a run continues within rounding, as parallel runs match single-device ones.)
 */
async function assertResumes(t: ExecutionContext, name: string, model: readonly string[], layout: readonly string[] = []): Promise<void> {
  const flags = [...model, ...layout];
  const [whole, part, resumed] = ['whole', 'part', 'resumed'].map((d) => path.join(root, `${name}-${d}`)) as [string, string, string];
  const a = await weft('train', ...flags, '--steps', '10', '--save', whole, '--json');
  t.is(a.code, 0, a.stderr);
  // Stopped at step 4 of a 10-step run (the cosine decays to step 10, as in the whole run).
  const b = await weft('train', ...flags, '--steps', '4', '--decay-steps', '10', '--save', part, '--json');
  t.is(b.code, 0, b.stderr);
  const c = await weft('train', '--resume', part, ...layout, '--steps', '10', '--save', resumed, '--json');
  t.is(c.code, 0, c.stderr);
  const want = stepLines(a.stdout);
  const got = [...stepLines(b.stdout), ...stepLines(c.stdout)];
  const pick = (lines: Line[]): unknown[] => lines.map((l) => [l['step'], l['loss'], l['lr']]);
  t.deepEqual(pick(got), pick(want), `${name}: (step, loss, lr) of every step`);
  const lrs = want.map((l) => l['lr'] as number);
  t.true(lrs[0]! < lrs[1]! && lrs[4]! > lrs[9]!, `${name}: warm-up, then decay: ${lrs.join(' ')}`);
  for (const file of ['model.safetensors', 'optimizer.safetensors']) {
    const [x, y] = [tensors(path.join(latestSave(whole), file)), tensors(path.join(latestSave(resumed), file))];
    t.deepEqual(y.header, x.header, `${name}: ${file} tensors`);
    t.true(y.data.equals(x.data), `${name}: ${file} bytes`);
  }
}

test('a gpt on the built-in corpus resumes exactly: losses, learning rates, weights and optimizer state', async (t) => {
  await assertResumes(t, 'gpt', [...TINY_GPT, ...COSINE]);
});

test('a 2-stage gpt pipeline with 2 micro-batches resumes exactly', async (t) => {
  await assertResumes(t, 'gpt-pp', [...gpt(2), ...COSINE], ['--pp', '2', '--set', 'pipeline.num_micro_batch=2']);
});

test('an mlp over 2 replicas with ZeRO v1 resumes exactly', async (t) => {
  await assertResumes(t, 'mlp', ['--model', 'mlp', '--sizes', '16,32,4', '--batch', '16', ...COSINE], ['--dp', '2', '--set', 'zero.level=v1']);
});

test('--steps is the total: a finished run has nothing to do, and fewer steps than done is an error', async (t) => {
  const dir = path.join(root, 'finished');
  const a = await weft('train', ...TINY_GPT, '--steps', '3', '--save', dir);
  t.is(a.code, 0, a.stderr);
  const before = fs.readFileSync(path.join(latestSave(dir), 'weft.json'), 'utf8');
  // Without --steps a resumed run trains to its saved total: here, already reached.
  const done = await weft('train', '--resume', dir);
  t.is(done.code, 0, done.stderr);
  t.is(done.stdout, `nothing to do: ${dir} is at step 3, the run's total (--steps 3); give a larger --steps to train on\n`);
  const json = await weft('train', '--resume', dir, '--steps', '3', '--json');
  t.is(json.code, 0, json.stderr);
  t.deepEqual(JSON.parse(json.stdout), { nothing_to_do: true, checkpoint: dir, step: 3, steps: 3 });
  t.is(fs.readFileSync(path.join(latestSave(dir), 'weft.json'), 'utf8'), before, 'nothing was written');
  const elsewhere = await weft('train', '--resume', dir, '--save', path.join(root, 'copy'));
  t.is(elsewhere.code, 2);
  t.regex(elsewhere.stderr, /--save .*copy: nothing to train \(--resume .* is at step 3 of --steps 3\), so nothing new to save/);
  const below = await weft('train', '--resume', dir, '--steps', '2');
  t.is(below.code, 2);
  t.regex(below.stderr, /--steps 2 is below the checkpoint's step 3: --steps is the run's total number of steps, so give 3 or more/);
  const more = await weft('train', '--resume', dir, '--steps', '5', '--json');
  t.is(more.code, 0, more.stderr);
  t.deepEqual(stepLines(more.stdout).map((l) => l['step']), [4, 5], 'two more steps, to the total of 5');
});

test('a resumed cosine schedule keeps its length; another one is refused by name', async (t) => {
  const dir = path.join(root, 'cosine');
  const a = await weft('train', ...TINY_GPT, ...COSINE, '--steps', '4', '--save', dir);
  t.is(a.code, 0, a.stderr);
  // Past the saved schedule's end the rate stays at its floor (it never rises again).
  const on = await weft('train', '--resume', dir, '--steps', '6', '--json');
  t.is(on.code, 0, on.stderr);
  t.deepEqual(stepLines(on.stdout).map((l) => l['lr']), [0, 0]);
  const other = await weft('train', '--resume', dir, '--steps', '6', '--decay-steps', '6');
  t.is(other.code, 1);
  t.regex(other.stderr, /trained with the learning-rate schedule cosine from 0\.003 \(2 warm-up steps\) to 0 at step 4, this trainer's is cosine from 0\.003 \(2 warm-up steps\) to 0 at step 6/);
  const help = await weft('train', '--help');
  t.regex(help.stdout, /--steps N +the run's TOTAL optimizer steps .*resuming a 1000-step run saved at step 400 runs 600 more/);
});

test('a resumed run keeps its held-out evaluation split: it never trains on the tail, with or without eval flags', async (t) => {
  // 0.999 of the built-in corpus held out leaves 373 training tokens: 64 a step, so the loader
  // wraps at step 6, where reading past the cut would give other batches.
  const split = ['--eval-every', '2', '--eval-split', '0.999', '--eval-batches', '1'];
  const [whole, part] = ['held-whole', 'held-part'].map((d) => path.join(root, d)) as [string, string];
  const a = await weft('train', ...TINY_GPT, ...split, '--steps', '6', '--save', whole, '--json');
  t.is(a.code, 0, a.stderr);
  const b = await weft('train', ...TINY_GPT, ...split, '--steps', '3', '--save', part, '--json');
  t.is(b.code, 0, b.stderr);
  // Resumed without any eval flag: the same training batches as the run that never stopped.
  const c = await weft('train', '--resume', part, '--steps', '6', '--json');
  t.is(c.code, 0, c.stderr);
  const pick = (lines: Line[]): unknown[] => lines.map((l) => [l['step'], l['loss']]);
  t.deepEqual(pick([...stepLines(b.stdout), ...stepLines(c.stdout)]), pick(stepLines(a.stdout)));
  const other = await weft('train', '--resume', part, '--steps', '6', '--eval-every', '2', '--eval-split', '0.1');
  t.is(other.code, 2);
  t.regex(other.stderr, /--eval-split 0\.1: the run being resumed held out the last 0\.999 of its data; give --eval-split 0\.999 or leave it out/);
  const none = path.join(root, 'held-none');
  t.is((await weft('train', ...TINY_GPT, '--steps', '2', '--save', none)).code, 0);
  const added = await weft('train', '--resume', none, '--steps', '4', '--eval-every', '2');
  t.is(added.code, 2);
  t.regex(added.stderr, /--eval-split 0\.01: the run being resumed trained on all of its data, so none of it can be held out now; evaluate on --eval-data instead/);
});
