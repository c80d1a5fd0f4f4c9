//! Type-checking values against parameter types: numbers and ranges, strings and placeholders, paths, enums.
use super::*;

impl<'a> Checker<'a> {
    pub(super) fn found(&self, e: &Expr, sc: &Scope) -> String {
        if let ExprKind::Path(p) = &e.kind {
            if p.len() == 1 {
                match self.lookup(&p[0].name, sc) {
                    Lookup::Sym(i) => {
                        if let Some(k) = self.syms[i].kind {
                            return format!("{} `{}`", k.name(), p[0].name);
                        }
                    }
                    Lookup::Family(..) => return format!("the sweep family `{}`", p[0].name),
                    _ => {}
                }
            }
        }
        e.kind.describe()
    }

    pub(super) fn wrong_type(&mut self, ty: &Ty, e: &Expr, what: What, sc: &Scope) {
        let found = self.found(e, sc);
        let mut d = Diagnostic::new(
            Code::WrongType,
            e.span,
            format!("`{}` expects {}, found {found}", what.param, ty.describe()),
        )
        .label(format!("expected {}", short_ty(ty)));
        if let ExprKind::Path(p) = &e.kind {
            if p.len() == 1 {
                if let Lookup::Sym(i) = self.lookup(&p[0].name, sc) {
                    if let Some(k) = self.syms[i].kind {
                        d = d.note(
                            self.syms[i].decl.name.span,
                            format!("`{}` is declared as {} here", p[0].name, k.article()),
                        );
                    }
                }
            }
        }
        match (ty, &e.kind) {
            (Ty::Enum(_), ExprKind::Str(s)) | (Ty::Device, ExprKind::Str(s)) if !s.is_empty() => {
                d = d.help(format!("write enum values without quotes: `{}`", s));
            }
            (Ty::Path(_) | Ty::Str { .. } | Ty::ModelSource | Ty::HeadId, ExprKind::Path(p)) => {
                d = d.help(format!("strings are quoted: \"{}\"", path_string(p)));
            }
            (Ty::Int { .. }, ExprKind::Float(_)) => d = d.help("write a whole number"),
            _ => {}
        }
        self.err(d);
    }

    /// Checks `e` against `ty`; `None` after reporting an error.
    pub(super) fn check_value(&mut self, ty: &Ty, e: &Expr, what: What, sc: &mut Scope) -> Option<Value> {
        // A sweep variable stands for its value in this instance.
        if let ExprKind::Path(p) = &e.kind {
            if p.len() == 1 {
                if let Lookup::Bound(b) = self.lookup(&p[0].name, sc) {
                    let before = self.diags.len();
                    sc.local = false;
                    let v = self.check_value(ty, &b.value, what, sc);
                    sc.local = true;
                    for d in &mut self.diags[before..] {
                        *d = d
                            .clone()
                            .note(e.span, format!("through sweep variable `{}`", b.var));
                    }
                    return v;
                }
            }
        }
        match ty {
            Ty::Int { min, max } => match e.kind {
                ExprKind::Int(i) => {
                    self.range_check(
                        i as f64,
                        min.map(|x| x as f64),
                        max.map(|x| x as f64),
                        e,
                        what,
                    )?;
                    Some(Value::Int(i))
                }
                _ => {
                    self.wrong_type(ty, e, what, sc);
                    None
                }
            },
            Ty::Float { min, max } => match e.kind {
                ExprKind::Int(i) => {
                    self.range_check(i as f64, *min, *max, e, what)?;
                    Some(Value::Float(i as f64))
                }
                ExprKind::Float(f) => {
                    self.range_check(f, *min, *max, e, what)?;
                    Some(Value::Float(f))
                }
                _ => {
                    self.wrong_type(ty, e, what, sc);
                    None
                }
            },
            Ty::Bool => match e.kind {
                ExprKind::Bool(b) => Some(Value::Bool(b)),
                _ => {
                    self.wrong_type(ty, e, what, sc);
                    None
                }
            },
            Ty::Str {
                placeholders,
                required,
            } => match &e.kind {
                ExprKind::Str(s) => {
                    if let Some(allowed) = placeholders {
                        self.check_placeholders(e, allowed, required, what)?;
                    }
                    Some(Value::Str(s.clone()))
                }
                _ => {
                    self.wrong_type(ty, e, what, sc);
                    None
                }
            },
            Ty::Path(kind) => match &e.kind {
                ExprKind::Str(s) => self.check_path(s, *kind, e, what),
                _ => {
                    self.wrong_type(ty, e, what, sc);
                    None
                }
            },
            Ty::ModelSource => match &e.kind {
                ExprKind::Str(s) if s.ends_with(".gguf") || s.contains('/') || s.contains('\\') => {
                    self.check_path(s, PathKind::File, e, what)
                }
                ExprKind::Str(s) if !s.is_empty() => Some(Value::ModelName(s.clone())),
                _ => {
                    self.wrong_type(ty, e, what, sc);
                    None
                }
            },
            Ty::Enum(values) => match &e.kind {
                ExprKind::Path(p) if p.len() == 1 => {
                    let v = &p[0].name;
                    if values.contains(&v.as_str()) {
                        Some(Value::Enum(v.clone()))
                    } else {
                        let d = Diagnostic::new(
                            Code::InvalidValue,
                            e.span,
                            format!("`{v}` is not a valid `{}`", what.param),
                        )
                        .label(format!("expected one of {}", values.join(", ")))
                        .maybe_help(did_you_mean(v, values.iter().copied()));
                        self.err(d);
                        None
                    }
                }
                _ => {
                    self.wrong_type(ty, e, what, sc);
                    None
                }
            },
            Ty::Builtin { ns, names } => match &e.kind {
                ExprKind::Path(p) if p.len() == 2 && p[0].name == *ns => {
                    let n = &p[1].name;
                    if names.contains(&n.as_str()) {
                        Some(Value::Builtin {
                            ns: ns.to_string(),
                            name: n.clone(),
                        })
                    } else {
                        self.err(
                            Diagnostic::new(
                                Code::UnknownName,
                                p[1].span,
                                format!("unknown built-in `{ns}.{n}`"),
                            )
                            .label(format!("not in `{ns}`"))
                            .maybe_help(did_you_mean(n, names.iter().copied()))
                            .help(format!("`{ns}` has: {}", names.join(", "))),
                        );
                        None
                    }
                }
                ExprKind::Path(p) if p.len() >= 2 => {
                    self.err(
                        Diagnostic::new(
                            Code::UnknownName,
                            p[0].span,
                            format!("unknown namespace `{}`", p[0].name),
                        )
                        .label(format!("expected `{ns}`"))
                        .help(format!(
                            "`{}` expects {}",
                            what.param,
                            ty.describe()
                        )),
                    );
                    None
                }
                _ => {
                    self.wrong_type(ty, e, what, sc);
                    None
                }
            },
            Ty::Device => {
                let (s, ok) = match &e.kind {
                    ExprKind::Path(p) if p.len() == 1 => (
                        p[0].name.clone(),
                        matches!(p[0].name.as_str(), "auto" | "cpu" | "cuda"),
                    ),
                    ExprKind::Str(s) => (
                        s.clone(),
                        matches!(s.as_str(), "auto" | "cpu" | "cuda")
                            || s.strip_prefix("cuda:").is_some_and(|n| {
                                !n.is_empty()
                                    && n.len() < 4
                                    && n.chars().all(|c| c.is_ascii_digit())
                            }),
                    ),
                    _ => {
                        self.wrong_type(ty, e, what, sc);
                        return None;
                    }
                };
                if ok {
                    Some(Value::Device(s))
                } else {
                    self.err(
                        Diagnostic::new(
                            Code::InvalidValue,
                            e.span,
                            format!("`{s}` is not a device"),
                        )
                        .label("expected auto, cpu, cuda or \"cuda:N\"")
                        .maybe_help(did_you_mean(&s, ["auto", "cpu", "cuda"])),
                    );
                    None
                }
            }
            Ty::HeadId => match &e.kind {
                ExprKind::Str(s) => match parse_head(s) {
                    Some((layer, head)) => Some(Value::Head {
                        layer,
                        head,
                        span: Some(e.span),
                    }),
                    None => {
                        self.err(
                            Diagnostic::new(Code::InvalidValue, e.span, format!("`{s}` is not a head"))
                                .label("expected \"L<layer>H<head>\"")
                                .help("heads are written \"L12H3\": layer 12, head 3, both counted from 0"),
                        );
                        None
                    }
                },
                _ => {
                    self.wrong_type(ty, e, what, sc);
                    None
                }
            },
            Ty::Decl(kind) => self.check_decl_ref(*kind, ty, e, what, sc),
            Ty::Func(family) => self.check_func(*family, ty, e, what, sc),
            Ty::List(elem) => self.check_list(ty, elem, e, what, sc),
            Ty::OneOf(alts) => {
                let resolved = self.resolve_bound(e, sc);
                match alts.iter().find(|t| self.shallow(t, &resolved, sc)) {
                    Some(t) => self.check_value(t, e, what, sc),
                    None => {
                        self.wrong_type(ty, e, what, sc);
                        None
                    }
                }
            }
        }
    }

    /// `e`, or the value of the sweep variable it names.
    pub(super) fn resolve_bound(&self, e: &Expr, sc: &Scope) -> Expr {
        if let ExprKind::Path(p) = &e.kind {
            if p.len() == 1 {
                if let Lookup::Bound(b) = self.lookup(&p[0].name, sc) {
                    return b.value;
                }
            }
        }
        e.clone()
    }

    /// Whether `e` has the shape of a `ty` value (to pick an alternative or to promote one
    /// element to a list).
    pub(super) fn shallow(&self, ty: &Ty, e: &Expr, sc: &Scope) -> bool {
        match (ty, &e.kind) {
            (Ty::Int { .. }, ExprKind::Int(_)) => true,
            (Ty::Float { .. }, ExprKind::Int(_) | ExprKind::Float(_)) => true,
            (Ty::Bool, ExprKind::Bool(_)) => true,
            (Ty::Str { .. } | Ty::Path(_) | Ty::ModelSource | Ty::HeadId, ExprKind::Str(_)) => true,
            (Ty::Enum(_), ExprKind::Path(p)) => p.len() == 1,
            (Ty::Builtin { .. }, ExprKind::Path(p)) => p.len() >= 2,
            (Ty::Device, ExprKind::Path(p)) => p.len() == 1,
            (Ty::Device, ExprKind::Str(_)) => true,
            (Ty::Decl(_), ExprKind::Path(p)) => {
                p.len() == 1 && !matches!(self.lookup(&p[0].name, sc), Lookup::Family(..))
            }
            (Ty::Decl(_), ExprKind::Call(c)) => c.func.name != "linspace",
            (Ty::Func(_), ExprKind::Call(c)) => c.func.name != "linspace",
            (Ty::Func(_), ExprKind::Path(p)) => p.len() == 1,
            (Ty::List(_), ExprKind::List(_) | ExprKind::Range { .. }) => true,
            (Ty::List(_), ExprKind::Call(c)) => c.func.name == "linspace",
            (Ty::List(_), ExprKind::Path(p)) => {
                p.len() == 1 && matches!(self.lookup(&p[0].name, sc), Lookup::Family(..))
            }
            (Ty::OneOf(alts), _) => alts.iter().any(|t| self.shallow(t, e, sc)),
            _ => false,
        }
    }

    pub(super) fn range_check(
        &mut self,
        x: f64,
        min: Option<f64>,
        max: Option<f64>,
        e: &Expr,
        what: What,
    ) -> Option<()> {
        let below = min.is_some_and(|m| x < m);
        let above = max.is_some_and(|m| x > m);
        if below || above {
            let shown = match e.kind {
                ExprKind::Int(i) => i.to_string(),
                ExprKind::Float(f) => fmt_float(f),
                _ => {
                    if x.fract() == 0.0 {
                        format!("{}", x as i64)
                    } else {
                        fmt_float(x)
                    }
                }
            };
            let bound = Ty::Float { min, max }
                .describe()
                .replacen("a number", "", 1);
            let p = self.reg_param_doc(what);
            self.err(
                Diagnostic::new(
                    Code::OutOfRange,
                    e.span,
                    format!("`{}` must be{bound}, found {shown}", what.param),
                )
                .label(if below { "too small" } else { "too large" })
                .maybe_help(p.map(|d| format!("`{}`: {d}", what.param))),
            );
            return None;
        }
        Some(())
    }

    pub(super) fn reg_param_doc(&self, what: What) -> Option<&'static str> {
        let reg = self.reg;
        reg.ctors
            .iter()
            .map(|c| &c.func)
            .chain(reg.funcs.iter().map(|(_, f)| f))
            .chain(std::iter::once(&reg.experiment))
            .find(|f| f.name == what.func)
            .and_then(|f| f.param(what.param))
            .map(|p| doc_text(p.doc))
    }

    pub(super) fn check_placeholders(
        &mut self,
        e: &Expr,
        allowed: &[&str],
        required: &[&str],
        what: What,
    ) -> Option<()> {
        let src = self.sources.get(e.span.file).clone();
        let raw = src.slice(e.span);
        if !(raw.starts_with('"') && raw.ends_with('"') && raw.len() >= 2) {
            return Some(());
        }
        let inner = &raw[1..raw.len() - 1];
        let base = e.span.start + 1;
        let bytes = inner.as_bytes();
        let mut found: Vec<&str> = vec![];
        let mut i = 0;
        let allowed_text = if allowed.is_empty() {
            format!(
                "`{}` takes no placeholders; write `{{{{` and `}}}}` for literal braces",
                what.param
            )
        } else {
            format!(
                "`{}` allows {}; write `{{{{` for a literal brace",
                what.param,
                allowed
                    .iter()
                    .map(|a| format!("{{{a}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => {
                    if inner[i..].starts_with("\\u{") {
                        i += inner[i..].find('}').map(|j| j + 1).unwrap_or(2);
                    } else {
                        i += 2;
                    }
                }
                b'{' if bytes.get(i + 1) == Some(&b'{') => i += 2,
                b'}' if bytes.get(i + 1) == Some(&b'}') => i += 2,
                b'{' => {
                    let Some(close) = inner[i + 1..]
                        .find(['}', '{'])
                        .map(|j| j + 1)
                        .filter(|&j| inner.as_bytes()[i + j] == b'}')
                    else {
                        self.err(
                            Diagnostic::new(
                                Code::InvalidValue,
                                Span::new(e.span.file, base + i, base + i + 1),
                                format!("unclosed `{{` in `{}`", what.param),
                            )
                            .label("placeholder never closed")
                            .help(allowed_text),
                        );
                        return None;
                    };
                    let name = &inner[i + 1..i + close];
                    let span = Span::new(e.span.file, base + i, base + i + close + 1);
                    if !allowed.contains(&name) {
                        let mut d = Diagnostic::new(
                            Code::InvalidValue,
                            span,
                            format!("unknown placeholder `{{{name}}}` in `{}`", what.param),
                        )
                        .label("not a placeholder of this parameter");
                        if let Some(s) = suggest(name, allowed.iter().copied()) {
                            d = d.help(format!("did you mean `{{{s}}}`? {allowed_text}"));
                        } else {
                            d = d.help(allowed_text);
                        }
                        self.err(d);
                        return None;
                    }
                    found.push(name);
                    i += close + 1;
                }
                _ => i += 1,
            }
        }
        for r in required {
            if !found.contains(r) {
                self.err(
                    Diagnostic::new(
                        Code::InvalidValue,
                        e.span,
                        format!("`{}` must contain the placeholder `{{{r}}}`", what.param),
                    )
                    .label(format!("no {{{r}}} here"))
                    .maybe_help(
                        self.reg_param_doc(what)
                            .map(|d| format!("`{}`: {d}", what.param)),
                    ),
                );
                return None;
            }
        }
        Some(())
    }

    pub(super) fn check_path(&mut self, s: &str, kind: PathKind, e: &Expr, what: What) -> Option<Value> {
        let src = self.sources.get(e.span.file).clone();
        let base = src.base_dir();
        let resolved = base.join(s);
        if kind == PathKind::HfModelDir && !resolved.exists() && crate::engine::hub::is_hub_id(s) {
            return self.check_hub_id(s, &resolved, e, what);
        }
        let problem = if s.is_empty() {
            Some("is empty".to_string())
        } else {
            match kind {
                PathKind::File if resolved.is_dir() => Some("is a folder, not a file".into()),
                PathKind::File if !resolved.is_file() => Some("does not exist".into()),
                PathKind::Dir if resolved.is_file() => Some("is a file, not a folder".into()),
                PathKind::Dir if !resolved.is_dir() => Some("does not exist".into()),
                PathKind::Dir
                    if !std::fs::read_dir(&resolved).is_ok_and(|rd| {
                        rd.flatten().any(|e| e.path().extension().is_some_and(|x| x == "txt") && e.path().is_file())
                    }) =>
                {
                    Some("has no .txt files".into())
                }
                PathKind::HfModelDir if !resolved.is_dir() => Some("does not exist".into()),
                PathKind::HfModelDir if !resolved.join("config.json").is_file() => {
                    Some("has no config.json (not a Hugging Face model folder)".into())
                }
                _ => None,
            }
        };
        if let Some(p) = problem {
            let shown = crate::lang::load::normalize(&resolved).display().to_string();
            let noun = match kind {
                PathKind::File => "file",
                PathKind::Dir => "folder of .txt files",
                PathKind::HfModelDir => "model folder",
            };
            self.err(
                Diagnostic::new(Code::MissingFile, e.span, format!("{} `{shown}` {p}", if kind == PathKind::Dir { "folder" } else { noun }))
                    .label(format!("`{}` must name an existing {noun}", what.param))
                    .help(if src.path.is_some() {
                        format!(
                            "paths are relative to the folder of {} (`{}`)",
                            src.name,
                            base.display()
                        )
                    } else {
                        "override paths are relative to the current directory".to_string()
                    }),
            );
            return None;
        }
        Some(Value::Path {
            written: s.to_string(),
            resolved,
        })
    }
    /// `hf("owner/name")` that is no folder: the snapshot in the local Hub cache (never the
    /// network), at the call's `revision:`; the error says where it looked and how to download.
    fn check_hub_id(&mut self, id: &str, folder: &std::path::Path, e: &Expr, what: What) -> Option<Value> {
        match crate::engine::hub::resolve(id, self.hub_revision.as_deref()) {
            Ok(snap) => Some(Value::Path { written: id.to_string(), resolved: snap.path }),
            Err(err) => {
                let shown = crate::lang::load::normalize(folder).display().to_string();
                self.err(
                    Diagnostic::new(Code::MissingFile, e.span, format!("model `{id}` is neither a folder nor in the local Hub cache"))
                        .label(format!("`{}`: no folder `{shown}`, no cached Hub snapshot", what.param))
                        .help(err.to_string()),
                );
                None
            }
        }
    }
}

