//! `dataset … = hotpotqa(…)`: HotpotQA distractor questions with their ten paragraphs in the
//! prompt (Section 4, reference §3.1, §9 rows 33–34). The needles are the supporting-fact
//! sentences; Eq. 2 measures attention on them.
use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value as Json};

use crate::data::hotpotqa::{self, Exemplars, Question, DEV500, DEV500_NAME};
use crate::data::prompts::prepare_line;
use crate::engine::tokenizer::Tokenizer;
use crate::lang::schema::{enm, int_min, int_range, template, text, FuncSpec, PathKind, Ty};
use crate::lang::{Kind, Node, Value};
use crate::ops::args::*;
use crate::ops::{Exec, OpDef, SamplePrompt};

/// Bundled question sets (`builtin.<name>`, `experiments/hotpotqa/`).
const BUILTIN_HOTPOTQA: &[&str] = &["hotpotqa_dev500"];

pub const OP: OpDef = OpDef { kind: Kind::Dataset, name: "hotpotqa", spec, source: file!(), check: None, exec: Exec::Dataset(prompts) };

fn spec() -> FuncSpec {
    FuncSpec::new(
        "hotpotqa",
        "HotpotQA distractor-setting questions (Section 4) with their paragraphs in the prompt; the supporting-fact sentences are the needles.",
    )
    .pos_def(
        "data",
        Ty::OneOf(vec![Ty::Builtin { ns: "builtin", names: BUILTIN_HOTPOTQA }, Ty::Path(PathKind::File)]),
        "builtin.hotpotqa_dev500",
        "the questions: the bundled 500-question random sample of the dev set (CC BY-SA 4.0), or a JSON file in the official layout (`hotpot_dev_distractor_v1.json`)",
    )
    .def("n", int_min(1), "500", "hotpot.n: number of questions (the first N of the file, from row `start`)")
    .def("start", int_min(0), "0", "hotpot.start: rows of the file skipped first (e.g. a detection set of other questions than the evaluation set's)")
    .def("split", enm(&["dev_distractor"]), "dev_distractor", "hotpot.split: the setting the file is in (the ten paragraphs are part of each question)")
    .def(
        "context_format",
        enm(&["title_paragraph", "dragin_numbered"]),
        "title_paragraph",
        "hotpot.context_format: the chat template with \"Title: text\" paragraphs and `user_template`, or DRAGIN's plain-text few-shot chain-of-thought prompt with \"[i] text\" documents",
    )
    .def("context", enm(&["full", "none"]), "full", "the paragraphs in the prompt, or none (a no-context baseline: what the model answers from its weights alone; no needles)")
    .def("chat", Ty::Bool, "true", "dragin_numbered: send DRAGIN's text as one user turn through the model's chat template (an instruction-tuned model ends a raw-text prompt at once: SmolLM2 emits <|im_end|> after \"Answer:\"); false: DRAGIN's raw text")
    .def("system", text(), "\"You are a helpful assistant. Answer questions using the given paragraphs.\"", "system prompt (title_paragraph)")
    .def(
        "user_template",
        template(&["context", "question"], &["question"]),
        "\"{context}\\n\\nAnswer the following question by reasoning step-by-step. End your answer with \\\"So the answer is <answer>.\\\"\\nQuestion: {question}\"",
        "the user turn (title_paragraph); {context} is the paragraphs, empty with `context: none`",
    )
    .def("fewshot", int_range(0, 11), "8", "dragin_numbered: DRAGIN's exemplars before the question (DRAGIN's HotpotQA config: 8)")
}

/// The prompts of a `hotpotqa` dataset, with each question's gold answer and its cell: `type`,
/// `level`, `length` (prompt tokens), `depth` (mean position of the supporting-fact tokens ÷
/// prompt tokens), `facts`, `facts_dropped`.
fn prompts(n: &Node, tokenizer: &Tokenizer, extra: &BTreeMap<String, Json>) -> Result<Vec<SamplePrompt>, String> {
    let count = req_int(n, "n")? as usize;
    let start = req_int(n, "start")? as usize;
    let loaded = match n.arg("data") {
        Some(Value::Path { resolved, .. }) => hotpotqa::load(resolved, start, count),
        Some(Value::Builtin { name, .. }) if name == "hotpotqa_dev500" => hotpotqa::parse(DEV500, Path::new(DEV500_NAME), start, count),
        other => return Err(format!("data {other:?} is not bundled")),
    }
    .map_err(|e| e.to_string())?;
    let with_context = req_enum(n, "context")? == "full";
    let dragin = req_enum(n, "context_format")? == "dragin_numbered";
    let exemplars = if dragin { Some(Exemplars::dragin().map_err(|e| e.to_string())?) } else { None };
    let fewshot = req_int(n, "fewshot")? as usize;
    let chat = req_bool(n, "chat")?;
    let system = req_enum(n, "system")?;
    let user_template = req_enum(n, "user_template")?;
    let mut out = Vec::with_capacity(loaded.questions.len());
    for (i, (q, dropped)) in loaded.questions.iter().zip(&loaded.facts_dropped).enumerate() {
        let needles = if with_context { q.needles() } else { vec![] };
        let (mut line, user) = match &exemplars {
            Some(ex) => {
                let user = ex.prompt(q, fewshot, with_context);
                let line = if chat { json!({"id": q.id, "messages": [{"role": "user", "content": user}]}) } else { json!({"id": q.id, "text": user}) };
                (line, user)
            }
            None => {
                let context = if with_context { q.title_paragraph_context() } else { String::new() };
                let user = user_template.replace("{context}", &context).replace("{question}", &q.question);
                let user = if with_context { user } else { user.trim_start().to_string() };
                (json!({"id": q.id, "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}), user)
            }
        };
        if !needles.is_empty() {
            line["needles"] = json!(needles);
        }
        // The spans `rag(visible: …)` can hide along with the context.
        if user.contains(&q.question) {
            line["question"] = json!(q.question);
        }
        if let Some(ex) = exemplars.as_ref().filter(|_| fewshot > 0) {
            line["demos"] = json!(ex.demos(fewshot));
        }
        if with_context {
            // The span Section 5 hides and shows (`PreparedPrompt::context_span`).
            line["context"] = json!(if dragin { q.numbered_context() } else { q.title_paragraph_context() });
        }
        let prep = prepare_line(&line.to_string(), i + 1, tokenizer, extra).map_err(|e| format!("hotpotqa question {i} (id {}): {e}", q.id))?;
        out.push(SamplePrompt { answer: Some(q.answer.clone()), meta: cell(q, &prep.needle_span, prep.ids.len(), *dropped), prep });
    }
    Ok(out)
}

fn cell(q: &Question, needle_span: &[usize], prompt_tokens: usize, facts_dropped: usize) -> Json {
    let depth = if needle_span.is_empty() { Json::Null } else { json!(needle_span.iter().sum::<usize>() as f64 / needle_span.len() as f64 / prompt_tokens as f64) };
    json!({
        "question": q.question,
        "type": q.kind,
        "level": q.level,
        "length": prompt_tokens,
        "depth": depth,
        "facts": q.supporting_facts.len(),
        "facts_dropped": facts_dropped,
    })
}
