#!/usr/bin/env python3
"""Minimal PyTorch GPT-2 reference for weft (fixtures and the W2 benchmark).

Architecture: pre-LN GPT-2, GELU (tanh approximation), learned position embeddings, tied
input/output embeddings (logits = x @ wte.weight^T), biases everywhere, LayerNorm eps 1e-5,
no dropout. Parameter names and layouts are Hugging Face GPT-2's: Conv1D weights are stored
[in, out] and applied as y = x @ W + b. Attention is computed explicitly in fp32:
softmax(Q K^T / sqrt(D) + causal_mask) V, with q|k|v packed in that order along the last dim
of c_attn's output and head h owning channels [h*D, (h+1)*D).

Modes:
  --make-fixture DIR   write init.safetensors, tokens.bin, expected.json (+ final.safetensors)
  --check-fixture DIR  re-train from the files in DIR and compare with DIR/expected.json
  --bench              W2 of shared/BENCHMARKS.md, prints one JSON line
Reference tool only: nothing in CI runs it.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


class Conv1D(nn.Module):
    """HF GPT-2 Conv1D: weight [in, out], y = x @ W + b."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


class Attention(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        assert C % H == 0
        self.C, self.H, self.D = C, H, C // H
        self.c_attn = Conv1D(C, 3 * C)
        self.c_proj = Conv1D(C, C)

    def forward(self, x):
        B, T, C = x.shape
        H, D = self.H, self.D
        qkv = self.c_attn(x)  # [B, T, 3C], packed q | k | v
        q, k, v = qkv.split(C, dim=-1)
        q = q.view(B, T, H, D).transpose(1, 2)  # [B, H, T, D]; head h = channels [h*D,(h+1)*D)
        k = k.view(B, T, H, D).transpose(1, 2)
        v = v.view(B, T, H, D).transpose(1, 2)
        scale = 1.0 / math.sqrt(D)
        att = (q @ k.transpose(-2, -1)) * scale  # [B, H, T, T]
        mask = torch.full((T, T), float("-inf"), dtype=att.dtype, device=att.device).triu(1)
        att = torch.softmax(att + mask, dim=-1)
        y = att @ v  # [B, H, T, D]
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.c_fc = Conv1D(C, 4 * C)
        self.c_proj = Conv1D(4 * C, C)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.attn = Attention(C, H)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.mlp = MLP(C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT2(nn.Module):
    def __init__(self, layers, heads, dim, seq, vocab):
        super().__init__()
        self.layers, self.heads, self.dim, self.seq, self.vocab = layers, heads, dim, seq, vocab
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(seq, dim)
        self.h = nn.ModuleList([Block(dim, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        assert T <= self.seq
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)[None]
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        logits = x @ self.wte.weight.t()  # tied lm_head
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, self.vocab), targets.reshape(-1))
        return logits, loss

    def gpt2_init(self, seed):
        """normal(0, 0.02) weights, c_proj weights normal(0, 0.02/sqrt(2L)), zero biases,
        LayerNorm weight 1 bias 0. Drawn in named_parameters() order from one generator."""
        g = torch.Generator().manual_seed(seed)
        proj_std = 0.02 / math.sqrt(2 * self.layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if ".ln_" in name or name.startswith("ln_"):
                    p.fill_(1.0 if name.endswith(".weight") else 0.0)
                elif name.endswith(".bias"):
                    p.zero_()
                elif name.endswith("c_proj.weight"):
                    p.copy_(torch.normal(0.0, proj_std, p.shape, generator=g))
                else:  # wte, wpe, c_attn.weight, c_fc.weight
                    p.copy_(torch.normal(0.0, 0.02, p.shape, generator=g))


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def llmc_batch(tokens, step, B, T):
    """llm.c's reader: step i takes tokens[i*B*T : i*B*T + B*T + 1]."""
    start = step * B * T
    buf = torch.from_numpy(tokens[start : start + B * T + 1].astype(np.int64))
    assert buf.numel() == B * T + 1, "token file too short for this many steps"
    return buf[:-1].view(B, T), buf[1:].view(B, T)


def make_optimizer(model, args):
    return torch.optim.AdamW(
        model.parameters(),
        lr=args.lr,
        betas=(args.beta1, args.beta2),
        eps=args.eps,
        weight_decay=args.weight_decay,
    )


def train(model, tokens, args):
    """Returns (losses before each update, step-0 grad checksums)."""
    opt = make_optimizer(model, args)
    losses, grad0 = [], None
    model.train()
    for step in range(args.steps):
        x, y = llmc_batch(tokens, step, args.batch, args.seq)
        opt.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        if step == 0:
            grads = [(n, p.grad) for n, p in model.named_parameters()]
            grad0 = (common.param_checksums(grads), common.param_sq_sums(grads))
        losses.append(float(loss.item()))
        opt.step()
    return losses, grad0


def fixture_config(args, model, n_tokens):
    return {
        "model": "gpt2",
        "layers": args.layers,
        "heads": args.heads,
        "dim": args.dim,
        "seq": args.seq,
        "vocab": args.vocab,
        "batch": args.batch,
        "steps": args.steps,
        "seed": args.seed,
        "optimizer": "adamw",
        "lr": args.lr,
        "beta1": args.beta1,
        "beta2": args.beta2,
        "eps": args.eps,
        "weight_decay": args.weight_decay,
        "weight_decay_applies_to": "all parameters (torch.optim.AdamW over model.parameters())",
        "dropout": 0.0,
        "layernorm_eps": 1e-5,
        "gelu": "tanh",
        "tied_embeddings": True,
        "dtype": "float32",
        "num_params": num_params(model),
        "num_tokens": int(n_tokens),
        "batching": "llm.c: step i uses tokens[i*B*T : i*B*T+B*T+1]; inputs first B*T, targets shifted by one",
        "init": "normal(0,0.02) weights; c_proj weights normal(0,0.02/sqrt(2*layers)); biases 0; LN weight 1 bias 0",
        "torch_version": torch.__version__,
    }


def make_fixture(args):
    from safetensors.torch import save_file

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # deterministic reductions for the fixture
    os.makedirs(args.make_fixture, exist_ok=True)
    model = GPT2(args.layers, args.heads, args.dim, args.seq, args.vocab)
    model.gpt2_init(args.seed)
    state = {n: p.detach().clone().contiguous() for n, p in model.named_parameters()}
    save_file(state, os.path.join(args.make_fixture, "init.safetensors"))

    n_tokens = args.steps * args.batch * args.seq + 1
    rng = np.random.default_rng(args.seed)
    tokens = rng.integers(0, args.vocab, size=n_tokens, dtype=np.int64).astype(np.uint16)
    common.write_llmc_tokens(os.path.join(args.make_fixture, "tokens.bin"), tokens)

    # Train from what was written, so the fixture is exactly what a reader sees.
    tokens = common.read_llmc_tokens(os.path.join(args.make_fixture, "tokens.bin"))
    losses, grad0 = train(model, tokens, args)
    named = list(model.named_parameters())
    if args.save_final:
        save_file(
            {n: p.detach().clone().contiguous() for n, p in named},
            os.path.join(args.make_fixture, "final.safetensors"),
        )
    expected = {
        "config": fixture_config(args, model, n_tokens),
        "losses": losses,
        "final_param_checksums": common.param_checksums(named),
        "final_param_sq_sums": common.param_sq_sums(named),
        "step0_grad_checksums": grad0[0],
        "step0_grad_sq_sums": grad0[1],
    }
    common.write_json(os.path.join(args.make_fixture, "expected.json"), expected)
    print(json.dumps({"fixture": args.make_fixture, "losses": losses}))


def check_fixture(args):
    """Rebuild from the files alone (as weft's Rust test does) and compare."""
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    d = args.check_fixture
    with open(os.path.join(d, "expected.json")) as f:
        exp = json.load(f)
    c = exp["config"]
    for k in ("layers", "heads", "dim", "seq", "vocab", "batch", "steps", "lr", "beta1", "beta2",
              "eps", "weight_decay"):
        setattr(args, k, c[k])
    model = GPT2(c["layers"], c["heads"], c["dim"], c["seq"], c["vocab"])
    sd = load_file(os.path.join(d, "init.safetensors"))
    missing = set(dict(model.named_parameters())) ^ set(sd)
    assert not missing, f"name mismatch: {missing}"
    model.load_state_dict(sd, strict=True)
    tokens = common.read_llmc_tokens(os.path.join(d, "tokens.bin"))
    losses, _ = train(model, tokens, args)
    dl = max(abs(a - b) for a, b in zip(losses, exp["losses"]))
    sums = common.param_checksums(model.named_parameters())
    ds = max(abs(sums[n] - v) for n, v in exp["final_param_checksums"].items())
    ok = dl < 1e-5 and ds < 1e-3
    print(json.dumps({"fixture": d, "max_loss_diff": dl, "max_checksum_diff": ds, "ok": ok}))
    return 0 if ok else 1


def bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = GPT2(args.layers, args.heads, args.dim, args.seq, args.vocab)
    model.gpt2_init(args.seed)
    opt = make_optimizer(model, args)
    B, T = args.batch, args.seq
    g = torch.Generator().manual_seed(args.seed)
    nb = 4
    data = torch.randint(0, args.vocab, (nb, B * T + 1), generator=g)
    it = [0]

    def step():
        buf = data[it[0] % nb]
        it[0] += 1
        x, y = buf[:-1].view(B, T), buf[1:].view(B, T)
        opt.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        return loss

    times = common.time_steps(step, args.warmup, args.bench_steps)
    ms = common.median(times)
    print(json.dumps({
        "workload": "W2",
        "impl": "pytorch",
        "threads": args.threads,
        "ms_per_step_median": round(ms, 3),
        "tokens_per_s": round(B * T / (ms / 1e3), 1),
        "ms_per_step_min": round(min(times), 3),
        "params": num_params(model),
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
    mode.add_argument("--bench", action="store_true", help="W2: layers 4, heads 4, dim 256, seq 128, vocab 4096, batch 8")
    p.add_argument("--layers", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--dim", type=int)
    p.add_argument("--seq", type=int)
    p.add_argument("--vocab", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--weight-decay", "--wd", dest="weight_decay", type=float, default=0.0)
    p.add_argument("--no-save-final", dest="save_final", action="store_false",
                   help="do not write final.safetensors (parameters after the last step)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--bench-steps", type=int, default=10)
    args = p.parse_args(argv)

    if args.bench:
        w2 = dict(layers=4, heads=4, dim=256, seq=128, vocab=4096, batch=8)
        for k, v in w2.items():
            if getattr(args, k) is None:
                setattr(args, k, v)
        return bench(args)
    if args.check_fixture:
        return check_fixture(args)
    for k in ("layers", "heads", "dim", "seq", "vocab", "batch"):
        if getattr(args, k) is None:
            p.error(f"--make-fixture needs --{k}")
    make_fixture(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
