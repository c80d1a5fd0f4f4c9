//! The reproduction certificate: a rerun's report against the original, number by number, each
//! within the [`Tolerance`] the op that computed it declared (a `tolerance` field applies to
//! every number below it in `report.json`). Prose is compared word for word; a number in it may
//! differ only as that same number differs, within its tolerance, in a table or figure.
//! Provenance (times, paths, command line) is not compared. Used by `rhx reproduce` and by the
//! golden tests, so both mean the same thing by "reproduced".
use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value as Json;

use super::model::{Report, Tolerance};

/// What became of one number or one text.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The same bits (or the same text).
    Identical,
    /// Differs by `delta`, inside the declared tolerance (for a text: only numbers restated
    /// from tables or figures differ, each within its tolerance).
    Within { delta: f64 },
    /// Differs by more than the tolerance allows, or in structure.
    Different { delta: f64 },
    /// Present in the original, absent from the rerun (or the other way round).
    Missing,
}

/// One compared value.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Readable place, e.g. `probe / MLP probe [1152, 576, 576] / F1`.
    pub path: String,
    pub original: String,
    pub rerun: String,
    pub tolerance: Tolerance,
    pub verdict: Verdict,
}

/// Every number and text of a report, compared.
#[derive(Debug, Clone, Default)]
pub struct Certificate {
    pub numbers: Vec<Entry>,
    pub texts: Vec<Entry>,
}

impl Certificate {
    pub fn count(&self, f: impl Fn(&Verdict) -> bool) -> usize {
        self.numbers.iter().chain(&self.texts).filter(|e| f(&e.verdict)).count()
    }
    /// Whether everything reproduced (identical or within tolerance).
    pub fn passed(&self) -> bool {
        self.count(|v| matches!(v, Verdict::Different { .. } | Verdict::Missing)) == 0
    }
    /// The entries that are not bit-identical.
    pub fn not_identical(&self) -> impl Iterator<Item = &Entry> {
        self.numbers.iter().chain(&self.texts).filter(|e| e.verdict != Verdict::Identical)
    }
    /// "680 numbers: 671 bit-identical, 9 within tolerance (largest |Δ| 2.1e-8), 0 different; 31 texts: …".
    pub fn summary(&self) -> String {
        let part = |entries: &[Entry], what: &str| {
            let same = entries.iter().filter(|e| e.verdict == Verdict::Identical).count();
            let within: Vec<f64> = entries.iter().filter_map(|e| if let Verdict::Within { delta } = e.verdict { Some(delta) } else { None }).collect();
            let bad = entries.len() - same - within.len();
            let largest = within.iter().copied().fold(0.0, f64::max);
            let within_s = if within.is_empty() { "0 within tolerance".to_string() } else { format!("{} within tolerance (largest |Δ| {largest:.2e})", within.len()) };
            format!("{} {what}: {same} bit-identical, {within_s}, {bad} different", entries.len())
        };
        format!("{}; {}", part(&self.numbers, "numbers"), part(&self.texts, "texts"))
    }
    /// Markdown: the summary, then a row per entry (`all`) or per entry that is not identical.
    pub fn markdown(&self, all: bool) -> String {
        let mut out = self.summary() + "\n";
        let rows: Vec<&Entry> = self.numbers.iter().chain(&self.texts).filter(|e| all || e.verdict != Verdict::Identical).collect();
        if !rows.is_empty() {
            out += "\n| value | original | rerun | tolerance | result |\n|---|---:|---:|---|---|\n";
        }
        for e in rows {
            let result = match e.verdict {
                Verdict::Identical => "bit-identical".to_string(),
                Verdict::Within { delta } => format!("within (|Δ| {delta:.2e})"),
                Verdict::Different { delta } if delta.is_finite() => format!("**DIFFERENT** (|Δ| {delta:.2e})"),
                Verdict::Different { .. } => "**DIFFERENT**".to_string(),
                Verdict::Missing => "**MISSING**".to_string(),
            };
            let cell = |s: &str| clip(&s.replace('|', "\\|").replace('\n', " "), 120);
            let _ = writeln!(out, "| {} | {} | {} | {} | {result} |", cell(&e.path), cell(&e.original), cell(&e.rerun), e.tolerance.describe());
        }
        out
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

/// Compares `rerun` with `original` (provenance and the trace viewer's data aside: the viewer
/// shows the traces the numbers come from, it is not a result, and reports made before it
/// existed have none).
pub fn certify(original: &Report, rerun: &Report) -> Certificate {
    let strip = |r: &Report| {
        let mut v = serde_json::to_value(r).unwrap_or(Json::Null);
        if let Some(o) = v.as_object_mut() {
            o.remove("provenance");
            o.remove("traces");
        }
        v
    };
    let mut w = Walk::default();
    w.walk(&strip(original), &strip(rerun), "report", &Tolerance::Exact, &[]);
    // Prose: judged once every number is known.
    for (path, a, b) in std::mem::take(&mut w.strings) {
        let verdict = judge_text(&a, &b, &w.pairs);
        w.cert.texts.push(Entry { path, original: a, rerun: b, tolerance: Tolerance::Exact, verdict });
    }
    w.cert
}

#[derive(Default)]
struct Walk {
    cert: Certificate,
    /// (original, rerun) of every number that differs within its tolerance.
    pairs: Vec<(f64, f64)>,
    /// Strings to judge after the numbers: (path, original, rerun).
    strings: Vec<(String, String, String)>,
}

impl Walk {
    fn walk(&mut self, a: &Json, b: &Json, path: &str, tol: &Tolerance, columns: &[String]) {
        match (a, b) {
            (Json::Object(oa), Json::Object(ob)) => {
                // The original's declaration is what the rerun is held to.
                let tol = oa.get("tolerance").and_then(|t| serde_json::from_value::<Tolerance>(t.clone()).ok()).unwrap_or_else(|| tol.clone());
                let cols: Vec<String> = match oa.get("columns").and_then(Json::as_array) {
                    Some(c) => c.iter().map(|c| c["name"].as_str().or_else(|| c.as_str()).unwrap_or("?").to_string()).collect(),
                    None => columns.to_vec(),
                };
                let keys: BTreeSet<&String> = oa.keys().chain(ob.keys()).collect();
                for k in keys {
                    if k == "tolerance" {
                        continue;
                    }
                    let p = format!("{path}.{k}");
                    match (oa.get(k), ob.get(k)) {
                        (Some(x), Some(y)) => self.walk(x, y, &p, &tol, &cols),
                        (x, y) => self.missing(p, x, y, &tol),
                    }
                }
            }
            (Json::Array(xa), Json::Array(xb)) => {
                for i in 0..xa.len().max(xb.len()) {
                    let label = xa.get(i).or(xb.get(i)).map(|v| element_label(v, i, path, columns)).unwrap_or_else(|| i.to_string());
                    let p = format!("{path}[{label}]");
                    match (xa.get(i), xb.get(i)) {
                        (Some(x), Some(y)) => self.walk(x, y, &p, tol, columns),
                        (x, y) => self.missing(p, x, y, tol),
                    }
                }
            }
            (Json::Number(x), Json::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                let delta = (x - y).abs();
                let verdict = if x.to_bits() == y.to_bits() {
                    Verdict::Identical
                } else if delta <= tol.allowed() {
                    self.pairs.push((x, y));
                    Verdict::Within { delta }
                } else {
                    Verdict::Different { delta }
                };
                self.cert.numbers.push(Entry { path: path.to_string(), original: x.to_string(), rerun: y.to_string(), tolerance: tol.clone(), verdict });
            }
            (Json::String(x), Json::String(y)) => {
                if x == y {
                    self.cert.texts.push(Entry { path: path.to_string(), original: x.clone(), rerun: y.clone(), tolerance: Tolerance::Exact, verdict: Verdict::Identical });
                } else {
                    self.strings.push((path.to_string(), x.clone(), y.clone()));
                }
            }
            (x, y) if x == y => {}
            (x, y) => {
                // null (NaN) against a number, or a change of type.
                let e = Entry { path: path.to_string(), original: x.to_string(), rerun: y.to_string(), tolerance: tol.clone(), verdict: Verdict::Different { delta: f64::NAN } };
                if x.is_number() || y.is_number() {
                    self.cert.numbers.push(e);
                } else {
                    self.cert.texts.push(e);
                }
            }
        }
    }

    fn missing(&mut self, path: String, a: Option<&Json>, b: Option<&Json>, tol: &Tolerance) {
        let show = |v: Option<&Json>| v.map_or("(absent)".to_string(), |v| clip(&v.to_string(), 80));
        self.cert.texts.push(Entry { path, original: show(a), rerun: show(b), tolerance: tol.clone(), verdict: Verdict::Missing });
    }
}

/// A readable name for the i-th element of an array: its id, label or name, or a column name
/// for the cells of a table row.
fn element_label(v: &Json, i: usize, path: &str, columns: &[String]) -> String {
    if path.ends_with(".cells") {
        if let Some(c) = columns.get(i) {
            return c.clone();
        }
    }
    for k in ["id", "label", "name", "title"] {
        if let Some(s) = v.get(k).and_then(Json::as_str) {
            return clip(s, 60);
        }
    }
    i.to_string()
}

/// Splits a text into words and number tokens (`-?digits[.digits]`).
fn tokens(s: &str) -> Vec<(bool, &str)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut start) = (0, 0);
    while i < b.len() {
        let neg = b[i] == b'-' && i + 1 < b.len() && b[i + 1].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
        if b[i].is_ascii_digit() || neg {
            if start < i {
                out.push((false, &s[start..i]));
            }
            let j0 = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_digit() || (b[i] == b'.' && i + 1 < b.len() && b[i + 1].is_ascii_digit())) {
                i += 1;
            }
            out.push((true, &s[j0..i]));
            start = i;
        } else {
            i += 1;
        }
    }
    if start < b.len() {
        out.push((false, &s[start..]));
    }
    out
}

/// Same words; every differing number token is a number that differs within its tolerance
/// elsewhere, printed at the token's precision.
fn judge_text(a: &str, b: &str, pairs: &[(f64, f64)]) -> Verdict {
    let (ta, tb) = (tokens(a), tokens(b));
    if ta.len() != tb.len() {
        return Verdict::Different { delta: f64::NAN };
    }
    let mut largest: f64 = 0.0;
    for ((na, sa), (nb, sb)) in ta.iter().zip(&tb) {
        if sa == sb {
            continue;
        }
        if !(*na && *nb) {
            return Verdict::Different { delta: f64::NAN };
        }
        let decimals = sa.split_once('.').map_or(0, |(_, d)| d.len());
        if sb.split_once('.').map_or(0, |(_, d)| d.len()) != decimals {
            return Verdict::Different { delta: f64::NAN };
        }
        let restated = pairs.iter().find(|(x, y)| format!("{x:.decimals$}") == *sa && format!("{y:.decimals$}") == *sb);
        match restated {
            Some((x, y)) => largest = largest.max((x - y).abs()),
            None => return Verdict::Different { delta: f64::NAN },
        }
    }
    Verdict::Within { delta: largest }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Cell, Column, Provenance, Row, Section, Table};

    fn report(f1: f64, auprc: f64, count: f64, text: &str) -> Report {
        let tol = Tolerance::float(1e-3, "test");
        Report {
            title: "t".into(),
            subtitle: None,
            sections: vec![Section {
                title: "s".into(),
                text: text.into(),
                tables: vec![Table {
                    id: "probe".into(),
                    caption: "c".into(),
                    columns: vec![Column::new("F1"), Column::new("AUPRC"), Column::new("count")],
                    rows: vec![Row::new("mlp", vec![Cell::num(f1).within(tol.clone()), Cell::num(auprc).within(tol), Cell::num(count)])],
                    ..Default::default()
                }],
                figures: vec![],
            }],
            provenance: Provenance::default(),
            traces: vec![],
        }
    }

    #[test]
    fn identical_within_and_different_are_told_apart() {
        let a = report(0.7667, 0.8, 12.0, "F1 = 0.7667, 12 rows");
        let same = certify(&a, &a);
        assert!(same.passed());
        assert_eq!(same.count(|v| *v == Verdict::Identical), same.numbers.len() + same.texts.len());

        // F1 moves inside its tolerance; the prose restates it at 4 decimals.
        let b = report(0.7671, 0.8, 12.0, "F1 = 0.7671, 12 rows");
        let c = certify(&a, &b);
        assert!(c.passed(), "{}", c.markdown(false));
        let f1 = c.numbers.iter().find(|e| e.path.ends_with("[F1].value")).unwrap();
        assert!(matches!(f1.verdict, Verdict::Within { delta } if (delta - 4e-4).abs() < 1e-12), "{f1:?}");
        assert_eq!(f1.path, "report.sections[s].tables[probe].rows[mlp].cells[F1].value");
        assert!(c.texts.iter().any(|e| matches!(e.verdict, Verdict::Within { .. })));

        // An exact number that moves, a number outside its tolerance, a prose number that no
        // table justifies: each is different and named.
        let d = certify(&a, &report(0.7667, 0.8, 13.0, "F1 = 0.7667, 12 rows"));
        assert!(!d.passed());
        assert!(d.not_identical().any(|e| e.path.ends_with("[count].value") && matches!(e.verdict, Verdict::Different { .. })));
        let e = certify(&a, &report(0.78, 0.8, 12.0, "F1 = 0.7800, 12 rows"));
        assert!(!e.passed());
        let f = certify(&a, &report(0.7667, 0.8, 12.0, "F1 = 0.7667, 13 rows"));
        assert!(!f.passed(), "{}", f.markdown(false));
        let g = certify(&a, &report(0.7667, 0.8, 12.0, "F1 = 0.7667, twelve rows"));
        assert!(!g.passed());
    }

    #[test]
    fn number_tokens() {
        let t: Vec<&str> = tokens("k = 0: top-1 = 0.8813, L12.H3 -0.5").into_iter().filter(|t| t.0).map(|t| t.1).collect();
        assert_eq!(t, ["0", "1", "0.8813", "12", "3", "-0.5"]);
    }
}
