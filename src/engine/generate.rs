//! Greedy generation over a batch of prompts with per-step capture.
//!
//! Flow of one run (see docs/ARCHITECTURE.md): prompts are left-padded into one batch; the
//! prompt minus its last token is prefilled in one call; then every step feeds one token per
//! sequence (step 0 feeds the last prompt token, as Wu et al.'s detection code does), so every
//! step — including the first — has a single query row whose per-head reductions are captured,
//! and a per-step head mask applies to exactly that query. A step that needs the unmasked pass
//! first (dynamic ablation) runs the forward twice at the same cache position and commits the
//! second.
use std::ops::Range;

use tch::{Device, Kind, Tensor};

use super::kv_cache::KvCache;
use super::model::{CaptureRequest, DecodeState, HeadMask, HiddenSite, MaskMode, Model, StepInput, StepOutput};

/// One prompt: token ids plus spans (prompt positions) used by masks and captures.
#[derive(Debug, Clone, Default)]
pub struct Prompt {
    pub ids: Vec<u32>,
    /// Spans hidden from every later query (an attention-mask intervention, Section 5).
    pub hidden_spans: Vec<Range<usize>>,
    /// Spans whose attention mass is captured per head and step.
    pub mass_spans: Vec<Range<usize>>,
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
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { max_new_tokens: 40, eos_ids: vec![], argmax: true, top_k: 0, hidden: vec![], fixed_mask: None, top_logits: 0 }
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
    #[error("{sets} per-prompt head sets for {prompts} prompts")]
    MaskPerPrompt { sets: usize, prompts: usize },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("CUDA: {0}")]
    Cuda(String),
}

struct Batch {
    b: i64,
    /// Left padding per sequence.
    pad: Vec<i64>,
    /// `[B, cap]` bool: position holds a real token.
    valid: Tensor,
    /// `[B, cap]` int64: hidden-span id of each position (0 = visible).
    hidden_id: Tensor,
    /// No padding and no hidden spans: attention is plain causal and needs no bias tensor.
    plain: bool,
    device: Device,
}

impl Batch {
    /// Additive bias `[B, 1, T, S]` for queries at columns `q0 .. q0+T` over keys `0 .. q0+T`,
    /// or `None` when attention is plain causal.
    fn bias(&self, q0: i64, t: i64) -> Option<Tensor> {
        if self.plain && (q0 == 0 || t == 1) {
            return None;
        }
        let s = q0 + t;
        let d = self.device;
        let kpos = Tensor::arange(s, (Kind::Int64, d)).view([1, 1, s]);
        let qpos = Tensor::arange_start(q0, s, (Kind::Int64, d)).view([1, t, 1]);
        let valid_k = self.valid.narrow(1, 0, s).unsqueeze(1);
        let hid_k = self.hidden_id.narrow(1, 0, s).unsqueeze(1);
        let hid_q = self.hidden_id.narrow(1, q0, t).unsqueeze(2);
        let visible = kpos.le_tensor(&qpos).logical_and(&valid_k).logical_and(&hid_k.eq(0).logical_or(&hid_k.eq_tensor(&hid_q)));
        let visible = visible.logical_or(&kpos.eq_tensor(&qpos));
        let zeros = Tensor::zeros([self.b, t, s], (Kind::Float, d));
        Some(zeros.masked_fill(&visible.logical_not(), f64::NEG_INFINITY).unsqueeze(1))
    }

    /// Sequence `i` alone, without its padding (position 0 = its first token), over the same
    /// device buffers: used to prefill or recompute one sequence into its row of the cache.
    fn row(&self, i: usize, plain: bool) -> Batch {
        let cap = self.valid.size()[1];
        let pad = self.pad[i];
        Batch {
            b: 1,
            pad: vec![0],
            valid: self.valid.narrow(0, i as i64, 1).narrow(1, pad, cap - pad),
            hidden_id: self.hidden_id.narrow(0, i as i64, 1).narrow(1, pad, cap - pad),
            plain,
            device: self.device,
        }
    }

    /// RoPE positions `[B, T]` of columns `q0 .. q0+T`, and each row's largest position.
    fn positions(&self, q0: i64, t: i64) -> (Tensor, Vec<i64>) {
        let cols = Tensor::arange_start(q0, q0 + t, (Kind::Int64, Device::Cpu)).view([1, t]);
        let pad = Tensor::from_slice(&self.pad).view([self.b, 1]);
        let pos = (cols - pad).clamp_min(0);
        let max = self.pad.iter().map(|p| (q0 + t - 1 - p).max(0)).collect();
        (pos.to_device(self.device), max)
    }
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
pub fn generate_with(
    model: &Model,
    prompts: &[Prompt],
    opts: &GenerateOptions,
    eng: &EngineOptions,
    mut policy: Option<&mut dyn StepPolicy>,
    mut on_step: impl FnMut(usize),
) -> Result<(Vec<Generation>, GenStats), GenerateError> {
    let mut stats = GenStats::default();
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
    }
    if let Some(m) = &opts.fixed_mask {
        check_heads(&m.heads, n_layers, n_heads)?;
        if !m.per_prompt.is_empty() && m.per_prompt.len() != prompts.len() {
            return Err(GenerateError::MaskPerPrompt { sets: m.per_prompt.len(), prompts: prompts.len() });
        }
        for set in &m.per_prompt {
            check_heads(set, n_layers, n_heads)?;
        }
    }
    for site in &opts.hidden {
        if let HiddenSite::Layer(layer) = site {
            if *layer >= n_layers {
                return Err(GenerateError::NoSuchLayer { layer: *layer, layers: n_layers });
            }
        }
    }
    if prompts.is_empty() {
        return Ok((vec![], stats));
    }
    let device = model.device;
    let b = prompts.len() as i64;
    let width = prompts.iter().map(|p| p.ids.len()).max().unwrap() as i64;
    let cap = width + opts.max_new_tokens as i64;
    // With a split-K P·V in the decode step (`Model::pv_chunk`: CUDA, long contexts, small
    // batches) the capacity is a multiple of the chunk: at most a chunk of extra, masked columns.
    let pv_chunk = model.pv_chunk(cap, prompts.len() as i64);
    let cap = match pv_chunk {
        Some(r) => (cap + r - 1) / r * r,
        None => cap,
    };
    let pad: Vec<i64> = prompts.iter().map(|p| width - p.ids.len() as i64).collect();

    // Host-side layout of the padded batch.
    let mut ids = vec![0i64; (b * width) as usize];
    let mut valid = vec![false; (b * cap) as usize];
    let mut hidden_id = vec![0i64; (b * cap) as usize];
    for (i, p) in prompts.iter().enumerate() {
        let row = i * width as usize;
        let off = pad[i] as usize;
        for (j, &id) in p.ids.iter().enumerate() {
            ids[row + off + j] = id as i64;
        }
        let vrow = i * cap as usize;
        for j in off..cap as usize {
            valid[vrow + j] = true;
        }
        for (sid, span) in p.hidden_spans.iter().enumerate() {
            for j in span.clone() {
                if j < p.ids.len() {
                    hidden_id[vrow + off + j] = sid as i64 + 1;
                }
            }
        }
    }
    let batch = Batch {
        b,
        pad: pad.clone(),
        valid: Tensor::from_slice(&valid).view([b, cap]).to_device(device),
        hidden_id: Tensor::from_slice(&hidden_id).view([b, cap]).to_device(device),
        plain: pad.iter().all(|&p| p == 0) && prompts.iter().all(|p| p.hidden_spans.is_empty()),
        device,
    };
    let ids = Tensor::from_slice(&ids).view([b, width]).to_device(device);
    let spans = mass_span_tensor(prompts, &pad, width, device);
    let capture = CaptureRequest { argmax: opts.argmax || policy.is_some(), top_k: opts.top_k, spans, hidden: opts.hidden.clone() };
    let no_capture = CaptureRequest::default();

    let fixed_sets: Option<Vec<Vec<(usize, usize)>>> =
        opts.fixed_mask.as_ref().map(|m| if m.per_prompt.is_empty() { vec![m.heads.clone(); b as usize] } else { m.per_prompt.clone() });
    let fixed_keep = fixed_sets.as_ref().map(|sets| keep_tensor(sets, n_layers, n_heads, model));
    let fixed = |scope_ok: bool| -> Option<HeadMask> {
        match (&opts.fixed_mask, &fixed_keep) {
            (Some(m), Some(k)) if scope_ok => Some(HeadMask { mode: m.mode, keep: k.shallow_clone() }),
            _ => None,
        }
    };

    let mut cache = model.new_cache(b, cap);
    // Prefill everything but the last prompt column. A batch without padding or hidden spans
    // goes in one call with plain causal attention; otherwise each prompt is prefilled on its
    // own into its row of the cache (no padded rows: the fused kernel's causal mode, and no
    // compute spent on padding), and only decoding is batched.
    let prefill_mask = fixed(opts.fixed_mask.as_ref().is_some_and(|m| m.scope == MaskScope::AllPositions));
    let t_prefill = std::time::Instant::now();
    if width > 1 && batch.plain {
        let t = width - 1;
        let (pos, max_positions) = batch.positions(0, t);
        let rows = (eng.prefill_chunk_tokens / t).clamp(1, b);
        let mut r0 = 0;
        while r0 < b {
            let n = rows.min(b - r0);
            let mask = prefill_mask.as_ref().map(|m| HeadMask { mode: m.mode, keep: m.keep.narrow(1, r0, n) });
            let inp = StepInput {
                ids: &ids.narrow(0, r0, n).narrow(1, 0, t),
                positions: &pos.narrow(0, r0, n),
                max_positions: &max_positions[r0 as usize..(r0 + n) as usize],
                bias: None,
                head_mask: mask.as_ref(),
                capture: &no_capture,
                all_logits: false,
            };
            model.forward(&inp, &mut cache.rows_view(r0, n));
            r0 += n;
        }
    } else if width > 1 {
        for (i, p) in prompts.iter().enumerate() {
            let n = p.ids.len() as i64 - 1;
            if n == 0 {
                continue;
            }
            let row = batch.row(i, p.hidden_spans.is_empty());
            let (pos, max_positions) = row.positions(0, n);
            let bias = row.bias(0, n);
            let mask = prefill_mask.as_ref().map(|m| HeadMask { mode: m.mode, keep: m.keep.narrow(1, i as i64, 1) });
            let inp = StepInput {
                ids: &ids.narrow(0, i as i64, 1).narrow(1, pad[i], n),
                positions: &pos,
                max_positions: &max_positions,
                bias: bias.as_ref(),
                head_mask: mask.as_ref(),
                capture: &no_capture,
                all_logits: false,
            };
            model.forward(&inp, &mut cache.row_view(i as i64, pad[i]));
        }
    }
    if width > 1 {
        cache.advance(width - 1);
    }
    sync(device);
    stats.prefill_s = t_prefill.elapsed().as_secs_f64();

    let mut gens: Vec<Generation> = prompts.iter().map(|p| Generation { prompt_len: p.ids.len(), ..Default::default() }).collect();
    // A step policy runs on the fast path too (its host-side choice between two replays of the
    // step), unless a fixed mask is also set: the eager loop combines the two.
    let eligible = (policy.is_none() || opts.fixed_mask.is_none())
        && model.rope_long_switch().is_none()
        && prompts.iter().all(|p| opts.top_k <= p.ids.len() && !p.hidden_spans.iter().any(|s| s.contains(&(p.ids.len() - 1))));
    let mode = match eng.decode {
        _ if !eligible => DecodeMode::Eager,
        DecodeMode::Auto if device == Device::Cpu => DecodeMode::Eager,
        DecodeMode::Auto | DecodeMode::Graph if device != Device::Cpu && super::cuda::shim().is_ok() => DecodeMode::Graph,
        DecodeMode::Auto | DecodeMode::Graph => DecodeMode::Static,
        m => m,
    };
    stats.decode_mode = format!("{mode:?}").to_lowercase();
    if mode != DecodeMode::Eager {
        let t_decode = std::time::Instant::now();
        let key_ok = batch.valid.logical_and(&batch.hidden_id.eq(0));
        let cap_req = CaptureRequest { argmax: capture.argmax, top_k: capture.top_k, spans: capture.spans.as_ref().map(|t| t.shallow_clone()), hidden: capture.hidden.clone() };
        // A step policy writes its sets into a keep buffer at a fixed address (all ones = the
        // unmasked pass; multiplying by 1 is exact, so that pass equals the unmasked model).
        let (keep, mask_mode) = match (&policy, &opts.fixed_mask) {
            (Some(pol), _) => (Some(Tensor::ones([n_layers as i64, b, n_heads as i64], (model.kind, device))), pol.mode()),
            (None, Some(m)) => (fixed_keep.as_ref().map(|k| k.shallow_clone()), m.mode),
            (None, None) => (None, MaskMode::ZeroOutput),
        };
        let st = StaticSetup { ids: &ids, width, cap, pv_chunk, key_ok, keep, mask_mode, fixed_sets: fixed_sets.as_deref(), capture: cap_req };
        decode_static(model, prompts, opts, eng, &batch, st, cache, mode == DecodeMode::Graph, policy, &mut gens, &mut stats, &mut on_step, t_decode)?;
        sync(device);
        stats.decode_s = t_decode.elapsed().as_secs_f64();
        stats.tokens = gens.iter().map(|g| g.tokens.len()).sum();
        return Ok((gens, stats));
    }
    let t_decode = std::time::Instant::now();
    let mut done = vec![false; b as usize];
    let all_rows: Vec<usize> = (0..b as usize).collect();
    let mut next = ids.narrow(1, width - 1, 1);
    let step_mask = fixed(opts.fixed_mask.is_some());
    // Tokens fed so far after the prompt, for LongRoPE's recomputation below.
    let mut fed: Vec<Tensor> = Vec::new();
    for step in 0..opts.max_new_tokens {
        let q0 = cache.len;
        let (pos, max_positions) = batch.positions(q0, 1);
        if let Some(switch) = model.rope_long_switch() {
            // LongRoPE (Phi-3): at the first step whose sequence exceeds the original context,
            // RoPE switches to the long factors and HF's generate() drops the cache and
            // recomputes every earlier position with them. Do the same, per sequence, so that
            // greedy outputs match (and a batch behaves like its prompts generated alone).
            for (i, &m) in max_positions.iter().enumerate() {
                let n = m; // positions 0 .. m-1 are cached for this row
                if m + 1 > switch && m <= switch && n > 0 {
                    let mut cols = vec![ids.narrow(0, i as i64, 1).narrow(1, pad[i], width - 1 - pad[i])];
                    cols.extend(fed.iter().map(|t| t.narrow(0, i as i64, 1)));
                    let all = Tensor::cat(&cols, 1);
                    let row = batch.row(i, prompts[i].hidden_spans.is_empty());
                    let (p_all, _) = row.positions(0, n);
                    let bias_all = row.bias(0, n);
                    let mask = prefill_mask.as_ref().map(|mk| HeadMask { mode: mk.mode, keep: mk.keep.narrow(1, i as i64, 1) });
                    let inp = StepInput { ids: &all, positions: &p_all, max_positions: &[m], bias: bias_all.as_ref(), head_mask: mask.as_ref(), capture: &no_capture, all_logits: false };
                    model.forward(&inp, &mut cache.row_view(i as i64, pad[i]));
                }
            }
        }
        let bias = batch.bias(q0, 1);
        let run = |mask: Option<&HeadMask>, cache: &mut KvCache| {
            let inp = StepInput { ids: &next, positions: &pos, max_positions: &max_positions, bias: bias.as_ref(), head_mask: mask, capture: &capture, all_logits: false };
            model.forward(&inp, cache)
        };
        // A policy whose sets are known in advance masks the step's only pass.
        let planned: Option<Vec<Vec<(usize, usize)>>> = match policy.as_deref_mut() {
            Some(pol) if !pol.needs_unmasked_pass() => Some(policy_sets(pol, &all_rows, &done, step, &[], prompts, n_layers, n_heads)?),
            _ => None,
        };
        let planned_mask = planned.as_ref().filter(|s| s.iter().any(|x| !x.is_empty())).map(|sets| HeadMask {
            mode: policy.as_deref().map_or(MaskMode::UniformAttention, |p| p.mode()),
            keep: keep_tensor(sets, n_layers, n_heads, model),
        });
        let out = run(planned_mask.as_ref().or(step_mask.as_ref()), &mut cache);
        let mut records = to_records(&out, &batch, n_layers, n_heads, opts.top_logits, step_mask.as_ref().and(fixed_sets.as_deref()))?;
        if let Some(sets) = planned {
            for (r, set) in records.iter_mut().zip(sets) {
                r.masked = set;
            }
        } else if let Some(pol) = policy.as_deref_mut() {
            let sets = policy_sets(pol, &all_rows, &done, step, &records, prompts, n_layers, n_heads)?;
            if sets.iter().any(|s| !s.is_empty()) {
                let keep = keep_tensor(&sets, n_layers, n_heads, model);
                let mask = HeadMask { mode: pol.mode(), keep };
                let out2 = run(Some(&mask), &mut cache);
                let second = to_records(&out2, &batch, n_layers, n_heads, opts.top_logits, None)?;
                records = merge_passes(records, second, sets);
            }
        }
        cache.advance(1);
        let tokens: Vec<i64> = records.iter().map(|r| r.token as i64).collect();
        for (i, rec) in records.into_iter().enumerate() {
            commit_step(&mut gens[i], &mut done[i], rec, &opts.eos_ids);
        }
        on_step(step);
        stats.steps += 1;
        stats.row_steps += b as usize;
        if step == 0 {
            stats.first_step_s = t_decode.elapsed().as_secs_f64();
            stats.first_step_rows = b as usize;
        }
        if done.iter().all(|&d| d) {
            break;
        }
        fed.push(next.shallow_clone());
        next = Tensor::from_slice(&tokens).view([b, 1]).to_device(device);
    }
    sync(device);
    stats.decode_s = t_decode.elapsed().as_secs_f64();
    stats.tokens = gens.iter().map(|g| g.tokens.len()).sum();
    Ok((gens, stats))
}

struct StaticSetup<'a> {
    ids: &'a Tensor,
    width: i64,
    cap: i64,
    pv_chunk: Option<i64>,
    key_ok: Tensor,
    keep: Option<Tensor>,
    mask_mode: MaskMode,
    fixed_sets: Option<&'a [Vec<(usize, usize)>]>,
    capture: CaptureRequest,
}

/// Sizes of the pieces of one step's packed output (see `pack`).
struct Layout {
    b: usize,
    layers: usize,
    heads: usize,
    argmax: bool,
    k: usize,
    n_spans: usize,
    hidden: usize,
    d: usize,
    top_logits: usize,
}

/// Everything one step returns, flattened into a single f32 device tensor so that it reaches
/// the host in one copy: tokens, argmax positions, their weights, top-k positions, span masses,
/// hidden states, top logits (values, ids). Integers are exact in f32 below 2^24 (positions,
/// vocabulary ids).
fn pack(out: &StepOutput, top_logits: usize) -> Tensor {
    let f = |t: &Tensor| t.to_kind(Kind::Float).flatten(0, -1);
    let mut parts = vec![f(out.tokens.as_ref().expect("decode_step returns tokens"))];
    parts.extend(out.argmax.iter().map(f));
    parts.extend(out.argmax_weight.iter().map(f));
    parts.extend(out.top_k.iter().map(f));
    parts.extend(out.span_mass.iter().map(f));
    parts.extend(out.hidden.iter().map(f));
    if top_logits > 0 {
        let (v, i) = out.logits.topk(top_logits as i64, -1, true, true);
        parts.push(f(&v));
        parts.push(f(&i));
    }
    Tensor::cat(&parts, 0)
}

/// Splits one step's packed host copy into per-row records (positions in prompt coordinates).
fn unpack(h: &[f32], l: &Layout, pad: &[i64], masked: &[Vec<(usize, usize)>]) -> Vec<StepRecord> {
    let (b, lh) = (l.b, l.layers * l.heads);
    let mut off = 0;
    let mut take = |n: usize| {
        let s = &h[off..off + n];
        off += n;
        s
    };
    let tokens = take(b);
    let argmax = if l.argmax { take(lh * b) } else { &[] };
    let weight = if l.argmax { take(lh * b) } else { &[] };
    let topk = take(lh * b * l.k);
    let mass = take(lh * b * l.n_spans);
    let hidden = take(l.hidden * b * l.d);
    let top_v = take(b * l.top_logits);
    let top_i = take(b * l.top_logits);
    (0..b)
        .map(|i| {
            let per_head = |v: &[f32], w: usize| -> Vec<f32> {
                let mut r = Vec::with_capacity(lh * w);
                for layer in 0..l.layers {
                    let base = (layer * b + i) * l.heads * w;
                    r.extend_from_slice(&v[base..base + l.heads * w]);
                }
                r
            };
            let pos = |v: &[f32], w: usize| -> Vec<i64> { if v.is_empty() { vec![] } else { per_head(v, w).into_iter().map(|p| p as i64 - pad[i]).collect() } };
            StepRecord {
                token: tokens[i] as u32,
                argmax: pos(argmax, 1),
                argmax_weight: if weight.is_empty() { vec![] } else { per_head(weight, 1) },
                top_k: pos(topk, l.k),
                span_mass: if mass.is_empty() { vec![] } else { per_head(mass, l.n_spans) },
                hidden: (0..l.hidden).map(|s| hidden[(s * b + i) * l.d..(s * b + i + 1) * l.d].to_vec()).collect(),
                top_logits: (0..l.top_logits).map(|j| (top_i[i * l.top_logits + j] as u32, top_v[i * l.top_logits + j])).collect(),
                masked: masked.get(i).cloned().unwrap_or_default(),
                unmasked: None,
            }
        })
        .collect()
}

/// Set once a decode step has run eagerly on the capture side stream in this process: lazy
/// initialisation (cuBLAS handles and workspaces for that stream) is done, so later batches
/// capture their graph at step 0 without an eager warm-up step.
static SIDE_STREAM_WARM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The decoding loop on `Model::decode_step` (see `DecodeMode::Static` / `Graph`).
#[allow(clippy::too_many_arguments)]
fn decode_static(
    model: &Model,
    prompts: &[Prompt],
    opts: &GenerateOptions,
    eng: &EngineOptions,
    batch: &Batch,
    setup: StaticSetup,
    mut cache: KvCache,
    use_graph: bool,
    mut policy: Option<&mut dyn StepPolicy>,
    gens: &mut [Generation],
    stats: &mut GenStats,
    on_step: &mut dyn FnMut(usize),
    t_decode: std::time::Instant,
) -> Result<(), GenerateError> {
    let device = model.device;
    let c = &model.config;
    let b0 = batch.b;
    // Batch row → prompt index, and each row's left padding.
    let mut rows: Vec<usize> = (0..b0 as usize).collect();
    let mut pad: Vec<i64> = batch.pad.clone();
    let last = setup.width - 1;
    let pos0: Vec<i64> = pad.iter().map(|p| last - p).collect();
    let mut st = DecodeState {
        ids: setup.ids.narrow(1, last, 1).copy(),
        pos: Tensor::from_slice(&pos0).view([b0, 1]).to_device(device),
        col: Tensor::from_slice(&[last]).to_device(device),
        key_ok: setup.key_ok,
        kpos: Tensor::arange(setup.cap, (Kind::Int64, device)).view([1, setup.cap]),
        keep: setup.keep,
        mask_mode: setup.mask_mode,
        pv_chunk: setup.pv_chunk,
        fused: false,
    };
    if eng.fused_kernels && device.is_cuda() {
        // Compiled here, before any graph capture (NVRTC and module loading must not run
        // while a stream is capturing).
        let why = model.fused_kernels(&setup.capture).map(|_| ());
        st.fused = why.is_ok();
        stats.fused_unavailable = why.err().or_else(|| (b0 > super::kernels::FUSED_MAX_BATCH).then(|| format!("batches of more than {} rows run on libtorch ops", super::kernels::FUSED_MAX_BATCH)));
    }
    let mut capture = setup.capture;
    let mut done = vec![false; gens.len()];
    let mut graph: Option<(super::cuda::CudaGraph, Tensor)> = None;
    let mut warmed = false;
    if use_graph {
        super::cuda::side_stream_enter(device).map_err(GenerateError::Cuda)?;
    }
    let result = (|| -> Result<(), GenerateError> {
        for step in 0..opts.max_new_tokens {
            let b = rows.len();
            if st.fused && b as i64 <= super::kernels::FUSED_MAX_BATCH {
                stats.fused_kernels = true;
            }
            let layout = Layout {
                b,
                layers: c.num_layers,
                heads: c.num_heads,
                argmax: capture.argmax,
                k: capture.top_k,
                n_spans: capture.spans.as_ref().map(|s| s.size()[2] as usize).unwrap_or(0),
                hidden: capture.hidden.len(),
                d: c.hidden_size,
                top_logits: opts.top_logits,
            };
            let mut pass = |st: &DecodeState, cache: &mut KvCache, stats: &mut GenStats| -> Result<Vec<f32>, GenerateError> {
                let packed = run_static_pass(model, st, cache, &capture, opts.top_logits, use_graph, &mut graph, &mut warmed, stats, step)?;
                Ok(Vec::<f32>::try_from(packed.to_device(Device::Cpu))?)
            };
            let recs = match policy.as_deref_mut() {
                None => {
                    let masked: Vec<Vec<(usize, usize)>> = match setup.fixed_sets {
                        Some(sets) => rows.iter().map(|&r| sets[r].clone()).collect(),
                        None => vec![],
                    };
                    unpack(&pass(&st, &mut cache, stats)?, &layout, &pad, &masked)
                }
                Some(pol) => {
                    let keep = st.keep.as_ref().expect("a step policy has a keep buffer").shallow_clone();
                    let choose = |pol: &mut dyn StepPolicy, recs: &[StepRecord]| policy_sets(pol, &rows, &done, step, recs, prompts, c.num_layers, c.num_heads);
                    if !pol.needs_unmasked_pass() {
                        // Sets known before the step: its only pass is masked.
                        let sets = choose(pol, &[])?;
                        keep.shallow_clone().copy_(&keep_tensor(&sets, c.num_layers, c.num_heads, model));
                        unpack(&pass(&st, &mut cache, stats)?, &layout, &pad, &sets)
                    } else {
                        // Unmasked pass, the policy's choice on the host, then the masked pass at
                        // the same cache column (its K/V overwrite the first pass's).
                        let saved = (st.ids.copy(), st.pos.copy(), st.col.copy());
                        let _ = keep.shallow_clone().fill_(1.0);
                        let first = unpack(&pass(&st, &mut cache, stats)?, &layout, &pad, &[]);
                        let sets = choose(pol, &first)?;
                        if sets.iter().all(|s| s.is_empty()) {
                            first
                        } else {
                            keep.shallow_clone().copy_(&keep_tensor(&sets, c.num_layers, c.num_heads, model));
                            st.ids.shallow_clone().copy_(&saved.0);
                            st.pos.shallow_clone().copy_(&saved.1);
                            st.col.shallow_clone().copy_(&saved.2);
                            let second = unpack(&pass(&st, &mut cache, stats)?, &layout, &pad, &[]);
                            merge_passes(first, second, sets)
                        }
                    }
                }
            };
            stats.steps += 1;
            stats.row_steps += b;
            if step == 0 {
                stats.first_step_s = t_decode.elapsed().as_secs_f64();
                stats.first_step_rows = b;
            }
            for (r, rec) in recs.into_iter().enumerate() {
                let i = rows[r];
                commit_step(&mut gens[i], &mut done[i], rec, &opts.eos_ids);
            }
            on_step(step);
            let alive: Vec<usize> = (0..b).filter(|&r| !done[rows[r]]).collect();
            if alive.is_empty() {
                break;
            }
            let shrink = if use_graph { alive.len() * 4 <= b * 3 } else { alive.len() < b };
            if eng.drop_finished && shrink && step + 1 < opts.max_new_tokens {
                let idx = Tensor::from_slice(&alive.iter().map(|&r| r as i64).collect::<Vec<_>>()).to_device(device);
                graph = None;
                warmed = false;
                cache.select_rows(&idx);
                st.ids = st.ids.index_select(0, &idx);
                st.pos = st.pos.index_select(0, &idx);
                st.key_ok = st.key_ok.index_select(0, &idx);
                st.keep = st.keep.as_ref().map(|k| k.index_select(1, &idx));
                capture.spans = capture.spans.as_ref().map(|s| s.index_select(0, &idx));
                rows = alive.iter().map(|&r| rows[r]).collect();
                pad = alive.iter().map(|&r| pad[r]).collect();
            }
        }
        Ok(())
    })();
    drop(graph);
    if use_graph {
        super::cuda::side_stream_exit().map_err(GenerateError::Cuda)?;
    }
    result
}

/// One decoding step on the static path — eager, or replayed from the CUDA graph captured at
/// the first step of this batch size — returning the packed device output (see `pack`).
#[allow(clippy::too_many_arguments)]
fn run_static_pass(
    model: &Model,
    st: &DecodeState,
    cache: &mut KvCache,
    capture: &CaptureRequest,
    top_logits: usize,
    use_graph: bool,
    graph: &mut Option<(super::cuda::CudaGraph, Tensor)>,
    warmed: &mut bool,
    stats: &mut GenStats,
    step: usize,
) -> Result<Tensor, GenerateError> {
    if !use_graph {
        return Ok(pack(&model.decode_step(st, cache, capture), top_logits));
    }
    if let Some((g, out)) = graph {
        g.replay().map_err(GenerateError::Cuda)?;
        return Ok(out.shallow_clone());
    }
    if !*warmed && !SIDE_STREAM_WARM.load(std::sync::atomic::Ordering::Relaxed) {
        // First step at this batch size: run eagerly on the side stream (lazy initialisation —
        // cuBLAS handles and workspaces — must not happen during capture).
        *warmed = true;
        let out = pack(&model.decode_step(st, cache, capture), top_logits);
        SIDE_STREAM_WARM.store(true, std::sync::atomic::Ordering::Relaxed);
        return Ok(out);
    }
    let t0 = std::time::Instant::now();
    let mut g = super::cuda::CudaGraph::new().map_err(GenerateError::Cuda)?;
    g.capture_begin().map_err(GenerateError::Cuda)?;
    let out = pack(&model.decode_step(st, cache, capture), top_logits);
    g.capture_end().map_err(GenerateError::Cuda)?;
    stats.graph_captures += 1;
    stats.capture_s += t0.elapsed().as_secs_f64();
    if step > 0 {
        stats.capture_after_first_s += t0.elapsed().as_secs_f64();
    }
    g.replay().map_err(GenerateError::Cuda)?;
    *graph = Some((g, out.shallow_clone()));
    Ok(out)
}

/// The policy's head set for every batch row at `step` (`rows[r]` = the row's prompt index;
/// `recs[r]` its unmasked record, or none for a planned policy), empty for finished rows, each
/// checked against the model's shape.
#[allow(clippy::too_many_arguments)]
fn policy_sets(
    pol: &mut dyn StepPolicy,
    rows: &[usize],
    done: &[bool],
    step: usize,
    recs: &[StepRecord],
    prompts: &[Prompt],
    layers: usize,
    heads: usize,
) -> Result<Vec<Vec<(usize, usize)>>, GenerateError> {
    let empty = StepRecord::default();
    let sets: Vec<Vec<(usize, usize)>> =
        rows.iter().enumerate().map(|(r, &i)| if done[i] { vec![] } else { pol.heads_to_mask(i, step, recs.get(r).unwrap_or(&empty), &prompts[i]) }).collect();
    for s in &sets {
        check_heads(s, layers, heads)?;
    }
    Ok(sets)
}

/// A two-pass step's records: the masked pass where a row had heads masked (with its unmasked
/// record kept inside), the unmasked pass where its set was empty.
fn merge_passes(first: Vec<StepRecord>, second: Vec<StepRecord>, sets: Vec<Vec<(usize, usize)>>) -> Vec<StepRecord> {
    second
        .into_iter()
        .zip(first)
        .zip(sets)
        .map(|((mut r2, r1), set)| {
            if set.is_empty() {
                r1
            } else {
                r2.masked = set;
                r2.unmasked = Some(Box::new(r1));
                r2
            }
        })
        .collect()
}

/// Appends a step to a still-running generation; an EOS token (kept) finishes it.
fn commit_step(gen: &mut Generation, done: &mut bool, rec: StepRecord, eos_ids: &[u32]) {
    if *done {
        return;
    }
    let tok = rec.token;
    gen.tokens.push(tok);
    gen.steps.push(rec);
    if eos_ids.contains(&tok) {
        *done = true;
        gen.stopped_by_eos = true;
    }
}

fn check_heads(heads: &[(usize, usize)], layers: usize, n_heads: usize) -> Result<(), GenerateError> {
    match heads.iter().find(|&&(l, h)| l >= layers || h >= n_heads) {
        Some(&(layer, head)) => Err(GenerateError::NoSuchHead { layer, head, layers, heads: n_heads }),
        None => Ok(()),
    }
}

/// `[L, B, Hq]` keep-multipliers (1 keep, 0 mask) in the model's dtype.
fn keep_tensor(sets: &[Vec<(usize, usize)>], layers: usize, heads: usize, model: &Model) -> Tensor {
    let b = sets.len();
    let mut keep = vec![1f32; layers * b * heads];
    for (i, set) in sets.iter().enumerate() {
        for &(l, h) in set {
            keep[(l * b + i) * heads + h] = 0.0;
        }
    }
    Tensor::from_slice(&keep).view([layers as i64, b as i64, heads as i64]).to_kind(model.kind).to_device(model.device)
}

/// `[B, width, n]` membership of padded prompt columns in each prompt's mass spans.
fn mass_span_tensor(prompts: &[Prompt], pad: &[i64], width: i64, device: Device) -> Option<Tensor> {
    let n = prompts.iter().map(|p| p.mass_spans.len()).max().unwrap_or(0);
    if n == 0 {
        return None;
    }
    let b = prompts.len();
    let mut m = vec![0f32; b * width as usize * n];
    for (i, p) in prompts.iter().enumerate() {
        for (si, span) in p.mass_spans.iter().enumerate() {
            for j in span.clone().filter(|&j| j < p.ids.len()) {
                let col = pad[i] as usize + j;
                m[(i * width as usize + col) * n + si] = 1.0;
            }
        }
    }
    Some(Tensor::from_slice(&m).view([b as i64, width, n as i64]).to_device(device))
}

/// Copies one step's device outputs to the host (one transfer per tensor) and splits them per
/// sequence, converting padded columns to prompt coordinates.
fn to_records(out: &StepOutput, batch: &Batch, layers: usize, heads: usize, top_logits: usize, masked: Option<&[Vec<(usize, usize)>]>) -> Result<Vec<StepRecord>, GenerateError> {
    let b = batch.b as usize;
    let tokens: Vec<i64> = Vec::<i64>::try_from(out.logits.argmax(-1, false).to_device(Device::Cpu))?;
    let host_i64 = |t: &Option<Tensor>| -> Result<Option<Vec<i64>>, GenerateError> {
        t.as_ref().map(|t| Vec::<i64>::try_from(t.to_device(Device::Cpu).flatten(0, -1))).transpose().map_err(Into::into)
    };
    let host_f32 = |t: &Option<Tensor>| -> Result<Option<Vec<f32>>, GenerateError> {
        t.as_ref().map(|t| Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))).transpose().map_err(Into::into)
    };
    let argmax = host_i64(&out.argmax)?;
    let weight = host_f32(&out.argmax_weight)?;
    let topk = host_i64(&out.top_k)?;
    let k = out.top_k.as_ref().map(|t| t.size()[3] as usize).unwrap_or(0);
    let mass = host_f32(&out.span_mass)?;
    let n_spans = out.span_mass.as_ref().map(|t| t.size()[3] as usize).unwrap_or(0);
    let hidden: Vec<Vec<f32>> = out.hidden.iter().map(|h| Vec::<f32>::try_from(h.to_device(Device::Cpu).flatten(0, -1))).collect::<Result<_, _>>()?;
    let top = if top_logits > 0 {
        let (v, i) = out.logits.topk(top_logits as i64, -1, true, true);
        let v = Vec::<f32>::try_from(v.to_device(Device::Cpu).flatten(0, -1))?;
        let i = Vec::<i64>::try_from(i.to_device(Device::Cpu).flatten(0, -1))?;
        Some((v, i))
    } else {
        None
    };
    let mut recs = Vec::with_capacity(b);
    for i in 0..b {
        let pad = batch.pad[i];
        let per_head = |v: &Vec<i64>, width: usize| -> Vec<i64> {
            let mut r = Vec::with_capacity(layers * heads * width);
            for l in 0..layers {
                let base = (l * b + i) * heads * width;
                r.extend(v[base..base + heads * width].iter().map(|&p| p - pad));
            }
            r
        };
        let per_head_f = |v: &Vec<f32>, width: usize| -> Vec<f32> {
            let mut r = Vec::with_capacity(layers * heads * width);
            for l in 0..layers {
                let base = (l * b + i) * heads * width;
                r.extend_from_slice(&v[base..base + heads * width]);
            }
            r
        };
        let d = if b > 0 && !hidden.is_empty() { hidden[0].len() / b } else { 0 };
        recs.push(StepRecord {
            token: tokens[i] as u32,
            argmax: argmax.as_ref().map(|v| per_head(v, 1)).unwrap_or_default(),
            argmax_weight: weight.as_ref().map(|v| per_head_f(v, 1)).unwrap_or_default(),
            top_k: topk.as_ref().map(|v| per_head(v, k)).unwrap_or_default(),
            span_mass: mass.as_ref().map(|v| per_head_f(v, n_spans)).unwrap_or_default(),
            hidden: hidden.iter().map(|h| h[i * d..(i + 1) * d].to_vec()).collect(),
            top_logits: top
                .as_ref()
                .map(|(v, ix)| (0..top_logits).map(|j| (ix[i * top_logits + j] as u32, v[i * top_logits + j])).collect())
                .unwrap_or_default(),
            masked: masked.map(|m| m[i].clone()).unwrap_or_default(),
            unmasked: None,
        });
    }
    Ok(recs)
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
        Device::Cuda(_) => super::cuda::device_info(model.device)
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
