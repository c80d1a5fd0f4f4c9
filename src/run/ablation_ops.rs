//! Section 3.3 analyses of ablation traces: the irreplaceability grid (Fig. 2), progressive
//! ablation (Fig. 3) and the compensated-heads measure m_s (appendix A.2).
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value as Json};

use super::ops::{enum_arg, heads_of, input, read_json, read_jsonl, ref_name, task_scores, Files};
use crate::analysis::dynamism::{Head, Spread};
use crate::cache::Artifact;
use crate::lang::{Node, Value};
use crate::plan::Step;
use crate::report::{self, Cell as RCell, Column, Figure, GridHeatmaps, LinePlot, Panel, Row, Series, Table};

fn traces<'a>(n: &'a Node, inputs: &'a BTreeMap<String, &Artifact>) -> Result<Vec<(&'a str, &'a Artifact)>, String> {
    n.arg("traces")
        .and_then(Value::as_list)
        .unwrap_or(&[])
        .iter()
        .filter_map(ref_name)
        .map(|t| inputs.get(t).map(|a| (t, *a)).ok_or_else(|| format!("`{t}` not computed")))
        .collect()
}

fn head_set(v: &Json) -> BTreeSet<Head> {
    serde_json::from_value::<Vec<Head>>(v.clone()).unwrap_or_default().into_iter().collect()
}

/// Compensation in one sample of a dynamic-ablation trace.
struct Compensation {
    /// m_s = max_t |E_t ∩ S| with E_t = H'_t \ H_t.
    m: usize,
    /// mean_t |E_t|: all compensated heads, static or not.
    mean_new: f64,
    /// mean_t |masked_t|.
    mean_masked: f64,
}

/// H_t = `clean_heads` (Eq. 1 on the unmasked pass), H'_t = `post_heads` when the trace scored
/// the masked pass against the clean token (`post_token: clean`), else `heads` (the masked pass
/// with its own token).
fn compensation(line: &Json, stat: &BTreeSet<Head>, trace: &str) -> Result<Compensation, String> {
    let steps = line["steps"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let (mut m, mut new, mut masked) = (0usize, 0usize, 0usize);
    for s in steps {
        if s.get("clean_heads").is_none() {
            return Err(format!("`{trace}` is not a dynamic-ablation trace: compensated heads need a trace that masks `dynamic(...)` heads"));
        }
        let h = head_set(&s["clean_heads"]);
        let hp = head_set(if s.get("post_heads").is_some() { &s["post_heads"] } else { &s["heads"] });
        let e: BTreeSet<Head> = hp.difference(&h).copied().collect();
        m = m.max(e.intersection(stat).count());
        new += e.len();
        masked += s["masked"].as_array().map_or(0, Vec::len);
    }
    let t = steps.len().max(1) as f64;
    Ok(Compensation { m, mean_new: new as f64 / t, mean_masked: masked as f64 / t })
}

/// k of a `dynamic(k: …)` ablation trace, from its `trace_info.json`.
fn k_of(a: &Artifact) -> Option<f64> {
    read_json(a, "trace_info.json").ok()?["intervention"]["k"].as_f64()
}

struct TraceSummary {
    name: String,
    k: Option<f64>,
    m: Spread,
    new: Spread,
    masked: Spread,
    acc: Spread,
    rouge: Spread,
}

fn summarise(n: &Node, inputs: &BTreeMap<String, &Artifact>) -> Result<(Vec<TraceSummary>, usize), String> {
    let (st, _) = input(inputs, n, "static")?;
    let stat: BTreeSet<Head> = heads_of(st)?.into_iter().collect();
    let mut out = Vec::new();
    for (name, a) in traces(n, inputs)? {
        let (mut m, mut new, mut masked, mut acc, mut rouge) = (vec![], vec![], vec![], vec![], vec![]);
        for line in read_jsonl(a, "trace.jsonl")? {
            let c = compensation(&line, &stat, name)?;
            m.push(c.m as f64);
            new.push(c.mean_new);
            masked.push(c.mean_masked);
            if let Some((x, r)) = task_scores(n, &line) {
                acc.push(x);
                rouge.push(r);
            }
        }
        out.push(TraceSummary {
            name: name.to_string(),
            k: k_of(a),
            m: Spread::of(&m),
            new: Spread::of(&new),
            masked: Spread::of(&masked),
            acc: Spread::of(&acc),
            rouge: Spread::of(&rouge),
        });
    }
    Ok((out, stat.len()))
}

pub(super) fn compensated_table(step: &Step, inputs: &BTreeMap<String, &Artifact>) -> Result<Files, String> {
    let n = &step.node;
    let (rows, n_static) = summarise(n, inputs)?;
    let pm = |s: &Spread| RCell::num_pm(s.mean, s.std, s.n as u64);
    let table = Table {
        id: n.name.clone(),
        caption: format!(
            "Compensated heads under progressive ablation (paper §3.3.2, A.2): `E_t = H'_t \\ H_t` are the heads that become retrieval heads only after the masking at step t; `m_s = max_t |E_t ∩ S|` with S the {n_static} static heads; mean ± std over samples"
        ),
        row_header: "Trace".into(),
        columns: vec![
            Column::new("k").precision(0),
            Column::new("Masked per step").precision(2),
            Column::new("m_s (static compensated)").precision(2),
            Column::new("|E_t| per step").precision(2),
            Column::new("UUID accuracy").precision(3),
            Column::new("ROUGE-L").precision(3),
        ],
        rows: rows
            .iter()
            .map(|r| Row::new(r.name.clone(), vec![r.k.map(RCell::num).unwrap_or_else(|| RCell::text("all")), pm(&r.masked), pm(&r.m), pm(&r.new), pm(&r.acc), pm(&r.rouge)]))
            .collect(),
        ..Default::default()
    };
    Ok(vec![("table.json".into(), serde_json::to_vec_pretty(&table).unwrap())])
}

fn metric_name(n: &Node) -> (&'static str, &'static str) {
    match enum_arg(n, "metric") {
        Some("rouge_l") => ("rouge_l", "ROUGE-L"),
        _ => ("uuid_accuracy", "UUID accuracy"),
    }
}

/// Fig. 3: compensated static heads m_s (left axis) and the task metric (right axis) against k.
pub(super) fn progressive(step: &Step, inputs: &BTreeMap<String, &Artifact>) -> Result<Files, String> {
    let n = &step.node;
    let (mut rows, n_static) = summarise(n, inputs)?;
    if rows.iter().any(|r| r.k.is_none()) {
        let bad: Vec<&str> = rows.iter().filter(|r| r.k.is_none()).map(|r| r.name.as_str()).collect();
        return Err(format!("progressive needs traces that mask `dynamic(..., k: <number>)` heads; these do not: {}", bad.join(", ")));
    }
    rows.sort_by(|a, b| a.k.partial_cmp(&b.k).unwrap());
    let (metric, label) = metric_name(n);
    let x: Vec<f64> = rows.iter().map(|r| r.k.unwrap()).collect();
    // Bands: ± one standard error of the mean over samples.
    let se = |s: &Spread| if s.n > 1 { s.std / (s.n as f64).sqrt() } else { 0.0 };
    let m: Vec<f64> = rows.iter().map(|r| r.m.mean).collect();
    let m_se: Vec<f64> = rows.iter().map(|r| se(&r.m)).collect();
    let y: Vec<&Spread> = rows.iter().map(|r| if metric == "rouge_l" { &r.rouge } else { &r.acc }).collect();
    let fig = Figure::Lines(LinePlot {
        id: n.name.clone(),
        title: "Progressive ablation of dynamic heads".into(),
        caption: format!(
            "Paper Fig. 3: k dynamic heads masked at every step (chosen on that step's unmasked pass). Left axis: `m_s`, compensated heads that are among the {n_static} static heads (mean over samples, band ± 1 s.e.); right axis: {label} (band ± 1 s.e.). n = {} samples per k.",
            rows.first().map_or(0, |r| r.m.n)
        ),
        x_label: "k (dynamic heads masked per step)".into(),
        y_label: "compensated static heads m_s".into(),
        y2_label: Some(label.into()),
        series: vec![
            Series::new("m_s (compensated ∩ static)", x.clone(), m.clone()).band(
                m.iter().zip(&m_se).map(|(a, b)| a - b).collect(),
                m.iter().zip(&m_se).map(|(a, b)| a + b).collect(),
            ),
            Series::new(label, x.clone(), y.iter().map(|s| s.mean).collect())
                .band(y.iter().map(|s| (s.mean - se(s)).max(0.0)).collect(), y.iter().map(|s| (s.mean + se(s)).min(1.0)).collect())
                .secondary(),
        ],
        y2_range: Some((0.0, 1.0)),
        ..Default::default()
    });
    let data: Vec<Json> = rows
        .iter()
        .map(|r| json!({"trace": r.name, "k": r.k, "m_s": r.m.mean, "m_s_std": r.m.std, "compensated_per_step": r.new.mean, "masked_per_step": r.masked.mean, "uuid_accuracy": r.acc.mean, "rouge_l": r.rouge.mean, "n": r.m.n}))
        .collect();
    let compare = json!({
        "columns": ["k", "m_s (static compensated)", "UUID accuracy"],
        "rows": rows.iter().map(|r| json!([r.name, r.k, r.m.mean, r.acc.mean])).collect::<Vec<_>>(),
    });
    Ok(vec![
        ("figure.json".into(), serde_json::to_vec_pretty(&fig).unwrap()),
        ("progressive.json".into(), serde_json::to_vec_pretty(&data).unwrap()),
        ("compare.json".into(), serde_json::to_vec_pretty(&compare).unwrap()),
    ])
}

/// Fig. 2: the metric over (length, depth), one panel per trace, with each panel's average.
pub(super) fn ablation_grid(step: &Step, inputs: &BTreeMap<String, &Artifact>) -> Result<Files, String> {
    let n = &step.node;
    let (metric, label) = metric_name(n);
    let mut lengths = BTreeSet::new();
    let mut depths: Vec<f64> = Vec::new();
    let mut per_trace = Vec::new();
    for (name, a) in traces(n, inputs)? {
        let mut cells: BTreeMap<(u64, String), Vec<f64>> = BTreeMap::new();
        let mut all = Vec::new();
        for line in read_jsonl(a, "trace.jsonl")? {
            let (Some(len), Some(depth)) = (line["meta"]["length"].as_u64(), line["meta"]["depth"].as_f64()) else {
                return Err(format!("`{name}` has no (length, depth) per sample: the grid needs a trace of a `niah` dataset"));
            };
            let Some((acc, rl)) = task_scores(n, &line) else { continue };
            let v = if metric == "rouge_l" { rl } else { acc };
            lengths.insert(len);
            if !depths.iter().any(|d| (d - depth).abs() < 1e-9) {
                depths.push(depth);
            }
            cells.entry((len, format!("{depth:.4}"))).or_default().push(v);
            all.push(v);
        }
        // What was masked: "dynamic", or a fixed / per-sample set with its size.
        let info = read_json(a, "trace_info.json").ok().map(|i| i["intervention"].clone()).unwrap_or(Json::Null);
        let kind = match (info["kind"].as_str(), info["count"].as_u64(), info["random"]["count"].as_u64()) {
            (None, ..) => "none".to_string(),
            (Some("per_sample"), _, Some(c)) => format!("{c} random heads"),
            (Some("fixed"), Some(c), _) => format!("{c} fixed heads"),
            (Some(k), ..) => k.to_string(),
        };
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
            "Paper Fig. 2: {label} per (length, depth) cell, mean over {runs} runs, one panel per condition (panel title: its mean over all cells). Red = failure, green = success. Masked: {}.",
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
    });
    let data: Vec<Json> = per_trace.iter().map(|(name, _, avg, kind)| json!({"trace": name, "intervention": kind, "metric": metric, "mean": avg.mean, "std": avg.std, "n": avg.n})).collect();
    let compare = json!({
        "columns": ["masking", format!("mean {label}")],
        "rows": per_trace.iter().map(|(name, _, avg, kind)| json!([name, kind, avg.mean])).collect::<Vec<_>>(),
    });
    Ok(vec![
        ("figure.json".into(), serde_json::to_vec_pretty(&fig).unwrap()),
        ("grid.json".into(), serde_json::to_vec_pretty(&data).unwrap()),
        ("compare.json".into(), serde_json::to_vec_pretty(&compare).unwrap()),
    ])
}
