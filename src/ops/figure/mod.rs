//! Figure constructors: analyses whose result is a figure (`figure.json`).
pub mod ablation_grid;
pub mod cca;
pub mod heatmap;
pub mod progressive;
