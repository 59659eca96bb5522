/**
 * Turns the parsed flags of `train`/`plan` into one typed run description: the model, data,
 * optimizer, devices and config, with the CLI's defaults and its cross-flag checks.
 */
import * as fs from 'node:fs';
import * as weft from '../index.js';
import { gptOptionsFromHf } from '../models/gpt.js';
import { type FlagValue, type ParsedArgs, UsageError } from './args.js';

/** The built-in model to build. */
export type ModelSpec =
  | {
      readonly kind: 'gpt'; readonly layers: number; readonly heads: number; readonly dim: number; readonly seq: number; readonly vocab: number;
      /** Layer-norm epsilon (absent: GPT-2's 1e-5). */
      readonly eps?: number;
    }
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
  /** Data-parallel replicas x pipeline stages = the device count. */
  readonly layout: Layout;
  readonly config: weft.Config;
  readonly json: boolean;
  readonly save: string | undefined;
  readonly resume: string | undefined;
  readonly memoryLimit: number | undefined;
  /** `--trace FILE.json`: the Chrome trace of the last step goes there. */
  readonly trace: string | undefined;
  /** `weft plan --cluster HOSTSxDEVICES`: simulated hosts for EPL's slicing. */
  readonly cluster: string | undefined;
}

/** How the devices are used: `dp` replicas of a `pp`-stage pipeline, each stage on `tp` devices. */
export interface Layout {
  readonly dp: number;
  readonly pp: number;
  /** Tensor-parallel devices per stage (`--tp`, default 1). */
  readonly tp: number;
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
 * explicit flag checked against it, or from the `config.json` of a Hugging Face `--init`
 * (whose context `--seq` may shorten: `wpe` is cut on load).
 */
export function modelSpec(f: Flags, saved?: ModelSpec): ModelSpec {
  const init = f.str('init');
  const hf = init === undefined ? undefined : gptOptionsFromHf(init);
  if (hf) return hfModelSpec(f, init as string, hf);
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

/**
 * A prepared data set names its vocabulary: the gpt's unless `--vocab` (or the checkpoint) set
 * it, and a vocabulary smaller than the data's is an error before anything is built.
 */
function withDataVocab(model: ModelSpec, data: string | undefined, vocabGiven: boolean): ModelSpec {
  if (model.kind !== 'gpt' || data === undefined) return model;
  const manifest = weft.data.resolve(data).manifest;
  const out = manifest && !vocabGiven ? { ...model, vocab: manifest.vocab_size } : model;
  weft.data.checkVocab(data, out.vocab);
  return out;
}

/** `--init DIR`'s config.json shape, with any shape flag checked against it. */
function hfModelSpec(f: Flags, init: string, hf: NonNullable<ReturnType<typeof gptOptionsFromHf>>): ModelSpec {
  if ((f.str('model') ?? 'gpt') !== 'gpt') throw new UsageError(`--init ${init} is a GPT-2 (it has a config.json); --model ${f.str('model')} does not apply`);
  if (f.has('sizes')) throw new UsageError('--sizes does not apply to --model gpt');
  const keys = { layers: 'n_layer', heads: 'n_head', dim: 'n_embd', vocab: 'vocab_size' } as const;
  for (const [flag, key] of Object.entries(keys) as [keyof typeof keys, string][]) {
    const v = f.num(flag);
    if (v !== undefined && v !== hf[flag]) throw new UsageError(`--${flag} ${v} differs from ${key} ${hf[flag]} in the config.json of --init ${init}; leave --${flag} out`);
  }
  const seq = f.num('seq', hf.seq);
  if (seq > hf.seq) throw new UsageError(`--seq ${seq} is longer than n_positions ${hf.seq} in the config.json of --init ${init} (its wpe has ${hf.seq} rows); use --seq ${hf.seq} or less`);
  return { kind: 'gpt', layers: hf.layers, heads: hf.heads, dim: hf.dim, seq, vocab: hf.vocab, ...(hf.eps !== 1e-5 && { eps: hf.eps }) };
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
  const { kind: _kind, totalSteps: savedTotal, ...base } = saved?.kind === kind ? saved : { kind, totalSteps: undefined };
  const opts: Record<string, unknown> = { lr: model.kind === 'gpt' ? 3e-4 : 1e-3, ...base, ...numbers(f, OPTIMIZER_FLAGS) };
  if (f.has('schedule')) opts['schedule'] = f.str('schedule');
  const decay = f.num('decay-steps');
  if (opts['schedule'] !== 'cosine' && decay !== undefined) throw new UsageError(`--decay-steps ${decay} applies to --schedule cosine`);
  // The schedule's length is part of the run: a resumed run keeps its checkpoint's (the core
  // refuses a load whose schedule differs), so the rate never rises again.
  if (opts['schedule'] === 'cosine') opts['totalSteps'] = decay ?? savedTotal ?? totalSteps;
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
    // A key typed on the command line: the core validates it (and suggests the nearest key).
    const key = item.slice(0, eq);
    cfg = cfg.with({ [key]: parseSetValue(key, item.slice(eq + 1)) } as weft.ConfigInput);
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

/** The text of `--set key=value`, parsed by the key's type in the core (`"1"` stays a string for a string key). */
function parseSetValue(key: string, raw: string): weft.ConfigValue {
  return weft.configValueFromText(key, raw);
}

/** Most CPU virtual devices a run may use. */
const MAX_CPU_DEVICES = 16;

/**
 * `--devices` and `--dp/--pp/--tp`: the devices and how they are used. `--pp` is the built-in
 * model's pipeline stages, `--tp` the tensor-parallel devices of each stage and `--dp` the
 * replicas; without `--devices` the run uses dp x pp x tp CPU devices, with it the device count
 * must be dp x pp x tp (a missing one of dp and pp is derived from it; both missing: every
 * group of tp devices is a replica).
 *
 * @example
 * devicesSpec(new Flags(parseArgs('train', ['--dp', '2', '--pp', '2', '--tp', '2']))) // cpu:8
 */
export function devicesSpec(f: Flags): { devices: weft.Devices; layout: Layout } {
  const tp = f.num('tp') ?? 1;
  const dpFlag = f.num('dp');
  const ppFlag = f.num('pp');
  const text = f.str('devices');
  if (text === undefined) {
    const dp = dpFlag ?? 1;
    const pp = ppFlag ?? 1;
    if (dp * pp * tp > MAX_CPU_DEVICES) {
      throw new UsageError(`--dp ${dp} x --pp ${pp} x --tp ${tp} = ${dp * pp * tp} devices; at most ${MAX_CPU_DEVICES} CPU devices`);
    }
    return { devices: weft.cpu(dp * pp * tp), layout: { dp, pp, tp } };
  }
  const m = /^(cpu|cuda):(\d+)$/.exec(text);
  const n = m ? Number(m[2]) : 0;
  if (!m || n < 1) throw new UsageError(`--devices: expected cpu:N or cuda:N with N >= 1, got '${text}'`);
  if (m[1] === 'cpu' && n > MAX_CPU_DEVICES) {
    throw new UsageError(`--devices ${text}: at most ${MAX_CPU_DEVICES} CPU devices (cpu:1 to cpu:${MAX_CPU_DEVICES})`);
  }
  const devices = m[1] === 'cpu' ? weft.cpu(n) : weft.cuda(n);
  if (n % tp !== 0) {
    throw new UsageError(`--devices ${text} has ${n} devices, which --tp ${tp} does not divide; give a multiple of ${tp} devices`);
  }
  const groups = n / tp;
  if (dpFlag !== undefined && ppFlag !== undefined) {
    if (dpFlag * ppFlag !== groups) {
      const [tpText, tpWord] = tp > 1 ? [` x --tp ${tp}`, ' x tp'] : ['', ''];
      throw new UsageError(`--devices ${text} has ${n} devices, but --dp ${dpFlag} x --pp ${ppFlag}${tpText} = ${dpFlag * ppFlag * tp}; give dp x pp${tpWord} devices or leave --devices out`);
    }
    return { devices, layout: { dp: dpFlag, pp: ppFlag, tp } };
  }
  const [name, k] = dpFlag !== undefined ? ['dp', dpFlag] : ['pp', ppFlag ?? 1];
  if (groups % k !== 0) {
    throw new UsageError(`--devices ${text} has ${n} devices, which --${name} ${k}${tp > 1 ? ` x --tp ${tp}` : ''} does not divide; give a multiple of ${k * tp} devices`);
  }
  const other = groups / k;
  return { devices, layout: dpFlag !== undefined ? { dp: k, pp: other, tp } : { dp: other, pp: k, tp } };
}

/** The pipeline stages must not outnumber the model's layers. */
function checkStages(model: ModelSpec, pp: number): void {
  const layers = model.kind === 'gpt' ? model.layers : model.sizes.length - 1;
  if (pp > layers) {
    const what = model.kind === 'gpt' ? `--layers ${layers}` : `--sizes with ${layers} layer(s)`;
    throw new UsageError(`--pp ${pp}: the ${model.kind} has ${what}; each pipeline stage needs at least one layer, so --pp must be at most ${layers}`);
  }
}

/** The global batch must split into dp replicas x M micro-batches of whole rows. */
function checkBatch(batch: number, dp: number, config: weft.Config): void {
  const micro = Math.max(1, Number(config.get('pipeline.num_micro_batch')));
  if (batch % (dp * micro) !== 0) {
    throw new UsageError(`--batch ${batch} does not split into --dp ${dp} replica(s) x ${micro} micro-batch(es) (pipeline.num_micro_batch); use a multiple of ${dp * micro}`);
  }
}

/** What a resumed run takes from its checkpoint unless a flag says otherwise. */
export interface SavedDefaults {
  readonly model: ModelSpec;
  readonly step: number;
  /** The saved run's total steps (absent in checkpoints written before it was stored). */
  readonly steps?: number | undefined;
  readonly optimizer?: weft.Optimizer;
  readonly batch?: number | undefined;
  readonly seed?: number;
  /** The token file it trained on (null: the built-in corpus or synthetic data). */
  readonly data?: string | null;
}

/**
 * `--steps`: the run's total number of optimizer steps (HF Trainer's and torchtitan's
 * `max_steps`), so a resumed run trains up to it, never past it; by default a resumed run's
 * saved total. Below the checkpoint's step is an error; equal means nothing is left to do.
 */
function totalSteps(f: Flags, saved: SavedDefaults | undefined): number {
  const steps = f.num('steps', saved?.steps ?? 100);
  if (saved !== undefined && steps < saved.step) {
    const given = f.has('steps') ? `--steps ${steps}` : `--steps (default ${steps})`;
    throw new UsageError(`${given} is below the checkpoint's step ${saved.step}: --steps is the run's total number of steps, so give ${saved.step} or more`);
  }
  return steps;
}

/**
 * The whole run from the flags; when resuming, the checkpoint's model, optimizer, batch, seed
 * and data are the defaults, so that a resumed run continues the saved one.
 */
export function runSpec(f: Flags, saved?: SavedDefaults): RunSpec {
  const data = f.str('data') ?? saved?.data ?? undefined;
  const model = withDataVocab(modelSpec(f, saved?.model), data, f.has('vocab') || saved !== undefined);
  const { devices, layout } = devicesSpec(f);
  checkStages(model, layout.pp);
  if (layout.tp > 1 && model.kind !== 'gpt') {
    throw new UsageError(`--tp ${layout.tp}: tensor parallelism of the built-in models applies to --model gpt (an mlp's own model can use m.split)`);
  }
  const steps = totalSteps(f, saved);
  if (data !== undefined && model.kind === 'mlp') throw new UsageError('--data applies to --model gpt (the mlp trains on seeded synthetic data)');
  if (data === undefined && model.kind === 'gpt' && model.vocab < 256) {
    throw new UsageError(`--vocab ${model.vocab} is below 256, the byte tokenizer's vocabulary used for the built-in corpus; use --vocab 256 or more, or --data FILE.bin`);
  }
  const batch = f.num('batch', saved?.batch ?? (model.kind === 'gpt' ? 8 : 256));
  const config = configSpec(f);
  checkBatch(batch, layout.dp, config);
  return {
    model,
    batch,
    seed: f.num('seed', saved?.seed ?? 0),
    steps,
    data,
    init: f.str('init'),
    optimizer: optimizerSpec(f, model, steps, saved?.optimizer),
    devices,
    layout,
    config,
    json: f.bool('json'),
    save: f.str('save'),
    resume: f.str('resume'),
    memoryLimit: f.num('memory-limit'),
    cluster: f.str('cluster'),
    trace: f.str('trace'),
  };
}
