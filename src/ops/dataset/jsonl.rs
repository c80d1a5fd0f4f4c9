//! `dataset … = jsonl(…)`: prompts from a JSONL file.
use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use crate::lang::schema::{FuncSpec, int_min, Ty, PathKind};

use crate::lang::{Kind, Node, Value};
use crate::ops::args::*;
use crate::ops::{Exec, OpDef};
use crate::data::prompts::prepare_line;
use crate::engine::tokenizer::Tokenizer;
use crate::ops::SamplePrompt;

pub const OP: OpDef = OpDef { kind: Kind::Dataset, name: "jsonl", spec, source: file!(), check: None, exec: Exec::Dataset(prompts) };

fn spec() -> FuncSpec {
    FuncSpec::new(
        "jsonl",
        "Prompts from a JSONL file, one `{\"id\", \"messages\"}` object per line.",
    )
    .pos("path", Ty::Path(PathKind::File), "the .jsonl file")
    .opt("limit", int_min(1), "use only the first N rows")
}

/// One prompt per non-empty line; an `answer` field is what generations are scored against.
fn prompts(n: &Node, tokenizer: &Tokenizer, extra: &BTreeMap<String, Json>) -> Result<Vec<SamplePrompt>, String> {
    let Some(Value::Path { resolved, .. }) = n.arg("path") else { return Err("jsonl: no path".into()) };
    let text = std::fs::read_to_string(resolved).map_err(|e| format!("{}: {e}", resolved.display()))?;
    let limit = int_arg(n, "limit").map(|l| l as usize).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).take(limit) {
        let prep = prepare_line(line, i + 1, tokenizer, extra).map_err(|e| format!("{}: {e}", resolved.display()))?;
        let answer = serde_json::from_str::<Json>(line).ok().and_then(|v| v.get("answer").and_then(Json::as_str).map(str::to_string));
        out.push(SamplePrompt { prep, answer, meta: json!({}) });
    }
    Ok(out)
}
