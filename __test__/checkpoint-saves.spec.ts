// Long runs you can trust (issue 15, items 1-3): step directories and `--keep`, periodic saves,
// SIGINT/SIGTERM and a closed stdout stop after the step and save, and everything a run will
// write or read is checked before step 1.
import test, { type ExecutionContext } from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as weft from '../ts/index.js';
import { BATCH, CLI_MAIN, latestSave, runCli, tinyBatch, tinyMlp } from './helpers.js';

const MLP = ['--model', 'mlp', '--sizes', '32,64,10', '--batch', '32'];
const GPT = ['--model', 'gpt', '--layers', '1', '--heads', '2', '--dim', '32', '--seq', '16', '--batch', '4', '--vocab', '300'];

function tempDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-saves-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Step -> loss of a `--json` run's output. */
function losses(stdout: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const line of stdout.split('\n')) {
    const m = /^\{"step":(\d+),"loss":([^,]+),/.exec(line);
    if (m) out.set(Number(m[1]), Number(m[2]));
  }
  return out;
}

/** A `weft train` child whose stdout and stderr are collected as they come. */
interface Running {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exit: Promise<number | null>;
}

function start(t: ExecutionContext, ...args: string[]): Running {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => child.exitCode === null && child.kill('SIGKILL'));
  const run: Running = { child, stdout: '', stderr: '', exit: new Promise((r) => child.on('exit', (code) => r(code))) };
  child.stdout?.on('data', (d: Buffer) => (run.stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (run.stderr += d.toString()));
  return run;
}

/** Resolves once `ready()` holds (polled; the exit is the guard against waiting forever). */
async function until(run: Running, ready: () => boolean): Promise<void> {
  let exited = false;
  void run.exit.then(() => (exited = true));
  while (!ready()) {
    if (exited) throw new Error(`the run exited first: ${run.stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const stepOf = (dir: string): number => (JSON.parse(fs.readFileSync(path.join(dir, 'weft.json'), 'utf8')) as { step: number }).step;

test('--save-every N saves each N steps into step directories and --keep K keeps the newest K', async (t) => {
  const ck = path.join(tempDir(t), 'ck');
  const r = await runCli('train', ...MLP, '--steps', '7', '--save-every', '2', '--keep', '2', '--save', ck, '--json');
  t.is(r.code, 0, r.stderr);
  t.deepEqual(fs.readdirSync(ck).sort(), ['latest', 'loss.svg', 'step-00000006', 'step-00000007']);
  t.is(latestSave(ck), path.join(ck, 'step-00000007'));
  t.is(stepOf(path.join(ck, 'step-00000006')), 6);
  // Resuming reads the newest save; a save at a step that already has one gets a new name.
  const again = await runCli('train', '--resume', ck, '--steps', '8', '--save', ck, '--keep', '2', '--json');
  t.is(again.code, 0, again.stderr);
  t.deepEqual([...losses(again.stdout).keys()], [8]);
  const orphan = await runCli('train', ...MLP, '--steps', '1', '--save-every', '2');
  t.is(orphan.code, 2);
  t.is(orphan.stderr, 'error: --save-every needs --save DIR (where the checkpoints go)\n');
});

test('SIGINT mid-run finishes the step, saves, says where, exits 130, and the save resumes exactly', async (t) => {
  const ck = path.join(tempDir(t), 'ck');
  const run = start(t, 'train', ...MLP, '--steps', '1000000', '--json', '--save', ck);
  await until(run, () => losses(run.stdout).size >= 3);
  run.child.kill('SIGINT');
  t.is(await run.exit, 130, run.stderr);
  const m = /stopped after step (\d+): SIGINT received; checkpoint saved to (.*); continue with --resume (.*)\n$/.exec(run.stderr);
  t.truthy(m, run.stderr);
  const k = Number(m?.[1]);
  t.is(m?.[2], path.join(ck, `step-${String(k).padStart(8, '0')}`));
  t.is(m?.[3], ck);
  t.is(stepOf(latestSave(ck)), k);
  t.is(Math.max(...losses(run.stdout).keys()), k, 'the step in progress was finished and reported');
  // The uninterrupted run, long enough for either reading of --steps on resume.
  const whole = await runCli('train', ...MLP, '--steps', String(2 * k + 3), '--json');
  t.is(whole.code, 0, whole.stderr);
  const want = losses(whole.stdout);
  const resumed = await runCli('train', '--resume', ck, '--steps', String(k + 3), '--json');
  t.is(resumed.code, 0, resumed.stderr);
  const got = losses(resumed.stdout);
  t.true(got.has(k + 1), resumed.stdout);
  for (const [step, loss] of got) t.is(loss, want.get(step) ?? NaN, `step ${step}`);
});

test('SIGTERM exits 143 after saving; a second signal exits at once and the last complete save still loads', async (t) => {
  const dir = tempDir(t);
  const term = start(t, 'train', ...MLP, '--steps', '1000000', '--json', '--save', path.join(dir, 'term'));
  await until(term, () => losses(term.stdout).size >= 2);
  term.child.kill('SIGTERM');
  t.is(await term.exit, 143, term.stderr);
  t.regex(term.stderr, /stopped after step \d+: SIGTERM received; checkpoint saved to /);
  // A model large enough that the save takes a while, so the second signal usually lands in it.
  const big = ['--model', 'mlp', '--sizes', '256,2048,2048,10', '--batch', '8'];
  const ck = path.join(dir, 'twice');
  t.is((await runCli('train', ...big, '--steps', '2', '--save', ck)).code, 0);
  const twice = start(t, 'train', '--resume', ck, '--steps', '1000000', '--json', '--save', ck);
  await until(twice, () => losses(twice.stdout).size >= 2);
  twice.child.kill('SIGINT');
  await until(twice, () => twice.stderr.includes('send it again to exit at once'));
  twice.child.kill('SIGINT');
  t.is(await twice.exit, 130, twice.stderr);
  // Either the save was cut short (the step-2 save remains) or it completed first.
  t.regex(twice.stderr, /SIGINT again: exiting now; the last complete checkpoint is kept\n|stopped after step \d+: SIGINT received; checkpoint saved/);
  t.log(twice.stderr.includes('again') ? 'the second signal cut the save short' : 'the save completed first');
  const at = stepOf(weft.checkpoint.latest(ck));
  t.true(at >= 2);
  const resumed = await runCli('train', '--resume', ck, '--steps', String(at + 1), '--save', ck, '--json');
  t.is(resumed.code, 0, resumed.stderr);
  t.false(fs.readdirSync(ck).some((n) => n.startsWith('.weft-tmp-')), 'the next save removes the dead run\'s temp entries');
});

test('a closed stdout (| head -1) stops after the step, saves and exits 141, never 0 without the checkpoint', async (t) => {
  const ck = path.join(tempDir(t), 'ck');
  const run = start(t, 'train', ...MLP, '--steps', '1000000', '--json', '--save', ck);
  await until(run, () => run.stdout.includes('\n'));
  run.child.stdout?.destroy();
  t.is(await run.exit, 141, run.stderr);
  const m = /stopped after step (\d+): stdout was closed \(broken pipe\); checkpoint saved to (.*);/.exec(run.stderr);
  t.truthy(m, run.stderr);
  t.is(stepOf(latestSave(ck)), Number(m?.[1]));
});

test('an unwritable --save and a --trace in a missing folder fail before step 1', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'a-file');
  fs.writeFileSync(file, 'x');
  const save = await runCli('train', ...MLP, '--steps', '3', '--json', '--save', path.join(file, 'ck'));
  t.is(save.code, 1);
  t.is(save.stdout, '');
  const ck = path.join(file, 'ck');
  t.is(save.stderr, `error: --save ${ck}: ${ck}: checkpoints cannot be written here: Not a directory (os error 20)\n`);
  const trace = path.join(dir, 'missing', 'trace.json');
  const r = await runCli('train', ...MLP, '--steps', '3', '--json', '--trace', trace);
  t.is(r.code, 2);
  t.is(r.stdout, '');
  t.is(r.stderr, `error: --trace ${trace}: the folder ${path.join(dir, 'missing')} does not exist (create it first)\n`);
});

/** An llm.c token file (version 1: u16 tokens). */
function writeBin(file: string, tokens: Uint16Array): void {
  const header = new Int32Array(256);
  header.set([20240520, 1, tokens.length]);
  fs.writeFileSync(file, Buffer.concat([Buffer.from(header.buffer), Buffer.from(tokens.buffer, tokens.byteOffset, tokens.byteLength)]));
}

test('an out-of-vocabulary token fails before step 1, naming its file and the first offending offset', async (t) => {
  const dir = tempDir(t);
  const small = path.join(dir, 'small.bin');
  const tokens = new Uint16Array(500).map((_, i) => i % 300);
  tokens[321] = 300;
  writeBin(small, tokens);
  const r = await runCli('train', ...GPT, '--data', small, '--steps', '2', '--json');
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.is(r.stderr, `error: data file ${small}: token 300 at byte offset ${1024 + 2 * 321} (token 321) is not below the model's vocabulary size 300\n`);
  // A file of several scan chunks: the first offender is reported, not a later one.
  const large = path.join(dir, 'large.bin');
  const many = new Uint16Array(3_000_000).fill(7);
  many[2_100_000] = 299;
  many[2_500_001] = 4000;
  many[2_900_000] = 301;
  writeBin(large, many);
  const big = await runCli('train', ...GPT, '--data', large, '--steps', '2', '--json');
  t.is(big.code, 1);
  t.is(big.stderr, `error: data file ${large}: token 4000 at byte offset ${1024 + 2 * 2_500_001} (token 2500001) is not below the model's vocabulary size 300\n`);
});

test('a model over --memory-limit fails before step 1', async (t) => {
  const r = await runCli('train', ...MLP, '--steps', '3', '--json', '--memory-limit', '1KiB');
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.regex(r.stderr, /^error: cpu:0: predicted peak \d+(\.\d)? KiB exceeds --memory-limit 1\.0 KiB\n$/);
});

test('weft.checkpoint.periodic saves every N steps, keeps K, and a root loads its newest save', async (t) => {
  const root = path.join(tempDir(t), 'ck');
  const trainer = await weft.compile(tinyMlp(), { batch: BATCH });
  const saver = weft.checkpoint.periodic(trainer, { dir: root, every: 2, keep: 2, meta: () => ({ at: trainer.stepCount }) });
  const saved: (string | undefined)[] = [];
  for (let i = 0; i < 5; i++) {
    await trainer.step(tinyBatch());
    saved.push(await saver.afterStep());
  }
  t.deepEqual(saved, [undefined, path.join(root, 'step-00000002'), undefined, path.join(root, 'step-00000004'), undefined]);
  t.is(saver.lastSavedStep, 4);
  t.is(weft.checkpoint.latest(root), path.join(root, 'step-00000004'));
  const back = await weft.compile(tinyMlp(), { batch: BATCH });
  t.deepEqual(await back.load(root), { at: 4 });
  t.is(back.stepCount, 4);
  t.throws(() => weft.checkpoint.periodic(trainer, { dir: root, every: 0 }), {
    instanceOf: weft.WeftConfigError,
    message: 'checkpoint.periodic: every must be a positive integer, got 0',
  });
  t.throws(() => weft.checkpoint.latest(path.join(root, 'nope')), {
    instanceOf: weft.WeftCheckpointError,
    message: `checkpoint ${path.join(root, 'nope')}: no such directory`,
  });
});
