/**
 * Help text, generated from the flag table so that it cannot drift from what the parser accepts.
 */
import { COMMAND_FLAGS, type FlagSpec } from './flags.js';

const SUMMARY: Record<string, string> = {
  train: 'train a built-in model (gpt or mlp)',
  plan: 'print the parallel plan and a memory estimate without running',
  sample: 'generate text from a gpt checkpoint',
  demo: 'train a small gpt on the built-in corpus for a minute, then sample from it',
  launch: 'start N processes that train together (torchrun\'s environment contract)',
  data: 'data prepare: tokenize text / JSON Lines files into llm.c shards and data.json',
};

const USAGE: Record<string, string> = {
  train: 'weft train --model gpt|mlp [model flags] [--data FILE.bin] [--devices cpu:N] [--dp N] [--pp N] [--tp N] [--set pipeline.num_micro_batch=M] [--steps N] [--json] [--save DIR] [--trace FILE.json] [--eval-every N [--eval-data FILE.bin | --eval-split F]] [--logdir DIR]',
  plan: 'weft plan <train flags> [--json]',
  sample: 'weft sample --checkpoint DIR [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--top-p P] [--stop TEXT] [--seed S] [--dp/--pp/--tp N]',
  demo: 'weft demo [--out DIR] [--steps N]',
  launch: 'weft launch --nproc-per-node N [--nnodes K --node-rank R --master-addr A --master-port P] -- COMMAND...',
  data: 'weft data prepare FILE... --out DIR [--tokenizer gpt2|byte] [--field text] [--val-fraction F] [--shard-tokens N]',
};

const LAUNCH_NOTES = [
  'many processes:',
  '  each child gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,',
  '  MASTER_PORT (torchrun\'s contract), WEFT_STORE_TOKEN (a fresh secret; set it yourself, the',
  '  same on every node, with --nnodes > 1) and WEFT_LAUNCH=1. weft train in such a child hosts',
  '  --devices cpu:k of a world of processes x k devices and trains with the others over TCP',
  '  (data-parallel replicas; with --pp S give each process whole replicas: cpu:S); rank 0 hosts',
  '  the rendezvous store and writes --save/--trace. Processes started by torchrun, Slurm (srun)',
  '  or Open MPI (mpirun) are recognised the same way.',
  '  When a rank dies, the others get --grace-s seconds, then SIGTERM; launch exits non-zero',
  '  naming the rank. A rank waiting on a dead one fails within communication.timeout_s.',
  '  example: weft launch --nproc-per-node 2 -- weft train --model mlp --devices cpu:1 --steps 50',
];

const PARALLEL = [
  'parallel training (CPU virtual devices: threads of this process):',
  '  --pp S cuts the built-in model into S pipeline stages (layers split evenly; gpt: embeddings',
  '  with the first stage, ln_f, the tied head and the loss with the last); --dp R runs R replicas',
  '  of them on R x S devices. --devices cpu:N, when given, must equal R x S; with only one of',
  '  --dp and --pp the other is N divided by it, with neither every device is a replica.',
  '  --tp T splits every stage of the gpt over T devices (tensor parallelism: heads, c_attn and',
  '  c_fc column-parallel, c_proj row-parallel); the layout is then R x S x T devices.',
  '  --set pipeline.num_micro_batch=M   micro-batches per step (the batch must divide by R x M)',
  '  --set pipeline.strategy=PreferBackward|PreferForward|PreferBackwardOptimizer',
  '                                     1F1B (default), GPipe, 1F1B with extra warm-up',
  '  --json adds each device\'s measured idle fraction next to the ideal (S-1)/(M+S-1).',
  '  example: weft train --model gpt --pp 2 --dp 2 --set pipeline.num_micro_batch=4 --trace trace.json',
  '  example: weft train --model gpt --dp 2 --pp 2 --tp 2 --set pipeline.num_micro_batch=2   (8 CPU devices)',
];

/** Extra sections after the flags. */
const NOTES: Record<string, readonly string[]> = { train: PARALLEL, plan: PARALLEL, launch: LAUNCH_NOTES };

/** The top-level help: commands and one line each. */
export function mainHelp(): string {
  const lines = ['weft: EPL-style distributed training for TypeScript', '', 'usage: weft <command> [flags]', '', 'commands:'];
  for (const [cmd, text] of Object.entries(SUMMARY)) lines.push(`  ${cmd.padEnd(8)} ${text}`);
  lines.push('', "'weft <command> --help' lists a command's flags; 'weft --version' prints the version.");
  return lines.join('\n');
}

/** The help of one subcommand: usage and its flags by group. */
export function commandHelp(command: string): string {
  const lines = [`${SUMMARY[command] ?? command}`, '', `usage: ${USAGE[command] ?? `weft ${command}`}`];
  const groups = new Map<string, FlagSpec[]>();
  for (const f of COMMAND_FLAGS[command] ?? []) groups.set(f.group, [...(groups.get(f.group) ?? []), f]);
  for (const [group, flags] of groups) {
    lines.push('', `${group}:`);
    for (const f of flags) lines.push(`  ${flagUsage(f).padEnd(32)} ${f.help}`);
  }
  const notes = NOTES[command];
  if (notes) lines.push('', ...notes);
  return lines.join('\n');
}

function flagUsage(f: FlagSpec): string {
  if (f.kind === 'bool') return `--${f.name}`;
  const value = f.kind === 'choice' ? (f.choices ?? []).join('|') : (f.value ?? 'VALUE');
  return `--${f.name} ${value}`;
}
