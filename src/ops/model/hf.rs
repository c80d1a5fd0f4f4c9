//! `model … = hf(…)`: a Hugging Face model folder.
use crate::lang::schema::{FuncSpec, model_common, Ty, PathKind};

use crate::lang::Kind;
use crate::ops::{Exec, OpDef};

pub const OP: OpDef = OpDef { kind: Kind::Model, name: "hf", spec, source: file!(), check: None, exec: Exec::Artifact(super::model_info) };

fn spec() -> FuncSpec {
    FuncSpec::new("hf", "A Hugging Face model folder (config.json, safetensors, tokenizer.json), relative to this file.")
        .pos("path", Ty::Path(PathKind::HfModelDir), "model folder")
        .with(model_common)
}

