//! The report's data model: what an experiment hands to the report stage, and what
//! `report.json` holds (so `rhx reproduce` and other plotting tools can read it back).
//!
//! Numbers are `f64`. `NaN` means "missing" (a heatmap cell with no valid sample, a point
//! that was not measured); JSON has no NaN, so non-finite numbers are written as `null` and
//! read back as `NaN` (see [`nan_as_null`]).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ReportError;

/// One experiment's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<String>,
    #[serde(default)]
    pub sections: Vec<Section>,
    #[serde(default)]
    pub provenance: Provenance,
    /// Traces shown in the HTML report's trace viewer (a bounded sample of each; empty: no viewer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traces: Vec<super::trace_view::TraceView>,
}

/// A section: Markdown text, then its tables, then its figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub title: String,
    /// Markdown (CommonMark). Raw HTML in it is shown as text, not interpreted.
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub tables: Vec<Table>,
    #[serde(default)]
    pub figures: Vec<Figure>,
}

/// A table of measured values, optionally with reference values (e.g. the paper's) beside them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// File-name-safe id (`[A-Za-z0-9_-]+`), unique in the report: `tables/<id>.csv`.
    pub id: String,
    pub caption: String,
    /// Header of the row-label column (e.g. "Model").
    #[serde(default)]
    pub row_header: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    /// Header of the reference sub-column, e.g. "paper" (the default).
    #[serde(default = "default_reference_label")]
    pub reference_label: String,
    /// What `±` means, e.g. "std over 5 runs"; shown under the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_label: Option<String>,
    /// Free text shown under the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn default_reference_label() -> String {
    "paper".to_string()
}

/// A value column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Decimal places shown (default [`DEFAULT_PRECISION`]); CSV files keep full precision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<usize>,
}

/// Decimal places when a column does not say.
pub const DEFAULT_PRECISION: usize = 4;

impl Column {
    pub fn new(name: impl Into<String>) -> Self {
        Column {
            name: name.into(),
            unit: None,
            precision: None,
        }
    }
    pub fn unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }
    pub fn precision(mut self, p: usize) -> Self {
        self.precision = Some(p);
        self
    }
    pub fn decimals(&self) -> usize {
        self.precision.unwrap_or(DEFAULT_PRECISION)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub label: String,
    pub cells: Vec<Cell>,
}

impl Row {
    pub fn new(label: impl Into<String>, cells: Vec<Cell>) -> Self {
        Row {
            label: label.into(),
            cells,
        }
    }
}

/// One table cell: what we measured, and optionally what a reference says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    #[serde(flatten)]
    pub value: CellValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// What a rerun on another machine must match (omitted: bit for bit).
    #[serde(default, skip_serializing_if = "Tolerance::is_exact")]
    pub tolerance: Tolerance,
}

/// How closely a rerun must match a number for `rhx reproduce` and the golden tests to call it
/// reproduced. The op that computes the number declares it: exact for counts and everything
/// derived from traces, a float tolerance where the number depends on a CPU's floating-point
/// path (hidden states differ by ~1e-7 between CPU vendors), a statistical one for trained
/// probes reported as mean ± spread over seeds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Tolerance {
    /// Bit for bit.
    #[default]
    Exact,
    /// |rerun − original| ≤ `abs`; `why` says what moves it.
    Float { abs: f64, why: String },
    /// A mean over `seeds` trainings: the rerun's mean must lie within ± `abs` (the spread
    /// stated beside the number, or one decision's worth when the spread is smaller).
    Statistical { abs: f64, seeds: u64 },
}

impl Tolerance {
    pub fn is_exact(&self) -> bool {
        matches!(self, Tolerance::Exact)
    }
    pub fn float(abs: f64, why: impl Into<String>) -> Self {
        Tolerance::Float { abs, why: why.into() }
    }
    /// The largest |Δ| that passes (0 for exact).
    pub fn allowed(&self) -> f64 {
        match self {
            Tolerance::Exact => 0.0,
            Tolerance::Float { abs, .. } | Tolerance::Statistical { abs, .. } => *abs,
        }
    }
    /// One line for a certificate: "exact", "±1e-6 (float: …)", "±0.012 (3 seeds)".
    pub fn describe(&self) -> String {
        match self {
            Tolerance::Exact => "exact".into(),
            Tolerance::Float { abs, why } => format!("±{abs:.1e} ({why})"),
            Tolerance::Statistical { abs, seeds } => format!("±{abs:.3} (mean of {seeds} seeds)"),
        }
    }
}

/// The measured part of a cell.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CellValue {
    /// Nothing measured (shown as an em dash).
    #[default]
    Empty,
    Number {
        #[serde(with = "nan_as_null")]
        value: f64,
        /// Spread shown as `value ± spread` (its meaning is the table's `spread_label`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spread: Option<f64>,
        /// Number of samples behind the value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        n: Option<u64>,
    },
    Text {
        text: String,
    },
}

/// A reference value (e.g. the paper's) shown beside ours with the difference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    #[serde(with = "nan_as_null")]
    pub value: f64,
    /// Where it comes from, e.g. "paper Table 1".
    pub source: String,
    /// When set, |ours − reference| above it is flagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
}

impl Cell {
    pub fn empty() -> Self {
        Cell::default()
    }
    pub fn num(value: f64) -> Self {
        Cell {
            value: CellValue::Number {
                value,
                spread: None,
                n: None,
            },
            reference: None,
            tolerance: Tolerance::Exact,
        }
    }
    pub fn num_pm(value: f64, spread: f64, n: u64) -> Self {
        Cell {
            value: CellValue::Number {
                value,
                spread: Some(spread),
                n: Some(n),
            },
            reference: None,
            tolerance: Tolerance::Exact,
        }
    }
    pub fn text(text: impl Into<String>) -> Self {
        Cell {
            value: CellValue::Text { text: text.into() },
            reference: None,
            tolerance: Tolerance::Exact,
        }
    }
    /// Adds a reference value.
    pub fn vs(mut self, value: f64, source: impl Into<String>) -> Self {
        self.reference = Some(Reference {
            value,
            source: source.into(),
            tolerance: None,
        });
        self
    }
    /// Adds a tolerance to the reference (no-op without one).
    pub fn tol(mut self, tolerance: f64) -> Self {
        if let Some(r) = &mut self.reference {
            r.tolerance = Some(tolerance);
        }
        self
    }
    /// Declares what a rerun must match (see [`Tolerance`]).
    pub fn within(mut self, tolerance: Tolerance) -> Self {
        self.tolerance = tolerance;
        self
    }
    /// The measured number, if this is a number cell.
    pub fn number(&self) -> Option<f64> {
        match self.value {
            CellValue::Number { value, .. } => Some(value),
            _ => None,
        }
    }
    /// ours − reference, when both are finite numbers.
    pub fn delta(&self) -> Option<f64> {
        let ours = self.number()?;
        let r = self.reference.as_ref()?.value;
        (ours.is_finite() && r.is_finite()).then_some(ours - r)
    }
    /// Whether |Δ| exceeds the reference's tolerance.
    pub fn out_of_tolerance(&self) -> bool {
        match (
            self.delta(),
            self.reference.as_ref().and_then(|r| r.tolerance),
        ) {
            (Some(d), Some(t)) => d.abs() > t,
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Figures

/// A figure, drawn to `figures/<id>.svg`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Figure {
    Heatmap(Heatmap),
    Lines(LinePlot),
    Bars(BarChart),
    GridHeatmaps(GridHeatmaps),
}

impl Figure {
    pub fn id(&self) -> &str {
        match self {
            Figure::Heatmap(f) => &f.id,
            Figure::Lines(f) => &f.id,
            Figure::Bars(f) => &f.id,
            Figure::GridHeatmaps(f) => &f.id,
        }
    }
    pub fn title(&self) -> &str {
        match self {
            Figure::Heatmap(f) => &f.title,
            Figure::Lines(f) => &f.title,
            Figure::Bars(f) => &f.title,
            Figure::GridHeatmaps(f) => &f.title,
        }
    }
    pub fn caption(&self) -> &str {
        match self {
            Figure::Heatmap(f) => &f.caption,
            Figure::Lines(f) => &f.caption,
            Figure::Bars(f) => &f.caption,
            Figure::GridHeatmaps(f) => &f.caption,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Figure::Heatmap(_) => "heatmap",
            Figure::Lines(_) => "lines",
            Figure::Bars(_) => "bars",
            Figure::GridHeatmaps(_) => "grid_heatmaps",
        }
    }
}

/// Colour scale of a heatmap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colormap {
    /// Perceptually uniform, dark (low) to yellow (high).
    #[default]
    Viridis,
    /// White (low) to dark blue (high): "dark = retrieval score 1" (paper Fig. 1).
    Blues,
    /// Red (low) through yellow to green (high): accuracy grids (paper Fig. 2).
    RedYellowGreen,
    /// Light (low) to dark grey (high); prints well in black and white.
    Greys,
}

/// A grid of values: rows are `y_labels` (e.g. heads "L12.H3"), columns `x_labels`
/// (e.g. generated tokens).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Heatmap {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub caption: String,
    /// Axis titles.
    #[serde(default)]
    pub x_label: String,
    #[serde(default)]
    pub y_label: String,
    pub x_labels: Vec<String>,
    pub y_labels: Vec<String>,
    /// Row-major, `y_labels.len() × x_labels.len()`; NaN = missing (left blank).
    #[serde(with = "nan_as_null_vec")]
    pub values: Vec<f64>,
    /// Label of the colour bar.
    #[serde(default)]
    pub color_label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmin: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmax: Option<f64>,
    #[serde(default)]
    pub colormap: Colormap,
    /// Write each cell's value in it (for small grids).
    #[serde(default)]
    pub annotate: bool,
    /// What a rerun must match, for every value (omitted: bit for bit).
    #[serde(default, skip_serializing_if = "Tolerance::is_exact")]
    pub tolerance: Tolerance,
}

/// Several heatmaps sharing axes and one colour scale, e.g. context length × needle depth
/// for each ablation condition (paper Fig. 2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GridHeatmaps {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub caption: String,
    #[serde(default)]
    pub x_label: String,
    #[serde(default)]
    pub y_label: String,
    pub x_labels: Vec<String>,
    pub y_labels: Vec<String>,
    pub panels: Vec<Panel>,
    #[serde(default)]
    pub color_label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmin: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmax: Option<f64>,
    #[serde(default)]
    pub colormap: Colormap,
    #[serde(default)]
    pub annotate: bool,
    /// Panels per row (default: all in one row, at most 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<usize>,
    /// What a rerun must match, for every value (omitted: bit for bit).
    #[serde(default, skip_serializing_if = "Tolerance::is_exact")]
    pub tolerance: Tolerance,
}

/// One panel of a [`GridHeatmaps`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Panel {
    pub title: String,
    /// Row-major, `y_labels.len() × x_labels.len()`; NaN = missing.
    #[serde(with = "nan_as_null_vec")]
    pub values: Vec<f64>,
    /// How many samples each cell averages (same layout; empty: not shown). A cell's opacity
    /// follows its count (the paper's Fig. 6), and an annotated cell prints it in brackets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<usize>,
}

/// Line plot with optional shaded error bands and an optional second y axis.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinePlot {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub caption: String,
    #[serde(default)]
    pub x_label: String,
    #[serde(default)]
    pub y_label: String,
    /// Title of the right-hand axis, used by series with `secondary: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y2_label: Option<String>,
    pub series: Vec<Series>,
    /// Fixed y range of the left axis (default: fitted to the data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y_range: Option<(f64, f64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y2_range: Option<(f64, f64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    #[serde(with = "nan_as_null_vec")]
    pub x: Vec<f64>,
    /// NaN breaks the line.
    #[serde(with = "nan_as_null_vec")]
    pub y: Vec<f64>,
    /// Lower and upper edge of the shaded band (same length as `x`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "nan_as_null_opt_vec"
    )]
    pub band_lo: Option<Vec<f64>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "nan_as_null_opt_vec"
    )]
    pub band_hi: Option<Vec<f64>>,
    /// Plot against the right-hand axis.
    #[serde(default)]
    pub secondary: bool,
    /// What a rerun must match, for every value of the series (omitted: bit for bit).
    #[serde(default, skip_serializing_if = "Tolerance::is_exact")]
    pub tolerance: Tolerance,
}

impl Series {
    pub fn new(name: impl Into<String>, x: Vec<f64>, y: Vec<f64>) -> Self {
        Series {
            name: name.into(),
            x,
            y,
            ..Default::default()
        }
    }
    pub fn band(mut self, lo: Vec<f64>, hi: Vec<f64>) -> Self {
        self.band_lo = Some(lo);
        self.band_hi = Some(hi);
        self
    }
    pub fn secondary(mut self) -> Self {
        self.secondary = true;
        self
    }
    pub fn within(mut self, tolerance: Tolerance) -> Self {
        self.tolerance = tolerance;
        self
    }
}

/// Grouped bar chart with optional error bars.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BarChart {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub caption: String,
    #[serde(default)]
    pub x_label: String,
    #[serde(default)]
    pub y_label: String,
    pub categories: Vec<String>,
    pub series: Vec<BarSeries>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y_range: Option<(f64, f64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BarSeries {
    pub name: String,
    /// One per category; NaN = no bar.
    #[serde(with = "nan_as_null_vec")]
    pub values: Vec<f64>,
    /// Half-length of the error bar, one per category.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "nan_as_null_opt_vec"
    )]
    pub errors: Option<Vec<f64>>,
    /// What a rerun must match (omitted: bit for bit).
    #[serde(default, skip_serializing_if = "Tolerance::is_exact")]
    pub tolerance: Tolerance,
}

// ---------------------------------------------------------------------------------------------
// Provenance

/// Which inputs, which model bytes and which code produced the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub rhx_version: String,
    #[serde(default)]
    pub git_commit: String,
    /// argv, first element the program.
    #[serde(default)]
    pub command_line: Vec<String>,
    /// Start time, RFC 3339.
    #[serde(default)]
    pub started: String,
    #[serde(default)]
    pub wall_time_s: f64,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub models: Vec<ModelProvenance>,
    #[serde(default)]
    pub datasets: Vec<DatasetProvenance>,
    /// Named seeds (e.g. "experiment" → 0, "niah" → 1234).
    #[serde(default)]
    pub seeds: BTreeMap<String, u64>,
    /// Resolved settings (option → value), including defaults.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Node name → content key of its cached artifact.
    #[serde(default)]
    pub cache_keys: BTreeMap<String, String>,
    /// Which run computed each artifact behind this report (node → its cache manifest's time,
    /// rhx version and compute time; for the report node also that run's command line). The
    /// fields above say who wrote this copy of the report, which may have served everything
    /// from the cache.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub computed: BTreeMap<String, Computed>,
    /// The experiment file, relative to this report folder as it was written (so `rhx
    /// reproduce` finds it from any working directory while the folder stays in its project).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub experiment: String,
    /// The report declaration that wrote this folder (`rhx reproduce` finds it by this name, so
    /// a renamed folder still reproduces; empty in reports written before it was recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub report: String,
}

/// When and by what an artifact was computed (from its cache manifest).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Computed {
    /// RFC 3339 UTC.
    pub created: String,
    pub rhx_version: String,
    pub wall_time_s: f64,
    /// The command line of the run that computed it, where known (the report node's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command_line: Vec<String>,
}

impl Provenance {
    /// This build's version and commit, and this process's command line; the rest is empty.
    pub fn current() -> Self {
        Provenance {
            rhx_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: env!("RHX_GIT_COMMIT").to_string(),
            command_line: std::env::args().collect(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelProvenance {
    pub name: String,
    #[serde(default)]
    pub files: Vec<FileDigest>,
    /// The commit of a model read from the local Hub cache by id (`owner/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileDigest {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetProvenance {
    pub name: String,
    pub sha256: String,
}

// ---------------------------------------------------------------------------------------------
// Validation

/// Whether `id` is usable as a file name stem.
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Report {
    /// Checks what the renderers rely on: ids are file-name safe and unique, rows have one cell
    /// per column, figure data have matching lengths. Returns every problem found.
    pub fn validate(&self) -> Result<(), ReportError> {
        let mut problems = Vec::new();
        let mut table_ids = std::collections::HashSet::new();
        let mut figure_ids = std::collections::HashSet::new();
        for s in &self.sections {
            for t in &s.tables {
                let at = format!("table `{}`", t.id);
                if !is_safe_id(&t.id) {
                    problems.push(format!(
                        "{at}: id must be 1-100 characters of [A-Za-z0-9_-]"
                    ));
                }
                if !table_ids.insert(t.id.as_str()) {
                    problems.push(format!("{at}: duplicate table id"));
                }
                for r in &t.rows {
                    if r.cells.len() != t.columns.len() {
                        problems.push(format!(
                            "{at}, row `{}`: {} cells for {} columns",
                            r.label,
                            r.cells.len(),
                            t.columns.len()
                        ));
                    }
                }
            }
            for f in &s.figures {
                let at = format!("figure `{}`", f.id());
                if !is_safe_id(f.id()) {
                    problems.push(format!(
                        "{at}: id must be 1-100 characters of [A-Za-z0-9_-]"
                    ));
                }
                if !figure_ids.insert(f.id()) {
                    problems.push(format!("{at}: duplicate figure id"));
                }
                validate_figure(f, &at, &mut problems);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ReportError::Invalid(problems))
        }
    }
}

fn check_range(r: Option<(f64, f64)>, what: &str, at: &str, problems: &mut Vec<String>) {
    if let Some((lo, hi)) = r {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            problems.push(format!(
                "{at}: {what} must be finite with lo < hi, got ({lo}, {hi})"
            ));
        }
    }
}

fn check_grid(nx: usize, ny: usize, len: usize, what: &str, at: &str, problems: &mut Vec<String>) {
    if nx == 0 || ny == 0 {
        problems.push(format!("{at}: needs at least one x label and one y label"));
    } else if len != nx * ny {
        problems.push(format!(
            "{at}: {what} has {len} values, expected {ny} rows × {nx} columns = {}",
            nx * ny
        ));
    }
}

fn check_vrange(vmin: Option<f64>, vmax: Option<f64>, at: &str, problems: &mut Vec<String>) {
    for (n, v) in [("vmin", vmin), ("vmax", vmax)] {
        if let Some(v) = v {
            if !v.is_finite() {
                problems.push(format!("{at}: {n} must be finite"));
            }
        }
    }
    if let (Some(a), Some(b)) = (vmin, vmax) {
        if a > b {
            problems.push(format!("{at}: vmin {a} > vmax {b}"));
        }
    }
}

fn validate_figure(f: &Figure, at: &str, problems: &mut Vec<String>) {
    match f {
        Figure::Heatmap(h) => {
            check_grid(
                h.x_labels.len(),
                h.y_labels.len(),
                h.values.len(),
                "values",
                at,
                problems,
            );
            check_vrange(h.vmin, h.vmax, at, problems);
        }
        Figure::GridHeatmaps(g) => {
            if g.panels.is_empty() {
                problems.push(format!("{at}: no panels"));
            }
            for p in &g.panels {
                check_grid(
                    g.x_labels.len(),
                    g.y_labels.len(),
                    p.values.len(),
                    &format!("panel `{}`", p.title),
                    at,
                    problems,
                );
            }
            check_vrange(g.vmin, g.vmax, at, problems);
            if g.columns == Some(0) {
                problems.push(format!("{at}: columns must be at least 1"));
            }
        }
        Figure::Lines(l) => {
            if l.series.is_empty() {
                problems.push(format!("{at}: no series"));
            }
            for s in &l.series {
                let n = s.x.len();
                if s.y.len() != n {
                    problems.push(format!(
                        "{at}, series `{}`: {} x values but {} y values",
                        s.name,
                        n,
                        s.y.len()
                    ));
                }
                if s.band_lo.is_some() != s.band_hi.is_some() {
                    problems.push(format!(
                        "{at}, series `{}`: band_lo and band_hi go together",
                        s.name
                    ));
                }
                for (name, b) in [("band_lo", &s.band_lo), ("band_hi", &s.band_hi)] {
                    if let Some(b) = b {
                        if b.len() != n {
                            problems.push(format!(
                                "{at}, series `{}`: {name} has {} values for {n} points",
                                s.name,
                                b.len()
                            ));
                        }
                    }
                }
                if s.secondary && l.y2_label.is_none() {
                    problems.push(format!(
                        "{at}, series `{}`: secondary series need the plot's y2_label",
                        s.name
                    ));
                }
            }
            check_range(l.y_range, "y_range", at, problems);
            check_range(l.y2_range, "y2_range", at, problems);
        }
        Figure::Bars(b) => {
            if b.categories.is_empty() || b.series.is_empty() {
                problems.push(format!("{at}: needs at least one category and one series"));
            }
            for s in &b.series {
                if s.values.len() != b.categories.len() {
                    problems.push(format!(
                        "{at}, series `{}`: {} values for {} categories",
                        s.name,
                        s.values.len(),
                        b.categories.len()
                    ));
                }
                if let Some(e) = &s.errors {
                    if e.len() != b.categories.len() {
                        problems.push(format!(
                            "{at}, series `{}`: {} errors for {} categories",
                            s.name,
                            e.len(),
                            b.categories.len()
                        ));
                    }
                }
            }
            check_range(b.y_range, "y_range", at, problems);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// NaN ↔ null

/// `f64` with non-finite values written as `null` and `null` read as NaN.
pub mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// `Vec<f64>` with non-finite values written as `null`.
pub mod nan_as_null_vec {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for x in v {
            seq.serialize_element(&x.is_finite().then_some(*x))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?
            .into_iter()
            .map(|x| x.unwrap_or(f64::NAN))
            .collect())
    }
}

/// `Option<Vec<f64>>` with non-finite values written as `null`.
pub mod nan_as_null_opt_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<f64>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::nan_as_null_vec::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<f64>>, D::Error> {
        Ok(Option::<Vec<Option<f64>>>::deserialize(d)?
            .map(|v| v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect()))
    }
}
