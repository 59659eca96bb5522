#!/usr/bin/env node
/**
 * The `weft` command: `train`, `plan`, `sample`, `demo`, `launch`, `data prepare`, `help`, `--version`.
 * Errors print as `error: <message>`; exit code 2 for usage errors, 1 for failed runs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as weft from '../index.js';
import { nearest, parseArgs } from './args.js';
import { CliError, UsageError } from './cli-error.js';
import { dataCommand } from './data.js';
import { demoCommand } from './demo.js';
import { commandHelp, mainHelp } from './help.js';
import { launchCommand } from './launch.js';
import { planCommand } from './plan.js';
import { sampleCommand } from './sample.js';
import { brokenPipe } from './signals.js';
import { type Io, trainCommand } from './train.js';

type Command = (args: ReturnType<typeof parseArgs>, io: Io) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  train: trainCommand,
  plan: planCommand,
  sample: sampleCommand,
  demo: demoCommand,
  launch: launchCommand,
  data: dataCommand,
};

/**
 * Runs the CLI on `argv` (without `node` and the script); resolves to the exit code.
 *
 * @example
 * process.exitCode = await main(['train', '--model', 'mlp', '--steps', '5'], { out: process.stdout, err: process.stderr });
 */
export async function main(argv: readonly string[], io: Io): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (e) {
    return report(e, io);
  }
}

async function dispatch(argv: readonly string[], io: Io): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) {
    io.err.write(`${mainHelp()}\n`);
    return 2;
  }
  if (command === '--help' || command === '-h' || command === 'help') {
    io.out.write(`${rest[0] && isCommand(rest[0]) ? commandHelp(rest[0]) : mainHelp()}\n`);
    return 0;
  }
  if (command === '--version' || command === '-V') {
    io.out.write(`weft ${version()}\n`);
    return 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    const near = nearest(command, [...Object.keys(COMMANDS), 'help']);
    throw new UsageError(`unknown command '${command}'${near ? `; did you mean '${near}'?` : ''} (see 'weft --help')`);
  }
  // After `--` the flags belong to the command `weft launch` starts.
  const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (own.includes('--help') || own.includes('-h')) {
    io.out.write(`${commandHelp(command)}\n`);
    return 0;
  }
  return run(parseArgs(command, rest), io);
}

function isCommand(name: string): boolean {
  return name in COMMANDS;
}

function report(e: unknown, io: Io): number {
  if (e instanceof CliError) {
    if (e.message) io.err.write(`error: ${e.message}\n`);
    return e.exitCode;
  }
  if (e instanceof weft.WeftError) {
    io.err.write(`error: ${e.message}\n`);
    return e.code === 'WEFT_CONFIG' ? 2 : 1;
  }
  io.err.write(`error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  return 1;
}

/** The package version from package.json (two levels above dist/cli and ts/cli). */
function version(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

if (require.main === module) {
  // `weft ... | head` closes the pipe early: a training run stops after its step and saves
  // (exit 141); other commands stop quietly instead of crashing on EPIPE.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE' && e.code !== 'ERR_STREAM_DESTROYED') throw e;
    if (!brokenPipe()) process.exit(0);
  });
  void main(process.argv.slice(2), { out: process.stdout, err: process.stderr }).then((code) => {
    process.exitCode = code;
  });
}
