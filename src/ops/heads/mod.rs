//! Head-set constructors. A head set's artifact is `heads.json`: the selected heads, the ranking
//! they were cut from (with scores) where there is one, and for per-sample or per-step sets how
//! each sample's set is found.
pub mod dynamic;
pub mod explicit;
pub mod from_file;
pub mod random;
pub mod static_heads;
pub mod top;

use serde_json::{json, Value as Json};

use crate::analysis::dynamism::Head;
use crate::ops::Files;

/// `heads.json` of a fixed set: the selected heads and the ranking (head, score) they come from.
pub(crate) fn write_heads(selected: &[Head], ranked: &[(Head, f64)]) -> Files {
    let ranked: Vec<Json> = ranked.iter().map(|((l, h), s)| json!([l, h, s])).collect();
    let bytes = serde_json::to_vec_pretty(&json!({"heads": selected, "ranked": ranked})).expect("JSON of heads and numbers always serialises");
    vec![("heads.json".into(), bytes)]
}

/// The `ranked` list of a `heads.json`: `[layer, head, score]` triples, empty when the set has no
/// ranking. A malformed list is an error, never an empty ranking.
pub(crate) fn ranking(v: &Json) -> Result<Vec<(usize, usize, f64)>, String> {
    match v.get("ranked") {
        None | Some(Json::Null) => Ok(vec![]),
        Some(r) => serde_json::from_value(r.clone()).map_err(|e| format!("heads.json `ranked`: {e}")),
    }
}
