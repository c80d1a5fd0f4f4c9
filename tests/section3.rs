//! Golden results of every Section 3 analysis: a small deterministic CPU run of
//! `tests/run/section3_small.rhx` on the real SmolLM2 model (Table 1, task scores, Fig. 1–4,
//! compensated heads, the probe and its baselines, the paper comparison). The snapshot is the
//! report's data model with every float rounded to 3 decimals (the tolerance) and the
//! provenance (times, paths, commit) left out. A changed snapshot is reviewed, never accepted
//! blindly (`golden/section3/`).
mod common;
use std::path::Path;

use rhx::cache::Cache;
use rhx::lang::{self, NoShapes};
use rhx::run::{self, RunOptions};
use serde_json::Value;

fn round(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap();
            let r = (x * 1000.0).round() / 1000.0;
            // -0.0 and 0.0 print alike.
            *v = serde_json::json!(if r == 0.0 { 0.0 } else { r });
        }
        Value::Array(a) => a.iter_mut().for_each(round),
        Value::Object(o) => o.values_mut().for_each(round),
        _ => {}
    }
}

#[test]
fn section3_small_run_matches_golden() {
    if !common::smollm2_installed() {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("section3");
    let _ = std::fs::remove_dir_all(&dir);
    let exp = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/run/section3_small.rhx");
    let program = lang::check_path(&exp, &[], &NoShapes).unwrap();
    let cache = Cache::open(dir.join("cache")).unwrap();
    let opts = RunOptions { shard: None, reports_dir: dir.join("reports"), recompute: false, quiet: true, compute_traces: true, threads: None, engine: None };
    run::run(&program, &cache, &opts).unwrap();
    let text = std::fs::read_to_string(dir.join("reports/section3/report.json")).unwrap();
    let mut report: Value = serde_json::from_str(&text).unwrap();
    report.as_object_mut().unwrap().remove("provenance");
    round(&mut report);

    // Sanity that does not depend on the snapshot: every analysis is present and in range.
    let sections = report["sections"].as_array().unwrap();
    let tables: Vec<&Value> = sections.iter().flat_map(|s| s["tables"].as_array().unwrap()).collect();
    let figures: Vec<&Value> = sections.iter().flat_map(|s| s["figures"].as_array().unwrap()).collect();
    for id in ["dynamism", "scores", "compensation", "probe", "paper_table1", "paper_table2", "paper_figure3", "paper_figure4"] {
        assert!(tables.iter().any(|t| t["id"] == id), "table {id} missing");
    }
    for id in ["fig1", "fig2", "fig3_plot", "fig4"] {
        assert!(figures.iter().any(|f| f["id"] == id), "figure {id} missing");
    }
    let fig4 = figures.iter().find(|f| f["id"] == "fig4").unwrap();
    for s in fig4["series"].as_array().unwrap() {
        for y in s["y"].as_array().unwrap().iter().filter_map(Value::as_f64) {
            assert!((-1.0..=1.0).contains(&y), "correlation {y} out of range");
        }
    }
    let probe = tables.iter().find(|t| t["id"] == "probe").unwrap();
    assert_eq!(probe["rows"].as_array().unwrap().len(), 3, "MLP, static set, logistic regression");

    insta::with_settings!({snapshot_path => "../golden/section3", prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!("section3_small", serde_json::to_string_pretty(&report).unwrap());
    });
}
