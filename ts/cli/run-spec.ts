/**
 * Turns the parsed flags of `train`/`plan` into one typed run description: the model, data,
 * optimizer, devices and config, with the CLI's defaults and its cross-flag checks.
 */
import * as fs from 'node:fs';
import * as weft from '../index.js';
import { type FlagValue, type ParsedArgs, UsageError } from './args.js';

/** The built-in model to build. */
export type ModelSpec =
  | { readonly kind: 'gpt'; readonly layers: number; readonly heads: number; readonly dim: number; readonly seq: number; readonly vocab: number }
  | { readonly kind: 'mlp'; readonly sizes: readonly number[] };

/** Everything a `train` or `plan` run needs. */
export interface RunSpec {
  readonly model: ModelSpec;
  readonly batch: number;
  readonly seed: number;
  readonly steps: number;
  /** An llm.c token file; undefined: the built-in corpus (gpt) or synthetic data (mlp). */
  readonly data: string | undefined;
  readonly init: string | undefined;
  readonly optimizer: weft.Optimizer;
  readonly devices: weft.Devices;
  readonly config: weft.Config;
  readonly json: boolean;
  readonly save: string | undefined;
  readonly resume: string | undefined;
  readonly memoryLimit: number | undefined;
}

/** W2 of BENCHMARKS.md. */
const GPT_DEFAULTS = { layers: 4, heads: 4, dim: 256, seq: 128, vocab: 4096 } as const;
const GPT_FLAGS = ['layers', 'heads', 'dim', 'seq', 'vocab'] as const;
/** W1 of BENCHMARKS.md. */
const MLP_DEFAULT_SIZES = [784, 1024, 1024, 10];

/** Typed access to parsed flags. */
export class Flags {
  constructor(private readonly parsed: ParsedArgs) {}

  /** Whether the flag was given. */
  has(name: string): boolean {
    return this.parsed.flags.has(name);
  }

  /** A numeric flag's value, or `fallback`. */
  num(name: string, fallback: number): number;
  num(name: string): number | undefined;
  num(name: string, fallback?: number): number | undefined {
    return (this.parsed.flags.get(name) as number | undefined) ?? fallback;
  }

  /** A string flag's value. */
  str(name: string): string | undefined {
    return this.parsed.flags.get(name) as string | undefined;
  }

  /** A list or repeatable flag's values. */
  list<T extends FlagValue>(name: string): T | undefined {
    return this.parsed.flags.get(name) as T | undefined;
  }

  /** Whether a boolean flag is set. */
  bool(name: string): boolean {
    return this.parsed.flags.get(name) === true;
  }
}

/**
 * The model a run trains: from the flags, or, when resuming, from the checkpoint with any
 * explicit flag checked against it.
 */
export function modelSpec(f: Flags, saved?: ModelSpec): ModelSpec {
  const kind = (f.str('model') ?? saved?.kind ?? 'gpt') as ModelSpec['kind'];
  if (saved && saved.kind !== kind) throw new UsageError(`--model ${kind} differs from the checkpoint's model '${saved.kind}'`);
  const wrong = kind === 'gpt' ? ['sizes'] : GPT_FLAGS;
  for (const name of wrong) {
    if (f.has(name)) throw new UsageError(`--${name} does not apply to --model ${kind}`);
  }
  if (kind === 'mlp') {
    const sizes = f.list<number[]>('sizes') ?? (saved?.kind === 'mlp' ? [...saved.sizes] : MLP_DEFAULT_SIZES);
    if (saved?.kind === 'mlp' && sizes.join() !== saved.sizes.join()) {
      throw new UsageError(`--sizes ${sizes.join(',')} differs from the checkpoint's ${saved.sizes.join(',')}`);
    }
    return { kind, sizes };
  }
  const base = saved?.kind === 'gpt' ? saved : GPT_DEFAULTS;
  const out = { kind, ...base };
  for (const name of GPT_FLAGS) {
    const v = f.num(name);
    if (v === undefined) continue;
    if (saved && v !== base[name]) throw new UsageError(`--${name} ${v} differs from the checkpoint's ${name} ${base[name]}`);
    out[name] = v;
  }
  if (out.dim % out.heads !== 0) throw new UsageError(`--dim ${out.dim} must be a multiple of --heads ${out.heads}`);
  return out;
}

/** Optimizer flags and the option each sets. */
const OPTIMIZER_FLAGS = {
  lr: 'lr', 'weight-decay': 'weightDecay', 'grad-clip': 'gradClip', warmup: 'warmup',
  beta1: 'beta1', beta2: 'beta2', eps: 'eps', momentum: 'momentum',
} as const;

/**
 * The optimizer from the optimizer flags: AdamW 3e-4 for gpt and Adam 1e-3 for mlp by default;
 * when resuming, the checkpoint's optimizer with any given flag on top.
 */
export function optimizerSpec(f: Flags, model: ModelSpec, totalSteps: number, saved?: weft.Optimizer): weft.Optimizer {
  const kind = (f.str('optimizer') ?? saved?.kind ?? (model.kind === 'gpt' ? 'adamw' : 'adam')) as weft.Optimizer['kind'];
  const inapplicable = kind === 'sgd' ? ['beta1', 'beta2', 'eps'] : ['momentum'];
  for (const name of inapplicable) if (f.has(name)) throw new UsageError(`--${name} does not apply to --optimizer ${kind}`);
  const { kind: _kind, totalSteps: _total, ...base } = saved?.kind === kind ? saved : { kind };
  const opts: Record<string, unknown> = { lr: model.kind === 'gpt' ? 3e-4 : 1e-3, ...base, ...numbers(f, OPTIMIZER_FLAGS) };
  if (f.has('schedule')) opts['schedule'] = f.str('schedule');
  if (opts['schedule'] === 'cosine') opts['totalSteps'] = totalSteps;
  if (kind === 'sgd') return weft.optim.sgd(opts as weft.SgdOptions);
  return kind === 'adam' ? weft.optim.adam(opts as weft.AdamOptions) : weft.optim.adamW(opts as weft.AdamOptions);
}

/** `{flag: key}` -> `{key: value}` for the flags that were given. */
function numbers(f: Flags, map: Readonly<Record<string, string>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [flag, key] of Object.entries(map)) {
    const v = f.num(flag);
    if (v !== undefined) out[key] = v;
  }
  return out;
}

/** `--config FILE.json`, then each `--set key=value` on top, through `weft.config`. */
export function configSpec(f: Flags): weft.Config {
  const file = f.str('config');
  let cfg = weft.config(file === undefined ? {} : readConfigFile(file));
  for (const item of f.list<string[]>('set') ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--set: expected key=value (e.g. pipeline.num_micro_batch=4), got '${item}'`);
    cfg = cfg.with({ [item.slice(0, eq)]: parseSetValue(item.slice(eq + 1)) });
  }
  return cfg;
}

function readConfigFile(file: string): weft.ConfigInput {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`--config ${file}: ${(e as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--config ${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new UsageError(`--config ${file}: expected a JSON object of config keys`);
  }
  return value as weft.ConfigInput;
}

/** `true`/`false` become booleans, numbers numbers, anything else stays a string. */
function parseSetValue(raw: string): weft.ConfigValue {
  if (raw === 'true' || raw === 'false') return raw === 'true';
  if (raw.trim() !== '' && Number.isFinite(Number(raw))) return Number(raw);
  return raw;
}

/**
 * `--devices` and `--dp/--pp/--tp`. Parallel layouts land with the parallel-training issue;
 * until then they are refused here rather than silently run on one device.
 */
export function devicesSpec(f: Flags): weft.Devices {
  const text = f.str('devices') ?? 'cpu:1';
  const m = /^(cpu|cuda):(\d+)$/.exec(text);
  if (!m || Number(m[2]) < 1) throw new UsageError(`--devices: expected cpu:N or cuda:N with N >= 1, got '${text}'`);
  const devices = m[1] === 'cpu' ? weft.cpu(Number(m[2])) : weft.cuda(Number(m[2]));
  if (devices.kind === 'cpu' && devices.count > 1) {
    throw new UsageError(`--devices ${text}: several devices are not yet supported in this build (parallel training lands with the parallel-training issue); use --devices cpu:1`);
  }
  for (const name of ['dp', 'pp', 'tp']) {
    const n = f.num(name);
    if (n !== undefined && n > 1) {
      throw new UsageError(`--${name} ${n}: ${name.toUpperCase()} > 1 is not yet supported in this build (parallel training lands with the parallel-training issue)`);
    }
  }
  return devices;
}

/** The whole run from the flags (and a checkpoint's saved model when resuming). */
export function runSpec(f: Flags, saved?: { model: ModelSpec; step: number; optimizer?: weft.Optimizer }): RunSpec {
  if (f.has('trace')) throw new UsageError('--trace is not yet supported in this build (tracing lands with the profiling issue)');
  const model = modelSpec(f, saved?.model);
  const steps = f.num('steps', 100);
  const data = f.str('data');
  if (data !== undefined && model.kind === 'mlp') throw new UsageError('--data applies to --model gpt (the mlp trains on seeded synthetic data)');
  if (data === undefined && model.kind === 'gpt' && model.vocab < 256) {
    throw new UsageError(`--vocab ${model.vocab} is below 256, the byte tokenizer's vocabulary used for the built-in corpus; use --vocab 256 or more, or --data FILE.bin`);
  }
  return {
    model,
    batch: f.num('batch', model.kind === 'gpt' ? 8 : 256),
    seed: f.num('seed', 0),
    steps,
    data,
    init: f.str('init'),
    optimizer: optimizerSpec(f, model, (saved?.step ?? 0) + steps, saved?.optimizer),
    devices: devicesSpec(f),
    config: configSpec(f),
    json: f.bool('json'),
    save: f.str('save'),
    resume: f.str('resume'),
    memoryLimit: f.num('memory-limit'),
  };
}
