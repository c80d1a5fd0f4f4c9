//! The trace viewer's data: per generation, step by step, the step's retrieval heads H_t (for a
//! layer × head grid) and every head's attention argmax (and top-k, when captured) as prompt
//! positions, with the prompt's token texts to highlight them in. `rhx view` renders it as a page
//! of its own ([`super::render::render_trace_page`]); a report embeds a bounded sample of the
//! traces its experiment made (`report.json` → `traces`, so re-rendering never reads a trace).
//!
//! The page is plain HTML, one small script and CSS (`reports/templates/trace_view.*`) with this
//! data inlined as one JSON blob: no server, no network. It renders a sample's prompt once and
//! stepping only toggles classes, so prompts of 32k tokens stay usable.
use serde::{Deserialize, Serialize};

use crate::analysis::dynamism::Head;
use crate::artifact::trace::{TraceInfo, TraceLine};

/// One trace, as the viewer shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceView {
    /// The trace's node name (`base`), or the file `rhx view` read.
    pub name: String,
    pub model: String,
    /// How the trace defines H_t (`Eq. 1 (copy-paste)`, …).
    pub rule: String,
    pub layers: usize,
    pub heads: usize,
    /// Generations in the trace; `samples` holds fewer when a report embeds a bounded sample.
    pub total_samples: usize,
    pub samples: Vec<SampleView>,
}

/// One generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleView {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The text of each prompt token; empty for a trace written before they were recorded
    /// (the page then shows positions only).
    #[serde(default)]
    pub prompt: Vec<String>,
    pub prompt_tokens: usize,
    /// Prompt positions of the needle.
    pub needle: Vec<usize>,
    /// The text of each generated token (step t generated `pieces[t]`, at position
    /// `prompt_tokens + t`).
    pub pieces: Vec<String>,
    pub steps: Vec<StepView>,
}

/// One decoding step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    /// H_t, `[layer, head]`.
    pub heads: Vec<Head>,
    /// Per head of `heads`, its attention weight at the argmax (4 significant digits; the grid
    /// shades by it). Empty when the trace has none.
    #[serde(default)]
    pub weights: Vec<f64>,
    /// Per head (layer-major), the key position of its attention argmax; empty when the trace
    /// did not capture it.
    #[serde(default, with = "comma_list")]
    pub argmax: Vec<i64>,
    /// Per head (layer-major), its k top key positions (`capture: [top_k(k)]`); empty if not captured.
    #[serde(default, with = "comma_list", skip_serializing_if = "Vec::is_empty")]
    pub top_k: Vec<i64>,
    /// Eq. 2: every head's score S, layer-major (4 significant digits), when captured.
    #[serde(default, with = "comma_list", skip_serializing_if = "Vec::is_empty")]
    pub reasoning: Vec<f64>,
}

/// A per-head vector as one string, `"0,0,36,…"`: the pretty-printed `report.json` then holds
/// one line per step instead of one per head (5× smaller), and the page splits it when shown.
mod comma_list {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, T: Display>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.iter().map(T::to_string).collect::<Vec<_>>().join(","))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<Vec<T>, D::Error>
    where
        T::Err: Display,
    {
        let s = String::deserialize(d)?;
        s.split(',').filter(|x| !x.is_empty()).map(|x| x.parse().map_err(|e| D::Error::custom(format!("`{x}`: {e}")))).collect()
    }
}

/// A trace the viewer cannot show, naming the sample and step.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("trace `{trace}`: the model shape is unknown ({layers} layers × {heads} heads)")]
    Shape { trace: String, layers: usize, heads: usize },
    #[error("trace `{trace}`, sample `{sample}`, step {step}: {message}")]
    Step { trace: String, sample: String, step: usize, message: String },
    #[error("trace `{trace}`, sample `{sample}`: {message}")]
    Sample { trace: String, sample: String, message: String },
}

/// `x` to 4 significant digits: the page shows a shade and a tooltip, not the full `f32`.
fn sig4(x: f64) -> f64 {
    if x.is_finite() {
        format!("{x:.3e}").parse().unwrap_or(x)
    } else {
        0.0
    }
}

impl TraceView {
    /// The viewer's data for `lines` (at most `max_samples` of them, in trace order), checked
    /// against the model shape in `info`: every step's argmax has one position per head, and
    /// every position lies before the step's query.
    pub fn new(name: &str, info: &TraceInfo, lines: &[TraceLine], max_samples: Option<usize>) -> Result<TraceView, ViewError> {
        let (layers, heads) = (info.layers, info.heads);
        if layers == 0 || heads == 0 {
            return Err(ViewError::Shape { trace: name.into(), layers, heads });
        }
        let n_heads = layers * heads;
        let take = max_samples.unwrap_or(usize::MAX);
        let mut samples = Vec::new();
        for line in lines.iter().take(take) {
            let bad_sample = |message: String| ViewError::Sample { trace: name.into(), sample: line.id.clone(), message };
            if !line.prompt_pieces.is_empty() && line.prompt_pieces.len() != line.prompt_tokens {
                return Err(bad_sample(format!("{} prompt pieces for {} prompt tokens", line.prompt_pieces.len(), line.prompt_tokens)));
            }
            if line.pieces.len() < line.steps.len() {
                return Err(bad_sample(format!("{} generated pieces for {} steps", line.pieces.len(), line.steps.len())));
            }
            if let Some(&p) = line.needle_span.iter().find(|&&p| p >= line.prompt_tokens) {
                return Err(bad_sample(format!("needle position {p} is not in the {}-token prompt", line.prompt_tokens)));
            }
            let mut steps = Vec::with_capacity(line.steps.len());
            for (t, s) in line.steps.iter().enumerate() {
                let bad = |message: String| ViewError::Step { trace: name.into(), sample: line.id.clone(), step: t, message };
                // A trace without the retrieval capture (a masked run) has no argmax: H_t only.
                if !s.argmax.is_empty() && s.argmax.len() != n_heads {
                    return Err(bad(format!("{} argmax positions; the model has {layers} × {heads} = {n_heads} heads", s.argmax.len())));
                }
                // Step t's query is the token at position prompt_tokens + t − 1; its keys are every
                // position up to it.
                let end = (line.prompt_tokens + t) as i64;
                if let Some(p) = s.argmax.iter().chain(&s.top_k).find(|&&p| p < 0 || p >= end) {
                    return Err(bad(format!("key position {p} is outside 0..{end}")));
                }
                if s.top_k.len() % n_heads != 0 {
                    return Err(bad(format!("{} top-k positions is not a multiple of {n_heads} heads", s.top_k.len())));
                }
                if let Some(&(l, h)) = s.heads.iter().find(|&&(l, h)| l >= layers || h >= heads) {
                    return Err(bad(format!("head {l}:{h} is outside the {layers} × {heads} grid")));
                }
                let reasoning: Vec<f64> = s.reasoning.iter().flatten().flatten().map(|&x| sig4(x)).collect();
                if !reasoning.is_empty() && reasoning.len() != n_heads {
                    return Err(bad(format!("{} Eq. 2 scores for {n_heads} heads", reasoning.len())));
                }
                let weights = if s.head_weights.len() == s.heads.len() { s.head_weights.iter().map(|&w| sig4(w)).collect() } else { vec![] };
                steps.push(StepView { heads: s.heads.clone(), weights, argmax: s.argmax.clone(), top_k: s.top_k.clone(), reasoning });
            }
            samples.push(SampleView {
                id: line.id.clone(),
                answer: line.answer.clone(),
                prompt: line.prompt_pieces.clone(),
                prompt_tokens: line.prompt_tokens,
                needle: line.needle_span.clone(),
                pieces: line.pieces.clone(),
                steps,
            });
        }
        Ok(TraceView { name: name.into(), model: info.model.clone(), rule: info.retrieval.describe(), layers, heads, total_samples: lines.len(), samples })
    }
}

/// The page's data blob, as text that can sit inside `<script type="application/json">`: every
/// `<` is written `\u003c`, so no `</script>` in a prompt can end the element.
pub fn inline_json(views: &[TraceView]) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_string(&serde_json::json!({ "traces": views }))?.replace('<', "\\u003c"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::trace::TraceStep;

    fn info() -> TraceInfo {
        TraceInfo { layers: 2, heads: 3, model: "m".into(), ..Default::default() }
    }

    fn line() -> TraceLine {
        TraceLine {
            id: "s".into(),
            needle_span: vec![1, 2],
            pieces: vec!["a".into(), "b".into()],
            prompt_pieces: vec!["</script>".into(), "x".into(), "y".into()],
            prompt_tokens: 3,
            steps: vec![
                TraceStep { argmax: vec![0, 1, 2, 0, 1, 2], heads: vec![(0, 1)], head_weights: vec![0.123456], token: 5, ..Default::default() },
                TraceStep { argmax: vec![3, 1, 2, 0, 1, 2], heads: vec![], token: 6, ..Default::default() },
            ],
            tokens: vec![5, 6],
            ..Default::default()
        }
    }

    #[test]
    fn a_trace_becomes_view_data_and_script_safe_json() {
        let mut v = TraceView::new("base", &info(), &[line(), line()], Some(1)).unwrap();
        v.samples[0].steps[1].reasoning = vec![0.5, 1e-7, 2.0, 0.0, 3.25, 1.0];
        let back: TraceView = serde_json::from_str(&serde_json::to_string_pretty(&v).unwrap()).unwrap();
        assert_eq!(back, v, "positions and scores survive their comma-separated form");
        assert_eq!((v.total_samples, v.samples.len()), (2, 1));
        assert_eq!(v.samples[0].steps[0].weights, [0.1235]);
        assert_eq!(v.samples[0].steps[1].argmax[0], 3, "step 1 may point at the first generated token");
        let json = inline_json(&[v]).unwrap();
        assert!(!json.contains("</script") && json.contains("\\u003c/script>"), "{json}");
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["traces"][0]["samples"][0]["prompt"][0], "</script>");
        assert_eq!(back["traces"][0]["samples"][0]["steps"][1]["argmax"], "3,1,2,0,1,2");
        let v: TraceView = serde_json::from_value(back["traces"][0].clone()).unwrap();
        assert_eq!(v.samples[0].steps[1].argmax, [3, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn positions_outside_the_keys_or_the_grid_are_errors_naming_the_step() {
        let mut l = line();
        l.steps[0].argmax[4] = 3; // step 0's keys are positions 0..3
        let e = TraceView::new("base", &info(), &[l], None).unwrap_err().to_string();
        assert_eq!(e, "trace `base`, sample `s`, step 0: key position 3 is outside 0..3");
        let mut l = line();
        l.steps[1].argmax.pop();
        let e = TraceView::new("base", &info(), &[l], None).unwrap_err().to_string();
        assert!(e.contains("step 1: 5 argmax positions; the model has 2 × 3 = 6 heads"), "{e}");
        let mut l = line();
        l.steps[1].heads = vec![(2, 0)];
        let e = TraceView::new("base", &info(), &[l], None).unwrap_err().to_string();
        assert!(e.contains("head 2:0 is outside"), "{e}");
        let e = TraceView::new("t", &TraceInfo::default(), &[line()], None).unwrap_err().to_string();
        assert!(e.contains("shape is unknown"), "{e}");
    }
}
