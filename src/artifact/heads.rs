//! A head set's artifact: `heads.json`, one [`HeadSet`]. Every head-set constructor writes it
//! with [`HeadSet::to_bytes`] and every reader (the trace that masks the set, `head_table`, other
//! head sets) reads it with [`HeadSet::read`]; nothing looks fields up in untyped JSON.
//!
//! A set is one of five [`Choice`]s: the same heads everywhere (`fixed`), each sample its own cut
//! of a ranking (`per_sample`), drawn at trace time (`random`), found per step by the trace
//! that masks them (`dynamic`), or predicted per step by a trained MLP (`predicted`, with its
//! weights in [`PREDICTOR_FILE`]). Code that needs one fixed list asks [`HeadSet::fixed`], which
//! refuses the others with a message instead of handing back an empty list.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analysis::dynamism::Head;
use crate::cache::Artifact;

/// The head-set format. Part of every head set's key (through this file's hash) and of the file
/// itself; bump it when a field changes meaning.
pub const HEADS_FORMAT: u32 = 1;

/// The artifact's one file.
pub const FILE: &str = "heads.json";

/// A head with the score it was ranked by: `[layer, head, score]` in JSON.
pub type Ranked = (usize, usize, f64);

/// One sample's recorded trace: per step, H_t with each head's score (Eq. 1: attention weight at
/// the copied position; Eq. 2: S).
pub type RecordedSteps = Vec<Vec<(Head, f32)>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadSet {
    pub format: u32,
    pub set: Choice,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Choice {
    /// The same heads for every sample and step, with the ranking they were cut from (best
    /// first; empty when the set was given without scores).
    Fixed { heads: Vec<Head>, ranked: Vec<Ranked> },
    /// Each sample masks its own number of a ranking's first heads (`top(matched:,
    /// match_count: sample_mean)`); `heads` is the cut at the global count.
    PerSample { heads: Vec<Head>, ranked: Vec<Ranked>, per_sample: BTreeMap<String, Vec<Head>> },
    /// Drawn uniformly from `pool` when the trace runs, per sample or per (length, depth) cell.
    Random(RandomDraw),
    /// H_t, found per step by the trace that masks it (Section 3.3).
    Dynamic(DynamicSpec),
    /// Predicted per step from the hidden state by an MLP trained on a trace's Eq. 2 scores
    /// (Section 5's dynamic heads); the weights are the artifact's [`PREDICTOR_FILE`].
    Predicted(PredictorSpec),
}

/// The predictor's weights (safetensors, named as `analysis::probe::Mlp::weights`).
pub const PREDICTOR_FILE: &str = "predictor.safetensors";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictorSpec {
    /// The trace it was trained on.
    pub trace: String,
    /// Heads per step: the `top` largest predicted scores.
    pub top: usize,
    /// The MLP: input width (the model's hidden size), hidden widths, activation.
    pub d_in: usize,
    pub layers: Vec<usize>,
    pub gelu: bool,
    /// The model's shape: outputs are `layers × heads` scores, layer-major.
    pub model_layers: usize,
    pub model_heads: usize,
    /// Training rows (steps) of the train / validation / test splits.
    pub rows: [usize; 3],
    /// On the test split: the mean over heads of R² (uniform), and how often the predicted top
    /// set holds the step's true top-1 head.
    pub test_r2: f64,
    pub test_top1_hit: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomDraw {
    pub pool: Vec<Head>,
    pub count: usize,
    /// `match_count: sample_mean`: per sample id, its own count.
    pub per_sample_count: Option<BTreeMap<String, usize>>,
    /// How many heads `exclude` left out of the pool.
    pub excluded: usize,
    pub redraw: Redraw,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Redraw {
    PerSample,
    PerCell,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DynamicSpec {
    /// Mask only `k` heads of H_t per step (all when unset or fewer).
    pub k: Option<usize>,
    pub order: Order,
    pub seed: u64,
    pub post_token: PostToken,
    /// The static ranking (`order: static_rank`), best first.
    pub static_rank: Vec<Head>,
    /// `source: trace`: per sample id, per step, H_t of the unablated trace with each head's
    /// attention weight (one pass per step). `None`: found online (two passes).
    pub recorded: Option<BTreeMap<String, RecordedSteps>>,
    /// How H_t is defined: the rule of the trace the set was made from (Eq. 1 or Eq. 2).
    #[serde(default)]
    pub rule: crate::artifact::trace::HeadRule,
}

/// Which `k` heads of H_t a dynamic ablation masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    AttnWeight,
    StaticRank,
    LayerMajor,
    Random,
}

/// The token H'_t (the heads still retrieving after masking) is scored against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostToken {
    Masked,
    Clean,
}

/// Errors reading a head set.
#[derive(Debug, thiserror::Error)]
pub enum HeadsError {
    #[error("heads.json: {0}")]
    Read(String),
    #[error("heads.json has format {found}, this rhx reads format {HEADS_FORMAT}: recompute it (`rhx run --recompute`)")]
    Format { found: u32 },
    #[error("`{name}` is {what}: only a fixed head set can be used here")]
    NotFixed { name: String, what: &'static str },
}

/// One of the language's option values (`"attn_weight"`, `"per_cell"`, …) as its typed enum.
pub fn parse_option<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(value.to_string())).map_err(|e| format!("`{value}`: {e}"))
}

impl HeadSet {
    pub fn new(set: Choice) -> Self {
        HeadSet { format: HEADS_FORMAT, set }
    }

    /// A fixed set and the ranking it was cut from.
    pub fn fixed(heads: Vec<Head>, ranked: Vec<Ranked>) -> Self {
        Self::new(Choice::Fixed { heads, ranked })
    }

    pub fn read(a: &Artifact) -> Result<Self, HeadsError> {
        let bytes = a.read(FILE).map_err(|e| HeadsError::Read(e.to_string()))?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HeadsError> {
        #[derive(Deserialize)]
        struct Version {
            format: Option<u32>,
        }
        let v: Version = serde_json::from_slice(bytes).map_err(|e| HeadsError::Read(e.to_string()))?;
        match v.format {
            Some(HEADS_FORMAT) => serde_json::from_slice(bytes).map_err(|e| HeadsError::Read(e.to_string())),
            found => Err(HeadsError::Format { found: found.unwrap_or(0) }),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a head set (heads, numbers, strings) always serialises")
    }

    /// The heads of a set that is the same for every sample; `name` is the node, for the error.
    pub fn fixed_heads(&self, name: &str) -> Result<&[Head], HeadsError> {
        match &self.set {
            Choice::Fixed { heads, .. } => Ok(heads),
            other => Err(HeadsError::NotFixed { name: name.to_string(), what: other.describe() }),
        }
    }

    /// The set's ranking, best first (empty for a set given without scores).
    pub fn ranked(&self) -> &[Ranked] {
        match &self.set {
            Choice::Fixed { ranked, .. } | Choice::PerSample { ranked, .. } => ranked,
            Choice::Random(_) | Choice::Dynamic(_) | Choice::Predicted(_) => &[],
        }
    }

    /// The heads in rank order: the ranking where there is one, else the fixed list. What `top`,
    /// `exclude` and `order: static_rank` cut from.
    pub fn order(&self, name: &str) -> Result<Vec<Head>, HeadsError> {
        let ranked = self.ranked();
        if !ranked.is_empty() {
            return Ok(ranked.iter().map(|r| (r.0, r.1)).collect());
        }
        match &self.set {
            Choice::PerSample { heads, .. } => Ok(heads.clone()),
            _ => self.fixed_heads(name).map(<[Head]>::to_vec),
        }
    }
}

impl Choice {
    fn describe(&self) -> &'static str {
        match self {
            Choice::Fixed { .. } => "a fixed head set",
            Choice::PerSample { .. } => "chosen per sample",
            Choice::Random(_) => "drawn at random per sample",
            Choice::Dynamic(_) => "chosen per step",
            Choice::Predicted(_) => "predicted per step from the hidden state",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_choice_round_trips_and_a_foreign_format_is_refused() {
        let sets = [
            HeadSet::fixed(vec![(1, 2)], vec![(1, 2, 0.5), (0, 3, 0.25)]),
            HeadSet::new(Choice::PerSample { heads: vec![(1, 2)], ranked: vec![(1, 2, 0.5)], per_sample: [("a".to_string(), vec![(1, 2)])].into() }),
            HeadSet::new(Choice::Random(RandomDraw { pool: vec![(0, 0), (0, 1)], count: 1, per_sample_count: None, excluded: 0, redraw: Redraw::PerCell, seed: 7 })),
            HeadSet::new(Choice::Dynamic(DynamicSpec { k: Some(2), order: Order::StaticRank, seed: 0, post_token: PostToken::Clean, static_rank: vec![(1, 2)], recorded: None, rule: Default::default() })),
        ];
        for s in &sets {
            assert_eq!(&HeadSet::from_bytes(&s.to_bytes()).unwrap(), s);
        }
        let old = br#"{"heads": [[1, 2]], "ranked": []}"#;
        assert!(matches!(HeadSet::from_bytes(old), Err(HeadsError::Format { found: 0 })));
        assert!(HeadSet::from_bytes(br#"{"format": 1, "set": {"kind": "fixed", "heads": [[1]], "ranked": []}}"#).is_err());
    }

    #[test]
    fn only_a_fixed_set_gives_fixed_heads_and_the_order_prefers_the_ranking() {
        let f = HeadSet::fixed(vec![(1, 2)], vec![(1, 2, 0.5), (0, 3, 0.25)]);
        assert_eq!(f.fixed_heads("s").unwrap(), &[(1, 2)]);
        assert_eq!(f.order("s").unwrap(), vec![(1, 2), (0, 3)]);
        let d = HeadSet::new(Choice::Dynamic(DynamicSpec { k: None, order: Order::AttnWeight, seed: 0, post_token: PostToken::Masked, static_rank: vec![], recorded: None, rule: Default::default() }));
        let e = d.fixed_heads("dyn").unwrap_err().to_string();
        assert!(e.contains("`dyn` is chosen per step"), "{e}");
        assert_eq!(parse_option::<Order>("layer_major").unwrap(), Order::LayerMajor);
        assert!(parse_option::<Order>("sideways").is_err());
    }
}
