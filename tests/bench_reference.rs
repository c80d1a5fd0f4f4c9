//! The plain-PyTorch reference of `rhx bench` (scripts/bench/torch_graph_reference.py: static KV
//! cache, SDPA prefill, a decode step captured as a CUDA graph on a GPU) computes the real model:
//! scripts/bench/test_torch_graph_reference.py runs it on the CPU in f32 on a tiny Llama-3 shape
//! and compares greedy tokens, per-step per-head argmax positions and their probabilities with HF
//! `LlamaForCausalLM` (eager attention) loaded with the same weights, then runs the script's
//! entry point on a SPEC as `rhx bench` writes it. Python: $RHX_TORCH_PYTHON, else the project
//! virtualenv's (torch + transformers from scripts/requirements-test.txt).
use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> PathBuf {
    match std::env::var_os("RHX_TORCH_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
    }
}

#[test]
fn torch_graph_reference_matches_hf_transformers_on_cpu() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = python();
    let o = Command::new(&py)
        .arg(root.join("scripts/bench/test_torch_graph_reference.py"))
        .current_dir(root)
        .env("CUDA_VISIBLE_DEVICES", "")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}): bash scripts/setup.sh makes the project virtualenv", py.display()));
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(
        o.status.success(),
        "the torch graph reference disagrees with HF transformers, or cannot run ({}; torch and transformers come from \
         scripts/requirements-test.txt: bash scripts/setup.sh):\n{out}\n{err}",
        o.status
    );
    assert!(out.contains("batched prefill: 2×10 tokens equal, 160 argmax positions equal"), "{out}");
    assert!(out.contains("one sequence per prefill chunk: 2×10 tokens equal"), "{out}");
    assert!(out.contains("torch graph reference: all checks passed"), "{out}");
}
