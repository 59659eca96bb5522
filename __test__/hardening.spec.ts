// Issue 18's probes, as a user or a broken launcher would hit them: every one is a typed error
// or a clean exit, never an abort, a JS stack, a silent NaN or an orphaned process.
import test from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as weft from '../ts/index.js';
import { CLI_MAIN as MAIN, latestSave, runCli, tinyMlp } from './helpers.js';

const TINY_GPT = ['--model', 'gpt', '--layers', '1', '--heads', '2', '--dim', '32', '--seq', '16', '--vocab', '256', '--batch', '4'];
const NO_CRASH = /stack backtrace|RangeError|TypeError|panicked|\n\s+at /;


const cli = runCli;

function tempDir(t: { teardown(f: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-hard-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

for (const extra of [[], ['--memory-limit', '4GiB']]) {
  test(`plan of a model larger than the host is a resource error ${extra.join(' ') || '(no limit)'}`, async (t) => {
    const r = await cli('plan', '--model', 'mlp', '--sizes', '100000000,100000000,2', ...extra);
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, /^error: parameter '[^']+' \[100000000, 100000000\] f32 needs 35\.5 PiB \(40000000000000000 bytes\), more than this host's memory \(/);
    t.notRegex(r.stderr, NO_CRASH);
  });
}

test('--batch beyond 32 bits is a resource error, not a RangeError', async (t) => {
  const r = await cli('train', '--model', 'mlp', '--sizes', '4,3', '--batch', '1000000000000', '--steps', '1');
  t.is(r.code, 1, r.stderr);
  t.is(r.stderr, 'error: batch=1000000000000 is more than the limit of 2147483647 (batch sizes travel as 32-bit integers)\n');
});

test('the API refuses a wrapped batch, too many communicators, a negative lr and string batches', async (t) => {
  const err = await t.throwsAsync(weft.compile(tinyMlp(), { batch: 4294967300 }), { instanceOf: weft.WeftResourceError });
  t.is(err?.message, 'batch=4294967300 is more than the limit of 2147483647 (batch sizes travel as 32-bit integers)');
  const config = weft.config({ 'communication.num_communicators': 100000 });
  await t.throwsAsync(weft.compile(tinyMlp(config), { batch: 8, devices: weft.cpu(2) }), {
    instanceOf: weft.WeftResourceError,
    message: 'communication.num_communicators=100000 is more than the limit of 64 (each is a thread on every device)',
  });
  await t.throwsAsync(weft.compile(tinyMlp(), { batch: 8, optimizer: weft.optim.adam({ lr: -1 }) }), { instanceOf: weft.WeftConfigError });
  const trainer = await weft.compile(tinyMlp(), { batch: 8 });
  const strings = Array.from({ length: 32 }, (_, i) => String(i));
  await t.throwsAsync(trainer.step({ x: strings as unknown as number[], y: new Int32Array(8) }), {
    instanceOf: weft.WeftDTypeError,
    message: "input 'x': expected numbers, got string at index 0",
  });
});

test('a hand-edited checkpoint meta is named, and a torn checkpoint is refused by sample', async (t) => {
  const dir = tempDir(t);
  const [a, b] = [path.join(dir, 'a'), path.join(dir, 'b')];
  for (const d of [a, b]) {
    const r = await cli('train', ...TINY_GPT, '--steps', '1', '--save', d);
    t.is(r.code, 0, r.stderr);
  }
  // Files of two saves mixed (as a crash mid-save of the single-directory layout left them).
  fs.copyFileSync(path.join(latestSave(b), 'model.safetensors'), path.join(latestSave(a), 'model.safetensors'));
  const torn = await cli('sample', '--checkpoint', a, '--prompt', 'x', '--tokens', '2');
  t.is(torn.code, 1);
  t.regex(torn.stderr, /model\.safetensors: belongs to a different save than weft\.json .* this checkpoint is torn/);
  const manifest = path.join(latestSave(b), 'weft.json');
  const json = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { config: { meta: { model: Record<string, unknown> } } };
  json.config.meta.model['layers'] = 'two';
  fs.writeFileSync(manifest, JSON.stringify(json));
  for (const r of [await cli('sample', '--checkpoint', b, '--prompt', 'x'), await cli('train', '--resume', b, '--steps', '1')]) {
    t.is(r.code, 2);
    t.regex(r.stderr, /weft\.json: meta\.model\.layers must be a positive integer, got "two" \(the file was edited or damaged\)/);
    t.notRegex(r.stderr, NO_CRASH);
  }
});

test('a command that cannot start is reported once per rank, and the launcher exits 127', async (t) => {
  const r = await cli('launch', '--nproc-per-node', '2', '--', '/nonexistent/weft-cmd');
  t.is(r.code, 127, r.stderr);
  t.notRegex(r.stderr, /code -2/);
  t.is(r.stderr.match(/cannot start '\/nonexistent\/weft-cmd'/g)?.length, 2);
  t.regex(r.stderr, /weft launch: failed: rank \d \(pid \?\) exited with code 127\n$/);
});

/** Whether `pid` still runs (a zombie waiting for a reaper counts as gone). */
function running(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function lines(child: ChildProcess, re: RegExp): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let seen = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      seen += chunk;
      const m = re.exec(seen);
      if (m) resolve(m);
    });
    child.once('close', () => reject(new Error(`never matched ${String(re)}:\n${seen}`)));
  });
}

test.serial('kill -9 of weft launch takes its ranks with it', async (t) => {
  if (process.platform !== 'linux') {
    t.pass('reads /proc');
    return;
  }
  const launcher = spawn(process.execPath, [
    MAIN, 'launch', '--nproc-per-node', '2', '--raw-output', '--',
    process.execPath, MAIN, 'train', '--model', 'mlp', '--sizes', '8,8,2', '--batch', '8', '--steps', '100000000', '--devices', 'cpu:1',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  const m = await lines(launcher, /rank:pid 0:(\d+) 1:(\d+)/);
  const pids = [Number(m[1]), Number(m[2])];
  t.teardown(() => pids.filter(running).forEach((p) => process.kill(p, 'SIGKILL')));
  // Let both ranks join and train before the launcher dies.
  await new Promise((r) => setTimeout(r, 3000));
  t.true(pids.every(running), 'the ranks run');
  process.kill(launcher.pid as number, 'SIGKILL');
  // A guard against hanging, not a speed assertion: they leave as soon as they notice.
  for (let i = 0; i < 300 && pids.some(running); i++) await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(pids.filter(running), [], 'ranks outlived their launcher');
});
