//! Dataset constructors. Prompts depend on the model's tokenizer (NIAH lengths are counted in
//! tokens), so a dataset op makes them when a trace asks ([`crate::ops::Exec::Dataset`]); the
//! dataset's own artifact records its resolved parameters.
pub mod hotpotqa;
pub mod jsonl;
pub mod niah;

use serde_json::json;

use crate::lang::Node;
use crate::ops::Files;

/// `dataset.json`: the constructor and its resolved parameters.
pub(crate) fn dataset_info(n: &Node) -> Result<Files, String> {
    let mut args = serde_json::Map::new();
    for a in &n.args {
        if let Some(v) = &a.value {
            args.insert(a.name.clone(), json!(v.render()));
        }
    }
    let bytes = serde_json::to_vec_pretty(&json!({"constructor": n.constructor, "args": args})).map_err(|e| e.to_string())?;
    Ok(vec![("dataset.json".into(), bytes)])
}
