/**
 * The only module that touches the native addon. `bindings/index.js` (napi-rs's generated loader)
 * picks the prebuilt package for the running platform (`weft-ml-linux-x64-gnu`, ...) and, where
 * there is none, the WASM package (`weft-ml-wasm32-wasip1`). It is loaded lazily, so
 * `import 'weft-ml'` never fails, and every error the addon throws or rejects with becomes a
 * typed {@link WeftError}.
 */
import type * as Binding from '../bindings/index.js';
import { WeftNativeError, fromNative } from './errors.js';

/** The addon's exports, as the generated `index.d.ts` types them. */
export type NativeBinding = typeof Binding;
export type NativeModel = Binding.NativeModel;
export type NativeTrainer = Binding.NativeTrainer;
export type NativeDecoder = Binding.NativeDecoder;
export type TensorInfo = Binding.TensorInfo;

/** The npm package of the WASM build, the fallback on every platform without a native one. */
export const WASM_PACKAGE = 'weft-ml-wasm32-wasip1';

/** Which build of the engine runs, and on what. */
export interface RuntimeInfo {
  /** `native` (threads; CUDA where the package has it) or the WASM target (one thread). */
  readonly binding: 'native' | 'wasm32-wasip1';
  /** The running platform as napi-rs names its packages, e.g. `linux-x64-gnu`, `darwin-arm64`. */
  readonly platform: string;
}

let loaded: NativeBinding | undefined;

/** The addon, loaded on first use. */
export function native(): NativeBinding {
  if (loaded === undefined) {
    try {
      loaded = require('../bindings/index.js') as NativeBinding;
    } catch (err) {
      throw new WeftNativeError(loadFailure(err), { cause: err });
    }
    if (runtime().binding !== 'native' && process.env.NAPI_RS_FORCE_WASI === undefined) {
      process.emitWarning(
        `weft-ml: no native package for ${platform()}; using the WASM build (${WASM_PACKAGE}: one thread, no CUDA)`,
      );
    }
  }
  return loaded;
}

/** The build that {@link native} loaded (it loads it if needed). */
export function runtime(): RuntimeInfo {
  const target = native().__napiBindingTarget;
  return Object.freeze({ binding: target === 'native' ? 'native' : 'wasm32-wasip1', platform: platform() });
}

/** `linux-x64-gnu`, `linux-arm64-musl`, `darwin-arm64`, `win32-x64`: napi-rs's package suffixes. */
function platform(): string {
  const base = `${process.platform}-${process.arch}`;
  if (process.platform !== 'linux') return base;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return `${base}-${header?.glibcVersionRuntime === undefined ? 'musl' : 'gnu'}`;
}

/** The load error a consumer sees: the platform, every candidate tried and why it failed. */
function loadFailure(err: unknown): string {
  // The loader chains its candidates' errors through `cause`, the last tried first.
  const tried: string[] = [];
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e !== err) tried.unshift(`  - ${e.message.split('\n')[0]}`);
  }
  return [
    `weft-ml: no build of the engine loads on ${platform()} (Node ${process.version}).`,
    `Tried the native package weft-ml-${platform()}, then the WASM package ${WASM_PACKAGE}:`,
    ...(tried.length > 0 ? tried : [`  - ${err instanceof Error ? err.message : String(err)}`]),
    `Install the WASM build, which runs everywhere (one thread): npm install ${WASM_PACKAGE}`,
    `(in a clone of the repository: npm run build:native, or npm run build:wasm).`,
  ].join('\n');
}

/** Runs a synchronous native call, rethrowing its error as a typed weft error. */
export function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw fromNative(err);
  }
}

/** Awaits an asynchronous native call, rejecting with a typed weft error. */
export async function callAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw fromNative(err);
  }
}
