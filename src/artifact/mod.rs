//! Typed artifacts: what ops write into the cache and read back, as serde types with a format
//! version. Traces today (`trace.rs`); head sets, tables and figure data keep their JSON forms
//! (`report::Table`, `report::Figure` are typed already).
pub mod trace;
