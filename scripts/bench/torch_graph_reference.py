#!/usr/bin/env python3
"""Plain-PyTorch reference for `rhx bench`: the same model shape with random weights, no
transformers model, a decode loop as a careful PyTorch user would write it for speed:

* weights: random (seeded), fused q|k|v and gate|up projections;
* a static KV cache per layer, `[B, KVH, context + new_tokens, head_dim]`, preallocated;
* prefill of the whole prompt with `F.scaled_dot_product_attention(is_causal=True)` (GQA through
  `enable_gqa`), writing the cache, a few sequences at a time (`prefill_chunk_tokens`); the
  prompt's last query row is scored explicitly for step 0's capture;
* a decode step that reads only device tensors (token buffer, position, step counter), so it is
  captured once as a CUDA graph (after a warm-up on a side stream) and replayed for every
  further token: embedding, per layer RMSNorm (f32 normalise, cast, times weight, as HF) → qkv
  matmul → RoPE at `pos` → `index_copy_` of k, v into column `pos` → scores over the whole cache
  capacity with the columns after `pos` masked (GQA: q as [B, KVH, G, hd]) → softmax in f32 →
  the Eq. 1 capture (each head's argmax key position and its probability, written at the step
  index into preallocated `[steps, L, B, H]` int32 / f32 buffers: the per-step capture reduced on
  the GPU) → P·V → o proj + residual → MLP silu(gate)·up + residual → final norm → LM head →
  greedy argmax written into the token buffer; pos += 1 and step += 1 on the device;
* one host copy of the captured positions, probabilities and tokens at the end.

    python torch_graph_reference.py SPEC.json [--device cuda|cpu] [--check-graph]

--check-graph (CUDA): first generates a few tokens on the SPEC's shape with eager steps and with
the graph, and prints `TORCHCHECK ...` saying whether tokens and captures are equal.

SPEC (written by `rhx bench`, as for hf_reference_gpu.py): {"shape": {...ModelConfig fields...},
"dtype": "bf16", "runs": [{"name": ..., "context": N, "batch": B | "auto", "new_tokens": T}],
"seed": 0, "device": "cuda" (optional), "prefill_chunk_tokens": 32768 (optional)}

Counts as rhx and the HF script do: prefill_s = prompt → first token; decode_tok_s = tokens after
the first (all sequences) over the time after the first, warm-up and graph capture included;
total_s = all of it plus the host copy; peak_gib = torch.cuda.max_memory_allocated. Prints
`TORCHINFO torch=<version> device=<name> ...` once and `TORCHRESULT {json}` per run (status "ok" |
"oom" | "error: ..."). On `--device cpu` (tests) it runs in f32 without a graph.
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

SUPPORTED = ("llama", "qwen2", "qwen3", "phi3")


class Unsupported(Exception):
    pass


def check_shape(s):
    if s["arch"] not in SUPPORTED:
        raise Unsupported(f"unsupported arch {s['arch']}")
    rs = s.get("rope_scaling")
    kind = rs.get("type", "none") if isinstance(rs, dict) else "none"
    if kind not in ("none", "llama3", "linear"):
        raise Unsupported(f"unsupported arch: rope scaling {kind}")
    if s.get("mlp_bias"):
        raise Unsupported("unsupported arch: mlp bias")
    if s.get("attention_bias") and s["arch"] != "qwen2":
        raise Unsupported("unsupported arch: attention bias outside qwen2")


def rotary_dim(s):
    d = int(s["head_dim"] * s.get("partial_rotary_factor", 1.0))
    return d - d % 2


def inv_freq(s):
    """HF's rope initialisation (default, linear, llama3), in f32."""
    dim = rotary_dim(s)
    base = s["rope_theta"]
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(dtype=torch.float) / dim))
    rs = s.get("rope_scaling")
    kind = rs.get("type", "none") if isinstance(rs, dict) else "none"
    if kind == "linear":
        inv = inv / rs["factor"]
    elif kind == "llama3":
        factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        inv = torch.where(medium, smoothed, inv_l)
    return inv


def rope_tables(s, n, device, dtype):
    """cos, sin [n, rotary_dim] for positions 0..n-1, computed in f32 as HF does, then cast."""
    freqs = torch.outer(torch.arange(n, dtype=torch.float32), inv_freq(s))
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(device=device, dtype=dtype), emb.sin().to(device=device, dtype=dtype)


def build_weights(s, dtype=torch.bfloat16, device="cpu", seed=0, init_std=0.02):
    """Random weights, fused: {"embed", "lm_head", "norm", "layers": [{"in_norm", "wqkv",
    ("bqkv"), ("q_norm", "k_norm"), "wo", "post_norm", "wgu", "wdown"}]}. Norm weights are 1 plus
    noise, so that a test comparing with HF exercises them."""
    check_shape(s)
    g = torch.Generator(device=device).manual_seed(seed)
    D, F_, V = s["hidden_size"], s["intermediate_size"], s["vocab_size"]
    H, KVH, hd = s["num_heads"], s["num_kv_heads"], s["head_dim"]

    def rnd(*shape, std=init_std):
        return (torch.randn(*shape, generator=g, device=device, dtype=dtype) * std)

    def norm_w(n):
        return 1.0 + rnd(n, std=0.1)

    w = {"embed": rnd(V, D, std=1.0), "norm": norm_w(D), "layers": []}
    w["lm_head"] = w["embed"] if s.get("tie_word_embeddings") else rnd(V, D)
    for _ in range(s["num_layers"]):
        lw = {"in_norm": norm_w(D), "wqkv": rnd((H + 2 * KVH) * hd, D), "wo": rnd(D, H * hd), "post_norm": norm_w(D), "wgu": rnd(2 * F_, D), "wdown": rnd(D, F_)}
        if s["arch"] == "qwen2" and s.get("attention_bias"):
            lw["bqkv"] = rnd((H + 2 * KVH) * hd)
        if s["arch"] == "qwen3":
            lw["q_norm"], lw["k_norm"] = norm_w(hd), norm_w(hd)
        w["layers"].append(lw)
    return w


def rms_norm(x, weight, eps):
    """As HF's LlamaRMSNorm: normalise in f32, cast back, times the weight."""
    dt = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dt)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x, cos, sin, rot):
    """x [..., hd]; cos/sin broadcastable to x[..., :rot]."""
    if rot == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    xr, xp = x[..., :rot], x[..., rot:]
    return torch.cat((xr * cos + rotate_half(xr) * sin, xp), dim=-1)


class Decoder:
    """Static state of one generation: KV cache, token buffer, position and step counters,
    capture buffers. `prefill` fills it from the prompt; `step` is the graph-capturable decode
    step."""

    def __init__(self, s, w, batch, context, new_tokens, device, dtype, prefill_chunk_tokens=32768):
        self.s, self.w, self.B, self.ctx, self.n = s, w, batch, context, new_tokens
        self.dev, self.dtype = device, dtype
        self.H, self.KVH, self.hd, self.L = s["num_heads"], s["num_kv_heads"], s["head_dim"], s["num_layers"]
        self.G = self.H // self.KVH
        self.rot = rotary_dim(s)
        self.eps = s["rms_norm_eps"]
        self.scale = self.hd ** -0.5
        self.S = context + new_tokens
        self.chunk = max(1, prefill_chunk_tokens // max(context, 1))
        self.cos, self.sin = rope_tables(s, self.S, device, dtype)
        # zeros: P·V reads every column (masked ones with weight 0, which must not meet a NaN)
        self.k = [torch.zeros(batch, self.KVH, self.S, self.hd, device=device, dtype=dtype) for _ in range(self.L)]
        self.v = [torch.zeros(batch, self.KVH, self.S, self.hd, device=device, dtype=dtype) for _ in range(self.L)]
        self.tok = torch.zeros(batch, dtype=torch.long, device=device)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.step_i = torch.zeros(1, dtype=torch.long, device=device)
        self.cols = torch.arange(self.S, device=device)
        self.cap_pos = torch.zeros(new_tokens, self.L, batch, self.H, dtype=torch.int32, device=device)
        self.cap_p = torch.zeros(new_tokens, self.L, batch, self.H, dtype=torch.float32, device=device)
        self.out = torch.zeros(new_tokens, batch, dtype=torch.long, device=device)

    def _qkv(self, lw, h):
        qkv = h @ lw["wqkv"].t()
        if "bqkv" in lw:
            qkv = qkv + lw["bqkv"]
        H, KVH, hd = self.H, self.KVH, self.hd
        q, k, v = qkv.split([H * hd, KVH * hd, KVH * hd], dim=-1)
        q = q.unflatten(-1, (H, hd))
        k = k.unflatten(-1, (KVH, hd))
        v = v.unflatten(-1, (KVH, hd))
        if "q_norm" in lw:
            q, k = rms_norm(q, lw["q_norm"], self.eps), rms_norm(k, lw["k_norm"], self.eps)
        return q, k, v

    def _mlp(self, lw, x):
        h = rms_norm(x, lw["post_norm"], self.eps)
        g, u = (h @ lw["wgu"].t()).chunk(2, dim=-1)
        return x + (F.silu(g) * u) @ lw["wdown"].t()

    def _capture(self, probs, layer_caps):
        """probs [b, KVH, G, S] f32 → each head's (argmax position, probability) [b, H]."""
        p, i = probs.max(dim=-1)
        layer_caps.append((i.flatten(1).to(torch.int32), p.flatten(1)))

    @torch.no_grad()
    def prefill(self, ids):
        """ids [B, context] → the first generated token in `tok`, step 0's capture (the prompt's
        last query row), the cache filled for positions < context."""
        w, ctx = self.w, self.ctx
        cos, sin = self.cos[:ctx], self.sin[:ctx]
        for r0 in range(0, self.B, self.chunk):
            r1 = min(self.B, r0 + self.chunk)
            x = w["embed"][ids[r0:r1]]  # [b, ctx, D]
            caps = []
            for li, lw in enumerate(w["layers"]):
                q, k, v = self._qkv(lw, rms_norm(x, lw["in_norm"], self.eps))  # [b, ctx, h, hd]
                q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [b, h, ctx, hd]
                q, k = apply_rope(q, cos, sin, self.rot), apply_rope(k, cos, sin, self.rot)
                self.k[li][r0:r1, :, :ctx] = k
                self.v[li][r0:r1, :, :ctx] = v
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.G > 1)
                # step 0's capture: the last query row against every prompt key
                ql = q[:, :, -1].unflatten(1, (self.KVH, self.G))  # [b, KVH, G, hd]
                sc = (ql @ k.transpose(-1, -2)) * self.scale  # [b, KVH, G, ctx]
                self._capture(sc.float().softmax(-1), caps)
                x = x + a.transpose(1, 2).flatten(2) @ lw["wo"].t()
                x = self._mlp(lw, x)
            h = rms_norm(x[:, -1], w["norm"], self.eps)
            self.tok[r0:r1] = (h @ w["lm_head"].t()).argmax(-1)
            self.cap_pos[0, :, r0:r1] = torch.stack([c[0] for c in caps])
            self.cap_p[0, :, r0:r1] = torch.stack([c[1] for c in caps])
            del x, q, k, v, a, caps
        self.out[0] = self.tok
        self.pos.fill_(ctx)
        self.step_i.fill_(1)

    @torch.no_grad()
    def step(self):
        """One token for every sequence: reads `tok`, `pos`, `step_i` on the device, writes the
        next token into `tok`, `out[step_i]` and the capture at `step_i`."""
        w, B = self.w, self.B
        x = w["embed"][self.tok]  # [B, D]
        cos, sin = self.cos.index_select(0, self.pos), self.sin.index_select(0, self.pos)  # [1, rot]
        masked = self.cols > self.pos  # [S]
        caps = []
        for li, lw in enumerate(w["layers"]):
            q, k, v = self._qkv(lw, rms_norm(x, lw["in_norm"], self.eps))  # [B, h, hd]
            q, k = apply_rope(q, cos, sin, self.rot), apply_rope(k, cos, sin, self.rot)
            self.k[li].index_copy_(2, self.pos, k.unsqueeze(2))
            self.v[li].index_copy_(2, self.pos, v.unsqueeze(2))
            sc = (q.view(B, self.KVH, self.G, self.hd) @ self.k[li].transpose(-1, -2)) * self.scale  # [B, KVH, G, S]
            probs = sc.float().masked_fill_(masked, float("-inf")).softmax(-1)
            self._capture(probs, caps)
            a = probs.to(self.dtype) @ self.v[li]  # [B, KVH, G, hd]
            x = x + a.reshape(B, self.H * self.hd) @ lw["wo"].t()
            x = self._mlp(lw, x)
        h = rms_norm(x, w["norm"], self.eps)
        self.tok.copy_((h @ w["lm_head"].t()).argmax(-1))
        self.out.index_copy_(0, self.step_i, self.tok.unsqueeze(0))
        self.cap_pos.index_copy_(0, self.step_i, torch.stack([c[0] for c in caps]).unsqueeze(0))
        self.cap_p.index_copy_(0, self.step_i, torch.stack([c[1] for c in caps]).unsqueeze(0))
        self.pos.add_(1)
        self.step_i.add_(1)

    def decode(self, use_graph):
        """Every token after the first: eager steps, or one step captured as a CUDA graph after
        a warm-up on a side stream (whose effects are undone), replayed."""
        steps = self.n - 1
        if steps <= 0:
            return 0
        if not use_graph:
            for _ in range(steps):
                self.step()
            return 0
        saved = (self.tok.clone(), self.pos.clone(), self.step_i.clone())
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(min(2, steps)):
                self.step()
        torch.cuda.current_stream().wait_stream(side)
        # The warm-up wrote cache columns, tokens and captures that the replays overwrite
        # before anything reads them; only the counters and the input token go back.
        self.tok.copy_(saved[0])
        self.pos.copy_(saved[1])
        self.step_i.copy_(saved[2])
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.step()
        for _ in range(steps):
            graph.replay()
        return 1

    def results(self):
        """One host copy: tokens [B, n], argmax positions and probabilities [n, L, B, H]."""
        return self.out.t().cpu(), self.cap_pos.cpu(), self.cap_p.cpu()


def generate(s, w, ids, new_tokens, device, dtype, use_graph=False, prefill_chunk_tokens=32768):
    """Greedy generation with the Eq. 1 capture (what the test compares with HF)."""
    d = Decoder(s, w, ids.shape[0], ids.shape[1], new_tokens, device, dtype, prefill_chunk_tokens)
    d.prefill(ids.to(device))
    d.decode(use_graph)
    return d.results()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_run(s, w, batch, ctx, n, device, dtype, use_graph, gen, chunk):
    """One measured generation; returns the timings."""
    ids = torch.randint(0, s["vocab_size"], (batch, ctx), device=device, generator=gen)
    sync(device)
    t0 = time.perf_counter()
    d = Decoder(s, w, batch, ctx, n, device, dtype, chunk)
    d.prefill(ids)
    sync(device)
    t1 = time.perf_counter()
    graphs = d.decode(use_graph)
    sync(device)
    t2 = time.perf_counter()
    toks, cap_pos, _ = d.results()
    t3 = time.perf_counter()
    assert toks.shape == (batch, n) and cap_pos.shape[0] == n
    del d
    return {"prefill_s": t1 - t0, "decode_tok_s": batch * (n - 1) / (t2 - t1) if n > 1 else None, "total_s": t3 - t0, "steps": n, "graph_captures": graphs}


def auto_batch(s, ctx, n, device, elt, weights_bytes):
    """Largest batch by estimate: free memory (after the weights) less a margin for prefill
    activations, over the KV cache and decode score buffers of one sequence."""
    free, total = torch.cuda.mem_get_info(device)
    S = ctx + n
    kv = s["num_layers"] * 2 * s["num_kv_heads"] * S * s["head_dim"] * elt
    scores = s["num_heads"] * S * (elt + 4 + 4) * 2  # bf16 scores, f32 copy, f32 probs, of two layers in flight
    per_seq = kv + scores + 4 * s["hidden_size"] * elt
    reserve = 4 * 2**30 + 32768 * (2 * s["intermediate_size"] + 4 * s["hidden_size"]) * elt * 2
    return max(1, int((free - reserve) / per_seq))


def check_graph(s, w, device, dtype, seed, ctx=256, batch=2, n=16):
    """The graph replays compute what the eager steps compute: same tokens, same captured
    positions and probabilities (the same kernels, so bitwise on one device)."""
    ids = torch.randint(0, s["vocab_size"], (batch, ctx), device=device, generator=torch.Generator(device=device).manual_seed(seed + 1))
    te, pe, qe = generate(s, w, ids, n, device, dtype, use_graph=False)
    tg, pg, qg = generate(s, w, ids, n, device, dtype, use_graph=True)
    ok = torch.equal(te, tg) and torch.equal(pe, pg) and torch.equal(qe, qg)
    print(f"TORCHCHECK graph vs eager steps, ctx {ctx} batch {batch} {n} tokens: tokens equal {torch.equal(te, tg)}, argmax positions equal "
          f"{(pe == pg).float().mean().item():.4%}, max probability difference {(qe - qg).abs().max().item():.2e}: {'bitwise equal' if ok else 'NOT bitwise equal'}", flush=True)
    return ok


def main():
    argv = sys.argv[1:]
    dev_arg = None
    want_check = "--check-graph" in argv
    if want_check:
        argv.remove("--check-graph")
    if "--device" in argv:
        i = argv.index("--device")
        dev_arg = argv[i + 1]
        del argv[i:i + 2]
    spec = json.load(open(argv[0]))
    device = torch.device(dev_arg or spec.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[spec["dtype"]] if cuda else torch.float32
    s = spec["shape"]
    seed = spec.get("seed", 0)
    chunk = spec.get("prefill_chunk_tokens", 32768)
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    print(f"TORCHINFO torch={torch.__version__} dtype={str(dtype).replace('torch.', '')} graph={'yes' if cuda else 'no (cpu)'} device={name}", flush=True)

    def result(run, **kw):
        r = {"name": run["name"], "context": run["context"], "batch": run["batch"], "new_tokens": run["new_tokens"], "peak_gib": 0.0}
        r.update(kw)
        print("TORCHRESULT " + json.dumps(r), flush=True)

    try:
        t = time.perf_counter()
        w = build_weights(s, dtype, device, seed, spec.get("init_std", 0.02))
        sync(device)
        nparams = sum(v.numel() for k, v in w.items() if k in ("embed", "norm")) + sum(v.numel() for lw in w["layers"] for v in lw.values())
        if not s.get("tie_word_embeddings"):
            nparams += w["lm_head"].numel()
        print(f"TORCHINFO weights built in {time.perf_counter() - t:.1f}s, {nparams / 1e9:.2f}B params", flush=True)
    except Exception as e:  # noqa: BLE001 — every run reports it, rhx goes on
        status = f"error: {e}" if isinstance(e, Unsupported) else f"error: {type(e).__name__}: {str(e)[:200]}"
        for run in spec["runs"]:
            result(run, status=status)
        return
    if want_check and cuda:
        try:
            check_graph(s, w, device, dtype, seed)
        except Exception as e:  # noqa: BLE001
            print(f"TORCHCHECK failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
        torch.cuda.empty_cache()
    wbytes = torch.cuda.memory_allocated(device) if cuda else 0
    elt = torch.finfo(dtype).bits // 8
    gen = torch.Generator(device=device).manual_seed(seed)
    for run in [{"name": "warmup", "context": 128, "batch": 1, "new_tokens": 4}] + spec["runs"]:
        ctx, n = run["context"], run["new_tokens"]
        auto = run["batch"] == "auto"
        if auto and not cuda:
            result(run, status="error: batch auto needs a GPU")
            continue
        b = auto_batch(s, ctx, n, device, elt, wbytes) if auto else int(run["batch"])
        tries = 12 if auto else 1
        res = None
        for _ in range(tries):
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            try:
                res = dict(status="ok", **timed_run(s, w, b, ctx, n, device, dtype, cuda, gen, chunk))
            except torch.OutOfMemoryError:
                res = dict(status="oom")
            except Exception as e:  # noqa: BLE001 — reported, the next run goes on
                # (an allocation that fails inside the graph capture surfaces as a capture error)
                oom = "out of memory" in str(e) or (auto and "captur" in str(e))
                res = dict(status="oom" if oom else f"error: {type(e).__name__}: {str(e)[:200]}")
            # (out of the except block: its traceback no longer holds the failed run's tensors)
            if res["status"] != "oom" or not auto or b == 1:
                break
            torch.cuda.empty_cache()
            print(f"TORCHINFO batch {b} at {ctx} tokens: out of memory, trying {max(1, int(b * 0.9))}", flush=True)
            b = max(1, int(b * 0.9))
        res["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0.0
        if run["name"] != "warmup":
            result({**run, "batch": b}, **res)
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
