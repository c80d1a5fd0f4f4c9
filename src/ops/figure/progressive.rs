//! `figure … = progressive(…)`: Fig. 3.
use crate::artifact::compare::{Compare, CompareRow};
use serde_json::{json, Value as Json};

use crate::lang::schema::{FuncSpec, enm, list, decl, metric_params, METRICS};
use crate::analysis::dynamism::Spread;
use crate::report::{Figure, LinePlot, Series};
use crate::ops::ablation::*;
use crate::ops::inputs::metric_words_for;

use crate::lang::Kind;
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Figure, name: "progressive", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new(
        "progressive",
        "Figs. 3 and 7: metric and compensated heads against the number k of masked dynamic heads.",
    )
    .pos(
        "traces",
        list(decl(Trace)),
        "one trace per k (a sweep family)",
    )
    .pos("static", decl(Heads), "the static heads")
    .def("metric", enm(METRICS), "uuid_accuracy", "which metric")
    .with(metric_params)
}

/// Fig. 3: compensated static heads m_s (left axis) and the task metric (right axis) against k.
fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let (mut rows, n_static) = summarise(n, inputs)?;
    if rows.iter().any(|r| r.k.is_none()) {
        let bad: Vec<&str> = rows.iter().filter(|r| r.k.is_none()).map(|r| r.name.as_str()).collect();
        return Err(format!("progressive needs traces that mask `dynamic(..., k: <number>)` heads; these do not: {}", bad.join(", ")));
    }
    rows.sort_by(|a, b| a.k.partial_cmp(&b.k).unwrap());
    let (metric, label) = metric_name(n);
    let words = metric_words_for(n, metric);
    let x: Vec<f64> = rows.iter().map(|r| r.k.unwrap()).collect();
    // Bands: ± one standard error of the mean over samples.
    let se = |s: &Spread| if s.n > 1 { s.std / (s.n as f64).sqrt() } else { 0.0 };
    let m: Vec<f64> = rows.iter().map(|r| r.m.mean).collect();
    let m_se: Vec<f64> = rows.iter().map(|r| se(&r.m)).collect();
    let y: Vec<&Spread> = rows.iter().map(|r| &r.chosen).collect();
    let fig = Figure::Lines(LinePlot {
        id: n.name.clone(),
        title: "Progressive ablation of dynamic heads".into(),
        caption: format!(
            "Paper Fig. {}: k dynamic heads masked at every step (chosen on that step's unmasked pass). Left axis: `m_s`, compensated heads that are among the {n_static} static heads (mean over samples, band ± 1 s.e.); right axis: {words} (band ± 1 s.e.). n = {} samples per k.",
            match metric {
                "rouge_l" => "3 (ROUGE-L: appendix Figs. 15–17)",
                "em" | "f1" => "7",
                _ => "3",
            },
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
        .map(|r| {
            let mut v = json!({"trace": r.name, "k": r.k, "m_s": r.m.mean, "m_s_std": r.m.std, "compensated_per_step": r.new.mean, "masked_per_step": r.masked.mean, "uuid_accuracy": r.acc.mean, "rouge_l": r.rouge.mean, "n": r.m.n});
            if matches!(metric, "em" | "f1") {
                v[metric] = json!(r.chosen.mean);
            }
            v
        })
        .collect();
    // The paper's Fig. 3 is read against UUID accuracy (also under `metric: rouge_l`); Fig. 7
    // against EM or F1.
    let qa = matches!(metric, "em" | "f1");
    let compare = Compare::new(
        &["k", "m_s (static compensated)", if qa { label } else { "UUID accuracy" }],
        rows.iter().map(|r| CompareRow::new(r.name.clone(), vec![r.k.into(), r.m.mean.into(), if qa { r.chosen.mean } else { r.acc.mean }.into()]).at("metric", metric)).collect(),
    );
    Ok(vec![
        ("figure.json".into(), serde_json::to_vec_pretty(&fig).unwrap()),
        ("progressive.json".into(), serde_json::to_vec_pretty(&data).unwrap()),
        compare.file(),
    ])
}
