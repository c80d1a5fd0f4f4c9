//! `table … = rag_table(…)`: Table 4 — EM and F1 of `rag(…)` traces (one strategy each) on the
//! same questions, with how often and how much they retrieved, and each strategy's paired
//! bootstrap interval of its F1 and EM difference from a reference strategy (the spread over
//! questions that says whether a gap between strategies is more than noise).
use serde_json::json;

use crate::analysis::qa::{cut_at_markers, extract_answer, qa_score};
use crate::artifact::compare::{Compare, CompareRow};
use crate::lang::schema::{decl, int_range, list, FuncSpec};
use crate::lang::Kind;
use crate::ops::args::*;
use crate::ops::inputs::*;
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::report::{Cell as RCell, Column, Row, Table, Tolerance};
use crate::run::Ctx;
use crate::support::pyrandom::PyRandom;

pub const OP: OpDef = OpDef { kind: Kind::Table, name: "rag_table", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new("rag_table", "Table 4: EM and F1 per `rag` strategy, retrievals per question, the visible share of the context, and paired bootstrap intervals of each strategy's difference from a reference strategy.")
        .pos("traces", list(decl(Trace)), "`rag(…)` traces of the same questions, one per strategy")
        .opt("versus", decl(Trace), "the reference of the differences (default: the first trace)")
        .def("resamples", int_range(100, 1_000_000), "2000", "bootstrap resamples of the questions (percentile 95% interval)")
        .seed("seed of the bootstrap")
}

/// Below this best F1 (0–1) the strategies have too little to separate (as `paper.rs`'s floor
/// for the masking contrasts of Sections 3–4).
const FLOOR: f64 = 0.2;

/// Table 4's column names for a strategy (`None`: not one of the paper's five).
fn paper_name(strategy: &str) -> Option<&'static str> {
    Some(match strategy {
        "dynamic" => "Dynamic",
        "static" => "Static",
        "dynamic_random" => "Dynamic Random",
        "fixed_random" => "Fixed Random",
        "hidden" => "w/o RAG",
        _ => return None,
    })
}

/// Per question: (EM, F1, retrievals, mean visible fraction of its retrievals or None).
type Scores = Vec<(String, f64, f64, usize, Option<f64>)>;

fn scores_of(lines: &[crate::artifact::trace::TraceLine]) -> Scores {
    lines
        .iter()
        .map(|l| {
            let gold = l.answer.as_deref().unwrap_or_default();
            let qa = extract_answer(cut_at_markers(&l.text)).map(|p| qa_score(&p, gold)).unwrap_or_default();
            let r = l.meta["rag"]["retrievals"].as_array().cloned().unwrap_or_default();
            let vis: Vec<f64> = r.iter().filter_map(|x| x["visible_fraction"].as_f64()).collect();
            let mean_vis = (!vis.is_empty()).then(|| vis.iter().sum::<f64>() / vis.len() as f64);
            (l.id.clone(), qa.em, qa.f1, r.len(), mean_vis)
        })
        .collect()
}

/// The paired percentile bootstrap 95% interval of mean(a − b) over questions.
fn bootstrap(diff: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    let n = diff.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = PyRandom::new(seed);
    let mut means: Vec<f64> = (0..resamples).map(|_| (0..n).map(|_| diff[(rng.getrandbits_128() % n as u128) as usize]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    (at(0.025), at(0.975))
}

fn mean(v: impl Iterator<Item = f64>) -> (f64, f64, u64) {
    let v: Vec<f64> = v.collect();
    let n = v.len();
    let m = v.iter().sum::<f64>() / n.max(1) as f64;
    let var = if n > 1 { v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
    (m, var.sqrt(), n as u64)
}

fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let names: Vec<&str> = req_list(n, "traces")?.iter().filter_map(ref_name).collect();
    let versus = n.arg("versus").and_then(ref_name).or(names.first().copied()).ok_or("no traces")?;
    let resamples = req_int(n, "resamples")? as usize;
    let seed = seed(n)?;
    let mut runs = Vec::new();
    for name in names.iter().copied().chain((!names.contains(&versus)).then_some(versus)) {
        let a = inputs.get(name).ok_or_else(|| format!("`{name}` not computed"))?;
        let info = trace_info(a)?;
        let strategy = info.intervention["strategy"].as_str().ok_or_else(|| format!("`{name}` is not a `rag(…)` trace: rag_table compares the strategies of Section 5's loop"))?.to_string();
        runs.push((name, strategy, scores_of(&trace_lines(a)?), info.model));
    }
    let reference = runs.iter().find(|r| r.0 == versus).expect("added above");
    let ref_ids: Vec<&String> = reference.2.iter().map(|s| &s.0).collect();
    for r in &runs {
        if r.2.iter().map(|s| &s.0).collect::<Vec<_>>() != ref_ids {
            return Err(format!("`{}` and `{versus}` are not runs of the same questions in the same order: the differences are paired by question", r.0));
        }
    }
    let exact = || Tolerance::Exact;
    let mut rows = Vec::new();
    let mut compare_cols = Vec::new();
    let mut compare_vals = Vec::new();
    for (name, strategy, s, _) in runs.iter().filter(|r| names.contains(&r.0)) {
        let em = mean(s.iter().map(|x| x.1));
        let f1 = mean(s.iter().map(|x| x.2));
        let retr = mean(s.iter().map(|x| x.3 as f64));
        let vis: Vec<f64> = s.iter().filter_map(|x| x.4).collect();
        let vis_cell = if vis.is_empty() { RCell::text("—") } else { RCell::num(vis.iter().sum::<f64>() / vis.len() as f64).within(exact()) };
        let d = |i: usize| -> Vec<f64> { s.iter().zip(&reference.2).map(|(a, b)| if i == 1 { a.1 - b.1 } else { a.2 - b.2 }).collect() };
        let ci = |i: usize| -> RCell {
            if *name == versus {
                return RCell::text("reference");
            }
            let dv = d(i);
            let m = dv.iter().sum::<f64>() / dv.len().max(1) as f64;
            let (lo, hi) = bootstrap(&dv, resamples, seed);
            RCell::text(format!("{m:+.3} [{lo:+.3}, {hi:+.3}]"))
        };
        rows.push(Row::new(
            format!("{name} ({strategy})"),
            vec![RCell::num_pm(em.0, em.1, em.2).within(exact()), RCell::num_pm(f1.0, f1.1, f1.2).within(exact()), RCell::num(retr.0).within(exact()), vis_cell, ci(1), ci(2)],
        ));
        if let Some(p) = paper_name(strategy) {
            compare_cols.push(format!("{p} EM"));
            compare_vals.push(em.0.into());
            compare_cols.push(format!("{p} F1"));
            compare_vals.push(f1.0.into());
        }
    }
    let questions = reference.2.len();
    // What this model can show at all: the best F1 of any row (the full-context row is the
    // ceiling when present). Below the floor, no retrieval strategy has room to differ.
    let best = runs.iter().filter(|r| names.contains(&r.0)).map(|r| (r.0, r.2.iter().map(|x| x.2).sum::<f64>() / r.2.len().max(1) as f64)).fold(("", f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
    let floor = if best.1 < FLOOR {
        format!(
            " The best strategy here (`{}`) reaches F1 {:.3}, below {FLOOR}: the model barely answers these questions even when it can read what it needs, so this run cannot show whether dynamic heads retrieve better than static or random ones — Table 4's contrast needs a model that answers with the context (the paper's models reach F1 0.27–0.56 with dynamic heads).",
            best.0, best.1
        )
    } else {
        String::new()
    };
    let table = Table {
        id: n.name.clone(),
        caption: format!(
            "Paper Table 4 on {questions} questions with `{}`: EM and F1 (HotpotQA's official normalisation, the answer after DRAGIN's \"the answer is\"), mean ± std over questions; retrievals per question; the visible share of the context during a retrieval (mean over retrievals); each strategy's difference from `{versus}` in EM and F1, mean over questions [paired percentile bootstrap 95% interval, {resamples} resamples of the questions]. An interval that holds 0 does not separate the two strategies on these questions.{floor}",
            reference.3
        ),
        row_header: "Strategy".into(),
        columns: vec![
            Column::new("EM").precision(3),
            Column::new("F1").precision(3),
            Column::new("Retrievals / question").precision(2),
            Column::new("Visible context").precision(3),
            Column::new(format!("ΔEM vs {versus} [95% CI]")),
            Column::new(format!("ΔF1 vs {versus} [95% CI]")),
        ],
        rows,
        ..Default::default()
    };
    let compare = Compare::new(&compare_cols.iter().map(String::as_str).collect::<Vec<_>>(), vec![CompareRow::new(format!("{} (this run, {questions} questions)", reference.3), compare_vals)]);
    let data = json!({"versus": versus, "resamples": resamples, "questions": questions});
    Ok(vec![("table.json".into(), serde_json::to_vec_pretty(&table).unwrap()), ("rag_table.json".into(), serde_json::to_vec_pretty(&data).unwrap()), compare.file()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_interval_brackets_the_mean_difference_and_is_seeded() {
        let d = [0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        let (lo, hi) = bootstrap(&d, 2000, 0);
        assert!(lo < 0.4 && 0.4 < hi && lo >= 0.0 && hi <= 1.0, "{lo} {hi}");
        assert_eq!(bootstrap(&d, 2000, 0), (lo, hi));
        // No spread, no interval width.
        assert_eq!(bootstrap(&[0.5; 8], 500, 3), (0.5, 0.5));
    }
}
