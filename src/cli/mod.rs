//! Command-line interface. Each subcommand lives in its own file; errors reach the user as
//! `miette` reports with the cause chain.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) mod artifact_arg;
mod bench;
mod exp;
mod slurm;
mod workers;
mod lsp;
mod export;
pub(crate) mod trace;
mod view;

#[derive(Parser)]
#[command(
    name = "rhx",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("RHX_GIT_COMMIT"), ")"),
    about = "Reproducible interpretability experiments on LLMs: per-step attention-head capture on libtorch",
    long_about = "rhx runs language models on libtorch (CPU or CUDA) and records, at every decoding step, \
what each attention head does — e.g. the copy-paste retrieval heads of \"Retrieval Heads are Dynamic\".\n\n\
Start with:\n  rhx run experiments/niah_smoke.rhx          # an experiment: NIAH → per-step heads → tables, figures, report\n  rhx trace --model smollm2-135m-instruct --prompts experiments/prompts/niah_smoke.jsonl --out out/niah_smoke.jsonl"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment: compute what is not cached, write its reports
    Run(exp::RunArgs),
    /// Check an experiment without running it (errors with file:line:col)
    Check(exp::CheckArgs),
    /// Format .rhx files canonically (comments kept)
    Fmt(exp::FmtArgs),
    /// Show the DAG of an experiment: each node, its key, cached, running (who holds its lock) or to run
    Plan(exp::PlanArgs),
    /// Inspect, verify and clean the content-addressed cache
    #[command(subcommand)]
    Cache(exp::CacheCmd),
    /// Assemble tables, figures and reports from cached traces (never runs a model)
    Report(exp::ReportArgs),
    /// Re-run the experiment behind a report from scratch and certify every number
    Reproduce(exp::ReproduceArgs),
    Trace(trace::TraceArgs),
    Slurm(slurm::SlurmArgs),
    /// Language server for .rhx files (stdio): diagnostics, hover, completion, definition, formatting
    Lsp(lsp::LspArgs),
    Export(export::ExportArgs),
    View(view::ViewArgs),
    /// Benchmark capture-enabled generation on a random model of a published shape against HF transformers eager
    Bench(bench::BenchArgs),
}

pub fn main() -> ExitCode {
    // Errors name paths and commands to copy: never wrap their lines.
    let _ = miette::set_hook(Box::new(|_| Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Trace(args) => trace::run(args),
        Command::Export(a) => export::run(a),
        Command::View(a) => view::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Run(a) => exp::run(a),
        Command::Slurm(a) => slurm::run(a),
        Command::Check(a) => exp::check(a),
        Command::Fmt(a) => exp::fmt(a),
        Command::Plan(a) => exp::plan(a),
        Command::Cache(c) => exp::cache(c),
        Command::Reproduce(a) => exp::reproduce(a),
        Command::Report(a) => exp::report(a),
        Command::Lsp(a) => lsp::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{:?}", miette::Report::msg(format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}
