//! What a step's records become: the policy's head sets (checked against the model), two
//! passes merged into one record, and the commit of a step to its generation (EOS ends it).
use super::{GenerateError, Generation, Prompt, StepPolicy, StepRecord};

/// The policy's head set for every batch row at `step` (`rows[r]` = the row's prompt index;
/// `recs[r]` its unmasked record, or none for a planned policy), empty for finished rows, each
/// checked against the model's shape.
#[allow(clippy::too_many_arguments)]
pub(super) fn policy_sets(
    pol: &mut dyn StepPolicy,
    rows: &[usize],
    done: &[bool],
    step: usize,
    recs: &[StepRecord],
    prompts: &[Prompt],
    layers: usize,
    heads: usize,
) -> Result<Vec<Vec<(usize, usize)>>, GenerateError> {
    let empty = StepRecord::default();
    let sets: Vec<Vec<(usize, usize)>> =
        rows.iter().enumerate().map(|(r, &i)| if done[i] { vec![] } else { pol.heads_to_mask(i, step, recs.get(r).unwrap_or(&empty), &prompts[i]) }).collect();
    for s in &sets {
        check_heads(s, layers, heads)?;
    }
    Ok(sets)
}

/// A two-pass step's records: the masked pass where a row had heads masked (with its unmasked
/// record kept inside), the unmasked pass where its set was empty.
pub(super) fn merge_passes(first: Vec<StepRecord>, second: Vec<StepRecord>, sets: Vec<Vec<(usize, usize)>>) -> Vec<StepRecord> {
    second
        .into_iter()
        .zip(first)
        .zip(sets)
        .map(|((mut r2, r1), set)| {
            if set.is_empty() {
                r1
            } else {
                r2.masked = set;
                r2.unmasked = Some(Box::new(r1));
                r2
            }
        })
        .collect()
}

/// Appends a step to a still-running generation; an EOS token (kept) finishes it.
pub(super) fn commit_step(gen: &mut Generation, done: &mut bool, rec: StepRecord, eos_ids: &[u32]) {
    if *done {
        return;
    }
    let tok = rec.token;
    gen.tokens.push(tok);
    gen.steps.push(rec);
    if eos_ids.contains(&tok) {
        *done = true;
        gen.stopped_by_eos = true;
    }
}

pub(super) fn check_heads(heads: &[(usize, usize)], layers: usize, n_heads: usize) -> Result<(), GenerateError> {
    match heads.iter().find(|&&(l, h)| l >= layers || h >= n_heads) {
        Some(&(layer, head)) => Err(GenerateError::NoSuchHead { layer, head, layers, heads: n_heads }),
        None => Ok(()),
    }
}
