/**
 * Cluster planning from shapes alone: `weft.plan(model, { cluster: '128x8:h100', ... })`
 * predicts per-device memory, step time and throughput of a layout on a cluster weft cannot
 * create; nothing is allocated. The core (`crates/core/src/cluster`) does all of it.
 */
import { readFileSync } from 'node:fs';
import { WeftIoError } from './errors.js';
import { call, native } from './native.js';
import type { ClusterLayout, ClusterPlanJson } from './reports.js';

/** A model by its sizes: the built-in GPT or MLP. */
export type ModelShape =
  | { readonly kind: 'gpt'; readonly layers: number; readonly heads: number; readonly dim: number; readonly seq: number; readonly vocab: number }
  | { readonly kind: 'mlp'; readonly sizes: readonly number[] };

/** Where and how to plan. */
export interface ClusterPlanOptions extends ClusterLayout {
  /** `NODESxGPUS:KIND`, e.g. `384x8:a100-80g`. */
  readonly cluster: string;
  /** A JSON file of hardware overrides (same form as the built-in table). */
  readonly hardware?: string;
}

/**
 * Plans `model` on `options.cluster`.
 *
 * @example
 * const p = weft.plan({ kind: 'gpt', layers: 96, heads: 96, dim: 12288, seq: 2048, vocab: 51200 },
 *   { cluster: '128x8:h100', tp: 8, pp: 8, global_batch: 1536, recompute: true });
 * p.fits; p.step_s; p.mfu;
 */
export function plan(model: ModelShape, options: ClusterPlanOptions): ClusterPlanJson {
  const { cluster, hardware, ...layout } = options;
  const overrides = hardware === undefined ? undefined : readHardware(hardware);
  const text = call(() => native().planCluster(JSON.stringify(model), cluster, JSON.stringify(layout), overrides, hardware));
  return JSON.parse(text) as ClusterPlanJson;
}

function readHardware(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new WeftIoError(`hardware file ${file}: ${(e as Error).message}`, { cause: e });
  }
}
