//! Hover documentation, read from the schema registry — the same `FuncSpec` and `ParamSpec`
//! docs, types and defaults that `docs/LANGUAGE.md` is generated from, so the editor and the
//! reference never disagree. Works on half-typed text (see [`super::scan`]).
use std::path::Path;

use super::definition::{find_declaration, Found};
use super::scan::{Callee, Doc, Owner, Tok};
use crate::lang::schema::{registry, Default, Kind, ParamSpec, Ty};

/// Markdown for the word at byte `offset`, if it is a declaration kind, a constructor or value
/// function, a parameter, an enum value or a declared name.
pub fn hover(path: &Path, text: &str, offset: usize) -> Option<(String, (usize, usize))> {
    let doc = Doc::new(text);
    let i = doc.at(offset)?;
    if doc.toks[i].tok != Tok::Ident {
        return None;
    }
    let span = (doc.toks[i].start, doc.toks[i].end);
    let word = doc.s(i);
    let next = (i + 1 < doc.toks.len()).then(|| doc.s(i + 1));
    let frames = doc.frames(i);
    // `kind name = ...` at the start of a statement.
    if next.is_some_and(|_| i + 2 < doc.toks.len() && doc.toks[i + 1].tok == Tok::Ident && doc.s(i + 2) == "=") {
        if let Some(k) = Kind::from_name(word) {
            return Some((kind_markdown(k), span));
        }
    }
    // A constructor after `=`, or any call.
    let after_eq = i >= 1 && doc.s(i - 1) == "=";
    if after_eq || next == Some("(") {
        if let Some(c) = doc.callee_at(i) {
            return Some((callee_markdown(c), span));
        }
    }
    let owner = frames.last().map(|f| f.owner);
    // A parameter name: `name:` inside a constructor's block or a call.
    if next == Some(":") {
        if let Some(Owner::Params(c)) = owner {
            if let Some(p) = c.spec().param(word) {
                return Some((param_markdown(c, p), span));
            }
        }
    }
    // A value: an enum value of the parameter it is given to.
    if let Some((c, p)) = value_param(&doc, &frames, i) {
        if enum_values(&p.ty).iter().any(|v| v == word) {
            let text = format!("`{word}` — a value of `{}`\n\n{}", p.name, param_markdown(c, p));
            return Some((text, span));
        }
    }
    // A declared name (in this file or an imported one).
    let found = find_declaration(path, text, word)?;
    Some((declared_markdown(&found), span))
}

/// The parameter whose value token `i` is part of: `name: <here>`, an element of a list given
/// to `name`, or a positional argument.
pub fn value_param(doc: &Doc, frames: &[super::scan::Frame], i: usize) -> Option<(Callee, &'static ParamSpec)> {
    let f = frames.last()?;
    match f.owner {
        Owner::ListOf(c, p) => Some((c, c.spec().param(p)?)),
        Owner::Params(c) => {
            let es = doc.element_start(f.open, i);
            if es + 1 < i && doc.s(es + 1) == ":" && doc.toks[es].tok == Tok::Ident {
                Some((c, c.spec().param(doc.s(es))?))
            } else if es == i && doc.s(f.open) == "(" {
                let idx = doc.element_index(f.open, i);
                Some((c, c.spec().positional_params().get(idx)?))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Values written as bare words (or `ns.name`) that a type accepts.
pub fn enum_values(ty: &Ty) -> Vec<String> {
    match ty {
        Ty::Enum(v) => v.iter().map(|s| s.to_string()).collect(),
        Ty::Bool => vec!["true".into(), "false".into()],
        Ty::Device => vec!["auto".into(), "cpu".into(), "cuda".into()],
        Ty::Builtin { ns, names } => names.iter().map(|n| format!("{ns}.{n}")).collect(),
        Ty::List(t) => enum_values(t),
        Ty::OneOf(alts) => alts.iter().flat_map(enum_values).collect(),
        _ => vec![],
    }
}

pub fn kind_markdown(k: Kind) -> String {
    let ctors: Vec<String> = registry().ctors_of(k).map(|c| format!("`{}`", c.name)).collect();
    format!("**{}** — {}\n\nconstructors: {}", k.name(), k.doc(), ctors.join(", "))
}

/// The constructor's or function's section of `docs/LANGUAGE.md`: signature, doc, parameters.
pub fn callee_markdown(c: Callee) -> String {
    let spec = c.spec();
    let what = match c {
        Callee::Ctor(k, _) => format!("{} constructor", k.name()),
        Callee::Func(f, _) => format!("{} function", f.name()),
        Callee::Experiment => "experiment header".into(),
    };
    format!("**`{}`** — {what}\n\n{}\n\n{}", spec.signature(), spec.doc, spec.doc_table())
}

pub fn default_text(p: &ParamSpec) -> String {
    match &p.default {
        Default::Required => "required".into(),
        Default::Optional => "optional, no default".into(),
        Default::Value(v) => format!("default `{v}`"),
        Default::ExperimentSeed => "default: the experiment's seed".into(),
    }
}

pub fn param_markdown(c: Callee, p: &ParamSpec) -> String {
    format!("**`{}`**: {} ({})\n\n{}\n\nparameter of `{}`", p.name, p.ty.describe(), default_text(p), p.doc, c.spec().signature())
}

fn declared_markdown(f: &Found) -> String {
    let d = &f.decl;
    let what = match (&d.kind, &d.ctor) {
        (Some(k), Some(c)) => format!("```rhx\n{} {} = {c}\n```\n\n{}", k.name(), d.name, k.doc()),
        (Some(k), None) => format!("```rhx\n{} {}\n```", k.name(), d.name),
        (None, _) => format!("sweep variable `{}`", d.name),
    };
    format!("{what}\n\ndeclared in `{}`", f.path.display())
}
