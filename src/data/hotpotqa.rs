//! HotpotQA questions in the distractor setting (Section 4): the official JSON layout read
//! with errors that name the row, and the prompt texts of the two formats (reference §3.1,
//! §9 rows 33–34). The needles of a question are its supporting-fact sentences
//! (`supporting_facts` = (title, sentence index) into `context`).
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One question of the official file (`hotpot_dev_distractor_v1.json` layout).
#[derive(Debug, Clone, Deserialize)]
pub struct Question {
    #[serde(rename = "_id")]
    pub id: String,
    pub answer: String,
    pub question: String,
    pub supporting_facts: Vec<(String, usize)>,
    /// `(title, sentences)`: joining the sentences with "" rebuilds the paragraph.
    pub context: Vec<(String, Vec<String>)>,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub level: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HotpotError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: question {row} (0-based){}: {message}", .id.as_ref().map(|i| format!(", id {i}")).unwrap_or_default())]
    Row { path: PathBuf, row: usize, id: Option<String>, message: String },
    #[error("exemplars: {0}")]
    Exemplars(String),
}

/// Reads the first `n` questions of a HotpotQA JSON file (a JSON array of questions); fewer
/// when the file holds fewer. Every supporting fact must name a paragraph of the question's
/// context; one whose sentence index is past the paragraph's end is dropped and counted in
/// [`Loaded::facts_dropped`] (the official dev file has a few).
pub fn load(path: &Path, start: usize, n: usize) -> Result<Loaded, HotpotError> {
    let text = std::fs::read_to_string(path).map_err(|e| HotpotError::File { path: path.to_path_buf(), message: format!("cannot read: {e}") })?;
    parse(&text, path, start, n)
}

/// The bundled sample: 500 random dev-distractor questions (RPT's seeded "test" draw,
/// `experiments/hotpotqa/README.md`), in the official layout.
pub const DEV500: &str = include_str!("../../experiments/hotpotqa/dev_distractor_sample500.json");
pub const DEV500_NAME: &str = "builtin.hotpotqa_dev500";

/// [`load`] of a file's text (rows `start..start + n`); `path` names it in errors.
pub fn parse(text: &str, path: &Path, start: usize, n: usize) -> Result<Loaded, HotpotError> {
    let file_err = |message: String| HotpotError::File { path: path.to_path_buf(), message };
    let rows: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| file_err(format!("not a JSON array of HotpotQA questions: {e}")))?;
    let mut questions = Vec::with_capacity(n.min(rows.len()));
    let mut facts_dropped = Vec::new();
    let total = rows.len();
    for (row, value) in rows.into_iter().enumerate().skip(start).take(n) {
        let id = value.get("_id").and_then(|v| v.as_str()).map(str::to_string);
        let row_err = |message: String| HotpotError::Row { path: path.to_path_buf(), row, id: id.clone(), message };
        let mut q: Question = serde_json::from_value(value).map_err(|e| row_err(format!("not a HotpotQA question: {e}")))?;
        if q.context.is_empty() {
            return Err(row_err("`context` is empty".into()));
        }
        let before = q.supporting_facts.len();
        for (title, _) in &q.supporting_facts {
            if !q.context.iter().any(|(t, _)| t == title) {
                return Err(row_err(format!("supporting fact {title:?} is not a paragraph title of its context")));
            }
        }
        q.supporting_facts.retain(|(title, i)| q.context.iter().any(|(t, s)| t == title && *i < s.len()));
        if q.supporting_facts.is_empty() {
            return Err(row_err("none of its supporting facts names an existing sentence".into()));
        }
        facts_dropped.push(before - q.supporting_facts.len());
        questions.push(q);
    }
    if questions.is_empty() {
        return Err(file_err(if start > 0 { format!("holds no questions from row {start} on (it has {total})") } else { "holds no questions".into() }));
    }
    Ok(Loaded { questions, facts_dropped })
}

pub struct Loaded {
    pub questions: Vec<Question>,
    /// Per question, supporting facts whose sentence index is past its paragraph.
    pub facts_dropped: Vec<usize>,
}

impl Question {
    /// A paragraph's text: its sentences joined with "" (they carry their own leading spaces).
    pub fn paragraph(sentences: &[String]) -> String {
        sentences.concat()
    }

    /// The supporting-fact sentences, trimmed, in the order of `supporting_facts`.
    pub fn needles(&self) -> Vec<String> {
        self.supporting_facts
            .iter()
            .filter_map(|(title, i)| self.context.iter().find(|(t, _)| t == title).and_then(|(_, s)| s.get(*i)))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The context as "Title: text" blocks separated by a blank line (the default format).
    pub fn title_paragraph_context(&self) -> String {
        self.context.iter().map(|(t, s)| format!("{t}: {}", Self::paragraph(s))).collect::<Vec<_>>().join("\n\n")
    }

    /// The context as DRAGIN lists retrieved documents: "[i] {text}" lines, i from 1.
    pub fn numbered_context(&self) -> String {
        self.context.iter().enumerate().map(|(i, (_, s))| format!("[{}] {}\n", i + 1, Self::paragraph(s))).collect()
    }
}

/// DRAGIN's HotpotQA exemplars and templates (`experiments/hotpotqa/dragin_exemplars.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct Exemplars {
    pub demo_input_template: String,
    pub test_input_template: String,
    pub output_template: String,
    pub exemplars: Vec<Exemplar>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Exemplar {
    pub question: String,
    pub cot: String,
    pub answer: String,
}

/// The bundled copy of DRAGIN's exemplars.
pub const DRAGIN_EXEMPLARS: &str = include_str!("../../experiments/hotpotqa/dragin_exemplars.json");

impl Exemplars {
    pub fn dragin() -> Result<Exemplars, HotpotError> {
        serde_json::from_str(DRAGIN_EXEMPLARS).map_err(|e| HotpotError::Exemplars(e.to_string()))
    }

    /// DRAGIN's prompt with the documents in context (`src/generate.py`, `inference`): the
    /// first `fewshot` demo cases, each followed by "\n"; "Context:\n" and one "[i] doc" line
    /// per paragraph (unless `with_context` is false: DRAGIN without retrieval); "Answer in the
    /// same format as before.\n"; the test case.
    pub fn prompt(&self, q: &Question, fewshot: usize, with_context: bool) -> String {
        let mut p = self.demos(fewshot);
        if with_context {
            p.push_str("Context:\n");
            p.push_str(&q.numbered_context());
            p.push_str("Answer in the same format as before.\n");
        }
        p.push_str(&self.test_input_template.replace("{question}", &q.question));
        p
    }

    /// The first `fewshot` demo cases as [`Exemplars::prompt`] writes them, each followed by "\n".
    pub fn demos(&self, fewshot: usize) -> String {
        let mut p = String::new();
        for e in self.exemplars.iter().take(fewshot) {
            let input = self.demo_input_template.replace("{question}", &e.question);
            let output = self.output_template.replace("{cot}", &e.cot).replace("{answer}", &e.answer);
            let sep = if input.ends_with(['\n', ' ']) { "" } else { " " };
            p.push_str(&format!("{input}{sep}{output}\n"));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question() -> Question {
        Question {
            id: "x".into(),
            answer: "producer".into(),
            question: "Q?".into(),
            supporting_facts: vec![("B".into(), 1), ("A".into(), 0)],
            context: vec![("A".into(), vec!["A one.".into(), " A two.".into()]), ("B".into(), vec!["B one.".into(), " B two.".into()])],
            kind: "bridge".into(),
            level: "hard".into(),
        }
    }

    #[test]
    fn contexts_and_needles() {
        let q = question();
        assert_eq!(q.title_paragraph_context(), "A: A one. A two.\n\nB: B one. B two.");
        assert_eq!(q.numbered_context(), "[1] A one. A two.\n[2] B one. B two.\n");
        assert_eq!(q.needles(), vec!["B two.", "A one."]);
    }

    #[test]
    fn dragin_prompt_has_demos_context_and_case() {
        let ex = Exemplars::dragin().unwrap();
        assert_eq!(ex.exemplars.len(), 11);
        let p = ex.prompt(&question(), 8, true);
        assert!(p.starts_with("Question: Jeremy Theobald and Christopher Nolan share what profession?\nAnswer: Jeremy Theobald is an actor and producer."));
        assert!(p.contains(" So the answer is Germany.\nContext:\n[1] A one. A two.\n[2] B one. B two.\nAnswer in the same format as before.\nAnswer the following question"));
        assert!(p.ends_with("Question: Q?\nAnswer:"));
        assert_eq!(p.matches("\nAnswer:").count(), 9);
    }
}
