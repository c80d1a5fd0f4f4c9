//! `heads … = predicted(…)`: Section 5's dynamic heads — an MLP trained, as Table 3's regressor
//! (Section 4.2), to predict every head's Eq. 2 score from the final hidden state; at a retrieval
//! the heads of the `top` largest predictions retrieve (`rag(strategy: dynamic, heads: …)`). The
//! artifact is `heads.json` (a `predicted` choice: the MLP's shape and its test-split quality) and
//! the weights in `predictor.safetensors`.
use tch::{Kind, Tensor};

use crate::analysis::probe::{self, Asl, Mlp};
use crate::analysis::regression::RegressionMetrics;
use crate::artifact::heads::{Choice, HeadSet, PredictorSpec, FILE, PREDICTOR_FILE};
use crate::lang::schema::{decl, enm, float_min, float_range, int_min, int_range, list, FuncSpec, Ty};
use crate::lang::Kind as NodeKind;
use crate::ops::args::*;
use crate::ops::hidden::{generations_of, probe_data, probe_options, ProbeData, Target};
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::run::Ctx;

pub const OP: OpDef = OpDef { kind: NodeKind::Heads, name: "predicted", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use NodeKind::*;
    FuncSpec::new(
        "predicted",
        "Heads predicted per step from the hidden state (Section 5's dynamic heads): an MLP trained like Table 3's regressor on a trace's Eq. 2 scores; a retrieval takes the `top` largest predictions.",
    )
    .pos("trace", decl(Trace), "trace with retrieval(reasoning) and hidden(final)")
    .def("top", int_min(1), "5", "heads per step (the paper's Section 5: the top-5)")
    .def("layers", list(int_min(1)), "[8192, 4096, 4096]", "probe.layers: hidden layer widths (the paper's A.5 probe shape)")
    .def("scale_layers", Ty::Bool, "false", "probe.scale_layers: multiply the widths by d/4096 ([2d, d, d] for the default widths)")
    .def("activation", enm(&["relu", "gelu"]), "relu", "probe.activation")
    .def("dropout", float_range(0.0, 0.99), "0.1", "dropout after each hidden layer")
    .def("split_by", enm(&["generation", "row"]), "generation", "probe.split_by: 70/20/10 over generations or over steps (the test split measures the predictor)")
    .def("epochs", int_range(1, 100_000), "100", "training epochs")
    .def("lr", float_min(0.0), "0.0003", "Adam learning rate")
    .def("batch_size", int_min(1), "128", "training batch size")
    .def("checkpoint", enm(&["last", "best_val_loss"]), "last", "probe.checkpoint: weights after the last epoch or at the lowest validation loss")
    .def("device", Ty::Device, "auto", "where to train: auto (CUDA if present), cpu, cuda or \"cuda:N\"")
    .def("precision", enm(&["f64", "f32"]), "f64", "probe.precision: f64 reproduces across CPUs")
    .seed("seed of the split and initialisation")
}

fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let (a, name) = input(inputs, n, "trace")?;
    let (gens, model_layers, model_heads) = generations_of(a, &name, Target::Scores)?;
    let ProbeData { train, val, test, d, .. } = probe_data(n, &gens, &name)?;
    let opts = probe_options(n, d, Asl::default(), true)?;
    let top = req_int(n, "top")? as usize;
    let (out, _log, weights) = probe::train_model(&train, &val, &[&test], &opts).map_err(|e| e.to_string())?;
    let heads = model_layers * model_heads;
    let pred = Vec::<f64>::try_from(out[0].to_kind(Kind::Double).flatten(0, -1)).map_err(|e| e.to_string())?;
    let truth = Vec::<f64>::try_from(test.y.to_kind(Kind::Double).flatten(0, -1)).map_err(|e| e.to_string())?;
    let metrics = RegressionMetrics::of(&pred, &truth, heads);
    // How often the predicted top set holds the step's true strongest head.
    let rows = truth.len() / heads.max(1);
    let hits = (0..rows)
        .filter(|&r| {
            let (p, t) = (&pred[r * heads..(r + 1) * heads], &truth[r * heads..(r + 1) * heads]);
            let best = (0..heads).max_by(|&a, &b| t[a].total_cmp(&t[b]).then(b.cmp(&a))).unwrap_or(0);
            top_indices(p, top).contains(&best)
        })
        .count();
    let spec = PredictorSpec {
        trace: name,
        top,
        d_in: d,
        layers: opts.layers.clone(),
        gelu: opts.gelu,
        model_layers,
        model_heads,
        rows: [train.rows() as usize, val.rows() as usize, test.rows() as usize],
        test_r2: metrics.r2_uniform,
        test_top1_hit: hits as f64 / rows.max(1) as f64,
    };
    // What `rag` will load must be the trained weights, bit for bit. (Not its predictions:
    // training may run on the GPU and `rag` predicts on the CPU, in another summation order.)
    let bytes = save(&weights)?;
    let stored = load(&spec, &bytes)?;
    let same = stored.weights.len() == weights.len()
        && weights.iter().all(|(k, w)| stored.weights.iter().any(|(k2, w2)| k == k2 && w2.kind() == w.kind() && w2.size() == w.size() && w2.equal(w)));
    if !same {
        return Err(format!("the stored predictor ({PREDICTOR_FILE}) does not hold the trained weights (a bug in rhx)"));
    }
    Ok(vec![(FILE.into(), HeadSet::new(Choice::Predicted(spec)).to_bytes()), (PREDICTOR_FILE.into(), bytes)])
}

/// The `k` largest entries of `scores` (ties to the lower index), in rank order.
pub(crate) fn top_indices(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// The weights as safetensors (f64 or f32, as trained).
fn save(weights: &[(String, Tensor)]) -> Result<Vec<u8>, String> {
    let data: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = weights
        .iter()
        .map(|(k, t)| {
            let shape: Vec<usize> = t.size().iter().map(|&s| s as usize).collect();
            let (dtype, bytes) = match t.kind() {
                Kind::Double => (safetensors::Dtype::F64, Vec::<f64>::try_from(t.flatten(0, -1)).map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect())),
                _ => (safetensors::Dtype::F32, Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect())),
            };
            bytes.map(|b| (k.clone(), dtype, shape, b)).map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let views = data
        .iter()
        .map(|(k, dtype, shape, bytes)| safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).map(|v| (k.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    safetensors::tensor::serialize(views, None).map_err(|e| e.to_string())
}

/// The MLP of a `predicted` head set, from its artifact's spec and weights.
pub(crate) fn load(spec: &PredictorSpec, bytes: &[u8]) -> Result<Mlp, String> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| format!("{PREDICTOR_FILE}: {e}"))?;
    let mut weights = Vec::new();
    for (k, v) in st.tensors() {
        let shape: Vec<i64> = v.shape().iter().map(|&s| s as i64).collect();
        let t = match v.dtype() {
            safetensors::Dtype::F64 => Tensor::from_slice(&v.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect::<Vec<_>>()),
            safetensors::Dtype::F32 => Tensor::from_slice(&v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect::<Vec<_>>()),
            other => return Err(format!("{PREDICTOR_FILE}: weight `{k}` is {other:?}, not f32 or f64")),
        };
        weights.push((k, t.view(shape.as_slice())));
    }
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Mlp { d_in: spec.d_in as i64, layers: spec.layers.clone(), d_out: (spec.model_layers * spec.model_heads) as i64, gelu: spec.gelu, weights })
}
