import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { nearest, parseArgs, parseSize } from '../ts/cli/args.js';
import { commandHelp } from '../ts/cli/help.js';
import { Rng } from '../ts/rng.js';
import { sampleToken } from '../ts/sampling.js';
import { lossChart } from '../ts/cli/svg.js';
import { latestSave, runCli } from './helpers.js';

const tinyGpt = (dim = 32): string[] => ['--model', 'gpt', '--layers', '1', '--heads', '2', '--dim', String(dim), '--seq', '16', '--vocab', '256', '--batch', '4'];
const TINY_GPT = tinyGpt();
const SMALL_MLP = ['--model', 'mlp', '--sizes', '32,64,10', '--batch', '32'];


const weft = runCli;

const tempDirs: string[] = [];

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weft-cli-'));
  tempDirs.push(dir);
  return dir;
}

test.after.always(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

// ---- the parser, the chart and the sampler, without a process ----

test('flags parse as --flag value and --flag=value, typed', (t) => {
  const p = parseArgs('train', ['--model', 'mlp', '--steps=5', '--lr', '1e-3', '--sizes', '4,8,2', '--json', '--set', 'a.b=1', '--set', 'c.d=x']);
  t.is(p.flags.get('steps'), 5);
  t.is(p.flags.get('lr'), 1e-3);
  t.deepEqual(p.flags.get('sizes'), [4, 8, 2]);
  t.is(p.flags.get('json'), true);
  t.deepEqual(p.flags.get('set'), ['a.b=1', 'c.d=x']);
});

test('a misspelt flag suggests the nearest one', (t) => {
  t.throws(() => parseArgs('train', ['--stpes', '5']), { message: 'unknown flag --stpes; did you mean --steps?' });
  t.throws(() => parseArgs('train', ['--weight-decy', '0.1']), { message: /did you mean --weight-decay\?/ });
  t.is(nearest('optimiser', ['optimizer', 'steps']), 'optimizer');
  t.is(nearest('zzzzzz', ['optimizer', 'steps']), undefined);
});

test('a bad value names the flag and the expected form', (t) => {
  t.throws(() => parseArgs('train', ['--steps', 'ten']), { message: "--steps: expected an integer >= 1, got 'ten'" });
  t.throws(() => parseArgs('train', ['--model', 'bert']), { message: "--model: expected gpt|mlp, got 'bert'" });
  t.throws(() => parseArgs('train', ['--lr', '0']), { message: "--lr: expected a number > 0, got '0'" });
  t.throws(() => parseArgs('train', ['--batch']), { message: /--batch needs a value/ });
  t.throws(() => parseArgs('train', ['--steps', '1', '--steps', '2']), { message: '--steps given twice' });
  t.throws(() => parseArgs('train', ['--prompt', 'x']), { message: /--prompt is not a flag of 'weft train'/ });
});

test('sizes read with binary and decimal units', (t) => {
  t.is(parseSize('4GiB'), 4 * 2 ** 30);
  t.is(parseSize('512MB'), 512e6);
  t.is(parseSize('1e9'), 1e9);
  t.is(parseSize('lots'), undefined);
});

test('help lists every flag of DESIGN.md\'s table', (t) => {
  const help = commandHelp('train');
  const flags = ['model', 'layers', 'heads', 'dim', 'seq', 'vocab', 'sizes', 'init', 'seed', 'data', 'batch', 'optimizer', 'lr',
    'beta1', 'beta2', 'eps', 'weight-decay', 'momentum', 'grad-clip', 'warmup', 'schedule', 'steps', 'devices', 'dp', 'pp',
    'tp', 'set', 'config', 'json', 'save', 'save-every', 'keep', 'resume', 'trace', 'memory-limit'];
  for (const f of flags) t.true(help.includes(`--${f}`), `--${f} in help`);
});

test('the loss chart is an SVG with axes, labels and one line', (t) => {
  const svg = lossChart([1, 2, 3, 4].map((step) => ({ step, loss: 3 / step })));
  t.true(svg.startsWith('<svg'));
  t.regex(svg, />step</);
  t.regex(svg, />loss</);
  t.is(svg.match(/<path d="M/g)?.length, 2); // the axes and the curve
});

test('sampling: temperature 0 is greedy, top-k keeps only the K likeliest, a seed repeats', (t) => {
  const logits = Float32Array.from([0, 3, 1, 2.9]);
  t.is(sampleToken(logits, { temperature: 0, topK: 0 }, new Rng(1)), 1);
  const drawn = new Set(Array.from({ length: 200 }, (_, i) => sampleToken(logits, { temperature: 1, topK: 2 }, new Rng(i))));
  t.deepEqual([...drawn].sort(), [1, 3]);
  const draws = (rng: Rng): number[] => Array.from({ length: 20 }, () => sampleToken(logits, { temperature: 1, topK: 0 }, rng));
  t.deepEqual(draws(new Rng(7)), draws(new Rng(7)));
});

// ---- the command as users run it ----

test('train --model mlp --steps 5 --json prints 5 step lines and a summary with per-device memory', async (t) => {
  const r = await weft('train', ...SMALL_MLP, '--steps', '5', '--json');
  t.is(r.code, 0, r.stderr);
  const lines = jsonLines(r.stdout);
  t.is(lines.length, 6);
  lines.slice(0, 5).forEach((l, i) => {
    t.deepEqual(Object.keys(l), ['step', 'loss', 'ms', 'tokens_per_s', 'lr', 'grad_norm']);
    t.is(l['step'], i + 1);
    t.is(l['lr'], 1e-3);
    t.true((l['grad_norm'] as number) > 0);
    t.true(Number.isFinite(l['loss']));
  });
  const summary = lines[5]?.['summary'] as Record<string, unknown>;
  t.is(summary['steps'], 5);
  const mem = (summary['memory'] as Record<string, { measured: Record<string, number> }>)['cpu:0'];
  for (const k of ['params', 'grads', 'optimizer_state', 'activations']) t.true((mem?.measured[k] ?? 0) > 0, k);
});

test('the mlp\'s synthetic data is learnable: loss falls', async (t) => {
  const r = await weft('train', ...SMALL_MLP, '--steps', '60', '--lr', '3e-3', '--json');
  const summary = jsonLines(r.stdout).at(-1)?.['summary'] as { first_loss: number; final_loss: number };
  t.true(summary.final_loss < summary.first_loss * 0.7, `${summary.first_loss} -> ${summary.final_loss}`);
});

test('an unknown flag exits 2 and suggests the nearest flag', async (t) => {
  const r = await weft('train', '--model', 'mlp', '--stpes', '5');
  t.is(r.code, 2);
  t.is(r.stderr, 'error: unknown flag --stpes; did you mean --steps?\n');
});

// A gpt with two blocks, so that --pp 2 has a block per stage.
const PIPE_GPT = ['--model', 'gpt', '--layers', '2', '--heads', '2', '--dim', '32', '--seq', '16', '--vocab', '256', '--batch', '4'];

async function losses(...args: string[]): Promise<{ losses: number[]; summary: Record<string, unknown> }> {
  const steps = args.includes('--steps') ? [] : ['--steps', '3'];
  const r = await weft('train', ...PIPE_GPT, ...steps, '--json', ...args);
  if (r.code !== 0) throw new Error(`weft train ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  const lines = jsonLines(r.stdout);
  return { losses: lines.slice(0, -1).map((l) => l['loss'] as number), summary: lines.at(-1)?.['summary'] as Record<string, unknown> };
}

function sameLosses(t: ExecutionContext, got: readonly number[], want: readonly number[], what: string): void {
  t.is(got.length, want.length);
  got.forEach((loss, i) => {
    const w = want[i] as number;
    t.true(Math.abs(loss - w) <= 1e-5 * Math.abs(w), `${what} step ${i + 1}: loss ${loss} vs one device ${w}`);
  });
}

test('--pp 2 with 4 micro-batches trains the gpt to the same losses as one device', async (t) => {
  const one = await losses('--pp', '1');
  const pp = await losses('--pp', '2', '--set', 'pipeline.num_micro_batch=4');
  t.log(`pp1 ${one.losses.join(' ')} | pp2 ${pp.losses.join(' ')}`);
  sameLosses(t, pp.losses, one.losses, 'pp 2');
  t.is(pp.summary['devices'], 'cpu:2');
  t.is(pp.summary['pp'], 2);
  t.is(pp.summary['micro_batches'], 4);
  t.is(pp.summary['ideal_idle'], 0.2, '(S-1)/(M+S-1) = 1/5');
  const idle = pp.summary['idle'] as Record<string, number>;
  t.deepEqual(Object.keys(idle), ['cpu:0', 'cpu:1']);
  for (const v of Object.values(idle)) t.true(v >= 0 && v <= 1, `idle ${v}`);
  t.deepEqual(Object.keys(pp.summary['memory'] as object), ['cpu:0', 'cpu:1']);
});

test('--dp 2 trains the gpt to the same losses as one device, and so does --dp 2 --pp 2', async (t) => {
  const one = await losses();
  const dp = await losses('--dp', '2');
  const both = await losses('--dp', '2', '--pp', '2', '--set', 'pipeline.num_micro_batch=2', '--set', 'pipeline.strategy=PreferForward');
  t.log(`dp1 ${one.losses.join(' ')} | dp2 ${dp.losses.join(' ')} | dp2 x pp2 ${both.losses.join(' ')}`);
  sameLosses(t, dp.losses, one.losses, 'dp 2');
  sameLosses(t, both.losses, one.losses, 'dp 2 x pp 2');
  t.is(dp.summary['devices'], 'cpu:2');
  t.is(dp.summary['ideal_idle'], 0);
  t.is(both.summary['devices'], 'cpu:4');
});

test('--tp 2, --dp 2 --pp 2 --tp 2 (8 devices) and sequence parallelism train the gpt to the same losses as one device over 5 steps', async (t) => {
  const one = await losses('--steps', '5');
  const tp = await losses('--steps', '5', '--tp', '2');
  const all = await losses('--steps', '5', '--dp', '2', '--pp', '2', '--tp', '2', '--set', 'pipeline.num_micro_batch=2');
  t.log(`one ${one.losses.join(' ')} | tp2 ${tp.losses.join(' ')} | dp2 x pp2 x tp2 ${all.losses.join(' ')}`);
  sameLosses(t, tp.losses, one.losses, 'tp 2');
  sameLosses(t, all.losses, one.losses, 'dp 2 x pp 2 x tp 2');
  const sp = await losses('--steps', '5', '--tp', '2', '--set', 'split.sequence_parallel=true');
  sameLosses(t, sp.losses, one.losses, 'tp 2 with sequence parallelism');
  t.is(all.summary['devices'], 'cpu:8');
  t.is(all.summary['tp'], 2);
  // Each tensor-parallel device holds half of every split weight: fewer parameter bytes than
  // the one-device run, the two devices of a stage alike.
  const params = (s: Record<string, unknown>, d: string): number => {
    const memory = s['memory'] as Record<string, { predicted: Record<string, number> }>;
    return memory[d]?.predicted['params'] ?? NaN;
  };
  t.true(params(tp.summary, 'cpu:0') < params(one.summary, 'cpu:0'));
  t.is(params(tp.summary, 'cpu:0'), params(tp.summary, 'cpu:1'));
  const bad = await weft('plan', ...PIPE_GPT, '--tp', '4');
  t.is(bad.code, 1);
  t.regex(bad.stderr, /2 attention heads do not divide over 4 devices/);
});

test('--devices must be dp x pp: cpu:3 with --pp 2 is an error naming both', async (t) => {
  const r = await weft('train', ...PIPE_GPT, '--steps', '1', '--devices', 'cpu:3', '--pp', '2');
  t.is(r.code, 2);
  t.is(r.stderr, 'error: --devices cpu:3 has 3 devices, which --pp 2 does not divide; give a multiple of 2 devices\n');
  const all = await weft('plan', ...SMALL_MLP, '--devices', 'cpu:4', '--dp', '2', '--pp', '1');
  t.is(all.code, 2);
  t.regex(all.stderr, /--devices cpu:4 has 4 devices, but --dp 2 x --pp 1 = 2/);
  const many = await weft('plan', ...SMALL_MLP, '--devices', 'cpu:17');
  t.is(many.code, 2);
  t.regex(many.stderr, /at most 16 CPU devices/);
});

test('--pp above the layer count, a batch that does not split, and --tp 2 on the mlp are usage errors', async (t) => {
  const deep = await weft('plan', ...SMALL_MLP, '--pp', '3');
  t.is(deep.code, 2);
  t.regex(deep.stderr, /--pp 3: the mlp has --sizes with 2 layer\(s\)/);
  const odd = await weft('plan', ...SMALL_MLP, '--dp', '3', '--set', 'pipeline.num_micro_batch=4');
  t.is(odd.code, 2);
  t.regex(odd.stderr, /--batch 32 does not split into --dp 3 replica\(s\) x 4 micro-batch\(es\) .*; use a multiple of 12/);
  const tp = await weft('train', ...SMALL_MLP, '--tp', '2');
  t.is(tp.code, 2);
  t.regex(tp.stderr, /--tp 2: tensor parallelism of the built-in models applies to --model gpt/);
});

test('plan --json --pp 2 --dp 2: four devices, stage TaskGraphs on [[0],[2]] and [[1],[3]]', async (t) => {
  const r = await weft('plan', ...PIPE_GPT, '--pp', '2', '--dp', '2', '--json');
  t.is(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout) as { devices: string[]; taskgraphs: { name: string; index: number; devices: number[][] }[]; schedule: Record<string, string[]>; memory: Record<string, unknown> };
  t.deepEqual(plan.devices, ['cpu:0', 'cpu:1', 'cpu:2', 'cpu:3']);
  t.deepEqual(plan.taskgraphs.map((g) => [g.name, g.index, g.devices]), [['stage0', 0, [[0], [2]]], ['stage1', 1, [[1], [3]]]]);
  t.deepEqual(Object.keys(plan.schedule), plan.devices);
  t.deepEqual(Object.keys(plan.memory), plan.devices);
  const text = await weft('plan', ...SMALL_MLP, '--pp', '2', '--set', 'pipeline.num_micro_batch=4');
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, /stage0: fc0\n {2}stage1: fc1, loss\n/);
  t.regex(text.stdout, /cpu:1/);
});

test('--devices cuda:1 reports the API\'s device error', async (t) => {
  const r = await weft('train', ...SMALL_MLP, '--devices', 'cuda:1', '--steps', '1');
  t.is(r.code, 1);
  t.regex(r.stderr, /^error: device: /);
  t.regex(r.stderr, /libcuda\.so \(the NVIDIA driver\)/);
});

test('weft launch without a command is a usage error (exit 2)', async (t) => {
  const r = await weft('launch', '--nproc-per-node', '2');
  t.is(r.code, 2);
  t.regex(r.stderr, /^error: weft launch needs a command after '--'/);
});

test('--set goes through weft.config: a misspelt key names the nearest', async (t) => {
  const r = await weft('plan', ...SMALL_MLP, '--set', 'pipeline.num_micro_bach=2');
  t.is(r.code, 2);
  t.regex(r.stderr, /did you mean 'pipeline\.num_micro_batch'/);
  const ok = await weft('plan', ...SMALL_MLP, '--set', 'pipeline.num_micro_batch=2', '--json');
  t.is(ok.code, 0, ok.stderr);
  t.is((JSON.parse(ok.stdout) as { batch: { micro_batches: number } }).batch.micro_batches, 2);
});

test('--config FILE.json is read, and --set wins over it', async (t) => {
  const file = path.join(tempDir(), 'cfg.json');
  fs.writeFileSync(file, JSON.stringify({ pipeline: { numMicroBatch: 4 } }));
  const fromFile = await weft('plan', ...SMALL_MLP, '--config', file, '--json');
  t.is((JSON.parse(fromFile.stdout) as { batch: { micro_batches: number } }).batch.micro_batches, 4);
  const overridden = await weft('plan', ...SMALL_MLP, '--config', file, '--set', 'pipeline.num_micro_batch=8', '--json');
  t.is((JSON.parse(overridden.stdout) as { batch: { micro_batches: number } }).batch.micro_batches, 8);
});

test('plan --json prints the plan of DESIGN.md', async (t) => {
  const r = await weft('plan', ...TINY_GPT, '--json');
  t.is(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout) as Record<string, unknown>;
  for (const key of ['devices', 'taskgraphs', 'schedule', 'memory']) t.true(key in plan, key);
  t.deepEqual(plan['devices'], ['cpu:0']);
});

test('plan prints the plan text and a memory estimate; --memory-limit below it fails', async (t) => {
  const r = await weft('plan', ...TINY_GPT);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /memory estimate \(peak per device\): cpu:0 /);
  const tight = await weft('plan', ...TINY_GPT, '--memory-limit', '1KiB');
  t.is(tight.code, 1);
  t.regex(tight.stderr, /cpu:0: predicted peak .* exceeds --memory-limit 1\.0 KiB/);
});

test('train --save writes a checkpoint with loss.svg; sample continues a prompt from it', async (t) => {
  const dir = path.join(tempDir(), 'ckpt');
  const r = await weft('train', ...TINY_GPT, '--steps', '10', '--lr', '3e-3', '--save', dir);
  t.is(r.code, 0, r.stderr);
  for (const f of ['weft.json', 'model.safetensors']) t.true(fs.existsSync(path.join(latestSave(dir), f)), f);
  t.is(path.basename(latestSave(dir)), 'step-00000010');
  t.regex(fs.readFileSync(path.join(dir, 'loss.svg'), 'utf8'), /^<svg[^]*<\/svg>\n$/);
  const s = await weft('sample', '--checkpoint', dir, '--prompt', 'To be', '--tokens', '20', '--seed', '1');
  t.is(s.code, 0, s.stderr);
  t.true(s.stdout.startsWith('To be'));
  t.true(s.stdout.length > 'To be'.length + 5, JSON.stringify(s.stdout));
  const again = await weft('sample', '--checkpoint', dir, '--prompt', 'To be', '--tokens', '20', '--seed', '1');
  t.is(again.stdout, s.stdout, 'the same seed gives the same text');
});

test('--resume continues from the checkpoint\'s step', async (t) => {
  const dir = path.join(tempDir(), 'ckpt');
  await weft('train', ...TINY_GPT, '--steps', '3', '--save', dir);
  const r = await weft('train', '--resume', dir, '--steps', '5', '--json');
  t.is(r.code, 0, r.stderr);
  t.deepEqual(jsonLines(r.stdout).slice(0, 2).map((l) => l['step']), [4, 5]);
  const clash = await weft('train', '--resume', dir, '--dim', '64', '--steps', '4');
  t.is(clash.code, 2);
  t.regex(clash.stderr, /--dim 64 differs from the checkpoint's dim 32/);
});

test('a resumed run continues the saved one, in any layout: the losses of an uninterrupted run', async (t) => {
  const dir = path.join(tempDir(), 'ckpt');
  const whole = await losses('--steps', '4');
  const first = await weft('train', ...PIPE_GPT, '--steps', '2', '--pp', '2', '--set', 'pipeline.num_micro_batch=2', '--save', dir, '--json');
  t.is(first.code, 0, first.stderr);
  const rest = await weft('train', '--resume', dir, '--steps', '4', '--dp', '2', '--json');
  t.is(rest.code, 0, rest.stderr);
  const got = [...jsonLines(first.stdout), ...jsonLines(rest.stdout)].filter((l) => 'loss' in l).map((l) => l['loss'] as number);
  sameLosses(t, got, whole.losses, 'pp 2 then resumed dp 2');
});

test('--resume keeps the checkpoint\'s optimizer and its options unless flags change them', async (t) => {
  const dir = path.join(tempDir(), 'ckpt');
  await weft('train', ...SMALL_MLP, '--optimizer', 'sgd', '--lr', '0.05', '--momentum', '0.9', '--steps', '2', '--save', dir);
  const r = await weft('train', '--resume', dir, '--steps', '3', '--json');
  t.is(r.code, 0, r.stderr);
  t.is(jsonLines(r.stdout)[0]?.['step'], 3);
  const other = await weft('train', '--resume', dir, '--optimizer', 'adamw', '--steps', '3');
  t.is(other.code, 1);
  t.regex(other.stderr, /saved with optimizer 'sgd'/);
});

test('train --init --data reproduces PyTorch\'s GPT-2 losses (HF-named safetensors, llm.c tokens)', async (t) => {
  // Fixture from benches/reference/gpt2.py: PyTorch GPT-2 init, llm.c token file, AdamW, 5 steps.
  const dir = path.join(__dirname, '..', 'crates', 'core', 'tests', 'fixtures', 'gpt_tiny');
  const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as { config: Record<string, number>; losses: number[] };
  const c = expected.config;
  const r = await weft('train', '--model', 'gpt', '--layers', String(c['layers']), '--heads', String(c['heads']), '--dim', String(c['dim']),
    '--seq', String(c['seq']), '--vocab', String(c['vocab']), '--batch', String(c['batch']), '--data', path.join(dir, 'tokens.bin'),
    '--init', path.join(dir, 'init.safetensors'), '--optimizer', 'adamw', '--lr', String(c['lr']), '--beta1', String(c['beta1']),
    '--beta2', String(c['beta2']), '--eps', String(c['eps']), '--weight-decay', String(c['weight_decay']), '--steps', '5', '--json');
  t.is(r.code, 0, r.stderr);
  const losses = jsonLines(r.stdout).slice(0, 5).map((l) => l['loss'] as number);
  losses.forEach((loss, i) => t.true(Math.abs(loss - (expected.losses[i] ?? NaN)) < 1e-4, `step ${i + 1}: ${loss} vs ${expected.losses[i]}`));
});

test('--data with a bad magic number reports the data error', async (t) => {
  const file = path.join(tempDir(), 'bad.bin');
  fs.writeFileSync(file, Buffer.alloc(2048, 7));
  const r = await weft('train', ...TINY_GPT, '--data', file, '--steps', '1');
  t.is(r.code, 1);
  t.regex(r.stderr, /error: data file .*bad\.bin: bad magic number/);
});

test('the built-in corpus needs --vocab >= 256', async (t) => {
  const r = await weft('train', '--model', 'gpt', '--vocab', '100', '--steps', '1');
  t.is(r.code, 2);
  t.regex(r.stderr, /--vocab 100 is below 256/);
});

test('a non-finite loss stops with the step number, exit 1, and leaves the last checkpoint intact', async (t) => {
  const dir = path.join(tempDir(), 'ckpt');
  await weft('train', ...SMALL_MLP, '--steps', '2', '--save', dir);
  const before = fs.readFileSync(path.join(latestSave(dir), 'model.safetensors'));
  const r = await weft('train', ...SMALL_MLP, '--optimizer', 'sgd', '--lr', '1e30', '--steps', '10', '--save', dir);
  t.is(r.code, 1);
  t.regex(r.stderr, /non-finite loss \(\w+\) at step \d+; training stopped; the checkpoint in .* was left as it was/);
  t.deepEqual(fs.readFileSync(path.join(latestSave(dir), 'model.safetensors')), before);
});

test('--init loads weights, and the loader\'s errors are shown verbatim', async (t) => {
  const dir = path.join(tempDir(), 'ckpt');
  await weft('train', ...TINY_GPT, '--steps', '1', '--save', dir);
  const ok = await weft('train', ...TINY_GPT, '--steps', '1', '--init', path.join(latestSave(dir), 'model.safetensors'));
  t.is(ok.code, 0, ok.stderr);
  // The root stands for its newest save.
  const root = await weft('train', ...TINY_GPT, '--steps', '1', '--init', dir);
  t.is(root.code, 0, root.stderr);
  const bad = await weft('train', ...tinyGpt(64), '--steps', '1', '--init', path.join(latestSave(dir), 'model.safetensors'));
  t.is(bad.code, 1);
  t.regex(bad.stderr, /^error: .*model\.safetensors/);
});

test('demo trains, saves and prints a sample (few steps here; npm run demo runs 1000)', async (t) => {
  const out = path.join(tempDir(), 'demo');
  const r = await weft('demo', '--steps', '3', '--out', out);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /trained 3 steps/);
  t.regex(r.stdout, /sample \(prompt 'Ham\.'[^]*\nHam\.\n./);
  t.true(fs.existsSync(path.join(out, 'loss.svg')));
});

test('--trace writes the last step\'s Chrome trace: valid JSON, one track per device', async (t) => {
  const file = path.join(tempDir(), 'trace.json');
  const r = await weft('train', ...PIPE_GPT, '--steps', '2', '--dp', '2', '--pp', '2', '--set', 'pipeline.num_micro_batch=2', '--trace', file);
  t.is(r.code, 0, r.stderr);
  const trace = JSON.parse(fs.readFileSync(file, 'utf8')) as { traceEvents: { name: string; ph: string; tid: number; args?: { name: string } }[] };
  const tracks = trace.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => e.args?.name);
  t.deepEqual(tracks, ['cpu:0', 'cpu:1', 'cpu:2', 'cpu:3']);
  for (let tid = 0; tid < 4; tid++) {
    const spans = trace.traceEvents.filter((e) => e.ph === 'X' && e.tid === tid).map((e) => e.name);
    t.true(spans.includes('F0') && spans.includes('B1'), `cpu:${tid}: ${spans.join(' ')}`);
  }
  const plan = await weft('plan', ...SMALL_MLP, '--trace', file);
  t.is(plan.code, 2);
  t.regex(plan.stderr, /--trace applies to 'weft train'/);
});

test('the human summary of a parallel run names the layout and the ideal idle fraction', async (t) => {
  const r = await weft('train', ...SMALL_MLP, '--pp', '2', '--set', 'pipeline.num_micro_batch=4', '--steps', '2');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /devices: cpu:2 = dp 1 x pp 2, 4 micro-batch\(es\); idle in the last step: cpu:0 \d+\.\d%, cpu:1 \d+\.\d% \(ideal \(S-1\)\/\(M\+S-1\) = 20\.0%\)/);
});

test('--version and --help answer without training', async (t) => {
  t.regex((await weft('--version')).stdout, /^weft \d+\.\d+\.\d+/);
  const help = await weft('train', '--help');
  t.is(help.code, 0);
  t.regex(help.stdout, /--memory-limit SIZE/);
});

// ---- generation and Hugging Face checkpoints ----

const HF_FIXTURE = path.join(__dirname, 'fixtures', 'hf_gpt2');

test('sample works on a checkpoint trained with --data and draws ids above 255', async (t) => {
  const dir = tempDir();
  // A token file of ids 290 and 7, written with weft's own writer: a vocabulary above 256.
  const file = path.join(dir, 'tokens.bin');
  const tokens = Uint16Array.from({ length: 4096 }, (_, i) => (i % 2 ? 290 : 7));
  const { data } = await import('../ts/index.js');
  data.writeTokens(file, tokens);
  const ckpt = path.join(dir, 'ckpt');
  const tiny = ['--model', 'gpt', '--layers', '1', '--heads', '2', '--dim', '32', '--seq', '16', '--vocab', '300', '--batch', '4'];
  const r = await weft('train', ...tiny, '--data', file, '--steps', '30', '--lr', '1e-2', '--save', ckpt);
  t.is(r.code, 0, r.stderr);
  const s = await weft('sample', '--checkpoint', ckpt, '--tokenizer', 'ids', '--prompt', '7', '--tokens', '4', '--temperature', '0');
  t.is(s.code, 0, s.stderr);
  t.regex(s.stdout, /^7 290( \d+){3}\n$/, 'ids above 255 are drawn');
  const bytes = await weft('sample', '--checkpoint', ckpt, '--prompt', 'a', '--tokens', '4', '--temperature', '0');
  t.is(bytes.code, 0, bytes.stderr);
  t.regex(bytes.stderr, /note: .* was trained on a token file that names no tokenizer; decoding as bytes/);
});

test('sample gives the same text with and without the cache, in the training layout, and stops on --stop', async (t) => {
  const dir = path.join(tempDir(), 'ckpt');
  const r = await weft('train', ...TINY_GPT, '--steps', '10', '--lr', '3e-3', '--save', dir);
  t.is(r.code, 0, r.stderr);
  const base = ['sample', '--checkpoint', dir, '--prompt', 'To be', '--tokens', '40', '--seed', '3', '--top-p', '0.9'];
  const cached = await weft(...base);
  t.is(cached.code, 0, cached.stderr);
  const full = await weft(...base, '--no-cache');
  t.is(full.stdout, cached.stdout);
  const dp = await weft(...base, '--dp', '2');
  t.is(dp.code, 0, dp.stderr);
  t.is(dp.stdout, cached.stdout);
  const stop = cached.stdout.slice(15, 17);
  const stopped = await weft(...base, '--stop', stop);
  t.is(stopped.stdout, `${cached.stdout.slice(0, cached.stdout.indexOf(stop, 5))}\n`);
});

test('train --init takes a Hugging Face folder as it is and saves one from_pretrained can read', async (t) => {
  const dir = path.join(tempDir(), 'ckpt');
  const file = path.join(tempDir(), 'tokens.bin');
  const { data } = await import('../ts/index.js');
  data.writeTokens(file, Uint16Array.from({ length: 2048 }, (_, i) => (i * 7) % 96));
  const r = await weft('train', '--init', HF_FIXTURE, '--data', file, '--seq', '32', '--batch', '2', '--steps', '2', '--save', dir, '--json');
  t.is(r.code, 0, r.stderr);
  const { summary } = jsonLines(r.stdout).at(-1) as { summary: { model: Record<string, unknown> } };
  t.deepEqual(summary.model, { kind: 'gpt', layers: 2, heads: 2, dim: 32, seq: 32, vocab: 96 });
  const config = JSON.parse(fs.readFileSync(path.join(latestSave(dir), 'config.json'), 'utf8')) as Record<string, unknown>;
  t.like(config, { model_type: 'gpt2', n_positions: 32, n_layer: 2, vocab_size: 96 });
  const clash = await weft('train', '--init', HF_FIXTURE, '--layers', '3', '--steps', '1');
  t.is(clash.code, 2);
  t.regex(clash.stderr, /--layers 3 differs from n_layer 2 in the config.json of --init .*hf_gpt2; leave --layers out/);
  const long = await weft('train', '--init', HF_FIXTURE, '--seq', '64', '--steps', '1');
  t.is(long.code, 2);
  t.regex(long.stderr, /--seq 64 is longer than n_positions 48 in the config.json of --init .*; use --seq 48 or less/);
});
