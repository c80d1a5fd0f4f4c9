//! Capture reductions and interventions that HF has no direct counterpart for, checked by their
//! definitions on a tiny real checkpoint: top-k and span mass agree with the argmax and with
//! probability mass; hidden spans receive no attention; a per-step policy equals the same fixed
//! mask; the two-pass step keeps the unmasked record.
// Hidden spans are lists of token ranges; a one-range list is the common case, not a typo.
#![allow(clippy::single_range_in_vec_init)]
use rhx::engine::generate::{generate, FixedMask, GenerateOptions, MaskScope, Prompt, StepPolicy, StepRecord};
use rhx::engine::model::{MaskMode, Model};
use rhx::engine::weights;
use tch::{Device, Kind};

mod common;
use common::tiny;

fn prompt(n: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 53 + 7) % 250) as u32).collect()
}

#[test]
fn top_k_span_mass_and_argmax_weight_are_consistent() {
    let m = tiny("llama3");
    let heads = m.config.num_layers * m.config.num_heads;
    let ids = prompt(30);
    let p = Prompt { ids: ids.clone(), mass_spans: vec![0..30, 10..20], ..Default::default() };
    let opts = GenerateOptions { max_new_tokens: 6, top_k: 3, ..Default::default() };
    let g = generate(&m, &[p], &opts, None, |_| {}).unwrap().remove(0);
    for (t, s) in g.steps.iter().enumerate() {
        assert_eq!(s.top_k.len(), heads * 3);
        for h in 0..heads {
            assert_eq!(s.top_k[h * 3], s.argmax[h], "step {t} head {h}: top-1 of top-k is the argmax");
            let w = s.argmax_weight[h];
            assert!(w > 0.0 && w <= 1.0 + 1e-6);
            let whole = s.span_mass[h * 2];
            let part = s.span_mass[h * 2 + 1];
            // At step 0 the keys are exactly the prompt: its mass is 1. Later steps also see
            // generated tokens, so the prompt holds at most 1.
            if t == 0 {
                assert!((whole - 1.0).abs() < 1e-5, "step 0 head {h}: prompt mass {whole}");
            }
            assert!(whole <= 1.0 + 1e-5 && part <= whole + 1e-6 && part >= 0.0);
            if (10..20).contains(&s.argmax[h]) {
                assert!(part >= w - 1e-6, "the span holding the argmax holds at least its weight");
            }
        }
    }
}

#[test]
fn hidden_spans_receive_no_attention_and_change_the_output() {
    let m = tiny("llama2");
    let ids = prompt(40);
    let hidden = Prompt { ids: ids.clone(), hidden_spans: vec![5..25], mass_spans: vec![5..25], ..Default::default() };
    let opts = GenerateOptions { max_new_tokens: 8, ..Default::default() };
    let g = generate(&m, &[hidden], &opts, None, |_| {}).unwrap().remove(0);
    for (t, s) in g.steps.iter().enumerate() {
        assert!(s.span_mass.iter().all(|&x| x == 0.0), "step {t}: a hidden span got attention mass");
        assert!(s.argmax.iter().all(|&p| !(5..25).contains(&p)), "step {t}: argmax inside a hidden span");
    }
    let visible = generate(&m, &[Prompt { ids, ..Default::default() }], &opts, None, |_| {}).unwrap().remove(0);
    assert_ne!(g.steps[0].argmax, visible.steps[0].argmax, "hiding 20 of 40 tokens must change some head's argmax");
}

/// Masks a fixed set at every step, through the two-pass policy path.
struct Fixed(Vec<(usize, usize)>, MaskMode);

impl StepPolicy for Fixed {
    fn heads_to_mask(&mut self, _seq: usize, _step: usize, _unmasked: &StepRecord, _prompt: &Prompt) -> Vec<(usize, usize)> {
        self.0.clone()
    }
    fn mode(&self) -> MaskMode {
        self.1
    }
}

#[test]
fn per_step_policy_equals_fixed_step_mask_and_keeps_the_unmasked_pass() {
    let m = tiny("qwen3");
    let heads = vec![(0, 1), (1, 2)];
    let ps = vec![Prompt { ids: prompt(20), ..Default::default() }, Prompt { ids: prompt(13), ..Default::default() }];
    for mode in [MaskMode::ZeroOutput, MaskMode::UniformAttention] {
        let fixed = GenerateOptions { max_new_tokens: 8, fixed_mask: Some(FixedMask { heads: heads.clone(), per_prompt: vec![], mode, scope: MaskScope::Steps }), ..Default::default() };
        let a = generate(&m, &ps, &fixed, None, |_| {}).unwrap();
        let mut pol = Fixed(heads.clone(), mode);
        let b = generate(&m, &ps, &GenerateOptions { max_new_tokens: 8, ..Default::default() }, Some(&mut pol), |_| {}).unwrap();
        let plain = generate(&m, &ps, &GenerateOptions { max_new_tokens: 8, ..Default::default() }, None, |_| {}).unwrap();
        for i in 0..ps.len() {
            assert_eq!(a[i].tokens, b[i].tokens, "{mode:?}: policy vs fixed mask, prompt {i}");
            for (sa, sb) in a[i].steps.iter().zip(&b[i].steps) {
                assert_eq!(sa.argmax, sb.argmax);
                assert_eq!(sb.masked, heads);
                assert!(sb.unmasked.is_some());
            }
            // The unmasked pass of step 0 is the plain model's step 0.
            assert_eq!(b[i].steps[0].unmasked.as_ref().unwrap().argmax, plain[i].steps[0].argmax);
            assert_eq!(b[i].steps[0].unmasked.as_ref().unwrap().token, plain[i].steps[0].token);
        }
        if mode == MaskMode::UniformAttention {
            // A head with a zeroed query attends uniformly: argmax = position 0, weight = 1/keys.
            let s = &b[0].steps[0];
            let n_heads = m.config.num_heads;
            for &(l, h) in &heads {
                assert_eq!(s.argmax[l * n_heads + h], 0);
                assert!((s.argmax_weight[l * n_heads + h] - 1.0 / 20.0).abs() < 1e-6);
            }
        }
    }
}

#[test]
fn requests_for_missing_heads_or_layers_are_errors() {
    let m = tiny("llama3");
    let bad = GenerateOptions { fixed_mask: Some(FixedMask { heads: vec![(99, 0)], per_prompt: vec![], mode: MaskMode::ZeroOutput, scope: MaskScope::Steps }), ..Default::default() };
    let e = generate(&m, &[Prompt { ids: prompt(5), ..Default::default() }], &bad, None, |_| {}).unwrap_err();
    assert!(e.to_string().contains("head (99, 0) does not exist"), "{e}");
    let e = generate(&m, &[Prompt { ids: vec![], ..Default::default() }], &GenerateOptions::default(), None, |_| {}).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let e = generate(&m, &[Prompt { ids: vec![9999], ..Default::default() }], &GenerateOptions::default(), None, |_| {}).unwrap_err();
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
}

#[test]
fn random_initialisation_of_a_preset_shape_runs() {
    let cfg = rhx::engine::presets::preset("smollm2-135m").unwrap();
    let w = weights::random_weights(&cfg, 0);
    let m = Model::new(cfg, w, Device::Cpu, Kind::Float).unwrap();
    let g = generate(&m, &[Prompt { ids: prompt(16), ..Default::default() }], &GenerateOptions { max_new_tokens: 3, ..Default::default() }, None, |_| {}).unwrap();
    assert_eq!(g[0].tokens.len(), 3);
    assert_eq!(g[0].steps[0].argmax.len(), 30 * 9);
}
