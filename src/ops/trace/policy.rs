//! Interventions a trace applies per sample or per step: fixed head sets that differ per sample
//! (random baselines, matched counts) and the dynamic ablation policy (Section 3.3).
use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::artifact::heads::{Choice, Order, RandomDraw, RecordedSteps, Redraw};
use crate::artifact::trace::HeadRule;
use crate::analysis::reasoning::reasoning_heads;

use crate::analysis::dynamism::Head;
use crate::support::pyrandom::PyRandom;
use crate::engine::capture::retrieval_heads;
use crate::engine::generate::{Prompt, StepPolicy, StepRecord};
use crate::engine::model::MaskMode;

/// Fixed head sets that differ per sample: a random baseline (redrawn per sample or per cell) or
/// a ranking cut at each sample's own matched count.
pub(crate) enum PromptSets {
    Random { draw: RandomDraw, name: String },
    PerSample { sets: BTreeMap<String, Vec<Head>>, name: String },
}

impl PromptSets {
    /// The per-sample sets of a head set, `None` for a set that is the same for every sample.
    pub(crate) fn of(set: &Choice, name: &str) -> Option<Self> {
        match set {
            Choice::Random(draw) => Some(PromptSets::Random { draw: draw.clone(), name: name.to_string() }),
            Choice::PerSample { per_sample, .. } => Some(PromptSets::PerSample { sets: per_sample.clone(), name: name.to_string() }),
            Choice::Fixed { .. } | Choice::Dynamic(_) | Choice::Predicted(_) => None,
        }
    }

    pub(crate) fn heads_for(&self, id: &str, meta: &Json) -> Result<Vec<Head>, String> {
        let missing = |name: &str| format!("sample `{id}` is not in the trace that `{name}` is matched to: match it to a trace of the same dataset");
        match self {
            PromptSets::PerSample { sets, name } => sets.get(id).cloned().ok_or_else(|| missing(name)),
            PromptSets::Random { draw: RandomDraw { pool, count, per_sample_count, redraw, seed, .. }, name } => {
                let count = match per_sample_count {
                    Some(m) => *m.get(id).ok_or_else(|| missing(name))?,
                    None => *count,
                };
                // One stream per sample (or per (length, depth) cell), derived from the seed, so a
                // draw does not depend on batch order.
                let key = if *redraw == Redraw::PerCell { format!("{seed}/{}/{}", meta["length"], meta["depth"]) } else { format!("{seed}/{id}") };
                use sha2::Digest;
                let d = sha2::Sha256::digest(key.as_bytes());
                let mut rng = PyRandom::new(u64::from_le_bytes(d[..8].try_into().unwrap()));
                let mut p = pool.clone();
                for i in 0..count.min(p.len()) {
                    let j = i + (rng.getrandbits_128() % (p.len() - i) as u128) as usize;
                    p.swap(i, j);
                }
                let mut set = p[..count.min(p.len())].to_vec();
                set.sort();
                Ok(set)
            }
        }
    }
}

/// H_t of one step by the trace's rule, each head with the score it is ranked by: under Eq. 1
/// its attention weight at the copied position, under Eq. 2 its reasoning score S.
pub(crate) fn step_heads(rule: &HeadRule, s: &StepRecord, n_heads: usize, ids: &[u32], needle: &[bool]) -> Vec<(Head, f32)> {
    match *rule {
        HeadRule::CopyPaste => retrieval_heads(s, n_heads, ids, needle).into_iter().map(|h| (h, s.argmax_weight.get(h.0 * n_heads + h.1).copied().unwrap_or(0.0))).collect(),
        HeadRule::Reasoning { threshold, top, .. } => reasoning_heads(&s.reasoning, n_heads, threshold, top),
    }
}

/// Per-step dynamic ablation (Sections 3.3 and 4.2): the unmasked pass of a step gives H_t (Eq. 1
/// with that pass's token, or Eq. 2 on that pass's attention); `k` of them (all if fewer or `k`
/// unset), chosen by `order`, are masked in the committed pass.
pub(crate) struct DynamicPolicy {
    pub(crate) k: Option<usize>,
    /// How H_t is found on the unmasked pass (Eq. 1 or Eq. 2, the base trace's rule).
    pub(crate) rule: HeadRule,
    pub(crate) order: Order,
    /// Rank of each head in the static ranking (`order: static_rank`).
    pub(crate) static_rank: BTreeMap<Head, usize>,
    pub(crate) mode: MaskMode,
    pub(crate) n_heads: usize,
    /// Needle mask per sequence of the batch.
    pub(crate) needles: Vec<Vec<bool>>,
    pub(crate) rng: PyRandom,
    /// `source: trace`: per sequence of the batch, per step, the recorded H_t with weights.
    pub(crate) recorded: Option<Vec<RecordedSteps>>,
}

impl StepPolicy for DynamicPolicy {
    fn heads_to_mask(&mut self, seq: usize, step: usize, unmasked: &crate::engine::generate::StepRecord, prompt: &Prompt) -> Vec<(usize, usize)> {
        let (mut h, weights): (Vec<Head>, BTreeMap<Head, f32>) = match &self.recorded {
            Some(r) => {
                let at: Vec<(Head, f32)> = r[seq].get(step).cloned().unwrap_or_default();
                (at.iter().map(|x| x.0).collect(), at.into_iter().collect())
            }
            None => {
                let at = step_heads(&self.rule, unmasked, self.n_heads, &prompt.ids, &self.needles[seq]);
                (at.iter().map(|x| x.0).collect(), at.into_iter().collect())
            }
        };
        let w = |x: &Head| weights.get(x).copied().unwrap_or(0.0);
        match self.order {
            // Largest score first (Eq. 1: attention weight at the copied position; Eq. 2: S);
            // ties by (layer, head).
            Order::AttnWeight => h.sort_by(|a, b| w(b).total_cmp(&w(a)).then(a.cmp(b))),
            // Best static rank first; heads outside the ranking after them, by attention weight.
            Order::StaticRank => h.sort_by(|a, b| {
                let r = |x: &(usize, usize)| self.static_rank.get(x).copied().unwrap_or(usize::MAX);
                r(a).cmp(&r(b)).then(w(b).total_cmp(&w(a))).then(a.cmp(b))
            }),
            Order::Random => {
                // Fisher–Yates with the seeded stream.
                for i in (1..h.len()).rev() {
                    let j = (self.rng.getrandbits_128() % (i as u128 + 1)) as usize;
                    h.swap(i, j);
                }
            }
            Order::LayerMajor => h.sort(),
        }
        if let Some(k) = self.k {
            h.truncate(k);
        }
        h
    }

    fn mode(&self) -> MaskMode {
        self.mode
    }

    /// Recorded sets are known before the step, and `k: 0` masks nothing: one pass suffices.
    fn needs_unmasked_pass(&self) -> bool {
        self.recorded.is_none() && self.k != Some(0)
    }
}
