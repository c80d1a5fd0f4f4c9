//! Set and text metrics: Jaccard, entropy, UUID accuracy, ROUGE-1/ROUGE-L as the `rouge-score`
//! package computes them (tokenise: lowercase, every run of characters outside `[a-z0-9]` is a
//! separator; F = 2PR/(P+R); an empty side scores 0).
use std::collections::{BTreeSet, HashMap};

/// `|a ∩ b| / |a ∪ b|`; `None` when both are empty (the caller's option decides).
pub fn jaccard<T: Ord>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> Option<f64> {
    let union = a.union(b).count();
    if union == 0 {
        return None;
    }
    Some(a.intersection(b).count() as f64 / union as f64)
}

/// Shannon entropy (nats) of the distribution proportional to `counts`; 0 for no mass.
pub fn entropy(counts: &[f64]) -> f64 {
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    counts.iter().filter(|&&c| c > 0.0).map(|&c| c / total).map(|p| -p * p.ln()).sum()
}

/// Paper A.1: 1 if the response contains the exact UUID string, else 0.
pub fn uuid_accuracy(response: &str, uuid: &str) -> f64 {
    if response.contains(uuid) {
        1.0
    } else {
        0.0
    }
}

/// rouge-score's tokeniser without stemming (its default, `use_stemmer=False`).
pub fn rouge_tokens(text: &str) -> Vec<String> {
    rouge_tokens_with(text, false)
}

/// rouge-score's tokeniser: lowercase, replace every run of characters outside `[a-z0-9]` by a
/// space, split on whitespace; with `stem` (`use_stemmer=True`), tokens longer than 3 characters
/// go through NLTK's Porter stemmer (its NLTK-extensions mode, what `PorterStemmer()` is; not
/// Snowball English, which differs).
pub fn rouge_tokens_with(text: &str, stem: bool) -> Vec<String> {
    static PORTER: std::sync::LazyLock<nltk_porter::PorterStemmer> = std::sync::LazyLock::new(|| nltk_porter::PorterStemmer::new(nltk_porter::Mode::Nltk));
    let tokens = split_rouge(text);
    if !stem {
        return tokens;
    }
    tokens.into_iter().map(|t| if t.chars().count() > 3 { PORTER.stem(&t) } else { t }).filter(|t| !t.is_empty()).collect()
}

fn split_rouge(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in lower.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f: f64,
}

fn prf(hits: usize, n_pred: usize, n_target: usize) -> Prf {
    if n_pred == 0 || n_target == 0 {
        return Prf::default();
    }
    let p = hits as f64 / n_pred as f64;
    let r = hits as f64 / n_target as f64;
    let f = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
    Prf { precision: p, recall: r, f }
}

/// ROUGE-1 (clipped unigram overlap) of `prediction` against `target`, without stemming.
pub fn rouge1(target: &str, prediction: &str) -> Prf {
    rouge1_with(target, prediction, false)
}

/// ROUGE-L of `prediction` against `target`, without stemming.
pub fn rouge_l(target: &str, prediction: &str) -> Prf {
    rouge_l_with(target, prediction, false)
}

/// ROUGE-1, optionally with rouge-score's Porter stemming (`use_stemmer`).
pub fn rouge1_with(target: &str, prediction: &str, stem: bool) -> Prf {
    let t = rouge_tokens_with(target, stem);
    let p = rouge_tokens_with(prediction, stem);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in &t {
        *counts.entry(w).or_default() += 1;
    }
    let mut hits = 0;
    for w in &p {
        if let Some(c) = counts.get_mut(w.as_str()) {
            if *c > 0 {
                *c -= 1;
                hits += 1;
            }
        }
    }
    prf(hits, p.len(), t.len())
}

/// ROUGE-L (longest common subsequence of tokens), optionally with Porter stemming.
pub fn rouge_l_with(target: &str, prediction: &str, stem: bool) -> Prf {
    let t = rouge_tokens_with(target, stem);
    let p = rouge_tokens_with(prediction, stem);
    let mut prev = vec![0usize; p.len() + 1];
    for tw in &t {
        let mut cur = vec![0usize; p.len() + 1];
        for (j, pw) in p.iter().enumerate() {
            cur[j + 1] = if tw == pw { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        prev = cur;
    }
    prf(prev[p.len()], p.len(), t.len())
}

/// Points of the precision–recall curve as sklearn's `precision_recall_curve` makes them: one
/// per distinct score, in decreasing score order, as `(threshold, precision, recall)`, where a
/// pair is predicted positive when its score is ≥ the threshold. Empty when there is no positive.
pub fn pr_curve(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64, f64)> {
    let positives = labels.iter().filter(|l| **l).count();
    if positives == 0 {
        return vec![];
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut out = Vec::new();
    for (i, &j) in order.iter().enumerate() {
        if labels[j] {
            tp += 1;
        } else {
            fp += 1;
        }
        let last_of_tie = i + 1 == order.len() || scores[order[i + 1]] != scores[j];
        if last_of_tie {
            out.push((scores[j], tp as f64 / (tp + fp) as f64, tp as f64 / positives as f64));
            if tp == positives {
                break; // sklearn stops once full recall is reached
            }
        }
    }
    out
}

/// sklearn's `average_precision_score`: Σ (R_n − R_{n−1}) P_n over the curve's thresholds;
/// `None` without positives.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let curve = pr_curve(scores, labels);
    if curve.is_empty() {
        return None;
    }
    let mut prev = 0.0;
    Some(curve.iter().map(|&(_, p, r)| {
        let a = (r - prev) * p;
        prev = r;
        a
    }).sum())
}

/// The area under the precision–recall curve by the trapezoid rule, as sklearn's
/// `auc(recall, precision)` over `precision_recall_curve` computes it: the curve's points from
/// (recall 0, precision 1) on, joined by straight lines. It linearly interpolates precision, which
/// [`average_precision`] (the step-wise sum) does not; `None` without positives.
pub fn trapezoid_auprc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let curve = pr_curve(scores, labels);
    if curve.is_empty() {
        return None;
    }
    let (mut r0, mut p0) = (0.0, 1.0);
    Some(curve.iter().map(|&(_, p, r)| {
        let a = (r - r0) * (p + p0) / 2.0;
        (r0, p0) = (r, p);
        a
    }).sum())
}

/// The threshold whose F1 is largest on the curve (ties: the lowest threshold, as `np.argmax`
/// over sklearn's increasing thresholds picks) and that F1.
pub fn best_f1_threshold(scores: &[f64], labels: &[bool]) -> Option<(f64, f64)> {
    let mut best: Option<(f64, f64)> = None;
    for (t, p, r) in pr_curve(scores, labels) {
        let f1 = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
        if best.is_none_or(|(_, b)| f1 >= b) {
            best = Some((t, f1));
        }
    }
    best
}

/// Precision, recall and F1 when pairs with score ≥ `threshold` are predicted positive
/// (0 where undefined, sklearn's `zero_division=0`).
pub fn prf_at(scores: &[f64], labels: &[bool], threshold: f64) -> Prf {
    let (mut tp, mut fp, mut fneg) = (0usize, 0usize, 0usize);
    for (s, l) in scores.iter().zip(labels) {
        match (*s >= threshold, *l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fneg += 1,
            _ => {}
        }
    }
    let precision = if tp + fp > 0 { tp as f64 / (tp + fp) as f64 } else { 0.0 };
    let recall = if tp + fneg > 0 { tp as f64 / (tp + fneg) as f64 } else { 0.0 };
    let f = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    Prf { precision, recall, f }
}

/// Mean and sample standard deviation (n − 1); `(NaN, NaN)` for no values.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 { xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u32]) -> BTreeSet<u32> {
        v.iter().copied().collect()
    }

    #[test]
    fn jaccard_cases() {
        assert_eq!(jaccard(&set(&[1, 2, 3]), &set(&[2, 3, 4])), Some(0.5));
        assert_eq!(jaccard(&set(&[]), &set(&[1])), Some(0.0));
        assert_eq!(jaccard(&set(&[]), &set(&[])), None);
        assert_eq!(jaccard(&set(&[7]), &set(&[7])), Some(1.0));
    }

    #[test]
    fn entropy_cases() {
        assert_eq!(entropy(&[0.0, 0.0]), 0.0);
        assert_eq!(entropy(&[5.0]), 0.0);
        assert!((entropy(&[1.0, 1.0]) - 2f64.ln()).abs() < 1e-12);
        // 20 equally used heads: ln 20 (the paper's baseline for a static top-20 set).
        assert!((entropy(&[3.0; 20]) - 20f64.ln()).abs() < 1e-12);
        // Zero counts do not contribute.
        assert!((entropy(&[2.0, 0.0, 2.0]) - 2f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn rouge_by_hand() {
        // A UUID is 5 tokens (hyphens split).
        assert_eq!(rouge_tokens("The magic word is E3E70682-c209-4cac."), ["the", "magic", "word", "is", "e3e70682", "c209", "4cac"]);
        let r = rouge_l("a b c d", "a x c d e");
        // LCS = a c d (3); P = 3/5, R = 3/4.
        assert!((r.precision - 0.6).abs() < 1e-12 && (r.recall - 0.75).abs() < 1e-12);
        assert!((r.f - 2.0 * 0.6 * 0.75 / 1.35).abs() < 1e-12);
        let r1 = rouge1("a a b", "a b b");
        // clipped: a×1, b×1 → 2 hits of 3.
        assert!((r1.recall - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(rouge_l("", "a"), Prf::default());
        assert_eq!(uuid_accuracy("is e3e70682-c209.", "e3e70682-c209"), 1.0);
        assert_eq!(uuid_accuracy("is e3e70682-c208.", "e3e70682-c209"), 0.0);
    }

    #[test]
    fn mean_std_cases() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert_eq!((m, s), (2.0, 1.0));
        assert!(mean_std(&[]).0.is_nan());
        assert_eq!(mean_std(&[4.0]), (4.0, 0.0));
    }
    #[test]
    fn trapezoid_auprc_by_hand() {
        // sklearn: auc(recall, precision) of precision_recall_curve([0,0,1,1], [0.1,0.4,0.35,0.8])
        // = 0.5 · (1 + 1) / 2 + 0.5 · (0.5 + 2/3) / 2 = 0.791666…
        let (s, l) = ([0.1, 0.4, 0.35, 0.8], [false, false, true, true]);
        assert!((trapezoid_auprc(&s, &l).unwrap() - (0.5 + 0.5 * (0.5 + 2.0 / 3.0) / 2.0)).abs() < 1e-12);
        assert_eq!(trapezoid_auprc(&s, &[false; 4]), None);
    }

    #[test]
    fn average_precision_by_hand() {
        // sklearn: average_precision_score([0,0,1,1], [0.1,0.4,0.35,0.8]) = 0.8333…
        let s = [0.1, 0.4, 0.35, 0.8];
        let l = [false, false, true, true];
        assert!((average_precision(&s, &l).unwrap() - 5.0 / 6.0).abs() < 1e-12);
        // Thresholds 0.8 (P 1, R .5), 0.4 (P .5, R .5), 0.35 (P 2/3, R 1): best F1 = 0.8 at 0.35.
        let (t, f1) = best_f1_threshold(&s, &l).unwrap();
        assert_eq!(t, 0.35);
        assert!((f1 - 0.8).abs() < 1e-12);
        let prf = prf_at(&s, &l, 0.35);
        assert!((prf.precision - 2.0 / 3.0).abs() < 1e-12 && prf.recall == 1.0);
        // Ties share one threshold: all scores equal → P = positive rate, R = 1.
        assert_eq!(average_precision(&[0.5; 4], &l), Some(0.5));
        assert_eq!(average_precision(&s, &[false; 4]), None);
        assert_eq!(prf_at(&s, &[false; 4], 2.0), Prf::default());
    }
}
