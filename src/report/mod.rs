//! The `report` stage: an experiment's results → Markdown, a self-contained HTML page with SVG
//! figures, the data model as JSON, and one CSV file per table.
//!
//! * [`model`]: the data model ([`Report`], sections, tables whose cells can carry a reference
//!   value such as the paper's, figures, provenance); serde, so `report.json` round-trips.
//! * [`figures`]: figures → SVG with `plotters` (SVG backend only; no font files or system
//!   libraries are needed to draw: text stays `<text>` for the viewer to render).
//! * [`certify`]: a rerun's report against the original, each number within the tolerance its
//!   op declared (`rhx reproduce`, the golden tests).
//! * [`trace_view`]: the trace viewer's data (a sample's steps, H_t, argmax positions, prompt
//!   text), embedded in the HTML report and written alone by `rhx view`.
//! * [`render`]: `minijinja` templates (`reports/templates/`, built into the binary; an
//!   experiment may bring its own by path) and [`write_report`], which writes everything
//!   atomically (temp folder + rename).
//!
//! ```no_run
//! use rhx::report::{write_report, Cell, Column, Provenance, Report, Row, Section, Table};
//! let report = Report {
//!     title: "Retrieval heads are dynamic — Section 3".into(),
//!     subtitle: None,
//!     sections: vec![Section {
//!         title: "Dynamism".into(),
//!         text: "Dynamic heads differ from the static top-20.".into(),
//!         tables: vec![Table {
//!             id: "table1".into(),
//!             caption: "Retrieval head dynamism".into(),
//!             row_header: "Model".into(),
//!             columns: vec![Column::new("Jaccard w/ Static")],
//!             rows: vec![Row::new("smollm2-135m", vec![Cell::num(0.31).vs(0.3512, "paper Table 1")])],
//!             ..Default::default()
//!         }],
//!         figures: vec![],
//!     }],
//!     provenance: Provenance::current(),
//!     traces: vec![],
//! };
//! let files = write_report(&report, std::path::Path::new("out/section3")).unwrap();
//! println!("{}", files.html.display());
//! ```
pub mod certify;
pub mod figures;
pub mod format;
pub mod model;
pub mod render;
pub mod trace_view;

use std::path::PathBuf;

pub use certify::{certify, Certificate, Verdict};
pub use figures::{figure_svg, COLORBAR_STEPS};
pub use format::{fmt_delta, fmt_num, fmt_pm};
pub use model::*;
pub use render::{
    load_report, render_html, render_markdown, render_markdown_alone, render_trace_page, table_csv, write_report,
    write_report_with, ReportFiles, Templates,
};

/// What can go wrong while rendering or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("invalid report:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
    #[error("figure `{figure}` could not be drawn: {message}")]
    Plot { figure: String, message: String },
    #[error("template `{name}`: {message}")]
    Template { name: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("report JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl ReportError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;
