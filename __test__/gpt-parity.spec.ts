import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as weft from '../ts/index.js';
import { gpt } from '../ts/models/gpt.js';

// Fixtures made by benches/reference/gpt2.py (an independent PyTorch GPT-2): the same
// safetensors init and llm.c token file, AdamW, 5 steps. weft must match PyTorch step for step.
const FIXTURES = join(__dirname, '..', 'crates', 'core', 'tests', 'fixtures');

interface Expected {
  readonly config: {
    readonly layers: number; readonly heads: number; readonly dim: number; readonly seq: number;
    readonly vocab: number; readonly batch: number; readonly lr: number; readonly weight_decay: number;
  };
  readonly losses: readonly number[];
  readonly final_param_checksums: Readonly<Record<string, number>>;
}

async function trainLikePytorch(name: string): Promise<{ expected: Expected; losses: number[]; trainer: weft.Trainer }> {
  const dir = join(FIXTURES, name);
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected;
  const c = expected.config;
  const model = gpt({ layers: c.layers, heads: c.heads, dim: c.dim, seq: c.seq, vocab: c.vocab });
  const trainer = await weft.compile(model, {
    batch: c.batch,
    optimizer: weft.optim.adamW({ lr: c.lr, weightDecay: c.weight_decay }),
  });
  await trainer.loadWeights(join(dir, 'init.safetensors'));
  const loader = weft.data.tokenLoader({ path: join(dir, 'tokens.bin'), batch: c.batch, seq: c.seq });
  const losses: number[] = [];
  for (let i = 0; i < expected.losses.length; i++) {
    const { inputs, targets } = loader.next();
    losses.push((await trainer.step({ idx: inputs, targets })).loss);
  }
  return { expected, losses, trainer };
}

for (const name of ['gpt_tiny', 'gpt_tiny_wd']) {
  test(`the gpt matches PyTorch's GPT-2 to 1e-4 over 5 AdamW steps (${name})`, async (t) => {
    const { expected, losses, trainer } = await trainLikePytorch(name);
    losses.forEach((loss, i) => {
      const want = expected.losses[i] ?? NaN;
      t.true(Math.abs(loss - want) < 1e-4, `step ${i + 1}: weft ${loss} vs PyTorch ${want}`);
    });
    // The updated weights agree too, not only the losses.
    for (const [param, sum] of Object.entries(expected.final_param_checksums)) {
      const got = trainer.getParameter(param).reduce((a, b) => a + b, 0);
      t.true(Math.abs(got - sum) < 1e-3 * Math.max(1, Math.abs(sum)), `${param}: sum ${got} vs ${sum}`);
    }
  });
}
