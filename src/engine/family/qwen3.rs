//! Qwen3: Llama with an RMSNorm on each head's q and k before RoPE.
use super::{Activation, Arch, Family};

pub const FAMILY: Family = Family {
    arch: Arch::Qwen3,
    hf_model_types: &["qwen3"],
    gguf_archs: &["qwen3"],
    fused_qkv: false,
    fused_gate_up: false,
    qk_norm: true,
    default_attention_bias: false,
    o_proj_bias: true,
    gguf_permuted_qk: false,
    activation: Activation::Silu,
    fused_kernels: true,
};
