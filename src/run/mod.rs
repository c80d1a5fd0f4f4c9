//! Executor: runs a [`Plan`] node by node, reading inputs from and writing results to the
//! content-addressed cache. A node whose key is cached is not recomputed; a node being computed
//! by another process (same cache) is waited for (per-key lock), so shards of a Slurm array can
//! share one cache directory.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use crate::cache::{Artifact, ArtifactMeta, Cache, CacheError};
use crate::engine::loader::LoadedModel;
use crate::engine::options::EngineIdentity;
use crate::lang::diagnostics::Location;
use crate::lang::{render_diagnostics, Code, Diagnostic, Program};
use crate::plan::{self, Plan, PlanError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A node failed; `at` is its declaration's `file:line:col` when the program knows it.
    #[error("{}{node}: {message}", .at.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
    Node { node: String, message: String, at: Option<Location> },
    /// `rhx check` / `rhx run` refuse a constructor or option that is declared but not
    /// implemented; the diagnostic points at it in the `.rhx` file.
    #[error("{}", render_diagnostics(std::slice::from_ref(.0)).trim_end())]
    NotImplemented(Box<Diagnostic>),
}

impl RunError {
    pub(crate) fn node(node: &str, message: impl std::fmt::Display) -> Self {
        RunError::Node { node: node.to_string(), message: message.to_string(), at: None }
    }

    /// An error of `node`, located at its declaration in `program`'s sources.
    pub(crate) fn at(program: &Program, node: &crate::lang::Node, message: impl std::fmt::Display) -> Self {
        let mut d = Diagnostic::new(Code::Execution, node.span, message.to_string());
        d.attach(&program.sources);
        RunError::Node { node: node.name.clone(), message: message.to_string(), at: d.location }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run only this shard `(i, n)` of the expensive nodes.
    pub shard: Option<(usize, usize)>,
    /// Which shard computes which trace (`rhx slurm`'s cost-balanced plan); `None`: round-robin.
    pub shard_plan: Option<plan::shards::ShardPlan>,
    /// Where reports are written (`<dir>/<report name>/`).
    pub reports_dir: PathBuf,
    /// Recompute even when cached (used by `rhx reproduce`).
    pub recompute: bool,
    pub quiet: bool,
    /// Compute traces (the expensive nodes); `rhx report` turns this off and assembles the
    /// reports from cached traces only.
    pub compute_traces: bool,
    /// CPU threads for libtorch.
    pub threads: Option<i32>,
    /// The engine the traces are computed and keyed with; `None`: this binary's fingerprint and
    /// this process's `RHX_*` options (tests set another to act as another engine build).
    pub engine: Option<EngineIdentity>,
}

/// What happened to each node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Cached,
    Computed,
    /// Another shard's work, or inputs not available in this shard.
    Skipped,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub outcomes: Vec<(String, String, Outcome, f64)>,
    pub reports: Vec<PathBuf>,
    pub wall_time_s: f64,
}

/// State shared by the ops of one run.
pub struct Ctx<'a> {
    pub program: &'a Program,
    pub plan: &'a Plan,
    pub cache: &'a Cache,
    pub opts: &'a RunOptions,
    pub models: HashMap<String, LoadedModel>,
    pub started: Instant,
    pub started_at: String,
    /// The engine identity the plan's trace keys hold; traces are generated with its options.
    pub engine: EngineIdentity,
}

/// Checks that every node's constructor and options are implemented (the op registry), before
/// anything runs; a refusal points at the parameter in the `.rhx` file.
pub fn check_supported(program: &Program) -> Result<(), RunError> {
    let refuse = |n: &crate::lang::Node| -> Result<(), RunError> {
        crate::ops::check_node(n).map_err(|r| {
            let span = n.arg_entry(&r.param).and_then(|a| a.span).unwrap_or(n.span);
            let mut d = Diagnostic::new(Code::NotImplemented, span, format!("{}: {}", n.name, r.message))
                .label("not implemented yet")
                .help("docs/LANGUAGE.md lists every constructor and option; choose one the executor runs");
            d.attach(&program.sources);
            RunError::NotImplemented(Box::new(d))
        })
    };
    fn walk(v: &crate::lang::Value, refuse: &dyn Fn(&crate::lang::Node) -> Result<(), RunError>) -> Result<(), RunError> {
        match v {
            crate::lang::Value::Inline(n) => {
                refuse(n)?;
                n.args.iter().filter_map(|a| a.value.as_ref()).try_for_each(|v| walk(v, refuse))
            }
            crate::lang::Value::List(items) => items.iter().try_for_each(|v| walk(v, refuse)),
            crate::lang::Value::Call { args, .. } => args.iter().filter_map(|a| a.value.as_ref()).try_for_each(|v| walk(v, refuse)),
            _ => Ok(()),
        }
    }
    for n in &program.nodes {
        refuse(n)?;
        n.args.iter().filter_map(|a| a.value.as_ref()).try_for_each(|v| walk(v, &refuse))?;
    }
    Ok(())
}

pub fn run(program: &Program, cache: &Cache, opts: &RunOptions) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    check_supported(program)?;
    if let Some(n) = opts.threads {
        tch::set_num_threads(n);
    }
    let engine = match &opts.engine {
        Some(e) => e.clone(),
        None => EngineIdentity::current().map_err(PlanError::from)?,
    };
    let plan = plan::plan_with(program, cache, &engine)?;
    if let (Some(sp), Some((_, n))) = (&opts.shard_plan, opts.shard) {
        if sp.tasks != n {
            return Err(RunError::node("--shard-plan", format!("the shard plan has {} tasks, --shard says {n}", sp.tasks)));
        }
        if let Some(s) = plan.steps.iter().find(|s| s.node.kind == crate::lang::Kind::Trace && sp.shard_of(&s.node.name).is_none()) {
            return Err(RunError::node(&s.node.name, "this trace is not in the shard plan: the experiment changed since `rhx slurm` wrote it; run `rhx slurm` again"));
        }
    }
    let mut ctx = Ctx {
        engine,
        program,
        plan: &plan,
        cache,
        opts,
        models: HashMap::new(),
        started,
        started_at: crate::cache::rfc3339_now(),
    };
    // A shard computes its own traces and, before them, whatever they read that is not cached
    // (a trace whose heads come from another shard's trace): under the key's lock, so a node
    // another task is computing is waited for, and one nobody has started is computed here —
    // once either way.
    let needed = needed_by_shard(&plan, opts);
    let mut artifacts: HashMap<String, Artifact> = HashMap::new();
    let mut outcomes = Vec::new();
    let mut reports = Vec::new();
    let total = plan.steps.len();
    for (i, step) in plan.steps.iter().enumerate() {
        let name = &step.node.name;
        let t0 = Instant::now();
        let have_inputs = step.inputs.iter().all(|r| artifacts.contains_key(r));
        if !opts.recompute {
            if let Some(a) = cache.get(&step.key)? {
                artifacts.insert(name.clone(), a);
                outcomes.push((name.clone(), step.key.short().to_string(), Outcome::Cached, 0.0));
                if step.node.kind == crate::lang::Kind::Report {
                    reports.push(crate::ops::report::template::publish_report(&ctx, step, &artifacts)?);
                }
                continue;
            }
        }
        let trace_off = !opts.compute_traces && step.node.kind == crate::lang::Kind::Trace;
        let mine = plan::in_shard(&plan, step, opts.shard, opts.shard_plan.as_ref()) || needed.contains(name.as_str());
        if !have_inputs || trace_off || !mine {
            outcomes.push((name.clone(), step.key.short().to_string(), Outcome::Skipped, 0.0));
            continue;
        }
        if !opts.quiet {
            eprintln!("[{}/{}] {} {} = {}(…)  key {}", i + 1, total, step.node.kind.name(), name, step.node.constructor, step.key.short());
        }
        let _lock = cache.lock(&step.key)?;
        // Another process may have computed it while we waited for the lock.
        let cached = if opts.recompute { None } else { cache.get(&step.key)? };
        let (artifact, outcome) = match cached {
            Some(a) => (a, Outcome::Cached),
            None => {
                let inputs: BTreeMap<String, &Artifact> = step.inputs.iter().map(|r| (r.clone(), artifacts.get(r).unwrap())).collect();
                let out = crate::ops::compute(&mut ctx, step, &inputs).map_err(|m| RunError::at(program, &step.node, m))?;
                let mut meta = ArtifactMeta::new(format!("{}/{}", step.node.kind.name(), step.node.constructor)).spec(step.spec.clone()).wall_time(t0.elapsed().as_secs_f64());
                for (r, a) in &inputs {
                    meta = meta.input(r.clone(), &a.manifest.key);
                }
                if opts.recompute {
                    cache.remove(&step.key)?;
                }
                let a = cache.put(&step.key, meta, |dir| -> Result<(), std::io::Error> {
                    for (file, bytes) in &out {
                        std::fs::write(dir.join(file), bytes)?;
                    }
                    Ok(())
                })?;
                (a, Outcome::Computed)
            }
        };
        artifacts.insert(name.clone(), artifact);
        if step.node.kind == crate::lang::Kind::Report {
            reports.push(crate::ops::report::template::publish_report(&ctx, step, &artifacts)?);
        }
        outcomes.push((name.clone(), step.key.short().to_string(), outcome, t0.elapsed().as_secs_f64()));
    }
    for w in cache.take_warnings() {
        eprintln!("warning: {w}");
    }
    Ok(RunSummary { outcomes, reports, wall_time_s: started.elapsed().as_secs_f64() })
}

/// The steps a shard's own traces read, transitively (empty without a shard).
fn needed_by_shard<'p>(plan: &'p Plan, opts: &RunOptions) -> std::collections::HashSet<&'p str> {
    let mut needed = std::collections::HashSet::new();
    if opts.shard.is_none() || !opts.compute_traces {
        return needed;
    }
    let mut stack: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| s.node.kind == crate::lang::Kind::Trace && plan::in_shard(plan, s, opts.shard, opts.shard_plan.as_ref()))
        .flat_map(|s| s.inputs.iter().map(String::as_str))
        .collect();
    while let Some(name) = stack.pop() {
        if let Some(step) = plan.step(name) {
            if needed.insert(step.node.name.as_str()) {
                stack.extend(step.inputs.iter().map(String::as_str));
            }
        }
    }
    needed
}
