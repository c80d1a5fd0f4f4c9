//! A trace artifact: `trace.jsonl`, one [`TraceLine`] per prompt, and `trace_info.json`
//! ([`TraceInfo`]). One writer ([`write_lines`]) and one reader ([`read_lines`]) serve every op;
//! nothing reads a trace through untyped JSON lookups.
//!
//! Field names and their order are those of the trace format the README documents (keys sorted,
//! as `serde_json` maps write them), so the bytes of a trace are what they were before the types
//! existed. Floats are written as `f64` of the engine's `f32`, which is how they were written
//! before too: a value read back is the engine's `f32` exactly.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::analysis::dynamism::Head;
use crate::cache::Artifact;

/// The trace format. Part of every trace's key (through this file's hash) and of its
/// `trace_info.json`; bump it when a field changes meaning.
pub const TRACE_FORMAT: u32 = 1;

/// One generation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceLine {
    /// The reference answer the generation is scored against (`null` when the dataset has none).
    pub answer: Option<String>,
    pub id: String,
    /// The dataset's cell of this prompt (`length`, `depth`, `run`, `insert_token` for NIAH).
    #[serde(default)]
    pub meta: Json,
    /// Prompt positions of the needle (Eq. 1 looks for the argmax there).
    pub needle_span: Vec<usize>,
    /// The text of each generated token.
    #[serde(default)]
    pub pieces: Vec<String>,
    pub prompt_tokens: usize,
    pub steps: Vec<TraceStep>,
    #[serde(default)]
    pub stopped_by_eos: bool,
    pub text: String,
    pub tokens: Vec<u32>,
}

/// One decoding step of a generation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceStep {
    /// Per head (layer-major), the argmax key position of its attention row.
    #[serde(default)]
    pub argmax: Vec<i64>,
    /// Per head, the attention weight at its argmax (`rhx trace --full`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argmax_weight: Vec<f64>,
    /// Dynamic ablation: H_t of the clean pass (or of the unablated trace, `source: trace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_heads: Option<Vec<Head>>,
    /// Dynamic ablation, two passes: the token of the clean pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_token: Option<u32>,
    /// The attention weight at the argmax of each head of `heads`, in the same order.
    #[serde(default)]
    pub head_weights: Vec<f64>,
    /// H_t: the retrieval heads of this step (Eq. 1).
    pub heads: Vec<Head>,
    /// One hidden state per captured site (`hidden(final)`, `hidden(layer)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden: Vec<Vec<f64>>,
    /// Eq. 2: every head's reasoning score, one list per layer (`capture: [retrieval(reasoning)]`,
    /// `rhx trace --capture reasoning`); f32 values written in their shortest form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Vec<Vec<f64>>>,
    /// The heads masked at this step (dynamic ablation, or a fixed mask on decode steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked: Option<Vec<Head>>,
    /// Dynamic ablation with `post_token: clean`: H'_t scored against the clean pass's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_heads: Option<Vec<Head>>,
    pub token: u32,
    /// Per head, the top-k key positions (`capture: [top_k(k)]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_k: Vec<i64>,
}

/// `trace_info.json`: what made the trace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceInfo {
    pub dataset: String,
    /// The decoding loops that ran (`eager`, `static`, `graph (fused kernels)`).
    pub decode_loops: Vec<String>,
    pub device: String,
    /// The engine identity (fingerprint and options) the trace was made and keyed with.
    #[serde(default)]
    pub engine: Json,
    /// [`TRACE_FORMAT`] of the writer (absent: format 1, before it was recorded).
    #[serde(default = "format_one")]
    pub format: u32,
    pub heads: usize,
    /// The intervention, as `generate` records it (`null` when none).
    #[serde(default)]
    pub intervention: Json,
    pub layers: usize,
    pub model: String,
    /// How the trace's `heads` (H_t) are defined: Eq. 1, or Eq. 2 with its options (absent:
    /// Eq. 1, the only definition before Eq. 2 existed).
    #[serde(default)]
    pub retrieval: HeadRule,
    pub samples: usize,
}

/// The definition of a step's retrieval heads H_t, from the trace's `retrieval` capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum HeadRule {
    /// Eq. 1: the heads whose attention argmax is a needle token equal to the generated one.
    #[default]
    CopyPaste,
    /// Eq. 2: the heads whose reasoning score S exceeds `threshold`, or the `top` heads by S.
    Reasoning { sink: usize, local: usize, threshold: f64, top: Option<usize> },
}

impl HeadRule {
    /// Eq. 2's sink and local window, when the rule is Eq. 2.
    pub fn reasoning(&self) -> Option<(usize, usize)> {
        match *self {
            HeadRule::Reasoning { sink, local, .. } => Some((sink, local)),
            HeadRule::CopyPaste => None,
        }
    }

    /// How a report names the rule: `Eq. 1` or `Eq. 2, S > 0.5` / `Eq. 2, top 5`.
    pub fn describe(&self) -> String {
        match self {
            HeadRule::CopyPaste => "Eq. 1 (copy-paste)".into(),
            HeadRule::Reasoning { top: Some(k), .. } => format!("Eq. 2 (reasoning), top {k} per step"),
            HeadRule::Reasoning { threshold, .. } => format!("Eq. 2 (reasoning), S > {threshold}"),
        }
    }
}

fn format_one() -> u32 {
    1
}

/// Errors reading a trace, with the file and line.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{file}: {message}")]
    Read { file: &'static str, message: String },
    #[error("trace.jsonl line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("trace_info.json: {0}")]
    Info(String),
}

/// `trace.jsonl` bytes: one line per generation.
pub fn write_lines(lines: &[TraceLine]) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut out, l)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The generations of a trace artifact.
pub fn read_lines(a: &Artifact) -> Result<Vec<TraceLine>, TraceError> {
    let bytes = a.read("trace.jsonl").map_err(|e| TraceError::Read { file: "trace.jsonl", message: e.to_string() })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| TraceError::Read { file: "trace.jsonl", message: e.to_string() })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| TraceError::Line { line: i + 1, message: e.to_string() }))
        .collect()
}

/// The `trace_info.json` of a trace artifact.
pub fn read_info(a: &Artifact) -> Result<TraceInfo, TraceError> {
    let bytes = a.read("trace_info.json").map_err(|e| TraceError::Info(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| TraceError::Info(e.to_string()))
}

impl TraceLine {
    /// H_t per step, as sets.
    pub fn head_sets(&self) -> Vec<std::collections::BTreeSet<Head>> {
        self.steps.iter().map(|s| s.heads.iter().copied().collect()).collect()
    }
}

/// Per sample id, per step: H_t with each head's attention weight (what `dynamic(source:
/// trace)` replays).
pub type RecordedHeads = BTreeMap<String, Vec<Vec<(Head, f32)>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_round_trips_and_keeps_the_documented_field_order() {
        let line = TraceLine {
            answer: None,
            id: "a".into(),
            meta: serde_json::json!({"depth": 0.5, "length": 100}),
            needle_span: vec![3, 4],
            pieces: vec!["x".into()],
            prompt_tokens: 9,
            steps: vec![TraceStep { argmax: vec![3, 0], head_weights: vec![f64::from(0.1f32)], heads: vec![(0, 0)], token: 7, ..Default::default() }],
            stopped_by_eos: true,
            text: "x".into(),
            tokens: vec![7],
        };
        let bytes = write_lines(std::slice::from_ref(&line)).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        // What `serde_json::json!` wrote before the types: keys sorted, f32 as its f64 value.
        let untyped = serde_json::json!({"answer": null, "id": "a", "meta": {"depth": 0.5, "length": 100}, "needle_span": [3, 4], "pieces": ["x"],
            "prompt_tokens": 9, "steps": [{"argmax": [3, 0], "head_weights": [0.1f32], "heads": [[0, 0]], "token": 7}], "stopped_by_eos": true, "text": "x", "tokens": [7]});
        assert_eq!(text, format!("{untyped}\n"));
        let back: TraceLine = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(back, line);
        assert_eq!(back.steps[0].head_weights[0] as f32, 0.1f32);
    }
}
