//! Where the weights come from: an HF safetensors directory, a GGUF file (dequantised on
//! load), or a seeded random initialisation for benchmarks. Every source ends as one map from
//! HF parameter names (`model.layers.0.self_attn.q_proj.weight`, ...) to f32 CPU tensors, so
//! the model code has a single naming scheme.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use super::config::{ConfigError, ModelConfig};
use super::family;
use super::gguf::{GgufError, GgufFile};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a valid safetensors file: {why}")]
    Safetensors { path: String, why: String },
    #[error("{path}: tensor `{name}` has dtype {dtype}, which rhx cannot load (expected F32, F16 or BF16)")]
    SafetensorsDtype { path: String, name: String, dtype: String },
    #[error("{source_path}: weight `{name}` is missing")]
    Missing { source_path: String, name: String },
    #[error("{source_path}: weight `{name}` has shape {got:?}, expected {expected:?}")]
    Shape { source_path: String, name: String, got: Vec<i64>, expected: Vec<i64> },
    #[error("{path}: neither a GGUF file nor a directory with config.json")]
    UnknownFormat { path: String },
}

/// HF-named f32 tensors plus a description of where they came from (for error messages).
pub struct WeightMap {
    pub source: String,
    pub tensors: HashMap<String, Tensor>,
}

impl WeightMap {
    /// Removes and returns a weight, checking its shape.
    pub fn take(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, WeightsError> {
        let t = self.tensors.remove(name).ok_or_else(|| WeightsError::Missing { source_path: self.source.clone(), name: name.to_string() })?;
        if t.size() != shape {
            return Err(WeightsError::Shape { source_path: self.source.clone(), name: name.to_string(), got: t.size(), expected: shape.to_vec() });
        }
        Ok(t)
    }

    pub fn take_opt(&mut self, name: &str, shape: &[i64]) -> Result<Option<Tensor>, WeightsError> {
        if self.tensors.contains_key(name) {
            self.take(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Reads the config and all weights of an HF model directory.
pub fn load_hf_dir(dir: &Path) -> Result<(ModelConfig, WeightMap), WeightsError> {
    let config = ModelConfig::from_hf_json(&dir.join("config.json"))?;
    let mut files: Vec<PathBuf> = Vec::new();
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|source| WeightsError::Io { path: index.display().to_string(), source })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| WeightsError::Safetensors { path: index.display().to_string(), why: e.to_string() })?;
        let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| WeightsError::Safetensors {
            path: index.display().to_string(),
            why: "no `weight_map` object".into(),
        })?;
        let mut names: Vec<&str> = map.values().filter_map(|f| f.as_str()).collect();
        names.sort();
        names.dedup();
        files.extend(names.into_iter().map(|n| dir.join(n)));
    } else {
        files.push(dir.join("model.safetensors"));
    }
    let mut tensors = HashMap::new();
    for file in &files {
        read_safetensors(file, &mut tensors)?;
    }
    Ok((config, WeightMap { source: dir.display().to_string(), tensors }))
}

fn read_safetensors(path: &Path, out: &mut HashMap<String, Tensor>) -> Result<(), WeightsError> {
    let p = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| WeightsError::Io { path: p.clone(), source })?;
    // SAFETY: the file is opened read-only and only read while mapped.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| WeightsError::Io { path: p.clone(), source })?;
    let st = safetensors::SafeTensors::deserialize(&mmap).map_err(|e| WeightsError::Safetensors { path: p.clone(), why: e.to_string() })?;
    for (name, view) in st.tensors() {
        let kind = match view.dtype() {
            safetensors::Dtype::F32 => Kind::Float,
            safetensors::Dtype::F16 => Kind::Half,
            safetensors::Dtype::BF16 => Kind::BFloat16,
            other => return Err(WeightsError::SafetensorsDtype { path: p.clone(), name, dtype: format!("{other:?}") }),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| WeightsError::Safetensors { path: p.clone(), why: format!("{name}: {e}") })?
            .to_kind(Kind::Float);
        out.insert(name, t);
    }
    Ok(())
}

/// Reads the config and all weights of a GGUF file, renaming llama.cpp tensors to HF names and
/// undoing the row permutation llama.cpp's converter applies to Q and K of `llama` models (so
/// RoPE uses HF's rotate-half layout, as transformers' own GGUF loader does).
pub fn load_gguf(path: &Path) -> Result<(ModelConfig, WeightMap), WeightsError> {
    load_gguf_file(&GgufFile::open(path)?)
}

/// As [`load_gguf`], for an already opened file (its tokenizer is read from the same header).
pub fn load_gguf_file(g: &GgufFile) -> Result<(ModelConfig, WeightMap), WeightsError> {
    let path = g.path();
    let config = ModelConfig::from_gguf(g)?;
    let mut tensors = HashMap::new();
    let fam = family::of(config.arch);
    for info in &g.tensors {
        let Some(mut hf) = gguf_to_hf_name(&info.name) else { continue };
        if fam.fused_gate_up && hf.ends_with("mlp.up_proj.weight") {
            hf = hf.replace("mlp.up_proj", "mlp.gate_up_proj");
        }
        let data = g.dequantize(&info.name)?;
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        let mut t = Tensor::from_slice(&data).view(shape.as_slice());
        if fam.gguf_permuted_qk {
            if info.name.ends_with("attn_q.weight") {
                t = unpermute_rows(&t, config.num_heads as i64);
            } else if info.name.ends_with("attn_k.weight") {
                t = unpermute_rows(&t, config.num_kv_heads as i64);
            }
        }
        tensors.insert(hf, t);
    }
    Ok((config, WeightMap { source: path.display().to_string(), tensors }))
}

/// Inverse of llama.cpp's `permute(w, n_head)`: rows grouped per head as (2, d/2) → (d/2, 2).
fn unpermute_rows(w: &Tensor, n_head: i64) -> Tensor {
    let size = w.size();
    let rows = size[0];
    let mut shape = vec![n_head, rows / n_head / 2, 2];
    shape.extend_from_slice(&size[1..]);
    w.reshape(shape.as_slice()).transpose(1, 2).reshape(size.as_slice())
}

fn gguf_to_hf_name(name: &str) -> Option<String> {
    let simple = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(s) = simple {
        return Some(s.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (stem, kind) = tail.rsplit_once('.')?;
    let hf = match stem {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_qkv" => "self_attn.qkv_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_down" => "mlp.down_proj",
        // Phi-3 GGUFs store the fused gate_up projection as ffn_up (2 × intermediate rows).
        "ffn_up" => "mlp.up_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Seeded random weights for a config (HF's init: normal(0, 0.02), norms at 1), for benchmarks.
pub fn random_weights(config: &ModelConfig, seed: i64) -> WeightMap {
    random_weights_on(config, seed, tch::Device::Cpu, Kind::Float)
}

/// [`random_weights`] drawn directly on `device` in `kind` (an 8B model in bf16 on a GPU in
/// seconds, without 32 GB of f32 on the host). The draws depend on the device's generator.
pub fn random_weights_on(config: &ModelConfig, seed: i64, device: tch::Device, kind: Kind) -> WeightMap {
    tch::manual_seed(seed);
    let mut tensors = HashMap::new();
    let c = config;
    let (d, hd) = (c.hidden_size as i64, c.head_dim as i64);
    let (nq, nkv, ff, v) = (c.num_heads as i64, c.num_kv_heads as i64, c.intermediate_size as i64, c.vocab_size as i64);
    let mut put = |name: String, shape: &[i64], norm: bool| {
        let t = if norm { Tensor::ones(shape, (kind, device)) } else { Tensor::randn(shape, (kind, device)) * 0.02 };
        tensors.insert(name, t);
    };
    put("model.embed_tokens.weight".into(), &[v, d], false);
    put("model.norm.weight".into(), &[d], true);
    if !c.tie_word_embeddings {
        put("lm_head.weight".into(), &[v, d], false);
    }
    for l in 0..c.num_layers {
        let p = format!("model.layers.{l}");
        put(format!("{p}.input_layernorm.weight"), &[d], true);
        put(format!("{p}.post_attention_layernorm.weight"), &[d], true);
        let fam = family::of(c.arch);
        if fam.fused_qkv {
            put(format!("{p}.self_attn.qkv_proj.weight"), &[(nq + 2 * nkv) * hd, d], false);
        } else {
            put(format!("{p}.self_attn.q_proj.weight"), &[nq * hd, d], false);
            put(format!("{p}.self_attn.k_proj.weight"), &[nkv * hd, d], false);
            put(format!("{p}.self_attn.v_proj.weight"), &[nkv * hd, d], false);
        }
        if fam.fused_gate_up {
            put(format!("{p}.mlp.gate_up_proj.weight"), &[2 * ff, d], false);
        } else {
            put(format!("{p}.mlp.gate_proj.weight"), &[ff, d], false);
            put(format!("{p}.mlp.up_proj.weight"), &[ff, d], false);
        }
        put(format!("{p}.self_attn.o_proj.weight"), &[d, nq * hd], false);
        put(format!("{p}.mlp.down_proj.weight"), &[d, ff], false);
        if fam.qk_norm {
            put(format!("{p}.self_attn.q_norm.weight"), &[hd], true);
            put(format!("{p}.self_attn.k_norm.weight"), &[hd], true);
        }
    }
    WeightMap { source: format!("random(seed={seed})"), tensors }
}
