//! `model … = hf(…)`: a Hugging Face model folder, or a Hub id (`owner/name`) read from the
//! local Hub cache at a `revision:` (`engine::hub`; never downloaded).
use crate::lang::schema::{text, FuncSpec, model_common, Ty, PathKind};

use crate::lang::{Kind, Node, Value};
use crate::ops::{Exec, OpDef, Refusal};

pub const OP: OpDef = OpDef { kind: Kind::Model, name: "hf", spec, source: file!(), check: Some(revision_needs_hub_id), exec: Exec::Artifact(super::model_info) };

fn spec() -> FuncSpec {
    FuncSpec::new(
        "hf",
        "A Hugging Face model folder (config.json, safetensors, tokenizer.json), relative to this file; or a Hub id `owner/name` that is no folder, read from the local Hub cache ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub; never downloaded).",
    )
    .pos("path", Ty::Path(PathKind::HfModelDir), "model folder, or Hub id `owner/name`")
    .opt("revision", text(), "Hub id only: a branch or tag under refs/, or a 40-digit commit hash (default: main)")
    .with(model_common)
}

/// `revision:` selects a Hub snapshot; beside a plain folder it would be silently ignored.
fn revision_needs_hub_id(n: &Node) -> Result<(), Refusal> {
    let folder = match n.arg("path") {
        Some(Value::Path { resolved, .. }) => crate::engine::hub::snapshot_commit(resolved).is_none().then_some(resolved),
        _ => None,
    };
    match (n.arg("revision").and_then(Value::as_str), folder) {
        (Some(r), Some(p)) => Err(Refusal::new("revision", format!("`revision: \"{r}\"` applies to a Hub id (`owner/name`); `{}` is a folder", p.display()))),
        _ => Ok(()),
    }
}
