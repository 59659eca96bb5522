/**
 * `weft plan`: compile the run described by the train flags and print its plan (TaskGraphs,
 * device slices, schedule, memory estimate) without running a step.
 */
import type { ParsedArgs } from './args.js';
import { stageSizes } from '../models/stages.js';
import { CliError, UsageError } from './cli-error.js';
import { workerShards, workersOf } from './data-source.js';
import { WATCH_FLAGS } from './eval.js';
import * as weft from '../index.js';
import { Flags, type RunSpec, runSpec } from './run-spec.js';
import { clusterPlanCommand } from './plan-cluster.js';
import { compileRun, formatBytes, overLimit } from './session.js';
import type { Io } from './train.js';

/**
 * Runs `weft plan`; resolves to the exit code (1 when `--memory-limit` is exceeded).
 *
 * @example
 * await planCommand(parseArgs('plan', ['--model', 'mlp', '--json']), { out: process.stdout, err: process.stderr });
 */
export async function planCommand(args: ParsedArgs, io: Io): Promise<number> {
  const flags = new Flags(args);
  const cluster = flags.str('cluster');
  if (cluster?.includes(':')) return clusterPlanCommand(flags, cluster, io);
  for (const name of ['micro-batch', 'hardware']) {
    if (flags.has(name)) throw new UsageError(`--${name} applies to a cluster plan (--cluster NODESxGPUS:KIND, e.g. 2x8:h100)`);
  }
  const spec = runSpec(flags);
  if (spec.trace !== undefined) throw new UsageError("--trace applies to 'weft train': a plan runs no step to trace");
  const watch = WATCH_FLAGS.find((n) => flags.has(n));
  if (watch !== undefined) throw new UsageError(`--${watch} applies to 'weft train': a plan runs no step to evaluate or log`);
  const trainer = await compileRun(spec);
  const plan = trainer.plan;
  if (spec.json) {
    io.out.write(`${JSON.stringify(plan.json)}\n`);
  } else {
    io.out.write(stageLines(spec));
    io.out.write(shardLines(spec, trainer.process));
    io.out.write(`${plan.toString()}\n`);
    io.out.write(estimateLine(plan.json));
  }
  const over = spec.memoryLimit === undefined ? [] : overLimit(plan.json, spec.memoryLimit);
  if (over.length > 0) throw new CliError(over.join('\n'));
  return 0;
}

/**
 * With `--pp` > 1, which layers of the built-in model each stage holds, above the core's plan:
 * `stages of the gpt (--pp 2; grid rows are stages, every replica runs the same grid):` and one
 * line per stage.
 */
function stageLines(spec: RunSpec): string {
  const pp = spec.layout.pp;
  if (pp === 1) return '';
  const model = spec.model;
  const layers = model.kind === 'gpt' ? model.layers : model.sizes.length - 1;
  const lines = [`stages of the ${model.kind} (--pp ${pp}; grid rows are stages${spec.layout.dp > 1 ? ', every replica runs the same grid' : ''}):`];
  let first = 0;
  stageSizes(model.kind, layers, pp).forEach((count, s) => {
    const names = Array.from({ length: count }, (_, i) => (model.kind === 'gpt' ? `h.${first + i}` : `fc${first + i}`));
    if (s === 0 && model.kind === 'gpt') names.unshift('wte', 'wpe');
    if (s === pp - 1) names.push(...(model.kind === 'gpt' ? ['ln_f', 'head (tied to wte)', 'loss'] : ['loss']));
    lines.push(`  stage${s}: ${names.join(', ')}`);
    first += count;
  });
  return `${lines.join('\n')}\n`;
}

/**
 * With `--data` naming several shards, which shards each worker (process) reads: all of them,
 * or under `io.slicing` its share by EPL's rule.
 */
function shardLines(spec: RunSpec, process: { rank: number; world: number } | null): string {
  if (spec.data === undefined || spec.model.kind !== 'gpt') return '';
  const set = weft.data.resolve(spec.data);
  if (!set.manifest && set.shards.length < 2) return '';
  const w = workersOf(spec.config, spec.layout.dp, process);
  const head = `data: ${set.shards.length} shards${set.manifest ? ` (${set.manifest.tokenizer}, vocabulary ${set.manifest.vocab_size})` : ''}; io.slicing ${w.slicing ? 'on' : 'off'}`;
  const lines = [head];
  w.localReplicas.forEach((replicas, worker) => {
    const s = workerShards(set.shards, w, worker);
    const why = s.kind === 'too-few-files' ? ' (fewer shards than buckets: slicing off)' : s.kind === 'uneven' ? ' (shards do not divide: slicing off; see io.drop_last_files, io.unbalanced_io_slicing)' : '';
    lines.push(`  worker ${worker} (${replicas} replica${replicas > 1 ? 's' : ''}): ${s.files.map((f) => f.split('/').pop()).join(', ')}${why}`);
  });
  return `${lines.join('\n')}\n`;
}

/** `memory estimate: 162.7 MiB peak per device (cpu:0)`. */
function estimateLine(json: weft.PlanJson): string {
  const peaks = Object.entries(json.memory).map(([d, m]) => `${d} ${formatBytes(m.total)}`);
  return `memory estimate (peak per device): ${peaks.join(', ')}\n`;
}
