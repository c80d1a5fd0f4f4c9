#!/usr/bin/env python3
"""Summarise a kernel timeline written by `RHX_TIMELINE=path rhx bench ...` (fused decode kernels
built with per-block timestamps, see `TIMELINE` in csrc/decode_kernels.cu).

Groups the block records into launches, takes the last complete decode step and prints, per kind
of launch averaged over the layers: when its first block started and when its first block was
released from the wait, relative to the end of the previous launch, and how long it ran after
that. A step of at most 8 rows runs on GEMVs: it is the launches after the second-to-last LM-head
GEMV (the GEMV with the most rows) up to the last one. A wider step (cuBLAS or `wgemm` GEMMs) starts
with its only `rmsnorm` (layer 0's input norm; the later norms are fused with the residual adds):
it is the launches from the second-to-last `rmsnorm` up to the last one. cuBLAS kernels are not
recorded: their time shows as 'start - prev end' of the launch after them.
Usage: scripts/bench/timeline.py timeline.csv [--launches]
"""
import csv
import sys
from collections import defaultdict



def launches(rows):
    """Records grouped into launches: (kernel, extra, grid) keys, counted back from the last
    record of each key in groups of `grid` blocks (every block of a launch is recorded)."""
    by_key = defaultdict(list)
    for r in rows:
        by_key[(r["kernel"], r["name"], r["extra"], r["grid"])].append(r)
    out = []
    for (kernel, kname, extra, grid), rs in by_key.items():
        rs.sort(key=lambda r: r["seq"])
        groups = defaultdict(list)
        for i, r in enumerate(rs):
            groups[(len(rs) - 1 - i) // grid].append(r)
        for g in groups.values():
            if len(g) != grid:
                continue  # cut by the ring
            waited = [r["waited_ns"] for r in g if r["waited_ns"] > 0]
            out.append({
                "kernel": kernel, "name": kname, "extra": extra, "grid": grid,
                "seq": min(r["seq"] for r in g),
                "start": min(r["start_ns"] for r in g),
                "released": min(waited) if waited else None,
                "released_last": max(waited) if waited else None,
                "end": max(r["end_ns"] for r in g),
                "sms": len({r["sm"] for r in g}),
            })
    out.sort(key=lambda l: l["seq"])
    return out


def name(l):
    k = l["name"]
    if k in ("gemv", "wgemm"):
        return f"{k} N={l['extra'] & 0xFFFFFF} K={l['extra'] >> 24} grid={l['grid']}"
    return f"{k} grid={l['grid']}"


def main():
    path = sys.argv[1]
    with open(path) as f:
        # Every column is an integer but the kernel's name (rhx writes it from its table).
        rows = [{k: (v if k == "name" else int(v)) for k, v in r.items()} for r in csv.DictReader(f)]
    ls = launches(rows)
    rows_of = lambda l: l["extra"] & 0xFFFFFF  # GEMV extra: K << 24 | N
    if any(l["name"] == "gemv" for l in ls):
        head = max(rows_of(l) for l in ls if l["name"] == "gemv")
        heads = [i for i, l in enumerate(ls) if l["name"] == "gemv" and rows_of(l) == head]
        if len(heads) < 2:
            sys.exit("fewer than two LM-head launches recorded: no complete step")
        step = ls[heads[-2] + 1: heads[-1] + 1]
    else:
        starts = [i for i, l in enumerate(ls) if l["name"] == "rmsnorm"]
        if len(starts) < 2:
            sys.exit("fewer than two step-opening rmsnorm launches recorded: no complete wide step")
        step = ls[starts[-2]: starts[-1]]
    t0 = min(l["start"] for l in step)
    total = max(l["end"] for l in step) - t0
    print(f"{len(rows)} block records, {len(ls)} complete launches; last step: {len(step)} launches, "
          f"{total / 1e3:.1f} µs from its first block's start to its last block's end")
    if "--launches" in sys.argv:
        prev_end = None
        for l in step:
            rel = lambda t: f"{(t - t0) / 1e3:8.2f}" if t is not None else "       -"
            print(f"{name(l):32} start {rel(l['start'])} released {rel(l['released'])} end {rel(l['end'])}"
                  f"  ran {(l['end'] - (l['released'] or l['start'])) / 1e3:6.2f} µs on {l['sms']} SMs")
            prev_end = l["end"]
    agg = defaultdict(lambda: defaultdict(list))
    prev = None
    for l in step:
        a = agg[name(l)]
        if prev is not None:
            a["start - prev end"].append(l["start"] - prev["end"])
            if l["released"] is not None:
                a["released - prev end"].append(l["released"] - prev["end"])
        a["end - prev end"].append(l["end"] - (prev["end"] if prev else l["start"]))
        a["end - released"].append(l["end"] - (l["released"] or l["start"]))
        a["sms"].append(l["sms"])
        prev = l
    cols = ["start - prev end", "released - prev end", "end - released", "end - prev end"]
    print(f"\n{'launch kind':32} {'n':>4} " + " ".join(f"{c:>20}" for c in cols) + "   (µs, mean over launches)")
    for k, a in agg.items():
        cells = [f"{sum(a[c]) / len(a[c]) / 1e3:20.2f}" if a[c] else f"{'-':>20}" for c in cols]
        print(f"{k:32} {len(a['end - released']):4} " + " ".join(cells))
    print("\n'end - prev end' is the launch's share of the step's critical path; the sum over the step is "
          "the step time.")


if __name__ == "__main__":
    main()
