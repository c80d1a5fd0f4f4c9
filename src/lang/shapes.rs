//! Model shapes for the checker: how many layers and heads a model has, read cheaply (GGUF
//! header through an mmap, or `config.json`) without loading weights, so that interventions on
//! heads that do not exist are rejected before anything runs.
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

use crate::engine::config::ModelConfig;
use crate::engine::gguf::GgufFile;
use crate::engine::loader;

/// What the checker knows about a `model` declaration that names files (`gguf`, `hf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDecl {
    pub name: String,
    /// Constructor: `gguf` or `hf`.
    pub constructor: String,
    /// The source argument as written: a model name or a path.
    pub spec: String,
    /// The path resolved against the `.rhx` file, when the source is a path.
    pub path: Option<PathBuf>,
}

/// Layers × query heads per layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    pub layers: usize,
    pub heads: usize,
}

impl ModelShape {
    pub fn total(&self) -> usize {
        self.layers * self.heads
    }
}

/// Source of model shapes. `Ok(None)`: unknown (head checks are skipped); `Err(msg)`: the model
/// cannot be found or read (reported as an error at the model's source argument).
pub trait ModelShapes {
    fn shape(&self, model: &ModelDecl) -> Result<Option<ModelShape>, String>;
}

/// Knows no shapes and accepts every model (checks that do not need the engine).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoShapes;

impl ModelShapes for NoShapes {
    fn shape(&self, _model: &ModelDecl) -> Result<Option<ModelShape>, String> {
        Ok(None)
    }
}

/// Reads shapes from the real files: GGUF metadata (mmap, no tensor data) or `config.json`;
/// names are resolved like `rhx trace` does (`engine::loader::resolve`). Results are cached.
#[derive(Debug, Default)]
pub struct EngineShapes {
    cache: RefCell<HashMap<String, Result<Option<ModelShape>, String>>>,
}

impl EngineShapes {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(model: &ModelDecl) -> Result<Option<ModelShape>, String> {
        let path = match &model.path {
            Some(p) => p.clone(),
            None => loader::resolve(&model.spec).map_err(|e| e.to_string())?,
        };
        let config = if path.is_dir() {
            ModelConfig::from_hf_json(&path.join("config.json")).map_err(|e| e.to_string())?
        } else {
            let g = GgufFile::open(&path).map_err(|e| e.to_string())?;
            ModelConfig::from_gguf(&g).map_err(|e| e.to_string())?
        };
        Ok(Some(ModelShape {
            layers: config.num_layers,
            heads: config.num_heads,
        }))
    }
}

impl ModelShapes for EngineShapes {
    fn shape(&self, model: &ModelDecl) -> Result<Option<ModelShape>, String> {
        let key = format!("{}\0{}\0{:?}", model.constructor, model.spec, model.path);
        if let Some(r) = self.cache.borrow().get(&key) {
            return r.clone();
        }
        let r = Self::read(model);
        self.cache.borrow_mut().insert(key, r.clone());
        r
    }
}
