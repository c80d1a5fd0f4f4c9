//! Tiny random checkpoints of every supported architecture, made by
//! `scripts/fixtures/hf_reference.py` with HF transformers (eager attention, fp32): our forward
//! pass must give the same logits (1e-4), the same greedy tokens and the same per-step argmax
//! attention positions, from safetensors and from GGUF.

use rhx::engine::generate::{generate, GenerateOptions, Prompt};
use rhx::engine::model::Model;
use rhx::engine::weights;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

mod common;
use common::fixture_dir;

/// `RHX_TEST_DEVICE=cuda` runs the same comparisons on the GPU (f32).
fn device() -> Device {
    match std::env::var("RHX_TEST_DEVICE").as_deref() {
        Ok("cuda") => rhx::engine::device::resolve(rhx::engine::device::DeviceRequest::Cuda(0)).expect("CUDA requested by RHX_TEST_DEVICE"),
        _ => Device::Cpu,
    }
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
        let got = model.logits_all(&ids).to_device(Device::Cpu);
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
    let model = Model::new(cfg, w, device(), Kind::Float).unwrap();
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

/// GGUF files written the way llama.cpp's converter writes them (Q/K rows permuted, llama3
/// scaling as `rope_freqs.weight`, Q8_0 weights). `reference_logits` are HF's logits for the
/// original config with the GGUF's dequantised weights; for llama2 HF's own GGUF loader gives the
/// same, for llama3 it drops the rope scaling (see the fixture's `hf_note`), so the reference is
/// the correct target.
fn run_gguf(arch: &str) {
    let exp = expected(arch);
    for kind in ["f32", "q8_0"] {
        let f = &exp["gguf"]["files"][kind];
        let path = fixture_dir(arch).join(f["file"].as_str().unwrap());
        let (cfg, w) = weights::load_gguf(&path).unwrap();
        let model = Model::new(cfg, w, device(), Kind::Float).unwrap();
        for input in exp["inputs"].as_array().unwrap() {
            let name = input["name"].as_str().unwrap();
            let got = model.logits_all(&ids_of(&input["ids"])).to_device(Device::Cpu);
            // For the f32 file the reference is the safetensors logits (the fixture says so).
            let reference = match &f["reference_logits"] {
                Value::String(_) => &input["logits_full"],
                r => &r[name],
            };
            let d = max_abs_diff(&got, &matrix(reference));
            assert!(d < 1e-4, "{arch} {kind} GGUF {name}: logits differ from the reference by {d:e}");
            let hf_agrees = f["hf_max_abs_diff_vs_reference"][name].as_f64().is_some_and(|x| x < 1e-4);
            assert_eq!(hf_agrees, arch == "llama2", "{arch}: the fixture's HF-from-GGUF agreement changed");
            if hf_agrees {
                let d = max_abs_diff(&got, &matrix(&f["hf_logits"][name]));
                assert!(d < 1e-4, "{arch} {kind} GGUF {name}: logits differ from HF's GGUF loader by {d:e}");
            }
        }
    }
}

#[test]
fn llama3_gguf_f32_and_q8_0_match_reference() {
    run_gguf("llama3");
}

#[test]
fn llama2_gguf_f32_and_q8_0_match_hf() {
    run_gguf("llama2");
}
