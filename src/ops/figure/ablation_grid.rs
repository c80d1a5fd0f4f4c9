//! `figure … = ablation_grid(…)`: Figs. 2 and 6.
use crate::artifact::compare::{Compare, CompareRow, CompareValue};

use serde_json::{json, Value as Json};

use crate::lang::schema::{FuncSpec, enm, int_min, list, decl, metric_params, METRICS};
use crate::analysis::dynamism::Spread;
use crate::report::{self, Figure, GridHeatmaps, Panel};
use crate::ops::ablation::*;

use crate::lang::Kind;
use crate::ops::args::*;
use crate::ops::inputs::*;
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Figure, name: "ablation_grid", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new(
        "ablation_grid",
        "Figs. 2 and 6: metric over (context length, needle depth) cells for each trace, side by side.",
    )
    .pos(
        "traces",
        list(decl(Trace)),
        "traces to compare (e.g. dynamic, static, random masking)",
    )
    .def("metric", enm(METRICS), "uuid_accuracy", "which metric")
    .def("bins", enm(&["exact", "quantile", "uniform"]), "exact", "grid.bins: `exact` one cell per (length, depth) of the dataset (a NIAH grid); `quantile` or `uniform` bins of the samples' lengths and depths (HotpotQA, Fig. 6: the paper's binning is unstated), each cell showing its sample count")
    .def("length_bins", int_min(1), "3", "grid.length_bins: bins of context length (with `bins: quantile|uniform`)")
    .def("depth_bins", int_min(1), "3", "grid.depth_bins: bins of needle depth (with `bins: quantile|uniform`)")
    .with(metric_params)
}

/// One axis of the grid: its labels and the cell index of a value.
struct Axis {
    labels: Vec<String>,
    /// Interior bin edges (binned), or the distinct values (exact).
    cuts: Vec<f64>,
    binned: bool,
}

impl Axis {
    /// Exact: one cell per distinct value (equal within 1e-9).
    fn exact(values: &[f64], label: impl Fn(f64) -> String) -> Axis {
        let mut v: Vec<f64> = Vec::new();
        for &x in values {
            if !v.iter().any(|d| (d - x).abs() < 1e-9) {
                v.push(x);
            }
        }
        v.sort_by(f64::total_cmp);
        Axis { labels: v.iter().map(|&x| label(x)).collect(), cuts: v, binned: false }
    }

    /// `n` bins cut at the quantiles of `values` or at equal widths between their extremes; the
    /// last bin holds the maximum. Labels give each bin's range.
    fn binned(values: &[f64], n: usize, quantile: bool, label: impl Fn(f64) -> String) -> Axis {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let (lo, hi) = (v.first().copied().unwrap_or(0.0), v.last().copied().unwrap_or(0.0));
        let cuts: Vec<f64> = (1..n)
            .map(|i| {
                if quantile {
                    // Linear interpolation between order statistics (numpy's default).
                    let at = (v.len().saturating_sub(1)) as f64 * i as f64 / n as f64;
                    let (j, f) = (at.floor() as usize, at - at.floor());
                    v[j] + (v[(j + 1).min(v.len() - 1)] - v[j]) * f
                } else {
                    lo + (hi - lo) * i as f64 / n as f64
                }
            })
            .collect();
        let bounds: Vec<f64> = std::iter::once(lo).chain(cuts.iter().copied()).chain(std::iter::once(hi)).collect();
        let labels = bounds.windows(2).map(|w| format!("{}–{}", label(w[0]), label(w[1]))).collect();
        Axis { labels, cuts, binned: true }
    }

    fn index(&self, x: f64) -> usize {
        if self.binned {
            self.cuts.iter().filter(|&&c| x >= c).count()
        } else {
            self.cuts.iter().position(|d| (d - x).abs() < 1e-9).unwrap_or(0)
        }
    }
}

/// The metric over (length, depth) cells, one panel per trace, with each panel's average.
fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let (metric, label) = metric_name(n);
    let words = metric_words_for(n, metric);
    // Per trace: its samples' (length, depth, value), the value `None` when not scored.
    let mut per_trace = Vec::new();
    for (name, a) in traces(n, inputs)? {
        let mut samples = Vec::new();
        for line in trace_lines(a)? {
            let (Some(len), Some(depth)) = (line.meta["length"].as_f64(), line.meta["depth"].as_f64()) else {
                return Err(format!("`{name}` has no (length, depth) per sample: the grid needs a trace of a dataset that gives them (`niah`, `hotpotqa`)"));
            };
            let v = task_scores(n, &line)?.map(|s| s.get(metric));
            samples.push((len, depth, v));
        }
        // What was masked: "dynamic", or a fixed / per-sample set with its size.
        let kind = masking_words(a)?;
        per_trace.push((name, samples, kind));
    }
    let scored = || per_trace.iter().flat_map(|(_, s, _)| s.iter().filter(|x| x.2.is_some()));
    let lens: Vec<f64> = scored().map(|x| x.0).collect();
    let deps: Vec<f64> = scored().map(|x| x.1).collect();
    let bins = req_enum(n, "bins")?;
    let (x_axis, y_axis) = match bins {
        "exact" => (Axis::exact(&lens, |x| format!("{x}")), Axis::exact(&deps, |d| format!("{d:.2}"))),
        mode => {
            let q = mode == "quantile";
            (
                Axis::binned(&lens, req_int(n, "length_bins")? as usize, q, |x| format!("{:.0}", x)),
                Axis::binned(&deps, req_int(n, "depth_bins")? as usize, q, |d| format!("{d:.2}")),
            )
        }
    };
    let (nx, ny) = (x_axis.labels.len(), y_axis.labels.len());
    let mut panels = Vec::new();
    let mut summary = Vec::new();
    let mut runs = 0;
    for (name, samples, kind) in &per_trace {
        let mut cells: Vec<Vec<f64>> = vec![vec![]; nx * ny];
        let mut all = Vec::new();
        for &(len, depth, v) in samples {
            let Some(v) = v else { continue };
            cells[y_axis.index(depth) * nx + x_axis.index(len)].push(v);
            all.push(v);
        }
        runs = runs.max(cells.iter().map(Vec::len).max().unwrap_or(0));
        let avg = Spread::of(&all);
        panels.push(Panel {
            title: format!("{name} (mean {:.2})", avg.mean),
            values: cells.iter().map(|v| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }).collect(),
            counts: if bins == "exact" { vec![] } else { cells.iter().map(Vec::len).collect() },
        });
        summary.push((name, avg, kind));
    }
    let fig_no = if matches!(metric, "em" | "f1") { "6" } else if metric == "rouge_l" { "2 (ROUGE-L: appendix Figs. 9–11)" } else { "2" };
    let cells_words = match bins {
        "exact" => format!("per (length, depth) cell, mean over {runs} runs"),
        mode => format!(
            "per cell of {nx} {mode} bins of prompt length × {ny} of needle depth (mean position of the needle tokens ÷ prompt length); each cell's opacity and bracketed number give how many samples it averages (at most {runs}); blank = none"
        ),
    };
    let fig = Figure::GridHeatmaps(GridHeatmaps {
        id: n.name.clone(),
        title: format!("{label} by context length and needle depth"),
        caption: format!(
            "Paper Fig. {fig_no}: {words} {cells_words}, one panel per condition (panel title: its mean over all {}). Red = failure, green = success. Masked: {}.",
            if bins == "exact" { "cells" } else { "samples" },
            summary.iter().map(|(name, _, kind)| format!("`{name}` {kind}")).collect::<Vec<_>>().join(", ")
        ),
        x_label: "context length (tokens)".into(),
        y_label: "needle depth".into(),
        x_labels: x_axis.labels,
        y_labels: y_axis.labels,
        panels,
        color_label: label.into(),
        vmin: Some(0.0),
        vmax: Some(1.0),
        colormap: report::Colormap::RedYellowGreen,
        annotate: true,
        columns: None,
        tolerance: report::Tolerance::Exact,
    });
    let data: Vec<Json> = summary.iter().map(|(name, avg, kind)| json!({"trace": name, "intervention": kind, "metric": metric, "mean": avg.mean, "std": avg.std, "n": avg.n})).collect();
    let compare = Compare::new(
        &["masking", &format!("mean {label}")],
        summary.iter().map(|(name, avg, kind)| CompareRow::new(name.to_string(), vec![CompareValue::Text(kind.to_string()), avg.mean.into()]).at("metric", metric)).collect(),
    );
    Ok(vec![
        ("figure.json".into(), serde_json::to_vec_pretty(&fig).unwrap()),
        ("grid.json".into(), serde_json::to_vec_pretty(&data).unwrap()),
        compare.file(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_bins_split_the_samples_evenly_and_hold_the_maximum() {
        let v: Vec<f64> = (1..=9).map(f64::from).collect();
        let a = Axis::binned(&v, 3, true, |x| format!("{x:.0}"));
        assert_eq!(a.cuts, vec![11.0 / 3.0, 19.0 / 3.0]);
        assert_eq!(a.labels, vec!["1–4", "4–6", "6–9"]);
        let counts = v.iter().fold([0; 3], |mut c, &x| {
            c[a.index(x)] += 1;
            c
        });
        assert_eq!(counts, [3, 3, 3]);
    }

    #[test]
    fn uniform_bins_have_equal_widths() {
        let a = Axis::binned(&[0.0, 0.1, 0.9, 1.0], 4, false, |d| format!("{d:.2}"));
        assert_eq!(a.cuts, vec![0.25, 0.5, 0.75]);
        assert_eq!((a.index(0.1), a.index(0.5), a.index(1.0)), (0, 2, 3));
    }

    #[test]
    fn exact_axis_has_one_cell_per_distinct_value() {
        let a = Axis::exact(&[2000.0, 500.0, 2000.0, 1000.0], |x| format!("{x}"));
        assert_eq!(a.labels, vec!["500", "1000", "2000"]);
        assert_eq!(a.index(1000.0), 1);
    }
}
