#!/usr/bin/env python3
"""Optional: check gpt2.py against Hugging Face transformers' GPT2LMHeadModel (eager attention).

Loads a fixture's init.safetensors into both models (HF names, no renaming), compares logits
and gradients on step 0, then trains both with the fixture's AdamW settings and compares losses.
Needs `.venv/bin/pip install transformers` (not installed by setup.sh). Usage:
    .venv/bin/python benches/reference/crosscheck_hf.py crates/core/tests/fixtures/gpt_tiny
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import gpt2  # noqa: E402


def main(d):
    from safetensors.torch import load_file
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(1)
    with open(os.path.join(d, "expected.json")) as f:
        exp = json.load(f)
    c = exp["config"]
    V, T = c["vocab"], c["seq"]
    sd = load_file(os.path.join(d, "init.safetensors"))
    cfg = GPT2Config(vocab_size=V, n_positions=T, n_embd=c["dim"], n_layer=c["layers"], n_head=c["heads"],
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                     activation_function="gelu_new", tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)
    cfg._attn_implementation = "eager"
    hf = GPT2LMHeadModel(cfg)
    hf.transformer.load_state_dict(sd, strict=True)
    hf.train()  # dropout probabilities are 0
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr(), "lm_head not tied"
    ref = gpt2.GPT2(c["layers"], c["heads"], c["dim"], T, V)
    ref.load_state_dict(sd, strict=True)
    tokens = common.read_llmc_tokens(os.path.join(d, "tokens.bin"))

    def mk(m):
        return torch.optim.AdamW(m.parameters(), lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                                 weight_decay=c["weight_decay"])

    o_ref, o_hf = mk(ref), mk(hf.transformer)
    hp = dict(hf.transformer.named_parameters())
    out = {"fixture": d, "max_logit_diff": 0.0, "max_grad_diff": 0.0, "losses_ref": [], "losses_hf": []}
    for step in range(c["steps"]):
        x, y = gpt2.llmc_batch(tokens, step, c["batch"], T)
        o_ref.zero_grad(set_to_none=True)
        o_hf.zero_grad(set_to_none=True)
        lr_, loss_r = ref(x, y)
        lh = hf(input_ids=x).logits
        loss_h = torch.nn.functional.cross_entropy(lh.view(-1, V), y.reshape(-1))
        loss_r.backward()
        loss_h.backward()
        out["max_logit_diff"] = max(out["max_logit_diff"], (lr_ - lh).abs().max().item())
        out["max_grad_diff"] = max(out["max_grad_diff"], max(
            (p.grad - hp[n].grad).abs().max().item() for n, p in ref.named_parameters()))
        out["losses_ref"].append(loss_r.item())
        out["losses_hf"].append(loss_h.item())
        o_ref.step()
        o_hf.step()
    out["max_loss_diff_vs_expected"] = max(abs(a - b) for a, b in zip(out["losses_hf"], exp["losses"]))
    out["ok"] = out["max_logit_diff"] < 1e-5 and out["max_grad_diff"] < 1e-5 and out["max_loss_diff_vs_expected"] < 1e-5
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
