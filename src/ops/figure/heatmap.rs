//! `figure … = heatmap(…)`: Fig. 1.
use std::collections::{BTreeMap, BTreeSet};

use crate::lang::schema::{FuncSpec, int_min, enm, decl};
use crate::analysis::dynamism::Head;
use crate::report::{self, Figure, Heatmap};

use crate::artifact::compare::{Compare, CompareRow};
use crate::artifact::trace::TraceLine;
use crate::lang::{Kind, Node};
use crate::ops::args::*;
use crate::ops::inputs::*;
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Figure, name: "heatmap", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new("heatmap", "Figs. 1 and 5: retrieval score of the most varying heads over the generation steps of one sample.")
        .pos("trace", decl(Trace), "trace with retrieval(...)")
        .def("score", enm(&["heads", "reasoning"]), "heads", "heatmap.score: `heads` 1 where the head is in H_t (Fig. 1), `reasoning` its continuous Eq. 2 score (Fig. 5; needs retrieval(reasoning))")
        .def("most_varying", int_min(1), "10", "how many heads (those whose score varies most over the steps)")
        .def("sample", int_min(0), "0", "which generation of the trace")
}

fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let (a, trace_name) = input(inputs, n, "trace")?;
    let lines = trace_lines(a)?;
    let idx = req_int(n, "sample")? as usize;
    let line = lines.get(idx).ok_or_else(|| format!("sample {idx} does not exist: `{trace_name}` has {} samples", lines.len()))?;
    if req_enum(n, "score")? == "reasoning" {
        return reasoning_heatmap(n, &trace_name, idx, line);
    }
    let steps: Vec<BTreeSet<Head>> = line.head_sets();
    let t = steps.len().max(1) as f64;
    let mut count: BTreeMap<Head, f64> = BTreeMap::new();
    for h in steps.iter().flatten() {
        *count.entry(*h).or_default() += 1.0;
    }
    // Variance of a 0/1 series with mean p is p(1 − p): most varying = closest to half the steps.
    let mut ranked: Vec<(Head, f64)> = count.iter().map(|(&h, &c)| (h, (c / t) * (1.0 - c / t))).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(count[&b.0].total_cmp(&count[&a.0])).then(a.0.cmp(&b.0)));
    let k = req_int(n, "most_varying")? as usize;
    let mut heads: Vec<Head> = ranked.into_iter().take(k).map(|x| x.0).collect();
    heads.sort();
    let values: Vec<f64> = heads.iter().flat_map(|h| steps.iter().map(move |s| if s.contains(h) { 1.0 } else { 0.0 })).collect();
    let pieces: Vec<String> = line.pieces.iter().map(|p| p.replace('\n', "\\n")).collect();
    let fig = Figure::Heatmap(Heatmap {
        id: n.name.clone(),
        title: format!("Retrieval heads per step — {}", line.id),
        caption: format!("Eq. 1 score of the {} most varying heads over the generation steps of sample {idx} of `{trace_name}` (dark = retrieval head at that step).", heads.len()),
        x_label: "generated token".into(),
        y_label: "head".into(),
        x_labels: pieces,
        y_labels: heads.iter().map(|(l, h)| format!("L{l}.H{h}")).collect(),
        values,
        color_label: "Eq. 1 score".into(),
        vmin: Some(0.0),
        vmax: Some(1.0),
        colormap: report::Colormap::Blues,
        annotate: false,
        tolerance: report::Tolerance::Exact,
    });
    Ok(vec![("figure.json".into(), serde_json::to_vec_pretty(&fig).unwrap())])
}

/// Fig. 5: every step's Eq. 2 score of the `most_varying` heads whose score varies most over the
/// generation (population variance; ties to the lower (layer, head)), in (layer, head) order.
fn reasoning_heatmap(n: &Node, trace_name: &str, idx: usize, line: &TraceLine) -> Result<Files, String> {
    let scores: Vec<Vec<f64>> = line
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| s.reasoning.as_ref().map(|r| r.concat()).ok_or_else(|| format!("step {i} of sample {idx} of `{trace_name}` has no Eq. 2 scores: capture `retrieval(reasoning)` in the trace")))
        .collect::<Result<_, _>>()?;
    let width = scores.first().map_or(0, Vec::len);
    let heads_per_layer = line.steps.first().and_then(|s| s.reasoning.as_ref()).and_then(|r| r.first()).map_or(1, Vec::len).max(1);
    let t = scores.len().max(1) as f64;
    let mut ranked: Vec<(usize, f64)> = (0..width)
        .map(|j| {
            let mean = scores.iter().map(|s| s[j]).sum::<f64>() / t;
            (j, scores.iter().map(|s| (s[j] - mean).powi(2)).sum::<f64>() / t)
        })
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let k = req_int(n, "most_varying")? as usize;
    let mut cols: Vec<usize> = ranked.into_iter().take(k).map(|x| x.0).collect();
    cols.sort();
    let values: Vec<f64> = cols.iter().flat_map(|&j| scores.iter().map(move |s| s[j])).collect();
    let vmax = values.iter().copied().fold(0.0f64, f64::max);
    let fig = Figure::Heatmap(Heatmap {
        id: n.name.clone(),
        title: format!("Reasoning scores per step — {}", line.id),
        caption: format!(
            "Paper Fig. 5: Eq. 2 score of the {} heads whose score varies most over the {} generation steps of sample {idx} of `{trace_name}` (colour scale 0 to the largest value shown, {vmax:.3}).",
            cols.len(),
            scores.len()
        ),
        x_label: "generated token".into(),
        y_label: "head".into(),
        x_labels: line.pieces.iter().map(|p| p.replace('\n', "\\n")).collect(),
        y_labels: cols.iter().map(|j| format!("L{}.H{}", j / heads_per_layer, j % heads_per_layer)).collect(),
        values,
        color_label: "Eq. 2 score".into(),
        vmin: Some(0.0),
        vmax: Some(vmax.max(f64::MIN_POSITIVE)),
        colormap: report::Colormap::Blues,
        annotate: false,
        // Eq. 2 scores are f32 sums over a softmax row: they move in the last bits between CPUs.
        tolerance: report::Tolerance::float(1e-4, "Eq. 2 scores are f32 attention sums, which differ in the last bits between CPUs"),
    });
    // The paper's claim in numbers: which head has the largest score at each step, and how
    // often the most frequent of these leads.
    let mut leads: BTreeMap<usize, usize> = BTreeMap::new();
    for s in &scores {
        if let Some((j, _)) = s.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0))) {
            *leads.entry(j).or_default() += 1;
        }
    }
    let top_share = leads.values().copied().max().unwrap_or(0) as f64 / t;
    let compare = Compare::new(
        &["steps", "heads that lead a step", "most frequent leader's share of steps"],
        vec![CompareRow::new(format!("{trace_name}, sample {idx}"), vec![(scores.len() as f64).into(), (leads.len() as f64).into(), top_share.into()])
            .within(vec![
                report::Tolerance::Exact,
                report::Tolerance::float(1.0, "a near-tie of two heads' f32 scores may have another leader on another CPU"),
                report::Tolerance::float(1.0 / t, "one step's leader may change with a near-tie"),
            ])],
    );
    Ok(vec![("figure.json".into(), serde_json::to_vec_pretty(&fig).unwrap()), compare.file()])
}
