//! Section 3.4 analyses of a trace's hidden states: the temporal-offset CCA (Fig. 4) and the
//! MLP probe with its baselines (Table 2). Both read, per generation step, the captured hidden
//! state (`hidden(final)`) and the step's Eq. 1 head set as a 0/1 vector over every head.
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use tch::{Kind, Tensor};

use super::ops::{enum_arg, heads_of, input, int_arg, read_json, read_jsonl, Files};
use crate::analysis::cca::{self, CcaOptions, Pca, PcaFit, TopK};
use crate::analysis::dynamism::Head;
use crate::analysis::metrics::{average_precision, best_f1_threshold, prf_at, Prf};
use crate::analysis::probe::{self, Asl, Checkpoint, ProbeOptions, Split};
use crate::cache::Artifact;
use crate::engine::device;
use crate::lang::{Node, Value};
use crate::plan::Step;
use crate::report::{Cell as RCell, Column, Figure, LinePlot, Row, Series, Table};

/// One generation: per step the hidden state and the 0/1 head vector (layer-major).
struct Generation {
    id: String,
    hidden: Vec<Vec<f64>>,
    heads: Vec<Vec<f64>>,
}

fn generations(a: &Artifact, name: &str) -> Result<(Vec<Generation>, usize, usize), String> {
    let info = read_json(a, "trace_info.json")?;
    let (layers, heads) = (info["layers"].as_u64().unwrap_or(0) as usize, info["heads"].as_u64().unwrap_or(0) as usize);
    let mut out = Vec::new();
    for line in read_jsonl(a, "trace.jsonl")? {
        let steps = line["steps"].as_array().cloned().unwrap_or_default();
        let mut g = Generation { id: line["id"].as_str().unwrap_or("").to_string(), hidden: vec![], heads: vec![] };
        for s in steps {
            let h = s["hidden"].get(0).and_then(Json::as_array).ok_or_else(|| {
                format!("trace `{name}` has no hidden states: add `hidden(final)` to its `capture` list")
            })?;
            g.hidden.push(h.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect());
            let set: Vec<Head> = serde_json::from_value(s["heads"].clone()).map_err(|e| e.to_string())?;
            let mut y = vec![0.0; layers * heads];
            for (l, h) in set {
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
fn shuffled(gens: &[Generation], seed: u64) -> Vec<usize> {
    let mut idx: Vec<(Vec<u8>, usize)> =
        gens.iter().enumerate().map(|(i, g)| (Sha256::digest(format!("{seed}/{}", g.id).as_bytes()).to_vec(), i)).collect();
    idx.sort();
    idx.into_iter().map(|x| x.1).collect()
}

fn float_arg(n: &Node, name: &str) -> Option<f64> {
    n.arg(name).and_then(Value::as_f64)
}

/// Rows (x at step n, y at step n + k) of the chosen generations.
fn offset_rows(gens: &[Generation], which: &[usize], k: usize) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
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

/// `figure cca(trace)`: canonical correlations for every offset k, in-sample (as the paper) and
/// on held-out generations.
pub(super) fn cca_figure(step: &Step, inputs: &BTreeMap<String, &Artifact>) -> Result<Files, String> {
    let n = &step.node;
    let (a, name) = input(inputs, n, "trace")?;
    let (gens, _, _) = generations(a, &name)?;
    let offsets: Vec<usize> = n.arg("offsets").and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(Value::as_int).map(|k| k as usize).collect();
    let opts = CcaOptions {
        x_variance: float_arg(n, "x_variance").unwrap_or(0.95),
        y_variance: float_arg(n, "y_variance").unwrap_or(0.99),
        components: int_arg(n, "components").unwrap_or(50) as usize,
        topk: if enum_arg(n, "topk_mode") == Some("first_k") { TopK::FirstK } else { TopK::LargestK },
        pca_fit: if enum_arg(n, "pca_fit") == Some("once") { PcaFit::Once } else { PcaFit::PerOffset },
        solver: if enum_arg(n, "solver") == Some("nipals_sklearn") { cca::Solver::NipalsSklearn { max_iter: 500, tol: 1e-6 } } else { cca::Solver::SvdExact },
    };
    let evals: Vec<&str> = n.arg("eval").and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(Value::as_str).collect();
    let held_out = evals.contains(&"held_out");
    let seed = int_arg(n, "seed").unwrap_or(0) as u64;
    let order = shuffled(&gens, seed);
    let n_test = ((gens.len() as f64) * float_arg(n, "held_out_fraction").unwrap_or(0.2)).round().max(1.0) as usize;
    if held_out && gens.len() < 2 {
        return Err(format!("held-out CCA needs at least 2 generations; `{name}` has {}", gens.len()));
    }
    let (test, train) = order.split_at(n_test.min(gens.len().saturating_sub(1)));
    let everyone: Vec<usize> = (0..gens.len()).collect();
    let tensors = |(x, y): (Vec<Vec<f64>>, Vec<Vec<f64>>)| (cca::matrix(&x), cca::matrix(&y));
    // Scores are min–max scaled on the rows a fit sees (0/1 Eq. 1 vectors stay 0/1; constant
    // columns become 0).
    let once = |which: &[usize]| {
        let (x, y) = tensors(offset_rows(&gens, which, 0));
        (Pca::fit(&x, opts.x_variance), Pca::fit(&cca::min_max(&y), opts.y_variance))
    };
    let once_all = (opts.pca_fit == PcaFit::Once).then(|| once(&everyone));
    let once_train = (opts.pca_fit == PcaFit::Once && held_out).then(|| once(train));
    let mut per_k = Vec::new();
    for &k in &offsets {
        let (x, y) = tensors(offset_rows(&gens, &everyone, k));
        if x.size()[0] < 3 {
            per_k.push(json!({"k": k, "rows": x.size()[0], "skipped": "fewer than 3 rows"}));
            continue;
        }
        let fit = cca::fit(&x, &cca::min_max(&y), once_all.as_ref().map(|(a, b)| (a, b)), None, &opts);
        let mut entry = json!({"k": k, "rows": fit.rows, "kx": fit.kx, "ky": fit.ky, "in_sample": fit.in_sample,
            "top1": cca::top_mean(&fit.in_sample, 1, opts.topk), "top10": cca::top_mean(&fit.in_sample, 10, opts.topk), "top50": cca::top_mean(&fit.in_sample, 50, opts.topk)});
        if held_out {
            let (xtr, ytr) = tensors(offset_rows(&gens, train, k));
            let (xte, yte) = tensors(offset_rows(&gens, test, k));
            if xtr.size()[0] >= 3 && xte.size()[0] >= 3 {
                // Scale test scores with the training rows' ranges.
                let scale = cca::MinMax::fit(&ytr);
                let f = cca::fit(&xtr, &scale.apply(&ytr), once_train.as_ref().map(|(a, b)| (a, b)), Some((&xte, &scale.apply(&yte))), &opts);
                let h = f.held_out.unwrap_or_default();
                entry["held_out"] = json!({"train_rows": f.rows, "test_rows": xte.size()[0], "kx": f.kx, "ky": f.ky, "correlations": h,
                    "top1": cca::top_mean(&h, 1, opts.topk), "top10": cca::top_mean(&h, 10, opts.topk), "top50": cca::top_mean(&h, 50, opts.topk)});
            }
        }
        per_k.push(entry);
    }
    let series_of = |path: &[&str]| -> Vec<f64> {
        per_k.iter().map(|e| path.iter().fold(e, |v, p| &v[*p]).as_f64().unwrap_or(f64::NAN)).collect()
    };
    let x: Vec<f64> = per_k.iter().map(|e| e["k"].as_f64().unwrap_or(f64::NAN)).collect();
    let mut series = vec![
        Series::new("in-sample top-1", x.clone(), series_of(&["top1"])),
        Series::new("in-sample mean top-10", x.clone(), series_of(&["top10"])),
        Series::new("in-sample mean top-50", x.clone(), series_of(&["top50"])),
    ];
    if held_out {
        series.push(Series::new("held-out top-1", x.clone(), series_of(&["held_out", "top1"])));
        series.push(Series::new("held-out mean top-10", x.clone(), series_of(&["held_out", "top10"])));
    }
    let k0 = per_k.first();
    let dims = k0.map_or(String::new(), |e| format!(" At k = {}: {} rows, PCA keeps {} hidden-state and {} score components.", e["k"], e["rows"], e["kx"], e["ky"]));
    let fig = Figure::Lines(LinePlot {
        id: n.name.clone(),
        title: "Hidden state at step n vs. retrieval heads at step n + k".into(),
        caption: format!(
            "Paper Fig. 4: canonical correlations between the final hidden state at step n and the 0/1 Eq. 1 vector of every head at step n + k, over {} generations of `{name}`; scores min–max scaled, PCA to {:.0}% / {:.0}% explained variance, up to {} canonical components (top-k = the {}). In-sample as the paper; held-out = fitted on {} generations, correlated on the other {}.{dims}",
            gens.len(), opts.x_variance * 100.0, opts.y_variance * 100.0, opts.components,
            if opts.topk == TopK::LargestK { "k largest" } else { "first k" }, train.len(), test.len()
        ),
        x_label: "temporal offset k (steps)".into(),
        y_label: "canonical correlation".into(),
        series,
        y_range: Some((0.0, 1.0)),
        ..Default::default()
    });
    let pick = |path: &[&str], k: usize| per_k.iter().find(|e| e["k"].as_u64() == Some(k as u64)).map(|e| path.iter().fold(e, |v, p| &v[*p]).clone()).unwrap_or(Json::Null);
    let mut rows = vec![json!([format!("{name} (in-sample, top-1)"), pick(&["top1"], 0), pick(&["top1"], 1), pick(&["top1"], 2)])];
    if held_out {
        rows.push(json!([format!("{name} (held-out, top-1)"), pick(&["held_out", "top1"], 0), pick(&["held_out", "top1"], 1), pick(&["held_out", "top1"], 2)]));
    }
    let compare = json!({"columns": ["k = 0", "k = 1", "k = 2"], "rows": rows});
    let data = json!({"trace": name, "generations": gens.len(), "train": train.len(), "test": test.len(), "offsets": per_k});
    Ok(vec![
        ("figure.json".into(), serde_json::to_vec_pretty(&fig).unwrap()),
        ("cca.json".into(), serde_json::to_vec_pretty(&data).unwrap()),
        ("compare.json".into(), serde_json::to_vec_pretty(&compare).unwrap()),
    ])
}

fn to_f32(rows: &[Vec<f64>]) -> Vec<Vec<f32>> {
    rows.iter().map(|r| r.iter().map(|v| *v as f32).collect()).collect()
}

/// Precision, recall, F1 at a threshold and AUPRC, micro (all (row, head) pairs) or macro (mean
/// over heads with a positive in the split).
fn scores(s: &Tensor, y: &Tensor, threshold: f64, macro_avg: bool) -> (Prf, Option<f64>) {
    if !macro_avg {
        let (sc, l) = probe::pairs(s, y);
        return (prf_at(&sc, &l, threshold), average_precision(&sc, &l));
    }
    let cols: Vec<(Vec<f64>, Vec<bool>)> = probe::columns(s, y).into_iter().filter(|(_, l)| l.iter().any(|v| *v)).collect();
    if cols.is_empty() {
        return (Prf::default(), None);
    }
    let m = cols.len() as f64;
    let prfs: Vec<Prf> = cols.iter().map(|(sc, l)| prf_at(sc, l, threshold)).collect();
    let ap = cols.iter().filter_map(|(sc, l)| average_precision(sc, l)).sum::<f64>() / m;
    let mean = |f: &dyn Fn(&Prf) -> f64| prfs.iter().map(f).sum::<f64>() / m;
    (Prf { precision: mean(&|p| p.precision), recall: mean(&|p| p.recall), f: mean(&|p| p.f) }, Some(ap))
}

/// `table probe(trace, static?)`: the MLP probe of A.5 and two baselines, on the test split.
pub(super) fn probe_table(step: &Step, inputs: &BTreeMap<String, &Artifact>) -> Result<Files, String> {
    let n = &step.node;
    let (a, name) = input(inputs, n, "trace")?;
    let (gens, layers, n_heads) = generations(a, &name)?;
    let seed = int_arg(n, "seed").unwrap_or(0) as u64;
    let macro_avg = enum_arg(n, "average") == Some("macro");
    // 70/20/10 by generation (default: no step of a test generation is seen in training) or by row.
    let by_row = enum_arg(n, "split_by") == Some("row");
    let (mut tr, mut va, mut te) = (Vec::new(), Vec::new(), Vec::new());
    {
        let mut units: Vec<(usize, Option<usize>)> = Vec::new();
        let order = shuffled(&gens, seed);
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
        let n_train = ((total as f64) * 0.7).round().max(1.0) as usize;
        let n_val = (((total as f64) * 0.2).round().max(1.0) as usize).min(total - n_train - 1);
        for (i, (g, s)) in units.into_iter().enumerate() {
            let dst = if i < n_train { &mut tr } else if i < n_train + n_val { &mut va } else { &mut te };
            match s {
                Some(s) => dst.push((g, s)),
                None => dst.extend((0..gens[g].hidden.len()).map(|s| (g, s))),
            }
        }
    }
    let split = |rows: &[(usize, usize)]| {
        let x: Vec<Vec<f64>> = rows.iter().map(|&(g, s)| gens[g].hidden[s].clone()).collect();
        let y: Vec<Vec<f64>> = rows.iter().map(|&(g, s)| gens[g].heads[s].clone()).collect();
        Split::from_rows(&to_f32(&x), &to_f32(&y))
    };
    let (train, val, test) = (split(&tr), split(&va), split(&te));
    let d = gens.iter().find_map(|g| g.hidden.first()).map_or(0, Vec::len);
    let layers_arg: Vec<usize> = n.arg("layers").and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(Value::as_int).map(|v| v as usize).collect();
    let widths = if layers_arg.is_empty() { vec![2 * d, d, d] } else { layers_arg };
    let dev_req: device::DeviceRequest = enum_arg(n, "device").unwrap_or("cpu").parse().map_err(|e: device::DeviceError| e.to_string())?;
    let dev = device::resolve(dev_req).map_err(|e| e.to_string())?;
    let opts = ProbeOptions {
        layers: widths.clone(),
        gelu: enum_arg(n, "activation") == Some("gelu"),
        dropout: float_arg(n, "dropout").unwrap_or(0.1),
        epochs: int_arg(n, "epochs").unwrap_or(100) as usize,
        lr: float_arg(n, "lr").unwrap_or(3e-4),
        batch_size: int_arg(n, "batch_size").unwrap_or(128) as usize,
        clip_grad_norm: 1.0,
        patience: 3,
        asl: Asl { gamma_pos: int_arg(n, "gamma_pos").unwrap_or(1) as f64, ..Asl::default() },
        checkpoint: if enum_arg(n, "checkpoint") == Some("best_val_loss") { Checkpoint::BestValLoss } else { Checkpoint::Last },
        seed,
        device: dev,
    };
    let (scored, log) = probe::train(&train, &val, &[&val, &test], &opts).map_err(|e| e.to_string())?;
    // The decision threshold maximises F1 on the validation split's PR curve (micro pairs).
    let threshold = |s: &Tensor, y: &Tensor| {
        let (sc, l) = probe::pairs(s, y);
        best_f1_threshold(&sc, &l).map_or(0.5, |(t, _)| t)
    };
    let thr = threshold(&scored[0], &val.y);
    let (mlp, mlp_ap) = scores(&scored[1], &test.y, thr, macro_avg);

    let mut rows = vec![(format!("MLP probe {:?}", widths), mlp, mlp_ap, thr)];
    // Baseline: always predict the static set.
    if let Ok((sa, sname)) = input(inputs, n, "static") {
        let stat: BTreeSet<Head> = heads_of(sa)?.into_iter().collect();
        let mut v = vec![0f32; layers * n_heads];
        for (l, h) in &stat {
            if l * n_heads + h < v.len() {
                v[l * n_heads + h] = 1.0;
            }
        }
        let s = Tensor::from_slice(&v).unsqueeze(0).expand([test.rows(), v.len() as i64], false).contiguous();
        let (p, ap) = scores(&s, &test.y, 1.0, macro_avg);
        rows.push((format!("always the static set `{sname}` ({} heads)", stat.len()), p, ap, 1.0));
    }
    // Baseline: a logistic regression per head (a linear probe), threshold chosen the same way.
    let lin = logistic(&train, &[&val, &test])?;
    let lthr = threshold(&lin[0], &val.y);
    let (lp, lap) = scores(&lin[1], &test.y, lthr, macro_avg);
    rows.push(("logistic regression per head".to_string(), lp, lap, lthr));

    let cell = |v: f64| RCell::num(v);
    let table = Table {
        id: n.name.clone(),
        caption: format!(
            "Paper Table 2: predicting the step's retrieval heads (Eq. 1, {} heads) from the final hidden state (d = {d}) of `{name}`. Split by {}: {} / {} / {} rows for train / validation / test ({} generations); metrics on test, {}-averaged, at the threshold that maximises validation F1. ASL (γ− 4, γ+ {}, clip 0.05), Adam {}, batch {}, {} epochs, best validation loss at epoch {}.",
            layers * n_heads, if by_row { "step" } else { "generation" }, train.rows(), val.rows(), test.rows(), gens.len(),
            if macro_avg { "macro" } else { "micro" }, opts.asl.gamma_pos, opts.lr, opts.batch_size, opts.epochs, log.best_epoch + 1
        ),
        row_header: "Predictor".into(),
        columns: vec![
            Column::new("F1").precision(4),
            Column::new("Precision").precision(4),
            Column::new("Recall").precision(4),
            Column::new("AUPRC").precision(4),
            Column::new("Threshold").precision(3),
        ],
        rows: rows
            .iter()
            .map(|(l, p, ap, t)| Row::new(l.clone(), vec![cell(p.f), cell(p.precision), cell(p.recall), ap.map(cell).unwrap_or_else(RCell::empty), cell(*t)]))
            .collect(),
        ..Default::default()
    };
    let compare = json!({
        "columns": ["F1", "Precision", "Recall", "AUPRC"],
        "rows": rows.iter().map(|(l, p, ap, _)| json!([format!("{name}, {l}"), p.f, p.precision, p.recall, ap])).collect::<Vec<_>>(),
    });
    let data = json!({"trace": name, "train_rows": train.rows(), "val_rows": val.rows(), "test_rows": test.rows(), "threshold": thr,
        "positive_rate_test": test.y.mean(Kind::Double).double_value(&[]), "log": log, "layers": widths, "device": device::describe(dev)});
    Ok(vec![
        ("table.json".into(), serde_json::to_vec_pretty(&table).unwrap()),
        ("probe.json".into(), serde_json::to_vec_pretty(&data).unwrap()),
        ("compare.json".into(), serde_json::to_vec_pretty(&compare).unwrap()),
    ])
}

/// One L2-regularised logistic regression per head on standardised features (sklearn's
/// `LogisticRegression` defaults: C = 1, L-BFGS), fitted with smartcore. A head never active in
/// training scores 0.
fn logistic(train: &Split, eval: &[&Split]) -> Result<Vec<Tensor>, String> {
    use smartcore::linalg::basic::arrays::Array;
    use smartcore::linalg::basic::matrix::DenseMatrix;
    use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
    let mean = train.x.mean_dim(0, true, Kind::Float);
    let std = train.x.std_dim(0, false, true).clamp_min(1e-6);
    let rows = |x: &Tensor| -> Vec<Vec<f64>> {
        let z = ((x - &mean) / &std).to_kind(Kind::Double);
        let (n, d) = (z.size()[0] as usize, z.size()[1] as usize);
        let flat = Vec::<f64>::try_from(&z.contiguous().view(-1)).unwrap_or_default();
        (0..n).map(|i| flat[i * d..(i + 1) * d].to_vec()).collect()
    };
    let xtr = rows(&train.x);
    let xm = DenseMatrix::from_2d_vec(&xtr).map_err(|e| e.to_string())?;
    let evals: Vec<Vec<Vec<f64>>> = eval.iter().map(|s| rows(&s.x)).collect();
    let h = train.y.size()[1];
    let mut out: Vec<Vec<f32>> = eval.iter().map(|s| vec![0f32; (s.rows() * h) as usize]).collect();
    let ycols = Vec::<f32>::try_from(&train.y.contiguous().view(-1)).unwrap_or_default();
    // One independent fit per head (smartcore is single-threaded): spread the heads over the
    // available cores, each thread taking every n-th head.
    let h = h as usize;
    type Fit = (usize, Option<(Vec<f64>, f64)>, f32);
    let fit_head = |j: usize| -> Result<Fit, String> {
        let y: Vec<i32> = (0..xtr.len()).map(|i| (ycols[i * h + j] > 0.5) as i32).collect();
        let pos = y.iter().filter(|v| **v == 1).count();
        if pos == 0 || pos == y.len() {
            // One class only: predict it.
            return Ok((j, None, if pos == 0 { 0.0 } else { 1.0 }));
        }
        let params = LogisticRegressionParameters::default().with_alpha(1.0);
        let lr = LogisticRegression::fit(&xm, &y, params).map_err(|e| e.to_string())?;
        let w: Vec<f64> = (0..xtr[0].len()).map(|c| *lr.coefficients().get((0, c))).collect();
        Ok((j, Some((w, *lr.intercept().get((0, 0)))), 0.0))
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(h.max(1));
    let fits: Vec<Fit> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads).map(|t| sc.spawn(move || (t..h).step_by(threads).map(fit_head).collect::<Result<Vec<_>, _>>())).collect();
        handles.into_iter().map(|hd| hd.join().map_err(|_| "a logistic-regression thread panicked".to_string())?).collect::<Result<Vec<Vec<Fit>>, String>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    for (j, fit, constant) in fits {
        for (e, o) in evals.iter().zip(out.iter_mut()) {
            for (i, x) in e.iter().enumerate() {
                o[i * h + j] = match &fit {
                    Some((w, b)) => {
                        let z: f64 = x.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + b;
                        (1.0 / (1.0 + (-z).exp())) as f32
                    }
                    None => constant,
                };
            }
        }
    }
    Ok(out.into_iter().zip(eval).map(|(o, s)| Tensor::from_slice(&o).view([s.rows(), h as i64])).collect())
}
