//! Qwen2 / Qwen2.5: Llama with biases on q, k and v (none on o).
use super::{Activation, Arch, Family};

pub const FAMILY: Family = Family {
    arch: Arch::Qwen2,
    hf_model_types: &["qwen2"],
    gguf_archs: &["qwen2"],
    fused_qkv: false,
    fused_gate_up: false,
    qk_norm: false,
    default_attention_bias: true,
    o_proj_bias: false,
    gguf_permuted_qk: false,
    activation: Activation::Silu,
    fused_kernels: true,
};
