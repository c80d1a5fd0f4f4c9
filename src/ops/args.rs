//! Reading a node's checked arguments. The checker has filled every default and validated
//! every value, so a parameter with a default is always present: the accessors that return a
//! `Result` say so when it is not (a checker bug), and never substitute a default of their own.
use std::collections::BTreeMap;

use crate::cache::Artifact;
use crate::lang::{Node, Value};
use crate::run::Ctx;

pub(crate) fn enum_arg<'a>(n: &'a Node, name: &str) -> Option<&'a str> {
    n.arg(name).and_then(Value::as_str)
}

pub(crate) fn int_arg(n: &Node, name: &str) -> Option<i64> {
    n.arg(name).and_then(Value::as_int)
}

pub(crate) fn calls<'a>(n: &'a Node, name: &str) -> Vec<(&'a str, &'a [crate::lang::Arg])> {
    n.arg(name)
        .and_then(Value::as_list)
        .unwrap_or(&[])
        .iter()
        .filter_map(|v| match v {
            Value::Call { func, args, .. } => Some((func.as_str(), args.as_slice())),
            _ => None,
        })
        .collect()
}

pub(crate) fn call_arg<'a>(args: &'a [crate::lang::Arg], name: &str) -> Option<&'a Value> {
    args.iter().find(|a| a.name == name).and_then(|a| a.value.as_ref())
}

pub(crate) fn ref_name(v: &Value) -> Option<&str> {
    match v {
        Value::Ref { name, .. } => Some(name),
        Value::Inline(n) => Some(&n.name),
        _ => None,
    }
}

pub(crate) fn node<'a>(ctx: &'a Ctx, name: &str) -> Result<&'a Node, String> {
    ctx.plan.step(name).map(|s| &s.node).ok_or_else(|| format!("no node `{name}`"))
}

pub(crate) fn input<'a>(inputs: &'a BTreeMap<String, &Artifact>, n: &Node, param: &str) -> Result<(&'a Artifact, String), String> {
    let name = n.arg(param).and_then(ref_name).ok_or_else(|| format!("`{param}` is not a reference"))?;
    Ok((inputs.get(name).ok_or_else(|| format!("`{name}` not computed"))?, name.to_string()))
}

/// The message when a parameter that has a default in the schema reached the executor without a
/// value: the checker fills every default, so this is a bug in rhx, not in the experiment.
fn unfilled(n: &Node, name: &str) -> String {
    format!("`{}.{name}` has no value although the schema gives it a default (a bug in rhx's checker: please report it)", n.name)
}

/// An integer parameter that has a default (or is required).
pub fn req_int(n: &Node, name: &str) -> Result<i64, String> {
    int_arg(n, name).ok_or_else(|| unfilled(n, name))
}

/// An enum (or string) parameter that has a default (or is required).
pub fn req_enum<'a>(n: &'a Node, name: &str) -> Result<&'a str, String> {
    enum_arg(n, name).ok_or_else(|| unfilled(n, name))
}

/// A number parameter that has a default (or is required).
pub fn req_f64(n: &Node, name: &str) -> Result<f64, String> {
    n.arg(name).and_then(Value::as_f64).ok_or_else(|| unfilled(n, name))
}

/// A boolean parameter that has a default (or is required).
pub fn req_bool(n: &Node, name: &str) -> Result<bool, String> {
    match n.arg(name) {
        Some(Value::Bool(b)) => Ok(*b),
        _ => Err(unfilled(n, name)),
    }
}

/// A node's `seed` (its default is the experiment's seed, filled in by the checker).
pub fn seed(n: &Node) -> Result<u64, String> {
    req_int(n, "seed").map(|s| s as u64)
}

/// A list parameter that has a default (or is required).
pub fn req_list<'a>(n: &'a Node, name: &str) -> Result<&'a [Value], String> {
    n.arg(name).and_then(Value::as_list).ok_or_else(|| unfilled(n, name))
}
