//! `table … = dynamism(…)`: Table 1.
use std::collections::BTreeSet;

use crate::lang::schema::{FuncSpec, enm, decl};
use crate::analysis::dynamism::{self, Average, BothEmpty, DynamismOptions, EmptyStep, EntropyPool, Head, SampleHeads};
use crate::report::{Cell as RCell, Column, Row, Table};

use crate::lang::Kind;
use crate::ops::args::*;
use crate::ops::inputs::*;
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Table, name: "dynamism", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new("dynamism", "Table 1: Jaccard similarity with static heads, adjacent-step Jaccard and entropy of the per-step retrieval heads (reference §8.3).")
        .pos("trace", decl(Trace), "trace with retrieval(copy_paste)")
        .pos("static", decl(Heads), "the static heads (top-20)")
        .def("empty_static", enm(&["zero", "skip"]), "zero", "dynamism.empty: Jaccard with static when H_t is empty")
        .def("empty_adjacent", enm(&["skip", "one", "zero"]), "skip", "dynamism.empty: adjacent Jaccard when both sets are empty")
        .def("entropy_pool", enm(&["model", "sample_mean"]), "model", "dynamism.entropy_pool")
        .def("average", enm(&["per_sample", "pooled"]), "per_sample", "dynamism.average: the Jaccards as the mean over each sample's steps then over samples (± over samples), or one mean over all steps of all samples (± over steps)")
}

fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let (trace_a, trace_name) = input(inputs, n, "trace")?;
    let (static_a, static_name) = input(inputs, n, "static")?;
    let samples: Vec<SampleHeads> = samples_of(trace_a, None)?.into_iter().map(|(s, _)| s).collect();
    let stat: BTreeSet<Head> = fixed_heads(static_a, &static_name)?.into_iter().collect();
    let opts = DynamismOptions {
        empty_static: if enum_arg(n, "empty_static") == Some("skip") { EmptyStep::Skip } else { EmptyStep::Zero },
        both_empty: match enum_arg(n, "empty_adjacent") {
            Some("one") => BothEmpty::One,
            Some("zero") => BothEmpty::Zero,
            _ => BothEmpty::Skip,
        },
        entropy_pool: if enum_arg(n, "entropy_pool") == Some("sample_mean") { EntropyPool::SampleMean } else { EntropyPool::Model },
        average: if req_enum(n, "average")? == "pooled" { Average::Pooled } else { Average::PerSample },
    };
    let d = dynamism::dynamism(&samples, &stat, &opts);
    let pm = |s: &dynamism::Spread| RCell::num_pm(s.mean, s.std, s.n as u64);
    let table = Table {
        id: n.name.clone(),
        caption: format!("Retrieval-head dynamism of `{trace_name}` (as in the paper's Table 1): {} samples, static set of {} heads (static heads per step: |H_t ∩ S| over all steps){}", samples.len(), stat.len(), if opts.average == Average::Pooled { "; Jaccards pooled over all steps (± over steps)" } else { "" }),
        row_header: "Trace".into(),
        columns: vec![
            Column::new("Jaccard w/ static").precision(4),
            Column::new("Adjacent Jaccard").precision(4),
            Column::new("Entropy (nats)").precision(4),
            Column::new("Effective heads").precision(1),
            Column::new("Heads per step").precision(2),
            Column::new("Distinct heads").precision(0),
            Column::new("Static heads per step").precision(2),
            Column::new("Static heads per step (max)").precision(0),
        ],
        rows: vec![Row::new(
            trace_name,
            vec![pm(&d.jaccard_static), pm(&d.jaccard_adjacent), pm(&d.entropy), RCell::num(d.effective_heads), pm(&d.heads_per_step), RCell::num(d.distinct_heads as f64), pm(&d.static_per_step), RCell::num(d.static_per_step_max as f64)],
        )],
        ..Default::default()
    };
    Ok(vec![("table.json".into(), serde_json::to_vec_pretty(&table).unwrap())])
}
