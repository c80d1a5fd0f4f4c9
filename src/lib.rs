//! rhx: declarative, reproducible interpretability experiments on LLMs.
//!
//! Data flow, one folder per stage (see `docs/ARCHITECTURE.md`):
//! `engine` (models, tokenizers, generation with per-step capture) → `cli`.
pub mod engine;
