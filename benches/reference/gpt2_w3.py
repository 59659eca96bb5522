#!/usr/bin/env python3
"""W3 of shared/BENCHMARKS.md in PyTorch: GPT-2 124M on one GPU, batch 16 x 1024, bf16 autocast
with fp32 master weights, AdamW. Prints one JSON line: tokens/s and MFU = 6 * N * tokens/s / peak.

Model: pre-LN GPT-2 (12 layers, 12 heads, dim 768, context 1024), GELU (tanh), learned position
embeddings, tied input/output embeddings, vocab padded to 50304 as llm.c does. Attention is
F.scaled_dot_product_attention(is_causal=True), so PyTorch uses its flash kernel: the strongest
eager baseline, as llm.c's published figures use flash attention too. Data are random tokens
(speed only; nothing is learned). --compile wraps the model in torch.compile.

Reference tool only: run by scripts/gpu-check.sh on a GPU machine, never in CI.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# Dense bf16 peak per GPU (tensor cores, no sparsity), FLOP/s, by name substring.
PEAKS = [("H200", 989e12), ("H100", 989e12), ("A100", 312e12), ("L40S", 362e12), ("4090", 165e12)]


class Block(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln_1 = nn.LayerNorm(c)
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=-1)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, vocab=50304, ctx=1024, layers=12, heads=12, dim=768):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(ctx, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied output embedding
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def peak_flops(name):
    for key, peak in PEAKS:
        if key in name:
            return peak
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--layers", type=int, default=12, help="fewer for a quick smoke run")
    args = ap.parse_args()

    torch.manual_seed(0)
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    model = GPT2(layers=args.layers).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.1, fused=True)
    run = torch.compile(model) if args.compile else model
    idx = torch.randint(0, 50257, (args.batch, args.seq), device=dev)
    tgt = torch.randint(0, 50257, (args.batch, args.seq), device=dev)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = run(idx, tgt)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / args.steps
    name = torch.cuda.get_device_name()
    tokens_s = args.batch * args.seq / dt
    peak = peak_flops(name)
    print(json.dumps({
        "workload": "W3",
        "impl": "torch.compile" if args.compile else "pytorch-eager",
        "gpu": name,
        "torch": torch.__version__,
        "params": n_params,
        "layers": args.layers,
        "batch": args.batch,
        "seq": args.seq,
        "ms_per_step": round(dt * 1e3, 2),
        "tokens_per_s": round(tokens_s),
        "mfu": round(6 * n_params * tokens_s / peak, 4) if peak else None,
        "peak_flops": peak,
        "loss": round(float(loss), 4),
        "finite": math.isfinite(float(loss)),
    }))


if __name__ == "__main__":
    main()
