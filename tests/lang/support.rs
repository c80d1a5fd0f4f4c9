//! Shared by tests/lang*.rs: a fake model-shape source and file helpers.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

use rhx::lang::{EngineShapes, ModelDecl, ModelShape, ModelShapes};

/// Known model names get fixed shapes (so tests need no installed model); local paths are read
/// for real (GGUF header or config.json) through `EngineShapes`.
pub struct FakeShapes;

impl ModelShapes for FakeShapes {
    fn shape(&self, m: &ModelDecl) -> Result<Option<ModelShape>, String> {
        if m.path.is_some() {
            return EngineShapes::new().shape(m);
        }
        match m.spec.as_str() {
            "smollm2-135m-instruct" => Ok(Some(ModelShape { layers: 30, heads: 9 })),
            "llama-3.1-8b-instruct" => Ok(Some(ModelShape { layers: 32, heads: 32 })),
            s => Err(format!("model `{s}` is not installed; known model names: smollm2-135m-instruct, llama-3.1-8b-instruct")),
        }
    }
}

/// `*.rhx` files directly in `dir`, sorted.
pub fn rhx_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rhx"))
        .collect();
    v.sort();
    v
}

pub fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().to_string()
}
