//! Model constructors: a model's artifact records its files' digests and its shape; the
//! weights are loaded only when a trace needs them.
pub mod gguf;
pub mod hf;
pub mod random;

use serde_json::{json, Value as Json};

use crate::engine::config::ModelConfig;
use crate::engine::gguf::GgufFile;
use crate::engine::loader;
use crate::lang::{Node, Value};
use crate::ops::args::*;
use crate::ops::{Files, Inputs};
use crate::plan::Step;
use crate::run::Ctx;

pub(crate) fn model_spec(n: &Node) -> Result<String, String> {
    match n.args.first().and_then(|a| a.value.as_ref()) {
        Some(Value::ModelName(s)) | Some(Value::Str(s)) => Ok(s.clone()),
        Some(Value::Path { resolved, .. }) => Ok(resolved.display().to_string()),
        other => Err(format!("unexpected model source {other:?}")),
    }
}

pub(crate) fn model_info(ctx: &mut Ctx, step: &Step, _inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let spec = model_spec(n)?;
    let path = loader::resolve(&spec).map_err(|e| e.to_string())?;
    let cfg = if path.is_file() {
        ModelConfig::from_gguf(&GgufFile::open(&path).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?
    } else {
        ModelConfig::from_hf_json(&path.join("config.json")).map_err(|e| e.to_string())?
    };
    let files: Vec<Json> = step
        .files
        .values()
        .map(|p| ctx.cache.file_digest(p).map(|d| json!({"path": p.display().to_string(), "sha256": d.sha256.to_string()})))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let info = json!({
        "source": spec, "path": path.display().to_string(), "files": files,
        "arch": cfg.arch, "layers": cfg.num_layers, "heads": cfg.num_heads, "kv_heads": cfg.num_kv_heads,
        "dtype": req_enum(n, "dtype")?, "device": req_enum(n, "device")?,
    });
    let mut info = info;
    if let Some(commit) = crate::engine::hub::snapshot_commit(&path) {
        info["revision"] = json!(commit);
    }
    Ok(vec![("model.json".into(), serde_json::to_vec_pretty(&info).unwrap())])
}
