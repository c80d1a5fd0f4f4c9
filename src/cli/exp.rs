//! `rhx run | check | fmt | plan | cache`: the experiment-language commands.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cache::{Cache, GcOptions, Holder};
use crate::lang::{self, EngineShapes, NoShapes, Program};
use crate::plan;
use crate::run::{self, Outcome, RunOptions};

#[derive(Args)]
pub struct ProgramArgs {
    /// The experiment file (.rhx)
    pub file: PathBuf,
    /// Override a parameter, e.g. `--set niah.runs=20` or `--set experiment.seed=3` (repeatable)
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// Apply the file's `profile NAME { ... }` before any `--set`; sets `experiment.profile` to NAME
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
}

impl ProgramArgs {
    /// `rhx run`'s arguments for this program with the experiment at `file`: `run FILE
    /// [--profile NAME] [--set PATH=VALUE]...` — what workers and Slurm jobs run.
    pub fn run_args(&self, file: &Path) -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = vec!["run".into(), file.into()];
        if let Some(p) = &self.profile {
            v.extend(["--profile".into(), p.into()]);
        }
        for s in &self.overrides {
            v.extend(["--set".into(), s.into()]);
        }
        v
    }

    /// What `--profile` and `--set` ask for; `all_profiles` also checks every declared profile
    /// when none is selected.
    fn options(&self, all_profiles: bool) -> lang::CheckOptions<'_> {
        lang::CheckOptions { profile: self.profile.as_deref(), overrides: &self.overrides, all_profiles }
    }

    fn check(&self, shapes: bool, all_profiles: bool) -> Result<Program, Vec<lang::Diagnostic>> {
        let opts = self.options(all_profiles);
        if shapes { lang::check_path_with(&self.file, &opts, &EngineShapes::new()) } else { lang::check_path_with(&self.file, &opts, &NoShapes) }
    }
}

#[derive(Args)]
pub struct CacheDir {
    /// Cache directory (shared by shards; default .rhx/cache)
    #[arg(long, default_value = ".rhx/cache")]
    pub cache: PathBuf,
}

#[derive(Args)]
#[command(after_help = "EXAMPLES:\n  rhx run experiments/niah_smoke.rhx\n  rhx run experiments/niah_smoke.rhx --set niah.runs=5 --set base.max_new_tokens=60\n  rhx run experiments/section3.rhx --profile full --set lm.device=cuda\n  \
rhx run experiments/section3.rhx --profile full --gpus all        # one worker per GPU, then the report\n  \
rhx run experiments/section3.rhx --gpus 0,2 --set lm.device=cuda   # GPUs 0 and 2\n  \
rhx slurm experiments/section3.rhx --profile full --tasks 8 --partition gpu --gpus-per-task 1   # a cluster: docs/CLUSTER.md")]
pub struct RunArgs {
    #[command(flatten)]
    pub program: ProgramArgs,
    #[command(flatten)]
    pub cache: CacheDir,
    /// Where reports are written (one folder per report declaration)
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// Compute only slice i of n of the traces (a Slurm array task); a final plain run assembles
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// With --shard: which shard computes which trace, as `rhx slurm` wrote it (balanced by cost)
    #[arg(long, value_name = "FILE", requires = "shard")]
    pub shard_plan: Option<PathBuf>,
    /// Use several GPUs of this machine: `all`, a count (2) or indices (0,2; one by index: 3,); one worker process
    /// per GPU computes its share of the traces, then this run assembles the reports
    #[arg(long, value_parser = super::workers::parse_gpus, conflicts_with = "shard")]
    pub gpus: Option<super::workers::Gpus>,
    /// What each --gpus worker runs on: cuda (one GPU each) or cpu (CPU processes standing in)
    #[arg(long, value_enum, default_value = "cuda", requires = "gpus")]
    pub worker_device: super::workers::WorkerDevice,
    /// CPU threads for libtorch (default: libtorch's choice)
    #[arg(long)]
    pub threads: Option<i32>,
    /// Print a JSON summary on stdout
    #[arg(long)]
    pub json: bool,
    #[arg(long, short)]
    pub quiet: bool,
}

pub(crate) fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or("a shard is written i/n, e.g. 3/64")?;
    let (i, n): (usize, usize) = (i.parse().map_err(|_| format!("`{i}` is not a number"))?, n.parse().map_err(|_| format!("`{n}` is not a number"))?);
    if n == 0 || i >= n {
        return Err(format!("shard {i}/{n}: need 0 ≤ i < n"));
    }
    Ok((i, n))
}

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub program: ProgramArgs,
    /// Do not read model headers (head-index checks are skipped)
    #[arg(long)]
    pub no_models: bool,
    /// Print the checked program (every parameter, resolved)
    #[arg(long)]
    pub dump: bool,
    /// Print `{"ok": bool, "declarations": n, "errors": [rendered diagnostics]}` on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct FmtArgs {
    /// Files to format in place
    pub files: Vec<PathBuf>,
    /// Only check: exit 1 if a file is not formatted
    #[arg(long)]
    pub check: bool,
}

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub program: ProgramArgs,
    #[command(flatten)]
    pub cache: CacheDir,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum CacheCmd {
    /// List artifacts
    Ls(CacheDir),
    /// Rehash every artifact; damaged ones are quarantined (and recomputed by the next run)
    Verify(CacheDir),
    /// Remove artifacts not used by the given experiments, default run and every profile (all of them if none is given)
    Gc {
        #[command(flatten)]
        cache: CacheDir,
        /// Experiments whose artifacts are kept
        keep: Vec<PathBuf>,
        #[arg(long)]
        dry_run: bool,
    },
}

/// The program checked (with shapes) and supported, as `rhx run` loads it.
pub(crate) fn load_checked_pub(p: &ProgramArgs) -> Result<Program> {
    let program = load(p, true)?;
    supported(&program, &p.file)?;
    Ok(program)
}

pub(crate) fn load(p: &ProgramArgs, shapes: bool) -> Result<Program> {
    load_checked(p, shapes, false)
}

/// Checks the program; with `all_profiles` and no `--profile`, every declared profile too.
/// Refuses declared-but-not-implemented constructors and options: the diagnostic is printed with
/// its source lines (as `rhx check` prints checker errors), the error names the file.
fn supported(program: &Program, file: &std::path::Path) -> Result<()> {
    match run::check_supported(program) {
        Err(run::RunError::NotImplemented(d)) => {
            eprint!("{}", lang::render_diagnostics(std::slice::from_ref(&*d)));
            bail!("1 error in {}", file.display())
        }
        other => Ok(other?),
    }
}

fn load_checked(p: &ProgramArgs, shapes: bool, all_profiles: bool) -> Result<Program> {
    p.check(shapes, all_profiles).map_err(|diags| {
        // Diagnostics are already rendered with their source lines; print them as they are.
        eprint!("{}", lang::render_diagnostics(&diags));
        anyhow::anyhow!("{} error(s) in {}", diags.len(), p.file.display())
    })
}

/// `--reports` must be a folder (or not exist yet): said before any work, naming the option.
fn check_reports_dir(reports: &Path) -> Result<()> {
    // Every ancestor too: `--reports notes.txt/out` fails the same way.
    for p in reports.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        if p.exists() && !p.is_dir() {
            bail!("--reports {}: {} is a file, not a folder; give a folder for the reports (default: reports)", reports.display(), p.display());
        }
    }
    Ok(())
}

pub fn run(a: RunArgs) -> Result<ExitCode> {
    check_reports_dir(&a.reports)?;
    let program = load(&a.program, true)?;
    supported(&program, &a.program.file)?;
    let cache = Cache::open(&a.cache.cache).with_context(|| format!("cannot open cache {}", a.cache.cache.display()))?;
    let shard_plan = a.shard_plan.as_deref().map(plan::shards::ShardPlan::read).transpose().map_err(anyhow::Error::msg)?;
    let workers = match &a.gpus {
        Some(g) => super::workers::run_workers(&program, &a.program, &a.cache.cache, &a.reports, a.threads, g, a.worker_device, a.quiet)?,
        None => vec![],
    };
    let opts = RunOptions { shard: a.shard, shard_plan, reports_dir: a.reports.clone(), recompute: false, quiet: a.quiet, compute_traces: true, threads: a.threads, engine: None };
    let summary = run::run(&program, &cache, &opts)?;
    let count = |o: Outcome| summary.outcomes.iter().filter(|x| x.2 == o).count();
    if a.json {
        let nodes: Vec<_> = summary.outcomes.iter().map(|(n, k, o, t)| json!({"node": n, "key": k, "outcome": format!("{o:?}").to_lowercase(), "seconds": t})).collect();
        let workers: Vec<_> = workers.iter().map(|(label, v)| json!({"worker": label, "summary": v})).collect();
        println!("{}", json!({"nodes": nodes, "reports": summary.reports, "wall_time_s": summary.wall_time_s, "workers": workers}));
    }
    if !a.quiet {
        eprintln!(
            "{}: {} computed, {} cached, {} skipped in {:.1} s",
            program.experiment.name,
            count(Outcome::Computed),
            count(Outcome::Cached),
            count(Outcome::Skipped),
            summary.wall_time_s
        );
        for r in &summary.reports {
            eprintln!("  report: {}/report.md, {}/report.html", r.display(), r.display());
        }
    }
    Ok(if count(Outcome::Skipped) > 0 && a.shard.is_none() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn check(a: CheckArgs) -> Result<ExitCode> {
    if a.json {
        let (ok, n, errors) = match a.program.check(!a.no_models, true) {
            Ok(p) => match run::check_supported(&p) {
                Ok(()) => (true, p.nodes.len(), vec![]),
                Err(e) => (false, p.nodes.len(), vec![e.to_string()]),
            },
            Err(d) => (false, 0, d.iter().map(|x| lang::render_diagnostics(std::slice::from_ref(x))).collect()),
        };
        println!("{}", json!({"ok": ok, "declarations": n, "errors": errors}));
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let program = load_checked(&a.program, !a.no_models, true)?;
    supported(&program, &a.program.file)?;
    if a.dump {
        print!("{}", program.dump());
    }
    let profiles = match (&a.program.profile, program.profiles.as_slice()) {
        (Some(p), _) => format!("; profile `{p}`"),
        (None, []) => String::new(),
        (None, [one]) => format!("; profile `{one}` also checks"),
        (None, names) => format!("; profiles {} also check", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
    };
    eprintln!("{}: ok ({} declarations{profiles})", a.program.file.display(), program.nodes.len());
    Ok(ExitCode::SUCCESS)
}

pub fn fmt(a: FmtArgs) -> Result<ExitCode> {
    if a.files.is_empty() {
        bail!("give the .rhx files to format");
    }
    let mut unformatted = 0;
    for f in &a.files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let out = lang::format_source(&text).map_err(|d| anyhow::anyhow!("{}", lang::render_diagnostics(&[d])))?;
        if out != text {
            unformatted += 1;
            if a.check {
                eprintln!("{}: not formatted", f.display());
            } else {
                crate::cli::trace::write_atomic(f, |w| Ok(w.write_all(out.as_bytes())?))?;
                eprintln!("{}: formatted", f.display());
            }
        }
    }
    Ok(if a.check && unformatted > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn plan(a: PlanArgs) -> Result<ExitCode> {
    let program = load(&a.program, true)?;
    supported(&program, &a.program.file)?;
    let cache = Cache::open(&a.cache.cache)?;
    let p = plan::plan(&program, &cache)?;
    // cached | running (a process holds the key's lock: another run, a Slurm task) | to run
    let mut rows = Vec::new();
    for s in &p.steps {
        let (state, owner) = if cache.contains(&s.key) {
            ("cached", None)
        } else {
            match cache.lock_holder(&s.key)? {
                Holder::Free => ("to run", None),
                Holder::Held(o) => ("running", o),
            }
        };
        rows.push((s, state, owner));
    }
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(s, state, o)| {
                json!({"node": s.node.name, "kind": s.node.kind.name(), "constructor": s.node.constructor, "key": s.key.as_str(),
                    "cached": *state == "cached", "state": state, "inputs": s.inputs,
                    "holder": o.as_ref().map(|o| json!({"host": o.host, "pid": o.pid, "since": o.since}))})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (s, state, owner) in &rows {
            let deps = if s.inputs.is_empty() { String::new() } else { format!(" ← {}", s.inputs.join(", ")) };
            let by = owner.as_ref().map(|o| format!("  [{} pid {} since {}]", o.host, o.pid, o.since)).unwrap_or_default();
            println!("{state:<7} {:<8} {} = {}(…)  {}{deps}{by}", s.node.kind.name(), s.node.name, s.node.constructor, s.key.short());
        }
        let count = |st: &str| rows.iter().filter(|r| r.1 == st).count();
        println!("{} of {} nodes cached, {} running, {} to run (locks: {}, {})", count("cached"), rows.len(), count("running"), count("to run"), cache.lock_mode().kind.name(), cache.lock_mode().why);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cache(c: CacheCmd) -> Result<ExitCode> {
    match c {
        CacheCmd::Ls(d) => {
            let cache = Cache::open(&d.cache)?;
            for a in cache.ls()? {
                println!("{}  {:<24} {:>10} B  {}", a.key.short(), a.kind.as_deref().unwrap_or("(unreadable)"), a.size, a.created.as_deref().unwrap_or("-"));
            }
        }
        CacheCmd::Verify(d) => {
            let cache = Cache::open(&d.cache)?;
            let r = cache.verify()?;
            println!("{} artifacts checked, {} ok, {} bytes hashed", r.checked, r.ok, r.bytes_hashed);
            for c in &r.corrupted {
                println!("corrupted: {} ({}) → {}", c.key.as_ref().map_or("?", |k| k.short()), c.reason, c.quarantined_to.display());
            }
            for e in &r.errors {
                println!("error: {e}");
            }
            println!("{} remembered input digests re-hashed, {} wrong", r.digests_checked, r.digests_wrong.len());
            for w in &r.digests_wrong {
                println!("wrong digest (dropped, the file will be hashed again): {w}");
            }
            if !r.is_clean() {
                return Ok(ExitCode::from(1));
            }
        }
        CacheCmd::Gc { cache, keep, dry_run } => {
            let c = Cache::open(&cache.cache)?;
            let mut keys = HashSet::new();
            // An experiment uses the artifacts of its default run and of each of its profiles.
            for f in &keep {
                let check = |profile: Option<&str>| {
                    let opts = lang::CheckOptions { profile, ..Default::default() };
                    lang::check_path_with(Path::new(f), &opts, &NoShapes).map_err(|d| anyhow::anyhow!("{}", lang::render_diagnostics(&d)))
                };
                let program = check(None)?;
                let mut programs = vec![];
                for name in &program.profiles {
                    programs.push(check(Some(name))?);
                }
                programs.push(program);
                for p in &programs {
                    for s in plan::plan(p, &c)?.steps {
                        keys.insert(s.key);
                    }
                }
            }
            let r = c.gc(&keys, GcOptions { dry_run, ..Default::default() })?;
            let verb = if dry_run { "would remove" } else { "removed" };
            println!("{verb} {} artifacts ({} bytes), {} temp entries, {} quarantined; {} kept because locked", r.removed.len(), r.freed_bytes, r.removed_tmp.len(), r.removed_quarantine.len(), r.skipped_locked.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
#[command(after_help = "EXAMPLES:\n  rhx reproduce reports/niah_smoke                       # re-runs experiments/niah_smoke.rhx from scratch, certifies every number\n  rhx reproduce reports/section3 --certificate cert.md   # also writes every number's verdict to cert.md\n  rhx reproduce ~/review/section3 --experiment rhx/experiments/section3.rhx   # a folder moved elsewhere\n\nEach number is held to the tolerance its op declared in report.json: exact for counts and\nanything computed from traces, a float tolerance where a CPU's floating-point path moves it\n(CCA, probes), the stated spread for a mean over seeds. report.md, report.html, tables/*.csv\nand figures/*.svg must be exactly what report.json renders to.")]
pub struct ReproduceArgs {
    /// A report folder written by `rhx run` (it holds report.json with the provenance)
    pub report_dir: PathBuf,
    /// List every number, not only those that are not bit-identical
    #[arg(long)]
    pub all: bool,
    /// Write the full certificate (every number and text, with its verdict) as Markdown here
    #[arg(long)]
    pub certificate: Option<PathBuf>,
    /// The experiment file to rerun (default: the one the report names, found from the working
    /// directory or from the report folder)
    #[arg(long)]
    pub experiment: Option<PathBuf>,
    /// Reuse cached artifacts instead of recomputing everything
    #[arg(long)]
    pub use_cache: bool,
    #[command(flatten)]
    pub cache: CacheDir,
    #[arg(long)]
    pub threads: Option<i32>,
}

/// Where the experiment of a report is: `--experiment`; the recorded path from the working
/// directory; the path recorded relative to the report folder; the recorded path from the
/// project the folder sits in (`<project>/reports/<name>`).
fn find_experiment(a: &ReproduceArgs, recorded: &Path, prov: &crate::report::Provenance) -> Result<PathBuf> {
    if let Some(e) = &a.experiment {
        anyhow::ensure!(e.is_file(), "--experiment {}: no such file", e.display());
        return Ok(e.clone());
    }
    let mut tried = vec![recorded.to_path_buf()];
    if !prov.experiment.is_empty() {
        tried.push(a.report_dir.join(&prov.experiment));
    }
    if recorded.is_relative() {
        tried.push(a.report_dir.join("../..").join(recorded));
    }
    if let Some(found) = tried.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    bail!(
        "cannot find the experiment of {} (tried {}); pass it with --experiment PATH",
        a.report_dir.display(),
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )
}

/// The experiment file, `--profile` and `--set` overrides of the command line recorded in a
/// report, as the [`ProgramArgs`] that re-check it.
fn recorded_invocation(argv: &[String]) -> Result<ProgramArgs> {
    let mut file = None;
    let mut sets = Vec::new();
    let mut profile = None;
    let mut it = argv.iter().skip_while(|a| a.as_str() != "run").skip(1);
    while let Some(a) = it.next() {
        if a == "--set" {
            sets.push(it.next().cloned().context("`--set` without a value in the recorded command line")?);
        } else if let Some(v) = a.strip_prefix("--set=") {
            sets.push(v.to_string());
        } else if a == "--profile" {
            profile = Some(it.next().cloned().context("`--profile` without a name in the recorded command line")?);
        } else if let Some(v) = a.strip_prefix("--profile=") {
            profile = Some(v.to_string());
        } else if a.ends_with(".rhx") && file.is_none() {
            file = Some(PathBuf::from(a));
        }
    }
    let file = file.context("the recorded command line names no .rhx file (was the report made by `rhx run`?)")?;
    Ok(ProgramArgs { file, overrides: sets, profile })
}

/// Checks that every file of a report folder is exactly what its `report.json` renders to (the
/// Markdown template is the one the experiment names). Returns one line per problem: a file
/// edited by hand, missing, or not written by the renderer.
fn verify_rendered(dir: &Path, original: &crate::report::Report, markdown_template: Option<PathBuf>, scratch: &Path) -> Result<(usize, Vec<String>)> {
    let rendered = scratch.join("rendered").join(dir.file_name().context("report folder has no name")?);
    let templates = crate::report::Templates { markdown: markdown_template, html: None };
    crate::report::write_report_with(original, &rendered, &templates)?;
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeSet<PathBuf>) -> Result<()> {
        for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let p = e?.path();
            if p.is_dir() {
                walk(root, &p, out)?;
            } else {
                out.insert(p.strip_prefix(root)?.to_path_buf());
            }
        }
        Ok(())
    }
    let files = |root: &Path| -> Result<std::collections::BTreeSet<PathBuf>> {
        let mut out = std::collections::BTreeSet::new();
        walk(root, root, &mut out)?;
        Ok(out)
    };
    // report.json is the source of the others: its numbers are certified against the rerun
    // (its bytes are not compared: serde_json's float parsing does not round-trip every last
    // digit, 12.692289927000001 re-serialises as 12.692289927).
    let rendered_files = |root: &Path| -> Result<std::collections::BTreeSet<PathBuf>> { Ok(files(root)?.into_iter().filter(|f| f.as_os_str() != "report.json").collect()) };
    let (want, have) = (rendered_files(&rendered)?, rendered_files(dir)?);
    let mut problems = Vec::new();
    for f in want.union(&have) {
        let shown = dir.join(f);
        match (want.contains(f), have.contains(f)) {
            (true, false) => problems.push(format!("{}: missing (report.json renders it)", shown.display())),
            (false, true) => problems.push(format!("{}: not written by rhx (report.json does not render it)", shown.display())),
            _ => {
                let (a, b) = (std::fs::read(rendered.join(f))?, std::fs::read(dir.join(f))?);
                if a != b {
                    let (a, b) = (String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
                    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
                    let i = (0..la.len().max(lb.len())).find(|&i| la.get(i) != lb.get(i)).unwrap_or(0);
                    let clip = |s: Option<&&str>| s.map_or("(end of file)".to_string(), |s| if s.chars().count() > 160 { s.chars().take(160).collect::<String>() + "…" } else { s.to_string() });
                    problems.push(format!("{}:{}: differs from what report.json renders to\n    on disk:  {}\n    rendered: {}", shown.display(), i + 1, clip(lb.get(i)), clip(la.get(i))));
                }
            }
        }
    }
    Ok((want.len(), problems))
}

pub fn reproduce(a: ReproduceArgs) -> Result<ExitCode> {
    let original = crate::report::load_report(&a.report_dir.join("report.json")).with_context(|| format!("cannot read {}/report.json", a.report_dir.display()))?;
    let mut args = recorded_invocation(&original.provenance.command_line)?;
    args.file = find_experiment(&a, &args.file, &original.provenance)?;
    let invocation = args.run_args(&args.file).iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
    eprintln!("reproducing {} (experiment {invocation}), commit {} → now {}", a.report_dir.display(), original.provenance.git_commit, env!("RHX_GIT_COMMIT"));
    let program = load(&args, true)?;
    let scratch = std::env::temp_dir().join(format!("rhx-reproduce-{}", std::process::id()));
    let folder = a.report_dir.file_name().context("report folder has no name")?.to_string_lossy().into_owned();
    let name = if original.provenance.report.is_empty() { folder } else { original.provenance.report.clone() };
    let node = program.nodes.iter().find(|n| n.kind == crate::lang::Kind::Report && n.name == name).with_context(|| format!("the experiment {} has no report named `{name}`", args.file.display()))?;
    let template = match node.arg("path") {
        Some(crate::lang::Value::Path { resolved, .. }) => Some(resolved.clone()),
        _ => None,
    };
    // 1. The files a reviewer reads are what report.json renders to.
    let (n_files, problems) = verify_rendered(&a.report_dir, &original, template, &scratch)?;
    if problems.is_empty() {
        println!("{n_files} files (report.md, report.html, tables, figures) are exactly what report.json renders to");
    } else {
        println!("{} of {n_files} files are not what report.json renders to (edited by hand, or rendered by other code):", problems.len());
        for p in &problems {
            println!("  {p}");
        }
    }
    // 2. Every number of report.json, recomputed.
    let cache_dir = if a.use_cache { a.cache.cache.clone() } else { scratch.join("cache") };
    let cache = Cache::open(&cache_dir)?;
    let opts = RunOptions { shard: None, shard_plan: None, reports_dir: scratch.join("reports"), recompute: false, quiet: false, compute_traces: true, threads: a.threads, engine: None };
    let summary = run::run(&program, &cache, &opts)?;
    let rerun_dir = summary.reports.iter().find(|r| r.file_name().is_some_and(|f| f.to_string_lossy() == name)).with_context(|| format!("the rerun wrote no report named `{name}`"))?;
    let rerun = crate::report::load_report(&rerun_dir.join("report.json"))?;
    let cert = crate::report::certify(&original, &rerun);
    println!("\n{}", cert.markdown(a.all));
    if let Some(path) = &a.certificate {
        std::fs::write(path, cert.markdown(true)).with_context(|| format!("cannot write the certificate to {}", path.display()))?;
        println!("full certificate: {}", path.display());
    }
    println!("rerun wall time {:.1} s", summary.wall_time_s);
    let ok = cert.passed() && !cert.numbers.is_empty() && problems.is_empty();
    println!("{}", if ok { "REPRODUCED" } else { "NOT REPRODUCED (see above)" });
    let _ = std::fs::remove_dir_all(scratch.join("rendered"));
    if !a.use_cache {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[derive(Args)]
#[command(after_help = "EXAMPLE:\n  rhx run exp.rhx --shard 0/2 & rhx run exp.rhx --shard 1/2; wait; rhx report exp.rhx")]
pub struct ReportArgs {
    #[command(flatten)]
    pub program: ProgramArgs,
    #[command(flatten)]
    pub cache: CacheDir,
    /// Where reports are written
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
}

/// Assembles tables, figures and reports from cached traces; never runs a model.
pub fn report(a: ReportArgs) -> Result<ExitCode> {
    check_reports_dir(&a.reports)?;
    let program = load(&a.program, false)?;
    let cache = Cache::open(&a.cache.cache)?;
    let opts = RunOptions { shard: None, shard_plan: None, reports_dir: a.reports.clone(), recompute: false, quiet: true, compute_traces: false, threads: None, engine: None };
    let summary = run::run(&program, &cache, &opts)?;
    let missing: Vec<&str> = summary.outcomes.iter().filter(|o| o.2 == Outcome::Skipped).map(|o| o.0.as_str()).collect();
    for r in &summary.reports {
        eprintln!("report: {}/report.md, {}/report.html", r.display(), r.display());
    }
    if !missing.is_empty() {
        bail!("not in the cache (run `rhx run {}` first): {}", a.program.file.display(), missing.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::recorded_invocation;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn recorded_invocation_reads_file_sets_and_profile_in_both_spellings() {
        let a = recorded_invocation(&argv(&["rhx", "run", "exp.rhx", "--profile=full", "--set", "niah.runs=5", "--set=k=[0, 5]", "--cache", "/tmp/c", "-q"])).unwrap();
        assert_eq!(a.file.to_str(), Some("exp.rhx"));
        assert_eq!(a.overrides, ["niah.runs=5", "k=[0, 5]"]);
        assert_eq!(a.profile.as_deref(), Some("full"));
        let b = recorded_invocation(&argv(&["./rhx", "--threads", "2", "run", "--profile", "smoke", "dir/x.rhx"])).unwrap();
        assert_eq!((b.file.to_str(), b.profile.as_deref(), b.overrides.len()), (Some("dir/x.rhx"), Some("smoke"), 0));
        // A `--set` value that looks like a file is a value, not the experiment.
        let c = recorded_invocation(&argv(&["rhx", "run", "--set", "m.path=\"a.rhx\"", "real.rhx"])).unwrap();
        assert_eq!(c.file.to_str(), Some("real.rhx"));
        assert!(recorded_invocation(&argv(&["rhx", "run", "--profile"])).is_err(), "`--profile` without a name");
        assert!(recorded_invocation(&argv(&["rhx", "check", "x.rhx"])).is_err(), "not made by `rhx run`");
    }
}
