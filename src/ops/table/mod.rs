//! Table constructors: analyses whose result is a table (`table.json`).
pub mod compensated;
pub mod dynamism;
pub mod head_table;
pub mod probe;
pub mod rag_table;
pub mod regressor;
pub mod scores;
