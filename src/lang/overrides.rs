//! Overrides: `--set niah.runs=20`, `--set experiment.seed=3`, `--set k=[0, 10]` (a sweep
//! variable), and the entries of a selected `profile` block, which are the same thing written
//! in the file. A `--set` value is parsed as an `.rhx` expression held in a pseudo-file named
//! `--set`, so a bad value is reported there with a caret; a profile entry is reported where it
//! is written. The checker then validates the value like any written value.
use std::collections::HashMap;

use super::ast::{self, Arg, Block, Decl, Experiment, Expr, ExprKind, Ident, Item, Param, StrLit};
use super::diagnostics::{did_you_mean, Code, Diagnostic};
use super::load::{SelectedProfile, SourceSet};
use super::parser::parse_expr_at;
use super::schema::{registry, Kind};
use super::source::Span;

/// Where an override comes from; decides the wording and the error kind of its diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `--set path=value` on the command line.
    Set,
    /// An entry `path: value` of a `profile` block.
    Profile,
}

impl Via {
    fn code(self) -> Code {
        match self {
            Via::Set => Code::Override,
            Via::Profile => Code::Profile,
        }
    }

    /// `path=value` or `path: value`, as this kind of override is written.
    fn show(self, path: &str, value: &str) -> String {
        match self {
            Via::Set => format!("{path}={value}"),
            Via::Profile => format!("{path}: {value}"),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Via::Set => "an override",
            Via::Profile => "a profile entry",
        }
    }
}

/// Applies one `path=value` override to the parsed program.
pub fn apply_override(set: &mut SourceSet, text: &str) -> Result<(), Diagnostic> {
    let file = set.sources.add("--set", None, text);
    set.override_files.push(file);
    let d = |mut d: Diagnostic, set: &SourceSet| {
        d.attach(&set.sources);
        d
    };
    let Some(eq) = text.find('=') else {
        return Err(d(
            Diagnostic::new(
                Code::Override,
                Span::new(file, 0, text.len()),
                "an override reads `path=value`",
            )
            .label("no `=` here")
            .help("e.g. `niah.runs=20`, `experiment.seed=3`, `k=[0, 5, 10]`"),
            set,
        ));
    };
    // Segments of the path, with spans.
    let lhs = &text[..eq];
    let mut segs: Vec<Ident> = vec![];
    let mut pos = 0;
    for part in lhs.split('.') {
        let lead = part.len() - part.trim_start().len();
        let name = part.trim();
        let start = pos + lead;
        let span = Span::new(file, start, start + name.len());
        let valid = !name.is_empty()
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(d(
                Diagnostic::new(
                    Code::Override,
                    if name.is_empty() {
                        Span::new(file, start, start + part.len().max(1))
                    } else {
                        span
                    },
                    "an override path is `declaration.parameter`",
                )
                .label("not a name")
                .help("e.g. `niah.runs=20`, `experiment.seed=3`, `k=[0, 5, 10]`"),
                set,
            ));
        }
        segs.push(Ident {
            name: name.to_string(),
            span,
        });
        pos += part.len() + 1;
    }
    let value = parse_expr_at(file, text, eq + 1).map_err(|e| d(e, set))?;
    apply_path(set, &segs, value, Via::Set)
}

/// Applies `path` ← `value` to the parsed program: `[decl, param]`, `[experiment, param]` or
/// `[sweep_variable]`, exactly the paths `--set` accepts. Diagnostics point at the path and
/// come back attached to their source.
pub fn apply_path(
    set: &mut SourceSet,
    path: &[Ident],
    value: Expr,
    via: Via,
) -> Result<(), Diagnostic> {
    let res = match path {
        [] => Err(Diagnostic::new(
            via.code(),
            value.span,
            format!("{} needs a path", via.what()),
        )
        .label("no path for this value")),
        [var] => set_sweep_var(set, var, value, via),
        [decl, param] if decl.name == "experiment" => {
            set_experiment(set, param, value, decl.span.to(param.span), via)
        }
        [decl, param] => set_param(set, decl, param, value, via),
        [first, .., last] => Err(Diagnostic::new(
            via.code(),
            first.span.to(last.span),
            match via {
                Via::Set => "an override path is `declaration.parameter`",
                Via::Profile => "a profile entry's path is `declaration.parameter`",
            },
        )
        .label("too many parts")
        .help(format!(
            "nested values cannot be overridden one by one; set the whole parameter, e.g. `{}`",
            via.show("base.capture", "[retrieval(copy_paste)]")
        ))),
    };
    res.map_err(|mut d| {
        d.attach(&set.sources);
        d
    })
}

/// Applies the profile `name` of the root file (what `--profile name` selects): first
/// `experiment.profile` becomes `name`, then the entries in the order written. Every bad
/// entry is reported, at the entry.
pub fn apply_profile(set: &mut SourceSet, name: &str) -> Result<(), Vec<Diagnostic>> {
    let root_name = set.sources.get(set.root).name.clone();
    let profiles: Vec<ast::Profile> = set.profiles().cloned().collect();
    let Some(profile) = profiles.iter().find(|p| p.name.name == name) else {
        let file = set.sources.add("--profile", None, name);
        let names: Vec<&str> = profiles.iter().map(|p| p.name.name.as_str()).collect();
        let help = if names.is_empty() {
            format!("no `profile <name> {{ ... }}` is declared in `{root_name}`")
        } else {
            let listed = names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            match did_you_mean(name, names.iter().copied()) {
                Some(dym) => format!("{dym} (`{root_name}` declares {listed})"),
                None => format!("`{root_name}` declares {listed}"),
            }
        };
        let mut d = Diagnostic::new(
            Code::Profile,
            Span::new(file, 0, name.len()),
            format!("no profile named `{name}`"),
        )
        .label("unknown profile")
        .help(help);
        d.attach(&set.sources);
        return Err(vec![d]);
    };
    set.profile = Some(SelectedProfile {
        name: name.to_string(),
        span: profile.span,
    });
    let at = profile.name.span;
    let header = |n: &str| Ident {
        name: n.into(),
        span: at,
    };
    let own_name = Expr {
        kind: ExprKind::Str(name.to_string()),
        span: at,
    };
    let mut errs = vec![];
    if let Err(d) = apply_path(
        set,
        &[header("experiment"), header("profile")],
        own_name,
        Via::Profile,
    ) {
        errs.push(d);
    }
    let mut seen: HashMap<String, Span> = HashMap::new();
    for e in &profile.entries {
        let key = ast::path_string(&e.path);
        let mut d = if key == "experiment.profile" {
            Some(
                Diagnostic::new(
                    Code::Profile,
                    e.path_span(),
                    "a profile cannot set `experiment.profile`",
                )
                .label("set by the profile itself")
                .note(
                    profile.name.span,
                    "selecting this profile sets it to this name",
                )
                .help(format!(
                    "remove this entry; `--profile {name}` sets `experiment.profile` to \"{name}\""
                )),
            )
        } else if let Some(first) = seen.insert(key.clone(), e.path_span()) {
            Some(
                Diagnostic::new(
                    Code::DuplicateParam,
                    e.path_span(),
                    format!("`{key}` is given twice in profile `{name}`"),
                )
                .label("second value")
                .note(first, "first value here")
                .help("keep one of them"),
            )
        } else {
            apply_path(set, &e.path, e.value.clone(), Via::Profile).err()
        };
        if let Some(d) = d.as_mut() {
            d.attach(&set.sources);
        }
        errs.extend(d);
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn set_experiment(
    set: &mut SourceSet,
    param: &Ident,
    value: Expr,
    path_span: Span,
    via: Via,
) -> Result<(), Diagnostic> {
    let spec = &registry().experiment;
    if spec.param(&param.name).is_none() {
        let names = spec.params.iter().map(|p| p.name);
        return Err(Diagnostic::new(
            via.code(),
            param.span,
            format!("the experiment header has no parameter `{}`", param.name),
        )
        .label("unknown parameter")
        .help(did_you_mean(&param.name, names.clone()).unwrap_or_else(|| {
            format!(
                "experiment parameters: {}",
                names.collect::<Vec<_>>().join(", ")
            )
        })));
    }
    let root = set.root;
    let stem = set
        .sources
        .get(root)
        .path
        .as_ref()
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let file = set.files.iter_mut().find(|f| f.id == root).expect("root");
    let header = file.ast.items.iter_mut().find_map(|i| match i {
        Item::Experiment(e) => Some(e),
        _ => None,
    });
    let header = match header {
        Some(h) => h,
        None => {
            file.ast.items.insert(
                0,
                Item::Experiment(Experiment {
                    name: StrLit {
                        value: stem,
                        span: path_span,
                    },
                    block: None,
                    span: path_span,
                }),
            );
            match &mut file.ast.items[0] {
                Item::Experiment(e) => e,
                _ => unreachable!(),
            }
        }
    };
    let block = header.block.get_or_insert_with(|| Block {
        params: vec![],
        span: path_span,
    });
    upsert(block, param, value);
    Ok(())
}

fn upsert(block: &mut Block, name: &Ident, value: Expr) {
    let span = name.span.to(value.span);
    if let Some(p) = block.params.iter_mut().find(|p| p.name.name == name.name) {
        p.value = value;
    } else {
        block.params.push(Param {
            name: name.clone(),
            value,
            span,
        });
    }
}

fn set_param(
    set: &mut SourceSet,
    decl_name: &Ident,
    param: &Ident,
    value: Expr,
    via: Via,
) -> Result<(), Diagnostic> {
    let mut names = vec![];
    let mut target: Option<&mut Decl> = None;
    for f in &mut set.files {
        for item in &mut f.ast.items {
            let decls: Vec<&mut Decl> = match item {
                Item::Decl(d) => vec![d],
                Item::Sweep(s) => s.body.iter_mut().collect(),
                _ => vec![],
            };
            for d in decls {
                names.push(d.name.name.clone());
                if d.name.name == decl_name.name && target.is_none() {
                    target = Some(d);
                }
            }
        }
    }
    let Some(decl) = target else {
        return Err(Diagnostic::new(via.code(), decl_name.span, format!("no declaration named `{}`", decl_name.name))
            .label("unknown declaration")
            .maybe_help(
                names
                    .iter()
                    .find(|n| decl_name.name.starts_with(&format!("{n}_")))
                    .map(|n| format!("`{}` looks like an instance of the sweep template `{n}`; instances cannot be set one by one, `{n}.{}` sets all of them", decl_name.name, param.name))
                    .or_else(|| did_you_mean(&decl_name.name, names.iter().map(String::as_str))),
            ));
    };
    // Validate the parameter against the schema when the constructor is known.
    let spec = Kind::from_name(&decl.kind.name)
        .and_then(|k| decl.constructor().and_then(|c| registry().ctor(k, &c.name)));
    let mut positional_index = None;
    if let Some(spec) = spec {
        match spec.params.iter().position(|p| p.name == param.name) {
            None => {
                let names = spec.params.iter().map(|p| p.name);
                return Err(Diagnostic::new(
                    via.code(),
                    param.span,
                    format!("`{}` has no parameter `{}`", decl_name.name, param.name),
                )
                .label("unknown parameter")
                .help(did_you_mean(&param.name, names.clone()).unwrap_or_else(|| {
                    format!(
                        "`{}` accepts: {}",
                        spec.name,
                        names.collect::<Vec<_>>().join(", ")
                    )
                })));
            }
            Some(i) if i < spec.positional => positional_index = Some(i),
            Some(_) => {}
        }
    }
    if let ExprKind::Call(call) = &mut decl.value.kind {
        if let Some(i) = positional_index {
            let mut n = 0;
            for a in &mut call.args {
                if let Arg::Positional(e) = a {
                    if n == i {
                        *e = value;
                        return Ok(());
                    }
                    n += 1;
                }
            }
        }
        for a in &mut call.args {
            if let Arg::Named(p) = a {
                if p.name.name == param.name {
                    p.value = value;
                    return Ok(());
                }
            }
        }
    }
    let span = param.span.to(value.span);
    let block = decl.block.get_or_insert_with(|| Block {
        params: vec![],
        span,
    });
    upsert(block, param, value);
    Ok(())
}

fn set_sweep_var(
    set: &mut SourceSet,
    var: &Ident,
    value: Expr,
    via: Via,
) -> Result<(), Diagnostic> {
    let mut found = vec![];
    let mut decls = vec![];
    for f in &mut set.files {
        for item in &mut f.ast.items {
            match item {
                Item::Sweep(s) => {
                    for v in &mut s.vars {
                        if v.name.name == var.name {
                            found.push(v);
                        }
                    }
                }
                Item::Decl(d) => decls.push(d.name.name.clone()),
                _ => {}
            }
        }
    }
    match found.len() {
        1 => {
            found[0].values = value;
            Ok(())
        }
        0 => Err(Diagnostic::new(
            via.code(),
            var.span,
            format!("no sweep variable named `{}`", var.name),
        )
        .label("not a sweep variable")
        .help(if decls.contains(&var.name) {
            format!(
                "to change a parameter of `{}`, write `{}`",
                var.name,
                via.show(&format!("{}.<parameter>", var.name), "value")
            )
        } else {
            format!(
                "{} reads `{}` or `{}`",
                via.what(),
                via.show("declaration.parameter", "value"),
                via.show("sweep_variable", "[values]")
            )
        })),
        n => Err(Diagnostic::new(
            via.code(),
            var.span,
            format!("{n} sweeps have a variable named `{}`", var.name),
        )
        .label("ambiguous")),
    }
}
