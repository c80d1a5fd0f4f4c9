//! The fixed-shape decoding loop (`DecodeMode::Static` / `Graph`): one `Model::decode_step`
//! per step over device-resident state, its outputs packed into one tensor and copied to the
//! host once; on CUDA the step is captured into a graph at the first step of a batch size and
//! replayed. Finished rows are dropped from the batch (`drop_finished`).
use tch::{Device, Kind, Tensor};

use super::batch::{keep_tensor, Batch};
use super::steps::{commit_step, merge_passes, policy_sets};
use super::{EngineOptions, GenStats, GenerateError, GenerateOptions, Generation, Prompt, StepPolicy, StepRecord};
use crate::engine::kv_cache::KvCache;
use crate::engine::model::{CaptureRequest, DecodeState, MaskMode, Model, StepOutput};

pub(super) struct StaticSetup<'a> {
    pub ids: &'a Tensor,
    pub width: i64,
    pub cap: i64,
    pub pv_chunk: Option<i64>,
    pub key_ok: Tensor,
    pub keep: Option<Tensor>,
    pub mask_mode: MaskMode,
    pub fixed_sets: Option<&'a [Vec<(usize, usize)>]>,
    pub capture: CaptureRequest,
}

/// Sizes of the pieces of one step's packed output (see `pack`).
struct Layout {
    b: usize,
    layers: usize,
    heads: usize,
    argmax: bool,
    k: usize,
    n_spans: usize,
    reasoning: bool,
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
    parts.extend(out.reasoning.iter().map(f));
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
    let reasoning = if l.reasoning { take(lh * b) } else { &[] };
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
                reasoning: if reasoning.is_empty() { vec![] } else { per_head(reasoning, 1) },
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
pub(super) fn decode(
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
    // Compiled here and at each new batch size, before any graph capture (NVRTC and module
    // loading must not run while a stream is capturing).
    let kernels = if eng.fused_kernels && device.is_cuda() {
        let k = model.fused_kernels(&setup.capture);
        st.fused = k.is_ok();
        stats.fused_unavailable = k.as_ref().err().cloned();
        k.ok()
    } else {
        None
    };
    let mut capture = setup.capture;
    let mut done = vec![false; gens.len()];
    let mut graph: Option<(crate::engine::cuda::CudaGraph, Tensor)> = None;
    let mut warmed = false;
    if use_graph {
        crate::engine::cuda::side_stream_enter(device).map_err(GenerateError::Cuda)?;
    }
    let result = (|| -> Result<(), GenerateError> {
        for step in 0..opts.max_new_tokens {
            let b = rows.len();
            if let Some(k) = kernels.filter(|_| st.fused) {
                if let Err(e) = k.prepare(b as i64) {
                    // This batch size's kernels did not build: libtorch ops from here on.
                    eprintln!("rhx: fused CUDA decode kernels for {b} rows unavailable, decoding on libtorch ops: {e}");
                    st.fused = false;
                    stats.fused_unavailable = Some(e);
                }
            }
            if st.fused {
                stats.fused_kernels = true;
            }
            let layout = Layout {
                b,
                layers: c.num_layers,
                heads: c.num_heads,
                argmax: capture.argmax,
                k: capture.top_k,
                n_spans: capture.spans.as_ref().map(|s| s.size()[2] as usize).unwrap_or(0),
                reasoning: capture.reasoning.is_some(),
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
                if let Some(r) = capture.reasoning.as_mut() {
                    r.needle = r.needle.index_select(0, &idx);
                }
                rows = alive.iter().map(|&r| rows[r]).collect();
                pad = alive.iter().map(|&r| pad[r]).collect();
            }
        }
        Ok(())
    })();
    drop(graph);
    if use_graph {
        crate::engine::cuda::side_stream_exit().map_err(GenerateError::Cuda)?;
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
    graph: &mut Option<(crate::engine::cuda::CudaGraph, Tensor)>,
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
    let mut g = crate::engine::cuda::CudaGraph::new().map_err(GenerateError::Cuda)?;
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
