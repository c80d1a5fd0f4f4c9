//! Sweeps: expanding `sweep v in [...] { ... }` into instances, and the values a sweep variable takes.
use super::*;

impl<'a> Checker<'a> {
    pub(super) fn collect_sweep(&mut self, s: &'a ast::Sweep) {
        // Variables: distinct, not shadowing declarations, used in the body.
        let body_names: HashSet<&str> = s.body.iter().map(|d| d.name.name.as_str()).collect();
        let mut ok = true;
        let mut seen_vars: HashMap<&str, Span> = HashMap::new();
        for v in &s.vars {
            if let Some(first) = seen_vars.insert(&v.name.name, v.name.span) {
                self.err(
                    Diagnostic::new(
                        Code::Sweep,
                        v.name.span,
                        format!("sweep variable `{}` is given twice", v.name.name),
                    )
                    .label("again")
                    .note(first, "first here"),
                );
                ok = false;
            }
            if body_names.contains(v.name.name.as_str()) {
                self.err(
                    Diagnostic::new(
                        Code::Sweep,
                        v.name.span,
                        format!(
                            "sweep variable `{}` has the name of a declaration in the sweep",
                            v.name.name
                        ),
                    )
                    .label("ambiguous name")
                    .help("rename the variable"),
                );
                ok = false;
            }
            let used = s.body.iter().any(|d| decl_mentions(d, &v.name.name));
            if !used {
                self.err(
                    Diagnostic::new(Code::Sweep, v.name.span, format!("sweep variable `{}` is not used in the sweep body", v.name.name))
                        .label("unused")
                        .help("every instance would be identical; use the variable (e.g. `k: k`) or remove it"),
                );
                ok = false;
            }
        }
        // Values of each variable.
        let empty = HashMap::new();
        let mut value_lists: Vec<Vec<(Expr, String)>> = vec![];
        for v in &s.vars {
            let mut sc = Scope {
                node: String::new(),
                bindings: &[],
                siblings: &empty,
                local: false,
                deps: vec![],
            };
            match self.sweep_values(&v.values, &mut sc) {
                Some(vals) if vals.is_empty() => {
                    self.err(
                        Diagnostic::new(
                            Code::Sweep,
                            v.values.span,
                            format!("sweep variable `{}` has no values", v.name.name),
                        )
                        .label("empty"),
                    );
                    ok = false;
                }
                Some(vals) => value_lists.push(
                    vals.into_iter()
                        .enumerate()
                        .map(|(i, e)| {
                            let part = name_part(&e, i);
                            (e, part)
                        })
                        .collect(),
                ),
                None => ok = false,
            }
        }
        // Kinds of the body declarations (checked even if the sweep is broken).
        let kinds: Vec<Option<Kind>> = s.body.iter().map(|d| self.decl_kind(d)).collect();
        let total: usize = value_lists
            .iter()
            .map(Vec::len)
            .fold(1usize, |a, n| a.saturating_mul(n));
        if ok && total > MAX_INSTANCES {
            self.err(
                Diagnostic::new(
                    Code::Sweep,
                    s.vars[0].span.to(s.vars[s.vars.len() - 1].span),
                    format!("this sweep has {total} instances (at most {MAX_INSTANCES})"),
                )
                .label("too many"),
            );
            ok = false;
        }
        // Families (the template names) are declared even when expansion fails, so that
        // references to them do not cascade into "unknown name".
        for (d, kind) in s.body.iter().zip(&kinds) {
            self.declare(
                &d.name,
                Entry::Family {
                    kind: *kind,
                    instances: vec![],
                },
            );
        }
        if !ok {
            return;
        }
        // Cartesian product, first variable outermost.
        let mut combos: Vec<Vec<usize>> = vec![vec![]];
        for vals in &value_lists {
            combos = combos
                .into_iter()
                .flat_map(|c| (0..vals.len()).map(move |i| [c.clone(), vec![i]].concat()))
                .collect();
        }
        for combo in combos {
            let bindings: Vec<Binding> = combo
                .iter()
                .enumerate()
                .map(|(vi, &i)| Binding {
                    var: s.vars[vi].name.name.clone(),
                    value: value_lists[vi][i].0.clone(),
                })
                .collect();
            let suffix: String = combo
                .iter()
                .enumerate()
                .map(|(vi, &i)| {
                    let (value, part) = &value_lists[vi][i];
                    // Numbers and booleans read as `k5`; names and strings stand for themselves.
                    if matches!(
                        value.kind,
                        ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Bool(_)
                    ) {
                        format!("_{}{part}", s.vars[vi].name.name)
                    } else {
                        format!("_{part}")
                    }
                })
                .collect();
            let siblings: HashMap<String, String> = s
                .body
                .iter()
                .map(|d| (d.name.name.clone(), format!("{}{suffix}", d.name.name)))
                .collect();
            for (d, kind) in s.body.iter().zip(&kinds) {
                let inst = format!("{}{suffix}", d.name.name);
                let ident = Ident {
                    name: inst.clone(),
                    span: d.name.span,
                };
                if let Some(first) = self.declared_at.get(&inst).copied() {
                    self.err(
                        Diagnostic::new(
                            Code::DuplicateDecl,
                            first,
                            format!("`{inst}` is declared twice"),
                        )
                        .label("declared here")
                        .note(
                            d.name.span,
                            format!("the sweep also makes an instance named `{inst}`"),
                        )
                        .help("rename the declaration or the sweep template"),
                    );
                    continue;
                }
                let idx = self.syms.len();
                self.declare(&ident, Entry::Sym(idx));
                self.syms.push(Sym {
                    name: inst.clone(),
                    kind: *kind,
                    decl: d,
                    bindings: bindings.clone(),
                    siblings: siblings.clone(),
                    family: Some(d.name.name.clone()),
                });
                if let Some(Entry::Family { instances, .. }) = self.names.get_mut(&d.name.name) {
                    instances.push(inst.clone());
                }
                self.families
                    .entry(d.name.name.clone())
                    .or_default()
                    .push(inst);
            }
        }
    }

    /// The values a sweep variable takes: a list, a range or `linspace(...)`.
    pub(super) fn sweep_values(&mut self, e: &Expr, sc: &mut Scope) -> Option<Vec<Expr>> {
        match &e.kind {
            ExprKind::List(items) => Some(items.clone()),
            ExprKind::Range { .. } => self.expand_range(e, sc).map(|nums| {
                nums.into_iter()
                    .map(|k| Expr {
                        kind: k,
                        span: e.span,
                    })
                    .collect()
            }),
            ExprKind::Call(c) if c.func.name == "linspace" => self.linspace(e, c, sc).map(|nums| {
                nums.into_iter()
                    .map(|f| Expr {
                        kind: ExprKind::Float(f),
                        span: e.span,
                    })
                    .collect()
            }),
            _ => {
                self.err(
                    Diagnostic::new(Code::Sweep, e.span, format!("a sweep needs a list of values, found {}", e.kind.describe()))
                        .label("not a list")
                        .help("write `sweep k in [0, 5, 10] { ... }`, `sweep k in 0..=20 step 5 { ... }` or `linspace(a, b, n)`"),
                );
                None
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Declarations
}

