//! `heads … = dynamic(…)`: per-step dynamic retrieval heads H_t, found by the trace that masks them.
use std::collections::BTreeMap;

use crate::artifact::heads::{parse_option, Choice, DynamicSpec, HeadSet, Order, RecordedSteps};

use crate::lang::schema::{FuncSpec, int_min, enm, decl};
use crate::analysis::dynamism::Head;

use crate::lang::Kind;
use crate::ops::args::*;
use crate::ops::inputs::*;
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Heads, name: "dynamic", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new("dynamic", "Dynamic retrieval heads H_t of the current step, defined as `trace` defines them (Eq. 1 score 1, or Eq. 2 score above its threshold), found online in a clean first pass (reference §8.4–8.5).")
        .pos("trace", decl(Trace), "trace whose retrieval capture settings define H_t")
        .opt("k", int_min(0), "mask only k heads of H_t per step (all of H_t if fewer; default: all)")
        .def("order", enm(&["attn_weight", "static_rank", "layer_major", "random"]), "attn_weight", "progressive.order: which k heads")
        .def("post_token", enm(&["masked", "clean"]), "masked", "progressive.post_token: token used for H'_t")
        .def("source", enm(&["online", "trace"]), "online", "progressive.source: H_t from each step's clean pass (two passes), or read from the unablated `trace` at the same step (one pass, cheaper; drifts once the ablated text departs from it)")
        .opt("static", decl(Heads), "static ranking for order: static_rank")
        .requires("order", "static_rank", "static")
        .seed("seed for order: random")
}

fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    // The per-step sets are found online by the trace that masks them (two passes per
    // step); this artifact records how.
    let n = &step.node;
    let k = int_arg(n, "k");
    let static_rank: Vec<Head> = match n.arg("static") {
        Some(_) => {
            let (st, st_name) = input(inputs, n, "static")?;
            head_set(st)?.order(&st_name).map_err(|e| e.to_string())?
        }
        None => vec![],
    };
    let order: Order = parse_option(req_enum(n, "order")?)?;
    // H_t is defined as the trace defines it (its `retrieval` capture: Eq. 1 or Eq. 2).
    let (t, t_name) = input(inputs, n, "trace")?;
    let rule = crate::artifact::trace::read_info(t).map_err(|e| format!("trace `{t_name}`: {e}"))?.retrieval;
    let recorded = match req_enum(n, "source")? {
        // The cheaper variant: H_t read from the unablated trace at the same step.
        "trace" => {
            let mut rec = BTreeMap::new();
            for line in trace_lines(t)? {
                if line.steps.iter().any(|st| st.head_weights.len() != st.heads.len()) && order == Order::AttnWeight {
                    return Err(format!("trace `{t_name}` records no per-head attention weights (made by an older rhx): recompute it (`rhx run --recompute`)"));
                }
                // Weights are the engine's f32, written as f64: the cast back is exact.
                let per_step: RecordedSteps = line.steps.iter().map(|st| st.heads.iter().enumerate().map(|(i, h)| (*h, st.head_weights.get(i).copied().unwrap_or(0.0) as f32)).collect()).collect();
                rec.insert(line.id.clone(), per_step);
            }
            Some(rec)
        }
        _ => None,
    };
    let spec = DynamicSpec { k: k.map(|k| k as usize), order, seed: seed(n)?, post_token: parse_option(req_enum(n, "post_token")?)?, static_rank, recorded, rule };
    Ok(super::write(&HeadSet::new(Choice::Dynamic(spec))))
}
