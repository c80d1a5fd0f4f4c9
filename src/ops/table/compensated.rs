//! `table … = compensated(…)`: compensated heads (A.2).
use crate::lang::schema::{FuncSpec, list, decl};
use crate::analysis::dynamism::Spread;
use crate::report::{Cell as RCell, Column, Row, Table};
use crate::ops::ablation::*;

use crate::lang::Kind;
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Table, name: "compensated", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new("compensated", "Compensated heads (3.3.2, A.2): mean over samples of max_t |E_t ∩ S20| for each progressive-ablation trace.")
        .pos("traces", list(decl(Trace)), "progressive-ablation traces")
        .pos("static", decl(Heads), "the static heads")
}

fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let (rows, n_static) = summarise(n, inputs)?;
    let pm = |s: &Spread| RCell::num_pm(s.mean, s.std, s.n as u64);
    let table = Table {
        id: n.name.clone(),
        caption: format!(
            "Compensated heads under progressive ablation (paper §3.3.2, A.2): `E_t = H'_t \\ H_t` are the heads that become retrieval heads only after the masking at step t; `m_s = max_t |E_t ∩ S|` with S the {n_static} static heads; mean ± std over samples"
        ),
        row_header: "Trace".into(),
        columns: vec![
            Column::new("k").precision(0),
            Column::new("Masked per step").precision(2),
            Column::new("m_s (static compensated)").precision(2),
            Column::new("|E_t| per step").precision(2),
            Column::new("UUID accuracy").precision(3),
            Column::new("ROUGE-L").precision(3),
        ],
        rows: rows
            .iter()
            .map(|r| Row::new(r.name.clone(), vec![r.k.map(RCell::num).unwrap_or_else(|| RCell::text("all")), pm(&r.masked), pm(&r.m), pm(&r.new), pm(&r.acc), pm(&r.rouge)]))
            .collect(),
        ..Default::default()
    };
    Ok(vec![("table.json".into(), serde_json::to_vec_pretty(&table).unwrap())])
}
