//! The paper's published values (`compare: [paper.table1, …]` in a report), put beside ours,
//! with plain statements of where ours fall. The values live in
//! `reports/paper/retrieval-heads-are-dynamic.json` (compiled in) so a report never depends
//! on a file outside the project.
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::artifact::compare::{Compare, CompareRow, CompareValue};
use crate::report::{Cell as RCell, CellValue, Column, Row, Table, Tolerance};

const PAPER_JSON: &str = include_str!("../../../reports/paper/retrieval-heads-are-dynamic.json");

#[derive(Debug, Deserialize)]
struct PaperFile {
    paper: String,
    refs: BTreeMap<String, PaperRef>,
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
    /// Only our rows whose setting has these values are compared (`{"predictor": "mlp"}`: the
    /// paper's Table 2 is the MLP probe, not our baselines). Rows without a setting never match
    /// a non-empty filter.
    #[serde(default)]
    ours: BTreeMap<String, String>,
    /// Per paper row (parallel to `rows`), the range of one of the columns an our row must lie
    /// in to be compared with it: `{"k": [5, null]}` = "k ≥ 5"; null = unbounded.
    #[serde(default)]
    row_match: Vec<BTreeMap<String, [Option<f64>; 2]>>,
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

/// One of our rows: its label, its values in the reference's columns, and its values by column
/// name (for `row_match`, e.g. the `k` column).
struct OurRow {
    label: String,
    values: Vec<Option<Num>>,
    by_name: BTreeMap<String, f64>,
}

/// Our rows for a reference's columns: from a `compare.json` (matched by column name; its
/// optional `tolerances` are parallel to `rows` without the label), or from a table (columns
/// matched by header). The second list: labels of rows the reference's `ours` filter leaves out.
fn our_rows(r: &PaperRef, o: &Ours) -> (Vec<OurRow>, Vec<String>) {
    let pick = |names: &[String], label: String, vals: &dyn Fn(usize) -> Option<Num>| -> Option<OurRow> {
        let idx: Vec<Option<usize>> = r.columns.iter().map(|c| names.iter().position(|n| n.eq_ignore_ascii_case(c))).collect();
        let by_name = names.iter().enumerate().filter_map(|(i, n)| vals(i).map(|(v, _)| (n.to_lowercase(), v))).collect();
        idx.iter().any(Option::is_some).then(|| OurRow { label, values: idx.iter().map(|i| i.and_then(vals)).collect(), by_name })
    };
    let (mut kept, mut left) = (Vec::new(), Vec::new());
    if let Some(c) = &o.compare {
        for row in &c.rows {
            let label = format!("ours: {}", row.label);
            if !keeps(r, row) {
                left.push(label);
                continue;
            }
            kept.extend(pick(&c.columns, label, &|i| row.values.get(i).and_then(CompareValue::number).map(|v| (v, row.tolerance(i)))));
        }
        return (kept, left);
    }
    if let Some(t) = &o.table {
        let names: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
        for row in &t.rows {
            let label = format!("ours: {} ({})", row.label, o.node);
            if !r.ours.is_empty() {
                left.push(label);
                continue;
            }
            kept.extend(pick(&names, label, &|i| match row.cells.get(i) {
                Some(c @ RCell { value: CellValue::Number { value, .. }, .. }) => Some((*value, c.tolerance.clone())),
                _ => None,
            }));
        }
    }
    (kept, left)
}

/// Whether paper row `pi` applies to our row: every `row_match` range holds for our value of
/// that column (a missing value never matches).
/// Whether the reference's `ours` filter keeps one of our rows (its setting matches every
/// `k: v` of the filter).
fn keeps(r: &PaperRef, row: &CompareRow) -> bool {
    r.ours.iter().all(|(k, v)| row.setting.get(k) == Some(v))
}

fn applies(r: &PaperRef, pi: usize, ours: &OurRow) -> bool {
    r.row_match.get(pi).is_none_or(|m| {
        m.iter().all(|(col, [lo, hi])| {
            ours.by_name.get(&col.to_lowercase()).is_some_and(|&x| lo.is_none_or(|lo| x >= lo - 1e-9) && hi.is_none_or(|hi| x <= hi + 1e-9))
        })
    })
}

/// Where each of our numbers falls against the paper's values for the same quantity at the same
/// setting (`row_match`), and which of ours have no such paper value.
fn placements(r: &PaperRef, paper_rows: &[(String, Vec<Option<f64>>)], our: &[OurRow]) -> (Vec<String>, Vec<String>) {
    let matched: Vec<&String> = r.row_match.iter().flat_map(|m| m.keys()).collect();
    let (mut notes, mut none) = (Vec::new(), Vec::new());
    for (ci, col) in r.columns.iter().enumerate() {
        if matched.iter().any(|m| m.eq_ignore_ascii_case(col)) {
            continue;
        }
        for o in our {
            let Some((x, _)) = o.values.get(ci).cloned().flatten() else { continue };
            let pv: Vec<(&str, f64)> =
                paper_rows.iter().enumerate().filter(|(pi, _)| applies(r, *pi, o)).filter_map(|(_, (l, v))| Some((l.as_str(), v.get(ci).copied().flatten()?))).collect();
            if pv.is_empty() {
                none.push(format!("{col} of {}", o.label));
                continue;
            }
            let (lo, hi) = pv.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(_, x)| (a.min(x), b.max(x)));
            let at = if x < lo {
                "below"
            } else if x > hi {
                "above"
            } else if lo == hi {
                "equal to"
            } else {
                "inside"
            };
            let what = if pv.len() == 1 { format!("the paper's {} ({})", fmt(lo), pv[0].0) } else { format!("the paper's range {}–{} ({} rows)", fmt(lo), fmt(hi), pv.len()) };
            notes.push(format!("{col}: {} = {} is {at} {what}", o.label, fmt(x)));
        }
    }
    (notes, none)
}

/// Figure 2's claim in numbers: how much of the unablated score each masked condition keeps,
/// and for which conditions "dynamic ≪ static, random" holds (a condition keeps at least half of
/// the unablated score while dynamic masking keeps less than half).
fn grid_verdict(c: &Compare) -> String {
    let rows: Vec<(String, String, f64)> =
        c.rows.iter().filter_map(|r| Some((r.label.clone(), r.values.first()?.text()?.to_string(), r.values.get(1)?.number()?))).collect();
    let Some(base) = rows.iter().find(|r| r.1 == "none").map(|r| r.2) else { return String::new() };
    let metric = c.columns.last().map_or("the score", String::as_str);
    if base <= 0.0 {
        return floor_note(base, metric);
    }
    let Some(dynamic) = rows.iter().find(|r| r.1 == "dynamic").map(|r| r.2) else { return floor_note(base, metric) };
    let keep = |v: f64| v / base;
    let others: Vec<&(String, String, f64)> = rows.iter().filter(|r| r.1 != "none" && r.1 != "dynamic").collect();
    let (holds, fails): (Vec<_>, Vec<_>) = others.iter().partition(|r| keep(r.2) >= 0.5);
    let list = |v: &[&&(String, String, f64)]| v.iter().map(|r| format!("`{}` ({}, keeps {:.0}%)", r.0, r.1, 100.0 * keep(r.2))).collect::<Vec<_>>().join(", ");
    let mut t = floor_note(base, metric);
    t += &format!(" Dynamic masking keeps {:.0}% of the unablated score.", 100.0 * keep(dynamic));
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

/// Below this unablated score (on a 0–1 metric) an ablation has too little to remove for the
/// paper's contrast between masking conditions to be measurable.
const FLOOR: f64 = 0.2;

/// Said when the unablated model barely solves the task: no masking condition can then fall far,
/// so a run cannot show (or refute) that dynamic masking hurts more than the baselines.
fn floor_note(base: f64, metric: &str) -> String {
    if base >= FLOOR {
        return String::new();
    }
    format!(
        " The unablated model scores only {} ({metric}) here, below {FLOOR}: masking can take away at most that much, so this run cannot show whether masking the dynamic heads hurts more than masking others — the paper's effect needs a model that solves the task unmasked.",
        fmt(base)
    )
}

/// " Not compared (the paper's values are for `k: v` only): …." for what the `ours` filter left out.
fn not_compared(r: &PaperRef, left: &[String]) -> String {
    if left.is_empty() {
        return String::new();
    }
    format!(" Not compared (the paper's values are for {} only): {}.", r.ours.iter().map(|(k, v)| format!("`{k}: {v}`")).collect::<Vec<_>>().join(", "), left.join(", "))
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
        let mut skipped = Vec::new();
        for o in &mine {
            if let Some(c) = &o.compare {
                let c = &Compare { rows: c.rows.iter().filter(|row| keeps(r, row)).cloned().collect(), ..c.clone() };
                if c.rows.is_empty() {
                    skipped.push(format!("`{}`", o.node));
                    continue;
                }
                let value = |row: &CompareRow, i: usize| row.values.get(i).and_then(CompareValue::number).map(fmt).unwrap_or("—".into());
                if r.constructor == "ablation_grid" {
                    // (masking, mean) rows.
                    let rows: Vec<String> = c.rows.iter().map(|row| format!("`{}` ({}): {}", row.label, row.values.first().and_then(CompareValue::text).unwrap_or(""), value(row, 1))).collect();
                    text += &format!(" Ours ({}, `{}`): {}.", c.columns.last().map_or("", String::as_str), o.node, rows.join("; "));
                    text += &grid_verdict(c);
                } else {
                    // Every number of every row, by column.
                    let rows: Vec<String> = c
                        .rows
                        .iter()
                        .map(|row| {
                            // Whole numbers (counts, k) without decimals.
                            let show = |v: f64| if v.fract() == 0.0 && v.abs() < 1e9 { format!("{v:.0}") } else { fmt(v) };
                            let cols: Vec<String> = c.columns.iter().enumerate().filter_map(|(i, col)| row.values.get(i).and_then(CompareValue::number).map(|v| format!("{col} {}", show(v)))).collect();
                            format!("`{}`: {}", row.label, cols.join(", "))
                        })
                        .collect();
                    text += &format!(" Ours (`{}`): {}.", o.node, rows.join("; "));
                    if r.constructor == "progressive" {
                        // The score with nothing masked (k = 0), if the sweep has it.
                        let k0 = c.rows.iter().find(|row| row.values.first().and_then(CompareValue::number) == Some(0.0));
                        if let Some(base) = k0.and_then(|row| row.values.last()).and_then(CompareValue::number) {
                            text += &floor_note(base, c.columns.last().map_or("the score", String::as_str));
                        }
                    }
                }
            }
        }
        text += &not_compared(r, &skipped);
        return Ok(Comparison { table: None, text });
    }
    let paper_rows: Vec<(String, Vec<Option<f64>>)> =
        r.rows.iter().map(|row| (row[0].as_str().unwrap_or("").to_string(), row[1..].iter().map(Json::as_f64).collect())).collect();
    let (mut our, mut left) = (Vec::new(), Vec::new());
    for o in &mine {
        let (k, l) = our_rows(r, o);
        // A result left out as a whole is named once, by its node.
        if k.is_empty() && !l.is_empty() {
            left.push(format!("`{}`", o.node));
        } else {
            left.extend(l);
        }
        our.extend(k);
    }
    let cell = |v: Option<f64>| v.map(RCell::num).unwrap_or_else(RCell::empty);
    let mut rows: Vec<Row> = paper_rows.iter().map(|(l, v)| Row::new(format!("paper: {l}"), v.iter().map(|x| cell(*x)).collect())).collect();
    rows.extend(our.iter().map(|o| Row::new(o.label.clone(), o.values.iter().map(|x| x.as_ref().map(|(v, t)| RCell::num(*v).within(t.clone())).unwrap_or_else(RCell::empty)).collect())));
    let (notes, none) = placements(r, &paper_rows, &our);
    if !notes.is_empty() {
        text += &format!(" Where ours fall (each against the paper's value for the same quantity at the same setting): {}.", notes.join("; "));
    }
    if !none.is_empty() {
        text += &format!(" The paper states no value at the same setting for: {}.", none.join(", "));
    }
    text += &not_compared(r, &left);
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
            if *name == "table4" {
                continue; // Section 5, not transcribed yet.
            }
            let r = p.refs.get(*name).unwrap_or_else(|| panic!("paper.{name} missing"));
            assert!(r.rows.iter().all(|row| row.len() == r.columns.len() + 1), "paper.{name}: row widths");
        }
    }

    fn ours(constructor: &str, columns: &[&str], rows: Vec<CompareRow>) -> Ours {
        Ours { constructor: constructor.into(), node: "x".into(), table: None, compare: Some(Compare::new(columns, rows)) }
    }

    #[test]
    fn each_number_is_compared_only_with_the_papers_value_at_the_same_setting() {
        let row = |name: &str, k: f64, m: f64, acc: f64, metric: &str| CompareRow::new(name, vec![k.into(), m.into(), acc.into()]).at("metric", metric);
        let fig3 = ours(
            "progressive",
            &["k", "m_s (static compensated)", "UUID accuracy"],
            vec![row("k0", 0.0, 0.0, 0.8, "uuid_accuracy"), row("k1", 1.0, 2.05, 0.45, "uuid_accuracy"), row("k5", 5.0, 1.15, 0.0, "uuid_accuracy"), row("k5r", 5.0, 1.15, 0.1, "rouge_l")],
        );
        let c = compare("figure3", &[fig3]).unwrap();
        let t = &c.text;
        // k = 0 accuracy against the paper's k = 0 value only, not a 0–1 "range".
        assert!(t.contains("UUID accuracy: ours: k0 = 0.8000 is below the paper's 1.0000 (llama3.1-8b, k = 0)"), "{t}");
        // m_s at k = 5 against the paper's k ≥ 5 statements.
        assert!(t.contains("m_s (static compensated): ours: k5 = 1.1500 is below the paper's range 4.5000–7.0000 (2 rows)"), "{t}");
        // k = 1 has no paper value for either quantity; k = 5's accuracy neither (the paper states k = 0 and 20).
        for q in ["m_s (static compensated) of ours: k0", "m_s (static compensated) of ours: k1", "UUID accuracy of ours: k1", "UUID accuracy of ours: k5"] {
            assert!(t.contains(q), "{q} missing from: {t}");
        }
        assert!(!t.contains("ours: k1 = "), "{t}");
        // Another metric's rows are not compared at all, and say so.
        assert!(t.contains("Not compared (the paper's values are for `metric: uuid_accuracy` only): ours: k5r."), "{t}");
        // A result left out as a whole (e.g. the ROUGE-L version of the figure) is named by its node.
        let rouge = Ours { node: "fig3_rouge".into(), ..ours("progressive", &["k", "m_s (static compensated)", "UUID accuracy"], vec![row("k0", 0.0, 0.0, 0.8, "rouge_l")]) };
        let t = compare("figure3", &[rouge]).unwrap().text;
        assert!(t.contains("only): `fig3_rouge`."), "{t}");
        let grid = |node: &str, metric: &str| Ours { node: node.into(), ..ours("ablation_grid", &["masking", "mean"], vec![CompareRow::new("base", vec![CompareValue::Text("none".into()), 0.9.into()]).at("metric", metric)]) };
        let t = compare("figure2", &[grid("fig2", "uuid_accuracy"), grid("fig2_rouge", "rouge_l")]).unwrap().text;
        assert!(t.contains("`fig2`): `base` (none): 0.9000") && t.contains("only): `fig2_rouge`.") && !t.contains("`fig2_rouge`):"), "{t}");
        let table = c.table.unwrap();
        assert!(!table.rows.iter().any(|r| r.label.contains("k5r")));

        // Table 2 is the MLP probe: the baselines are not compared with it.
        let probe = ours(
            "probe",
            &["F1", "Precision", "Recall", "AUPRC"],
            vec![
                CompareRow::new("mlp", vec![0.81.into(), 0.8.into(), 0.82.into(), 0.9.into()]).at("predictor", "mlp"),
                CompareRow::new("static", vec![0.35.into(), 0.2.into(), 0.97.into(), 0.2.into()]).at("predictor", "static_set"),
            ],
        );
        let t = compare("table2", &[probe]).unwrap().text;
        assert!(t.contains("F1: ours: mlp = 0.8100 is inside the paper's range 0.8038–0.8566 (5 rows)"), "{t}");
        assert!(t.contains("Not compared") && t.contains("ours: static") && !t.contains("ours: static = "), "{t}");
    }

    #[test]
    fn a_model_that_barely_solves_the_task_is_said_to_show_nothing_about_masking() {
        let grid = |base: f64, dynamic: f64, random: f64| {
            let row = |l: &str, m: &str, v: f64| CompareRow::new(l, vec![CompareValue::Text(m.into()), v.into()]).at("metric", "f1");
            ours("ablation_grid", &["masking", "mean F1"], vec![row("base", "none", base), row("dyn", "dynamic", dynamic), row("rnd", "10 random heads", random)])
        };
        // F1 0.04 unmasked: every condition falls to 0, which says nothing about dynamic heads.
        let t = compare("figure6", &[grid(0.04, 0.0, 0.0)]).unwrap().text;
        assert!(t.contains("The unablated model scores only 0.0400 (mean F1) here, below 0.2") && t.contains("cannot show"), "{t}");
        let t = compare("figure6", &[grid(0.0, 0.0, 0.0)]).unwrap().text;
        assert!(t.contains("scores only 0.0000"), "{t}");
        // A model that solves the task gets the verdict alone.
        let t = compare("figure6", &[grid(0.8, 0.1, 0.7)]).unwrap().text;
        assert!(!t.contains("scores only") && t.contains("holds against `rnd`"), "{t}");
        // Fig. 7: the k = 0 row's score.
        let row = |l: &str, k: f64, v: f64| CompareRow::new(l, vec![k.into(), 0.0.into(), v.into()]).at("metric", "f1");
        let sweep = |k0: f64| ours("progressive", &["k", "m_s (static compensated)", "F1"], vec![row("k0", 0.0, k0), row("k5", 5.0, 0.0)]);
        assert!(compare("figure7", &[sweep(0.05)]).unwrap().text.contains("scores only 0.0500 (F1)"));
        assert!(!compare("figure7", &[sweep(0.6)]).unwrap().text.contains("scores only"));
    }
}
