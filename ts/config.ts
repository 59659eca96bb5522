/**
 * `weft.config()`: EPL's configuration keys (dotted snake_case, e.g. `pipeline.num_micro_batch`),
 * given as nested camelCase objects or flat dotted keys, merged over `WEFT_<SECTION>_<KEY>`
 * environment variables (explicit values win), validated by the core's key table.
 */
import type { ConfigKeyTypes, ConfigList } from './config-keys.js';
import { WeftConfigError } from './errors.js';
import { call, native } from './native.js';

export type { ConfigKeyTypes, ConfigList } from './config-keys.js';

/** A config value: what the key table's types hold. */
export type ConfigValue = boolean | number | string | ConfigList;

/** Every config key, dotted snake_case (`pipeline.num_micro_batch`). */
export type ConfigKey = keyof ConfigKeyTypes;

/** Every key with its value, as {@link Config.values} holds them. */
export type ConfigValues = { readonly [K in ConfigKey]: ConfigKeyTypes[K] };

/** `num_micro_batch` -> `numMicroBatch`. */
type CamelCase<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S;
type SectionOf<K extends string> = K extends `${infer S}.${string}` ? S : never;
type AttributeOf<K extends string> = K extends `${string}.${infer A}` ? A : never;

/** A key as a user may spell it: dotted snake_case, or with camelCase parts. */
export type ConfigKeyName<K extends ConfigKey = ConfigKey> = K extends ConfigKey
  ? K | `${CamelCase<SectionOf<K>>}.${CamelCase<AttributeOf<K>>}`
  : never;

/** Flat keys: `{ 'pipeline.num_micro_batch': 4 }` or `{ 'pipeline.numMicroBatch': 4 }`. */
type FlatConfigInput = { readonly [K in ConfigKey as ConfigKeyName<K>]?: ConfigKeyTypes[K] };

/** Nested sections: `{ pipeline: { numMicroBatch: 4 } }`, snake_case or camelCase. */
type NestedConfigInput = {
  readonly [S in SectionOf<ConfigKey> as S | CamelCase<S>]?: {
    readonly [K in ConfigKey as K extends `${S}.${infer A}` ? A | CamelCase<A> : never]?: ConfigKeyTypes[K];
  };
};

/**
 * A nested or flat config object as a user writes it, typed from the core's key table
 * (`ts/config-keys.ts` is generated from it), so a misspelt key or a wrong value type is a
 * compile error; the core checks the same at run time for untyped callers.
 */
export type ConfigInput = FlatConfigInput & NestedConfigInput;

/** One config key's description, from the core's key table. */
export interface ConfigKeyInfo {
  /** Dotted snake_case, e.g. `pipeline.num_micro_batch`. */
  readonly key: string;
  readonly section: string;
  readonly attribute: string;
  /** `bool`, `int`, `string` or `'dynamic' or number`. */
  readonly type: string;
  /** The allowed values of a closed string key; empty when any value of the type is accepted. */
  readonly allowed: readonly string[];
  readonly min: number | undefined;
  readonly default: ConfigValue;
  /** The environment variable that sets it, e.g. `WEFT_PIPELINE_NUM_MICRO_BATCH`. */
  readonly env: string;
  readonly doc: string;
  /** Why a non-default value cannot run in this build; undefined when it can. */
  readonly unsupported: string | undefined;
  readonly origin: 'epl' | 'weft';
}

interface Resolved {
  values: Record<string, ConfigValue>;
  changed: Record<string, ConfigValue>;
}

/** A validated, frozen configuration. */
export class Config {
  /** Every key with its value (flat, dotted snake_case). */
  readonly values: ConfigValues;
  /** The keys whose value differs from the default (explicit or from the environment). */
  readonly changed: Readonly<Record<string, ConfigValue>>;

  /** @internal Use {@link config}. */
  constructor(resolved: Resolved) {
    this.values = Object.freeze({ ...resolved.values }) as ConfigValues;
    this.changed = Object.freeze({ ...resolved.changed });
    Object.freeze(this);
  }

  /**
   * One key's value; the key may be dotted snake_case or camelCase.
   *
   * @example
   * weft.config({ pipeline: { numMicroBatch: 4 } }).get('pipeline.num_micro_batch') // 4
   */
  get<K extends ConfigKey>(key: K): ConfigKeyTypes[K];
  get(key: ConfigKeyName): ConfigValue;
  get(key: string): ConfigValue {
    const flat = normaliseKey(key);
    const value = (this.values as Readonly<Record<string, ConfigValue>>)[flat];
    if (value === undefined) {
      // Let the core produce its "did you mean" message.
      call(() => native().resolveConfig(JSON.stringify({ [flat]: null }), {}));
      throw new WeftConfigError(`config key '${key}': unknown config key`);
    }
    return value;
  }

  /**
   * A new config with `overrides` applied on top of this one's explicit values.
   *
   * @example
   * const base = weft.config({ pipeline: { numMicroBatch: 4 } });
   * const more = base.with({ 'pipeline.num_micro_batch': 8 });
   */
  with(overrides: ConfigInput): Config {
    const flat = Object.entries(flatten(overrides)).map(([k, v]) => [normaliseKey(k), v] as const);
    return resolve({ ...this.changed, ...Object.fromEntries(flat) });
  }

  /**
   * The changed keys as `key=value` lines (sorted), the form `--set` reads.
   *
   * @example
   * String(weft.config({ zero: { level: 'v1' } })) // "zero.level=v1"
   */
  toString(): string {
    return Object.entries(this.changed)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${String(v)}`)
      .join('\n');
  }

  /**
   * The flat object of every key.
   *
   * @example
   * JSON.stringify(weft.config()) // {"amp.dtype":...,"pipeline.num_micro_batch":1,...}
   */
  toJSON(): ConfigValues {
    return { ...this.values };
  }
}

/** `numMicroBatch` -> `num_micro_batch` for each dotted part. */
function normaliseKey(key: string): string {
  return key
    .split('.')
    .map((part) => part.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase())
    .join('.');
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Nested objects -> flat dotted keys, spelled as written (the core normalises camelCase and
 * reports unknown or repeated keys in the user's spelling).
 */
function flatten(input: unknown, prefix = ''): Record<string, unknown> {
  if (!isPlainObject(input)) {
    throw new WeftConfigError(`config must be an object of keys, got ${JSON.stringify(input)}`);
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(input)) {
    const key = prefix === '' ? k : `${prefix}.${k}`;
    if (isPlainObject(v)) Object.assign(out, flatten(v, key));
    else out[key] = v;
  }
  return out;
}

/**
 * The environment variables; the core decides which are config (`WEFT_<SECTION>_<KEY>`, EPL's
 * `EPL_<SECTION>_<KEY>` aliases) and refuses unknown `WEFT_*` names.
 */
function weftEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined) env[k] = v;
  }
  return env;
}

function resolve(flat: Record<string, unknown>): Config {
  const text = call(() => native().resolveConfig(JSON.stringify(flat), weftEnv()));
  return new Config(JSON.parse(text) as Resolved);
}

/**
 * Builds a validated, frozen {@link Config}. Keys may be nested camelCase or flat dotted
 * snake_case; `WEFT_<SECTION>_<KEY>` environment variables fill keys not given explicitly.
 * Unknown keys and wrong types throw a {@link WeftConfigError} that names the key, the expected
 * type, and the nearest valid key.
 *
 * @example
 * const cfg = weft.config({ pipeline: { numMicroBatch: 4 }, 'communication.fp16': true });
 * cfg.get('pipeline.num_micro_batch'); // 4
 */
export function config(input: ConfigInput = {}): Config {
  return resolve(flatten(input));
}

/**
 * One key's value parsed from text by the key's type, as an environment variable is read
 * (`weft plan --set key=value`): `'1'` is a string for a string key, a number for an int key.
 * Throws a {@link WeftConfigError} naming the key for an unknown key or a bad value.
 *
 * @example
 * weft.configValueFromText('cluster.run_visible_devices', '1') // '1'
 */
export function configValueFromText(key: string, text: string): ConfigValue {
  return JSON.parse(call(() => native().configValueFromText(key, text))) as ConfigValue;
}

/**
 * Every config key with its type, default, environment variable and documentation.
 *
 * @example
 * for (const k of weft.configKeys()) console.log(k.key, k.type, k.default);
 */
export function configKeys(): readonly ConfigKeyInfo[] {
  return call(() => native().configKeys()).map((k) =>
    Object.freeze({
      key: k.key,
      section: k.section,
      attribute: k.attribute,
      type: k.valueType,
      allowed: Object.freeze([...k.allowed]),
      min: k.min ?? undefined,
      default: JSON.parse(k.defaultJson) as ConfigValue,
      env: k.env,
      doc: k.doc,
      unsupported: k.unsupported ?? undefined,
      origin: k.origin === 'weft' ? 'weft' : 'epl',
    }),
  );
}
