//! `model … = gguf(…)`: a GGUF file or a known model name.
use crate::lang::schema::{FuncSpec, model_common, Ty};

use crate::lang::Kind;
use crate::ops::{Exec, OpDef};

pub const OP: OpDef = OpDef { kind: Kind::Model, name: "gguf", spec, source: file!(), check: None, exec: Exec::Artifact(super::model_info) };

fn spec() -> FuncSpec {
    FuncSpec::new("gguf", "A GGUF file (path relative to this file) or a known model name such as `smollm2-135m-instruct`; dequantised on load.")
        .pos("source", Ty::ModelSource, "model name or .gguf path")
        .with(model_common)
}

