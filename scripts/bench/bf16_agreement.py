#!/usr/bin/env python3
"""Agreement of an `rhx trace` output with scripts/bench/hf_trace.py's on the same prompts.

    python3 scripts/bench/bf16_agreement.py RHX.jsonl HF.jsonl [--label NAME] [--json OUT.json]

(Either file may be of either kind: two hf_trace.py outputs, e.g. HF bf16 against HF f32, give
the agreement that bf16 rounding alone leaves; the margins come from the second file.)
        [--md OUT.md] [--require-identical] [--ids-from PROMPTS.jsonl]

Per prompt:
* identical: the two greedy generations are the same token sequence (yes/no);
* shared: steps up to the first differing token (all steps when identical; the differing step
  itself is not shared: from there on the two runs decode different inputs);
* jaccard: mean over the shared steps of |A ∩ B| / |A ∪ B| of the two Eq. 1 head sets (two
  empty sets count 1); same_sets: shared steps whose head sets are identical;
* argmax_agree: over the shared steps, the fraction of (step, layer, head) whose attention argmax
  position i* is the same in both (a finer signal than the head sets, which are mostly empty
  for a model that does not copy from the needle);
* first_diff: the first step whose tokens differ (none when identical; when one generation is a
  prefix of the other, the step after the shorter one's end: one stopped at EOS there);
* hf_margin: HF's top-1 minus top-2 logit (f32 of its logits) at first_diff; hf_gap_rhx_token:
  HF's top-1 logit minus its logit for rhx's token there (when that token is in HF's top 5);
  rhx_margin: the same from the rhx trace if it records logits (`rhx trace` does not: null).
Totals: identical generations, steps shared / steps (max of the two lengths, summed), identical
head-set steps / shared, mean of the per-step Jaccard over all shared steps (and the mean of the
per-prompt means), argmax agreement over all shared (step, head) pairs.

The prompts must be the same token sequences: prompt_tokens, needle_span and prompt_pieces are
checked per prompt, and any difference stops the script (status 2).
--require-identical: exit 1 unless every generation, every shared head set and every argmax
is identical (the f32 control).
"""
from __future__ import annotations

import argparse
import json
import sys


def load(path):
    out, header = {}, None
    for s in open(path, encoding="utf-8"):
        if not s.strip():
            continue
        d = json.loads(s)
        if "hf_trace" in d:
            header = d["hf_trace"]
            continue
        out[str(d["id"])] = d
    return out, header


def jaccard(a, b):
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def compare(rhx: dict, hf: dict) -> tuple[list[dict], dict]:
    rows, bad = [], []
    for pid, h in hf.items():
        r = rhx.get(pid)
        if r is None or "error" in r:
            bad.append(f"{pid}: missing or failed in the rhx trace ({r and r.get('error')})")
            continue
        if r["prompt_tokens"] != h["prompt_tokens"] or r["needle_span"] != h["needle_span"]:
            bad.append(f"{pid}: prompt tokens or needle span differ (rhx {r['prompt_tokens']}, hf {h['prompt_tokens']})")
        if r.get("prompt_pieces") and r["prompt_pieces"] != h["prompt_pieces"]:
            bad.append(f"{pid}: prompt pieces differ")
        rt, ht = r["tokens"], h["tokens"]
        n = min(len(rt), len(ht))
        shared = next((t for t in range(n) if rt[t] != ht[t]), n)
        identical = rt == ht
        first_diff = None if identical else shared
        js, same, am_eq, am_n = [], 0, 0, 0
        for t in range(shared):
            a = {tuple(x) for x in r["steps"][t]["heads"]}
            b = {tuple(x) for x in h["steps"][t]["heads"]}
            js.append(jaccard(a, b))
            same += a == b
            ra, ha = r["steps"][t].get("argmax"), h["steps"][t].get("argmax")
            if ra is not None and ha is not None and len(ra) == len(ha):
                am_eq += sum(x == y for x, y in zip(ra, ha))
                am_n += len(ra)
        hf_margin = gap = rhx_margin = None
        if first_diff is not None and first_diff < len(h["steps"]):
            hs = h["steps"][first_diff]
            hf_margin = hs.get("margin")
            if first_diff < len(rt) and rt[first_diff] in hs.get("top5_ids", []):
                gap = hs["top5_logits"][0] - hs["top5_logits"][hs["top5_ids"].index(rt[first_diff])]
        if first_diff is not None and first_diff < len(r["steps"]):
            rs = r["steps"][first_diff]
            if "margin" in rs:
                rhx_margin = rs["margin"]
            elif "top2_logits" in rs:
                rhx_margin = rs["top2_logits"][0] - rs["top2_logits"][1]
        rows.append({
            "id": pid, "prompt_tokens": h["prompt_tokens"], "rhx_steps": len(rt), "hf_steps": len(ht),
            "identical": identical, "shared": shared, "jaccard": sum(js) / len(js) if js else None,
            "same_sets": same, "argmax_agree": am_eq / am_n if am_n else None, "argmax_pairs": am_n,
            "first_diff": first_diff, "hf_margin": hf_margin, "hf_gap_rhx_token": gap, "rhx_margin": rhx_margin,
            "rhx_text": r.get("text"), "hf_text": h.get("text"),
            "_jsum": sum(js), "_am_eq": am_eq,
        })
    if bad:
        print("bf16_agreement: THE PROMPTS DIFFER:\n  " + "\n  ".join(bad), file=sys.stderr)
        sys.exit(2)
    shared = sum(r["shared"] for r in rows)
    am_n = sum(r["argmax_pairs"] for r in rows)
    per_prompt_j = [r["jaccard"] for r in rows if r["jaccard"] is not None]
    tot = {
        "prompts": len(rows),
        "identical": sum(r["identical"] for r in rows),
        "identical_fraction": sum(r["identical"] for r in rows) / max(len(rows), 1),
        "steps_shared": shared,
        "steps_total": sum(max(r["rhx_steps"], r["hf_steps"]) for r in rows),
        "same_sets": sum(r["same_sets"] for r in rows),
        "jaccard_steps": sum(r["_jsum"] for r in rows) / shared if shared else None,
        "jaccard_prompts": sum(per_prompt_j) / len(per_prompt_j) if per_prompt_j else None,
        "argmax_agree": sum(r["_am_eq"] for r in rows) / am_n if am_n else None,
        "min_hf_margin_at_first_diff": min((r["hf_margin"] for r in rows if r["hf_margin"] is not None), default=None),
    }
    for r in rows:
        del r["_jsum"], r["_am_eq"]
    return rows, tot


def f(x, d=4):
    return "–" if x is None else f"{x:.{d}f}"


def markdown(label, rows, tot, rhx_meta, hf_meta) -> str:
    out = [f"### {label}", ""]
    if hf_meta:
        out.append(f"HF: transformers {hf_meta['versions']['transformers']}, torch {hf_meta['versions']['torch']}, "
                   f"{hf_meta['dtype']} on {hf_meta['device']}{' (' + hf_meta['gpu'] + ')' if hf_meta.get('gpu') else ''}, eager attention.")
        out.append("")
    out += ["| prompt | tokens | identical | steps shared (rhx/HF) | mean Jaccard | identical sets | argmax agree | first diff | HF margin there | HF top-1 − rhx token |",
            "|---|---:|:---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['id']} | {r['prompt_tokens']} | {'yes' if r['identical'] else 'no'} | "
                   f"{r['shared']} ({r['rhx_steps']}/{r['hf_steps']}) | {f(r['jaccard'])} | {r['same_sets']}/{r['shared']} | "
                   f"{f(r['argmax_agree'])} | {'none' if r['first_diff'] is None else r['first_diff']} | "
                   f"{f(r['hf_margin'], 3)} | {f(r['hf_gap_rhx_token'], 3)} |")
    out += ["", f"**Total**: identical generations {tot['identical']}/{tot['prompts']} ({100 * tot['identical_fraction']:.0f}%); "
            f"steps shared {tot['steps_shared']}/{tot['steps_total']}; identical head sets {tot['same_sets']}/{tot['steps_shared']}; "
            f"mean Jaccard {f(tot['jaccard_steps'])} over steps ({f(tot['jaccard_prompts'])} mean of prompts); "
            f"argmax agreement {f(tot['argmax_agree'])}.", ""]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rhx")
    ap.add_argument("hf")
    ap.add_argument("--label")
    ap.add_argument("--json")
    ap.add_argument("--md")
    ap.add_argument("--require-identical", action="store_true")
    ap.add_argument("--ids-from", metavar="PROMPTS.jsonl", help="compare only the prompts of this file")
    a = ap.parse_args()
    rhx, _ = load(a.rhx)
    hf, hf_meta = load(a.hf)
    if a.ids_from:
        keep = [str(json.loads(s)["id"]) for s in open(a.ids_from, encoding="utf-8") if s.strip()]
        missing = [i for i in keep if i not in hf]
        if missing:
            print(f"bf16_agreement: {len(missing)} prompts of {a.ids_from} not in {a.hf}: {missing[:3]}", file=sys.stderr)
            sys.exit(2)
        hf = {i: hf[i] for i in keep}
    rows, tot = compare(rhx, hf)
    label = a.label or f"{a.rhx} vs {a.hf}"
    md = markdown(label, rows, tot, None, hf_meta)
    print(md)
    if a.md:
        open(a.md, "w", encoding="utf-8").write(md + "\n")
    if a.json:
        json.dump({"label": label, "rhx": a.rhx, "hf": a.hf, "hf_meta": hf_meta, "totals": tot, "prompts": rows},
                  open(a.json, "w", encoding="utf-8"), indent=1, ensure_ascii=False)
    if a.require_identical:
        ok = tot["identical"] == tot["prompts"] and tot["same_sets"] == tot["steps_shared"] and tot["argmax_agree"] in (None, 1.0)
        if not ok:
            print(f"bf16_agreement: NOT IDENTICAL ({label})", file=sys.stderr)
            sys.exit(1)
        print(f"bf16_agreement: identical ({label})", file=sys.stderr)


if __name__ == "__main__":
    main()
