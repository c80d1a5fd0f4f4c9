//! Model families, one file each (in the style of candle's one file per model): which HF
//! `model_type`s and GGUF architectures it reads, how its weights are laid out and named, its
//! q/k norm, MLP activation and biases, and whether it runs on the fused CUDA decode kernels.
//! The loader, the model code and the weight readers ask the family; nothing else matches on
//! the architecture.
//!
//! Adding an architecture: its file here, one variant of [`Arch`] with its line in [`FAMILIES`]
//! and [`of`] (all below), and its fixture (`scripts/fixtures/hf_reference.py` → `tests/fixtures/tiny/`).
mod llama;
mod phi3;
mod qwen2;
mod qwen3;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Llama 2 / 3.x, Mistral, SmolLM2 (separate q/k/v and gate/up projections).
    Llama,
    /// Qwen2: as Llama but with q/k/v biases.
    Qwen2,
    /// Qwen3: RMSNorm on q and k per head, before RoPE.
    Qwen3,
    /// Phi-3 / Phi-4-mini: fused qkv and gate_up, partial rotary, longrope.
    Phi3,
}

/// The MLP's activation (the gated unit `act(gate) · up`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
}

/// What sets a family apart.
#[derive(Debug)]
pub struct Family {
    pub arch: Arch,
    /// HF `config.json` `model_type` values.
    pub hf_model_types: &'static [&'static str],
    /// GGUF `general.architecture` values (llama.cpp's names).
    pub gguf_archs: &'static [&'static str],
    /// One `self_attn.qkv_proj` instead of `q_proj`, `k_proj`, `v_proj`.
    pub fused_qkv: bool,
    /// One `mlp.gate_up_proj` instead of `gate_proj`, `up_proj` (llama.cpp stores it as
    /// `ffn_up`).
    pub fused_gate_up: bool,
    /// RMSNorm on each head's q and k before RoPE (`q_norm`, `k_norm`).
    pub qk_norm: bool,
    /// Whether q/k/v have biases when `config.json` does not say (`attention_bias`).
    pub default_attention_bias: bool,
    /// Whether `o_proj` has a bias when the attention does (Qwen2's has none).
    pub o_proj_bias: bool,
    /// llama.cpp's converter permuted the rows of Q and K (to its interleaved RoPE layout); the
    /// loader undoes it so RoPE runs in HF's rotate-half layout.
    pub gguf_permuted_qk: bool,
    pub activation: Activation,
    /// Opted in to the fused CUDA decode kernels (`csrc/decode_kernels.cu`: RMSNorm, SiLU-gated
    /// MLP, RoPE with optional q/k norm). A family that is not never runs them.
    pub fused_kernels: bool,
}

/// Every family rhx runs.
pub const FAMILIES: &[&Family] = &[&llama::FAMILY, &qwen2::FAMILY, &qwen3::FAMILY, &phi3::FAMILY];

/// The family of `arch`.
pub fn of(arch: Arch) -> &'static Family {
    match arch {
        Arch::Llama => &llama::FAMILY,
        Arch::Qwen2 => &qwen2::FAMILY,
        Arch::Qwen3 => &qwen3::FAMILY,
        Arch::Phi3 => &phi3::FAMILY,
    }
}

/// The family of an HF `model_type`.
pub fn by_hf_model_type(t: &str) -> Option<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.hf_model_types.contains(&t))
}

/// The family of a GGUF `general.architecture`.
pub fn by_gguf_arch(a: &str) -> Option<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.gguf_archs.contains(&a))
}

/// Names rhx reads, for messages: `llama, mistral, qwen2, qwen3, phi3`.
pub fn supported_names() -> String {
    FAMILIES.iter().flat_map(|f| f.hf_model_types.iter().copied()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_arch_has_one_family_and_names_are_unique() {
        for a in [Arch::Llama, Arch::Qwen2, Arch::Qwen3, Arch::Phi3] {
            assert_eq!(FAMILIES.iter().filter(|f| f.arch == a).count(), 1, "{a:?}");
            assert_eq!(of(a).arch, a);
        }
        let mut names: Vec<&str> = FAMILIES.iter().flat_map(|f| f.hf_model_types.iter().copied()).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
        assert_eq!(by_hf_model_type("mistral").unwrap().arch, Arch::Llama);
        assert_eq!(by_gguf_arch("phi3").unwrap().arch, Arch::Phi3);
        assert!(by_hf_model_type("gpt2").is_none());
    }
}
