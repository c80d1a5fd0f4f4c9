#!/usr/bin/env python3
"""The cuBLAS GEMMs of one Llama-3.1-8B decode step (32 layers of q|k|v, o, gate|up and down
with distinct weights, 15 GB, plus the LM head), bf16, captured as one CUDA graph and replayed:
the time the projections alone take at batch M when libtorch runs them, for comparison with a
whole `rhx bench` step at the same batch (benchmarks/gpu.md, 2026-12-04). Needs torch on a GPU.

    python scripts/bench/cublas_step_gemms.py
"""
import torch
torch.manual_seed(0)
dev = "cuda"
L = 32
shapes = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]
Ws = [[torch.empty(n, k, device=dev, dtype=torch.bfloat16).normal_(0, 0.02) for (n, k) in shapes] for _ in range(L)]
head = torch.empty(128256, 4096, device=dev, dtype=torch.bfloat16).normal_(0, 0.02)
total_gb = (sum(n * k for n, k in shapes) * L + head.numel()) * 2 / 1e9
for m in [1, 8, 16, 32, 64, 128, 256]:
    xs = {k: torch.randn(m, k, device=dev, dtype=torch.bfloat16) for k in (4096, 14336)}
    def step():
        for l in range(L):
            for w in Ws[l]:
                xs[w.shape[1]] @ w.t()
        xs[4096] @ head.t()
    step(); torch.cuda.synchronize()
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    g = torch.cuda.CUDAGraph()
    with torch.cuda.stream(s):
        step(); torch.cuda.synchronize()
        with torch.cuda.graph(g):
            step()
    torch.cuda.current_stream().wait_stream(s); torch.cuda.synchronize()
    for _ in range(3): g.replay()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(20): g.replay()
    e1.record(); torch.cuda.synchronize()
    ms = e0.elapsed_time(e1) / 20
    print(f"M={m}: step GEMMs {ms:.2f} ms = {total_gb/ms:.2f} TB/s over {total_gb:.2f} GB")
