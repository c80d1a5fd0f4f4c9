//! Diagnostics as you type: the text in the editor is checked exactly as `rhx check` checks a
//! file (imports read from disk relative to the document's folder, every profile checked, and
//! constructors or options the executor does not run refused), and each
//! [`crate::lang::Diagnostic`] becomes an LSP diagnostic at its span. Nothing is run and the
//! cache is not touched; model shapes come from GGUF headers or `config.json` (or not at all
//! with `rhx lsp --no-models`).
use std::path::Path;

use lsp_types::{DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString, Range, Url};

use super::position::LineIndex;
use super::scan::{declarations, Doc};
use crate::lang::source::SourceFile;
use crate::lang::{self, CheckOptions, ModelShapes};

/// Checks `text` as the file at `path` and returns its diagnostics (empty when it checks).
pub fn check_document(path: &Path, text: &str, shapes: &dyn ModelShapes) -> Vec<lsp_types::Diagnostic> {
    let name = path.display().to_string();
    let opts = CheckOptions { all_profiles: true, ..CheckOptions::default() };
    let diags = match lang::check_str_with(&name, path, text, &opts, shapes) {
        Ok(program) => match crate::run::check_supported(&program) {
            Ok(()) => vec![],
            Err(crate::run::RunError::NotImplemented(d)) => vec![*d],
            Err(e) => return vec![plain(Range::default(), e.to_string())],
        },
        Err(d) => d,
    };
    let index = LineIndex::new(text);
    diags.iter().map(|d| convert(d, path, text, &index)).collect()
}

fn plain(range: Range, message: String) -> lsp_types::Diagnostic {
    lsp_types::Diagnostic {
        range,
        severity: Some(DiagnosticSeverity::ERROR),
        source: Some("rhx".into()),
        message,
        ..Default::default()
    }
}

/// The root document is file 0 of the checker's source map (`lang::load_str` adds it first).
fn is_root(f: &SourceFile) -> bool {
    f.id.0 == 0
}

fn convert(d: &lang::Diagnostic, path: &Path, text: &str, index: &LineIndex) -> lsp_types::Diagnostic {
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    let mut related = vec![];
    let range = match (d.span, d.source_file()) {
        (Some(span), Some(f)) if is_root(f) => index.range(span.start, span.end),
        (Some(span), Some(f)) => {
            // A mistake in an imported file: shown on the `import` that brings it in, with
            // the place itself as related information.
            if let Some(loc) = location_in(f, span.start, span.end) {
                related.push(DiagnosticRelatedInformation { location: loc, message: d.label.clone().unwrap_or_else(|| "here".into()) });
            }
            let (line, col) = f.line_col(span.start);
            message = format!("in {}:{line}:{col}: {message}", f.name);
            import_leading_to(path, text, f).map_or_else(Range::default, |(s, e)| index.range(s, e))
        }
        _ => Range::default(),
    };
    for n in &d.notes {
        let loc = match n.source_file() {
            Some(f) if is_root(f) => Url::from_file_path(abs(path)).ok().map(|uri| Location { uri, range: index.range(n.span.start, n.span.end) }),
            Some(f) => location_in(f, n.span.start, n.span.end),
            None => None,
        };
        if let Some(location) = loc {
            related.push(DiagnosticRelatedInformation { location, message: n.label.clone() });
        }
    }
    lsp_types::Diagnostic {
        code: Some(NumberOrString::String(d.code.as_str().into())),
        related_information: (!related.is_empty()).then_some(related),
        ..plain(range, message)
    }
}

fn abs(p: &Path) -> std::path::PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn location_in(f: &SourceFile, start: usize, end: usize) -> Option<Location> {
    let uri = Url::from_file_path(abs(f.path.as_deref()?)).ok()?;
    Some(Location { uri, range: LineIndex::new(&f.text).range(start, end) })
}

/// Byte range of the root's `import` string that names `f` (directly), else of its first
/// import (`f` then comes in through an imported file).
fn import_leading_to(path: &Path, text: &str, f: &SourceFile) -> Option<(usize, usize)> {
    let (_, imports) = declarations(&Doc::new(text));
    let base = path.parent().unwrap_or(Path::new(""));
    let target = f.path.as_ref().and_then(|p| p.canonicalize().ok());
    imports
        .iter()
        .find(|(written, _, _)| base.join(written).canonicalize().ok() == target && target.is_some())
        .or(imports.first())
        .map(|(_, s, e)| (*s, *e))
}
