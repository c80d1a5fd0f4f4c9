//! Shared by the Section 3.4 analyses of hidden states (Fig. 4 CCA, Table 2 probe): per
//! generation step the captured hidden state and the step's Eq. 1 heads as a 0/1 vector.
use sha2::{Digest, Sha256};

use crate::cache::Artifact;
use crate::ops::inputs::*;

/// One generation: per step the hidden state and the 0/1 head vector (layer-major).
pub(crate) struct Generation {
    pub(crate) id: String,
    pub(crate) hidden: Vec<Vec<f64>>,
    pub(crate) heads: Vec<Vec<f64>>,
}

pub(crate) fn generations(a: &Artifact, name: &str) -> Result<(Vec<Generation>, usize, usize), String> {
    let info = trace_info(a)?;
    let (layers, heads) = (info.layers, info.heads);
    let mut out = Vec::new();
    for line in trace_lines(a)? {
        let mut g = Generation { id: line.id, hidden: vec![], heads: vec![] };
        for s in line.steps {
            let h = s.hidden.into_iter().next().ok_or_else(|| format!("trace `{name}` has no hidden states: add `hidden(final)` to its `capture` list"))?;
            g.hidden.push(h);
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
