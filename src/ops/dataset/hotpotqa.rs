//! `dataset … = hotpotqa(…)`: HotpotQA questions (Section 4; declared, not implemented yet).
use crate::lang::schema::{FuncSpec, int_min, enm, Ty, PathKind};

use crate::lang::Kind;
use crate::ops::{Exec, OpDef};

pub const OP: OpDef = OpDef { kind: Kind::Dataset, name: "hotpotqa", spec, source: file!(), check: None, exec: Exec::NotImplemented("HotpotQA prompts (Section 4)") };

fn spec() -> FuncSpec {
    FuncSpec::new(
        "hotpotqa",
        "HotpotQA distractor questions (Section 4) from a local JSON file.",
    )
    .pos("path", Ty::Path(PathKind::File), "the HotpotQA json file")
    .def(
        "n",
        int_min(1),
        "500",
        "hotpot.n: number of questions (first N)",
    )
    .def(
        "split",
        enm(&["dev_distractor"]),
        "dev_distractor",
        "hotpot.split",
    )
    .def(
        "context_format",
        enm(&["title_paragraph", "dragin_numbered"]),
        "title_paragraph",
        "hotpot.context_format",
    )
}

