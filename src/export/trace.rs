//! A trace as Parquet. `long`: one row per (sample, step, layer, head) — the shape pandas and
//! polars group and pivot best; `steps`: one row per (sample, step) with the per-head values as
//! list columns, layer-major (index `layer * heads + head`), ~`layers × heads` times fewer rows.
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float32Builder, Int64Builder, ListBuilder, StringBuilder, UInt16Builder, UInt32Builder};
use arrow_array::ArrayRef;

use super::{ExportError, NamedColumn};
use crate::artifact::trace::TraceLine;

/// The two layouts of a trace export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Long,
    Steps,
}

impl Form {
    pub fn name(self) -> &'static str {
        match self {
            Form::Long => "long",
            Form::Steps => "steps",
        }
    }
}

/// Layers × query heads of a trace: from `trace_info.json` when there is one, else from the
/// Eq. 2 scores (`[layers][heads]`) of its steps, else given (`--heads-per-layer`).
pub fn shape(lines: &[TraceLine], info: Option<(usize, usize)>, heads_per_layer: Option<usize>) -> Result<(usize, usize), ExportError> {
    let n_argmax = lines.iter().flat_map(|l| &l.steps).map(|s| s.argmax.len()).find(|&n| n > 0);
    let (layers, heads) = if let Some(s) = info {
        s
    } else if let Some(r) = lines.iter().flat_map(|l| &l.steps).find_map(|s| s.reasoning.as_ref()) {
        (r.len(), r.first().map_or(0, Vec::len))
    } else if let Some(h) = heads_per_layer.filter(|&h| h > 0) {
        let n = n_argmax.ok_or_else(|| ExportError::Input("the trace has no step with argmax positions; nothing to export per head".into()))?;
        if n % h != 0 {
            return Err(ExportError::Input(format!("--heads-per-layer {h} does not divide the {n} argmax positions of a step")));
        }
        (n / h, h)
    } else {
        return Err(ExportError::Input(
            "this trace file does not record the model's shape (a `rhx trace --out` file without `--capture reasoning`); pass --heads-per-layer N (the model's attention heads per layer)".into(),
        ));
    };
    // Every step's per-head vectors must have layers × heads entries: say which one does not.
    for (i, l) in lines.iter().enumerate() {
        for (t, s) in l.steps.iter().enumerate() {
            let bad = |what: &str, n: usize| ExportError::Input(format!("sample {i} (id {}) step {t}: `{what}` has {n} values, the trace's shape is {layers} layers × {heads} heads", l.id));
            for (what, n) in [("argmax", s.argmax.len()), ("argmax_weight", s.argmax_weight.len())] {
                if n != 0 && n != layers * heads {
                    return Err(bad(what, n));
                }
            }
            if let Some(r) = &s.reasoning {
                if r.len() != layers || r.iter().any(|row| row.len() != heads) {
                    return Err(bad("reasoning", r.iter().map(Vec::len).sum()));
                }
            }
            if let Some(&(l_, h_)) = s.heads.iter().find(|&&(l_, h_)| l_ >= layers || h_ >= heads) {
                return Err(ExportError::Input(format!("sample {i} (id {}) step {t}: retrieval head ({l_}, {h_}) is outside {layers} layers × {heads} heads", l.id)));
            }
        }
    }
    Ok((layers, heads))
}

fn arc<T: arrow_array::Array + 'static>(a: T) -> ArrayRef {
    Arc::new(a)
}

/// One row per (sample, step, layer, head): `sample` (index), `sample_id`, `step`, `token_id`,
/// `token_text`, `layer`, `head`, `argmax_pos` (key position of the head's attention argmax),
/// `argmax_in_needle`, `is_retrieval_head` (in H_t), `retrieval_weight` (its attention weight at
/// the argmax when in H_t), `argmax_weight` (every head, `rhx trace --full`), `reasoning_score`
/// (Eq. 2), the last three null where the trace has no such value.
pub fn long_columns(lines: &[TraceLine], layers: usize, heads: usize) -> Vec<NamedColumn> {
    let (mut sample, mut sample_id, mut step, mut token, mut text) = (UInt32Builder::new(), StringBuilder::new(), UInt32Builder::new(), UInt32Builder::new(), StringBuilder::new());
    let (mut layer, mut head, mut argmax, mut in_needle, mut retrieval) = (UInt16Builder::new(), UInt16Builder::new(), Int64Builder::new(), BooleanBuilder::new(), BooleanBuilder::new());
    let (mut r_weight, mut a_weight, mut score) = (Float32Builder::new(), Float32Builder::new(), Float32Builder::new());
    for (i, l) in lines.iter().enumerate() {
        let needle: std::collections::HashSet<i64> = l.needle_span.iter().map(|&p| p as i64).collect();
        for (t, s) in l.steps.iter().enumerate() {
            let weight_of: std::collections::HashMap<(usize, usize), f64> = s.heads.iter().copied().zip(s.head_weights.iter().copied()).collect();
            for ly in 0..layers {
                for h in 0..heads {
                    let k = ly * heads + h;
                    sample.append_value(i as u32);
                    sample_id.append_value(&l.id);
                    step.append_value(t as u32);
                    token.append_value(s.token);
                    text.append_option(l.pieces.get(t));
                    layer.append_value(ly as u16);
                    head.append_value(h as u16);
                    let pos = s.argmax.get(k).copied();
                    argmax.append_option(pos);
                    in_needle.append_option(pos.map(|p| needle.contains(&p)));
                    let is_ret = s.heads.contains(&(ly, h));
                    retrieval.append_value(is_ret);
                    r_weight.append_option(weight_of.get(&(ly, h)).map(|&w| w as f32));
                    a_weight.append_option(s.argmax_weight.get(k).map(|&w| w as f32));
                    score.append_option(s.reasoning.as_ref().map(|r| r[ly][h] as f32));
                }
            }
        }
    }
    vec![
        ("sample".into(), arc(sample.finish()), false),
        ("sample_id".into(), arc(sample_id.finish()), false),
        ("step".into(), arc(step.finish()), false),
        ("token_id".into(), arc(token.finish()), false),
        ("token_text".into(), arc(text.finish()), true),
        ("layer".into(), arc(layer.finish()), false),
        ("head".into(), arc(head.finish()), false),
        ("argmax_pos".into(), arc(argmax.finish()), true),
        ("argmax_in_needle".into(), arc(in_needle.finish()), true),
        ("is_retrieval_head".into(), arc(retrieval.finish()), false),
        ("retrieval_weight".into(), arc(r_weight.finish()), true),
        ("argmax_weight".into(), arc(a_weight.finish()), true),
        ("reasoning_score".into(), arc(score.finish()), true),
    ]
}

/// One row per (sample, step): `sample`, `sample_id`, `step`, `token_id`, `token_text`,
/// `retrieval_layer` / `retrieval_head` / `retrieval_weight` (H_t as parallel lists),
/// `argmax_pos` (every head, layer-major), `argmax_weight` and `reasoning_score` (layer-major,
/// null when the trace has none).
pub fn steps_columns(lines: &[TraceLine]) -> Vec<NamedColumn> {
    let (mut sample, mut sample_id, mut step, mut token, mut text) = (UInt32Builder::new(), StringBuilder::new(), UInt32Builder::new(), UInt32Builder::new(), StringBuilder::new());
    let mut r_layer = ListBuilder::new(UInt16Builder::new());
    let mut r_head = ListBuilder::new(UInt16Builder::new());
    let mut r_weight = ListBuilder::new(Float32Builder::new());
    let mut argmax = ListBuilder::new(Int64Builder::new());
    let mut a_weight = ListBuilder::new(Float32Builder::new());
    let mut score = ListBuilder::new(Float32Builder::new());
    for (i, l) in lines.iter().enumerate() {
        for (t, s) in l.steps.iter().enumerate() {
            sample.append_value(i as u32);
            sample_id.append_value(&l.id);
            step.append_value(t as u32);
            token.append_value(s.token);
            text.append_option(l.pieces.get(t));
            for &(ly, h) in &s.heads {
                r_layer.values().append_value(ly as u16);
                r_head.values().append_value(h as u16);
            }
            r_layer.append(true);
            r_head.append(true);
            r_weight.values().extend(s.head_weights.iter().map(|&w| Some(w as f32)));
            r_weight.append(true);
            argmax.values().extend(s.argmax.iter().map(|&p| Some(p)));
            argmax.append(true);
            a_weight.values().extend(s.argmax_weight.iter().map(|&w| Some(w as f32)));
            a_weight.append(!s.argmax_weight.is_empty());
            match &s.reasoning {
                Some(r) => {
                    score.values().extend(r.iter().flatten().map(|&x| Some(x as f32)));
                    score.append(true);
                }
                None => score.append(false),
            }
        }
    }
    vec![
        ("sample".into(), arc(sample.finish()), false),
        ("sample_id".into(), arc(sample_id.finish()), false),
        ("step".into(), arc(step.finish()), false),
        ("token_id".into(), arc(token.finish()), false),
        ("token_text".into(), arc(text.finish()), true),
        ("retrieval_layer".into(), arc(r_layer.finish()), false),
        ("retrieval_head".into(), arc(r_head.finish()), false),
        ("retrieval_weight".into(), arc(r_weight.finish()), false),
        ("argmax_pos".into(), arc(argmax.finish()), false),
        ("argmax_weight".into(), arc(a_weight.finish()), true),
        ("reasoning_score".into(), arc(score.finish()), true),
    ]
}
