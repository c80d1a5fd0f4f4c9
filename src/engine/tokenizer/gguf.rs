//! Building a [`Tokenizer`] from a GGUF file's `tokenizer.*` metadata the way transformers' GGUF
//! loader does (see the parent module for the reference and what is covered).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper,
    PreTokenizerWrapper,
};

use super::{py_isspace, special, template_processing, Tokenizer, TokenizerError};
use crate::engine::gguf::{GgufFile, GgufValue};

/// llama.cpp token types (`tokenizer.ggml.token_type`).
pub mod token_type {
    pub const NORMAL: i64 = 1;
    pub const UNKNOWN: i64 = 2;
    pub const CONTROL: i64 = 3;
    pub const USER_DEFINED: i64 = 4;
    pub const UNUSED: i64 = 5;
    pub const BYTE: i64 = 6;
}

/// The tokenizer part of a GGUF file's metadata, as HF's loader reads it. Public so that a
/// caller (or a test) can adjust it before [`Tokenizer::from_gguf_spec`].
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTokenizerSpec {
    pub source: PathBuf,
    /// `general.architecture` (picks HF's phi3 / gemma variants of the "llama" builder).
    pub architecture: String,
    /// `tokenizer.ggml.model`: "gpt2", "llama", ...
    pub model: String,
    /// `tokenizer.ggml.pre`.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub scores: Option<Vec<f64>>,
    pub token_types: Option<Vec<i64>>,
    pub merges: Option<Vec<String>>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    /// `tokenizer.ggml.eot_token_id` / `eom_token_id`: extra end-of-generation ids (llama.cpp).
    pub eot_id: Option<u32>,
    pub eom_id: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`. Read for information: HF's loader ignores it.
    pub add_space_prefix: Option<bool>,
    pub chat_template: Option<String>,
}

impl GgufTokenizerSpec {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, TokenizerError> {
        let path = gguf.path().to_path_buf();
        let missing = |key: &str| TokenizerError::MissingKey {
            path: path.clone(),
            key: key.into(),
        };
        let wrong = |key: &str, expected| TokenizerError::WrongKeyType {
            path: path.clone(),
            key: key.into(),
            expected,
        };
        let get_str = |key: &str| -> Result<Option<String>, TokenizerError> {
            match gguf.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_str()
                    .map(|s| Some(s.to_owned()))
                    .ok_or_else(|| wrong(key, "a string")),
            }
        };
        let get_id = |key: &str| -> Result<Option<u32>, TokenizerError> {
            match gguf.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .map(Some)
                    .ok_or_else(|| wrong(key, "a token id (non-negative integer)")),
            }
        };
        let get_bool = |key: &str| -> Result<Option<bool>, TokenizerError> {
            match gguf.get(key) {
                None => Ok(None),
                Some(v) => v.as_bool().map(Some).ok_or_else(|| wrong(key, "a bool")),
            }
        };
        let array = |key: &str| -> Result<Option<&[GgufValue]>, TokenizerError> {
            match gguf.get(key) {
                None => Ok(None),
                Some(v) => v.as_array().map(Some).ok_or_else(|| wrong(key, "an array")),
            }
        };
        let strings = |key: &str| -> Result<Option<Vec<String>>, TokenizerError> {
            array(key)?
                .map(|a| {
                    a.iter()
                        .map(|v| {
                            v.as_str()
                                .map(str::to_owned)
                                .ok_or_else(|| wrong(key, "an array of strings"))
                        })
                        .collect()
                })
                .transpose()
        };

        let architecture = get_str("general.architecture")?.unwrap_or_default();
        let model =
            get_str("tokenizer.ggml.model")?.ok_or_else(|| missing("tokenizer.ggml.model"))?;
        let tokens =
            strings("tokenizer.ggml.tokens")?.ok_or_else(|| missing("tokenizer.ggml.tokens"))?;
        let scores = array("tokenizer.ggml.scores")?
            .map(|a| {
                a.iter()
                    .map(|v| {
                        v.as_f64()
                            .ok_or_else(|| wrong("tokenizer.ggml.scores", "an array of numbers"))
                    })
                    .collect::<Result<Vec<f64>, _>>()
            })
            .transpose()?;
        let token_types = array("tokenizer.ggml.token_type")?
            .map(|a| {
                a.iter()
                    .map(|v| {
                        v.as_i64().ok_or_else(|| {
                            wrong("tokenizer.ggml.token_type", "an array of integers")
                        })
                    })
                    .collect::<Result<Vec<i64>, _>>()
            })
            .transpose()?;
        for (key, len) in [
            ("tokenizer.ggml.scores", scores.as_ref().map(Vec::len)),
            (
                "tokenizer.ggml.token_type",
                token_types.as_ref().map(Vec::len),
            ),
        ] {
            if let Some(len) = len {
                if len != tokens.len() {
                    return Err(TokenizerError::Invalid {
                        path: path.clone(),
                        what: format!(
                            "`{key}` has {len} entries but there are {} tokens",
                            tokens.len()
                        ),
                    });
                }
            }
        }
        let spec = GgufTokenizerSpec {
            source: path.clone(),
            architecture,
            model,
            pre: get_str("tokenizer.ggml.pre")?,
            tokens,
            scores,
            token_types,
            merges: strings("tokenizer.ggml.merges")?,
            bos_id: get_id("tokenizer.ggml.bos_token_id")?,
            eos_id: get_id("tokenizer.ggml.eos_token_id")?,
            unk_id: get_id("tokenizer.ggml.unknown_token_id")?,
            pad_id: get_id("tokenizer.ggml.padding_token_id")?,
            eot_id: get_id("tokenizer.ggml.eot_token_id")?,
            eom_id: get_id("tokenizer.ggml.eom_token_id")?,
            add_bos: get_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: get_bool("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: get_bool("tokenizer.ggml.add_space_prefix")?,
            chat_template: get_str("tokenizer.chat_template")?,
        };
        for (key, id) in [
            ("tokenizer.ggml.bos_token_id", spec.bos_id),
            ("tokenizer.ggml.eos_token_id", spec.eos_id),
            ("tokenizer.ggml.unknown_token_id", spec.unk_id),
            ("tokenizer.ggml.padding_token_id", spec.pad_id),
            ("tokenizer.ggml.eot_token_id", spec.eot_id),
            ("tokenizer.ggml.eom_token_id", spec.eom_id),
        ] {
            if let Some(id) = id {
                if id as usize >= spec.tokens.len() {
                    return Err(TokenizerError::Invalid {
                        path: path.clone(),
                        what: format!("`{key}` = {id} is outside the {} tokens", spec.tokens.len()),
                    });
                }
            }
        }
        Ok(spec)
    }

    fn token(&self, id: Option<u32>) -> Option<String> {
        id.and_then(|i| self.tokens.get(i as usize).cloned())
    }

    fn invalid(&self, what: impl Into<String>) -> TokenizerError {
        TokenizerError::Invalid {
            path: self.source.clone(),
            what: what.into(),
        }
    }

    fn tk_err(&self, e: impl fmt::Display) -> TokenizerError {
        TokenizerError::Tokenizers {
            path: self.source.clone(),
            message: e.to_string(),
        }
    }
}

// Split regexes of `GGUF_PRE_TOKENIZER_SPLITS` (transformers/integrations/gguf/gguf_tokenizer_mapping.py).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// `transformers.models.qwen2.tokenization_qwen2.PRETOKENIZE_REGEX`
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// `transformers.models.qwen3_5.tokenization_qwen3_5.PRETOKENIZE_REGEX`
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split regex HF's GGUF loader uses for a `tokenizer.ggml.pre` value, if it lists one
/// (otherwise the builder's own pre-tokenizer stays: GPT-2's byte-level regex for "gpt2").
pub fn pre_tokenizer_split(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

/// GPT-2's `bytes_to_unicode`: the printable character standing for each byte.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            let c = char::from_u32(256 + n).unwrap();
            n += 1;
            c
        };
    }
    table
}

/// transformers' `generate_merges(vocab, vocab_scores)`: the merges a vocabulary implies, best
/// first. For every token (in the order of Python's `dict(zip(tokens, scores))`: first
/// occurrence, last value) each split into two pieces that are both tokens is a merge, ordered
/// locally by the pieces' ids; then all merges are sorted by descending (score, len(left),
/// len(right)). Python's `sorted(..., reverse=True)` is stable, as is Rust's sort with a reversed
/// comparison, so ties keep that order. Lengths are in characters, like Python's.
fn generate_merges(tokens: &[String], scores: &[f64]) -> Vec<(String, String)> {
    // vocab = {token: index}: for duplicate tokens the last index wins.
    let mut vocab: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        vocab.insert(t.as_str(), i);
    }
    let mut order: Vec<(&str, f64)> = Vec::with_capacity(tokens.len());
    let mut pos: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (t, &score) in tokens.iter().zip(scores) {
        match pos.get(t.as_str()) {
            Some(&p) => order[p].1 = score,
            None => {
                pos.insert(t.as_str(), order.len());
                order.push((t.as_str(), score));
            }
        }
    }
    struct M<'a> {
        l: &'a str,
        r: &'a str,
        score: f64,
        ll: usize,
        rl: usize,
    }
    let mut merges: Vec<M> = Vec::new();
    for &(merge, score) in &order {
        let mut local: Vec<M> = Vec::new();
        for (b, _) in merge.char_indices().skip(1) {
            let (l, r) = merge.split_at(b);
            if vocab.contains_key(l) && vocab.contains_key(r) {
                local.push(M {
                    l,
                    r,
                    score,
                    ll: l.chars().count(),
                    rl: r.chars().count(),
                });
            }
        }
        local.sort_by_key(|m| (vocab[m.l], vocab[m.r]));
        merges.extend(local);
    }
    merges.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.ll.cmp(&a.ll))
            .then(b.rl.cmp(&a.rl))
    });
    merges
        .into_iter()
        .map(|m| (m.l.to_owned(), m.r.to_owned()))
        .collect()
}

fn from_json<T: serde::de::DeserializeOwned>(
    spec: &GgufTokenizerSpec,
    v: Json,
) -> Result<T, TokenizerError> {
    serde_json::from_value(v).map_err(|e| spec.tk_err(e))
}

impl Tokenizer {
    /// Builds the tokenizer HF's GGUF loader builds from `gguf`'s metadata.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, TokenizerError> {
        Self::from_gguf_spec(&GgufTokenizerSpec::from_gguf(gguf)?)
    }

    /// Opens a GGUF file (metadata only is used) and builds its tokenizer.
    pub fn from_gguf_path(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let gguf = GgufFile::open(path).map_err(|e| TokenizerError::Invalid {
            path: path.to_path_buf(),
            what: e.to_string(),
        })?;
        Self::from_gguf(&gguf)
    }

    /// Builds the tokenizer from (possibly edited) GGUF tokenizer metadata, in the order of HF's
    /// GGUF loader (each step is a function below, named after what it does).
    pub fn from_gguf_spec(spec: &GgufTokenizerSpec) -> Result<Self, TokenizerError> {
        let arch = spec.architecture.as_str();
        let gemma_sp = spec.model == "llama" && matches!(arch, "gemma" | "gemma2" | "gemma3");
        let phi3_sp = spec.model == "llama" && arch == "phi3";

        // 1. The builder: model, normalizer, pre-tokenizer, decoder, and the default special
        //    tokens its HF class registers in `__init__` (added even when not in the vocabulary).
        let (mut tk, vocab_keys, class_defaults) = build_model(spec, gemma_sp, phi3_sp)?;
        add_class_default_tokens(&mut tk, class_defaults);
        // 2. add_gguf_special_tokens: control tokens, then user-defined ones.
        if let Some(types) = spec.token_types.as_deref() {
            add_gguf_special_tokens(spec, &mut tk, types, &vocab_keys);
        }
        // 3. set_split_regex (any tokenizer type).
        set_split_regex(spec, &mut tk)?;
        // 4. The named special tokens from the file (bos, eos, unk, pad), then the post-processor.
        let named = add_named_special_tokens(spec, &mut tk);
        let post = set_bos_eos_post_processor(spec, &mut tk, &named)?;
        let eos_ids = end_of_generation_ids(spec, post.eos_id);

        let mut out = Tokenizer {
            inner: tk,
            source: spec.source.clone(),
            bos_id: post.bos_id,
            eos_ids,
            chat_template: spec.chat_template.clone(),
            add_bos: post.add_bos,
            add_eos: post.add_eos,
            bos_token: named.bos_token,
            eos_token: named.eos_token,
            unk_token: named.unk_token,
            pad_token: named.pad_token,
            special_tokens_map: Default::default(),
            tokenizer_class: None,
            special_id_set: HashSet::new(),
            clean_up_tokenization_spaces: false,
        };
        // The outer class AutoTokenizer picks for gemma architectures (GemmaTokenizer) keeps its
        // default mask token, which the GGUF mapping does not override.
        let mask = if gemma_sp {
            Some("<mask>".to_owned())
        } else {
            None
        };
        out.finish(&[("mask_token", mask)]);
        Ok(out)
    }
}

/// What step 1 builds: the tokenizer (model, normalizer, pre-tokenizer, decoder), the vocabulary
/// keys as the model spells them (step 2 checks user-defined tokens against them), and the
/// default special tokens of the HF class.
type BaseTokenizer = (tokenizers::Tokenizer, HashSet<String>, Vec<&'static str>);

/// Step 1: the builder HF uses for `tokenizer.ggml.model` ("gpt2" or "llama").
fn build_model(
    spec: &GgufTokenizerSpec,
    gemma_sp: bool,
    phi3_sp: bool,
) -> Result<BaseTokenizer, TokenizerError> {
    match spec.model.as_str() {
        "gpt2" => build_gpt2(spec),
        "llama" => build_llama(spec, gemma_sp, phi3_sp),
        other => Err(TokenizerError::UnsupportedModel {
            path: spec.source.clone(),
            model: other.to_owned(),
        }),
    }
}

/// `tokenizer.ggml.merges` as stored ("left right" per line).
fn merges_from_file(
    spec: &GgufTokenizerSpec,
    lines: &[String],
) -> Result<Vec<Json>, TokenizerError> {
    lines
        .iter()
        .map(|line| {
            line.split_once(' ')
                .map(|(a, b)| json!([a, b]))
                .ok_or_else(|| {
                    spec.invalid(format!(
                        "merge `{line}` in `tokenizer.ggml.merges` has no space"
                    ))
                })
        })
        .collect()
}

/// Step 1 for "gpt2": byte-level BPE, tokens respelled in GPT-2's byte alphabet when they are not
/// already, merges from the file or recovered from the scores.
fn build_gpt2(spec: &GgufTokenizerSpec) -> Result<BaseTokenizer, TokenizerError> {
    let table = bytes_to_unicode();
    let alphabet: HashSet<char> = table.iter().copied().collect();
    let mut vocab = serde_json::Map::new();
    for (i, t) in spec.tokens.iter().enumerate() {
        let key = if t.chars().all(|c| alphabet.contains(&c)) {
            t.clone()
        } else {
            t.bytes().map(|b| table[b as usize]).collect()
        };
        vocab.insert(key, json!(i));
    }
    let merges = match &spec.merges {
        Some(m) => merges_from_file(spec, m)?,
        None => {
            // HF's get_merges: recovered from the file's tokens and scores (the
            // tokens as stored, not respelled).
            let scores = spec
                .scores
                .as_deref()
                .ok_or_else(|| TokenizerError::MissingKey {
                    path: spec.source.clone(),
                    key: "tokenizer.ggml.merges (or tokenizer.ggml.scores)".into(),
                })?;
            generate_merges(&spec.tokens, scores)
                .into_iter()
                .map(|(a, b)| json!([a, b]))
                .collect()
        }
    };
    let keys: HashSet<String> = vocab.keys().cloned().collect();
    let model: ModelWrapper = from_json(
        spec,
        json!({
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": "", "end_of_word_suffix": "",
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        }),
    )?;
    let mut tk = tokenizers::Tokenizer::new(model);
    tk.with_pre_tokenizer(Some(from_json::<PreTokenizerWrapper>(
        spec,
        json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}),
    )?));
    tk.with_decoder(Some(from_json::<DecoderWrapper>(
        spec,
        json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}),
    )?));
    // GPT2Tokenizer's defaults: unk = bos = eos = "<|endoftext|>".
    Ok((tk, keys, vec!["<|endoftext|>"]))
}

/// Step 1 for "llama": SentencePiece-style BPE with byte fallback (LlamaTokenizer), or HF's
/// variants for gemma and phi3 architectures.
fn build_llama(
    spec: &GgufTokenizerSpec,
    gemma_sp: bool,
    phi3_sp: bool,
) -> Result<BaseTokenizer, TokenizerError> {
    let tokens = llama_vocab_tokens(spec, gemma_sp);
    let mut vocab = serde_json::Map::new();
    for (i, t) in tokens.iter().enumerate() {
        vocab.insert(t.clone(), json!(i));
    }
    let merges = llama_merges(spec, &tokens, gemma_sp)?;
    let keys: HashSet<String> = vocab.keys().cloned().collect();
    let unk = if gemma_sp { json!("<unk>") } else { Json::Null };
    let model: ModelWrapper = from_json(
        spec,
        json!({
            "type": "BPE", "dropout": null, "unk_token": unk,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        }),
    )?;
    let mut tk = tokenizers::Tokenizer::new(model);
    if gemma_sp {
        set_gemma_pipeline(spec, &mut tk)?;
        Ok((tk, keys, vec!["<bos>", "<eos>", "<unk>", "<pad>", "<mask>"]))
    } else {
        set_llama_pipeline(spec, &mut tk, phi3_sp)?;
        // LlamaTokenizer's defaults, in SPECIAL_TOKENS_ATTRIBUTES order.
        Ok((tk, keys, vec!["<s>", "</s>", "<unk>"]))
    }
}

/// The "llama" vocabulary. Gemma files spell whitespace-only tokens with real spaces; HF respells
/// them.
fn llama_vocab_tokens(spec: &GgufTokenizerSpec, gemma_sp: bool) -> Vec<String> {
    if gemma_sp {
        spec.tokens
            .iter()
            .map(|t| {
                // Python: `" " in t and not t.strip()`
                if t.contains(' ') && t.chars().all(py_isspace) {
                    "\u{2581}".repeat(t.chars().count())
                } else {
                    t.clone()
                }
            })
            .collect()
    } else {
        spec.tokens.clone()
    }
}

/// The "llama" merges: from the file, else recovered from the token order (gemma) or the scores.
fn llama_merges(
    spec: &GgufTokenizerSpec,
    tokens: &[String],
    gemma_sp: bool,
) -> Result<Vec<Json>, TokenizerError> {
    Ok(match &spec.merges {
        Some(m) => merges_from_file(spec, m)?,
        None if gemma_sp => {
            // Gemma: the order of the tokens in the file is the merge priority.
            let pos: Vec<f64> = (0..tokens.len()).map(|i| -(i as f64)).collect();
            generate_merges(tokens, &pos)
                .into_iter()
                .map(|(a, b)| json!([a, b]))
                .collect()
        }
        None => {
            let scores = spec
                .scores
                .as_deref()
                .ok_or_else(|| TokenizerError::MissingKey {
                    path: spec.source.clone(),
                    key: "tokenizer.ggml.scores (no tokenizer.ggml.merges either)".into(),
                })?;
            generate_merges(tokens, scores)
                .into_iter()
                .map(|(a, b)| json!([a, b]))
                .collect()
        }
    })
}

/// GemmaTokenizer's normalizer (spaces to "▁"), pre-tokenizer and decoder.
fn set_gemma_pipeline(
    spec: &GgufTokenizerSpec,
    tk: &mut tokenizers::Tokenizer,
) -> Result<(), TokenizerError> {
    tk.with_normalizer(Some(from_json::<NormalizerWrapper>(
        spec,
        json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}),
    )?));
    tk.with_pre_tokenizer(Some(from_json::<PreTokenizerWrapper>(
        spec,
        json!({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false}),
    )?));
    tk.with_decoder(Some(from_json::<DecoderWrapper>(
        spec,
        json!({"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]}),
    )?));
    Ok(())
}

/// LlamaTokenizer's Metaspace pre-tokenizer (phi3: a Prepend + Replace normalizer instead) and
/// decoder.
fn set_llama_pipeline(
    spec: &GgufTokenizerSpec,
    tk: &mut tokenizers::Tokenizer,
    phi3_sp: bool,
) -> Result<(), TokenizerError> {
    if phi3_sp {
        tk.with_normalizer(Some(from_json::<NormalizerWrapper>(
            spec,
            json!({"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "\u{2581}"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}]}),
        )?));
    } else {
        tk.with_pre_tokenizer(Some(from_json::<PreTokenizerWrapper>(
            spec,
            json!({"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "first", "split": false}),
        )?));
    }
    tk.with_decoder(Some(from_json::<DecoderWrapper>(
        spec,
        json!({"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}),
    )?));
    Ok(())
}

/// Step 1, end: the HF class's default special tokens, once each.
fn add_class_default_tokens(tk: &mut tokenizers::Tokenizer, class_defaults: Vec<&str>) {
    let mut seen = HashSet::new();
    let defaults: Vec<AddedToken> = class_defaults
        .into_iter()
        .filter(|t| seen.insert(*t))
        .map(special)
        .collect();
    tk.add_tokens(&defaults);
}

/// Step 2, HF's `add_gguf_special_tokens`: control tokens as special (for byte-level vocabularies
/// only those spelled in the byte alphabet), then user-defined ones that are in the vocabulary
/// (added tokens included) as plain added tokens.
fn add_gguf_special_tokens(
    spec: &GgufTokenizerSpec,
    tk: &mut tokenizers::Tokenizer,
    types: &[i64],
    vocab_keys: &HashSet<String>,
) {
    let byte_level = spec.model == "gpt2";
    let alphabet: Option<HashSet<char>> =
        byte_level.then(|| bytes_to_unicode().into_iter().collect());
    let control: Vec<AddedToken> = spec
        .tokens
        .iter()
        .zip(types)
        .filter(|(t, &ty)| {
            ty == token_type::CONTROL
                && alphabet
                    .as_ref()
                    .is_none_or(|a| t.chars().all(|c| a.contains(&c)))
        })
        .map(|(t, _)| special(t))
        .collect();
    if !control.is_empty() {
        tk.add_special_tokens(&control);
    }
    let added: HashSet<String> = tk
        .get_added_tokens_decoder()
        .into_values()
        .map(|t| t.content)
        .collect();
    let user: Vec<AddedToken> = spec
        .tokens
        .iter()
        .zip(types)
        .filter(|(t, &ty)| {
            ty == token_type::USER_DEFINED
                && (vocab_keys.contains(t.as_str()) || added.contains(t.as_str()))
        })
        .map(|(t, _)| AddedToken::from(t.clone(), false).normalized(false))
        .collect();
    if !user.is_empty() {
        tk.add_tokens(&user);
    }
}

/// Step 3, HF's `set_split_regex`: the split regex listed for `tokenizer.ggml.pre`, if any,
/// followed by byte-level mapping (for any tokenizer type).
fn set_split_regex(
    spec: &GgufTokenizerSpec,
    tk: &mut tokenizers::Tokenizer,
) -> Result<(), TokenizerError> {
    if let Some(split) = spec.pre.as_deref().and_then(pre_tokenizer_split) {
        tk.with_pre_tokenizer(Some(from_json::<PreTokenizerWrapper>(
            spec,
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}),
        )?));
    }
    Ok(())
}

/// The file's named special tokens (their strings), as step 4 found them.
struct NamedTokens {
    bos_token: Option<String>,
    eos_token: Option<String>,
    unk_token: Option<String>,
    pad_token: Option<String>,
}

/// Step 4: the named special tokens from the file (bos, eos, unk, pad), added once each as special
/// tokens (before the post-processor, which looks their ids up).
fn add_named_special_tokens(
    spec: &GgufTokenizerSpec,
    tk: &mut tokenizers::Tokenizer,
) -> NamedTokens {
    let bos_token = spec.token(spec.bos_id);
    let eos_token = spec.token(spec.eos_id);
    let unk_token = spec.token(spec.unk_id);
    let pad_token = spec.token(spec.pad_id);
    let named: Vec<AddedToken> = {
        let mut seen = HashSet::new();
        [&bos_token, &eos_token, &unk_token, &pad_token]
            .into_iter()
            .flatten()
            .filter(|t| seen.insert(t.as_str()))
            .map(|t| special(t))
            .collect()
    };
    tk.add_tokens(&named);
    NamedTokens {
        bos_token,
        eos_token,
        unk_token,
        pad_token,
    }
}

/// What the post-processor of step 4 adds, and the BOS / EOS ids.
struct PostProcessing {
    add_bos: bool,
    add_eos: bool,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
}

/// Step 4, end: the `TemplateProcessing` post-processor adding BOS / EOS as the file's
/// `add_bos_token` / `add_eos_token` say (BOS by default for "llama", as HF), when the token
/// exists.
fn set_bos_eos_post_processor(
    spec: &GgufTokenizerSpec,
    tk: &mut tokenizers::Tokenizer,
    named: &NamedTokens,
) -> Result<PostProcessing, TokenizerError> {
    let (bos_token, eos_token) = (&named.bos_token, &named.eos_token);
    let add_bos = match spec.model.as_str() {
        "llama" => spec.add_bos.unwrap_or(true),
        _ => spec.add_bos.unwrap_or(false),
    } && bos_token.is_some();
    let add_eos = spec.add_eos.unwrap_or(false) && eos_token.is_some();
    let id_of = |t: &Option<String>| t.as_deref().and_then(|t| tk.token_to_id(t));
    let bos_id = id_of(bos_token);
    let eos_id = id_of(eos_token);
    let bos_pp = if add_bos {
        bos_token.as_deref().zip(bos_id)
    } else {
        None
    };
    let eos_pp = if add_eos {
        eos_token.as_deref().zip(eos_id)
    } else {
        None
    };
    let pp: PostProcessorWrapper = from_json(spec, template_processing(bos_pp, eos_pp))?;
    tk.with_post_processor(Some(pp));
    Ok(PostProcessing {
        add_bos,
        add_eos,
        bos_id,
        eos_id,
    })
}

/// The ids that end generation: the EOS token's id, the file's EOS id, then llama.cpp's
/// `eot` / `eom` ids, without duplicates.
fn end_of_generation_ids(spec: &GgufTokenizerSpec, eos_id: Option<u32>) -> Vec<u32> {
    let mut eos_ids = Vec::new();
    for id in [eos_id, spec.eos_id, spec.eot_id, spec.eom_id]
        .into_iter()
        .flatten()
    {
        if !eos_ids.contains(&id) {
            eos_ids.push(id);
        }
    }
    eos_ids
}
