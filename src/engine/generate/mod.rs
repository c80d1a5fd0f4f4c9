//! Greedy generation over a batch of prompts with per-step capture.
//!
//! Flow of one run (see docs/ARCHITECTURE.md): prompts are left-padded into one batch; the
//! prompt minus its last token is prefilled in one call; then every step feeds one token per
//! sequence (step 0 feeds the last prompt token, as Wu et al.'s detection code does), so every
//! step — including the first — has a single query row whose per-head reductions are captured,
//! and a per-step head mask applies to exactly that query. A step that needs the unmasked pass
//! first (dynamic ablation) runs the forward twice at the same cache position and commits the
//! second.
//!
//! Files: this one holds the types and [`generate_with`], which runs the named phases in order;
//! `batch.rs` lays the prompts out as one padded batch, `prefill.rs` fills the cache,
//! `eager.rs` and `static_loop.rs` are the two decoding loops (libtorch ops step by step, or
//! one fixed-shape step replayed, on CUDA from a graph), `steps.rs` what a step's records
//! become (policy sets, two-pass merges, EOS).
use std::ops::Range;

use tch::Device;

use super::model::{CaptureRequest, HiddenSite, MaskMode, Model, ReasoningRequest};

mod batch;
mod eager;
mod prefill;
mod static_loop;
mod steps;

use batch::{mass_span_tensor, needle_tensor, Batch, FixedHeads};

/// One prompt: token ids plus spans (prompt positions) used by masks and captures.
#[derive(Debug, Clone, Default)]
pub struct Prompt {
    pub ids: Vec<u32>,
    /// Spans hidden from every later query (an attention-mask intervention, Section 5).
    pub hidden_spans: Vec<Range<usize>>,
    /// Spans whose attention mass is captured per head and step.
    pub mass_spans: Vec<Range<usize>>,
    /// Prompt positions of the needle tokens: Eq. 2's numerator (`GenerateOptions::reasoning`).
    pub needle: Vec<usize>,
}

/// Which positions a fixed head mask applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskScope {
    /// Only the query of each decoding step (the prompt's K/V stay clean, as in Wu et al.).
    Steps,
    /// Every position, prompt included.
    AllPositions,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FixedMask {
    /// `(layer, query head)` pairs.
    pub heads: Vec<(usize, usize)>,
    /// A different set per prompt of the batch (e.g. a random baseline redrawn per sample);
    /// when non-empty it replaces `heads` and has one entry per prompt.
    #[serde(default)]
    pub per_prompt: Vec<Vec<(usize, usize)>>,
    pub mode: MaskMode,
    pub scope: MaskScope,
}

/// Decides a per-step head set from the unmasked pass of that step (two passes per step).
pub trait StepPolicy {
    /// Heads to mask for sequence `seq` at `step`, given its unmasked record; empty = none.
    fn heads_to_mask(&mut self, seq: usize, step: usize, unmasked: &StepRecord, prompt: &Prompt) -> Vec<(usize, usize)>;
    fn mode(&self) -> MaskMode;
    /// `false` when the sets are known before the step (e.g. read from an earlier trace): the
    /// step then runs once, masked, and `heads_to_mask` gets an empty record.
    fn needs_unmasked_pass(&self) -> bool {
        true
    }
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Stop a sequence after it emits one of these (the EOS token is kept in the output).
    pub eos_ids: Vec<u32>,
    pub argmax: bool,
    pub top_k: usize,
    pub hidden: Vec<HiddenSite>,
    pub fixed_mask: Option<FixedMask>,
    /// Keep the `n` largest logits of every step (ids and values), e.g. for margins.
    pub top_logits: usize,
    /// Capture Eq. 2's reasoning score of every head (on each prompt's `needle`).
    pub reasoning: Option<Reasoning>,
}

/// Eq. 2's options (reference §9 rows 29–30): the first `sink` tokens of a sequence and the last
/// `local` keys (the query included) are left out of the denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reasoning {
    pub sink: usize,
    pub local: usize,
}

impl Default for Reasoning {
    fn default() -> Self {
        Reasoning { sink: 4, local: 32 }
    }
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { max_new_tokens: 40, eos_ids: vec![], argmax: true, top_k: 0, hidden: vec![], fixed_mask: None, top_logits: 0, reasoning: None }
    }
}

/// What was captured at one step for one sequence; positions are prompt coordinates.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    pub token: u32,
    /// `[L * Hq]` argmax key position of each head's attention row (layer-major).
    pub argmax: Vec<i64>,
    /// `[L * Hq]` attention weight at that position.
    pub argmax_weight: Vec<f32>,
    /// `[L * Hq * k]` top-k key positions.
    pub top_k: Vec<i64>,
    /// `[L * Hq * n_spans]` attention mass per span.
    pub span_mass: Vec<f32>,
    /// `[L * Hq]` Eq. 2 reasoning score (empty unless requested).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasoning: Vec<f32>,
    /// One vector per requested hidden site.
    pub hidden: Vec<Vec<f32>>,
    /// The largest logits of this step, `(token id, value)`, largest first.
    pub top_logits: Vec<(u32, f32)>,
    /// Heads masked at this step (per-step policies and fixed masks on decode steps).
    pub masked: Vec<(usize, usize)>,
    /// The record of the unmasked first pass, when a step policy masked something.
    pub unmasked: Option<Box<StepRecord>>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Generation {
    pub prompt_len: usize,
    pub tokens: Vec<u32>,
    pub steps: Vec<StepRecord>,
    pub stopped_by_eos: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("prompt {index} is empty")]
    EmptyPrompt { index: usize },
    #[error("prompt {index} has {len} tokens + {new} new tokens, more than the model's {max} positions")]
    TooLong { index: usize, len: usize, new: usize, max: usize },
    #[error("token id {id} in prompt {index} is outside the vocabulary ({vocab})")]
    BadToken { index: usize, id: u32, vocab: usize },
    #[error("head ({layer}, {head}) does not exist: the model has {layers} layers × {heads} heads")]
    NoSuchHead { layer: usize, head: usize, layers: usize, heads: usize },
    #[error("hidden state of layer {layer} requested, but the model has {layers} layers")]
    NoSuchLayer { layer: usize, layers: usize },
    #[error("needle position {position} of prompt {index} is outside its {len} tokens")]
    NeedleOutside { index: usize, position: usize, len: usize },
    #[error("{sets} per-prompt head sets for {prompts} prompts")]
    MaskPerPrompt { sets: usize, prompts: usize },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("CUDA: {0}")]
    Cuda(String),
}

pub use super::options::{DecodeMode, EngineOptions};

/// Where the time of one `generate_with` call went (device work included: each phase ends
/// with a synchronisation on CUDA).
#[derive(Debug, Clone, Default)]
pub struct GenStats {
    pub decode_mode: String,
    pub prefill_s: f64,
    pub decode_s: f64,
    /// Decoding steps run.
    pub steps: usize,
    /// Sum over steps of the rows in the batch (what was computed).
    pub row_steps: usize,
    /// Tokens kept in the outputs.
    pub tokens: usize,
    pub graph_captures: usize,
    pub capture_s: f64,
    /// Capture time spent after step 0 (inside the decode rate's window).
    pub capture_after_first_s: f64,
    /// Time from the start of decoding to the end of step 0 (which turns the last prompt
    /// token into the first new one: HF's prefill produces that token), and its rows.
    pub first_step_s: f64,
    pub first_step_rows: usize,
    /// Decoding ran on the fused CUDA kernels (else on libtorch ops), and why not if it did not.
    pub fused_kernels: bool,
    pub fused_unavailable: Option<String>,
}

impl GenStats {
    /// The decoding loop that ran, as trace metadata records it: `eager`, `static`, `graph`,
    /// with ` (fused kernels)` when the fused CUDA step ran (for some or all steps).
    pub fn decode_loop(&self) -> String {
        if self.fused_kernels {
            format!("{} (fused kernels)", self.decode_mode)
        } else {
            self.decode_mode.clone()
        }
    }

    /// Rows decoded per second after the first step (the first new token), as HF-style
    /// decode throughput is counted.
    pub fn decode_tok_s(&self) -> f64 {
        (self.row_steps - self.first_step_rows) as f64 / (self.decode_s - self.first_step_s)
    }
}

/// Greedy generation with capture for a batch of prompts (one prompt = a batch of one).
pub fn generate(
    model: &Model,
    prompts: &[Prompt],
    opts: &GenerateOptions,
    policy: Option<&mut dyn StepPolicy>,
    on_step: impl FnMut(usize),
) -> Result<Vec<Generation>, GenerateError> {
    generate_with(model, prompts, opts, &EngineOptions::default(), policy, on_step).map(|(g, _)| g)
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// [`generate`] with engine options; also returns where the time went.
///
/// Phases: check the request, lay the prompts out as one left-padded batch, prefill all but
/// the last prompt column, pick the decoding loop, decode.
pub fn generate_with(
    model: &Model,
    prompts: &[Prompt],
    opts: &GenerateOptions,
    eng: &EngineOptions,
    policy: Option<&mut dyn StepPolicy>,
    mut on_step: impl FnMut(usize),
) -> Result<(Vec<Generation>, GenStats), GenerateError> {
    let mut stats = GenStats::default();
    check_request(model, prompts, opts)?;
    if prompts.is_empty() {
        return Ok((vec![], stats));
    }
    let device = model.device;
    let width = prompts.iter().map(|p| p.ids.len()).max().unwrap() as i64;
    let cap = width + opts.max_new_tokens as i64;
    // With a split-K P·V in the decode step (`Model::pv_chunk`: CUDA, long contexts, small
    // batches) the capacity is a multiple of the chunk: at most a chunk of extra, masked columns.
    let pv_chunk = model.pv_chunk(cap, prompts.len() as i64);
    let cap = match pv_chunk {
        Some(r) => (cap + r - 1) / r * r,
        None => cap,
    };
    let (batch, ids) = Batch::layout(prompts, width, cap, device);
    let spans = mass_span_tensor(prompts, &batch.pad, width, device);
    let reasoning = opts.reasoning.map(|r| ReasoningRequest { needle: needle_tensor(prompts, &batch.pad, width, device), sink: r.sink as i64, local: r.local as i64 });
    let capture = CaptureRequest { argmax: opts.argmax || policy.is_some(), top_k: opts.top_k, spans, reasoning, hidden: opts.hidden.clone(), ..Default::default() };
    let fixed = opts.fixed_mask.as_ref().map(|m| FixedHeads::new(m, prompts.len(), model));

    let mut cache = model.new_cache(batch.b, cap);
    let t_prefill = std::time::Instant::now();
    prefill::prefill(model, prompts, &batch, &ids, eng, fixed.as_ref().and_then(FixedHeads::prefill_mask).as_ref(), &mut cache);
    sync(device);
    stats.prefill_s = t_prefill.elapsed().as_secs_f64();

    let mut gens: Vec<Generation> = prompts.iter().map(|p| Generation { prompt_len: p.ids.len(), ..Default::default() }).collect();
    let mode = decode_mode(model, prompts, opts, eng, policy.is_some());
    stats.decode_mode = format!("{mode:?}").to_lowercase();
    let t_decode = std::time::Instant::now();
    if mode == DecodeMode::Eager {
        let setup = eager::EagerSetup { ids: &ids, width, capture, fixed: fixed.as_ref() };
        eager::decode(model, prompts, opts, &batch, setup, cache, policy, &mut gens, &mut stats, &mut on_step, t_decode)?;
    } else {
        let key_ok = batch.valid.logical_and(&batch.hidden_id.eq(0));
        // A step policy writes its sets into a keep buffer at a fixed address (all ones = the
        // unmasked pass; multiplying by 1 is exact, so that pass equals the unmasked model).
        let (keep, mask_mode) = match (&policy, &fixed) {
            (Some(pol), _) => (Some(tch::Tensor::ones([model.config.num_layers as i64, batch.b, model.config.num_heads as i64], (model.kind, device))), pol.mode()),
            (None, Some(f)) => (Some(f.keep.shallow_clone()), f.mode),
            (None, None) => (None, MaskMode::ZeroOutput),
        };
        let st = static_loop::StaticSetup { ids: &ids, width, cap, pv_chunk, key_ok, keep, mask_mode, fixed_sets: fixed.as_ref().map(|f| f.sets.as_slice()), capture };
        static_loop::decode(model, prompts, opts, eng, &batch, st, cache, mode == DecodeMode::Graph, policy, &mut gens, &mut stats, &mut on_step, t_decode)?;
    }
    sync(device);
    stats.decode_s = t_decode.elapsed().as_secs_f64();
    stats.tokens = gens.iter().map(|g| g.tokens.len()).sum();
    Ok((gens, stats))
}

/// Refuses what the model cannot run: empty or too long prompts, unknown token ids, heads or
/// layers outside the model, a per-prompt mask of the wrong length.
fn check_request(model: &Model, prompts: &[Prompt], opts: &GenerateOptions) -> Result<(), GenerateError> {
    let c = &model.config;
    let (n_layers, n_heads) = (c.num_layers, c.num_heads);
    for (index, p) in prompts.iter().enumerate() {
        if p.ids.is_empty() {
            return Err(GenerateError::EmptyPrompt { index });
        }
        if p.ids.len() + opts.max_new_tokens > c.max_position_embeddings {
            return Err(GenerateError::TooLong { index, len: p.ids.len(), new: opts.max_new_tokens, max: c.max_position_embeddings });
        }
        if let Some(&id) = p.ids.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(GenerateError::BadToken { index, id, vocab: c.vocab_size });
        }
        if let Some(&position) = p.needle.iter().find(|&&i| i >= p.ids.len()) {
            return Err(GenerateError::NeedleOutside { index, position, len: p.ids.len() });
        }
    }
    if let Some(m) = &opts.fixed_mask {
        steps::check_heads(&m.heads, n_layers, n_heads)?;
        if !m.per_prompt.is_empty() && m.per_prompt.len() != prompts.len() {
            return Err(GenerateError::MaskPerPrompt { sets: m.per_prompt.len(), prompts: prompts.len() });
        }
        for set in &m.per_prompt {
            steps::check_heads(set, n_layers, n_heads)?;
        }
    }
    for site in &opts.hidden {
        if let HiddenSite::Layer(layer) = site {
            if *layer >= n_layers {
                return Err(GenerateError::NoSuchLayer { layer: *layer, layers: n_layers });
            }
        }
    }
    Ok(())
}

/// The decoding loop that runs: what `eng.decode` asks for, where the request allows the
/// fixed-shape step. A step policy runs on the fast path too (its host-side choice between two
/// replays of the step), unless a fixed mask is also set: the eager loop combines the two.
/// LongRoPE's cache recomputation, a top-k wider than a prompt and a hidden last prompt token
/// need the eager loop.
fn decode_mode(model: &Model, prompts: &[Prompt], opts: &GenerateOptions, eng: &EngineOptions, has_policy: bool) -> DecodeMode {
    let device = model.device;
    let eligible = (!has_policy || opts.fixed_mask.is_none())
        && model.rope_long_switch().is_none()
        && prompts.iter().all(|p| opts.top_k <= p.ids.len() && !p.hidden_spans.iter().any(|s| s.contains(&(p.ids.len() - 1))));
    match eng.decode {
        _ if !eligible => DecodeMode::Eager,
        DecodeMode::Auto if device == Device::Cpu => DecodeMode::Eager,
        DecodeMode::Auto | DecodeMode::Graph if device != Device::Cpu && super::cuda::shim().is_ok() => DecodeMode::Graph,
        DecodeMode::Auto | DecodeMode::Graph => DecodeMode::Static,
        m => m,
    }
}

/// Bytes one sequence of `cap` positions needs during batched decoding: its KV cache plus the
/// step's working set (f32 scores, probabilities and bias over the capacity for one layer at a
/// time, logits, MLP activations, the packed capture).
pub fn bytes_per_sequence(model: &Model, cap: usize) -> i64 {
    let c = &model.config;
    let elt = model.kind.elt_size_in_bytes() as i64;
    let cap = cap as i64;
    let kv = c.num_layers as i64 * 2 * c.num_kv_heads as i64 * c.head_dim as i64 * cap * elt;
    let scores = 4 * c.num_heads as i64 * cap * 4;
    let logits = 3 * c.vocab_size as i64 * 4;
    let mlp = 4 * c.intermediate_size as i64 * elt + 8 * c.hidden_size as i64 * 4;
    let capture = 4 * c.num_layers as i64 * c.num_heads as i64 * 4;
    kv + scores + logits + mlp + capture
}

/// The batch size when none is given: [`auto_batch_size`] from the free memory on CUDA (8 if
/// it cannot be read), `cpu` on the CPU.
pub fn default_batch_size(model: &Model, prompt_len: usize, new_tokens: usize, cpu: usize) -> usize {
    match model.device {
        // Cached blocks of earlier generations count as free: hand them back first, or the
        // estimate shrinks with every trace of a run and fragmentation can still exhaust the GPU
        // (seen: "CUDA out of memory" with 4.7 GiB allocated and 139.8 GiB held, the 8th trace of
        // Section 4's full profile).
        Device::Cuda(_) => super::cuda::empty_cache()
            .and_then(|_| super::cuda::device_info(model.device))
            .map(|(free, _, _)| auto_batch_size(model, prompt_len, new_tokens, free, EngineOptions::default().prefill_chunk_tokens))
            .unwrap_or(8),
        _ => cpu,
    }
}

/// The largest batch of sequences of `prompt_len + new_tokens` positions whose decoding fits in
/// `free_bytes` of device memory, keeping 8% and the activations of one prefill slice of
/// `prefill_chunk_tokens` tokens in reserve (at least 1, at most 1024).
pub fn auto_batch_size(model: &Model, prompt_len: usize, new_tokens: usize, free_bytes: i64, prefill_chunk_tokens: i64) -> usize {
    let c = &model.config;
    let elt = model.kind.elt_size_in_bytes() as i64;
    let chunk = prefill_chunk_tokens.min((prompt_len as i64).max(1) * 1024);
    let prefill = chunk * (4 * c.intermediate_size as i64 + 8 * c.hidden_size as i64) * elt;
    let usable = (free_bytes as f64 * 0.92) as i64 - prefill;
    let per = bytes_per_sequence(model, prompt_len + new_tokens).max(1);
    (usable / per).clamp(1, 1024) as usize
}
