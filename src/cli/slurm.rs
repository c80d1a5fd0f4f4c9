//! `rhx slurm`: an experiment as a Slurm job array (the traces, balanced by estimated cost)
//! plus a job that assembles the reports once every task succeeded.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::exp::{load_checked_pub, CacheDir, ProgramArgs};
use crate::cache::Cache;
use crate::plan::{self, shards};

#[derive(Args)]
#[command(
    about = "Run an experiment on a Slurm cluster: a job array computes the traces, a dependent job writes the reports",
    after_help = "The array's tasks share the cache (put it on the shared file system); each computes the traces\n\
`rhx slurm` gave it, balanced by estimated cost (prompt tokens × new tokens × passes), and waits for\n\
a node another task is computing. When every task has succeeded, a second job (afterok) runs\n\
`rhx run` to assemble tables, figures and reports from the cache. Submitting again resumes: what\n\
the cache holds is not recomputed, so a failed or cancelled task is redone by `rhx slurm` again.\n\
Scripts, the shard plan and the logs go to --out (default .rhx/slurm/<experiment>-<time>/).\n\n\
EXAMPLES:\n  \
rhx slurm experiments/section3.rhx --profile full --dry-run                 # print the scripts and the shards\n  \
rhx slurm experiments/section3.rhx --profile full --tasks 8 --partition gpu --gpus-per-task 1 \\\n      \
--cpus-per-task 8 --mem 64G --time 04:00:00 --cache /shared/rhx-cache\n  \
rhx slurm exp.rhx --account proj42 --sbatch '--qos=high' --sbatch '--constraint=h100'\n  \
rhx plan experiments/section3.rhx --profile full --cache /shared/rhx-cache  # cached / running (host, pid) / to run\n\n\
Point models at shared storage with a path in the .rhx file or RHX_MODEL_PATH; the tasks inherit\n\
the environment of the submitting shell (sbatch --export=ALL). docs/CLUSTER.md has the details."
)]
pub struct SlurmArgs {
    #[command(flatten)]
    pub program: ProgramArgs,
    #[command(flatten)]
    pub cache: CacheDir,
    /// Where the assembling job writes reports
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// Array tasks (default: one per trace not cached yet, at most 64)
    #[arg(long)]
    pub tasks: Option<usize>,
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per task, e.g. 02:00:00
    #[arg(long)]
    pub time: Option<String>,
    /// GPUs per task (`--gres=gpu:N`)
    #[arg(long)]
    pub gpus_per_task: Option<u32>,
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
    /// Memory per task, e.g. 32G
    #[arg(long)]
    pub mem: Option<String>,
    #[arg(long)]
    pub account: Option<String>,
    /// An extra `#SBATCH` option for both jobs, e.g. --sbatch '--qos=high' (repeatable)
    #[arg(long = "sbatch", value_name = "OPTION")]
    pub extra: Vec<String>,
    /// The rhx binary the tasks run (default: this one; it must be reachable from the nodes)
    #[arg(long)]
    pub rhx: Option<PathBuf>,
    /// CPU threads for libtorch in each task (default: --cpus-per-task when given)
    #[arg(long)]
    pub threads: Option<i32>,
    /// Folder for the scripts, the shard plan and the logs
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the scripts and the shards; submit nothing, write nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `'…'` for the shell.
fn sh(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn abs(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}

pub fn run(a: SlurmArgs) -> Result<ExitCode> {
    let program = load_checked_pub(&a.program)?;
    let cache = Cache::open(&a.cache.cache).with_context(|| format!("cannot open cache {}", a.cache.cache.display()))?;
    let p = plan::plan(&program, &cache)?;
    let pending = p.steps.iter().filter(|s| s.node.kind == crate::lang::Kind::Trace && !cache.contains(&s.key)).count();
    let tasks = a.tasks.unwrap_or(pending.clamp(1, 64));
    if tasks == 0 {
        bail!("--tasks 0: give at least one task");
    }
    let exp_path = abs(&a.program.file)?;
    let shard_plan = shards::shard_plan(&exp_path.display().to_string(), &p, &cache, tasks).map_err(anyhow::Error::msg)?;
    let name = program.experiment.name.clone();
    let stamp = crate::cache::rfc3339_now().replace([':', '.'], "-");
    let out = abs(&a.out.clone().unwrap_or_else(|| PathBuf::from(format!(".rhx/slurm/{name}-{stamp}"))))?;
    let rhx = match &a.rhx {
        Some(p) => abs(p)?,
        None => std::env::current_exe().context("cannot find this rhx binary; give --rhx")?,
    };
    let cache_dir = abs(&a.cache.cache)?;
    let reports = abs(&a.reports)?;
    let cwd = std::env::current_dir()?;
    let threads = a.threads.or(a.cpus_per_task.map(|c| c as i32));

    // The rhx command both jobs run, before their own options.
    let mut rhx_run = sh(&rhx.display().to_string());
    for arg in a.program.run_args(&exp_path) {
        write!(rhx_run, " {}", sh(&arg.to_string_lossy()))?;
    }
    write!(rhx_run, " --cache {}", sh(&cache_dir.display().to_string()))?;
    if let Some(t) = threads {
        write!(rhx_run, " --threads {t}")?;
    }
    let mut common = String::new();
    for (opt, v) in [("partition", &a.partition), ("time", &a.time), ("mem", &a.mem), ("account", &a.account)] {
        if let Some(v) = v {
            writeln!(common, "#SBATCH --{opt}={v}")?;
        }
    }
    if let Some(g) = a.gpus_per_task {
        writeln!(common, "#SBATCH --gres=gpu:{g}")?;
    }
    if let Some(c) = a.cpus_per_task {
        writeln!(common, "#SBATCH --cpus-per-task={c}")?;
    }
    for e in &a.extra {
        let e = e.trim();
        let e = if e.starts_with('-') { e.to_string() } else { format!("--{e}") };
        writeln!(common, "#SBATCH {e}")?;
    }
    let logs = out.join("logs");
    let shard_file = out.join("shards.json");
    let header = |what: &str| format!("#!/bin/bash\n# Written by `rhx slurm` ({}) for {}: {what}.\n", crate::cache::rfc3339_now(), exp_path.display());
    let array = format!(
        "{}#SBATCH --job-name=rhx-{name}\n#SBATCH --array=0-{}\n#SBATCH --output={}/task-%A_%a.out\n#SBATCH --error={}/task-%A_%a.err\n{common}\
set -euo pipefail\ncd {}\nexec {rhx_run} --reports {} --shard \"$SLURM_ARRAY_TASK_ID/{tasks}\" --shard-plan {} --json\n",
        header(&format!("{tasks} tasks, traces dealt by estimated cost (shards.json)")),
        tasks - 1,
        logs.display(),
        logs.display(),
        sh(&cwd.display().to_string()),
        sh(&reports.display().to_string()),
        sh(&shard_file.display().to_string()),
    );
    // Same resources as the tasks: a trace's key holds the device it resolves to, so the
    // assembling run must see the nodes the tasks saw (or it would not find their traces).
    let assemble = format!(
        "{}#SBATCH --job-name=rhx-{name}-report\n#SBATCH --output={}/assemble-%j.out\n#SBATCH --error={}/assemble-%j.err\n{common}\
set -euo pipefail\ncd {}\nexec {rhx_run} --reports {} --json\n",
        header("assembles tables, figures and reports once every array task succeeded"),
        logs.display(),
        logs.display(),
        sh(&cwd.display().to_string()),
        sh(&reports.display().to_string()),
    );

    let loads = shard_plan.loads();
    let total: f64 = loads.iter().sum();
    let mut summary = String::new();
    writeln!(summary, "{name}: {} traces ({} cached), {tasks} tasks; estimated cost = prompt tokens × new tokens × passes", shard_plan.traces.len(), shard_plan.traces.iter().filter(|t| t.cached).count())?;
    for t in &shard_plan.traces {
        let state = if t.cached { "cached".to_string() } else { format!("{:>5.1}%", if total > 0.0 { 100.0 * t.cost / total } else { 0.0 }) };
        writeln!(summary, "  task {:>3}  {state}  {}  ({} prompts, {} prompt tokens, {} new, {} pass{})", t.shard, t.node, t.prompts, t.prompt_tokens, t.new_tokens, t.passes, if t.passes == 1 { "" } else { "es" })?;
    }
    let max = loads.iter().cloned().fold(0.0, f64::max);
    if total > 0.0 {
        writeln!(summary, "  largest task: {:.1}% of the work (even split: {:.1}%)", 100.0 * max / total, 100.0 / tasks as f64)?;
    }
    if a.dry_run {
        print!("{summary}\n# {}\n{array}\n# {}\n{assemble}", out.join("array.sbatch").display(), out.join("assemble.sbatch").display());
        println!("\n# submit: sbatch --parsable {0}/array.sbatch; sbatch --dependency=afterok:<array id> --kill-on-invalid-dep=yes {0}/assemble.sbatch", out.display());
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    for (file, text) in [("array.sbatch", array.as_str()), ("assemble.sbatch", assemble.as_str())] {
        super::trace::write_atomic(&out.join(file), |w| Ok(w.write_all(text.as_bytes())?))?;
    }
    let plan_json = serde_json::to_string_pretty(&shard_plan)?;
    super::trace::write_atomic(&shard_file, |w| Ok(w.write_all(plan_json.as_bytes())?))?;
    eprint!("{summary}");

    let array_id = if pending > 0 { Some(sbatch(&[out.join("array.sbatch").display().to_string()])?) } else { None };
    let mut args = Vec::new();
    if let Some(id) = &array_id {
        args.push(format!("--dependency=afterok:{id}"));
        args.push("--kill-on-invalid-dep=yes".to_string());
    }
    args.push(out.join("assemble.sbatch").display().to_string());
    let assemble_id = sbatch(&args)?;
    match &array_id {
        Some(id) => eprintln!("submitted: array {id} ({tasks} tasks), then reports {assemble_id} (afterok:{id})"),
        None => eprintln!("every trace is cached: submitted only the reports job {assemble_id}"),
    }
    eprintln!("  scripts and logs: {}\n  watch: squeue -j {}{assemble_id}; rhx plan {} --cache {}", out.display(), array_id.as_ref().map(|i| format!("{i},")).unwrap_or_default(), a.program.file.display(), a.cache.cache.display());
    eprintln!("  a failed or cancelled task: run the same `rhx slurm` again; it resumes from the cache");
    println!("{}", serde_json::json!({"array": array_id, "report": assemble_id, "tasks": tasks, "out": out}));
    Ok(ExitCode::SUCCESS)
}

/// Submits with `sbatch --parsable`; the job id.
fn sbatch(args: &[String]) -> Result<String> {
    let out = Command::new("sbatch").arg("--parsable").args(args).output().map_err(|e| {
        anyhow::anyhow!("cannot run sbatch ({e}): run `rhx slurm` where Slurm's commands are (a login node), or use --dry-run to see the scripts")
    })?;
    if !out.status.success() {
        bail!("sbatch {} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `<id>` or `<id>;<cluster>`.
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed {:?}, not a job id", text.trim());
    }
    Ok(id)
}
