//! `heads … = random(…)`: uniformly drawn heads (the random baseline of Fig. 2).
use std::collections::BTreeSet;

use crate::lang::schema::{FuncSpec, int_min, enm, decl};
use crate::analysis::dynamism::Head;

use crate::lang::{Kind, Node};
use crate::ops::args::*;
use crate::artifact::heads::{parse_option, Choice, HeadSet, RandomDraw};
use crate::ops::inputs::*;
use crate::ops::{Exec, Files, Inputs, OpDef, Refusal, only};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Heads, name: "random", spec, source: file!(), check: Some(check), exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new(
        "random",
        "Uniformly drawn heads of a model (the random baseline of Fig. 2).",
    )
    .pos("model", decl(Model), "whose heads")
    .opt("count", int_min(1), "how many heads")
    .opt(
        "matched",
        decl(Trace),
        "draw as many heads as this trace has per step on average: the heads a dynamic-ablation trace masked, or the Eq. 1 heads of any other trace",
    )
    .exactly_one(&["count", "matched"])
    .def(
        "match_count",
        enm(&["global_mean", "sample_mean", "per_step"]),
        "global_mean",
        "ablation.match_count",
    )
    .def(
        "redraw",
        enm(&["per_sample", "per_step", "per_cell"]),
        "per_sample",
        "ablation.random_redraw",
    )
    .opt("exclude", decl(Heads), "a ranked head set (e.g. the static heads) whose first `exclude_top` heads are never drawn")
    .def(
        "exclude_top",
        int_min(0),
        "20",
        "ablation.random_exclude_top: how many of `exclude`'s first heads are left out of the pool (Wu leaves out its top 100)",
    )
    .seed("seed of the draw")
}

fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let (m, _) = input(inputs, n, "model")?;
    let info = read_json(m, "model.json")?;
    let shape = |k: &str| info[k].as_u64().map(|x| x as usize).ok_or_else(|| format!("model.json of `{}` has no `{k}`", n.name));
    let (layers, per_layer) = (shape("layers")?, shape("heads")?);
    let excluded: BTreeSet<Head> = match n.arg("exclude") {
        Some(_) => {
            let (e, e_name) = input(inputs, n, "exclude")?;
            let list: Vec<Head> = head_set(e)?.order(&e_name).map_err(|e| e.to_string())?;
            let top = req_int(n, "exclude_top")? as usize;
            list.into_iter().take(top).collect()
        }
        None => BTreeSet::new(),
    };
    let pool: Vec<Head> = (0..layers).flat_map(|l| (0..per_layer).map(move |h| (l, h))).filter(|h| !excluded.contains(h)).collect();
    let (count, per_sample) = match int_arg(n, "count") {
        Some(c) => (c as usize, None),
        None => {
            let (t, t_name) = input(inputs, n, "matched")?;
            let m = matched_count(t, &t_name, req_enum(n, "match_count")?)?;
            (m.global, m.per_sample)
        }
    };
    let most = per_sample.as_ref().and_then(|p| p.values().max().copied()).unwrap_or(0).max(count);
    if most > pool.len() {
        return Err(format!("{most} random heads asked of a pool of {} heads ({} left out)", pool.len(), excluded.len()));
    }
    let draw = RandomDraw { pool, count, per_sample_count: per_sample, excluded: excluded.len(), redraw: parse_option(req_enum(n, "redraw")?)?, seed: seed(n)? };
    Ok(super::write(&HeadSet::new(Choice::Random(draw))))
}

/// `match_count: per_step` and `redraw: per_step` are declared but not run yet.
fn check(n: &Node) -> Result<(), Refusal> {
    only(n, "match_count", &["global_mean", "sample_mean"])?;
    only(n, "redraw", &["per_sample", "per_cell"])
}
