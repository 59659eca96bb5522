import test from 'ava';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from '../ts/cli/args.js';
import { commandHelp, mainHelp } from '../ts/cli/help.js';
import { freePort, launchSpec } from '../ts/cli/launch.js';

// Several processes on loopback, as users run them: `node dist/cli/main.js launch ...`.
const MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
const MLP = ['--model', 'mlp', '--sizes', '32,64,10', '--batch', '24', '--json'];

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function node(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run 'npm run build' first`);
  return new Promise((resolve) => {
    execFile(process.execPath, [...args], { env, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The step losses in `--json` output, per rank (`[rank R] ` prefixes) or under key -1. */
function losses(stdout: string): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const line of stdout.trim().split('\n')) {
    const m = /^(?:\[rank (\d+)\] )?(\{.*\})$/.exec(line);
    if (!m) continue;
    const rec = JSON.parse(m[2] as string) as { loss?: number };
    if (rec.loss === undefined) continue;
    const rank = m[1] === undefined ? -1 : Number(m[1]);
    out.set(rank, [...(out.get(rank) ?? []), rec.loss]);
  }
  return out;
}

/** One process training `devices` replicas: the reference every multi-process run must equal. */
async function inProcess(devices: number): Promise<number[]> {
  const r = await node([MAIN, 'train', ...MLP, '--steps', '3', '--devices', `cpu:${devices}`]);
  if (r.code !== 0) throw new Error(r.stderr);
  return losses(r.stdout).get(-1) ?? [];
}

// Exact equality, not a tolerance: the TCP all-reduce adds in rank order like the in-process one,
// every process reduces the same bytes, and the global loss is gathered, not re-averaged.
for (const nproc of [2, 4]) {
  test(`${nproc} launched processes report the in-process ${nproc}-replica losses exactly`, async (t) => {
    const expected = await inProcess(nproc);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-launch-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const save = path.join(dir, 'ckpt');
    const r = await node([MAIN, 'launch', '--nproc-per-node', String(nproc), '--', process.execPath, MAIN, 'train', ...MLP, '--steps', '3', '--devices', 'cpu:1', '--save', save]);
    t.is(r.code, 0, r.stderr);
    const got = losses(r.stdout);
    t.is(got.size, nproc);
    for (let rank = 0; rank < nproc; rank++) t.deepEqual(got.get(rank), expected, `rank ${rank}`);
    t.is(expected.length, 3);
    t.not(expected[0], expected[2], 'training moved the loss');
    // Rank 0 alone writes the checkpoint; the others say they saved nothing.
    t.true(fs.existsSync(path.join(save, fs.readFileSync(path.join(save, 'latest'), 'utf8').trim(), 'weft.json')));
    const saved = [...r.stdout.matchAll(/^\[rank (\d+)\] \{"summary".*"saved":("[^"]*"|null)/gm)].map((m) => [Number(m[1]), m[2]]);
    t.deepEqual(saved.sort(), Array.from({ length: nproc }, (_, i) => [i, i === 0 ? JSON.stringify(save) : 'null']));
  });
}

test('2 launched processes of a 2-stage pipeline each report the in-process dp 2 x pp 2 losses exactly', async (t) => {
  const gpt = ['--model', 'gpt', '--layers', '2', '--heads', '2', '--dim', '32', '--seq', '16', '--vocab', '256', '--batch', '8', '--steps', '3', '--json', '--pp', '2', '--set', 'pipeline.num_micro_batch=2'];
  const one = await node([MAIN, 'train', ...gpt, '--devices', 'cpu:4']);
  t.is(one.code, 0, one.stderr);
  const r = await node([MAIN, 'launch', '--nproc-per-node', '2', '--', process.execPath, MAIN, 'train', ...gpt, '--devices', 'cpu:2']);
  t.is(r.code, 0, r.stderr);
  const expected = losses(one.stdout).get(-1);
  t.is(expected?.length, 3);
  const got = losses(r.stdout);
  t.deepEqual(got.get(0), expected);
  t.deepEqual(got.get(1), expected);
});

test('processes started with torchrun variables (no weft launch) train together', async (t) => {
  const port = String(await freePort('127.0.0.1'));
  const env = (rank: number): NodeJS.ProcessEnv => ({
    ...process.env, RANK: String(rank), WORLD_SIZE: '2', LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port,
  });
  const args = [MAIN, 'train', ...MLP, '--steps', '3', '--devices', 'cpu:1'];
  const [a, b] = await Promise.all([node(args, env(0)), node(args, env(1))]);
  t.is(a.code, 0, a.stderr);
  t.is(b.code, 0, b.stderr);
  const expected = await inProcess(2);
  t.deepEqual(losses(a.stdout).get(-1), expected);
  t.deepEqual(losses(b.stdout).get(-1), expected);
  const summary = JSON.parse(b.stdout.trim().split('\n').pop() as string) as { summary: { process: unknown } };
  t.deepEqual(summary.summary.process, { rank: 1, world: 2, localRank: 1, localWorld: 2, launcher: 'torchrun' });
});

test('a partial launcher environment is a config error naming the variable', async (t) => {
  const r = await node([MAIN, 'train', ...MLP, '--steps', '1'], { ...process.env, RANK: '0', WORLD_SIZE: '2' });
  t.is(r.code, 2);
  t.regex(r.stderr, /error: MASTER_ADDR is not set, but other variables of torchrun are: the environment is partial/);
});

/** Resolves with the first match of `re` in the text `child` writes to `stream`. */
function waitFor(child: ChildProcess, stream: 'stdout' | 'stderr', re: RegExp, sink: string[]): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let seen = '';
    child[stream]?.setEncoding('utf8');
    child[stream]?.on('data', (chunk: string) => {
      seen += chunk;
      sink.push(chunk);
      const m = re.exec(seen);
      if (m) resolve(m);
    });
    child.once('close', () => reject(new Error(`${stream} never matched ${String(re)}:\n${seen}`)));
  });
}

// Serial: alone, so a loaded machine cannot stretch its 10 s timeout.
test.serial('killing one rank mid-run makes the others and the launcher exit non-zero naming it', async (t) => {
  const child = spawn(process.execPath, [
    MAIN, 'launch', '--nproc-per-node', '3', '--grace-s', '5', '--',
    process.execPath, MAIN, 'train', ...MLP, '--steps', '1000000', '--devices', 'cpu:1', '--set', 'communication.timeout_s=10',
  ]);
  const out: string[] = [];
  const err: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const pids = await waitFor(child, 'stderr', /rank:pid 0:(\d+) 1:(\d+) 2:(\d+)/, err);
  await waitFor(child, 'stdout', /\[rank 1\] \{"step":2,/, out);
  const killedAt = Date.now();
  process.kill(Number(pids[2]), 'SIGKILL');
  const code = await exited;
  const stderr = err.join('');
  t.not(code, 0);
  t.true(Date.now() - killedAt < 10_000, 'exited within the timeout');
  t.regex(stderr, new RegExp(`weft launch: rank 1 \\(pid ${pids[2]}\\) was killed by SIGKILL`));
  // Each survivor's own message names the dead rank and the collective with its number (the
  // second to notice may report it as the group's earlier failure). Which collective the kill
  // interrupts depends on timing (the gradient all_reduce, the step's scalar all_gather, ...).
  for (const rank of [0, 2]) {
    t.regex(stderr, new RegExp(`\\[rank ${rank}\\] error: [a-z_]+ #\\d+ \\(\\d+ f32\\) on group \\[0,1,2\\] .*cannot complete: ranks \\[1\\] left the group`));
  }
});

test('launch flags: required ones, the command after --, and help', (t) => {
  const spec = launchSpec(parseArgs('launch', ['--nproc-per-node', '2', '--', 'weft', 'train', '--help']));
  t.deepEqual(spec.command, ['weft', 'train', '--help']);
  t.is(spec.nprocPerNode, 2);
  t.is(spec.masterAddr, '127.0.0.1');
  t.throws(() => launchSpec(parseArgs('launch', ['--', 'x'])), { message: 'weft launch needs --nproc-per-node N (processes on this node)' });
  t.throws(() => launchSpec(parseArgs('launch', ['--nproc-per-node', '2'])), { message: /needs a command after '--'/ });
  t.throws(() => launchSpec(parseArgs('launch', ['--nproc-per-node', '2', '--nnodes', '2', '--node-rank', '2', '--', 'x'])), { message: '--node-rank 2 is not below --nnodes 2' });
  t.regex(mainHelp(), /launch +start N processes that train together/);
  t.regex(commandHelp('launch'), /--nproc-per-node N +processes to start on this node/);
});
