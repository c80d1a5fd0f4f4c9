//! Inputs of experiments: prompt files (JSONL), later NIAH generation and HotpotQA.
pub mod prompts;
