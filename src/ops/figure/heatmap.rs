//! `figure … = heatmap(…)`: Fig. 1.
use std::collections::{BTreeMap, BTreeSet};

use crate::lang::schema::{FuncSpec, int_min, decl};
use crate::analysis::dynamism::Head;
use crate::report::{self, Figure, Heatmap};

use crate::lang::Kind;
use crate::ops::args::*;
use crate::ops::inputs::*;
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Figure, name: "heatmap", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new("heatmap", "Fig. 1: retrieval score of the most varying heads over the generation steps of one sample.")
        .pos("trace", decl(Trace), "trace with retrieval(...)")
        .def("most_varying", int_min(1), "10", "how many heads (those whose score changes most)")
        .def("sample", int_min(0), "0", "which generation of the trace")
}

fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let (a, trace_name) = input(inputs, n, "trace")?;
    let lines = trace_lines(a)?;
    let idx = req_int(n, "sample")? as usize;
    let line = lines.get(idx).ok_or_else(|| format!("sample {idx} does not exist: `{trace_name}` has {} samples", lines.len()))?;
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
