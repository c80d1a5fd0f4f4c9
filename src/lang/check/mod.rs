//! The checker: parsed files → [`Program`]. It resolves every name, checks every value against
//! the schema (types, enum values, ranges, placeholders, files), fills in defaults, expands
//! sweeps, checks heads against model shapes, finds dependency cycles and orders the
//! declarations. Every mistake becomes a [`Diagnostic`] with a span; nothing is loaded.
//!
//! One file per pass: `resolve` (names, constructors), `sweep`, `bind` (arguments to
//! parameters), `types` (values against types), `refs` (references and value functions), `lists`
//! (lists, ranges, linspace), `heads` (heads against model shapes), `captures` (analyses
//! against what their traces capture), `order` (topological order,
//! cycles); this file holds the checker's state and drives the passes.
mod bind;
mod captures;
mod heads;
mod lists;
mod order;
mod refs;
mod resolve;
mod sweep;
mod types;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use super::ast::{self, fmt_float, path_string, Expr, ExprKind, Ident, Item};
use super::diagnostics::{did_you_mean, finish, suggest, Code, Diagnostic};
use super::load::SourceSet;
use super::parser::parse_expr_at;
use super::program::{Arg, Experiment, FileInfo, Node, Origin, Program, Value};
use super::schema::{
    registry, Constraint, Default, Family, FuncSpec, Kind, PathKind, Registry, Ty,
};
use super::shapes::{ModelDecl, ModelShape, ModelShapes};
use super::source::{FileId, SourceMap, Span};

/// Most elements a range or `linspace` may produce.
const MAX_EXPANSION: usize = 100_000;
/// Most sweep instances one sweep may produce.
const MAX_INSTANCES: usize = 10_000;

/// Checks a loaded program.
pub fn check(set: &SourceSet, shapes: &dyn ModelShapes) -> Result<Program, Vec<Diagnostic>> {
    let mut cx = Checker::new(set, shapes);
    let program = cx.run();
    let Checker { diags, sources, .. } = cx;
    if diags.is_empty() {
        Ok(program)
    } else {
        Err(finish(diags, &sources))
    }
}

/// A sweep variable's value in one instance.
#[derive(Debug, Clone)]
struct Binding {
    var: String,
    value: Expr,
}

/// A declaration (or sweep instance) to check.
struct Sym<'a> {
    name: String,
    kind: Option<Kind>,
    decl: &'a ast::Decl,
    bindings: Vec<Binding>,
    /// Template name → instance name, for the other declarations of the same sweep instance.
    siblings: HashMap<String, String>,
    family: Option<String>,
}

enum Entry {
    Sym(usize),
    Family {
        kind: Option<Kind>,
        instances: Vec<String>,
    },
}

enum Lookup {
    Bound(Binding),
    Sym(usize),
    Family(Vec<String>, Option<Kind>),
    Missing,
}

/// State while checking one declaration.
struct Scope<'s> {
    node: String,
    bindings: &'s [Binding],
    siblings: &'s HashMap<String, String>,
    /// While checking a sweep value, the sweep's own names are out of scope.
    local: bool,
    deps: Vec<(String, Span)>,
}

/// What is being checked, for messages: parameter and function.
#[derive(Clone, Copy)]
struct What<'w> {
    param: &'w str,
    func: &'w str,
}

struct Checker<'a> {
    set: &'a SourceSet,
    reg: &'static Registry,
    shapes: &'a dyn ModelShapes,
    sources: SourceMap,
    diags: Vec<Diagnostic>,
    syms: Vec<Sym<'a>>,
    names: HashMap<String, Entry>,
    /// Where each name was declared (for duplicate errors).
    declared_at: HashMap<String, Span>,
    families: BTreeMap<String, Vec<String>>,
    /// Parsed defaults, by default text.
    defaults: HashMap<&'static str, Option<Expr>>,
    seed: i64,
    override_files: HashSet<FileId>,
    /// The selected profile's item: values written inside it are [`Origin::Profile`].
    profile_span: Option<Span>,
    /// The `revision:` written in the call being bound, for the Hub id of its `hf` model path.
    hub_revision: Option<String>,
}

impl<'a> Checker<'a> {
    fn new(set: &'a SourceSet, shapes: &'a dyn ModelShapes) -> Self {
        Checker {
            set,
            reg: registry(),
            shapes,
            sources: set.sources.clone(),
            diags: vec![],
            syms: vec![],
            names: HashMap::new(),
            declared_at: HashMap::new(),
            families: BTreeMap::new(),
            defaults: HashMap::new(),
            seed: 0,
            override_files: set.override_files.iter().copied().collect(),
            profile_span: set.profile.as_ref().map(|p| p.span),
            hub_revision: None,
        }
    }

    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Where a given value came from: a `--set` pseudo-file, the selected profile, or the text.
    fn origin(&self, span: Span) -> Origin {
        if self.override_files.contains(&span.file) {
            Origin::Override
        } else if self
            .profile_span
            .is_some_and(|p| p.file == span.file && p.start <= span.start && span.end <= p.end)
        {
            Origin::Profile
        } else {
            Origin::Written
        }
    }

    fn run(&mut self) -> Program {
        let experiment = self.experiment();
        self.collect();
        let mut nodes = vec![];
        let mut dep_spans: HashMap<String, Vec<(String, Span)>> = HashMap::new();
        for i in 0..self.syms.len() {
            if let Some((node, deps)) = self.check_sym(i) {
                dep_spans.insert(node.name.clone(), deps);
                nodes.push(node);
            }
        }
        self.check_heads(&nodes);
        self.check_captures(&nodes);
        let order = self.order(&nodes, &dep_spans);
        let mut by_name: HashMap<String, Node> =
            nodes.into_iter().map(|n| (n.name.clone(), n)).collect();
        let nodes = order
            .into_iter()
            .filter_map(|n| by_name.remove(&n))
            .collect();
        let files = self
            .set
            .files
            .iter()
            .map(|f| FileInfo {
                id: f.id,
                name: self.sources.get(f.id).name.clone(),
                imported_at: f.imported_at,
            })
            .collect();
        Program {
            experiment,
            nodes,
            families: self.families.clone(),
            profiles: self.set.profiles().map(|p| p.name.name.clone()).collect(),
            files,
            sources: self.sources.clone(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Experiment header

    fn experiment(&mut self) -> Experiment {
        let root = self.set.root_file();
        let stem = self
            .sources
            .get(root.id)
            .path
            .as_ref()
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let headers: Vec<&ast::Experiment> = root
            .ast
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Experiment(e) => Some(e),
                _ => None,
            })
            .collect();
        for extra in headers.iter().skip(1) {
            self.err(
                Diagnostic::new(
                    Code::DuplicateExperiment,
                    extra.span,
                    "a file has at most one `experiment` header",
                )
                .label("second header")
                .note(headers[0].span, "first header here")
                .help("merge the two headers"),
            );
        }
        let spec = &self.reg.experiment;
        let header = headers.first().copied();
        let block = header.and_then(|h| h.block.as_ref());
        let callee = header.map(|h| Ident {
            name: "experiment".into(),
            span: h.span,
        });
        let empty = HashMap::new();
        let mut sc = Scope {
            node: "experiment".into(),
            bindings: &[],
            siblings: &empty,
            local: true,
            deps: vec![],
        };
        let args = self.bind_args(spec, &[], block, callee.as_ref(), &mut sc, true);
        let seed = args
            .iter()
            .find(|a| a.name == "seed")
            .and_then(|a| a.value.as_ref())
            .and_then(Value::as_int)
            .unwrap_or(0);
        self.seed = seed;
        let profile = args
            .iter()
            .find(|a| a.name == "profile")
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| "default".into());
        let name = header
            .map(|h| h.name.value.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or(stem);
        Experiment {
            name,
            seed: seed.max(0) as u64,
            profile,
            args,
            span: header.map(|h| h.span),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Symbols and sweeps

}


// ---------------------------------------------------------------------------------------------
// Helpers

pub(super) fn decl_mentions(d: &ast::Decl, name: &str) -> bool {
    expr_mentions(&d.value, name)
        || d.block
            .as_ref()
            .is_some_and(|b| b.params.iter().any(|p| expr_mentions(&p.value, name)))
}

pub(super) fn expr_mentions(e: &Expr, name: &str) -> bool {
    match &e.kind {
        ExprKind::Path(p) => p.len() == 1 && p[0].name == name,
        ExprKind::List(items) => items.iter().any(|x| expr_mentions(x, name)),
        ExprKind::Range {
            start, end, step, ..
        } => {
            expr_mentions(start, name)
                || expr_mentions(end, name)
                || step.as_ref().is_some_and(|s| expr_mentions(s, name))
        }
        ExprKind::Call(c) => c.args.iter().any(|a| match a {
            ast::Arg::Positional(x) => expr_mentions(x, name),
            ast::Arg::Named(p) => expr_mentions(&p.value, name),
        }),
        _ => false,
    }
}

/// The part of an instance name that stands for a sweep value: `5`, `m5` (for -5), `0p5`,
/// `zero_output`.
pub(super) fn name_part(e: &Expr, index: usize) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    match &e.kind {
        ExprKind::Int(i) => {
            if *i < 0 {
                format!("m{}", i.unsigned_abs())
            } else {
                i.to_string()
            }
        }
        ExprKind::Float(f) => fmt_float(*f)
            .replace('-', "m")
            .replace('.', "p")
            .replace('+', ""),
        ExprKind::Str(s) if !s.is_empty() && s.len() <= 32 => clean(s),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Path(p) => clean(&path_string(p)),
        _ => index.to_string(),
    }
}

/// A sweep value as a [`Value`] for display.
pub(super) fn literal_value(e: &Expr) -> Value {
    match &e.kind {
        ExprKind::Int(i) => Value::Int(*i),
        ExprKind::Float(f) => Value::Float(*f),
        ExprKind::Str(s) => Value::Str(s.clone()),
        ExprKind::Bool(b) => Value::Bool(*b),
        ExprKind::Path(p) => Value::Enum(path_string(p)),
        ExprKind::List(items) => Value::List(items.iter().map(literal_value).collect()),
        _ => {
            let mut s = String::new();
            ast::expr_shape(e, &mut s);
            Value::Enum(s)
        }
    }
}

/// A parameter's doc without its leading reference-option name (`niah.depths: needle depths`
/// → `needle depths`).
pub(super) fn doc_text(doc: &'static str) -> &'static str {
    match doc.split_once(": ") {
        Some((head, rest)) if head.contains('.') && !head.contains(' ') => rest,
        _ => doc,
    }
}

pub(super) fn parse_head(s: &str) -> Option<(usize, usize)> {
    let rest = s.strip_prefix('L')?;
    let h = rest.find('H')?;
    let (l, hd) = (&rest[..h], &rest[h + 1..]);
    if l.is_empty()
        || hd.is_empty()
        || l.len() > 6
        || hd.len() > 6
        || !l.chars().all(|c| c.is_ascii_digit())
        || !hd.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    Some((l.parse().ok()?, hd.parse().ok()?))
}

pub(super) fn short_ty(ty: &Ty) -> String {
    match ty {
        Ty::Decl(k) => k.article().to_string(),
        Ty::List(t) => match &**t {
            Ty::Decl(k) => format!("{} or a list of them", k.article()),
            _ => "a list".into(),
        },
        Ty::Int { .. } => "an integer".into(),
        Ty::Float { .. } => "a number".into(),
        Ty::Str { .. } => "a string".into(),
        Ty::Path(_) | Ty::ModelSource => "a path string".into(),
        Ty::Enum(v) => format!("one of {}", v.join(", ")),
        Ty::Bool => "true or false".into(),
        Ty::Func(f) => format!("a {} call", f.name()),
        _ => "another kind of value".into(),
    }
}

pub(super) fn example_value(ty: &Ty) -> String {
    match ty {
        Ty::Int { min, .. } => min.map(|m| m.max(1)).unwrap_or(1).to_string(),
        Ty::Float { .. } => "0.5".into(),
        Ty::Bool => "true".into(),
        Ty::Str { .. } => "\"...\"".into(),
        Ty::Path(_) | Ty::ModelSource | Ty::HeadId => "\"...\"".into(),
        Ty::Enum(v) => v.first().copied().unwrap_or("...").into(),
        Ty::Builtin { ns, names } => format!("{ns}.{}", names.first().copied().unwrap_or("...")),
        Ty::Device => "auto".into(),
        Ty::Decl(_) => "<name>".into(),
        Ty::Func(_) => "...".into(),
        Ty::List(_) => "[...]".into(),
        Ty::OneOf(alts) => alts.first().map(example_value).unwrap_or_default(),
    }
}
