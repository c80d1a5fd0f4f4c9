//! Loading a program: the root file and, transitively, the files it imports (paths relative to
//! the importing file). Each file is read and parsed once even if imported twice; import
//! cycles are reported with the chain.
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use super::ast::{self, Item};
use super::diagnostics::{finish, Code, Diagnostic};
use super::lexer::Comment;
use super::parser::parse_source;
use super::source::{FileId, SourceMap, Span};

/// A parsed file of a program.
#[derive(Debug, Clone)]
pub struct LoadedFile {
    pub id: FileId,
    pub ast: ast::File,
    pub comments: Vec<Comment>,
    /// The `import` statement that brought this file in (`None` for the root).
    pub imported_at: Option<Span>,
}

/// The parsed files of one program, before checking. Overrides
/// ([`super::apply_override`]) edit these trees.
#[derive(Debug, Clone)]
pub struct SourceSet {
    pub sources: SourceMap,
    /// Imported files before the files that import them; the root file is last.
    pub files: Vec<LoadedFile>,
    pub root: FileId,
    /// Pseudo-files holding `--set` overrides.
    pub override_files: Vec<FileId>,
    /// The profile applied with `--profile` ([`super::apply_profile`]), if any.
    pub profile: Option<SelectedProfile>,
}

/// A profile applied to a [`SourceSet`]; the checker marks the values it wrote as
/// [`super::Origin::Profile`].
#[derive(Debug, Clone)]
pub struct SelectedProfile {
    pub name: String,
    /// The whole `profile <name> { ... }` item.
    pub span: Span,
}

impl SourceSet {
    pub fn file(&self, id: FileId) -> Option<&LoadedFile> {
        self.files.iter().find(|f| f.id == id)
    }

    pub fn root_file(&self) -> &LoadedFile {
        self.files
            .iter()
            .find(|f| f.id == self.root)
            .expect("root file is loaded")
    }

    /// The `profile` blocks of the root file (the only file whose profiles count), in order.
    pub fn profiles(&self) -> impl Iterator<Item = &ast::Profile> {
        self.root_file().ast.items.iter().filter_map(|i| match i {
            Item::Profile(p) => Some(p),
            _ => None,
        })
    }
}

/// Loads `path` and its imports.
pub fn load_path(path: &Path) -> Result<SourceSet, Vec<Diagnostic>> {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => load_str(&name, path, &text),
            Err(e) => Err(not_utf8(&name, path, e)),
        },
        Err(e) => Err(vec![Diagnostic::global(
            Code::MissingFile,
            format!("cannot read `{name}`: {e}"),
        )]),
    }
}

/// A file that is not UTF-8: the error points at the first bad byte (`file:line:col`).
fn not_utf8(name: &str, path: &Path, e: std::string::FromUtf8Error) -> Vec<Diagnostic> {
    let at = e.utf8_error().valid_up_to();
    // The lossy text is byte-identical up to the bad byte, which becomes U+FFFD (3 bytes).
    let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
    let mut sources = SourceMap::new();
    let id = sources.add(name, Some(path.to_path_buf()), text);
    let d = Diagnostic::new(
        Code::Syntax,
        Span { file: id, start: at, end: at + 3 },
        format!("`{name}` is not valid UTF-8 (byte offset {at})"),
    )
    .label("not UTF-8")
    .help("save the file as UTF-8");
    finish(vec![d], &sources)
}

/// Loads a program whose root text is given; `path` is where it is considered to live (its
/// folder is the base of relative paths); `name` is shown in diagnostics.
pub fn load_str(name: &str, path: &Path, text: &str) -> Result<SourceSet, Vec<Diagnostic>> {
    let mut l = Loader {
        sources: SourceMap::new(),
        files: vec![],
        diags: vec![],
        seen: HashMap::new(),
    };
    let root = l.sources.add(name, Some(path.to_path_buf()), text);
    let mut stack = vec![];
    l.visit(root, canonical(path), None, &mut stack);
    let Loader {
        sources,
        files,
        diags,
        ..
    } = l;
    if !diags.is_empty() {
        return Err(finish(diags, &sources));
    }
    Ok(SourceSet {
        sources,
        files,
        root,
        override_files: vec![],
        profile: None,
    })
}

struct Loader {
    sources: SourceMap,
    files: Vec<LoadedFile>,
    diags: Vec<Diagnostic>,
    /// Canonical path → file, for files already loaded.
    seen: HashMap<PathBuf, FileId>,
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| normalize(p))
}

/// Lexical normalisation (`a/./b/../c` → `a/c`), for display names.
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

impl Loader {
    fn visit(
        &mut self,
        id: FileId,
        canon: PathBuf,
        imported_at: Option<Span>,
        stack: &mut Vec<(PathBuf, FileId, Option<Span>)>,
    ) {
        self.seen.insert(canon.clone(), id);
        let text = self.sources.get(id).text.clone();
        let parsed = match parse_source(id, &text) {
            Ok(p) => p,
            Err(d) => {
                self.diags.push(d);
                return;
            }
        };
        stack.push((canon, id, imported_at));
        let src = self.sources.get(id).clone();
        for item in &parsed.file.items {
            let Item::Import(imp) = item else { continue };
            let written = &imp.path.value;
            let target = src.base_dir().join(written);
            let display = normalize(
                &Path::new(&src.name)
                    .parent()
                    .unwrap_or(Path::new(""))
                    .join(written),
            )
            .display()
            .to_string();
            if written.is_empty() || !target.is_file() {
                let what = if target.is_dir() {
                    "is a folder, not a file"
                } else {
                    "does not exist"
                };
                self.diags.push(
                    Diagnostic::new(
                        Code::MissingFile,
                        imp.path.span,
                        format!("imported file `{display}` {what}"),
                    )
                    .label("no such file")
                    .help(format!(
                        "import paths are relative to the importing file's folder (`{}`)",
                        src.base_dir().display()
                    )),
                );
                continue;
            }
            let canon = canonical(&target);
            if let Some(pos) = stack.iter().position(|(c, _, _)| *c == canon) {
                let mut chain: Vec<String> = stack[pos..]
                    .iter()
                    .map(|(_, f, _)| self.sources.get(*f).name.clone())
                    .collect();
                chain.push(display.clone());
                let mut d = Diagnostic::new(
                    Code::ImportCycle,
                    imp.span,
                    format!("import cycle: {}", chain.join(" → ")),
                )
                .label(format!("`{display}` is already being imported"))
                .help("move the shared declarations into a third file that both import");
                for (_, _, at) in &stack[pos + 1..] {
                    if let Some(at) = at {
                        d = d.note(*at, "imported here");
                    }
                }
                self.diags.push(d);
                continue;
            }
            if self.seen.contains_key(&canon) {
                continue; // already loaded through another import
            }
            let text = match std::fs::read(&target).map(String::from_utf8) {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    let at = e.utf8_error().valid_up_to();
                    let before = &e.as_bytes()[..at];
                    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
                    let col = String::from_utf8_lossy(&before[before.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)..]).chars().count() + 1;
                    self.diags.push(
                        Diagnostic::new(Code::Syntax, imp.path.span, format!("`{display}` is not valid UTF-8 at {line}:{col} (byte offset {at})"))
                            .label("not UTF-8")
                            .help("save the file as UTF-8"),
                    );
                    continue;
                }
                Err(e) => {
                    self.diags.push(
                        Diagnostic::new(
                            Code::MissingFile,
                            imp.path.span,
                            format!("cannot read `{display}`: {e}"),
                        )
                        .label("unreadable"),
                    );
                    continue;
                }
            };
            let child = self.sources.add(display, Some(target), text);
            self.visit(child, canon, Some(imp.span), stack);
        }
        stack.pop();
        self.files.push(LoadedFile {
            id,
            ast: parsed.file,
            comments: parsed.comments,
            imported_at,
        });
    }
}
