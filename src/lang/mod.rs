//! The rhx experiment language front end: `.rhx` text → checked [`Program`].
//!
//! ```text
//! source ──lexer──▶ comments, string/bracket errors
//!        ──parser (pest, grammar/rhx.pest)──▶ ast::File (every node has a Span)
//!        ──load──▶ SourceSet (root + imports, import cycles found)
//!        ──apply_override("niah.runs=20")──▶ edited SourceSet
//!        ──check (schema registry, ModelShapes)──▶ Program (resolved, defaulted, ordered)
//! ```
//!
//! Entry points:
//!
//! * [`check_path`]`(path, overrides, shapes) -> Result<Program, Vec<Diagnostic>>` — the whole
//!   pipeline for a file on disk; [`check_str`] for text that is not on disk.
//! * [`load_path`] / [`load_str`], [`apply_override`], [`check`] — the same in steps.
//! * [`parse_file`] / [`parse_str`] — syntax only (one file, imports not followed).
//! * [`format_source`]`(text) -> Result<String, Diagnostic>` — canonical layout, comments kept.
//! * [`render_diagnostics`]`(&[Diagnostic]) -> String` — `file:line:col`, source line, underline,
//!   help; no colours.
//! * [`EngineShapes`] reads layer/head counts from GGUF headers or `config.json` (no weights);
//!   [`NoShapes`] skips head checks; tests implement [`ModelShapes`] with fakes.
//!
//! The language is described in `docs/LANGUAGE.md`; the parameters in [`schema`].
pub mod ast;
pub mod check;
pub mod diagnostics;
pub mod format;
pub mod lexer;
pub mod load;
pub mod overrides;
pub mod parser;
pub mod program;
pub mod schema;
pub mod shapes;
pub mod source;

use std::path::Path;

pub use check::check;
pub use diagnostics::{render_diagnostics, Code, Diagnostic};
pub use format::format_source;
pub use load::{load_path, load_str, SourceSet};
pub use overrides::apply_override;
pub use program::{Arg, Experiment, Node, Origin, Program, Value};
pub use schema::{registry, Kind};
pub use shapes::{EngineShapes, ModelDecl, ModelShape, ModelShapes, NoShapes};
pub use source::{FileId, SourceMap, Span};

/// Parses one file (imports are not followed). Diagnostics are attached to the file's text.
pub fn parse_file(path: &Path) -> Result<ast::File, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::global(
            Code::MissingFile,
            format!("cannot read `{}`: {e}", path.display()),
        )]
    })?;
    parse_str(&path.display().to_string(), &text)
}

/// Parses text; `name` is shown in diagnostics.
pub fn parse_str(name: &str, text: &str) -> Result<ast::File, Vec<Diagnostic>> {
    let mut sources = SourceMap::new();
    let id = sources.add(name, None, text);
    parser::parse_source(id, text)
        .map(|p| p.file)
        .map_err(|d| diagnostics::finish(vec![d], &sources))
}

/// Loads `path` and its imports, applies the `path=value` overrides in order, and checks.
pub fn check_path(
    path: &Path,
    overrides: &[String],
    shapes: &dyn ModelShapes,
) -> Result<Program, Vec<Diagnostic>> {
    let set = load_path(path)?;
    finish_check(set, overrides, shapes)
}

/// Like [`check_path`] for a root file given as text; `path` is where it is taken to live
/// (relative paths inside it resolve against its folder), `name` is shown in diagnostics.
pub fn check_str(
    name: &str,
    path: &Path,
    text: &str,
    overrides: &[String],
    shapes: &dyn ModelShapes,
) -> Result<Program, Vec<Diagnostic>> {
    let set = load_str(name, path, text)?;
    finish_check(set, overrides, shapes)
}

fn finish_check(
    mut set: SourceSet,
    overrides: &[String],
    shapes: &dyn ModelShapes,
) -> Result<Program, Vec<Diagnostic>> {
    let mut errs = vec![];
    for o in overrides {
        if let Err(d) = apply_override(&mut set, o) {
            errs.push(d);
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    check(&set, shapes)
}
