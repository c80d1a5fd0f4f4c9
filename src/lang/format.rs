//! The formatter: canonical layout of a `.rhx` file.
//!
//! * 2-space indentation; one declaration per line, blank lines between items kept (at most one).
//! * A block, list or call stays on one line when it fits in [`WIDTH`] columns and holds no
//!   comment; otherwise it is broken with one element per line and a trailing comma.
//! * Spacing is normalised (`a: 1`, `x = f(a, b)`, `0..20 step 5`); numbers and strings are
//!   written in canonical form (`1_000` → `1000`, `1.50` → `1.5`, escapes re-escaped).
//! * Every comment is kept: a comment on the same line after an element stays there; other
//!   comments go on their own line before the next element (or before the closing bracket).
//!   Comments inside an element but outside any bracket (e.g. between `model` and its name)
//!   move to the line before that element.
//!
//! `format_source(format_source(x)) == format_source(x)` and the syntax tree (minus spans) is
//! unchanged; both are property-tested.
use std::collections::HashMap;

use super::ast::*;
use super::diagnostics::{finish, Diagnostic};
use super::lexer::Comment;
use super::parser::{parse_source, Parsed};
use super::source::SourceMap;

/// Preferred line width.
pub const WIDTH: usize = 80;
const INDENT: &str = "  ";

/// Formats `.rhx` text; fails only on a syntax error.
pub fn format_source(text: &str) -> Result<String, Diagnostic> {
    let mut sources = SourceMap::new();
    let id = sources.add("<input>", None, text);
    let parsed = parse_source(id, text).map_err(|d| finish(vec![d], &sources).remove(0))?;
    Ok(format_parsed(text, &parsed))
}

/// Formats an already parsed file (`text` is the text it was parsed from).
pub fn format_parsed(text: &str, parsed: &Parsed) -> String {
    let mut f = Formatter {
        text,
        comments: &parsed.comments,
        owned: HashMap::new(),
    };
    f.assign(&parsed.file);
    let mut out = f.items(&parsed.file.items, (0, text.len()), 0);
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

type Interior = (usize, usize);

struct Formatter<'t> {
    text: &'t str,
    comments: &'t [Comment],
    /// Container interior → indices of the comments it owns (innermost container wins).
    owned: HashMap<Interior, Vec<usize>>,
}

/// Comments distributed over a container's elements.
struct Slots {
    leading: Vec<Vec<usize>>,
    trailing: Vec<Option<usize>>,
    dangling: Vec<usize>,
}

fn interior(span: crate::lang::source::Span) -> Interior {
    (
        span.start + 1,
        span.end.saturating_sub(1).max(span.start + 1),
    )
}

impl<'t> Formatter<'t> {
    // ---- comment ownership ----------------------------------------------------------------

    fn assign(&mut self, file: &File) {
        let mut containers = vec![(0, self.text.len())];
        for item in &file.items {
            match item {
                Item::Experiment(e) => {
                    if let Some(b) = &e.block {
                        block_containers(b, &mut containers);
                    }
                }
                Item::Import(_) => {}
                Item::Decl(d) => decl_containers(d, &mut containers),
                Item::Sweep(s) => {
                    containers.push(interior(s.body_span));
                    for v in &s.vars {
                        expr_containers(&v.values, &mut containers);
                    }
                    for d in &s.body {
                        decl_containers(d, &mut containers);
                    }
                }
                Item::Profile(p) => {
                    containers.push(interior(p.body_span));
                    for e in &p.entries {
                        expr_containers(&e.value, &mut containers);
                    }
                }
            }
        }
        for (i, c) in self.comments.iter().enumerate() {
            let owner = containers
                .iter()
                .filter(|(s, e)| *s <= c.start && c.start < *e)
                .max_by_key(|(s, _)| *s)
                .copied()
                .unwrap_or((0, self.text.len()));
            self.owned.entry(owner).or_default().push(i);
        }
    }

    fn has_comments(&self, int: Interior) -> bool {
        self.owned.get(&int).is_some_and(|v| !v.is_empty())
    }

    fn slots(&self, int: Interior, elems: &[(usize, usize)]) -> Slots {
        let mut s = Slots {
            leading: vec![vec![]; elems.len()],
            trailing: vec![None; elems.len()],
            dangling: vec![],
        };
        for &ci in self.owned.get(&int).map(Vec::as_slice).unwrap_or(&[]) {
            let c = &self.comments[ci];
            let prev = elems.iter().rposition(|(_, end)| *end <= c.start);
            if let Some(j) = prev {
                let gap = &self.text[elems[j].1..c.start];
                let before_next = elems.get(j + 1).is_none_or(|(st, _)| c.start < *st);
                if !gap.contains('\n') && before_next && s.trailing[j].is_none() {
                    s.trailing[j] = Some(ci);
                    continue;
                }
            }
            match elems.iter().position(|(_, end)| *end > c.start) {
                Some(k) => s.leading[k].push(ci),
                None => s.dangling.push(ci),
            }
        }
        s
    }

    fn blank_between(&self, a: usize, b: usize) -> bool {
        a < b && b <= self.text.len() && self.text[a..b].matches('\n').count() >= 2
    }

    // ---- sequences ---------------------------------------------------------------------------

    /// Lays out a container's elements one per line. `render(k, indent)` formats element k;
    /// `comma` adds a trailing comma; `blanks` keeps blank lines between elements.
    fn lines(
        &self,
        int: Interior,
        spans: &[(usize, usize)],
        indent: usize,
        comma: bool,
        blanks: bool,
        render: &mut dyn FnMut(usize, usize) -> String,
    ) -> String {
        let slots = self.slots(int, spans);
        let ind = INDENT.repeat(indent);
        let mut out = String::new();
        let mut last_end: Option<usize> = None; // end of the previous thing written (source offset)
        for (k, span) in spans.iter().enumerate() {
            for &ci in &slots.leading[k] {
                let c = &self.comments[ci];
                if blanks && last_end.is_some_and(|e| self.blank_between(e, c.start)) {
                    out.push('\n');
                }
                out.push_str(&ind);
                out.push_str(&c.text);
                out.push('\n');
                last_end = Some(c.end);
            }
            if blanks && last_end.is_some_and(|e| self.blank_between(e, span.0)) {
                out.push('\n');
            }
            out.push_str(&ind);
            out.push_str(&render(k, indent));
            if comma {
                out.push(',');
            }
            last_end = Some(span.1);
            if let Some(ci) = slots.trailing[k] {
                out.push(' ');
                out.push_str(&self.comments[ci].text);
                last_end = Some(self.comments[ci].end);
            }
            out.push('\n');
        }
        for &ci in &slots.dangling {
            let c = &self.comments[ci];
            if blanks && last_end.is_some_and(|e| self.blank_between(e, c.start)) {
                out.push('\n');
            }
            out.push_str(&ind);
            out.push_str(&c.text);
            out.push('\n');
            last_end = Some(c.end);
        }
        out
    }

    fn items(&self, items: &[Item], int: Interior, indent: usize) -> String {
        let spans: Vec<(usize, usize)> = items
            .iter()
            .map(|i| (i.span().start, i.span().end))
            .collect();
        self.lines(int, &spans, indent, false, true, &mut |k, ind| {
            self.item(&items[k], ind)
        })
    }

    fn item(&self, item: &Item, indent: usize) -> String {
        match item {
            Item::Experiment(e) => {
                let head = format!("experiment {}", quote_str(&e.name.value));
                match &e.block {
                    None => head,
                    Some(b) => self.with_block(head, b, indent),
                }
            }
            Item::Import(i) => format!("import {}", quote_str(&i.path.value)),
            Item::Decl(d) => self.decl(d, indent),
            Item::Sweep(s) => {
                let col = indent * 2;
                let mut head = String::from("sweep ");
                for (i, v) in s.vars.iter().enumerate() {
                    if i > 0 {
                        head.push_str(", ");
                    }
                    let prefix = format!("{} in ", v.name.name);
                    let value = self.expr(&v.values, indent, col + head.len() + prefix.len());
                    head.push_str(&prefix);
                    head.push_str(&value);
                }
                let body_int = interior(s.body_span);
                if s.body.is_empty() && !self.has_comments(body_int) {
                    return format!("{head} {{}}");
                }
                let spans: Vec<(usize, usize)> =
                    s.body.iter().map(|d| (d.span.start, d.span.end)).collect();
                let body = self.lines(body_int, &spans, indent + 1, false, true, &mut |k, ind| {
                    self.decl(&s.body[k], ind)
                });
                format!("{head} {{\n{body}{}}}", INDENT.repeat(indent))
            }
            Item::Profile(p) => self.profile(p, indent),
        }
    }

    /// `profile name { path: value, ... }`: laid out like a declaration's block.
    fn profile(&self, p: &Profile, indent: usize) -> String {
        let head = format!("profile {}", p.name.name);
        let body_int = interior(p.body_span);
        if !self.has_comments(body_int) {
            let flat: Option<Vec<String>> = p
                .entries
                .iter()
                .map(|e| {
                    self.flat(&e.value)
                        .map(|v| format!("{}: {v}", path_string(&e.path)))
                })
                .collect();
            if let Some(parts) = flat {
                if parts.is_empty() {
                    return format!("{head} {{}}");
                }
                let line = format!("{head} {{ {} }}", parts.join(", "));
                if indent * 2 + line.chars().count() <= WIDTH {
                    return line;
                }
            }
        }
        let spans: Vec<(usize, usize)> = p
            .entries
            .iter()
            .map(|e| (e.span.start, e.span.end))
            .collect();
        let body = self.lines(body_int, &spans, indent + 1, true, true, &mut |k, ind| {
            let e = &p.entries[k];
            let prefix = format!("{}: ", path_string(&e.path));
            let v = self.expr(&e.value, ind, ind * 2 + prefix.len());
            format!("{prefix}{v}")
        });
        format!("{head} {{\n{body}{}}}", INDENT.repeat(indent))
    }

    fn decl(&self, d: &Decl, indent: usize) -> String {
        let head = format!("{} {} = ", d.kind.name, d.name.name);
        let col = indent * 2 + head.len();
        match &d.block {
            None => format!("{head}{}", self.expr(&d.value, indent, col)),
            Some(b) => {
                // All on one line if it fits and nothing inside has comments.
                if let (Some(v), Some(bf)) = (self.flat(&d.value), self.flat_block(b)) {
                    let line = format!("{head}{v} {bf}");
                    if indent * 2 + line.chars().count() <= WIDTH {
                        return line;
                    }
                }
                let value = self.expr(&d.value, indent, col);
                self.with_block(format!("{head}{value}"), b, indent)
            }
        }
    }

    /// `head { ... }`: on one line if it fits, else one parameter per line.
    fn with_block(&self, head: String, b: &Block, indent: usize) -> String {
        if let Some(bf) = self.flat_block(b) {
            let last = head.rsplit('\n').next().unwrap_or("");
            let col = if head.contains('\n') { 0 } else { indent * 2 };
            if !head.contains('\n') && col + last.chars().count() + 1 + bf.chars().count() <= WIDTH
            {
                return format!("{head} {bf}");
            }
            if b.params.is_empty() {
                return format!("{head} {{}}");
            }
        }
        let spans: Vec<(usize, usize)> = b
            .params
            .iter()
            .map(|p| (p.span.start, p.span.end))
            .collect();
        let body = self.lines(
            interior(b.span),
            &spans,
            indent + 1,
            true,
            true,
            &mut |k, ind| self.param(&b.params[k], ind),
        );
        format!("{head} {{\n{body}{}}}", INDENT.repeat(indent))
    }

    fn param(&self, p: &Param, indent: usize) -> String {
        let prefix = format!("{}: ", p.name.name);
        let v = self.expr(&p.value, indent, indent * 2 + prefix.len());
        format!("{prefix}{v}")
    }

    fn flat_block(&self, b: &Block) -> Option<String> {
        if self.has_comments(interior(b.span)) {
            return None;
        }
        if b.params.is_empty() {
            return Some("{}".into());
        }
        let parts: Option<Vec<String>> = b
            .params
            .iter()
            .map(|p| self.flat(&p.value).map(|v| format!("{}: {v}", p.name.name)))
            .collect();
        Some(format!("{{ {} }}", parts?.join(", ")))
    }

    // ---- expressions -------------------------------------------------------------------------

    /// One-line form, or `None` if a comment inside forces line breaks.
    fn flat(&self, e: &Expr) -> Option<String> {
        Some(match &e.kind {
            ExprKind::Int(i) => i.to_string(),
            ExprKind::Float(f) => fmt_float(*f),
            ExprKind::Str(s) => quote_str(s),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Path(p) => path_string(p),
            ExprKind::List(items) => {
                if self.has_comments(interior(e.span)) {
                    return None;
                }
                let parts: Option<Vec<String>> = items.iter().map(|x| self.flat(x)).collect();
                format!("[{}]", parts?.join(", "))
            }
            ExprKind::Range {
                start,
                end,
                step,
                inclusive,
            } => {
                let mut s = format!(
                    "{}{}{}",
                    self.flat(start)?,
                    if *inclusive { "..=" } else { ".." },
                    self.flat(end)?
                );
                if let Some(st) = step {
                    s.push_str(" step ");
                    s.push_str(&self.flat(st)?);
                }
                s
            }
            ExprKind::Call(c) => {
                if self.has_comments(interior(c.args_span)) {
                    return None;
                }
                let parts: Option<Vec<String>> = c.args.iter().map(|a| self.flat_arg(a)).collect();
                format!("{}({})", c.func.name, parts?.join(", "))
            }
        })
    }

    fn flat_arg(&self, a: &Arg) -> Option<String> {
        match a {
            Arg::Positional(e) => self.flat(e),
            Arg::Named(p) => Some(format!("{}: {}", p.name.name, self.flat(&p.value)?)),
        }
    }

    /// Formats `e` starting at column `col` of a line indented `indent` levels.
    fn expr(&self, e: &Expr, indent: usize, col: usize) -> String {
        if let Some(f) = self.flat(e) {
            // +1 leaves room for a trailing comma.
            if col + f.chars().count() < WIDTH
                || !matches!(e.kind, ExprKind::List(_) | ExprKind::Call(_))
            {
                return f;
            }
        }
        match &e.kind {
            ExprKind::List(items) => {
                if items.is_empty() && !self.has_comments(interior(e.span)) {
                    return "[]".into();
                }
                let spans: Vec<(usize, usize)> =
                    items.iter().map(|x| (x.span.start, x.span.end)).collect();
                let body = self.lines(
                    interior(e.span),
                    &spans,
                    indent + 1,
                    true,
                    false,
                    &mut |k, ind| self.expr(&items[k], ind, ind * 2),
                );
                format!("[\n{body}{}]", INDENT.repeat(indent))
            }
            ExprKind::Call(c) => {
                if c.args.is_empty() && !self.has_comments(interior(c.args_span)) {
                    return format!("{}()", c.func.name);
                }
                let spans: Vec<(usize, usize)> = c
                    .args
                    .iter()
                    .map(|a| (a.span().start, a.span().end))
                    .collect();
                let body = self.lines(
                    interior(c.args_span),
                    &spans,
                    indent + 1,
                    true,
                    false,
                    &mut |k, ind| match &c.args[k] {
                        Arg::Positional(x) => self.expr(x, ind, ind * 2),
                        Arg::Named(p) => self.param(p, ind),
                    },
                );
                format!("{}(\n{body}{})", c.func.name, INDENT.repeat(indent))
            }
            // Ranges hold no brackets, so no comments of their own; `flat` never fails.
            _ => self.flat(e).unwrap_or_default(),
        }
    }
}

fn block_containers(b: &Block, out: &mut Vec<Interior>) {
    out.push(interior(b.span));
    for p in &b.params {
        expr_containers(&p.value, out);
    }
}

fn decl_containers(d: &Decl, out: &mut Vec<Interior>) {
    expr_containers(&d.value, out);
    if let Some(b) = &d.block {
        block_containers(b, out);
    }
}

fn expr_containers(e: &Expr, out: &mut Vec<Interior>) {
    match &e.kind {
        ExprKind::List(items) => {
            out.push(interior(e.span));
            for x in items {
                expr_containers(x, out);
            }
        }
        ExprKind::Call(c) => {
            out.push(interior(c.args_span));
            for a in &c.args {
                match a {
                    Arg::Positional(x) => expr_containers(x, out),
                    Arg::Named(p) => expr_containers(&p.value, out),
                }
            }
        }
        ExprKind::Range {
            start, end, step, ..
        } => {
            expr_containers(start, out);
            expr_containers(end, out);
            if let Some(s) = step {
                expr_containers(s, out);
            }
        }
        _ => {}
    }
}
