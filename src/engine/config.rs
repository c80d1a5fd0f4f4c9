//! Architecture hyper-parameters of the Llama family, read from an HF `config.json` or from
//! GGUF metadata. One struct covers Llama 2/3.x, Qwen3 and Phi-3/Phi-4-mini because they differ
//! only in a few switches (q/k norm, fused projections, partial rotary, rope scaling).
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::gguf::{GgufError, GgufFile};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not valid JSON: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("{path}: missing or invalid `{key}` ({why})")]
    Field { path: String, key: String, why: String },
    #[error("{path}: unsupported architecture `{arch}`: rhx runs the Llama family ({})", family::supported_names())]
    UnsupportedArch { path: String, arch: String },
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

pub use super::family::Arch;
use super::family;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RopeScaling {
    None,
    Linear { factor: f64 },
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: usize },
    /// Phi-3 "longrope"/"su": per-frequency divisors, `short` up to `original_max_position_embeddings`
    /// tokens and `long` beyond (HF switches on the largest position of the current forward call).
    LongRope { short_factor: Vec<f64>, long_factor: Vec<f64>, original_max_position_embeddings: usize, attention_factor: Option<f64> },
    /// Per-frequency divisors given as a tensor (`rope_freqs.weight` in llama.cpp GGUFs).
    Freqs { factors: Vec<f64> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    /// Fraction of each head's dimensions that are rotated (Phi-4-mini: 0.75).
    pub partial_rotary_factor: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    pub fn rotary_dim(&self) -> usize {
        let d = (self.head_dim as f64 * self.partial_rotary_factor) as usize;
        d - d % 2
    }

    pub fn num_query_heads_total(&self) -> usize {
        self.num_layers * self.num_heads
    }

    /// Reads an HF `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: p.clone(), source })?;
        let v: Value = serde_json::from_str(&text).map_err(|source| ConfigError::Json { path: p.clone(), source })?;
        Self::from_hf_value(&v, &p)
    }

    pub fn from_hf_value(v: &Value, p: &str) -> Result<Self, ConfigError> {
        let field = |key: &str, why: &str| ConfigError::Field { path: p.to_string(), key: key.to_string(), why: why.to_string() };
        let get_usize = |key: &str| v.get(key).and_then(Value::as_u64).map(|x| x as usize).ok_or_else(|| field(key, "expected a non-negative integer"));
        let model_type = v.get("model_type").and_then(Value::as_str).ok_or_else(|| field("model_type", "expected a string"))?;
        let fam = family::by_hf_model_type(model_type).ok_or_else(|| ConfigError::UnsupportedArch { path: p.to_string(), arch: model_type.to_string() })?;
        let arch = fam.arch;
        let hidden_size = get_usize("hidden_size")?;
        let num_heads = get_usize("num_attention_heads")?;
        let num_kv_heads = v.get("num_key_value_heads").and_then(Value::as_u64).map(|x| x as usize).unwrap_or(num_heads);
        let head_dim = v.get("head_dim").and_then(Value::as_u64).map(|x| x as usize).unwrap_or(hidden_size / num_heads.max(1));
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(field("num_key_value_heads", "must be positive and divide num_attention_heads"));
        }
        let max_position_embeddings = get_usize("max_position_embeddings")?;
        // transformers 5 nests rope settings under `rope_parameters`; 4.x used top-level keys.
        let rope = v.get("rope_parameters").filter(|r| r.is_object());
        let rope_theta = rope
            .and_then(|r| r.get("rope_theta"))
            .or_else(|| v.get("rope_theta"))
            .and_then(Value::as_f64)
            .unwrap_or(10000.0);
        let scaling = v.get("rope_scaling").filter(|r| r.is_object()).or(rope);
        let rope_scaling = match scaling {
            None => RopeScaling::None,
            Some(s) => parse_hf_rope_scaling(s, v, max_position_embeddings).map_err(|why| field("rope_scaling", &why))?,
        };
        let partial_rotary_factor = rope
            .and_then(|r| r.get("partial_rotary_factor"))
            .or_else(|| v.get("partial_rotary_factor"))
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        let eos_token_ids = match v.get("eos_token_id") {
            Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).map(|x| x as u32).collect(),
            _ => vec![],
        };
        Ok(Self {
            arch,
            vocab_size: get_usize("vocab_size")?,
            hidden_size,
            intermediate_size: get_usize("intermediate_size")?,
            num_layers: get_usize("num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: v.get("rms_norm_eps").and_then(Value::as_f64).unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            partial_rotary_factor,
            max_position_embeddings,
            tie_word_embeddings: v.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
            attention_bias: v.get("attention_bias").and_then(Value::as_bool).unwrap_or(fam.default_attention_bias),
            mlp_bias: v.get("mlp_bias").and_then(Value::as_bool).unwrap_or(false),
            bos_token_id: v.get("bos_token_id").and_then(Value::as_u64).map(|x| x as u32),
            eos_token_ids,
        })
    }

    /// Maps llama.cpp GGUF metadata (`{arch}.block_count`, ...) to the config.
    pub fn from_gguf(g: &GgufFile) -> Result<Self, ConfigError> {
        let p = g.path().display().to_string();
        let arch_name = g.get_str("general.architecture")?.to_string();
        let arch = family::by_gguf_arch(&arch_name).ok_or_else(|| ConfigError::UnsupportedArch { path: p.clone(), arch: arch_name.clone() })?.arch;
        let a = arch_name.as_str();
        let key = |k: &str| format!("{a}.{k}");
        let u = |k: &str| g.get_u64(&key(k)).map(|x| x as usize);
        let hidden_size = u("embedding_length")?;
        let num_heads = u("attention.head_count")?;
        let num_kv_heads = u("attention.head_count_kv").unwrap_or(num_heads);
        let head_dim = u("attention.key_length").unwrap_or(hidden_size / num_heads.max(1));
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(ConfigError::Field { path: p, key: key("attention.head_count_kv"), why: "must be positive and divide head_count".into() });
        }
        let rope_dims = u("rope.dimension_count").unwrap_or(head_dim);
        let vocab_size = match u("vocab_size") {
            Ok(n) => n,
            Err(_) => g.tensor_info("token_embd.weight").map(|t| t.shape[0]).ok_or_else(|| ConfigError::Field {
                path: p.clone(),
                key: key("vocab_size"),
                why: "absent, and there is no token_embd.weight to read it from".into(),
            })?,
        };
        let max_position_embeddings = u("context_length")?;
        let rope_scaling = match g.get_str(&key("rope.scaling.type")).ok() {
            Some("linear") => RopeScaling::Linear { factor: g.get_f64(&key("rope.scaling.factor"))? },
            _ if g.tensor_info("rope_freqs.weight").is_some() => {
                RopeScaling::Freqs { factors: g.dequantize("rope_freqs.weight")?.into_iter().map(f64::from).collect() }
            }
            _ if g.tensor_info("rope_factors_long.weight").is_some() => RopeScaling::LongRope {
                short_factor: g.dequantize("rope_factors_short.weight")?.into_iter().map(f64::from).collect(),
                long_factor: g.dequantize("rope_factors_long.weight")?.into_iter().map(f64::from).collect(),
                original_max_position_embeddings: u("rope.scaling.original_context_length").unwrap_or(max_position_embeddings),
                attention_factor: g.get_f64(&key("rope.scaling.attn_factor")).ok(),
            },
            _ => RopeScaling::None,
        };
        let bos_token_id = g.get_u64("tokenizer.ggml.bos_token_id").ok().map(|x| x as u32);
        let eos_token_ids = g.get_u64("tokenizer.ggml.eos_token_id").ok().map(|x| vec![x as u32]).unwrap_or_default();
        Ok(Self {
            arch,
            vocab_size,
            hidden_size,
            intermediate_size: u("feed_forward_length")?,
            num_layers: u("block_count")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: g.get_f64(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
            rope_theta: g.get_f64(&key("rope.freq_base")).unwrap_or(10000.0),
            rope_scaling,
            partial_rotary_factor: rope_dims as f64 / head_dim as f64,
            max_position_embeddings,
            tie_word_embeddings: g.tensor_info("output.weight").is_none(),
            attention_bias: g.tensor_info("blk.0.attn_q.bias").is_some(),
            mlp_bias: g.tensor_info("blk.0.ffn_up.bias").is_some(),
            bos_token_id,
            eos_token_ids,
        })
    }
}

fn parse_hf_rope_scaling(s: &Value, config: &Value, max_pos: usize) -> Result<RopeScaling, String> {
    let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(Value::as_str).unwrap_or("default");
    let f = |k: &str| s.get(k).and_then(Value::as_f64).ok_or_else(|| format!("`{k}` must be a number for rope_type `{kind}`"));
    let list = |k: &str| -> Result<Vec<f64>, String> {
        s.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .ok_or_else(|| format!("`{k}` must be a list of numbers for rope_type `{kind}`"))
    };
    let orig = s
        .get("original_max_position_embeddings")
        .or_else(|| config.get("original_max_position_embeddings"))
        .and_then(Value::as_u64)
        .map(|x| x as usize);
    Ok(match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: f("factor")? },
        "llama3" => RopeScaling::Llama3 {
            factor: f("factor")?,
            low_freq_factor: f("low_freq_factor")?,
            high_freq_factor: f("high_freq_factor")?,
            original_max_position_embeddings: orig.ok_or("llama3 rope scaling needs original_max_position_embeddings")?,
        },
        "longrope" | "su" => RopeScaling::LongRope {
            short_factor: list("short_factor")?,
            long_factor: list("long_factor")?,
            original_max_position_embeddings: orig.unwrap_or(max_pos),
            attention_factor: s.get("attention_factor").and_then(Value::as_f64),
        },
        other => return Err(format!("rope_type `{other}` is not supported (supported: default, linear, llama3, longrope)")),
    })
}
