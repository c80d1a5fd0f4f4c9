//! Go to definition: a name used as a value jumps to its declaration (or sweep variable) in
//! the document or in a file it imports, transitively; an `import "…"` string jumps to the
//! file. Imports are read from disk relative to the importing file, as the checker reads them.
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::scan::{declarations, Declared, Doc, Tok};

/// A declaration and the file it is in.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    /// The text of that file (the document's own text for the document).
    pub text: String,
    pub decl: Declared,
}

/// Where the word at `offset` is defined: a declaration, or an imported file (range empty).
pub fn definition(path: &Path, text: &str, offset: usize) -> Option<Found> {
    let doc = Doc::new(text);
    let i = doc.at(offset)?;
    let t = doc.toks[i];
    if t.tok == Tok::Str && i >= 1 && doc.s(i - 1) == "import" {
        let (_, imports) = declarations(&doc);
        let (written, _, _) = imports.iter().find(|(_, s, _)| *s == t.start)?;
        let target = path.parent().unwrap_or(Path::new("")).join(written);
        let text = std::fs::read_to_string(&target).ok()?;
        let decl = Declared { name: written.clone(), kind: None, ctor: None, start: 0, end: 0 };
        return Some(Found { path: target, text, decl });
    }
    if t.tok != Tok::Ident {
        return None;
    }
    // A parameter name or a constructor is not a reference.
    let next = doc.toks.get(i + 1).map(|_| doc.s(i + 1));
    if next == Some(":") || (i >= 1 && doc.s(i - 1) == "=") || (i >= 1 && doc.s(i - 1) == ".") {
        return None;
    }
    find_declaration(path, text, doc.s(i))
}

/// The declaration of `name`: in the document first, then in its imports (depth first, in
/// order), as the checker finds it.
pub fn find_declaration(path: &Path, text: &str, name: &str) -> Option<Found> {
    let mut seen = HashSet::new();
    search(path, text.to_string(), name, &mut seen, 0)
}

fn search(path: &Path, text: String, name: &str, seen: &mut HashSet<PathBuf>, depth: usize) -> Option<Found> {
    if depth > 32 || !seen.insert(path.canonicalize().unwrap_or_else(|_| path.to_path_buf())) {
        return None;
    }
    let (decls, imports) = declarations(&Doc::new(&text));
    if let Some(d) = decls.into_iter().find(|d| d.name == name) {
        return Some(Found { path: path.to_path_buf(), text, decl: d });
    }
    let base = path.parent().unwrap_or(Path::new(""));
    for (written, _, _) in imports {
        let target = base.join(&written);
        let Ok(t) = std::fs::read_to_string(&target) else { continue };
        if let Some(f) = search(&target, t, name, seen, depth + 1) {
            return Some(f);
        }
    }
    None
}

/// Every declaration visible from the document (its own, then its imports'), for completion.
pub fn all_declarations(path: &Path, text: &str) -> Vec<Declared> {
    let mut out = vec![];
    let mut seen = HashSet::new();
    collect(path, text.to_string(), &mut seen, &mut out, 0);
    out
}

fn collect(path: &Path, text: String, seen: &mut HashSet<PathBuf>, out: &mut Vec<Declared>, depth: usize) {
    if depth > 32 || !seen.insert(path.canonicalize().unwrap_or_else(|_| path.to_path_buf())) {
        return;
    }
    let (decls, imports) = declarations(&Doc::new(&text));
    out.extend(decls);
    let base = path.parent().unwrap_or(Path::new(""));
    for (written, _, _) in imports {
        let target = base.join(&written);
        if let Ok(t) = std::fs::read_to_string(&target) {
            collect(&target, t, seen, out, depth + 1);
        }
    }
}
