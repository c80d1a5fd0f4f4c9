//! Llama 2 / 3.x, Mistral, SmolLM2: separate projections, no q/k norm, SiLU-gated MLP; GGUF
//! files from llama.cpp's converter have Q and K rows permuted.
use super::{Activation, Arch, Family};

pub const FAMILY: Family = Family {
    arch: Arch::Llama,
    hf_model_types: &["llama", "mistral"],
    gguf_archs: &["llama", "mistral"],
    fused_qkv: false,
    fused_gate_up: false,
    qk_norm: false,
    default_attention_bias: false,
    o_proj_bias: true,
    gguf_permuted_qk: true,
    activation: Activation::Silu,
    fused_kernels: true,
};
