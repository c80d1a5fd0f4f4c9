//! An error-tolerant view of `.rhx` text for the editor: tokens, the bracket each token sits
//! in, and what that bracket belongs to (a constructor's block, a call's arguments, a list that
//! is a parameter's value). The checker's pest parser needs a whole, well-formed file; while
//! typing, the file is half-written most of the time, so hover, completion and go-to-definition
//! read this view instead. It never fails: an unterminated string runs to the end of its line,
//! an unknown character is skipped, brackets left open stay open.
use crate::lang::schema::{registry, Family, FuncSpec, Kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    Ident,
    /// A number (also a leading `-`).
    Number,
    /// A string literal, quotes included (the closing one may be missing).
    Str,
    /// One of `{ } [ ] ( ) , : = .` or a range operator `..` / `..=`.
    Punct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

/// Splits `text` into tokens; comments and whitespace are dropped.
pub fn tokens(text: &str) -> Vec<Token> {
    let b = text.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let tok = match c {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' && i + 1 < b.len() && b[i + 1] != b'\n' { 2 } else { 1 };
                }
                if i < b.len() && b[i] == b'"' {
                    i += 1;
                }
                Tok::Str
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                Tok::Ident
            }
            c if c.is_ascii_digit() || (c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) => {
                i += 1;
                while i < b.len() {
                    let d = b[i];
                    let exp_sign = (d == b'+' || d == b'-') && matches!(b[i - 1], b'e' | b'E');
                    let frac = d == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit) && b[i - 1] != b'.';
                    if d.is_ascii_alphanumeric() || d == b'_' || exp_sign || frac {
                        i += 1;
                    } else {
                        break;
                    }
                }
                Tok::Number
            }
            b'.' if b.get(i + 1) == Some(&b'.') => {
                i += if b.get(i + 2) == Some(&b'=') { 3 } else { 2 };
                Tok::Punct
            }
            b'{' | b'}' | b'[' | b']' | b'(' | b')' | b',' | b':' | b'=' | b'.' => {
                i += 1;
                Tok::Punct
            }
            _ => {
                // Whitespace or a character the language does not use (multi-byte ones
                // included): skipped whole, so offsets stay on character boundaries.
                i += text[i..].chars().next().map_or(1, char::len_utf8);
                continue;
            }
        };
        out.push(Token { tok, start, end: i });
    }
    out
}

/// The function whose parameters apply inside a bracket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callee {
    /// A constructor of a declaration kind (`trace t = generate(...) { ... }`, or inline).
    Ctor(Kind, &'static str),
    /// A value function (`retrieval(...)`, `mask_heads(...)`).
    Func(Family, &'static str),
    /// The `experiment "name" { ... }` header.
    Experiment,
}

impl Callee {
    pub fn spec(self) -> &'static FuncSpec {
        let r = registry();
        match self {
            Callee::Ctor(k, n) => r.ctor(k, n).expect("callee resolved from the registry"),
            Callee::Func(f, n) => r.func(f, n).expect("callee resolved from the registry"),
            Callee::Experiment => &r.experiment,
        }
    }

    /// Resolves a name: `kind` when the declaration's kind is known; otherwise a value function
    /// if there is one by that name, else the first kind with such a constructor.
    pub fn resolve(kind: Option<Kind>, name: &str) -> Option<Callee> {
        let r = registry();
        if let Some(k) = kind {
            return r.ctor(k, name).map(|f| Callee::Ctor(k, f.name));
        }
        if let Some(fam) = r.family_of(name) {
            return r.func(fam, name).map(|f| Callee::Func(fam, f.name));
        }
        let k = *r.kinds_with_ctor(name).first()?;
        r.ctor(k, name).map(|f| Callee::Ctor(k, f.name))
    }
}

/// What an open bracket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The parameters of a function or constructor (its `{ ... }` block or `( ... )` arguments).
    Params(Callee),
    /// A list that is the value of parameter `param` of `callee` (or of a positional argument).
    ListOf(Callee, &'static str),
    /// A sweep body: declarations.
    SweepBody,
    /// Anything else (a profile, an unknown constructor, a list nobody owns).
    Other,
}

#[derive(Debug, Clone, Copy)]
pub struct Frame {
    /// Index of the opening token.
    pub open: usize,
    pub owner: Owner,
}

/// Tokens plus, per token, the stack of brackets enclosing it.
pub struct Doc<'t> {
    pub text: &'t str,
    pub toks: Vec<Token>,
}

impl<'t> Doc<'t> {
    pub fn new(text: &'t str) -> Self {
        Doc { text, toks: tokens(text) }
    }

    pub fn s(&self, i: usize) -> &'t str {
        let t = self.toks[i];
        &self.text[t.start..t.end]
    }

    fn is(&self, i: usize, s: &str) -> bool {
        i < self.toks.len() && self.s(i) == s
    }

    /// Index of the token containing `offset`, or the word or literal ending there (an
    /// identifier being typed ends at the cursor).
    pub fn at(&self, offset: usize) -> Option<usize> {
        self.toks.iter().position(|t| t.start <= offset && offset <= t.end && (offset < t.end || t.tok != Tok::Punct))
    }

    /// The stack of open brackets before token index `upto` (exclusive).
    pub fn frames(&self, upto: usize) -> Vec<Frame> {
        let mut stack: Vec<Frame> = vec![];
        // Opening index of each closed `(`, by the index of its `)`.
        let mut closed_parens: Vec<(usize, usize)> = vec![];
        for i in 0..upto.min(self.toks.len()) {
            if self.toks[i].tok != Tok::Punct {
                continue;
            }
            match self.s(i) {
                "{" | "(" | "[" => {
                    let owner = self.owner_of(i, &stack, &closed_parens);
                    stack.push(Frame { open: i, owner });
                }
                "}" | ")" | "]" => {
                    if let Some(f) = stack.pop() {
                        if self.s(i) == ")" {
                            closed_parens.push((i, f.open));
                        }
                    }
                }
                _ => {}
            }
        }
        stack
    }

    /// The declaration kind of `kind name =` ending just before token `eq` (the `=`).
    fn decl_kind_before(&self, eq: usize) -> Option<Kind> {
        if eq >= 2 && self.is(eq, "=") && self.toks[eq - 1].tok == Tok::Ident && self.toks[eq - 2].tok == Tok::Ident {
            Kind::from_name(self.s(eq - 2))
        } else {
            None
        }
    }

    /// The callee named by the identifier at `name` (a call's or constructor's name).
    pub fn callee_at(&self, name: usize) -> Option<Callee> {
        let kind = if name >= 1 { self.decl_kind_before(name - 1) } else { None };
        if name >= 1 && self.is(name - 1, "=") && kind.is_none() {
            return None; // `kind name = x` with an unknown kind
        }
        Callee::resolve(kind, self.s(name))
    }

    fn owner_of(&self, open: usize, stack: &[Frame], closed: &[(usize, usize)]) -> Owner {
        let prev = open.checked_sub(1);
        match self.s(open) {
            "(" => match prev {
                Some(p) if self.toks[p].tok == Tok::Ident => self.callee_at(p).map_or(Owner::Other, Owner::Params),
                _ => Owner::Other,
            },
            "{" => {
                let Some(p) = prev else { return Owner::Other };
                if self.s(p) == ")" {
                    let name = closed.iter().find(|(c, _)| *c == p).and_then(|(_, o)| o.checked_sub(1));
                    return match name {
                        Some(n) if self.toks[n].tok == Tok::Ident => self.callee_at(n).map_or(Owner::Other, Owner::Params),
                        _ => Owner::Other,
                    };
                }
                if self.toks[p].tok == Tok::Str && p >= 1 && self.is(p - 1, "experiment") {
                    return Owner::Params(Callee::Experiment);
                }
                if self.toks[p].tok == Tok::Ident && p >= 1 && self.is(p - 1, "=") {
                    return self.callee_at(p).map_or(Owner::Other, Owner::Params);
                }
                // `sweep a in [..], b in [..] {`: the statement starts with `sweep`.
                let start = self.statement_start(open, stack);
                if self.is(start, "sweep") {
                    Owner::SweepBody
                } else {
                    Owner::Other
                }
            }
            "[" => match (stack.last().map(|f| f.owner), self.param_before(open)) {
                (Some(Owner::Params(c)), Some(param)) => c.spec().param(param).map_or(Owner::Other, |p| Owner::ListOf(c, p.name)),
                (Some(Owner::Params(c)), None) => {
                    // A positional argument: the parameter at its position.
                    let f = stack.last().expect("checked");
                    let idx = self.element_index(f.open, open);
                    c.spec().positional_params().get(idx).map_or(Owner::Other, |p| Owner::ListOf(c, p.name))
                }
                (Some(Owner::ListOf(c, p)), _) => Owner::ListOf(c, p),
                _ => Owner::Other,
            },
            _ => Owner::Other,
        }
    }

    /// `name` when token `i` is preceded by `name :`.
    pub fn param_before(&self, i: usize) -> Option<&'t str> {
        (i >= 2 && self.is(i - 1, ":") && self.toks[i - 2].tok == Tok::Ident).then(|| self.s(i - 2))
    }

    /// How many commas at depth one lie between the bracket opened at `open` and token `upto`.
    pub fn element_index(&self, open: usize, upto: usize) -> usize {
        let mut depth = 0usize;
        let mut n = 0;
        for i in open + 1..upto.min(self.toks.len()) {
            match self.s(i) {
                "{" | "(" | "[" => depth += 1,
                "}" | ")" | "]" => depth = depth.saturating_sub(1),
                "," if depth == 0 => n += 1,
                _ => {}
            }
        }
        n
    }

    /// First token of the element that token `i` belongs to inside the bracket opened at
    /// `open` (the token after the bracket or after the last comma at depth one).
    pub fn element_start(&self, open: usize, i: usize) -> usize {
        let mut depth = 0usize;
        let mut start = open + 1;
        for j in open + 1..i.min(self.toks.len()) {
            match self.s(j) {
                "{" | "(" | "[" => depth += 1,
                "}" | ")" | "]" => depth = depth.saturating_sub(1),
                "," if depth == 0 => start = j + 1,
                _ => {}
            }
        }
        start
    }

    /// First token of the statement containing token `i` at the top level or in a sweep body:
    /// statements start with an identifier on a new line after the previous one is complete.
    /// Heuristic: the nearest earlier token that begins a line and sits in the same bracket.
    pub fn statement_start(&self, i: usize, stack: &[Frame]) -> usize {
        let floor = stack.last().map_or(0, |f| f.open + 1);
        let mut depth = 0usize;
        let mut j = i.min(self.toks.len());
        while j > floor {
            j -= 1;
            match self.s(j) {
                "}" | ")" | "]" => depth += 1,
                "{" | "(" | "[" => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth == 0 && self.begins_line(j) && self.toks[j].tok == Tok::Ident {
                return j;
            }
        }
        floor
    }

    /// Whether only whitespace precedes token `i` on its line.
    pub fn begins_line(&self, i: usize) -> bool {
        let start = self.toks[i].start;
        self.text[..start].rsplit('\n').next().is_some_and(|l| l.trim().is_empty())
    }
}

/// A declaration found in text: `kind name = ...` (top level or in a sweep body) or a sweep
/// variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub name: String,
    /// `None` for a sweep variable.
    pub kind: Option<Kind>,
    /// The constructor's name, as written.
    pub ctor: Option<String>,
    /// Byte range of the name.
    pub start: usize,
    pub end: usize,
}

/// Declarations and sweep variables of one file, and the paths it imports (as written).
pub fn declarations(doc: &Doc) -> (Vec<Declared>, Vec<(String, usize, usize)>) {
    let mut decls = vec![];
    let mut imports = vec![];
    let mut depth = 0usize;
    let mut sweep_depth: Option<usize> = None;
    let n = doc.toks.len();
    for i in 0..n {
        let s = doc.s(i);
        match s {
            "{" | "(" | "[" => depth += 1,
            "}" | ")" | "]" => {
                depth = depth.saturating_sub(1);
                if sweep_depth == Some(depth + 1) && s == "}" {
                    sweep_depth = None;
                }
            }
            _ => {}
        }
        let top = depth == 0 || sweep_depth == Some(depth);
        if !top || doc.toks[i].tok != Tok::Ident {
            continue;
        }
        if s == "import" && i + 1 < n && doc.toks[i + 1].tok == Tok::Str {
            let t = doc.toks[i + 1];
            let raw = &doc.text[t.start..t.end];
            let inner = raw.trim_start_matches('"').trim_end_matches('"');
            imports.push((crate::lang::lexer::unescape(inner), t.start, t.end));
        } else if s == "sweep" && depth == 0 {
            // `sweep a in ..., b in ... {`: variables, then the body.
            let mut j = i + 1;
            while j + 1 < n && doc.s(j) != "{" {
                if doc.toks[j].tok == Tok::Ident && doc.s(j + 1) == "in" && (j == i + 1 || doc.s(j - 1) == ",") {
                    decls.push(Declared { name: doc.s(j).into(), kind: None, ctor: None, start: doc.toks[j].start, end: doc.toks[j].end });
                }
                j += 1;
            }
            sweep_depth = Some(1);
        } else if i + 2 < n && doc.toks[i + 1].tok == Tok::Ident && doc.s(i + 2) == "=" && doc.begins_line(i) {
            let ctor = (i + 3 < n && doc.toks[i + 3].tok == Tok::Ident).then(|| doc.s(i + 3).to_string());
            decls.push(Declared {
                name: doc.s(i + 1).into(),
                kind: Kind::from_name(s),
                ctor,
                start: doc.toks[i + 1].start,
                end: doc.toks[i + 1].end,
            });
        }
    }
    (decls, imports)
}
