//! Question-answering scores as HotpotQA's official evaluation script and DRAGIN compute them
//! (reference §3.4): SQuAD answer normalisation, exact match and token F1 with HotpotQA's
//! yes/no/noanswer rule, and DRAGIN's answer extraction from a chain of thought ("… So the
//! answer is X."). Checked against the Python functions' outputs in
//! `tests/fixtures/analysis/qa_reference.json` (`scripts/fixtures/qa_reference.py`).
use std::collections::HashMap;
use std::sync::OnceLock;

use crate::engine::tokenizer::py_isspace;

/// SQuAD's `normalize_answer`: lower case, drop ASCII punctuation (`string.punctuation`),
/// replace the whole words a/an/the by a space, collapse whitespace (Python's `str.split()`).
pub fn normalize_answer(s: &str) -> String {
    static ARTICLES: OnceLock<regex::Regex> = OnceLock::new();
    let lower = s.to_lowercase();
    let no_punc: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    let re = ARTICLES.get_or_init(|| regex::Regex::new(r"\b(a|an|the)\b").expect("valid regex"));
    let no_articles = re.replace_all(&no_punc, " ");
    py_split(&no_articles).join(" ")
}

/// Python's `str.split()` with no argument.
fn py_split(s: &str) -> Vec<&str> {
    s.split(py_isspace).filter(|w| !w.is_empty()).collect()
}

/// Exact match, token F1 and its precision and recall of one prediction.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct QaScore {
    pub em: f64,
    pub f1: f64,
    pub precision: f64,
    pub recall: f64,
}

/// HotpotQA's `exact_match_score` and `f1_score` (`hotpot_evaluate_v1.py`) of `prediction`
/// against one gold answer: when either normalised side is yes, no or noanswer and they
/// differ, F1, precision and recall are 0; otherwise bag-of-tokens overlap.
pub fn qa_score(prediction: &str, gold: &str) -> QaScore {
    let (p, g) = (normalize_answer(prediction), normalize_answer(gold));
    let em = if p == g { 1.0 } else { 0.0 };
    let special = |x: &str| matches!(x, "yes" | "no" | "noanswer");
    if (special(&p) || special(&g)) && p != g {
        return QaScore { em, ..QaScore::default() };
    }
    let (pt, gt) = (py_split(&p), py_split(&g));
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &gt {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &pt {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return QaScore { em, ..QaScore::default() };
    }
    let precision = same as f64 / pt.len() as f64;
    let recall = same as f64 / gt.len() as f64;
    QaScore { em, f1: 2.0 * precision * recall / (precision + recall), precision, recall }
}

/// The best score over several gold answers, each field maximised on its own (DRAGIN's
/// `exact_match_score` / `f1_score` over a set of ground truths).
pub fn qa_score_max(prediction: &str, golds: &[&str]) -> QaScore {
    golds.iter().map(|g| qa_score(prediction, g)).fold(QaScore::default(), |a, b| QaScore {
        em: a.em.max(b.em),
        f1: a.f1.max(b.f1),
        precision: a.precision.max(b.precision),
        recall: a.recall.max(b.recall),
    })
}

/// The phrase that introduces the answer in DRAGIN's exemplars and prompts.
pub const ANSWER_PHRASE: &str = "the answer is";

/// Markers after which DRAGIN's `regenerate_answer` drops the rest of a prediction (the model
/// went on with another exemplar).
pub const CUT_MARKERS: [&str; 3] = ["Question:", "#10000000", "Note:"];

/// DRAGIN's first cut in `regenerate_answer`: each marker in turn, where it occurs after the
/// first character, ends the text.
pub fn cut_at_markers(text: &str) -> &str {
    let mut t = text;
    for m in CUT_MARKERS {
        if let Some(pos) = t.find(m) {
            if pos > 0 {
                t = &t[..pos];
            }
        }
    }
    t
}

/// DRAGIN's `HotpotQA.get_real_prediction`: the text from one character after the first
/// "the answer is" to the end, without a trailing `</s>` or `<|endoftext|>` and then one
/// trailing "."; `None` when the phrase does not occur (DRAGIN scores that as "").
pub fn extract_answer(prediction: &str) -> Option<String> {
    let at = prediction.find(ANSWER_PHRASE)? + ANSWER_PHRASE.len();
    // Python slices by characters: skip one character (normally the space), whatever it is.
    let rest = &prediction[at..];
    let mut pred = match rest.chars().next() {
        Some(c) => &rest[c.len_utf8()..],
        None => "",
    };
    for end in ["</s>", "<|endoftext|>"] {
        pred = pred.strip_suffix(end).unwrap_or(pred);
    }
    Some(pred.strip_suffix('.').unwrap_or(pred).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_and_scores() {
        assert_eq!(normalize_answer("The  Phantom Hour."), "phantom hour");
        assert_eq!(qa_score("the Phantom Hour", "The Phantom Hour.").em, 1.0);
        let s = qa_score("yes", "no");
        assert_eq!((s.em, s.f1), (0.0, 0.0));
        let s = qa_score("Scott Glenn was there", "Scott Glenn");
        assert_eq!((s.precision, s.recall), (0.5, 1.0));
        assert!((s.f1 - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn extraction() {
        assert_eq!(extract_answer("He is a producer. So the answer is producer.").as_deref(), Some("producer"));
        assert_eq!(extract_answer("So the answer is"), Some(String::new()));
        assert_eq!(extract_answer("no phrase"), None);
        assert_eq!(cut_at_markers("A. So the answer is B.\n\nQuestion: next"), "A. So the answer is B.\n\n");
        assert_eq!(cut_at_markers("Question: at the start"), "Question: at the start");
    }
}
