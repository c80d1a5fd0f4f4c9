//! Binding a call's arguments to its constructor's parameters: positions, names, defaults, constraints.
use super::*;

impl<'a> Checker<'a> {
    /// Binds positional arguments, named arguments and block parameters to `spec`'s
    /// parameters; checks each value; fills defaults; checks constraints.
    pub(super) fn bind_args(
        &mut self,
        spec: &'static FuncSpec,
        call_args: &[ast::Arg],
        block: Option<&ast::Block>,
        callee: Option<&Ident>,
        sc: &mut Scope,
        is_header: bool,
    ) -> Vec<Arg> {
        let mut given: Vec<Option<(&Expr, Span)>> = vec![None; spec.params.len()];
        let mut pos_i = 0;
        let what_func = spec.name;
        let mut named: Vec<&ast::Param> = vec![];
        for a in call_args {
            match a {
                ast::Arg::Positional(e) => {
                    if pos_i >= spec.positional {
                        let names: Vec<&str> =
                            spec.positional_params().iter().map(|p| p.name).collect();
                        let n = call_args
                            .iter()
                            .filter(|a| matches!(a, ast::Arg::Positional(_)))
                            .count();
                        self.err(
                            Diagnostic::new(
                                Code::TooManyArgs,
                                e.span,
                                format!(
                                    "`{}` takes {} positional argument{}{}, found {n}",
                                    spec.name,
                                    spec.positional,
                                    if spec.positional == 1 { "" } else { "s" },
                                    if names.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" ({})", names.join(", "))
                                    }
                                ),
                            )
                            .label("extra argument")
                            .help("pass other parameters by name: `name: value`"),
                        );
                    } else {
                        given[pos_i] = Some((e, e.span));
                    }
                    pos_i += 1;
                }
                ast::Arg::Named(p) => named.push(p),
            }
        }
        if let Some(b) = block {
            named.extend(b.params.iter());
        }
        for p in named {
            match spec.params.iter().position(|s| s.name == p.name.name) {
                None => {
                    let mut d = Diagnostic::new(
                        Code::UnknownParam,
                        p.name.span,
                        format!("unknown parameter `{}` for `{}`", p.name.name, spec.name),
                    )
                    .label("unknown parameter");
                    d = match suggest(&p.name.name, spec.params.iter().map(|s| s.name)) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help(format!(
                            "`{}` accepts: {}",
                            spec.name,
                            spec.params
                                .iter()
                                .map(|s| s.name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    };
                    self.err(d);
                }
                Some(i) => {
                    if let Some((_, first)) = given[i] {
                        let how = if i < spec.positional
                            && first.file == p.span.file
                            && !call_args.iter().any(
                                |a| matches!(a, ast::Arg::Named(n) if n.name.name == p.name.name),
                            )
                            && !block.is_some_and(|b| b.params.iter().any(|bp| bp.span == first))
                        {
                            "given by position here"
                        } else {
                            "first given here"
                        };
                        self.err(
                            Diagnostic::new(
                                Code::DuplicateParam,
                                p.name.span,
                                format!("parameter `{}` is given twice", p.name.name),
                            )
                            .label("second value")
                            .note(first, how),
                        );
                    } else {
                        given[i] = Some((&p.value, p.span));
                    }
                }
            }
        }
        // A Hub id is resolved at the revision written beside it (`hf("o/n", revision: "v1")`).
        self.hub_revision = spec.params.iter().position(|p| p.name == "revision").and_then(|i| given[i]).and_then(|(e, _)| match &e.kind {
            ExprKind::Str(s) => Some(s.clone()),
            _ => None,
        });
        let mut args = vec![];
        for (i, ps) in spec.params.iter().enumerate() {
            let what = What {
                param: ps.name,
                func: what_func,
            };
            let arg = match given[i] {
                Some((e, _)) => {
                    let origin = self.origin(e.span);
                    let value = self.check_value(&ps.ty, e, what, sc);
                    Arg {
                        name: ps.name.into(),
                        value,
                        origin,
                        span: Some(e.span),
                    }
                }
                None => match &ps.default {
                    Default::Required => {
                        if let Some(callee) = callee {
                            let example = example_value(&ps.ty);
                            self.err(
                                Diagnostic::new(
                                    Code::MissingParam,
                                    callee.span,
                                    format!("`{}` needs the parameter `{}`", spec.name, ps.name),
                                )
                                .label(format!("`{}` missing", ps.name))
                                .help(format!(
                                    "add `{}: {example}` — {}",
                                    ps.name,
                                    doc_text(ps.doc)
                                )),
                            );
                        }
                        Arg {
                            name: ps.name.into(),
                            value: None,
                            origin: Origin::Default,
                            span: None,
                        }
                    }
                    Default::Optional => Arg {
                        name: ps.name.into(),
                        value: None,
                        origin: Origin::Default,
                        span: None,
                    },
                    Default::ExperimentSeed => {
                        let v = if is_header {
                            Value::Int(0)
                        } else {
                            Value::Int(self.seed)
                        };
                        Arg {
                            name: ps.name.into(),
                            value: Some(v),
                            origin: Origin::Default,
                            span: None,
                        }
                    }
                    Default::Value(text) => {
                        let value = self.default_value(text).and_then(|e| {
                            let empty = HashMap::new();
                            let mut dsc = Scope {
                                node: sc.node.clone(),
                                bindings: &[],
                                siblings: &empty,
                                local: false,
                                deps: vec![],
                            };
                            self.check_value(&ps.ty, &e, what, &mut dsc)
                        });
                        Arg {
                            name: ps.name.into(),
                            value,
                            origin: Origin::Default,
                            span: None,
                        }
                    }
                },
            };
            args.push(arg);
        }
        // Constraints between parameters.
        for c in &spec.constraints {
            match c {
                Constraint::ExactlyOne(names) => {
                    let present: Vec<usize> = names
                        .iter()
                        .filter_map(|n| spec.params.iter().position(|p| p.name == *n))
                        .filter(|&i| given[i].is_some())
                        .collect();
                    let list = names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(" or ");
                    if present.is_empty() {
                        if let Some(callee) = callee {
                            self.err(
                                Diagnostic::new(
                                    Code::MissingParam,
                                    callee.span,
                                    format!("`{}` needs {list}", spec.name),
                                )
                                .label("neither is given")
                                .help(format!("give exactly one of {list}")),
                            );
                        }
                    } else if present.len() > 1 {
                        let second = given[present[1]].expect("present").1;
                        let first = given[present[0]].expect("present").1;
                        self.err(
                            Diagnostic::new(
                                Code::InvalidValue,
                                second,
                                format!("`{}` takes only one of {list}", spec.name),
                            )
                            .label("remove this one")
                            .note(first, "or this one"),
                        );
                    }
                }
                Constraint::Requires { param, value, then } => {
                    let pi = spec.params.iter().position(|p| p.name == *param);
                    let ti = spec.params.iter().position(|p| p.name == *then);
                    if let (Some(pi), Some(ti)) = (pi, ti) {
                        let is_value =
                            args[pi].value.as_ref().and_then(Value::as_str) == Some(*value);
                        if is_value && given[ti].is_none() {
                            let at = given[pi].map(|g| g.1).or(callee.map(|c| c.span));
                            if let Some(at) = at {
                                self.err(
                                    Diagnostic::new(
                                        Code::MissingParam,
                                        at,
                                        format!("`{param}: {value}` needs the parameter `{then}`"),
                                    )
                                    .label(format!("needs `{then}`"))
                                    .help(format!(
                                        "add `{then}: ...` — {}",
                                        spec.param(then).map(|p| doc_text(p.doc)).unwrap_or("")
                                    )),
                                );
                            }
                        }
                    }
                }
            }
        }
        args
    }

    pub(super) fn default_value(&mut self, text: &'static str) -> Option<Expr> {
        if let Some(e) = self.defaults.get(text) {
            return e.clone();
        }
        let file = self.sources.add("<schema default>", None, text);
        let e = match parse_expr_at(file, text, 0) {
            Ok(e) => Some(e),
            Err(d) => {
                self.err(d);
                None
            }
        };
        self.defaults.insert(text, e.clone());
        e
    }

    // -----------------------------------------------------------------------------------------
    // Values
}

