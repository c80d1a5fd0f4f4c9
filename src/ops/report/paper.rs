//! The paper's published values (`compare: [paper.table1, …]` in a report), put beside ours,
//! with plain statements of where ours fall. The values live in
//! `reports/paper/retrieval-heads-are-dynamic.json` (compiled in) so a report never depends
//! on a file outside the project.
use serde::Deserialize;
use serde_json::Value as Json;

use crate::artifact::compare::{Compare, CompareRow, CompareValue};
use crate::report::{Cell as RCell, CellValue, Column, Row, Table, Tolerance};

const PAPER_JSON: &str = include_str!("../../../reports/paper/retrieval-heads-are-dynamic.json");

#[derive(Debug, Deserialize)]
struct PaperFile {
    paper: String,
    refs: std::collections::BTreeMap<String, PaperRef>,
}

#[derive(Debug, Deserialize)]
struct PaperRef {
    title: String,
    /// The constructor whose results this reference is compared with.
    constructor: String,
    #[serde(default)]
    columns: Vec<String>,
    /// `[label, value or null, …]` per row.
    #[serde(default)]
    rows: Vec<Vec<Json>>,
    #[serde(default)]
    text: Option<String>,
}

/// One of our results that a reference can be compared with.
pub(crate) struct Ours {
    /// Constructor of the node that made it (`dynamism`, `probe`, `progressive`, …).
    pub constructor: String,
    pub node: String,
    /// Its table, when it is one.
    pub table: Option<Table>,
    /// Its `compare.json`, when it wrote one.
    pub compare: Option<Compare>,
}

/// What a reference turns into in the report.
pub(crate) struct Comparison {
    pub table: Option<Table>,
    /// Markdown: what the paper says and where our numbers fall.
    pub text: String,
}

/// Whether `paper.<name>` has transcribed values (the executor rejects the others up front).
pub(crate) fn has(name: &str) -> bool {
    paper().refs.contains_key(name)
}

fn paper() -> PaperFile {
    serde_json::from_str(PAPER_JSON).expect("reports/paper/retrieval-heads-are-dynamic.json is valid (checked by a test)")
}

/// One of our numbers and what a rerun must match.
type Num = (f64, Tolerance);

/// Our rows for a reference's columns: from a `compare.json` (matched by column name; its
/// optional `tolerances` are parallel to `rows` without the label), or from a table (columns
/// matched by header).
fn our_rows(r: &PaperRef, o: &Ours) -> Vec<(String, Vec<Option<Num>>)> {
    let pick = |names: &[String], label: String, vals: &dyn Fn(usize) -> Option<Num>| -> Option<(String, Vec<Option<Num>>)> {
        let idx: Vec<Option<usize>> = r.columns.iter().map(|c| names.iter().position(|n| n.eq_ignore_ascii_case(c))).collect();
        idx.iter().any(Option::is_some).then(|| (label, idx.iter().map(|i| i.and_then(vals)).collect()))
    };
    if let Some(c) = &o.compare {
        return c
            .rows
            .iter()
            .filter_map(|row| pick(&c.columns, format!("ours: {}", row.label), &|i| row.values.get(i).and_then(CompareValue::number).map(|v| (v, row.tolerance(i)))))
            .collect();
    }
    if let Some(t) = &o.table {
        let names: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
        return t
            .rows
            .iter()
            .filter_map(|row| {
                let label = format!("ours: {} ({})", row.label, o.node);
                pick(&names, label, &|i| match row.cells.get(i) {
                    Some(c @ RCell { value: CellValue::Number { value, .. }, .. }) => Some((*value, c.tolerance.clone())),
                    _ => None,
                })
            })
            .collect();
    }
    vec![]
}

/// Figure 2's claim in numbers: how much of the unablated score each masked condition keeps,
/// and for which conditions "dynamic ≪ static, random" holds (a condition keeps at least half of
/// the unablated score while dynamic masking keeps less than half).
fn grid_verdict(c: &Compare) -> String {
    let rows: Vec<(String, String, f64)> =
        c.rows.iter().filter_map(|r| Some((r.label.clone(), r.values.first()?.text()?.to_string(), r.values.get(1)?.number()?))).collect();
    let Some(base) = rows.iter().find(|r| r.1 == "none").map(|r| r.2).filter(|b| *b > 0.0) else { return String::new() };
    let Some(dynamic) = rows.iter().find(|r| r.1 == "dynamic").map(|r| r.2) else { return String::new() };
    let keep = |v: f64| v / base;
    let others: Vec<&(String, String, f64)> = rows.iter().filter(|r| r.1 != "none" && r.1 != "dynamic").collect();
    let (holds, fails): (Vec<_>, Vec<_>) = others.iter().partition(|r| keep(r.2) >= 0.5);
    let list = |v: &[&&(String, String, f64)]| v.iter().map(|r| format!("`{}` ({}, keeps {:.0}%)", r.0, r.1, 100.0 * keep(r.2))).collect::<Vec<_>>().join(", ");
    let mut t = format!(" Dynamic masking keeps {:.0}% of the unablated score.", 100.0 * keep(dynamic));
    if keep(dynamic) >= 0.5 {
        t += " The paper's pattern does not appear here: masking the dynamic heads does not destroy the answer.";
        return t;
    }
    if !holds.is_empty() {
        t += &format!(" The paper's pattern (dynamic ≪ static, random) holds against {}.", list(&holds));
    }
    if !fails.is_empty() {
        t += &format!(" It does not hold against {}: these keep less than half of the unablated score too.", list(&fails));
    }
    t
}

fn fmt(v: f64) -> String {
    format!("{v:.4}")
}

/// Builds the comparison for `paper.<name>` from the results of this report.
pub(crate) fn compare(name: &str, ours: &[Ours]) -> Result<Comparison, String> {
    let p = paper();
    let r = p.refs.get(name).ok_or_else(|| format!("`paper.{name}` has no values in reports/paper/retrieval-heads-are-dynamic.json"))?;
    let mine: Vec<&Ours> = ours.iter().filter(|o| o.constructor == r.constructor).collect();
    let mut text = format!("**{}** — {}.", r.title, p.paper);
    if let Some(t) = &r.text {
        text += &format!(" The paper: “{t}”");
    }
    if mine.is_empty() {
        text += &format!(" This report has no `{}` result to compare.", r.constructor);
        return Ok(Comparison { table: None, text });
    }
    if r.columns.is_empty() || r.rows.is_empty() {
        // Text-only reference: list our numbers.
        for o in &mine {
            if let Some(c) = &o.compare {
                let value = |row: &CompareRow, i: usize| row.values.get(i).and_then(CompareValue::number).map(fmt).unwrap_or("—".into());
                let rows: Vec<String> = c.rows.iter().map(|row| format!("`{}` ({}): {}", row.label, row.values.first().and_then(CompareValue::text).unwrap_or(""), value(row, 1))).collect();
                text += &format!(" Ours ({}, `{}`): {}.", c.columns.last().map_or("", String::as_str), o.node, rows.join("; "));
                if r.constructor == "ablation_grid" {
                    text += &grid_verdict(c);
                }
            }
        }
        return Ok(Comparison { table: None, text });
    }
    let paper_rows: Vec<(String, Vec<Option<f64>>)> =
        r.rows.iter().map(|row| (row[0].as_str().unwrap_or("").to_string(), row[1..].iter().map(Json::as_f64).collect())).collect();
    let our: Vec<(String, Vec<Option<Num>>)> = mine.iter().flat_map(|o| our_rows(r, o)).collect();
    let cell = |v: Option<f64>| v.map(RCell::num).unwrap_or_else(RCell::empty);
    let mut rows: Vec<Row> = paper_rows.iter().map(|(l, v)| Row::new(format!("paper: {l}"), v.iter().map(|x| cell(*x)).collect())).collect();
    rows.extend(our.iter().map(|(l, v)| Row::new(l.clone(), v.iter().map(|x| x.as_ref().map(|(v, t)| RCell::num(*v).within(t.clone())).unwrap_or_else(RCell::empty)).collect())));
    // Where each of our numbers falls relative to the paper's range for that column.
    let mut notes = Vec::new();
    for (ci, col) in r.columns.iter().enumerate() {
        let pv: Vec<f64> = paper_rows.iter().filter_map(|(_, v)| v.get(ci).copied().flatten()).collect();
        if pv.is_empty() || col == "k" {
            continue;
        }
        let (lo, hi) = pv.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        for (label, v) in &our {
            if let Some((x, _)) = v.get(ci).cloned().flatten() {
                let at = if x < lo {
                    "below the paper's range"
                } else if x > hi {
                    "above the paper's range"
                } else {
                    "inside the paper's range"
                };
                let range = if lo == hi { fmt(lo) } else { format!("{}–{}", fmt(lo), fmt(hi)) };
                notes.push(format!("{col}: {label} = {} is {at} ({range})", fmt(x)));
            }
        }
    }
    if !notes.is_empty() {
        text += &format!(" Where ours fall: {}.", notes.join("; "));
    }
    let table = Table {
        id: format!("paper_{name}"),
        caption: format!("{} — the paper's values (rows `paper: …`, transcribed from the paper) beside ours (rows `ours: …`, measured by this run).", r.title),
        row_header: "Model / run".into(),
        columns: r.columns.iter().map(|c| Column::new(c.clone()).precision(if c == "k" { 0 } else { 4 })).collect(),
        rows,
        ..Default::default()
    };
    Ok(Comparison { table: Some(table), text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_paper_ref_the_language_accepts_has_values() {
        let p = paper();
        for name in crate::lang::schema::PAPER_REFS {
            if ["table3", "table4"].contains(name) {
                continue; // Sections 4–5, not transcribed yet.
            }
            let r = p.refs.get(*name).unwrap_or_else(|| panic!("paper.{name} missing"));
            assert!(r.rows.iter().all(|row| row.len() == r.columns.len() + 1), "paper.{name}: row widths");
        }
    }
}
