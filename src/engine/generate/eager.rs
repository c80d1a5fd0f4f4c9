//! The eager decoding loop: one libtorch forward per step (two for a step policy that needs
//! the unmasked pass), every step's outputs copied to the host. It handles what the
//! fixed-shape loop cannot: LongRoPE's cache recomputation, a fixed mask combined with a step
//! policy, a top-k wider than a prompt, hidden last prompt tokens.
use tch::{Device, Kind, Tensor};

use super::batch::{keep_tensor, Batch, FixedHeads};
use super::steps::{commit_step, merge_passes, policy_sets};
use super::{GenStats, GenerateError, GenerateOptions, Generation, Prompt, StepPolicy, StepRecord};
use crate::engine::kv_cache::KvCache;
use crate::engine::model::{CaptureRequest, HeadMask, MaskMode, Model, StepInput, StepOutput};

pub(super) struct EagerSetup<'a> {
    /// `[B, width]` padded prompt ids.
    pub ids: &'a Tensor,
    pub width: i64,
    pub capture: CaptureRequest,
    pub fixed: Option<&'a FixedHeads>,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn decode(
    model: &Model,
    prompts: &[Prompt],
    opts: &GenerateOptions,
    batch: &Batch,
    setup: EagerSetup,
    mut cache: KvCache,
    mut policy: Option<&mut dyn StepPolicy>,
    gens: &mut [Generation],
    stats: &mut GenStats,
    on_step: &mut dyn FnMut(usize),
    t_decode: std::time::Instant,
) -> Result<(), GenerateError> {
    let c = &model.config;
    let (n_layers, n_heads) = (c.num_layers, c.num_heads);
    let (ids, width, capture) = (setup.ids, setup.width, &setup.capture);
    let b = batch.b;
    let pad = &batch.pad;
    let no_capture = CaptureRequest::default();
    let step_mask = setup.fixed.map(FixedHeads::step_mask);
    let prefill_mask = setup.fixed.and_then(FixedHeads::prefill_mask);
    let fixed_sets = setup.fixed.map(|f| f.sets.as_slice());
    let mut done = vec![false; b as usize];
    let all_rows: Vec<usize> = (0..b as usize).collect();
    let mut next = ids.narrow(1, width - 1, 1);
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
                    let inp = StepInput { ids: &all, positions: &p_all, max_positions: &[m], bias: bias_all.as_ref(), head_mask: mask.as_ref(), capture: &no_capture, all_logits: false, write_cols: None };
                    model.forward(&inp, &mut cache.row_view(i as i64, pad[i]));
                }
            }
        }
        let bias = batch.bias(q0, 1);
        let run = |mask: Option<&HeadMask>, cache: &mut KvCache| {
            let inp = StepInput { ids: &next, positions: &pos, max_positions: &max_positions, bias: bias.as_ref(), head_mask: mask, capture, all_logits: false, write_cols: None };
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
        let mut records = to_records(&out, batch, n_layers, n_heads, opts.top_logits, step_mask.as_ref().and(fixed_sets))?;
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
                let second = to_records(&out2, batch, n_layers, n_heads, opts.top_logits, None)?;
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
        next = Tensor::from_slice(&tokens).view([b, 1]).to_device(model.device);
    }
    Ok(())
}

/// Copies one step's device outputs to the host (one transfer per tensor) and splits them per
/// sequence, converting padded columns to prompt coordinates.
pub(super) fn to_records(out: &StepOutput, batch: &Batch, layers: usize, heads: usize, top_logits: usize, masked: Option<&[Vec<(usize, usize)>]>) -> Result<Vec<StepRecord>, GenerateError> {
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
    let reasoning = host_f32(&out.reasoning)?;
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
            reasoning: reasoning.as_ref().map(|v| per_head_f(v, 1)).unwrap_or_default(),
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