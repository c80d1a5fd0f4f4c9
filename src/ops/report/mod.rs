//! Report constructors, and the paper's transcribed values a report puts beside ours.
pub mod paper;
pub mod template;
