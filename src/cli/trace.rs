//! `rhx trace`: bring-your-own prompts → per-step retrieval heads, one JSON line per prompt.
use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::data::prompts::{prepare_line, PreparedPrompt};
use crate::analysis::metrics::uuid_accuracy;
use crate::artifact::trace::TraceStep;
use crate::ops::trace::generate::{base_step, needle_mask, trace_line};
use crate::engine::device::{self, DType, DeviceRequest};
use crate::engine::generate::{default_batch_size, generate_with, EngineOptions, FixedMask, GenerateOptions, MaskScope, Prompt, Reasoning};
use crate::engine::loader;
use crate::engine::model::{HiddenSite, MaskMode};
use crate::report::{Cell, Column, DatasetProvenance, FileDigest, ModelProvenance, Provenance, Report, Row, Section, Table};

#[derive(Args)]
#[command(
    about = "Generate greedily for each prompt of a JSONL file and record the per-step retrieval heads",
    after_help = "INPUT (one JSON object per line):\n  \
{\"id\": \"a\", \"messages\": [{\"role\": \"user\", \"content\": \"...\"}], \"needle\": \"The magic word is ...\"}\n  \
{\"id\": \"b\", \"text\": \"raw prompt, no chat template\", \"needle\": \"...\"}\n  \
{\"id\": \"c\", \"messages\": [...], \"needles\": [\"first fact.\", \"second fact.\"]}   (several needle spans)\n\n\
OUTPUT (one JSON object per input line, same order):\n  \
{\"id\", \"answer\", \"prompt_tokens\", \"needle_span\": [token positions], \"tokens\": [generated ids], \"pieces\", \"text\",\n   \
\"stopped_by_eos\", \"steps\": [{\"token\": id, \"heads\": [[layer, head], ...], \"head_weights\", \"argmax\"}]}\n  \
  with --capture reasoning each step also has \"reasoning\": [[S for each head] for each layer] (Eq. 2)\n  \
(the trace format of `rhx run`, src/artifact/trace.rs)\n  \
A line that cannot be traced gives {\"id\", \"line\", \"error\"} and the run exits with status 1.\n\n\
A head (l, h) is a retrieval head at step t (Eq. 1 of \"Retrieval Heads are Dynamic\") when the argmax of its\n\
attention row lies in the needle span and the prompt token there equals the token generated at step t.\n\n\
EXAMPLES:\n  \
rhx trace --model smollm2-135m-instruct --prompts experiments/prompts/niah_smoke.jsonl --out out/niah.jsonl\n  \
rhx trace --model ~/models/Llama-3.1-8B-Instruct --device cuda --dtype bf16 --prompts p.jsonl --out o.jsonl\n  \
rhx trace --model meta-llama/Llama-3.1-8B-Instruct --revision main --prompts p.jsonl --out o.jsonl   (local Hub cache only)\n  \
rhx trace --model m.gguf --prompts p.jsonl --out o.jsonl --mask-heads 12:3,15:0 --mask-mode uniform-attention\n  \
rhx trace --prompts hotpot.jsonl --out o.jsonl --capture reasoning --sink 4 --local 32"
)]
pub struct TraceArgs {
    /// A .gguf file, an HF model directory (config.json + safetensors + tokenizer.json), or a known name
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// With a Hub id (`--model owner/name`, read from the local Hub cache, never downloaded): a
    /// branch or tag under refs/, or a 40-digit commit hash (default: main)
    #[arg(long)]
    revision: Option<String>,
    /// Input JSONL file
    #[arg(long)]
    prompts: PathBuf,
    /// Output JSONL file (written atomically: a temporary file renamed at the end)
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 40)]
    max_new_tokens: usize,
    /// auto | cpu | cuda | cuda:N
    #[arg(long, default_value = "auto")]
    device: DeviceRequest,
    /// f32 | bf16 | f16
    #[arg(long, default_value = "f32")]
    dtype: DType,
    /// Prompts decoded together: each prompt is prefilled alone, decoding steps are batched
    /// (left padding). Results equal one-by-one generation; per-sample time drops because the
    /// weights are read once per step for the whole batch. Default: on CUDA the largest batch
    /// whose KV cache fits in free GPU memory (longest prompt + max new tokens), on the CPU 1.
    #[arg(long)]
    batch_size: Option<usize>,
    /// CPU threads for libtorch (default: libtorch's choice). Use 1 on a busy shared machine.
    #[arg(long)]
    threads: Option<i32>,
    /// Heads to silence at every decoding step, as layer:head pairs (e.g. 12:3,15:0)
    #[arg(long, value_delimiter = ',')]
    mask_heads: Vec<String>,
    #[arg(long, value_enum, default_value_t = CliMaskMode::ZeroOutput)]
    mask_mode: CliMaskMode,
    /// steps: only the decoding steps' queries; all-positions: the prompt too
    #[arg(long, value_enum, default_value_t = CliMaskScope::Steps)]
    mask_scope: CliMaskScope,
    /// Also write each step's per-head attention weight at the argmax (`argmax_weight`) and the
    /// final hidden state (`hidden`: one vector per captured site)
    #[arg(long)]
    full: bool,
    /// Extra captures: `reasoning` adds Eq. 2's score of every head to each step
    /// (`"reasoning": [[S for each head] for each layer]`; needs `needle` or `needles`)
    #[arg(long, value_enum, value_delimiter = ',')]
    capture: Vec<CliCapture>,
    /// Eq. 2: the first N tokens of a prompt (attention sinks) are left out of the denominator
    #[arg(long, default_value_t = Reasoning::default().sink)]
    sink: usize,
    /// Eq. 2: the last N keys (the query included) are left out of the denominator
    #[arg(long, default_value_t = Reasoning::default().local)]
    local: usize,
    /// Write a summary (per prompt: tokens, answer found against the line's `answer`, retrieval
    /// heads; provenance) through rhx's report renderer: a `.md` path gets one Markdown file,
    /// any other path a report folder (report.md, report.html, report.json, tables/*.csv)
    #[arg(long)]
    report: Option<PathBuf>,
    /// No progress bar
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CliCapture {
    /// Eq. 2: attention mass on the needle ÷ mass outside the sink and the local window
    Reasoning,
}

#[derive(Clone, Copy, ValueEnum)]
enum CliMaskMode {
    ZeroOutput,
    UniformAttention,
}

#[derive(Clone, Copy, ValueEnum)]
enum CliMaskScope {
    Steps,
    AllPositions,
}

fn parse_head(s: &str) -> Result<(usize, usize)> {
    let (l, h) = s.trim().split_once(':').with_context(|| format!("`{s}`: a head is written layer:head, e.g. 12:3"))?;
    Ok((l.parse().with_context(|| format!("`{s}`: layer `{l}` is not a number"))?, h.parse().with_context(|| format!("`{s}`: head `{h}` is not a number"))?))
}

pub fn run(args: TraceArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let started_at = crate::cache::rfc3339_now();
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    if args.batch_size == Some(0) {
        bail!("--batch-size must be at least 1");
    }
    let mask_heads = args.mask_heads.iter().map(|s| parse_head(s)).collect::<Result<Vec<_>>>()?;
    let dev = device::resolve(args.device)?;
    if args.device == DeviceRequest::Auto {
        if let Err(why) = device::cuda_status() {
            if !args.quiet {
                eprintln!("note: running on the CPU: {why}");
            }
        }
    }
    let input = std::fs::File::open(&args.prompts).with_context(|| format!("cannot open prompts file {}", args.prompts.display()))?;
    let t_load = Instant::now();
    let lm = loader::load_at(&args.model, args.revision.as_deref(), dev, args.dtype.kind()).with_context(|| format!("cannot load model `{}`", args.model))?;
    if let (Some(commit), false) = (&lm.revision, args.quiet) {
        eprintln!("note: {} from the local Hub cache, revision {commit}", args.model);
    }
    let load_s = t_load.elapsed().as_secs_f64();
    let cfg = &lm.model.config;
    let extra: BTreeMap<String, serde_json::Value> = [("enable_thinking".to_string(), json!(false))].into();

    // Parse every line first so that errors are reported before the (long) generation.
    let mut lines: Vec<Result<PreparedPrompt, crate::data::prompts::LineError>> = Vec::new();
    for (i, line) in std::io::BufReader::new(input).lines().enumerate() {
        let line = line.with_context(|| format!("{}: read error at line {}", args.prompts.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        lines.push(prepare_line(&line, i + 1, &lm.tokenizer, &extra));
    }
    let fixed_mask = (!mask_heads.is_empty()).then(|| FixedMask {
        heads: mask_heads.clone(),
        per_prompt: vec![],
        mode: match args.mask_mode {
            CliMaskMode::ZeroOutput => MaskMode::ZeroOutput,
            CliMaskMode::UniformAttention => MaskMode::UniformAttention,
        },
        scope: match args.mask_scope {
            CliMaskScope::Steps => MaskScope::Steps,
            CliMaskScope::AllPositions => MaskScope::AllPositions,
        },
    });
    let opts = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        eos_ids: lm.tokenizer.eos_ids.iter().chain(cfg.eos_token_ids.iter()).copied().collect(),
        argmax: true,
        top_k: 0,
        hidden: if args.full { vec![HiddenSite::Final] } else { vec![] },
        fixed_mask,
        top_logits: 0,
        reasoning: args.capture.contains(&CliCapture::Reasoning).then_some(Reasoning { sink: args.sink, local: args.local }),
    };

    if opts.reasoning.is_some() {
        // Eq. 2 has no numerator without a needle: such a line is an error of its own.
        for l in lines.iter_mut() {
            if let Ok(p) = l {
                if p.needle_span.is_empty() {
                    *l = Err(crate::data::prompts::LineError { line: p.line, id: p.id.clone(), message: "`--capture reasoning` needs a `needle` or `needles`".into() });
                }
            }
        }
    }
    let ok: Vec<&PreparedPrompt> = lines.iter().filter_map(|l| l.as_ref().ok()).collect();
    let answers = read_answers(&args.prompts);
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(ok.len() as u64) };
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} prompts, ETA {eta} {msg}").unwrap());
    let mut results: BTreeMap<usize, serde_json::Value> = BTreeMap::new();
    let mut summary = Vec::new();
    let mut gen_s = 0.0;
    let longest = ok.iter().map(|p| p.ids.len()).max().unwrap_or(1);
    // As an experiment's `generate`: on CUDA as many as fit, on the CPU one at a time (batching
    // gains nothing there and holds a padded batch in memory).
    let batch_size = args.batch_size.unwrap_or_else(|| default_batch_size(&lm.model, longest, args.max_new_tokens, 1));
    if !args.quiet && args.batch_size.is_none() {
        eprintln!("note: batch size {batch_size} (automatic; --batch-size overrides)");
    }
    let mut decode_loops = std::collections::BTreeSet::new();
    for chunk in ok.chunks(batch_size) {
        let prompts: Vec<Prompt> = chunk.iter().map(|p| Prompt { ids: p.ids.clone(), needle: p.needle_span.clone(), ..Default::default() }).collect();
        let t = Instant::now();
        let (gens, stats) = generate_with(&lm.model, &prompts, &opts, EngineOptions::process()?, None, |s| bar.set_message(format!("step {}", s + 1)))?;
        decode_loops.insert(stats.decode_loop());
        gen_s += t.elapsed().as_secs_f64();
        for (p, g) in chunk.iter().zip(gens) {
            // The same trace line as an experiment's `generate` writes (artifact::trace).
            let needle = needle_mask(p);
            let steps: Vec<TraceStep> = g
                .steps
                .iter()
                .map(|s| {
                    let mut v = base_step(s, &crate::artifact::trace::HeadRule::CopyPaste, cfg.num_heads, &p.ids, &needle);
                    if args.full {
                        v.argmax_weight = s.argmax_weight.iter().map(|&w| f64::from(w)).collect();
                    }
                    v
                })
                .collect();
            let line = trace_line(p, answers.get(&p.line).cloned(), json!({}), &g, &lm.tokenizer, steps);
            let n_heads: usize = line.steps.iter().map(|s| s.heads.len()).sum();
            summary.push((p.id.clone(), p.ids.len(), g.tokens.len(), n_heads, line.text.clone(), p.line));
            results.insert(p.line, serde_json::to_value(&line)?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let mut n_err = 0;
    for l in &lines {
        if let Err(e) = l {
            eprintln!("error: {}: {e}", args.prompts.display());
            results.insert(e.line, json!({"id": e.id, "line": e.line, "error": e.message}));
            n_err += 1;
        }
    }
    write_atomic(&args.out, |w| {
        for v in results.values() {
            serde_json::to_writer(&mut *w, v)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })?;
    if !args.quiet {
        eprintln!(
            "traced {} prompt(s) on {} ({}, {} decoding) in {:.1} s ({:.2} s per prompt; model load {:.1} s) → {}",
            ok.len(),
            device::describe(dev),
            args.dtype,
            decode_loops.into_iter().collect::<Vec<_>>().join(" + "),
            gen_s,
            gen_s / ok.len().max(1) as f64,
            load_s,
            args.out.display()
        );
        for (id, pt, nt, nh, text, line) in &summary {
            let verdict = match answers.get(line) {
                Some(a) if uuid_accuracy(text, a) == 1.0 => " ✓ answer",
                Some(_) => " ✗ answer",
                None => "",
            };
            eprintln!("  {id}: {pt} prompt tokens, {nt} generated, {nh} retrieval-head activations{verdict}");
        }
    }
    if let Some(path) = &args.report {
        let report = trace_report(&args, &lm, dev, &summary, &answers, started_at, started.elapsed().as_secs_f64());
        write_trace_report(path, &report)?;
    }
    Ok(if n_err > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `answer` of each line, by line number, for the summary's accuracy column.
fn read_answers(path: &std::path::Path) -> BTreeMap<usize, String> {
    let Ok(text) = std::fs::read_to_string(path) else { return BTreeMap::new() };
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v.get("answer")?.as_str().map(|a| (i + 1, a.to_string()))))
        .collect()
}

type SummaryRow = (String, usize, usize, usize, String, usize);

/// The `--report` of a trace, in the report data model (`src/report`) that experiments use:
/// rendered to Markdown for a `.md` path, or written as a whole report folder (Markdown, HTML,
/// `report.json`, CSV) otherwise.
fn trace_report(args: &TraceArgs, lm: &loader::LoadedModel, dev: tch::Device, rows: &[SummaryRow], answers: &BTreeMap<usize, String>, started_at: String, wall_s: f64) -> Report {
    let cfg = &lm.model.config;
    let (mut correct, mut with_answer) = (0, 0);
    let table_rows: Vec<Row> = rows
        .iter()
        .map(|(id, pt, nt, nh, text, line)| {
            let found = match answers.get(line) {
                Some(a) => {
                    with_answer += 1;
                    let hit = uuid_accuracy(text, a) == 1.0;
                    correct += usize::from(hit);
                    if hit { "yes" } else { "no" }
                }
                None => "–",
            };
            let shown: String = text.chars().take(60).collect::<String>().replace('\n', " ");
            let cells = vec![Cell::num(*pt as f64), Cell::num(*nt as f64), Cell::text(found), Cell::num(*nh as f64), Cell::num(*nh as f64 / (*nt).max(1) as f64), Cell::text(shown)];
            Row::new(id.clone(), cells)
        })
        .collect();
    let model_file = lm.path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
    let mut text = format!(
        "Model `{model_file}` ({:?}, {} layers × {} query heads, {} KV heads), greedy decoding, at most {} new tokens.",
        cfg.arch, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, args.max_new_tokens
    );
    if with_answer > 0 {
        text += &format!("\n\nAnswer found in the output (substring): **{correct} / {with_answer}**.");
    }
    let table = Table {
        id: "generations".into(),
        caption: "Per prompt: its tokens, the tokens generated, whether the answer appears in the output, and the Eq. 1 retrieval heads summed over the steps".into(),
        row_header: "id".into(),
        columns: vec![
            Column::new("prompt tokens").precision(0),
            Column::new("generated").precision(0),
            Column::new("answer found"),
            Column::new("retrieval-head activations").precision(0),
            Column::new("mean heads / step").precision(2),
            Column::new("output"),
        ],
        rows: table_rows,
        ..Default::default()
    };
    let mut provenance = Provenance::current();
    provenance.started = started_at;
    provenance.wall_time_s = wall_s;
    provenance.device = device::describe(dev);
    provenance.models = vec![ModelProvenance {
        name: args.model.clone(),
        revision: lm.revision.clone(),
        files: lm.files.iter().map(|(f, h)| FileDigest { path: f.display().to_string(), sha256: h.clone() }).collect(),
    }];
    if let Ok(h) = loader::sha256_file(&args.prompts) {
        provenance.datasets = vec![DatasetProvenance { name: args.prompts.display().to_string(), sha256: h }];
    }
    provenance.settings = [
        ("dtype".to_string(), args.dtype.to_string()),
        ("max_new_tokens".to_string(), args.max_new_tokens.to_string()),
        ("mask_heads".to_string(), args.mask_heads.join(",")),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect();
    Report {
        title: format!("rhx trace: {}", args.prompts.display()),
        subtitle: None,
        sections: vec![Section { title: "Generations".into(), text, tables: vec![table], figures: vec![] }],
        provenance,
        traces: vec![],
    }
}

/// Writes the `--report`: one Markdown file for a `.md` path, else a report folder.
fn write_trace_report(path: &std::path::Path, report: &Report) -> Result<()> {
    if path.extension().is_some_and(|e| e == "md") {
        let md = crate::report::render_markdown_alone(report)?;
        write_atomic(path, |w| Ok(w.write_all(md.as_bytes())?))
    } else {
        crate::report::write_report(report, path)?;
        Ok(())
    }
}

/// Writes through a temporary file in the same directory and renames it into place, so an
/// interrupted run never leaves a half-written output.
pub fn write_atomic(path: &std::path::Path, f: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create directory {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("out"), std::process::id()));
    let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = BufWriter::new(file);
    let res = f(&mut w).and_then(|_| w.flush().map_err(Into::into));
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("writing {}", path.display())));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", path.display()))?;
    Ok(())
}
