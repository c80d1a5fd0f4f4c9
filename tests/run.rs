//! The executor end to end on the real SmolLM2 model: a rerun computes nothing, `--set`
//! changes exactly the keys downstream of what it touches, a corrupted artifact is detected and
//! recomputed, shards split the traces and a final run assembles, results are deterministic.
mod common;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rhx::cache::Cache;
use rhx::lang::{self, NoShapes};
use rhx::engine::options::{self, EngineIdentity, EngineOptions};
use rhx::run::{self, Outcome, RunOptions};

fn exp() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/run/tiny.rhx")
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("run").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn opts(dir: &Path, shard: Option<(usize, usize)>) -> RunOptions {
    RunOptions { shard, shard_plan: None, reports_dir: dir.join("reports"), recompute: false, quiet: true, compute_traces: true, threads: None, engine: None }
}

fn outcomes(s: &run::RunSummary) -> BTreeMap<String, Outcome> {
    s.outcomes.iter().map(|(n, _, o, _)| (n.clone(), o.clone())).collect()
}

fn installed() -> bool {
    common::smollm2_installed()
}

#[test]
fn rerun_is_cached_and_corruption_is_recomputed() {
    if !installed() {
        return;
    }
    let dir = tmp("rerun");
    let cache = Cache::open(dir.join("cache")).unwrap();
    let program = lang::check_path(&exp(), &[], &NoShapes).unwrap();
    let first = run::run(&program, &cache, &opts(&dir, None)).unwrap();
    assert!(outcomes(&first).values().all(|o| *o == Outcome::Computed), "{:?}", outcomes(&first));
    let report = std::fs::read_to_string(dir.join("reports/out/report.md")).unwrap();
    assert!(report.contains("UUID accuracy") && report.contains("Jaccard"));
    let second = run::run(&program, &cache, &opts(&dir, None)).unwrap();
    assert!(outcomes(&second).values().all(|o| *o == Outcome::Cached), "{:?}", outcomes(&second));

    // Corrupt the base trace: it is quarantined and recomputed, bit-identical, so nothing
    // downstream changes key and everything else stays cached.
    let key = first.outcomes.iter().find(|o| o.0 == "base").unwrap().1.clone();
    let art = cache.ls().unwrap().into_iter().find(|a| a.key.as_str().starts_with(&key)).unwrap();
    // The trace's metadata says which decoding loop made it (eager on the CPU by default).
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(art.dir.join("trace_info.json")).unwrap()).unwrap();
    let want = std::env::var("RHX_DECODE").unwrap_or_else(|_| "eager".into());
    assert_eq!(info["decode_loops"], serde_json::json!([want]), "{info}");
    let trace_file = art.dir.join("trace.jsonl");
    let original = std::fs::read(&trace_file).unwrap();
    let mut bad = original.clone();
    bad[10] ^= 0x20;
    std::fs::write(&trace_file, &bad).unwrap();
    let third = run::run(&program, &cache, &opts(&dir, None)).unwrap();
    let o = outcomes(&third);
    assert_eq!(o["base"], Outcome::Computed);
    assert!(o.iter().filter(|(n, _)| n.as_str() != "base").all(|(_, x)| *x == Outcome::Cached), "{o:?}");
    let recomputed = cache.ls().unwrap().into_iter().find(|a| a.key.as_str().starts_with(&key)).unwrap();
    assert_eq!(std::fs::read(recomputed.dir.join("trace.jsonl")).unwrap(), original, "CPU results must be bit-identical");
    assert!(cache.verify().unwrap().is_clean());
}

#[test]
fn overrides_change_exactly_the_downstream_keys() {
    let dir = tmp("keys");
    let cache = Cache::open(dir.join("cache")).unwrap();
    let keys = |sets: &[&str]| -> BTreeMap<String, String> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let p = lang::check_path(&exp(), &sets, &NoShapes).unwrap();
        rhx::plan::plan(&p, &cache).unwrap().steps.into_iter().map(|s| (s.node.name, s.key.as_str().to_string())).collect()
    };
    let base = keys(&[]);
    let changed = |other: &BTreeMap<String, String>| -> Vec<String> { base.iter().filter(|(n, k)| other[*n] != **k).map(|(n, _)| n.clone()).collect() };
    // Everything but the model depends on the dataset.
    let runs = keys(&["niah.runs=3"]);
    assert_eq!(changed(&runs), ["base", "dyn", "fig", "masked", "masked.heads", "niah", "out", "scores", "static"]);
    // The figure's own parameter changes only the figure and the report.
    assert_eq!(changed(&keys(&["fig.most_varying=3"])), ["fig", "out"]);
    // The masked trace's setting changes it, the scores table and the report.
    assert_eq!(changed(&keys(&["masked.max_new_tokens=7"])), ["masked", "out", "scores"]);
    // The seed is part of every key.
    assert_eq!(changed(&keys(&["experiment.seed=1"])).len(), base.len());
    // A profile gives the keys of its entries as `--set` flags; `experiment.profile` is in none.
    let profile = |name: &str| -> BTreeMap<String, String> {
        let opts = lang::CheckOptions { profile: Some(name), ..Default::default() };
        let p = lang::check_path_with(&exp(), &opts, &NoShapes).unwrap();
        assert_eq!(p.experiment.profile, name);
        rhx::plan::plan(&p, &cache).unwrap().steps.into_iter().map(|s| (s.node.name, s.key.as_str().to_string())).collect()
    };
    assert_eq!(profile("short"), keys(&["niah.runs=1", "base.max_new_tokens=4"]));
    assert_eq!(keys(&["experiment.profile=\"other\""]), base);
}

/// Keys of `exp()` planned as the given engine would plan them.
fn keys_with(cache: &Cache, engine: &EngineIdentity) -> BTreeMap<String, String> {
    let p = lang::check_path(&exp(), &[], &NoShapes).unwrap();
    rhx::plan::plan_with(&p, cache, engine).unwrap().steps.into_iter().map(|s| (s.node.name, s.key.as_str().to_string())).collect()
}

#[test]
fn every_engine_option_and_the_engine_build_enter_the_trace_keys() {
    let dir = tmp("engine_keys");
    let cache = Cache::open(dir.join("cache")).unwrap();
    let current = EngineIdentity::current().unwrap();
    let base = keys_with(&cache, &current);
    // `current()` is what a plain `plan` uses.
    let p = lang::check_path(&exp(), &[], &NoShapes).unwrap();
    let plain: BTreeMap<String, String> = rhx::plan::plan(&p, &cache).unwrap().steps.into_iter().map(|s| (s.node.name, s.key.as_str().to_string())).collect();
    assert_eq!(plain, base);
    // Everything downstream of a trace; the model, the dataset and a fixed head list are not.
    let downstream = ["base", "dyn", "fig", "masked", "masked.heads", "out", "scores", "static"];
    let changed = |other: &BTreeMap<String, String>| -> Vec<String> { base.iter().filter(|(n, k)| other[*n] != **k).map(|(n, _)| n.clone()).collect() };
    // Each `RHX_*` variable in turn, at a value other than its default.
    for (var, _) in options::VARIABLES {
        let val = match *var {
            "RHX_DECODE" => "static",
            "RHX_GEMV_THREADS" => "128",
            "RHX_GEMV_SPLIT" => "0",
            "RHX_TIMELINE" => "timeline.csv",
            "RHX_WGEMM" => "64",
            "RHX_ROPE_GEMV" => "1",
            v if v.starts_with("RHX_GEMV") || v == "RHX_ATTN_BLOCKS" => "3",
            _ => "0",
        };
        let opts = EngineOptions::from_lookup(|v| (v == *var).then(|| val.to_string())).unwrap();
        let other = EngineIdentity { options: opts, ..current.clone() };
        assert_eq!(changed(&keys_with(&cache, &other)), downstream, "{var}={val}");
    }
    // Options set in code rather than the environment.
    for opts in [EngineOptions { drop_finished: false, ..current.options.clone() }, EngineOptions { prefill_chunk_tokens: 512, ..current.options.clone() }] {
        assert_eq!(changed(&keys_with(&cache, &EngineIdentity { options: opts, ..current.clone() })), downstream);
    }
    // Another build of the engine (any change to its sources changes the fingerprint).
    let other_build = EngineIdentity { fingerprint: "0".repeat(64), ..current.clone() };
    assert_eq!(changed(&keys_with(&cache, &other_build)), downstream);
    // The same build on another libtorch (it is linked dynamically).
    let other_libtorch = EngineIdentity { libtorch: "2.10.0+cpu".into(), ..current.clone() };
    assert_eq!(changed(&keys_with(&cache, &other_libtorch)), downstream);
    // The device a trace runs on is in its key, resolved: `auto` is the CPU or a named GPU.
    let auto = lang::check_path(&exp(), &["smol.device=auto".to_string()], &NoShapes).unwrap();
    let plan = rhx::plan::plan_with(&auto, &cache, &current).unwrap();
    let device = plan.step("base").unwrap().spec["engine"]["device"].as_str().unwrap().to_string();
    match rhx::engine::device::resolve(rhx::engine::device::DeviceRequest::Auto).unwrap() {
        tch::Device::Cpu => assert_eq!(device, "cpu"),
        _ => assert!(device.starts_with("cuda"), "{device}"),
    }
}

#[test]
fn a_trace_cached_by_another_engine_build_is_not_reused() {
    if !installed() {
        return;
    }
    let dir = tmp("engine_build");
    let cache = Cache::open(dir.join("cache")).unwrap();
    // Only the base trace and what it needs.
    let program = lang::check_path(&exp(), &["niah.runs=1".into(), "base.max_new_tokens=2".into()], &NoShapes).unwrap();
    let program = rhx::lang::Program { nodes: program.nodes.iter().filter(|n| ["smol", "niah", "base"].contains(&n.name.as_str())).cloned().collect(), ..program };
    let with = |engine: &EngineIdentity| {
        let o = RunOptions { engine: Some(engine.clone()), ..opts(&dir, None) };
        outcomes(&run::run(&program, &cache, &o).unwrap())
    };
    let current = EngineIdentity::current().unwrap();
    assert_eq!(with(&current)["base"], Outcome::Computed);
    assert_eq!(with(&current)["base"], Outcome::Cached);
    // The same trace, cached by this build, is computed again by another one.
    let other = EngineIdentity { fingerprint: "f".repeat(64), ..current.clone() };
    assert_eq!(with(&other)["base"], Outcome::Computed);
    assert_eq!(with(&other)["base"], Outcome::Cached);
    // The trace records which engine made it.
    let base = cache.ls().unwrap().into_iter().filter(|a| a.dir.join("trace_info.json").exists()).collect::<Vec<_>>();
    assert_eq!(base.len(), 2);
    let fingerprints: std::collections::BTreeSet<String> = base
        .iter()
        .map(|a| serde_json::from_slice::<serde_json::Value>(&std::fs::read(a.dir.join("trace_info.json")).unwrap()).unwrap()["engine"]["fingerprint"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fingerprints, [current.fingerprint.clone(), other.fingerprint.clone()].into_iter().collect());
}

#[test]
fn shards_split_the_traces_and_a_final_run_assembles() {
    if !installed() {
        return;
    }
    let dir = tmp("shards");
    let cache = Cache::open(dir.join("cache")).unwrap();
    let program = lang::check_path(&exp(), &[], &NoShapes).unwrap();
    let s0 = outcomes(&run::run(&program, &cache, &opts(&dir, Some((0, 2)))).unwrap());
    let s1 = outcomes(&run::run(&program, &cache, &opts(&dir, Some((1, 2)))).unwrap());
    // Each trace is computed by exactly one shard.
    for t in ["base", "masked"] {
        let n = [&s0, &s1].iter().filter(|o| o[t] == Outcome::Computed).count();
        assert_eq!(n, 1, "{t}: {s0:?} {s1:?}");
    }
    let last = outcomes(&run::run(&program, &cache, &opts(&dir, None)).unwrap());
    assert!(last.values().all(|o| *o != Outcome::Skipped), "{last:?}");
    assert_eq!(last["base"], Outcome::Cached);
    assert_eq!(last["masked"], Outcome::Cached);
    assert!(dir.join("reports/out/report.html").exists());
}

/// `rhx slurm`'s shard plan: every trace has a shard, costs are prompt tokens × new tokens ×
/// passes, and a shard that runs first computes the other shard's trace its own trace reads
/// (under the key's lock), which the other shard then finds cached: each once.
#[test]
fn a_cost_balanced_shard_computes_what_its_traces_read_once() {
    if !installed() {
        return;
    }
    let dir = tmp("shard_plan");
    let cache = Cache::open(dir.join("cache")).unwrap();
    let program = lang::check_path(&exp(), &[], &NoShapes).unwrap();
    let p = rhx::plan::plan(&program, &cache).unwrap();
    let sp = rhx::plan::shards::shard_plan("tiny.rhx", &p, &cache, 2).unwrap();
    assert_eq!(sp.traces.len(), 2);
    for t in &sp.traces {
        assert_eq!((t.prompts, t.new_tokens, t.passes), (2, 6, 1), "{t:?}");
        assert!(t.prompt_tokens >= 2 * 120, "{t:?}");
        assert_eq!(t.cost, (t.prompt_tokens * 6) as f64);
    }
    let (base, masked) = (sp.shard_of("base").unwrap(), sp.shard_of("masked").unwrap());
    assert_ne!(base, masked, "two traces of equal cost go to two shards");
    let with = |i| RunOptions { shard_plan: Some(sp.clone()), ..opts(&dir, Some((i, 2))) };
    let first = outcomes(&run::run(&program, &cache, &with(masked)).unwrap());
    assert_eq!((&first["base"], &first["masked"]), (&Outcome::Computed, &Outcome::Computed), "{first:?}");
    let second = outcomes(&run::run(&program, &cache, &with(base)).unwrap());
    assert_eq!((&second["base"], &second["masked"]), (&Outcome::Cached, &Outcome::Cached), "{second:?}");
    // A plan with fewer tasks than --shard says is refused.
    let bad = RunOptions { shard_plan: Some(sp.clone()), ..opts(&dir, Some((0, 3))) };
    let err = run::run(&program, &cache, &bad).unwrap_err().to_string();
    assert!(err.contains("the shard plan has 2 tasks, --shard says 3"), "{err}");
}

/// Copies a report folder (two levels: files, `tables/`, `figures/`).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

#[test]
fn reproduce_certifies_a_report_and_catches_a_changed_number() {
    if !installed() {
        return;
    }
    let dir = tmp("reproduce");
    let rhx = env!("CARGO_BIN_EXE_rhx");
    let cache = dir.join("cache");
    let reports = dir.join("reports");
    // With a profile and a `--set` after it: reproduce must replay both.
    let st = std::process::Command::new(rhx)
        .args(["run", "--quiet", "--profile", "short", "--set", "masked.max_new_tokens=5", "--cache"])
        .arg(&cache)
        .arg("--reports")
        .arg(&reports)
        .arg(exp())
        .status()
        .unwrap();
    assert!(st.success());
    // From scratch (fresh cache): every number must come back, and every file is what
    // report.json renders to.
    let cert = dir.join("certificate.md");
    let out = std::process::Command::new(rhx).arg("reproduce").arg(reports.join("out")).arg("--certificate").arg(&cert).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains(" --profile short --set masked.max_new_tokens=5)"), "{stderr}");
    assert!(stdout.contains("exactly what report.json renders to") && stdout.contains("within tolerance") && stdout.contains(", 0 different"), "{stdout}");
    let full = std::fs::read_to_string(&cert).unwrap();
    assert!(full.contains("| bit-identical |") && !full.contains("DIFFERENT"), "{full}");

    let reproduce = |folder: &Path| {
        let out = std::process::Command::new(rhx).arg("reproduce").arg(folder).arg("--use-cache").arg("--cache").arg(&cache).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    // A renamed copy of the folder reproduces (the report's name is in its provenance).
    let renamed = dir.join("elsewhere/renamed");
    copy_dir(&reports.join("out"), &renamed);
    let (code, text) = reproduce(&renamed);
    assert_eq!(code, Some(0), "{text}");

    // A number changed in report.json fails the certificate, named by its place.
    let doctored = |name: &str, file: &str, edit: &dyn Fn(String) -> String| {
        let d = dir.join("doctored").join(name).join("out");
        copy_dir(&reports.join("out"), &d);
        let p = d.join(file);
        let before = std::fs::read_to_string(&p).unwrap();
        let after = edit(before.clone());
        assert_ne!(before, after, "{file}: the edit changed nothing");
        std::fs::write(&p, after).unwrap();
        let (code, text) = reproduce(&d);
        assert_eq!(code, Some(1), "{file}: {text}");
        text
    };
    let text = doctored("json", "report.json", &|t| {
        let mut v: serde_json::Value = serde_json::from_str(&t).unwrap();
        let cell = &mut v["sections"][0]["tables"][0]["rows"][0]["cells"][1]["value"];
        *cell = serde_json::json!(cell.as_f64().unwrap() + 0.01);
        serde_json::to_string_pretty(&v).unwrap()
    });
    assert!(text.contains("**DIFFERENT**") && text.contains(".cells["), "{text}");
    // A number changed by hand in the Markdown, a CSV or the HTML: the file and line are named.
    let bump = |t: String| -> String {
        // The first decimal number after the first table rule: one digit changed.
        let start = t.find("0.").unwrap_or(0);
        let mut b = t.into_bytes();
        let i = start + 2;
        b[i] = if b[i] == b'9' { b'8' } else { b[i] + 1 };
        String::from_utf8(b).unwrap()
    };
    for file in ["report.md", "report.html"] {
        let text = doctored(file, file, &|t| bump(t));
        assert!(text.contains(&format!("{file}:")) && text.contains("differs from what report.json renders to"), "{file}: {text}");
    }
    let csv = std::fs::read_dir(reports.join("out/tables")).unwrap().next().unwrap().unwrap().file_name().to_string_lossy().into_owned();
    let text = doctored("csv", &format!("tables/{csv}"), &|t| bump(t));
    assert!(text.contains(&format!("tables/{csv}:")) && text.contains("differs from what report.json renders to"), "{text}");
}

/// `rhx reproduce` from another working directory, and of a folder moved out of its project
/// (then the experiment is named with `--experiment`).
#[test]
fn reproduce_from_anywhere() {
    if !installed() {
        return;
    }
    let dir = tmp("reproduce_anywhere");
    let rhx = env!("CARGO_BIN_EXE_rhx");
    let cache = dir.join("cache");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Run from the project root with a relative experiment path, as a user would.
    let st = std::process::Command::new(rhx).current_dir(root).args(["run", "--quiet", "--profile", "short", "tests/run/tiny.rhx", "--cache"]).arg(&cache).arg("--reports").arg(dir.join("reports")).status().unwrap();
    assert!(st.success());
    let elsewhere = dir.join("cwd");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let reproduce = |folder: &Path, extra: &[&str]| {
        let out = std::process::Command::new(rhx).current_dir(&elsewhere).arg("reproduce").arg(folder).args(["--use-cache", "--cache"]).arg(&cache).args(extra).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, text) = reproduce(&dir.join("reports/out"), &[]);
    assert_eq!(code, Some(0), "{text}");
    // Moved out of the project and renamed: found with --experiment, refused with a hint without.
    let moved = dir.join("review/by/someone/section");
    copy_dir(&dir.join("reports/out"), &moved);
    let (code, text) = reproduce(&moved, &[]);
    assert!(code.is_some_and(|c| c != 0), "{text}");
    assert!(text.contains("--experiment"), "{text}");
    let exp = root.join("tests/run/tiny.rhx");
    let (code, text) = reproduce(&moved, &["--experiment", exp.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("REPRODUCED"), "{text}");
}

/// A report served from the cache says who wrote this copy (the second run's command line) and,
/// separately, which run computed each artifact (the first run's, for the report itself).
#[test]
fn provenance_of_a_cached_report_names_this_run_and_the_computing_run() {
    if !installed() {
        return;
    }
    let dir = tmp("provenance");
    let rhx = env!("CARGO_BIN_EXE_rhx");
    let cache = dir.join("cache");
    let run = |reports: &str| {
        let st = std::process::Command::new(rhx).args(["run", "--quiet", "--profile", "short", "--cache"]).arg(&cache).arg("--reports").arg(dir.join(reports)).arg(exp()).status().unwrap();
        assert!(st.success());
        rhx::report::load_report(&dir.join(reports).join("out/report.json")).unwrap().provenance
    };
    let first = run("first");
    let second = run("second");
    let joined = |v: &[String]| v.join(" ");
    assert!(joined(&first.command_line).contains("first") && joined(&second.command_line).contains("second"), "{:?}", second.command_line);
    assert_ne!(first.started, second.started);
    assert_eq!(second.report, "out");
    let computed = &second.computed["out"];
    assert!(joined(&computed.command_line).contains("first"), "{computed:?}");
    assert_eq!(computed.created, first.computed["out"].created);
    assert!(second.computed.contains_key("base") && !second.computed["base"].created.is_empty(), "{:?}", second.computed.keys());
}

#[test]
fn report_assembles_from_cached_traces_only() {
    if !installed() {
        return;
    }
    let dir = tmp("report_cmd");
    let rhx = env!("CARGO_BIN_EXE_rhx");
    let cache = dir.join("cache");
    let reports = dir.join("reports");
    let report = |extra: &[&str]| {
        let mut c = std::process::Command::new(rhx);
        c.arg("report").arg(exp()).arg("--cache").arg(&cache).arg("--reports").arg(&reports).args(extra);
        c.output().unwrap()
    };
    // Nothing cached: no model runs, the missing traces are named.
    let out = report(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not in the cache") && err.contains("base") && err.contains("masked"), "{err}");
    let cache_h = Cache::open(&cache).unwrap();
    let program = lang::check_path(&exp(), &[], &NoShapes).unwrap();
    run::run(&program, &cache_h, &opts(&dir, Some((0, 1)))).unwrap();
    std::fs::remove_dir_all(&reports).unwrap();
    let out = report(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(reports.join("out/report.html").exists());
}

/// `rhx run --json` outcomes: node → "computed" | "cached" | "skipped".
fn json_outcomes(stdout: &[u8]) -> BTreeMap<String, String> {
    let v: serde_json::Value = serde_json::from_slice(stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(stdout)));
    v["nodes"].as_array().unwrap().iter().map(|n| (n["node"].as_str().unwrap().to_string(), n["outcome"].as_str().unwrap().to_string())).collect()
}

#[test]
fn concurrent_and_killed_runs_leave_a_consistent_cache() {
    if !installed() {
        return;
    }
    let dir = tmp("concurrent");
    let rhx = env!("CARGO_BIN_EXE_rhx");
    let cache = dir.join("cache");
    let spawn = |reports: &str, cache: &Path| {
        std::process::Command::new(rhx)
            .args(["run", "--quiet", "--json", "--threads", "1", "--cache"])
            .arg(cache)
            .arg("--reports")
            .arg(dir.join(reports))
            .arg(exp())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Two runs at once on one cache: every node is computed by exactly one of them.
    let (a, b) = (spawn("ra", &cache), spawn("rb", &cache));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{}\n{}", String::from_utf8_lossy(&a.stderr), String::from_utf8_lossy(&b.stderr));
    let (oa, ob) = (json_outcomes(&a.stdout), json_outcomes(&b.stdout));
    for (node, x) in &oa {
        let computed = usize::from(x == "computed") + usize::from(ob[node] == "computed");
        assert_eq!(computed, 1, "{node}: {x} / {}", ob[node]);
    }
    assert!(Cache::open(&cache).unwrap().verify().unwrap().is_clean());
    let tables = |r: &str| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(r).join("out/report.json")).unwrap()).unwrap();
        v["sections"][0]["tables"].clone()
    };
    assert_eq!(tables("ra"), tables("rb"));

    // A run killed with SIGKILL part-way leaves no half-written artifact; the rerun resumes and
    // ends with the same numbers as the undisturbed runs.
    let cache2 = dir.join("cache2");
    let mut victim = spawn("rk", &cache2);
    // Kill once the model and dataset nodes are stored, i.e. while the first trace computes.
    let stored = || Cache::open(&cache2).map(|c| c.ls().map(|l| l.len()).unwrap_or(0)).unwrap_or(0);
    let t0 = std::time::Instant::now();
    while stored() < 2 && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    let c2 = Cache::open(&cache2).unwrap();
    assert!(c2.verify().unwrap().is_clean());
    let resumed = spawn("rk", &cache2).wait_with_output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let o = json_outcomes(&resumed.stdout);
    assert_eq!(o["smol"], "cached", "the nodes stored before the kill are reused: {o:?}");
    assert_eq!(o["out"], "computed", "the run was killed before its end: {o:?}");
    assert!(Cache::open(&cache2).unwrap().verify().unwrap().is_clean());
    assert_eq!(tables("rk"), tables("ra"));
}

#[test]
fn dynamic_ablation_masks_the_k_strongest_heads_of_each_step() {
    if !installed() {
        return;
    }
    let dir = tmp("dynamic");
    let cache = Cache::open(dir.join("cache")).unwrap();
    let exp = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/run/dynamic.rhx");
    let program = lang::check_path(&exp, &[], &NoShapes).unwrap();
    let s = run::run(&program, &cache, &opts(&dir, None)).unwrap();
    let lines = |node: &str| -> Vec<serde_json::Value> {
        let key = s.outcomes.iter().find(|o| o.0 == node).unwrap().1.clone();
        let a = cache.ls().unwrap().into_iter().find(|a| a.key.as_str().starts_with(&key)).unwrap();
        std::fs::read_to_string(a.dir.join("trace.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let base = lines("base");
    let mut masked_steps = 0;
    for (k, node) in [(Some(2usize), "ablated"), (None, "all")] {
        for (b, d) in base.iter().zip(lines(node)) {
            // Step 0's clean pass is the unablated model's step 0.
            assert_eq!(d["steps"][0]["clean_token"], b["steps"][0]["token"], "{node}");
            assert_eq!(d["steps"][0]["clean_heads"], b["steps"][0]["heads"], "{node}");
            for st in d["steps"].as_array().unwrap() {
                let clean: Vec<(usize, usize)> = serde_json::from_value(st["clean_heads"].clone()).unwrap_or_default();
                let masked: Vec<(usize, usize)> = serde_json::from_value(st["masked"].clone()).unwrap_or_default();
                let want = k.map_or(clean.len(), |k| k.min(clean.len()));
                assert_eq!(masked.len(), want, "{node}: masked {masked:?} of H_t {clean:?}");
                assert!(masked.iter().all(|h| clean.contains(h)), "{node}: masked heads must come from H_t");
                masked_steps += usize::from(!masked.is_empty());
            }
        }
    }
    assert!(masked_steps > 5, "the test must exercise masking ({masked_steps} steps masked)");
    // `source: trace`: the masked set of step t is the 2 heaviest heads of base's H_t, and the
    // step ran once (no clean pass recorded).
    let ablated = lines("ablated");
    let mut cheap_masked = 0;
    for ((b, c), a) in base.iter().zip(lines("cheap")).zip(&ablated) {
        // Step 0 sees the same context in both variants, so the same heads are masked.
        assert_eq!(c["steps"][0]["masked"], a["steps"][0]["masked"]);
        for (t, st) in c["steps"].as_array().unwrap().iter().enumerate() {
            assert!(st.get("clean_token").is_none(), "one pass per step");
            let Some(bs) = b["steps"].get(t) else { continue };
            let mut hw: Vec<((usize, usize), f64)> = serde_json::from_value::<Vec<(usize, usize)>>(bs["heads"].clone())
                .unwrap()
                .into_iter()
                .zip(bs["head_weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()))
                .collect();
            hw.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            let want: Vec<(usize, usize)> = hw.into_iter().take(2).map(|x| x.0).collect();
            let got: Vec<(usize, usize)> = serde_json::from_value(st["masked"].clone()).unwrap_or_default();
            assert_eq!(got, want, "step {t}");
            assert_eq!(st["clean_heads"], bs["heads"]);
            cheap_masked += usize::from(!got.is_empty());
        }
    }
    assert!(cheap_masked > 5, "the cheap variant must mask ({cheap_masked} steps)");
}

/// `--reports` naming a file is refused before any work, naming the option.
#[test]
fn reports_option_that_is_a_file_is_named() {
    let dir = tmp("reports_is_file");
    let file = dir.join("notes.txt");
    std::fs::write(&file, "x").unwrap();
    for reports in [file.clone(), file.join("out")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rhx")).arg("run").arg(exp()).arg("--reports").arg(&reports).output().unwrap();
        // miette wraps long messages: compare with the frame and line breaks taken out.
        let err: String = String::from_utf8_lossy(&out.stderr).split_whitespace().filter(|w| *w != "│").collect::<Vec<_>>().join(" ");
        assert!(!out.status.success() && err.contains("--reports") && err.contains("is a file, not a folder"), "{err}");
    }
}
