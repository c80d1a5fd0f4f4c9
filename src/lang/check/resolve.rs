//! Resolving names: declarations into the symbol table (with sweep templates), name lookup, the constructor of a declaration.
use super::*;

impl<'a> Checker<'a> {
    pub(super) fn declare(&mut self, name: &Ident, entry: Entry) -> bool {
        if let Some(first) = self.declared_at.get(&name.name).copied() {
            let first_file = &self.sources.get(first.file).name;
            let here = if first.file == name.span.file {
                String::new()
            } else {
                format!(" (in {first_file})")
            };
            self.err(
                Diagnostic::new(
                    Code::DuplicateDecl,
                    name.span,
                    format!("`{}` is declared twice", name.name),
                )
                .label("second declaration")
                .note(first, format!("first declared here{here}"))
                .help("every declaration needs its own name; rename one of them"),
            );
            return false;
        }
        self.declared_at.insert(name.name.clone(), name.span);
        self.names.insert(name.name.clone(), entry);
        true
    }

    pub(super) fn decl_kind(&mut self, d: &ast::Decl) -> Option<Kind> {
        match Kind::from_name(&d.kind.name) {
            Some(k) => Some(k),
            None => {
                let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                let mut diag = Diagnostic::new(
                    Code::UnknownKind,
                    d.kind.span,
                    format!("unknown declaration kind `{}`", d.kind.name),
                )
                .label("not a kind of declaration");
                diag = match suggest(&d.kind.name, kinds.iter().copied()) {
                    Some(s) => diag.help(format!("did you mean `{s}`?")),
                    None => diag.help(format!("declarations are: {}, and the `experiment`, `import`, `sweep` and `profile` statements", kinds.join(", "))),
                };
                self.err(diag);
                None
            }
        }
    }

    pub(super) fn collect(&mut self) {
        let set = self.set;
        let mut profiles: HashMap<&str, Span> = HashMap::new();
        for file in &set.files {
            for item in &file.ast.items {
                match item {
                    Item::Profile(p) if file.id != set.root => {
                        let root = &self.sources.get(set.root).name;
                        let mut d = Diagnostic::new(
                            Code::Profile,
                            p.name.span,
                            format!("profile `{}` is declared in an imported file", p.name.name),
                        )
                        .label("profiles of imported files are not used")
                        .help(format!(
                            "declare profiles in the file given to `rhx` (`{root}`); `--profile` selects among them, and their entries can set anything imported"
                        ));
                        if let Some(at) = file.imported_at {
                            d = d.note(at, "imported here");
                        }
                        self.err(d);
                    }
                    Item::Profile(p) => {
                        if let Some(first) = profiles.insert(&p.name.name, p.name.span) {
                            self.err(
                                Diagnostic::new(
                                    Code::Profile,
                                    p.name.span,
                                    format!("profile `{}` is declared twice", p.name.name),
                                )
                                .label("second profile")
                                .note(first, "first declared here")
                                .help("rename one of them, or merge their entries"),
                            );
                        }
                    }
                    Item::Decl(d) => {
                        let kind = self.decl_kind(d);
                        let idx = self.syms.len();
                        if self.declare(&d.name, Entry::Sym(idx)) {
                            self.syms.push(Sym {
                                name: d.name.name.clone(),
                                kind,
                                decl: d,
                                bindings: vec![],
                                siblings: HashMap::new(),
                                family: None,
                            });
                        }
                    }
                    Item::Sweep(s) => self.collect_sweep(s),
                    _ => {}
                }
            }
        }
    }

    pub(super) fn lookup(&self, name: &str, sc: &Scope) -> Lookup {
        if sc.local {
            if let Some(b) = sc.bindings.iter().find(|b| b.var == name) {
                return Lookup::Bound(b.clone());
            }
            if let Some(inst) = sc.siblings.get(name) {
                if let Some(Entry::Sym(i)) = self.names.get(inst) {
                    return Lookup::Sym(*i);
                }
            }
        }
        match self.names.get(name) {
            Some(Entry::Sym(i)) => Lookup::Sym(*i),
            Some(Entry::Family { kind, instances }) => Lookup::Family(instances.clone(), *kind),
            None => Lookup::Missing,
        }
    }

    pub(super) fn all_names(&self, sc: &Scope) -> Vec<String> {
        let mut v: Vec<String> = self.names.keys().cloned().collect();
        if sc.local {
            v.extend(sc.bindings.iter().map(|b| b.var.clone()));
        }
        v.sort();
        v
    }

    pub(super) fn check_sym(&mut self, i: usize) -> Option<(Node, Vec<(String, Span)>)> {
        let sym = &self.syms[i];
        let kind = sym.kind?;
        let decl = sym.decl;
        let name = sym.name.clone();
        let bindings = sym.bindings.clone();
        let siblings = sym.siblings.clone();
        let family = sym.family.clone();
        let mut sc = Scope {
            node: name.clone(),
            bindings: &bindings,
            siblings: &siblings,
            local: true,
            deps: vec![],
        };
        let (ctor, call_args): (&Ident, &[ast::Arg]) = match &decl.value.kind {
            ExprKind::Call(c) => (&c.func, &c.args),
            ExprKind::Path(p) if p.len() == 1 => (&p[0], &[]),
            other => {
                let list = self
                    .reg
                    .ctors_of(kind)
                    .map(|c| format!("{}(...)", c.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.err(
                    Diagnostic::new(
                        Code::WrongType,
                        decl.value.span,
                        format!(
                            "expected a {} constructor, found {}",
                            kind.name(),
                            other.describe()
                        ),
                    )
                    .label("not a constructor")
                    .help(format!("{} constructors: {list}", kind.name())),
                );
                return None;
            }
        };
        let spec = self.ctor_spec(kind, ctor, &sc)?;
        let args = self.bind_args(
            spec,
            call_args,
            decl.block.as_ref(),
            Some(ctor),
            &mut sc,
            false,
        );
        let mut deps: Vec<String> = sc.deps.iter().map(|(n, _)| n.clone()).collect();
        deps.sort();
        deps.dedup();
        let sweep = bindings
            .iter()
            .map(|b| (b.var.clone(), literal_value(&b.value)))
            .collect();
        let node = Node {
            name,
            kind,
            constructor: spec.name.to_string(),
            args,
            deps,
            span: decl.span,
            sweep,
            family,
        };
        Some((node, sc.deps))
    }

    /// The constructor `ctor` of `kind`, or an error.
    pub(super) fn ctor_spec(&mut self, kind: Kind, ctor: &Ident, sc: &Scope) -> Option<&'static FuncSpec> {
        if let Some(spec) = self.reg.ctor(kind, &ctor.name) {
            return Some(spec);
        }
        let reg = self.reg;
        let names: Vec<&str> = reg.ctors_of(kind).map(|c| c.name).collect();
        let other = reg.kinds_with_ctor(&ctor.name);
        let mut d = if let Some(k) = other.first() {
            Diagnostic::new(
                Code::UnknownConstructor,
                ctor.span,
                format!(
                    "`{}` is not a {} constructor; it makes {}",
                    ctor.name,
                    kind.name(),
                    k.article()
                ),
            )
            .label(format!("makes {}", k.article()))
            .help(format!(
                "{} constructors: {}",
                kind.name(),
                names.join(", ")
            ))
        } else {
            let d = Diagnostic::new(
                Code::UnknownConstructor,
                ctor.span,
                format!("unknown {} constructor `{}`", kind.name(), ctor.name),
            )
            .label("no such constructor");
            match suggest(&ctor.name, names.iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!(
                    "{} constructors: {}",
                    kind.name(),
                    names.join(", ")
                )),
            }
        };
        if matches!(self.lookup(&ctor.name, sc), Lookup::Sym(_)) {
            d = d.note(
                self.declared_at[&ctor.name],
                format!(
                    "`{}` is a declaration; refer to it by name where {} is expected",
                    ctor.name,
                    kind.article()
                ),
            );
        }
        self.err(d);
        None
    }
}

