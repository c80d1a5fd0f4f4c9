//! Algorithm 1 of the paper (Section 5, appendix C): DRAGIN's loop with in-context retrieval.
//! The context stays in the prompt and "retrieval" is a view of it: a draft is generated with
//! the context hidden; RIND ([`crate::analysis::rag::rind`]) on the draft decides whether to
//! retrieve; on a trigger the draft is retracted to the start of the triggering sentence, a pass
//! with the whole context visible gives the chosen heads' attention over it at the last position
//! (Algorithm 2), the windows around its top positions become the only visible context, and the
//! text is regenerated (its first sentence kept, as DRAGIN does). Token ids are kept throughout
//! (DRAGIN joins and re-tokenises text; FIDELITY.md).
//!
//! One session per question: the prompt up to the end of the context is encoded once and
//! every pass re-encodes only what follows it (question, template, generated text) under its
//! own view, or reuses it when the view did not change (`KvMode`). Questions run `batch` at a
//! time ([`run_batch`]): each loop is sequential `async` code over a [`Row`], and the drafts'
//! decoding steps of all questions run as one batched forward ([`crate::engine::session_batch`]).
use std::ops::Range;

use tch::Tensor;

use crate::analysis::qa::{cut_at_markers, ANSWER_PHRASE};
use crate::analysis::rag::{is_stop_word, merge_words, retrieval_windows_top, rind_attention, rind_excluding, sentences, Representative};
use crate::engine::model::{CaptureRequest, HiddenSite, Model, ReasoningRequest};
use crate::engine::session::{head_rows_topk, Session, SessionError};
use crate::engine::session_batch::{run_jobs, Job, Row};
use crate::engine::tokenizer::Tokenizer;

/// Whose keys and values the visible context has (`rag.kv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvMode {
    /// The prompt through the context is encoded once with everything visible; a view only
    /// hides columns from the queries after the context (a KV-cache RAG).
    EncodedOnce,
    /// Every pass encodes the whole input under its view, so a visible window's own keys see
    /// only what is visible before it: what HF `generate` with a 2-D attention mask computes.
    Recomputed,
}

/// Where RIND's attention a_max comes from (`rag.rind_attn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RindAttn {
    /// The last layer of a separate forward over the draft alone (DRAGIN's code).
    DraftOnly,
    /// The last layer of the draft's own pass: prompt, text and draft under the draft's view,
    /// its attention among the draft's tokens (the paper's formula).
    InContext,
}

/// Which query rows of the retrieval pass read the heads' attention over the context
/// (`rag.query_pos`, reference §9 row 47). The pass always has the whole context visible
/// (Algorithm 2's UnMaskAll); the heads are picked from the hidden state (and, for the oracle, the
/// Eq. 2 scores) of the first row read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryPos {
    /// The last position of question + kept text: the step about to write the triggering
    /// sentence again (Algorithm 2 reads "the current position").
    Last,
    /// The position that generated the first word of the triggering sentence with v_i > θ (the
    /// row before its first token, DRAGIN's convention for a word's attention): the pass runs
    /// over the kept text and the sentence up to that word.
    TriggerToken,
    /// The mean of the rows that generated each token of the triggering sentence (the last
    /// position of the kept text through the sentence's second-to-last token).
    SentenceMean,
}

/// What picks the heads of a retrieval, and what the context looks like otherwise.
pub enum Strategy<'a> {
    /// The context hidden throughout, no retrieval (Table 4's "w/o RAG").
    Hidden,
    /// The context visible throughout, no retrieval (the ceiling).
    Full,
    /// Retrieval with the heads this picker chooses.
    Heads(&'a mut dyn HeadPicker),
}

/// The heads of one retrieval, from the retrieval pass's last position (context visible).
pub trait HeadPicker {
    /// `hidden`: the final hidden state; `eq2`: Eq. 2 scores `[L * Hq]` (empty unless
    /// [`HeadPicker::needs_eq2`]); `retrieval`: the 0-based index of this retrieval.
    fn pick(&mut self, hidden: &[f32], eq2: &[f32], retrieval: usize) -> Result<Vec<(usize, usize)>, String>;
    fn needs_eq2(&self) -> bool {
        false
    }
}

/// Algorithm 1's options (reference §9 rows 45–52).
#[derive(Debug, Clone)]
pub struct RagOptions {
    /// RIND's θ (`rag.theta`).
    pub theta: f64,
    /// New tokens of one draft or regeneration (DRAGIN's `generate_max_length`).
    pub draft_tokens: usize,
    /// The loop ends once the text holds more tokens than this (DRAGIN: 100).
    pub max_tokens: usize,
    pub topk: usize,
    pub cluster_gap: usize,
    pub window: usize,
    pub representative: Representative,
    /// Keep only the first sentence of a regeneration (DRAGIN), else all of it.
    pub keep_first_sentence: bool,
    /// The next draft keeps the last retrieval's windows visible (Algorithm 1 resets the view
    /// only after accepting a draft), else it sees the context hidden again.
    pub keep_windows: bool,
    pub kv: KvMode,
    pub rind_attn: RindAttn,
    pub query_pos: QueryPos,
    /// The paper's s_i: stop words score 0 in RIND ([`is_stop_word`]); DRAGIN's code
    /// applies its content-word filter only after the decision.
    pub exclude_stop_words: bool,
    /// DRAGIN's evaluation: without "the answer is", append " So the answer is" and generate
    /// `answer_tokens` more tokens with the context hidden.
    pub force_answer: bool,
    pub answer_tokens: usize,
    pub eos: Vec<u32>,
    /// Eq. 2's sink and local window (oracle heads).
    pub sink: usize,
    pub local: usize,
    /// Re-encode from scratch at every pass even when the view did not change (the benchmark's
    /// reference: an HF loop re-encodes its whole input at every call).
    pub reencode_every_pass: bool,
}

/// One question's prompt: the context span in it, and the supporting-fact positions (oracle).
pub struct RagPrompt<'p> {
    pub ids: &'p [u32],
    pub context: Range<usize>,
    pub needle: &'p [usize],
    /// Spans hidden with the context whenever it is masked (`rag.visible` leaves them out):
    /// never unmasked by a retrieval's windows; visible in the retrieval pass (UnMaskAll).
    pub also_hidden: Vec<Range<usize>>,
}

/// One retrieval of a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Retrieval {
    /// Generated tokens kept before it (after the retraction).
    pub at: usize,
    pub heads: Vec<(usize, usize)>,
    /// The positions (in prompt + text) whose attention rows chose the windows: the last
    /// position of the kept text, or the triggering sentence's rows (`rag.query_pos`).
    #[serde(default)]
    pub query: Range<usize>,
    /// Visible context windows (prompt positions).
    pub windows: Vec<Range<usize>>,
    /// Visible tokens ÷ context tokens.
    pub visible_fraction: f64,
    /// The RIND scores of the triggering sentence's words.
    pub scores: Vec<f64>,
}

/// A question's run: the generated text's tokens and what happened on the way.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RagRun {
    pub tokens: Vec<u32>,
    pub retrievals: Vec<Retrieval>,
    /// Drafts generated (RIND ran on each under a retrieval strategy).
    pub drafts: usize,
    /// " So the answer is" was appended and the answer generated.
    pub forced: bool,
    /// Forward passes and tokens fed (cost accounting for the benchmark).
    pub passes: usize,
    pub fed: usize,
    /// Decoding steps that shared a batched forward with other questions' ([`run_batch`]).
    #[serde(default)]
    pub batched_steps: usize,
}

impl RagRun {
    /// The prediction DRAGIN scores: the text cut at its markers.
    pub fn prediction(&self, tok: &Tokenizer) -> String {
        cut_at_markers(&tok.decode(&self.tokens, true)).to_string()
    }
}

/// The view the cache's columns after the context were encoded under.
struct Cached {
    view: Vec<Range<usize>>,
}

struct Loop<'a, 'm> {
    model: &'m Model,
    tok: &'a Tokenizer,
    opts: &'a RagOptions,
    prompt: &'a RagPrompt<'a>,
    session: Row<'m>,
    cached: Option<Cached>,
    run: RagRun,
    space_marker: Option<String>,
}

/// Whether the loop can run `prompt`: its context must lie in it and end before it does.
///
/// A prompt whose context is its last text (a JSONL `text` ending with its `context`) is
/// refused, under both `kv` modes, rather than prefilled one token short: then the last context
/// token would be fed in the draft's pass and its own query would predict the first token, so
/// a "context hidden" draft would see that context token (as every hidden column's query sees
/// itself; `generate`'s hidden spans would show it the whole context), and its keys and values
/// would be those of that pass's view, not of the prompt encoded once (kept by later passes
/// whose input shares the prefix, the retrieval pass with everything visible included).
pub fn check_prompt(prompt: &RagPrompt) -> Result<(), String> {
    let (c, len) = (&prompt.context, prompt.ids.len());
    if c.end > len || c.start > c.end {
        return Err(format!("its context (tokens {}..{}) does not lie in its {len} tokens", c.start, c.end));
    }
    if c.end == len {
        return Err(format!(
            "its context (tokens {}..{len}) ends the prompt: `rag` predicts a draft's first token from a token after the context, with the context hidden from it, and there is none; put the question after the context",
            c.start
        ));
    }
    Ok(())
}

/// Runs Algorithm 1 for one question under `strategy`.
pub fn run<'a>(model: &'a Model, tok: &'a Tokenizer, prompt: &'a RagPrompt<'a>, strategy: Strategy<'a>, opts: &'a RagOptions) -> Result<RagRun, String> {
    run_batch(model, tok, std::slice::from_ref(prompt), vec![strategy], opts, 1, |_| {}).remove(0)
}

/// Runs Algorithm 1 for every question (`strategies[i]` for `prompts[i]`), `batch` questions at
/// a time; `finished(i)` is called as question `i` ends. With `batch` 1 every forward is one
/// question's; batched, the drafts' decoding steps share forwards (in f32 the same tokens).
pub fn run_batch<'a>(
    model: &'a Model,
    tok: &'a Tokenizer,
    prompts: &'a [RagPrompt<'a>],
    strategies: Vec<Strategy<'a>>,
    opts: &'a RagOptions,
    batch: usize,
    finished: impl FnMut(usize),
) -> Vec<Result<RagRun, String>> {
    assert_eq!(prompts.len(), strategies.len(), "one strategy per question");
    let capacity = prompts.iter().map(|p| capacity(p, opts)).max().unwrap_or(1);
    let space_marker = tok.encode(" ", false).ok().and_then(|e| e.ids.first().copied()).and_then(|id| tok.id_to_piece(id));
    let mut strategies: Vec<Option<Strategy<'a>>> = strategies.into_iter().map(Some).collect();
    let make = |i: usize, row: Row<'a>| -> Job<'a, Result<RagRun, String>> {
        let strategy = strategies[i].take().expect("each question starts once");
        let (prompt, space_marker) = (&prompts[i], space_marker.clone());
        Box::pin(async move {
            check_prompt(prompt)?;
            let mut l = Loop { model, tok, opts, prompt, session: row, cached: None, run: RagRun::default(), space_marker };
            l.generate(strategy).await.map_err(|e| e.to_string())?;
            l.run.batched_steps = l.session.batched_steps();
            Ok(l.run)
        })
    };
    let out = run_jobs(model, batch, capacity, prompts.len(), make, finished);
    if std::env::var_os("RHX_BATCH_TIMING").is_some() {
        SPENT.with(|s| eprintln!("rag loop: RIND attention {:.2} s", s[0].get()));
    }
    out
}

thread_local! {
    /// Seconds in RIND's separate forward over the draft,
    /// printed with `RHX_BATCH_TIMING=1`.
    static SPENT: [std::cell::Cell<f64>; 1] = Default::default();
}

fn spent<T>(i: usize, f: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let v = f();
    SPENT.with(|s| s[i].set(s[i].get() + t.elapsed().as_secs_f64()));
    v
}

/// Positions one question's session may hold: the prompt, the text (at most `max_tokens` plus a
/// draft past it), the draft being generated and the forced answer.
pub fn capacity(prompt: &RagPrompt, opts: &RagOptions) -> usize {
    prompt.ids.len() + opts.max_tokens + 2 * opts.draft_tokens + opts.answer_tokens + 16
}

#[derive(Debug, thiserror::Error)]
enum LoopError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Heads(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

impl Loop<'_, '_> {
    fn context_hidden(&self) -> Vec<Range<usize>> {
        std::iter::once(self.prompt.context.clone()).chain(self.prompt.also_hidden.iter().cloned()).collect()
    }

    /// The context minus the windows.
    fn view_of(&self, windows: &[Range<usize>]) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut at = self.prompt.context.start;
        for w in windows {
            if w.start > at {
                out.push(at..w.start);
            }
            at = at.max(w.end);
        }
        if at < self.prompt.context.end {
            out.push(at..self.prompt.context.end);
        }
        out.extend(self.prompt.also_hidden.iter().cloned());
        out
    }

    /// Brings the cache to the input `prompt + text` minus what is still to feed under `view`,
    /// and returns the tokens still to feed (at least one: [`check_prompt`] refuses a prompt
    /// that ends with its context). Kept: the common prefix of the cache
    /// and the input when the view did not change; else the prompt through the context
    /// (`EncodedOnce`: encoded once, everything visible) or nothing (`Recomputed`).
    async fn prepare(&mut self, text: &[u32], view: &[Range<usize>]) -> Result<Vec<u32>, LoopError> {
        let input: Vec<u32> = self.prompt.ids.iter().chain(text).copied().collect();
        let base = match self.opts.kv {
            KvMode::EncodedOnce => self.prompt.context.end,
            KvMode::Recomputed => 0,
        };
        let common = self.session.ids().iter().zip(&input).take_while(|(a, b)| a == b).count().min(input.len() - 1);
        let same_view = !self.opts.reencode_every_pass && self.cached.as_ref().is_some_and(|c| c.view == view);
        let mut keep = if same_view { common } else { common.min(base) };
        self.session.truncate(keep)?;
        if keep < base {
            self.session.feed(&input[keep..base], &[], CaptureRequest::default()).await?;
            self.run.passes += 1;
            self.run.fed += base - keep;
            keep = base;
        }
        self.cached = Some(Cached { view: view.to_vec() });
        self.run.fed += input.len() - keep;
        Ok(input[keep..].to_vec())
    }

    /// Greedy tokens after `text` under `view`, with each token's entropy.
    async fn draft(&mut self, text: &[u32], view: &[Range<usize>], n: usize) -> Result<(Vec<u32>, Vec<f64>, bool), LoopError> {
        let feed = self.prepare(text, view).await?;
        let mut ent = Vec::new();
        let (tokens, eos) = self
            .session
            .greedy(&feed, view, n, &self.opts.eos, Some(&mut ent))
            .await?;
        self.run.passes += tokens.len();
        Ok((tokens, ent, eos))
    }

    /// Word ranges and sentences (as ranges of words) of some generated tokens.
    fn words(&self, tokens: &[u32]) -> (Vec<Range<usize>>, Vec<Range<usize>>, Vec<String>) {
        let pieces: Vec<String> = tokens
            .iter()
            .map(|&t| {
                let text = self.tok.decode_exact(&[t]);
                let marked = self.space_marker.as_deref().is_some_and(|m| self.tok.id_to_piece(t).is_some_and(|p| p.starts_with(m)));
                if marked && !text.starts_with(' ') {
                    format!(" {text}")
                } else {
                    text
                }
            })
            .collect();
        let is_eos: Vec<bool> = tokens.iter().map(|t| self.opts.eos.contains(t)).collect();
        let words = merge_words(&pieces, &is_eos);
        let texts: Vec<String> = words.iter().map(|w| pieces[w.clone()].concat()).collect();
        let sents = sentences(&texts);
        (words, sents, texts)
    }

    /// DRAGIN's RIND attention: the last layer over the draft alone (a separate forward).
    fn draft_attention(&self, draft: &[u32]) -> Result<Vec<f64>, LoopError> {
        let last = self.model.config.num_layers - 1;
        let mut s = Session::new(self.model, draft.len());
        let out = s.feed(draft, &[], &CaptureRequest { attention_layer: Some(last), ..Default::default() })?;
        let attn = out.attention.expect("asked for").select(0, 0); // [H, T, T]
        self.a_max(&attn, draft)
    }

    /// RIND's attention in context: the draft re-fed after `text` under the `view` it was
    /// generated under (the same keys, queries and mask as its own pass; the cache ends up
    /// holding it, as the next pass wants), the last layer's rows among the draft's columns.
    async fn context_attention(&mut self, text: &[u32], draft: &[u32], view: &[Range<usize>]) -> Result<Vec<f64>, LoopError> {
        let start = self.prompt.ids.len() + text.len();
        self.session.truncate(start)?;
        let last = self.model.config.num_layers - 1;
        let out = self.session.feed(draft, view, CaptureRequest { attention_layer: Some(last), ..Default::default() }).await?;
        self.run.passes += 1;
        self.run.fed += draft.len();
        let attn = out.attention.expect("asked for").select(0, 0).narrow(-1, start as i64, draft.len() as i64); // [H, T, T]
        self.a_max(&attn, draft)
    }

    /// a_max per draft token from `[H, T, T]` attention among the draft's tokens.
    fn a_max(&self, attn: &Tensor, draft: &[u32]) -> Result<Vec<f64>, LoopError> {
        let (h, t) = (attn.size()[0], attn.size()[1]);
        let flat = Vec::<f32>::try_from(attn.flatten(0, -1))?;
        let rows: Vec<Vec<Vec<f32>>> = (0..h as usize)
            .map(|hi| (0..t as usize).map(|q| flat[(hi * t as usize + q) * t as usize..(hi * t as usize + q + 1) * t as usize].to_vec()).collect())
            .collect();
        Ok(rind_attention(&rows, self.opts.eos.contains(&draft[0])))
    }

    fn text_done(&self, text: &[u32]) -> bool {
        self.tok.decode(text, true).contains(ANSWER_PHRASE)
    }

    async fn generate(&mut self, mut strategy: Strategy<'_>) -> Result<(), LoopError> {
        let o = self.opts.clone();
        let mut text: Vec<u32> = Vec::new();
        // Algorithm 1: the view of the next draft — the context hidden, or (line 15 resets it
        // only after a draft is accepted) the last retrieval's windows.
        let mut view = match strategy {
            Strategy::Full => vec![],
            _ => self.context_hidden(),
        };
        loop {
            let old = text.len();
            let (draft, ent, _) = self.draft(&text, &view, o.draft_tokens).await?;
            self.run.drafts += 1;
            let trigger = match strategy {
                Strategy::Heads(_) if !draft.is_empty() => {
                    let attn = match o.rind_attn {
                        RindAttn::DraftOnly => spent(0, || self.draft_attention(&draft))?,
                        RindAttn::InContext => self.context_attention(&text, &draft, &view).await?,
                    };
                    let (words, sents, texts) = self.words(&draft);
                    // DRAGIN's content-word filter only clears flags DRAGIN uses to build a
                    // search query; in-context retrieval reads head attention instead. The
                    // paper's s_i (`stop_words: excluded`) keeps stop words from triggering.
                    let stop: Vec<bool> = texts.iter().map(|w| o.exclude_stop_words && is_stop_word(w)).collect();
                    rind_excluding(&attn, &ent, &words, &sents, o.theta, &|_| true, &|i| stop[i]).map(|t| (t, words, sents))
                }
                _ => None,
            };
            match (trigger, &mut strategy) {
                (Some((t, words, sents)), Strategy::Heads(picker)) => {
                    // Retract to the start of the triggering sentence, retrieve, regenerate.
                    let sentence = &sents[t.sentence];
                    let start = words[sentence.start].start;
                    text.extend_from_slice(&draft[..start]);
                    // The sentence's tokens whose generating rows the retrieval reads after
                    // the kept text's last one (`query_pos`).
                    let after: &[u32] = match o.query_pos {
                        QueryPos::Last => &[],
                        QueryPos::TriggerToken => {
                            let first = t.scores.iter().position(|&v| v > o.theta).expect("a trigger has a word above θ");
                            &draft[start..words[sentence.start + first].start]
                        }
                        QueryPos::SentenceMean => &draft[start..words[sentence.end - 1].end - 1],
                    };
                    let windows = self.retrieve(&text, after, &mut **picker).await?;
                    view = self.view_of(&windows);
                    let (regen, _, _) = self.draft(&text, &view, o.draft_tokens).await?;
                    let kept = if o.keep_first_sentence {
                        let (words, sents, _) = self.words(&regen);
                        // A regeneration of whitespace only has no sentence: nothing is kept (DRAGIN
                        // keeps its empty first sentence), the text does not grow, the loop ends.
                        sents.first().map_or(0, |s| words[s.end - 1].end)
                    } else {
                        regen.len()
                    };
                    let visible: usize = windows.iter().map(|w| w.len()).sum();
                    let r = self.run.retrievals.last_mut().expect("retrieve pushed it");
                    r.visible_fraction = visible as f64 / self.prompt.context.len().max(1) as f64;
                    r.scores = t.scores;
                    text.extend_from_slice(&regen[..kept]);
                    if !o.keep_windows {
                        view = self.context_hidden();
                    }
                }
                (_, Strategy::Full) => text.extend_from_slice(&draft),
                _ => {
                    text.extend_from_slice(&draft);
                    view = self.context_hidden();
                }
            }
            let ended = text.last().is_some_and(|t| o.eos.contains(t));
            if text.len() > o.max_tokens || text.len() <= old || ended || self.text_done(&text) {
                break;
            }
        }
        if o.force_answer && !self.text_done(&text) {
            // DRAGIN's `regenerate_answer`: the text cut at its markers, " So the answer is",
            // `answer_tokens` more tokens without retrieval.
            let body: Vec<u32> = text.iter().copied().take_while(|t| !o.eos.contains(t)).collect();
            let decoded = self.tok.decode(&body, true);
            let cut = cut_at_markers(&decoded);
            let mut ids = if cut.len() == decoded.len() { body } else { self.encode(cut)? };
            ids.extend(self.encode(" So the answer is")?);
            let view = match strategy {
                Strategy::Full => vec![],
                _ => self.context_hidden(),
            };
            let (answer, _, _) = self.draft(&ids, &view, o.answer_tokens).await?;
            text = ids.into_iter().chain(answer).collect();
            self.run.forced = true;
        }
        self.run.tokens = text;
        Ok(())
    }

    fn encode(&self, s: &str) -> Result<Vec<u32>, LoopError> {
        Ok(self.tok.encode(s, false).map_err(|e| LoopError::Tokenizer(e.to_string()))?.ids)
    }

    /// Algorithm 2: the retrieval pass over `prompt + text` with the context visible; the
    /// picked heads' mean attention over the context at its last position, or (`query_pos`)
    /// at the positions that generate `after` (fed after `text`: the trigger token's row is the
    /// last of `text + after`, the sentence's rows are averaged one fed token at a time); the
    /// windows.
    async fn retrieve(&mut self, text: &[u32], after: &[u32], picker: &mut dyn HeadPicker) -> Result<Vec<Range<usize>>, LoopError> {
        let mean_over = self.opts.query_pos == QueryPos::SentenceMean;
        let (first, rest) = if mean_over { (text.to_vec(), after) } else { ([text, after].concat(), &[][..]) };
        let feed = self.prepare(&first, &[]).await?;
        let p = self.prompt.ids.len();
        let reasoning = picker.needs_eq2().then(|| {
            let mut m = vec![0f32; p];
            for &i in self.prompt.needle {
                m[i] = 1.0;
            }
            ReasoningRequest { needle: Tensor::from_slice(&m).view([1, p as i64]).to_device(self.model.device), sink: self.opts.sink as i64, local: self.opts.local as i64 }
        });
        let cap = CaptureRequest { hidden: vec![HiddenSite::Final], reasoning, last_rows: true, ..Default::default() };
        let out = self.session.feed(&feed, &[], cap).await?;
        self.run.passes += 1;
        let hidden = Vec::<f32>::try_from(out.hidden[0].view([-1]))?;
        let eq2 = match &out.reasoning {
            Some(r) => Vec::<f32>::try_from(r.flatten(0, -1))?,
            None => vec![],
        };
        let heads = picker.pick(&hidden, &eq2, self.run.retrievals.len()).map_err(LoopError::Heads)?;
        // The rows over the context only (its columns are the same in every row), summed over
        // the rows read: the mean over heads of the mean over rows is the mean of the rows'.
        let context = self.prompt.context.end as i64;
        let mut rows = out.last_rows.as_ref().expect("asked for").narrow(-1, 0, context);
        for &token in rest {
            let out = self.session.feed(&[token], &[], CaptureRequest { last_rows: true, ..Default::default() }).await?;
            self.run.passes += 1;
            self.run.fed += 1;
            rows += out.last_rows.as_ref().expect("asked for").narrow(-1, 0, context);
        }
        let last = p + first.len() + rest.len();
        let query = last - 1 - rest.len()..last;
        let rows = if rest.is_empty() { rows } else { rows / query.len() as f64 };
        let top = head_rows_topk(&rows, &heads, self.prompt.context.clone(), self.opts.topk)?;
        let windows = retrieval_windows_top(&top, self.prompt.context.clone(), self.opts.cluster_gap, self.opts.window, self.opts.representative);
        self.run.retrievals.push(Retrieval { at: text.len(), query, heads, windows: windows.clone(), visible_fraction: 0.0, scores: vec![] });
        Ok(windows)
    }
}
