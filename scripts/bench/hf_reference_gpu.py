#!/usr/bin/env python3
"""HF transformers reference for `rhx bench`: the same model shape with random weights, eager
attention, `generate(output_attentions=True, return_dict_in_generate=True)` (what the paper's
authors ran), and the per-step Eq. 1 reduction (argmax of every head's last attention row) done
on the GPU after generation with one host copy.

    python hf_reference_gpu.py SPEC.json

SPEC (written by `rhx bench`): {"shape": {...ModelConfig fields...}, "dtype": "bf16",
"runs": [{"name": ..., "context": N, "batch": B, "new_tokens": T}], "seed": 0}

Prints one JSON object per run on stdout, prefixed with "HFRESULT ": context, batch, new tokens,
status ("ok" | "oom" | "error: ..."), prefill_s (prompt → first token), decode_tok_s (tokens after
the first, all sequences, over the time after the first), total_s (generate + reduction),
peak_gib (torch.cuda.max_memory_allocated).
"""
import json
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, StoppingCriteria, StoppingCriteriaList


def hf_config(s):
    common = dict(
        vocab_size=s["vocab_size"],
        hidden_size=s["hidden_size"],
        intermediate_size=s["intermediate_size"],
        num_hidden_layers=s["num_layers"],
        num_attention_heads=s["num_heads"],
        num_key_value_heads=s["num_kv_heads"],
        rms_norm_eps=s["rms_norm_eps"],
        max_position_embeddings=s["max_position_embeddings"],
        tie_word_embeddings=s["tie_word_embeddings"],
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    rope = {"rope_type": "default", "rope_theta": s["rope_theta"]}
    rs = s.get("rope_scaling")
    if isinstance(rs, dict) and rs.get("type") == "llama3":
        r = rs
        rope = {"rope_type": "llama3", "rope_theta": s["rope_theta"], "factor": r["factor"], "low_freq_factor": r["low_freq_factor"],
                "high_freq_factor": r["high_freq_factor"], "original_max_position_embeddings": r["original_max_position_embeddings"]}
    arch = s["arch"]
    if arch in ("llama", "qwen2"):
        cls, extra = transformers.LlamaConfig, dict(head_dim=s["head_dim"], attention_bias=False, mlp_bias=False)
    elif arch == "qwen3":
        cls, extra = transformers.Qwen3Config, dict(head_dim=s["head_dim"], attention_bias=False)
    elif arch == "phi3":
        cls, extra = transformers.Phi3Config, dict(partial_rotary_factor=s["partial_rotary_factor"])
    else:
        raise SystemExit(f"unsupported arch {arch}")
    try:
        cfg = cls(**common, **extra, rope_parameters=rope)
    except TypeError:
        rope_theta = rope.pop("rope_theta")
        cfg = cls(**common, **extra, rope_theta=rope_theta, rope_scaling=None if rope["rope_type"] == "default" else rope)
    return cfg


class Stamp(StoppingCriteria):
    """Records the time after each generated token (HF's loop syncs there anyway)."""

    def __init__(self):
        self.times = []

    def __call__(self, input_ids, scores, **kwargs):
        torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def eq1_reduce(attentions):
    """Per step, per layer, per head: argmax key position of the last query row (on the GPU),
    stacked and copied to the host once."""
    steps = []
    for step in attentions:  # tuple over steps of tuples over layers, [B, H, q, S]
        steps.append(torch.stack([a[:, :, -1, :].argmax(-1) for a in step]))  # [L, B, H]
    return [s.cpu() for s in steps]


def main():
    spec = json.load(open(sys.argv[1]))
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[spec["dtype"]]
    torch.manual_seed(spec.get("seed", 0))
    cfg = hf_config(spec["shape"])
    t0 = time.perf_counter()
    with torch.device("cuda"):
        try:
            model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="eager")
        except TypeError:
            model = AutoModelForCausalLM.from_config(cfg, torch_dtype=dtype, attn_implementation="eager")
    model.eval()
    torch.cuda.synchronize()
    print(f"HFINFO model built in {time.perf_counter() - t0:.1f}s, transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f}B params, {torch.cuda.get_device_name()}", flush=True)
    gen = torch.Generator(device="cuda").manual_seed(spec.get("seed", 0))
    for run in [{"name": "warmup", "context": 128, "batch": 1, "new_tokens": 4}] + spec["runs"]:
        ctx, b, n = run["context"], run["batch"], run["new_tokens"]
        res = {"name": run["name"], "context": ctx, "batch": b, "new_tokens": n}
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            ids = torch.randint(0, cfg.vocab_size, (b, ctx), device="cuda", generator=gen)
            stamp = Stamp()
            torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.no_grad():
                out = model.generate(
                    ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                    output_attentions=True, return_dict_in_generate=True, stopping_criteria=StoppingCriteriaList([stamp]),
                    pad_token_id=0, eos_token_id=None,
                )
            heads = eq1_reduce(out.attentions)
            torch.cuda.synchronize()
            end = time.perf_counter()
            t = stamp.times
            res.update(status="ok", prefill_s=t[0] - start, total_s=end - start, steps=len(heads),
                       decode_tok_s=b * (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 else None)
            del out, heads
        except torch.OutOfMemoryError:
            res.update(status="oom")
        except Exception as e:  # noqa: BLE001 — reported, the next run goes on
            res.update(status=f"error: {type(e).__name__}: {str(e)[:200]}")
        res["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        if run["name"] != "warmup":
            print("HFRESULT " + json.dumps(res), flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
