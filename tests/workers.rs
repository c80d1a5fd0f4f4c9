//! `rhx run --gpus N --worker-device cpu`: the multi-GPU path with CPU processes standing in
//! for GPUs (same code: one worker process per device, cost-balanced shards, per-key locks,
//! the parent assembles). Checks: the same artifacts as a single-process run, file for file;
//! each node computed once over the workers and the parent; a worker killed in the middle of its
//! trace is reported with its device and log, and running again resumes from the cache.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const RHX: &str = env!("CARGO_BIN_EXE_rhx");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rhx-workers-tests").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_json(args: &[&str], cache: &Path, reports: &Path) -> Value {
    let out = Command::new(RHX).current_dir(root()).arg("run").args(args).arg("--cache").arg(cache).arg("--reports").arg(reports).args(["--json", "--threads", "1"]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap()
}

/// node → times computed, over the parent's and every worker's summary.
fn computed(v: &Value) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    let mut add = |s: &Value| {
        for node in s["nodes"].as_array().unwrap() {
            if node["outcome"] == "computed" {
                *n.entry(node["node"].as_str().unwrap().to_string()).or_default() += 1;
            }
        }
    };
    add(v);
    for w in v["workers"].as_array().unwrap() {
        add(&w["summary"]);
    }
    n
}

/// Every artifact's files (name, sha256), reports aside (they record times).
fn artifacts(cache: &Path, exp: &Path) -> BTreeMap<String, Value> {
    let out = Command::new(RHX).args(["plan", "--json", "--cache"]).arg(cache).arg(exp).output().unwrap();
    let plan: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    plan.iter()
        .filter(|s| s["kind"] != "report")
        .map(|s| {
            let key = s["key"].as_str().unwrap();
            let m: Value = serde_json::from_str(&std::fs::read_to_string(cache.join("objects").join(&key[..2]).join(key).join("manifest.json")).unwrap()).unwrap();
            (s["node"].as_str().unwrap().to_string(), m["files"].clone())
        })
        .collect()
}

/// `--gpus`: a count, a list, one GPU by index (`3,`); the mistakes say how to write it.
#[test]
fn gpus_are_a_count_a_list_or_one_index() {
    let err = |v: &str| {
        let out = Command::new(RHX).args(["run", "tests/run/tiny.rhx", "--gpus", v]).current_dir(root()).output().unwrap();
        assert!(!out.status.success(), "--gpus {v} was accepted");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(err("0").contains("to use GPU 0 alone write `--gpus 0,`"), "{}", err("0"));
    assert!(err("1,1").contains("names a GPU twice"), "{}", err("1,1"));
    assert!(err(",").contains("names no GPU"), "{}", err(","));
    assert!(err("two").contains("write all, a count (2), or indices"), "{}", err("two"));
    // --worker-device without --gpus is refused.
    let out = Command::new(RHX).args(["run", "tests/run/tiny.rhx", "--worker-device", "cpu"]).current_dir(root()).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--gpus"), "--worker-device needs --gpus");
}

#[test]
fn two_cpu_workers_equal_one_process_and_compute_each_node_once() {
    if !common::smollm2_installed() {
        return;
    }
    let dir = tmp("equal");
    let exp = root().join("tests/run/tiny.rhx");
    let e = exp.to_str().unwrap();
    run_json(&[e], &dir.join("single"), &dir.join("r1"));
    let v = run_json(&[e, "--gpus", "2", "--worker-device", "cpu"], &dir.join("two"), &dir.join("r2"));
    assert_eq!(v["workers"].as_array().unwrap().len(), 2);
    let once = computed(&v);
    assert!(once.values().all(|&n| n == 1), "{once:?}");
    let traces: Vec<&str> = ["base", "masked"].into();
    for t in traces {
        assert_eq!(once.get(t), Some(&1), "{t}: {once:?}");
        // Traces are the workers' work, not the parent's.
        assert!(v["nodes"].as_array().unwrap().iter().any(|n| n["node"] == t && n["outcome"] == "cached"), "{t}");
    }
    assert_eq!(artifacts(&dir.join("two"), &exp), artifacts(&dir.join("single"), &exp));
    assert!(!root().join("reports/out").exists(), "a worker published a report outside --reports");
    assert_eq!(std::fs::read_to_string(dir.join("r2/out/tables/scores.csv")).unwrap(), std::fs::read_to_string(dir.join("r1/out/tables/scores.csv")).unwrap());
}

#[test]
fn a_killed_worker_is_named_with_its_log_and_a_rerun_resumes() {
    if !common::smollm2_installed() {
        return;
    }
    let dir = tmp("killed");
    let exp = root().join("tests/slurm/four.rhx");
    let cache = dir.join("cache");
    let child = Command::new(RHX)
        .current_dir(root())
        .arg("run")
        .arg(&exp)
        .args(["--gpus", "2", "--worker-device", "cpu", "--threads", "1", "--quiet", "--cache"])
        .arg(&cache)
        .arg("--reports")
        .arg(dir.join("reports"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The worker computing trace `b` (the longest), once it has started it.
    let t = Instant::now();
    let (pid, log) = loop {
        assert!(t.elapsed() < Duration::from_secs(300), "trace b never started");
        std::thread::sleep(Duration::from_millis(20));
        let Some(wdir) = std::fs::read_dir(dir.join("workers")).ok().and_then(|rd| rd.flatten().map(|e| e.path()).find(|p| p.join("workers.json").exists())) else { continue };
        let Ok(ws) = std::fs::read_to_string(wdir.join("workers.json")) else { continue };
        let Ok(ws) = serde_json::from_str::<Vec<Value>>(&ws) else { continue };
        let found = ws.iter().find_map(|w| {
            let log = PathBuf::from(w["log"].as_str()?);
            std::fs::read_to_string(&log).ok()?.contains(" trace b = ").then(|| (w["pid"].as_u64().unwrap() as i32, log))
        });
        if let Some(f) = found {
            break f;
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: sending SIGKILL to the worker process the run started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("1 of 2 workers failed") && err.contains("cpu worker") && err.contains("killed by signal 9"), "{err}");
    let name = log.file_name().unwrap().to_string_lossy().to_string();
    assert!(err.contains(&name), "the error names the log {name}: {err}");
    assert!(err.contains("run the same command again to resume"), "{err}");

    // Again: only what the killed worker did not finish is computed, each node once.
    let before: Vec<Value> = serde_json::from_slice(&Command::new(RHX).args(["plan", "--json", "--cache"]).arg(&cache).arg(&exp).output().unwrap().stdout).unwrap();
    let cached: Vec<&str> = before.iter().filter(|s| s["state"] == "cached").map(|s| s["node"].as_str().unwrap()).collect();
    assert!(!cached.contains(&"b"));
    let v = run_json(&[exp.to_str().unwrap(), "--gpus", "2", "--worker-device", "cpu", "--quiet"], &cache, &dir.join("reports"));
    let again = computed(&v);
    assert_eq!(again.get("b"), Some(&1), "{again:?}");
    assert!(again.values().all(|&n| n == 1), "{again:?}");
    assert!(again.keys().all(|n| !cached.contains(&n.as_str())), "recomputed a cached node: {again:?}");
}
