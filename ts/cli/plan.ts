/**
 * `weft plan`: compile the run described by the train flags and print its plan (TaskGraphs,
 * device slices, schedule, memory estimate) without running a step.
 */
import type { ParsedArgs } from './args.js';
import { CliError } from './cli-error.js';
import { Flags, runSpec } from './run-spec.js';
import { compileRun, formatBytes, overLimit } from './session.js';
import type { Io } from './train.js';

/**
 * Runs `weft plan`; resolves to the exit code (1 when `--memory-limit` is exceeded).
 *
 * @example
 * await planCommand(parseArgs('plan', ['--model', 'mlp', '--json']), { out: process.stdout, err: process.stderr });
 */
export async function planCommand(args: ParsedArgs, io: Io): Promise<number> {
  const spec = runSpec(new Flags(args));
  const trainer = await compileRun(spec);
  const plan = trainer.plan;
  if (spec.json) {
    io.out.write(`${JSON.stringify(plan.json)}\n`);
  } else {
    io.out.write(`${plan.toString()}\n`);
    io.out.write(estimateLine(plan.json));
  }
  const over = spec.memoryLimit === undefined ? [] : overLimit(plan.json, spec.memoryLimit);
  if (over.length > 0) throw new CliError(over.join('\n'));
  return 0;
}

/** `memory estimate: 162.7 MiB peak per device (cpu:0)`. */
function estimateLine(json: Readonly<Record<string, unknown>>): string {
  const memory = (json['memory'] ?? {}) as Record<string, { total?: number }>;
  const peaks = Object.entries(memory).map(([d, m]) => `${d} ${formatBytes(m.total ?? 0)}`);
  return `memory estimate (peak per device): ${peaks.join(', ')}\n`;
}
