//! The engine: load a model and its tokenizer, run greedy generation on libtorch, and capture
//! per-step, per-head reductions of the attention of the last query row.
pub mod config;
pub mod family;
pub mod presets;
pub mod device;
pub mod cuda;
pub mod gguf;
pub mod kernels;
pub mod kv_cache;
pub mod model;
pub mod options;
pub mod rope;
pub mod weights;
pub mod capture;
pub mod generate;
pub mod session;
pub mod session_batch;
pub mod tokenizer;
pub mod chat;
pub mod hub;
pub mod loader;
