//! Tokenizers, built to match Hugging Face `transformers` exactly.
//!
//! Two sources:
//!
//! * [`Tokenizer::from_gguf`]: a GGUF file's `tokenizer.*` metadata (llama.cpp key names). The
//!   tokenizer is rebuilt the way transformers' GGUF loader does it
//!   (`transformers/integrations/gguf/gguf_tokenizer_mapping.py`, transformers 5.x), which is
//!   the reference: `AutoTokenizer.from_pretrained(dir, gguf_file=...)`. That covers
//!   `tokenizer.ggml.model = "gpt2"` (byte-level BPE; the split regex picked by
//!   `tokenizer.ggml.pre`) and `"llama"` (SentencePiece-style BPE with byte fallback, merges
//!   recovered from the scores; `phi3` and `gemma*` architectures get HF's variants), control
//!   tokens (type 3) registered as special added tokens and user-defined ones (type 4) as
//!   plain added tokens, and the BOS/EOS post-processor from `tokenizer.ggml.add_bos_token`.
//! * [`Tokenizer::from_hf_dir`]: a model directory with `tokenizer.json`,
//!   `tokenizer_config.json` and optionally `generation_config.json` / `chat_template.jinja`.
//!
//! Offsets: [`Encoded::offsets`] are **character** offsets (Unicode scalar values) into the input,
//! exactly what HF's Python tokenizers return as `offset_mapping`; [`Encoded::byte_offsets`] are
//! the same spans in bytes, for slicing the `&str`.
//!
//! Deliberate differences from llama.cpp (we follow HF): HF ignores
//! `tokenizer.ggml.add_space_prefix` for "llama" vocabularies (always prepends "▁" to the first
//! word) and uses GPT-2's split regex for `pre` values it does not list (e.g. "smollm", whose
//! llama.cpp regex splits digits one by one).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper,
    PreTokenizerWrapper,
};

use crate::engine::gguf::{GgufFile, GgufValue};

/// Errors name the file and what is missing or wrong.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{}: metadata key `{key}` is missing (needed to build the tokenizer)", path.display())]
    MissingKey { path: PathBuf, key: String },
    #[error("{}: metadata key `{key}` is not {expected}", path.display())]
    WrongKeyType {
        path: PathBuf,
        key: String,
        expected: &'static str,
    },
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
    #[error(
        "{}: cannot build a tokenizer for tokenizer.ggml.model = `{model}` (supported: gpt2, llama)",
        path.display()
    )]
    UnsupportedModel { path: PathBuf, model: String },
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: tokenizers: {message}", path.display())]
    Tokenizers { path: PathBuf, message: String },
}

/// The result of [`Tokenizer::encode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// The vocabulary pieces (`Ġworld`, `▁the`, `<0x0A>`, `<|im_start|>`).
    pub tokens: Vec<String>,
    /// Character offsets `[start, end)` into the input, one per token, as HF's `offset_mapping`.
    /// Special tokens added by the post-processor (BOS) get `(0, 0)`.
    pub offsets: Vec<(usize, usize)>,
    /// The same spans as byte offsets into the input `&str` (always on char boundaries).
    pub byte_offsets: Vec<(usize, usize)>,
    /// `true` for special tokens: those the post-processor added (BOS/EOS) and special added
    /// tokens written in the text (`<|im_start|>`), like HF's `all_special_ids` membership.
    pub special: Vec<bool>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Indices `[first, last + 1)` of the tokens whose character span overlaps the character range
    /// `[start, end)`, or `None` if no token does (e.g. an empty range). Tokens with empty spans
    /// (post-processor specials) never match.
    pub fn token_range_for_chars(
        &self,
        start: usize,
        end: usize,
    ) -> Option<std::ops::Range<usize>> {
        overlapping(&self.offsets, start, end)
    }

    /// Like [`Encoded::token_range_for_chars`] with a byte range of the input.
    pub fn token_range_for_bytes(
        &self,
        start: usize,
        end: usize,
    ) -> Option<std::ops::Range<usize>> {
        overlapping(&self.byte_offsets, start, end)
    }
}

fn overlapping(
    spans: &[(usize, usize)],
    start: usize,
    end: usize,
) -> Option<std::ops::Range<usize>> {
    let mut first = None;
    let mut last = 0;
    for (i, &(s, e)) in spans.iter().enumerate() {
        if s < e && s < end && start < e {
            first.get_or_insert(i);
            last = i;
        }
    }
    first.map(|f| f..last + 1)
}

/// A tokenizer plus what generation and chat rendering need from its configuration.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Where it came from (GGUF file or model directory), for messages.
    pub source: PathBuf,
    pub bos_id: Option<u32>,
    /// Ids that end generation: the EOS id first, then any others (GGUF `eot`/`eom` ids,
    /// `generation_config.json`'s `eos_token_id` list), without duplicates.
    pub eos_ids: Vec<u32>,
    pub chat_template: Option<String>,
    /// Whether `encode(text, true)` prepends the BOS token (what the post-processor does).
    pub add_bos: bool,
    /// Whether `encode(text, true)` appends the EOS token.
    pub add_eos: bool,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub unk_token: Option<String>,
    pub pad_token: Option<String>,
    /// HF's `special_tokens_map`: every named special token that is set (`bos_token`,
    /// `eos_token`, `unk_token`, `sep_token`, `pad_token`, `cls_token`, `mask_token`).
    pub special_tokens_map: std::collections::BTreeMap<String, String>,
    /// `tokenizer_class` from `tokenizer_config.json` (HF directories only). transformers 5
    /// rebuilds the normalizer / pre-tokenizer / decoder of model-specific classes such as
    /// `LlamaTokenizer` instead of using `tokenizer.json` as stored (which is what this crate
    /// does), so for those classes encodings can differ from HF's; callers may want to warn.
    pub tokenizer_class: Option<String>,
    /// Ids of the special added tokens (control tokens, named special tokens).
    special_id_set: HashSet<u32>,
    /// HF's `clean_up_tokenization_spaces`, applied on decode only for non-BPE models (as HF).
    clean_up_tokenization_spaces: bool,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.bos_id)
            .field("eos_ids", &self.eos_ids)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

// ------------------------------------------------------------------------------------------------
// GGUF metadata

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

fn special(content: &str) -> AddedToken {
    AddedToken::from(content.to_owned(), true).normalized(false)
}

/// HF's `update_post_processor`: `TemplateProcessing` with BOS/EOS as flagged.
fn template_processing(bos: Option<(&str, u32)>, eos: Option<(&str, u32)>) -> Json {
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut specials = serde_json::Map::new();
    let tok = |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let seq = |s: &str, type_id: u32| json!({"Sequence": {"id": s, "type_id": type_id}});
    if let Some((b, _)) = bos {
        single.push(tok(b, 0));
    }
    single.push(seq("A", 0));
    if let Some((e, _)) = eos {
        single.push(tok(e, 0));
    }
    pair.extend(single.iter().cloned());
    if let Some((b, _)) = bos {
        pair.push(tok(b, 1));
    }
    pair.push(seq("B", 1));
    if let Some((e, _)) = eos {
        pair.push(tok(e, 1));
    }
    for (t, id) in [bos, eos].into_iter().flatten() {
        specials.insert(t.to_owned(), json!({"id": t, "ids": [id], "tokens": [t]}));
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
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

    /// Builds the tokenizer from (possibly edited) GGUF tokenizer metadata.
    pub fn from_gguf_spec(spec: &GgufTokenizerSpec) -> Result<Self, TokenizerError> {
        let byte_level = spec.model == "gpt2";
        let arch = spec.architecture.as_str();
        let gemma_sp = spec.model == "llama" && matches!(arch, "gemma" | "gemma2" | "gemma3");
        let phi3_sp = spec.model == "llama" && arch == "phi3";
        let types = spec.token_types.as_deref();

        // 1. The builder: model, normalizer, pre-tokenizer, decoder, and the default special
        //    tokens its HF class registers in `__init__` (added even when not in the vocabulary).
        let (mut tk, vocab_keys, class_defaults): (
            tokenizers::Tokenizer,
            HashSet<String>,
            Vec<&str>,
        ) = match spec.model.as_str() {
            "gpt2" => {
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
                    Some(m) => m
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
                        .collect::<Result<Vec<_>, _>>()?,
                    None => {
                        // HF's get_merges: recovered from the file's tokens and scores (the
                        // tokens as stored, not respelled).
                        let scores =
                            spec.scores
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
                (tk, keys, vec!["<|endoftext|>"])
            }
            "llama" => {
                // Gemma files spell whitespace-only tokens with real spaces; HF respells them.
                let tokens: Vec<String> = if gemma_sp {
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
                };
                let mut vocab = serde_json::Map::new();
                for (i, t) in tokens.iter().enumerate() {
                    vocab.insert(t.clone(), json!(i));
                }
                let merges: Vec<Json> = match &spec.merges {
                    Some(m) => m
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
                        .collect::<Result<Vec<_>, _>>()?,
                    None if gemma_sp => {
                        // Gemma: the order of the tokens in the file is the merge priority.
                        let pos: Vec<f64> = (0..tokens.len()).map(|i| -(i as f64)).collect();
                        generate_merges(&tokens, &pos)
                            .into_iter()
                            .map(|(a, b)| json!([a, b]))
                            .collect()
                    }
                    None => {
                        let scores =
                            spec.scores
                                .as_deref()
                                .ok_or_else(|| TokenizerError::MissingKey {
                                    path: spec.source.clone(),
                                    key: "tokenizer.ggml.scores (no tokenizer.ggml.merges either)"
                                        .into(),
                                })?;
                        generate_merges(&tokens, scores)
                            .into_iter()
                            .map(|(a, b)| json!([a, b]))
                            .collect()
                    }
                };
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
                    (tk, keys, vec!["<bos>", "<eos>", "<unk>", "<pad>", "<mask>"])
                } else {
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
                    // LlamaTokenizer's defaults, in SPECIAL_TOKENS_ATTRIBUTES order.
                    (tk, keys, vec!["<s>", "</s>", "<unk>"])
                }
            }
            other => {
                return Err(TokenizerError::UnsupportedModel {
                    path: spec.source.clone(),
                    model: other.to_owned(),
                })
            }
        };
        let mut seen = HashSet::new();
        let defaults: Vec<AddedToken> = class_defaults
            .into_iter()
            .filter(|t| seen.insert(*t))
            .map(special)
            .collect();
        tk.add_tokens(&defaults);

        // 2. add_gguf_special_tokens: control tokens as special (for byte-level vocabularies
        //    only those spelled in the byte alphabet), then user-defined ones that are in the
        //    vocabulary (added tokens included) as plain added tokens.
        if let Some(types) = types {
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

        // 3. set_split_regex (any tokenizer type).
        if let Some(split) = spec.pre.as_deref().and_then(pre_tokenizer_split) {
            tk.with_pre_tokenizer(Some(from_json::<PreTokenizerWrapper>(
                spec,
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": false},
                    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}),
            )?));
        }

        // 4. The named special tokens from the file (bos, eos, unk, pad), then the post-processor.
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

        let add_bos = match spec.model.as_str() {
            "llama" => spec.add_bos.unwrap_or(true),
            _ => spec.add_bos.unwrap_or(false),
        } && bos_token.is_some();
        let add_eos = spec.add_eos.unwrap_or(false) && eos_token.is_some();
        let id_of = |t: &Option<String>| t.as_deref().and_then(|t| tk.token_to_id(t));
        let bos_id = id_of(&bos_token);
        let eos_id = id_of(&eos_token);
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

        let mut eos_ids = Vec::new();
        for id in [eos_id, spec.eos_id, spec.eot_id, spec.eom_id]
            .into_iter()
            .flatten()
        {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        let mut out = Tokenizer {
            inner: tk,
            source: spec.source.clone(),
            bos_id,
            eos_ids,
            chat_template: spec.chat_template.clone(),
            add_bos,
            add_eos,
            bos_token,
            eos_token,
            unk_token,
            pad_token,
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

    /// Loads `dir/tokenizer.json` with `tokenizer_config.json` (special tokens, `add_bos_token`,
    /// chat template), `chat_template.jinja` / `chat_template.json` when present (newer
    /// transformers save the template there), and `generation_config.json` (`eos_token_id` may
    /// be a list).
    ///
    /// Limitation: transformers 5 rebuilds the normalizer, pre-tokenizer, decoder and model of
    /// model-specific tokenizer classes (`tokenizer_class` in the config, e.g. `LlamaTokenizer`:
    /// checked, it drops tokenizer.json's `Prepend`/`Replace` normalizer for a `Metaspace`)
    /// from the vocabulary, keeping only tokenizer.json's post-processor. This loads
    /// `tokenizer.json` as stored, as `TokenizersBackend` / `PreTrainedTokenizerFast` do, which
    /// is what HF does for byte-level (Llama-3, Qwen, SmolLM) directories; see
    /// [`Tokenizer::tokenizer_class`].
    pub fn from_hf_dir(dir: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let dir = dir.as_ref();
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(TokenizerError::Invalid {
                path: dir.to_path_buf(),
                what: "no tokenizer.json in this directory".into(),
            });
        }
        let mut tk = tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| {
            TokenizerError::Tokenizers {
                path: tok_path.clone(),
                message: e.to_string(),
            }
        })?;

        let read_json = |name: &str| -> Result<Option<Json>, TokenizerError> {
            let p = dir.join(name);
            if !p.is_file() {
                return Ok(None);
            }
            let text = std::fs::read_to_string(&p).map_err(|source| TokenizerError::Io {
                path: p.clone(),
                source,
            })?;
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|source| TokenizerError::Json {
                    path: p.clone(),
                    source,
                })
        };
        let config_path = dir.join("tokenizer_config.json");
        let config = read_json("tokenizer_config.json")?.unwrap_or(Json::Null);
        let gen_path = dir.join("generation_config.json");
        let gen = read_json("generation_config.json")?;

        // Special tokens may be strings or AddedToken dicts ({"content": ..., "lstrip": ...}).
        let token_of = |key: &str| -> Option<AddedToken> {
            match config.get(key)? {
                Json::String(s) => Some(special(s)),
                Json::Object(o) => {
                    let content = o.get("content")?.as_str()?.to_owned();
                    let flag = |k: &str, d: bool| o.get(k).and_then(Json::as_bool).unwrap_or(d);
                    Some(
                        AddedToken::from(content, true)
                            .single_word(flag("single_word", false))
                            .lstrip(flag("lstrip", false))
                            .rstrip(flag("rstrip", false))
                            .normalized(flag("normalized", false)),
                    )
                }
                _ => None,
            }
        };
        let names = [
            "bos_token",
            "eos_token",
            "unk_token",
            "sep_token",
            "pad_token",
            "cls_token",
            "mask_token",
        ];
        let named: Vec<(&str, AddedToken)> = names
            .iter()
            .filter_map(|n| token_of(n).map(|t| (*n, t)))
            .collect();
        let present: HashSet<String> = tk
            .get_added_tokens_decoder()
            .into_values()
            .map(|t| t.content)
            .collect();
        let mut to_add: Vec<AddedToken> = named
            .iter()
            .map(|(_, t)| t.clone())
            .filter(|t| !present.contains(&t.content))
            .collect();
        for key in ["additional_special_tokens", "extra_special_tokens"] {
            if let Some(Json::Array(list)) = config.get(key) {
                for item in list {
                    let content = match item {
                        Json::String(s) => s.clone(),
                        Json::Object(o) => match o.get("content").and_then(Json::as_str) {
                            Some(s) => s.to_owned(),
                            None => continue,
                        },
                        _ => continue,
                    };
                    if !present.contains(&content) {
                        to_add.push(special(&content));
                    }
                }
            }
        }
        if !to_add.is_empty() {
            tk.add_tokens(&to_add);
        }
        let get = |name: &str| {
            named
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.content.clone())
        };
        let (bos_token, eos_token, unk_token, pad_token) = (
            get("bos_token"),
            get("eos_token"),
            get("unk_token"),
            get("pad_token"),
        );
        let bos_id = bos_token.as_deref().and_then(|t| tk.token_to_id(t));
        let eos_id = eos_token.as_deref().and_then(|t| tk.token_to_id(t));

        // transformers rebuilds the post-processor when the config states add_bos/add_eos.
        let flag = |k: &str| config.get(k).and_then(Json::as_bool);
        if flag("add_bos_token").is_some()
            || flag("add_eos_token").is_some()
            || tk.get_post_processor().is_none()
        {
            let add_bos = flag("add_bos_token").unwrap_or(false) && bos_id.is_some();
            let add_eos = flag("add_eos_token").unwrap_or(false) && eos_id.is_some();
            let bos = if add_bos {
                bos_token.as_deref().zip(bos_id)
            } else {
                None
            };
            let eos = if add_eos {
                eos_token.as_deref().zip(eos_id)
            } else {
                None
            };
            let pp: PostProcessorWrapper = serde_json::from_value(template_processing(bos, eos))
                .map_err(|e| TokenizerError::Tokenizers {
                    path: config_path.clone(),
                    message: e.to_string(),
                })?;
            tk.with_post_processor(Some(pp));
        }

        // Chat template: tokenizer_config.json (string, or a list of {name, template}), else
        // chat_template.jinja, else chat_template.json.
        let mut chat_template = match config.get("chat_template") {
            Some(Json::String(s)) => Some(s.clone()),
            Some(Json::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
                .or_else(|| list.first())
                .and_then(|t| t.get("template").and_then(Json::as_str))
                .map(str::to_owned),
            _ => None,
        };
        if chat_template.is_none() {
            let p = dir.join("chat_template.jinja");
            if p.is_file() {
                chat_template =
                    Some(
                        std::fs::read_to_string(&p).map_err(|source| TokenizerError::Io {
                            path: p.clone(),
                            source,
                        })?,
                    );
            }
        }
        if chat_template.is_none() {
            if let Some(j) = read_json("chat_template.json")? {
                chat_template = j
                    .get("chat_template")
                    .and_then(Json::as_str)
                    .map(str::to_owned);
            }
        }

        let mut eos_ids: Vec<u32> = Vec::new();
        if let Some(gen) = &gen {
            match gen.get("eos_token_id") {
                Some(Json::Number(n)) => eos_ids.extend(n.as_u64().map(|v| v as u32)),
                Some(Json::Array(list)) => {
                    eos_ids.extend(list.iter().filter_map(Json::as_u64).map(|v| v as u32))
                }
                Some(Json::Null) | None => {}
                Some(other) => {
                    return Err(TokenizerError::Invalid {
                        path: gen_path,
                        what: format!("`eos_token_id` is neither an id nor a list of ids: {other}"),
                    })
                }
            }
        }
        if let Some(id) = eos_id {
            if !eos_ids.contains(&id) {
                eos_ids.insert(0, id);
            }
        }
        let is_bpe = matches!(tk.get_model(), ModelWrapper::BPE(_));
        let clean_up = config
            .get("clean_up_tokenization_spaces")
            .and_then(Json::as_bool)
            .unwrap_or(false)
            && !is_bpe;
        let mut out = Tokenizer {
            inner: tk,
            source: dir.to_path_buf(),
            bos_id,
            eos_ids,
            chat_template,
            add_bos: false,
            add_eos: false,
            bos_token,
            eos_token,
            unk_token,
            pad_token,
            special_tokens_map: Default::default(),
            tokenizer_class: config
                .get("tokenizer_class")
                .and_then(Json::as_str)
                .map(str::to_owned),
            special_id_set: HashSet::new(),
            clean_up_tokenization_spaces: clean_up,
        };
        out.finish(&[
            ("sep_token", get("sep_token")),
            ("cls_token", get("cls_token")),
            ("mask_token", get("mask_token")),
        ]);
        Ok(out)
    }

    /// Fills the special tokens map and special id set, and sets `add_bos` / `add_eos` from what
    /// the post-processor actually does.
    fn finish(&mut self, others: &[(&str, Option<String>)]) {
        let mut map = std::collections::BTreeMap::new();
        for (k, v) in [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("unk_token", &self.unk_token),
            ("pad_token", &self.pad_token),
        ] {
            if let Some(v) = v {
                map.insert(k.to_owned(), v.clone());
            }
        }
        for (k, v) in others {
            if let Some(v) = v {
                map.insert((*k).to_owned(), v.clone());
            }
        }
        self.special_tokens_map = map;
        self.special_id_set = self
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(i, _)| i)
            .collect();
        self.detect_added_specials();
    }

    fn detect_added_specials(&mut self) {
        let Ok(with) = self.inner.encode("a", true) else {
            return;
        };
        let Ok(without) = self.inner.encode("a", false) else {
            return;
        };
        let (w, wo) = (with.get_ids(), without.get_ids());
        self.add_bos = self.bos_id.is_some()
            && w.first() == self.bos_id.as_ref()
            && wo.first() != self.bos_id.as_ref();
        let eos = self
            .eos_token
            .as_deref()
            .and_then(|t| self.inner.token_to_id(t));
        self.add_eos = eos.is_some() && w.last() == eos.as_ref() && wo.last() != eos.as_ref();
    }

    /// Encodes `text`; with `add_special_tokens` the post-processor adds BOS/EOS as configured.
    /// Special added tokens written in the text (e.g. `<|im_start|>`) are always matched.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Encoded, TokenizerError> {
        let enc = self
            .inner
            .encode_char_offsets(text, add_special_tokens)
            .map_err(|e| TokenizerError::Tokenizers {
                path: self.source.clone(),
                message: e.to_string(),
            })?;
        // char index -> byte index (one past the end included).
        let mut char_to_byte: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        char_to_byte.push(text.len());
        let to_byte = |c: usize| char_to_byte.get(c).copied().unwrap_or(text.len());
        let offsets: Vec<(usize, usize)> = enc.get_offsets().to_vec();
        let byte_offsets = offsets
            .iter()
            .map(|&(s, e)| (to_byte(s), to_byte(e)))
            .collect();
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            tokens: enc.get_tokens().to_vec(),
            offsets,
            byte_offsets,
            special: enc
                .get_special_tokens_mask()
                .iter()
                .zip(enc.get_ids())
                .map(|(&m, id)| m != 0 || self.special_id_set.contains(id))
                .collect(),
        })
    }

    /// Ids only.
    pub fn encode_ids(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        self.inner
            .encode_fast(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizerError::Tokenizers {
                path: self.source.clone(),
                message: e.to_string(),
            })
    }

    /// Text of `ids`, as HF's `decode(ids, skip_special_tokens=skip_special)`. Unknown ids are
    /// dropped; see [`Tokenizer::try_decode`] for the error.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        self.try_decode(ids, skip_special).unwrap_or_default()
    }

    /// Decodes without HF's `clean_up_tokenization_spaces` (text assembly from token pieces,
    /// e.g. NIAH haystack splicing, needs the exact text).
    pub fn decode_exact(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }

    pub fn try_decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        let text =
            self.inner
                .decode(ids, skip_special)
                .map_err(|e| TokenizerError::Tokenizers {
                    path: self.source.clone(),
                    message: e.to_string(),
                })?;
        Ok(if self.clean_up_tokenization_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// The vocabulary piece of `id` (`Ġworld`, `▁the`, `<0x0A>`), like HF's
    /// `convert_ids_to_tokens`.
    pub fn id_to_piece(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The text a single token stands for (decoded alone, special tokens kept). Tokens that are
    /// part of a UTF-8 sequence decode to U+FFFD.
    pub fn token_to_str(&self, id: u32) -> String {
        self.decode(&[id], false)
    }

    /// The id of a vocabulary piece or added token.
    pub fn token_to_id(&self, piece: &str) -> Option<u32> {
        self.inner.token_to_id(piece)
    }

    /// Vocabulary size including added tokens (HF's `len(tokenizer)`).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Whether `id` is a special added token (control tokens, bos/eos/...).
    pub fn is_special(&self, id: u32) -> bool {
        self.special_id_set.contains(&id)
    }

    /// Ids of all special added tokens, sorted.
    pub fn special_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.special_id_set.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Added tokens (id, content, special), sorted by id.
    pub fn added_tokens(&self) -> Vec<(u32, String, bool)> {
        let mut v: Vec<(u32, String, bool)> = self
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(i, t)| (i, t.content, t.special))
            .collect();
        v.sort_by_key(|x| x.0);
        v
    }

    /// HF's `special_tokens_map` (bos/eos/unk/pad token strings), which `apply_chat_template`
    /// passes to the template; give it to [`crate::engine::chat::render_chat`] as `extra`.
    pub fn template_kwargs(&self) -> std::collections::BTreeMap<String, Json> {
        self.special_tokens_map
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect()
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The tokenizer's serialization (`tokenizer.json` format).
    pub fn to_json(&self) -> Result<String, TokenizerError> {
        self.inner
            .to_string(false)
            .map_err(|e| TokenizerError::Tokenizers {
                path: self.source.clone(),
                message: e.to_string(),
            })
    }
}

/// Python's `str.isspace` for one character (Rust's `char::is_whitespace` plus U+001C..U+001F).
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// HF's `clean_up_tokenization` (used on decode by WordPiece-style tokenizers only).
fn clean_up_tokenization(s: &str) -> String {
    s.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}
