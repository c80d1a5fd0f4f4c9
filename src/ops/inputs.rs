//! Reading the artifacts of a node's inputs: traces, head sets, model info.
use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::analysis::dynamism::{Head, SampleHeads};
use crate::analysis::metrics::{rouge1_with, rouge_l_with, uuid_accuracy};
use crate::artifact::heads::HeadSet;
use crate::artifact::trace::{self, TraceInfo, TraceLine};
use crate::cache::Artifact;
use crate::lang::{Node, Value};
use crate::ops::args::*;

pub(crate) fn read_json(a: &Artifact, file: &str) -> Result<Json, String> {
    let bytes = a.read(file).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{file}: {e}"))
}

/// The head set of an input (the one typed reader, `artifact::heads`).
pub(crate) fn head_set(a: &Artifact) -> Result<HeadSet, String> {
    HeadSet::read(a).map_err(|e| e.to_string())
}

/// The heads of an input that must be one fixed set (e.g. the static heads of Table 1); a set
/// chosen per sample or per step is refused, never read as an empty list.
pub(crate) fn fixed_heads(a: &Artifact, name: &str) -> Result<Vec<Head>, String> {
    Ok(head_set(a)?.fixed_heads(name).map_err(|e| e.to_string())?.to_vec())
}

/// Per-sample head sets of a trace, with Wu's success flag when `success_filter` is
/// `Some((min_recall, stem))` (`stem`: Porter stemming in its ROUGE-1; Wu et al.: `use_stemmer=True`).
pub(crate) fn samples_of(a: &Artifact, success_filter: Option<(f64, bool)>) -> Result<Vec<(SampleHeads, TraceLine)>, String> {
    Ok(trace_lines(a)?
        .into_iter()
        .map(|line| {
            let steps = line.head_sets();
            // Wu's filter (ROUGE-1 recall of the answer above `min`, stemmed or not); without
            // one every sample counts.
            let success = match success_filter {
                Some((min, stem)) => line.answer.as_deref().is_some_and(|ans| rouge1_with(ans, &line.text, stem).recall > min),
                None => true,
            };
            let needle_len = line.needle_span.len();
            (SampleHeads { steps, needle_len, success }, line)
        })
        .collect())
}

/// The generations of a trace (the one typed reader, `artifact::trace`).
pub(crate) fn trace_lines(a: &Artifact) -> Result<Vec<TraceLine>, String> {
    trace::read_lines(a).map_err(|e| e.to_string())
}

/// The `trace_info.json` of a trace.
pub(crate) fn trace_info(a: &Artifact) -> Result<TraceInfo, String> {
    trace::read_info(a).map_err(|e| e.to_string())
}

/// How many heads a baseline masks to match a dynamic-ablation trace (reference §8.4, option 9).
pub(crate) struct MatchedCount {
    /// Mean number of masked heads per step over all steps of all samples, rounded.
    pub(crate) global: usize,
    /// Per sample id: that sample's mean, rounded (`match_count: sample_mean`).
    pub(crate) per_sample: Option<BTreeMap<String, usize>>,
}

pub(crate) fn matched_count(trace: &Artifact, name: &str, mode: &str) -> Result<MatchedCount, String> {
    matched_count_of(&trace_lines(trace)?, name, mode)
}

/// [`matched_count`] of a trace's lines. A global count that rounds to 0 is an error: the
/// baseline would mask nothing and look like a result.
fn matched_count_of(lines: &[TraceLine], name: &str, mode: &str) -> Result<MatchedCount, String> {
    let (mut total, mut steps) = (0usize, 0usize);
    let mut per = BTreeMap::new();
    for line in lines {
        let st = &line.steps;
        // A dynamic-ablation trace: the heads it masked per step; any other trace: its Eq. 1
        // heads per step (e.g. the unablated run's |H_t|).
        let dynamic = st.iter().any(|s| s.clean_heads.is_some());
        let masked: usize = st.iter().map(|s| if dynamic { s.masked.as_ref().map_or(0, Vec::len) } else { s.heads.len() }).sum();
        total += masked;
        steps += st.len();
        per.insert(line.id.clone(), (masked as f64 / st.len().max(1) as f64).round() as usize);
    }
    if steps == 0 {
        return Err(format!("`{name}` has no generated steps to match"));
    }
    let mean = total as f64 / steps as f64;
    if mean.round() == 0.0 {
        return Err(format!(
            "`{name}` has {mean:.3} heads per step on average ({total} over {steps} steps), which rounds to 0: a baseline matched to it would mask nothing. Match a trace that masks heads, or give the count (`n:` / `count:`)"
        ));
    }
    Ok(MatchedCount { global: (total as f64 / steps as f64).round() as usize, per_sample: (mode == "sample_mean").then_some(per) })
}

/// What a trace masked, in words: "none", "dynamic", "4 fixed heads", "4 random heads" (the
/// matched count of a baseline, shown wherever its scores are).
pub(crate) fn masking_words(a: &Artifact) -> Result<String, String> {
    let info = trace_info(a)?.intervention;
    Ok(match (info["kind"].as_str(), info["count"].as_u64(), info["random"]["count"].as_u64()) {
        (None, ..) => "none".to_string(),
        (Some("per_sample"), _, Some(c)) => format!("{c} random heads"),
        (Some("fixed"), Some(c), _) => format!("{c} fixed heads"),
        (Some(k), ..) => k.to_string(),
    })
}

/// The task scores of one generation against its answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskScores {
    pub uuid_accuracy: f64,
    pub rouge_l: f64,
    /// HotpotQA's exact match and token F1 of the answer DRAGIN's extraction finds (0 when the
    /// generation has no "the answer is").
    pub em: f64,
    pub f1: f64,
}

impl TaskScores {
    /// The score of a metric of [`crate::lang::schema::METRICS`].
    pub fn get(&self, metric: &str) -> f64 {
        match metric {
            "rouge_l" => self.rouge_l,
            "em" => self.em,
            "f1" => self.f1,
            _ => self.uuid_accuracy,
        }
    }
}

/// UUID accuracy, ROUGE-L, EM and F1 of one generation against its answer (`None` without an
/// answer), with the node's `uuid_match` / `rouge_target` options. `rouge_target: needle` scores
/// against the sample's own needle sentence (the dataset's template filled in, kept in the
/// trace's meta). EM and F1 follow DRAGIN's evaluation: cut at its markers, extract the answer
/// after "the answer is", score with HotpotQA's official normalisation.
pub(crate) fn task_scores(n: &Node, line: &TraceLine) -> Result<Option<TaskScores>, String> {
    let text = line.text.as_str();
    let Some(ans) = line.answer.as_deref() else { return Ok(None) };
    let acc = if enum_arg(n, "uuid_match") == Some("case_insensitive") { uuid_accuracy(&text.to_lowercase(), &ans.to_lowercase()) } else { uuid_accuracy(text, ans) };
    let target = if enum_arg(n, "rouge_target") == Some("needle") {
        line.meta.get("needle").and_then(Json::as_str).ok_or_else(|| {
            format!("`rouge_target: needle` needs the needle sentence of each sample; sample `{}` has none (its dataset is not `niah`, or its trace was made before rhx kept it): use `rouge_target: uuid`", line.id)
        })?
    } else {
        ans
    };
    let r = rouge_l_with(target, text, n.arg("rouge_stem") == Some(&Value::Bool(true)));
    let qa = crate::analysis::qa::extract_answer(crate::analysis::qa::cut_at_markers(text)).map(|pred| crate::analysis::qa::qa_score(&pred, ans)).unwrap_or_default();
    Ok(Some(TaskScores { uuid_accuracy: acc, rouge_l: if enum_arg(n, "rouge_field") == Some("r") { r.recall } else { r.f }, em: qa.em, f1: qa.f1 }))
}

/// How `task_scores` scored, in words, for captions: "UUID accuracy (exact substring)" and
/// "ROUGE-L F against the UUID" with the node's options.
pub(crate) fn metric_words(n: &Node) -> (String, String) {
    let acc = if enum_arg(n, "uuid_match") == Some("case_insensitive") { "UUID accuracy (case-insensitive substring)" } else { "UUID accuracy (exact substring)" };
    let field = if enum_arg(n, "rouge_field") == Some("r") { "recall" } else { "F" };
    let target = if enum_arg(n, "rouge_target") == Some("needle") { "the needle sentence" } else { "the UUID" };
    let stem = if n.arg("rouge_stem") == Some(&Value::Bool(true)) { ", stemmed" } else { "" };
    (acc.to_string(), format!("ROUGE-L {field} against {target}{stem}"))
}

/// How one metric of a table or figure was computed, in words, for its caption.
pub(crate) fn metric_words_for(n: &Node, metric: &str) -> String {
    let (acc, rouge) = metric_words(n);
    match metric {
        "rouge_l" => rouge,
        "em" => "EM (HotpotQA's official normalisation; the answer after DRAGIN's \"the answer is\", 0 without one)".to_string(),
        "f1" => "F1 (HotpotQA's official token F1; the answer after DRAGIN's \"the answer is\", 0 without one)".to_string(),
        _ => acc,
    }
}

/// A metric's column header.
pub(crate) fn metric_label(metric: &str) -> &'static str {
    match metric {
        "rouge_l" => "ROUGE-L",
        "em" => "EM",
        "f1" => "F1",
        _ => "UUID accuracy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::trace::TraceStep;

    fn line(id: &str, masked_per_step: &[usize]) -> TraceLine {
        let steps = masked_per_step.iter().map(|&k| TraceStep { clean_heads: Some(vec![]), masked: Some((0..k).map(|h| (0, h)).collect()), ..Default::default() }).collect();
        TraceLine { id: id.into(), steps, ..Default::default() }
    }

    #[test]
    fn matched_counts_round_the_mean_and_a_zero_count_is_an_error() {
        let m = matched_count_of(&[line("a", &[2, 3]), line("b", &[0, 1])], "dyn", "sample_mean").unwrap();
        assert_eq!(m.global, 2); // 6 / 4 = 1.5 rounds to 2
        assert_eq!(m.per_sample.unwrap(), [("a".to_string(), 3), ("b".to_string(), 1)].into()); // 2.5 → 3, 0.5 → 1
        let e = matched_count_of(&[line("a", &[0, 1, 0])], "dyn", "global_mean").err().unwrap();
        assert!(e.contains("rounds to 0") && e.contains("`dyn`"), "{e}");
        assert!(matched_count_of(&[line("a", &[])], "dyn", "global_mean").is_err());
    }
}
