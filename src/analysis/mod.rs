//! Analyses of captured traces: the paper's per-step retrieval-head statistics and metrics.
//! Every ambiguity of the paper is an explicit option here, with the default justified in
//! `docs/FIDELITY.md`.
pub mod dynamism;
pub mod metrics;
pub mod qa;
pub mod rag;
pub mod cca;
pub mod probe;
pub mod reasoning;
pub mod regression;
