//! `heads … = explicit(…)`: a fixed list of heads.
use crate::lang::schema::{FuncSpec, list, Ty};

use crate::lang::{Kind, Value};
use crate::ops::args::*;
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Heads, name: "explicit", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    FuncSpec::new("explicit", "A fixed list of heads.").pos(
        "heads",
        list(Ty::HeadId),
        "heads as \"L<layer>H<head>\"",
    )
}

fn run(_ctx: &mut Ctx, step: &Step, _inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let heads = req_list(n, "heads")?
        .iter()
        .map(|v| match v {
            Value::Head { layer, head, .. } => Ok((*layer, *head)),
            other => Err(format!("`heads` holds {other:?}, not a head")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(super::write_fixed(heads, vec![]))
}
