//! The padded batch: left padding, which positions hold real tokens, hidden spans, and the
//! device tensors built from them (attention bias, RoPE positions, head-mask multipliers,
//! mass-span membership).
use tch::{Device, Kind, Tensor};

use super::{FixedMask, MaskScope, Prompt};
use crate::engine::model::{HeadMask, MaskMode, Model};

pub(super) struct Batch {
    pub b: i64,
    /// Left padding per sequence.
    pub pad: Vec<i64>,
    /// `[B, cap]` bool: position holds a real token.
    pub valid: Tensor,
    /// `[B, cap]` int64: hidden-span id of each position (0 = visible).
    pub hidden_id: Tensor,
    /// No padding and no hidden spans: attention is plain causal and needs no bias tensor.
    pub plain: bool,
    pub device: Device,
}

impl Batch {
    /// Lays `prompts` out as one left-padded batch of `width` columns with room for `cap`
    /// positions: the `[B, width]` ids on the device, which positions hold real tokens, and
    /// which hidden span (if any) each belongs to.
    pub fn layout(prompts: &[Prompt], width: i64, cap: i64, device: Device) -> (Batch, Tensor) {
        let b = prompts.len() as i64;
        let pad: Vec<i64> = prompts.iter().map(|p| width - p.ids.len() as i64).collect();
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
            plain: pad.iter().all(|&p| p == 0) && prompts.iter().all(|p| p.hidden_spans.is_empty()),
            pad,
            valid: Tensor::from_slice(&valid).view([b, cap]).to_device(device),
            hidden_id: Tensor::from_slice(&hidden_id).view([b, cap]).to_device(device),
            device,
        };
        (batch, Tensor::from_slice(&ids).view([b, width]).to_device(device))
    }

    /// Additive bias `[B, 1, T, S]` for queries at columns `q0 .. q0+T` over keys `0 .. q0+T`,
    /// or `None` when attention is plain causal.
    pub fn bias(&self, q0: i64, t: i64) -> Option<Tensor> {
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
    pub fn row(&self, i: usize, plain: bool) -> Batch {
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
    pub fn positions(&self, q0: i64, t: i64) -> (Tensor, Vec<i64>) {
        let cols = Tensor::arange_start(q0, q0 + t, (Kind::Int64, Device::Cpu)).view([1, t]);
        let pad = Tensor::from_slice(&self.pad).view([self.b, 1]);
        let pos = (cols - pad).clamp_min(0);
        let max = self.pad.iter().map(|p| (q0 + t - 1 - p).max(0)).collect();
        (pos.to_device(self.device), max)
    }
}

/// A fixed head mask laid out for the batch: each row's set and their keep-multipliers.
pub(super) struct FixedHeads {
    pub mode: MaskMode,
    pub scope: MaskScope,
    pub sets: Vec<Vec<(usize, usize)>>,
    /// `[L, B, Hq]`, see [`keep_tensor`].
    pub keep: Tensor,
}

impl FixedHeads {
    pub fn new(m: &FixedMask, b: usize, model: &Model) -> Self {
        let sets = if m.per_prompt.is_empty() { vec![m.heads.clone(); b] } else { m.per_prompt.clone() };
        let keep = keep_tensor(&sets, model.config.num_layers, model.config.num_heads, model);
        FixedHeads { mode: m.mode, scope: m.scope, sets, keep }
    }

    /// The mask of every decoding step.
    pub fn step_mask(&self) -> HeadMask {
        HeadMask { mode: self.mode, keep: self.keep.shallow_clone() }
    }

    /// The mask of the prompt's positions: only with `scope: all_positions`.
    pub fn prefill_mask(&self) -> Option<HeadMask> {
        (self.scope == MaskScope::AllPositions).then(|| self.step_mask())
    }
}

/// `[L, B, Hq]` keep-multipliers (1 keep, 0 mask) in the model's dtype.
pub(super) fn keep_tensor(sets: &[Vec<(usize, usize)>], layers: usize, heads: usize, model: &Model) -> Tensor {
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
pub(super) fn mass_span_tensor(prompts: &[Prompt], pad: &[i64], width: i64, device: Device) -> Option<Tensor> {
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

/// `[B, width]` f32 membership of padded prompt columns in each prompt's needle (Eq. 2).
pub(super) fn needle_tensor(prompts: &[Prompt], pad: &[i64], width: i64, device: Device) -> Tensor {
    let mut m = vec![0f32; prompts.len() * width as usize];
    for (i, p) in prompts.iter().enumerate() {
        for &j in &p.needle {
            m[i * width as usize + pad[i] as usize + j] = 1.0;
        }
    }
    Tensor::from_slice(&m).view([prompts.len() as i64, width]).to_device(device)
}
