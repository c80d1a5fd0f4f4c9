//! rhx: declarative, reproducible interpretability experiments on LLMs.
//!
//! Data flow, one folder per stage (see `docs/ARCHITECTURE.md`): `lang` (parse, check) → `plan`
//! (content keys) → `run` (executor) → `ops` (one file per constructor) over `engine` (models,
//! generation with per-step capture), `data` and `analysis` → `cache` → `report`; `cli` on top;
//! `lsp` serves the language to editors.
pub mod analysis;
pub mod artifact;
pub mod cache;
pub mod cli;
pub mod data;
pub mod engine;
pub mod export;
pub mod lang;
pub mod lsp;
pub mod ops;
pub mod plan;
pub mod report;
pub mod run;
pub mod support;
