#!/usr/bin/env python3
"""PyTorch MLP reference for weft (fixture and the W1 benchmark).

Model: fc{i}: y = x @ fc{i}.weight + fc{i}.bias with weight stored [in, out], ReLU between
layers (not after the last), mean softmax cross-entropy over the batch, torch.optim.Adam.

Modes:
  --make-fixture DIR   write init.safetensors, inputs.safetensors, expected.json (+ final.safetensors)
  --check-fixture DIR  re-train from the files in DIR and compare with DIR/expected.json
  --bench              W1 of shared/BENCHMARKS.md (784-1024-1024-10, batch 256, Adam lr 1e-3)
Reference tool only: nothing in CI runs it.
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


class MLP(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.sizes = list(sizes)
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            # registered in order fc0.weight, fc0.bias, fc1.weight, ...
            setattr(self, f"fc{i}", _Dense(a, b))
        self.n = len(sizes) - 1

    def forward(self, x, y=None):
        for i in range(self.n):
            x = getattr(self, f"fc{i}")(x)
            if i < self.n - 1:
                x = F.relu(x)
        if y is None:
            return x, None
        return x, F.cross_entropy(x, y.long())

    def init_uniform(self, seed):
        """PyTorch nn.Linear's default distribution: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)),
        drawn in named_parameters() order from one generator."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for i in range(self.n):
                layer = getattr(self, f"fc{i}")
                bound = 1.0 / math.sqrt(layer.weight.shape[0])
                for p in (layer.weight, layer.bias):
                    p.copy_(torch.rand(p.shape, generator=g) * 2 * bound - bound)


class _Dense(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


def make_optimizer(model, args):
    return torch.optim.Adam(model.parameters(), lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)


def train(model, xs, ys, args):
    opt = make_optimizer(model, args)
    B, losses, grad0 = args.batch, [], None
    for step in range(args.steps):
        x, y = xs[step * B : (step + 1) * B], ys[step * B : (step + 1) * B]
        opt.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        if step == 0:
            grads = [(n, p.grad) for n, p in model.named_parameters()]
            grad0 = (common.param_checksums(grads), common.param_sq_sums(grads))
        losses.append(float(loss.item()))
        opt.step()
    return losses, grad0


def make_fixture(args):
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    d = args.make_fixture
    os.makedirs(d, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    model = MLP(sizes)
    model.init_uniform(args.seed)
    save_file({n: p.detach().clone().contiguous() for n, p in model.named_parameters()},
              os.path.join(d, "init.safetensors"))
    g = torch.Generator().manual_seed(args.seed + 1)
    n = args.steps * args.batch
    xs = torch.randn(n, sizes[0], generator=g)
    ys = torch.randint(0, sizes[-1], (n,), generator=g).to(torch.int32)
    save_file({"x": xs.contiguous(), "y": ys.contiguous()}, os.path.join(d, "inputs.safetensors"))
    losses, grad0 = train(model, xs, ys, args)
    named = list(model.named_parameters())
    if args.save_final:
        save_file({n: p.detach().clone().contiguous() for n, p in named}, os.path.join(d, "final.safetensors"))
    expected = {
        "config": {
            "model": "mlp",
            "sizes": sizes,
            "activation": "relu",
            "batch": args.batch,
            "steps": args.steps,
            "seed": args.seed,
            "optimizer": "adam",
            "lr": args.lr,
            "beta1": args.beta1,
            "beta2": args.beta2,
            "eps": args.eps,
            "weight_decay": 0.0,
            "dtype": "float32",
            "layout": "fc{i}.weight [in,out], y = x @ W + b",
            "batching": "step i uses rows [i*B, (i+1)*B) of inputs.safetensors x (f32 [steps*B, in]) and y (i32 [steps*B])",
            "loss": "mean softmax cross-entropy",
            "init": "weight and bias ~ U(-1/sqrt(in), 1/sqrt(in))",
            "torch_version": torch.__version__,
        },
        "losses": losses,
        "final_param_checksums": common.param_checksums(named),
        "final_param_sq_sums": common.param_sq_sums(named),
        "step0_grad_checksums": grad0[0],
        "step0_grad_sq_sums": grad0[1],
    }
    common.write_json(os.path.join(d, "expected.json"), expected)
    print(json.dumps({"fixture": d, "losses": losses}))
    return 0


def check_fixture(args):
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    d = args.check_fixture
    with open(os.path.join(d, "expected.json")) as f:
        exp = json.load(f)
    c = exp["config"]
    for k in ("batch", "steps", "lr", "beta1", "beta2", "eps"):
        setattr(args, k, c[k])
    model = MLP(c["sizes"])
    model.load_state_dict(load_file(os.path.join(d, "init.safetensors")), strict=True)
    inp = load_file(os.path.join(d, "inputs.safetensors"))
    assert inp["x"].dtype == torch.float32 and inp["y"].dtype == torch.int32
    losses, _ = train(model, inp["x"], inp["y"], args)
    dl = max(abs(a - b) for a, b in zip(losses, exp["losses"]))
    sums = common.param_checksums(model.named_parameters())
    ds = max(abs(sums[n] - v) for n, v in exp["final_param_checksums"].items())
    ok = dl < 1e-5 and ds < 1e-3
    print(json.dumps({"fixture": d, "max_loss_diff": dl, "max_checksum_diff": ds, "ok": ok}))
    return 0 if ok else 1


def bench(args):
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    model = MLP(sizes)
    model.init_uniform(args.seed)
    opt = make_optimizer(model, args)
    g = torch.Generator().manual_seed(args.seed)
    nb = 4
    xs = torch.randn(nb, args.batch, sizes[0], generator=g)
    ys = torch.randint(0, sizes[-1], (nb, args.batch), generator=g)
    it = [0]

    def step():
        i = it[0] % nb
        it[0] += 1
        opt.zero_grad(set_to_none=True)
        _, loss = model(xs[i], ys[i])
        loss.backward()
        opt.step()
        return loss

    times = common.time_steps(step, args.warmup, args.bench_steps)
    ms = common.median(times)
    print(json.dumps({
        "workload": "W1",
        "impl": "pytorch",
        "threads": args.threads,
        "ms_per_step_median": round(ms, 3),
        "samples_per_s": round(args.batch / (ms / 1e3), 1),
        "ms_per_step_min": round(min(times), 3),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": common.machine_info(),
    }))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--make-fixture", metavar="DIR")
    mode.add_argument("--check-fixture", metavar="DIR")
    mode.add_argument("--bench", action="store_true")
    p.add_argument("--sizes", help="comma-separated layer sizes (fixture default 8,16,4; bench 784,1024,1024,10)")
    p.add_argument("--batch", type=int)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--no-save-final", dest="save_final", action="store_false")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--bench-steps", type=int, default=10)
    args = p.parse_args(argv)
    if args.bench:
        args.sizes = args.sizes or "784,1024,1024,10"
        args.batch = args.batch or 256
        return bench(args)
    if args.check_fixture:
        return check_fixture(args)
    args.sizes = args.sizes or "8,16,4"
    args.batch = args.batch or 4
    return make_fixture(args)


if __name__ == "__main__":
    sys.exit(main())
