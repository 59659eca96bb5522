/**
 * `weft train`: build a built-in model, feed it batches for `--steps` optimizer steps, report
 * progress, and save a checkpoint with its loss curve at the end (and every `--save-every`
 * steps, and when stopped by a signal or a closed stdout: `saving.ts`, `signals.ts`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as weft from '../index.js';
import type { ParsedArgs } from './args.js';
import { type CliMeta, type SavedRun, readCheckpoint } from './checkpoint.js';
import { CliError, UsageError } from './cli-error.js';
import { type BatchSource, batchSource, workersOf } from './data-source.js';
import { Evaluator, evalSpec, heldOutFraction, trainPart } from './eval.js';
import { RunLog, logDir, stepScalars } from './metrics.js';
import { type Out, type Reporter, reporter } from './report.js';
import { Flags, type RunSpec, runSpec } from './run-spec.js';
import { type SavePolicy, checkOutputs, hasCheckpoint, periodicDue, savePolicy, stopReport } from './saving.js';
import { type StopReason, type StopWatch, watchStops } from './signals.js';
import { compileRun, overLimit } from './session.js';
import { type LossPoint, lossChart } from './svg.js';

/** Where the command writes. */
export interface Io {
  readonly out: Out;
  readonly err: Out;
}

/** A prepared run: compiled, weights loaded, data positioned. */
interface Prepared {
  readonly spec: RunSpec;
  readonly trainer: weft.Trainer;
  readonly source: BatchSource;
  readonly curve: LossPoint[];
  readonly saving: SavePolicy;
  /** The fraction of the training tokens held out for evaluation (kept in the checkpoint). */
  readonly heldOut: number | undefined;
  /** The step of the last save this run made. */
  savedStep?: number;
  /** Eval loss by step (`--eval-every`). */
  readonly evalCurve: LossPoint[];
  readonly evaluator: Evaluator | undefined;
  /** TensorBoard event files and metrics.jsonl (rank 0, with --logdir or --save). */
  readonly log: RunLog | undefined;
}

/**
 * Runs `weft train`; resolves to the exit code.
 *
 * @example
 * await trainCommand(parseArgs('train', ['--model', 'mlp', '--steps', '5', '--json']), { out: process.stdout, err: process.stderr });
 */
export async function trainCommand(args: ParsedArgs, io: Io): Promise<number> {
  const run = await prepare(new Flags(args), io);
  if ('finished' in run) return nothingToDo(run.finished, run.spec, io);
  // Watched until the last save is written: a signal or broken pipe then only ends it early.
  const stops = watchStops(io.err);
  try {
    return await train(run, io, stops);
  } finally {
    stops.dispose();
  }
}

async function train(run: Prepared, io: Io, stops: StopWatch): Promise<number> {
  // `--steps` is the run's total of optimizer steps: a resumed run trains those its checkpoint
  // has not done, and a step fp16 skipped for overflow is tried again on the next batch, so an
  // interrupted run and an uninterrupted one take the same batches.
  const todo = run.spec.steps - run.trainer.stepCount;
  const rep = reporter(run.spec.json, todo, io.out);
  const started = Date.now();
  const lines: { loss: number; ms: number; rate: number }[] = [];
  let last: weft.StepResult | undefined;
  for (let done = 1; run.trainer.stepCount < run.spec.steps && !stops.requested; done++) {
    const r = await stepOrStop(run, rep, io, last);
    last = r;
    const rate = (run.source.itemsPerBatch * 1000) / r.ms;
    lines.push({ loss: r.loss, ms: r.ms, rate });
    run.curve.push({ step: r.step, loss: r.loss });
    const evaluation = await observe(run, r, rate, run.trainer.stepCount >= run.spec.steps);
    rep.step({ step: r.step, loss: r.loss, ms: r.ms, tokensPerS: rate, done, lr: r.lr, gradNorm: r.gradNorm, evaluation });
    if (periodicDue(run.saving, r.step) && writesFiles(run.trainer)) await save(run);
  }
  run.log?.close();
  if (stops.requested) return stopped(run, rep, io, stops.requested);
  const wall = (Date.now() - started) / 1000;
  const writes = writesFiles(run.trainer);
  if (writes && run.spec.trace !== undefined) writeTrace(run.trainer, run.spec.trace);
  if (writes && run.spec.save !== undefined && run.savedStep !== run.trainer.stepCount) await save(run);
  const idle = idleReport(run.trainer, last);
  rep.finish({ ...summary(run, lines, wall, idle), ...lossScaling(last) });
  if (!run.spec.json) io.out.write(closingLine(run, lines, wall, idle));
  return 0;
}

/** A stop request ended the run after its step: save (unless just saved), say where, exit 128 + signal. */
async function stopped(run: Prepared, rep: Reporter, io: Io, reason: StopReason): Promise<number> {
  rep.finish(undefined);
  const step = run.trainer.stepCount;
  const writes = writesFiles(run.trainer) && run.saving.dir !== undefined;
  const saved = writes && run.savedStep !== step ? await save(run) : undefined;
  const { line, code } = stopReport(reason, step, writes ? run.saving.dir : undefined, saved);
  io.err.write(line);
  return code;
}

/** Evaluates when due and logs the step's scalars; returns the evaluation, if any. */
async function observe(run: Prepared, r: weft.StepResult, tokensPerS: number, last: boolean): Promise<Record<string, number> | undefined> {
  const evaluation = run.evaluator?.due(r.step, last) ? await run.evaluator.evaluate(run.trainer) : undefined;
  if (evaluation?.loss !== undefined) run.evalCurve.push({ step: r.step, loss: evaluation.loss });
  if (run.log) {
    const scalars = stepScalars(r, { tokensPerS, devices: run.trainer.plan.json.devices, ...(evaluation && { evaluation }) }, run.trainer.memory());
    run.log.write(r.step, scalars, r.summaries);
    run.log.flush();
  }
  return evaluation;
}

/** In a multi-process job every rank holds the same weights; rank 0 alone writes the files. */
function writesFiles(trainer: weft.Trainer): boolean {
  return (trainer.process?.rank ?? 0) === 0;
}

/** `--trace FILE.json`: the Chrome/Perfetto trace of the last step, one track per device. */
function writeTrace(trainer: weft.Trainer, file: string): void {
  try {
    fs.writeFileSync(file, `${JSON.stringify(trainer.trace())}\n`);
  } catch (e) {
    throw new CliError(`--trace ${file}: ${(e as Error).message}`);
  }
}

/** The pipeline's idle fractions in the last step: measured per device, and the ideal. */
interface IdleReport {
  /** Measured idle fraction of each device, by device name (`cpu:0`, ...). */
  readonly measured: Readonly<Record<string, number>>;
  /** (S-1)/(M+S-1) for S stages and M micro-batches. */
  readonly ideal: number;
  readonly microBatches: number;
}

/** The last step report's `idle` (per device, in device order) and `idealIdle`. */
function idleReport(trainer: weft.Trainer, last: weft.StepResult | undefined): IdleReport {
  const plan = trainer.plan.json;
  const measured = Object.fromEntries((last?.idle ?? []).map((v, i) => [plan.devices[i] ?? `cpu:${i}`, roundTo(v, 4)]));
  return { measured, ideal: roundTo(last?.idealIdle ?? 0, 4), microBatches: plan.batch.micro_batches };
}

function roundTo(v: number, digits: number): number {
  return Number(v.toFixed(digits));
}

/**
 * `--resume` of a run already at its `--steps`: nothing is trained or written, exit 0 with a
 * message (a JSON line under `--json`). A `--save` elsewhere is refused: it would only copy.
 */
function nothingToDo(saved: SavedRun, spec: RunSpec, io: Io): number {
  if (spec.save !== undefined && path.resolve(spec.save) !== path.resolve(saved.root) && path.resolve(spec.save) !== path.resolve(saved.dir)) {
    throw new UsageError(`--save ${spec.save}: nothing to train (--resume ${saved.root} is at step ${saved.step} of --steps ${spec.steps}), so nothing new to save; copy the directory instead, or give a larger --steps`);
  }
  const note = { nothing_to_do: true, checkpoint: saved.root, step: saved.step, steps: spec.steps };
  io.out.write(spec.json ? `${JSON.stringify(note)}\n` : `nothing to do: ${saved.root} is at step ${saved.step}, the run's total (--steps ${spec.steps}); give a larger --steps to train on\n`);
  return 0;
}

/** Compiles, loads `--resume`/`--init`, and positions the data; a finished run compiles nothing. */
async function prepare(f: Flags, io: Io): Promise<Prepared | { spec: RunSpec; finished: SavedRun }> {
  const resumeDir = f.str('resume');
  const saved: SavedRun | undefined = resumeDir === undefined ? undefined : readCheckpoint(resumeDir, 'resume');
  const spec = runSpec(f, saved && {
    model: saved.meta.model, step: saved.step, steps: saved.meta.steps, optimizer: saved.meta.optimizer, batch: saved.batch, seed: saved.meta.seed, data: saved.meta.data?.path,
  });
  if (spec.init !== undefined && saved) throw new UsageError('--init and --resume both set the starting weights; give one of them');
  if (saved && spec.steps === saved.step) return { spec, finished: saved };
  const saving = savePolicy(f);
  const trainer = await compileRun(spec);
  const over = spec.memoryLimit === undefined ? [] : overLimit(trainer.plan.json, spec.memoryLimit);
  if (over.length > 0) throw new CliError(over.join('\n'));
  if (writesFiles(trainer)) checkOutputs(saving, spec.trace);
  if (saved) await trainer.load(saved.dir);
  if (spec.init !== undefined) {
    const skipped = await trainer.loadWeights(spec.init);
    if (skipped.length > 0 && !spec.json) io.err.write(`note: ${spec.init}: set aside ${skipped.length} tensors that are not parameters (attention-mask buffers, a tied lm_head.weight)\n`);
  }
  const ev = evalSpec(f, spec, saved?.meta.heldOut);
  const heldOut = heldOutFraction(ev, spec, saved?.meta);
  const source = batchSource(spec.model, spec.batch, spec.data, spec.seed, saved?.meta.data, workersOf(spec.config, spec.layout.dp, trainer.process), trainPart(heldOut));
  const meta = saved?.meta as (CliMeta & { curve?: LossPoint[]; evalCurve?: LossPoint[] }) | undefined;
  const curve = [...(meta?.curve ?? [])];
  const evalCurve = [...(meta?.evalCurve ?? [])];
  const log = writesFiles(trainer) ? RunLog.open(logDir(f.str('logdir'), spec.save)) : undefined;
  return { spec, trainer, source, curve, saving, heldOut, evalCurve, evaluator: ev && new Evaluator(ev, spec), log };
}

/**
 * One step; a non-finite loss ends the run with the step number and exit code 1, and so does an
 * fp16 overflow at the loss scale's floor of 1 (skipped steps would otherwise never end).
 */
async function stepOrStop(run: Prepared, rep: Reporter, io: Io, prev: weft.StepResult | undefined): Promise<weft.StepResult> {
  let r: weft.StepResult;
  try {
    r = await run.trainer.step(run.source.next());
  } catch (e) {
    rep.finish(undefined);
    if (!(e instanceof weft.WeftNonFiniteError)) throw e;
    const dir = run.spec.save;
    const kept = dir !== undefined && hasCheckpoint(dir);
    const note = dir === undefined ? '' : kept ? `; the checkpoint in ${dir} was left as it was` : `; nothing was saved to ${dir}`;
    io.err.write(`error: ${e.message}${note}\n`);
    throw new CliError('', 1);
  }
  if (r.skipped && prev?.lossScale === 1) {
    rep.finish(undefined);
    throw new CliError(`step ${r.step + 1}: fp16 gradients overflow even at loss scale 1 (${r.skippedSteps} steps skipped): it cannot train on`, 1);
  }
  return r;
}

/** At most this many loss points are kept in the checkpoint. */
const CURVE_POINTS = 2000;

/** Saves under `--save` (a new step directory); returns it. */
async function save(run: Prepared): Promise<string> {
  const dir = run.saving.dir as string;
  const curve = decimate(run.curve, CURVE_POINTS);
  const meta: CliMeta & { curve: LossPoint[]; evalCurve: LossPoint[] } = {
    model: run.spec.model,
    tokenizer: run.source.tokenizer,
    data: run.source.state(),
    optimizer: run.spec.optimizer,
    seed: run.spec.seed,
    steps: run.spec.steps,
    ...(run.heldOut !== undefined && { heldOut: run.heldOut }),
    curve,
    evalCurve: decimate(run.evalCurve, CURVE_POINTS),
  };
  const at = await run.trainer.save(dir, meta, { keep: run.saving.keep });
  run.savedStep = run.trainer.stepCount;
  const title = `${run.spec.model.kind} training loss (steps 1-${run.trainer.stepCount})`;
  fs.writeFileSync(path.join(dir, 'loss.svg'), lossChart(run.curve, title, run.evalCurve));
  return at;
}

function decimate<T>(points: readonly T[], max: number): T[] {
  if (points.length <= max) return [...points];
  const stride = points.length / max;
  return Array.from({ length: max }, (_, i) => points[Math.min(points.length - 1, Math.round(i * stride))] as T);
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function summary(run: Prepared, lines: readonly { loss: number; ms: number; rate: number }[], wall: number, idle: IdleReport): Record<string, unknown> {
  const ms = lines.map((l) => l.ms);
  const medianMs = median(ms);
  return {
    model: run.spec.model,
    steps: lines.length,
    last_step: run.trainer.stepCount,
    first_loss: lines[0]?.loss,
    final_loss: lines[lines.length - 1]?.loss,
    eval_loss: run.evalCurve[run.evalCurve.length - 1]?.loss ?? null,
    logdir: run.log?.dir ?? null,
    mean_ms: Number((ms.reduce((a, b) => a + b, 0) / ms.length).toFixed(3)),
    median_ms: Number(medianMs.toFixed(3)),
    tokens_per_s: Number(((run.source.itemsPerBatch * 1000) / medianMs).toFixed(1)),
    wall_s: Number(wall.toFixed(3)),
    parameters: run.trainer.plan.json.parameters,
    devices: run.spec.devices.toString(),
    dp: run.spec.layout.dp,
    pp: run.spec.layout.pp,
    tp: run.spec.layout.tp,
    micro_batches: idle.microBatches,
    idle: idle.measured,
    ideal_idle: idle.ideal,
    memory: run.trainer.memory(),
    saved: writesFiles(run.trainer) ? (run.spec.save ?? null) : null,
    process: run.trainer.process,
  };
}

/** fp16's loss scale after the last step and the steps skipped for overflow (dynamic scaling). */
function lossScaling(last: weft.StepResult | undefined): Record<string, unknown> {
  return { loss_scale: last?.lossScale ?? null, skipped_steps: last?.skippedSteps ?? 0 };
}

function closingLine(run: Prepared, lines: readonly { loss: number }[], wall: number, idle: IdleReport): string {
  const first = lines[0]?.loss ?? NaN;
  const last = lines[lines.length - 1]?.loss ?? NaN;
  const saved = run.spec.save === undefined || !writesFiles(run.trainer) ? '' : `; saved ${run.spec.save} (loss curve: ${path.join(run.spec.save, 'loss.svg')})`;
  const trace = run.spec.trace === undefined || !writesFiles(run.trainer) ? '' : `; trace of the last step: ${run.spec.trace}`;
  const out = [`trained ${lines.length} steps in ${wall.toFixed(1)} s: loss ${first.toFixed(4)} -> ${last.toFixed(4)}${saved}${trace}`];
  const evalLine = watchLine(run);
  if (evalLine !== '') out.push(evalLine);
  if (run.spec.devices.count > 1) out.push(idleLine(run.spec, idle));
  return `${out.join('\n')}\n`;
}

/** `eval loss 2.1 (ppl 8.2) on ...; metrics: DIR (tensorboard --logdir DIR)`, or nothing. */
function watchLine(run: Prepared): string {
  const e = run.evalCurve[run.evalCurve.length - 1];
  const parts: string[] = [];
  if (e && run.evaluator) parts.push(`eval loss ${e.loss.toFixed(4)}${run.spec.model.kind === 'gpt' ? ` (ppl ${Math.exp(e.loss).toFixed(2)})` : ''} on ${run.evaluator.describe()}`);
  if (run.log) parts.push(`metrics: ${run.log.dir} (tensorboard --logdir ${run.log.dir})`);
  return parts.join('; ');
}

/** `devices: cpu:4 = dp 2 x pp 2, 4 micro-batches; idle in the last step: cpu:0 12.0%, ... (ideal 20.0%)`. */
function idleLine(spec: RunSpec, idle: IdleReport): string {
  const pct = (v: number): string => `${(v * 100).toFixed(1)}%`;
  const measured = `idle in the last step: ${Object.entries(idle.measured).map(([d, v]) => `${d} ${pct(v)}`).join(', ')}`;
  const ideal = `ideal (S-1)/(M+S-1) = ${pct(idle.ideal)}`;
  return `devices: ${spec.devices.toString()} = dp ${spec.layout.dp} x pp ${spec.layout.pp}${spec.layout.tp > 1 ? ` x tp ${spec.layout.tp}` : ''}, ${idle.microBatches} micro-batch(es); ${measured} (${ideal})`;
}
