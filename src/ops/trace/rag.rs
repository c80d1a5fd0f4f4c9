//! `trace … = rag(…)`: Section 5's dynamic in-context RAG (Algorithm 1, [`super::rag_loop`]) on a
//! dataset whose prompts declare their context (HotpotQA's paragraphs), one strategy per trace —
//! Table 4's rows and two beyond the paper (`oracle`, `full`). A standard trace: each line is a
//! question's final text (scored by `scores(…, metrics: [em, f1])`) with its retrievals in
//! `meta.rag`; it has no per-step records.
use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::{json, Value as Json};

use crate::analysis::dynamism::Head;
use crate::analysis::probe::Predictor;
use crate::analysis::rag::Representative;
use crate::artifact::heads::{Choice, PREDICTOR_FILE};
use crate::ops::heads::predicted::{load as load_predictor, top_indices};
use tch::Tensor;
use crate::artifact::trace::{write_trace, HeadRule, TraceInfo, TraceLine, TRACE_FORMAT};
use crate::engine::device;
use crate::engine::cuda;
use crate::engine::generate::{auto_batch_size, EngineOptions};
use crate::lang::schema::{decl, enm, float_range, int_range, list, FuncSpec};
use crate::data::prompts::PreparedPrompt;
use crate::lang::{Kind, Node, Value};
use crate::ops::args::*;
use crate::ops::inputs::*;
use crate::ops::trace::rag_loop::{self, HeadPicker, KvMode, RagOptions, QueryPos, RindAttn, RagPrompt, Strategy};
use crate::ops::{Exec, Files, Inputs, OpDef, Refusal};
use crate::plan::Step;
use crate::run::Ctx;
use crate::support::pyrandom::PyRandom;

pub const OP: OpDef = OpDef { kind: Kind::Trace, name: "rag", spec, source: file!(), check: Some(check), exec: Exec::Artifact(run) };

const VISIBLE: &[&str] = &["bos", "template", "demos", "question"];

const STRATEGIES: &[&str] = &["dynamic", "static", "dynamic_random", "fixed_random", "hidden", "full", "oracle"];

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new(
        "rag",
        "Section 5's dynamic in-context RAG (Algorithm 1): drafts with the context hidden, DRAGIN's RIND decides when to retrieve, the chosen heads' attention picks the context windows made visible for the regeneration.",
    )
    .pos("model", decl(Model), "the model to run")
    .pos("dataset", decl(Dataset), "questions whose prompts declare their context, with the question after it (`hotpotqa`, or JSONL lines with a `context` field; a prompt that ends with its context is refused)")
    .def(
        "strategy",
        enm(STRATEGIES),
        "dynamic",
        "Table 4's row: the probe's top heads of the step (dynamic), a static set (static, with `heads`), random heads drawn at each retrieval (dynamic_random) or once per question (fixed_random), no retrieval with the context hidden (hidden: \"w/o RAG\") or visible (full); oracle: the step's true top Eq. 2 heads",
    )
    .opt("heads", decl(Heads), "static: a fixed head set whose first `count` heads retrieve; dynamic: a `predicted(…)` set (its MLP's `count` largest predictions at each retrieval)")
    .def("count", int_range(1, 4096), "5", "heads per retrieval (the paper: 5)")
    .def("theta", float_range(-1e9, 1e9), "1.2", "rag.theta: RIND's threshold (DRAGIN's HotpotQA configs: 1.2)")
    .def("draft_tokens", int_range(1, 4096), "100", "new tokens of a draft or regeneration (DRAGIN's generate_max_length)")
    .def("max_tokens", int_range(1, 32768), "100", "rag.max_tokens: the loop ends once the text holds more tokens (DRAGIN: 100)")
    .def("topk", int_range(1, 1 << 20), "20", "rag.topk: context positions of largest mean attention")
    .def("cluster_gap", int_range(0, 1 << 20), "16", "rag.cluster_gap: a larger gap between sorted top positions starts a new cluster")
    .def("window", int_range(0, 1 << 20), "32", "rag.window: positions made visible on each side of a cluster's representative")
    .def("representative", enm(&["max_attn", "median"]), "max_attn", "rag.representative: a cluster's position of largest attention, or its median")
    .def("keep", enm(&["first_sentence", "all"]), "first_sentence", "rag.keep: what of a regeneration is kept (DRAGIN: its first sentence)")
    .def("next_draft", enm(&["windows", "hidden"]), "windows", "the view of the draft after a retrieval: its windows (Algorithm 1 re-masks only after accepting a draft) or the context hidden")
    .def("kv", enm(&["encoded_once", "recomputed"]), "encoded_once", "the visible context's keys and values: of the prompt encoded once, or recomputed under each pass's mask (an HF 2-D attention mask)")
    .def("reuse_cache", crate::lang::schema::Ty::Bool, "true", "a pass keeps the keys and values of the previous pass where the input and the view did not change; false re-encodes the whole input (past what `kv` keeps) at every pass, as an HF `generate` call does: the same tokens, slower (the benchmark's reference)")
    .def("rind_attn", enm(&["dragin_draft_only", "in_context"]), "dragin_draft_only", "rag.rind_attn: RIND's attention from a separate forward over the draft alone (DRAGIN's code) or among the draft's tokens in its own pass, prompt and text before it (the paper's formula)")
    .def("query_pos", enm(&["last", "trigger_token", "sentence_mean"]), "last", "rag.query_pos: the attention rows that choose the windows, in a pass with the context visible — the last position of the kept text (Algorithm 2's current position), the position that generated the triggering word (the first with v_i > θ), or the mean of the rows that generated the triggering sentence")
    .def("visible", list(enm(VISIBLE)), "[bos, template, demos, question]", "rag.visible: what stays visible while the context is masked (drafts, regenerations, w/o RAG); a part left out is hidden with the context and never shown by a window: bos (the first token when it is BOS), template (every token outside the context, question and demos), demos (a `demos` span the dataset declares: hotpotqa's `fewshot` exemplars), question (the dataset's `question` span)")
    .def("stop_words", enm(&["after_decision", "excluded"]), "after_decision", "rag.stop_words: DRAGIN's code decides on every word (its content-word filter only clears flags afterwards); excluded: the paper's s_i = 0, stop words (NLTK's English list) and punctuation never trigger")
    .def("force_answer", crate::lang::schema::Ty::Bool, "true", "rag.force_answer: without \"the answer is\", append \" So the answer is\" and generate `answer_tokens` (DRAGIN's evaluation)")
    .def("answer_tokens", int_range(1, 4096), "20", "tokens generated after the forced \" So the answer is\"")
    .def("sink", int_range(0, 1 << 20), "4", "oracle: Eq. 2's sink tokens")
    .def("local", int_range(0, 1 << 20), "32", "oracle: Eq. 2's local window")
    .opt("batch_size", int_range(1, 4096), "questions run together, their drafts' decoding steps batched (default: 1 on the CPU; on CUDA min(64, the number of questions), lowered with a warning only when its KV cache does not fit in free GPU memory; in f32 the same tokens as one by one)")
    .seed("random draws of heads (dynamic_random, fixed_random)")
}

fn check(n: &Node) -> Result<(), Refusal> {
    match (enum_arg(n, "strategy"), n.arg("heads").is_some()) {
        (Some("static"), false) => Err(Refusal::new("strategy", "`strategy: static` retrieves with a head set: give `heads: <a fixed heads declaration>` (e.g. `static_heads(…)`)".to_string())),
        (Some("dynamic"), false) => Err(Refusal::new("strategy", "`strategy: dynamic` retrieves with the heads an MLP predicts from the hidden state: give `heads: <a predicted(…) heads declaration>`".to_string())),
        (Some(s), true) if s != "static" && s != "dynamic" => Err(Refusal::new("heads", format!("`heads` is read by `strategy: static` and `dynamic` only, not by `{s}`"))),
        _ => Ok(()),
    }
}

/// `batch_size` unset: one question at a time on the CPU (batching gains little there); on CUDA
/// `min(64, questions)` whatever the GPU, so that the default does not depend on the machine,
/// lowered only when the memory estimate `fits` (`None`: free memory unknown) says fewer rows
/// fit, with the warning to print. More rows do not pay: a row is handed to the next question as
/// soon as one ends, so the count of batched steps follows the longest loops, not the waves
/// (H200, 128 questions: 64 rows 48 s, 128 rows 55 s; 2065 and 1942 steps).
fn default_batch(node: &str, cuda: bool, questions: usize, fits: impl FnOnce() -> Option<usize>) -> (usize, Option<String>) {
    if !cuda {
        return (1, None);
    }
    let want = questions.clamp(1, 64);
    match fits() {
        Some(fit) if fit < want => {
            let fit = fit.max(1);
            let warning = format!(
                "`{node}`: the default batch_size on CUDA, {want} (min(64, questions)), does not fit in free GPU memory by the KV-cache estimate; running {fit} questions at a time. Set it with `batch_size: N` on `{node}` (or `--set {node}.batch_size=N`)"
            );
            (fit, Some(warning))
        }
        _ => (want, None),
    }
}

/// The spans `visible` leaves out, hidden with the context (reference §9 row 51): `bos` the
/// first token when it is the tokenizer's BOS, `question` and `demos` the spans the dataset
/// declares (a prompt without demos has none to hide; one without a declared question is
/// refused when it must be hidden), `template` every other token outside the context.
fn also_hidden(prep: &PreparedPrompt, context: &Range<usize>, bos: Option<u32>, visible: &[&str]) -> Result<Vec<Range<usize>>, String> {
    let n = prep.ids.len();
    let bos_span = (bos.is_some() && prep.ids.first() == bos.as_ref()).then_some(0..1);
    let mut hide = vec![false; n];
    let mut mark = |r: &Range<usize>| hide[r.start.min(n)..r.end.min(n)].iter_mut().for_each(|h| *h = true);
    if !visible.contains(&"question") {
        mark(prep.question_span.as_ref().ok_or("`visible` leaves out `question`, but the prompt declares no question: give its text as a JSONL `question` field (hotpotqa declares it when the prompt holds it)")?);
    }
    if let (false, Some(d)) = (visible.contains(&"demos"), &prep.demos_span) {
        mark(d);
    }
    if let (false, Some(b)) = (visible.contains(&"bos"), &bos_span) {
        mark(b);
    }
    if !visible.contains(&"template") {
        let mut part = vec![false; n];
        for r in [Some(context), prep.question_span.as_ref(), prep.demos_span.as_ref(), bos_span.as_ref()].into_iter().flatten() {
            part[r.start.min(n)..r.end.min(n)].iter_mut().for_each(|p| *p = true);
        }
        hide.iter_mut().zip(&part).for_each(|(h, p)| *h |= !p);
    }
    // The context itself is the loop's to hide and show.
    hide[context.start.min(n)..context.end.min(n)].iter_mut().for_each(|h| *h = false);
    let mut out: Vec<Range<usize>> = Vec::new();
    for (i, _) in hide.iter().enumerate().filter(|(_, h)| **h) {
        match out.last_mut() {
            Some(r) if r.end == i => r.end += 1,
            _ => out.push(i..i + 1),
        }
    }
    Ok(out)
}

/// The heads of a retrieval under one strategy.
enum Picker {
    Fixed(Vec<Head>),
    Predicted { net: std::rc::Rc<Predictor>, count: usize, heads: usize },
    Random { pool: Vec<Head>, count: usize, rng: Box<PyRandom> },
    Oracle { count: usize, heads: usize },
}

impl HeadPicker for Picker {
    fn pick(&mut self, hidden: &[f32], eq2: &[f32], _retrieval: usize) -> Result<Vec<Head>, String> {
        Ok(match self {
            Picker::Fixed(h) => h.clone(),
            Picker::Predicted { net, count, heads } => {
                let out = net.predict(&Tensor::from_slice(hidden).view([1, hidden.len() as i64]));
                let scores = Vec::<f64>::try_from(out.to_kind(tch::Kind::Double).flatten(0, -1)).map_err(|e| e.to_string())?;
                let mut set: Vec<Head> = top_indices(&scores, *count).into_iter().map(|i| (i / *heads, i % *heads)).collect();
                set.sort();
                set
            }
            Picker::Random { pool, count, rng } => draw(pool, *count, rng),
            Picker::Oracle { count, heads } => {
                let mut order: Vec<usize> = (0..eq2.len()).collect();
                order.sort_by(|&a, &b| eq2[b].total_cmp(&eq2[a]).then(a.cmp(&b)));
                let mut set: Vec<Head> = order.into_iter().take(*count).map(|i| (i / *heads, i % *heads)).collect();
                set.sort();
                set
            }
        })
    }
    fn needs_eq2(&self) -> bool {
        matches!(self, Picker::Oracle { .. })
    }
}

/// `count` heads of `pool` without replacement (a partial Fisher–Yates shuffle), sorted.
fn draw(pool: &[Head], count: usize, rng: &mut PyRandom) -> Vec<Head> {
    let mut p = pool.to_vec();
    for i in 0..count.min(p.len()) {
        let j = i + (rng.getrandbits_128() % (p.len() - i) as u128) as usize;
        p.swap(i, j);
    }
    let mut set = p[..count.min(p.len())].to_vec();
    set.sort();
    set
}

/// One random stream per question, from the seed and its id, so a draw does not depend on order.
fn question_rng(seed: u64, id: &str) -> PyRandom {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{seed}/{id}").as_bytes());
    PyRandom::new(u64::from_le_bytes(d[..8].try_into().expect("32-byte digest")))
}

fn run(ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let model_name = n.arg("model").and_then(ref_name).ok_or("no model")?.to_string();
    let dataset_name = n.arg("dataset").and_then(ref_name).ok_or("no dataset")?.to_string();
    let (model_node, data_node) = super::load_model(ctx, &model_name, &dataset_name)?;
    let lm = &ctx.models[&model_name];
    let extra: BTreeMap<String, Json> = [("enable_thinking".to_string(), json!(req_bool(&model_node, "enable_thinking")?))].into();
    let prompts_of = match crate::ops::find(data_node.kind, &data_node.constructor).map(|op| op.exec) {
        Some(Exec::Dataset(prompts)) => prompts,
        _ => return Err(format!("dataset `{}` cannot feed a trace", data_node.constructor)),
    };
    let prompts = prompts_of(&data_node, &lm.tokenizer, &extra)?;
    let strategy = req_enum(n, "strategy")?;
    let count = req_int(n, "count")? as usize;
    let (layers, heads) = (lm.model.config.num_layers, lm.model.config.num_heads);
    let mut static_heads: Vec<Head> = vec![];
    let mut predictor: Option<std::rc::Rc<Predictor>> = None;
    if let Some(h) = n.arg("heads").and_then(ref_name) {
        let a = inputs.get(h).ok_or_else(|| format!("head set `{h}` not computed"))?;
        if strategy == "dynamic" {
            let Choice::Predicted(spec) = head_set(a)?.set else {
                return Err(format!("`strategy: dynamic` needs a head set predicted per step (`heads {h} = predicted(<trace>)`), and `{h}` is not one"));
            };
            if spec.d_in != lm.model.config.hidden_size || spec.model_layers != layers || spec.model_heads != heads {
                return Err(format!("`{h}` predicts the heads of a model with hidden size {} and {} × {} heads; `{model_name}` has {} and {layers} × {heads}", spec.d_in, spec.model_layers, spec.model_heads, lm.model.config.hidden_size));
            }
            let mlp = load_predictor(&spec, &a.read(PREDICTOR_FILE).map_err(|e| format!("`{h}`: {e}"))?)?;
            predictor = Some(std::rc::Rc::new(mlp.build().map_err(|e| format!("`{h}`: {e}"))?));
        } else {
            let set = fixed_heads(a, h)?;
            if set.len() < count {
                return Err(format!("head set `{h}` has {} heads, fewer than `count: {count}`", set.len()));
            }
            static_heads = set[..count].to_vec();
        }
    }
    if strategy == "oracle" {
        if let Some(p) = prompts.iter().find(|p| p.prep.needle_span.is_empty()) {
            return Err(format!("`strategy: oracle` ranks heads by Eq. 2 on each question's needle tokens, and dataset `{dataset_name}` gives prompt {} none", p.prep.id));
        }
    }
    let mut eos: Vec<u32> = lm.tokenizer.eos_ids.iter().chain(lm.model.config.eos_token_ids.iter()).copied().collect();
    eos.sort_unstable();
    eos.dedup();
    let opts = RagOptions {
        theta: req_f64(n, "theta")?,
        draft_tokens: req_int(n, "draft_tokens")? as usize,
        max_tokens: req_int(n, "max_tokens")? as usize,
        topk: req_int(n, "topk")? as usize,
        cluster_gap: req_int(n, "cluster_gap")? as usize,
        window: req_int(n, "window")? as usize,
        representative: if req_enum(n, "representative")? == "median" { Representative::Median } else { Representative::MaxAttn },
        keep_first_sentence: req_enum(n, "keep")? == "first_sentence",
        keep_windows: req_enum(n, "next_draft")? == "windows",
        kv: if req_enum(n, "kv")? == "recomputed" { KvMode::Recomputed } else { KvMode::EncodedOnce },
        rind_attn: if req_enum(n, "rind_attn")? == "in_context" { RindAttn::InContext } else { RindAttn::DraftOnly },
        query_pos: match req_enum(n, "query_pos")? {
            "trigger_token" => QueryPos::TriggerToken,
            "sentence_mean" => QueryPos::SentenceMean,
            _ => QueryPos::Last,
        },
        exclude_stop_words: req_enum(n, "stop_words")? == "excluded",
        force_answer: req_bool(n, "force_answer")?,
        answer_tokens: req_int(n, "answer_tokens")? as usize,
        eos,
        sink: req_int(n, "sink")? as usize,
        local: req_int(n, "local")? as usize,
        reencode_every_pass: !req_bool(n, "reuse_cache")?,
    };
    let visible: Vec<&str> = req_list(n, "visible")?.iter().filter_map(Value::as_str).collect();
    let seed_v = seed(n)?;
    let pool: Vec<Head> = (0..layers).flat_map(|l| (0..heads).map(move |h| (l, h))).collect();
    let total = prompts.len();
    let bar = if ctx.opts.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(total as u64) };
    bar.set_style(indicatif::ProgressStyle::with_template("    {bar:30} {pos}/{len} questions [{elapsed_precise}, ETA {eta}] {msg}").unwrap());
    let mut rag_prompts = Vec::with_capacity(total);
    let mut pickers = Vec::with_capacity(total);
    for p in &prompts {
        let context = p.prep.context_span.clone().ok_or_else(|| format!("prompt {} of dataset `{dataset_name}` declares no context: `rag` hides and shows a prompt's context (hotpotqa with `context: full`, or a JSONL `context` field)", p.prep.id))?;
        let also_hidden = also_hidden(&p.prep, &context, lm.tokenizer.bos_id, &visible).map_err(|e| format!("prompt {} of dataset `{dataset_name}`: {e}", p.prep.id))?;
        let prompt = RagPrompt { ids: &p.prep.ids, context, needle: &p.prep.needle_span, also_hidden };
        // Before any question runs: a prompt that ends with its context is refused.
        rag_loop::check_prompt(&prompt).map_err(|e| format!("prompt {} of dataset `{dataset_name}`: {e}", p.prep.id))?;
        rag_prompts.push(prompt);
        pickers.push(match strategy {
            "static" => Some(Picker::Fixed(static_heads.clone())),
            "dynamic" => Some(Picker::Predicted { net: predictor.clone().ok_or("`strategy: dynamic` without its predictor")?, count, heads }),
            "fixed_random" => Some(Picker::Fixed(draw(&pool, count, &mut question_rng(seed_v, &p.prep.id)))),
            "dynamic_random" => Some(Picker::Random { pool: pool.clone(), count, rng: Box::new(question_rng(seed_v, &p.prep.id)) }),
            "oracle" => Some(Picker::Oracle { count, heads }),
            _ => None,
        });
    }
    let strategies: Vec<Strategy> = pickers
        .iter_mut()
        .map(|picker| match (strategy, picker.as_mut()) {
            ("full", _) => Strategy::Full,
            (_, Some(p)) => Strategy::Heads(p),
            _ => Strategy::Hidden,
        })
        .collect();
    let capacity = rag_prompts.iter().map(|p| rag_loop::capacity(p, &opts)).max().unwrap_or(1);
    let batch = match int_arg(n, "batch_size") {
        Some(b) => b as usize,
        None => {
            let cuda = matches!(lm.model.device, tch::Device::Cuda(_));
            // Cached blocks of earlier traces count as free: hand them back before reading it.
            let fits = || {
                let free = cuda::empty_cache().and_then(|_| cuda::device_info(lm.model.device)).ok()?.0;
                Some(auto_batch_size(&lm.model, capacity, 0, free, EngineOptions::default().prefill_chunk_tokens))
            };
            let (batch, warning) = default_batch(&step.node.name, cuda, total, fits);
            if let Some(w) = warning {
                eprintln!("warning: {w}");
            }
            batch
        }
    };
    let runs = rag_loop::run_batch(&lm.model, &lm.tokenizer, &rag_prompts, strategies, &opts, batch, |_| bar.inc(1));
    // Every question that failed, by id (a failed batched forward fails each of its rows').
    let failed: Vec<String> = prompts.iter().zip(&runs).filter_map(|(p, r)| r.as_ref().err().map(|e| format!("question {}: {e}", p.prep.id))).collect();
    if !failed.is_empty() {
        return Err(failed.join("\n"));
    }
    let mut lines = Vec::with_capacity(total);
    for ((p, prompt), r) in prompts.iter().zip(&rag_prompts).zip(runs.into_iter().flatten()) {
        let mut meta = p.meta.clone();
        meta["rag"] = json!({
            "retrievals": r.retrievals,
            "drafts": r.drafts,
            "forced": r.forced,
            "passes": r.passes,
            "fed": r.fed,
            "context_tokens": prompt.context.len(),
        });
        lines.push(TraceLine {
            answer: p.answer.clone(),
            id: p.prep.id.clone(),
            meta,
            needle_span: p.prep.needle_span.clone(),
            pieces: r.tokens.iter().map(|&t| lm.tokenizer.decode_exact(&[t])).collect(),
            prompt_pieces: vec![],
            prompt_tokens: p.prep.ids.len(),
            steps: vec![],
            stopped_by_eos: r.tokens.last().is_some_and(|t| opts.eos.contains(t)),
            text: r.prediction(&lm.tokenizer),
            tokens: r.tokens,
        });
    }
    bar.finish_and_clear();
    let info = TraceInfo {
        dataset: dataset_name,
        decode_loops: vec!["session".into()],
        device: device::describe(lm.model.device),
        engine: serde_json::to_value(&ctx.engine).map_err(|e| e.to_string())?,
        format: TRACE_FORMAT,
        heads,
        intervention: json!({"kind": "rag", "strategy": strategy, "count": count, "heads": n.arg("heads").and_then(ref_name), "batch_size": batch}),
        layers,
        model: model_name,
        retrieval: HeadRule::CopyPaste,
        samples: total,
    };
    let info = serde_json::to_vec_pretty(&info).map_err(|e| e.to_string())?;
    let mut files = write_trace(&lines).map_err(|e| e.to_string())?;
    files.push(("trace_info.json".into(), info));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::{also_hidden, default_batch};
    use crate::data::prompts::PreparedPrompt;

    /// `visible`'s parts on a prompt of BOS, demos 1..5, context 5..12, template 12..15,
    /// question 15..18, template 18..20.
    #[test]
    fn visible_leaves_out_exactly_its_parts() {
        let prep = |first: u32, question: bool| PreparedPrompt {
            id: "q".into(),
            line: 1,
            rendered: String::new(),
            ids: std::iter::once(first).chain(2..21).collect(),
            needle_span: vec![],
            context_span: Some(5..12),
            question_span: question.then_some(15..18),
            demos_span: Some(1..5),
        };
        let all = ["bos", "template", "demos", "question"];
        let without = |gone: &[&str]| all.iter().copied().filter(|p| !gone.contains(p)).collect::<Vec<_>>();
        let hidden = |first, question, gone: &[&str]| also_hidden(&prep(first, question), &(5..12), Some(1), &without(gone));
        assert_eq!(hidden(1, true, &[]).unwrap(), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(hidden(1, true, &["question"]).unwrap(), vec![15..18]);
        assert_eq!(hidden(1, true, &["demos"]).unwrap(), vec![1..5]);
        assert_eq!(hidden(1, true, &["bos"]).unwrap(), vec![0..1]);
        assert_eq!(hidden(1, true, &["template"]).unwrap(), vec![12..15, 18..20]);
        assert_eq!(hidden(1, true, &["template", "question"]).unwrap(), vec![12..20]);
        assert_eq!(hidden(1, true, &all).unwrap(), vec![0..5, 12..20]);
        // A first token that is not BOS is template.
        assert_eq!(hidden(7, true, &["bos"]).unwrap(), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(hidden(7, true, &["template"]).unwrap(), vec![0..1, 12..15, 18..20]);
        // The question must be declared to be hidden; it need not be to stay visible.
        assert!(hidden(1, false, &["question"]).unwrap_err().contains("declares no question"));
        assert_eq!(hidden(1, false, &["template"]).unwrap(), vec![12..20]);
    }

    /// The default does not depend on free GPU memory unless it does not fit: then it is
    /// lowered, with a warning naming the size used and how to set it.
    #[test]
    fn the_default_batch_is_fixed_and_lowered_only_with_a_warning() {
        let never = || -> Option<usize> { panic!("the CPU default reads no GPU memory") };
        assert_eq!(default_batch("r", false, 500, never), (1, None));
        for fits in [Some(64), Some(1024), None] {
            assert_eq!(default_batch("r", true, 500, || fits), (64, None), "{fits:?}");
            assert_eq!(default_batch("r", true, 10, || fits), (10, None), "{fits:?}");
        }
        assert_eq!(default_batch("r", true, 0, || Some(1024)), (1, None));
        let (batch, warning) = default_batch("dyn", true, 500, || Some(20));
        let warning = warning.expect("lowered with a warning");
        assert_eq!(batch, 20);
        assert!(warning.contains("running 20 questions at a time") && warning.contains("`batch_size: N` on `dyn`") && warning.contains("--set dyn.batch_size=N"), "{warning}");
        assert_eq!(default_batch("dyn", true, 500, || Some(0)).0, 1);
        assert_eq!(default_batch("dyn", true, 10, || Some(20)), (10, None), "fits: no warning");
    }
}
