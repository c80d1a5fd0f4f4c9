//! Published shapes of the paper's models (and SmolLM2), for randomly initialised models:
//! `rhx bench` and the tests build them without weights.
use super::config::{Arch, ModelConfig, RopeScaling};

/// Shapes of the paper's models (and SmolLM2), for randomly initialised benchmark models:
/// `(name, config)`. Values from the models' published `config.json` files; Phi-4-mini's
/// LongRoPE factor lists are not reproduced (plain RoPE: same cost, different numbers).
pub fn preset(name: &str) -> Option<ModelConfig> {
    let base = |arch, vocab, hidden, inter, layers, heads, kv, theta: f64, max_pos, tie| ModelConfig {
        arch,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: inter,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kv,
        head_dim: 128,
        rms_norm_eps: 1e-5,
        rope_theta: theta,
        rope_scaling: RopeScaling::None,
        partial_rotary_factor: 1.0,
        max_position_embeddings: max_pos,
        tie_word_embeddings: tie,
        attention_bias: false,
        mlp_bias: false,
        bos_token_id: None,
        eos_token_ids: vec![],
    };
    let llama3 = |factor| RopeScaling::Llama3 { factor, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 };
    Some(match name {
        "llama-3.1-8b" => ModelConfig { rope_scaling: llama3(8.0), ..base(Arch::Llama, 128256, 4096, 14336, 32, 32, 8, 500000.0, 131072, false) },
        "llama-3.2-3b" => ModelConfig { rope_scaling: llama3(32.0), ..base(Arch::Llama, 128256, 3072, 8192, 28, 24, 8, 500000.0, 131072, true) },
        "qwen3-8b" => ModelConfig { rms_norm_eps: 1e-6, ..base(Arch::Qwen3, 151936, 4096, 12288, 36, 32, 8, 1000000.0, 40960, false) },
        "llama-2-13b" => base(Arch::Llama, 32000, 5120, 13824, 40, 40, 40, 10000.0, 4096, false),
        "phi-4-mini" => ModelConfig { partial_rotary_factor: 0.75, ..base(Arch::Phi3, 200064, 3072, 8192, 32, 24, 8, 10000.0, 131072, true) },
        "smollm2-135m" => ModelConfig { head_dim: 64, ..base(Arch::Llama, 49152, 576, 1536, 30, 9, 3, 100000.0, 8192, true) },
        _ => return None,
    })
}

/// Names accepted by [`preset`].
pub const PRESETS: &[&str] = &["llama-3.1-8b", "llama-3.2-3b", "qwen3-8b", "llama-2-13b", "phi-4-mini", "smollm2-135m"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_papers_head_counts() {
        // Section 8.1 of the reference notes: layers × heads of each model.
        for (name, layers, heads) in [("llama-3.1-8b", 32, 32), ("llama-3.2-3b", 28, 24), ("qwen3-8b", 36, 32), ("llama-2-13b", 40, 40), ("phi-4-mini", 32, 24)] {
            let c = preset(name).unwrap();
            assert_eq!((c.num_layers, c.num_heads), (layers, heads), "{name}");
        }
        assert!(PRESETS.iter().all(|p| preset(p).is_some()));
        assert_eq!(preset("phi-4-mini").unwrap().rotary_dim(), 96);
    }
}
