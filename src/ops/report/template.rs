//! `report … = template(…)`: a report rendered from a template.
use std::path::PathBuf;

use crate::run::RunError;
use std::collections::BTreeSet;

use crate::lang::schema::{FuncSpec, enm, list, text, decl, PAPER_REFS, Ty, PathKind};
use crate::cache::Artifact;
use crate::engine::device;
use crate::artifact::compare::Compare;
use crate::artifact::trace;
use crate::report::trace_view::TraceView;
use crate::report::{self, Figure, Report, Section, Table};

use crate::lang::{Kind, Node, Value};
use crate::ops::args::*;
use crate::ops::inputs::*;
use crate::ops::{Exec, Files, Inputs, OpDef, Refusal};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: Kind::Report, name: "template", spec, source: file!(), check: Some(check), exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new(
        "template",
        "A minijinja template rendered to Markdown and self-contained HTML.",
    )
    .pos(
        "path",
        Ty::Path(PathKind::File),
        "the template, relative to this file",
    )
    .def(
        "tables",
        list(decl(Table)),
        "[]",
        "tables available to the template",
    )
    .def(
        "figures",
        list(decl(Figure)),
        "[]",
        "figures available to the template",
    )
    .def(
        "compare",
        list(Ty::Builtin {
            ns: "paper",
            names: PAPER_REFS,
        }),
        "[]",
        "paper results to show beside ours",
    )
    .opt("title", text(), "document title")
    .def(
        "formats",
        list(enm(&["md", "html"])),
        "[md, html]",
        "outputs",
    )
}

fn run(ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let names = |param: &str| -> Vec<String> { n.arg(param).and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(ref_name).map(str::to_string).collect() };
    let mut tables = Vec::new();
    let mut ours = Vec::new();
    let constructor = |name: &str| ctx.plan.step(name).map(|s| s.node.constructor.clone()).unwrap_or_default();
    for t in names("tables") {
        let a = inputs.get(&t).ok_or_else(|| format!("`{t}` not computed"))?;
        let table = serde_json::from_value::<Table>(read_json(a, "table.json")?).map_err(|e| e.to_string())?;
        ours.push(super::paper::Ours { constructor: constructor(&t), node: t.clone(), table: Some(table.clone()), compare: Compare::read(a)? });
        tables.push(table);
    }
    let mut figures = Vec::new();
    for f in names("figures") {
        let a = inputs.get(&f).ok_or_else(|| format!("`{f}` not computed"))?;
        figures.push(serde_json::from_value::<Figure>(read_json(a, "figure.json")?).map_err(|e| e.to_string())?);
        ours.push(super::paper::Ours { constructor: constructor(&f), node: f.clone(), table: None, compare: Compare::read(a)? });
    }
    let mut sections = vec![Section { title: "Results".into(), text: String::new(), tables, figures }];
    let refs: Vec<&str> = n.arg("compare").and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(|v| if let Value::Builtin { name, .. } = v { Some(name.as_str()) } else { None }).collect();
    if !refs.is_empty() {
        let mut text = Vec::new();
        let mut ref_tables = Vec::new();
        for r in refs {
            let c = super::paper::compare(r, &ours)?;
            text.push(c.text);
            ref_tables.extend(c.table);
        }
        sections.push(Section { title: "The paper's values beside ours".into(), text: text.join("\n\n"), tables: ref_tables, figures: vec![] });
    }
    let mut prov = report::Provenance::current();
    prov.started = ctx.started_at.clone();
    prov.wall_time_s = ctx.started.elapsed().as_secs_f64();
    prov.seeds.insert("experiment".into(), ctx.plan.seed);
    prov.report = n.name.clone();
    let mut devices = BTreeSet::new();
    for s in &ctx.plan.steps {
        prov.cache_keys.insert(s.node.name.clone(), s.key.as_str().to_string());
        for a in &s.node.args {
            if let Some(v) = &a.value {
                prov.settings.insert(format!("{}.{}", s.node.name, a.name), v.render());
            }
        }
        if s.node.kind == Kind::Model {
            let files = s
                .files
                .values()
                .map(|p| ctx.cache.file_digest(p).map(|d| report::FileDigest { path: p.display().to_string(), sha256: d.sha256.to_string() }))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let revision = s.files.values().find_map(|p| p.parent().and_then(crate::engine::hub::snapshot_commit));
            prov.models.push(report::ModelProvenance { name: s.node.name.clone(), files, revision });
        }
    }
    for lm in ctx.models.values() {
        devices.insert(device::describe(lm.model.device));
    }
    prov.device = devices.into_iter().collect::<Vec<_>>().join(", ");
    let title = n.arg("title").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| ctx.program.experiment.name.clone());
    let report = Report {
        title,
        subtitle: Some(format!("experiment `{}`, report `{}`", ctx.program.experiment.name, n.name)),
        sections,
        provenance: prov,
        traces: trace_views(ctx, step)?,
    };
    let mut files = vec![("report.json".to_string(), serde_json::to_vec_pretty(&report).unwrap())];
    if let Some(Value::Path { resolved, .. }) = n.arg("path") {
        let tpl = std::fs::read(resolved).map_err(|e| format!("{}: {e}", resolved.display()))?;
        files.push(("template.md.j2".into(), tpl));
    }
    Ok(files)
}

/// Samples of each trace the HTML report's viewer embeds, and traces it embeds samples of:
/// enough to step through a few generations while the report stays a page of a few hundred kB
/// (niah_smoke: +~175 kB for 2 × 2 samples of 600 prompt tokens and 40 steps × 270 heads); the
/// page names the rest and `rhx view` shows every sample.
pub const VIEWER_SAMPLES: usize = 2;
pub const VIEWER_TRACES: usize = 4;

/// The traces the report's tables and figures were computed from (transitively), in plan order,
/// for the HTML report's trace viewer: the first [`VIEWER_SAMPLES`] generations of each of the
/// first [`VIEWER_TRACES`] (the others are listed with no samples). Traces
/// without decoding steps (RAG's) have nothing to step through and are left out. The report's key
/// holds these traces' keys through its inputs, so a cached report never shows other traces.
fn trace_views(ctx: &Ctx, step: &Step) -> Result<Vec<TraceView>, String> {
    let mut upstream = BTreeSet::new();
    let mut todo = step.inputs.clone();
    while let Some(name) = todo.pop() {
        if let Some(s) = ctx.plan.step(&name).filter(|_| upstream.insert(name.clone())) {
            todo.extend(s.inputs.iter().cloned());
        }
    }
    let mut views = Vec::new();
    for s in ctx.plan.steps.iter().filter(|s| s.node.kind == Kind::Trace && upstream.contains(&s.node.name)) {
        let name = &s.node.name;
        let a = ctx.cache.get(&s.key).map_err(|e| e.to_string())?.ok_or_else(|| format!("trace `{name}` is not in the cache"))?;
        let info = trace::read_info(&a).map_err(|e| format!("trace `{name}`: {e}"))?;
        let lines = trace::read_lines(&a).map_err(|e| format!("trace `{name}`: {e}"))?;
        if lines.iter().all(|l| l.steps.is_empty()) {
            continue;
        }
        let samples = if views.len() < VIEWER_TRACES { VIEWER_SAMPLES } else { 0 };
        views.push(TraceView::new(name, &info, &lines, Some(samples)).map_err(|e| e.to_string())?);
    }
    Ok(views)
}

/// Renders a report artifact into `<reports_dir>/<report name>/`. The provenance says who wrote
/// this copy (this run: its command line, commit, start and wall time) and, under `computed`,
/// which run computed each artifact (the report artifact may come from the cache).
pub(crate) fn publish_report(ctx: &Ctx, step: &Step, artifacts: &std::collections::HashMap<String, Artifact>) -> Result<PathBuf, RunError> {
    let err = |m: String| RunError::node(&step.node.name, m);
    let a = artifacts.get(&step.node.name).ok_or_else(|| err("the report artifact is missing".into()))?;
    let mut report: Report = serde_json::from_value(read_json(a, "report.json").map_err(err)?).map_err(|e| err(e.to_string()))?;
    let original = report.provenance.clone();
    let now = report::Provenance::current();
    let p = &mut report.provenance;
    p.rhx_version = now.rhx_version;
    p.git_commit = now.git_commit;
    p.command_line = now.command_line;
    p.started = ctx.started_at.clone();
    p.wall_time_s = ctx.started.elapsed().as_secs_f64();
    p.report = step.node.name.clone();
    let out_dir = ctx.opts.reports_dir.join(&step.node.name);
    if let Some(f) = ctx.program.files.first() {
        p.experiment = relative_path(&out_dir, std::path::Path::new(&f.name)).unwrap_or_default();
    }
    p.computed.clear();
    for s in &ctx.plan.steps {
        if let Some(x) = artifacts.get(&s.node.name) {
            let m = &x.manifest;
            let command_line = if s.node.name == step.node.name { original.command_line.clone() } else { vec![] };
            p.computed.insert(s.node.name.clone(), report::Computed { created: m.created.clone(), rhx_version: m.rhx_version.clone(), wall_time_s: m.wall_time_s, command_line });
        }
    }
    let templates = report::Templates { markdown: a.file("template.md.j2"), html: None };
    let dir = ctx.opts.reports_dir.join(&step.node.name);
    let files = report::write_report_with(&report, &dir, &templates).map_err(|e| err(e.to_string()))?;
    Ok(files.dir)
}

/// `to` relative to the folder `from` (which need not exist yet), through their absolute forms.
fn relative_path(from: &std::path::Path, to: &std::path::Path) -> Option<String> {
    use std::path::Component;
    let abs = |p: &std::path::Path| -> Option<PathBuf> {
        let p = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().ok()?.join(p) };
        // Lexical normalisation (`a/./b/../c` → `a/c`); the folder may not exist yet.
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                c => out.push(c),
            }
        }
        Some(out)
    };
    let (from, to) = (abs(from)?, abs(to)?);
    let (fc, tc): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = fc.iter().zip(&tc).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..fc.len() {
        rel.push("..");
    }
    for c in &tc[common..] {
        rel.push(c);
    }
    Some(rel.to_string_lossy().into_owned())
}

/// `compare: [paper.<name>]` needs that reference's values transcribed; a report is written in
/// both formats (`formats` other than `[md, html]` is declared, not implemented).
fn check(n: &Node) -> Result<(), Refusal> {
    let formats: Vec<&str> = n.arg("formats").and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(Value::as_str).collect();
    if !formats.is_empty() && formats != ["md", "html"] && formats != ["html", "md"] {
        return Err(Refusal::new("formats", format!("`formats: [{}]` is not implemented by the executor yet: a report is written as Markdown and HTML (`[md, html]`)", formats.join(", "))));
    }
    for v in n.arg("compare").and_then(Value::as_list).unwrap_or(&[]) {
        if let Value::Builtin { name, .. } = v {
            if !super::paper::has(name) {
                return Err(Refusal::new("compare", format!("`paper.{name}` is not implemented by the executor yet (its values are not transcribed: Sections 4–5)")));
            }
        }
    }
    Ok(())
}
