//! The checker: parsed files → [`Program`]. It resolves every name, checks every value against
//! the schema (types, enum values, ranges, placeholders, files), fills in defaults, expands
//! sweeps, checks heads against model shapes, finds dependency cycles and orders the
//! declarations. Every mistake becomes a [`Diagnostic`] with a span; nothing is loaded.
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use super::ast::{self, fmt_float, path_string, Expr, ExprKind, Ident, Item};
use super::diagnostics::{did_you_mean, finish, suggest, Code, Diagnostic};
use super::load::SourceSet;
use super::parser::parse_expr_at;
use super::program::{Arg, Experiment, FileInfo, Node, Origin, Program, Value};
use super::schema::{
    registry, Constraint, Default, Family, FuncSpec, Kind, PathKind, Registry, Ty,
};
use super::shapes::{ModelDecl, ModelShape, ModelShapes};
use super::source::{FileId, SourceMap, Span};

/// Most elements a range or `linspace` may produce.
const MAX_EXPANSION: usize = 100_000;
/// Most sweep instances one sweep may produce.
const MAX_INSTANCES: usize = 10_000;

/// Checks a loaded program.
pub fn check(set: &SourceSet, shapes: &dyn ModelShapes) -> Result<Program, Vec<Diagnostic>> {
    let mut cx = Checker::new(set, shapes);
    let program = cx.run();
    let Checker { diags, sources, .. } = cx;
    if diags.is_empty() {
        Ok(program)
    } else {
        Err(finish(diags, &sources))
    }
}

/// A sweep variable's value in one instance.
#[derive(Debug, Clone)]
struct Binding {
    var: String,
    value: Expr,
}

/// A declaration (or sweep instance) to check.
struct Sym<'a> {
    name: String,
    kind: Option<Kind>,
    decl: &'a ast::Decl,
    bindings: Vec<Binding>,
    /// Template name → instance name, for the other declarations of the same sweep instance.
    siblings: HashMap<String, String>,
    family: Option<String>,
}

enum Entry {
    Sym(usize),
    Family {
        kind: Option<Kind>,
        instances: Vec<String>,
    },
}

enum Lookup {
    Bound(Binding),
    Sym(usize),
    Family(Vec<String>, Option<Kind>),
    Missing,
}

/// State while checking one declaration.
struct Scope<'s> {
    node: String,
    bindings: &'s [Binding],
    siblings: &'s HashMap<String, String>,
    /// While checking a sweep value, the sweep's own names are out of scope.
    local: bool,
    deps: Vec<(String, Span)>,
}

/// What is being checked, for messages: parameter and function.
#[derive(Clone, Copy)]
struct What<'w> {
    param: &'w str,
    func: &'w str,
}

struct Checker<'a> {
    set: &'a SourceSet,
    reg: &'static Registry,
    shapes: &'a dyn ModelShapes,
    sources: SourceMap,
    diags: Vec<Diagnostic>,
    syms: Vec<Sym<'a>>,
    names: HashMap<String, Entry>,
    /// Where each name was declared (for duplicate errors).
    declared_at: HashMap<String, Span>,
    families: BTreeMap<String, Vec<String>>,
    /// Parsed defaults, by default text.
    defaults: HashMap<&'static str, Option<Expr>>,
    seed: i64,
    override_files: HashSet<FileId>,
    /// The selected profile's item: values written inside it are [`Origin::Profile`].
    profile_span: Option<Span>,
}

impl<'a> Checker<'a> {
    fn new(set: &'a SourceSet, shapes: &'a dyn ModelShapes) -> Self {
        Checker {
            set,
            reg: registry(),
            shapes,
            sources: set.sources.clone(),
            diags: vec![],
            syms: vec![],
            names: HashMap::new(),
            declared_at: HashMap::new(),
            families: BTreeMap::new(),
            defaults: HashMap::new(),
            seed: 0,
            override_files: set.override_files.iter().copied().collect(),
            profile_span: set.profile.as_ref().map(|p| p.span),
        }
    }

    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Where a given value came from: a `--set` pseudo-file, the selected profile, or the text.
    fn origin(&self, span: Span) -> Origin {
        if self.override_files.contains(&span.file) {
            Origin::Override
        } else if self
            .profile_span
            .is_some_and(|p| p.file == span.file && p.start <= span.start && span.end <= p.end)
        {
            Origin::Profile
        } else {
            Origin::Written
        }
    }

    fn run(&mut self) -> Program {
        let experiment = self.experiment();
        self.collect();
        let mut nodes = vec![];
        let mut dep_spans: HashMap<String, Vec<(String, Span)>> = HashMap::new();
        for i in 0..self.syms.len() {
            if let Some((node, deps)) = self.check_sym(i) {
                dep_spans.insert(node.name.clone(), deps);
                nodes.push(node);
            }
        }
        self.check_heads(&nodes);
        let order = self.order(&nodes, &dep_spans);
        let mut by_name: HashMap<String, Node> =
            nodes.into_iter().map(|n| (n.name.clone(), n)).collect();
        let nodes = order
            .into_iter()
            .filter_map(|n| by_name.remove(&n))
            .collect();
        let files = self
            .set
            .files
            .iter()
            .map(|f| FileInfo {
                id: f.id,
                name: self.sources.get(f.id).name.clone(),
                imported_at: f.imported_at,
            })
            .collect();
        Program {
            experiment,
            nodes,
            families: self.families.clone(),
            profiles: self.set.profiles().map(|p| p.name.name.clone()).collect(),
            files,
            sources: self.sources.clone(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Experiment header

    fn experiment(&mut self) -> Experiment {
        let root = self.set.root_file();
        let stem = self
            .sources
            .get(root.id)
            .path
            .as_ref()
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let headers: Vec<&ast::Experiment> = root
            .ast
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Experiment(e) => Some(e),
                _ => None,
            })
            .collect();
        for extra in headers.iter().skip(1) {
            self.err(
                Diagnostic::new(
                    Code::DuplicateExperiment,
                    extra.span,
                    "a file has at most one `experiment` header",
                )
                .label("second header")
                .note(headers[0].span, "first header here")
                .help("merge the two headers"),
            );
        }
        let spec = &self.reg.experiment;
        let header = headers.first().copied();
        let block = header.and_then(|h| h.block.as_ref());
        let callee = header.map(|h| Ident {
            name: "experiment".into(),
            span: h.span,
        });
        let empty = HashMap::new();
        let mut sc = Scope {
            node: "experiment".into(),
            bindings: &[],
            siblings: &empty,
            local: true,
            deps: vec![],
        };
        let args = self.bind_args(spec, &[], block, callee.as_ref(), &mut sc, true);
        let seed = args
            .iter()
            .find(|a| a.name == "seed")
            .and_then(|a| a.value.as_ref())
            .and_then(Value::as_int)
            .unwrap_or(0);
        self.seed = seed;
        let profile = args
            .iter()
            .find(|a| a.name == "profile")
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| "default".into());
        let name = header
            .map(|h| h.name.value.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or(stem);
        Experiment {
            name,
            seed: seed.max(0) as u64,
            profile,
            args,
            span: header.map(|h| h.span),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Symbols and sweeps

    fn declare(&mut self, name: &Ident, entry: Entry) -> bool {
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

    fn decl_kind(&mut self, d: &ast::Decl) -> Option<Kind> {
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

    fn collect(&mut self) {
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

    fn collect_sweep(&mut self, s: &'a ast::Sweep) {
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
    fn sweep_values(&mut self, e: &Expr, sc: &mut Scope) -> Option<Vec<Expr>> {
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

    fn lookup(&self, name: &str, sc: &Scope) -> Lookup {
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

    fn all_names(&self, sc: &Scope) -> Vec<String> {
        let mut v: Vec<String> = self.names.keys().cloned().collect();
        if sc.local {
            v.extend(sc.bindings.iter().map(|b| b.var.clone()));
        }
        v.sort();
        v
    }

    fn check_sym(&mut self, i: usize) -> Option<(Node, Vec<(String, Span)>)> {
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
    fn ctor_spec(&mut self, kind: Kind, ctor: &Ident, sc: &Scope) -> Option<&'static FuncSpec> {
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

    /// Binds positional arguments, named arguments and block parameters to `spec`'s
    /// parameters; checks each value; fills defaults; checks constraints.
    fn bind_args(
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

    fn default_value(&mut self, text: &'static str) -> Option<Expr> {
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

    fn found(&self, e: &Expr, sc: &Scope) -> String {
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

    fn wrong_type(&mut self, ty: &Ty, e: &Expr, what: What, sc: &Scope) {
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
    fn check_value(&mut self, ty: &Ty, e: &Expr, what: What, sc: &mut Scope) -> Option<Value> {
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
    fn resolve_bound(&self, e: &Expr, sc: &Scope) -> Expr {
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
    fn shallow(&self, ty: &Ty, e: &Expr, sc: &Scope) -> bool {
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

    fn range_check(
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

    fn reg_param_doc(&self, what: What) -> Option<&'static str> {
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

    fn check_placeholders(
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

    fn check_path(&mut self, s: &str, kind: PathKind, e: &Expr, what: What) -> Option<Value> {
        let src = self.sources.get(e.span.file).clone();
        let base = src.base_dir();
        let resolved = base.join(s);
        let problem = if s.is_empty() {
            Some("is empty".to_string())
        } else {
            match kind {
                PathKind::File if resolved.is_dir() => Some("is a folder, not a file".into()),
                PathKind::File if !resolved.is_file() => Some("does not exist".into()),
                PathKind::Dir if resolved.is_file() => Some("is a file, not a folder".into()),
                PathKind::Dir if !resolved.is_dir() => Some("does not exist".into()),
                PathKind::HfModelDir if !resolved.is_dir() => Some("does not exist".into()),
                PathKind::HfModelDir if !resolved.join("config.json").is_file() => {
                    Some("has no config.json (not a Hugging Face model folder)".into())
                }
                _ => None,
            }
        };
        if let Some(p) = problem {
            let shown = super::load::normalize(&resolved).display().to_string();
            let noun = match kind {
                PathKind::File => "file",
                PathKind::Dir => "folder",
                PathKind::HfModelDir => "model folder",
            };
            self.err(
                Diagnostic::new(Code::MissingFile, e.span, format!("{noun} `{shown}` {p}"))
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

    fn check_decl_ref(
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

    fn kind_of_name(&self, n: &str) -> Option<Kind> {
        match self.names.get(n) {
            Some(Entry::Sym(i)) => self.syms[*i].kind,
            Some(Entry::Family { kind, .. }) => *kind,
            None => None,
        }
    }

    /// An inline constructor call: an anonymous declaration named `<parent>.<param>`.
    fn inline(
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

    fn check_func(
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

    fn check_list(
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
    fn promote(
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

    fn check_numbers(
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

    fn number(&mut self, e: &Expr, role: &str) -> Option<f64> {
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

    fn expand_range(&mut self, e: &Expr, _sc: &mut Scope) -> Option<Vec<ExprKind>> {
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

    fn linspace(&mut self, e: &Expr, c: &ast::Call, _sc: &mut Scope) -> Option<Vec<f64>> {
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

    fn check_heads(&mut self, nodes: &[Node]) {
        let by_name: HashMap<&str, &Node> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let mut shapes: HashMap<String, Option<ModelShape>> = HashMap::new();
        let mut reported: HashSet<(FileId, usize, usize)> = HashSet::new();
        let mut all: Vec<&Node> = vec![];
        for n in nodes {
            collect_nodes(n, &mut all);
        }
        // Shapes of every model node (reports unavailable models).
        for n in &all {
            if n.kind == Kind::Model {
                let s = self.model_shape(n);
                shapes.insert(n.name.clone(), s);
            }
        }
        let hc = HeadCx {
            by_name: &by_name,
            shapes: &shapes,
        };
        for n in &all {
            match (n.kind, n.constructor.as_str()) {
                (Kind::Heads, _) => {
                    // The node's own head counts against the model it selects from.
                    if let Some((mname, shape)) =
                        hc.source_model(&Value::Inline(Box::new((*n).clone())), 0)
                    {
                        for (count, span, what) in own_counts(n) {
                            if count as usize > shape.total()
                                && reported.insert((span.file, span.start, span.end))
                            {
                                self.err(count_error(count, span, what, &mname, shape));
                            }
                        }
                    }
                }
                (Kind::Trace, "generate") => {
                    let Some(Value::Ref { name: _, .. } | Value::Inline(_)) = n.arg("model") else {
                        continue;
                    };
                    let Some((mname, shape)) = hc.model_of(n.arg("model").expect("model")) else {
                        continue;
                    };
                    if let Some(Value::List(caps)) = n.arg("capture") {
                        for c in caps {
                            if let Value::Call { func, args, .. } = c {
                                if func == "hidden" {
                                    if let Some(Arg {
                                        value: Some(Value::Int(l)),
                                        span: Some(sp),
                                        ..
                                    }) = args.iter().find(|a| a.name == "layer")
                                    {
                                        if *l as usize >= shape.layers
                                            && reported.insert((sp.file, sp.start, sp.end))
                                        {
                                            self.err(
                                                Diagnostic::new(Code::HeadOutOfRange, *sp, format!("layer {l} does not exist in model `{mname}` ({} layers)", shape.layers))
                                                    .label(format!("layers are 0 to {}", shape.layers.saturating_sub(1)))
                                                    .help("use `hidden(final)` for the last layer's output after the final norm"),
                                            );
                                        }
                                    }
                                }
                            }
                        }
                    }
                    let Some(Value::List(ivs)) = n.arg("intervene") else {
                        continue;
                    };
                    let iv_span = n.arg_entry("intervene").and_then(|a| a.span);
                    for iv in ivs {
                        let Value::Call { func, args, .. } = iv else {
                            continue;
                        };
                        if func != "mask_heads" {
                            continue;
                        }
                        let Some(harg) = args.iter().find(|a| a.name == "heads") else {
                            continue;
                        };
                        let Some(hv) = &harg.value else { continue };
                        let use_span = harg.span.or(iv_span);
                        let mut explicit = vec![];
                        let mut counts = vec![];
                        hc.walk(hv, &mut explicit, &mut counts, 0);
                        for (layer, head, span) in explicit {
                            let Some(span) = span else { continue };
                            if (layer >= shape.layers || head >= shape.heads)
                                && reported.insert((span.file, span.start, span.end))
                            {
                                let label = if layer >= shape.layers {
                                    format!(
                                        "layer {layer} is out of range (0 to {})",
                                        shape.layers.saturating_sub(1)
                                    )
                                } else {
                                    format!(
                                        "head {head} is out of range (0 to {})",
                                        shape.heads.saturating_sub(1)
                                    )
                                };
                                let mut d = Diagnostic::new(Code::HeadOutOfRange, span, format!("head L{layer}H{head} does not exist in model `{mname}` ({} layers × {} heads)", shape.layers, shape.heads)).label(label);
                                if let Some(u) = use_span.filter(|u| {
                                    !(u.file == span.file
                                        && u.start <= span.start
                                        && span.end <= u.end)
                                }) {
                                    d = d.note(
                                        u,
                                        format!("masked in `{}`, which runs `{mname}`", n.name),
                                    );
                                }
                                self.err(d);
                            }
                        }
                        for (count, span, what) in counts {
                            if count as usize > shape.total()
                                && reported.insert((span.file, span.start, span.end))
                            {
                                let mut d = count_error(count, span, what, &mname, shape);
                                if let Some(u) = use_span.filter(|u| {
                                    !(u.file == span.file
                                        && u.start <= span.start
                                        && span.end <= u.end)
                                }) {
                                    d = d.note(
                                        u,
                                        format!("masked in `{}`, which runs `{mname}`", n.name),
                                    );
                                }
                                self.err(d);
                            }
                        }
                        if let Some((src_name, src)) = hc.source_model(hv, 0) {
                            if src_name != mname
                                && (src.layers > shape.layers || src.heads > shape.heads)
                            {
                                if let Some(u) = use_span {
                                    if reported.insert((u.file, u.start, u.end)) {
                                        self.err(
                                            Diagnostic::new(
                                                Code::HeadOutOfRange,
                                                u,
                                                format!("heads chosen on model `{src_name}` ({}×{}) do not all exist in model `{mname}` ({}×{})", src.layers, src.heads, shape.layers, shape.heads),
                                            )
                                            .label(format!("`{}` runs `{mname}`", n.name))
                                            .help("select the heads on the model you intervene on"),
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn model_shape(&mut self, n: &Node) -> Option<ModelShape> {
        match n.constructor.as_str() {
            "random" => {
                let layers = n.arg("layers").and_then(Value::as_int)?;
                let heads = n.arg("heads").and_then(Value::as_int)?;
                Some(ModelShape {
                    layers: layers as usize,
                    heads: heads as usize,
                })
            }
            "gguf" | "hf" => {
                let entry = n.args.first()?;
                let (spec, path) = match entry.value.as_ref()? {
                    Value::ModelName(s) => (s.clone(), None),
                    Value::Path { written, resolved } => (written.clone(), Some(resolved.clone())),
                    _ => return None,
                };
                let decl = ModelDecl {
                    name: n.name.clone(),
                    constructor: n.constructor.clone(),
                    spec: spec.clone(),
                    path,
                };
                match self.shapes.shape(&decl) {
                    Ok(s) => s,
                    Err(msg) => {
                        if let Some(span) = entry.span {
                            self.err(
                                Diagnostic::new(
                                    Code::ModelUnavailable,
                                    span,
                                    format!("model `{spec}` cannot be read"),
                                )
                                .label("not found or not a model")
                                .help(msg),
                            );
                        }
                        None
                    }
                }
            }
            _ => None,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Dependency order

    fn order(
        &mut self,
        nodes: &[Node],
        dep_spans: &HashMap<String, Vec<(String, Span)>>,
    ) -> Vec<String> {
        let index: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let edges: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| {
                n.deps
                    .iter()
                    .filter_map(|d| index.get(d.as_str()).copied())
                    .collect()
            })
            .collect();
        // Cycles: DFS, report each cycle once.
        let mut color = vec![0u8; nodes.len()];
        let mut reported: HashSet<Vec<usize>> = HashSet::new();
        for root in 0..nodes.len() {
            if color[root] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            let mut path: Vec<usize> = vec![root];
            color[root] = 1;
            while let Some(&mut (u, ref mut ei)) = stack.last_mut() {
                if *ei < edges[u].len() {
                    let v = edges[u][*ei];
                    *ei += 1;
                    if color[v] == 0 {
                        color[v] = 1;
                        stack.push((v, 0));
                        path.push(v);
                    } else if color[v] == 1 {
                        let pos = path.iter().position(|&x| x == v).expect("on path");
                        let cycle: Vec<usize> = path[pos..].to_vec();
                        let mut key = cycle.clone();
                        key.sort();
                        if reported.insert(key) {
                            self.report_cycle(nodes, &cycle, dep_spans);
                        }
                    }
                } else {
                    color[u] = 2;
                    stack.pop();
                    path.pop();
                }
            }
        }
        // Kahn, ties by source order.
        let mut indeg = vec![0usize; nodes.len()];
        let mut users: Vec<Vec<usize>> = vec![vec![]; nodes.len()];
        for (u, es) in edges.iter().enumerate() {
            let mut es = es.clone();
            es.sort();
            es.dedup();
            for v in es {
                indeg[u] += 1;
                users[v].push(u);
            }
        }
        let mut heap: BinaryHeap<std::cmp::Reverse<usize>> = (0..nodes.len())
            .filter(|&i| indeg[i] == 0)
            .map(std::cmp::Reverse)
            .collect();
        let mut out = vec![];
        while let Some(std::cmp::Reverse(i)) = heap.pop() {
            out.push(nodes[i].name.clone());
            for &u in &users[i] {
                indeg[u] -= 1;
                if indeg[u] == 0 {
                    heap.push(std::cmp::Reverse(u));
                }
            }
        }
        out
    }

    fn report_cycle(
        &mut self,
        nodes: &[Node],
        cycle: &[usize],
        dep_spans: &HashMap<String, Vec<(String, Span)>>,
    ) {
        // Start at the node declared first.
        let start = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
        let cyc: Vec<usize> = cycle[start..]
            .iter()
            .chain(cycle[..start].iter())
            .copied()
            .collect();
        let names: Vec<&str> = cyc.iter().map(|&i| nodes[i].name.as_str()).collect();
        let chain = names
            .iter()
            .chain(std::iter::once(&names[0]))
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(" → ");
        let edge_span = |from: &str, to: &str| {
            dep_spans
                .get(from)
                .and_then(|v| v.iter().find(|(n, _)| n == to))
                .map(|(_, s)| *s)
        };
        let first_to = names.get(1).copied().unwrap_or(names[0]);
        let primary = edge_span(names[0], first_to).unwrap_or(nodes[cyc[0]].span);
        let msg = if names.len() == 1 {
            format!("`{}` depends on itself", names[0])
        } else {
            format!("dependency cycle: {chain}")
        };
        let mut d = Diagnostic::new(Code::Cycle, primary, msg)
            .label(format!("`{}` uses `{first_to}` here", names[0]));
        for k in 1..names.len() {
            let to = names[(k + 1) % names.len()];
            if let Some(s) = edge_span(names[k], to) {
                d = d.note(s, format!("`{}` uses `{to}` here", names[k]));
            }
        }
        d = d.help(
            "declarations must form a DAG: each may only use declarations that do not use it",
        );
        self.err(d);
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn decl_mentions(d: &ast::Decl, name: &str) -> bool {
    expr_mentions(&d.value, name)
        || d.block
            .as_ref()
            .is_some_and(|b| b.params.iter().any(|p| expr_mentions(&p.value, name)))
}

fn expr_mentions(e: &Expr, name: &str) -> bool {
    match &e.kind {
        ExprKind::Path(p) => p.len() == 1 && p[0].name == name,
        ExprKind::List(items) => items.iter().any(|x| expr_mentions(x, name)),
        ExprKind::Range {
            start, end, step, ..
        } => {
            expr_mentions(start, name)
                || expr_mentions(end, name)
                || step.as_ref().is_some_and(|s| expr_mentions(s, name))
        }
        ExprKind::Call(c) => c.args.iter().any(|a| match a {
            ast::Arg::Positional(x) => expr_mentions(x, name),
            ast::Arg::Named(p) => expr_mentions(&p.value, name),
        }),
        _ => false,
    }
}

/// The part of an instance name that stands for a sweep value: `5`, `m5` (for -5), `0p5`,
/// `zero_output`.
fn name_part(e: &Expr, index: usize) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    match &e.kind {
        ExprKind::Int(i) => {
            if *i < 0 {
                format!("m{}", i.unsigned_abs())
            } else {
                i.to_string()
            }
        }
        ExprKind::Float(f) => fmt_float(*f)
            .replace('-', "m")
            .replace('.', "p")
            .replace('+', ""),
        ExprKind::Str(s) if !s.is_empty() && s.len() <= 32 => clean(s),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Path(p) => clean(&path_string(p)),
        _ => index.to_string(),
    }
}

/// A sweep value as a [`Value`] for display.
fn literal_value(e: &Expr) -> Value {
    match &e.kind {
        ExprKind::Int(i) => Value::Int(*i),
        ExprKind::Float(f) => Value::Float(*f),
        ExprKind::Str(s) => Value::Str(s.clone()),
        ExprKind::Bool(b) => Value::Bool(*b),
        ExprKind::Path(p) => Value::Enum(path_string(p)),
        ExprKind::List(items) => Value::List(items.iter().map(literal_value).collect()),
        _ => {
            let mut s = String::new();
            ast::expr_shape(e, &mut s);
            Value::Enum(s)
        }
    }
}

/// A parameter's doc without its leading reference-option name (`niah.depths: needle depths`
/// → `needle depths`).
fn doc_text(doc: &'static str) -> &'static str {
    match doc.split_once(": ") {
        Some((head, rest)) if head.contains('.') && !head.contains(' ') => rest,
        _ => doc,
    }
}

fn parse_head(s: &str) -> Option<(usize, usize)> {
    let rest = s.strip_prefix('L')?;
    let h = rest.find('H')?;
    let (l, hd) = (&rest[..h], &rest[h + 1..]);
    if l.is_empty()
        || hd.is_empty()
        || l.len() > 6
        || hd.len() > 6
        || !l.chars().all(|c| c.is_ascii_digit())
        || !hd.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    Some((l.parse().ok()?, hd.parse().ok()?))
}

fn short_ty(ty: &Ty) -> String {
    match ty {
        Ty::Decl(k) => k.article().to_string(),
        Ty::List(t) => match &**t {
            Ty::Decl(k) => format!("{} or a list of them", k.article()),
            _ => "a list".into(),
        },
        Ty::Int { .. } => "an integer".into(),
        Ty::Float { .. } => "a number".into(),
        Ty::Str { .. } => "a string".into(),
        Ty::Path(_) | Ty::ModelSource => "a path string".into(),
        Ty::Enum(v) => format!("one of {}", v.join(", ")),
        Ty::Bool => "true or false".into(),
        Ty::Func(f) => format!("a {} call", f.name()),
        _ => "another kind of value".into(),
    }
}

fn example_value(ty: &Ty) -> String {
    match ty {
        Ty::Int { min, .. } => min.map(|m| m.max(1)).unwrap_or(1).to_string(),
        Ty::Float { .. } => "0.5".into(),
        Ty::Bool => "true".into(),
        Ty::Str { .. } => "\"...\"".into(),
        Ty::Path(_) | Ty::ModelSource | Ty::HeadId => "\"...\"".into(),
        Ty::Enum(v) => v.first().copied().unwrap_or("...").into(),
        Ty::Builtin { ns, names } => format!("{ns}.{}", names.first().copied().unwrap_or("...")),
        Ty::Device => "auto".into(),
        Ty::Decl(_) => "<name>".into(),
        Ty::Func(_) => "...".into(),
        Ty::List(_) => "[...]".into(),
        Ty::OneOf(alts) => alts.first().map(example_value).unwrap_or_default(),
    }
}

fn collect_nodes<'n>(n: &'n Node, out: &mut Vec<&'n Node>) {
    out.push(n);
    fn walk<'n>(v: &'n Value, out: &mut Vec<&'n Node>) {
        match v {
            Value::Inline(n) => collect_nodes(n, out),
            Value::Call { args, .. } => {
                for a in args {
                    if let Some(v) = &a.value {
                        walk(v, out);
                    }
                }
            }
            Value::List(items) => {
                for i in items {
                    walk(i, out);
                }
            }
            _ => {}
        }
    }
    for a in &n.args {
        if let Some(v) = &a.value {
            walk(v, out);
        }
    }
}

/// Head counts a heads node asks for itself: (count, span, description).
fn own_counts(n: &Node) -> Vec<(i64, Span, String)> {
    let mut out = vec![];
    let param = match n.constructor.as_str() {
        "static_heads" => "top",
        "dynamic" => "k",
        "random" => "count",
        "top" => "n",
        _ => return out,
    };
    if let Some(Arg {
        value: Some(Value::Int(c)),
        span: Some(sp),
        ..
    }) = n.arg_entry(param)
    {
        out.push((*c, *sp, format!("`{param}: {c}`")));
    }
    out
}

fn count_error(count: i64, span: Span, what: String, model: &str, shape: ModelShape) -> Diagnostic {
    Diagnostic::new(
        Code::HeadOutOfRange,
        span,
        format!("{what} asks for more heads than model `{model}` has"),
    )
    .label(format!("{count} > {} heads", shape.total()))
    .help(format!(
        "`{model}` has {} layers × {} heads = {} heads",
        shape.layers,
        shape.heads,
        shape.total()
    ))
}

struct HeadCx<'h> {
    by_name: &'h HashMap<&'h str, &'h Node>,
    shapes: &'h HashMap<String, Option<ModelShape>>,
}

impl<'h> HeadCx<'h> {
    fn node<'v>(&self, v: &'v Value) -> Option<&'v Node>
    where
        'h: 'v,
    {
        match v {
            Value::Ref { name, .. } => self.by_name.get(name.as_str()).copied(),
            Value::Inline(n) => Some(n),
            _ => None,
        }
    }

    /// Name and shape of a model value (a reference or inline model).
    fn model_of(&self, v: &Value) -> Option<(String, ModelShape)> {
        let n = self.node(v)?;
        if n.kind != Kind::Model {
            return None;
        }
        self.shapes
            .get(&n.name)
            .copied()
            .flatten()
            .map(|s| (n.name.clone(), s))
    }

    /// The model a head set was selected on, if it is known.
    fn source_model(&self, v: &Value, depth: usize) -> Option<(String, ModelShape)> {
        if depth > 32 {
            return None;
        }
        let n = self.node(v)?;
        match n.constructor.as_str() {
            "static_heads" | "dynamic" => {
                let t = self.node(n.arg("trace")?)?;
                self.model_of(t.arg("model")?)
            }
            "random" => self.model_of(n.arg("model")?),
            "top" => self.source_model(n.arg("heads")?, depth + 1),
            _ => None,
        }
    }

    /// Explicit heads and head counts that a heads value implies.
    fn walk(
        &self,
        v: &Value,
        explicit: &mut Vec<(usize, usize, Option<Span>)>,
        counts: &mut Vec<(i64, Span, String)>,
        depth: usize,
    ) {
        if depth > 32 {
            return;
        }
        let Some(n) = self.node(v) else { return };
        counts.extend(own_counts(n));
        match n.constructor.as_str() {
            "explicit" => {
                if let Some(Value::List(hs)) = n.arg("heads") {
                    for h in hs {
                        if let Value::Head { layer, head, span } = h {
                            explicit.push((*layer, *head, *span));
                        }
                    }
                }
            }
            "top" => {
                if let Some(h) = n.arg("heads") {
                    self.walk(h, explicit, counts, depth + 1);
                }
            }
            _ => {}
        }
    }
}
