//! `table … = head_table(heads)`: a head set as a table — each head with its rank and, where the
//! set was cut from a ranking (static heads, a scores file), its score — so a report can show
//! which heads an analysis used.
use crate::analysis::dynamism::Head;
use crate::lang::schema::{decl, int_min, FuncSpec};
use crate::lang::Kind;
use crate::ops::args::{input, req_int};
use crate::ops::inputs::head_set;
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::report::{Cell, Column, Row, Table};
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Table, name: "head_table", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    FuncSpec::new("head_table", "A head set as a table: rank, layer, head and, for a ranked set (static heads, a scores file), its score.")
        .pos("heads", decl(Kind::Heads), "the head set")
        .def("rows", int_min(1), "20", "at most this many heads, in the set's order")
}

fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let (a, name) = input(inputs, n, "heads")?;
    let rows = req_int(n, "rows")? as usize;
    let set = head_set(a)?;
    let selected: Vec<Head> = set.fixed_heads(&name).map_err(|e| e.to_string())?.to_vec();
    let scores: std::collections::BTreeMap<Head, f64> = set.ranked().iter().map(|&(l, h, s)| ((l, h), s)).collect();
    let table = Table {
        id: n.name.clone(),
        caption: format!("The {} heads of `{name}`{}", selected.len().min(rows), if scores.is_empty() { "" } else { ", with the score they were ranked by" }),
        row_header: "Rank".into(),
        columns: vec![Column::new("Layer").precision(0), Column::new("Head").precision(0), Column::new("Score").precision(4)],
        rows: selected
            .iter()
            .take(rows)
            .enumerate()
            .map(|(i, h)| {
                let score = scores.get(h).map_or_else(|| Cell::text("–"), |s| Cell::num(*s));
                Row::new((i + 1).to_string(), vec![Cell::num(h.0 as f64), Cell::num(h.1 as f64), score])
            })
            .collect(),
        ..Default::default()
    };
    Ok(vec![("table.json".into(), serde_json::to_vec_pretty(&table).map_err(|e| e.to_string())?)])
}
