//! The checked program: every reference resolved to a declaration, every parameter validated
//! and defaulted, sweeps expanded, imports merged, declarations in dependency order. This is
//! what the planner consumes.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::ast::{fmt_float, quote_str};
use super::schema::{Family, Kind};
use super::source::{FileId, SourceMap, Span};

/// A checked, resolved program.
#[derive(Debug, Clone)]
pub struct Program {
    pub experiment: Experiment,
    /// Declarations (sweep instances included) in a topological order: every node comes after
    /// the nodes it depends on; ties keep source order (imported files first).
    pub nodes: Vec<Node>,
    /// Sweep families: template name → instance names, in expansion order.
    pub families: BTreeMap<String, Vec<String>>,
    /// Names of the root file's `profile` blocks, in order (the one applied, if any, is
    /// `experiment.profile`).
    pub profiles: Vec<String>,
    /// Files of the program, in the order their declarations were read.
    pub files: Vec<FileInfo>,
    pub sources: SourceMap,
}

#[derive(Debug, Clone)]
pub struct FileInfo {
    pub id: FileId,
    pub name: String,
    /// The `import` that brought the file in (`None` for the root file and overrides).
    pub imported_at: Option<Span>,
}

/// The `experiment "name" { ... }` header (defaults if the file has none).
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub seed: u64,
    pub profile: String,
    pub args: Vec<Arg>,
    pub span: Option<Span>,
}

/// One declaration (or sweep instance, or inline constructor call).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Declared name; for a sweep instance `<template>_<var><value>...`; for an inline call
    /// `<parent>.<param>`.
    pub name: String,
    pub kind: Kind,
    pub constructor: String,
    /// Every parameter of the constructor, in schema order.
    pub args: Vec<Arg>,
    /// Names of the declarations this one uses (directly or through inline calls), sorted.
    pub deps: Vec<String>,
    pub span: Span,
    /// For a sweep instance: the sweep variables and their values.
    pub sweep: Vec<(String, Value)>,
    /// For a sweep instance: the template's name (its family).
    pub family: Option<String>,
}

impl Node {
    pub fn arg(&self, name: &str) -> Option<&Value> {
        self.args
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.value.as_ref())
    }

    pub fn arg_entry(&self, name: &str) -> Option<&Arg> {
        self.args.iter().find(|a| a.name == name)
    }
}

/// Where a parameter's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Written in the program.
    Written,
    /// The schema's default.
    Default,
    /// A `--set` override.
    Override,
    /// An entry of the profile selected with `--profile`.
    Profile,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub name: String,
    /// `None` for an optional parameter left out.
    pub value: Option<Value>,
    pub origin: Origin,
    /// Span of the written value (or of the sweep value it came from).
    pub span: Option<Span>,
}

/// A checked value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// An enum value, e.g. `f32`.
    Enum(String),
    /// `builtin.alice`, `paper.table1`.
    Builtin {
        ns: String,
        name: String,
    },
    /// A file or folder: as written, and resolved against the file that names it.
    Path {
        written: String,
        resolved: PathBuf,
    },
    /// A model name that the engine resolves (e.g. `smollm2-135m-instruct`).
    ModelName(String),
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    Device(String),
    /// One attention head.
    Head {
        layer: usize,
        head: usize,
        span: Option<Span>,
    },
    /// A reference to another declaration.
    Ref {
        kind: Kind,
        name: String,
    },
    /// An inline constructor call (an anonymous declaration).
    Inline(Box<Node>),
    /// A capture or intervention function call.
    Call {
        family: Family,
        func: String,
        args: Vec<Arg>,
    },
    List(Vec<Value>),
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Enum(s) | Value::ModelName(s) | Value::Device(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// The value as `.rhx` text (inline calls and function calls show only written and
    /// overridden arguments).
    pub fn render(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Float(f) => fmt_float(*f),
            Value::Bool(b) => b.to_string(),
            Value::Str(s) => quote_str(s),
            Value::Enum(s) => s.clone(),
            Value::ModelName(s) => quote_str(s),
            Value::Device(s) => s.clone(),
            Value::Builtin { ns, name } => format!("{ns}.{name}"),
            Value::Path { written, .. } => quote_str(written),
            Value::Head { layer, head, .. } => format!("\"L{layer}H{head}\""),
            Value::Ref { name, .. } => name.clone(),
            Value::Inline(n) => format!("{}({})", n.constructor, render_args(&n.args)),
            Value::Call { func, args, .. } => format!("{func}({})", render_args(args)),
            Value::List(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(Value::render)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

fn render_args(args: &[Arg]) -> String {
    let mut parts = vec![];
    for a in args {
        if let (Some(v), Origin::Written | Origin::Override | Origin::Profile) =
            (&a.value, a.origin)
        {
            parts.push(format!("{}: {}", a.name, v.render()));
        }
    }
    parts.join(", ")
}

impl Program {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// A readable listing of the resolved program: the header, the files, then every node in
    /// dependency order with all its parameters (`= default` marks defaults, `= --set` marks
    /// overrides, `= --profile` profile entries) and what it depends on.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let e = &self.experiment;
        let _ = writeln!(s, "experiment {}", quote_str(&e.name));
        dump_args(&mut s, &e.args, "  ");
        let _ = writeln!(s, "files:");
        for f in &self.files {
            match f.imported_at {
                Some(sp) => {
                    let _ = writeln!(
                        s,
                        "  {} (imported at {})",
                        f.name,
                        self.sources.location(sp)
                    );
                }
                None => {
                    let _ = writeln!(s, "  {}", f.name);
                }
            }
        }
        if !self.families.is_empty() {
            let _ = writeln!(s, "sweeps:");
            for (fam, inst) in &self.families {
                let _ = writeln!(s, "  {fam} = [{}]", inst.join(", "));
            }
        }
        let _ = writeln!(
            s,
            "order: {}",
            self.nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for n in &self.nodes {
            s.push('\n');
            dump_node(&mut s, n, "", &self.sources);
        }
        s
    }
}

fn dump_node(s: &mut String, n: &Node, indent: &str, sources: &SourceMap) {
    let _ = write!(
        s,
        "{indent}{} {} = {}",
        n.kind.name(),
        n.name,
        n.constructor
    );
    if indent.is_empty() {
        let _ = write!(s, "    # {}", sources.location(n.span));
    }
    s.push('\n');
    let inner = format!("{indent}  ");
    if !n.sweep.is_empty() {
        let _ = writeln!(
            s,
            "{inner}sweep: {}",
            n.sweep
                .iter()
                .map(|(k, v)| format!("{k} = {}", v.render()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    dump_args(s, &n.args, &inner);
    if !n.deps.is_empty() && indent.is_empty() {
        let _ = writeln!(s, "{inner}deps: {}", n.deps.join(", "));
    }
}

fn dump_args(s: &mut String, args: &[Arg], indent: &str) {
    for a in args {
        let Some(v) = &a.value else { continue };
        let mark = match a.origin {
            Origin::Written => "",
            Origin::Default => "    = default",
            Origin::Override => "    = --set",
            Origin::Profile => "    = --profile",
        };
        match v {
            Value::Inline(n) => {
                let _ = writeln!(
                    s,
                    "{indent}{}: {} {}(...){mark}",
                    a.name,
                    n.kind.name(),
                    n.constructor
                );
                dump_args(s, &n.args, &format!("{indent}    "));
            }
            Value::Call { func, args, .. } => {
                let _ = writeln!(s, "{indent}{}: {func}(...){mark}", a.name);
                dump_args(s, args, &format!("{indent}    "));
            }
            Value::List(items)
                if items
                    .iter()
                    .any(|i| matches!(i, Value::Call { .. } | Value::Inline(_))) =>
            {
                let _ = writeln!(s, "{indent}{}: [{mark}", a.name);
                for it in items {
                    match it {
                        Value::Call { func, args, .. } => {
                            let _ = writeln!(s, "{indent}    {func}(...)");
                            dump_args(s, args, &format!("{indent}        "));
                        }
                        Value::Inline(n) => {
                            let _ =
                                writeln!(s, "{indent}    {} {}(...)", n.kind.name(), n.constructor);
                            dump_args(s, &n.args, &format!("{indent}        "));
                        }
                        other => {
                            let _ = writeln!(s, "{indent}    {}", other.render());
                        }
                    }
                }
                let _ = writeln!(s, "{indent}  ]");
            }
            Value::Ref { kind, name } => {
                let _ = writeln!(s, "{indent}{}: -> {} {name}{mark}", a.name, kind.name());
            }
            Value::Path { written, resolved } => {
                let _ = writeln!(
                    s,
                    "{indent}{}: {} (file: {}){mark}",
                    a.name,
                    quote_str(written),
                    resolved.display()
                );
            }
            other => {
                let _ = writeln!(s, "{indent}{}: {}{mark}", a.name, other.render());
            }
        }
    }
}
