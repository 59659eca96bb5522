/**
 * From a run description to a compiled trainer: build the built-in model, compile it, check the
 * predicted memory against `--memory-limit`.
 */
import * as weft from '../index.js';
import { gpt } from '../models/gpt.js';
import { mlp } from '../models/mlp.js';
import type { ModelSpec, RunSpec } from './run-spec.js';

/**
 * Builds a built-in model under `cfg`, cut into `stages` pipeline stages (default 1), each split
 * over `tp` tensor-parallel devices (gpt only; default 1).
 *
 * @example
 * const model = buildModel({ kind: 'mlp', sizes: [784, 10] }, weft.config());
 */
export function buildModel(spec: ModelSpec, cfg: weft.Config, outputLogits = false, stages = 1, tp = 1): weft.Model {
  if (spec.kind === 'mlp') return mlp({ sizes: spec.sizes, outputLogits, stages }, cfg);
  const { layers, heads, dim, seq, vocab, eps } = spec;
  return gpt({ layers, heads, dim, seq, vocab, ...(eps !== undefined && { eps }), outputLogits, stages, tp }, cfg);
}

/**
 * Compiles the run's model for its devices and optimizer: `--pp` stages of the built-in model
 * (split over `--tp` devices each), and the core makes `devices / (stages x tp)` replicas.
 *
 * @example
 * const trainer = await compileRun(spec);
 */
export async function compileRun(spec: RunSpec): Promise<weft.Trainer> {
  const model = buildModel(spec.model, spec.config, false, spec.layout.pp, spec.layout.tp);
  const cluster = spec.cluster === undefined ? {} : { cluster: spec.cluster };
  return weft.compile(model, { batch: spec.batch, devices: spec.devices, optimizer: spec.optimizer, seed: spec.seed, ...cluster });
}

/**
 * The devices whose predicted peak exceeds `limit` bytes, as readable lines (empty: it fits).
 *
 * @example
 * for (const line of overLimit(trainer.plan.json, 2 ** 30)) console.error(line);
 */
export function overLimit(planJson: weft.PlanJson, limit: number): string[] {
  const out: string[] = [];
  for (const [device, m] of Object.entries(planJson.memory)) {
    if (m.total > limit) {
      out.push(`${device}: predicted peak ${formatBytes(m.total)} exceeds --memory-limit ${formatBytes(limit)}`);
    }
  }
  return out;
}

/** `162.7 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) [v, u] = [v / 1024, u + 1];
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}
