//! The pass-by-pass session Section 5 runs on (`engine::session`): a rollback followed by
//! regeneration equals generating from that prefix anew; a pass with nothing hidden equals plain
//! generation; a pass blind to a span equals `generate` with that span hidden; the attention rows
//! it keeps agree with the captures of the decoding loop (tiny checkpoints of every family, f32).
use rhx::engine::generate::{generate, GenerateOptions, Prompt};
use rhx::engine::model::{CaptureRequest, Model};
use rhx::engine::session::{head_rows_topk, Session};

mod common;
use common::tiny;

const ARCHS: [&str; 4] = ["llama3", "llama2", "qwen3", "phi3"];

fn prompt(n: usize, k: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 37 + k * 11 + 5) % 250) as u32).collect()
}

fn logits_of(model: &Model, input: &[u32], n: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let mut s = Session::new(model, input.len() + n);
    let mut logits = Vec::new();
    let (tokens, _) = s.greedy(input, &[], n, &[], &CaptureRequest::default(), |out, _| logits.push(Vec::<f32>::try_from(out.logits.view([-1])).unwrap())).unwrap();
    (tokens, logits)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn rollback_then_regeneration_equals_generating_that_prefix_anew() {
    for arch in ARCHS {
        let model = tiny(arch);
        let p = prompt(30, 1);
        let mut s = Session::new(&model, 60);
        let (first, _) = s.greedy(&p, &[], 12, &[], &CaptureRequest::default(), |_, _| {}).unwrap();
        assert_eq!(s.len(), p.len() + 11, "{arch}: every generated token but the last is cached");
        // Retract to the first 4 generated tokens: keep the prompt and 3 of them, feed the 4th.
        s.truncate(p.len() + 3).unwrap();
        let mut again = Vec::new();
        let (regen, _) = s.greedy(&first[3..4], &[], 8, &[], &CaptureRequest::default(), |out, _| again.push(Vec::<f32>::try_from(out.logits.view([-1])).unwrap())).unwrap();
        let prefix: Vec<u32> = p.iter().chain(&first[..4]).copied().collect();
        let (fresh, fresh_logits) = logits_of(&model, &prefix, 8);
        assert_eq!(regen, fresh, "{arch}: tokens after the rollback");
        assert_eq!(regen, first[4..].to_vec(), "{arch}: and they continue the first generation");
        for (t, (a, b)) in again.iter().zip(&fresh_logits).enumerate() {
            let d = max_diff(a, b);
            assert!(d < 1e-4, "{arch}: step {t} logits differ by {d}");
        }
        let plain = generate(&model, &[Prompt { ids: prefix, ..Default::default() }], &GenerateOptions { max_new_tokens: 8, ..Default::default() }, None, |_| {}).unwrap();
        assert_eq!(plain[0].tokens, fresh, "{arch}: the session's greedy tokens equal generate's");
    }
}

#[test]
fn a_pass_blind_to_a_span_equals_generate_with_that_span_hidden() {
    for arch in ARCHS {
        let model = tiny(arch);
        let p = prompt(40, 2);
        let span = 6..24;
        // The prompt up to the span's end encoded once with everything visible (as `generate`'s
        // hidden span sees itself), the rest of the prompt and the generation blind to it.
        let mut s = Session::new(&model, 60);
        s.feed(&p[..span.end], &[], &CaptureRequest::default()).unwrap();
        let (tokens, _) = s.greedy(&p[span.end..], std::slice::from_ref(&span), 10, &[], &CaptureRequest::default(), |_, _| {}).unwrap();
        let hidden = Prompt { ids: p.clone(), hidden_spans: vec![span.clone()], ..Default::default() };
        let want = generate(&model, &[hidden], &GenerateOptions { max_new_tokens: 10, ..Default::default() }, None, |_| {}).unwrap();
        assert_eq!(tokens, want[0].tokens, "{arch}");
        let open = generate(&model, &[Prompt { ids: p.clone(), ..Default::default() }], &GenerateOptions { max_new_tokens: 10, ..Default::default() }, None, |_| {}).unwrap();
        assert_ne!(open[0].tokens, tokens, "{arch}: hiding the span must change something, or this test shows nothing");
    }
}

#[test]
fn kept_attention_rows_agree_with_the_decoding_loops_captures() {
    for arch in ARCHS {
        let model = tiny(arch);
        let p = prompt(25, 3);
        let (layers, heads) = (model.config.num_layers, model.config.num_heads);
        let want = generate(&model, &[Prompt { ids: p.clone(), ..Default::default() }], &GenerateOptions { max_new_tokens: 1, ..Default::default() }, None, |_| {}).unwrap();
        let step = &want[0].steps[0];
        let mut s = Session::new(&model, 30);
        let last = model.config.num_layers - 1;
        let cap = CaptureRequest { last_rows: true, attention_layer: Some(last), ..Default::default() };
        // Prefill all but the last token, then the last alone: the decoding loop's step 0.
        s.feed(&p[..24], &[], &CaptureRequest::default()).unwrap();
        let out = s.feed(&p[24..], &[], &cap).unwrap();
        let rows = out.last_rows.as_ref().unwrap();
        assert_eq!(rows.size(), [layers as i64, 1, heads as i64, 25]);
        for l in 0..layers {
            for h in 0..heads {
                let top = head_rows_topk(rows, &[(l, h)], 0..25, 1).unwrap();
                let i = l * heads + h;
                assert_eq!(top[0].0 as i64, step.argmax[i], "{arch}: head ({l}, {h}) argmax");
                assert!((top[0].1 - step.argmax_weight[i]).abs() < 1e-6, "{arch}: head ({l}, {h}) weight");
            }
        }
        // A full forward's last layer, last row, equals the kept row of that layer.
        let mut s2 = Session::new(&model, 30);
        let full = s2.feed(&p, &[], &cap).unwrap();
        let attn = full.attention.unwrap();
        assert_eq!(attn.size(), [1, heads as i64, 25, 25]);
        let a: Vec<f32> = Vec::try_from(attn.select(2, 24).flatten(0, -1)).unwrap();
        let b: Vec<f32> = Vec::try_from(rows.get(last as i64).flatten(0, -1)).unwrap();
        assert!(max_diff(&a, &b) < 1e-5, "{arch}: last-layer rows");
        // Rows are causal: nothing above the diagonal, each row sums to 1.
        let upper: f32 = attn.select(2, 3).narrow(-1, 4, 21).abs().sum(tch::Kind::Float).double_value(&[]) as f32;
        assert_eq!(upper, 0.0, "{arch}");
        // The mean of two heads, reduced to the top 3.
        let two = head_rows_topk(rows, &[(0, 0), (last, 1)], 5..25, 3).unwrap();
        let r0: Vec<f32> = Vec::try_from(rows.get(0).get(0).get(0)).unwrap();
        let r1: Vec<f32> = Vec::try_from(rows.get(last as i64).get(0).get(1)).unwrap();
        let mut mean: Vec<(usize, f32)> = (5..25).map(|j| (j - 5, (r0[j] + r1[j]) / 2.0)).collect();
        mean.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(two.iter().map(|x| x.0).collect::<Vec<_>>(), mean[..3].iter().map(|x| x.0).collect::<Vec<_>>(), "{arch}");
    }
}

#[test]
fn errors_instead_of_panics() {
    let model = tiny("llama3");
    let mut s = Session::new(&model, 8);
    assert!(s.feed(&[], &[], &CaptureRequest::default()).is_err());
    assert!(s.feed(&prompt(9, 0), &[], &CaptureRequest::default()).err().unwrap().to_string().contains("do not fit"));
    assert!(s.truncate(1).unwrap_err().to_string().contains("only 0 are cached"));
    assert!(s.feed(&[1_000_000], &[], &CaptureRequest::default()).err().unwrap().to_string().contains("vocabulary"));
}

/// Batched decoding steps (`session_batch::run_jobs`, `decode_rows`) take the views one-by-one
/// passes take: a hidden range given backwards hides nothing and one past the cache's end hides
/// up to the query (as `Session::feed` reads them), instead of a slice panic.
#[test]
fn batched_steps_read_reversed_and_overlong_hidden_ranges_as_single_passes_do() {
    use rhx::engine::session_batch::run_jobs;
    let model = tiny("llama3");
    let prompts = [prompt(30, 4), prompt(24, 5)];
    #[allow(clippy::reversed_empty_ranges)]
    let hidden = vec![15..5, 8..12, 27..10_000];
    let n = 8;
    let single: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            let mut s = Session::new(&model, 60);
            s.greedy(p, &hidden, n, &[], &CaptureRequest::default(), |_, _| {}).unwrap().0
        })
        .collect();
    let batched = run_jobs(
        &model,
        2,
        60,
        2,
        |i, row| {
            let (p, hidden) = (prompts[i].clone(), hidden.clone());
            Box::pin(async move { (row.greedy(&p, &hidden, n, &[], None).await.map(|(t, _)| t).map_err(|e| e.to_string()), row.batched_steps()) })
        },
        |_| {},
    );
    for (i, ((tokens, shared), want)) in batched.into_iter().zip(&single).enumerate() {
        assert_eq!(tokens.unwrap(), *want, "prompt {i}");
        assert_eq!(shared, n - 1, "prompt {i}: its decoding steps must share forwards, or this test shows nothing");
    }
    let open = Session::new(&model, 60).greedy(&prompts[0], &[], n, &[], &CaptureRequest::default(), |_, _| {}).unwrap().0;
    assert_ne!(open, single[0], "the hidden ranges must change something, or this test shows nothing");
}

/// `KvCache::write_rows` (the batched step's per-row write) refuses columns outside the cache,
/// a column count that is not the batch's, keys of another shape and a missing layer, writing
/// nothing; in bounds, each row's column is written.
#[test]
fn per_row_cache_writes_are_bounds_checked() {
    use rhx::engine::kv_cache::{KvCacheError, RowColumns};
    use tch::{Device, Kind, Tensor};
    let model = tiny("llama3");
    let (layers, kv, hd) = (model.config.num_layers, model.config.num_kv_heads as i64, model.config.head_dim as i64);
    let mut cache = model.new_cache(2, 8);
    let ones = Tensor::ones([2, kv, 1, hd], (Kind::Float, Device::Cpu));
    let cols = |c: &[i64]| RowColumns::new(c.to_vec(), Device::Cpu);
    let written = |cache: &rhx::engine::kv_cache::KvCache| f64::try_from(cache.full(0).0.sum(Kind::Double)).unwrap();
    assert!(matches!(cache.write_rows(0, &cols(&[0, 8]), &ones, &ones), Err(KvCacheError::Column { row: 1, col: 8, capacity: 8 })));
    assert!(matches!(cache.write_rows(0, &cols(&[-1, 3]), &ones, &ones), Err(KvCacheError::Column { row: 0, col: -1, .. })));
    assert!(matches!(cache.write_rows(0, &cols(&[0]), &ones, &ones), Err(KvCacheError::RowCount { cols: 1, rows: 2 })));
    let two = Tensor::ones([2, kv, 2, hd], (Kind::Float, Device::Cpu));
    assert!(matches!(cache.write_rows(0, &cols(&[0, 1]), &two, &two), Err(KvCacheError::Shape { .. })));
    assert!(matches!(cache.write_rows(layers, &cols(&[0, 1]), &ones, &ones), Err(KvCacheError::Layer { .. })));
    let err = cache.write_rows(0, &cols(&[0, 8]), &ones, &ones).unwrap_err().to_string();
    assert!(err.contains("row 1 writes column 8, outside the cache's 8 columns"), "{err}");
    assert_eq!(written(&cache), 0.0, "a refused write writes nothing");
    cache.write_rows(0, &cols(&[7, 2]), &ones, &ones).unwrap();
    let (k, _) = cache.full(0);
    assert_eq!(written(&cache), (2 * kv * hd) as f64);
    assert_eq!(f64::try_from(k.get(0).select(1, 7).sum(Kind::Double)).unwrap(), (kv * hd) as f64);
    assert_eq!(f64::try_from(k.get(1).select(1, 2).sum(Kind::Double)).unwrap(), (kv * hd) as f64);
}
