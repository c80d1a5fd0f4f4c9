//! Golden results of every Section 3 analysis: a small deterministic CPU run of
//! `tests/run/section3_small.rhx` on the real SmolLM2 model (Table 1, task scores, Fig. 1–4,
//! compensated heads, the probe and its baselines, the paper comparison). Two goldens, both
//! reviewed when they change, never accepted blindly (`golden/section3/`):
//!
//! * `section3_small.report.json`: the report at full precision (provenance left out). The
//!   run is certified against it as `rhx reproduce` certifies a rerun: every number within the
//!   tolerance its op declared (exact for everything computed from traces; CCA and the probes
//!   move with the CPU's floating-point path), so the test holds on any x86-64 CPU.
//! * `section3_small.snap` (insta): the report's structure and words, floats rounded to 3
//!   decimals, numbers with a non-exact tolerance shown as `≈` and the numbers of the prose as
//!   `#` (both certified above), for a readable diff.
//!
//! `RHX_UPDATE_GOLDEN=1 cargo test --test section3` rewrites the JSON golden.
mod common;
use std::path::Path;

use rhx::cache::Cache;
use rhx::lang::{self, NoShapes};
use rhx::report::{certify, Report};
use rhx::run::{self, RunOptions};
use serde_json::Value;

const GOLDEN: &str = "golden/section3/section3_small.report.json";

/// The snapshot view: exact floats rounded to 3 decimals, tolerant ones `≈`, prose numbers `#`.
fn snapshot_view(v: &mut Value, tolerant: bool, key: &str) {
    match v {
        Value::Number(n) if n.is_f64() || tolerant => {
            if tolerant {
                *v = Value::String("≈".into());
                return;
            }
            let x = n.as_f64().unwrap();
            let r = (x * 1000.0).round() / 1000.0;
            // -0.0 and 0.0 print alike.
            *v = serde_json::json!(if r == 0.0 { 0.0 } else { r });
        }
        Value::String(s) if key == "text" => {
            let mut out = String::new();
            let mut last_digit = false;
            for c in s.chars() {
                let d = c.is_ascii_digit() || (c == '.' && last_digit);
                if d && !last_digit {
                    out.push('#');
                } else if !d {
                    out.push(c);
                }
                last_digit = d;
            }
            *s = out;
        }
        Value::Array(a) => a.iter_mut().for_each(|x| snapshot_view(x, tolerant, key)),
        Value::Object(o) => {
            let tolerant = tolerant || o.get("tolerance").is_some_and(|t| t["kind"] != "exact");
            for (k, x) in o.iter_mut() {
                if k == "tolerance" {
                    // Its bound can be a spread over seeds, which moves with the CPU: keep the kind.
                    *x = x["kind"].clone();
                } else {
                    snapshot_view(x, tolerant, k);
                }
            }
        }
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
    let opts = RunOptions { shard: None, shard_plan: None, reports_dir: dir.join("reports"), recompute: false, quiet: true, compute_traces: true, threads: None, engine: None };
    run::run(&program, &cache, &opts).unwrap();
    let mut fresh: Report = rhx::report::load_report(&dir.join("reports/section3/report.json")).unwrap();
    fresh.provenance = Default::default();
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("RHX_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden_path, serde_json::to_string_pretty(&fresh).unwrap() + "\n").unwrap();
    }
    let golden: Report = rhx::report::load_report(&golden_path).unwrap();
    let cert = certify(&golden, &fresh);
    eprintln!("section3_small against {GOLDEN}: {}", cert.summary());
    assert!(cert.passed(), "the run does not reproduce {GOLDEN}:\n{}", cert.markdown(false));

    let mut report = serde_json::to_value(&fresh).unwrap();
    report.as_object_mut().unwrap().remove("provenance");
    // The trace viewer's data is the traces' own (checked in tests/trace_view.rs), not a result.
    report.as_object_mut().unwrap().remove("traces");
    snapshot_view(&mut report, false, "");

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
