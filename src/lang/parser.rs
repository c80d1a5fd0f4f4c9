//! pest binding: text → [`ast::File`]. The lexer runs first (comments, strings, brackets);
//! pest checks the structure; this module builds the typed tree and turns pest's
//! "expected rule X" into "expected `=`, found `gguf`".
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::Parser as _;

use super::ast::*;
use super::diagnostics::{suggest, Code, Diagnostic};
use super::lexer::{self, Comment};
use super::source::{FileId, Span};

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/rhx.pest"]
struct RhxParser;

/// A parsed file with its comments.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub file: File,
    pub comments: Vec<Comment>,
}

/// Parses one file's text.
pub fn parse_source(file: FileId, text: &str) -> Result<Parsed, Diagnostic> {
    let comments = lexer::scan(file, text)?;
    let mut pairs =
        RhxParser::parse(Rule::file, text).map_err(|e| convert_error(file, text, 0, e))?;
    let b = Builder { file, offset: 0 };
    let root = pairs.next().expect("file rule");
    let span = b.span(&root);
    let mut items = vec![];
    for p in root.into_inner() {
        match p.as_rule() {
            Rule::experiment => items.push(Item::Experiment(b.experiment(p)?)),
            Rule::import => items.push(Item::Import(b.import(p)?)),
            Rule::decl => items.push(Item::Decl(b.decl(p)?)),
            Rule::sweep => items.push(Item::Sweep(b.sweep(p)?)),
            Rule::profile => items.push(Item::Profile(b.profile(p)?)),
            _ => {}
        }
    }
    Ok(Parsed {
        file: File { items, span },
        comments,
    })
}

/// Parses an expression that starts at byte `offset` of file `file` (whose text is `full`);
/// used for `--set path=value` overrides, whose pseudo-file holds the whole override.
pub fn parse_expr_at(file: FileId, full: &str, offset: usize) -> Result<Expr, Diagnostic> {
    let text = &full[offset..];
    let comments = lexer::scan(file, text).map_err(|mut d| {
        shift(&mut d, offset);
        d
    })?;
    if let Some(c) = comments.first() {
        return Err(Diagnostic::new(
            Code::Syntax,
            Span::new(file, offset + c.start, offset + c.end),
            "comments are not allowed in an override value",
        ));
    }
    let mut pairs = RhxParser::parse(Rule::expr_only, text)
        .map_err(|e| convert_error(file, text, offset, e))?;
    let b = Builder { file, offset };
    let root = pairs.next().expect("expr_only rule");
    let inner = root
        .into_inner()
        .find(|p| p.as_rule() != Rule::EOI)
        .expect("expr");
    b.expr(inner)
}

fn shift(d: &mut Diagnostic, offset: usize) {
    if let Some(s) = &mut d.span {
        s.start += offset;
        s.end += offset;
    }
    for n in &mut d.notes {
        n.span.start += offset;
        n.span.end += offset;
    }
}

struct Builder {
    file: FileId,
    offset: usize,
}

type R<T> = Result<T, Diagnostic>;

impl Builder {
    /// The pair's span without trailing whitespace and comments (pest includes the trivia it
    /// skipped before trying an optional element that was absent, e.g. a declaration's block).
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        Span::new(self.file, s.start() + self.offset, end_of(p) + self.offset)
    }

    fn ident(&self, p: Pair<Rule>) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn string(&self, p: Pair<Rule>) -> StrLit {
        let raw = p.as_str();
        let inner = &raw[1..raw.len() - 1];
        StrLit {
            value: lexer::unescape(inner),
            span: self.span(&p),
        }
    }

    fn experiment(&self, p: Pair<Rule>) -> R<Experiment> {
        let span = self.span(&p);
        let mut name = None;
        let mut block = None;
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::string => name = Some(self.string(c)),
                Rule::block => block = Some(self.block(c)?),
                _ => {}
            }
        }
        Ok(Experiment {
            name: name.expect("experiment name"),
            block,
            span,
        })
    }

    fn import(&self, p: Pair<Rule>) -> R<Import> {
        let span = self.span(&p);
        let path = p
            .into_inner()
            .find(|c| c.as_rule() == Rule::string)
            .map(|c| self.string(c))
            .expect("import path");
        Ok(Import { path, span })
    }

    fn decl(&self, p: Pair<Rule>) -> R<Decl> {
        let span = self.span(&p);
        let mut idents = vec![];
        let mut value = None;
        let mut block = None;
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::ident => idents.push(self.ident(c)),
                Rule::eq => {}
                Rule::block => block = Some(self.block(c)?),
                _ => value = Some(self.expr(c)?),
            }
        }
        let mut idents = idents.into_iter();
        Ok(Decl {
            kind: idents.next().expect("kind"),
            name: idents.next().expect("name"),
            value: value.expect("value"),
            block,
            span,
        })
    }

    fn sweep(&self, p: Pair<Rule>) -> R<Sweep> {
        let span = self.span(&p);
        let mut vars = vec![];
        let mut body = vec![];
        let mut open = None;
        let mut close = span;
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::sweep_var => {
                    let vspan = self.span(&c);
                    let mut inner = c.into_inner();
                    let name = self.ident(inner.next().expect("var name"));
                    let values = inner
                        .find(|x| x.as_rule() != Rule::kw_in)
                        .map(|x| self.expr(x))
                        .expect("values")?;
                    vars.push(SweepVar {
                        name,
                        values,
                        span: vspan,
                    });
                }
                Rule::decl => body.push(self.decl(c)?),
                Rule::lbrace => open = Some(self.span(&c)),
                Rule::rbrace => close = self.span(&c),
                _ => {}
            }
        }
        let body_span = open.unwrap_or(span).to(close);
        Ok(Sweep {
            vars,
            body,
            body_span,
            span,
        })
    }

    fn profile(&self, p: Pair<Rule>) -> R<Profile> {
        let span = self.span(&p);
        let mut name = None;
        let mut entries = vec![];
        let mut open = None;
        let mut close = span;
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::ident => name = Some(self.ident(c)),
                Rule::profile_entry => {
                    let espan = self.span(&c);
                    let mut inner = c.into_inner().filter(|x| x.as_rule() != Rule::colon);
                    let path = inner
                        .next()
                        .expect("entry path")
                        .into_inner()
                        .map(|i| self.ident(i))
                        .collect();
                    let value = self.expr(inner.next().expect("entry value"))?;
                    entries.push(ProfileEntry {
                        path,
                        value,
                        span: espan,
                    });
                }
                Rule::lbrace => open = Some(self.span(&c)),
                Rule::rbrace => close = self.span(&c),
                _ => {}
            }
        }
        Ok(Profile {
            name: name.expect("profile name"),
            entries,
            body_span: open.unwrap_or(span).to(close),
            span,
        })
    }

    fn block(&self, p: Pair<Rule>) -> R<Block> {
        let span = self.span(&p);
        let params = p
            .into_inner()
            .filter(|c| c.as_rule() == Rule::param)
            .map(|c| self.param(c))
            .collect::<R<Vec<_>>>()?;
        Ok(Block { params, span })
    }

    fn param(&self, p: Pair<Rule>) -> R<Param> {
        let span = self.span(&p);
        let mut inner = p.into_inner().filter(|c| c.as_rule() != Rule::colon);
        let name = self.ident(inner.next().expect("param name"));
        let value = self.expr(inner.next().expect("param value"))?;
        Ok(Param { name, value, span })
    }

    fn expr(&self, p: Pair<Rule>) -> R<Expr> {
        let span = self.span(&p);
        let kind = match p.as_rule() {
            Rule::int => ExprKind::Int(self.int(&p)?),
            Rule::float => ExprKind::Float(self.float(&p)?),
            Rule::string => ExprKind::Str(self.string(p).value),
            Rule::bool => ExprKind::Bool(p.as_str() == "true"),
            Rule::path => ExprKind::Path(p.into_inner().map(|i| self.ident(i)).collect()),
            Rule::list => ExprKind::List(
                p.into_inner()
                    .filter(|c| {
                        !matches!(c.as_rule(), Rule::lbracket | Rule::rbracket | Rule::comma)
                    })
                    .map(|c| self.expr(c))
                    .collect::<R<_>>()?,
            ),
            Rule::range => {
                let mut nums = vec![];
                let mut inclusive = false;
                for c in p.into_inner() {
                    match c.as_rule() {
                        Rule::range_op => inclusive = c.as_str() == "..=",
                        Rule::kw_step => {}
                        _ => nums.push(self.expr(c)?),
                    }
                }
                let mut nums = nums.into_iter();
                let start = Box::new(nums.next().expect("start"));
                let end = Box::new(nums.next().expect("end"));
                ExprKind::Range {
                    start,
                    end,
                    step: nums.next().map(Box::new),
                    inclusive,
                }
            }
            Rule::call => {
                let mut func = None;
                let mut args = vec![];
                let mut open = span;
                let mut close = span;
                for c in p.into_inner() {
                    match c.as_rule() {
                        Rule::ident if func.is_none() => func = Some(self.ident(c)),
                        Rule::lparen => open = self.span(&c),
                        Rule::rparen => close = self.span(&c),
                        Rule::comma => {}
                        Rule::named_arg => args.push(Arg::Named(self.param(c)?)),
                        _ => args.push(Arg::Positional(self.expr(c)?)),
                    }
                }
                ExprKind::Call(Call {
                    func: func.expect("callee"),
                    args,
                    args_span: open.to(close),
                })
            }
            r => unreachable!("{r:?} is not an expression"),
        };
        Ok(Expr { kind, span })
    }

    fn int(&self, p: &Pair<Rule>) -> R<i64> {
        let text: String = p.as_str().chars().filter(|c| *c != '_').collect();
        text.parse::<i64>().map_err(|_| {
            Diagnostic::new(
                Code::Syntax,
                self.span(p),
                format!("integer `{}` does not fit in 64 bits", p.as_str()),
            )
            .label("too large")
            .help(format!("integers range from {} to {}", i64::MIN, i64::MAX))
        })
    }

    fn float(&self, p: &Pair<Rule>) -> R<f64> {
        let text: String = p.as_str().chars().filter(|c| *c != '_').collect();
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(f),
            _ => Err(Diagnostic::new(
                Code::Syntax,
                self.span(p),
                format!("number `{}` is out of range", p.as_str()),
            )
            .label("not a finite 64-bit float")),
        }
    }
}

fn end_of(p: &Pair<Rule>) -> usize {
    match p.clone().into_inner().last() {
        Some(last) if last.as_rule() != Rule::EOI => end_of(&last),
        _ => p.as_span().end(),
    }
}

// ---------------------------------------------------------------------------------------------
// Error messages

fn describe_rule(r: Rule) -> &'static str {
    match r {
        Rule::eq => "`=`",
        Rule::colon => "`:`",
        Rule::comma => "`,`",
        Rule::lbrace | Rule::block => "`{`",
        Rule::rbrace => "`}`",
        Rule::lbracket => "`[`",
        Rule::rbracket => "`]`",
        Rule::lparen => "`(`",
        Rule::rparen => "`)`",
        Rule::range_op => "`..`",
        Rule::kw_experiment => "`experiment`",
        Rule::kw_import => "`import`",
        Rule::kw_sweep => "`sweep`",
        Rule::kw_profile => "`profile`",
        Rule::kw_in => "`in`",
        Rule::kw_step => "`step`",
        Rule::ident | Rule::path => "a name",
        Rule::string => "a string",
        Rule::int | Rule::float | Rule::bool | Rule::list | Rule::call | Rule::range => "a value",
        Rule::decl | Rule::experiment | Rule::import | Rule::sweep | Rule::profile => {
            "a declaration"
        }
        Rule::profile_entry => "a profile entry (`declaration.parameter: value`)",
        Rule::param | Rule::named_arg => "a parameter (`name: value`)",
        Rule::sweep_var => "a sweep variable (`name in [...]`)",
        Rule::EOI => "end of file",
        _ => "something else",
    }
}

const ORDER: &[&str] = &[
    "a declaration",
    "a parameter (`name: value`)",
    "a sweep variable (`name in [...]`)",
    "a profile entry (`declaration.parameter: value`)",
    "a name",
    "a value",
    "a string",
    "`=`",
    "`:`",
    "`,`",
    "`{`",
    "`}`",
    "`[`",
    "`]`",
    "`(`",
    "`)`",
    "`in`",
    "`step`",
    "`..`",
    "end of file",
];

/// What the text at `pos` looks like, for "found ...".
fn found_at(text: &str, pos: usize) -> (String, usize) {
    let rest = &text[pos.min(text.len())..];
    let Some(c) = rest.chars().next() else {
        return ("end of file".into(), 0);
    };
    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
        let w: String = rest
            .chars()
            .enumerate()
            .take_while(|(i, ch)| {
                ch.is_ascii_alphanumeric() || *ch == '_' || (*i == 0 && *ch == '-') || *ch == '.'
            })
            .map(|(_, ch)| ch)
            .collect();
        let len = w.len();
        return (format!("`{w}`"), len);
    }
    if c == '"' {
        let end = rest[1..].find('"').map(|i| i + 2).unwrap_or(1);
        return ("a string".into(), end);
    }
    (format!("`{}`", show_char(c)), c.len_utf8())
}

fn convert_error(
    file: FileId,
    text: &str,
    offset: usize,
    e: pest::error::Error<Rule>,
) -> Diagnostic {
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let positives = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => positives.clone(),
        ErrorVariant::CustomError { message } => {
            return Diagnostic::new(
                Code::Syntax,
                Span::new(file, offset + pos, offset + pos),
                message.clone(),
            );
        }
    };
    let mut wanted: Vec<&str> = positives.iter().map(|r| describe_rule(*r)).collect();
    // After a number the grammar could continue with a range; that is noise next to `,` or `}`.
    if wanted.len() > 1 {
        wanted.retain(|w| *w != "`..`" && *w != "something else");
    }
    // A value can be a name, a string or a list: say "a value" once.
    if wanted.contains(&"a value") {
        wanted.retain(|w| !matches!(*w, "a name" | "a string" | "`[`"));
    }
    wanted.sort_by_key(|w| ORDER.iter().position(|o| o == w).unwrap_or(usize::MAX));
    wanted.dedup();
    let expected = join_or(&wanted);
    let (found, flen) = found_at(text, pos);
    let span = Span::new(file, offset + pos, offset + pos + flen);
    let mut d = Diagnostic::new(
        Code::Syntax,
        span,
        format!("expected {expected}, found {found}"),
    )
    .label(format!("expected {expected}"));
    d = d.maybe_help(syntax_hint(text, pos, &wanted));
    d
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => "something else".into(),
        [a] => a.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

fn syntax_hint(text: &str, pos: usize, wanted: &[&str]) -> Option<String> {
    let before = text[..pos.min(text.len())].trim_end();
    let prev_word: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let next = text[pos.min(text.len())..].chars().next();
    if wanted.contains(&"a name") && !prev_word.is_empty() && next == Some('"') {
        if let Some(k) = suggest(&prev_word, ["experiment", "import"]) {
            return Some(format!("did you mean `{k}`?"));
        }
    }

    if wanted.contains(&"`=`") && next == Some('{') && !prev_word.is_empty() {
        // `profle full {`: a misspelt `profile` parses as a declaration missing its `=`.
        let kind = before[..before.len() - prev_word.len()]
            .split_whitespace()
            .next_back()
            .unwrap_or("");
        if let Some(k) = suggest(kind, ["profile"]) {
            return Some(format!("did you mean `{k}`?"));
        }
    }
    if in_profile(text, pos)
        && (wanted.contains(&"`:`")
            || wanted.contains(&"a profile entry (`declaration.parameter: value`)"))
    {
        return Some(
            "profile entries are written `declaration.parameter: value` (what `--set` takes), e.g. `niah.runs: 5`"
                .into(),
        );
    }
    if wanted.contains(&"`:`") {
        return Some("parameters are written `name: value`".into());
    }
    if wanted.contains(&"`in`") {
        return Some("a sweep reads `sweep k in [0, 5, 10] { ... }`".into());
    }
    if wanted.contains(&"`=`") {
        return Some("a declaration reads `<kind> <name> = <constructor>(...)`, e.g. `model smol = gguf(\"smollm2-135m-instruct\")`".into());
    }
    if wanted.contains(&"`,`")
        && next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '"' || c == '[' || c == '-')
    {
        return Some("separate items with `,`".into());
    }
    if wanted.contains(&"a value") {
        return Some("values are numbers, \"strings\", true/false, names, [lists], calls like f(x) or ranges like 0..20 step 5".into());
    }
    if wanted.contains(&"a declaration") {
        return Some("a file holds `experiment`, `import`, `sweep`, `profile` and declarations like `model smol = gguf(\"...\")`".into());
    }
    None
}

/// Whether `pos` lies inside the braces of a top-level `profile <name> { ... }` (for hints).
fn in_profile(text: &str, pos: usize) -> bool {
    let bytes = text.as_bytes();
    let end = pos.min(bytes.len());
    let mut depth = 0usize;
    let mut outer = None;
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'#' => {
                while i < end && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                i += 1;
                while i < end && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                if depth == 0 {
                    outer = Some(i);
                }
                depth += 1;
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    let Some(open) = outer.filter(|&o| depth > 0 && bytes[o] == b'{') else {
        return false;
    };
    let mut words = text[..open].split_whitespace().rev();
    let name = words.next().unwrap_or("");
    words.next() == Some("profile")
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A character as shown in messages: itself if printable, else escaped.
pub(crate) fn show_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        c.escape_debug().to_string()
    } else {
        c.to_string()
    }
}
