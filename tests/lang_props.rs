//! Property tests of the experiment language (fixed seeds and case counts, so runs are
//! reproducible):
//! * the formatter is idempotent, keeps the syntax tree (minus spans) and keeps every comment,
//!   on generated programs written with random spacing and comments, and on the valid corpus;
//! * parsing, checking and formatting never panic on random bytes or on mutations (deleted,
//!   inserted, swapped characters, truncation) of the valid files.
#[path = "lang/support.rs"]
mod support;

use std::path::Path;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rhx::lang::ast::{
    fmt_float, quote_str, Arg, Block, Call, Decl, Experiment, Expr, ExprKind, File, Ident, Import,
    Item, Param, Profile, ProfileEntry, StrLit, Sweep, SweepVar,
};
use rhx::lang::{
    check_str, check_str_with, format_source, lexer, parse_str, render_diagnostics, CheckOptions,
    FileId, Span,
};
use support::{rhx_files, FakeShapes};

fn runner(cases: u32, seed: u8) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

const SP: Span = Span {
    file: FileId(0),
    start: 0,
    end: 0,
};

fn id(s: &str) -> Ident {
    Ident {
        name: s.to_string(),
        span: SP,
    }
}

fn ex(kind: ExprKind) -> Expr {
    Expr { kind, span: SP }
}

// ---- generators of syntax trees --------------------------------------------------------------

const NAMES: &[&str] = &[
    "a",
    "smol",
    "niah",
    "base",
    "k",
    "x_1",
    "static",
    "dynamic",
    "top",
    "fig3",
    "mask_heads",
    "_tmp",
    "Z9",
    "model",
    "trace",
    "lengths",
    // A keyword only at the start of an item: elsewhere an ordinary name.
    "profile",
];

fn ident() -> impl Strategy<Value = String> {
    prop_oneof![
        select(NAMES).prop_map(String::from),
        (select(NAMES), 0u32..1000).prop_map(|(n, i)| format!("{n}{i}"))
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        -1e6f64..1e6,
        -1e12f64..1e12,
        select(vec![
            0.0,
            -0.0,
            0.1,
            1e-300,
            5e-324,
            1.7976931348623157e308,
            1e21,
            -2.5e-7
        ])
    ]
}

fn string() -> impl Strategy<Value = String> {
    vec(
        select(vec![
            'a',
            'b',
            ' ',
            '"',
            '\\',
            '\n',
            '\t',
            '{',
            '}',
            'é',
            '#',
            '\u{7}',
            'z',
            '0',
            '\u{1F600}',
        ]),
        0..12,
    )
    .prop_map(String::from_iter)
}

fn number() -> impl Strategy<Value = Expr> {
    prop_oneof![
        any::<i64>().prop_map(|i| ex(ExprKind::Int(i))),
        float().prop_map(|f| ex(ExprKind::Float(f)))
    ]
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        number(),
        string().prop_map(|s| ex(ExprKind::Str(s))),
        any::<bool>().prop_map(|b| ex(ExprKind::Bool(b))),
        vec(ident(), 1..4).prop_map(|p| ex(ExprKind::Path(p.iter().map(|s| id(s)).collect()))),
        (
            number(),
            number(),
            proptest::option::of(number()),
            any::<bool>()
        )
            .prop_map(|(a, b, s, inclusive)| ex(ExprKind::Range {
                start: Box::new(a),
                end: Box::new(b),
                step: s.map(Box::new),
                inclusive
            })),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|v| ex(ExprKind::List(v))),
            (
                ident(),
                vec(
                    prop_oneof![
                        inner.clone().prop_map(Arg::Positional),
                        (ident(), inner).prop_map(|(n, v)| Arg::Named(Param {
                            name: id(&n),
                            value: v,
                            span: SP
                        }))
                    ],
                    0..4
                )
            )
                .prop_map(|(f, args)| ex(ExprKind::Call(Call {
                    func: id(&f),
                    args,
                    args_span: SP
                }))),
        ]
    })
}

fn block() -> impl Strategy<Value = Block> {
    vec((ident(), expr()), 0..4).prop_map(|ps| Block {
        params: ps
            .into_iter()
            .map(|(n, v)| Param {
                name: id(&n),
                value: v,
                span: SP,
            })
            .collect(),
        span: SP,
    })
}

fn decl() -> impl Strategy<Value = Decl> {
    (ident(), ident(), expr(), proptest::option::of(block())).prop_map(|(k, n, v, b)| Decl {
        kind: id(&k),
        name: id(&n),
        value: v,
        block: b,
        span: SP,
    })
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => decl().prop_map(Item::Decl),
        1 => (string(), proptest::option::of(block())).prop_map(|(s, b)| Item::Experiment(Experiment { name: StrLit { value: s, span: SP }, block: b, span: SP })),
        1 => string().prop_map(|s| Item::Import(Import { path: StrLit { value: s, span: SP }, span: SP })),
        1 => (vec((ident(), expr()), 1..3), vec(decl(), 0..3)).prop_map(|(vars, body)| Item::Sweep(Sweep {
            vars: vars.into_iter().map(|(n, v)| SweepVar { name: id(&n), values: v, span: SP }).collect(),
            body,
            body_span: SP,
            span: SP,
        })),
        1 => (ident(), vec((vec(ident(), 1..3), expr()), 0..4)).prop_map(|(name, entries)| Item::Profile(Profile {
            name: id(&name),
            entries: entries
                .into_iter()
                .map(|(path, value)| ProfileEntry { path: path.iter().map(|s| id(s)).collect(), value, span: SP })
                .collect(),
            body_span: SP,
            span: SP,
        })),
    ]
}

fn program() -> impl Strategy<Value = (File, Vec<u8>)> {
    (vec(item(), 0..6), vec(any::<u8>(), 1..200))
        .prop_map(|(items, choices)| (File { items, span: SP }, choices))
}

// ---- writing a tree with random spacing and comments -----------------------------------------

struct Ugly<'c> {
    choices: &'c [u8],
    i: usize,
    comments: usize,
    out: String,
}

impl Ugly<'_> {
    fn next(&mut self) -> u8 {
        let c = self.choices[self.i % self.choices.len()];
        self.i += 1;
        c.wrapping_add((self.i / self.choices.len()) as u8)
    }

    /// Whitespace (possibly empty when `optional`), sometimes a comment.
    fn ws(&mut self, optional: bool) {
        let c = self.next();
        let s = match c % 12 {
            0..=2 if optional => String::new(),
            0..=4 => " ".into(),
            5 => "\n".into(),
            6 => "  \t".into(),
            7 | 8 => {
                self.comments += 1;
                format!(
                    " # c{}{}\n",
                    self.comments,
                    if c.is_multiple_of(2) { "  " } else { "" }
                )
            }
            9 => "\n\n   ".into(),
            10 => "\r\n".into(),
            _ => " ".into(),
        };
        self.out.push_str(&s);
    }

    fn push(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn string(&mut self, s: &str) {
        // Sometimes spell a letter as a \u escape; the formatter must normalise it back.
        if self.next().is_multiple_of(3) && s.contains('a') {
            let q = quote_str(s).replacen('a', "\\u{61}", 1);
            self.push(&q);
        } else {
            self.push(&quote_str(s));
        }
    }

    fn expr(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Int(i) => {
                let s = i.to_string();
                if self.next().is_multiple_of(4) && s.trim_start_matches('-').len() > 3 {
                    let (sign, digits) = if let Some(d) = s.strip_prefix('-') {
                        ("-", d)
                    } else {
                        ("", s.as_str())
                    };
                    let with = format!("{sign}{}_{}", &digits[..1], &digits[1..]);
                    self.push(&with);
                } else {
                    self.push(&s);
                }
            }
            ExprKind::Float(f) => {
                let s = match self.next() % 3 {
                    0 => format!("{f:e}"),
                    _ => fmt_float(*f),
                };
                self.push(&s);
            }
            ExprKind::Str(s) => self.string(s),
            ExprKind::Bool(b) => self.push(&b.to_string()),
            ExprKind::Path(p) => {
                let s = p
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(".");
                self.push(&s)
            }
            ExprKind::List(items) => {
                self.push("[");
                for (k, x) in items.iter().enumerate() {
                    self.ws(true);
                    self.expr(x);
                    self.ws(true);
                    if k + 1 < items.len() || self.next().is_multiple_of(2) {
                        self.push(",");
                    }
                }
                self.ws(true);
                self.push("]");
            }
            ExprKind::Range {
                start,
                end,
                step,
                inclusive,
            } => {
                self.expr(start);
                self.ws(true);
                self.push(if *inclusive { "..=" } else { ".." });
                self.ws(true);
                self.expr(end);
                if let Some(s) = step {
                    self.ws(false);
                    self.push("step");
                    self.ws(false);
                    self.expr(s);
                }
            }
            ExprKind::Call(c) => {
                self.push(&c.func.name);
                self.ws(true);
                self.push("(");
                for (k, a) in c.args.iter().enumerate() {
                    self.ws(true);
                    match a {
                        Arg::Positional(x) => self.expr(x),
                        Arg::Named(p) => self.param(p),
                    }
                    self.ws(true);
                    if k + 1 < c.args.len() || self.next().is_multiple_of(2) {
                        self.push(",");
                    }
                }
                self.ws(true);
                self.push(")");
            }
        }
    }

    fn param(&mut self, p: &Param) {
        self.push(&p.name.name);
        self.ws(true);
        self.push(":");
        self.ws(true);
        self.expr(&p.value);
    }

    fn block(&mut self, b: &Block) {
        self.push("{");
        for (k, p) in b.params.iter().enumerate() {
            self.ws(true);
            self.param(p);
            self.ws(true);
            if k + 1 < b.params.len() || self.next().is_multiple_of(2) {
                self.push(",");
            }
        }
        self.ws(true);
        self.push("}");
    }

    fn decl(&mut self, d: &Decl) {
        self.push(&d.kind.name);
        self.ws(false);
        self.push(&d.name.name);
        self.ws(true);
        self.push("=");
        self.ws(true);
        self.expr(&d.value);
        if let Some(b) = &d.block {
            self.ws(true);
            self.block(b);
        }
    }

    fn file(&mut self, f: &File) {
        for item in &f.items {
            self.ws(true);
            match item {
                Item::Experiment(e) => {
                    self.push("experiment");
                    self.ws(true);
                    self.string(&e.name.value);
                    if let Some(b) = &e.block {
                        self.ws(true);
                        self.block(b);
                    }
                }
                Item::Import(i) => {
                    self.push("import");
                    self.ws(true);
                    self.string(&i.path.value);
                }
                Item::Decl(d) => self.decl(d),
                Item::Sweep(s) => {
                    self.push("sweep");
                    for (k, v) in s.vars.iter().enumerate() {
                        if k > 0 {
                            self.ws(true);
                            self.push(",");
                        }
                        self.ws(false);
                        self.push(&v.name.name);
                        self.ws(false);
                        self.push("in");
                        self.ws(false);
                        self.expr(&v.values);
                    }
                    self.ws(true);
                    self.push("{");
                    for d in &s.body {
                        self.ws(true);
                        self.decl(d);
                    }
                    self.ws(true);
                    self.push("}");
                }
                Item::Profile(p) => {
                    self.push("profile");
                    self.ws(false);
                    self.push(&p.name.name);
                    self.ws(true);
                    self.push("{");
                    for (k, e) in p.entries.iter().enumerate() {
                        self.ws(true);
                        let path = e
                            .path
                            .iter()
                            .map(|i| i.name.as_str())
                            .collect::<Vec<_>>()
                            .join(".");
                        self.push(&path);
                        self.ws(true);
                        self.push(":");
                        self.ws(true);
                        self.expr(&e.value);
                        self.ws(true);
                        if k + 1 < p.entries.len() || self.next().is_multiple_of(2) {
                            self.push(",");
                        }
                    }
                    self.ws(true);
                    self.push("}");
                }
            }
            self.ws(false);
        }
    }
}

fn comment_texts(text: &str) -> Vec<String> {
    let mut v: Vec<String> = lexer::scan(FileId(0), text)
        .expect("lexes")
        .into_iter()
        .map(|c| c.text)
        .collect();
    v.sort();
    v
}

/// The formatter's properties on one source text that parses to `shape`.
fn check_format(src: &str, shape: &str) -> Result<(), TestCaseError> {
    let once = format_source(src)
        .map_err(|d| TestCaseError::fail(format!("format failed: {}\n{src}", d.render())))?;
    let reparsed = parse_str("<formatted>", &once).map_err(|d| {
        TestCaseError::fail(format!(
            "formatted text does not parse: {}\n{once}",
            rhx::lang::render_diagnostics(&d)
        ))
    })?;
    prop_assert_eq!(
        reparsed.shape(),
        shape,
        "tree changed by formatting:\n{}\n---\n{}",
        src,
        once
    );
    let twice = format_source(&once).map_err(|d| TestCaseError::fail(d.render()))?;
    prop_assert_eq!(&twice, &once, "not idempotent; input:\n{}", src);
    prop_assert_eq!(
        comment_texts(&once),
        comment_texts(src),
        "comments lost or changed:\n{}\n---\n{}",
        src,
        once
    );
    Ok(())
}

#[test]
fn format_generated_programs() {
    let mut r = runner(256, 1);
    r.run(&program(), |(file, choices)| {
        let mut u = Ugly {
            choices: &choices,
            i: 0,
            comments: 0,
            out: String::new(),
        };
        u.file(&file);
        let src = u.out;
        if std::env::var("RHX_PROP_DEBUG").is_ok() {
            eprintln!(
                "----\n{src}\n==== formatted:\n{}",
                format_source(&src).unwrap_or_default()
            );
        }
        let parsed = parse_str("<generated>", &src).map_err(|d| {
            TestCaseError::fail(format!(
                "generated text does not parse: {}\n{src}",
                rhx::lang::render_diagnostics(&d)
            ))
        })?;
        let shape = file.shape();
        prop_assert_eq!(
            parsed.shape(),
            shape.clone(),
            "parser disagrees with the generator:\n{}",
            src
        );
        check_format(&src, &shape)
    })
    .unwrap();
}

#[test]
fn format_valid_files() {
    for f in rhx_files("tests/lang/valid") {
        let src = std::fs::read_to_string(&f).unwrap();
        let shape = parse_str("<valid>", &src).unwrap().shape();
        check_format(&src, &shape).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

// ---- never panic -----------------------------------------------------------------------------

fn run_all(text: &str) {
    // Every diagnostic is rendered too: the renderer is where long lines used to panic.
    let show = |r: Result<_, Vec<rhx::lang::Diagnostic>>| {
        if let Err(d) = r {
            let _ = render_diagnostics(&d);
        }
    };
    show(parse_str("fuzz.rhx", text).map(|_| ()));
    let _ = format_source(text);
    let every = CheckOptions {
        all_profiles: true,
        ..CheckOptions::default()
    };
    show(check_str_with(
        "fuzz.rhx",
        Path::new("tests/lang/valid/fuzz.rhx"),
        text,
        &every,
        &FakeShapes,
    ).map(|_| ()));
    let full = CheckOptions {
        profile: Some("full"),
        ..CheckOptions::default()
    };
    let _ = check_str_with(
        "fuzz.rhx",
        Path::new("tests/lang/valid/fuzz.rhx"),
        text,
        &full,
        &FakeShapes,
    );
    show(check_str(
        "fuzz.rhx",
        Path::new("tests/lang/valid/fuzz.rhx"),
        "model m = gguf(\"smollm2-135m-instruct\")\n",
        &[format!("m.dtype={text}")],
        &FakeShapes,
    ).map(|_| ()));
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    Swap(usize, usize),
    Truncate(usize),
}

const SNIPPETS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    ":",
    "=",
    "\"",
    "#",
    "\n",
    "..",
    "step",
    "sweep k in",
    "0",
    "-1",
    "1e999",
    "99999999999999999999",
    "é",
    "\\",
    "{uuid}",
    "import \"common.rhx\"",
    "top(",
    "L99H99",
    "experiment \"x\"",
    "profile p {",
    "niah.runs: 5,",
    "}}}",
    "0..=100000000 step 1",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (
            any::<usize>(),
            prop_oneof![
                select(SNIPPETS).prop_map(String::from),
                any::<char>().prop_map(String::from)
            ]
        )
            .prop_map(|(a, s)| Mutation::Insert(a, s)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let mut c = chars.clone();
    match m {
        Mutation::Delete(a, k) if n > 0 => {
            let a = a % n;
            c.drain(a..(a + k).min(n));
        }
        Mutation::Insert(a, s) => {
            let a = if n == 0 { 0 } else { a % (n + 1) };
            c.splice(a..a, s.chars());
        }
        Mutation::Swap(a, b) if n > 0 => c.swap(a % n, b % n),
        Mutation::Truncate(a) => c.truncate(if n == 0 { 0 } else { a % n }),
        _ => {}
    }
    c.into_iter().collect()
}

#[test]
fn never_panics_on_mutated_valid_files() {
    let files: Vec<String> = rhx_files("tests/lang/valid")
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let mut r = runner(1500, 2);
    let count = std::cell::Cell::new(0usize);
    r.run(&(0..files.len(), vec(mutation(), 1..6)), |(i, muts)| {
        count.set(count.get() + 1);
        let mut t = files[i].clone();
        for m in &muts {
            t = apply(&t, m);
        }
        run_all(&t);
        Ok(())
    })
    .unwrap();
    assert_eq!(count.get(), 1500);
}

#[test]
fn never_panics_on_random_bytes() {
    let mut r = runner(500, 3);
    r.run(&vec(any::<u8>(), 0..300), |bytes| {
        run_all(&String::from_utf8_lossy(&bytes));
        Ok(())
    })
    .unwrap();
}

#[test]
fn never_panics_on_random_token_soup() {
    let mut r = runner(500, 4);
    r.run(
        &vec(
            prop_oneof![
                select(SNIPPETS).prop_map(String::from),
                ident(),
                Just(" ".to_string())
            ],
            0..60,
        ),
        |toks| {
            run_all(&toks.concat());
            Ok(())
        },
    )
    .unwrap();
}

/// Mutations with lines past column 65,535 (miette's width limit) and arbitrary bytes read from a
/// file: never a panic, and a bounded time (the case count is fixed).
#[test]
fn never_panics_on_long_lines_and_bytes_from_files() {
    let files: Vec<String> = rhx_files("tests/lang/valid")
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let mut r = runner(40, 5);
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lang_props_long");
    std::fs::create_dir_all(&dir).unwrap();
    r.run(
        &(0..files.len(), vec(mutation(), 0..3), any::<usize>(), 65_000usize..140_000, select(&[" ", "a", "é", "\"", "[1, ", "\u{0}"][..]), vec(any::<u8>(), 0..40)),
        |(i, muts, at, len, pad, bytes)| {
            let mut t = files[i].clone();
            for m in &muts {
                t = apply(&t, m);
            }
            t = apply(&t, &Mutation::Insert(at, pad.repeat(len / pad.len())));
            run_all(&t);
            // The same text with raw bytes spliced in, read from a file as `rhx check` reads it.
            let mut raw = t.into_bytes();
            let k = if raw.is_empty() { 0 } else { at % raw.len() };
            raw.splice(k..k, bytes);
            let f = dir.join("fuzz.rhx");
            std::fs::write(&f, &raw).unwrap();
            if let Err(d) = rhx::lang::check_path(&f, &[], &FakeShapes) {
                let out = render_diagnostics(&d);
                prop_assert!(out.lines().all(|l| l.chars().count() < 1000), "a snippet line is not clipped");
            }
            Ok(())
        },
    )
    .unwrap();
}
