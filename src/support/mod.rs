//! Helpers shared by several stages that reproduce Python's behaviour exactly.
pub mod pyrandom;
pub mod pyrepr;
