//! `rhx slurm` against a real Slurm: `scripts/slurm/local-cluster.sh` starts a one-node cluster
//! (munged, slurmctld, slurmd; installed with apt when missing), and the test submits a 4-task
//! array of `tests/slurm/four.rhx` (SmolLM2 on the CPU) with `file` locks (the kind shared file
//! systems get), then checks: every node computed exactly once over all tasks and the
//! assembling job; the cache and the report's tables equal a single-process run's, file for
//! file; a task cancelled with `scancel` in the middle of its trace leaves a verifying cache,
//! its lock is seen as free, and submitting again computes only what is missing, with the same
//! numbers. Wall times of the array and the single-process run are printed.
//!
//! Skipped, with a message, only where there is no Slurm and no apt-get to install it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const RHX: &str = env!("CARGO_BIN_EXE_rhx");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn exp() -> PathBuf {
    root().join("tests/slurm/four.rhx")
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rhx-slurm-tests").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The cluster's SLURM_CONF, or `None` (with a message) where Slurm cannot be had.
fn cluster() -> Option<String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rhx-slurm-cluster");
    let out = Command::new("bash").arg(root().join("scripts/slurm/local-cluster.sh")).arg("start").env("RHX_SLURM_DIR", &dir).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.code() == Some(3) {
        eprintln!("SKIPPED: no Slurm here and no apt-get to install it:\n{text}");
        return None;
    }
    assert!(out.status.success(), "the local Slurm cluster did not start:\n{text}");
    Some(dir.join("slurm.conf").display().to_string())
}

fn cmd(conf: &str, prog: &str) -> Command {
    let mut c = Command::new(prog);
    c.env("SLURM_CONF", conf).env("RHX_LOCK", "file").current_dir(root());
    c
}

fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{c:?} failed: {}\n{text}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    text
}

/// Submits the experiment: (array id or None, report job id, out folder).
fn submit(conf: &str, cache: &Path, reports: &Path, out: &Path) -> (Option<String>, String) {
    let text = ok(cmd(conf, RHX).arg("slurm").arg(exp()).args(["--tasks", "4", "--cpus-per-task", "1", "--cache"]).arg(cache).arg("--reports").arg(reports).arg("--out").arg(out));
    let v: Value = serde_json::from_str(text.trim().lines().last().unwrap()).unwrap();
    (v["array"].as_str().map(str::to_string), v["report"].as_str().unwrap().to_string())
}

/// Waits until none of `jobs` is queued or running.
fn wait_jobs(conf: &str, jobs: &[&str], limit: Duration) {
    let t = Instant::now();
    loop {
        let q = ok(cmd(conf, "squeue").args(["-h", "-o", "%i %T", "-j", &jobs.join(",")]));
        if q.trim().is_empty() {
            return;
        }
        assert!(t.elapsed() < limit, "jobs still queued after {limit:?}:\n{q}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn job_state(conf: &str, id: &str) -> String {
    let s = ok(cmd(conf, "scontrol").args(["show", "job", id]));
    s.split_whitespace().filter_map(|w| w.strip_prefix("JobState=")).collect::<Vec<_>>().join(",")
}

/// node → how many processes computed it, from the `--json` summaries in a submission's logs.
fn computed(out: &Path) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for e in std::fs::read_dir(out.join("logs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "out") {
            for line in std::fs::read_to_string(&p).unwrap().lines().filter(|l| l.starts_with('{')) {
                let v: Value = serde_json::from_str(line).unwrap();
                for node in v["nodes"].as_array().unwrap() {
                    if node["outcome"] == "computed" {
                        *n.entry(node["node"].as_str().unwrap().to_string()).or_default() += 1;
                    }
                }
            }
        }
    }
    n
}

/// Every node's key and state, from `rhx plan --json`.
fn plan(conf: &str, cache: &Path) -> Vec<Value> {
    serde_json::from_str(&ok(cmd(conf, RHX).args(["plan", "--json", "--cache"]).arg(cache).arg(exp()))).unwrap()
}

/// The files (name, sha256) of every artifact but the report (which records times).
fn artifacts(cache: &Path, plan: &[Value]) -> BTreeMap<String, Value> {
    plan.iter()
        .filter(|s| s["kind"] != "report")
        .map(|s| {
            let key = s["key"].as_str().unwrap();
            let m: Value = serde_json::from_str(&std::fs::read_to_string(cache.join("objects").join(&key[..2]).join(key).join("manifest.json")).unwrap()).unwrap();
            (s["node"].as_str().unwrap().to_string(), m["files"].clone())
        })
        .collect()
}

fn tables(reports: &Path) -> BTreeMap<String, String> {
    let dir = reports.join("out/tables");
    std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap())).collect()
}

#[test]
fn a_slurm_array_computes_each_node_once_and_resumes_after_scancel() {
    if !common::smollm2_installed() {
        return;
    }
    let Some(conf) = cluster() else { return };
    let dir = tmp("array");

    // The reference: one process, same machine.
    let t = Instant::now();
    ok(cmd(&conf, RHX).args(["run", "--quiet", "--threads", "1", "--cache"]).arg(dir.join("single")).arg("--reports").arg(dir.join("single_reports")).arg(exp()));
    let single_s = t.elapsed().as_secs_f64();
    let reference_plan = plan(&conf, &dir.join("single"));
    let reference = artifacts(&dir.join("single"), &reference_plan);

    // 1. The array on a fresh cache.
    let t = Instant::now();
    let (array, report) = submit(&conf, &dir.join("cache"), &dir.join("reports"), &dir.join("sub1"));
    let array = array.expect("four traces to compute");
    wait_jobs(&conf, &[&array, &report], Duration::from_secs(600));
    let array_s = t.elapsed().as_secs_f64();
    assert!(job_state(&conf, &array).split(',').all(|s| s == "COMPLETED"), "array: {}", job_state(&conf, &array));
    assert_eq!(job_state(&conf, &report), "COMPLETED");
    let once = computed(&dir.join("sub1"));
    let nodes: BTreeSet<String> = reference_plan.iter().map(|s| s["node"].as_str().unwrap().to_string()).collect();
    assert_eq!(once.keys().cloned().collect::<BTreeSet<_>>(), nodes, "every node computed");
    assert!(once.values().all(|&n| n == 1), "each exactly once: {once:?}");
    let p = plan(&conf, &dir.join("cache"));
    assert_eq!(artifacts(&dir.join("cache"), &p), reference, "the array's artifacts equal the single process's, file for file");
    assert_eq!(tables(&dir.join("reports")), tables(&dir.join("single_reports")), "report tables");
    eprintln!("wall time: 4-task array {array_s:.1} s (submit → report), single process {single_s:.1} s");

    // 2. Cancel the task computing the longest trace in the middle of it.
    let cache = dir.join("cache2");
    let (array, report) = submit(&conf, &cache, &dir.join("reports2"), &dir.join("sub2"));
    let array = array.unwrap();
    let shards: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("sub2/shards.json")).unwrap()).unwrap();
    let b = shards["traces"].as_array().unwrap().iter().find(|t| t["node"] == "b").unwrap();
    let (b_task, b_key) = (b["shard"].as_u64().unwrap(), b["key"].as_str().unwrap().to_string());
    let lock = cache.join("locks").join(format!("{b_key}.lock"));
    let t = Instant::now();
    while !lock.exists() {
        assert!(t.elapsed() < Duration::from_secs(300), "trace b never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    ok(cmd(&conf, "scancel").arg(format!("{array}_{b_task}")));
    wait_jobs(&conf, &[&array, &report], Duration::from_secs(600));
    assert!(job_state(&conf, &array).contains("CANCELLED"), "{}", job_state(&conf, &array));
    assert!(lock.exists(), "a killed holder leaves its file lock behind");
    // `rhx plan` asks for the lock: its owner's process is gone, so it is free (taken over).
    let p = plan(&conf, &cache);
    let state = |node: &str| p.iter().find(|s| s["node"] == node).unwrap()["state"].as_str().unwrap().to_string();
    assert_eq!(state("b"), "to run", "the killed task's lock (its process is gone) is free");
    let verify = cmd(&conf, RHX).args(["cache", "verify", "--cache"]).arg(&cache).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let cached_before: BTreeSet<String> = p.iter().filter(|s| s["state"] == "cached").map(|s| s["node"].as_str().unwrap().to_string()).collect();
    assert!(!cached_before.contains("b"));

    // 3. Submit again: only what is missing runs, once, and the numbers are the same.
    let (array, report) = submit(&conf, &cache, &dir.join("reports2"), &dir.join("sub3"));
    let mut jobs = vec![report.as_str()];
    if let Some(a) = &array {
        jobs.push(a);
    }
    wait_jobs(&conf, &jobs, Duration::from_secs(600));
    assert_eq!(job_state(&conf, &report), "COMPLETED");
    let again = computed(&dir.join("sub3"));
    assert_eq!(again.get("b"), Some(&1), "{again:?}");
    assert!(again.values().all(|&n| n == 1), "{again:?}");
    assert!(again.keys().all(|n| !cached_before.contains(n)), "recomputed a cached node: {again:?} (cached: {cached_before:?})");
    let p = plan(&conf, &cache);
    assert_eq!(artifacts(&cache, &p), reference, "after scancel and resubmission");
    assert_eq!(tables(&dir.join("reports2")), tables(&dir.join("single_reports")));
    assert!(!lock.exists(), "the stale lock was taken over and released");
}
