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
 * `n` CUDA GPUs. Compiling for them first checks the GPUs and the CUDA libraries (driver
 * `libcuda.so`, `libnvrtc`, `libcublas`, and `libnccl.so.2` for n > 1): a machine without them
 * rejects with a `WeftDeviceError` naming each missing one. Training sessions themselves still
 * run on the CPU backend only, so with the libraries present the error says CUDA training is
 * not wired yet.
 *
 * @example
 * await weft.compile(model, { batch: 8, devices: weft.cuda(1) }); // WeftDeviceError, see above
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
