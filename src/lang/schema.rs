//! The schema registry: which declaration kinds exist, which constructors each kind accepts,
//! which value functions (captures, interventions) exist, and every parameter's type, allowed
//! values or range, default and one-line doc. The checker is driven entirely by this table; the
//! grammar knows nothing about it.
//!
//! Adding a parameter is one line in [`build`]:
//!
//! ```text
//! .def("runs", int_min(1), "5", "generations per (length, depth) cell (A.1: 5)")
//! ```
//!
//! Defaults are written as `.rhx` expressions and type-checked like user values (a unit test
//! checks every one). Parameter names follow the option table of
//! `docs/reference-algorithms.md` §9 where one applies (`mask.mode` → `mask_heads(mode: ...)`).
use std::fmt::Write as _;
use std::sync::OnceLock;

/// Declaration kinds: the left-hand word of `model smol = ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Model,
    Dataset,
    Trace,
    Heads,
    Table,
    Figure,
    Report,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Model,
        Kind::Dataset,
        Kind::Trace,
        Kind::Heads,
        Kind::Table,
        Kind::Figure,
        Kind::Report,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Model => "model",
            Kind::Dataset => "dataset",
            Kind::Trace => "trace",
            Kind::Heads => "heads",
            Kind::Table => "table",
            Kind::Figure => "figure",
            Kind::Report => "report",
        }
    }

    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// "a model", "heads", ... for messages.
    pub fn article(self) -> &'static str {
        match self {
            Kind::Model => "a model",
            Kind::Dataset => "a dataset",
            Kind::Trace => "a trace",
            Kind::Heads => "a head set",
            Kind::Table => "a table",
            Kind::Figure => "a figure",
            Kind::Report => "a report",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Model => "models",
            Kind::Dataset => "datasets",
            Kind::Trace => "traces",
            Kind::Heads => "head sets",
            Kind::Table => "tables",
            Kind::Figure => "figures",
            Kind::Report => "reports",
        }
    }

    pub fn doc(self) -> &'static str {
        match self {
            Kind::Model => "weights + tokenizer + chat template to run (loaded only when a trace needs it)",
            Kind::Dataset => "prompts to generate from",
            Kind::Trace => "greedy generations of a model on a dataset, with per-step per-head captures and optional interventions",
            Kind::Heads => "a set of attention heads (fixed, or chosen per step)",
            Kind::Table => "an analysis whose result is a table",
            Kind::Figure => "an analysis whose result is a figure",
            Kind::Report => "a rendered document that collects tables and figures",
        }
    }
}

/// Families of value functions (calls that are values, not declarations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// What a trace records at each decoding step (`capture: [...]`).
    Capture,
    /// What a trace changes in the model (`intervene: [...]`).
    Intervention,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Capture => "capture",
            Family::Intervention => "intervention",
        }
    }
}

/// What a path must point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    File,
    /// A folder of `.txt` files (a NIAH haystack, the only folder parameter): it must hold at
    /// least one.
    Dir,
    /// A folder with `config.json` (and safetensors).
    HfModelDir,
}

/// Parameter types.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    /// Also accepts integers.
    Float {
        min: Option<f64>,
        max: Option<f64>,
    },
    Bool,
    /// A string; `placeholders: Some(list)` means `{name}` must be one of `list` (and every name
    /// in `required` must appear); `None` means braces are plain text.
    Str {
        placeholders: Option<&'static [&'static str]>,
        required: &'static [&'static str],
    },
    /// A string naming a file or folder, relative to the `.rhx` file; must exist.
    Path(PathKind),
    /// A known model name (resolved by the engine) or a path to a `.gguf` file.
    ModelSource,
    /// A bare identifier from a fixed set.
    Enum(&'static [&'static str]),
    /// A dotted built-in constant such as `builtin.alice` or `paper.table1`.
    Builtin {
        ns: &'static str,
        names: &'static [&'static str],
    },
    /// `auto`, `cpu`, `cuda` or the string `"cuda:N"`.
    Device,
    /// A head as the string `"L<layer>H<head>"`.
    HeadId,
    /// A reference to a declaration of this kind, or an inline constructor call of it.
    Decl(Kind),
    /// A call to a value function of this family (a bare name if it needs no argument).
    Func(Family),
    /// A list (also: a range, `linspace(...)`, a sweep family, or one element on its own).
    List(Box<Ty>),
    /// The first alternative whose shape matches.
    OneOf(Vec<Ty>),
}

impl Ty {
    /// "an integer ≥ 1", "one of f32, bf16, f16", ...
    pub fn describe(&self) -> String {
        match self {
            Ty::Int { min, max } => format!(
                "an integer{}",
                range_text(min.map(|x| x as f64), max.map(|x| x as f64))
            ),
            Ty::Float { min, max } => format!("a number{}", range_text(*min, *max)),
            Ty::Bool => "`true` or `false`".into(),
            Ty::Str {
                placeholders: Some(p),
                ..
            } if !p.is_empty() => {
                format!(
                    "a string with {}",
                    p.iter()
                        .map(|x| format!("{{{x}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            Ty::Str { .. } => "a string".into(),
            Ty::Path(PathKind::File) => "a path to a file (a string)".into(),
            Ty::Path(PathKind::Dir) => "a path to a folder of .txt files (a string)".into(),
            Ty::Path(PathKind::HfModelDir) => {
                "a path to a Hugging Face model folder (a string)".into()
            }
            Ty::ModelSource => "a model name or a path to a .gguf file (a string)".into(),
            Ty::Enum(v) => format!("one of {}", v.join(", ")),
            Ty::Builtin { ns, names } => format!(
                "one of {}",
                names
                    .iter()
                    .map(|n| format!("{ns}.{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Ty::Device => "a device (auto, cpu, cuda or \"cuda:N\")".into(),
            Ty::HeadId => "a head such as \"L12H3\"".into(),
            Ty::Decl(k) => k.article().into(),
            Ty::Func(f) => {
                let names: Vec<&str> = registry().funcs_of(*f).map(|s| s.name).collect();
                format!(
                    "{} {} ({})",
                    if *f == Family::Intervention {
                        "an"
                    } else {
                        "a"
                    },
                    f.name(),
                    names.join(", ")
                )
            }
            Ty::List(t) => match &**t {
                Ty::Decl(k) => format!("a list of {}", k.plural()),
                Ty::Func(f) => format!("a list of {}s", f.name()),
                other => format!("a list of {}", plural_desc(other)),
            },
            Ty::OneOf(alts) => alts
                .iter()
                .map(|t| t.describe())
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }
}

fn plural_desc(t: &Ty) -> String {
    let d = t.describe();
    for (a, b) in [
        ("an integer", "integers"),
        ("a number", "numbers"),
        ("a string", "strings"),
        ("a head such as", "heads such as"),
        ("one of", "values from"),
    ] {
        if let Some(rest) = d.strip_prefix(a) {
            return format!("{b}{rest}");
        }
    }
    d
}

fn range_text(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!(" from {} to {}", num(a), num(b)),
        (Some(a), None) => format!(" ≥ {}", num(a)),
        (None, Some(b)) => format!(" ≤ {}", num(b)),
        (None, None) => String::new(),
    }
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// A parameter's default.
#[derive(Debug, Clone, PartialEq)]
pub enum Default {
    /// Must be given.
    Required,
    /// May be left out; then it has no value.
    Optional,
    /// An `.rhx` expression.
    Value(&'static str),
    /// The experiment's `seed`.
    ExperimentSeed,
}

#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: Ty,
    pub default: Default,
    pub doc: &'static str,
}

/// Rules that involve more than one parameter.
#[derive(Debug, Clone)]
pub enum Constraint {
    /// Exactly one of these must be given.
    ExactlyOne(&'static [&'static str]),
    /// If `param` has the enum value `value`, `then` must be given.
    Requires {
        param: &'static str,
        value: &'static str,
        then: &'static str,
    },
}

/// A constructor or value function: `name(positional..., named: ...)`.
#[derive(Debug, Clone)]
pub struct FuncSpec {
    pub name: &'static str,
    pub doc: &'static str,
    /// All parameters; the first `positional` may be passed by position.
    pub params: Vec<ParamSpec>,
    pub positional: usize,
    pub constraints: Vec<Constraint>,
}

impl FuncSpec {
    pub fn new(name: &'static str, doc: &'static str) -> Self {
        FuncSpec {
            name,
            doc,
            params: vec![],
            positional: 0,
            constraints: vec![],
        }
    }

    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    pub fn positional_params(&self) -> &[ParamSpec] {
        &self.params[..self.positional]
    }

    /// A required positional parameter.
    pub fn pos(mut self, name: &'static str, ty: Ty, doc: &'static str) -> Self {
        assert_eq!(
            self.positional,
            self.params.len(),
            "positional parameters come first"
        );
        self.params.push(ParamSpec {
            name,
            ty,
            default: Default::Required,
            doc,
        });
        self.positional += 1;
        self
    }

    /// A positional parameter with a default.
    pub fn pos_def(
        mut self,
        name: &'static str,
        ty: Ty,
        default: &'static str,
        doc: &'static str,
    ) -> Self {
        assert_eq!(
            self.positional,
            self.params.len(),
            "positional parameters come first"
        );
        self.params.push(ParamSpec {
            name,
            ty,
            default: Default::Value(default),
            doc,
        });
        self.positional += 1;
        self
    }

    /// An optional positional parameter without a default.
    pub fn pos_opt(mut self, name: &'static str, ty: Ty, doc: &'static str) -> Self {
        assert_eq!(self.positional, self.params.len(), "positional parameters come first");
        self.params.push(ParamSpec { name, ty, default: Default::Optional, doc });
        self.positional += 1;
        self
    }

    /// A required named parameter.
    pub fn req(mut self, name: &'static str, ty: Ty, doc: &'static str) -> Self {
        self.params.push(ParamSpec {
            name,
            ty,
            default: Default::Required,
            doc,
        });
        self
    }

    /// An optional named parameter without a default.
    pub fn opt(mut self, name: &'static str, ty: Ty, doc: &'static str) -> Self {
        self.params.push(ParamSpec {
            name,
            ty,
            default: Default::Optional,
            doc,
        });
        self
    }

    /// A named parameter with a default (an `.rhx` expression).
    pub fn def(mut self, name: &'static str, ty: Ty, default: &'static str, doc: &'static str) -> Self {
        self.params.push(ParamSpec {
            name,
            ty,
            default: Default::Value(default),
            doc,
        });
        self
    }

    /// `seed`, defaulting to the experiment's seed.
    pub fn seed(mut self, doc: &'static str) -> Self {
        self.params.push(ParamSpec {
            name: "seed",
            ty: int_min(0),
            default: Default::ExperimentSeed,
            doc,
        });
        self
    }

    pub fn exactly_one(mut self, names: &'static [&'static str]) -> Self {
        self.constraints.push(Constraint::ExactlyOne(names));
        self
    }

    pub fn requires(mut self, param: &'static str, value: &'static str, then: &'static str) -> Self {
        self.constraints
            .push(Constraint::Requires { param, value, then });
        self
    }

    /// Adds the same parameters to several constructors.
    pub fn with(self, f: impl Fn(Self) -> Self) -> Self {
        f(self)
    }

    /// `name(a, b)` with positional parameter names, for messages.
    pub fn signature(&self) -> String {
        let pos: Vec<&str> = self.positional_params().iter().map(|p| p.name).collect();
        format!("{}({})", self.name, pos.join(", "))
    }

    /// Markdown table of the parameters (for docs).
    pub fn doc_table(&self) -> String {
        let mut s = String::from("| parameter | type | default | meaning |\n|---|---|---|---|\n");
        for (i, p) in self.params.iter().enumerate() {
            let d = match &p.default {
                Default::Required => "required".to_string(),
                Default::Optional => "—".to_string(),
                Default::Value(v) => format!("`{}`", v.replace('\n', "\\n")),
                Default::ExperimentSeed => "experiment seed".to_string(),
            };
            let pos = if i < self.positional {
                format!(" (position {})", i + 1)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "| `{}`{pos} | {} | {d} | {} |",
                p.name,
                p.ty.describe().replace('|', "\\|"),
                p.doc.replace('|', "\\|")
            );
        }
        s
    }
}

/// One constructor of a declaration kind.
#[derive(Debug, Clone)]
pub struct CtorSpec {
    pub kind: Kind,
    pub func: FuncSpec,
}

/// The whole schema.
#[derive(Debug)]
pub struct Registry {
    pub ctors: Vec<CtorSpec>,
    pub funcs: Vec<(Family, FuncSpec)>,
    /// Parameters of the `experiment "..." { ... }` header.
    pub experiment: FuncSpec,
}

impl Registry {
    pub fn ctor(&self, kind: Kind, name: &str) -> Option<&FuncSpec> {
        self.ctors
            .iter()
            .find(|c| c.kind == kind && c.func.name == name)
            .map(|c| &c.func)
    }

    pub fn ctors_of(&self, kind: Kind) -> impl Iterator<Item = &FuncSpec> {
        self.ctors
            .iter()
            .filter(move |c| c.kind == kind)
            .map(|c| &c.func)
    }

    /// Kinds that have a constructor called `name`.
    pub fn kinds_with_ctor(&self, name: &str) -> Vec<Kind> {
        self.ctors
            .iter()
            .filter(|c| c.func.name == name)
            .map(|c| c.kind)
            .collect()
    }

    pub fn func(&self, family: Family, name: &str) -> Option<&FuncSpec> {
        self.funcs
            .iter()
            .find(|(f, s)| *f == family && s.name == name)
            .map(|(_, s)| s)
    }

    pub fn funcs_of(&self, family: Family) -> impl Iterator<Item = &FuncSpec> {
        self.funcs
            .iter()
            .filter(move |(f, _)| *f == family)
            .map(|(_, s)| s)
    }

    pub fn family_of(&self, name: &str) -> Option<Family> {
        self.funcs
            .iter()
            .find(|(_, s)| s.name == name)
            .map(|(f, _)| *f)
    }

    /// Markdown reference of every kind, constructor and function (for docs/LANGUAGE.md).
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "### experiment header\n\n{}",
            self.experiment.doc_table()
        );
        for k in Kind::ALL {
            let _ = writeln!(s, "### {} — {}\n", k.name(), k.doc());
            for c in self.ctors_of(k) {
                let _ = writeln!(
                    s,
                    "#### `{}`\n\n{}\n\n{}",
                    c.signature(),
                    c.doc,
                    c.doc_table()
                );
            }
        }
        for fam in [Family::Capture, Family::Intervention] {
            let _ = writeln!(s, "### {} functions\n", fam.name());
            for c in self.funcs_of(fam) {
                let _ = writeln!(
                    s,
                    "#### `{}`\n\n{}\n\n{}",
                    c.signature(),
                    c.doc,
                    c.doc_table()
                );
            }
        }
        s
    }
}

/// The registry (built once).
pub fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(build)
}

// ---------------------------------------------------------------------------------------------
// Type shorthands

pub fn int_min(min: i64) -> Ty {
    Ty::Int {
        min: Some(min),
        max: None,
    }
}
pub fn int_range(min: i64, max: i64) -> Ty {
    Ty::Int {
        min: Some(min),
        max: Some(max),
    }
}
pub fn float_range(min: f64, max: f64) -> Ty {
    Ty::Float {
        min: Some(min),
        max: Some(max),
    }
}
pub fn float_min(min: f64) -> Ty {
    Ty::Float {
        min: Some(min),
        max: None,
    }
}
pub fn enm(values: &'static [&'static str]) -> Ty {
    Ty::Enum(values)
}
pub fn list(t: Ty) -> Ty {
    Ty::List(Box::new(t))
}
pub fn text() -> Ty {
    Ty::Str {
        placeholders: None,
        required: &[],
    }
}
pub fn template(allowed: &'static [&'static str], required: &'static [&'static str]) -> Ty {
    Ty::Str {
        placeholders: Some(allowed),
        required,
    }
}
pub fn decl(k: Kind) -> Ty {
    Ty::Decl(k)
}

/// Built-in haystacks (`builtin.<name>`), each bundled by `data::niah::Haystack` (add a name
/// here when the data module bundles another text, e.g. Paul Graham's essays, the paper's).
pub const BUILTIN_HAYSTACKS: &[&str] = &["alice"];
/// Paper results that a report can put beside ours (`paper.<name>`).
pub const PAPER_REFS: &[&str] = &[
    "table1", "table2", "table3", "table4", "figure2", "figure3", "figure4", "figure5", "figure6", "figure7", "figure8",
];
pub const DTYPES: &[&str] = &["f32", "bf16", "f16"];
pub const ARCHS: &[&str] = &["llama", "qwen2", "qwen3", "phi3"];

/// Parameters every model constructor accepts.
pub fn model_common(f: FuncSpec) -> FuncSpec {
    f.def("dtype", enm(DTYPES), "f32", "weight and activation dtype")
        .def(
            "device",
            Ty::Device,
            "auto",
            "where to run: auto (CUDA if present), cpu, cuda or \"cuda:N\"",
        )
        .def(
            "enable_thinking",
            Ty::Bool,
            "false",
            "chat.enable_thinking: let Qwen3's template think (paper: off)",
        )
}

pub fn metric_params(f: FuncSpec) -> FuncSpec {
    f.def(
        "uuid_match",
        enm(&["exact_substring", "case_insensitive"]),
        "exact_substring",
        "metric.uuid_match: how UUID accuracy matches the answer",
    )
    .def(
        "rouge_target",
        enm(&["uuid", "needle"]),
        "uuid",
        "metric.rougeL_target: reference text of ROUGE-L",
    )
    .def(
        "rouge_field",
        enm(&["f", "r"]),
        "f",
        "metric.rougeL_field: F-measure or recall",
    )
    .def(
        "rouge_stem",
        Ty::Bool,
        "false",
        "metric.rougeL_stem: Porter stemming in ROUGE-L",
    )
}

pub const METRICS: &[&str] = &["uuid_accuracy", "rouge_l", "em", "f1"];

// ---------------------------------------------------------------------------------------------
// The table

fn build() -> Registry {
    // Constructors come from the op registry: each op's file declares its parameters.
    let ctors = crate::ops::REGISTRY.iter().map(|op| CtorSpec { kind: op.kind, func: (op.spec)() }).collect();

    // ---- value functions
    let funcs = vec![
        (
            Family::Capture,
            FuncSpec::new("retrieval", "Per-step retrieval score of every head: Eq. 1 (copy_paste, binary) or Eq. 2 (reasoning, attention mass).")
                .pos_def("method", enm(&["copy_paste", "reasoning"]), "copy_paste", "Eq. 1 or Eq. 2")
                .def("match", enm(&["id", "text_norm"]), "id", "retrieval.match: token comparison in Eq. 1")
                .def("argmax_on", enm(&["fp32_logits", "probs_model_dtype"]), "fp32_logits", "retrieval.argmax_on")
                .def("keys", enm(&["all", "prompt_only"]), "all", "retrieval.keys: keys the argmax ranges over")
                .def("sink", int_min(0), "4", "reasoning.sink: first positions left out of Eq. 2's denominator")
                .def("local", int_min(0), "32", "reasoning.local: last positions left out of Eq. 2's denominator")
                .def("denominator", enm(&["all_keys", "context_only"]), "all_keys", "reasoning.denominator")
                .def("threshold", float_min(0.0), "0.5", "reasoning.threshold: a step's reasoning heads are those with S > threshold (docs/FIDELITY.md)")
                .opt("top", int_min(1), "reasoning.top: a step's reasoning heads are its `top` heads by S (S > 0), instead of the threshold"),
        ),
        (
            Family::Capture,
            FuncSpec::new("hidden", "Hidden state of the step's last token at one layer (`final` = after the final norm).")
                .pos_def("layer", Ty::OneOf(vec![enm(&["final"]), int_min(0)]), "final", "`final` or a layer index")
                .def("norm", enm(&["post_norm", "pre_norm"]), "post_norm", "probe.hidden: for `final`, after or before the final norm"),
        ),
        (
            Family::Capture,
            FuncSpec::new("span_mass", "Attention mass of every head's query row over named token spans.")
                .pos_def("spans", list(enm(&["needle", "haystack", "question", "prompt", "generated"])), "[needle]", "which spans"),
        ),
        (Family::Capture, FuncSpec::new("top_k", "The k key positions with the largest attention, per head.").pos_def("k", int_range(1, 256), "5", "how many positions")),
        (
            Family::Intervention,
            FuncSpec::new("mask_heads", "Mask attention heads in the forward pass (reference §8.4; Wu et al.: zero query → uniform attention).")
                .pos("heads", decl(Kind::Heads), "which heads (a head set, or per-step dynamic heads)")
                .def("mode", enm(&["uniform_attn", "zero_output", "mean_output"]), "uniform_attn", "mask.mode: how a head is masked")
                .def("scope", enm(&["step_query", "all_positions"]), "step_query", "mask.scope: positions masked")
                .def("kv", enm(&["masked", "clean"]), "masked", "mask.kv: KV kept for the fed token")
                .def("prefill", Ty::Bool, "false", "mask.prefill: also mask during prefill (fixed sets)"),
        ),
    ];

    let experiment = FuncSpec::new("experiment", "The experiment header.")
        .def(
            "seed",
            int_min(0),
            "0",
            "seed every random choice derives from",
        )
        .def(
            "profile",
            text(),
            "\"default\"",
            "name of the run's profile: set to NAME by `--profile NAME`",
        )
        .opt("description", text(), "free text");

    Registry {
        ctors,
        funcs,
        experiment,
    }
}
