#!/usr/bin/env python3
"""Prompts of the rhx ↔ HF agreement check (scripts/bench/bf16_agreement.py), written once and
committed:

    .venv/bin/python scripts/bench/bf16_prompts.py     # needs transformers + gguf (SmolLM2's tokenizer)

* experiments/prompts/niah_section3_grid.jsonl: NIAH prompts of the Section 3 kind (the default
  profile's grid of experiments/section3.rhx: lengths 500, 1000, 2000 × depths 0, 0.25, 0.5,
  0.75, 1; one run per cell), built by scripts/fixtures/fx_niah.py's `build_prompts` (the
  construction of experiments/prompts/niah_smoke.jsonl) with SmolLM2's tokenizer and UUID seed 3
  (other UUIDs than the smoke set's seed 0; rhx's `niah` dataset op draws its own, so these are
  not its exact prompts, only the same kind);
* experiments/prompts/niah_tiny_text.jsonl: short raw-text NIAH prompts for the tiny random
  checkpoints (vocab 256 bytes, 256 positions: ≤ 210 bytes, so prompt + 40 new tokens
  fit), traced with the byte tokenizer of `hf_trace.py --write-byte-tokenizer`.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts/fixtures"))

GRID = [(L, d) for L in (500, 1000, 2000) for d in (0.0, 0.25, 0.5, 0.75, 1.0)]
SEED = 3


def tiny_prompts() -> list[dict]:
    from fx_niah import load_haystack

    words = load_haystack().split()
    rng = random.Random(SEED)
    out = []
    for i, (n_chars, depth) in enumerate([(90, 0.1), (90, 0.5), (90, 0.9), (130, 0.0), (130, 0.5), (130, 1.0),
                                          (150, 0.25), (150, 0.75)]):
        start = rng.randrange(0, len(words) - 200)
        hay = ""
        for w in words[start:]:
            if len(hay) + len(w) + 1 > n_chars:
                break
            hay = (hay + " " + w) if hay else w
        code = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(6))
        needle = f"The magic word is {code}."
        cut = hay.rfind(" ", 0, int(len(hay) * depth) + 1) if depth > 0 else 0
        ctx = (hay[:cut] + " " + needle + hay[cut:]).strip() if cut > 0 else needle + " " + hay
        text = f"{ctx}\nQ: What is the magic word?\nA:"
        assert len(text.encode()) <= 210, len(text)
        out.append({"id": f"tiny-c{n_chars}-d{depth}-{i}", "text": text, "needle": needle, "answer": code})
    return out


def main() -> None:
    from transformers import AutoTokenizer

    import fx_common as C
    import fx_niah

    tok = AutoTokenizer.from_pretrained(C.SMOLLM2_DIR, gguf_file=C.SMOLLM2_GGUF)
    grid = fx_niah.build_prompts(tok, seed=SEED, grid=GRID)
    for p in grid:
        p["id"] = p["id"].replace("-r0", f"-s{SEED}")
    fx_niah.write_jsonl(grid, REPO / "experiments/prompts/niah_section3_grid.jsonl")
    fx_niah.write_jsonl(tiny_prompts(), REPO / "experiments/prompts/niah_tiny_text.jsonl")


if __name__ == "__main__":
    main()
