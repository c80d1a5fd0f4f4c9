//! Lists, ranges and `linspace`: elements checked one by one, ranges expanded.
use super::*;

impl<'a> Checker<'a> {
    pub(super) fn check_list(
        &mut self,
        ty: &Ty,
        elem: &Ty,
        e: &Expr,
        what: What,
        sc: &mut Scope,
    ) -> Option<Value> {
        let numeric = matches!(elem, Ty::Int { .. } | Ty::Float { .. });
        match &e.kind {
            ExprKind::List(items) => {
                let mut out = vec![];
                let mut ok = true;
                for it in items {
                    if let (Ty::Decl(kind), ExprKind::Path(p)) = (elem, &it.kind) {
                        if p.len() == 1 {
                            if let Lookup::Family(inst, k) = self.lookup(&p[0].name, sc) {
                                if k == Some(*kind) {
                                    for n in inst {
                                        sc.deps.push((n.clone(), it.span));
                                        out.push(Value::Ref {
                                            kind: *kind,
                                            name: n,
                                        });
                                    }
                                    continue;
                                } else if k.is_some() {
                                    self.wrong_type(elem, it, what, sc);
                                    ok = false;
                                    continue;
                                }
                            }
                        }
                    }
                    match self.check_value(elem, it, what, sc) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                ok.then_some(Value::List(out))
            }
            ExprKind::Range { .. } if numeric => {
                let nums = self.expand_range(e, sc)?;
                self.check_numbers(
                    elem,
                    nums.into_iter()
                        .map(|k| Expr {
                            kind: k,
                            span: e.span,
                        })
                        .collect(),
                    what,
                    sc,
                )
            }
            ExprKind::Call(c) if c.func.name == "linspace" && numeric => {
                let nums = self.linspace(e, c, sc)?;
                if matches!(elem, Ty::Int { .. }) {
                    self.err(
                        Diagnostic::new(
                            Code::WrongType,
                            e.span,
                            format!(
                                "`{}` expects {}, but `linspace` makes numbers with fractions",
                                what.param,
                                ty.describe()
                            ),
                        )
                        .label("not integers")
                        .help("use a range: `a..=b step s`"),
                    );
                    return None;
                }
                self.check_numbers(
                    elem,
                    nums.into_iter()
                        .map(|f| Expr {
                            kind: ExprKind::Float(f),
                            span: e.span,
                        })
                        .collect(),
                    what,
                    sc,
                )
            }
            ExprKind::Path(p) if p.len() == 1 => {
                if let (Lookup::Family(inst, k), Ty::Decl(kind)) =
                    (self.lookup(&p[0].name, sc), elem)
                {
                    if k == Some(*kind) {
                        for n in &inst {
                            sc.deps.push((n.clone(), e.span));
                        }
                        return Some(Value::List(
                            inst.into_iter()
                                .map(|n| Value::Ref {
                                    kind: *kind,
                                    name: n,
                                })
                                .collect(),
                        ));
                    }
                }
                self.promote(ty, elem, e, what, sc)
            }
            _ => self.promote(ty, elem, e, what, sc),
        }
    }

    /// One element where a list is expected stands for a list of one.
    pub(super) fn promote(
        &mut self,
        ty: &Ty,
        elem: &Ty,
        e: &Expr,
        what: What,
        sc: &mut Scope,
    ) -> Option<Value> {
        if self.shallow(elem, e, sc) {
            self.check_value(elem, e, what, sc)
                .map(|v| Value::List(vec![v]))
        } else {
            self.wrong_type(ty, e, what, sc);
            None
        }
    }

    pub(super) fn check_numbers(
        &mut self,
        elem: &Ty,
        nums: Vec<Expr>,
        what: What,
        sc: &mut Scope,
    ) -> Option<Value> {
        let mut out = vec![];
        for n in &nums {
            out.push(self.check_value(elem, n, what, sc)?);
        }
        Some(Value::List(out))
    }

    pub(super) fn number(&mut self, e: &Expr, role: &str) -> Option<f64> {
        match e.kind {
            ExprKind::Int(i) => Some(i as f64),
            ExprKind::Float(f) => Some(f),
            _ => {
                self.err(
                    Diagnostic::new(
                        Code::WrongType,
                        e.span,
                        format!("the {role} must be a number, found {}", e.kind.describe()),
                    )
                    .label("not a number"),
                );
                None
            }
        }
    }

    pub(super) fn expand_range(&mut self, e: &Expr, _sc: &mut Scope) -> Option<Vec<ExprKind>> {
        let ExprKind::Range {
            start,
            end,
            step,
            inclusive,
        } = &e.kind
        else {
            return None;
        };
        let all_int = matches!(start.kind, ExprKind::Int(_))
            && matches!(end.kind, ExprKind::Int(_))
            && step
                .as_ref()
                .is_none_or(|s| matches!(s.kind, ExprKind::Int(_)));
        if all_int {
            let (ExprKind::Int(a), ExprKind::Int(b)) = (&start.kind, &end.kind) else {
                return None;
            };
            let s = match step.as_ref().map(|s| &s.kind) {
                Some(ExprKind::Int(s)) => *s,
                _ => 1,
            };
            if s == 0 {
                let at = step.as_ref().map(|s| s.span).unwrap_or(e.span);
                self.err(
                    Diagnostic::new(Code::OutOfRange, at, "a range's step must not be 0")
                        .label("zero step"),
                );
                return None;
            }
            let (a, b) = (*a as i128, *b as i128);
            let s128 = s as i128;
            let mut out = vec![];
            let mut x = a;
            while (s128 > 0 && (x < b || (*inclusive && x == b)))
                || (s128 < 0 && (x > b || (*inclusive && x == b)))
            {
                out.push(ExprKind::Int(x as i64));
                if out.len() > MAX_EXPANSION {
                    self.err(
                        Diagnostic::new(
                            Code::OutOfRange,
                            e.span,
                            format!("this range has more than {MAX_EXPANSION} values"),
                        )
                        .label("too long"),
                    );
                    return None;
                }
                x += s128;
            }
            return Some(out);
        }
        let a = self.number(start, "range start")?;
        let b = self.number(end, "range end")?;
        let Some(step_e) = step else {
            self.err(
                Diagnostic::new(Code::Syntax, e.span, "a range of non-integers needs a step")
                    .label("no step")
                    .help(format!(
                        "e.g. `{}..{} step 0.1`",
                        fmt_float(a),
                        fmt_float(b)
                    )),
            );
            return None;
        };
        let s = self.number(step_e, "range step")?;
        if s == 0.0 {
            self.err(
                Diagnostic::new(
                    Code::OutOfRange,
                    step_e.span,
                    "a range's step must not be 0",
                )
                .label("zero step"),
            );
            return None;
        }
        let n = ((b - a) / s).floor();
        if n > MAX_EXPANSION as f64 {
            self.err(
                Diagnostic::new(
                    Code::OutOfRange,
                    e.span,
                    format!("this range has more than {MAX_EXPANSION} values"),
                )
                .label("too long"),
            );
            return None;
        }
        let mut out = vec![];
        if n >= 0.0 {
            for i in 0..=(n as usize) {
                let x = a + s * i as f64;
                let past = if s > 0.0 {
                    x > b + 1e-9 * s.abs()
                } else {
                    x < b - 1e-9 * s.abs()
                };
                let at_end = (x - b).abs() <= 1e-9 * s.abs();
                if past || (at_end && !inclusive) {
                    break;
                }
                out.push(ExprKind::Float(if at_end { b } else { x }));
            }
        }
        Some(out)
    }

    pub(super) fn linspace(&mut self, e: &Expr, c: &ast::Call, _sc: &mut Scope) -> Option<Vec<f64>> {
        let pos: Vec<&Expr> = c
            .args
            .iter()
            .filter_map(|a| {
                if let ast::Arg::Positional(x) = a {
                    Some(x)
                } else {
                    None
                }
            })
            .collect();
        if pos.len() != 3 || pos.len() != c.args.len() {
            self.err(
                Diagnostic::new(
                    Code::TooManyArgs,
                    c.args_span,
                    format!(
                        "`linspace` takes 3 positional arguments (start, stop, count), found {}",
                        c.args.len()
                    ),
                )
                .label("expected `linspace(start, stop, count)`"),
            );
            return None;
        }
        let a = self.number(pos[0], "start of linspace")?;
        let b = self.number(pos[1], "stop of linspace")?;
        let n = match pos[2].kind {
            ExprKind::Int(n) if (1..=MAX_EXPANSION as i64).contains(&n) => n as usize,
            _ => {
                self.err(
                    Diagnostic::new(
                        Code::OutOfRange,
                        pos[2].span,
                        format!(
                            "the count of linspace must be an integer from 1 to {MAX_EXPANSION}"
                        ),
                    )
                    .label("bad count"),
                );
                return None;
            }
        };
        let _ = e;
        Some(
            (0..n)
                .map(|i| {
                    if n == 1 {
                        a
                    } else if i == n - 1 {
                        b
                    } else {
                        a + (b - a) * i as f64 / (n - 1) as f64
                    }
                })
                .collect(),
        )
    }

    // -----------------------------------------------------------------------------------------
    // Heads against model shapes
}

