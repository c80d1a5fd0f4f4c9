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
//!
//! Layout: this file holds the [`Tokenizer`] type, encoding and decoding; `gguf.rs` builds one
//! from GGUF metadata ([`GgufTokenizerSpec`]), `hf.rs` from a Hugging Face model directory.

mod gguf;
mod hf;

pub use gguf::{bytes_to_unicode, pre_tokenizer_split, token_type, GgufTokenizerSpec};

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use serde_json::{json, Value as Json};
use tokenizers::AddedToken;

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

/// A special added token as HF registers it: not normalized. Both builders use it.
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
