//! `heads … = top(…)`: the first n heads of a ranking, or as many as a trace masked.
use crate::lang::schema::{FuncSpec, int_min, enm, decl};
use crate::analysis::dynamism::Head;

use crate::lang::{Kind, Node};
use crate::ops::args::*;
use crate::artifact::heads::{Choice, HeadSet, Ranked};
use crate::ops::inputs::*;
use crate::ops::{Exec, Files, Inputs, OpDef, Refusal, only};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Heads, name: "top", spec, source: file!(), check: Some(check), exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new("top", "The first n heads of a ranked head set; with `matched: <trace>`, as many as that dynamic-ablation trace masked per step on average (the static baseline of Fig. 2).")
        .pos("heads", decl(Heads), "ranked heads")
        .pos_opt("n", int_min(1), "how many")
        .opt("matched", decl(Trace), "take as many heads as this trace has per step on average: the heads a dynamic-ablation trace masked, or the Eq. 1 heads of any other trace")
        .def("match_count", enm(&["global_mean", "sample_mean", "per_step"]), "global_mean", "ablation.match_count: the average over all steps, or per sample")
        .exactly_one(&["n", "matched"])
}

fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let (a, a_name) = input(inputs, n, "heads")?;
    let set = head_set(a)?;
    let base: Vec<Head> = set.order(&a_name).map_err(|e| e.to_string())?;
    let (k, per_sample) = match int_arg(n, "n") {
        Some(k) => (k as usize, None),
        None => {
            let (t, t_name) = input(inputs, n, "matched")?;
            let m = matched_count(t, &t_name, req_enum(n, "match_count")?)?;
            (m.global, m.per_sample)
        }
    };
    // A ranking shorter than k (e.g. a static set from runs that all failed Wu's success
    // filter) gives what it has; heads.json records both counts.
    let heads: Vec<Head> = base.iter().copied().take(k).collect();
    let ranked: Vec<Ranked> = set.ranked().iter().copied().take(k).collect();
    Ok(super::write(&HeadSet::new(match per_sample {
        None => Choice::Fixed { heads, ranked },
        // Each sample masks its own count of the ranking's first heads.
        Some(per) => Choice::PerSample { heads, ranked, per_sample: per.iter().map(|(id, &c)| (id.clone(), base.iter().copied().take(c).collect())).collect() },
    })))
}

/// `match_count: per_step` is declared but not run yet.
fn check(n: &Node) -> Result<(), Refusal> {
    only(n, "match_count", &["global_mean", "sample_mean"])
}
