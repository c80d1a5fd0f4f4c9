//! The engine: load a model and its tokenizer, run greedy generation on libtorch, and capture
//! per-step, per-head reductions of the attention of the last query row.
pub mod gguf;
