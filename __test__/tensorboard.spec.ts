import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as weft from '../ts/index.js';
import { type Out, reporter } from '../ts/cli/report.js';
import { lossChart } from '../ts/cli/svg.js';
import { BATCH, CLASSES, FEATURES, runCli, tinyBatch } from './helpers.js';

/**
 * TensorBoard's own reader (PyPI `tensorboard`, `EventAccumulator`): `.ci/run` installs it in a
 * cached virtual environment and passes its python as WEFT_TENSORBOARD_PYTHON. Under CI a
 * missing reader is a failure; a developer's run without it skips with the reason.
 */
const TB_VERSION = '2.20.0';
const cachedPython = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'weft', `tensorboard-${TB_VERSION}`, 'bin', 'python');
const tbPython = process.env.WEFT_TENSORBOARD_PYTHON ?? (fs.existsSync(cachedPython) ? cachedPython : undefined);
const READER = path.join(__dirname, '..', 'scripts', 'tensorboard-scalars.py');

interface TbRead {
  scalars: Record<string, [number, number][]>;
  histograms: Record<string, [number, number][]>;
}

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'weft-tb-'));
}

const tbTest = tbPython !== undefined ? test : process.env.CI === 'true' ? test : test.skip;
const tbTitle = tbPython !== undefined || process.env.CI === 'true'
  ? 'TensorBoard\'s EventAccumulator reads every step\'s scalars and the evaluations at their steps, equal to the --json lines and metrics.jsonl'
  : `TensorBoard reader test skipped: no tensorboard (run .ci/run once, or set WEFT_TENSORBOARD_PYTHON to a python with tensorboard==${TB_VERSION})`;

tbTest(tbTitle, async (t) => {
  if (tbPython === undefined) return t.fail('WEFT_TENSORBOARD_PYTHON is not set: .ci/run could not install tensorboard');
  const dir = tempDir();
  const run = await runCli('train', '--model', 'mlp', '--sizes', '8,16,4', '--batch', '16', '--devices', 'cpu:2', '--steps', '6', '--eval-every', '4', '--json', '--save', path.join(dir, 'ck'));
  t.is(run.code, 0, run.stderr);
  const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>).filter((l) => 'step' in l);
  // --logdir defaults to DIR.logs beside --save DIR.
  const logdir = path.join(dir, 'ck.logs');
  const read = JSON.parse(execFileSync(tbPython, [READER, logdir], { encoding: 'utf8' })) as TbRead;
  const at = (tag: string): [number, number][] => read.scalars[tag] ?? [];
  for (const tag of ['train/loss', 'train/lr', 'train/grad_norm', 'train/step_ms', 'train/tokens_per_s', 'memory/peak_bytes/cpu:0', 'memory/peak_bytes/cpu:1', 'pipeline/idle/cpu:0', 'pipeline/idle/cpu:1']) {
    t.deepEqual(at(tag).map(([s]) => s), [1, 2, 3, 4, 5, 6], tag);
  }
  t.deepEqual(at('train/loss').map(([, v]) => v), lines.map((l) => Math.fround(l.loss as number)));
  t.deepEqual(at('train/lr').map(([, v]) => v), lines.map((l) => Math.fround(l.lr as number)));
  t.deepEqual(at('train/grad_norm').map(([, v]) => v), lines.map((l) => Math.fround(l.grad_norm as number)));
  // Evaluated every 4 steps and after the last.
  t.deepEqual(at('eval/loss'), lines.filter((l) => l.eval_loss !== undefined).map((l) => [l.step, Math.fround(l.eval_loss as number)]));
  t.deepEqual(at('eval/loss').map(([s]) => s), [4, 6]);
  const jsonl = fs.readFileSync(path.join(logdir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  t.deepEqual(jsonl.map((l) => l['train/loss']), lines.map((l) => l.loss));
  t.deepEqual(jsonl.filter((l) => 'eval/loss' in l).map((l) => l.step), [4, 6]);
  // The loss chart beside the checkpoint has the eval curve.
  t.regex(fs.readFileSync(path.join(dir, 'ck', 'loss.svg'), 'utf8'), />eval loss</);
});

/** A tiny MLP with summaries of its logits. */
function summarised(): weft.Model {
  return weft.model(weft.config(), (m) => {
    const x = m.input('x', [null, FEATURES]);
    const y = m.input('y', [null], 'i32');
    const logits = m.nn.linear(m.nn.linear(x, 16, { name: 'fc1' }).relu(), CLASSES, { name: 'fc2' });
    m.output('logits', logits);
    m.summary('logit_mean', logits.mean(), 'mean');
    m.summary('logit_sum', logits, 'sum');
    m.summary('logit_max', logits, 'max');
    m.summary('logit_min', logits, 'min');
    m.summary('logits', logits, 'histogram');
    return m.losses.softmaxCrossEntropy(logits, y);
  });
}

test('m.summary merges over micro-batches and replicas as EPL does: the values of the whole batch on one device', async (t) => {
  const batch = tinyBatch();
  const one = await weft.compile(summarised(), { batch: BATCH, devices: weft.cpu(1), seed: 2 });
  const cfg = weft.config({ 'pipeline.num_micro_batch': 2 });
  const four = await weft.compile(summarised(), { batch: BATCH, devices: weft.cpu(2), seed: 2, config: cfg });
  const want = (await one.evaluate(batch)).outputs.logits?.data as Float32Array;
  for (const r of [await one.evaluate(batch), await four.evaluate(batch)]) {
    const s = r.summaries;
    t.true(Math.abs((s.logit_mean as number) - want.reduce((a, b) => a + b, 0) / want.length) < 1e-5);
    t.true(Math.abs((s.logit_sum as number) - want.reduce((a, b) => a + b, 0)) < 1e-4);
    t.is(s.logit_max, Math.max(...want));
    t.is(s.logit_min, Math.min(...want));
    t.deepEqual([...(s.logits as Float32Array)].sort(), [...want].sort());
  }
  t.true(Object.isFrozen((await four.step(batch)).summaries));
  const e = t.throws(() => weft.model(weft.config(), (m) => {
    const x = m.input('x', [null, FEATURES]);
    m.summary('x', x, 'median' as weft.SummaryReduce);
    return x.mean();
  }));
  t.is(e?.message, 'summary \'x\': unknown reduce "median"; the reduces are mean, sum, max, min, histogram');
});

test('evaluate takes a divisor or a multiple of the compiled batch under the same layout, labels only when read, and refuses other sizes by name', async (t) => {
  const { x, y } = tinyBatch();
  const rows = (n: number): weft.Batch => ({ x: x.slice(0, n * FEATURES), y: y.slice(0, n) });
  const twice: weft.Batch = { x: Float32Array.from([...x, ...x]), y: Int32Array.from([...y, ...y]) };
  const dp = await weft.compile(summarised(), { batch: BATCH, devices: weft.cpu(2), seed: 2 });
  for (const [n, batch] of [[BATCH / 2, rows(BATCH / 2)], [BATCH * 2, twice]] as const) {
    const alone = await weft.compile(summarised(), { batch: n, devices: weft.cpu(1), seed: 2 });
    const [got, want] = [await dp.evaluate(batch), await alone.evaluate(batch)];
    t.true(Math.abs(got.loss - want.loss) < 1e-6, `${n} rows: ${got.loss} vs ${want.loss}`);
    t.deepEqual(got.outputs.logits?.shape, [n, CLASSES]);
  }
  // Labels may be left out when no output reads them: the same logits, and no loss.
  const labelled = await dp.evaluate(rows(BATCH / 2));
  const unlabelled = await dp.evaluate({ x: x.slice(0, (BATCH / 2) * FEATURES) });
  t.deepEqual(unlabelled.outputs.logits?.data, labelled.outputs.logits?.data);
  t.true(Number.isNaN(unlabelled.loss));
  const noX = await t.throwsAsync(dp.evaluate({ y }), { instanceOf: weft.WeftBatchError });
  t.is(noX?.message, "batch: evaluate: output 'logits' reads input 'x', which the batch leaves out");
  const e = await t.throwsAsync(dp.evaluate(rows(3)), { instanceOf: weft.WeftBatchError });
  t.is(e?.message, 'batch: evaluate: a batch of 3 rows does not fit the compiled global batch 8; give a multiple or a divisor of 8');
});

test('weft train --eval-every: eval loss and perplexity in the --json lines on the held-out split; eval flags are checked before training', async (t) => {
  const gpt = ['--model', 'gpt', '--layers', '1', '--heads', '2', '--dim', '32', '--seq', '16', '--vocab', '256', '--batch', '4'];
  const run = await runCli('train', ...gpt, '--steps', '4', '--eval-every', '2', '--eval-batches', '2', '--eval-batch', '2', '--json');
  t.is(run.code, 0, run.stderr);
  const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>).filter((l) => 'step' in l);
  t.deepEqual(lines.filter((l) => 'eval_loss' in l).map((l) => l.step), [2, 4]);
  for (const l of lines.filter((l) => 'eval_loss' in l)) t.is(l.eval_perplexity, Math.exp(l.eval_loss as number));
  const fails = async (args: string[], message: string): Promise<void> => {
    const r = await runCli('train', ...gpt, '--steps', '2', ...args);
    t.is(r.code, 2, r.stderr);
    t.true(r.stderr.includes(message), r.stderr);
  };
  await fails(['--eval-split', '0.1'], '--eval-split needs --eval-every N');
  await fails(['--eval-every', '1', '--eval-split', '1'], '--eval-split 1: the held-out fraction must be below 1');
  await fails(['--eval-every', '1', '--eval-split', '0.1', '--eval-data', 'x.bin'], '--eval-data and --eval-split both say what to evaluate on');
  const plan = await runCli('plan', ...gpt, '--eval-every', '5');
  t.is(plan.code, 2);
  t.true(plan.stderr.includes("--eval-every applies to 'weft train'"), plan.stderr);
});

test('piped progress prints a line at least every 10 s as well as every 5%', (t) => {
  let now = 0;
  const written: string[] = [];
  const out: Out = { write: (s: string) => written.push(s), isTTY: false };
  const rep = reporter(false, 1000, out, () => now);
  for (let done = 1; done <= 120; done++) {
    now = done * 2_500; // 2.5 s a step: 10 s is every 4th step, 5% (50 steps) much later
    rep.step({ step: done, loss: 1, lr: 1e-3, ms: 2500, tokensPerS: 1, done });
  }
  const steps = written.map((l) => Number(/^step (\d+)/.exec(l)?.[1]));
  t.deepEqual(steps.slice(0, 4), [1, 5, 9, 13]);
  t.true(steps.includes(50) && steps.includes(100));
  rep.step({ step: 121, loss: 1, lr: 1e-3, ms: 1, tokensPerS: 1, done: 121, evaluation: { loss: 2, perplexity: Math.exp(2) } });
  t.regex(written[written.length - 1] ?? '', /eval loss 2\.0000 \(ppl 7\.39\)/);
});

test('the loss chart draws the eval curve with a legend only when there are evaluations', (t) => {
  const train = [1, 2, 3, 4].map((step) => ({ step, loss: 3 / step }));
  t.notRegex(lossChart(train), /eval loss/);
  const svg = lossChart(train, 'loss', [{ step: 2, loss: 1.6 }, { step: 4, loss: 0.9 }]);
  t.is(svg.match(/<circle /g)?.length, 2);
  t.regex(svg, />eval loss</);
});
