//! Rotary position embeddings, computed per forward call from the position ids exactly as HF
//! transformers does (f32 `inv_freq × position`, `cos`/`sin` of the duplicated frequencies), so
//! that the logits match HF to float rounding. Scaling variants: linear, llama3, longrope, and
//! llama.cpp's per-frequency factor tensor.
use tch::{Device, Kind, Tensor};

use super::config::{ModelConfig, RopeScaling};

pub struct Rope {
    /// Inverse frequencies for the default (or short) regime, f32, `[rotary_dim / 2]`.
    inv_freq: Tensor,
    /// LongRoPE only: frequencies used when the call's largest position ≥ `switch_at`.
    long: Option<(Tensor, i64)>,
    attention_scaling: f64,
    pub rotary_dim: i64,
}

/// `cos` and `sin` for one forward call, `[B, 1, T, rotary_dim]` in the activation dtype.
pub struct RopeTables {
    pub cos: Tensor,
    pub sin: Tensor,
    /// `sin` with its first half negated: `rotate_half(x)·sin = roll(x, half)·sin_signed`
    /// exactly (IEEE products are sign-symmetric), one kernel fewer per rotation.
    pub sin_signed: Tensor,
}

fn base_inv_freq(base: f64, dim: i64, device: Device) -> Tensor {
    let exponent = Tensor::arange_start_step(0, dim, 2, (Kind::Int64, device)).to_kind(Kind::Float) / (dim as f64);
    Tensor::pow_scalar(base, &exponent).reciprocal()
}

impl Rope {
    pub fn new(cfg: &ModelConfig, device: Device) -> Self {
        let dim = cfg.rotary_dim() as i64;
        let base = cfg.rope_theta;
        let mut attention_scaling = 1.0;
        let mut long = None;
        let inv_freq = match &cfg.rope_scaling {
            RopeScaling::None => base_inv_freq(base, dim, device),
            RopeScaling::Linear { factor } => base_inv_freq(base, dim, device) / *factor,
            RopeScaling::Freqs { factors } => {
                let f = Tensor::from_slice(&factors.iter().map(|&x| x as f32).collect::<Vec<_>>()).to_device(device);
                base_inv_freq(base, dim, device) / f
            }
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                // Mirrors transformers' `_compute_llama3_parameters` op for op.
                let inv_freq = base_inv_freq(base, dim, device);
                let old = *original_max_position_embeddings as f64;
                let low_freq_wavelen = old / low_freq_factor;
                let high_freq_wavelen = old / high_freq_factor;
                let wavelen = inv_freq.ones_like() * (2.0 * std::f64::consts::PI) / &inv_freq;
                let scaled = &inv_freq / *factor;
                let inv_freq_llama = scaled.where_self(&wavelen.gt(low_freq_wavelen), &inv_freq);
                let smooth = (wavelen.ones_like() * old / &wavelen - *low_freq_factor) / (high_freq_factor - low_freq_factor);
                let smoothed = (smooth.ones_like() - &smooth) * (&inv_freq_llama / *factor) + &smooth * &inv_freq_llama;
                let is_medium = wavelen.lt(high_freq_wavelen).logical_not().logical_and(&wavelen.gt(low_freq_wavelen).logical_not());
                smoothed.where_self(&is_medium, &inv_freq_llama)
            }
            RopeScaling::LongRope { short_factor, long_factor, original_max_position_embeddings, attention_factor } => {
                let orig = *original_max_position_embeddings as f64;
                let factor = cfg.max_position_embeddings as f64 / orig;
                attention_scaling = attention_factor.unwrap_or(if factor <= 1.0 { 1.0 } else { (1.0 + factor.ln() / orig.ln()).sqrt() });
                let shape = Tensor::arange_start_step(0, dim, 2, (Kind::Int64, device)).to_kind(Kind::Float) / (dim as f64);
                let powed = Tensor::pow_scalar(base, &shape);
                let mk = |f: &[f64]| {
                    let ext = Tensor::from_slice(&f.iter().map(|&x| x as f32).collect::<Vec<_>>()).to_device(device);
                    (ext * &powed).reciprocal()
                };
                long = Some((mk(long_factor), *original_max_position_embeddings as i64));
                mk(short_factor)
            }
        };
        Self { inv_freq, long, attention_scaling, rotary_dim: dim }
    }

    /// Inverse frequencies (f32, `[rotary_dim / 2]`) and the factor on `cos`/`sin`, for the
    /// fused decode kernel (which has no LongRoPE regime switch).
    pub fn inv_freq(&self) -> (&Tensor, f64) {
        (&self.inv_freq, self.attention_scaling)
    }

    /// LongRoPE: the sequence length above which the long factors apply.
    pub fn long_switch(&self) -> Option<i64> {
        self.long.as_ref().map(|(_, s)| *s)
    }

    /// Tables for `positions` (`[B, T]`, int64). `max_positions[b]` is the largest position of
    /// row `b` in this call, known on the host, so that LongRoPE's regime is chosen per sequence
    /// (as if each were generated alone) without a device sync.
    pub fn tables(&self, positions: &Tensor, max_positions: &[i64], kind: Kind) -> RopeTables {
        let pos = positions.to_kind(Kind::Float).unsqueeze(-1); // [B, T, 1]
        // [B, T, 1] * [D/2] → [B, T, D/2], an exact f32 product like HF's k=1 matmul.
        let freqs = match &self.long {
            Some((long, switch)) => {
                let is_long: Vec<bool> = max_positions.iter().map(|&m| m + 1 > *switch).collect();
                if is_long.iter().all(|&l| l) {
                    pos * long
                } else if is_long.iter().all(|&l| !l) {
                    pos * &self.inv_freq
                } else {
                    let rows: Vec<&Tensor> = is_long.iter().map(|&l| if l { long } else { &self.inv_freq }).collect();
                    pos * Tensor::stack(&rows, 0).unsqueeze(1) // [B, 1, D/2]
                }
            }
            None => pos * &self.inv_freq,
        };
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        let (mut cos, mut sin) = (emb.cos(), emb.sin());
        if self.attention_scaling != 1.0 {
            cos *= self.attention_scaling;
            sin *= self.attention_scaling;
        }
        let half = sin.size()[3] / 2;
        let sin_signed = Tensor::cat(&[&sin.narrow(3, 0, half).neg(), &sin.narrow(3, half, half)], 3);
        RopeTables { cos: cos.to_kind(kind), sin: sin.to_kind(kind), sin_signed: sin_signed.to_kind(kind) }
    }
}

/// Applies the rotation to the first `rotary_dim` features of `x` (`[B, H, T, head_dim]`),
/// using HF's `rotate_half` convention (halves, not interleaved pairs).
pub fn apply(x: &Tensor, t: &RopeTables, rotary_dim: i64) -> Tensor {
    let head_dim = x.size()[3];
    let (rot, pass) = if rotary_dim < head_dim {
        (x.narrow(3, 0, rotary_dim), Some(x.narrow(3, rotary_dim, head_dim - rotary_dim)))
    } else {
        (x.shallow_clone(), None)
    };
    let half = rotary_dim / 2;
    // roll by half = [x2, x1]; with the sign folded into `sin_signed` this is HF's
    // `x·cos + cat(-x2, x1)·sin`, bit for bit.
    let rotated = rot.roll([half], [3]);
    let out = if x.device().is_cuda() {
        // One fused multiply-add (f32 inside, one rounding) instead of a multiply and an add
        // (two roundings in bf16): a launch fewer per rotation on the GPU, where a decode step
        // is bound by launches as much as by bytes. The CPU keeps HF's exact sequence.
        (&rot * &t.cos).addcmul(&rotated, &t.sin_signed)
    } else {
        &rot * &t.cos + rotated * &t.sin_signed
    };
    match pass {
        Some(p) => Tensor::cat(&[&out, &p], 3),
        None => out,
    }
}
