//! Section 5 (Algorithms 1–2): DRAGIN's RIND trigger on a draft, and the in-context "retrieval"
//! windows picked from head attention over the context. Pure functions over numbers the engine
//! captures (per-token entropies, attention rows); reference-algorithms.md §3.2 and §3.5 give
//! the formulas, §9 rows 45–53 the options.
use std::ops::Range;

/// The entropy of the next-token distribution, in nats, as DRAGIN computes it:
/// `−Σ p log(p + 1e-10)` over the softmax of the logits.
pub fn entropy(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let z: f64 = exp.iter().sum();
    exp.iter().map(|e| e / z).map(|p| -p * (p + 1e-10).ln()).sum()
}

/// RIND's attention a_max per draft token (DRAGIN's code, solver "max"): `attn[h][q][k]` is the
/// last layer's attention of a forward pass over the draft alone; per head the largest weight
/// token k receives from any query row q ≥ k (itself included), then the mean over heads. When
/// the draft's first token is an end-of-sequence token (`first_is_eos`) the values are divided by
/// their sum without it, as DRAGIN does.
pub fn rind_attention(attn: &[Vec<Vec<f32>>], first_is_eos: bool) -> Vec<f64> {
    let n = attn.first().map_or(0, Vec::len);
    let mut a = vec![0.0; n];
    for head in attn {
        for (k, slot) in a.iter_mut().enumerate() {
            let max = (k..n).map(|q| head[q].get(k).copied().unwrap_or(0.0)).fold(0.0f32, f32::max);
            *slot += f64::from(max) / attn.len() as f64;
        }
    }
    if first_is_eos && n > 1 {
        let rest: f64 = a[1..].iter().sum();
        if rest > 0.0 {
            a.iter_mut().for_each(|v| *v /= rest);
        }
    }
    a
}

/// Sub-tokens merged into words as DRAGIN's code merges them: a word starts at the first token,
/// at a token whose text begins with a space (the tokenizer's space marker, decoded), at a
/// line-break token, and after an end-of-sequence token (`is_eos`). Returns each word's token
/// range. DRAGIN's line-break token is llama-2's `<0x0A>` (id 13, its only one); here it is any
/// token whose text is whitespace holding a line break (`"\n"`, `"\n\n"`, `" \n"`), and a
/// token after one with text that ends a line (llama-3's `".\n\n"`) starts a word too, so that
/// other vocabularies split where llama-2's does (same words on llama-2 tokens).
pub fn merge_words(pieces: &[String], is_eos: &[bool]) -> Vec<Range<usize>> {
    // The space marker counts as a space (raw SentencePiece pieces: `"▁\n\n"` is blank).
    let blank = |c: char| c.is_whitespace() || c == '▁';
    let line_break = |s: &str| s.trim_matches(blank).is_empty() && s.contains('\n');
    let ends_line = |s: &str| !s.trim_matches(blank).is_empty() && s.trim_end_matches([' ', '\t', '▁']).ends_with('\n');
    let mut words: Vec<Range<usize>> = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let after = |f: &dyn Fn(usize) -> bool| i > 0 && f(i - 1);
        let starts = i == 0
            || p.starts_with(' ')
            || p.starts_with('▁')
            || line_break(p)
            || after(&|j| is_eos.get(j).copied().unwrap_or(false))
            || after(&|j| ends_line(&pieces[j]));
        match words.last_mut() {
            Some(w) if !starts => w.end = i + 1,
            _ => words.push(i..i + 1),
        }
    }
    words
}

/// Sentences of a draft as ranges of words (`rag.sentences: punctuation`; DRAGIN splits with
/// spaCy `en_core_web_sm`, which has no Rust equivalent). A word is *blank* when its text,
/// trimmed, is empty (whitespace only: `"\n"`, `"\n\n"`, `" "`). The rule:
/// * a word ends its sentence when its text, trimmed, ends with `.`, `!` or `?`, or when it
///   holds a newline with only whitespace after its last newline (`"B.\n"`, `"B\n"`, `"\n"`);
/// * a word that is not blank and whose leading whitespace holds a newline (`"\nSo"`: llama-2's
///   `<0x0A>` and the `So` after it merge into one word; `" \n\nSo"`) starts a sentence: the
///   open sentence before it ends before it (spaCy starts a sentence at the capitalised word
///   after a newline);
/// * a blank word never forms a sentence of its own: it joins the sentence before it (spaCy
///   attaches whitespace to the preceding sentence) — a blank word with a newline ends that
///   sentence if it is still open —, and blank words before the first word that is not blank
///   join the first sentence;
/// * the words after the last end form the last sentence.
///
/// So every sentence holds a word that is not blank, and a draft of blank words only (or none)
/// has no sentence at all: RIND never fires on whitespace alone (DRAGIN drops whitespace-only
/// sentences too). A newline with text on both sides inside one word (`"B.\n\nSo"`) neither
/// ends nor starts a sentence. The rule agrees with spaCy on plain declarative chain-of-thought
/// sentences, not on abbreviations ("U.S.").
pub fn sentences(words: &[String]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    // The open sentence starts at word `start`; `open` says whether it holds a non-blank word.
    let (mut start, mut open) = (0, false);
    for (i, w) in words.iter().enumerate() {
        let t = w.trim();
        let ends = t.ends_with('.') || t.ends_with('!') || t.ends_with('?') || w.rfind('\n').is_some_and(|p| w[p..].trim().is_empty());
        if t.is_empty() {
            if !open {
                // After a finished sentence: it takes the blank word. Before the first
                // non-blank word: left to the sentence that word opens.
                if let Some(last) = out.last_mut() {
                    last.end = i + 1;
                    start = i + 1;
                }
                continue;
            }
        } else {
            if open && w[..w.len() - w.trim_start().len()].contains('\n') {
                out.push(start..i);
                start = i;
            }
            open = true;
        }
        if ends {
            out.push(start..i + 1);
            start = i + 1;
            open = false;
        }
    }
    if open {
        out.push(start..words.len());
    }
    out
}

/// Where RIND fires on a draft: the first sentence with a word whose score exceeds θ, and which
/// of its words do.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// Index into the sentences.
    pub sentence: usize,
    /// Per word of that sentence: its score v_i > θ.
    pub flagged: Vec<bool>,
    /// Per word of that sentence: v_i.
    pub scores: Vec<f64>,
}

/// RIND as DRAGIN's code computes it (reference-algorithms.md §3.2): per word, the attention is
/// the sum and the entropy the mean over its sub-tokens; within a sentence of m words,
/// v_i = a_i / Σ a · m · H_i (attention normalised to mean 1 over the sentence), and the first
/// sentence with any v_i > θ triggers. `token_attn` and `token_entropy` are per draft token.
/// `content(word)` is DRAGIN's content-word filter, applied after the decision: it only clears
/// the flags of other words (a trigger stays a trigger even if it clears them all).
pub fn rind(
    token_attn: &[f64],
    token_entropy: &[f64],
    words: &[Range<usize>],
    sentences: &[Range<usize>],
    theta: f64,
    content: &dyn Fn(usize) -> bool,
) -> Option<Trigger> {
    rind_excluding(token_attn, token_entropy, words, sentences, theta, content, &|_| false)
}

/// [`rind`] with the paper's stop-word term (`rag.stop_words: excluded`): S(t_i) = H_i · a_i · s_i
/// with s_i = 0 for the words `stop(word)` names, so their v_i is 0 and they cannot trigger
/// (for θ ≥ 0); the attention is still normalised over every word of the sentence.
pub fn rind_excluding(
    token_attn: &[f64],
    token_entropy: &[f64],
    words: &[Range<usize>],
    sentences: &[Range<usize>],
    theta: f64,
    content: &dyn Fn(usize) -> bool,
    stop: &dyn Fn(usize) -> bool,
) -> Option<Trigger> {
    let word_attn: Vec<f64> = words.iter().map(|w| token_attn[w.clone()].iter().sum()).collect();
    let word_entropy: Vec<f64> = words.iter().map(|w| token_entropy[w.clone()].iter().sum::<f64>() / w.len().max(1) as f64).collect();
    for (si, s) in sentences.iter().enumerate() {
        let m = s.len() as f64;
        let total: f64 = word_attn[s.clone()].iter().sum();
        if total <= 0.0 {
            continue;
        }
        let scores: Vec<f64> = s.clone().map(|i| if stop(i) { 0.0 } else { word_attn[i] / total * m * word_entropy[i] }).collect();
        if scores.iter().any(|&v| v > theta) {
            let flagged = s.clone().zip(&scores).map(|(i, &v)| v > theta && content(i)).collect();
            return Some(Trigger { sentence: si, flagged, scores });
        }
    }
    None
}

/// A stop word for the paper's s_i (`rag.stop_words: excluded`): a word without a letter or
/// digit (punctuation, line breaks), or one whose text, trimmed of spaces and of punctuation at
/// its ends and lower-cased, is in NLTK's English stop-word list (the `stop-words` crate's copy,
/// 198 words; the paper names no list, NLTK's is the common one). Curly apostrophes (’ and ‘,
/// which models emit too) count as `'`: the list spells "don't" and "it's" with the ASCII one.
pub fn is_stop_word(word: &str) -> bool {
    static NLTK_ENGLISH: std::sync::OnceLock<std::collections::HashSet<&'static str>> = std::sync::OnceLock::new();
    let w = word.trim().trim_matches(|c: char| !c.is_alphanumeric()).replace(['\u{2019}', '\u{2018}'], "'").to_lowercase();
    w.is_empty() || NLTK_ENGLISH.get_or_init(|| stop_words::get("en").iter().copied().collect()).contains(w.as_str())
}

/// How a cluster of attended positions is represented (`rag.representative`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representative {
    /// The position with the largest attention in the cluster.
    MaxAttn,
    /// The median position of the cluster (the lower middle for an even count).
    Median,
}

/// The windows of context made visible (Algorithm 2): the `topk` context positions of largest
/// `scores` (the chosen heads' attention, averaged; ties to the earlier position), then
/// [`retrieval_windows_top`]. `scores[i]` is the score of position `context.start + i`.
pub fn retrieval_windows(scores: &[f32], context: Range<usize>, topk: usize, gap: usize, window: usize, rep: Representative) -> Vec<Range<usize>> {
    let mut order: Vec<usize> = (0..scores.len().min(context.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let top: Vec<(usize, f32)> = order.into_iter().take(topk).map(|i| (i, scores[i])).collect();
    retrieval_windows_top(&top, context, gap, window, rep)
}

/// Algorithm 2 from the top positions `(i, score)` (position `context.start + i`, any order):
/// clustered in position order — a gap larger than `gap` starts a new cluster —, a window of
/// `window` positions each side of every cluster's representative, clipped to `context`,
/// overlapping or touching windows merged.
pub fn retrieval_windows_top(top: &[(usize, f32)], context: Range<usize>, gap: usize, window: usize, rep: Representative) -> Vec<Range<usize>> {
    let mut top = top.to_vec();
    top.sort_by_key(|t| t.0);
    let mut clusters: Vec<Vec<(usize, f32)>> = Vec::new();
    for p in top {
        match clusters.last_mut() {
            Some(c) if p.0 - c.last().map_or(p.0, |x| x.0) <= gap => c.push(p),
            _ => clusters.push(vec![p]),
        }
    }
    let mut windows: Vec<Range<usize>> = Vec::new();
    for c in clusters {
        let r = match rep {
            Representative::MaxAttn => c.iter().max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0))).unwrap_or(&c[0]).0,
            Representative::Median => c[(c.len() - 1) / 2].0,
        } + context.start;
        let w = r.saturating_sub(window).max(context.start)..(r + window + 1).min(context.end);
        match windows.last_mut() {
            Some(last) if w.start <= last.end => last.end = last.end.max(w.end),
            _ => windows.push(w),
        }
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_in_nats_with_drag_ins_epsilon() {
        // Uniform over 4: ln 4 (the 1e-10 moves it by ~4e-10).
        assert!((entropy(&[0.0; 4]) - 4f64.ln()).abs() < 1e-8);
        // One certain token: 0.
        assert!(entropy(&[0.0, -1e4, -1e4]).abs() < 1e-9);
        // Two tokens with p = (e/(1+e), 1/(1+e)).
        let p = std::f64::consts::E / (1.0 + std::f64::consts::E);
        let want = -(p * p.ln() + (1.0 - p) * (1.0 - p).ln());
        assert!((entropy(&[1.0, 0.0]) - want).abs() < 1e-7);
    }

    #[test]
    fn rind_attention_is_the_column_max_over_later_rows_averaged_over_heads() {
        // Two heads over 3 tokens (lower-triangular rows).
        let h0 = vec![vec![1.0, 0.0, 0.0], vec![0.6, 0.4, 0.0], vec![0.2, 0.5, 0.3]];
        let h1 = vec![vec![1.0, 0.0, 0.0], vec![0.9, 0.1, 0.0], vec![0.1, 0.1, 0.8]];
        let a = rind_attention(&[h0.clone(), h1.clone()], false);
        // Token 0: max(1, .6, .2) = 1 and max(1, .9, .1) = 1; token 1: .5 and .1; token 2: .3 and .8.
        for (x, want) in a.iter().zip([1.0, 0.3, 0.55]) {
            assert!((x - want).abs() < 1e-7, "{a:?}");
        }
        // A leading end-of-sequence token: divide by the sum of the others (0.85).
        let b = rind_attention(&[h0, h1], true);
        for (x, want) in b.iter().zip([1.0 / 0.85, 0.3 / 0.85, 0.55 / 0.85]) {
            assert!((x - want).abs() < 1e-6, "{b:?}");
        }
    }

    #[test]
    fn stop_words_score_zero_under_the_papers_rule() {
        for w in [" the", "The", " is", "\n", ".", " (", " was,", "It"] {
            assert!(is_stop_word(w), "{w:?}");
        }
        for w in [" Paris", " founded", " 1988", " Lonny", "answer."] {
            assert!(!is_stop_word(w), "{w:?}");
        }
        // One sentence "The film": a_i = 1, 3; H_i = 2, 2 → v = a/Σa · m · H = 1, 3 (DRAGIN's code);
        // the paper's s_i zeroes "The".
        let words = [0..1, 1..2];
        let one = std::slice::from_ref(&(0..2)); // the sentence: words 0 and 1
        let v = rind(&[1.0, 3.0], &[2.0, 2.0], &words, one, -1.0, &|_| true).unwrap().scores;
        assert_eq!(v, vec![1.0, 3.0]);
        let t = rind_excluding(&[1.0, 3.0], &[2.0, 2.0], &words, one, 0.4, &|_| true, &|i| i == 0).unwrap();
        assert_eq!((t.scores, t.flagged), (vec![0.0, 3.0], vec![false, true]));
        // A sentence whose only high word is a stop word no longer fires.
        assert!(rind(&[3.0, 1.0], &[2.0, 2.0], &words, one, 1.2, &|_| true).is_some());
        assert!(rind_excluding(&[3.0, 1.0], &[2.0, 2.0], &words, one, 1.2, &|_| true, &|i| i == 0).is_none());
    }

    /// NLTK's list spells contractions with `'`; a model's ’ (U+2019) or ‘ (U+2018) is the same
    /// word.
    #[test]
    fn curly_apostrophes_are_stop_words_as_straight_ones_are() {
        for w in [" don't", " don\u{2019}t", " It\u{2019}s", " it\u{2018}s", " doesn\u{2019}t,", " DON\u{2019}T", " shouldn\u{2019}t."] {
            assert!(is_stop_word(w), "{w:?}");
        }
        for w in [" O\u{2019}Neill", " Paris\u{2019}", " rock\u{2019}n\u{2019}roll"] {
            assert!(!is_stop_word(w), "{w:?}");
        }
    }

    #[test]
    fn sub_tokens_merge_into_words_at_spaces_newlines_and_after_eos() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let pieces = p(&["The", " Phant", "om", " Hour", ".", "\n", "So", "</s>", "x"]);
        let eos = [false, false, false, false, false, false, false, true, false];
        // The end-of-sequence token ends its word; the token after it starts one.
        assert_eq!(merge_words(&pieces, &eos), vec![0..1, 1..3, 3..5, 5..8, 8..9]);
        // Other vocabularies' line breaks: a blank "\n\n" token starts a word (GPT-2 BPE:
        // "." "\n\n" "So"), and so does the token after ".\n\n" (llama-3).
        let no = [false; 6];
        assert_eq!(merge_words(&p(&["Paris", ".", "\n\n", "So", " the", " answer"]), &no), vec![0..2, 2..4, 4..5, 5..6]);
        assert_eq!(merge_words(&p(&["Paris", ".\n\n", "So", " the"]), &no[..4]), vec![0..2, 2..3, 3..4]);
        assert_eq!(merge_words(&p(&["A", " \n", "B"]), &no[..3]), vec![0..1, 1..3]);
    }

    #[test]
    fn sentences_end_at_terminal_punctuation_and_newlines() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The lone newline after "D!" joins that sentence.
        assert_eq!(sentences(&w(&["A", "is", "B.", " C", "is", "D!", "\n", "So", "the"])), vec![0..3, 3..7, 7..9]);
        assert_eq!(sentences(&w(&["no", "end"])), vec![0..2]);
        assert!(sentences(&[]).is_empty());
        // A newline with only whitespace after the last one ends a sentence ("B\n", "A\n ").
        assert_eq!(sentences(&w(&["A", " B\n", " C"])), vec![0..2, 2..3]);
        assert_eq!(sentences(&w(&["A\n ", "C"])), vec![0..1, 1..2]);
        // Text after a word's last newline: no end; a newline between texts inside a word
        // neither ends nor starts a sentence.
        assert_eq!(sentences(&w(&["A", " B.\n\nSo", " C"])), vec![0..3]);
    }

    #[test]
    fn blank_words_join_the_sentence_before_them() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Lone newlines after a finished sentence extend it.
        assert_eq!(sentences(&w(&["A", "B.", "\n", "\n", " C", "D"])), vec![0..4, 4..6]);
        assert_eq!(sentences(&w(&["A.", "\n\n", " C"])), vec![0..2, 2..3]);
        // A newline ends the open sentence "A"; the next one extends it.
        assert_eq!(sentences(&w(&["A", "\n", "\n", " C."])), vec![0..3, 3..4]);
        // Whitespace without a newline: inside an open sentence it stays there; after a finished
        // one it joins that one (it used to open the next).
        assert_eq!(sentences(&w(&["A", " ", "B."])), vec![0..3]);
        assert_eq!(sentences(&w(&["A.", " ", "B"])), vec![0..2, 2..3]);
        // Trailing blanks, and an empty word, join the last sentence.
        assert_eq!(sentences(&w(&["A.", "\n", "\n"])), vec![0..3]);
        assert_eq!(sentences(&w(&["A", "\n", "\n"])), vec![0..3]);
        assert_eq!(sentences(&w(&["A.", ""])), vec![0..2]);
        // Leading blanks join the first sentence.
        assert_eq!(sentences(&w(&["\n", "\n\n", " ", "So", " it."])), vec![0..5]);
        assert_eq!(sentences(&w(&["\n", "\nSo", " the", " end.", " B"])), vec![0..4, 4..5]);
        // Blank words only: no sentence, so RIND cannot fire (with one sentence of m = 1, v = H).
        for only in [&["\n"][..], &["\n", "\n\n", " "], &[""]] {
            assert!(sentences(&w(only)).is_empty(), "{only:?}");
        }
        let s = sentences(&w(&["\n", "\n"]));
        assert_eq!(rind(&[0.5, 0.5], &[9.0, 9.0], &[0..1, 1..2], &s, 0.0, &|_| true), None);
    }

    #[test]
    fn a_word_starting_on_a_new_line_starts_a_sentence() {
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // llama-2's "<0x0A>" + "So" merge into "\nSo": the open sentence ends before it.
        assert_eq!(sentences(&w(&["The", " film", "\nSo", " the", " answer."])), vec![0..2, 2..5]);
        // Any leading whitespace holding a newline.
        assert_eq!(sentences(&w(&["x", " \n\nSo", " y"])), vec![0..1, 1..3]);
        assert_eq!(sentences(&w(&["x", "\n\nSo", " y"])), vec![0..1, 1..3]);
        // After a finished sentence there is nothing to cut (no empty sentence).
        assert_eq!(sentences(&w(&["A.", "\nSo", " B"])), vec![0..1, 1..3]);
        // Starts and ends a sentence.
        assert_eq!(sentences(&w(&["x", "\nA\n", "y"])), vec![0..1, 1..2, 2..3]);
        // A newline after text does not start one.
        assert_eq!(sentences(&w(&["x", " So\nit", " y"])), vec![0..3]);
    }

    #[test]
    fn rind_scores_words_within_their_sentence_and_fires_on_the_first_above_theta() {
        // Tokens: [w0][w1 w1][w2] | [w3][w4]; words 0..1, 1..3, 3..4 (sentence 0), 4..5, 5..6 (sentence 1).
        let words = vec![0..1, 1..3, 3..4, 4..5, 5..6];
        let sents = vec![0..3, 3..5];
        let attn = [0.2, 0.1, 0.1, 0.2, 0.5, 0.1];
        let ent = [1.0, 1.0, 0.5, 1.0, 2.0, 0.1];
        // Sentence 0: word attention (0.2, 0.2, 0.2) → normalised 1 each; entropies (1, 0.75, 1):
        // v = (1, 0.75, 1) — nothing above 1.2. Sentence 1: attention (0.5, 0.1) → (5/3, 1/3);
        // v = (5/3 · 2, 1/3 · 0.1) = (3.33…, 0.033…): word 3 fires.
        let t = rind(&attn, &ent, &words, &sents, 1.2, &|_| true).unwrap();
        assert_eq!(t.sentence, 1);
        assert_eq!(t.flagged, vec![true, false]);
        assert!((t.scores[0] - 10.0 / 3.0).abs() < 1e-12 && (t.scores[1] - 1.0 / 30.0).abs() < 1e-12, "{t:?}");
        // θ = 0.9 fires in sentence 0 on words 0 and 2.
        let t = rind(&attn, &ent, &words, &sents, 0.9, &|_| true).unwrap();
        assert_eq!((t.sentence, t.flagged), (0, vec![true, false, true]));
        // The content filter clears flags after the decision, never the trigger itself.
        let t = rind(&attn, &ent, &words, &sents, 1.2, &|_| false).unwrap();
        assert_eq!((t.sentence, t.flagged), (1, vec![false, false]));
        assert_eq!(rind(&attn, &ent, &words, &sents, 10.0, &|_| true), None);
    }

    #[test]
    fn windows_cluster_the_top_positions_and_merge_overlaps() {
        // Context = positions 10..60; scores over its 50 positions.
        let mut s = vec![0.0f32; 50];
        for (i, v) in [(2, 0.5), (4, 0.9), (7, 0.4), (30, 0.8), (33, 0.3), (45, 0.1), (46, 0.2)] {
            s[i] = v;
        }
        // Top 6: 4, 30, 2, 7, 33, 46 → sorted 2 4 7 | 30 33 | 46 with gap 5.
        // max_attn representatives: 4, 30, 46 → windows (±3) 11..18, 37..44, 53..60, clipped at 60.
        let w = retrieval_windows(&s, 10..60, 6, 5, 3, Representative::MaxAttn);
        assert_eq!(w, vec![11..18, 37..44, 53..60]);
        // Median representatives: 4, 30 (lower middle of 30, 33), 46.
        assert_eq!(retrieval_windows(&s, 10..60, 6, 5, 3, Representative::Median), vec![11..18, 37..44, 53..60]);
        // Wide windows overlap and merge; the start is clipped to the context.
        assert_eq!(retrieval_windows(&s, 10..60, 6, 5, 20, Representative::MaxAttn), vec![10..60]);
        // A larger gap joins everything into one cluster around the maximum (position 4).
        assert_eq!(retrieval_windows(&s, 10..60, 6, 100, 2, Representative::MaxAttn), vec![12..17]);
        assert_eq!(retrieval_windows(&s, 10..60, 6, 100, 2, Representative::Median), vec![15..20]);
    }
}
