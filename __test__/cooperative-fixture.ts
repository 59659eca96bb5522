// The runs the cooperative spec compares: the MLP on two devices, data-parallel and in two
// pipeline stages under both schedules. Shared by the spec and by the child process that gives
// the native addon's losses when the spec runs on the WASM build.
import * as weft from '../ts/index.js';
import { mlp } from '../ts/models/mlp.js';

export const STEPS = 4;

interface Layout {
  readonly stages: number;
  readonly microBatches: number;
  readonly strategy: 'PreferBackward' | 'PreferForward';
}

export const LAYOUTS: Readonly<Record<string, Layout>> = {
  dp2: { stages: 1, microBatches: 1, strategy: 'PreferBackward' },
  'pp2 1f1b m4': { stages: 2, microBatches: 4, strategy: 'PreferBackward' },
  'pp2 gpipe m4': { stages: 2, microBatches: 4, strategy: 'PreferForward' },
};

/** The target the binding was loaded for: `wasm32-wasip1` on the WASM build. */
export function bindingTarget(): string {
  return (require('../bindings/index.js') as { __napiBindingTarget?: string }).__napiBindingTarget ?? 'unknown';
}

/** A fixed learnable batch of 8 rows for the 4 -> 16 -> 16 -> 3 MLP. */
function batch(): { x: Float32Array; y: Int32Array } {
  const x = Float32Array.from({ length: 8 * 4 }, (_, i) => Math.sin(1 + i * 1.3));
  const y = Int32Array.from({ length: 8 }, (_, r) => r % 3);
  return { x, y };
}

/** The losses of STEPS Adam steps of one layout on two CPU devices, and the trainer's plan. */
export async function train(name: string, cooperative: boolean): Promise<{ losses: number[]; plan: string }> {
  const l = LAYOUTS[name];
  if (l === undefined) throw new Error(`no layout ${name}`);
  const cfg = weft.config({
    pipeline: { numMicroBatch: l.microBatches, strategy: l.strategy },
    executor: { cooperative },
  });
  const trainer = await weft.compile(mlp({ sizes: [4, 16, 16, 3], stages: l.stages }, cfg), {
    batch: 8, seed: 7, devices: weft.cpu(2), optimizer: weft.optim.adam({ lr: 0.02 }),
  });
  const losses: number[] = [];
  for (let s = 0; s < STEPS; s++) losses.push((await trainer.step(batch())).loss);
  return { losses, plan: String(trainer.plan) };
}
