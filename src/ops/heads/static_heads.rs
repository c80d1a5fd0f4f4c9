//! `heads … = static_heads(…)`: Wu et al.'s static retrieval heads.
use std::collections::BTreeMap;

use crate::lang::schema::{FuncSpec, int_min, float_range, enm, decl, Ty};
use crate::analysis::dynamism::{self, Head, SampleHeads};

use crate::lang::{Kind, Node};
use crate::ops::args::*;
use crate::ops::inputs::*;
use crate::ops::{Exec, Files, Inputs, OpDef, Refusal, only};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Heads, name: "static_heads", spec, source: file!(), check: Some(check), exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new("static_heads", "Static retrieval heads (Wu et al.): heads ranked by their retrieval score aggregated over a trace (reference §8.3).")
        .pos("trace", decl(Trace), "a trace that captured retrieval(copy_paste)")
        .def("top", int_min(1), "20", "static.top: how many heads (Sec. 3: 20)")
        .def("method", enm(&["wu_mean", "step_frequency", "wu_data"]), "wu_mean", "static.method")
        .def("min_rouge1_recall", float_range(0.0, 1.0), "0.5", "static.min_rouge1_recall: Wu's success filter")
        .def("rouge1_stem", Ty::Bool, "true", "static.rouge1_stem: NLTK Porter stemming in the filter's ROUGE-1 (Wu: use_stemmer=True)")
}

fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let (a, _) = input(inputs, n, "trace")?;
    let min = req_f64(n, "min_rouge1_recall")?;
    let stem = req_bool(n, "rouge1_stem")?;
    let samples: Vec<SampleHeads> = samples_of(a, Some((min, stem)))?.into_iter().map(|(s, _)| s).collect();
    let ranked = match req_enum(n, "method")? {
        "step_frequency" => {
            let mut counts: BTreeMap<Head, f64> = BTreeMap::new();
            let steps: usize = samples.iter().map(|s| s.steps.len()).sum();
            for s in &samples {
                for h in s.steps.iter().flatten() {
                    *counts.entry(*h).or_default() += 1.0 / steps.max(1) as f64;
                }
            }
            let mut r: Vec<(Head, f64)> = counts.into_iter().collect();
            r.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            r
        }
        "wu_mean" => dynamism::static_scores(&samples),
        other => return Err(format!("`method: {other}` is not implemented")),
    };
    let top = req_int(n, "top")? as usize;
    let selected: Vec<Head> = ranked.iter().take(top).map(|x| x.0).collect();
    Ok(super::write_fixed(selected, ranked.iter().map(|((l, h), s)| (*l, *h, *s)).collect()))
}

/// `method: wu_data` (Wu's own detection data) is declared but not run yet.
fn check(n: &Node) -> Result<(), Refusal> {
    only(n, "method", &["wu_mean", "step_frequency"])
}
