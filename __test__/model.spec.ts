import test from 'ava';
import * as weft from '../ts/index.js';

test('building a shape mismatch throws WeftShapeError naming the op and both shapes', (t) => {
  const err = t.throws(
    () =>
      weft.model((m) => {
        const x = m.input('x', [null, 4]);
        const w = m.param('w', [5, 3], weft.init.zeros());
        return x.matmul(w).mean();
      }),
    { instanceOf: weft.WeftShapeError },
  );
  t.is(err?.code, 'WEFT_SHAPE');
  t.regex(err?.message ?? '', /matmul/);
  t.regex(err?.message ?? '', /\[B,4\]/);
  t.regex(err?.message ?? '', /\[5,3\]/);
});

test('broadcast mismatch names the op and both shapes', (t) => {
  const err = t.throws(
    () =>
      weft.model((m) => {
        const x = m.input('x', [null, 4]);
        return x.add(m.param('b', [5], weft.init.zeros())).mean();
      }),
    { instanceOf: weft.WeftShapeError },
  );
  t.is(err?.message, 'add: shapes [B,4] and [5] do not broadcast (dimension 1: 4 vs 5)');
});

test('an unknown input dtype is rejected with WeftDTypeError', (t) => {
  const err = t.throws(
    () =>
      weft.model((m) => {
        const x = m.input('x', [null, 4], 'f16' as weft.DType);
        return x.mean();
      }),
    { instanceOf: weft.WeftDTypeError },
  );
  t.is(err?.code, 'WEFT_DTYPE');
  t.regex(err?.message ?? '', /f16/);
});

test('an op on the wrong dtype is rejected with WeftDTypeError', (t) => {
  t.throws(
    () =>
      weft.model((m) => {
        const idx = m.input('idx', [null, 4], 'i32');
        return idx.relu().mean();
      }),
    { instanceOf: weft.WeftDTypeError, message: /relu input: expected dtype f32, got i32/ },
  );
});

test('the loss must be a scalar', (t) => {
  t.throws(() => weft.model((m) => m.input('x', [null, 4])), {
    instanceOf: weft.WeftShapeError,
    message: /loss must be an f32 scalar, got f32\[B,4\]/,
  });
});

test('tensors report batch dims as null and B multiples in dims', (t) => {
  weft.model((m) => {
    const x = m.input('x', [null, 3, 8]);
    t.deepEqual(x.shape, [null, 3, 8]);
    t.deepEqual(x.dims, ['B', '3', '8']);
    const flat = x.reshape([-1, 8]);
    t.deepEqual(flat.shape, [null, 8]);
    t.deepEqual(flat.dims, ['3B', '8']);
    t.is(flat.toString(), 'Tensor(f32[3B,8])');
    return flat.sum();
  });
});

test('scopes and nn layers use Hugging Face GPT-2 parameter names', (t) => {
  const model = weft.model((m) => {
    const idx = m.input('idx', [null, 8], 'i32');
    const tok = m.nn.embedding(idx, 32, 16, { name: 'wte' });
    const h = m.nn.transformerBlock(tok, { heads: 2, name: 'h.0' });
    const out = m.nn.layerNorm(h, { name: 'ln_f' });
    return out.mean();
  });
  const names = model.parameters.map((p) => p.name);
  t.deepEqual(names, [
    'wte.weight',
    'h.0.ln_1.weight',
    'h.0.ln_1.bias',
    'h.0.attn.c_attn.weight',
    'h.0.attn.c_attn.bias',
    'h.0.attn.c_proj.weight',
    'h.0.attn.c_proj.bias',
    'h.0.ln_2.weight',
    'h.0.ln_2.bias',
    'h.0.mlp.c_fc.weight',
    'h.0.mlp.c_fc.bias',
    'h.0.mlp.c_proj.weight',
    'h.0.mlp.c_proj.bias',
    'ln_f.weight',
    'ln_f.bias',
  ]);
  const shapes = Object.fromEntries(model.parameters.map((p) => [p.name, p.shape]));
  t.deepEqual(shapes['h.0.attn.c_attn.weight'], [16, 48]);
  t.deepEqual(shapes['h.0.mlp.c_fc.weight'], [16, 64]);
});

test('linear initialises like PyTorch nn.Linear: uniform within 1/sqrt(in)', (t) => {
  const model = weft.model((m) => m.nn.linear(m.input('x', [null, 16]), 4, { name: 'fc' }).mean());
  t.regex(model.text(), /name=fc\.weight,init=uniform\(-0\.25,0\.25\)/);
  t.regex(model.text(), /name=fc\.bias,init=uniform\(-0\.25,0\.25\)/);
});

test('strategy scopes record TaskGraphs; replicate deviceCount > 1 is a typed unsupported error', (t) => {
  const model = weft.model((m) => {
    const x = m.input('x', [null, 4]);
    const h = m.replicate({ deviceCount: 1, name: 'stage0' }, () => m.nn.linear(x, 8).relu());
    return m.split({ name: 'stage1' }, () => m.nn.linear(h, 2)).mean();
  });
  // The input written before the first scope joins its TaskGraph (EPL: the first scope takes
  // over TaskGraph 0); the mean after the split scope joins the last replicate TaskGraph.
  t.deepEqual(
    model.taskgraphs.map((g) => [g.name, g.strategy, g.deviceCount]),
    [
      ['stage0', 'replicate', 1],
      ['stage1', 'split', 1],
    ],
  );
  t.regex(model.text(), /taskgraph tg0 stage0 Replicate x1/);
  t.regex(model.text(), /taskgraph tg1 stage1 Split x1/);
  t.regex(model.text(), /%10 = mean\{axis=0,keepdim=false\}\(%9\) : f32\[2\] tg0 fwd/);
  const err = t.throws(
    () => weft.model((m) => m.replicate({ deviceCount: 2 }, () => m.input('x', [null, 4]).mean())),
    { instanceOf: weft.WeftUnsupportedError },
  );
  t.is(err?.code, 'WEFT_UNSUPPORTED');
  t.regex(err?.message ?? '', /deviceCount 2/);
  // A split scope over 2 devices is tensor parallelism: it builds, recorded as Split x2.
  const split = weft.model((m) => m.split({ deviceCount: 2 }, () => m.input('x', [null, 4]).mean()));
  t.regex(split.text(), /taskgraph tg0 Split Split x2/);
});

test('split cuts a tensor into slices that add up to the axis, and refuses sizes that do not', (t) => {
  weft.model(weft.config(), (m) => {
    const x = m.input('x', [null, 6]);
    const [a, b] = x.split([2, 4], -1);
    t.deepEqual(a?.shape, [null, 2]);
    t.deepEqual(b?.shape, [null, 4]);
    const err = t.throws(() => x.split([2, 3], 1), { instanceOf: weft.WeftShapeError });
    t.is(err?.message, 'split: sizes [2, 3] (sum 5) do not cover axis 1 of shape [B,6]');
    return m.losses.meanSquaredError(x, x);
  });
});
