//! Trace constructors: generations of a model on a dataset, with captures and interventions.
pub mod generate;
pub mod policy;
pub mod rag;
pub mod rag_loop;
