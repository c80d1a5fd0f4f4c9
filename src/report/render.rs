//! Rendering: the data model → a template context → Markdown / HTML through `minijinja`, and
//! writing a report folder atomically.
//!
//! Templates see (besides the filters below):
//! * `title`, `subtitle`, `generator` ("rhx 0.1.0"), `report` (the raw data model);
//! * `sections`: `{title, anchor, text, text_html, tables, figures}`;
//! * `tables` / `figures`: the same table and figure views keyed by id, for templates that
//!   place them by hand (`{{ m.table(tables.table1) }}` after
//!   `{% import "macros.md.j2" as m %}`);
//! * `provenance`: display-ready provenance (`command` is shell-quoted, `wall_time` human).
//!
//! A table view has `number`, `id`, `caption`, `csv` (its file), `groups` (one per column:
//! `name`, `unit`, `span`, `compare`), `has_reference`, `rows` (`label`, `cells` with `text`,
//! `main`, `pm`, `class`, `title`), `notes`, and the padded Markdown pieces `md_header`,
//! `md_rule`, `md_rows`. A figure view has `number`, `id`, `kind`, `title`, `caption`, `file`
//! and, in HTML, `svg`.
//!
//! Filters: `fmt_num(precision=4)`, `fmt_delta(precision=4)` (signed), `fmt_pm(spread,
//! precision=4)`, `md_cell` (escape for a Markdown table cell), `markdown` (Markdown → HTML,
//! raw HTML neutralised), `fmt_duration`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{Environment, Value};
use serde::Serialize;

use super::figures::figure_svg;
use super::format::{
    csv_field, fmt_delta, fmt_duration, fmt_num, fmt_pm, md_cell, raw_num, shell_join, MISSING,
};
use super::model::{Cell, CellValue, Report, Table};
use super::trace_view::{inline_json, TraceView};
use super::{ReportError, Result};

const BUILTIN: &[(&str, &str)] = &[
    (
        "report.md.j2",
        include_str!("../../reports/templates/report.md.j2"),
    ),
    (
        "report.html.j2",
        include_str!("../../reports/templates/report.html.j2"),
    ),
    (
        "macros.md.j2",
        include_str!("../../reports/templates/macros.md.j2"),
    ),
    (
        "macros.html.j2",
        include_str!("../../reports/templates/macros.html.j2"),
    ),
    (
        "report.css",
        include_str!("../../reports/templates/report.css"),
    ),
    (
        "trace_view.html.j2",
        include_str!("../../reports/templates/trace_view.html.j2"),
    ),
    (
        "trace_view.js",
        include_str!("../../reports/templates/trace_view.js"),
    ),
    (
        "trace_view.css",
        include_str!("../../reports/templates/trace_view.css"),
    ),
    (
        "trace_page.html.j2",
        include_str!("../../reports/templates/trace_page.html.j2"),
    ),
];

/// Templates to use instead of the built-in ones (`reports/templates/`). A custom template can
/// `{% extends "report.md.j2" %}`, `{% import "macros.md.j2" as m %}`, and include files
/// next to it by relative name (built-in names win over files of the same name).
#[derive(Debug, Clone, Default)]
pub struct Templates {
    pub markdown: Option<PathBuf>,
    pub html: Option<PathBuf>,
}

/// Files written by [`write_report`], at their final place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    pub dir: PathBuf,
    pub markdown: PathBuf,
    pub html: PathBuf,
    pub json: PathBuf,
    pub figures: Vec<PathBuf>,
    pub tables: Vec<PathBuf>,
}

/// Renders the report as Markdown with the built-in template or `template`.
pub fn render_markdown(report: &Report, template: Option<&Path>) -> Result<String> {
    report.validate()?;
    let ctx = context(report, None);
    render(&ctx, "report.md.j2", template)
}

/// Renders the report as one Markdown file that stands alone (`rhx trace --report x.md`): no
/// `tables/*.csv` are written beside it, so the tables do not link to them.
pub fn render_markdown_alone(report: &Report) -> Result<String> {
    report.validate()?;
    let mut ctx = context(report, None);
    for t in ctx.sections.iter_mut().flat_map(|s| s.tables.iter_mut()).chain(ctx.tables.values_mut()) {
        t.csv.clear();
    }
    render(&ctx, "report.md.j2", None)
}

/// Renders the report as one self-contained HTML page (inline CSS, inline SVG figures).
pub fn render_html(report: &Report, template: Option<&Path>) -> Result<String> {
    report.validate()?;
    let svgs = draw_figures(report)?;
    let ctx = context(report, Some(&svgs));
    render(&ctx, "report.html.j2", template)
}

/// The trace viewer as a page of its own (`rhx view`): one HTML file, data inlined, nothing
/// fetched.
pub fn render_trace_page(views: &[TraceView], title: &str) -> Result<String> {
    #[derive(Serialize)]
    struct PageCtx<'a> {
        title: &'a str,
        generator: String,
        tv_json: String,
        tv_standalone: bool,
    }
    let ctx = PageCtx { title, generator: format!("rhx {}", env!("CARGO_PKG_VERSION")), tv_json: inline_json(views)?, tv_standalone: true };
    let env = environment();
    let tmpl = env.get_template("trace_page.html.j2").map_err(|e| template_error("trace_page.html.j2", e))?;
    tmpl.render(ctx).map_err(|e| template_error("trace_page.html.j2", e))
}

/// Writes `report.md`, `report.html`, `report.json`, `figures/<id>.svg` and `tables/<id>.csv`
/// into `out_dir`, replacing it as a whole: everything is written to a temporary sibling
/// folder first, then renamed into place.
pub fn write_report(report: &Report, out_dir: &Path) -> Result<ReportFiles> {
    write_report_with(report, out_dir, &Templates::default())
}

/// [`write_report`] with custom templates.
pub fn write_report_with(
    report: &Report,
    out_dir: &Path,
    templates: &Templates,
) -> Result<ReportFiles> {
    report.validate()?;
    let svgs = draw_figures(report)?;
    let md = render(
        &context(report, None),
        "report.md.j2",
        templates.markdown.as_deref(),
    )?;
    let html = render(
        &context(report, Some(&svgs)),
        "report.html.j2",
        templates.html.as_deref(),
    )?;
    let json = serde_json::to_string_pretty(report)? + "\n";

    let name = out_dir
        .file_name()
        .ok_or_else(|| {
            ReportError::io(
                out_dir,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "output folder has no name",
                ),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| ReportError::io(&parent, e))?;
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(ReportError::io(
            out_dir,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a folder",
            ),
        ));
    }
    let stamp = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let tmp = parent.join(format!(".{name}.tmp-{stamp}"));

    let mut rel = Vec::new();
    let written = (|| -> Result<()> {
        let put = |path: &Path, data: &[u8]| -> Result<()> {
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d).map_err(|e| ReportError::io(d, e))?;
            }
            std::fs::write(path, data).map_err(|e| ReportError::io(path, e))
        };
        std::fs::create_dir(&tmp).map_err(|e| ReportError::io(&tmp, e))?;
        put(&tmp.join("report.md"), md.as_bytes())?;
        put(&tmp.join("report.html"), html.as_bytes())?;
        put(&tmp.join("report.json"), json.as_bytes())?;
        for s in &report.sections {
            for f in &s.figures {
                let p = format!("figures/{}.svg", f.id());
                put(&tmp.join(&p), svgs[f.id()].as_bytes())?;
                rel.push((true, p));
            }
            for t in &s.tables {
                let p = format!("tables/{}.csv", t.id);
                put(&tmp.join(&p), table_csv(t).as_bytes())?;
                rel.push((false, p));
            }
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }

    // Swap into place: the old folder (if any) moves aside, the new one takes its name.
    let old = parent.join(format!(".{name}.old-{stamp}"));
    let had_old = out_dir.exists();
    if had_old {
        if let Err(e) = std::fs::rename(out_dir, &old) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(ReportError::io(out_dir, e));
        }
    }
    if let Err(e) = std::fs::rename(&tmp, out_dir) {
        if had_old {
            let _ = std::fs::rename(&old, out_dir);
        }
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(ReportError::io(out_dir, e));
    }
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }

    let dir = out_dir.to_path_buf();
    Ok(ReportFiles {
        markdown: dir.join("report.md"),
        html: dir.join("report.html"),
        json: dir.join("report.json"),
        figures: rel
            .iter()
            .filter(|(f, _)| *f)
            .map(|(_, p)| dir.join(p))
            .collect(),
        tables: rel
            .iter()
            .filter(|(f, _)| !*f)
            .map(|(_, p)| dir.join(p))
            .collect(),
        dir,
    })
}

/// Reads a `report.json` written by [`write_report`].
pub fn load_report(path: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
    Ok(serde_json::from_str(&text)?)
}

/// One table as CSV, full precision: `label`, then per column its value, and where present
/// `<name> ±`, `<name> n`, `<name> reference`, `<name> reference source`, `<name> Δ`.
pub fn table_csv(t: &Table) -> String {
    let any =
        |c: usize, f: &dyn Fn(&Cell) -> bool| t.rows.iter().any(|r| r.cells.get(c).is_some_and(f));
    let mut header = vec![csv_field(if t.row_header.is_empty() {
        "label"
    } else {
        &t.row_header
    })];
    let mut layout = Vec::new();
    for (c, col) in t.columns.iter().enumerate() {
        let spread = any(c, &|x| {
            matches!(
                x.value,
                CellValue::Number {
                    spread: Some(_),
                    ..
                }
            )
        });
        let n = any(c, &|x| {
            matches!(x.value, CellValue::Number { n: Some(_), .. })
        });
        let reference = any(c, &|x| x.reference.is_some());
        let name = match &col.unit {
            Some(u) => format!("{} ({u})", col.name),
            None => col.name.clone(),
        };
        header.push(csv_field(&name));
        if spread {
            header.push(csv_field(&format!("{name} ±")));
        }
        if n {
            header.push(csv_field(&format!("{name} n")));
        }
        if reference {
            for suffix in ["reference", "reference source", "Δ"] {
                header.push(csv_field(&format!("{name} {suffix}")));
            }
        }
        layout.push((spread, n, reference));
    }
    let mut out = header.join(",") + "\n";
    for r in &t.rows {
        let mut line = vec![csv_field(&r.label)];
        for (c, &(spread, n, reference)) in layout.iter().enumerate() {
            let cell = r.cells.get(c).cloned().unwrap_or_default();
            let (v, s, k) = match &cell.value {
                CellValue::Empty => (String::new(), None, None),
                CellValue::Text { text } => (csv_field(text), None, None),
                CellValue::Number { value, spread, n } => (raw_num(*value), *spread, *n),
            };
            line.push(v);
            if spread {
                line.push(s.map(raw_num).unwrap_or_default());
            }
            if n {
                line.push(k.map(|k| k.to_string()).unwrap_or_default());
            }
            if reference {
                match &cell.reference {
                    Some(rf) => {
                        line.push(raw_num(rf.value));
                        line.push(csv_field(&rf.source));
                        line.push(cell.delta().map(raw_num).unwrap_or_default());
                    }
                    None => line.extend([String::new(), String::new(), String::new()]),
                }
            }
        }
        out += &(line.join(",") + "\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Figures

fn draw_figures(report: &Report) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for s in &report.sections {
        for f in &s.figures {
            out.insert(f.id().to_string(), figure_svg(f)?);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Template context

#[derive(Serialize)]
struct Ctx<'a> {
    title: &'a str,
    subtitle: Option<&'a str>,
    generator: String,
    report: &'a Report,
    /// The trace viewer's inlined data (`report.traces`), when the report embeds traces.
    tv_json: Option<String>,
    /// What the viewer section says about the traces it embeds.
    tv_note: String,
    sections: Vec<SectionView>,
    tables: BTreeMap<String, TableView>,
    figures: BTreeMap<String, FigureView>,
    provenance: ProvenanceView,
}

#[derive(Serialize, Clone)]
struct SectionView {
    title: String,
    anchor: String,
    text: String,
    text_html: String,
    tables: Vec<TableView>,
    figures: Vec<FigureView>,
}

#[derive(Serialize, Clone)]
struct TableView {
    number: usize,
    id: String,
    caption: String,
    csv: String,
    row_header: String,
    reference_label: String,
    groups: Vec<GroupView>,
    has_reference: bool,
    rows: Vec<RowView>,
    notes: Vec<String>,
    md_header: Vec<String>,
    md_rule: Vec<String>,
    md_rows: Vec<Vec<String>>,
}

#[derive(Serialize, Clone)]
struct GroupView {
    name: String,
    unit: Option<String>,
    span: usize,
    compare: bool,
}

#[derive(Serialize, Clone)]
struct RowView {
    label: String,
    cells: Vec<CellView>,
}

#[derive(Serialize, Clone, Default)]
struct CellView {
    /// Plain text of the whole cell (Markdown, tooltips).
    text: String,
    /// The value without its spread, and the spread (HTML shows them apart).
    main: String,
    pm: Option<String>,
    /// CSS classes: num/text/empty, ours/ref/delta, out-of-tol.
    class: String,
    /// Tooltip: n, reference source, tolerance.
    title: String,
    /// Footnote mark (`†` when |Δ| exceeds the tolerance).
    mark: Option<String>,
    /// `n=…` when the table's cells do not share one n.
    n: Option<String>,
}

#[derive(Serialize, Clone)]
struct FigureView {
    number: usize,
    id: String,
    kind: &'static str,
    title: String,
    caption: String,
    file: String,
    svg: Option<String>,
}

#[derive(Serialize, Clone)]
struct Kv {
    key: String,
    value: String,
}

#[derive(Serialize, Clone)]
struct FileView {
    path: String,
    sha256: String,
}

#[derive(Serialize, Clone)]
struct ModelView {
    name: String,
    files: Vec<FileView>,
}

#[derive(Serialize)]
struct ProvenanceView {
    rhx_version: String,
    git_commit: String,
    command: String,
    started: String,
    wall_time_s: f64,
    wall_time: String,
    device: String,
    models: Vec<ModelView>,
    datasets: Vec<FileView>,
    seeds: Vec<Kv>,
    settings: Vec<Kv>,
    cache_keys: Vec<Kv>,
}

fn anchor(title: &str, used: &mut Vec<String>) -> String {
    let mut a = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            a.push(c);
        } else if !a.ends_with('-') && !a.is_empty() {
            a.push('-');
        }
    }
    let a = a.trim_end_matches('-').to_string();
    let a = if a.is_empty() {
        "section".to_string()
    } else {
        a
    };
    let mut cand = a.clone();
    let mut k = 2;
    while used.contains(&cand) {
        cand = format!("{a}-{k}");
        k += 1;
    }
    used.push(cand.clone());
    cand
}

fn context<'a>(report: &'a Report, svgs: Option<&BTreeMap<String, String>>) -> Ctx<'a> {
    let mut sections = Vec::new();
    let mut tables = BTreeMap::new();
    let mut figures = BTreeMap::new();
    let (mut nt, mut nf) = (0, 0);
    let mut anchors = Vec::new();
    for s in &report.sections {
        let mut sv = SectionView {
            title: s.title.clone(),
            anchor: anchor(&s.title, &mut anchors),
            text: s.text.trim().to_string(),
            text_html: markdown_to_html(s.text.trim()),
            tables: Vec::new(),
            figures: Vec::new(),
        };
        for t in &s.tables {
            nt += 1;
            let tv = table_view(t, nt);
            tables.insert(t.id.clone(), tv.clone());
            sv.tables.push(tv);
        }
        for f in &s.figures {
            nf += 1;
            let fv = FigureView {
                number: nf,
                id: f.id().to_string(),
                kind: f.kind(),
                title: f.title().to_string(),
                caption: f.caption().to_string(),
                file: format!("figures/{}.svg", f.id()),
                svg: svgs.and_then(|m| m.get(f.id()).cloned()),
            };
            figures.insert(f.id().to_string(), fv.clone());
            sv.figures.push(fv);
        }
        sections.push(sv);
    }
    let p = &report.provenance;
    let kv = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| Kv {
                key: k.clone(),
                value: v.clone(),
            })
            .collect::<Vec<_>>()
    };
    let provenance = ProvenanceView {
        rhx_version: p.rhx_version.clone(),
        git_commit: p.git_commit.clone(),
        command: shell_join(&p.command_line),
        started: p.started.clone(),
        wall_time_s: p.wall_time_s,
        wall_time: fmt_duration(p.wall_time_s),
        device: p.device.clone(),
        models: p
            .models
            .iter()
            .map(|m| ModelView {
                name: match &m.revision {
                    Some(r) => format!("{} (Hub revision {r})", m.name),
                    None => m.name.clone(),
                },
                files: m
                    .files
                    .iter()
                    .map(|f| FileView {
                        path: f.path.clone(),
                        sha256: f.sha256.clone(),
                    })
                    .collect(),
            })
            .collect(),
        datasets: p
            .datasets
            .iter()
            .map(|d| FileView {
                path: d.name.clone(),
                sha256: d.sha256.clone(),
            })
            .collect(),
        seeds: p
            .seeds
            .iter()
            .map(|(k, v)| Kv {
                key: k.clone(),
                value: v.to_string(),
            })
            .collect(),
        settings: kv(&p.settings),
        cache_keys: kv(&p.cache_keys),
    };
    Ctx {
        title: &report.title,
        subtitle: report.subtitle.as_deref(),
        generator: format!(
            "rhx {}",
            if p.rhx_version.is_empty() {
                env!("CARGO_PKG_VERSION")
            } else {
                &p.rhx_version
            }
        ),
        report,
        tv_json: (!report.traces.is_empty()).then(|| inline_json(&report.traces).unwrap_or_default()),
        tv_note: trace_note(&report.traces),
        sections,
        tables,
        figures,
        provenance,
    }
}

/// "2 of 12 samples of trace `base`, 2 of 12 of `masked`" and how to see the rest.
fn trace_note(traces: &[TraceView]) -> String {
    let parts: Vec<String> = traces.iter().map(|t| format!("{} of {} samples of trace `{}`", t.samples.len(), t.total_samples, t.name)).collect();
    let mut note = format!("Embedded: {}.", parts.join(", "));
    if traces.iter().any(|t| t.samples.len() < t.total_samples) {
        note += " The report keeps a bounded sample so it stays small; `rhx view .rhx/cache/objects/<ab>/<key>/ --out page.html` \
                 (the trace's key is under Provenance → cache keys) writes a page with every sample.";
    }
    note
}

fn table_view(t: &Table, number: usize) -> TableView {
    let compare: Vec<bool> = (0..t.columns.len())
        .map(|c| {
            t.rows
                .iter()
                .any(|r| r.cells.get(c).is_some_and(|x| x.reference.is_some()))
        })
        .collect();
    let has_reference = compare.iter().any(|&b| b);

    // n: shown once under the table when every number cell has the same n, else per cell.
    let ns: Vec<Option<u64>> = t
        .rows
        .iter()
        .flat_map(|r| r.cells.iter())
        .filter_map(|c| match c.value {
            CellValue::Number { n, .. } => Some(n),
            _ => None,
        })
        .collect();
    let common_n = match ns.first() {
        Some(Some(first)) if ns.iter().all(|n| *n == Some(*first)) => Some(*first),
        _ => None,
    };

    let mut sources: Vec<String> = Vec::new();
    let mut any_out = false;
    let mut rows = Vec::new();
    for r in &t.rows {
        let mut cells = Vec::new();
        for (c, col) in t.columns.iter().enumerate() {
            let cell = r.cells.get(c).cloned().unwrap_or_default();
            let p = col.decimals();
            let mut ours = match &cell.value {
                CellValue::Empty => CellView {
                    text: MISSING.into(),
                    main: MISSING.into(),
                    class: "empty".into(),
                    ..Default::default()
                },
                CellValue::Text { text } => CellView {
                    text: text.clone(),
                    main: text.clone(),
                    class: "text".into(),
                    ..Default::default()
                },
                CellValue::Number { value, spread, n } => {
                    let main = fmt_num(*value, p);
                    let pm = spread
                        .filter(|s| s.is_finite() && value.is_finite())
                        .map(|s| fmt_num(s, p));
                    let mut text = fmt_pm(*value, *spread, p);
                    let mut title = String::new();
                    let mut n_note = None;
                    if let Some(n) = n {
                        title = format!("n = {n}");
                        if common_n.is_none() {
                            text += &format!(" (n={n})");
                            n_note = Some(format!("n={n}"));
                        }
                    }
                    CellView {
                        text,
                        main,
                        pm,
                        class: "num".into(),
                        title,
                        mark: None,
                        n: n_note,
                    }
                }
            };
            if compare[c] {
                ours.class += " ours";
                cells.push(ours);
                match &cell.reference {
                    Some(rf) => {
                        if !sources.contains(&rf.source) {
                            sources.push(rf.source.clone());
                        }
                        let rv = fmt_num(rf.value, p);
                        cells.push(CellView {
                            text: rv.clone(),
                            main: rv,
                            class: "num ref".into(),
                            title: rf.source.clone(),
                            ..Default::default()
                        });
                        let out = cell.out_of_tolerance();
                        any_out |= out;
                        let mut d = cell
                            .delta()
                            .map(|d| fmt_delta(d, p))
                            .unwrap_or_else(|| MISSING.to_string());
                        let mut title = String::new();
                        if let Some(tol) = rf.tolerance {
                            title = format!("tolerance ±{}", fmt_num(tol, p));
                        }
                        let main = d.clone();
                        if out {
                            d += " †";
                        }
                        let mark = out.then(|| "†".to_string());
                        cells.push(CellView {
                            text: d,
                            main,
                            class: if out {
                                "num delta out-of-tol".into()
                            } else {
                                "num delta".into()
                            },
                            title,
                            mark,
                            ..Default::default()
                        });
                    }
                    None => {
                        for class in ["empty ref", "empty delta"] {
                            cells.push(CellView {
                                text: MISSING.into(),
                                main: MISSING.into(),
                                class: class.into(),
                                ..Default::default()
                            });
                        }
                    }
                }
            } else {
                cells.push(ours);
            }
        }
        rows.push(RowView {
            label: r.label.clone(),
            cells,
        });
    }

    let mut notes = Vec::new();
    match (&t.spread_label, common_n) {
        (Some(s), Some(n)) => notes.push(format!("± {s}; n = {n} per cell.")),
        (Some(s), None) => notes.push(format!("± {s}.")),
        (None, Some(n)) => notes.push(format!("n = {n} per cell.")),
        (None, None) => {}
    }
    if has_reference {
        notes.push(format!(
            "Reference values ({}): {}; Δ = ours − {}.",
            t.reference_label,
            sources.join(", "),
            t.reference_label
        ));
    }
    if any_out {
        notes.push("† |Δ| above the reference's tolerance.".into());
    }
    if let Some(n) = &t.note {
        notes.push(n.clone());
    }

    let groups: Vec<GroupView> = t
        .columns
        .iter()
        .zip(&compare)
        .map(|(c, &cmp)| GroupView {
            name: c.name.clone(),
            unit: c.unit.clone(),
            span: if cmp { 3 } else { 1 },
            compare: cmp,
        })
        .collect();

    // Markdown: one header row (`name (unit) | paper | Δ`), padded columns.
    let mut header = vec![t.row_header.clone()];
    let mut numeric = vec![false];
    for (c, g) in groups.iter().enumerate() {
        header.push(match &g.unit {
            Some(u) => format!("{} ({u})", g.name),
            None => g.name.clone(),
        });
        // Right-aligned unless the column holds only text.
        numeric.push(
            g.compare
                || !t.rows.iter().all(|r| {
                    r.cells
                        .get(c)
                        .is_none_or(|x| !matches!(x.value, CellValue::Number { .. }))
                }),
        );
        if g.compare {
            header.push(t.reference_label.clone());
            header.push("Δ".into());
            numeric.extend([true, true]);
        }
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            std::iter::once(md_cell(&r.label))
                .chain(r.cells.iter().map(|c| md_cell(&c.text)))
                .collect()
        })
        .collect();
    let header: Vec<String> = header.iter().map(|h| md_cell(h)).collect();
    let width = |k: usize| {
        body.iter()
            .map(|r| r[k].chars().count())
            .chain([header[k].chars().count(), 3])
            .max()
            .unwrap_or(3)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let pad = |s: &str, w: usize, right: bool| {
        let fill = " ".repeat(w.saturating_sub(s.chars().count()));
        if right {
            format!("{fill}{s}")
        } else {
            format!("{s}{fill}")
        }
    };
    let md_header = header
        .iter()
        .enumerate()
        .map(|(k, h)| pad(h, widths[k], false))
        .collect();
    let md_rule = widths
        .iter()
        .zip(&numeric)
        .map(|(&w, &num)| {
            if num {
                format!("{}:", "-".repeat(w - 1))
            } else {
                "-".repeat(w)
            }
        })
        .collect();
    let md_rows = body
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(k, s)| pad(s, widths[k], numeric[k]))
                .collect()
        })
        .collect();

    TableView {
        number,
        id: t.id.clone(),
        caption: t.caption.clone(),
        csv: format!("tables/{}.csv", t.id),
        row_header: t.row_header.clone(),
        reference_label: t.reference_label.clone(),
        groups,
        has_reference,
        rows,
        notes,
        md_header,
        md_rule,
        md_rows,
    }
}

// ---------------------------------------------------------------------------------------------
// Markdown → HTML (for section text)

/// CommonMark (+ tables, strikethrough, math spans) → HTML. Raw HTML is shown as text and
/// images other than `data:` URLs become links, so the page never fetches anything.
pub fn markdown_to_html(md: &str) -> String {
    use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};
    let opts = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_MATH
        | Options::ENABLE_FOOTNOTES;
    let mut in_ext_image = Vec::new();
    let events = Parser::new_ext(md, opts).map(|ev| match ev {
        Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let external = !dest_url.starts_with("data:");
            in_ext_image.push(external);
            if external {
                Event::Start(Tag::Link {
                    link_type: if link_type == LinkType::Inline {
                        LinkType::Inline
                    } else {
                        link_type
                    },
                    dest_url,
                    title,
                    id,
                })
            } else {
                Event::Start(Tag::Image {
                    link_type,
                    dest_url,
                    title,
                    id,
                })
            }
        }
        Event::End(TagEnd::Image) => {
            if in_ext_image.pop().unwrap_or(false) {
                Event::End(TagEnd::Link)
            } else {
                Event::End(TagEnd::Image)
            }
        }
        e => e,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

// ---------------------------------------------------------------------------------------------
// Environment

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    for (name, src) in BUILTIN {
        env.add_template(name, src)
            .expect("built-in report templates parse");
    }
    env.add_filter("fmt_num", |v: Option<f64>, precision: Option<usize>| {
        fmt_num(v.unwrap_or(f64::NAN), precision.unwrap_or(4))
    });
    env.add_filter("fmt_delta", |v: Option<f64>, precision: Option<usize>| {
        fmt_delta(v.unwrap_or(f64::NAN), precision.unwrap_or(4))
    });
    env.add_filter(
        "fmt_pm",
        |v: Option<f64>, spread: Option<f64>, precision: Option<usize>| {
            fmt_pm(v.unwrap_or(f64::NAN), spread, precision.unwrap_or(4))
        },
    );
    env.add_filter("fmt_duration", |v: Option<f64>| {
        fmt_duration(v.unwrap_or(f64::NAN))
    });
    env.add_filter("md_cell", |s: String| md_cell(&s));
    env.add_filter("markdown", |s: String| {
        Value::from_safe_string(markdown_to_html(&s))
    });
    // Captions: inline Markdown (`code`, *emphasis*) without the paragraph around it.
    env.add_filter("markdown_inline", |s: String| {
        let html = markdown_to_html(&s);
        let t = html.trim_end();
        let inner = t.strip_prefix("<p>").and_then(|x| x.strip_suffix("</p>")).filter(|x| !x.contains("<p>")).unwrap_or(t);
        Value::from_safe_string(inner.to_string())
    });
    env
}

fn template_error(name: &str, e: minijinja::Error) -> ReportError {
    let mut message = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        message += &format!(": {s}");
        src = s.source();
    }
    if let Some(info) = e
        .display_debug_info()
        .to_string()
        .lines()
        .find(|l| l.contains('>'))
    {
        message += &format!("\n  {}", info.trim());
    }
    ReportError::Template {
        name: name.to_string(),
        message,
    }
}

fn render(ctx: &Ctx, builtin: &str, custom: Option<&Path>) -> Result<String> {
    let mut env = environment();
    let name = match custom {
        None => builtin.to_string(),
        Some(path) => {
            let src = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "custom.j2".into());
            let name = format!("custom/{file}");
            if let Some(dir) = path.parent() {
                let dir = if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir.to_path_buf()
                };
                env.set_loader(minijinja::path_loader(dir));
            }
            env.add_template_owned(name.clone(), src)
                .map_err(|e| template_error(&path.display().to_string(), e))?;
            name
        }
    };
    let tmpl = env
        .get_template(&name)
        .map_err(|e| template_error(&name, e))?;
    tmpl.render(ctx).map_err(|e| template_error(&name, e))
}
