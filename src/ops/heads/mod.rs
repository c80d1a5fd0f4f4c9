//! Head-set constructors. A head set's artifact is `heads.json`: the selected heads, the ranking
//! they were cut from (with scores) where there is one, and for per-sample or per-step sets how
//! each sample's set is found.
pub mod dynamic;
pub mod explicit;
pub mod from_file;
pub mod predicted;
pub mod random;
pub mod static_heads;
pub mod top;

use crate::analysis::dynamism::Head;
use crate::artifact::heads::{HeadSet, Ranked, FILE};
use crate::ops::Files;

/// The artifact of a fixed set: the selected heads and the ranking they come from.
pub(crate) fn write_fixed(selected: Vec<Head>, ranked: Vec<Ranked>) -> Files {
    write(&HeadSet::fixed(selected, ranked))
}

pub(crate) fn write(set: &HeadSet) -> Files {
    vec![(FILE.into(), set.to_bytes())]
}
