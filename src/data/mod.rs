//! Inputs of experiments: prompt files (JSONL), later NIAH generation and HotpotQA.
pub mod hotpotqa;
pub mod niah;
pub mod prompts;
