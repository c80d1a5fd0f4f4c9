//! `figure … = ablation_grid(…)`: Fig. 2.
use crate::artifact::compare::{Compare, CompareRow, CompareValue};
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value as Json};

use crate::lang::schema::{FuncSpec, enm, list, decl, metric_params, METRICS};
use crate::analysis::dynamism::Spread;
use crate::report::{self, Figure, GridHeatmaps, Panel};
use crate::ops::ablation::*;

use crate::lang::Kind;
use crate::ops::inputs::*;
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Figure, name: "ablation_grid", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new(
        "ablation_grid",
        "Fig. 2: metric over (length, depth) for each trace, side by side.",
    )
    .pos(
        "traces",
        list(decl(Trace)),
        "traces to compare (e.g. dynamic, static, random masking)",
    )
    .def("metric", enm(METRICS), "uuid_accuracy", "which metric")
    .with(metric_params)
}

/// Fig. 2: the metric over (length, depth), one panel per trace, with each panel's average.
fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let (metric, label) = metric_name(n);
    let words = metric_words_for(n, metric);
    let mut lengths = BTreeSet::new();
    let mut depths: Vec<f64> = Vec::new();
    let mut per_trace = Vec::new();
    for (name, a) in traces(n, inputs)? {
        let mut cells: BTreeMap<(u64, String), Vec<f64>> = BTreeMap::new();
        let mut all = Vec::new();
        for line in trace_lines(a)? {
            let (Some(len), Some(depth)) = (line.meta["length"].as_u64(), line.meta["depth"].as_f64()) else {
                return Err(format!("`{name}` has no (length, depth) per sample: the grid needs a trace of a `niah` dataset"));
            };
            let Some(scores) = task_scores(n, &line)? else { continue };
            let v = scores.get(metric);
            lengths.insert(len);
            if !depths.iter().any(|d| (d - depth).abs() < 1e-9) {
                depths.push(depth);
            }
            cells.entry((len, format!("{depth:.4}"))).or_default().push(v);
            all.push(v);
        }
        // What was masked: "dynamic", or a fixed / per-sample set with its size.
        let kind = masking_words(a)?;
        per_trace.push((name, cells, Spread::of(&all), kind));
    }
    depths.sort_by(f64::total_cmp);
    let lengths: Vec<u64> = lengths.into_iter().collect();
    let panels: Vec<Panel> = per_trace
        .iter()
        .map(|(name, cells, avg, _)| Panel {
            title: format!("{name} (mean {:.2})", avg.mean),
            values: depths
                .iter()
                .flat_map(|d| lengths.iter().map(move |l| (*l, format!("{d:.4}"))))
                .map(|key| cells.get(&key).map_or(f64::NAN, |v| v.iter().sum::<f64>() / v.len() as f64))
                .collect(),
        })
        .collect();
    let runs = per_trace.first().and_then(|(_, c, _, _)| c.values().map(Vec::len).max()).unwrap_or(0);
    let fig = Figure::GridHeatmaps(GridHeatmaps {
        id: n.name.clone(),
        title: format!("{label} by context length and needle depth"),
        caption: format!(
            "Paper Fig. {}: {words} per (length, depth) cell, mean over {runs} runs, one panel per condition (panel title: its mean over all cells). Red = failure, green = success. Masked: {}.",
            if metric == "rouge_l" { "2 (ROUGE-L: appendix Figs. 9–11)" } else { "2" },
            per_trace.iter().map(|(name, _, _, kind)| format!("`{name}` {kind}")).collect::<Vec<_>>().join(", ")
        ),
        x_label: "context length (tokens)".into(),
        y_label: "needle depth".into(),
        x_labels: lengths.iter().map(u64::to_string).collect(),
        y_labels: depths.iter().map(|d| format!("{d:.2}")).collect(),
        panels,
        color_label: label.into(),
        vmin: Some(0.0),
        vmax: Some(1.0),
        colormap: report::Colormap::RedYellowGreen,
        annotate: true,
        columns: None,
        tolerance: report::Tolerance::Exact,
    });
    let data: Vec<Json> = per_trace.iter().map(|(name, _, avg, kind)| json!({"trace": name, "intervention": kind, "metric": metric, "mean": avg.mean, "std": avg.std, "n": avg.n})).collect();
    let compare = Compare::new(
        &["masking", &format!("mean {label}")],
        per_trace.iter().map(|(name, _, avg, kind)| CompareRow::new(name.to_string(), vec![CompareValue::Text(kind.to_string()), avg.mean.into()]).at("metric", metric)).collect(),
    );
    Ok(vec![
        ("figure.json".into(), serde_json::to_vec_pretty(&fig).unwrap()),
        ("grid.json".into(), serde_json::to_vec_pretty(&data).unwrap()),
        compare.file(),
    ])
}
