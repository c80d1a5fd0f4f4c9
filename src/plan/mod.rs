//! Planner: a checked [`Program`] → an ordered list of steps, each with a content key.
//!
//! `key = sha256(kind/constructor, canonical spec (parameters; references replaced by the
//! referenced node's key), the keys of its inputs, the digests of every file it reads (model
//! weights, haystack texts, templates), the experiment seed, the key scheme's engine version)`;
//! a trace's spec also holds the engine's identity (`engine::options::EngineIdentity`: the hash
//! of the engine sources this binary was built from, every decoding and kernel option, the libtorch it runs on) and the
//! device it runs on, so a trace computed by other code, options or hardware is never reused.
//! So a rerun
//! recomputes exactly the nodes whose inputs changed, and `--set niah.runs=20` changes the
//! dataset's key and, through it, every node downstream — nothing else.
pub mod shards;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};

use crate::cache::{Cache, CacheError, Key, KeyBuilder};
use crate::engine::device::{self, DeviceRequest};
use crate::engine::loader;
use crate::engine::options::{EngineIdentity, OptionsError};
use crate::lang::{Kind, Node, Program, Value};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{node}: {message}")]
    Node { node: String, message: String },
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Engine(#[from] OptionsError),
}

/// One node of the plan.
#[derive(Debug, Clone)]
pub struct Step {
    pub node: Node,
    pub key: Key,
    /// Canonical spec (what the key hashes besides inputs and files).
    pub spec: Json,
    /// Names of the nodes whose artifacts this step reads.
    pub inputs: Vec<String>,
    /// Files the step reads: label → path.
    pub files: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub seed: u64,
}

impl Plan {
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.node.name == name)
    }
}

/// Files under a folder, sorted (for digests of haystack folders and model folders).
fn files_in(dir: &Path, ext: &[&str]) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_file() && (ext.is_empty() || p.extension().is_some_and(|e| ext.iter().any(|x| e == *x)))).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The value as canonical JSON; collects referenced nodes and files.
fn value_json(v: &Value, refs: &mut Vec<String>, files: &mut BTreeMap<String, PathBuf>, label: &str) -> Json {
    match v {
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::Bool(b) => json!(b),
        Value::Str(s) => json!(s),
        Value::Enum(s) => json!({ "enum": s }),
        Value::Device(s) => json!({ "device": s }),
        Value::Builtin { ns, name } => json!({ "builtin": format!("{ns}.{name}") }),
        Value::ModelName(s) => {
            if let Ok(p) = loader::resolve(s) {
                if p.is_file() {
                    files.insert(format!("{label}/{}", p.file_name().unwrap_or_default().to_string_lossy()), p);
                } else {
                    for f in files_in(&p, &["json", "safetensors", "gguf"]) {
                        files.insert(format!("{label}/{}", f.file_name().unwrap_or_default().to_string_lossy()), f);
                    }
                }
            }
            json!({ "model": s })
        }
        Value::Path { written, resolved } => {
            if resolved.is_dir() {
                for f in files_in(resolved, &[]) {
                    files.insert(format!("{label}/{}", f.file_name().unwrap_or_default().to_string_lossy()), f);
                }
            } else {
                files.insert(label.to_string(), resolved.clone());
            }
            // A Hub snapshot's commit, explicit in the key (its files' digests are there too).
            match crate::engine::hub::snapshot_commit(resolved) {
                Some(revision) => json!({ "path": written, "revision": revision }),
                None => json!({ "path": written }),
            }
        }
        Value::Head { layer, head, .. } => json!([layer, head]),
        Value::Ref { name, .. } => {
            refs.push(name.clone());
            json!({ "ref": name })
        }
        Value::Inline(n) => {
            refs.push(n.name.clone());
            json!({ "ref": n.name })
        }
        Value::Call { func, args, .. } => {
            let mut m = serde_json::Map::new();
            for a in args {
                if let Some(v) = &a.value {
                    m.insert(a.name.clone(), value_json(v, refs, files, &format!("{label}.{}", a.name)));
                }
            }
            json!({ "call": func, "args": m })
        }
        Value::List(items) => Json::Array(items.iter().enumerate().map(|(i, x)| value_json(x, refs, files, &format!("{label}[{i}]"))).collect()),
    }
}

/// What a model node runs on, as it enters the keys of the traces that use it: `cpu`, or
/// `cuda` with the GPU's name (kernel choices and chunk counts follow the GPU).
fn device_signature(model: &Node) -> Result<String, PlanError> {
    let req = model.arg("device").and_then(Value::as_str).unwrap_or("auto");
    let err = |message: String| PlanError::Node { node: model.name.clone(), message };
    let req: DeviceRequest = req.parse().map_err(|e: device::DeviceError| err(e.to_string()))?;
    Ok(match device::resolve(req).map_err(|e| err(e.to_string()))? {
        tch::Device::Cpu => "cpu".to_string(),
        dev => match crate::engine::cuda::device_info(dev) {
            Ok((_, _, name)) => format!("cuda {name}"),
            Err(_) => "cuda".to_string(),
        },
    })
}

/// Computes every node's key, in the program's dependency order, for this binary's engine and
/// this process's engine options.
pub fn plan(program: &Program, cache: &Cache) -> Result<Plan, PlanError> {
    plan_with(program, cache, &EngineIdentity::current()?)
}

/// [`plan`] for the given engine identity (tests plan as another engine build would).
pub fn plan_with(program: &Program, cache: &Cache, engine: &EngineIdentity) -> Result<Plan, PlanError> {
    let seed = program.experiment.seed;
    let mut keys: HashMap<String, Key> = HashMap::new();
    let mut steps = Vec::with_capacity(program.nodes.len());
    // Inline constructor calls (`mask_heads(top(static, 5))`) become steps of their own,
    // planned just before the declaration that contains them.
    let mut order: Vec<Node> = Vec::new();
    for node in &program.nodes {
        for a in &node.args {
            if let Some(v) = &a.value {
                collect_inline(v, &mut order);
            }
        }
        order.push(node.clone());
    }
    for node in &order {
        if keys.contains_key(&node.name) {
            continue;
        }
        let mut refs = Vec::new();
        let mut files = BTreeMap::new();
        let mut args = serde_json::Map::new();
        for a in &node.args {
            if let Some(v) = &a.value {
                args.insert(a.name.clone(), value_json(v, &mut refs, &mut files, &a.name));
            }
        }
        let mut spec = json!({ "kind": node.kind.name(), "constructor": node.constructor, "args": args });
        if node.constructor == "niah" {
            // The built-in haystack is part of the binary: hash it as data.
            spec["builtin_haystack_sha256"] = json!(Key::of_bytes(crate::data::niah::ALICE.as_bytes()).as_str());
        }
        if node.kind == Kind::Trace {
            let model = node.arg("model").and_then(|v| match v {
                Value::Ref { name, .. } => Some(name.as_str()),
                _ => None,
            });
            let model = model.and_then(|m| program.nodes.iter().find(|n| n.name == m));
            let device = match model {
                Some(m) => device_signature(m)?,
                None => String::new(),
            };
            spec["engine"] = json!({ "fingerprint": engine.fingerprint, "options": engine.options, "libtorch": engine.libtorch, "device": device });
        }
        // The op's code: the hashes of its file and of the files it uses (`ops::OpDef`), so a
        // change to an analysis recomputes exactly the nodes it makes.
        let op = crate::ops::find(node.kind, &node.constructor)
            .ok_or_else(|| PlanError::Node { node: node.name.clone(), message: format!("`{}` is not a {} constructor", node.constructor, node.kind.name()) })?;
        spec["op_source"] = json!(op.source_key());
        let mut kb = KeyBuilder::new(op.id()).spec(&spec).seed(seed);
        refs.sort();
        refs.dedup();
        for r in &refs {
            let k = keys.get(r).ok_or_else(|| PlanError::Node { node: node.name.clone(), message: format!("input `{r}` is planned after its user (checker order violated)") })?;
            kb = kb.input(r.clone(), k);
        }
        for (label, path) in &files {
            let d = cache.file_digest(path)?;
            kb = kb.file(label.clone(), &d);
        }
        let key = kb.build();
        keys.insert(node.name.clone(), key.clone());
        steps.push(Step { node: node.clone(), key, spec, inputs: refs, files });
    }
    Ok(Plan { steps, seed })
}

/// Inline nodes inside a value, innermost first.
fn collect_inline(v: &Value, out: &mut Vec<Node>) {
    match v {
        Value::Inline(n) => {
            for a in &n.args {
                if let Some(v) = &a.value {
                    collect_inline(v, out);
                }
            }
            out.push((**n).clone());
        }
        Value::List(items) => items.iter().for_each(|x| collect_inline(x, out)),
        Value::Call { args, .. } => args.iter().filter_map(|a| a.value.as_ref()).for_each(|x| collect_inline(x, out)),
        _ => {}
    }
}

/// Which steps a shard `i/n` computes: the expensive ones (traces) are dealt round-robin, or as
/// `shards` (written by `rhx slurm`, balanced by cost) says; the rest are computed by whichever
/// run finds all their inputs.
pub fn in_shard(plan: &Plan, step: &Step, shard: Option<(usize, usize)>, shards: Option<&shards::ShardPlan>) -> bool {
    let Some((i, n)) = shard else { return true };
    if step.node.kind != Kind::Trace {
        return true;
    }
    if let Some(s) = shards.and_then(|p| p.shard_of(&step.node.name)) {
        return s == i;
    }
    let idx = plan.steps.iter().filter(|s| s.node.kind == Kind::Trace).position(|s| s.node.name == step.node.name).unwrap_or(0);
    idx % n == i
}
