/**
 * The CLI's flag table: one entry per flag, grouped as in DESIGN.md, with the value form each
 * takes. The parser, the help text and the error messages are all generated from this table.
 */

/** How a flag's value is read. */
export type FlagKind = 'bool' | 'string' | 'int' | 'number' | 'size' | 'list' | 'choice';

/** One flag of the table. */
export interface FlagSpec {
  /** Long name without the leading dashes, kebab-case. */
  readonly name: string;
  readonly kind: FlagKind;
  readonly group: 'model' | 'data' | 'optimizer' | 'run' | 'sample' | 'demo' | 'launch' | 'prepare';
  readonly help: string;
  /** Placeholder shown in help and in "expected" error messages. */
  readonly value?: string;
  readonly choices?: readonly string[];
  /** Smallest accepted value for int/number flags. */
  readonly min?: number;
  /** Minimum is exclusive (for learning rates, temperatures...). */
  readonly minExclusive?: boolean;
  readonly repeatable?: boolean;
}

const MODEL: FlagSpec[] = [
  { name: 'model', kind: 'choice', group: 'model', choices: ['gpt', 'mlp'], help: 'built-in model (default gpt)' },
  { name: 'layers', kind: 'int', group: 'model', min: 1, value: 'N', help: 'gpt: transformer blocks (default 4)' },
  { name: 'heads', kind: 'int', group: 'model', min: 1, value: 'N', help: 'gpt: attention heads (default 4)' },
  { name: 'dim', kind: 'int', group: 'model', min: 1, value: 'N', help: 'gpt: embedding width (default 256)' },
  { name: 'seq', kind: 'int', group: 'model', min: 1, value: 'N', help: 'gpt: context length (default 128)' },
  { name: 'vocab', kind: 'int', group: 'model', min: 1, value: 'N', help: 'gpt: vocabulary size (default 4096)' },
  { name: 'sizes', kind: 'list', group: 'model', value: '784,1024,1024,10', help: 'mlp: layer widths' },
  { name: 'init', kind: 'string', group: 'model', value: 'FILE|DIR', help: 'initial weights: a safetensors file or a Hugging Face save_pretrained folder (shape from its config.json)' },
  { name: 'seed', kind: 'int', group: 'model', min: 0, value: 'N', help: 'seed for init and synthetic data (default 0; with --resume the checkpoint\'s)' },
];

const DATA: FlagSpec[] = [
  { name: 'data', kind: 'string', group: 'data', value: 'FILE.bin|A,B|GLOB|DIR', help: 'llm.c token file(s): one, a list, a glob, or a prepared directory (default: built-in corpus)' },
  { name: 'batch', kind: 'int', group: 'data', min: 1, value: 'B', help: 'global batch per optimizer step (default 8 gpt, 256 mlp; with --resume the checkpoint\'s)' },
];

const OPTIMIZER: FlagSpec[] = [
  { name: 'optimizer', kind: 'choice', group: 'optimizer', choices: ['adamw', 'adam', 'sgd'], help: 'optimizer (default adamw for gpt, adam for mlp)' },
  { name: 'lr', kind: 'number', group: 'optimizer', min: 0, minExclusive: true, value: 'X', help: 'learning rate (default 3e-4 gpt, 1e-3 mlp)' },
  { name: 'beta1', kind: 'number', group: 'optimizer', min: 0, value: 'X', help: 'Adam beta1' },
  { name: 'beta2', kind: 'number', group: 'optimizer', min: 0, value: 'X', help: 'Adam beta2' },
  { name: 'eps', kind: 'number', group: 'optimizer', min: 0, minExclusive: true, value: 'X', help: 'Adam epsilon' },
  { name: 'weight-decay', kind: 'number', group: 'optimizer', min: 0, value: 'X', help: 'decoupled weight decay' },
  { name: 'momentum', kind: 'number', group: 'optimizer', min: 0, value: 'X', help: 'SGD momentum' },
  { name: 'grad-clip', kind: 'number', group: 'optimizer', min: 0, value: 'X', help: 'clip the global gradient norm' },
  { name: 'warmup', kind: 'int', group: 'optimizer', min: 0, value: 'STEPS', help: 'linear warm-up steps' },
  { name: 'schedule', kind: 'choice', group: 'optimizer', choices: ['constant', 'cosine'], help: 'learning-rate schedule (default constant)' },
  { name: 'decay-steps', kind: 'int', group: 'optimizer', min: 1, value: 'STEPS', help: 'cosine: the step the decay ends at (default --steps; with --resume the checkpoint\'s)' },
];

const RUN: FlagSpec[] = [
  { name: 'steps', kind: 'int', group: 'run', min: 1, value: 'N', help: 'the run\'s TOTAL optimizer steps (default 100; with --resume the checkpoint\'s): resuming a 1000-step run saved at step 400 runs 600 more' },
  { name: 'devices', kind: 'string', group: 'run', value: 'cpu:N|cuda:N', help: 'devices, at most cpu:16 (default: dp x pp CPU devices)' },
  { name: 'dp', kind: 'int', group: 'run', min: 1, value: 'N', help: 'data-parallel replicas (default: devices / pp)' },
  { name: 'pp', kind: 'int', group: 'run', min: 1, value: 'N', help: 'pipeline stages: the model\'s layers cut evenly (default 1)' },
  { name: 'tp', kind: 'int', group: 'run', min: 1, value: 'N', help: 'tensor-parallel devices per stage (gpt: heads and 4*dim must divide by it)' },
  { name: 'set', kind: 'string', group: 'run', repeatable: true, value: 'key=value', help: 'config key, e.g. pipeline.num_micro_batch=4 (repeatable)' },
  { name: 'config', kind: 'string', group: 'run', value: 'FILE.json', help: 'config file' },
  { name: 'json', kind: 'bool', group: 'run', help: 'one JSON object per line' },
  { name: 'save', kind: 'string', group: 'run', value: 'DIR', help: 'save at the end (and on SIGINT/SIGTERM) into DIR/step-<N>/; DIR/latest names the newest' },
  { name: 'save-every', kind: 'int', group: 'run', min: 1, value: 'N', help: 'train: also save every N steps (needs --save)' },
  { name: 'keep', kind: 'int', group: 'run', min: 1, value: 'K', help: 'train: keep the newest K saves under --save (default 1)' },
  { name: 'resume', kind: 'string', group: 'run', value: 'DIR', help: 'continue the run saved in DIR exactly (weights, optimizer, schedule, data position) up to --steps; the newest complete save under DIR' },
  { name: 'trace', kind: 'string', group: 'run', value: 'FILE.json', help: 'train: Chrome/Perfetto trace of the last step' },
  { name: 'eval-every', kind: 'int', group: 'run', min: 1, value: 'N', help: 'train: evaluate every N steps and after the last (eval loss, and perplexity for gpt)' },
  { name: 'eval-data', kind: 'string', group: 'run', value: 'FILE.bin|A,B|GLOB|DIR', help: 'train: evaluation token file(s) (gpt)' },
  { name: 'eval-split', kind: 'number', group: 'run', min: 0, minExclusive: true, value: 'FRACTION', help: 'train: hold out the last FRACTION of the --data tokens (or of the corpus) for evaluation, never trained on (default 0.01 without --eval-data)' },
  { name: 'eval-batches', kind: 'int', group: 'run', min: 1, value: 'K', help: 'train: batches per evaluation (default 10; the same K batches every time)' },
  { name: 'eval-batch', kind: 'int', group: 'run', min: 1, value: 'B', help: 'train: rows per evaluation batch: a multiple or divisor of --batch (default --batch)' },
  { name: 'logdir', kind: 'string', group: 'run', value: 'DIR', help: 'train: TensorBoard event files and metrics.jsonl (default DIR.logs beside --save DIR; none without either)' },
  { name: 'memory-limit', kind: 'size', group: 'run', value: 'SIZE', help: 'per-device memory limit, e.g. 4GiB' },
];

const PLAN: FlagSpec[] = [
  { name: 'cluster', kind: 'string', group: 'run', value: 'HOSTSxDEVICES[:KIND]', help: 'plan: slice for simulated hosts, e.g. 2x4 (the device count must be HOSTS x DEVICES); with a hardware kind (384x8:a100-80g; kinds a100-40g, a100-80g, h100, h200, v100, cpu) plan that cluster from shapes alone' },
  { name: 'micro-batch', kind: 'int', group: 'run', min: 1, value: 'ROWS', help: 'plan --cluster NxG:KIND: rows per micro-batch (default 1; or pipeline.num_micro_batch)' },
  { name: 'hardware', kind: 'string', group: 'run', value: 'FILE.json', help: 'plan --cluster NxG:KIND: hardware overrides (fields of the built-in table)' },
];

const SAMPLE: FlagSpec[] = [
  { name: 'checkpoint', kind: 'string', group: 'sample', value: 'DIR', help: 'checkpoint saved by train --save (its newest save)' },
  { name: 'prompt', kind: 'string', group: 'sample', value: 'TEXT', help: 'text to continue' },
  { name: 'tokens', kind: 'int', group: 'sample', min: 1, value: 'N', help: 'tokens to generate (default 200)' },
  { name: 'temperature', kind: 'number', group: 'sample', min: 0, value: 'T', help: 'softmax temperature, 0 = greedy (default 0.8)' },
  { name: 'seed', kind: 'int', group: 'sample', min: 0, value: 'N', help: 'seed of the sampler (default 0)' },
  { name: 'top-k', kind: 'int', group: 'sample', min: 0, value: 'K', help: 'sample among the K likeliest, 0 = all (default 40)' },
  { name: 'top-p', kind: 'number', group: 'sample', min: 0, minExclusive: true, value: 'P', help: 'sample among the likeliest summing to P (default 1 = all)' },
  { name: 'stop', kind: 'string', group: 'sample', value: 'TEXT', help: 'stop when the continuation produces TEXT (not printed)' },
  { name: 'tokenizer', kind: 'string', group: 'sample', value: 'NAME', help: 'byte, gpt2 or ids (default: the checkpoint\'s; bytes for a token file)' },
  { name: 'no-cache', kind: 'bool', group: 'sample', help: 'recompute the full window per token instead of the key/value cache' },
];

const DEMO: FlagSpec[] = [
  { name: 'out', kind: 'string', group: 'demo', value: 'DIR', help: 'where the demo checkpoint goes (default out/demo)' },
  { name: 'steps', kind: 'int', group: 'demo', min: 1, value: 'N', help: 'training steps (default 1000, about a minute)' },
  { name: 'seed', kind: 'int', group: 'demo', min: 0, value: 'N', help: 'seed of init and sampling (default 0)' },
  { name: 'json', kind: 'bool', group: 'demo', help: 'training progress as JSON lines (the sample goes to stderr)' },
];

const LAUNCH: FlagSpec[] = [
  { name: 'nproc-per-node', kind: 'int', group: 'launch', min: 1, value: 'N', help: 'processes to start on this node (required)' },
  { name: 'nnodes', kind: 'int', group: 'launch', min: 1, value: 'K', help: 'nodes in the job (default 1)' },
  { name: 'node-rank', kind: 'int', group: 'launch', min: 0, value: 'R', help: 'this node\'s index, 0..K-1 (default 0)' },
  { name: 'master-addr', kind: 'string', group: 'launch', value: 'ADDR', help: 'where rank 0 hosts the store (default 127.0.0.1)' },
  { name: 'master-port', kind: 'int', group: 'launch', min: 1, value: 'P', help: 'the store\'s port (default: a free port; required with --nnodes > 1)' },
  { name: 'grace-s', kind: 'number', group: 'launch', min: 0, value: 'S', help: 'after a rank dies, seconds the others get to exit before SIGTERM (default 5)' },
  { name: 'raw-output', kind: 'bool', group: 'launch', help: 'pass output through without the [rank R] prefix' },
];

const PREPARE: FlagSpec[] = [
  { name: 'out', kind: 'string', group: 'prepare', value: 'DIR', help: 'where the shards and data.json go (required)' },
  { name: 'tokenizer', kind: 'choice', group: 'prepare', choices: ['gpt2', 'byte'], help: 'tokenizer (default gpt2)' },
  { name: 'field', kind: 'string', group: 'prepare', value: 'NAME', help: 'JSON Lines key holding the text (default text)' },
  { name: 'val-fraction', kind: 'number', group: 'prepare', min: 0, value: 'F', help: 'share of tokens in val_*.bin shards (default 0)' },
  { name: 'shard-tokens', kind: 'int', group: 'prepare', min: 1, value: 'N', help: 'tokens per shard (default 100000000)' },
  { name: 'json', kind: 'bool', group: 'prepare', help: 'print the summary as JSON' },
];

const ALL: readonly FlagSpec[] = [...MODEL, ...DATA, ...OPTIMIZER, ...RUN, ...PLAN, ...SAMPLE, ...DEMO, ...LAUNCH, ...PREPARE];

/** The flags each subcommand accepts. */
export const COMMAND_FLAGS: Readonly<Record<string, readonly FlagSpec[]>> = {
  train: [...MODEL, ...DATA, ...OPTIMIZER, ...RUN],
  plan: [...MODEL, ...DATA, ...OPTIMIZER, ...RUN, ...PLAN],
  // Sampling runs on one device unless given the layout (e.g. the one the model trained with).
  sample: [...SAMPLE, ...RUN.filter((f) => ['devices', 'dp', 'pp', 'tp'].includes(f.name))],
  demo: DEMO,
  launch: LAUNCH,
  data: PREPARE,
};

/** Commands that take positional arguments (`weft data prepare FILE...`). */
export const POSITIONAL_COMMANDS: ReadonlySet<string> = new Set(['data']);

/** Every flag any command knows, for "belongs to another command" hints. */
export function findFlag(name: string): FlagSpec | undefined {
  return ALL.find((f) => f.name === name);
}

/** The expected form of a flag's value, for error messages and help. */
export function expectedForm(spec: FlagSpec): string {
  switch (spec.kind) {
    case 'choice':
      return (spec.choices ?? []).join('|');
    case 'int':
      return spec.min === undefined ? 'an integer' : `an integer >= ${spec.min}`;
    case 'number':
      return spec.minExclusive ? `a number > ${spec.min}` : `a number >= ${spec.min ?? '-inf'}`;
    case 'size':
      return 'a size such as 512MiB, 4GiB or 1e9 (bytes)';
    case 'list':
      return 'comma-separated positive integers such as 784,1024,10';
    default:
      return spec.value ?? 'a value';
  }
}
