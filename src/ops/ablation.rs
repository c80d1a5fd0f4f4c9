//! Shared by the Section 3.3 ablation analyses (Fig. 2, Fig. 3, compensated heads): the traces of
//! a node, per-sample compensation m_s, per-trace summaries.
use std::collections::{BTreeMap, BTreeSet};

use crate::analysis::dynamism::{Head, Spread};
use crate::artifact::trace::TraceLine;
use crate::cache::Artifact;
use crate::lang::{Node, Value};
use crate::ops::args::*;
use crate::ops::inputs::*;

pub(crate) fn traces<'a>(n: &'a Node, inputs: &'a BTreeMap<String, &Artifact>) -> Result<Vec<(&'a str, &'a Artifact)>, String> {
    n.arg("traces")
        .and_then(Value::as_list)
        .unwrap_or(&[])
        .iter()
        .filter_map(ref_name)
        .map(|t| inputs.get(t).map(|a| (t, *a)).ok_or_else(|| format!("`{t}` not computed")))
        .collect()
}

/// Compensation in one sample of a dynamic-ablation trace.
pub(crate) struct Compensation {
    /// m_s = max_t |E_t ∩ S| with E_t = H'_t \ H_t.
    pub(crate) m: usize,
    /// mean_t |E_t|: all compensated heads, static or not.
    pub(crate) mean_new: f64,
    /// mean_t |masked_t|.
    pub(crate) mean_masked: f64,
}

/// H_t = `clean_heads` (Eq. 1 on the unmasked pass), H'_t = `post_heads` when the trace scored
/// the masked pass against the clean token (`post_token: clean`), else `heads` (the masked pass
/// with its own token).
pub(crate) fn compensation(line: &TraceLine, stat: &BTreeSet<Head>, trace: &str) -> Result<Compensation, String> {
    let steps = &line.steps;
    let (mut m, mut new, mut masked) = (0usize, 0usize, 0usize);
    for s in steps {
        let Some(clean) = &s.clean_heads else {
            return Err(format!("`{trace}` is not a dynamic-ablation trace: compensated heads need a trace that masks `dynamic(...)` heads"));
        };
        let h: BTreeSet<Head> = clean.iter().copied().collect();
        let hp: BTreeSet<Head> = s.post_heads.as_ref().unwrap_or(&s.heads).iter().copied().collect();
        let e: BTreeSet<Head> = hp.difference(&h).copied().collect();
        m = m.max(e.intersection(stat).count());
        new += e.len();
        masked += s.masked.as_ref().map_or(0, Vec::len);
    }
    let t = steps.len().max(1) as f64;
    Ok(Compensation { m, mean_new: new as f64 / t, mean_masked: masked as f64 / t })
}

/// k of a `dynamic(k: …)` ablation trace, from its `trace_info.json`.
pub(crate) fn k_of(a: &Artifact) -> Option<f64> {
    trace_info(a).ok()?.intervention["k"].as_f64()
}

pub(crate) struct TraceSummary {
    pub(crate) name: String,
    pub(crate) k: Option<f64>,
    pub(crate) m: Spread,
    pub(crate) new: Spread,
    pub(crate) masked: Spread,
    pub(crate) acc: Spread,
    pub(crate) rouge: Spread,
    /// The node's `metric` (whichever it is).
    pub(crate) chosen: Spread,
}

pub(crate) fn summarise(n: &Node, inputs: &BTreeMap<String, &Artifact>) -> Result<(Vec<TraceSummary>, usize), String> {
    let (st, st_name) = input(inputs, n, "static")?;
    let stat: BTreeSet<Head> = fixed_heads(st, &st_name)?.into_iter().collect();
    let mut out = Vec::new();
    for (name, a) in traces(n, inputs)? {
        let (mut m, mut new, mut masked, mut acc, mut rouge, mut chosen) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        let metric = metric_name(n).0;
        for line in trace_lines(a)? {
            let c = compensation(&line, &stat, name)?;
            m.push(c.m as f64);
            new.push(c.mean_new);
            masked.push(c.mean_masked);
            if let Some(s) = task_scores(n, &line)? {
                acc.push(s.uuid_accuracy);
                rouge.push(s.rouge_l);
                chosen.push(s.get(metric));
            }
        }
        out.push(TraceSummary {
            name: name.to_string(),
            k: k_of(a),
            m: Spread::of(&m),
            new: Spread::of(&new),
            masked: Spread::of(&masked),
            acc: Spread::of(&acc),
            rouge: Spread::of(&rouge),
            chosen: Spread::of(&chosen),
        });
    }
    Ok((out, stat.len()))
}

pub(crate) fn metric_name(n: &Node) -> (&'static str, &'static str) {
    match enum_arg(n, "metric") {
        Some("rouge_l") => ("rouge_l", "ROUGE-L"),
        Some("em") => ("em", "EM"),
        Some("f1") => ("f1", "F1"),
        _ => ("uuid_accuracy", "UUID accuracy"),
    }
}
