//! `figure … = cca(…)`: Fig. 4.
use crate::artifact::compare::{Compare, CompareRow, CompareValue};
use serde_json::json;

use crate::lang::schema::{FuncSpec, int_min, float_range, enm, list, decl};
use crate::analysis::cca::{self, CcaOptions, Pca, PcaFit, TopK};
use crate::report::{self, Figure, LinePlot, Series};
use crate::ops::hidden::*;
use crate::ops::inputs::trace_info;

use crate::lang::{Kind, Value};
use crate::ops::args::*;
use crate::ops::{Exec, Files, Inputs, OpDef};
use crate::plan::Step;
use crate::run::Ctx;

/// What a rerun of a canonical correlation must match (see the series' tolerance).
pub const CCA_TOLERANCE: f64 = 1e-6;
/// The held-out correlations against continuous Eq. 2 scores (`target: scores`).
pub const CCA_HELD_OUT_SCORES_TOLERANCE: f64 = 1e-4;

pub const OP: OpDef = OpDef { kind: Kind::Figure, name: "cca", spec, source: file!(), check: None, exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new("cca", "Fig. 4: canonical correlation between the hidden state at step n and retrieval scores at step n + k (reference §6).")
        .pos("trace", decl(Trace), "trace with retrieval(...) and hidden(final)")
        .def("target", enm(&["heads", "scores"]), "heads", "cca.target: the step's retrieval vector, `heads` 0/1 for H_t (Fig. 4) or `scores` every head's Eq. 2 score (Fig. 8; needs retrieval(reasoning))")
        .def("offsets", list(int_min(0)), "0..=10", "temporal offsets k")
        .def("x_variance", float_range(0.0, 1.0), "0.95", "explained variance the hidden-state PCA keeps (paper: 95%)")
        .def("y_variance", float_range(0.0, 1.0), "0.99", "explained variance the score PCA keeps (paper: 99%)")
        .def("components", int_min(1), "50", "canonical components kept (paper: 50)")
        .def("solver", enm(&["svd_exact", "nipals_sklearn"]), "svd_exact", "cca.solver")
        .def("eval", list(enm(&["in_sample", "held_out"])), "[in_sample, held_out]", "cca.eval")
        .def("held_out_fraction", float_range(0.0, 0.9), "0.2", "share of generations held out")
        .def("topk_mode", enm(&["largest_k", "first_k"]), "largest_k", "cca.topk_mode")
        .def("pca_fit", enm(&["per_offset", "once"]), "per_offset", "cca.pca_fit")
        .seed("seed of the held-out split")
}

/// `figure cca(trace)`: canonical correlations for every offset k, in-sample (as the paper) and
/// on held-out generations.
fn run(_ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let (a, name) = input(inputs, n, "trace")?;
    let target = Target::parse(req_enum(n, "target")?);
    let (gens, _, _) = generations_of(a, &name, target)?;
    let offsets: Vec<usize> = req_list(n, "offsets")?.iter().filter_map(Value::as_int).map(|k| k as usize).collect();
    let opts = CcaOptions {
        x_variance: req_f64(n, "x_variance")?,
        y_variance: req_f64(n, "y_variance")?,
        components: req_int(n, "components")? as usize,
        topk: if enum_arg(n, "topk_mode") == Some("first_k") { TopK::FirstK } else { TopK::LargestK },
        pca_fit: if enum_arg(n, "pca_fit") == Some("once") { PcaFit::Once } else { PcaFit::PerOffset },
        solver: if enum_arg(n, "solver") == Some("nipals_sklearn") { cca::Solver::NipalsSklearn { max_iter: 500, tol: 1e-6 } } else { cca::Solver::SvdExact },
    };
    let evals: Vec<&str> = req_list(n, "eval")?.iter().filter_map(Value::as_str).collect();
    let held_out = evals.contains(&"held_out");
    let seed = seed(n)?;
    let order = shuffled(&gens, seed);
    let n_test = ((gens.len() as f64) * req_f64(n, "held_out_fraction")?).round().max(1.0) as usize;
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
    // The hidden states differ by ~1e-7 between CPU vendors (BLAS paths); the correlations moved
    // by 2e-8 between an Intel Xeon and an AMD EPYC.
    let tol = || report::Tolerance::float(CCA_TOLERANCE, "hidden states differ by ~1e-7 between CPUs");
    // Held out, against continuous Eq. 2 scores: the canonical weights of the weak directions
    // (PCA keeps ~140 score components at 99% where 0/1 head vectors keep ~40) are ill-conditioned
    // and carry the ~1e-7 input differences to the test rows amplified — measured up to 3.4e-5
    // between two CPU vendors on Section 4's Fig. 8 (16 generations), while every in-sample value
    // stayed within 1e-6.
    let tol_held = || {
        if target == Target::Scores {
            report::Tolerance::float(CCA_HELD_OUT_SCORES_TOLERANCE, "held-out canonical weights fitted on continuous Eq. 2 scores amplify the ~1e-7 CPU differences")
        } else {
            tol()
        }
    };
    let mut series = vec![
        Series::new("in-sample top-1", x.clone(), series_of(&["top1"])).within(tol()),
        Series::new("in-sample mean top-10", x.clone(), series_of(&["top10"])).within(tol()),
        Series::new("in-sample mean top-50", x.clone(), series_of(&["top50"])).within(tol()),
    ];
    if held_out {
        series.push(Series::new("held-out top-1", x.clone(), series_of(&["held_out", "top1"])).within(tol_held()));
        series.push(Series::new("held-out mean top-10", x.clone(), series_of(&["held_out", "top10"])).within(tol_held()));
        series.push(Series::new("held-out mean top-50", x.clone(), series_of(&["held_out", "top50"])).within(tol_held()));
    }
    let k0 = per_k.first();
    let dims = k0.map_or(String::new(), |e| format!(" At k = {}: {} rows, PCA keeps {} hidden-state and {} score components.", e["k"], e["rows"], e["kx"], e["ky"]));
    let fig = Figure::Lines(LinePlot {
        id: n.name.clone(),
        title: if target == Target::Scores { "Hidden state at step n vs. Eq. 2 scores at step n + k".into() } else { "Hidden state at step n vs. retrieval heads at step n + k".into() },
        caption: format!(
            "Paper Fig. {}: canonical correlations between the final hidden state at step n and {} at step n + k, over {} generations of `{name}`; scores min–max scaled, PCA to {:.0}% / {:.0}% explained variance, up to {} canonical components (top-k = the {}). In-sample as the paper; held-out = fitted on {} generations, correlated on the other {}.{dims}",
            if target == Target::Scores { 8 } else { 4 },
            match (target, trace_info(a)?.retrieval) {
                (Target::Scores, _) => "every head's Eq. 2 reasoning score".to_string(),
                (Target::Heads, crate::artifact::trace::HeadRule::CopyPaste) => "the 0/1 Eq. 1 vector of every head".to_string(),
                (Target::Heads, rule) => format!("the 0/1 vector of every head's membership in H_t ({})", rule.describe()),
            },
            gens.len(), opts.x_variance * 100.0, opts.y_variance * 100.0, opts.components,
            if opts.topk == TopK::LargestK { "k largest" } else { "first k" }, train.len(), test.len()
        ),
        x_label: "temporal offset k (steps)".into(),
        y_label: "canonical correlation".into(),
        series,
        y_range: Some((0.0, 1.0)),
        ..Default::default()
    });
    let pick = |path: &[&str], k: usize| -> CompareValue { per_k.iter().find(|e| e["k"].as_u64() == Some(k as u64)).and_then(|e| path.iter().fold(e, |v, p| &v[*p]).as_f64()).into() };
    let row = |label: String, path: &[&str], fit: &str, top: &str| CompareRow::new(label, (0..3).map(|k| pick(path, k)).collect()).within(vec![if fit == "held_out" { tol_held() } else { tol() }; 3]).at("fit", fit).at("top", top).at("target", if target == Target::Scores { "scores" } else { "heads" });
    let mut rows = vec![
        row(format!("{name} (in-sample, top-1)"), &["top1"], "in_sample", "1"),
        row(format!("{name} (in-sample, mean top-10)"), &["top10"], "in_sample", "10"),
        row(format!("{name} (in-sample, mean top-50)"), &["top50"], "in_sample", "50"),
    ];
    if held_out {
        rows.push(row(format!("{name} (held-out, top-1)"), &["held_out", "top1"], "held_out", "1"));
        rows.push(row(format!("{name} (held-out, mean top-10)"), &["held_out", "top10"], "held_out", "10"));
        rows.push(row(format!("{name} (held-out, mean top-50)"), &["held_out", "top50"], "held_out", "50"));
    }
    let compare = Compare::new(&["k = 0", "k = 1", "k = 2"], rows);
    let data = json!({"trace": name, "generations": gens.len(), "train": train.len(), "test": test.len(), "offsets": per_k});
    Ok(vec![
        ("figure.json".into(), serde_json::to_vec_pretty(&fig).unwrap()),
        ("cca.json".into(), serde_json::to_vec_pretty(&data).unwrap()),
        compare.file(),
    ])
}
