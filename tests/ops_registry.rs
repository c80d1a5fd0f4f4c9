//! The op registry against the goldens: every implemented constructor is used by an experiment
//! whose output is a golden snapshot, every declared-but-not-implemented one is refused by
//! `rhx check` with its location, and the small experiment of the constructors Section 3 does not
//! use matches its golden (`golden/ops/ops_small.snap`, real SmolLM2 on the CPU).
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rhx::cache::Cache;
use rhx::lang::{self, Kind, NoShapes, Value};
use rhx::ops::{Exec, REGISTRY};
use rhx::run::{self, RunOptions};
use serde_json::Value as Json;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The experiments whose results are golden snapshots.
const GOLDEN_EXPERIMENTS: &[&str] = &["tests/run/section3_small.rhx", "tests/run/ops_small.rhx"];

fn constructors(v: &Value, out: &mut BTreeSet<(Kind, String)>) {
    match v {
        Value::Inline(n) => {
            out.insert((n.kind, n.constructor.clone()));
            n.args.iter().filter_map(|a| a.value.as_ref()).for_each(|x| constructors(x, out));
        }
        Value::List(items) => items.iter().for_each(|x| constructors(x, out)),
        Value::Call { args, .. } => args.iter().filter_map(|a| a.value.as_ref()).for_each(|x| constructors(x, out)),
        _ => {}
    }
}

#[test]
fn every_implemented_constructor_has_a_golden_experiment() {
    let mut used = BTreeSet::new();
    for f in GOLDEN_EXPERIMENTS {
        let p = lang::check_path(&root().join(f), &[], &NoShapes).unwrap_or_else(|d| panic!("{f}: {}", lang::render_diagnostics(&d)));
        for n in &p.nodes {
            used.insert((n.kind, n.constructor.clone()));
            n.args.iter().filter_map(|a| a.value.as_ref()).for_each(|x| constructors(x, &mut used));
        }
    }
    let missing: Vec<String> = REGISTRY.iter().filter(|op| op.implemented() && !used.contains(&(op.kind, op.name.to_string()))).map(|op| op.id()).collect();
    assert!(missing.is_empty(), "implemented constructors without a golden experiment: {missing:?} (add them to one of {GOLDEN_EXPERIMENTS:?})");
}

#[test]
fn a_declared_but_unimplemented_constructor_is_refused_with_its_location() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ops_registry");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("q.json"), "[]").unwrap();
    for op in REGISTRY.iter().filter(|op| !op.implemented()) {
        let decl = match (op.kind, op.name) {
            (Kind::Model, "random") => "model m = random { layers: 1, heads: 1, hidden: 8 }".to_string(),
            (Kind::Dataset, "hotpotqa") => "dataset d = hotpotqa(\"q.json\")".to_string(),
            _ => panic!("{}: add a declaration of it to this test", op.id()),
        };
        let file = dir.join(format!("{}.rhx", op.name));
        std::fs::write(&file, format!("experiment \"x\" {{ seed: 0 }}\n{decl}\n")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rhx")).arg("check").arg(&file).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: {err}", op.id());
        let Exec::NotImplemented(what) = op.exec else { unreachable!() };
        // The rendered diagnostic wraps long messages: compare without the frame and line breaks.
        let flat = err.replace(['│', '·'], " ").split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains("declared but not implemented") && flat.contains(&what.split_whitespace().collect::<Vec<_>>().join(" ")), "{}: {err}", op.id());
        assert!(err.contains(&format!("{}.rhx:2:", op.name)), "{}: no location in {err}", op.id());
    }
}

#[test]
fn an_unimplemented_option_is_refused_at_its_parameter() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ops_registry");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("option.rhx");
    std::fs::write(&file, "model m = gguf(\"smollm2-135m-instruct\")\ndataset d = niah { lengths: [100],\n  sentence_end: period_ids }\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rhx")).args(["check", "--no-models"]).arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("option.rhx:3:17") && err.contains("`sentence_end: period_ids` is not implemented"), "{err}");
}

/// Numbers rounded to 6 significant digits (the snapshot holds trace-derived values, exact on
/// any CPU; rounding keeps the file readable).
fn round(v: &mut Json) {
    match v {
        Json::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap();
            *v = serde_json::json!(format!("{x:.6}").parse::<f64>().unwrap());
        }
        Json::Array(a) => a.iter_mut().for_each(round),
        Json::Object(o) => o.values_mut().for_each(round),
        _ => {}
    }
}

#[test]
fn ops_small_matches_golden() {
    if !common::smollm2_installed() {
        return;
    }
    let dir: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ops_small");
    let _ = std::fs::remove_dir_all(&dir);
    let program = lang::check_path(&root().join("tests/run/ops_small.rhx"), &[], &NoShapes).unwrap();
    let cache = Cache::open(dir.join("cache")).unwrap();
    let opts = RunOptions { shard: None, reports_dir: dir.join("reports"), recompute: false, quiet: true, compute_traces: true, threads: None, engine: None };
    run::run(&program, &cache, &opts).unwrap();
    let plan = rhx::plan::plan(&program, &cache).unwrap();
    let artifact = |name: &str, file: &str| -> Json {
        let a = cache.get(&plan.step(name).unwrap().key).unwrap().unwrap();
        serde_json::from_slice(&a.read(file).unwrap()).unwrap()
    };
    let mut report = artifact("ops", "report.json");
    report.as_object_mut().unwrap().remove("provenance");
    let mut snap = serde_json::json!({"report": report});
    for h in ["listed", "filed", "drawn"] {
        snap[h] = artifact(h, "heads.json");
    }
    for t in ["base", "listed_masked", "filed_masked", "drawn_masked"] {
        let info = artifact(t, "trace_info.json");
        snap[format!("{t}.intervention")] = info["intervention"].clone();
        snap[format!("{t}.samples")] = info["samples"].clone();
    }
    // The random draw comes from the tiny model's shape (3 layers x 4 heads).
    let pool = snap["drawn"]["random"]["pool"].as_array().unwrap().len();
    assert_eq!(pool, 12);
    round(&mut snap);
    insta::with_settings!({snapshot_path => "../golden/ops", prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!("ops_small", serde_json::to_string_pretty(&snap).unwrap());
    });
}
