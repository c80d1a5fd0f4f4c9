//! References and calls: declarations used by name or inline, value functions (captures, interventions).
use super::*;

impl<'a> Checker<'a> {
    pub(super) fn check_decl_ref(
        &mut self,
        kind: Kind,
        ty: &Ty,
        e: &Expr,
        what: What,
        sc: &mut Scope,
    ) -> Option<Value> {
        match &e.kind {
            ExprKind::Path(p) if p.len() == 1 => {
                let name = &p[0].name;
                match self.lookup(name, sc) {
                    Lookup::Sym(i) => match self.syms[i].kind {
                        Some(k) if k == kind => {
                            let target = self.syms[i].name.clone();
                            sc.deps.push((target.clone(), e.span));
                            Some(Value::Ref { kind, name: target })
                        }
                        Some(_) => {
                            self.wrong_type(ty, e, what, sc);
                            None
                        }
                        None => None, // unknown kind, reported already
                    },
                    Lookup::Family(inst, k) => {
                        if k.is_some() {
                            let first = inst
                                .first()
                                .cloned()
                                .unwrap_or_else(|| format!("{name}_..."));
                            self.err(
                                Diagnostic::new(Code::WrongType, e.span, format!("`{}` expects {}, found the sweep family `{name}`", what.param, ty.describe()))
                                    .label(format!("{} instances", inst.len()))
                                    .note(self.declared_at[name], "declared in a sweep here")
                                    .help(format!("name one instance (e.g. `{first}`), or pass the family where a list is expected")),
                            );
                        }
                        None
                    }
                    Lookup::Bound(_) => unreachable!("sweep variables are resolved before"),
                    Lookup::Missing => {
                        if let Some(spec) = self.reg.ctor(kind, name) {
                            return self.inline(kind, spec, &p[0], &[], what, sc);
                        }
                        let names = self.all_names(sc);
                        let mut d = Diagnostic::new(
                            Code::UnknownName,
                            e.span,
                            format!("unknown name `{name}`"),
                        )
                        .label(format!("expected {}", kind.article()));
                        d = match suggest(name, names.iter().map(String::as_str)) {
                            Some(s) => d.help(format!("did you mean `{s}`?")),
                            None => {
                                let same: Vec<String> = names
                                    .iter()
                                    .filter(|n| self.kind_of_name(n) == Some(kind))
                                    .cloned()
                                    .collect();
                                if same.is_empty() {
                                    d.help(format!(
                                        "no {} is declared; declare one with `{} <name> = ...`",
                                        kind.name(),
                                        kind.name()
                                    ))
                                } else {
                                    d.help(format!(
                                        "declared {}: {}",
                                        kind.plural(),
                                        same.join(", ")
                                    ))
                                }
                            }
                        };
                        self.err(d);
                        None
                    }
                }
            }
            ExprKind::Call(c) => {
                if let Some(spec) = self.reg.ctor(kind, &c.func.name) {
                    return self.inline(kind, spec, &c.func, &c.args, what, sc);
                }
                let other = self.reg.kinds_with_ctor(&c.func.name);
                let fam = self.reg.family_of(&c.func.name);
                let names: Vec<&str> = self.reg.ctors_of(kind).map(|c| c.name).collect();
                let d = if let Some(k) = other.first() {
                    Diagnostic::new(
                        Code::WrongType,
                        c.func.span,
                        format!(
                            "`{}` expects {}, found a call to the {} constructor `{}`",
                            what.param,
                            kind.article(),
                            k.name(),
                            c.func.name
                        ),
                    )
                    .label(format!("makes {}", k.article()))
                    .help(format!(
                        "{} constructors: {}",
                        kind.name(),
                        names.join(", ")
                    ))
                } else if let Some(f) = fam {
                    Diagnostic::new(
                        Code::WrongType,
                        c.func.span,
                        format!(
                            "`{}` expects {}, found the {} `{}`",
                            what.param,
                            kind.article(),
                            f.name(),
                            c.func.name
                        ),
                    )
                    .label(format!("a {}", f.name()))
                } else {
                    let d = Diagnostic::new(
                        Code::UnknownConstructor,
                        c.func.span,
                        format!("unknown {} constructor `{}`", kind.name(), c.func.name),
                    )
                    .label("no such constructor");
                    match suggest(&c.func.name, names.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help(format!(
                            "{} constructors: {}",
                            kind.name(),
                            names.join(", ")
                        )),
                    }
                };
                self.err(d);
                None
            }
            _ => {
                self.wrong_type(ty, e, what, sc);
                None
            }
        }
    }

    pub(super) fn kind_of_name(&self, n: &str) -> Option<Kind> {
        match self.names.get(n) {
            Some(Entry::Sym(i)) => self.syms[*i].kind,
            Some(Entry::Family { kind, .. }) => *kind,
            None => None,
        }
    }

    /// An inline constructor call: an anonymous declaration named `<parent>.<param>`.
    pub(super) fn inline(
        &mut self,
        kind: Kind,
        spec: &'static FuncSpec,
        callee: &Ident,
        args: &[ast::Arg],
        what: What,
        sc: &mut Scope,
    ) -> Option<Value> {
        let before = sc.deps.len();
        let parent = sc.node.clone();
        sc.node = format!("{parent}.{}", what.param);
        let bound = self.bind_args(spec, args, None, Some(callee), sc, false);
        let name = std::mem::replace(&mut sc.node, parent);
        let mut deps: Vec<String> = sc.deps[before..].iter().map(|(n, _)| n.clone()).collect();
        deps.sort();
        deps.dedup();
        Some(Value::Inline(Box::new(Node {
            name,
            kind,
            constructor: spec.name.into(),
            args: bound,
            deps,
            span: callee.span,
            sweep: vec![],
            family: None,
        })))
    }

    pub(super) fn check_func(
        &mut self,
        family: Family,
        ty: &Ty,
        e: &Expr,
        what: What,
        sc: &mut Scope,
    ) -> Option<Value> {
        let (callee, args): (&Ident, &[ast::Arg]) = match &e.kind {
            ExprKind::Call(c) => (&c.func, &c.args),
            ExprKind::Path(p) if p.len() == 1 => (&p[0], &[]),
            _ => {
                self.wrong_type(ty, e, what, sc);
                return None;
            }
        };
        if let Some(spec) = self.reg.func(family, &callee.name) {
            let bound = self.bind_args(spec, args, None, Some(callee), sc, false);
            return Some(Value::Call {
                family,
                func: spec.name.into(),
                args: bound,
            });
        }
        let names: Vec<&str> = self.reg.funcs_of(family).map(|f| f.name).collect();
        let d = if let Some(other) = self.reg.family_of(&callee.name) {
            Diagnostic::new(
                Code::WrongType,
                callee.span,
                format!(
                    "`{}` expects {} {}, found the {} `{}`",
                    what.param,
                    if family == Family::Intervention {
                        "an"
                    } else {
                        "a"
                    },
                    family.name(),
                    other.name(),
                    callee.name
                ),
            )
            .label(format!("a {}", other.name()))
            .help(format!("{}s: {}", family.name(), names.join(", ")))
        } else if let Some(k) = self.reg.kinds_with_ctor(&callee.name).first() {
            Diagnostic::new(
                Code::WrongType,
                callee.span,
                format!(
                    "`{}` expects {} {}, found the {} constructor `{}`",
                    what.param,
                    if family == Family::Intervention {
                        "an"
                    } else {
                        "a"
                    },
                    family.name(),
                    k.name(),
                    callee.name
                ),
            )
            .label(format!("makes {}", k.article()))
            .help(format!("{}s: {}", family.name(), names.join(", ")))
        } else {
            let d = Diagnostic::new(
                Code::UnknownConstructor,
                callee.span,
                format!("unknown {} `{}`", family.name(), callee.name),
            )
            .label(format!("not a {}", family.name()));
            match suggest(&callee.name, names.iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!("{}s: {}", family.name(), names.join(", "))),
            }
        };
        self.err(d);
        None
    }
}

