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
        .pos("trace", decl(Trace), "a trace that captured retrieval(copy_paste) (`wu_mean`) or retrieval(reasoning) (`mean_score`)")
        .def("top", int_min(1), "20", "static.top: how many heads (Sec. 3: 20)")
        .def("method", enm(&["wu_mean", "step_frequency", "mean_score", "wu_data"]), "wu_mean", "static.method: `wu_mean` Eq. 1 hits per needle token (Wu et al.), `step_frequency` share of steps in H_t, `mean_score` mean Eq. 2 score over every step (Section 4's static reasoning heads)")
        .def("success_filter", Ty::Bool, "true", "static.success_filter: keep only generations whose answer has ROUGE-1 recall above `min_rouge1_recall` (Wu's filter); false: every generation")
        .def("min_rouge1_recall", float_range(0.0, 1.0), "0.5", "static.min_rouge1_recall: Wu's success filter")
        .def("rouge1_stem", Ty::Bool, "true", "static.rouge1_stem: NLTK Porter stemming in the filter's ROUGE-1 (Wu: use_stemmer=True)")
}

fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let (a, _) = input(inputs, n, "trace")?;
    let min = req_f64(n, "min_rouge1_recall")?;
    let stem = req_bool(n, "rouge1_stem")?;
    let filter = req_bool(n, "success_filter")?.then_some((min, stem));
    let (samples, lines): (Vec<SampleHeads>, Vec<_>) = samples_of(a, filter)?.into_iter().filter(|(s, _)| s.success).unzip();
    let info = trace_info(a)?;
    let method = req_enum(n, "method")?;
    // Each score belongs to one definition of H_t: refuse the mix rather than rank nonsense.
    match (method, info.retrieval.reasoning().is_some()) {
        ("wu_mean", true) => return Err(format!("`method: wu_mean` scores Eq. 1 copy-paste hits, and trace `{}` defines H_t by {}: use `method: mean_score` (or `step_frequency`)", n.arg("trace").and_then(ref_name).unwrap_or("?"), info.retrieval.describe())),
        ("mean_score", false) if lines.iter().all(|l| l.steps.iter().all(|s| s.reasoning.is_none())) => {
            return Err(format!("`method: mean_score` averages Eq. 2 scores, and trace `{}` has none: capture `retrieval(reasoning)` in it", n.arg("trace").and_then(ref_name).unwrap_or("?")))
        }
        _ => {}
    }
    let ranked = match method {
        "mean_score" => mean_scores(&lines, info.layers, info.heads)?,
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

/// Every head's Eq. 2 score averaged over every step of every generation, best first (ties to
/// the lower (layer, head)).
fn mean_scores(lines: &[crate::artifact::trace::TraceLine], layers: usize, heads: usize) -> Result<Vec<(Head, f64)>, String> {
    let mut sum = vec![0.0f64; layers * heads];
    let mut steps = 0usize;
    for line in lines {
        for (i, st) in line.steps.iter().enumerate() {
            let r = st.reasoning.as_ref().ok_or_else(|| format!("generation `{}` step {i} has no Eq. 2 scores", line.id))?;
            if r.len() != layers || r.iter().any(|l| l.len() != heads) {
                return Err(format!("generation `{}` step {i}: Eq. 2 scores are not {layers} layers × {heads} heads", line.id));
            }
            r.iter().flatten().zip(sum.iter_mut()).for_each(|(x, s)| *s += x);
            steps += 1;
        }
    }
    let mut r: Vec<(Head, f64)> = sum.into_iter().enumerate().map(|(i, s)| ((i / heads, i % heads), s / steps.max(1) as f64)).collect();
    r.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(r)
}

/// `method: wu_data` (Wu's own detection data) is declared but not run yet.
fn check(n: &Node) -> Result<(), Refusal> {
    only(n, "method", &["wu_mean", "step_frequency", "mean_score"])
}
