//! `heads … = from_file(…)`: heads listed in a file.
use crate::lang::schema::{FuncSpec, enm, Ty, PathKind};
use crate::analysis::dynamism::{self, Head};

use crate::lang::{Kind, Value};
use crate::ops::args::*;
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Heads, name: "from_file", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    FuncSpec::new(
        "from_file",
        "Heads listed in a file (JSON list of [layer, head] or CSV layer,head).",
    )
    .pos("path", Ty::Path(PathKind::File), "the file")
    .def(
        "format",
        enm(&["auto", "json", "csv"]),
        "auto",
        "file format",
    )
}

fn run(_ctx: &mut Ctx, step: &Step, _inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let Some(Value::Path { resolved, .. }) = n.arg("path") else { return Err("no path".into()) };
    let text = std::fs::read_to_string(resolved).map_err(|e| format!("{}: {e}", resolved.display()))?;
    let fmt = req_enum(n, "format")?;
    let is_csv = fmt == "csv" || (fmt == "auto" && resolved.extension().is_some_and(|e| e == "csv"));
    let (selected, ranked) = if is_csv {
        let mut v = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let (l, h) = line.split_once(',').ok_or_else(|| format!("{}:{}: expected `layer,head`", resolved.display(), i + 1))?;
            v.push((l.trim().parse().map_err(|_| format!("{}:{}: bad layer `{l}`", resolved.display(), i + 1))?, h.trim().parse().map_err(|_| format!("{}:{}: bad head `{h}`", resolved.display(), i + 1))?));
        }
        (v, vec![])
    } else if text.trim_start().starts_with('{') {
        let r = dynamism::parse_head_score_json(&text).map_err(|e| format!("{}: {e}", resolved.display()))?;
        (r.iter().map(|x| x.0).collect(), r)
    } else {
        let v: Vec<Head> = serde_json::from_str(&text).map_err(|e| format!("{}: expected a JSON list of [layer, head]: {e}", resolved.display()))?;
        (v, vec![])
    };
    Ok(super::write_fixed(selected, ranked.iter().map(|((l, h), s)| (*l, *h, *s)).collect()))
}
