//! `dataset … = niah(…)`: needle-in-a-haystack prompts (paper A.1).
use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use crate::lang::schema::{FuncSpec, int_range, float_range, enm, list, text, template, BUILTIN_HAYSTACKS, Ty, PathKind};

use crate::lang::{Kind, Node, Value};
use crate::ops::args::*;
use crate::ops::{Exec, OpDef, Refusal, only};
use crate::data::niah::{self, Cell, FullDepth, Haystack, Layout, LengthMode, PromptTexts};
use crate::data::prompts::prepare_line;
use crate::engine::tokenizer::Tokenizer;
use crate::ops::SamplePrompt;

pub const OP: OpDef = OpDef { kind: Kind::Dataset, name: "niah", spec, source: file!(), check: Some(check), exec: Exec::Dataset(prompts) };

fn spec() -> FuncSpec {
    FuncSpec::new("niah", "Needle-in-a-haystack prompts (paper A.1, reference §8.1): a needle sentence with a fresh UUID inserted into a haystack at each (length, depth) cell.")
        .def("haystack", Ty::OneOf(vec![Ty::Builtin { ns: "builtin", names: BUILTIN_HAYSTACKS }, Ty::Path(PathKind::Dir)]), "builtin.alice", "niah.haystack: a built-in text or a folder of .txt files (sorted, concatenated)")
        .req("lengths", list(int_range(1, 1_000_000)), "niah.lengths: context lengths in tokens")
        .def("depths", list(float_range(0.0, 1.0)), "linspace(0.0, 1.0, 11)", "niah.depths: needle depths (0 = start, 1 = end)")
        .def("depth_mode", enm(&["grid", "uniform_random"]), "grid", "niah.depth_mode: the depths grid, or one random depth per run")
        .def("runs", int_range(1, 100_000), "5", "runs per (length, depth) cell, each with a fresh UUID (Fig. 2: 5, Fig. 3: 20)")
        .def("needle", template(&["uuid"], &["uuid"]), "\"The magic word is {uuid}.\"", "needle sentence; {uuid} is replaced by the run's UUID")
        .def("question", template(&[], &[]), "\"What is the magic word?\"", "question asked after the context")
        .def("system", text(), "\"You are a helpful AI bot that answers questions for a user. Keep your response short and direct.\"", "system prompt (A.1)")
        .def(
            "user_template",
            template(&["haystack", "question"], &["haystack", "question"]),
            "\"Context:\\n{haystack}\\n\\nQuestion:\\n{question}\\n\\nInstruction:\\nDon't give information outside the document or repeat your findings.\"",
            "niah.user_template: the user turn",
        )
        .def("full_depth", enm(&["back_up", "end"]), "end", "niah.full_depth: at depth 1.0, back up to a sentence end like inner depths, or put the needle after the last haystack token (Kamradt's `depth_percent == 100`)")
        .def("start", float_range(0.0, 0.99), "0.0", "niah.start: where the context starts in the haystack text, a fraction of its characters moved on to the next paragraph (the text before follows at the end); 0 = the beginning, as Kamradt. Another value gives a detection set with other text than the evaluation set")
        .def("needle_span", enm(&["sentence", "uuid"]), "sentence", "niah.needle_span: tokens that count as the needle in Eq. 1")
        .def("length_mode", enm(&["kamradt", "haystack_exact", "prompt_total"]), "kamradt", "niah.length_mode: what a length measures")
        .def("sentence_end", enm(&["period_ids", "decoded_endswith_period"]), "decoded_endswith_period", "niah.sentence_end: how the insertion point backs up to a sentence end")
        .def("span_locator", enm(&["char_offsets", "set_overlap"]), "char_offsets", "niah.span_locator: how the needle's tokens are found")
        .def("reencode_quirk", Ty::Bool, "false", "niah.reencode_quirk: reproduce Wu et al.'s BOS-before-needle re-encoding")
        .seed("seed of UUIDs and random depths")
}

/// The prompts of a `niah` dataset for `tokenizer` (lengths are counted in its tokens).
fn prompts(n: &Node, tokenizer: &Tokenizer, extra: &BTreeMap<String, Json>) -> Result<Vec<SamplePrompt>, String> {
    let haystack = match n.arg("haystack") {
        Some(Value::Path { resolved, .. }) => Haystack::Dir(resolved.clone()),
        Some(Value::Builtin { name, .. }) if name == "alice" => Haystack::Alice,
        other => return Err(format!("haystack {other:?} is not bundled")),
    };
    let ints = |name: &str| -> Result<Vec<usize>, String> { Ok(req_list(n, name)?.iter().filter_map(Value::as_int).map(|x| x as usize).collect()) };
    let lengths = ints("lengths")?;
    let depths: Vec<f64> = req_list(n, "depths")?.iter().filter_map(Value::as_f64).collect();
    let runs = req_int(n, "runs")? as usize;
    let seed = seed(n)?;
    let texts = PromptTexts {
        system: req_enum(n, "system")?.to_string(),
        question: req_enum(n, "question")?.to_string(),
        user_template: req_enum(n, "user_template")?.to_string(),
        needle: req_enum(n, "needle")?.to_string(),
    };
    let mode = match req_enum(n, "length_mode")? {
        "haystack_exact" => LengthMode::HaystackExact,
        "kamradt" => LengthMode::Kamradt,
        other => return Err(format!("`length_mode: {other}` is not implemented")),
    };
    let cells: Vec<Cell> = match req_enum(n, "depth_mode")? {
        "uniform_random" => niah::random_depths(&lengths, runs, seed),
        _ => niah::grid(&lengths, &depths, runs),
    };
    let full_depth = if req_enum(n, "full_depth")? == "end" { FullDepth::End } else { FullDepth::BackUp };
    let layout = Layout { length_mode: mode, full_depth, start: req_f64(n, "start")? };
    let samples = niah::build_with(tokenizer, &haystack, &cells, seed, &texts, layout).map_err(|e| e.to_string())?;
    let uuid_span = req_enum(n, "needle_span")? == "uuid";
    let mut out = Vec::with_capacity(samples.len());
    for (i, s) in samples.into_iter().enumerate() {
        let needle = if uuid_span { s.answer.clone() } else { s.needle.clone() };
        let line = json!({"id": s.id, "messages": s.messages, "needle": needle}).to_string();
        let prep = prepare_line(&line, i + 1, tokenizer, extra).map_err(|e| e.to_string())?;
        out.push(SamplePrompt { prep, answer: Some(s.answer.clone()), meta: json!({"length": s.haystack_tokens, "depth": s.depth, "run": s.run, "insert_token": s.insert_token, "needle": s.needle}) });
    }
    Ok(out)
}

/// Options of the reference implementations that are declared but not run yet.
fn check(n: &Node) -> Result<(), Refusal> {
    only(n, "depth_mode", &["grid", "uniform_random"])?;
    only(n, "length_mode", &["kamradt", "haystack_exact"])?;
    only(n, "sentence_end", &["decoded_endswith_period"])?;
    only(n, "span_locator", &["char_offsets"])?;
    if n.arg("reencode_quirk") == Some(&Value::Bool(true)) {
        return Err(Refusal::new("reencode_quirk", "`reencode_quirk: true` is not implemented by the executor yet"));
    }
    Ok(())
}
