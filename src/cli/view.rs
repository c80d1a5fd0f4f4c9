//! `rhx view`: a trace → one self-contained HTML page to step through (the trace viewer of
//! `src/report/trace_view.rs`; the HTML report embeds the same viewer for a few samples).
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::artifact::trace::{self, TraceInfo, TraceLine};
use crate::cache::Artifact;
use crate::cli::artifact_arg::{self, Named};
use crate::cli::exp::{CacheDir, ProgramArgs};
use crate::engine::config::ModelConfig;
use crate::engine::gguf::GgufFile;
use crate::engine::loader;
use crate::report::trace_view::TraceView;

#[derive(Args)]
#[command(
    about = "Write a trace as one self-contained HTML page: step through the tokens, see H_t and where a head's argmax falls in the prompt",
    after_help = "TRACE is an experiment and one of its trace nodes (EXP.rhx NODE, found in the cache as `rhx report`\n\
finds it; --set/--profile as for `rhx run`), a trace artifact folder of the cache\n\
(.rhx/cache/objects/<ab>/<key>/; a report lists the keys under Provenance → cache keys, and `rhx plan`'s short\n\
key works as a glob: .rhx/cache/objects/3f/3f9c*/) or a JSONL file written by `rhx trace --out`.\n\n\
The page needs no server and fetches nothing: the data is inlined. Pick a sample, step with the slider or\n\
← / →, click a head of the layer × head grid (H_t coloured, darker = higher attention weight) to highlight\n\
its attention argmax (and top-k, when captured) in the prompt, where the needle is marked. The URL keeps\n\
the view: page.html#sample=ID&step=T&head=L:H opens there.\n\n\
EXAMPLES:\n  \
rhx trace --prompts experiments/prompts/niah_smoke.jsonl --out out/niah.jsonl\n  \
rhx view out/niah.jsonl --out out/niah.html                    # shape read from smollm2-135m-instruct's config\n  \
rhx view out/llama.jsonl --model ~/models/Llama-3.1-8B-Instruct --out llama.html\n  \
rhx view experiments/niah_smoke.rhx base --out base.html       # node `base` of a run experiment\n  \
rhx view .rhx/cache/objects/3f/3f9c…/ --out base.html --samples 5   # a trace of `rhx run`, first 5 samples\n  \
firefox 'out/niah.html#sample=niah_0&step=3&head=12:4'"
)]
pub struct ViewArgs {
    /// An experiment file (.rhx, then NODE), a trace artifact folder (`.rhx/cache/objects/<ab>/<key>/`)
    /// or a `rhx trace --out` JSONL file
    trace: PathBuf,
    /// The trace node of the experiment to view
    node: Option<String>,
    /// The HTML page to write (atomically: a temporary file renamed at the end)
    #[arg(long)]
    out: PathBuf,
    /// For a JSONL file: the model it was traced with (a name, .gguf file or HF folder), for its
    /// layer × head shape; only its config is read. Default: `rhx trace`'s default model
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// Only the first N samples (a smaller page)
    #[arg(long)]
    samples: Option<usize>,
    /// Override a parameter of the experiment, as for `rhx run` (repeatable)
    #[arg(long = "set", value_name = "PATH=VALUE")]
    overrides: Vec<String>,
    /// The experiment's profile, as for `rhx run`
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    #[command(flatten)]
    cache: CacheDir,
}

pub fn run(a: ViewArgs) -> Result<ExitCode> {
    // Experiments and cache folders are named as `rhx export` names them; a JSONL file keeps
    // the viewer's own reader (it leaves failed prompts out, with a note).
    let (name, info, lines) = if a.trace.is_file() && a.node.is_none() && a.trace.extension().is_none_or(|e| e != "rhx") {
        read_jsonl(&a.trace, &a.model)?
    } else {
        let program = ProgramArgs { file: a.trace.clone(), overrides: a.overrides.clone(), profile: a.profile.clone() };
        match artifact_arg::resolve(&a.trace, a.node.as_deref(), Some(&program), &a.cache.cache)? {
            Named::Cached { artifact, node } => read_artifact(&artifact, &a.trace, node.as_deref())?,
            Named::TraceFile { path, .. } => read_jsonl(&path, &a.model)?,
        }
    };
    if lines.is_empty() {
        bail!("{}: no traced samples", a.trace.display());
    }
    let view = TraceView::new(&name, &info, &lines, a.samples).with_context(|| format!("{}", a.trace.display()))?;
    let no_text = view.samples.iter().filter(|s| s.prompt.is_empty()).count();
    let html = crate::report::render_trace_page(std::slice::from_ref(&view), &format!("Trace {name}: {}", info.model))?;
    super::trace::write_atomic(&a.out, |w| Ok(w.write_all(html.as_bytes())?))?;
    eprintln!("wrote {} ({} of {} samples, {} layers × {} heads, {:.0} kB)", a.out.display(), view.samples.len(), view.total_samples, info.layers, info.heads, html.len() as f64 / 1024.0);
    if no_text > 0 {
        eprintln!("note: {no_text} sample(s) have no prompt text (traced before rhx recorded `prompt_pieces`): the page shows their positions only");
    }
    Ok(ExitCode::SUCCESS)
}

/// A trace artifact of the cache (verified by `artifact_arg::resolve`); `named` is what the
/// command line called it.
fn read_artifact(art: &Artifact, named: &Path, node: Option<&str>) -> Result<(String, TraceInfo, Vec<TraceLine>)> {
    let what = match node {
        Some(n) => format!("node `{n}` of {}", named.display()),
        None => named.display().to_string(),
    };
    if art.file("trace.jsonl").is_none() {
        bail!("{what}: not a trace (kind `{}`, no trace.jsonl)", art.manifest.kind);
    }
    let info = trace::read_info(art).with_context(|| what.clone())?;
    let lines = trace::read_lines(art).with_context(|| what.clone())?;
    let label = match node {
        Some(n) => format!("{n} ({})", art.key.short()),
        None => format!("{} ({})", info.dataset, art.key.short()),
    };
    Ok((label, info, lines))
}

/// A `rhx trace --out` file: one trace line per prompt (error lines of prompts that could not be
/// traced are left out, with a note); the model's shape from its config.
fn read_jsonl(path: &Path, model: &str) -> Result<(String, TraceInfo, Vec<TraceLine>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = Vec::new();
    let mut errors = 0;
    for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(l).with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        if v.get("error").is_some() && v.get("steps").is_none() {
            errors += 1;
            continue;
        }
        lines.push(serde_json::from_value::<TraceLine>(v).with_context(|| format!("{}:{}: not a trace line", path.display(), i + 1))?);
    }
    if errors > 0 {
        eprintln!("note: {errors} line(s) of {} are prompts `rhx trace` could not trace; left out", path.display());
    }
    let cfg = model_config(model).with_context(|| format!("reading the shape of model `{model}` (--model)"))?;
    let info = TraceInfo { model: model.to_string(), layers: cfg.num_layers, heads: cfg.num_heads, samples: lines.len(), ..Default::default() };
    let name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    Ok((name, info, lines))
}

/// A model's config without its weights.
fn model_config(spec: &str) -> Result<ModelConfig> {
    let path: PathBuf = loader::resolve(spec)?;
    Ok(if path.is_file() { ModelConfig::from_gguf(&GgufFile::open(&path)?)? } else { ModelConfig::from_hf_json(&path.join("config.json"))? })
}
