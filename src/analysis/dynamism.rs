//! Table 1 of the paper: how dynamic the per-step retrieval-head sets are, and the static
//! (Wu et al.) retrieval heads they are compared with. Definitions follow the paper's appendix
//! as made precise in `reference-algorithms.md` §8.3; each open choice is an option.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::metrics::{entropy, jaccard, mean_std};

/// `(layer, head)`.
pub type Head = (usize, usize);

/// One generation's per-step head sets (Eq. 1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SampleHeads {
    pub steps: Vec<BTreeSet<Head>>,
    /// Tokens in the needle span (Wu's per-copy weight is 1 / this).
    pub needle_len: usize,
    /// Whether the sample passes Wu's success filter (ROUGE-1 recall of the answer > threshold).
    pub success: bool,
}

/// Jaccard with the static set at a step with no retrieval head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmptyStep {
    /// Counts as 0 (the step shares nothing with the static set). Default: an empty set is a
    /// real outcome of the step, and skipping it would inflate the overlap.
    Zero,
    Skip,
}

/// Adjacent-step Jaccard when both steps are empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BothEmpty {
    /// Not counted (default: two empty sets say nothing about turnover).
    Skip,
    One,
    Zero,
}

/// How the activation entropy pools steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntropyPool {
    /// One distribution over heads from all steps of all samples (default: the paper's ln 20
    /// baseline is only meaningful for a model-level distribution).
    Model,
    /// Entropy per sample, then the mean.
    SampleMean,
}

/// How the Jaccard overlaps are averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Average {
    /// The mean over a sample's steps (or step pairs), then the mean over samples (default: each
    /// generation counts once, whatever its length; the spread is over samples).
    PerSample,
    /// One mean over all steps (or step pairs) of all samples: long generations weigh more; the
    /// spread is over steps.
    Pooled,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DynamismOptions {
    pub empty_static: EmptyStep,
    pub both_empty: BothEmpty,
    pub entropy_pool: EntropyPool,
    pub average: Average,
}

impl Default for DynamismOptions {
    fn default() -> Self {
        Self { empty_static: EmptyStep::Zero, both_empty: BothEmpty::Skip, entropy_pool: EntropyPool::Model, average: Average::PerSample }
    }
}

/// Mean, sample standard deviation and count over samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(xs: &[f64]) -> Self {
        let (mean, std) = mean_std(xs);
        Self { mean, std, n: xs.len() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dynamism {
    /// Mean of J(H_t, S), averaged as [`DynamismOptions::average`] says.
    pub jaccard_static: Spread,
    /// Mean of J(H_t, H_{t+1}), averaged likewise.
    pub jaccard_adjacent: Spread,
    /// Activation entropy (nats) and its spread (zero-width for `EntropyPool::Model`).
    pub entropy: Spread,
    /// exp(entropy): the effective number of heads.
    pub effective_heads: f64,
    /// Mean |H_t| over all steps.
    pub heads_per_step: Spread,
    /// Distinct heads ever active.
    pub distinct_heads: usize,
    /// |H_t ∩ S| over all steps: how many static heads are retrieval heads at a step (the paper:
    /// "at most 6–10" of the top-20).
    pub static_per_step: Spread,
    /// The largest |H_t ∩ S| at any step.
    pub static_per_step_max: usize,
}

/// Table 1 statistics for one model's samples against its static set.
pub fn dynamism(samples: &[SampleHeads], static_set: &BTreeSet<Head>, opts: &DynamismOptions) -> Dynamism {
    let (mut js, mut ja) = (Vec::new(), Vec::new());
    let (mut js_steps, mut ja_pairs) = (Vec::new(), Vec::new());
    let mut ents = Vec::new();
    let mut sizes = Vec::new();
    let mut in_static: Vec<usize> = Vec::new();
    let mut pooled: BTreeMap<Head, f64> = BTreeMap::new();
    for s in samples {
        let per_step: Vec<f64> = s
            .steps
            .iter()
            .filter_map(|h| match jaccard(h, static_set) {
                Some(j) if !h.is_empty() => Some(j),
                _ if opts.empty_static == EmptyStep::Zero => Some(0.0),
                _ => None,
            })
            .collect();
        if !per_step.is_empty() {
            js.push(per_step.iter().sum::<f64>() / per_step.len() as f64);
        }
        js_steps.extend_from_slice(&per_step);
        let adj: Vec<f64> = s
            .steps
            .windows(2)
            .filter_map(|w| match jaccard(&w[0], &w[1]) {
                Some(j) => Some(j),
                None => match opts.both_empty {
                    BothEmpty::Skip => None,
                    BothEmpty::One => Some(1.0),
                    BothEmpty::Zero => Some(0.0),
                },
            })
            .collect();
        if !adj.is_empty() {
            ja.push(adj.iter().sum::<f64>() / adj.len() as f64);
        }
        ja_pairs.extend_from_slice(&adj);
        let mut counts: BTreeMap<Head, f64> = BTreeMap::new();
        for h in &s.steps {
            sizes.push(h.len() as f64);
            in_static.push(h.iter().filter(|x| static_set.contains(x)).count());
            for &head in h {
                *counts.entry(head).or_default() += 1.0;
                *pooled.entry(head).or_default() += 1.0;
            }
        }
        if !counts.is_empty() {
            ents.push(entropy(&counts.values().copied().collect::<Vec<_>>()));
        }
    }
    let entropy_spread = match opts.entropy_pool {
        EntropyPool::Model => {
            let e = entropy(&pooled.values().copied().collect::<Vec<_>>());
            Spread { mean: e, std: 0.0, n: 1 }
        }
        EntropyPool::SampleMean => Spread::of(&ents),
    };
    let (js, ja) = match opts.average {
        Average::PerSample => (js, ja),
        Average::Pooled => (js_steps, ja_pairs),
    };
    Dynamism {
        jaccard_static: Spread::of(&js),
        jaccard_adjacent: Spread::of(&ja),
        effective_heads: entropy_spread.mean.exp(),
        entropy: entropy_spread,
        heads_per_step: Spread::of(&sizes),
        distinct_heads: pooled.len(),
        static_per_step: Spread::of(&in_static.iter().map(|&c| c as f64).collect::<Vec<_>>()),
        static_per_step_max: in_static.iter().copied().max().unwrap_or(0),
    }
}

/// Wu et al.'s static retrieval score: per successful sample, a head earns 1/|needle| for every
/// step at which it copies a needle token; the score is the mean over successful samples.
/// Returns all heads seen, ranked by score (descending; ties by (layer, head)).
pub fn static_scores(samples: &[SampleHeads]) -> Vec<(Head, f64)> {
    let kept: Vec<&SampleHeads> = samples.iter().filter(|s| s.success).collect();
    let mut sum: BTreeMap<Head, f64> = BTreeMap::new();
    for s in &kept {
        let w = 1.0 / s.needle_len.max(1) as f64;
        for h in &s.steps {
            for &head in h {
                *sum.entry(head).or_default() += w;
            }
        }
    }
    let n = kept.len().max(1) as f64;
    let mut ranked: Vec<(Head, f64)> = sum.into_iter().map(|(h, s)| (h, s / n)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
}

/// Parses published head-score files (Wu et al.'s `head_score/*.json`: `"layer-head"` → list of
/// per-sample scores; the score is the mean), ranked like [`static_scores`].
pub fn parse_head_score_json(text: &str) -> Result<Vec<(Head, f64)>, String> {
    let v: BTreeMap<String, Vec<f64>> = serde_json::from_str(text).map_err(|e| format!("not a head-score object (\"layer-head\": [scores]): {e}"))?;
    let mut out = Vec::with_capacity(v.len());
    for (k, scores) in v {
        let (l, h) = k.split_once('-').ok_or_else(|| format!("key `{k}` is not layer-head"))?;
        let head = (l.parse().map_err(|_| format!("key `{k}`: bad layer"))?, h.parse().map_err(|_| format!("key `{k}`: bad head"))?);
        let mean = if scores.is_empty() { 0.0 } else { scores.iter().sum::<f64>() / scores.len() as f64 };
        out.push((head, mean));
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_and_per_sample_averages_differ_when_lengths_differ() {
        let set = |hs: &[Head]| hs.iter().copied().collect::<BTreeSet<Head>>();
        let stat = set(&[(0, 0), (0, 1)]);
        // Sample a: one step, J = 1. Sample b: three steps, J = 1/2, 0, 0 (adjacent: 0, 1).
        let a = SampleHeads { steps: vec![set(&[(0, 0), (0, 1)])], needle_len: 1, success: true };
        let b = SampleHeads { steps: vec![set(&[(0, 0)]), set(&[(1, 1)]), set(&[(1, 1)])], needle_len: 1, success: true };
        let per = dynamism(&[a.clone(), b.clone()], &stat, &DynamismOptions::default());
        assert!((per.jaccard_static.mean - (1.0 + 0.5 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(per.jaccard_static.n, 2);
        let pooled = dynamism(&[a, b], &stat, &DynamismOptions { average: Average::Pooled, ..Default::default() });
        assert!((pooled.jaccard_static.mean - 1.5 / 4.0).abs() < 1e-12);
        assert_eq!(pooled.jaccard_static.n, 4);
        // Adjacent pairs: only b has any (0 and 1): per sample 0.5 over one sample, pooled 0.5 over two.
        assert_eq!((per.jaccard_adjacent.mean, per.jaccard_adjacent.n), (0.5, 1));
        assert_eq!((pooled.jaccard_adjacent.mean, pooled.jaccard_adjacent.n), (0.5, 2));
        // Entropy and head counts do not depend on the averaging.
        assert_eq!(per.entropy, pooled.entropy);
    }

    fn s(v: &[Head]) -> BTreeSet<Head> {
        v.iter().copied().collect()
    }

    #[test]
    fn table1_by_hand() {
        let stat = s(&[(0, 0), (0, 1)]);
        let sample = SampleHeads { steps: vec![s(&[(0, 0)]), s(&[]), s(&[(0, 0), (1, 1)])], needle_len: 4, success: true };
        let d = dynamism(std::slice::from_ref(&sample), &stat, &DynamismOptions::default());
        // J with static: 1/2, 0 (empty → zero), 1/3 → mean 5/18.
        assert!((d.jaccard_static.mean - 5.0 / 18.0).abs() < 1e-12);
        // Adjacent: J({00},{}) = 0, J({}, {00,11}) = 0 → 0.
        assert_eq!(d.jaccard_adjacent.mean, 0.0);
        // Counts: (0,0)×2, (1,1)×1 → entropy of (2/3, 1/3).
        let e = -(2.0f64 / 3.0) * (2.0f64 / 3.0).ln() - (1.0f64 / 3.0) * (1.0f64 / 3.0).ln();
        assert!((d.entropy.mean - e).abs() < 1e-12);
        assert_eq!(d.distinct_heads, 2);
        let skip = dynamism(&[sample], &stat, &DynamismOptions { empty_static: EmptyStep::Skip, ..Default::default() });
        assert!((skip.jaccard_static.mean - (0.5 + 1.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn both_empty_options() {
        let sample = SampleHeads { steps: vec![s(&[]), s(&[]), s(&[(1, 0)]), s(&[(1, 0)])], needle_len: 1, success: true };
        let run = |both_empty| dynamism(std::slice::from_ref(&sample), &s(&[(1, 0)]), &DynamismOptions { both_empty, ..Default::default() }).jaccard_adjacent.mean;
        // pairs: (∅,∅), (∅,{10}) = 0, ({10},{10}) = 1
        assert!((run(BothEmpty::Skip) - 0.5).abs() < 1e-12);
        assert!((run(BothEmpty::One) - 2.0 / 3.0).abs() < 1e-12);
        assert!((run(BothEmpty::Zero) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn wu_static_scores() {
        let a = SampleHeads { steps: vec![s(&[(2, 1)]), s(&[(2, 1), (0, 3)])], needle_len: 2, success: true };
        let b = SampleHeads { steps: vec![s(&[(0, 3)])], needle_len: 4, success: true };
        let failed = SampleHeads { steps: vec![s(&[(5, 5)]); 9], needle_len: 1, success: false };
        let r = static_scores(&[a, b, failed]);
        // (2,1): (2/2 + 0)/2 = 0.5; (0,3): (1/2 + 1/4)/2 = 0.375; (5,5) never counted.
        assert_eq!(r, vec![((2, 1), 0.5), ((0, 3), 0.375)]);
    }

    #[test]
    fn head_score_json() {
        let r = parse_head_score_json(r#"{"0-1": [0.5, 1.0], "16-19": [0.9], "3-0": []}"#).unwrap();
        assert_eq!(r, vec![((16, 19), 0.9), ((0, 1), 0.75), ((3, 0), 0.0)]);
        assert!(parse_head_score_json(r#"{"x": [1]}"#).is_err());
    }
}
