//! Section 5's loop (`ops::trace::rag_loop`, Algorithm 1) against plain generation on real
//! SmolLM2-135M-Instruct and a bundled HotpotQA question (f32, CPU): "without RAG" equals a
//! generation with the context hidden throughout; a retrieval whose windows cover the whole
//! context regenerates exactly what full-context generation gives; the full-context strategy
//! equals plain generation — under both `rag.kv` modes.
use std::collections::BTreeMap;
use std::path::Path;

use rhx::analysis::rag::Representative;
use rhx::data::hotpotqa;
use rhx::data::prompts::prepare_line;
use rhx::engine::generate::{generate, GenerateOptions, Prompt};
use rhx::engine::loader::{self, LoadedModel};
use rhx::ops::trace::rag_loop::{run, run_batch, HeadPicker, KvMode, QueryPos, RagOptions, RagPrompt, RindAttn, Strategy};
use tch::{Device, Kind};

mod common;

struct Prepared {
    ids: Vec<u32>,
    context: std::ops::Range<usize>,
    needle: Vec<usize>,
    question: std::ops::Range<usize>,
}

fn question(lm: &LoadedModel, row: usize) -> Prepared {
    let q = &hotpotqa::parse(hotpotqa::DEV500, Path::new("dev500"), row, 1).unwrap().questions[0];
    let context = q.title_paragraph_context();
    let user = format!("{context}\n\nAnswer the following question by reasoning step-by-step. End your answer with \"So the answer is <answer>.\"\nQuestion: {}", q.question);
    let line = serde_json::json!({"id": q.id, "messages": [{"role": "user", "content": user}], "needles": q.needles(), "context": context, "question": q.question});
    let p = prepare_line(&line.to_string(), 1, &lm.tokenizer, &BTreeMap::new()).unwrap();
    Prepared { ids: p.ids, context: p.context_span.unwrap(), needle: p.needle_span, question: p.question_span.unwrap() }
}

fn opts(kv: KvMode) -> RagOptions {
    RagOptions {
        theta: 1.2,
        draft_tokens: 12,
        max_tokens: 30,
        topk: 20,
        cluster_gap: 16,
        window: 32,
        representative: Representative::MaxAttn,
        keep_first_sentence: false,
        keep_windows: true,
        kv,
        rind_attn: RindAttn::DraftOnly,
        query_pos: QueryPos::Last,
        exclude_stop_words: false,
        force_answer: false,
        answer_tokens: 20,
        eos: vec![],
        sink: 4,
        local: 32,
        reencode_every_pass: false,
    }
}

fn plain(lm: &LoadedModel, ids: &[u32], hidden: Vec<std::ops::Range<usize>>, n: usize) -> Vec<u32> {
    let p = Prompt { ids: ids.to_vec(), hidden_spans: hidden, ..Default::default() };
    generate(&lm.model, &[p], &GenerateOptions { max_new_tokens: n, ..Default::default() }, None, |_| {}).unwrap().remove(0).tokens
}

/// Every head of layer 0, with windows so wide that any cluster covers the whole context.
struct Everything(usize);
impl HeadPicker for Everything {
    fn pick(&mut self, _: &[f32], _: &[f32], _: usize) -> Result<Vec<(usize, usize)>, String> {
        Ok((0..self.0).map(|h| (0, h)).collect())
    }
}

#[test]
fn the_loop_agrees_with_plain_generation_at_its_two_ends() {
    if !common::smollm2_installed() {
        return;
    }
    let lm = loader::load("smollm2-135m-instruct", Device::Cpu, Kind::Float).unwrap();
    let q = question(&lm, 0);
    assert!(q.context.len() > 500 && q.context.end < q.ids.len(), "context {:?} of {}", q.context, q.ids.len());
    for kv in [KvMode::EncodedOnce, KvMode::Recomputed] {
        let o = opts(kv);
        let prompt = RagPrompt { ids: &q.ids, context: q.context.clone(), needle: &q.needle, also_hidden: vec![] };
        // Without RAG: drafts of 12 appended until more than 30 tokens = 36 tokens with the
        // context hidden throughout.
        let hidden = run(&lm.model, &lm.tokenizer, &prompt, Strategy::Hidden, &o).unwrap();
        assert_eq!(hidden.tokens, plain(&lm, &q.ids, vec![q.context.clone()], 36), "{kv:?}: without RAG");
        assert_eq!(hidden.drafts, 3);
        // Full context: the same with nothing hidden, up to where the loop stopped (more than
        // 30 tokens, or "the answer is" in the text).
        let full = run(&lm.model, &lm.tokenizer, &prompt, Strategy::Full, &o).unwrap();
        let want_full = plain(&lm, &q.ids, vec![], 36);
        assert_eq!(full.tokens, want_full[..full.tokens.len()].to_vec(), "{kv:?}: full context");
        let text = lm.tokenizer.decode(&full.tokens, true);
        assert!(full.tokens.len() == 36 || text.contains("the answer is"), "{kv:?}: stopped early: {text:?}");
        assert_ne!(full.tokens, hidden.tokens, "the context must matter, or this test shows nothing");
        // θ below every score: the first sentence triggers at once, the text is retracted to
        // nothing, the windows cover the whole context, and the regeneration (12 tokens, all
        // kept) is full-context generation.
        let mut every = Everything(lm.model.config.num_heads);
        let o2 = RagOptions { theta: -1.0, window: 1 << 20, max_tokens: 5, ..o.clone() };
        let r = run(&lm.model, &lm.tokenizer, &prompt, Strategy::Heads(&mut every), &o2).unwrap();
        assert_eq!(r.retrievals.len(), 1, "{kv:?}");
        assert_eq!(r.retrievals[0].windows, vec![q.context.clone()], "{kv:?}");
        assert_eq!(r.retrievals[0].visible_fraction, 1.0);
        assert_eq!(r.retrievals[0].at, 0);
        assert_eq!(r.tokens, want_full[..12].to_vec(), "{kv:?}: a retrieval of everything");
    }
}

/// The first `n` heads of a layer: a fixed head set whose windows are narrow.
struct Layer(usize, usize);
impl HeadPicker for Layer {
    fn pick(&mut self, _: &[f32], _: &[f32], _: usize) -> Result<Vec<(usize, usize)>, String> {
        Ok((0..self.1).map(|h| (self.0, h)).collect())
    }
}

#[test]
fn questions_batched_decode_as_one_by_one() {
    if !common::smollm2_installed() {
        return;
    }
    let lm = loader::load("smollm2-135m-instruct", Device::Cpu, Kind::Float).unwrap();
    let qs: Vec<Prepared> = (0..3).map(|i| question(&lm, i)).collect();
    let prompts: Vec<RagPrompt> = [0, 1, 2, 1].iter().map(|&i| RagPrompt { ids: &qs[i].ids, context: qs[i].context.clone(), needle: &qs[i].needle, also_hidden: vec![] }).collect();
    // θ below every score: every draft retrieves, with windows of ±32 around a few heads' top
    // positions, so rows see different parts of their contexts at every step.
    let o = RagOptions { theta: -1.0, max_tokens: 40, ..opts(KvMode::EncodedOnce) };
    let (mut a, mut b, mut c, mut d) = (Layer(10, 3), Layer(20, 2), Layer(10, 3), Layer(20, 2));
    // Four questions on three rows: a row is handed to the fourth when the first one ends.
    let batched = run_batch(&lm.model, &lm.tokenizer, &prompts, vec![Strategy::Heads(&mut a), Strategy::Hidden, Strategy::Full, Strategy::Heads(&mut b)], &o, 3, |_| {});
    let single: Vec<_> = [Strategy::Heads(&mut c), Strategy::Hidden, Strategy::Full, Strategy::Heads(&mut d)].into_iter().zip(&prompts).map(|(s, p)| run(&lm.model, &lm.tokenizer, p, s, &o).unwrap()).collect();
    let mut shared = 0;
    for (i, (x, y)) in batched.into_iter().zip(&single).enumerate() {
        let x = x.unwrap();
        assert_eq!(x.tokens, y.tokens, "question {i}: tokens");
        let windows = |r: &rhx::ops::trace::rag_loop::RagRun| r.retrievals.iter().map(|r| r.windows.clone()).collect::<Vec<_>>();
        assert_eq!(windows(&x), windows(y), "question {i}: retrieval windows");
        assert_eq!((x.drafts, x.passes, x.fed), (y.drafts, y.passes, y.fed), "question {i}: passes");
        assert_eq!(y.batched_steps, 0);
        shared += x.batched_steps;
    }
    assert!(single[0].retrievals.len() + single[3].retrievals.len() >= 4, "retrievals: {} and {}", single[0].retrievals.len(), single[3].retrievals.len());
    assert!(shared > 40, "decoding steps must share forwards ({shared} did)");
}

/// `rind_attn: in_context`: the first retrieval's RIND scores are those of the first draft's own
/// pass, recomputed here from scratch — the prompt through the context encoded with everything
/// visible, the rest greedy with the context hidden (entropies from its logits), then one
/// forward over the rest of the prompt and the draft for the last layer's attention among the
/// draft's tokens. With `dragin_draft_only` the scores differ.
#[test]
fn rind_in_context_reads_the_drafts_own_pass() {
    use rhx::analysis::rag::{entropy, merge_words, rind, rind_attention, sentences};
    use rhx::engine::model::CaptureRequest;
    use rhx::engine::session::Session;
    if !common::smollm2_installed() {
        return;
    }
    let lm = loader::load("smollm2-135m-instruct", Device::Cpu, Kind::Float).unwrap();
    let q = question(&lm, 0);
    let prompt = RagPrompt { ids: &q.ids, context: q.context.clone(), needle: &q.needle, also_hidden: vec![] };
    // θ below every score: the first sentence of the first draft triggers.
    let o = RagOptions { theta: -1.0, max_tokens: 5, rind_attn: RindAttn::InContext, ..opts(KvMode::EncodedOnce) };
    let in_context = run(&lm.model, &lm.tokenizer, &prompt, Strategy::Heads(&mut Layer(10, 3)), &o).unwrap();
    let draft_only = run(&lm.model, &lm.tokenizer, &prompt, Strategy::Heads(&mut Layer(10, 3)), &RagOptions { rind_attn: RindAttn::DraftOnly, ..o.clone() }).unwrap();

    let view = vec![q.context.clone()];
    let (c, p) = (q.context.end, q.ids.len());
    let mut s = Session::new(&lm.model, p + o.draft_tokens);
    s.feed(&q.ids[..c], &[], &CaptureRequest::default()).unwrap();
    let mut ent = Vec::new();
    let (draft, _) = s.greedy(&q.ids[c..], &view, o.draft_tokens, &[], &CaptureRequest::default(), |out, _| ent.push(entropy(&Vec::<f32>::try_from(out.logits.view([-1])).unwrap()))).unwrap();
    let mut s = Session::new(&lm.model, p + draft.len());
    s.feed(&q.ids[..c], &[], &CaptureRequest::default()).unwrap();
    let rest: Vec<u32> = q.ids[c..].iter().chain(&draft).copied().collect();
    let last = lm.model.config.num_layers - 1;
    let out = s.feed(&rest, &view, &CaptureRequest { attention_layer: Some(last), ..Default::default() }).unwrap();
    let (t, off) = (draft.len() as i64, (p - c) as i64);
    let attn = out.attention.unwrap().select(0, 0).narrow(1, off, t).narrow(2, p as i64, t); // [H, T, T]
    let rows: Vec<Vec<Vec<f32>>> = (0..attn.size()[0]).map(|h| (0..t).map(|r| Vec::<f32>::try_from(attn.get(h).get(r)).unwrap()).collect()).collect();
    let a = rind_attention(&rows, false);
    let pieces: Vec<String> = draft.iter().map(|&t| lm.tokenizer.decode_exact(&[t])).collect();
    let words = merge_words(&pieces, &vec![false; draft.len()]);
    let texts: Vec<String> = words.iter().map(|w| pieces[w.clone()].concat()).collect();
    let want = rind(&a, &ent, &words, &sentences(&texts), o.theta, &|_| true).unwrap();
    assert_eq!(want.sentence, 0);
    assert!(want.scores.len() >= 3, "a first sentence of {} words shows nothing (v = H for one word): {texts:?}", want.scores.len());
    let got = &in_context.retrievals[0].scores;
    assert_eq!(got.len(), want.scores.len(), "{got:?} vs {:?}", want.scores);
    for (g, w) in got.iter().zip(&want.scores) {
        assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "in context: {got:?}, from scratch: {:?}", want.scores);
    }
    assert_ne!(draft_only.retrievals[0].scores, *got, "the two attention sources must differ");
}

/// A prompt that ends with its context (a JSONL `text` whose `context` is its last text) has no
/// token after the context to predict a draft's first token with the context hidden: the loop
/// refuses it under both `kv` modes (it used to prefill the whole prompt and fail with "a pass
/// needs at least one token"), and `rag` refuses it before any question runs, naming the prompt.
#[test]
fn a_prompt_that_ends_with_its_context_is_refused() {
    use rhx::cache::Cache;
    use rhx::lang::{self, NoShapes};
    use rhx::run::{self, RunOptions};
    if !common::smollm2_installed() {
        return;
    }
    let lm = loader::load("smollm2-135m-instruct", Device::Cpu, Kind::Float).unwrap();
    let q = &hotpotqa::parse(hotpotqa::DEV500, Path::new("dev500"), 0, 1).unwrap().questions[0];
    let context = q.title_paragraph_context();
    let line = serde_json::json!({"id": "ends-with-context", "text": format!("Question: {}\n\n{context}", q.question), "context": context});
    let p = prepare_line(&line.to_string(), 1, &lm.tokenizer, &BTreeMap::new()).unwrap();
    let span = p.context_span.clone().unwrap();
    assert_eq!(span.end, p.ids.len(), "the context must end the prompt, or this test shows nothing");
    let prompt = RagPrompt { ids: &p.ids, context: span, needle: &[], also_hidden: vec![] };
    for kv in [KvMode::EncodedOnce, KvMode::Recomputed] {
        for full in [false, true] {
            let o = opts(kv);
            let strategy = if full { Strategy::Full } else { Strategy::Hidden };
            let err = run(&lm.model, &lm.tokenizer, &prompt, strategy, &o).unwrap_err();
            assert!(err.contains("ends the prompt") && err.contains("put the question after the context"), "{kv:?}: {err}");
        }
    }
    // The op: refused with the prompt's id, before any question runs.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rag_context_last");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ok = serde_json::json!({"id": "question-last", "text": format!("{context}\n\nQuestion: {}", q.question), "context": context});
    std::fs::write(dir.join("prompts.jsonl"), format!("{ok}\n{line}\n")).unwrap();
    let src = "model lm = gguf(\"smollm2-135m-instruct\") { dtype: f32, device: cpu }\n\
               dataset d = jsonl(\"prompts.jsonl\")\n\
               trace r = rag(lm, d) { strategy: hidden, draft_tokens: 4, max_tokens: 4, answer_tokens: 2 }\n";
    std::fs::write(dir.join("e.rhx"), src).unwrap();
    let program = lang::check_path(&dir.join("e.rhx"), &[], &NoShapes).unwrap();
    run::check_supported(&program).unwrap();
    let cache = Cache::open(dir.join("cache")).unwrap();
    let o = RunOptions { shard: None, shard_plan: None, reports_dir: dir.join("reports"), recompute: false, quiet: true, compute_traces: true, threads: None, engine: None };
    let err = run::run(&program, &cache, &o).map(|_| ()).expect_err("refused").to_string();
    assert!(err.contains("prompt ends-with-context of dataset `d`") && err.contains("put the question after the context"), "{err}");
}

/// `rag.query_pos`: the first retrieval's windows from the rows it says it read, recomputed from
/// scratch in one pass over prompt + draft with everything visible: `trigger_token` reads the
/// row that generated the first word above θ (not the sentence's first word here), `sentence_mean` the mean of the rows that generated the first sentence.
#[test]
fn query_pos_reads_the_rows_that_generated_the_trigger() {
    use rhx::analysis::rag::{merge_words, retrieval_windows_top, sentences};
    use rhx::engine::model::CaptureRequest;
    use rhx::engine::session::{head_rows_topk, Session};
    if !common::smollm2_installed() {
        return;
    }
    let lm = loader::load("smollm2-135m-instruct", Device::Cpu, Kind::Float).unwrap();
    let q = question(&lm, 0);
    let prompt = RagPrompt { ids: &q.ids, context: q.context.clone(), needle: &q.needle, also_hidden: vec![] };
    let (c, p) = (q.context.end, q.ids.len());
    // Stop words score 0 and θ = 0: the first draft's first sentence triggers at its first word
    // that is not a stop word (on this question "To solve this problem": "solve").
    let base = RagOptions { theta: 0.0, exclude_stop_words: true, max_tokens: 5, ..opts(KvMode::EncodedOnce) };
    let last = run(&lm.model, &lm.tokenizer, &prompt, Strategy::Heads(&mut Layer(10, 3)), &base).unwrap();
    let first = &last.retrievals[0];
    assert_eq!((first.at, first.query.clone()), (0, p - 1..p), "`last` reads the prompt's last row");
    // The first draft and its words, as the loop splits them.
    let mut s = Session::new(&lm.model, p + base.draft_tokens);
    s.feed(&q.ids[..c], &[], &CaptureRequest::default()).unwrap();
    let (draft, _) = s.greedy(&q.ids[c..], std::slice::from_ref(&q.context), base.draft_tokens, &[], &CaptureRequest::default(), |_, _| {}).unwrap();
    let pieces: Vec<String> = draft.iter().map(|&t| lm.tokenizer.decode_exact(&[t])).collect();
    let words = merge_words(&pieces, &vec![false; draft.len()]);
    let texts: Vec<String> = words.iter().map(|w| pieces[w.clone()].concat()).collect();
    let sents = sentences(&texts);
    assert_eq!(first.scores.len(), sents[0].len());
    let j = first.scores.iter().position(|&v| v > 0.0).unwrap();
    assert!(j > 0, "the sentence's first word triggers, so this test shows nothing: {:?} {:?}", first.scores, &texts[sents[0].clone()]);
    let heads = [(10, 0), (10, 1), (10, 2)];
    // The windows of the mean of the rows `query` over the context, from one pass.
    let windows_of = |query: std::ops::Range<usize>, o: &RagOptions| {
        let ids: Vec<u32> = q.ids.iter().chain(&draft[..query.end - p]).copied().collect();
        let mut s = Session::new(&lm.model, ids.len());
        let out = s.feed(&ids, &[], &CaptureRequest { attention_layer: Some(10), ..Default::default() }).unwrap();
        let attn = out.attention.unwrap().select(0, 0); // [H, T, S]
        let rows = attn.narrow(0, 0, 3).narrow(1, query.start as i64, query.len() as i64).mean_dim(1, false, Kind::Float); // [3, S]
        let rows = rows.unsqueeze(0).unsqueeze(0); // [1, 1, 3, S]: "layer 0" holds the three heads
        let top = head_rows_topk(&rows, &[(0, 0), (0, 1), (0, 2)], q.context.clone(), o.topk).unwrap();
        retrieval_windows_top(&top, q.context.clone(), o.cluster_gap, o.window, o.representative)
    };
    let o = RagOptions { query_pos: QueryPos::TriggerToken, ..base.clone() };
    let r = run(&lm.model, &lm.tokenizer, &prompt, Strategy::Heads(&mut Layer(10, 3)), &o).unwrap();
    let t = &r.retrievals[0];
    let at = words[sents[0].start + j].start;
    assert!(at > 0);
    assert_eq!((t.at, t.heads.clone(), t.query.clone()), (0, heads.to_vec(), p + at - 1..p + at), "the row that generated word {j} ({:?})", texts[sents[0].start + j]);
    assert_eq!(t.windows, windows_of(t.query.clone(), &o), "trigger_token");
    assert_ne!(t.windows, first.windows, "the two rows must choose differently, or this test shows little");

    let o = RagOptions { query_pos: QueryPos::SentenceMean, ..base.clone() };
    let r = run(&lm.model, &lm.tokenizer, &prompt, Strategy::Heads(&mut Layer(10, 3)), &o).unwrap();
    let t = &r.retrievals[0];
    let end = words[sents[0].end - 1].end;
    assert!(end > 1);
    assert_eq!(t.query, p - 1..p + end - 1, "the rows that generated the first sentence's {end} tokens");
    assert_eq!(t.windows, windows_of(t.query.clone(), &o), "sentence_mean");
}

/// `rag.visible` without `question`: the question is hidden with the context in every masked
/// pass and shown by no window. "Without RAG" equals plain generation with the context and the
/// question hidden; a retrieval whose windows cover the whole context regenerates what plain
/// generation with only the question hidden gives — under both `kv` modes.
#[test]
fn a_part_left_out_of_visible_is_hidden_with_the_context() {
    if !common::smollm2_installed() {
        return;
    }
    let lm = loader::load("smollm2-135m-instruct", Device::Cpu, Kind::Float).unwrap();
    let q = question(&lm, 0);
    let hotpot = &hotpotqa::parse(hotpotqa::DEV500, Path::new("dev500"), 0, 1).unwrap().questions[0];
    assert!(q.question.start >= q.context.end, "the question follows the context: {:?} {:?}", q.question, q.context);
    assert!(lm.tokenizer.decode(&q.ids[q.question.clone()], false).contains(&hotpot.question));
    let prompt = RagPrompt { ids: &q.ids, context: q.context.clone(), needle: &q.needle, also_hidden: vec![q.question.clone()] };
    let without_question = plain(&lm, &q.ids, vec![q.question.clone()], 12);
    assert_ne!(without_question, plain(&lm, &q.ids, vec![], 12), "the question must matter, or this test shows nothing");
    for kv in [KvMode::EncodedOnce, KvMode::Recomputed] {
        let o = opts(kv);
        let hidden = run(&lm.model, &lm.tokenizer, &prompt, Strategy::Hidden, &o).unwrap();
        assert_eq!(hidden.tokens, plain(&lm, &q.ids, vec![q.context.clone(), q.question.clone()], 36), "{kv:?}: without RAG");
        let mut every = Everything(lm.model.config.num_heads);
        let o2 = RagOptions { theta: -1.0, window: 1 << 20, max_tokens: 5, ..o.clone() };
        let r = run(&lm.model, &lm.tokenizer, &prompt, Strategy::Heads(&mut every), &o2).unwrap();
        assert_eq!(r.retrievals[0].windows, vec![q.context.clone()], "{kv:?}");
        assert_eq!(r.tokens, without_question, "{kv:?}: a retrieval of everything, the question still hidden");
    }
}

/// `rag(visible: …)` through the op: hotpotqa declares its question, so leaving it out runs; a
/// JSONL line that declares none is refused, naming the prompt, before any question runs.
#[test]
fn visible_reads_the_spans_datasets_declare() {
    use rhx::cache::Cache;
    use rhx::lang::{self, NoShapes};
    use rhx::run::{self, RunOptions};
    if !common::smollm2_installed() {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rag_visible");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let q = &hotpotqa::parse(hotpotqa::DEV500, Path::new("dev500"), 0, 1).unwrap().questions[0];
    let context = q.title_paragraph_context();
    let line = serde_json::json!({"id": "no-question", "text": format!("{context}\n\nQuestion: {}", q.question), "context": context});
    std::fs::write(dir.join("prompts.jsonl"), format!("{line}\n")).unwrap();
    let o = RunOptions { shard: None, shard_plan: None, reports_dir: dir.join("reports"), recompute: false, quiet: true, compute_traces: true, threads: None, engine: None };
    let cache = Cache::open(dir.join("cache")).unwrap();
    let head = "model lm = gguf(\"smollm2-135m-instruct\") { dtype: f32, device: cpu }\n";
    let small = "draft_tokens: 4, max_tokens: 4, answer_tokens: 2";
    let run_src = |name: &str, body: String| {
        std::fs::write(dir.join(name), format!("{head}{body}")).unwrap();
        let program = lang::check_path(&dir.join(name), &[], &NoShapes).unwrap();
        run::run(&program, &cache, &o).map(|_| ())
    };
    run_src("a.rhx", format!("dataset h = hotpotqa {{ n: 1 }}\ntrace a = rag(lm, h) {{ strategy: hidden, visible: [bos, template, demos], {small} }}\n")).unwrap();
    let err = run_src("b.rhx", format!("dataset d = jsonl(\"prompts.jsonl\")\ntrace b = rag(lm, d) {{ strategy: hidden, visible: [template], {small} }}\n")).expect_err("refused").to_string();
    assert!(err.contains("prompt no-question of dataset `d`") && err.contains("declares no question"), "{err}");
}
