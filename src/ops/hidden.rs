//! Shared by the analyses of hidden states (Figs. 4 and 8 CCA, Table 2 probe, Table 3
//! regressor): per generation step the captured hidden state and a target vector over every head,
//! the step's H_t as 0/1 or its continuous Eq. 2 scores.
use sha2::{Digest, Sha256};

use crate::analysis::probe::{Asl, Checkpoint, ProbeOptions, Split};
use crate::cache::Artifact;
use crate::engine::device;
use crate::lang::{Node, Value};
use crate::ops::args::*;
use crate::ops::inputs::*;

/// One generation: per step the hidden state and the target vector (layer-major).
pub(crate) struct Generation {
    pub(crate) id: String,
    pub(crate) hidden: Vec<Vec<f64>>,
    pub(crate) heads: Vec<Vec<f64>>,
}

/// What a step's target vector holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// 1 for each head of H_t (the trace's rule, Eq. 1 or Eq. 2), 0 elsewhere.
    Heads,
    /// Every head's Eq. 2 score S (the trace must capture `retrieval(reasoning)`).
    Scores,
}

impl Target {
    pub(crate) fn parse(s: &str) -> Self {
        if s == "scores" { Target::Scores } else { Target::Heads }
    }
}

/// [`generations_of`] with the 0/1 H_t target.
pub(crate) fn generations(a: &Artifact, name: &str) -> Result<(Vec<Generation>, usize, usize), String> {
    generations_of(a, name, Target::Heads)
}

pub(crate) fn generations_of(a: &Artifact, name: &str, target: Target) -> Result<(Vec<Generation>, usize, usize), String> {
    let info = trace_info(a)?;
    let (layers, heads) = (info.layers, info.heads);
    let mut out = Vec::new();
    for line in trace_lines(a)? {
        let mut g = Generation { id: line.id, hidden: vec![], heads: vec![] };
        for s in line.steps {
            let h = s.hidden.into_iter().next().ok_or_else(|| format!("trace `{name}` has no hidden states: add `hidden(final)` to its `capture` list"))?;
            g.hidden.push(h);
            if target == Target::Scores {
                let r = s.reasoning.ok_or_else(|| format!("trace `{name}` has no Eq. 2 scores: capture `retrieval(reasoning)` in it"))?;
                if r.len() != layers || r.iter().any(|l| l.len() != heads) {
                    return Err(format!("trace `{name}`: Eq. 2 scores of generation `{}` are not {layers} layers x {heads} heads", g.id));
                }
                g.heads.push(r.into_iter().flatten().collect());
                continue;
            }
            let mut y = vec![0.0; layers * heads];
            for (l, h) in s.heads {
                if l >= layers || h >= heads {
                    return Err(format!("trace `{name}`: head ({l}, {h}) is outside its {layers} layers x {heads} heads"));
                }
                y[l * heads + h] = 1.0;
            }
            g.heads.push(y);
        }
        out.push(g);
    }
    if out.iter().all(|g| g.hidden.is_empty()) {
        return Err(format!("trace `{name}` has no generation steps"));
    }
    Ok((out, layers, heads))
}

/// Generations in a seeded order that does not depend on their order in the trace.
pub(crate) fn shuffled(gens: &[Generation], seed: u64) -> Vec<usize> {
    let mut idx: Vec<(Vec<u8>, usize)> =
        gens.iter().enumerate().map(|(i, g)| (Sha256::digest(format!("{seed}/{}", g.id).as_bytes()).to_vec(), i)).collect();
    idx.sort();
    idx.into_iter().map(|x| x.1).collect()
}

/// Rows (x at step n, y at step n + k) of the chosen generations.
pub(crate) fn offset_rows(gens: &[Generation], which: &[usize], k: usize) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for &i in which {
        let g = &gens[i];
        for n in 0..g.hidden.len().saturating_sub(k) {
            xs.push(g.hidden[n].clone());
            ys.push(g.heads[n + k].clone());
        }
    }
    (xs, ys)
}

/// Rows `(generation, step)` of the train / validation / test splits, 70/20/10 in a seeded
/// order: whole generations (no step of a test generation is seen in training), or single steps
/// (`by_row`, ordered by a hash of seed, id and step).
pub(crate) type Rows = Vec<(usize, usize)>;
pub(crate) fn split_rows(gens: &[Generation], seed: u64, by_row: bool, name: &str) -> Result<(Rows, Rows, Rows), String> {
    let (mut tr, mut va, mut te) = (Vec::new(), Vec::new(), Vec::new());
    let mut units: Vec<(usize, Option<usize>)> = Vec::new();
    let order = shuffled(gens, seed);
    if by_row {
        let mut rows: Vec<(Vec<u8>, usize, usize)> = Vec::new();
        for &g in &order {
            for s in 0..gens[g].hidden.len() {
                rows.push((Sha256::digest(format!("{seed}/{}/{s}", gens[g].id).as_bytes()).to_vec(), g, s));
            }
        }
        rows.sort();
        units = rows.into_iter().map(|(_, g, s)| (g, Some(s))).collect();
    } else {
        units.extend(order.iter().map(|&g| (g, None)));
    }
    let total = units.len();
    if total < 3 {
        return Err(format!("the probe needs at least 3 {} to split 70/20/10; `{name}` has {total}", if by_row { "steps" } else { "generations" }));
    }
    // Every split gets at least one unit, however few there are.
    let n_train = (((total as f64) * 0.7).round() as usize).clamp(1, total - 2);
    let n_val = (((total as f64) * 0.2).round() as usize).clamp(1, total - n_train - 1);
    for (i, (g, s)) in units.into_iter().enumerate() {
        let dst = if i < n_train { &mut tr } else if i < n_train + n_val { &mut va } else { &mut te };
        match s {
            Some(s) => dst.push((g, s)),
            None => dst.extend((0..gens[g].hidden.len()).map(|s| (g, s))),
        }
    }
    Ok((tr, va, te))
}

/// Per column, the mean over runs and the sample standard deviation (0 for one run).
pub(crate) fn mean_std<const N: usize>(runs: &[[f64; N]]) -> (Vec<f64>, Vec<f64>) {
    let mean: Vec<f64> = (0..N).map(|c| runs.iter().map(|r| r[c]).sum::<f64>() / runs.len() as f64).collect();
    let std = (0..N)
        .map(|c| if runs.len() < 2 { 0.0 } else { (runs.iter().map(|r| (r[c] - mean[c]).powi(2)).sum::<f64>() / (runs.len() - 1) as f64).sqrt() })
        .collect();
    (mean, std)
}

pub(crate) fn to_f32(rows: &[Vec<f64>]) -> Vec<Vec<f32>> {
    rows.iter().map(|r| r.iter().map(|v| *v as f32).collect()).collect()
}


/// The train / validation / test splits of a probe or regressor (`split_by` and the node's seed),
/// x the hidden state and y the target vector, and the hidden size d.
pub(crate) struct ProbeData {
    pub(crate) train: Split,
    pub(crate) val: Split,
    pub(crate) test: Split,
    pub(crate) d: usize,
    pub(crate) by_row: bool,
}

pub(crate) fn probe_data(n: &Node, gens: &[Generation], name: &str) -> Result<ProbeData, String> {
    let by_row = enum_arg(n, "split_by") == Some("row");
    let (tr, va, te) = split_rows(gens, seed(n)?, by_row, name)?;
    let split = |rows: &[(usize, usize)]| {
        let x: Vec<Vec<f64>> = rows.iter().map(|&(g, s)| gens[g].hidden[s].clone()).collect();
        let y: Vec<Vec<f64>> = rows.iter().map(|&(g, s)| gens[g].heads[s].clone()).collect();
        Split::from_rows(&to_f32(&x), &to_f32(&y))
    };
    let d = gens.iter().find_map(|g| g.hidden.first()).map_or(0, Vec::len);
    Ok(ProbeData { train: split(&tr), val: split(&va), test: split(&te), d, by_row })
}

/// The MLP's training options from the arguments `probe` and `regressor` share (`layers`,
/// `scale_layers`, `activation`, `dropout`, `epochs`, `lr`, `batch_size`, `checkpoint`,
/// `device`, `precision`), for hidden size `d`.
pub(crate) fn probe_options(n: &Node, d: usize, asl: Asl, regression: bool) -> Result<ProbeOptions, String> {
    let layer_arg: Vec<usize> = req_list(n, "layers")?.iter().filter_map(Value::as_int).map(|v| v as usize).collect();
    // Scaled: w · d / 4096, rounded, at least 1 ([8192, 4096, 4096] → [2d, d, d]).
    let layers: Vec<usize> = if req_bool(n, "scale_layers")? { layer_arg.iter().map(|&w| ((w * d + 2048) / 4096).max(1)).collect() } else { layer_arg };
    let dev_req: device::DeviceRequest = req_enum(n, "device")?.parse().map_err(|e: device::DeviceError| e.to_string())?;
    Ok(ProbeOptions {
        layers,
        gelu: enum_arg(n, "activation") == Some("gelu"),
        dropout: req_f64(n, "dropout")?,
        epochs: req_int(n, "epochs")? as usize,
        lr: req_f64(n, "lr")?,
        batch_size: req_int(n, "batch_size")? as usize,
        clip_grad_norm: 1.0,
        patience: 3,
        asl,
        regression,
        checkpoint: if enum_arg(n, "checkpoint") == Some("best_val_loss") { Checkpoint::BestValLoss } else { Checkpoint::Last },
        seed: seed(n)?,
        device: device::resolve(dev_req).map_err(|e| e.to_string())?,
        double: enum_arg(n, "precision") != Some("f32"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_split_gets_a_generation_however_few_there_are() {
        for total in [3, 4, 5, 10, 100] {
            let gens: Vec<Generation> = (0..total).map(|i| Generation { id: format!("g{i}"), hidden: vec![vec![0.0]; 2], heads: vec![vec![0.0]; 2] }).collect();
            let (tr, va, te) = split_rows(&gens, 0, false, "t").unwrap();
            assert!(!tr.is_empty() && !va.is_empty() && !te.is_empty(), "{total}: {} / {} / {}", tr.len(), va.len(), te.len());
            assert_eq!(tr.len() + va.len() + te.len(), 2 * total);
        }
        // 100 generations: 70 / 20 / 10.
        let gens: Vec<Generation> = (0..100).map(|i| Generation { id: format!("g{i}"), hidden: vec![vec![0.0]], heads: vec![vec![0.0]] }).collect();
        let (tr, va, te) = split_rows(&gens, 0, false, "t").unwrap();
        assert_eq!((tr.len(), va.len(), te.len()), (70, 20, 10));
        assert!(split_rows(&gens[..2], 0, false, "t").is_err());
    }
}
