//! A trace artifact: `trace.jsonl`, one [`TraceLine`] per prompt, `trace_info.json`
//! ([`TraceInfo`]) and, when the steps carry them, `tensors.safetensors` with the per-step
//! vectors (Eq. 2 scores, hidden states). One writer ([`write_trace`]) and one reader
//! ([`read_lines`]) serve every op; nothing reads a trace through untyped JSON lookups.
//!
//! Field names and their order are those of the trace format the README documents (keys sorted,
//! as `serde_json` maps write them). Floats are written as `f64` of the engine's `f32`: a value
//! read back is the engine's `f32` exactly.
//!
//! Format 2 stores the per-step vectors as f32 in `tensors.safetensors` instead of JSON numbers:
//! `reasoning` `[steps, layers, heads]` and `hidden.<i>` `[steps, d]` (capture site i), the rows
//! being every line's steps in order. That is 1 080 bytes per step for SmolLM2's 270 Eq. 2 scores
//! instead of ~2 700 in JSON, and 2 304 for a 576-wide hidden state instead of ~11 000; numpy reads
//! it with `safetensors.numpy.load_file`. The reader puts the vectors back into the [`TraceStep`]s,
//! so every consumer sees what format 1 gave it.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::analysis::dynamism::Head;
use crate::cache::Artifact;

/// The trace format. Part of every trace's key (through this file's hash) and of its
/// `trace_info.json`; bump it when a field changes meaning.
pub const TRACE_FORMAT: u32 = 2;

/// The per-step vectors of a format-2 trace.
pub const TENSORS_FILE: &str = "tensors.safetensors";

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
    /// The text of each prompt token (what `rhx view` highlights an argmax position in).
    /// Absent in traces written before 2026-12-04 and in RAG traces (no per-step capture).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt_pieces: Vec<String>,
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
    #[error("writing a trace: {0}")]
    Write(String),
}

/// `trace.jsonl` bytes: one line per generation, every field in JSON (what `rhx trace` prints).
pub fn write_lines(lines: &[TraceLine]) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut out, l)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The files of a trace artifact's generations: `trace.jsonl`, and `tensors.safetensors` with
/// the Eq. 2 scores and each hidden-state site when every step has them in the same shape (a
/// vector some steps lack stays in the JSON).
pub fn write_trace(lines: &[TraceLine]) -> Result<Vec<(String, Vec<u8>)>, TraceError> {
    let steps = || lines.iter().flat_map(|l| l.steps.iter());
    let n: usize = lines.iter().map(|l| l.steps.len()).sum();
    let mut lines = lines.to_vec();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let f32_bytes = |it: &mut dyn Iterator<Item = f64>| it.flat_map(|v| (v as f32).to_le_bytes()).collect::<Vec<u8>>();
    if n > 0 {
        // Eq. 2: one [layers, heads] matrix per step.
        let shape = steps().next().and_then(|s| s.reasoning.as_ref()).map(|r| (r.len(), r.first().map_or(0, Vec::len)));
        if let Some((layers, heads)) = shape.filter(|&(l, h)| l * h > 0) {
            let same = |s: &TraceStep| s.reasoning.as_ref().is_some_and(|r| r.len() == layers && r.iter().all(|row| row.len() == heads));
            if steps().all(same) {
                let bytes = f32_bytes(&mut steps().flat_map(|s| s.reasoning.iter().flatten().flatten().copied()));
                tensors.push(("reasoning".into(), vec![n, layers, heads], bytes));
                lines.iter_mut().flat_map(|l| l.steps.iter_mut()).for_each(|s| s.reasoning = None);
            }
        }
        // Hidden states: one tensor per capture site.
        let dims: Vec<usize> = steps().next().map(|s| s.hidden.iter().map(Vec::len).collect()).unwrap_or_default();
        let same = |s: &TraceStep| s.hidden.len() == dims.len() && s.hidden.iter().zip(&dims).all(|(h, &d)| h.len() == d);
        if !dims.is_empty() && dims.iter().all(|&d| d > 0) && steps().all(same) {
            for (i, &d) in dims.iter().enumerate() {
                let bytes = f32_bytes(&mut steps().flat_map(|s| s.hidden[i].iter().copied()));
                tensors.push((format!("hidden.{i}"), vec![n, d], bytes));
            }
            lines.iter_mut().flat_map(|l| l.steps.iter_mut()).for_each(|s| s.hidden.clear());
        }
    }
    let jsonl = write_lines(&lines).map_err(|e| TraceError::Write(e.to_string()))?;
    let mut files = vec![("trace.jsonl".to_string(), jsonl)];
    if !tensors.is_empty() {
        let views = tensors
            .iter()
            .map(|(name, shape, bytes)| safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).map(|v| (name.clone(), v)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TraceError::Write(e.to_string()))?;
        files.push((TENSORS_FILE.to_string(), safetensors::tensor::serialize(views, None).map_err(|e| TraceError::Write(e.to_string()))?));
    }
    Ok(files)
}

/// `x` as the f64 nearest to its shortest round-trip decimal form, so that JSON shows
/// `0.12345679` rather than `0.12345679104328156` (and reading it back gives `x` exactly).
pub fn shortest_f32(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// The generations of a trace artifact.
pub fn read_lines(a: &Artifact) -> Result<Vec<TraceLine>, TraceError> {
    let bytes = a.read("trace.jsonl").map_err(|e| TraceError::Read { file: "trace.jsonl", message: e.to_string() })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| TraceError::Read { file: "trace.jsonl", message: e.to_string() })?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| TraceError::Line { line: i + 1, message: e.to_string() }))
        .collect::<Result<Vec<TraceLine>, _>>()?;
    if a.file(TENSORS_FILE).is_some() {
        let bytes = a.read(TENSORS_FILE).map_err(|e| TraceError::Read { file: TENSORS_FILE, message: e.to_string() })?;
        attach_tensors(&mut lines, &bytes)?;
    }
    Ok(lines)
}

/// Puts the vectors of `tensors.safetensors` back into the steps they belong to.
fn attach_tensors(lines: &mut [TraceLine], bytes: &[u8]) -> Result<(), TraceError> {
    let bad = |message: String| TraceError::Read { file: TENSORS_FILE, message };
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let n: usize = lines.iter().map(|l| l.steps.len()).sum();
    // `hidden.<i>` in site order (`hidden.10` after `hidden.9`).
    let mut names = st.names();
    names.sort_by_key(|n| (n.strip_prefix("hidden.").and_then(|i| i.parse::<usize>().ok()), n.to_string()));
    for name in names {
        let t = st.tensor(name).map_err(|e| bad(e.to_string()))?;
        let shape = t.shape().to_vec();
        if t.dtype() != safetensors::Dtype::F32 || shape.first() != Some(&n) || shape.len() < 2 {
            return Err(bad(format!("`{name}` is {:?} {shape:?}; the trace has {n} steps, so it must be F32 [{n}, …]", t.dtype())));
        }
        let values: Vec<f32> = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let row = values.len() / n.max(1);
        let mut rows = values.chunks(row.max(1));
        let steps = lines.iter_mut().flat_map(|l| l.steps.iter_mut());
        if name == "reasoning" && shape.len() == 3 {
            for s in steps {
                let r = rows.next().unwrap_or_default();
                s.reasoning = Some(r.chunks(shape[2].max(1)).map(|l| l.iter().map(|&x| shortest_f32(x)).collect()).collect());
            }
        } else if let Some(i) = name.strip_prefix("hidden.").and_then(|i| i.parse::<usize>().ok()).filter(|_| shape.len() == 2) {
            for s in steps {
                if s.hidden.len() != i {
                    return Err(bad(format!("`{name}` has no `hidden.{}` before it", s.hidden.len())));
                }
                s.hidden.push(rows.next().unwrap_or_default().iter().map(|&x| f64::from(x)).collect());
            }
        } else {
            return Err(bad(format!("unknown tensor `{name}` {shape:?} (a trace stores `reasoning` [steps, layers, heads] and `hidden.<i>` [steps, d])")));
        }
    }
    Ok(())
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
            prompt_pieces: vec![],
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

    fn from_files(files: &[(String, Vec<u8>)]) -> Vec<TraceLine> {
        let text = std::str::from_utf8(&files[0].1).unwrap();
        let mut lines: Vec<TraceLine> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if let Some((_, b)) = files.iter().find(|f| f.0 == TENSORS_FILE) {
            attach_tensors(&mut lines, b).unwrap();
        }
        lines
    }

    #[test]
    fn per_step_vectors_go_to_safetensors_and_come_back_exactly() {
        let step = |t: u32, x: f32| TraceStep {
            token: t,
            reasoning: Some(vec![vec![shortest_f32(x), shortest_f32(0.1)], vec![shortest_f32(1.0 / 3.0), 0.0], vec![shortest_f32(-x), 1.0]]),
            hidden: (0..11).map(|i| vec![f64::from(x * i as f32), f64::from(0.7f32)]).collect(),
            ..Default::default()
        };
        let line = |id: &str, n: u32| TraceLine { id: id.into(), steps: (0..n).map(|t| step(t, 0.123_456_79 * t as f32)).collect(), ..Default::default() };
        let lines = vec![line("a", 3), line("empty", 0), line("b", 2)];
        let files = write_trace(&lines).unwrap();
        assert_eq!(files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["trace.jsonl", TENSORS_FILE]);
        let jsonl = std::str::from_utf8(&files[0].1).unwrap();
        assert!(!jsonl.contains("reasoning") && !jsonl.contains("hidden"), "{jsonl}");
        assert_eq!(from_files(&files), lines);
        // 5 steps x (3 x 2 scores + 11 sites x 2) f32, plus the header.
        assert!(files[1].1.len() < 5 * 28 * 4 + 1024, "{}", files[1].1.len());
        // A vector some steps lack stays in the JSON.
        let mut ragged = lines.clone();
        ragged[2].steps[1].reasoning = None;
        ragged[0].steps[0].hidden.pop();
        let files = write_trace(&ragged).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(from_files(&files), ragged);
        // A tensor whose rows do not match the steps is refused, with the file named.
        let mut fewer = lines.clone();
        fewer[0].steps.pop();
        let jsonl = write_lines(&fewer.iter().cloned().map(|mut l| { l.steps.iter_mut().for_each(|s| { s.reasoning = None; s.hidden.clear() }); l }).collect::<Vec<_>>()).unwrap();
        let mut back: Vec<TraceLine> = std::str::from_utf8(&jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let err = attach_tensors(&mut back, &write_trace(&lines).unwrap()[1].1).unwrap_err().to_string();
        assert!(err.contains(TENSORS_FILE) && err.contains("4 steps"), "{err}");
    }
}
