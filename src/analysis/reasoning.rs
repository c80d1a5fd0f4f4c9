//! Reasoning retrieval heads (Section 4.1): a step's heads by their Eq. 2 score S.
use super::dynamism::Head;

/// The reasoning heads of one step from its Eq. 2 scores (layer-major, `n_heads` per layer),
/// with their scores, in (layer, head) order: the heads with S > `threshold`, or with `top` set,
/// the `top` heads of largest S (ties to the lower (layer, head)) among those with S > 0 — a
/// head that puts no attention on the needles is no reasoning head, whatever the ranking.
pub fn reasoning_heads(scores: &[f32], n_heads: usize, threshold: f64, top: Option<usize>) -> Vec<(Head, f32)> {
    let head = |i: usize| (i / n_heads, i % n_heads);
    let mut picked: Vec<(Head, f32)> = match top {
        Some(k) => {
            let mut by_score: Vec<(usize, f32)> = scores.iter().copied().enumerate().filter(|(_, s)| *s > 0.0).collect();
            by_score.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            by_score.into_iter().take(k).map(|(i, s)| (head(i), s)).collect()
        }
        None => scores.iter().enumerate().filter(|(_, &s)| f64::from(s) > threshold).map(|(i, &s)| (head(i), s)).collect(),
    };
    picked.sort_by_key(|a| a.0);
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_keeps_heads_strictly_above_it_in_layer_order() {
        // 2 layers × 3 heads.
        let s = [0.9, 0.5, 0.1, 0.0, 0.51, 0.7];
        assert_eq!(reasoning_heads(&s, 3, 0.5, None), vec![((0, 0), 0.9), ((1, 1), 0.51), ((1, 2), 0.7)]);
        assert!(reasoning_heads(&s, 3, 0.95, None).is_empty());
    }

    #[test]
    fn top_k_takes_the_largest_positive_scores_ties_to_the_lower_head() {
        let s = [0.2, 0.4, 0.4, 0.0, 0.1, 0.0];
        assert_eq!(reasoning_heads(&s, 3, 0.5, Some(2)), vec![((0, 1), 0.4), ((0, 2), 0.4)]);
        assert_eq!(reasoning_heads(&s, 3, 0.5, Some(3)), vec![((0, 0), 0.2), ((0, 1), 0.4), ((0, 2), 0.4)]);
        // Zero scores never count, so fewer than k may come back.
        assert_eq!(reasoning_heads(&s, 3, 0.5, Some(6)).len(), 4);
    }
}
