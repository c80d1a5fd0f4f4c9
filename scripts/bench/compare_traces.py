#!/usr/bin/env python3
"""Agreement between `rhx trace` outputs (e.g. CPU f32 vs CUDA f32 vs CUDA bf16).

    python3 scripts/bench/compare_traces.py REFERENCE.jsonl OTHER.jsonl [OTHER2.jsonl ...]

For each OTHER: prompts with identical greedy tokens; over the steps both generations share
(up to the first differing token), steps with identical Eq. 1 head sets and the mean Jaccard of
the sets (two empty sets count as 1).
"""
import json, sys


def load(p):
    return {d["id"]: d for d in map(json.loads, open(p)) if "error" not in d}


def main():
    ref = load(sys.argv[1])
    for other_path in sys.argv[2:]:
        other = load(other_path)
        same_tokens = tok_total = tok_equal = 0
        steps = steps_equal = 0
        jacc = 0.0
        for pid, r in ref.items():
            o = other.get(pid)
            if o is None:
                continue
            same_tokens += r["tokens"] == o["tokens"]
            n = min(len(r["tokens"]), len(o["tokens"]))
            tok_total += max(len(r["tokens"]), len(o["tokens"]))
            for t in range(n):
                if r["tokens"][t] != o["tokens"][t]:
                    break
                tok_equal += 1
                a = {tuple(h) for h in r["steps"][t]["heads"]}
                b = {tuple(h) for h in o["steps"][t]["heads"]}
                steps += 1
                steps_equal += a == b
                jacc += 1.0 if not a and not b else len(a & b) / len(a | b)
        print(f"{other_path} vs {sys.argv[1]}: identical generations {same_tokens}/{len(ref)}; "
              f"tokens equal before first divergence {tok_equal}/{tok_total}; "
              f"identical head sets on shared steps {steps_equal}/{steps}; mean Jaccard {jacc / max(steps, 1):.4f}")


if __name__ == "__main__":
    main()
