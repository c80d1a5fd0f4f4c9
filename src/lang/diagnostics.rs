//! Errors of the experiment language: one [`Diagnostic`] per mistake, carrying the file, the
//! span, a message, a label for the span, an optional help line and secondary labels. They are
//! rendered with `miette` as `file:line:col`, the source line, an underline and the hint.
use std::fmt;
use std::sync::Arc;

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents, Severity,
    SourceCode, SourceSpan, SpanContents,
};

use super::source::{SourceFile, SourceMap, Span};

/// What kind of mistake a diagnostic reports (shown as `rhx::<kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// The text is not a well-formed `.rhx` file.
    Syntax,
    /// `modle x = ...`: the declaration kind is not in the schema.
    UnknownKind,
    /// `dataset d = nia {...}`: no such constructor for that kind.
    UnknownConstructor,
    /// A reference to a declaration, sweep variable or built-in that does not exist.
    UnknownName,
    /// A parameter the constructor or function does not accept.
    UnknownParam,
    /// A value of the wrong type (e.g. a dataset where a model is expected).
    WrongType,
    /// A value outside the allowed set (enum values, devices, head ids, placeholders).
    InvalidValue,
    /// A number outside the allowed range.
    OutOfRange,
    /// The same parameter given twice.
    DuplicateParam,
    /// A required parameter is missing.
    MissingParam,
    /// More positional arguments than the constructor takes.
    TooManyArgs,
    /// Two declarations with the same name (also across imports and sweep instances).
    DuplicateDecl,
    /// More than one `experiment` header in the root file.
    DuplicateExperiment,
    /// Declarations that depend on each other in a cycle.
    Cycle,
    /// A file or folder named in the program does not exist.
    MissingFile,
    /// Files that import each other in a cycle.
    ImportCycle,
    /// An intervention or capture names a layer or head the model does not have.
    HeadOutOfRange,
    /// A model that cannot be found or whose header cannot be read.
    ModelUnavailable,
    /// A sweep that cannot be expanded (empty, unused or shadowing variable, name clash).
    Sweep,
    /// A `--set path=value` override that does not apply.
    Override,
    /// A `profile` that cannot be selected or applied: unknown or declared twice, declared in
    /// an imported file, or an entry that names no declaration, parameter or sweep variable.
    Profile,
    /// A constructor or option the schema declares but the executor does not run yet
    /// (refused by the op registry, `ops::check_node`).
    NotImplemented,
    /// An error while a node executes (`rhx run`), pointing at its declaration.
    Execution,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "syntax",
            Code::UnknownKind => "unknown-kind",
            Code::UnknownConstructor => "unknown-constructor",
            Code::UnknownName => "unknown-name",
            Code::UnknownParam => "unknown-param",
            Code::WrongType => "wrong-type",
            Code::InvalidValue => "invalid-value",
            Code::OutOfRange => "out-of-range",
            Code::DuplicateParam => "duplicate-param",
            Code::MissingParam => "missing-param",
            Code::TooManyArgs => "too-many-args",
            Code::DuplicateDecl => "duplicate-decl",
            Code::DuplicateExperiment => "duplicate-experiment",
            Code::Cycle => "cycle",
            Code::MissingFile => "missing-file",
            Code::ImportCycle => "import-cycle",
            Code::HeadOutOfRange => "head-out-of-range",
            Code::ModelUnavailable => "model-unavailable",
            Code::Sweep => "sweep",
            Code::Override => "override",
            Code::Profile => "profile",
            Code::NotImplemented => "not-implemented",
            Code::Execution => "execution",
        }
    }
}

/// Where a diagnostic points, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A secondary label ("first declared here").
#[derive(Debug, Clone)]
pub struct Note {
    pub span: Span,
    pub label: String,
    source: Option<Arc<SourceFile>>,
}

impl Note {
    /// The file the note points into, once the diagnostic is attached (the editor needs its
    /// path and text).
    pub fn source_file(&self) -> Option<&Arc<SourceFile>> {
        self.source.as_ref()
    }
}

/// One error in a `.rhx` program.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{message}", .location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub span: Option<Span>,
    /// Text under the underline.
    pub label: Option<String>,
    pub help: Option<String>,
    pub notes: Vec<Note>,
    /// Filled in when the diagnostic leaves the library (see [`Diagnostic::attach`]).
    pub location: Option<Location>,
    src: Option<Arc<SourceFile>>,
}

impl Diagnostic {
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            span: Some(span),
            label: None,
            help: None,
            notes: vec![],
            location: None,
            src: None,
        }
    }

    /// A diagnostic that points nowhere (e.g. an override that is not `path=value`).
    pub fn global(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            span: None,
            label: None,
            help: None,
            notes: vec![],
            location: None,
            src: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    pub fn note(mut self, span: Span, label: impl Into<String>) -> Self {
        self.notes.push(Note {
            span,
            label: label.into(),
            source: None,
        });
        self
    }

    /// Attaches the source text (for rendering) and computes the location.
    pub fn attach(&mut self, sources: &SourceMap) {
        if let Some(span) = self.span {
            if let Some(f) = sources.try_get(span.file) {
                let (line, col) = f.line_col(span.start);
                self.location = Some(Location {
                    file: f.name.clone(),
                    line,
                    col,
                });
                self.src = Some(f.clone());
            }
        }
        for n in &mut self.notes {
            n.source = sources.try_get(n.span.file).cloned();
        }
    }

    /// The file the diagnostic points into, if attached.
    pub fn source_file(&self) -> Option<&Arc<SourceFile>> {
        self.src.as_ref()
    }

    /// Renders this diagnostic (see [`render_diagnostics`]).
    pub fn render(&self) -> String {
        render_diagnostics(std::slice::from_ref(self))
    }
}

/// Attaches sources to every diagnostic, drops exact duplicates (a mistake inside a sweep body
/// is found once per instance) and sorts by file and position.
pub(crate) fn finish(mut diags: Vec<Diagnostic>, sources: &SourceMap) -> Vec<Diagnostic> {
    let mut seen = std::collections::HashSet::new();
    diags.retain(|d| {
        seen.insert((
            d.code,
            d.span.map(|s| (s.file, s.start, s.end)),
            d.message.clone(),
        ))
    });
    diags.sort_by_key(|d| d.span.map(|s| (s.file, s.start)).unwrap_or_default());
    for d in &mut diags {
        d.attach(sources);
    }
    diags
}

/// Renders diagnostics as text without colours: for each, `× message`, `╭─[file:line:col]`,
/// the source lines with the span underlined and labelled, and `help: ...`.
pub fn render_diagnostics(diags: &[Diagnostic]) -> String {
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    // A file with thousands of mistakes: the first ones are what to fix first.
    const SHOWN: usize = 100;
    for d in diags.iter().take(SHOWN) {
        let view = View::new(d);
        if handler.render_report(&mut out, &view).is_err() {
            out.push_str(&format!("{d}\n"));
        }
    }
    if diags.len() > SHOWN {
        out.push_str(&format!("\n… and {} more error(s) not shown (fix the ones above first)\n", diags.len() - SHOWN));
    }
    out
}

/// Adapter from [`Diagnostic`] to `miette::Diagnostic`. Secondary labels in the primary file
/// are drawn with the primary one; those in other files become related reports.
struct View {
    code: String,
    message: String,
    help: Option<String>,
    severity: Severity,
    source: Option<ClippedSource>,
    labels: Vec<LabeledSpan>,
    related: Vec<View>,
}

impl View {
    fn new(d: &Diagnostic) -> View {
        let mut labels = vec![];
        let mut related = vec![];
        let primary_file = d.src.as_ref().map(|s| s.id);
        if let (Some(span), Some(src)) = (d.span, &d.src) {
            labels.push(LabeledSpan::new_primary_with_span(
                Some(d.label.clone().unwrap_or_else(|| "here".into())),
                clamp(span, src),
            ));
        }
        for n in &d.notes {
            match &n.source {
                Some(src) if Some(src.id) == primary_file => labels.push(
                    LabeledSpan::new_with_span(Some(n.label.clone()), clamp(n.span, src)),
                ),
                Some(src) => related.push(View {
                    code: String::new(),
                    message: n.label.clone(),
                    help: None,
                    severity: Severity::Advice,
                    source: Some(ClippedSource::new(src)),
                    labels: vec![LabeledSpan::new_with_span(None, clamp(n.span, src))],
                    related: vec![],
                }),
                None => {}
            }
        }
        View {
            code: format!("rhx::{}", d.code.as_str()),
            message: d.message.clone(),
            help: d.help.clone(),
            severity: Severity::Error,
            source: d
                .src
                .as_ref()
                .map(ClippedSource::new),
            labels,
            related,
        }
    }
}

/// The longest underline drawn; a longer span is underlined from its start.
const MAX_LABEL: usize = 120;
/// Lines longer than this are cut to a window around the span in a snippet.
const MAX_LINE: usize = 240;
/// Bytes shown on each side of the span in a cut line.
const WINDOW: usize = 60;

fn clamp(span: Span, src: &SourceFile) -> (usize, usize) {
    let len = src.text.len();
    let start = super::source::floor_char_boundary(&src.text, span.start.min(len));
    let end = super::source::floor_char_boundary(&src.text, span.end.min(len).min(start + MAX_LABEL)).max(start);
    (start, end - start)
}

/// A named source whose snippets never show more than [`MAX_LINE`] bytes of a line: a long line
/// is cut to a window around the span, and long neighbouring lines are left out. miette panics
/// on a column past 65,535, and a 2 MB line printed whole helps no one; `file:line:col` stays
/// exact.
#[derive(Clone)]
struct ClippedSource {
    name: String,
    text: Arc<SourceFile>,
}

impl ClippedSource {
    fn new(src: &Arc<SourceFile>) -> Self {
        ClippedSource { name: src.name.clone(), text: src.clone() }
    }
}

impl SourceCode for ClippedSource {
    fn read_span<'a>(&'a self, span: &SourceSpan, before: usize, after: usize) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let text = self.text.text.as_str();
        let c = text.read_span(span, before, after)?;
        if !c.data().split(|b| *b == b'\n').any(|l| l.len() > MAX_LINE) {
            return Ok(Box::new(MietteSpanContents::new_named(self.name.clone(), c.data(), *c.span(), c.line(), c.column(), c.line_count())));
        }
        // Only the span's own line, cut to a window around the span when it is long. Without
        // context (the `file:line:col` header) the window starts at the span.
        let floor = |i: usize| super::source::floor_char_boundary(text, i.min(text.len()));
        let start = floor(span.offset());
        let end = floor(span.offset() + span.len()).max(start);
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
        let (ws, we) = if line_end - line_start <= MAX_LINE {
            (line_start, line_end)
        } else {
            let ws = if before == 0 && after == 0 { start } else { start.saturating_sub(WINDOW).max(line_start) };
            (floor(ws), floor((end + WINDOW).min(line_end).min(ws + MAX_LINE)).max(floor(ws)))
        };
        let line = text.as_bytes()[..ws].iter().filter(|b| **b == b'\n').count();
        let column = text[line_start..ws].chars().count();
        Ok(Box::new(MietteSpanContents::new_named(self.name.clone(), &text.as_bytes()[ws..we], (ws, we - ws).into(), line, column, 1)))
    }
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for View {}

impl miette::Diagnostic for View {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        if self.code.is_empty() {
            None
        } else {
            Some(Box::new(&self.code))
        }
    }

    fn severity(&self) -> Option<Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(
                self.related.iter().map(|r| r as &dyn miette::Diagnostic),
            ))
        }
    }
}

/// "did you mean `x`?" — the closest candidate by edit distance, if it is close enough.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    suggest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The closest candidate to `word`: within a third of its length in edit distance (with
/// transpositions, case-insensitive), else one that is a suffix/prefix of it or contains it (`needle_depths`
/// → `depths`).
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_lowercase();
    let limit = (w.chars().count() / 3).max(1);
    let mut best: Option<((usize, usize), &str)> = None;
    for c in candidates {
        if c == word || c.is_empty() {
            continue;
        }
        let cl = c.to_lowercase();
        let d = strsim::osa_distance(&w, &cl);
        let len_diff = w.len().abs_diff(cl.len());
        let score = if d <= limit {
            (0, d)
        } else if w.len() >= 3
            && cl.len() >= 3
            && (w.ends_with(&cl) || cl.ends_with(&w) || w.starts_with(&cl) || cl.starts_with(&w))
        {
            (1, len_diff)
        } else if w.len() >= 4 && cl.len() >= 4 && (w.contains(&cl) || cl.contains(&w)) {
            (2, len_diff)
        } else {
            continue;
        };
        if best.is_none_or(|(b, _)| score < b) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}
