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
            Ty::Path(PathKind::Dir) => "a path to a folder (a string)".into(),
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
    fn new(name: &'static str, doc: &'static str) -> Self {
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
    fn pos(mut self, name: &'static str, ty: Ty, doc: &'static str) -> Self {
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
    fn pos_def(
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
    fn pos_opt(mut self, name: &'static str, ty: Ty, doc: &'static str) -> Self {
        assert_eq!(self.positional, self.params.len(), "positional parameters come first");
        self.params.push(ParamSpec { name, ty, default: Default::Optional, doc });
        self.positional += 1;
        self
    }

    /// A required named parameter.
    fn req(mut self, name: &'static str, ty: Ty, doc: &'static str) -> Self {
        self.params.push(ParamSpec {
            name,
            ty,
            default: Default::Required,
            doc,
        });
        self
    }

    /// An optional named parameter without a default.
    fn opt(mut self, name: &'static str, ty: Ty, doc: &'static str) -> Self {
        self.params.push(ParamSpec {
            name,
            ty,
            default: Default::Optional,
            doc,
        });
        self
    }

    /// A named parameter with a default (an `.rhx` expression).
    fn def(mut self, name: &'static str, ty: Ty, default: &'static str, doc: &'static str) -> Self {
        self.params.push(ParamSpec {
            name,
            ty,
            default: Default::Value(default),
            doc,
        });
        self
    }

    /// `seed`, defaulting to the experiment's seed.
    fn seed(mut self, doc: &'static str) -> Self {
        self.params.push(ParamSpec {
            name: "seed",
            ty: int_min(0),
            default: Default::ExperimentSeed,
            doc,
        });
        self
    }

    fn exactly_one(mut self, names: &'static [&'static str]) -> Self {
        self.constraints.push(Constraint::ExactlyOne(names));
        self
    }

    fn requires(mut self, param: &'static str, value: &'static str, then: &'static str) -> Self {
        self.constraints
            .push(Constraint::Requires { param, value, then });
        self
    }

    /// Adds the same parameters to several constructors.
    fn with(self, f: impl Fn(Self) -> Self) -> Self {
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

fn int_min(min: i64) -> Ty {
    Ty::Int {
        min: Some(min),
        max: None,
    }
}
fn int_range(min: i64, max: i64) -> Ty {
    Ty::Int {
        min: Some(min),
        max: Some(max),
    }
}
fn float_range(min: f64, max: f64) -> Ty {
    Ty::Float {
        min: Some(min),
        max: Some(max),
    }
}
fn float_min(min: f64) -> Ty {
    Ty::Float {
        min: Some(min),
        max: None,
    }
}
fn enm(values: &'static [&'static str]) -> Ty {
    Ty::Enum(values)
}
fn list(t: Ty) -> Ty {
    Ty::List(Box::new(t))
}
fn text() -> Ty {
    Ty::Str {
        placeholders: None,
        required: &[],
    }
}
fn template(allowed: &'static [&'static str], required: &'static [&'static str]) -> Ty {
    Ty::Str {
        placeholders: Some(allowed),
        required,
    }
}
fn decl(k: Kind) -> Ty {
    Ty::Decl(k)
}

/// Built-in haystacks (`builtin.<name>`), each bundled by `data::niah::Haystack` (add a name
/// here when the data module bundles another text, e.g. Paul Graham's essays, the paper's).
pub const BUILTIN_HAYSTACKS: &[&str] = &["alice"];
/// Paper results that a report can put beside ours (`paper.<name>`).
pub const PAPER_REFS: &[&str] = &[
    "table1", "table2", "table3", "table4", "figure2", "figure3", "figure4",
];
pub const DTYPES: &[&str] = &["f32", "bf16", "f16"];
pub const ARCHS: &[&str] = &["llama", "qwen2", "qwen3", "phi3"];

/// Parameters every model constructor accepts.
fn model_common(f: FuncSpec) -> FuncSpec {
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

fn metric_params(f: FuncSpec) -> FuncSpec {
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

const METRICS: &[&str] = &["uuid_accuracy", "rouge_l"];

// ---------------------------------------------------------------------------------------------
// The table

fn build() -> Registry {
    use Kind::*;
    let mut ctors = vec![];
    let mut add = |kind: Kind, f: FuncSpec| ctors.push(CtorSpec { kind, func: f });

    // ---- model
    add(
        Model,
        FuncSpec::new("gguf", "A GGUF file (path relative to this file) or a known model name such as `smollm2-135m-instruct`; dequantised on load.")
            .pos("source", Ty::ModelSource, "model name or .gguf path")
            .with(model_common),
    );
    add(
        Model,
        FuncSpec::new("hf", "A Hugging Face model folder (config.json, safetensors, tokenizer.json), relative to this file.")
            .pos("path", Ty::Path(PathKind::HfModelDir), "model folder")
            .with(model_common),
    );
    add(
        Model,
        FuncSpec::new(
            "random",
            "A randomly initialised model of the given shape (benchmarks, tests); no files needed.",
        )
        .req("layers", int_range(1, 1024), "number of layers")
        .req("heads", int_range(1, 1024), "query heads per layer")
        .opt(
            "kv_heads",
            int_range(1, 1024),
            "key/value heads per layer (default: heads)",
        )
        .req("hidden", int_range(1, 65536), "hidden size")
        .def("intermediate", int_range(1, 262144), "1024", "MLP size")
        .def("vocab", int_range(2, 1_048_576), "256", "vocabulary size")
        .def("arch", enm(ARCHS), "llama", "architecture family")
        .seed("initialisation seed")
        .with(model_common),
    );

    // ---- dataset
    add(
        Dataset,
        FuncSpec::new("niah", "Needle-in-a-haystack prompts (paper A.1, reference §8.1): a needle sentence with a fresh UUID inserted into a haystack at each (length, depth) cell.")
            .def("haystack", Ty::OneOf(vec![Ty::Builtin { ns: "builtin", names: BUILTIN_HAYSTACKS }, Ty::Path(PathKind::Dir)]), "builtin.alice", "niah.haystack: a built-in text or a folder of .txt files (sorted, concatenated)")
            .req("lengths", list(int_range(1, 1_000_000)), "niah.lengths: context lengths in tokens")
            .def("depths", list(float_range(0.0, 1.0)), "linspace(0.0, 1.0, 11)", "niah.depths: needle depths (0 = start, 1 = end)")
            .def("depth_mode", enm(&["grid", "uniform_random"]), "grid", "niah.depth_mode: the depths grid, or one random depth per run")
            .def("runs", int_range(1, 100_000), "5", "runs per (length, depth) cell, each with a fresh UUID (Fig. 2: 5, Fig. 3: 20)")
            .def("needle", template(&["uuid"], &["uuid"]), "\"The magic word is {uuid}.\"", "needle sentence; {uuid} is replaced by the run's UUID")
            .def("question", template(&[], &[]), "\"What is the magic word?\"", "question asked after the context")
            .def("system", text(), "\"You are a helpful AI bot that answers questions for a user. Keep your response short and direct.\"", "system prompt (A.1)")
            .def(
                "user_template",
                template(&["haystack", "question"], &["haystack", "question"]),
                "\"Context:\\n{haystack}\\n\\nQuestion:\\n{question}\\n\\nInstruction:\\nDon't give information outside the document or repeat your findings.\"",
                "niah.user_template: the user turn",
            )
            .def("needle_span", enm(&["sentence", "uuid"]), "sentence", "niah.needle_span: tokens that count as the needle in Eq. 1")
            .def("length_mode", enm(&["kamradt", "haystack_exact", "prompt_total"]), "kamradt", "niah.length_mode: what a length measures")
            .def("sentence_end", enm(&["period_ids", "decoded_endswith_period"]), "decoded_endswith_period", "niah.sentence_end: how the insertion point backs up to a sentence end")
            .def("span_locator", enm(&["char_offsets", "set_overlap"]), "char_offsets", "niah.span_locator: how the needle's tokens are found")
            .def("reencode_quirk", Ty::Bool, "false", "niah.reencode_quirk: reproduce Wu et al.'s BOS-before-needle re-encoding")
            .seed("seed of UUIDs and random depths"),
    );
    add(
        Dataset,
        FuncSpec::new(
            "jsonl",
            "Prompts from a JSONL file, one `{\"id\", \"messages\"}` object per line.",
        )
        .pos("path", Ty::Path(PathKind::File), "the .jsonl file")
        .opt("limit", int_min(1), "use only the first N rows"),
    );
    add(
        Dataset,
        FuncSpec::new(
            "hotpotqa",
            "HotpotQA distractor questions (Section 4) from a local JSON file.",
        )
        .pos("path", Ty::Path(PathKind::File), "the HotpotQA json file")
        .def(
            "n",
            int_min(1),
            "500",
            "hotpot.n: number of questions (first N)",
        )
        .def(
            "split",
            enm(&["dev_distractor"]),
            "dev_distractor",
            "hotpot.split",
        )
        .def(
            "context_format",
            enm(&["title_paragraph", "dragin_numbered"]),
            "title_paragraph",
            "hotpot.context_format",
        ),
    );

    // ---- trace
    add(
        Trace,
        FuncSpec::new("generate", "Greedy generation with a KV cache; at every step records the captures and applies the interventions.")
            .pos("model", decl(Model), "the model to run")
            .pos("dataset", decl(Dataset), "the prompts")
            .def("max_new_tokens", int_range(1, 32768), "50", "gen.max_new_tokens")
            .def("capture", list(Ty::Func(Family::Capture)), "[retrieval(copy_paste)]", "what to record per step, layer and head")
            .def("intervene", list(Ty::Func(Family::Intervention)), "[]", "what to change in the forward pass")
            .opt("stop", list(int_min(0)), "gen.stop: extra stop token ids (EOS/eot always stop)")
            .opt("batch_size", int_range(1, 4096), "prompts per batch (default: as many as fit in free GPU memory on CUDA, 1 on the CPU; batched results equal one-by-one results in f32)")
            .seed("seed of any sampling inside interventions"),
    );

    // ---- heads
    add(
        Heads,
        FuncSpec::new("static_heads", "Static retrieval heads (Wu et al.): heads ranked by their retrieval score aggregated over a trace (reference §8.3).")
            .pos("trace", decl(Trace), "a trace that captured retrieval(copy_paste)")
            .def("top", int_min(1), "20", "static.top: how many heads (Sec. 3: 20)")
            .def("method", enm(&["wu_mean", "step_frequency", "wu_data"]), "wu_mean", "static.method")
            .def("min_rouge1_recall", float_range(0.0, 1.0), "0.5", "static.min_rouge1_recall: Wu's success filter")
            .def("rouge1_stem", Ty::Bool, "true", "static.rouge1_stem: NLTK Porter stemming in the filter's ROUGE-1 (Wu: use_stemmer=True)"),
    );
    add(
        Heads,
        FuncSpec::new("dynamic", "Dynamic retrieval heads H_t: the heads with Eq. 1 score 1 at the current step, found online in a clean first pass (reference §8.4–8.5).")
            .pos("trace", decl(Trace), "trace whose retrieval capture settings define H_t")
            .opt("k", int_min(0), "mask only k heads of H_t per step (all of H_t if fewer; default: all)")
            .def("order", enm(&["attn_weight", "static_rank", "layer_major", "random"]), "attn_weight", "progressive.order: which k heads")
            .def("post_token", enm(&["masked", "clean"]), "masked", "progressive.post_token: token used for H'_t")
            .def("source", enm(&["online", "trace"]), "online", "progressive.source: H_t from each step's clean pass (two passes), or read from the unablated `trace` at the same step (one pass, cheaper; drifts once the ablated text departs from it)")
            .opt("static", decl(Heads), "static ranking for order: static_rank")
            .requires("order", "static_rank", "static")
            .seed("seed for order: random"),
    );
    add(
        Heads,
        FuncSpec::new("top", "The first n heads of a ranked head set; with `matched: <trace>`, as many as that dynamic-ablation trace masked per step on average (the static baseline of Fig. 2).")
            .pos("heads", decl(Heads), "ranked heads")
            .pos_opt("n", int_min(1), "how many")
            .opt("matched", decl(Trace), "take as many heads as this trace has per step on average: the heads a dynamic-ablation trace masked, or the Eq. 1 heads of any other trace")
            .def("match_count", enm(&["global_mean", "sample_mean", "per_step"]), "global_mean", "ablation.match_count: the average over all steps, or per sample")
            .exactly_one(&["n", "matched"]),
    );
    add(
        Heads,
        FuncSpec::new(
            "random",
            "Uniformly drawn heads of a model (the random baseline of Fig. 2).",
        )
        .pos("model", decl(Model), "whose heads")
        .opt("count", int_min(1), "how many heads")
        .opt(
            "matched",
            decl(Trace),
            "draw as many heads as this trace has per step on average: the heads a dynamic-ablation trace masked, or the Eq. 1 heads of any other trace",
        )
        .exactly_one(&["count", "matched"])
        .def(
            "match_count",
            enm(&["global_mean", "sample_mean", "per_step"]),
            "global_mean",
            "ablation.match_count",
        )
        .def(
            "redraw",
            enm(&["per_sample", "per_step", "per_cell"]),
            "per_sample",
            "ablation.random_redraw",
        )
        .opt("exclude", decl(Heads), "a ranked head set (e.g. the static heads) whose first `exclude_top` heads are never drawn")
        .def(
            "exclude_top",
            int_min(0),
            "20",
            "ablation.random_exclude_top: how many of `exclude`'s first heads are left out of the pool (Wu leaves out its top 100)",
        )
        .seed("seed of the draw"),
    );
    add(
        Heads,
        FuncSpec::new(
            "from_file",
            "Heads listed in a file (JSON list of [layer, head] or CSV layer,head).",
        )
        .pos("path", Ty::Path(PathKind::File), "the file")
        .def(
            "format",
            enm(&["auto", "json", "csv"]),
            "auto",
            "file format",
        ),
    );
    add(
        Heads,
        FuncSpec::new("explicit", "A fixed list of heads.").pos(
            "heads",
            list(Ty::HeadId),
            "heads as \"L<layer>H<head>\"",
        ),
    );

    // ---- table
    add(
        Table,
        FuncSpec::new("dynamism", "Table 1: Jaccard similarity with static heads, adjacent-step Jaccard and entropy of the per-step retrieval heads (reference §8.3).")
            .pos("trace", decl(Trace), "trace with retrieval(copy_paste)")
            .pos("static", decl(Heads), "the static heads (top-20)")
            .def("empty_static", enm(&["zero", "skip"]), "zero", "dynamism.empty: Jaccard with static when H_t is empty")
            .def("empty_adjacent", enm(&["skip", "one", "zero"]), "skip", "dynamism.empty: adjacent Jaccard when both sets are empty")
            .def("entropy_pool", enm(&["model", "sample_mean"]), "model", "dynamism.entropy_pool"),
    );
    add(
        Table,
        FuncSpec::new("scores", "Task metrics of traces (UUID accuracy, ROUGE-L), optionally split by length and depth.")
            .pos("traces", list(decl(Trace)), "traces to score")
            .def("metrics", list(enm(METRICS)), "[uuid_accuracy, rouge_l]", "which metrics")
            .def("by", list(enm(&["length", "depth"])), "[]", "group rows by")
            .with(metric_params),
    );
    add(
        Table,
        FuncSpec::new("compensated", "Compensated heads (3.3.2, A.2): mean over samples of max_t |E_t ∩ S20| for each progressive-ablation trace.")
            .pos("traces", list(decl(Trace)), "progressive-ablation traces")
            .pos("static", decl(Heads), "the static heads"),
    );
    add(
        Table,
        FuncSpec::new("probe", "Table 2: an MLP probe from the final hidden state to the step's retrieval heads (A.5), beside a logistic regression per head and the always-the-static-set predictor.")
            .pos("trace", decl(Trace), "trace with retrieval(copy_paste) and hidden(final)")
            .pos_opt("static", decl(Heads), "static heads for the always-the-static-set baseline")
            .opt("layers", list(int_min(1)), "hidden layer widths (default [2d, d, d]: the paper's [8192, 4096, 4096] scaled to the model's hidden size d)")
            .def("activation", enm(&["relu", "gelu"]), "relu", "probe.activation")
            .def("dropout", float_range(0.0, 0.99), "0.1", "dropout after each hidden layer")
            .def("split_by", enm(&["generation", "row"]), "generation", "probe.split_by: 70/20/10 over generations or over steps")
            .def("average", enm(&["micro", "macro"]), "micro", "probe.average")
            .def("epochs", int_range(1, 100_000), "100", "training epochs")
            .def("lr", float_min(0.0), "0.0003", "Adam learning rate")
            .def("batch_size", int_min(1), "128", "training batch size")
            .def("gamma_pos", int_range(0, 1), "1", "asl.gamma_pos")
            .def("checkpoint", enm(&["last", "best_val_loss"]), "last", "probe.checkpoint: weights after the last epoch or at the lowest validation loss")
            .def("device", Ty::Device, "auto", "where to train: auto (CUDA if present), cpu, cuda or \"cuda:N\"")
            .seed("seed of the split and initialisation"),
    );

    // ---- figure
    add(
        Figure,
        FuncSpec::new("heatmap", "Fig. 1: retrieval score of the most varying heads over the generation steps of one sample.")
            .pos("trace", decl(Trace), "trace with retrieval(...)")
            .def("most_varying", int_min(1), "10", "how many heads (those whose score changes most)")
            .def("sample", int_min(0), "0", "which generation of the trace"),
    );
    add(
        Figure,
        FuncSpec::new(
            "ablation_grid",
            "Fig. 2: metric over (length, depth) for each trace, side by side.",
        )
        .pos(
            "traces",
            list(decl(Trace)),
            "traces to compare (e.g. dynamic, static, random masking)",
        )
        .def("metric", enm(METRICS), "uuid_accuracy", "which metric")
        .with(metric_params),
    );
    add(
        Figure,
        FuncSpec::new(
            "progressive",
            "Fig. 3: metric and compensated heads against the number k of masked dynamic heads.",
        )
        .pos(
            "traces",
            list(decl(Trace)),
            "one trace per k (a sweep family)",
        )
        .pos("static", decl(Heads), "the static heads")
        .def("metric", enm(METRICS), "uuid_accuracy", "which metric")
        .with(metric_params),
    );
    add(
        Figure,
        FuncSpec::new("cca", "Fig. 4: canonical correlation between the hidden state at step n and retrieval scores at step n + k (reference §6).")
            .pos("trace", decl(Trace), "trace with retrieval(...) and hidden(final)")
            .def("offsets", list(int_min(0)), "0..=10", "temporal offsets k")
            .def("x_variance", float_range(0.0, 1.0), "0.95", "explained variance the hidden-state PCA keeps (paper: 95%)")
            .def("y_variance", float_range(0.0, 1.0), "0.99", "explained variance the score PCA keeps (paper: 99%)")
            .def("components", int_min(1), "50", "canonical components kept (paper: 50)")
            .def("solver", enm(&["svd_exact", "nipals_sklearn"]), "svd_exact", "cca.solver")
            .def("eval", list(enm(&["in_sample", "held_out"])), "[in_sample, held_out]", "cca.eval")
            .def("held_out_fraction", float_range(0.0, 0.9), "0.2", "share of generations held out")
            .def("topk_mode", enm(&["largest_k", "first_k"]), "largest_k", "cca.topk_mode")
            .def("pca_fit", enm(&["per_offset", "once"]), "per_offset", "cca.pca_fit")
            .seed("seed of the held-out split"),
    );

    // ---- report
    add(
        Report,
        FuncSpec::new(
            "template",
            "A minijinja template rendered to Markdown and self-contained HTML.",
        )
        .pos(
            "path",
            Ty::Path(PathKind::File),
            "the template, relative to this file",
        )
        .def(
            "tables",
            list(decl(Table)),
            "[]",
            "tables available to the template",
        )
        .def(
            "figures",
            list(decl(Figure)),
            "[]",
            "figures available to the template",
        )
        .def(
            "compare",
            list(Ty::Builtin {
                ns: "paper",
                names: PAPER_REFS,
            }),
            "[]",
            "paper results to show beside ours",
        )
        .opt("title", text(), "document title")
        .def(
            "formats",
            list(enm(&["md", "html"])),
            "[md, html]",
            "outputs",
        ),
    );

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
                .def("denominator", enm(&["all_keys", "context_only"]), "all_keys", "reasoning.denominator"),
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
                .pos("heads", decl(Heads), "which heads (a head set, or per-step dynamic heads)")
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
