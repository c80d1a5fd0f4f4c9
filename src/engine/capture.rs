//! Quantities derived from captured reductions. Eq. 1 of the paper (copy-paste retrieval
//! heads): head (l, h) is a retrieval head at step t when the argmax of its attention row lies
//! in the needle span and the prompt token there equals the token generated at step t.
use super::generate::StepRecord;

/// Eq. 1 head set of one step, as `(layer, head)` pairs in layer-major order.
/// `needle` marks prompt positions of the needle span; positions outside the prompt (generated
/// tokens) never count.
pub fn retrieval_heads(step: &StepRecord, n_heads: usize, prompt_ids: &[u32], needle: &[bool]) -> Vec<(usize, usize)> {
    step.argmax
        .iter()
        .enumerate()
        .filter(|&(_, &pos)| {
            pos >= 0 && (pos as usize) < prompt_ids.len() && needle.get(pos as usize).copied().unwrap_or(false) && prompt_ids[pos as usize] == step.token
        })
        .map(|(i, _)| (i / n_heads, i % n_heads))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq1_requires_span_and_token_match() {
        // 2 layers × 2 heads; prompt [5, 7, 9], needle = positions 1..3.
        let prompt = [5, 7, 9];
        let needle = [false, true, true];
        let step = StepRecord { token: 9, argmax: vec![2, 1, 0, 2], ..Default::default() };
        // head (0,0) → pos 2 (token 9, in needle) ✓; (0,1) → pos 1 (token 7 ≠ 9) ✗;
        // (1,0) → pos 0 (outside needle) ✗; (1,1) → pos 2 ✓.
        assert_eq!(retrieval_heads(&step, 2, &prompt, &needle), vec![(0, 0), (1, 1)]);
        // A generated position (≥ prompt length) never counts.
        let step = StepRecord { token: 9, argmax: vec![3, 3, 3, 3], ..Default::default() };
        assert!(retrieval_heads(&step, 2, &prompt, &needle).is_empty());
    }
}
