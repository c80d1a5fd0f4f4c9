//! `rhx bench`: decode and prefill speed, memory and context reach of the capture engine on a
//! randomly initialised model of a published shape, against two references run on the same shape
//! and the same device in the same command: HF transformers (eager attention,
//! `output_attentions=True`, the reference the paper used) and a plain PyTorch decode loop with
//! a static KV cache and the step captured as a CUDA graph (scripts/bench/torch_graph_reference.py,
//! the headline ratio), and against the memory-bandwidth limit.
use std::io::{BufRead, BufReader, Write};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use rand_mt::Mt64;
use tch::Device;

use crate::engine::config::ModelConfig;
use crate::engine::presets;
use crate::engine::cuda;
use crate::engine::device::{self, DType, DeviceRequest};
use crate::engine::generate::{auto_batch_size, generate_with, DecodeMode, EngineOptions, GenStats, GenerateOptions, Prompt, Reasoning};
use crate::engine::model::Model;
use crate::engine::weights;

#[derive(Args)]
#[command(
    about = "Benchmark capture-enabled generation on a random model of a published shape, against HF transformers eager and a CUDA-graph PyTorch loop",
    after_help = "Every rhx number is greedy generation with per-step Eq. 1 capture on (each head's argmax position and \
weight, reduced on the device), EOS ignored, random token prompts. The HF reference runs first, in a child Python \
process (transformers, eager attention, generate(output_attentions=True) + the same per-step argmax), then the torch \
graph reference, in another (plain PyTorch, same shape and random bf16 weights, static KV cache, SDPA prefill, the \
decode step with the same per-step capture reduced on the GPU captured once as a CUDA graph and replayed; at batch 1 \
at each --contexts and at --torch-batch-sizes at --batch-context), then rhx, so each uses the whole GPU in turn. \
rhx ÷ torch graph is the headline ratio.\n\nEXAMPLE (one H200):\n  rhx bench --shape llama-3.1-8b --dtype bf16 --out benchmarks/gpu.md\n\
\nTORCH GRAPH REFERENCE ONLY AGAINST rhx (no HF, batch 1 at 1024 and 4096 and B = 16, 64 and the largest that fits, \
at 4096):\n  rhx bench --shape llama-3.1-8b --dtype bf16 --no-hf --modes graph --torch-batch-sizes 1,16,64,auto \
--batch-sizes 16,64,auto --long-context 0 --out benchmarks/gpu_torch_graph.md\n\nKERNEL \
TIMELINE (no profiler needed): RHX_TIMELINE=tl.csv rhx bench ... --contexts 4096 --modes graph builds the fused \
kernels with per-block timestamps (about 1.4% slower) and writes the last steps of the last batch-1 run; \
scripts/bench/timeline.py tl.csv prints where a decode step's time goes, launch by launch (the sweep's last \
batch goes to tl.sweep.csv).\n\nWIDE STEPS ON THE TENSOR-CORE GEMM (bf16/f16, Hopper; default: cuBLAS above 8 rows) \
against cuBLAS, B = 16 and 64 at 4096:\n  RHX_WGEMM=128 rhx bench --no-hf --no-torch-ref --modes graph --contexts 128 \
--long-context 0 --batch-sizes 16,64\n\nEQ. 2 COST: --capture reasoning runs \
every batch-1 and batch-sweep measurement twice, Eq. 1 alone and Eq. 1 + Eq. 2 (on a needle span of --needle-fraction of \
each prompt, sink 4, local 32), alternately --repeats times, and adds a table of their decode rates and ratio:\n  rhx bench \
--shape llama-3.1-8b --dtype bf16 --no-hf --modes graph --capture reasoning --repeats 3 --new-tokens 256 \
--batch-sizes 4 --long-context 0"
)]
pub struct BenchArgs {
    /// Model shape: llama-3.1-8b, llama-3.2-3b, qwen3-8b, llama-2-13b, phi-4-mini, smollm2-135m
    #[arg(long, default_value = "llama-3.1-8b")]
    shape: String,
    /// Keep only the first N layers (quick checks; the table then says so)
    #[arg(long)]
    layers: Option<usize>,
    #[arg(long, default_value = "cuda")]
    device: DeviceRequest,
    #[arg(long, default_value = "bf16")]
    dtype: DType,
    /// Prompt lengths for batch-1 decoding
    #[arg(long, value_delimiter = ',', default_value = "1024,4096")]
    contexts: Vec<usize>,
    /// Tokens generated per decode measurement
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Decode loops compared at batch 1 (eager = the reference loop; static; graph = CUDA graph;
    /// static and graph run the fused kernels where they apply, static-ops and graph-ops the
    /// same steps on libtorch ops). The last one runs the batch sweep and the long context.
    #[arg(long, value_delimiter = ',', default_value = "eager,static,graph-ops,graph")]
    modes: Vec<String>,
    /// Prompt length of the batch sweep
    #[arg(long, default_value_t = 4096)]
    batch_context: usize,
    /// Batch sizes of the sweep; `auto` = the largest that fits in free memory
    #[arg(long, value_delimiter = ',', default_value = "16,64,auto")]
    batch_sizes: Vec<String>,
    /// Use this instead of the automatic batch size
    #[arg(long)]
    batch_size: Option<usize>,
    /// NIAH-sized sample: prompt length and generated tokens, batch 1, timed end to end
    #[arg(long, default_value_t = 4096)]
    niah_context: usize,
    #[arg(long, default_value_t = 32)]
    niah_new_tokens: usize,
    /// Long-context attempt (batch 1, per-step capture); 0 skips it; default: the shape's
    /// largest position minus the new tokens (131056 for Llama-3.1-8B)
    #[arg(long)]
    long_context: Option<usize>,
    #[arg(long, default_value_t = 16)]
    long_new_tokens: usize,
    /// Skip the HF transformers reference
    #[arg(long)]
    no_hf: bool,
    /// HF prompt lengths at batch 1 (the last ones are expected to run out of memory)
    #[arg(long, value_delimiter = ',', default_value = "1024,4096,8192")]
    hf_contexts: Vec<usize>,
    /// HF batch sizes tried at --batch-context
    #[arg(long, value_delimiter = ',', default_value = "2,4")]
    hf_batch_sizes: Vec<usize>,
    #[arg(long, default_value_t = 32)]
    hf_new_tokens: usize,
    /// Python with torch + transformers (default /opt/torch/.venv/bin/python if present, else .venv/bin/python)
    #[arg(long)]
    python: Option<PathBuf>,
    #[arg(long, default_value = "scripts/bench/hf_reference_gpu.py")]
    hf_script: PathBuf,
    /// Skip the plain PyTorch CUDA-graph reference (the headline ratio)
    #[arg(long)]
    no_torch_ref: bool,
    /// The plain PyTorch CUDA-graph reference (run with --python)
    #[arg(long, default_value = "scripts/bench/torch_graph_reference.py")]
    torch_script: PathBuf,
    /// Batch sizes of the torch graph reference at --batch-context (`auto` = the largest that
    /// fits); it also runs batch 1 at each of --contexts, all with --new-tokens
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,auto")]
    torch_batch_sizes: Vec<String>,
    /// Device memory bandwidth in GB/s for the limit (default from the device name: H200 4800, H100 3350)
    #[arg(long)]
    bandwidth_gbs: Option<f64>,
    /// Write the tables as Markdown here
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also measure with this capture on top of Eq. 1, in the same command: `reasoning` (Eq. 2)
    #[arg(long, value_enum)]
    capture: Option<BenchCapture>,
    /// Eq. 2's synthetic needle: this fraction of each prompt, a contiguous span centred at half
    /// its length
    #[arg(long, default_value_t = 0.1)]
    needle_fraction: f64,
    /// With --capture: measurements of each (context, batch, loop) per capture, alternating
    #[arg(long, default_value_t = 1)]
    repeats: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BenchCapture {
    /// Eq. 2 (reasoning score) of every head at every step, sink 4, local 32
    Reasoning,
}

/// Label of the runs with Eq. 2 on (`--capture reasoning`), after the label of the same run
/// without it.
const EQ2: &str = " + Eq. 2";

#[derive(Debug, Clone)]
struct Run {
    label: String,
    context: usize,
    batch: usize,
    mode: String,
    /// Err: out of memory or another failure, as a short sentence.
    result: std::result::Result<Measured, String>,
}

#[derive(Debug, Clone)]
struct Measured {
    stats: GenStats,
    total_s: f64,
    peak_gib: Option<f64>,
    /// Kept for batch-1 runs (agreement between decode loops).
    gens: Vec<crate::engine::generate::Generation>,
}

impl Measured {
    /// Tokens after the first, over their time (the HF script counts the same way); the
    /// graph capture at step 1 is included.
    fn decode_tok_s(&self) -> f64 {
        self.stats.decode_tok_s()
    }
    /// Without the capture: the steady state of a long generation.
    fn steady_tok_s(&self) -> f64 {
        (self.stats.row_steps - self.stats.first_step_rows) as f64 / (self.stats.decode_s - self.stats.first_step_s - self.stats.capture_after_first_s)
    }
    fn prefill_tok_s(&self, context: usize, batch: usize) -> f64 {
        (batch * context.saturating_sub(1)) as f64 / self.stats.prefill_s
    }
}

/// One run of a reference script (`HFRESULT` / `TORCHRESULT` lines, the same fields); `batch` is
/// the one that ran (for the torch reference's `auto`, the largest that fitted; 0 if none did).
#[derive(Debug, Clone, serde::Deserialize)]
struct RefRun {
    name: String,
    context: usize,
    #[serde(deserialize_with = "batch_or_zero")]
    batch: usize,
    status: String,
    prefill_s: Option<f64>,
    decode_tok_s: Option<f64>,
    total_s: Option<f64>,
    peak_gib: f64,
}

/// A batch size, or 0 where the script could not pick one (`"auto"` that failed).
fn batch_or_zero<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    let v: serde_json::Value = serde::Deserialize::deserialize(d)?;
    Ok(v.as_u64().map(|b| b as usize).unwrap_or(0))
}

fn default_python() -> PathBuf {
    let opt = PathBuf::from("/opt/torch/.venv/bin/python");
    if opt.exists() {
        opt
    } else {
        PathBuf::from(".venv/bin/python")
    }
}

fn gib(b: i64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// Bytes read from device memory per decoding step at batch 1, context 0: every weight except
/// the embedding table (one row per token), the LM head included.
fn weight_bytes(c: &ModelConfig, elt: usize) -> f64 {
    let (d, hd, nq, nkv, ff, v) = (c.hidden_size, c.head_dim, c.num_heads, c.num_kv_heads, c.intermediate_size, c.vocab_size);
    let per_layer = d * nq * hd * 2 + 2 * d * nkv * hd + 3 * d * ff + 2 * d;
    ((c.num_layers * per_layer + d + v * d) * elt) as f64
}

fn kv_bytes_per_token(c: &ModelConfig, elt: usize) -> f64 {
    (c.num_layers * 2 * c.num_kv_heads * c.head_dim * elt) as f64
}

/// Civil date (UTC) of a Unix time, for the report header.
fn utc_date(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let (z, tod) = (days + 719468, secs % 86400);
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", tod / 3600, (tod % 3600) / 60)
}

/// Random-token prompts, each with a needle span of `needle_fraction` of its tokens (at least
/// one) centred at half its length (read only by Eq. 2).
fn random_prompts(rng: &mut Mt64, n: usize, len: usize, vocab: usize, needle_fraction: f64) -> Vec<Prompt> {
    let span = ((len as f64 * needle_fraction).round() as usize).clamp(1, len.max(1));
    let start = (len - span.min(len)) / 2;
    (0..n).map(|_| Prompt { ids: (0..len).map(|_| (rng.next_u64() % vocab as u64) as u32).collect(), needle: (start..start + span).filter(|&i| i < len).collect(), ..Default::default() }).collect()
}

/// A decode loop as the benchmark names it: the engine's mode, with or without fused kernels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Loop {
    decode: DecodeMode,
    fused: bool,
}

impl Loop {
    fn name(&self) -> String {
        let m = format!("{:?}", self.decode).to_lowercase();
        if self.fused || self.decode == DecodeMode::Eager {
            m
        } else {
            format!("{m}-ops")
        }
    }
}

fn parse_mode(s: &str) -> Result<Loop> {
    let (m, fused) = match s.strip_suffix("-ops") {
        Some(m) => (m, false),
        None => (s, true),
    };
    let decode = match m {
        "eager" => DecodeMode::Eager,
        "static" => DecodeMode::Static,
        "graph" => DecodeMode::Graph,
        "auto" => DecodeMode::Auto,
        _ => bail!("unknown decode loop `{s}` (eager, static, graph, auto; static-ops, graph-ops: without the fused kernels)"),
    };
    Ok(Loop { decode, fused })
}

/// One timed generation (Eq. 1 capture, and Eq. 2 with `eq2`); an out-of-memory error (a
/// libtorch panic) becomes `Err`.
fn measure(model: &Model, prompts: &[Prompt], new_tokens: usize, mode: Loop, eq2: bool) -> std::result::Result<Measured, String> {
    let dev = model.device;
    let _ = cuda::empty_cache();
    let _ = cuda::reset_peak(dev);
    let opts = GenerateOptions { max_new_tokens: new_tokens, eos_ids: vec![], argmax: true, reasoning: eq2.then(Reasoning::default), ..Default::default() };
    let eng = EngineOptions { decode: mode.decode, fused_kernels: mode.fused, ..EngineOptions::process().map_err(|e| e.to_string())?.clone() };
    let t0 = Instant::now();
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| generate_with(model, prompts, &opts, &eng, None, |_| {})));
    let total_s = t0.elapsed().as_secs_f64();
    let peak_gib = cuda::memory_stats(dev).ok().map(|s| gib(s.peak_allocated));
    let _ = cuda::empty_cache();
    match r {
        Ok(Ok((gens, stats))) => Ok(Measured { stats, total_s, peak_gib, gens: if prompts.len() == 1 { gens } else { vec![] } }),
        Ok(Err(e)) => Err(short_error(&e.to_string())),
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            Err(short_error(&msg))
        }
    }
}

fn short_error(msg: &str) -> String {
    if msg.contains("out of memory") {
        "out of memory".into()
    } else {
        msg.lines().next().unwrap_or("failed").chars().take(160).collect()
    }
}

/// Runs a reference script on a SPEC file in a child Python process: `{tag}RESULT {json}` lines
/// are its results, the first `{tag}INFO` line describes it, `{tag}CHECK` lines (a self-check)
/// are added to that description; everything is echoed to stderr.
fn run_reference<T: serde::de::DeserializeOwned>(python: &std::path::Path, script: &std::path::Path, extra_args: &[&str], spec: &serde_json::Value, tag: &str, label: &str, show: impl Fn(&T) -> String) -> Result<(Vec<T>, String)> {
    let spec_path = std::env::temp_dir().join(format!("rhx-bench-{}-{}.json", tag.to_lowercase(), std::process::id()));
    std::fs::write(&spec_path, serde_json::to_vec(spec)?)?;
    let n = spec["runs"].as_array().map(|r| r.len()).unwrap_or(0);
    eprintln!("bench: {label} reference: {} {} ({n} runs)", python.display(), script.display());
    let mut child = Command::new(python)
        .arg(script)
        .arg(&spec_path)
        .args(extra_args)
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {} (use --python)", python.display()))?;
    let (result_tag, info_tag, check_tag) = (format!("{tag}RESULT "), format!("{tag}INFO "), format!("{tag}CHECK "));
    let mut results = Vec::new();
    let mut info = String::new();
    let mut checks = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line?;
        if let Some(j) = line.strip_prefix(&result_tag) {
            // A line that does not parse is reported and left out; the other runs still count.
            match serde_json::from_str::<T>(j) {
                Ok(r) => {
                    eprintln!("bench: {label} {}", show(&r));
                    results.push(r);
                }
                Err(e) => eprintln!("bench: {label}: bad result line ({e}), left out: {j}"),
            }
        } else if let Some(c) = line.strip_prefix(&check_tag) {
            eprintln!("bench: {label} check: {c}");
            checks.push(c.to_string());
        } else if let Some(i) = line.strip_prefix(&info_tag) {
            eprintln!("bench: {label} {i}");
            if info.is_empty() {
                info = i.to_string();
            }
        } else {
            eprintln!("bench: {label}: {line}");
        }
    }
    let status = child.wait()?;
    let _ = std::fs::remove_file(&spec_path);
    if !status.success() && results.is_empty() {
        bail!("the {label} reference script failed ({status})");
    }
    for c in checks {
        info += &format!("; check: {c}");
    }
    Ok((results, info))
}

fn run_hf(args: &BenchArgs, cfg: &ModelConfig) -> Result<(Vec<RefRun>, String)> {
    let python = args.python.clone().unwrap_or_else(default_python);
    let mut runs = Vec::new();
    for &c in &args.hf_contexts {
        runs.push(serde_json::json!({"name": format!("b1-{c}"), "context": c, "batch": 1, "new_tokens": args.hf_new_tokens}));
    }
    for &b in &args.hf_batch_sizes {
        runs.push(serde_json::json!({"name": format!("b{b}-{}", args.batch_context), "context": args.batch_context, "batch": b, "new_tokens": args.hf_new_tokens}));
    }
    runs.push(serde_json::json!({"name": "niah", "context": args.niah_context, "batch": 1, "new_tokens": args.niah_new_tokens}));
    let spec = serde_json::json!({"shape": cfg, "dtype": args.dtype.to_string(), "runs": runs, "seed": args.seed});
    run_reference(&python, &args.hf_script, &[], &spec, "HF", "HF", |r: &RefRun| {
        format!("{} ctx {} batch {}: {} decode {:?} tok/s, peak {:.1} GiB", r.name, r.context, r.batch, r.status, r.decode_tok_s.map(|x| (x * 10.0).round() / 10.0), r.peak_gib)
    })
}

/// The SPEC runs of the torch graph reference: batch 1 at each of --contexts, then
/// --torch-batch-sizes at --batch-context (batch 1 there only once).
fn torch_spec_runs(args: &BenchArgs) -> Result<Vec<serde_json::Value>> {
    let mut runs = Vec::new();
    let mut seen: Vec<(usize, String)> = Vec::new();
    let mut add = |ctx: usize, batch: &str, runs: &mut Vec<serde_json::Value>| -> Result<()> {
        if seen.contains(&(ctx, batch.to_string())) {
            return Ok(());
        }
        seen.push((ctx, batch.to_string()));
        let b: serde_json::Value = if batch == "auto" {
            "auto".into()
        } else {
            batch.parse::<usize>().with_context(|| format!("--torch-batch-sizes: `{batch}` is not a number or `auto`"))?.into()
        };
        let name = if batch == "auto" { format!("auto-{ctx}") } else { format!("b{batch}-{ctx}") };
        runs.push(serde_json::json!({"name": name, "context": ctx, "batch": b, "new_tokens": args.new_tokens}));
        Ok(())
    };
    for &c in &args.contexts {
        add(c, "1", &mut runs)?;
    }
    for b in &args.torch_batch_sizes {
        add(args.batch_context, b.trim(), &mut runs)?;
    }
    Ok(runs)
}

fn run_torch(args: &BenchArgs, cfg: &ModelConfig, dev: Device) -> Result<(Vec<RefRun>, String)> {
    let python = args.python.clone().unwrap_or_else(default_python);
    let runs = torch_spec_runs(args)?;
    let device = if dev == Device::Cpu { "cpu" } else { "cuda" };
    let spec = serde_json::json!({"shape": cfg, "dtype": args.dtype.to_string(), "runs": runs, "seed": args.seed, "device": device});
    // First, that the reference computes the model: its test against HF `LlamaForCausalLM`
    // (CPU, f32, tiny shape; needs transformers beside torch), verdict in the reference's line.
    let test = args.torch_script.with_file_name("test_torch_graph_reference.py");
    eprintln!("bench: checking the torch graph reference against HF transformers: {} {}", python.display(), test.display());
    let checked = match Command::new(&python).arg(&test).env("CUDA_VISIBLE_DEVICES", "").output() {
        Ok(o) if o.status.success() => "its decode equals HF LlamaForCausalLM (eager) on a tiny Llama-3 shape on the CPU: tokens, argmax positions, probabilities within 1e-4 (scripts/bench/test_torch_graph_reference.py, this run)".to_string(),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            eprintln!("bench: the torch graph reference FAILED its check against HF:\n{}{err}", String::from_utf8_lossy(&o.stdout));
            format!("FAILED its check against HF LlamaForCausalLM ({}; {})", o.status, err.lines().last().unwrap_or(""))
        }
        Err(e) => format!("not checked against HF ({}: {e})", test.display()),
    };
    // --check-graph: on a GPU, a few tokens with eager steps and with the graph, compared.
    let (runs, info) = run_reference(&python, &args.torch_script, &["--check-graph"], &spec, "TORCH", "torch graph", |r: &RefRun| {
        format!("{} ctx {} batch {}: {} decode {:?} tok/s, peak {:.1} GiB", r.name, r.context, r.batch, r.status, r.decode_tok_s.map(|x| (x * 10.0).round() / 10.0), r.peak_gib)
    })?;
    Ok((runs, format!("{info}; {checked}")))
}

/// Median of the rates (`None` when no measurement succeeded).
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The cost of Eq. 2 (`--capture reasoning`): per (run, context, batch, loop) the median decode
/// rate over the repeats with Eq. 1 alone and with Eq. 1 + Eq. 2, their ratio, the same for the
/// steady rate (graph capture left out), the loop that ran, and whether the greedy tokens and
/// Eq. 1 argmax positions of the first measurements of both are equal (batch 1: Eq. 2 must
/// change nothing else).
fn eq2_table(runs: &[Run], needle_fraction: f64, reps: usize) -> String {
    let mut rows = String::new();
    let mut done: Vec<(String, usize, usize, String)> = Vec::new();
    for r in runs.iter().filter(|r| !r.label.ends_with(EQ2)) {
        let key = (r.label.clone(), r.context, r.batch, r.mode.clone());
        if done.contains(&key) {
            continue;
        }
        let with = format!("{}{EQ2}", r.label);
        let pick = |label: &str| -> Vec<&Measured> { runs.iter().filter(|x| x.label == label && x.context == r.context && x.batch == r.batch && x.mode == r.mode).filter_map(|x| x.result.as_ref().ok()).collect() };
        let (base, eq) = (pick(&r.label), pick(&with));
        if eq.is_empty() {
            continue;
        }
        done.push(key);
        let rate = |v: &[&Measured], f: fn(&Measured) -> f64| median(v.iter().map(|m| f(m)).collect());
        let (b, e) = (rate(&base, Measured::decode_tok_s), rate(&eq, Measured::decode_tok_s));
        let (bs, es) = (rate(&base, Measured::steady_tok_s), rate(&eq, Measured::steady_tok_s));
        let same = match (base.first().and_then(|m| m.gens.first()), eq.first().and_then(|m| m.gens.first())) {
            (Some(x), Some(y)) => {
                let argmax = x.steps.iter().zip(&y.steps).all(|(a, b)| a.argmax == b.argmax);
                if x.tokens == y.tokens && argmax { "yes".to_string() } else { format!("no (tokens {}, argmax {})", x.tokens == y.tokens, argmax) }
            }
            _ => "—".into(),
        };
        let loop_of = |v: &[&Measured]| v.first().map(|m| if m.stats.fused_kernels { format!("{} (fused kernels)", r.mode) } else { r.mode.clone() }).unwrap_or_default();
        rows += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {same} |\n",
            r.label,
            r.context,
            r.batch,
            loop_of(&base),
            loop_of(&eq),
            b.map(fmt_rate).unwrap_or("failed".into()),
            e.map(fmt_rate).unwrap_or("failed".into()),
            ratio3(e, b),
            bs.map(fmt_rate).unwrap_or("—".into()),
            es.map(fmt_rate).unwrap_or("—".into()),
            ratio3(es, bs),
        );
    }
    format!(
        "\nCost of Eq. 2 (`--capture reasoning`: each step also reduces every head's needle mass ÷ mass outside the sink (4) and the local window (32), needle = {:.0}% of each prompt, contiguous, centred): decode tok/s with Eq. 1 alone and with Eq. 1 + Eq. 2, median of {reps} alternating measurements each; steady = without the step-1 graph capture. Batch 1: greedy tokens and Eq. 1 argmax positions of both compared.\n\n| run | context | batch | loop (Eq. 1) | loop (Eq. 1 + Eq. 2) | Eq. 1 tok/s | Eq. 1 + Eq. 2 tok/s | ratio | Eq. 1 steady | Eq. 1 + Eq. 2 steady | steady ratio | same tokens and Eq. 1 |\n|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|\n{rows}",
        needle_fraction * 100.0
    )
}

/// `a / b` to three decimals, or a dash.
fn ratio3(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
        _ => "—".into(),
    }
}

fn fmt_rate(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let dev = device::resolve(args.device)?;
    let mut cfg = presets::preset(&args.shape).with_context(|| format!("unknown shape `{}` (known: {})", args.shape, presets::PRESETS.join(", ")))?;
    if let Some(l) = args.layers {
        cfg.num_layers = l.clamp(1, cfg.num_layers);
    }
    // Contexts beyond the shape's positions (Llama-2-13B: 4096) are cut so that the generated
    // tokens fit; the tables show the lengths actually run.
    let mut args = args;
    let fit = |c: usize, new: usize| c.min(cfg.max_position_embeddings.saturating_sub(new));
    args.contexts = args.contexts.iter().map(|&c| fit(c, args.new_tokens)).collect();
    args.batch_context = fit(args.batch_context, args.new_tokens);
    args.niah_context = fit(args.niah_context, args.niah_new_tokens);
    args.hf_contexts = args.hf_contexts.iter().map(|&c| fit(c, args.hf_new_tokens)).collect();
    let kind = args.dtype.kind();
    let elt = kind.elt_size_in_bytes();
    let modes: Vec<Loop> = args.modes.iter().map(|m| parse_mode(m)).collect::<Result<_>>()?;
    let (dev_name, total_mem) = match dev {
        Device::Cuda(_) => match cuda::device_info(dev) {
            Ok((_, total, name)) => (name, Some(total)),
            Err(e) => {
                eprintln!("bench: no device properties ({e})");
                (device::describe(dev), None)
            }
        },
        _ => (device::describe(dev), None),
    };
    let bandwidth = args.bandwidth_gbs.or_else(|| {
        if dev_name.contains("H200") {
            Some(4800.0)
        } else if dev_name.contains("H100") && dev_name.contains("PCIe") {
            Some(2000.0)
        } else if dev_name.contains("H100") {
            Some(3350.0)
        } else {
            None
        }
    });
    eprintln!("bench: {} ({}), shape {} ({} layers), {}, bandwidth {:?} GB/s", dev_name, device::describe(dev), args.shape, cfg.num_layers, args.dtype, bandwidth);

    // 1. HF reference first, in its own process, while this one holds no GPU memory.
    let hf = if args.no_hf || dev == Device::Cpu { None } else { Some(run_hf(&args, &cfg)?) };
    // 1b. The plain PyTorch CUDA-graph reference, also in its own process; its failure leaves its
    // cells empty and the bench goes on.
    let torch_ref = if args.no_torch_ref {
        None
    } else {
        match run_torch(&args, &cfg, dev) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("bench: the torch graph reference did not run: {e:#}");
                None
            }
        }
    };

    // 2. rhx.
    let t_build = Instant::now();
    let w = weights::random_weights_on(&cfg, args.seed as i64, dev, kind);
    let model = Model::new(cfg.clone(), w, dev, kind)?;
    if let Device::Cuda(_) = dev {
        cuda::synchronize(dev);
    }
    eprintln!("bench: rhx model built in {:.1}s", t_build.elapsed().as_secs_f64());
    let mut rng = Mt64::new(args.seed);
    let vocab = cfg.vocab_size;
    let mut runs: Vec<Run> = Vec::new();
    let mut record = |label: &str, context: usize, batch: usize, mode: Loop, r: std::result::Result<Measured, String>| {
        match &r {
            Ok(m) => eprintln!(
                "bench: {label}: ctx {context} batch {batch} {}{}: decode {:.1} tok/s, prefill {:.0} tok/s, total {:.2}s, peak {:?} GiB, {} graph capture(s)",
                mode.name(),
                m.stats.fused_unavailable.as_ref().filter(|_| mode.fused && mode.decode != DecodeMode::Eager).map(|w| format!(" (fused kernels not used: {w})")).unwrap_or_default(),
                m.decode_tok_s(),
                m.prefill_tok_s(context, batch),
                m.total_s,
                m.peak_gib.map(|g| (g * 10.0).round() / 10.0),
                m.stats.graph_captures
            ),
            Err(e) => eprintln!("bench: {label}: ctx {context} batch {batch} {}: {e}", mode.name()),
        }
        runs.push(Run { label: label.to_string(), context, batch, mode: mode.name(), result: r });
    };
    let nf = args.needle_fraction;
    let eq2 = args.capture == Some(BenchCapture::Reasoning);
    // With --capture, each measurement `repeats` times without and with it, alternating.
    let reps = if eq2 { args.repeats.max(1) } else { 1 };
    // Warm-up: libraries, cuBLAS handles, the shim (and the kernels of the Eq. 2 variant).
    for &m in &modes {
        let p = random_prompts(&mut rng, 1, 128, vocab, nf);
        let _ = measure(&model, &p, 4, m, false);
        if eq2 {
            let _ = measure(&model, &p, 4, m, true);
        }
    }
    for &ctx in &args.contexts {
        // The same prompt for every loop, so their outputs can be compared.
        let p = random_prompts(&mut rng, 1, ctx, vocab, nf);
        for &m in &modes {
            for _ in 0..reps {
                record("batch 1", ctx, 1, m, measure(&model, &p, args.new_tokens, m, false));
                if eq2 {
                    record(&format!("batch 1{EQ2}"), ctx, 1, m, measure(&model, &p, args.new_tokens, m, true));
                }
            }
        }
    }
    // The kernel timeline of the last batch-1 run's last steps (a measurement build of the
    // kernels: `RHX_TIMELINE=path`), before other runs overwrite it.
    if let Some(path) = crate::engine::kernels::timeline_path() {
        match crate::engine::kernels::write_timeline(&path) {
            Ok(n) => eprintln!("bench: kernel timeline: {n} block records in {}", path.display()),
            Err(e) => eprintln!("bench: kernel timeline not written: {e}"),
        }
    }
    let best_mode = *modes.last().unwrap();
    // Batch sweep.
    let auto = match dev {
        Device::Cuda(_) => cuda::device_info(dev).ok().map(|(free, _, _)| auto_batch_size(&model, args.batch_context, args.new_tokens, free, EngineOptions::default().prefill_chunk_tokens)),
        _ => None,
    };
    let mut sizes: Vec<usize> = Vec::new();
    for s in &args.batch_sizes {
        if s == "auto" {
            match args.batch_size.or(auto) {
                Some(b) => sizes.push(b),
                None => eprintln!("bench: no automatic batch size on {}", device::describe(dev)),
            }
        } else {
            sizes.push(s.parse().with_context(|| format!("--batch-sizes: `{s}` is not a number or `auto`"))?);
        }
    }
    sizes.sort_unstable();
    sizes.dedup();
    eprintln!("bench: batch sweep at {} tokens: {:?} (automatic: {:?})", args.batch_context, sizes, auto);
    for &b in &sizes {
        let p = random_prompts(&mut rng, b, args.batch_context, vocab, nf);
        for _ in 0..reps {
            record("batch sweep", args.batch_context, b, best_mode, measure(&model, &p, args.new_tokens, best_mode, false));
            if eq2 {
                record(&format!("batch sweep{EQ2}"), args.batch_context, b, best_mode, measure(&model, &p, args.new_tokens, best_mode, true));
            }
        }
    }
    // And of the last sweep run (above 8 rows the projections are cuBLAS GEMMs, which record
    // nothing: the gaps between the kernels' records are their time).
    if let Some(path) = crate::engine::kernels::timeline_path().filter(|_| !sizes.is_empty()) {
        let path = path.with_extension("sweep.csv");
        match crate::engine::kernels::write_timeline(&path) {
            Ok(n) => eprintln!("bench: kernel timeline of the last sweep run: {n} block records in {}", path.display()),
            Err(e) => eprintln!("bench: kernel timeline not written: {e}"),
        }
    }
    // NIAH-sized sample, end to end.
    let p = random_prompts(&mut rng, 1, args.niah_context, vocab, nf);
    record("niah sample", args.niah_context, 1, best_mode, measure(&model, &p, args.niah_new_tokens, best_mode, false));
    // Long context.
    let long_context = args.long_context.unwrap_or(cfg.max_position_embeddings.saturating_sub(args.long_new_tokens));
    if long_context > 0 {
        let p = random_prompts(&mut rng, 1, long_context, vocab, nf);
        record("long context", long_context, 1, best_mode, measure(&model, &p, args.long_new_tokens, best_mode, false));
    }

    // 3. Tables.
    let wb = weight_bytes(&cfg, elt);
    let kvb = kv_bytes_per_token(&cfg, elt);
    let limit = |batch: usize, ctx: usize| bandwidth.map(|bw| batch as f64 / ((wb + batch as f64 * ctx as f64 * kvb) / (bw * 1e9)));
    let ok = |label: &str, ctx: usize, batch: usize, mode: &str| {
        runs.iter().find(|r| r.label == label && r.context == ctx && r.batch == batch && r.mode == mode).and_then(|r| r.result.as_ref().ok())
    };
    let best_mode_s = best_mode.name();
    let hf_runs: &[RefRun] = hf.as_ref().map(|(r, _)| r.as_slice()).unwrap_or(&[]);
    let hf_ok = |ctx: usize, batch: usize| hf_runs.iter().find(|r| r.context == ctx && r.batch == batch && r.status == "ok" && r.name != "niah");
    let torch_runs: &[RefRun] = torch_ref.as_ref().map(|(r, _)| r.as_slice()).unwrap_or(&[]);
    let torch_ok = |ctx: usize, batch: usize| torch_runs.iter().find(|r| r.context == ctx && r.batch == batch && r.status == "ok");
    let torch_rate = |ctx: usize, batch: usize| torch_ok(ctx, batch).and_then(|r| r.decode_tok_s);
    let torch_best = torch_runs.iter().filter(|r| r.context == args.batch_context && r.status == "ok" && r.decode_tok_s.is_some()).max_by(|a, b| a.decode_tok_s.unwrap_or(0.0).total_cmp(&b.decode_tok_s.unwrap_or(0.0)));
    let dash = |x: Option<f64>| x.map(fmt_rate).unwrap_or("—".into());
    let mut md = String::new();
    let commit = env!("RHX_GIT_COMMIT");
    let cmd = std::env::args().collect::<Vec<_>>().join(" ");
    md += &format!("Device: {dev_name}{}; rhx {commit}; {}; shape `{}`{} in {}, random weights (seed {}).\n\n", total_mem.map(|t| format!(" ({:.0} GiB)", gib(t))).unwrap_or_default(), utc_date(started), args.shape, args.layers.map(|l| format!(" cut to {l} layers")).unwrap_or_default(), args.dtype, args.seed);
    if let Some((_, info)) = &hf {
        md += &format!("HF reference: {info}.\n\n");
    }
    if let Some((_, info)) = &torch_ref {
        md += &format!("Torch graph reference: {info}.\n\n");
    }
    let env = EngineOptions::env_settings();
    md += &format!("Command: `{}{cmd}`\n\n", env.iter().map(|e| format!("{e} ")).collect::<String>());
    md += &format!(
        "Bandwidth limit: {} GB/s; a decoding step must read {:.2} GB of weights (all but the embedding table) plus {:.0} KiB of KV cache per token of context per sequence, so limit tok/s = B / ((weights + B·context·KV) / bandwidth).\n\n",
        bandwidth.map(|b| format!("{b:.0}")).unwrap_or("unknown".into()),
        wb / 1e9,
        kvb / 1024.0
    );
    // Best batch at batch_context.
    let best = runs.iter().filter(|r| r.label == "batch sweep").filter_map(|r| r.result.as_ref().ok().map(|m| (r.batch, m))).max_by(|a, b| a.1.decode_tok_s().total_cmp(&b.1.decode_tok_s()));
    // Headline: rhx against the torch graph reference.
    if !args.no_torch_ref {
        md += &format!("Headline: decode tok/s of rhx ({best_mode_s} loop) against the torch graph reference (tokens after the first, all sequences, over their time; graph capture included on both sides):\n\n| decode tok/s | rhx | torch graph | rhx ÷ torch graph |\n|---|---:|---:|---:|\n");
        for &ctx in &args.contexts {
            let r = ok("batch 1", ctx, 1, &best_mode_s).map(|m| m.decode_tok_s());
            let tr = torch_rate(ctx, 1);
            md += &format!("| batch 1, {ctx} ctx | {} | {} | {} |\n", dash(r), dash(tr), ratio(r, tr));
        }
        let mut bs: Vec<usize> = runs.iter().filter(|r| r.label == "batch sweep").map(|r| r.batch).collect();
        bs.extend(torch_runs.iter().filter(|r| r.context == args.batch_context && r.name != format!("b1-{}", args.batch_context)).map(|r| r.batch));
        bs.retain(|&b| b > 1 || (b == 1 && !args.contexts.contains(&args.batch_context)));
        bs.sort_unstable();
        bs.dedup();
        for b in bs {
            let r = ok("batch sweep", args.batch_context, b, &best_mode_s).map(|m| m.decode_tok_s());
            let tr = torch_rate(args.batch_context, b);
            md += &format!("| batch {b}, {} ctx | {} | {} | {} |\n", args.batch_context, dash(r), dash(tr), ratio(r, tr));
        }
        // Best against best: the sweep and batch 1 at the sweep's context on each side.
        let b1 = ok("batch 1", args.batch_context, 1, &best_mode_s).map(|m| (1, m));
        let rhx_best = best.into_iter().chain(b1).max_by(|a, b| a.1.decode_tok_s().total_cmp(&b.1.decode_tok_s()));
        let r = rhx_best.map(|(_, m)| m.decode_tok_s());
        let tr = torch_best.and_then(|t| t.decode_tok_s);
        md += &format!(
            "| **best batch, {} ctx** (rhx B={}, torch graph B={}) | {} | {} | **{}** |\n",
            args.batch_context,
            rhx_best.map(|(b, _)| b.to_string()).unwrap_or("—".into()),
            torch_best.map(|t| t.batch.to_string()).unwrap_or("—".into()),
            dash(r),
            dash(tr),
            ratio(r, tr)
        );
        let failed = torch_runs.iter().filter(|r| r.status != "ok").map(|r| format!("{} at {}×{}", r.status, r.batch, r.context)).collect::<Vec<_>>();
        md += &format!(
            "\nrhx ÷ torch graph is the headline ratio (goal: at least 1.5× at B = 16 and 64). The torch graph reference (scripts/bench/torch_graph_reference.py{}) is a plain PyTorch decode loop on the same shape with random weights of the same dtype, no transformers: fused q|k|v and gate|up weights, a preallocated static KV cache, the prompt prefilled with `scaled_dot_product_attention(is_causal=True)`, and a decode step that reads only device tensors (embedding, RMSNorm, RoPE at the device-side position, k/v written into the cache, scores over the whole cache with later columns masked, f32 softmax, the same per-step Eq. 1 capture as rhx — each head's argmax position and probability — reduced on the GPU into a preallocated buffer, P·V, MLP, LM head, greedy argmax into the input buffer), captured once as a CUDA graph and replayed, one host copy at the end; its largest batch is found from free memory, backing off by 10% on out-of-memory. Unlike HF eager (launch-bound: its rate follows the host CPU) it is what a user writes in an afternoon with PyTorch and a CUDA graph, without custom kernels; it is not the fastest libtorch-ops loop (rhx's own `graph-ops` loop, in the table below when measured, is faster at batch 1).{}{}\n\n",
            torch_ref.as_ref().map(|(_, i)| format!(", {i}")).unwrap_or_default(),
            if torch_ref.is_none() { " It did not run (see stderr): its cells are —." } else { "" },
            if failed.is_empty() { String::new() } else { format!(" Reference runs that failed: {}.", failed.join("; ")) }
        );
    }
    md += "| metric | rhx | HF eager | rhx ÷ HF | limit | rhx ÷ limit | torch graph | rhx ÷ torch graph |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for &ctx in &args.contexts {
        for &m in &modes {
            let ms = m.name();
            let r = ok("batch 1", ctx, 1, &ms).map(|m| m.decode_tok_s());
            let h = hf_ok(ctx, 1).and_then(|h| h.decode_tok_s);
            let l = limit(1, ctx);
            let tr = torch_rate(ctx, 1);
            md += &format!("| decode tok/s, batch 1, {ctx} ctx ({ms} loop) | {} | {} | {} | {} | {} | {} | {} |\n", r.map(fmt_rate).unwrap_or("failed".into()), h.map(fmt_rate).unwrap_or("—".into()), ratio(r, h), l.map(fmt_rate).unwrap_or("—".into()), ratio(r, l), dash(tr), ratio(r, tr));
        }
    }
    // Best batch at batch_context.
    let hf_best = hf_runs.iter().filter(|h| h.context == args.batch_context && h.status == "ok" && h.name != "niah").max_by(|a, b| a.decode_tok_s.unwrap_or(0.0).total_cmp(&b.decode_tok_s.unwrap_or(0.0)));
    if let Some((b, m)) = best {
        let rate = m.decode_tok_s();
        let r = Some(rate);
        let h = hf_best.and_then(|h| h.decode_tok_s);
        let l = limit(b, args.batch_context);
        let tr = torch_best.and_then(|t| t.decode_tok_s);
        md += &format!(
            "| decode tok/s, best batch, {} ctx (rhx B={b}{}{}) | {} | {} | {} | {} | {} | {} | {} |\n",
            args.batch_context,
            hf_best.map(|h| format!(", HF B={}", h.batch)).unwrap_or_default(),
            torch_best.map(|t| format!(", torch graph B={}", t.batch)).unwrap_or_default(),
            fmt_rate(rate),
            h.map(fmt_rate).unwrap_or("—".into()),
            ratio(r, h),
            l.map(fmt_rate).unwrap_or("—".into()),
            ratio(r, l),
            dash(tr),
            ratio(r, tr)
        );
        let prefill = m.prefill_tok_s(args.batch_context, b);
        let pr = Some(prefill);
        // The reference's prefill at the same batch, when it ran it.
        let tp = torch_ok(args.batch_context, b).and_then(|t| t.prefill_s).map(|s| (b * args.batch_context.saturating_sub(1)) as f64 / s);
        md += &format!("| prefill tok/s, {} ctx, batch {b} (HF: batch 1) | {} | {} | {} | — | — | {} | {} |\n", args.batch_context, fmt_rate(prefill), hf_ok(args.batch_context, 1).and_then(|h| h.prefill_s).map(|s| fmt_rate((args.batch_context - 1) as f64 / s)).unwrap_or("—".into()), ratio(pr, hf_ok(args.batch_context, 1).and_then(|h| h.prefill_s).map(|s| (args.batch_context - 1) as f64 / s)), dash(tp), ratio(pr, tp));
    }
    let last_ctx = *args.contexts.last().unwrap_or(&args.batch_context);
    if let Some(m) = ok("batch 1", last_ctx, 1, &best_mode_s) {
        let prefill = m.prefill_tok_s(last_ctx, 1);
        let pr = Some(prefill);
        let h = hf_ok(last_ctx, 1).and_then(|h| h.prefill_s).map(|s| (last_ctx - 1) as f64 / s);
        let tp = torch_ok(last_ctx, 1).and_then(|t| t.prefill_s).map(|s| last_ctx.saturating_sub(1) as f64 / s);
        md += &format!("| prefill tok/s, {last_ctx} ctx, batch 1 | {} | {} | {} | — | — | {} | {} |\n", fmt_rate(prefill), h.map(fmt_rate).unwrap_or("—".into()), ratio(pr, h), dash(tp), ratio(pr, tp));
        let hp = hf_ok(last_ctx, 1).map(|h| h.peak_gib);
        let tpk = torch_ok(last_ctx, 1).map(|t| t.peak_gib).filter(|&g| g > 0.0);
        md += &format!(
            "| peak GPU memory, {last_ctx} ctx, batch 1 (GiB) | {} | {} | {} | — | — | {} | {} |\n",
            m.peak_gib.map(|g| format!("{g:.1}")).unwrap_or("—".into()),
            hp.map(|g| format!("{g:.1}")).unwrap_or("—".into()),
            ratio(m.peak_gib, hp),
            tpk.map(|g| format!("{g:.1}")).unwrap_or("—".into()),
            ratio(m.peak_gib, tpk)
        );
    }
    if let Some(m) = ok("niah sample", args.niah_context, 1, &best_mode_s) {
        let h = hf_runs.iter().find(|h| h.name == "niah" && h.status == "ok").and_then(|h| h.total_s);
        let l = limit(1, args.niah_context).map(|l| args.niah_new_tokens as f64 / l);
        md += &format!(
            "| NIAH sample: {} ctx + {} tokens with capture, batch 1 (s) | {:.3} | {} | {} | {} | {} | — | — |\n",
            args.niah_context,
            args.niah_new_tokens,
            m.total_s,
            h.map(|s| format!("{s:.3}")).unwrap_or("—".into()),
            ratio(h, Some(m.total_s)).replace('×', "× faster"),
            l.map(|s| format!("{s:.3} (decode only)")).unwrap_or("—".into()),
            ratio(l, Some(m.total_s))
        );
    }
    let rhx_max = runs.iter().filter(|r| r.result.is_ok() && r.batch == 1).map(|r| r.context).max();
    let hf_max = hf_runs.iter().filter(|h| h.status == "ok" && h.batch == 1).map(|h| h.context).max();
    let hf_fail = hf_runs.iter().filter(|h| h.status != "ok").map(|h| format!("{} at {}×{}", h.status, h.batch, h.context)).collect::<Vec<_>>();
    md += &format!(
        "| max context reached with per-step capture, batch 1 | {} | {}{} | {} | — | — | — | — |\n",
        rhx_max.map(|c| c.to_string()).unwrap_or("—".into()),
        hf_max.map(|c| c.to_string()).unwrap_or("—".into()),
        if hf_fail.is_empty() { String::new() } else { format!(" ({})", hf_fail.join("; ")) },
        ratio(rhx_max.map(|c| c as f64), hf_max.map(|c| c as f64))
    );
    if long_context > 0 {
        match runs.iter().find(|r| r.label == "long context").map(|r| &r.result) {
            Some(Ok(m)) => {
                let l = limit(1, long_context);
                md += &format!(
                    "| decode tok/s, batch 1, {} ctx (prefill {:.1}s, peak {} GiB) | {} | — | — | {} | {} | — | — |\n",
                    long_context,
                    m.stats.prefill_s,
                    m.peak_gib.map(|g| format!("{g:.1}")).unwrap_or("?".into()),
                    fmt_rate(m.decode_tok_s()),
                    l.map(fmt_rate).unwrap_or("—".into()),
                    ratio(Some(m.decode_tok_s()), l)
                );
            }
            Some(Err(e)) => md += &format!("| batch 1, {} ctx | {e} | — | — | — | — | — | — |\n", long_context),
            None => {}
        }
    }
    // Agreement of each decode loop with the first (same prompt, same device and dtype).
    let mut agree = String::new();
    for &ctx in &args.contexts {
        let base = runs.iter().find(|r| r.label == "batch 1" && r.context == ctx).and_then(|r| r.result.as_ref().ok().map(|m| (r.mode.clone(), m)));
        let Some((base_mode, base)) = base else { continue };
        let mut seen = vec![base_mode.clone()];
        for r in runs.iter().filter(|r| r.label == "batch 1" && r.context == ctx) {
            // The first measurement of each other loop (--repeats measures each several times).
            if seen.contains(&r.mode) {
                continue;
            }
            seen.push(r.mode.clone());
            let Ok(m) = &r.result else { continue };
            let (Some(a), Some(b)) = (base.gens.first(), m.gens.first()) else { continue };
            let shared = a.tokens.iter().zip(&b.tokens).take_while(|(x, y)| x == y).count();
            let (mut heads, mut same) = (0usize, 0usize);
            for (sa, sb) in a.steps.iter().zip(&b.steps).take(shared) {
                heads += sa.argmax.len();
                same += sa.argmax.iter().zip(&sb.argmax).filter(|(x, y)| x == y).count();
            }
            agree += &format!(
                "| {ctx} | {} vs {base_mode} | {shared}/{} | {same}/{heads} ({:.2}%) |\n",
                r.mode,
                a.tokens.len().max(b.tokens.len()),
                100.0 * same as f64 / heads.max(1) as f64
            );
        }
    }
    if !agree.is_empty() {
        md += &format!("\nAgreement between decode loops at batch 1 ({}, same prompt): greedy tokens equal before the first difference, and per-step per-head argmax positions equal over those steps:\n\n| context | loops | tokens | argmax positions |\n|---:|---|---:|---:|\n{agree}", args.dtype);
    }
    if eq2 {
        md += &eq2_table(&runs, args.needle_fraction, reps);
    }
    md += "\nAll rhx runs:\n\n| run | context | batch | loop | decode tok/s | steady tok/s (no capture) | prefill tok/s | prefill s | decode s | total s | peak GiB | graph captures (s) | limit tok/s |\n|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in &runs {
        match &r.result {
            Ok(m) => {
                md += &format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {} | {} ({:.3}) | {} |\n",
                    r.label,
                    r.context,
                    r.batch,
                    if m.stats.fused_kernels { format!("{} (fused kernels)", r.mode) } else { r.mode.clone() },
                    fmt_rate(m.decode_tok_s()),
                    fmt_rate(m.steady_tok_s()),
                    fmt_rate(m.prefill_tok_s(r.context, r.batch)),
                    m.stats.prefill_s,
                    m.stats.decode_s,
                    m.total_s,
                    m.peak_gib.map(|g| format!("{g:.1}")).unwrap_or("—".into()),
                    m.stats.graph_captures,
                    m.stats.capture_s,
                    limit(r.batch, r.context).map(fmt_rate).unwrap_or("—".into())
                )
            }
            Err(e) => md += &format!("| {} | {} | {} | {} | {e} | | | | | | | | |\n", r.label, r.context, r.batch, r.mode),
        }
    }
    if !hf_runs.is_empty() {
        md += "\nAll HF runs (transformers eager, `generate(output_attentions=True)` + per-step argmax on the GPU):\n\n| run | context | batch | status | decode tok/s | prefill s | total s | peak GiB |\n|---|---:|---:|---|---:|---:|---:|---:|\n";
        for h in hf_runs {
            md += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} |\n",
                h.name,
                h.context,
                h.batch,
                h.status,
                h.decode_tok_s.map(fmt_rate).unwrap_or("—".into()),
                h.prefill_s.map(|s| format!("{s:.3}")).unwrap_or("—".into()),
                h.total_s.map(|s| format!("{s:.3}")).unwrap_or("—".into()),
                h.peak_gib
            );
        }
    }
    if !torch_runs.is_empty() {
        md += "\nAll torch graph runs (plain PyTorch, static KV cache, SDPA prefill, the decode step with per-step Eq. 1 capture as one CUDA graph):\n\n| run | context | batch | status | decode tok/s | prefill tok/s | prefill s | total s | peak GiB |\n|---|---:|---:|---|---:|---:|---:|---:|---:|\n";
        for r in torch_runs {
            md += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |\n",
                r.name,
                r.context,
                r.batch,
                r.status,
                dash(r.decode_tok_s),
                dash(r.prefill_s.map(|s| (r.batch * r.context.saturating_sub(1)) as f64 / s)),
                r.prefill_s.map(|s| format!("{s:.3}")).unwrap_or("—".into()),
                r.total_s.map(|s| format!("{s:.3}")).unwrap_or("—".into()),
                r.peak_gib
            );
        }
    }
    md += "\nPeak GPU memory of rhx: libtorch's CUDA caching allocator (`max_memory_allocated`, reset before each run, read through rhx's C++ shim); HF and the torch graph reference: `torch.cuda.max_memory_allocated()`.\n";
    println!("{md}");
    if let Some(out) = &args.out {
        let tmp = out.with_extension("md.tmp");
        std::fs::File::create(&tmp).and_then(|mut f| f.write_all(md.as_bytes())).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, out)?;
        eprintln!("bench: wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(extra: &[&str]) -> BenchArgs {
        Cli::parse_from(["bench"].iter().chain(extra)).bench
    }

    #[test]
    fn torch_reference_runs_batch_1_per_context_then_the_batch_sizes_once_each() {
        let a = args(&[]);
        let runs = torch_spec_runs(&a).unwrap();
        let names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
        // --contexts 1024,4096 at batch 1; 1,16,64,auto at --batch-context 4096 (batch 1 there once)
        assert_eq!(names, ["b1-1024", "b1-4096", "b16-4096", "b64-4096", "auto-4096"]);
        assert_eq!(runs[4]["batch"], "auto");
        assert_eq!(runs[3]["batch"], 64);
        assert!(runs.iter().all(|r| r["new_tokens"] == 64));
        let a = args(&["--contexts", "512", "--batch-context", "2048", "--torch-batch-sizes", "1,8", "--new-tokens", "16"]);
        let runs = torch_spec_runs(&a).unwrap();
        let got: Vec<(u64, u64)> = runs.iter().map(|r| (r["context"].as_u64().unwrap(), r["batch"].as_u64().unwrap())).collect();
        assert_eq!(got, [(512, 1), (2048, 1), (2048, 8)]);
        assert!(torch_spec_runs(&args(&["--torch-batch-sizes", "16,lots"])).unwrap_err().to_string().contains("`lots`"));
    }

    #[test]
    fn torch_result_lines_parse_with_a_failed_auto_batch() {
        let ok: RefRun = serde_json::from_str(r#"{"name": "auto-4096", "context": 4096, "batch": 212, "new_tokens": 64, "status": "ok", "prefill_s": 30.5, "decode_tok_s": 5123.4, "total_s": 45.0, "peak_gib": 130.2, "steps": 64, "graph_captures": 1}"#).unwrap();
        assert_eq!((ok.batch, ok.decode_tok_s), (212, Some(5123.4)));
        let failed: RefRun = serde_json::from_str(r#"{"name": "auto-64", "context": 64, "batch": "auto", "new_tokens": 8, "peak_gib": 0.0, "status": "error: batch auto needs a GPU"}"#).unwrap();
        assert_eq!((failed.batch, failed.decode_tok_s, failed.name.as_str()), (0, None, "auto-64"));
    }
}
