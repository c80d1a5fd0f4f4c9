//! Needle-in-a-haystack prompts, the paper's protocol (Appendix A.1; Kamradt / Wu et al.):
//! the haystack is tokenised, repeated if too short, cut to `L` tokens; the needle
//! "The magic word is {uuid}." is inserted at depth `d` after backing up to the end of a
//! sentence (a token whose text ends with "."); the prompt is a system message and a
//! Context / Question / Instruction user message, rendered with the model's chat template.
//!
//! UUIDs come from the seed through Python's Mersenne Twister (`random.Random(seed)`,
//! `getrandbits(128)`, `uuid.UUID(int=…, version=4)`), so a Python reference implementation with
//! the same seed draws the same needles — `tests/niah.rs` reproduces the committed prompts of
//! `scripts/fixtures/fx_niah.py` byte for byte.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::chat::ChatMessage;
use crate::support::pyrandom::PyRandom;
use crate::support::pyrepr::py_float_repr;
use crate::engine::tokenizer::Tokenizer;

pub const SYSTEM: &str = "You are a helpful AI bot that answers questions for a user. Keep your response short and direct.";
pub const QUESTION: &str = "What is the magic word?";
pub const USER_TEMPLATE: &str = "Context:\n{haystack}\n\nQuestion:\n{question}\n\nInstruction:\nDon't give information outside the document or repeat your findings.";
pub const NEEDLE_TEMPLATE: &str = "The magic word is {uuid}.";

/// The public-domain haystack bundled with rhx (Project Gutenberg #11).
pub const ALICE: &str = include_str!("../../experiments/haystack/alice_in_wonderland_pg11.txt");

#[derive(Debug, thiserror::Error)]
pub enum NiahError {
    #[error("haystack directory {0} has no .txt files")]
    EmptyDir(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("haystack `{0}` tokenises to nothing")]
    EmptyHaystack(String),
    #[error("depth {0} is outside [0, 1]")]
    Depth(f64),
    #[error("needle template must contain {{uuid}}: `{0}`")]
    NeedleTemplate(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Haystack {
    /// The bundled Alice text, cut to the book (no Gutenberg header/footer/licence).
    Alice,
    /// All `*.txt` files of a directory, sorted by name, concatenated.
    Dir(PathBuf),
}

impl Haystack {
    pub fn text(&self) -> Result<String, NiahError> {
        match self {
            Haystack::Alice => Ok(alice_book_text(ALICE)),
            Haystack::Dir(dir) => {
                let rd = std::fs::read_dir(dir).map_err(|source| NiahError::Io { path: dir.clone(), source })?;
                let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "txt")).collect();
                files.sort();
                if files.is_empty() {
                    return Err(NiahError::EmptyDir(dir.clone()));
                }
                let mut text = String::new();
                for f in files {
                    text.push_str(&std::fs::read_to_string(&f).map_err(|source| NiahError::Io { path: f.clone(), source })?);
                }
                Ok(text)
            }
        }
    }
}

/// The book text of the Gutenberg file: BOM dropped, CRLF → LF, from the line starting with
/// "CHAPTER I." to before "End of Project Gutenberg's", trimmed.
pub fn alice_book_text(raw: &str) -> String {
    let raw = raw.strip_prefix('\u{feff}').unwrap_or(raw).replace("\r\n", "\n");
    let lines: Vec<&str> = raw.split('\n').collect();
    let start = lines.iter().position(|l| l.starts_with("CHAPTER I.")).unwrap_or(0);
    let end = lines.iter().position(|l| l.starts_with("End of Project Gutenberg's")).unwrap_or(lines.len());
    lines[start..end].join("\n").trim().to_string()
}

/// One NIAH cell to generate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub length: usize,
    pub depth: f64,
    pub run: usize,
}

/// Every (length, depth, run) of a grid, in the order the UUIDs are drawn.
pub fn grid(lengths: &[usize], depths: &[f64], runs: usize) -> Vec<Cell> {
    let mut cells = Vec::new();
    for &length in lengths {
        for &depth in depths {
            for run in 0..runs {
                cells.push(Cell { length, depth, run });
            }
        }
    }
    cells
}

/// `runs` cells per length, each at a depth drawn uniformly from [0, 1) (Fig. 3: "random depth").
/// The draws use their own stream (`seed` + 1), so the UUID stream of `seed` is the same as a
/// grid's.
pub fn random_depths(lengths: &[usize], runs: usize, seed: u64) -> Vec<Cell> {
    let mut rng = PyRandom::new(seed.wrapping_add(1));
    let mut cells = Vec::new();
    for &length in lengths {
        for run in 0..runs {
            // Rounded to 4 places so ids and reports stay readable.
            let depth = (rng.random() * 1e4).round() / 1e4;
            cells.push(Cell { length, depth, run });
        }
    }
    cells
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NiahSample {
    pub id: String,
    pub messages: Vec<ChatMessage>,
    pub needle: String,
    pub answer: String,
    pub haystack_tokens: usize,
    pub depth: f64,
    pub run: usize,
    /// Token index (in the haystack) where the needle went, after backing up to a sentence end.
    pub insert_token: usize,
}


/// What a NIAH length measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthMode {
    /// Kamradt / Wu: the context (haystack + needle) is `L − 200` tokens, the 200 left for the
    /// prompt around it.
    Kamradt,
    /// `L` haystack tokens, the needle added on top.
    HaystackExact,
}

/// Where the needle goes at depth 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullDepth {
    /// Backs up to a sentence end like every other depth (rhx ≤ 0.1's behaviour): the needle may
    /// land a sentence or more before the end.
    BackUp,
    /// After the last haystack token, as Kamradt's tester does (`depth_percent == 100`: "throw it
    /// at the end"); the back-up applies to inner depths only.
    End,
}

/// How a prompt is laid out: what a length measures, where depth 1.0 goes, and where in the
/// haystack text the context starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    pub length_mode: LengthMode,
    pub full_depth: FullDepth,
    /// Fraction of the haystack's characters to skip before the context starts (moved forward
    /// to the next paragraph; the skipped text follows at the end). 0 = from the beginning, as
    /// Kamradt; another value gives prompts with other text, e.g. for a detection set apart
    /// from the evaluation set.
    pub start: f64,
}

impl Default for Layout {
    fn default() -> Self {
        Self { length_mode: LengthMode::Kamradt, full_depth: FullDepth::End, start: 0.0 }
    }
}

/// `text` read from `start` (a fraction of its characters, moved forward to just after the next
/// blank line, so the context begins with a paragraph), the part before it appended after a
/// blank line. `start` 0 (or no blank line after it) leaves the text as it is.
pub fn rotate(text: &str, start: f64) -> String {
    if start <= 0.0 {
        return text.to_string();
    }
    let mut at = ((text.len() as f64) * start.min(1.0)) as usize;
    while at < text.len() && !text.is_char_boundary(at) {
        at += 1;
    }
    match text[at..].find("\n\n") {
        Some(i) => {
            let cut = at + i + 2;
            format!("{}\n\n{}", text[cut..].trim_start(), &text[..cut].trim_end())
        }
        None => text.to_string(),
    }
}

/// The texts around the haystack (paper A.1 by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptTexts {
    pub system: String,
    pub question: String,
    /// With `{haystack}` and `{question}` placeholders.
    pub user_template: String,
    /// With a `{uuid}` placeholder.
    pub needle: String,
}

impl Default for PromptTexts {
    fn default() -> Self {
        Self { system: SYSTEM.into(), question: QUESTION.into(), user_template: USER_TEMPLATE.into(), needle: NEEDLE_TEMPLATE.into() }
    }
}

/// Builds the prompts of `cells` (UUIDs drawn in that order from `seed`) with the paper's texts
/// and `L` haystack tokens per cell.
pub fn build(tok: &Tokenizer, haystack: &Haystack, cells: &[Cell], seed: u64, needle_template: &str) -> Result<Vec<NiahSample>, NiahError> {
    let texts = PromptTexts { needle: needle_template.to_string(), ..Default::default() };
    build_with(tok, haystack, cells, seed, &texts, Layout { length_mode: LengthMode::HaystackExact, full_depth: FullDepth::BackUp, start: 0.0 })
}

/// [`build`] with explicit texts and length semantics.
pub fn build_with(tok: &Tokenizer, haystack: &Haystack, cells: &[Cell], seed: u64, texts: &PromptTexts, layout: Layout) -> Result<Vec<NiahSample>, NiahError> {
    let Layout { length_mode, full_depth, start } = layout;
    let needle_template = texts.needle.as_str();
    if !needle_template.contains("{uuid}") {
        return Err(NiahError::NeedleTemplate(needle_template.to_string()));
    }
    let text = rotate(&haystack.text()?, start);
    let encode = |t: &str| tok.encode_ids(t, false).map_err(|e| NiahError::Tokenizer(e.to_string()));
    let mut hay = encode(&text)?;
    if hay.is_empty() {
        return Err(NiahError::EmptyHaystack(format!("{haystack:?}")));
    }
    let mut rng = PyRandom::new(seed);
    let mut out = Vec::with_capacity(cells.len());
    for cell in cells {
        if !(0.0..=1.0).contains(&cell.depth) {
            return Err(NiahError::Depth(cell.depth));
        }
        // Too short: repeat the text (joined by a blank line) and re-tokenise.
        let uuid = rng.uuid4();
        let needle = needle_template.replace("{uuid}", &uuid);
        let n_hay = match length_mode {
            LengthMode::HaystackExact => cell.length,
            LengthMode::Kamradt => cell.length.saturating_sub(200).saturating_sub(encode(&needle)?.len()),
        };
        let mut reps = text.clone();
        while hay.len() < n_hay {
            reps = format!("{reps}\n\n{text}");
            hay = encode(&reps)?;
        }
        let ids = &hay[..n_hay];
        let p = insertion_point(n_hay, cell.depth, full_depth, |i| tok.decode_exact(&ids[i..i + 1]).ends_with('.'));
        let context = format!("{} {}{}", tok.decode_exact(&ids[..p]), needle, tok.decode_exact(&ids[p..]));
        let user = texts.user_template.replace("{question}", &texts.question).replace("{haystack}", &context);
        out.push(NiahSample {
            id: format!("niah-L{}-d{}-r{}", cell.length, py_float_repr(cell.depth), cell.run),
            messages: vec![ChatMessage::system(texts.system.clone()), ChatMessage::user(user)],
            needle,
            answer: uuid,
            haystack_tokens: cell.length,
            depth: cell.depth,
            run: cell.run,
            insert_token: p,
        });
    }
    Ok(out)
}

/// The haystack token before which the needle goes: `depth` of the way in, backed up to just
/// after a token that ends a sentence (`ends_sentence(i)`: token `i` ends with "."), or the end
/// itself at depth 1.0 with [`FullDepth::End`].
pub fn insertion_point(n_hay: usize, depth: f64, full_depth: FullDepth, ends_sentence: impl Fn(usize) -> bool) -> usize {
    if depth >= 1.0 && full_depth == FullDepth::End {
        return n_hay;
    }
    let mut p = (n_hay as f64 * depth) as usize;
    while p > 0 && !ends_sentence(p - 1) {
        p -= 1;
    }
    p
}

/// Resolves a haystack argument: `alice` (bundled) or a directory.
pub fn haystack_from_arg(arg: &str) -> Haystack {
    if arg == "alice" || arg == "builtin.alice" {
        Haystack::Alice
    } else {
        Haystack::Dir(Path::new(arg).to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_one_goes_to_the_end_with_full_depth_end_and_backs_up_otherwise() {
        // Sentences end at tokens 3 and 7 of 10.
        let ends = |i: usize| i == 3 || i == 7;
        assert_eq!(insertion_point(10, 1.0, FullDepth::End, ends), 10);
        assert_eq!(insertion_point(10, 1.0, FullDepth::BackUp, ends), 8);
        // Inner depths back up either way; depth 0 is the start.
        for fd in [FullDepth::End, FullDepth::BackUp] {
            assert_eq!(insertion_point(10, 0.6, fd, ends), 4);
            assert_eq!(insertion_point(10, 0.3, fd, ends), 0);
            assert_eq!(insertion_point(10, 0.0, fd, ends), 0);
        }
    }

    #[test]
    fn start_rotates_the_text_to_the_next_paragraph() {
        let t = "one a.\n\ntwo b.\n\nthree c.";
        assert_eq!(rotate(t, 0.0), t);
        // 0.3 of 24 bytes is byte 7, past the first paragraph break: the context starts after the next.
        assert_eq!(rotate(t, 0.3), "three c.\n\none a.\n\ntwo b.");
        assert_eq!(rotate(t, 0.1), "two b.\n\nthree c.\n\none a.");
        // No paragraph after the point: unchanged.
        assert_eq!(rotate(t, 0.9), t);
    }
}
