//! Naming an artifact on the command line: a cache directory (`.rhx/cache/objects/ab/<key>/`),
//! a `trace.jsonl` written by `rhx trace --out`, or an experiment and one of its nodes
//! (`EXP.rhx NODE`), whose key the planner computes exactly as `rhx plan` and `rhx report` do.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::artifact::trace::TraceLine;
use crate::cache::{Artifact, Cache, Key};
use crate::cli::exp::ProgramArgs;

/// What an artifact argument names.
pub enum Named {
    /// A verified artifact of the cache, and the experiment node it was planned for (if named so).
    Cached { artifact: Box<Artifact>, node: Option<String> },
    /// A `rhx trace --out` file: its generations, as the trace reader types them.
    TraceFile { path: PathBuf, lines: Vec<TraceLine>, sha256: String },
}

/// Resolves `target` (and `node`, for an experiment): see the module doc. `cache_dir` is where
/// an experiment's artifacts are looked up.
pub fn resolve(target: &Path, node: Option<&str>, program: Option<&ProgramArgs>, cache_dir: &Path) -> Result<Named> {
    if target.extension().is_some_and(|e| e == "rhx") {
        let node = node.with_context(|| format!("name the node of {} after it, e.g. `{} base`", target.display(), target.display()))?;
        let args = program.context("an experiment needs its --set/--profile options")?;
        return from_experiment(args, node, cache_dir);
    }
    if let Some(n) = node {
        bail!("`{n}`: a node name follows an experiment file (.rhx), and {} is not one", target.display());
    }
    if target.is_dir() {
        return from_object_dir(target);
    }
    if target.is_file() {
        return from_trace_file(target);
    }
    bail!("{}: no such file or folder (give an artifact folder .rhx/cache/objects/ab/<key>, a trace.jsonl, or EXP.rhx NODE)", target.display())
}

fn from_experiment(args: &ProgramArgs, node: &str, cache_dir: &Path) -> Result<Named> {
    let program = crate::cli::exp::load(args, false)?;
    let cache = Cache::open(cache_dir).with_context(|| format!("cannot open cache {}", cache_dir.display()))?;
    let plan = crate::plan::plan(&program, &cache)?;
    let Some(step) = plan.step(node) else {
        let names: Vec<&str> = plan.steps.iter().map(|s| s.node.name.as_str()).collect();
        bail!("{} has no node `{node}` (its nodes: {})", args.file.display(), names.join(", "));
    };
    match cache.get(&step.key)? {
        Some(artifact) => Ok(Named::Cached { artifact: Box::new(artifact), node: Some(node.to_string()) }),
        None => bail!(
            "node `{node}` of {} is not in the cache {} (key {}); run it first: `rhx run {}`",
            args.file.display(),
            cache_dir.display(),
            step.key.short(),
            args.file.display()
        ),
    }
}

/// `…/objects/ab/<key>/`: the cache is three levels up; the artifact is read (and verified)
/// through it.
fn from_object_dir(dir: &Path) -> Result<Named> {
    let dir = dir.canonicalize().with_context(|| format!("cannot read {}", dir.display()))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let key = Key::parse(&name).map_err(|e| anyhow::anyhow!("{}: not an artifact folder of the cache (objects/ab/<key>): {e}", dir.display()))?;
    let root = dir.ancestors().nth(3).filter(|r| r.join("objects").is_dir() && dir.parent().and_then(Path::parent).is_some_and(|o| o.ends_with("objects")));
    let root = root.with_context(|| format!("{}: not inside a cache's objects/ab/ folder", dir.display()))?;
    let cache = Cache::open(root)?;
    match cache.get(&key)? {
        Some(artifact) => Ok(Named::Cached { artifact: Box::new(artifact), node: None }),
        None => bail!("{}: the artifact failed verification (moved to the cache's quarantine; `rhx run` recomputes it)", dir.display()),
    }
}

/// A JSONL trace of `rhx trace --out`; a line that records a failed prompt (`{"id", "line",
/// "error"}`) or is not a trace line is an error naming its line.
fn from_trace_file(path: &Path) -> Result<Named> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = std::str::from_utf8(&bytes).with_context(|| format!("{}: not UTF-8 text", path.display()))?;
    let mut lines = Vec::new();
    for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(l).with_context(|| format!("{}:{}: not JSON (a trace.jsonl has one generation per line)", path.display(), i + 1))?;
        if let Some(e) = v.get("error") {
            bail!("{}:{}: prompt `{}` failed when traced ({e}); remove the line or trace it again", path.display(), i + 1, v.get("id").and_then(|x| x.as_str()).unwrap_or("?"));
        }
        lines.push(serde_json::from_value::<TraceLine>(v).with_context(|| format!("{}:{}: not a trace line", path.display(), i + 1))?);
    }
    if lines.is_empty() {
        bail!("{}: no generations in it", path.display());
    }
    Ok(Named::TraceFile { path: path.to_path_buf(), lines, sha256: Key::of_bytes(&bytes).as_str().to_string() })
}
