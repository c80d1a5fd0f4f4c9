//! Eq. 2 (the paper's reasoning score) against HF transformers' eager attention, through the
//! committed fixture `tests/fixtures/hf/reasoning.json` (`scripts/fixtures/hf_reference.py
//! reasoning`): SmolLM2 on two HotpotQA questions (needles = supporting facts, found from the
//! `needles` of a prompt line) and the tiny llama3 / qwen3 checkpoints, per step, layer and head
//! within 1e-4, greedy tokens equal — in the eager loop and the fixed-shape loop, alone and
//! batched (left padding). `RHX_TEST_DEVICE=cuda` runs the same on the GPU (f32), where the
//! fixed-shape loop is the CUDA-graph loop.
use std::collections::BTreeMap;

use rhx::data::prompts::prepare_line;
use rhx::engine::generate::{generate_with, DecodeMode, EngineOptions, GenerateOptions, Generation, Prompt, Reasoning};
use rhx::engine::model::Model;
use rhx::engine::weights;
use serde_json::Value;
use tch::{Device, Kind};

mod common;

fn device() -> Device {
    match std::env::var("RHX_TEST_DEVICE").as_deref() {
        Ok("cuda") => rhx::engine::device::resolve(rhx::engine::device::DeviceRequest::Cuda(0)).expect("CUDA requested by RHX_TEST_DEVICE"),
        _ => Device::Cpu,
    }
}

fn fixture() -> Value {
    let root = std::env::var_os("RHX_TEST_ROOT").map(std::path::PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let p = root.join("tests/fixtures/hf/reasoning.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn uints(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

/// The fixture's per-step `[layer][head]` scores of one (sink, local) setting.
fn scores(run: &Value) -> Vec<Vec<f64>> {
    run["scores"].as_array().unwrap().iter().map(|step| step.as_array().unwrap().iter().flat_map(|l| l.as_array().unwrap().iter().map(|x| x.as_f64().unwrap())).collect()).collect()
}

/// Generates `prompts` with Eq. 2 at `r` in `decode` mode (a batch when several).
fn run(model: &Model, prompts: &[Prompt], r: Reasoning, steps: usize, decode: DecodeMode) -> Vec<Generation> {
    let opts = GenerateOptions { max_new_tokens: steps, reasoning: Some(r), ..Default::default() };
    let eng = EngineOptions { decode, ..Default::default() };
    let (g, stats) = generate_with(model, prompts, &opts, &eng, None, |_| {}).unwrap();
    assert_eq!(stats.decode_mode, format!("{decode:?}").to_lowercase(), "the requested mode must run");
    g
}

/// Compares a generation with the fixture's tokens and scores; returns the largest difference.
fn compare(what: &str, g: &Generation, tokens: &[usize], want: &[Vec<f64>]) -> f64 {
    let got: Vec<usize> = g.tokens.iter().map(|&t| t as usize).collect();
    assert_eq!(got, tokens, "{what}: greedy tokens");
    let mut worst = 0f64;
    for (t, (step, w)) in g.steps.iter().zip(want).enumerate() {
        assert_eq!(step.reasoning.len(), w.len(), "{what} step {t}: one score per head");
        for (i, (&a, &b)) in step.reasoning.iter().zip(w).enumerate() {
            let d = (f64::from(a) - b).abs();
            assert!(d < 1e-4, "{what} step {t} head {i}: rhx {a} HF {b}");
            worst = worst.max(d);
        }
    }
    worst
}

fn modes() -> [DecodeMode; 2] {
    [DecodeMode::Eager, if device().is_cuda() { DecodeMode::Graph } else { DecodeMode::Static }]
}

#[test]
fn smollm2_hotpotqa_equals_hf_eager() {
    if !common::smollm2_installed() {
        return;
    }
    let fx = fixture();
    let lm = rhx::engine::loader::load("smollm2-135m-instruct", device(), Kind::Float).unwrap();
    let steps = fx["steps"].as_u64().unwrap() as usize;
    let cases = fx["smollm2"]["cases"].as_array().unwrap();
    let mut prompts = Vec::new();
    for (n, c) in cases.iter().enumerate() {
        // The line's `needles` find the same tokens HF's offsets give.
        let p = prepare_line(&c["line"].to_string(), n + 1, &lm.tokenizer, &BTreeMap::new()).unwrap();
        assert_eq!(p.ids.iter().map(|&x| x as usize).collect::<Vec<_>>(), uints(&c["ids"]), "{}: token ids", c["id"]);
        assert_eq!(p.needle_span, uints(&c["needle"]), "{}: needle tokens", c["id"]);
        prompts.push(Prompt { ids: p.ids, needle: p.needle_span, ..Default::default() });
    }
    let mut worst = 0f64;
    for (ri, _) in cases[0]["runs"].as_array().unwrap().iter().enumerate() {
        let setting = &cases[0]["runs"][ri];
        let r = Reasoning { sink: setting["sink"].as_u64().unwrap() as usize, local: setting["local"].as_u64().unwrap() as usize };
        for mode in modes() {
            // One at a time, and both in one left-padded batch.
            let batched = run(&lm.model, &prompts, r, steps, mode);
            for (i, c) in cases.iter().enumerate() {
                let alone = run(&lm.model, &prompts[i..=i], r, steps, mode);
                let (tokens, want) = (uints(&c["tokens"]), scores(&c["runs"][ri]));
                worst = worst.max(compare(&format!("smollm2 {} {r:?} {mode:?}", c["id"]), &alone[0], &tokens, &want));
                worst = worst.max(compare(&format!("smollm2 {} {r:?} {mode:?} batched", c["id"]), &batched[i], &tokens, &want));
            }
        }
    }
    eprintln!("SmolLM2 Eq. 2: largest |rhx − HF| = {worst:.2e}");
}

#[test]
fn tiny_checkpoints_equal_hf_eager() {
    let fx = fixture();
    for arch in ["llama3", "qwen3"] {
        let (cfg, w) = weights::load_hf_dir(&common::fixture_dir(arch)).unwrap();
        let model = Model::new(cfg, w, device(), Kind::Float).unwrap();
        let c = &fx[arch];
        let prompt = Prompt { ids: uints(&c["ids"]).into_iter().map(|x| x as u32).collect(), needle: uints(&c["needle"]), ..Default::default() };
        let steps = fx["steps"].as_u64().unwrap() as usize;
        let mut worst = 0f64;
        for setting in c["runs"].as_array().unwrap() {
            let r = Reasoning { sink: setting["sink"].as_u64().unwrap() as usize, local: setting["local"].as_u64().unwrap() as usize };
            for mode in modes() {
                let g = run(&model, std::slice::from_ref(&prompt), r, steps, mode);
                worst = worst.max(compare(&format!("{arch} {r:?} {mode:?}"), &g[0], &uints(&c["tokens"]), &scores(setting)));
            }
        }
        eprintln!("{arch} Eq. 2: largest |rhx − HF| = {worst:.2e}");
    }
}

/// A needle position outside its prompt is refused, not read past the prompt.
#[test]
fn a_needle_outside_the_prompt_is_an_error() {
    let model = common::tiny("llama3");
    let p = Prompt { ids: vec![5, 6, 7], needle: vec![1, 3], ..Default::default() };
    let opts = GenerateOptions { max_new_tokens: 2, reasoning: Some(Reasoning::default()), ..Default::default() };
    let err = generate_with(&model, &[p], &opts, &EngineOptions::default(), None, |_| {}).unwrap_err();
    assert!(err.to_string().contains("needle position 3 of prompt 0 is outside its 3 tokens"), "{err}");
}
