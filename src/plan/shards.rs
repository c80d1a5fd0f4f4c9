//! Shards of an experiment's traces for a cluster array (`rhx slurm`), balanced by estimated
//! cost rather than by count: a trace of 500 long prompts and one of 6 short ones are not the
//! same amount of work.
//!
//! A trace's cost is Σ over its prompts of prompt tokens × new tokens × passes (two for a
//! two-pass dynamic ablation and for `rag`, whose drafts are regenerated; one otherwise), the
//! prompts made by the dataset's op with the model's tokenizer (no weights are loaded). Traces
//! are dealt largest first to the least-loaded shard (LPT: within 4/3 of the best balance).
//! The assignment is written to a file that every array task reads (`rhx run --shard-plan`), so
//! all tasks agree whatever host they run on; traces are named by node, since their keys hold
//! the device, which a login node may resolve differently from a compute node.
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::{Plan, Step};
use crate::cache::Cache;
use crate::engine::loader;
use crate::engine::tokenizer::Tokenizer;
use crate::lang::{Kind, Node, Value};
use crate::ops::args::{call_arg, calls, ref_name};

pub const SHARD_PLAN_FORMAT: &str = "rhx-shard-plan/1";

/// One trace's estimate and its shard.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TraceShare {
    pub node: String,
    /// The key at planning time (informative: a compute node may resolve another device).
    pub key: String,
    pub shard: usize,
    pub cached: bool,
    pub prompts: usize,
    pub prompt_tokens: u64,
    pub new_tokens: u64,
    pub passes: u64,
    /// prompt tokens × new tokens × passes, summed over prompts; 0 when cached.
    pub cost: f64,
}

/// Which shard computes which trace; written by `rhx slurm`, read by every task.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ShardPlan {
    pub format: String,
    pub experiment: String,
    pub tasks: usize,
    pub traces: Vec<TraceShare>,
}

impl ShardPlan {
    /// Estimated cost per shard.
    pub fn loads(&self) -> Vec<f64> {
        let mut loads = vec![0.0; self.tasks];
        for t in &self.traces {
            loads[t.shard] += t.cost;
        }
        loads
    }

    pub fn shard_of(&self, node: &str) -> Option<usize> {
        self.traces.iter().find(|t| t.node == node).map(|t| t.shard)
    }

    pub fn read(path: &Path) -> Result<ShardPlan, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let plan: ShardPlan = serde_json::from_str(&text).map_err(|e| format!("{}: not a shard plan written by `rhx slurm` ({e})", path.display()))?;
        if plan.format != SHARD_PLAN_FORMAT {
            return Err(format!("{}: format {:?}, this rhx reads {SHARD_PLAN_FORMAT:?}", path.display(), plan.format));
        }
        if let Some(t) = plan.traces.iter().find(|t| t.shard >= plan.tasks) {
            return Err(format!("{}: trace `{}` is given shard {} of {}", path.display(), t.node, t.shard, plan.tasks));
        }
        Ok(plan)
    }
}

/// Estimates every trace of `plan` and deals the uncached ones over `tasks` shards (cached
/// ones, cost 0, round-robin, so that every trace has a shard).
pub fn shard_plan(experiment: &str, plan: &Plan, cache: &Cache, tasks: usize) -> Result<ShardPlan, String> {
    let tasks = tasks.max(1);
    let mut tokenizers: HashMap<String, Tokenizer> = HashMap::new();
    let mut traces = Vec::new();
    for step in plan.steps.iter().filter(|s| s.node.kind == Kind::Trace) {
        let cached = cache.contains(&step.key);
        let mut share = estimate(plan, step, &mut tokenizers).map_err(|e| format!("{}: {e}", step.node.name))?;
        share.cached = cached;
        if cached {
            share.cost = 0.0;
        }
        traces.push(share);
    }
    // LPT over the uncached traces: largest first, to the least-loaded shard (ties: lowest).
    let mut order: Vec<usize> = (0..traces.len()).filter(|&i| !traces[i].cached).collect();
    order.sort_by(|&a, &b| traces[b].cost.total_cmp(&traces[a].cost).then(a.cmp(&b)));
    let mut loads = vec![0.0f64; tasks];
    for i in order {
        let s = (0..tasks).min_by(|&a, &b| loads[a].total_cmp(&loads[b]).then(a.cmp(&b))).unwrap_or(0);
        loads[s] += traces[i].cost;
        traces[i].shard = s;
    }
    for (j, t) in traces.iter_mut().filter(|t| t.cached).enumerate() {
        t.shard = j % tasks;
    }
    Ok(ShardPlan { format: SHARD_PLAN_FORMAT.into(), experiment: experiment.into(), tasks, traces })
}

fn node_of<'a>(plan: &'a Plan, name: &str) -> Result<&'a Node, String> {
    plan.step(name).map(|s| &s.node).ok_or_else(|| format!("`{name}` is not in the plan"))
}

fn ref_arg<'a>(n: &'a Node, param: &str) -> Option<&'a str> {
    n.arg(param).and_then(ref_name)
}

fn int_arg(n: &Node, param: &str) -> Option<u64> {
    n.arg(param).and_then(Value::as_int).map(|x| x.max(0) as u64)
}

/// One trace's prompts, tokens and passes.
fn estimate(plan: &Plan, step: &Step, tokenizers: &mut HashMap<String, Tokenizer>) -> Result<TraceShare, String> {
    let n = &step.node;
    let model_name = ref_arg(n, "model").ok_or("no model argument")?;
    let data_name = ref_arg(n, "dataset").ok_or("no dataset argument")?;
    let model_node = node_of(plan, model_name)?;
    let data_node = node_of(plan, data_name)?;
    if !tokenizers.contains_key(model_name) {
        let spec = crate::ops::model::model_spec(model_node)?;
        let path = loader::resolve(&spec).map_err(|e| e.to_string())?;
        let tok = if path.is_file() { Tokenizer::from_gguf_path(&path) } else { Tokenizer::from_hf_dir(&path) }.map_err(|e| format!("{}: {e}", path.display()))?;
        tokenizers.insert(model_name.to_string(), tok);
    }
    let prompts_of = match crate::ops::find(data_node.kind, &data_node.constructor).map(|op| op.exec) {
        Some(crate::ops::Exec::Dataset(f)) => f,
        _ => return Err(format!("dataset `{}` cannot feed a trace", data_node.constructor)),
    };
    let thinking = matches!(model_node.arg("enable_thinking"), Some(Value::Bool(true)));
    let extra: BTreeMap<String, Json> = [("enable_thinking".to_string(), json!(thinking))].into();
    let prompts = prompts_of(data_node, &tokenizers[model_name], &extra)?;
    let (new_tokens, passes) = match n.constructor.as_str() {
        "rag" => (int_arg(n, "max_tokens").unwrap_or(100), 2),
        _ => {
            // A two-pass dynamic ablation masks a `dynamic` head set.
            let two_pass = calls(n, "intervene").iter().any(|(_, args)| call_arg(args, "heads").and_then(ref_name).is_some_and(|h| node_of(plan, h).is_ok_and(|h| h.constructor == "dynamic")));
            (int_arg(n, "max_new_tokens").unwrap_or(50), if two_pass { 2 } else { 1 })
        }
    };
    let prompt_tokens: u64 = prompts.iter().map(|p| p.prep.ids.len() as u64).sum();
    Ok(TraceShare {
        node: n.name.clone(),
        key: step.key.as_str().to_string(),
        shard: 0,
        cached: false,
        prompts: prompts.len(),
        prompt_tokens,
        new_tokens,
        passes,
        cost: (prompt_tokens * new_tokens * passes) as f64,
    })
}
