//! Phi-3 / Phi-4-mini: fused `qkv_proj` and `gate_up_proj`, partial rotary and LongRoPE (in the
//! config), SiLU-gated MLP.
use super::{Activation, Arch, Family};

pub const FAMILY: Family = Family {
    arch: Arch::Phi3,
    hf_model_types: &["phi3"],
    gguf_archs: &["phi3"],
    fused_qkv: true,
    fused_gate_up: true,
    qk_norm: false,
    default_attention_bias: false,
    o_proj_bias: true,
    gguf_permuted_qk: false,
    activation: Activation::Silu,
    fused_kernels: true,
};
