/**
 * Device sets: `weft.cpu(4)` is four CPU virtual devices (threads), `weft.cuda(2)` two GPUs.
 */
import { WeftConfigError } from './errors.js';

/** A set of devices of one kind. */
export interface Devices {
  readonly kind: 'cpu' | 'cuda';
  readonly count: number;
  /** `cpu:4`, the form the CLI's `--devices` takes. */
  toString(): string;
}

function devices(kind: 'cpu' | 'cuda', count: number): Devices {
  if (!Number.isInteger(count) || count < 1) {
    throw new WeftConfigError(`devices: ${kind} device count must be a positive integer, got ${count}`);
  }
  return Object.freeze({ kind, count, toString: () => `${kind}:${count}` });
}

/** Most CPU virtual devices one process runs. */
export const MAX_CPU_DEVICES = 16;

/**
 * `n` CPU virtual devices (threads in this process), 1 <= n <= 16. A model with S pipeline
 * stages runs n / S data-parallel replicas of the pipeline (n must be a multiple of S).
 *
 * @example
 * await weft.compile(model, { batch: 8, devices: weft.cpu(4) }); // 2 stages x 2 replicas
 */
export function cpu(n = 1): Devices {
  const d = devices('cpu', n);
  if (n > MAX_CPU_DEVICES) {
    throw new WeftConfigError(`devices: at most ${MAX_CPU_DEVICES} CPU virtual devices, got cpu(${n})`);
  }
  return d;
}

/**
 * `n` CUDA GPUs. This build has no CUDA backend compiled in, so compiling for them rejects
 * with a `WeftDeviceError`.
 *
 * @example
 * await weft.compile(model, { batch: 8, devices: weft.cuda(1) }); // WeftDeviceError in CPU builds
 */
export function cuda(n = 1): Devices {
  return devices('cuda', n);
}

/**
 * Parses `cpu:N` / `cuda:N` (a bare `cpu` is one device).
 *
 * @example
 * weft.parseDevices('cpu:4').count // 4
 */
export function parseDevices(text: string): Devices {
  const m = /^(cpu|cuda)(?::(\d+))?$/.exec(text.trim());
  if (m === null) throw new WeftConfigError(`devices: '${text}' is not of the form cpu:N or cuda:N`);
  const n = m[2] === undefined ? 1 : Number(m[2]);
  return m[1] === 'cpu' ? cpu(n) : cuda(n);
}
