//! `table … = scores(…)`: task metrics of traces.
use std::collections::BTreeMap;

use crate::lang::schema::{FuncSpec, enm, list, decl, metric_params, METRICS};
use crate::analysis::dynamism::{self};
use crate::report::{Cell as RCell, Column, Row, Table};

use crate::lang::{Kind, Value};
use crate::ops::args::*;
use crate::ops::inputs::*;
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Table, name: "scores", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new("scores", "Task metrics of traces (UUID accuracy, ROUGE-L), optionally split by length and depth.")
        .pos("traces", list(decl(Trace)), "traces to score")
        .def("metrics", list(enm(METRICS)), "[uuid_accuracy, rouge_l]", "which metrics")
        .def("by", list(enm(&["length", "depth"])), "[]", "group rows by")
        .with(metric_params)
}

fn run(ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let traces: Vec<&str> = req_list(n, "traces")?.iter().filter_map(ref_name).collect();
    let by: Vec<&str> = req_list(n, "by")?.iter().filter_map(Value::as_str).collect();
    // The columns, in the order written (`metrics: [rouge_l]` gives one column).
    let metrics: Vec<&str> = req_list(n, "metrics")?.iter().filter_map(Value::as_str).collect();
    let mut rows = Vec::new();
    for t in &traces {
        let a = inputs.get(*t).ok_or_else(|| format!("`{t}` not computed"))?;
        let masked = masking_words(a)?;
        let mut groups: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for line in trace_lines(a)? {
            let Some((acc, rl)) = task_scores(n, &line)? else { continue };
            let key = by.iter().map(|b| format!("{b}={}", line.meta[b])).collect::<Vec<_>>().join(", ");
            let g = groups.entry(key).or_default();
            g.0.push(acc);
            g.1.push(rl);
        }
        for (key, (acc, rl)) in groups {
            let label = if key.is_empty() { t.to_string() } else { format!("{t} ({key})") };
            let cell = |v: &[f64]| {
                let s = dynamism::Spread::of(v);
                RCell::num_pm(s.mean, s.std, s.n as u64)
            };
            let mut cells = vec![RCell::text(masked.clone())];
            cells.extend(metrics.iter().map(|m| if *m == "rouge_l" { cell(&rl) } else { cell(&acc) }));
            rows.push(Row::new(label, cells));
        }
    }
    let _ = ctx;
    let (acc_words, rouge_words) = metric_words(n);
    let name = |m: &str| if m == "rouge_l" { rouge_words.clone() } else { acc_words.clone() };
    let table = Table {
        id: n.name.clone(),
        caption: format!("Task scores: {}, mean ± std over samples; Masked: what each trace masked at every step (a baseline's matched head count)", metrics.iter().map(|m| name(m)).collect::<Vec<_>>().join(" and ")),
        row_header: "Trace".into(),
        columns: std::iter::once(Column::new("Masked"))
            .chain(metrics.iter().map(|m| Column::new(if *m == "rouge_l" { "ROUGE-L" } else { "UUID accuracy" }).precision(3)))
            .collect(),
        rows,
        ..Default::default()
    };
    Ok(vec![("table.json".into(), serde_json::to_vec_pretty(&table).map_err(|e| e.to_string())?)])
}
