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

/// rouge-score's default tokeniser (no stemming): lowercase, replace every run of characters
/// outside `[a-z0-9]` by a space, split on whitespace.
pub fn rouge_tokens(text: &str) -> Vec<String> {
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

/// ROUGE-1 (clipped unigram overlap) of `prediction` against `target`.
pub fn rouge1(target: &str, prediction: &str) -> Prf {
    let t = rouge_tokens(target);
    let p = rouge_tokens(prediction);
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

/// ROUGE-L (longest common subsequence of tokens) of `prediction` against `target`.
pub fn rouge_l(target: &str, prediction: &str) -> Prf {
    let t = rouge_tokens(target);
    let p = rouge_tokens(prediction);
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
}
