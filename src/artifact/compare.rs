//! `compare.json`: the numbers of a table or figure that a report puts beside the paper's
//! (`compare: [paper.fig2, …]`), by column name, each with the reproduction tolerance its op
//! declares. Written by the ops whose results the paper reports (probe, ablation grid,
//! progressive ablation, CCA) and read only by `ops/report/paper.rs`.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cache::Artifact;
use crate::report::Tolerance;

/// The compare format. Part of the key of every op that writes or reads it (through this file's
/// hash) and of the file itself.
pub const COMPARE_FORMAT: u32 = 1;

pub const FILE: &str = "compare.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compare {
    pub format: u32,
    /// Column names, matched (case-insensitively) with the paper's columns.
    pub columns: Vec<String>,
    pub rows: Vec<CompareRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareRow {
    pub label: String,
    /// One value per column.
    pub values: Vec<CompareValue>,
    /// Per column, what a rerun must match (exact where omitted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerances: Vec<Tolerance>,
    /// What this row measures beyond its columns (`predictor: mlp`, `fit: in_sample`, `metric:
    /// uuid_accuracy`): a paper reference compares only rows whose setting matches its own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub setting: BTreeMap<String, String>,
}

/// A number, a label (e.g. the kind of masking of an ablation-grid row), or nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CompareValue {
    Number(f64),
    Text(String),
    Missing,
}

impl CompareValue {
    pub fn number(&self) -> Option<f64> {
        match self {
            CompareValue::Number(v) => Some(*v),
            _ => None,
        }
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            CompareValue::Text(t) => Some(t),
            _ => None,
        }
    }
}

impl From<f64> for CompareValue {
    fn from(v: f64) -> Self {
        CompareValue::Number(v)
    }
}

impl From<Option<f64>> for CompareValue {
    fn from(v: Option<f64>) -> Self {
        v.map_or(CompareValue::Missing, CompareValue::Number)
    }
}

impl CompareRow {
    pub fn new(label: impl Into<String>, values: Vec<CompareValue>) -> Self {
        CompareRow { label: label.into(), values, tolerances: vec![], setting: BTreeMap::new() }
    }

    /// Adds `key: value` to the row's setting.
    pub fn at(mut self, key: &str, value: &str) -> Self {
        self.setting.insert(key.into(), value.into());
        self
    }

    pub fn within(mut self, tolerances: Vec<Tolerance>) -> Self {
        self.tolerances = tolerances;
        self
    }

    /// The tolerance of column `i`.
    pub fn tolerance(&self, i: usize) -> Tolerance {
        self.tolerances.get(i).cloned().unwrap_or_default()
    }
}

impl Compare {
    pub fn new(columns: &[&str], rows: Vec<CompareRow>) -> Self {
        Compare { format: COMPARE_FORMAT, columns: columns.iter().map(|c| c.to_string()).collect(), rows }
    }

    /// The artifact file.
    pub fn file(&self) -> (String, Vec<u8>) {
        (FILE.into(), serde_json::to_vec_pretty(self).expect("numbers, strings and tolerances always serialise"))
    }

    /// The `compare.json` of an artifact, `None` when its op writes none.
    pub fn read(a: &Artifact) -> Result<Option<Self>, String> {
        if !a.manifest.files.iter().any(|f| f.name == FILE) {
            return Ok(None);
        }
        let bytes = a.read(FILE).map_err(|e| e.to_string())?;
        let c: Compare = serde_json::from_slice(&bytes).map_err(|e| format!("{FILE}: {e}"))?;
        if c.format != COMPARE_FORMAT {
            return Err(format!("{FILE} has format {}, this rhx reads format {COMPARE_FORMAT}: recompute it (`rhx run --recompute`)", c.format));
        }
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_numbers_labels_and_gaps_round_trip() {
        let c = Compare::new(
            &["masking", "mean ROUGE-L"],
            vec![
                CompareRow::new("dyn", vec![CompareValue::Text("dynamic".into()), 0.25.into()]).at("metric", "rouge_l"),
                CompareRow::new("none", vec![CompareValue::Text("none".into()), None.into()]).within(vec![Tolerance::Exact, Tolerance::Float { abs: 1e-6, why: "x".into() }]),
            ],
        );
        let back: Compare = serde_json::from_slice(&c.file().1).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.rows[0].values[1].number(), Some(0.25));
        assert_eq!(back.rows[0].values[0].text(), Some("dynamic"));
        assert_eq!(back.rows[1].values[1], CompareValue::Missing);
        assert_eq!(back.rows[1].tolerance(1), Tolerance::Float { abs: 1e-6, why: "x".into() });
        assert_eq!(back.rows[0].tolerance(1), Tolerance::Exact);
        assert_eq!(back.rows[0].setting["metric"], "rouge_l");
        assert!(back.rows[1].setting.is_empty());
    }
}
