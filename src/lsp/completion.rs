//! Completion from the schema registry, by where the cursor is:
//!
//! * at the start of a statement: the declaration kinds and the keywords;
//! * after `<kind> <name> =`: the constructors of that kind;
//! * inside a constructor's `{ … }` or a call's `( … )`, where a parameter name goes: the
//!   parameters not given yet, with their docs;
//! * after `param:` (or inside its `[ … ]`): its enum values, the declared names and inline
//!   constructors of the kind it takes, or the value functions of its family.
use std::path::Path;

use lsp_types::{CompletionItem, CompletionItemKind, Documentation, MarkupContent, MarkupKind};

use super::definition::all_declarations;
use super::hover::{callee_markdown, default_text, enum_values, kind_markdown, param_markdown, value_param};
use super::scan::{Callee, Doc, Owner, Tok};
use crate::lang::schema::{registry, Kind, ParamSpec, Ty};

/// Statement keywords of the grammar (`grammar/rhx.pest`) besides the declaration kinds.
const STATEMENT_KEYWORDS: &[&str] = &["experiment", "import", "sweep", "profile"];

/// Completion items at byte `offset` of `text` (the file at `path`).
pub fn complete(path: &Path, text: &str, offset: usize) -> Vec<CompletionItem> {
    let doc = Doc::new(text);
    // The word being typed (if any) is replaced; context is what comes before it.
    let typing = doc.at(offset).filter(|&i| doc.toks[i].tok == Tok::Ident && doc.toks[i].start < offset);
    let slot = typing.unwrap_or_else(|| doc.toks.iter().position(|t| t.start >= offset).unwrap_or(doc.toks.len()));
    let frames = doc.frames(slot);
    let line_start = text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let word_start = typing.map_or(offset, |i| doc.toks[i].start);
    let starts_line = text.get(line_start..word_start).is_some_and(|s| s.trim().is_empty());
    match frames.last().map(|f| f.owner) {
        None | Some(Owner::SweepBody) => {
            if slot >= 3 && doc.s(slot - 1) == "=" && doc.toks[slot - 2].tok == Tok::Ident && !starts_line {
                return Kind::from_name(doc.s(slot - 3)).map(ctor_items).unwrap_or_default();
            }
            if starts_line {
                return statement_items(frames.is_empty());
            }
            vec![]
        }
        Some(Owner::Params(c)) => {
            let f = frames.last().expect("checked");
            let es = doc.element_start(f.open, slot);
            if es == slot {
                let mut items = param_items(&doc, f.open, c);
                if doc.s(f.open) == "(" {
                    if let Some((_, p)) = value_param(&doc, &frames, slot) {
                        items.extend(value_items(path, text, p));
                    }
                }
                items
            } else if es + 2 == slot && doc.s(es + 1) == ":" {
                value_param(&doc, &frames, slot).map(|(_, p)| value_items(path, text, p)).unwrap_or_default()
            } else {
                vec![]
            }
        }
        Some(Owner::ListOf(c, p)) => {
            let f = frames.last().expect("checked");
            if doc.element_start(f.open, slot) == slot {
                c.spec().param(p).map(|p| value_items(path, text, p)).unwrap_or_default()
            } else {
                vec![]
            }
        }
        Some(Owner::Other) => vec![],
    }
}

fn markdown(value: String) -> Option<Documentation> {
    Some(Documentation::MarkupContent(MarkupContent { kind: MarkupKind::Markdown, value }))
}

fn statement_items(top_level: bool) -> Vec<CompletionItem> {
    let mut items: Vec<CompletionItem> = Kind::ALL
        .iter()
        .map(|k| CompletionItem {
            label: k.name().into(),
            kind: Some(CompletionItemKind::KEYWORD),
            detail: Some(k.doc().into()),
            documentation: markdown(kind_markdown(*k)),
            ..Default::default()
        })
        .collect();
    if top_level {
        items.extend(STATEMENT_KEYWORDS.iter().map(|k| CompletionItem { label: k.to_string(), kind: Some(CompletionItemKind::KEYWORD), ..Default::default() }));
    }
    items
}

fn ctor_items(k: Kind) -> Vec<CompletionItem> {
    registry().ctors_of(k).map(|f| callee_item(Callee::Ctor(k, f.name), CompletionItemKind::CONSTRUCTOR)).collect()
}

fn callee_item(c: Callee, kind: CompletionItemKind) -> CompletionItem {
    let spec = c.spec();
    CompletionItem {
        label: spec.name.into(),
        kind: Some(kind),
        detail: Some(spec.signature()),
        documentation: markdown(callee_markdown(c)),
        ..Default::default()
    }
}

/// The parameters of `c` not given yet in the bracket opened at token `open`.
fn param_items(doc: &Doc, open: usize, c: Callee) -> Vec<CompletionItem> {
    let mut given = vec![];
    let mut depth = 0usize;
    for j in open + 1..doc.toks.len() {
        match doc.s(j) {
            "{" | "(" | "[" => depth += 1,
            "}" | ")" | "]" if depth == 0 => break,
            "}" | ")" | "]" => depth -= 1,
            ":" if depth == 0 && doc.toks[j - 1].tok == Tok::Ident => given.push(doc.s(j - 1)),
            _ => {}
        }
    }
    c.spec()
        .params
        .iter()
        .filter(|p| !given.contains(&p.name))
        .map(|p| CompletionItem {
            label: p.name.into(),
            kind: Some(CompletionItemKind::FIELD),
            detail: Some(format!("{} ({})", p.ty.describe(), default_text(p))),
            documentation: markdown(param_markdown(c, p)),
            insert_text: Some(format!("{}: ", p.name)),
            ..Default::default()
        })
        .collect()
}

/// What may be written as the value of `p`.
fn value_items(path: &Path, text: &str, p: &ParamSpec) -> Vec<CompletionItem> {
    let mut items: Vec<CompletionItem> = enum_values(&p.ty)
        .into_iter()
        .map(|v| CompletionItem {
            label: v,
            kind: Some(CompletionItemKind::ENUM_MEMBER),
            detail: Some(format!("{}: {}", p.name, p.ty.describe())),
            documentation: markdown(p.doc.into()),
            ..Default::default()
        })
        .collect();
    let mut kinds = vec![];
    let mut families = vec![];
    collect_refs(&p.ty, &mut kinds, &mut families);
    if !kinds.is_empty() {
        for d in all_declarations(path, text) {
            if d.kind.is_some_and(|k| kinds.contains(&k)) {
                items.push(CompletionItem {
                    label: d.name.clone(),
                    kind: Some(CompletionItemKind::VARIABLE),
                    detail: Some(format!("{} {} = {}", d.kind.map_or("", Kind::name), d.name, d.ctor.as_deref().unwrap_or("…"))),
                    ..Default::default()
                });
            }
        }
        for k in kinds {
            items.extend(ctor_items(k));
        }
    }
    for fam in families {
        items.extend(registry().funcs_of(fam).map(|f| callee_item(Callee::Func(fam, f.name), CompletionItemKind::FUNCTION)));
    }
    items
}

fn collect_refs(ty: &Ty, kinds: &mut Vec<Kind>, families: &mut Vec<crate::lang::schema::Family>) {
    match ty {
        Ty::Decl(k) if !kinds.contains(k) => kinds.push(*k),
        Ty::Func(f) if !families.contains(f) => families.push(*f),
        Ty::List(t) => collect_refs(t, kinds, families),
        Ty::OneOf(alts) => alts.iter().for_each(|t| collect_refs(t, kinds, families)),
        _ => {}
    }
}
