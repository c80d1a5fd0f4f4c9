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
    FuncSpec::new("scores", "Task metrics of traces (UUID accuracy, ROUGE-L; EM and F1 for question answering), optionally split by length and depth.")
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
        let mut groups: BTreeMap<String, Vec<TaskScores>> = BTreeMap::new();
        for line in trace_lines(a)? {
            let Some(scores) = task_scores(n, &line)? else { continue };
            let key = by.iter().map(|b| format!("{b}={}", line.meta[b])).collect::<Vec<_>>().join(", ");
            groups.entry(key).or_default().push(scores);
        }
        for (key, scores) in groups {
            let label = if key.is_empty() { t.to_string() } else { format!("{t} ({key})") };
            let cell = |m: &str| {
                let s = dynamism::Spread::of(&scores.iter().map(|x| x.get(m)).collect::<Vec<_>>());
                RCell::num_pm(s.mean, s.std, s.n as u64)
            };
            let mut cells = vec![RCell::text(masked.clone())];
            cells.extend(metrics.iter().map(|m| cell(m)));
            rows.push(Row::new(label, cells));
        }
    }
    let _ = ctx;
    let name = |m: &str| metric_words_for(n, m);
    let table = Table {
        id: n.name.clone(),
        caption: format!("Task scores: {}, mean ± std over samples; Masked: what each trace masked at every step (a baseline's matched head count)", metrics.iter().map(|m| name(m)).collect::<Vec<_>>().join(" and ")),
        row_header: "Trace".into(),
        columns: std::iter::once(Column::new("Masked"))
            .chain(metrics.iter().map(|m| Column::new(metric_label(m)).precision(3)))
            .collect(),
        rows,
        ..Default::default()
    };
    Ok(vec![("table.json".into(), serde_json::to_vec_pretty(&table).map_err(|e| e.to_string())?)])
}
