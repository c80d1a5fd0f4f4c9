//! rhx: declarative, reproducible interpretability experiments on LLMs.
//!
//! Data flow, one folder per stage (see `docs/ARCHITECTURE.md`):
//! `data` (prompt files) → `engine` (models, tokenizers, generation with per-step capture) → `cli`.
pub mod analysis;
pub mod cache;
pub mod cli;
pub mod data;
pub mod engine;
pub mod lang;
pub mod plan;
pub mod report;
pub mod run;
