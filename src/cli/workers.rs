//! `rhx run --gpus`: every GPU of this host in one run. One worker process per GPU
//! (`CUDA_VISIBLE_DEVICES` set to it, so the experiment's `cuda` is that GPU) computes its share
//! of the traces — dealt by estimated cost as `rhx slurm` deals them (`plan::shards`) — into the
//! shared cache under the per-key locks; then this process assembles tables, figures and
//! reports. `--worker-device cpu` runs the same path with CPU workers standing in for GPUs (the
//! tests, and machines without one).
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{json, Value as Json};

use super::exp::ProgramArgs;
use crate::cache::Cache;
use crate::lang::Program;
use crate::plan::{self, shards};

/// Which GPUs: `all`, a count (the first N), or a list of indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gpus {
    All,
    Count(usize),
    List(Vec<usize>),
}

pub fn parse_gpus(s: &str) -> Result<Gpus, String> {
    let s = s.trim();
    if s == "all" {
        return Ok(Gpus::All);
    }
    // A list has a comma; one GPU by index is written with a trailing one (`3,`).
    if s.contains(',') {
        let list: Vec<usize> = s.split(',').filter(|x| !x.trim().is_empty()).map(|x| x.trim().parse::<usize>().map_err(|_| format!("`{x}` is not a GPU index; write e.g. 0,2,3"))).collect::<Result<_, _>>()?;
        let mut seen = list.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != list.len() {
            return Err(format!("`{s}` names a GPU twice"));
        }
        if list.is_empty() {
            return Err(format!("`{s}` names no GPU"));
        }
        return Ok(Gpus::List(list));
    }
    match s.parse::<usize>() {
        Ok(0) => Err("--gpus 0: a count of GPUs is at least 1; to use GPU 0 alone write `--gpus 0,`".into()),
        Ok(n) => Ok(Gpus::Count(n)),
        Err(_) => Err(format!("`{s}`: write all, a count (2), or indices (0,2; one GPU by index: 3,)")),
    }
}

/// What stands behind each worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkerDevice {
    /// One GPU per worker (CUDA_VISIBLE_DEVICES)
    Cuda,
    /// CPU processes standing in for GPUs (same code path; tests, machines without a GPU)
    Cpu,
}

struct Worker {
    label: String,
    visible: Option<String>,
    log: PathBuf,
    out: PathBuf,
    child: Child,
    bar: ProgressBar,
}

/// The GPU labels and CUDA_VISIBLE_DEVICES values of the workers.
fn devices(gpus: &Gpus, device: WorkerDevice) -> Result<Vec<(String, Option<String>)>> {
    if device == WorkerDevice::Cpu {
        let n = match gpus {
            Gpus::All => bail!("with --worker-device cpu give a number of workers (--gpus 2), not `all`"),
            Gpus::Count(n) => *n,
            Gpus::List(l) => l.len(),
        };
        return Ok((0..n).map(|i| (format!("cpu worker {i}"), Some(String::new()))).collect());
    }
    let count = crate::engine::device::cuda_status().map_err(|e| anyhow::anyhow!("--gpus needs CUDA: {e} (use --worker-device cpu for CPU workers)"))?;
    let indices: Vec<usize> = match gpus {
        Gpus::All => (0..count).collect(),
        Gpus::Count(n) if *n <= count => (0..*n).collect(),
        Gpus::Count(n) => bail!("--gpus {n}: this machine shows {count} GPU(s)"),
        Gpus::List(l) => {
            if let Some(bad) = l.iter().find(|&&i| i >= count) {
                bail!("--gpus: there is no GPU {bad} (this machine shows {count}: 0..{})", count - 1);
            }
            l.clone()
        }
    };
    // Indices are those this process sees; map them through an inherited CUDA_VISIBLE_DEVICES.
    let inherited: Option<Vec<String>> = std::env::var("CUDA_VISIBLE_DEVICES").ok().filter(|v| !v.trim().is_empty()).map(|v| v.split(',').map(|x| x.trim().to_string()).collect());
    Ok(indices
        .into_iter()
        .map(|i| {
            let physical = inherited.as_ref().and_then(|l| l.get(i).cloned()).unwrap_or_else(|| i.to_string());
            (format!("gpu {i}"), Some(physical))
        })
        .collect())
}

/// Runs the workers to completion; `Ok(summaries)` (each worker's `--json` summary) when all
/// succeeded, else an error naming each failed worker's GPU and log.
#[allow(clippy::too_many_arguments)]
pub fn run_workers(program: &Program, p: &ProgramArgs, cache_dir: &Path, reports: &Path, threads: Option<i32>, gpus: &Gpus, device: WorkerDevice, quiet: bool) -> Result<Vec<(String, Json)>> {
    let devs = devices(gpus, device)?;
    let n = devs.len();
    let cache = Cache::open(cache_dir).with_context(|| format!("cannot open cache {}", cache_dir.display()))?;
    let pl = plan::plan(program, &cache)?;
    let exp = std::fs::canonicalize(&p.file).unwrap_or_else(|_| p.file.clone());
    let sp = shards::shard_plan(&exp.display().to_string(), &pl, &cache, n).map_err(anyhow::Error::msg)?;
    let stamp = crate::cache::rfc3339_now().replace([':', '.'], "-");
    // Beside the cache (`.rhx/workers/` for the default `.rhx/cache`), kept for the logs.
    let dir = cache.root().parent().unwrap_or(cache.root()).join("workers").join(format!("{}-{stamp}", program.experiment.name));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let shard_file = dir.join("shards.json");
    std::fs::write(&shard_file, serde_json::to_string_pretty(&sp)?).with_context(|| format!("cannot write {}", shard_file.display()))?;
    let loads = sp.loads();
    let total: f64 = loads.iter().sum::<f64>().max(1.0);
    let exe = std::env::current_exe().context("cannot find this rhx binary")?;
    let multi = if quiet { MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden()) } else { MultiProgress::new() };
    let style = ProgressStyle::with_template("{spinner} {prefix:<12} [{elapsed_precise}] {wide_msg}").unwrap();
    let mut workers = Vec::new();
    for (i, (label, visible)) in devs.into_iter().enumerate() {
        let log = dir.join(format!("worker-{i}.log"));
        let out = dir.join(format!("worker-{i}.json"));
        let mut cmd = Command::new(&exe);
        cmd.args(p.run_args(&p.file));
        // A worker that ends up with every input of a report publishes it where this run would.
        cmd.arg("--cache").arg(cache_dir).arg("--reports").arg(reports).arg("--shard").arg(format!("{i}/{n}")).arg("--shard-plan").arg(&shard_file).arg("--json");
        if let Some(t) = threads {
            cmd.args(["--threads", &t.to_string()]);
        }
        if let Some(v) = &visible {
            cmd.env("CUDA_VISIBLE_DEVICES", v);
        }
        cmd.stdout(std::fs::File::create(&out)?).stderr(std::fs::File::create(&log)?).stdin(Stdio::null());
        let child = cmd.spawn().with_context(|| format!("cannot start worker {i} ({})", exe.display()))?;
        let bar = multi.add(ProgressBar::new_spinner());
        bar.set_style(style.clone());
        bar.set_prefix(label.clone());
        let mine: Vec<&str> = sp.traces.iter().filter(|t| t.shard == i && !t.cached).map(|t| t.node.as_str()).collect();
        bar.set_message(format!("{:.0}% of the work: {}", 100.0 * loads[i] / total, if mine.is_empty() { "nothing to compute".into() } else { mine.join(", ") }));
        workers.push(Worker { label, visible, log, out, child, bar });
    }
    std::fs::write(dir.join("workers.json"), serde_json::to_string_pretty(&workers.iter().map(|w| json!({"label": w.label, "pid": w.child.id(), "log": w.log, "cuda_visible_devices": w.visible})).collect::<Vec<_>>())?)?;
    if !quiet {
        multi.println(format!("{} workers, shards and logs in {}", n, dir.display())).ok();
    }
    let started = Instant::now();
    let mut status = vec![None; workers.len()];
    while status.iter().any(Option::is_none) {
        for (w, st) in workers.iter_mut().zip(status.iter_mut()) {
            if st.is_some() {
                continue;
            }
            if let Some(s) = w.child.try_wait()? {
                *st = Some(s);
                w.bar.finish_with_message(if s.success() { format!("done in {:.1} s", started.elapsed().as_secs_f64()) } else { format!("FAILED ({s}); log {}", w.log.display()) });
            } else if let Some(line) = last_line(&w.log) {
                w.bar.set_message(line);
                w.bar.tick();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut failed = Vec::new();
    let mut summaries = Vec::new();
    for (w, st) in workers.iter().zip(&status) {
        let st = st.expect("every worker finished");
        if !st.success() {
            let tail = std::fs::read_to_string(&w.log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
            let dev = w.visible.as_deref().filter(|v| !v.is_empty()).map(|v| format!(", CUDA_VISIBLE_DEVICES={v}")).unwrap_or_default();
            failed.push(format!("{} (pid {}{dev}) {}; log {}:\n    {}", w.label, w.child.id(), describe(st), w.log.display(), tail.join("\n    ")));
            continue;
        }
        let text = std::fs::read_to_string(&w.out).unwrap_or_default();
        let v: Json = text.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or(Json::Null);
        summaries.push((w.label.clone(), v));
    }
    if !failed.is_empty() {
        bail!(
            "{} of {n} workers failed:\n  {}\nwhat the others computed is in the cache: run the same command again to resume",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(summaries)
}

fn describe(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("ended ({st})"),
    }
}

/// The last non-empty line of a worker's log (its progress).
fn last_line(path: &Path) -> Option<String> {
    let f = std::fs::File::open(path).ok()?;
    BufReader::new(f).lines().map_while(Result::ok).filter(|l| !l.trim().is_empty()).last().map(|l| l.trim().chars().take(120).collect())
}

