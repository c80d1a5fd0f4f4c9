//! Syntax tree of a `.rhx` file, exactly as written (nothing resolved). Every node keeps its
//! [`Span`]. Comments are not in the tree; the lexer records them for the formatter.
use std::fmt::Write as _;

use super::source::Span;

#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// One parsed file.
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Experiment(Experiment),
    Import(Import),
    Decl(Decl),
    Sweep(Sweep),
    Profile(Profile),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Experiment(x) => x.span,
            Item::Import(x) => x.span,
            Item::Decl(x) => x.span,
            Item::Sweep(x) => x.span,
            Item::Profile(x) => x.span,
        }
    }
}

/// `experiment "name" { seed: 0 }`
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub name: StrLit,
    pub block: Option<Block>,
    pub span: Span,
}

/// `import "common.rhx"`
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub path: StrLit,
    pub span: Span,
}

/// `<kind> <name> = <value> { <params> }`, e.g. `trace base = generate(smol, niah) { max_new_tokens: 40 }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Decl {
    pub kind: Ident,
    pub name: Ident,
    /// The constructor: a call (`gguf("x")`) or a bare constructor name (`niah`).
    pub value: Expr,
    pub block: Option<Block>,
    pub span: Span,
}

impl Decl {
    /// Constructor name and its span, if the value has the shape of a constructor.
    pub fn constructor(&self) -> Option<&Ident> {
        match &self.value.kind {
            ExprKind::Call(c) => Some(&c.func),
            ExprKind::Path(p) if p.len() == 1 => Some(&p[0]),
            _ => None,
        }
    }
}

/// `sweep k in [0, 5, 10], mode in [a, b] { <decls> }`
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub vars: Vec<SweepVar>,
    pub body: Vec<Decl>,
    /// From `{` to `}` inclusive.
    pub body_span: Span,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SweepVar {
    pub name: Ident,
    pub values: Expr,
    pub span: Span,
}

/// `profile full { niah.runs: 5, k: 0..=20 step 5 }`: named overrides, applied only when
/// selected (`--profile full`), so an unselected profile never changes the program.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: Ident,
    pub entries: Vec<ProfileEntry>,
    /// From `{` to `}` inclusive.
    pub body_span: Span,
    pub span: Span,
}

/// `niah.runs: 5` in a profile: the key is what `--set` takes left of `=`
/// (`decl.param`, `experiment.param` or a sweep variable).
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileEntry {
    pub path: Vec<Ident>,
    pub value: Expr,
    pub span: Span,
}

impl ProfileEntry {
    /// The key's span (`niah.runs`).
    pub fn path_span(&self) -> Span {
        match (self.path.first(), self.path.last()) {
            (Some(a), Some(b)) => a.span.to(b.span),
            _ => self.span,
        }
    }
}

/// `{ name: value, ... }`
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub params: Vec<Param>,
    /// From `{` to `}` inclusive.
    pub span: Span,
}

/// `name: value` (in a block or as a named call argument).
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StrLit {
    /// The decoded value (escapes applied, `{placeholders}` kept verbatim).
    pub value: String,
    /// Including the quotes.
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    /// A name (`smol`), an enum value (`f32`) or a dotted built-in (`builtin.alice`).
    Path(Vec<Ident>),
    List(Vec<Expr>),
    /// `a..b step s` (`inclusive` for `..=`).
    Range {
        start: Box<Expr>,
        end: Box<Expr>,
        step: Option<Box<Expr>>,
        inclusive: bool,
    },
    Call(Call),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub func: Ident,
    pub args: Vec<Arg>,
    /// From `(` to `)` inclusive.
    pub args_span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Positional(Expr),
    Named(Param),
}

impl Arg {
    pub fn span(&self) -> Span {
        match self {
            Arg::Positional(e) => e.span,
            Arg::Named(p) => p.span,
        }
    }
}

impl ExprKind {
    /// A short description for "found ..." in type errors.
    pub fn describe(&self) -> String {
        match self {
            ExprKind::Int(i) => format!("the integer `{i}`"),
            ExprKind::Float(f) => format!("the number `{}`", fmt_float(*f)),
            ExprKind::Str(s) => {
                let short: String = s.chars().take(30).collect();
                let dots = if s.chars().count() > 30 { "…" } else { "" };
                format!("the string \"{short}{dots}\"")
            }
            ExprKind::Bool(b) => format!("`{b}`"),
            ExprKind::Path(p) => format!("`{}`", path_string(p)),
            ExprKind::List(_) => "a list".into(),
            ExprKind::Range { .. } => "a range".into(),
            ExprKind::Call(c) => format!("a call to `{}`", c.func.name),
        }
    }
}

pub fn path_string(p: &[Ident]) -> String {
    p.iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(".")
}

/// Canonical float text: the shortest form that reads back to the same `f64`, always with a
/// `.` or an exponent so that it stays a float.
pub fn fmt_float(f: f64) -> String {
    let s = format!("{f:?}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// Canonical string literal (with quotes).
pub fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// A span-free rendering of the tree, used to compare trees "minus spans" (formatter tests) and
// as a readable dump.

impl File {
    /// S-expression of the tree without spans: two files with equal `shape()` differ only in
    /// layout and comments.
    pub fn shape(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            match item {
                Item::Experiment(e) => {
                    let _ = write!(out, "(experiment {}", quote_str(&e.name.value));
                    if let Some(b) = &e.block {
                        block_shape(b, &mut out);
                    }
                    out.push_str(")\n");
                }
                Item::Import(i) => {
                    let _ = writeln!(out, "(import {})", quote_str(&i.path.value));
                }
                Item::Decl(d) => {
                    decl_shape(d, &mut out);
                    out.push('\n');
                }
                Item::Sweep(s) => {
                    out.push_str("(sweep");
                    for v in &s.vars {
                        let _ = write!(out, " ({} ", v.name.name);
                        expr_shape(&v.values, &mut out);
                        out.push(')');
                    }
                    for d in &s.body {
                        out.push(' ');
                        decl_shape(d, &mut out);
                    }
                    out.push_str(")\n");
                }
                Item::Profile(p) => {
                    let _ = write!(out, "(profile {}", p.name.name);
                    for e in &p.entries {
                        let _ = write!(out, " ({} ", path_string(&e.path));
                        expr_shape(&e.value, &mut out);
                        out.push(')');
                    }
                    out.push_str(")\n");
                }
            }
        }
        out
    }
}

fn decl_shape(d: &Decl, out: &mut String) {
    let _ = write!(out, "(decl {} {} ", d.kind.name, d.name.name);
    expr_shape(&d.value, out);
    if let Some(b) = &d.block {
        block_shape(b, out);
    }
    out.push(')');
}

fn block_shape(b: &Block, out: &mut String) {
    out.push_str(" {");
    for p in &b.params {
        let _ = write!(out, " {}: ", p.name.name);
        expr_shape(&p.value, out);
    }
    out.push_str(" }");
}

pub(crate) fn expr_shape(e: &Expr, out: &mut String) {
    match &e.kind {
        ExprKind::Int(i) => {
            let _ = write!(out, "{i}");
        }
        ExprKind::Float(f) => out.push_str(&fmt_float(*f)),
        ExprKind::Str(s) => out.push_str(&quote_str(s)),
        ExprKind::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        ExprKind::Path(p) => out.push_str(&path_string(p)),
        ExprKind::List(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                expr_shape(x, out);
            }
            out.push(']');
        }
        ExprKind::Range {
            start,
            end,
            step,
            inclusive,
        } => {
            out.push_str("(range ");
            expr_shape(start, out);
            out.push_str(if *inclusive { " ..= " } else { " .. " });
            expr_shape(end, out);
            if let Some(s) = step {
                out.push_str(" step ");
                expr_shape(s, out);
            }
            out.push(')');
        }
        ExprKind::Call(c) => {
            let _ = write!(out, "({}", c.func.name);
            for a in &c.args {
                out.push(' ');
                match a {
                    Arg::Positional(e) => expr_shape(e, out),
                    Arg::Named(p) => {
                        let _ = write!(out, "{}: ", p.name.name);
                        expr_shape(&p.value, out);
                    }
                }
            }
            out.push(')');
        }
    }
}
