//! `model … = random(…)`: a randomly initialised model (declared; the executor does not run it yet).
use crate::lang::schema::{FuncSpec, int_range, enm, model_common, ARCHS};

use crate::lang::Kind;
use crate::ops::{Exec, OpDef};

pub const OP: OpDef = OpDef { kind: Kind::Model, name: "random", spec, source: file!(), check: None, exec: Exec::NotImplemented("random-weight models in experiments (`rhx bench` builds them)") };

fn spec() -> FuncSpec {
    FuncSpec::new(
        "random",
        "A randomly initialised model of the given shape (benchmarks, tests); no files needed.",
    )
    .req("layers", int_range(1, 1024), "number of layers")
    .req("heads", int_range(1, 1024), "query heads per layer")
    .opt(
        "kv_heads",
        int_range(1, 1024),
        "key/value heads per layer (default: heads)",
    )
    .req("hidden", int_range(1, 65536), "hidden size")
    .def("intermediate", int_range(1, 262144), "1024", "MLP size")
    .def("vocab", int_range(2, 1_048_576), "256", "vocabulary size")
    .def("arch", enm(ARCHS), "llama", "architecture family")
    .seed("initialisation seed")
    .with(model_common)
}

