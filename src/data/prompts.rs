//! Bring-your-own prompts: one JSON object per line, either
//! `{"id", "messages": [{"role", "content"}...], "needle"}` (rendered with the model's chat
//! template and the generation prompt) or `{"id", "text", "needle"}` (raw text, tokenised with
//! the tokenizer's default special tokens). The needle span is every prompt token whose
//! character range overlaps the first occurrence of `needle` in the rendered prompt; a line
//! may give `"needles": [..]` instead (HotpotQA's supporting facts), and the span is then every
//! token of the first occurrence of each, sorted. Section 5's `rag` reads three more spans, each
//! the tokens covering a text the line declares: `context` (its first occurrence), `demos` (their
//! first) and `question` (its last: it follows its context and any demos).
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::engine::chat::{apply_chat_template, ChatMessage};
use crate::engine::tokenizer::Tokenizer;

/// Other fields (metadata such as `answer` or `depth`) are ignored.
#[derive(Debug, Deserialize)]
struct RawLine {
    id: Option<serde_json::Value>,
    messages: Option<Vec<ChatMessage>>,
    text: Option<String>,
    needle: Option<String>,
    needles: Option<Vec<String>>,
    /// The text of the prompt's context (documents a retrieval can show or hide): its first
    /// occurrence in the rendered prompt becomes [`PreparedPrompt::context_span`].
    context: Option<String>,
    /// The text of the question (its last occurrence) and of the few-shot demos (their first):
    /// spans `rag(visible: …)` can hide along with the context.
    question: Option<String>,
    demos: Option<String>,
    /// Ignored by tracing; kept so NIAH files can carry their expected answer.
    #[allow(dead_code)]
    answer: Option<String>,
}

/// A prompt ready for the engine.
#[derive(Debug, Clone)]
pub struct PreparedPrompt {
    pub id: String,
    /// 1-based line number in the input file.
    pub line: usize,
    pub rendered: String,
    pub ids: Vec<u32>,
    /// Token positions of the needle span (empty when no needle was given).
    pub needle_span: Vec<usize>,
    /// Token positions of the line's `context` (Section 5 hides and shows it).
    pub context_span: Option<std::ops::Range<usize>>,
    /// Token positions of the line's `question` (its last occurrence) and `demos` (their first).
    pub question_span: Option<std::ops::Range<usize>>,
    pub demos_span: Option<std::ops::Range<usize>>,
}

/// An input line that cannot be traced; the message names the id and line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("line {line} (id {id}): {message}")]
pub struct LineError {
    pub line: usize,
    pub id: String,
    pub message: String,
}

/// Parses and tokenises one line. `extra` is passed to the chat template (e.g.
/// `enable_thinking: false`).
pub fn prepare_line(text: &str, line: usize, tok: &Tokenizer, extra: &BTreeMap<String, serde_json::Value>) -> Result<PreparedPrompt, LineError> {
    let err = |id: &str, message: String| LineError { line, id: id.to_string(), message };
    let raw: RawLine = serde_json::from_str(text).map_err(|e| err("?", format!("not a valid prompt object: {e}")))?;
    let id = match &raw.id {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v @ serde_json::Value::Number(_)) => v.to_string(),
        Some(_) => return Err(err("?", "`id` must be a string or a number".into())),
        None => return Err(err("?", "missing `id`".into())),
    };
    let (rendered, add_special) = match (&raw.messages, &raw.text) {
        (Some(_), Some(_)) => return Err(err(&id, "give either `messages` or `text`, not both".into())),
        (None, None) => return Err(err(&id, "missing `messages` (chat) or `text` (raw prompt)".into())),
        (Some(m), None) if m.is_empty() => return Err(err(&id, "`messages` is empty".into())),
        (Some(m), None) => (apply_chat_template(tok, m, true, extra).map_err(|e| err(&id, format!("chat template: {e}")))?, false),
        (None, Some(t)) if t.is_empty() => return Err(err(&id, "`text` is empty".into())),
        (None, Some(t)) => (t.clone(), true),
    };
    let enc = tok.encode(&rendered, add_special).map_err(|e| err(&id, format!("tokenizer: {e}")))?;
    let needles: Vec<&str> = match (&raw.needle, &raw.needles) {
        (Some(_), Some(_)) => return Err(err(&id, "give either `needle` or `needles`, not both".into())),
        (Some(n), None) => vec![n.as_str()],
        (None, Some(list)) if list.is_empty() => return Err(err(&id, "`needles` is empty".into())),
        (None, Some(list)) => list.iter().map(String::as_str).collect(),
        (None, None) => vec![],
    };
    let mut needle_span = Vec::new();
    for (i, needle) in needles.iter().enumerate() {
        let which = if raw.needles.is_some() { format!("needles[{i}]") } else { "needle".to_string() };
        if needle.is_empty() {
            return Err(err(&id, format!("`{which}` is empty")));
        }
        let byte_start = rendered.find(needle).ok_or_else(|| err(&id, format!("{which} {needle:?} does not occur in the rendered prompt")))?;
        let range = enc
            .token_range_for_bytes(byte_start, byte_start + needle.len())
            .ok_or_else(|| err(&id, format!("{which} found in the text but no token covers it")))?;
        needle_span.extend(range);
    }
    needle_span.sort_unstable();
    needle_span.dedup();
    if enc.ids.is_empty() {
        return Err(err(&id, "the prompt tokenises to nothing".into()));
    }
    // The tokens covering a declared text: its first occurrence, or its last (`last`).
    let span_of = |field: &str, text: &Option<String>, last: bool| -> Result<Option<std::ops::Range<usize>>, LineError> {
        match text {
            None => Ok(None),
            Some(t) if t.is_empty() => Err(err(&id, format!("`{field}` is empty"))),
            Some(t) => {
                let found = if last { rendered.rfind(t.as_str()) } else { rendered.find(t.as_str()) };
                let byte_start = found.ok_or_else(|| err(&id, format!("`{field}` does not occur in the rendered prompt")))?;
                let range = enc.token_range_for_bytes(byte_start, byte_start + t.len()).ok_or_else(|| err(&id, format!("`{field}` found in the text but no token covers it")))?;
                Ok(Some(range))
            }
        }
    };
    let context_span = span_of("context", &raw.context, false)?;
    let question_span = span_of("question", &raw.question, true)?;
    let demos_span = span_of("demos", &raw.demos, false)?;
    Ok(PreparedPrompt { id, line, rendered, ids: enc.ids, needle_span, context_span, question_span, demos_span })
}
