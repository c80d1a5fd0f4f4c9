//! The rhx experiment language front end: `.rhx` text → checked [`Program`].
//!
//! ```text
//! source ──lexer──▶ comments, string/bracket errors
//!        ──parser (pest, grammar/rhx.pest)──▶ ast::File (every node has a Span)
//!        ──load──▶ SourceSet (root + imports, import cycles found)
//!        ──apply_profile("full"), then apply_override("niah.runs=20")──▶ edited SourceSet
//!        ──check (schema registry, ModelShapes)──▶ Program (resolved, defaulted, ordered)
//! ```
//!
//! Entry points:
//!
//! * [`check_path`]`(path, overrides, shapes) -> Result<Program, Vec<Diagnostic>>` — the whole
//!   pipeline for a file on disk; [`check_str`] for text that is not on disk;
//!   [`check_path_with`] / [`check_str_with`] also select a profile or check every profile.
//! * [`load_path`] / [`load_str`], [`apply_profile`], [`apply_override`], [`check`],
//!   [`check_profiles`] — the same in steps.
//! * [`parse_file`] / [`parse_str`] — syntax only (one file, imports not followed).
//! * [`format_source`]`(text) -> Result<String, Diagnostic>` — canonical layout, comments kept.
//! * [`render_diagnostics`]`(&[Diagnostic]) -> String` — `file:line:col`, source line, underline,
//!   help; no colours.
//! * [`EngineShapes`] reads layer/head counts from GGUF headers or `config.json` (no weights);
//!   [`NoShapes`] skips head checks; tests implement [`ModelShapes`] with fakes.
//!
//! The language is described in `docs/LANGUAGE.md`; the parameters in [`schema`].

// A `Diagnostic` (message, file, span, notes) is ~180 bytes, over clippy's 128 for an `Err`;
// the front end returns it on cold paths only (a file is checked once), so it stays unboxed.
#![allow(clippy::result_large_err)]
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
pub use load::{load_path, load_str, SelectedProfile, SourceSet};
pub use overrides::{apply_override, apply_path, apply_profile, Via};
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

/// What is applied before checking, and how much is checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions<'a> {
    /// `--profile NAME`: a `profile` block of the root file, applied first.
    pub profile: Option<&'a str>,
    /// `--set PATH=VALUE` overrides, applied in order after the profile (so they win).
    pub overrides: &'a [String],
    /// With no profile selected, also check the program once per declared profile, so that a
    /// mistake in a profile nobody selected is found (`rhx check` does this).
    pub all_profiles: bool,
}

/// Loads `path` and its imports, applies the `path=value` overrides in order, and checks.
pub fn check_path(
    path: &Path,
    overrides: &[String],
    shapes: &dyn ModelShapes,
) -> Result<Program, Vec<Diagnostic>> {
    let opts = CheckOptions {
        overrides,
        ..CheckOptions::default()
    };
    check_path_with(path, &opts, shapes)
}

/// Like [`check_path`], with a profile and/or the check of every profile.
pub fn check_path_with(
    path: &Path,
    opts: &CheckOptions,
    shapes: &dyn ModelShapes,
) -> Result<Program, Vec<Diagnostic>> {
    let set = load_path(path)?;
    finish_check(set, opts, shapes)
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
    let opts = CheckOptions {
        overrides,
        ..CheckOptions::default()
    };
    check_str_with(name, path, text, &opts, shapes)
}

/// Like [`check_str`], with a profile and/or the check of every profile.
pub fn check_str_with(
    name: &str,
    path: &Path,
    text: &str,
    opts: &CheckOptions,
    shapes: &dyn ModelShapes,
) -> Result<Program, Vec<Diagnostic>> {
    let set = load_str(name, path, text)?;
    finish_check(set, opts, shapes)
}

fn finish_check(
    set: SourceSet,
    opts: &CheckOptions,
    shapes: &dyn ModelShapes,
) -> Result<Program, Vec<Diagnostic>> {
    let every = opts.all_profiles && opts.profile.is_none() && set.profiles().next().is_some();
    let pristine = every.then(|| set.clone());
    let program = apply_and_check(set, opts.profile, opts.overrides, shapes)?;
    if let Some(pristine) = pristine {
        let diags = check_profiles(&pristine, opts.overrides, shapes);
        if !diags.is_empty() {
            return Err(diags);
        }
    }
    Ok(program)
}

/// Applies the profile (if any), then the overrides, then checks.
fn apply_and_check(
    mut set: SourceSet,
    profile: Option<&str>,
    overrides: &[String],
    shapes: &dyn ModelShapes,
) -> Result<Program, Vec<Diagnostic>> {
    let mut errs = vec![];
    if let Some(name) = profile {
        if let Err(d) = apply_profile(&mut set, name) {
            errs.extend(d);
        }
    }
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

/// Checks `set` (not yet edited) once per profile of its root file, with that profile and then
/// `overrides` applied, as `--profile <name> --set ...` would. Returns every profile's
/// diagnostics, each with a note on the profile's name; empty when all check. Call it on a
/// program that checks without a profile, or its own mistakes come back once per profile.
pub fn check_profiles(
    set: &SourceSet,
    overrides: &[String],
    shapes: &dyn ModelShapes,
) -> Vec<Diagnostic> {
    let profiles: Vec<(String, Span, Span)> = set
        .profiles()
        .map(|p| (p.name.name.clone(), p.name.span, p.span))
        .collect();
    let mut out = vec![];
    for (name, at, whole) in profiles {
        if let Err(diags) = apply_and_check(set.clone(), Some(&name), overrides, shapes) {
            for mut d in diags {
                // A mistake outside the profile (e.g. a head count it makes too large) gets a
                // note naming the profile; one inside it is plain enough.
                let inside = d.span.is_some_and(|s| {
                    s.file == whole.file && whole.start <= s.start && s.end <= whole.end
                });
                if !inside && !d.notes.iter().any(|n| n.span == at) {
                    d = d.note(
                        at,
                        format!("checked with this profile (`--profile {name}`)"),
                    );
                    d.attach(&set.sources);
                }
                out.push(d);
            }
        }
    }
    out
}
