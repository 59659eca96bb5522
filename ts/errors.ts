/**
 * Typed errors. Every error weft throws is a {@link WeftError} whose `code` is the stable code
 * of the Rust core (`WEFT_SHAPE`, `WEFT_CONFIG`, ...); each code has its own subclass so callers
 * can `instanceof` or switch on `code`.
 */

/** The stable error codes. The first twelve mirror `weft_core::Error::code()`. */
export type WeftErrorCode =
  | 'WEFT_SHAPE'
  | 'WEFT_DTYPE'
  | 'WEFT_VERIFY'
  | 'WEFT_CONFIG'
  | 'WEFT_UNSUPPORTED'
  | 'WEFT_COLLECTIVE'
  | 'WEFT_BATCH'
  | 'WEFT_CHECKPOINT'
  | 'WEFT_DATA'
  | 'WEFT_NON_FINITE'
  | 'WEFT_IO'
  | 'WEFT_DEVICE'
  | 'WEFT_RESOURCE'
  | 'WEFT_INTERNAL'
  | 'WEFT_NATIVE';

/**
 * The base class of all weft errors.
 *
 * @example
 * try { await trainer.step(batch); } catch (e) { if (e instanceof WeftError) console.error(e.code, e.message); }
 */
export class WeftError extends Error {
  readonly code: WeftErrorCode;

  constructor(code: WeftErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** An op's shape rule was violated (the message names the op and the shapes). */
export class WeftShapeError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_SHAPE', message, options);
  }
}

/** A wrong dtype for an op input, a batch tensor or a file. */
export class WeftDTypeError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_DTYPE', message, options);
  }
}

/** A graph invariant broke (a weft bug or hand-built bad IR). */
export class WeftVerifyError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_VERIFY', message, options);
  }
}

/** A config key is unknown, ill-typed or has an invalid value (the message suggests the nearest key). */
export class WeftConfigError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_CONFIG', message, options);
  }
}

/** A feature that is recognised but not implemented yet: never silently ignored. */
export class WeftUnsupportedError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_UNSUPPORTED', message, options);
  }
}

/** A collective or transfer between devices failed (a timeout names the ranks that did not arrive). */
export class WeftCollectiveError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_COLLECTIVE', message, options);
  }
}

/** A batch that does not fit the compiled model (missing input, wrong length, indivisible batch). */
export class WeftBatchError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_BATCH', message, options);
  }
}

/** A checkpoint or safetensors file is malformed or does not match the model. */
export class WeftCheckpointError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_CHECKPOINT', message, options);
  }
}

/** A token data file is malformed or too short. */
export class WeftDataError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_DATA', message, options);
  }
}

/** Training diverged: the loss became NaN or infinite. */
export class WeftNonFiniteError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_NON_FINITE', message, options);
  }
}

/** Operating-system I/O failed. */
export class WeftIoError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_IO', message, options);
  }
}

/** A device or backend could not be used (e.g. CUDA libraries missing: each is named). */
export class WeftDeviceError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_DEVICE', message, options);
  }
}

/** A size the user chose needs more than weft or the host can give; names quantity, size, limit. */
export class WeftResourceError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_RESOURCE', message, options);
  }
}

/** An internal invariant broke or Rust panicked: a bug in weft, please report it. */
export class WeftInternalError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_INTERNAL', message, options);
  }
}

/** The native addon could not be loaded (not built, or built for another platform). */
export class WeftNativeError extends WeftError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEFT_NATIVE', message, options);
  }
}

type ErrorClass = new (message: string, options?: { cause?: unknown }) => WeftError;

const CLASSES: Readonly<Record<WeftErrorCode, ErrorClass>> = {
  WEFT_SHAPE: WeftShapeError,
  WEFT_DTYPE: WeftDTypeError,
  WEFT_VERIFY: WeftVerifyError,
  WEFT_CONFIG: WeftConfigError,
  WEFT_UNSUPPORTED: WeftUnsupportedError,
  WEFT_COLLECTIVE: WeftCollectiveError,
  WEFT_BATCH: WeftBatchError,
  WEFT_CHECKPOINT: WeftCheckpointError,
  WEFT_DATA: WeftDataError,
  WEFT_NON_FINITE: WeftNonFiniteError,
  WEFT_IO: WeftIoError,
  WEFT_DEVICE: WeftDeviceError,
  WEFT_RESOURCE: WeftResourceError,
  WEFT_INTERNAL: WeftInternalError,
  WEFT_NATIVE: WeftNativeError,
};

function isCode(code: unknown): code is WeftErrorCode {
  return typeof code === 'string' && Object.hasOwn(CLASSES, code);
}

/**
 * Converts an error thrown by the native addon into the typed class of its `code`. Errors that
 * are already weft errors pass through; anything else (a napi argument error) becomes a
 * {@link WeftInternalError} that keeps the original as `cause`.
 *
 * @example
 * try { native.op('add', [a, b], '{}'); } catch (e) { throw fromNative(e); }
 */
export function fromNative(err: unknown): WeftError {
  if (err instanceof WeftError) return err;
  if (err instanceof Error) {
    const code: unknown = (err as Error & { code?: unknown }).code;
    if (isCode(code)) return new CLASSES[code](err.message, { cause: err });
    return new WeftInternalError(`native call failed: ${err.message}`, { cause: err });
  }
  return new WeftInternalError(`native call failed: ${String(err)}`, { cause: err });
}
