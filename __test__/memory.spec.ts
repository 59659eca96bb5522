import test from 'ava';
import * as weft from '../ts/index.js';
import { gpt } from '../ts/models/gpt.js';

// Memory features through the TS API: mixed precision on a small gpt over the built-in
// corpus (the 2% bar after 50 steps), dynamic loss scaling in the step result, the
// fp16-without-scaling warning, and ZeRO v2 training exactly like plain data parallelism.

const SMALL = { layers: 2, heads: 2, dim: 64, seq: 32, vocab: weft.data.vocabSize() };

async function fiftySteps(config: weft.ConfigInput, devices = 1): Promise<{ losses: number[]; last: weft.StepResult }> {
  const trainer = await weft.compile(gpt(SMALL, weft.config(config)), {
    batch: 8, devices: weft.cpu(devices), optimizer: weft.optim.adamW({ lr: 1e-3 }), seed: 7,
  });
  const loader = weft.data.tokenLoader({ batch: 8, seq: SMALL.seq });
  const losses: number[] = [];
  let last: weft.StepResult | undefined;
  for (let i = 0; i < 50; i++) {
    const { inputs, targets } = loader.next();
    last = await trainer.step({ idx: inputs, targets });
    losses.push(last.loss);
  }
  return { losses, last: last! };
}

test('bf16 and fp16 mixed precision stay within 2% of the f32 loss after 50 steps of a small gpt', async (t) => {
  const f32 = await fiftySteps({});
  t.true(f32.losses[49]! < f32.losses[0]! * 0.7, `the f32 run learns: ${f32.losses[49]}`);
  t.is(f32.last.lossScale, undefined);
  for (const [dtype, devices] of [['bf16', 1], ['fp16', 1], ['bf16', 2]] as const) {
    const low = await fiftySteps({ amp: { level: 'O1', dtype } }, devices);
    const rel = Math.abs(low.losses[49]! - f32.losses[49]!) / f32.losses[49]!;
    t.true(rel < 0.02, `${dtype} on ${devices}: ${low.losses[49]} vs f32 ${f32.losses[49]}`);
    t.notDeepEqual(low.losses, f32.losses, `${dtype} computes in ${dtype}`);
    // fp16 scales the loss (2^15 until 2000 good steps); bf16 does not.
    t.is(low.last.lossScale, dtype === 'fp16' ? 32768 : undefined);
    t.false(low.last.skipped);
  }
});

test('fp16 without loss scaling compiles with a warning that gives the reason', async (t) => {
  const trainer = await weft.compile(gpt(SMALL, weft.config({ amp: { level: 'O1', dtype: 'fp16', lossScale: 1 } })), { batch: 8 });
  t.is(trainer.warnings.length, 1);
  t.regex(trainer.warnings[0]!, /underflow/);
  t.regex(String(trainer.plan), /warning: amp\.dtype='fp16' with amp\.loss_scale=1/);
  t.regex(String(trainer.plan), /mixed precision: \d+ forward op\(s\) in fp16/);
});

test('ZeRO v2 trains exactly like plain data parallelism and keeps half the parameters per device', async (t) => {
  const run = async (zero: weft.ConfigKeyTypes['zero.level']) => {
    const trainer = await weft.compile(gpt(SMALL, weft.config({ zero: { level: zero } })), {
      batch: 8, devices: weft.cpu(2), threads: 1, optimizer: weft.optim.adamW({ lr: 1e-3 }),
    });
    const loader = weft.data.tokenLoader({ batch: 8, seq: SMALL.seq });
    const losses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { inputs, targets } = loader.next();
      losses.push((await trainer.step({ idx: inputs, targets })).loss);
    }
    const cpu0 = trainer.memory()['cpu:0'] as { measured: { resident_params: number } };
    return { losses, resident: cpu0.measured.resident_params, wte: trainer.getParameter('wte.weight') };
  };
  const [plain, v2] = [await run(''), await run('v2')];
  t.deepEqual(v2.losses, plain.losses);
  t.deepEqual(v2.wte, plain.wte);
  t.true(Math.abs(v2.resident / plain.resident - 0.5) < 0.01, `${v2.resident} vs ${plain.resident}`);
});
