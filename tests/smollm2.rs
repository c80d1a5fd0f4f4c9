//! The real SmolLM2-135M-Instruct GGUF against HF transformers (eager attention, fp32), through
//! the committed fixture `tests/fixtures/hf/smollm2.json` written by
//! `scripts/fixtures/hf_reference.py`: token ids of the chat-templated NIAH prompts, logits
//! within 1e-4, 40 greedy tokens, per-step Eq. 1 head sets on seven NIAH prompts, the final
//! hidden state, and head masking done with hooks in HF.
mod common;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use rhx::data::prompts::prepare_line;
use rhx::engine::capture::retrieval_heads;
use rhx::engine::chat::{apply_chat_template_ids, ChatMessage};
use rhx::engine::generate::{generate, FixedMask, GenerateOptions, MaskScope, Prompt};
use rhx::engine::loader::{self, LoadedModel};
use rhx::engine::model::{HiddenSite, MaskMode};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

/// Fixture root: `RHX_TEST_ROOT` (to run a copied test binary elsewhere, e.g. on a GPU machine)
/// or this checkout.
fn root() -> PathBuf {
    std::env::var_os("RHX_TEST_ROOT").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf())
}

/// `RHX_TEST_DEVICE=cuda` runs the same comparisons on the GPU (f32).
fn device() -> Device {
    match std::env::var("RHX_TEST_DEVICE").as_deref() {
        Ok("cuda") => rhx::engine::device::resolve(rhx::engine::device::DeviceRequest::Cuda(0)).expect("CUDA requested by RHX_TEST_DEVICE"),
        _ => Device::Cpu,
    }
}

fn fixture() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| serde_json::from_str(&std::fs::read_to_string(root().join("tests/fixtures/hf/smollm2.json")).unwrap()).unwrap())
}

/// The model, shared by the tests of this file and used by one test at a time (libtorch's
/// threads would otherwise contend for the two cores), or `None` (with a note) when
/// `scripts/setup.sh` has not installed it.
fn model() -> MutexGuard<'static, Option<LoadedModel>> {
    static M: OnceLock<Mutex<Option<LoadedModel>>> = OnceLock::new();
    let guard = M
        .get_or_init(|| {
            Mutex::new(if common::smollm2_installed() { Some(loader::load("smollm2-135m-instruct", device(), Kind::Float).expect("load SmolLM2")) } else { None })
        })
        .lock();
    guard.unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn prompts_file() -> Vec<String> {
    std::fs::read_to_string(root().join("experiments/prompts/niah_smoke.jsonl")).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn gguf_sha256_is_the_fixtures() {
    let guard = model();
    let Some(m) = guard.as_ref() else { return };
    assert_eq!(m.files[0].1, fixture()["model"]["gguf_sha256"].as_str().unwrap(), "the installed GGUF is not the one the fixture was made from");
}

#[test]
fn chat_template_ids_equal_hf() {
    let guard = model();
    let Some(m) = guard.as_ref() else { return };
    for conv in fixture()["chat_template"]["conversations"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = serde_json::from_value(conv["messages"].clone()).unwrap();
        let ids = apply_chat_template_ids(&m.tokenizer, &messages, true, &BTreeMap::new()).unwrap();
        assert_eq!(ids, u32s(&conv["ids"]), "conversation {}", conv["name"]);
    }
    // The bundled NIAH prompts, through the same path `rhx trace` uses.
    let lines = prompts_file();
    for want in fixture()["chat_template"]["niah"].as_array().unwrap() {
        let id = want["id"].as_str().unwrap();
        let (n, line) = lines.iter().enumerate().find(|(_, l)| l.contains(&format!("\"{id}\""))).unwrap();
        let p = prepare_line(line, n + 1, &m.tokenizer, &BTreeMap::new()).unwrap();
        assert_eq!(p.ids, u32s(&want["ids"]), "NIAH prompt {id}");
    }
}

#[test]
fn logits_match_hf_within_1e4() {
    let guard = model();
    let Some(m) = guard.as_ref() else { return };
    let lg = &fixture()["logits"];
    let ids = u32s(&lg["ids"]);
    let all = m.model.logits_all(&ids).to_device(Device::Cpu);
    let last: Vec<f32> = lg["last"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let want = Tensor::from_slice(&last);
    let d = (all.get(ids.len() as i64 - 1) - want).abs().max().double_value(&[]);
    assert!(d < 1e-4, "last-position logits differ from HF by {d:e}");
    for (pos, top) in lg["top5_ids"].as_array().unwrap().iter().enumerate() {
        let (vals, idx) = all.get(pos as i64).topk(5, -1, true, true);
        let got: Vec<i64> = Vec::try_from(idx).unwrap();
        let want: Vec<i64> = top.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
        let want_v: Vec<f64> = lg["top5_values"][pos].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let got_v: Vec<f64> = Vec::<f32>::try_from(vals).unwrap().into_iter().map(f64::from).collect();
        for (g, w) in got_v.iter().zip(&want_v) {
            assert!((g - w).abs() < 1e-4, "position {pos}: top-5 logit {g} vs HF {w}");
        }
        assert_eq!(got, want, "position {pos}: top-5 ids differ");
    }
}

#[test]
fn forty_greedy_tokens_equal_hf() {
    let guard = model();
    let Some(m) = guard.as_ref() else { return };
    let g = &fixture()["greedy"];
    let ids = u32s(&fixture()["logits"]["ids"]);
    let want = u32s(&g["ids"]);
    assert_eq!(want.len(), 40);
    let opts = GenerateOptions { max_new_tokens: 40, eos_ids: vec![], ..Default::default() };
    let out = generate(&m.model, &[Prompt { ids, ..Default::default() }], &opts, None, |_| {}).unwrap();
    assert_eq!(out[0].tokens, want);
    assert_eq!(m.tokenizer.decode(&out[0].tokens, false), g["text"].as_str().unwrap());
}

#[test]
fn per_step_retrieval_heads_equal_hf_on_niah_prompts() {
    let guard = model();
    let Some(m) = guard.as_ref() else { return };
    let eq1 = &fixture()["eq1"];
    let lines = prompts_file();
    let n_heads = m.model.config.num_heads;
    let mut prompts = Vec::new();
    let mut wants = Vec::new();
    for want in eq1["prompts"].as_array().unwrap() {
        let id = want["id"].as_str().unwrap();
        let (n, line) = lines.iter().enumerate().find(|(_, l)| l.contains(&format!("\"{id}\""))).unwrap();
        let p = prepare_line(line, n + 1, &m.tokenizer, &BTreeMap::new()).unwrap();
        let span: Vec<usize> = want["needle_span"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        assert_eq!(p.needle_span, span, "{id}: needle span");
        prompts.push(p);
        wants.push(want);
    }
    let opts = GenerateOptions { max_new_tokens: 40, eos_ids: vec![2], ..Default::default() };
    let mut total_steps = 0;
    for (p, want) in prompts.iter().zip(&wants) {
        let id = want["id"].as_str().unwrap();
        let g = generate(&m.model, &[Prompt { ids: p.ids.clone(), ..Default::default() }], &opts, None, |_| {}).unwrap().remove(0);
        assert_eq!(g.tokens, u32s(&want["generated"]), "{id}: greedy tokens");
        let mut needle = vec![false; p.ids.len()];
        p.needle_span.iter().for_each(|&i| needle[i] = true);
        for (t, (step, ws)) in g.steps.iter().zip(want["steps"].as_array().unwrap()).enumerate() {
            let got: Vec<Vec<usize>> = retrieval_heads(step, n_heads, &p.ids, &needle).into_iter().map(|(l, h)| vec![l, h]).collect();
            let exp: Vec<Vec<usize>> = serde_json::from_value(ws["heads"].clone()).unwrap();
            assert_eq!(got, exp, "{id}: Eq. 1 heads at step {t}");
            let want_argmax: Vec<i64> = serde_json::from_value(ws["argmax"].clone()).unwrap();
            assert_eq!(step.argmax, want_argmax, "{id}: argmax positions at step {t}");
            total_steps += 1;
        }
    }
    assert!(total_steps > 200, "only {total_steps} steps compared");
}

#[test]
fn final_hidden_state_matches_hf() {
    let guard = model();
    let Some(m) = guard.as_ref() else { return };
    let h = &fixture()["hidden"];
    let id = h["prompt_id"].as_str().unwrap();
    let lines = prompts_file();
    let (n, line) = lines.iter().enumerate().find(|(_, l)| l.contains(&format!("\"{id}\""))).unwrap();
    let p = prepare_line(line, n + 1, &m.tokenizer, &BTreeMap::new()).unwrap();
    let opts = GenerateOptions { max_new_tokens: 3, hidden: vec![HiddenSite::Final], ..Default::default() };
    let g = generate(&m.model, &[Prompt { ids: p.ids, ..Default::default() }], &opts, None, |_| {}).unwrap().remove(0);
    for (i, step) in h["steps"].as_array().unwrap().iter().enumerate() {
        let t = step.as_u64().unwrap() as usize;
        let want: Vec<f64> = serde_json::from_value(h["values"][i].clone()).unwrap();
        let d = g.steps[t].hidden[0].iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(d < 1e-4, "final hidden state at step {t} differs from HF by {d:e}");
    }
}

#[test]
fn head_masking_matches_hf_hooks() {
    let guard = model();
    let Some(m) = guard.as_ref() else { return };
    let mk = &fixture()["masking"];
    let id = mk["prompt_id"].as_str().unwrap();
    let lines = prompts_file();
    let (n, line) = lines.iter().enumerate().find(|(_, l)| l.contains(&format!("\"{id}\""))).unwrap();
    let p = prepare_line(line, n + 1, &m.tokenizer, &BTreeMap::new()).unwrap();
    let heads: Vec<(usize, usize)> = serde_json::from_value(mk["heads"].clone()).unwrap();
    let cases = [
        ("baseline", None),
        ("zero_output_all_positions", Some((MaskMode::ZeroOutput, MaskScope::AllPositions))),
        ("zero_output_decode_only", Some((MaskMode::ZeroOutput, MaskScope::Steps))),
        ("uniform_decode_only", Some((MaskMode::UniformAttention, MaskScope::Steps))),
    ];
    let max_new = mk["max_new_tokens"].as_u64().unwrap() as usize;
    for (name, mode) in cases {
        let want = &mk[name];
        let opts = GenerateOptions {
            max_new_tokens: max_new,
            eos_ids: if mk["stop_at_eos"].as_bool().unwrap() { vec![2] } else { vec![] },
            fixed_mask: mode.map(|(mode, scope)| FixedMask { heads: heads.clone(), per_prompt: vec![], mode, scope }),
            top_logits: 5,
            ..Default::default()
        };
        let g = generate(&m.model, &[Prompt { ids: p.ids.clone(), ..Default::default() }], &opts, None, |_| {}).unwrap().remove(0);
        assert_eq!(g.tokens, u32s(&want["generated"]), "{name}: greedy tokens");
        for (t, step) in g.steps.iter().enumerate() {
            let want_ids = u32s(&want["step_top5_ids"][t]);
            let want_v: Vec<f64> = serde_json::from_value(want["step_top5_values"][t].clone()).unwrap();
            let got_ids: Vec<u32> = step.top_logits.iter().map(|x| x.0).collect();
            assert_eq!(got_ids, want_ids, "{name}: top-5 ids at step {t}");
            for ((_, g), w) in step.top_logits.iter().zip(&want_v) {
                assert!((*g as f64 - w).abs() < 1e-4, "{name}: step {t} logit {g} vs HF {w}");
            }
        }
    }
}
