#!/usr/bin/env python3
"""The plain-PyTorch reference of `rhx bench` computes the real model: on the CPU in f32, a tiny
Llama shape (2 layers, hidden 64, 4 heads over 2 KV heads, vocab 256, llama3 rope scaling whose
three frequency bands all matter at these positions, untied LM head), its prefill + eager decode
steps give the same greedy tokens, the same per-step per-head argmax key positions and the same
probabilities (within 1e-4) as HF `LlamaForCausalLM` (eager attention, `generate` with
`output_attentions`) loaded with the same weights. Batch 2, prefill one sequence at a time
(chunking) and all at once. Also runs the script's main() on a SPEC with `--device cpu`.

    python scripts/bench/test_torch_graph_reference.py   (exit 0 = pass)

It needs torch and transformers in one Python (the GPU machine's /opt/torch/.venv has both, and
`rhx bench` runs it there before the reference: see benchmarks/gpu.md); the project virtualenv
has libtorch for rhx but not an importable torch, so CI does not run it.
"""
import io
import json
import os
import sys
import tempfile
from contextlib import redirect_stdout

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_graph_reference as ref  # noqa: E402
from hf_reference_gpu import hf_config  # noqa: E402
from transformers import LlamaForCausalLM  # noqa: E402

SHAPE = {
    "arch": "llama", "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 4,
    "num_kv_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    # low_freq_wavelen 32, high 8: head_dim 16's wavelengths (6.3, 20, 63, ...) fall in all three bands
    "rope_scaling": {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
    "partial_rotary_factor": 1.0, "max_position_embeddings": 256, "tie_word_embeddings": False, "attention_bias": False,
    "mlp_bias": False, "bos_token_id": None, "eos_token_ids": [],
}
CTX, NEW, B = 16, 10, 2


def hf_model(w):
    cfg = hf_config(SHAPE)
    try:
        m = LlamaForCausalLM._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    except TypeError:
        m = LlamaForCausalLM._from_config(cfg, attn_implementation="eager", torch_dtype=torch.float32)
    H, KVH, hd, F_ = SHAPE["num_heads"], SHAPE["num_kv_heads"], SHAPE["head_dim"], SHAPE["intermediate_size"]
    sd = {"model.embed_tokens.weight": w["embed"], "model.norm.weight": w["norm"], "lm_head.weight": w["lm_head"]}
    for i, lw in enumerate(w["layers"]):
        p = f"model.layers.{i}."
        q, k, v = lw["wqkv"].split([H * hd, KVH * hd, KVH * hd])
        g, u = lw["wgu"].split([F_, F_])
        sd.update({p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k, p + "self_attn.v_proj.weight": v,
                   p + "self_attn.o_proj.weight": lw["wo"], p + "mlp.gate_proj.weight": g, p + "mlp.up_proj.weight": u,
                   p + "mlp.down_proj.weight": lw["wdown"], p + "input_layernorm.weight": lw["in_norm"],
                   p + "post_attention_layernorm.weight": lw["post_norm"]})
    own = m.state_dict()
    missing = [k for k in own if k not in sd and "rotary" not in k]
    assert not missing, f"weights not copied into HF: {missing}"
    m.load_state_dict(sd, strict=False)
    m.eval()
    return m


def hf_generate(m, ids):
    with torch.no_grad():
        out = m.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
                         output_attentions=True, return_dict_in_generate=True, pad_token_id=0, eos_token_id=None)
    toks = out.sequences[:, CTX:]
    pos = torch.stack([torch.stack([a[:, :, -1, :].argmax(-1) for a in step]) for step in out.attentions])  # [n, L, B, H]
    prob = torch.stack([torch.stack([a[:, :, -1, :].max(-1).values for a in step]) for step in out.attentions])
    return toks, pos, prob


def check(name, ours, theirs):
    toks, pos, prob = ours
    htoks, hpos, hprob = theirs
    assert toks.shape == htoks.shape == (B, NEW), (toks.shape, htoks.shape)
    assert torch.equal(toks, htoks), f"{name}: greedy tokens differ:\n ours {toks.tolist()}\n HF   {htoks.tolist()}"
    assert pos.shape == hpos.shape == (NEW, SHAPE["num_layers"], B, SHAPE["num_heads"]), (pos.shape, hpos.shape)
    same = (pos.long() == hpos).float().mean().item()
    assert same == 1.0, f"{name}: argmax positions agree on {same:.1%} only:\n ours {pos.tolist()}\n HF   {hpos.tolist()}"
    err = (prob - hprob).abs().max().item()
    assert err < 1e-4, f"{name}: argmax probabilities differ by up to {err:.2e}"
    # the capture is informative: not every head looks at the same place
    assert len(set(pos.flatten().tolist())) > 3, "degenerate attention (every head on one position)"
    print(f"{name}: {B}×{NEW} tokens equal, {pos.numel()} argmax positions equal, probabilities within {err:.1e}")


def main():
    torch.manual_seed(0)
    w = ref.build_weights(SHAPE, torch.float32, "cpu", seed=1, init_std=0.3)
    ids = torch.randint(0, SHAPE["vocab_size"], (B, CTX), generator=torch.Generator().manual_seed(2))
    theirs = hf_generate(hf_model(w), ids)
    for name, chunk in (("batched prefill", 1 << 15), ("one sequence per prefill chunk", CTX)):
        ours = ref.generate(SHAPE, w, ids, NEW, torch.device("cpu"), torch.float32, use_graph=False, prefill_chunk_tokens=chunk)
        check(name, ours, theirs)
    # Without llama3 scaling the tokens or positions change: the comparison sees rope details.
    plain = dict(SHAPE, rope_scaling={"type": "none"})
    toks, pos, _ = ref.generate(plain, w, ids, NEW, torch.device("cpu"), torch.float32)
    assert not (torch.equal(toks, theirs[0]) and torch.equal(pos.long(), theirs[1])), "the test cannot see rope scaling"
    # The script's entry point on a SPEC, as `rhx bench` runs it on a CPU.
    spec = {"shape": SHAPE, "dtype": "bf16", "seed": 0,
            "runs": [{"name": "b1", "context": 20, "batch": 1, "new_tokens": 4}, {"name": "b3", "context": 8, "batch": 3, "new_tokens": 3},
                     {"name": "auto", "context": 8, "batch": "auto", "new_tokens": 3}]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    buf = io.StringIO()
    sys.argv = ["torch_graph_reference.py", f.name, "--device", "cpu"]
    with redirect_stdout(buf):
        ref.main()
    os.unlink(f.name)
    lines = buf.getvalue().splitlines()
    assert any(line.startswith("TORCHINFO torch=") for line in lines), lines
    res = [json.loads(line[len("TORCHRESULT "):]) for line in lines if line.startswith("TORCHRESULT ")]
    assert [r["name"] for r in res] == ["b1", "b3", "auto"], res
    assert res[0]["status"] == res[1]["status"] == "ok" and res[0]["decode_tok_s"] > 0 and res[1]["batch"] == 3, res
    assert res[2]["status"].startswith("error"), res
    # An unsupported shape is reported per run, not raised.
    spec["shape"] = dict(SHAPE, arch="gemma")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    buf = io.StringIO()
    sys.argv = ["torch_graph_reference.py", f.name, "--device", "cpu"]
    with redirect_stdout(buf):
        ref.main()
    os.unlink(f.name)
    res = [json.loads(line[len("TORCHRESULT "):]) for line in buf.getvalue().splitlines() if line.startswith("TORCHRESULT ")]
    assert len(res) == 3 and all(r["status"] == "error: unsupported arch gemma" for r in res), res
    print("script main(): TORCHINFO and TORCHRESULT lines as rhx bench reads them")
    print("torch graph reference: all checks passed")


if __name__ == "__main__":
    main()
