/**
 * Hand-written argument parser over the flag table: `--flag value`, `--flag=value`, repeatable
 * flags, typed values, and errors that name the flag, the expected form and the nearest flag.
 */
import { UsageError } from './cli-error.js';
import { COMMAND_FLAGS, expectedForm, findFlag, type FlagSpec, POSITIONAL_COMMANDS } from './flags.js';

export { UsageError };

/** A parsed flag value. */
export type FlagValue = boolean | string | number | number[] | string[];

/** A parsed command line. */
export interface ParsedArgs {
  readonly command: string;
  readonly flags: ReadonlyMap<string, FlagValue>;
  /** Arguments after a bare `--`. */
  readonly rest: readonly string[];
  /** Non-flag arguments, for the commands in POSITIONAL_COMMANDS. */
  readonly positional?: readonly string[];
}

/**
 * Parses the arguments of one subcommand against its flag table.
 *
 * @example
 * parseArgs('train', ['--model', 'mlp', '--steps=5', '--json']).flags.get('steps') // 5
 */
export function parseArgs(command: string, argv: readonly string[]): ParsedArgs {
  const specs = COMMAND_FLAGS[command] ?? [];
  const flags = new Map<string, FlagValue>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') return { command, flags, rest: argv.slice(i + 1), positional };
    if (!arg.startsWith('--') && POSITIONAL_COMMANDS.has(command)) {
      positional.push(arg);
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument '${arg}' for 'weft ${command}'`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const spec = lookup(command, specs, name);
    let raw: string | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    if (spec.kind !== 'bool' && raw === undefined) {
      raw = argv[++i];
      if (raw === undefined) throw new UsageError(`--${name} needs a value: ${expectedForm(spec)}`);
    }
    store(flags, spec, parseValue(spec, raw));
  }
  return { command, flags, rest: [], positional };
}

function store(flags: Map<string, FlagValue>, spec: FlagSpec, value: FlagValue): void {
  if (spec.repeatable) {
    const prev = (flags.get(spec.name) as string[] | undefined) ?? [];
    flags.set(spec.name, [...prev, value as string]);
  } else if (flags.has(spec.name)) {
    throw new UsageError(`--${spec.name} given twice`);
  } else {
    flags.set(spec.name, value);
  }
}

function lookup(command: string, specs: readonly FlagSpec[], name: string): FlagSpec {
  const spec = specs.find((f) => f.name === name);
  if (spec) return spec;
  if (findFlag(name)) {
    throw new UsageError(`--${name} is not a flag of 'weft ${command}' (see 'weft ${command} --help')`);
  }
  const near = nearest(name, specs.map((f) => f.name));
  const hint = near ? `; did you mean --${near}?` : ` (see 'weft ${command} --help')`;
  throw new UsageError(`unknown flag --${name}${hint}`);
}

/** Reads one flag value, or throws a UsageError naming the flag and the expected form. */
export function parseValue(spec: FlagSpec, raw: string | undefined): FlagValue {
  const bad = (): never => {
    throw new UsageError(`--${spec.name}: expected ${expectedForm(spec)}, got '${raw ?? ''}'`);
  };
  switch (spec.kind) {
    case 'bool':
      if (raw === undefined || raw === 'true') return true;
      if (raw === 'false') return false;
      return bad();
    case 'int':
      return checkMin(spec, /^-?\d+$/.test(raw ?? '') ? Number(raw) : bad(), bad);
    case 'number': {
      const n = raw !== undefined && raw.trim() !== '' ? Number(raw) : NaN;
      return checkMin(spec, Number.isFinite(n) ? n : bad(), bad);
    }
    case 'size':
      return parseSize(raw ?? '') ?? bad();
    case 'list':
      return parseList(raw ?? '') ?? bad();
    case 'choice':
      return spec.choices?.includes(raw ?? '') ? (raw as string) : bad();
    default:
      return raw === undefined || raw === '' ? bad() : raw;
  }
}

function checkMin(spec: FlagSpec, n: number, bad: () => never): number {
  if (spec.min === undefined) return n;
  if (n < spec.min || (spec.minExclusive && n === spec.min)) bad();
  return n;
}

const UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

/**
 * Parses a byte size such as `512MiB`, `4GB`, `1.5g` or `1e9`; undefined when malformed.
 *
 * @example
 * parseSize('2GiB') // 2147483648
 */
export function parseSize(raw: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-z]*)$/i.exec(raw.trim());
  if (!m) return undefined;
  const unit = UNITS[(m[2] ?? '').toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * unit);
  return bytes > 0 ? bytes : undefined;
}

function parseList(raw: string): number[] | undefined {
  const parts = raw.split(',').map((s) => s.trim());
  if (parts.length < 2 || parts.some((p) => !/^\d+$/.test(p) || Number(p) < 1)) return undefined;
  return parts.map(Number);
}

/**
 * The candidate closest to `word` by edit distance, if it is close enough to be a likely typo.
 *
 * @example
 * nearest('stpes', ['steps', 'seed']) // 'steps'
 */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = c.startsWith(word) && word.length >= 2 ? 1 : editDistance(word, c);
    if (d < bestDist) [best, bestDist] = [c, d];
  }
  return bestDist <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

/** Optimal-string-alignment distance (Levenshtein with adjacent transpositions). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) (d[0] as number[])[j] = j;
  for (let i = 1; i <= a.length; i++) {
    const row = d[i] as number[];
    const prev = d[i - 1] as number[];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j] as number, ((d[i - 2] as number[])[j - 2] as number) + 1);
      }
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}
