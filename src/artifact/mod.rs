//! Typed artifacts: what ops write into the cache and read back, as serde types with a format
//! version (part of the file and, through the defining file's hash, of every key that reads it).
//! Traces (`trace.rs`), head sets (`heads.rs`) and the numbers a report compares with the paper
//! (`compare.rs`); tables and figures are `report::Table` and `report::Figure`.
pub mod compare;
pub mod heads;
pub mod trace;
