/**
 * `weft launch`: start `--nproc-per-node` copies of a command on this node with torchrun's
 * environment contract (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
 * MASTER_PORT) plus a store token (WEFT_STORE_TOKEN) and WEFT_LAUNCH=1; prefix their output
 * with their rank, forward SIGINT/SIGTERM, and when one dies, stop the others and exit non-zero
 * naming it. Each child also gets one end of a pipe as fd 3 (WEFT_LAUNCHER_FD): the kernel closes
 * the launcher's end however it ends (`kill -9` too), and the child's weft then exits, so no
 * rank outlives its launcher.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import type { ParsedArgs } from './args.js';
import { UsageError } from './cli-error.js';
import type { Out } from './report.js';
import type { Io } from './train.js';

/** What `weft launch` was asked to do. */
export interface LaunchSpec {
  readonly nprocPerNode: number;
  readonly nnodes: number;
  readonly nodeRank: number;
  readonly masterAddr: string;
  /** undefined: pick a free port (one node only). */
  readonly masterPort: number | undefined;
  /** Seconds the others get to exit by themselves after one rank died, before SIGTERM. */
  readonly graceS: number;
  readonly prefix: boolean;
  readonly command: readonly string[];
}

/**
 * Reads `weft launch` flags; the command is everything after `--`.
 *
 * @example
 * launchSpec(parseArgs('launch', ['--nproc-per-node', '2', '--', 'weft', 'train'])).command // ['weft', 'train']
 */
export function launchSpec(args: ParsedArgs): LaunchSpec {
  const int = (name: string): number | undefined => args.flags.get(name) as number | undefined;
  const nprocPerNode = int('nproc-per-node');
  if (nprocPerNode === undefined) throw new UsageError('weft launch needs --nproc-per-node N (processes on this node)');
  if (args.rest.length === 0) throw new UsageError("weft launch needs a command after '--', e.g. weft launch --nproc-per-node 2 -- weft train --model mlp");
  const nnodes = int('nnodes') ?? 1;
  const nodeRank = int('node-rank') ?? 0;
  if (nodeRank >= nnodes) throw new UsageError(`--node-rank ${nodeRank} is not below --nnodes ${nnodes}`);
  const masterPort = int('master-port');
  if (masterPort !== undefined && masterPort > 65535) throw new UsageError(`--master-port ${masterPort} is not a port (1-65535)`);
  const masterAddr = (args.flags.get('master-addr') as string | undefined) ?? '127.0.0.1';
  if (nnodes > 1 && masterPort === undefined) throw new UsageError('--nnodes > 1 needs --master-port P (the same on every node), and --master-addr of node 0');
  return {
    nprocPerNode, nnodes, nodeRank, masterAddr, masterPort,
    graceS: (args.flags.get('grace-s') as number | undefined) ?? 5,
    prefix: !(args.flags.get('raw-output') as boolean | undefined),
    command: args.rest,
  };
}

/** Whether `port` can be bound on `host` right now. */
function canBind(host: string, port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, host, () => {
      const addr = server.address();
      const got = typeof addr === 'object' && addr ? addr.port : undefined;
      server.close(() => resolve(got));
    });
  });
}

/**
 * A free TCP port on `host` for the store, below Linux's ephemeral range (32768 and up): the
 * port is free again between this probe and rank 0 binding it, and an ephemeral port could be
 * handed to some other socket in that window; a port outside the range is not.
 *
 * @example
 * const port = await freePort('127.0.0.1');
 */
export async function freePort(host: string): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const got = await canBind(host, 20000 + crypto.randomInt(12768));
    if (got !== undefined) return got;
  }
  const any = await canBind(host, 0);
  if (any === undefined) throw new UsageError(`cannot find a free port on ${host} for the store; pass --master-port`);
  return any;
}

/** The child's descriptor of the pipe whose closing tells it the launcher is gone. */
const LAUNCHER_FD = 3;

/** The environment of global rank `rank`, local rank `local`. */
function childEnv(spec: LaunchSpec, local: number, port: number, token: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    RANK: String(spec.nodeRank * spec.nprocPerNode + local),
    WORLD_SIZE: String(spec.nnodes * spec.nprocPerNode),
    LOCAL_RANK: String(local),
    LOCAL_WORLD_SIZE: String(spec.nprocPerNode),
    GROUP_RANK: String(spec.nodeRank),
    MASTER_ADDR: spec.masterAddr,
    MASTER_PORT: String(port),
    WEFT_STORE_TOKEN: token,
    WEFT_LAUNCH: '1',
    WEFT_LAUNCHER_FD: String(LAUNCHER_FD),
  };
}

/** Copy `stream` to `out` line by line, each line prefixed. */
function pipeLines(stream: NodeJS.ReadableStream | null, out: Out, prefix: string): void {
  if (!stream) return;
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      out.write(`${prefix}${buf.slice(0, nl + 1)}`);
      buf = buf.slice(nl + 1);
    }
  });
  stream.on('end', () => {
    if (buf) out.write(`${prefix}${buf}\n`);
  });
}

/** How a rank ended: its exit code, or the signal that killed it. */
interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** One started rank. */
interface Rank {
  readonly rank: number;
  readonly child: ChildProcess;
  /** Resolves once, when it has exited (or could not start) and its output is drained. */
  readonly done: Promise<Exit>;
}

function startRank(spec: LaunchSpec, local: number, port: number, token: string, io: Io): Rank {
  const env = childEnv(spec, local, port, token);
  const rank = Number(env['RANK']);
  const [cmd, ...args] = spec.command as [string, ...string[]];
  const out = spec.prefix ? 'pipe' : 'inherit';
  // fd 3: the launcher never writes to it; the child sees end of file when the launcher is gone.
  const child = spawn(cmd, args, { env, stdio: ['inherit', out, out, 'pipe'] });
  child.stdio[LAUNCHER_FD]?.on('error', () => undefined);
  pipeLines(child.stdout, io.out, `[rank ${rank}] `);
  pipeLines(child.stderr, io.err, `[rank ${rank}] `);
  const done = new Promise<Exit>((resolve) => {
    // A command that cannot start emits 'error' (then 'close' with code -2): report it once, as
    // the shell's 127.
    child.once('error', (e) => {
      io.err.write(`weft launch: rank ${rank}: cannot start '${cmd}': ${e.message}\n`);
      resolve({ code: 127, signal: null });
    });
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  return { rank, child, done };
}

function describeExit(r: Rank, { code, signal }: Exit): string {
  const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
  return `rank ${r.rank} (pid ${r.child.pid ?? '?'}) ${how}`;
}

/**
 * Runs `weft launch`; resolves to the exit code: 0 when every rank exited 0, else the first
 * failed rank's code (1 when it was killed by a signal).
 */
export async function launchCommand(args: ParsedArgs, io: Io): Promise<number> {
  const spec = launchSpec(args);
  const port = spec.masterPort ?? (await freePort(spec.masterAddr));
  const given = process.env['WEFT_STORE_TOKEN'];
  if (spec.nnodes > 1 && !given) {
    throw new UsageError('--nnodes > 1: set WEFT_STORE_TOKEN to the same secret on every node (each node\'s launcher would otherwise invent its own)');
  }
  const token = given ?? crypto.randomBytes(16).toString('hex');
  const ranks = Array.from({ length: spec.nprocPerNode }, (_, local) => startRank(spec, local, port, token, io));
  const pids = ranks.map((r) => `${r.rank}:${r.child.pid ?? '?'}`).join(' ');
  io.err.write(`weft launch: ${ranks.length} processes (rank:pid ${pids}), store at ${spec.masterAddr}:${port}\n`);
  let interrupted: NodeJS.Signals | undefined;
  const forward = (signal: NodeJS.Signals): void => {
    interrupted = signal;
    for (const r of ranks) r.child.kill(signal);
  };
  const onInt = (): void => forward('SIGINT');
  const onTerm = (): void => forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    const code = await supervise(ranks, spec, io);
    if (interrupted === undefined) return code;
    // The user stopped the job: say so rather than blame the rank that died first of it.
    io.err.write(`weft launch: interrupted by ${interrupted}; forwarded to every rank\n`);
    return 128 + (interrupted === 'SIGINT' ? 2 : 15);
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}

/** Wait for every rank; on the first failure give the others `graceS`, then stop them. */
async function supervise(ranks: readonly Rank[], spec: LaunchSpec, io: Io): Promise<number> {
  let failed: { rank: Rank; exit: Exit; code: number } | undefined;
  const timers: NodeJS.Timeout[] = [];
  const watched = ranks.map(async (r) => {
    const exit = await r.done;
    const { code, signal } = exit;
    if ((code === 0 && !signal) || failed) return;
    failed = { rank: r, exit, code: code && code > 0 ? code : 1 };
    io.err.write(`weft launch: ${describeExit(r, exit)}; stopping the other ranks\n`);
    const alive = (x: Rank): boolean => x.child.exitCode === null && x.child.signalCode === null;
    timers.push(setTimeout(() => ranks.filter(alive).forEach((x) => x.child.kill('SIGTERM')), spec.graceS * 1000));
    timers.push(setTimeout(() => ranks.filter(alive).forEach((x) => x.child.kill('SIGKILL')), spec.graceS * 1000 + 5000));
  });
  await Promise.all(watched);
  timers.forEach(clearTimeout);
  if (!failed) return 0;
  io.err.write(`weft launch: failed: ${describeExit(failed.rank, failed.exit)}\n`);
  return failed.code;
}
