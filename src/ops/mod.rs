//! The ops: one file per constructor of the language, grouped by the kind of what it makes
//! (`model/`, `dataset/`, `trace/`, `heads/`, `table/`, `figure/`, `report/`), as ruff keeps one
//! rule per file. Each file holds one [`OpDef`]: the constructor's parameters (type, range,
//! default, doc), the options it declares but does not implement yet, the source files its
//! results depend on, and how it executes. [`REGISTRY`] lists them; the schema
//! (`lang::schema`), `rhx check`, the planner's keys, the executor's dispatch and
//! `docs/LANGUAGE.md` all read it.
//!
//! Adding a constructor: write `src/ops/<kind>/<name>.rs` with its `OP`, add one line to
//! [`REGISTRY`] (and `pub mod <name>;` to the folder's `mod.rs`), add its analysis function and
//! a golden snapshot.
pub mod ablation;
pub mod args;
pub mod dataset;
pub mod figure;
pub mod heads;
pub mod hidden;
pub mod inputs;
pub mod model;
pub mod report;
pub mod table;
pub mod trace;

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::cache::Artifact;
use crate::data::prompts::PreparedPrompt;
use crate::engine::tokenizer::Tokenizer;
use crate::lang::schema::FuncSpec;
use crate::lang::{Kind, Node};
use crate::plan::Step;
use crate::run::Ctx;

include!(concat!(env!("OUT_DIR"), "/source_hashes.rs"));

/// The files of an artifact: name → bytes.
pub type Files = Vec<(String, Vec<u8>)>;
/// A step's input artifacts by node name.
pub type Inputs<'a> = BTreeMap<String, &'a Artifact>;

/// One prompt of a dataset, tokenised for a model, with what its generation is scored against.
pub struct SamplePrompt {
    pub prep: PreparedPrompt,
    pub answer: Option<String>,
    /// Cell of the dataset's grid (`length`, `depth`, `run`, ...), copied into the trace.
    pub meta: Json,
}

/// Makes a dataset's prompts for a model's tokenizer; `extra` holds chat-template variables.
pub type PromptsFn = fn(&Node, &Tokenizer, &BTreeMap<String, Json>) -> Result<Vec<SamplePrompt>, String>;

/// Refuses options an op declares but does not run yet.
pub type CheckFn = fn(&Node) -> Result<(), Refusal>;

/// How an op executes.
#[derive(Clone, Copy)]
pub enum Exec {
    /// Reads its inputs' artifacts and returns the files of its own.
    Artifact(fn(&mut Ctx, &Step, &Inputs) -> Result<Files, String>),
    /// A dataset: its artifact records its parameters; a trace asks it for prompts.
    Dataset(PromptsFn),
    /// Declared (so `.rhx` files can be written and checked against it) but not implemented:
    /// `rhx check` refuses it with this text.
    NotImplemented(&'static str),
}

/// A refusal of an option that the op declares but does not implement: the parameter (or the
/// `capture:` / `intervene:` entry) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub param: String,
    pub message: String,
}

impl Refusal {
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal { param: param.into(), message: message.into() }
    }
}

/// Refuses `param: value` unless the value is one of `implemented` (an option the schema declares
/// for fidelity with the paper's references, but the executor does not run yet).
pub fn only(n: &Node, param: &str, implemented: &[&str]) -> Result<(), Refusal> {
    match n.arg(param).and_then(crate::lang::Value::as_str) {
        Some(v) if !implemented.contains(&v) => Err(Refusal::new(param, format!("`{param}: {v}` is not implemented by the executor yet (implemented: {})", implemented.join(", ")))),
        _ => Ok(()),
    }
}

/// One constructor.
#[derive(Clone, Copy)]
pub struct OpDef {
    pub kind: Kind,
    pub name: &'static str,
    /// Its parameters, for the checker and the docs.
    pub spec: fn() -> FuncSpec,
    /// Its own file (`file!()`). `build.rs` follows its module paths to every file its results
    /// depend on ([`OpDef::sources`]); their hashes enter its cache key, so a change to any of
    /// them recomputes exactly what it makes.
    pub source: &'static str,
    /// Options it declares but does not implement yet, refused before anything runs.
    pub check: Option<CheckFn>,
    pub exec: Exec,
}

impl OpDef {
    /// `kind/name`, as artifacts and messages name the op.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind.name(), self.name)
    }

    /// sha256 over the files it depends on, as this binary was built from them.
    pub fn source_key(&self) -> &'static str {
        OP_SOURCES.iter().find(|(f, _, _)| *f == self.source).map_or("missing", |(_, h, _)| *h)
    }

    /// The files it depends on: its own, and every file reached from it through `crate::` and
    /// `super::` paths (not the language front end, planner, executor loop, cache or CLI).
    pub fn sources(&self) -> &'static [&'static str] {
        OP_SOURCES.iter().find(|(f, _, _)| *f == self.source).map_or(&[], |(_, _, d)| *d)
    }

    pub fn implemented(&self) -> bool {
        !matches!(self.exec, Exec::NotImplemented(_))
    }
}

/// The sha256 of a file under `src/` when this binary was built.
pub fn source_hash(path: &str) -> Option<&'static str> {
    SOURCE_HASHES.iter().find(|(p, _)| *p == path).map(|(_, h)| *h)
}

/// Every constructor of the language, one line each.
pub const REGISTRY: &[OpDef] = &[
    model::gguf::OP,
    model::hf::OP,
    model::random::OP,
    dataset::niah::OP,
    dataset::jsonl::OP,
    dataset::hotpotqa::OP,
    trace::generate::OP,
    trace::rag::OP,
    heads::static_heads::OP,
    heads::dynamic::OP,
    heads::top::OP,
    heads::predicted::OP,
    heads::random::OP,
    heads::from_file::OP,
    heads::explicit::OP,
    table::dynamism::OP,
    table::scores::OP,
    table::compensated::OP,
    table::probe::OP,
    table::regressor::OP,
    table::rag_table::OP,
    table::head_table::OP,
    figure::heatmap::OP,
    figure::ablation_grid::OP,
    figure::progressive::OP,
    figure::cca::OP,
    report::template::OP,
];

/// The op of `kind name(...)`.
pub fn find(kind: Kind, name: &str) -> Option<&'static OpDef> {
    REGISTRY.iter().find(|o| o.kind == kind && o.name == name)
}

/// Whether the executor can run `n`: its constructor is implemented and it asks for no option
/// that is declared but not implemented.
pub fn check_node(n: &Node) -> Result<(), Refusal> {
    let op = find(n.kind, &n.constructor).ok_or_else(|| Refusal::new("", format!("`{}` is not a {} constructor", n.constructor, n.kind.name())))?;
    if let Exec::NotImplemented(what) = op.exec {
        return Err(Refusal::new("", format!("`{}` ({what}) is declared but not implemented by the executor yet", n.constructor)));
    }
    match op.check {
        Some(check) => check(n),
        None => Ok(()),
    }
}

/// Runs the op of `step` on its inputs.
pub fn compute(ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let op = find(n.kind, &n.constructor).ok_or_else(|| format!("`{}` is not a {} constructor", n.constructor, n.kind.name()))?;
    match op.exec {
        Exec::Artifact(run) => run(ctx, step, inputs),
        Exec::Dataset(_) => dataset::dataset_info(n),
        Exec::NotImplemented(what) => Err(format!("`{}` ({what}) is not implemented by the executor yet", n.constructor)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_names_its_own_file_and_files_that_exist() {
        for op in REGISTRY {
            assert!(op.source.ends_with(&format!("/{}.rs", op.name)), "{}: {}", op.id(), op.source);
            assert!(op.source.contains(&format!("src/ops/{}/", op.kind.name())), "{}: {}", op.id(), op.source);
            assert_ne!(op.source_key(), "missing", "{}", op.id());
            assert!(op.sources().contains(&op.source), "{}", op.id());
            for f in op.sources() {
                // Source files are hashed with the build; files compiled in (`include_str!`) exist.
                let ok = if f.starts_with("src/") { source_hash(f).is_some() } else { std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(f).is_file() };
                assert!(ok, "{}: `{f}` is not a source file of this build", op.id());
            }
            assert_eq!((op.spec)().name, op.name, "{}", op.id());
        }
    }

    #[test]
    fn ops_are_unique() {
        let mut ids: Vec<String> = REGISTRY.iter().map(OpDef::id).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }

    #[test]
    fn an_ops_sources_follow_its_module_paths() {
        let deps = |name: &str| REGISTRY.iter().find(|o| o.name == name).unwrap().sources();
        // Its analysis module, the shared helpers it reads through, and what they use in turn.
        assert!(deps("dynamism").contains(&"src/analysis/dynamism.rs"), "{:?}", deps("dynamism"));
        assert!(deps("probe").contains(&"src/analysis/probe.rs") && deps("probe").contains(&"src/ops/hidden.rs"), "{:?}", deps("probe"));
        assert!(deps("static_heads").contains(&"src/analysis/metrics.rs"), "{:?}", deps("static_heads"));
        assert!(deps("top").contains(&"src/ops/heads/mod.rs"), "{:?}", deps("top"));
        assert!(deps("generate").contains(&"src/engine/generate/mod.rs") && deps("generate").contains(&"src/ops/trace/policy.rs"), "{:?}", deps("generate"));
        // A module's private child modules (`mod eager;`) are part of it.
        assert!(["eager", "static_loop", "prefill", "steps", "batch"].iter().all(|m| deps("generate").contains(&format!("src/engine/generate/{m}.rs").as_str())), "{:?}", deps("generate"));
        assert!(deps("generate").contains(&"src/engine/family/llama.rs"), "{:?}", deps("generate"));
        // A module's private submodules: code reachable only through it (`Tokenizer::from_hf_dir`).
        assert!(deps("generate").contains(&"src/engine/tokenizer/hf.rs") && deps("generate").contains(&"src/engine/gguf/dequant.rs"), "{:?}", deps("generate"));
        // Files compiled in: a template or the paper's values change a report, the haystack a dataset.
        assert!(deps("template").contains(&"reports/paper/retrieval-heads-are-dynamic.json") && deps("template").contains(&"reports/templates/macros.md.j2"), "{:?}", deps("template"));
        assert!(deps("niah").contains(&"experiments/haystack/alice_in_wonderland_pg11.txt"), "{:?}", deps("niah"));
        // Not the front end or the executor loop, and not another op's file.
        assert!(!deps("heatmap").iter().any(|f| f.starts_with("src/lang/") || f.starts_with("src/run/")), "{:?}", deps("heatmap"));
        assert!(!deps("heatmap").contains(&"src/ops/table/dynamism.rs"), "{:?}", deps("heatmap"));
    }
}
