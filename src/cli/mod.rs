//! Command-line interface. Each subcommand lives in its own file; errors reach the user as
//! `miette` reports with the cause chain.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod trace;

#[derive(Parser)]
#[command(
    name = "rhx",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("RHX_GIT_COMMIT"), ")"),
    about = "Reproducible interpretability experiments on LLMs: per-step attention-head capture on libtorch",
    long_about = "rhx runs language models on libtorch (CPU or CUDA) and records, at every decoding step, \
what each attention head does — e.g. the copy-paste retrieval heads of \"Retrieval Heads are Dynamic\".\n\n\
Start with:\n  rhx trace --model smollm2-135m-instruct --prompts experiments/prompts/niah_smoke.jsonl --out out/niah_smoke.jsonl"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Trace(trace::TraceArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Trace(args) => trace::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{:?}", miette::Report::msg(format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}
