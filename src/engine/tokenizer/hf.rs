//! Building a [`Tokenizer`] from a Hugging Face model directory: `tokenizer.json` as stored, with
//! what `tokenizer_config.json`, `generation_config.json` and the chat template files add.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tokenizers::{AddedToken, ModelWrapper, PostProcessorWrapper};

use super::{special, template_processing, Tokenizer, TokenizerError};

impl Tokenizer {
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
        let mut tk = load_tokenizer_json(dir)?;
        let config_path = dir.join("tokenizer_config.json");
        let config = read_json(dir, "tokenizer_config.json")?.unwrap_or(Json::Null);
        let gen_path = dir.join("generation_config.json");
        let gen = read_json(dir, "generation_config.json")?;

        let named = named_special_tokens(&config);
        add_missing_special_tokens(&mut tk, &config, &named);
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
        update_post_processor(
            &mut tk,
            &config,
            &config_path,
            bos_token.as_deref(),
            bos_id,
            eos_token.as_deref(),
            eos_id,
        )?;
        let chat_template = find_chat_template(dir, &config)?;
        let eos_ids = end_of_generation_ids(gen.as_ref(), gen_path, eos_id)?;

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
}

/// `dir/tokenizer.json`, as stored.
fn load_tokenizer_json(dir: &Path) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let tok_path = dir.join("tokenizer.json");
    if !tok_path.is_file() {
        return Err(TokenizerError::Invalid {
            path: dir.to_path_buf(),
            what: "no tokenizer.json in this directory".into(),
        });
    }
    tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| TokenizerError::Tokenizers {
        path: tok_path.clone(),
        message: e.to_string(),
    })
}

/// `dir/name` parsed, or `None` when the directory has no such file (all but `tokenizer.json`
/// are optional).
fn read_json(dir: &Path, name: &str) -> Result<Option<Json>, TokenizerError> {
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
}

/// The named special tokens `tokenizer_config.json` sets (bos, eos, unk, sep, pad, cls, mask), in
/// that order.
fn named_special_tokens(config: &Json) -> Vec<(&'static str, AddedToken)> {
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
    names
        .iter()
        .filter_map(|n| token_of(n).map(|t| (*n, t)))
        .collect()
}

/// Adds the named special tokens and the config's `additional_special_tokens` /
/// `extra_special_tokens` that `tokenizer.json` does not have yet, as special tokens.
fn add_missing_special_tokens(
    tk: &mut tokenizers::Tokenizer,
    config: &Json,
    named: &[(&str, AddedToken)],
) {
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
}

/// transformers rebuilds the post-processor when the config states add_bos/add_eos (or
/// `tokenizer.json` has none): BOS / EOS as flagged, when the token exists.
fn update_post_processor(
    tk: &mut tokenizers::Tokenizer,
    config: &Json,
    config_path: &Path,
    bos_token: Option<&str>,
    bos_id: Option<u32>,
    eos_token: Option<&str>,
    eos_id: Option<u32>,
) -> Result<(), TokenizerError> {
    let flag = |k: &str| config.get(k).and_then(Json::as_bool);
    if flag("add_bos_token").is_some()
        || flag("add_eos_token").is_some()
        || tk.get_post_processor().is_none()
    {
        let add_bos = flag("add_bos_token").unwrap_or(false) && bos_id.is_some();
        let add_eos = flag("add_eos_token").unwrap_or(false) && eos_id.is_some();
        let bos = if add_bos { bos_token.zip(bos_id) } else { None };
        let eos = if add_eos { eos_token.zip(eos_id) } else { None };
        let pp: PostProcessorWrapper = serde_json::from_value(template_processing(bos, eos))
            .map_err(|e| TokenizerError::Tokenizers {
                path: config_path.to_path_buf(),
                message: e.to_string(),
            })?;
        tk.with_post_processor(Some(pp));
    }
    Ok(())
}

/// Chat template: tokenizer_config.json (string, or a list of {name, template}), else
/// chat_template.jinja, else chat_template.json.
fn find_chat_template(dir: &Path, config: &Json) -> Result<Option<String>, TokenizerError> {
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
        if let Some(j) = read_json(dir, "chat_template.json")? {
            chat_template = j
                .get("chat_template")
                .and_then(Json::as_str)
                .map(str::to_owned);
        }
    }
    Ok(chat_template)
}

/// The ids that end generation: `generation_config.json`'s `eos_token_id` (an id or a list),
/// with the EOS token's id first when the list lacks it.
fn end_of_generation_ids(
    gen: Option<&Json>,
    gen_path: PathBuf,
    eos_id: Option<u32>,
) -> Result<Vec<u32>, TokenizerError> {
    let mut eos_ids: Vec<u32> = Vec::new();
    if let Some(gen) = gen {
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
    Ok(eos_ids)
}
