/**
 * `weft plan --cluster NODESxGPUS:KIND`: the built-in model's layout planned on a cluster from
 * shapes alone (nothing is built or allocated): memory per device by category against capacity,
 * the simulated step split into compute, exposed communication and bubble, and throughput.
 */
import * as weft from '../index.js';
import { CliError, UsageError } from './cli-error.js';
import { configSpec, type Flags, modelSpec } from './run-spec.js';
import { formatBytes } from './session.js';
import type { Io } from './train.js';

/** Runs the cluster plan; exit code 1 (after the report) when a device overflows. */
export function clusterPlanCommand(f: Flags, cluster: string, io: Io): number {
  for (const name of ['dp', 'devices'] as const) {
    if (f.has(name)) throw new UsageError(`--${name} does not apply to --cluster ${cluster}: dp is the cluster's devices / (tp x pp)`);
  }
  const spec = modelSpec(f);
  const model: weft.ModelShape = spec.kind === 'gpt' ? { kind: 'gpt', layers: spec.layers, heads: spec.heads, dim: spec.dim, seq: spec.seq, vocab: spec.vocab } : { kind: 'mlp', sizes: spec.sizes };
  const plan = weft.plan(model, { cluster, ...layoutOf(f, spec.kind), ...(f.has('hardware') && { hardware: f.str('hardware') }) });
  io.out.write(f.has('json') ? `${JSON.stringify(plan)}\n` : report(plan, spec.kind));
  if (!plan.fits) throw new CliError(`the layout does not fit:\n${plan.overflow.join('\n')}`);
  return 0;
}

/** The layout from the flags and config keys the runtime reads for the same choices. */
function layoutOf(f: Flags, kind: 'gpt' | 'mlp'): weft.ClusterLayout {
  const config = configSpec(f);
  const get = (key: weft.ConfigKeyName): string => String(config.get(key)).toLowerCase();
  const virtual = Number(config.get('pipeline.num_virtual_stages'));
  const micro = Number(config.get('pipeline.num_micro_batch'));
  const rows = f.num('micro-batch');
  return {
    tp: f.num('tp') ?? 1,
    pp: f.num('pp') ?? 1,
    global_batch: f.num('batch') ?? (kind === 'gpt' ? 8 : 256),
    ...(rows === undefined && micro > 1 ? { micro_batches: micro } : { micro_batch: rows ?? 1 }),
    schedule: virtual > 1 ? 'interleaved' : get('pipeline.strategy') === 'preferforward' ? 'gpipe' : '1f1b',
    virtual_stages: virtual,
    zero: get('zero.level') as weft.ClusterLayout['zero'],
    recompute: get('gradient_checkpoint.type') !== '',
    precision: get('amp.level') === '' ? 'fp32' : ((get('amp.dtype') || 'bf16') as 'bf16' | 'fp16'),
    optimizer: (f.str('optimizer') ?? (kind === 'gpt' ? 'adamw' : 'adam')) as weft.ClusterLayout['optimizer'],
  };
}

const seconds = (s: number): string => (s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1e3).toFixed(2)} ms`);

/** The human-readable report. */
function report(p: weft.ClusterPlanJson, kind: string): string {
  const l = p.layout;
  const lines = [
    `cluster plan: ${kind} of ${(p.parameters / 1e9).toFixed(1)}B parameters on ${p.cluster} (${p.devices} ${p.hardware} devices; shapes only, nothing allocated)`,
    `layout: tp ${l.tp} x pp ${l.pp} x dp ${l.dp}; ${l.micro_batches} micro-batch(es) of ${l.micro_batch} row(s); ${l.schedule}${l.virtual_stages > 1 ? ` (${l.virtual_stages} virtual stages)` : ''}; zero ${l.zero || 'off'}; recompute ${l.recompute ? 'on' : 'off'}; ${l.precision}`,
    'memory per device (pipeline rank: total / capacity = parameters + gradients + optimizer state + activations + communication buffers):',
  ];
  for (const m of shownRanks(p.memory)) {
    const parts = [m.params, m.grads, m.optimizer_state, m.activations, m.comm_buffers].map(formatBytes).join(' + ');
    const acts = `activations without recompute ${formatBytes(m.activations_without_recompute)}, with ${formatBytes(m.activations_with_recompute)}`;
    lines.push(`  rank ${m.pipeline_rank}: ${formatBytes(m.total)} / ${formatBytes(m.capacity)} = ${parts}${m.fits ? '' : '  DOES NOT FIT'} (${acts})`);
  }
  const c = p.critical;
  lines.push(
    `step ${seconds(p.step_s)} (busiest rank ${c.pipeline_rank}): compute ${seconds(c.compute_s)}, exposed communication ${seconds(c.exposed_comm_s)}, bubble ${seconds(c.bubble_s)} (${(100 * p.bubble_fraction).toFixed(1)}%; closed form ${(100 * p.closed_form_bubble).toFixed(1)}%), optimizer ${seconds(c.optimizer_s)}`,
    `throughput: ${Math.round(p.tokens_per_s).toLocaleString('en-US')} tokens/s; ${(p.model_flops_per_gpu / 1e12).toFixed(1)} model TFLOP/s per GPU (MFU ${(100 * p.mfu).toFixed(1)}%); ${(p.hardware_flops_per_gpu / 1e12).toFixed(1)} TFLOP/s per GPU counting recompute (Megatron's count)`,
  );
  return `${lines.join('\n')}\n`;
}

/** Every rank up to 4; else the first, the last and the fullest. */
function shownRanks(memory: readonly weft.ClusterMemory[]): weft.ClusterMemory[] {
  if (memory.length <= 4) return [...memory];
  const fullest = memory.reduce((a, b) => (b.total > a.total ? b : a));
  const picks = new Set([memory[0]!, fullest, memory[memory.length - 1]!]);
  return [...picks].sort((a, b) => a.pipeline_rank - b.pipeline_rank);
}
