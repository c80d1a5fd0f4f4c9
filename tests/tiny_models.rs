//! Tiny random checkpoints of every supported architecture, made by
//! `scripts/fixtures/hf_reference.py` with HF transformers (eager attention, fp32): our forward
//! pass must give the same logits (1e-4), the same greedy tokens and the same per-step argmax
//! attention positions, from safetensors and from GGUF.
use std::path::{Path, PathBuf};

use rhx::engine::generate::{generate, GenerateOptions, Prompt};
use rhx::engine::model::Model;
use rhx::engine::weights;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

fn fixture_dir(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny").join(arch)
}

fn expected(arch: &str) -> Value {
    let p = fixture_dir(arch).join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn matrix(v: &Value) -> Tensor {
    let rows: Vec<Vec<f32>> = v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()).collect();
    let n = rows.len() as i64;
    let flat: Vec<f32> = rows.concat();
    Tensor::from_slice(&flat).view([n, -1])
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Checks logits, greedy tokens and per-step argmax positions of `model` against `exp`.
fn check_model(model: &Model, exp: &Value, logits_key: &str, label: &str) {
    for input in exp["inputs"].as_array().unwrap() {
        let name = input["name"].as_str().unwrap();
        let ids = ids_of(&input["ids"]);
        let want = matrix(&input[logits_key]);
        let got = model.logits_all(&ids);
        let d = max_abs_diff(&got, &want);
        assert!(d < 1e-4, "{label} {name}: logits differ from HF by {d:e}");

        let greedy = &input["greedy"];
        let want_ids = ids_of(&greedy["ids"]);
        let opts = GenerateOptions { max_new_tokens: want_ids.len(), ..Default::default() };
        let g = generate(model, &[Prompt { ids: ids.clone(), ..Default::default() }], &opts, None, |_| {}).unwrap();
        assert_eq!(g[0].tokens, want_ids, "{label} {name}: greedy tokens differ from HF");
        for (t, want_step) in greedy["attn_argmax"].as_array().unwrap().iter().enumerate() {
            let want: Vec<i64> = want_step.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
            assert_eq!(g[0].steps[t].argmax, want, "{label} {name}: argmax positions differ from HF at step {t}");
        }
    }
}

fn run_safetensors(arch: &str) {
    let exp = expected(arch);
    let (cfg, w) = weights::load_hf_dir(&fixture_dir(arch)).unwrap();
    let model = Model::new(cfg, w, Device::Cpu, Kind::Float).unwrap();
    check_model(&model, &exp, "logits_full", &format!("{arch} (safetensors)"));
}

#[test]
fn llama3_rope_scaling_matches_hf() {
    run_safetensors("llama3");
}

#[test]
fn llama2_matches_hf() {
    run_safetensors("llama2");
}

#[test]
fn qwen3_qk_norm_matches_hf() {
    run_safetensors("qwen3");
}

#[test]
fn phi3_fused_partial_rotary_longrope_matches_hf() {
    run_safetensors("phi3");
}
