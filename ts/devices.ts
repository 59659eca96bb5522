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

/**
 * `n` CPU virtual devices (threads in this process).
 *
 * @example
 * await weft.compile(model, { batch: 8, devices: weft.cpu(1) });
 */
export function cpu(n = 1): Devices {
  return devices('cpu', n);
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
  return devices(m[1] as 'cpu' | 'cuda', m[2] === undefined ? 1 : Number(m[2]));
}
