//! `rhx export`: a real trace (the tiny Llama-3 with Eq. 2 captured) and a table, made by `rhx
//! run`, written as Parquet and read back with `pyarrow` from the project's virtualenv; every
//! value is compared with the trace as the Rust reader gives it, and the metadata with the cache.
mod common;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rhx::artifact::trace::{read_lines, TraceLine};
use rhx::cache::{Cache, Key};
use serde_json::Value;

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("export").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rhx(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rhx"));
    c.current_dir(dir);
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The project virtualenv's Python (pyarrow from scripts/requirements-test.txt).
fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// Every column of a Parquet file as JSON lists, its row count and its key-value metadata, as
/// pyarrow reads them.
fn read_with_pyarrow(file: &Path) -> Value {
    let script = r#"
import json, sys
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
meta = pq.read_metadata(sys.argv[1]).metadata
print(json.dumps({
    "rows": t.num_rows,
    "columns": t.column_names,
    "types": [str(f.type) for f in t.schema],
    "data": {c: t.column(c).to_pylist() for c in t.column_names},
    "meta": {k.decode(): v.decode() for k, v in meta.items() if not k.startswith(b"ARROW:")},
    "schema_meta": {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()},
}))
"#;
    let o = Command::new(python()).arg("-c").arg(script).arg(file).output().expect("the project virtualenv's python (bash scripts/setup.sh)");
    assert!(o.status.success(), "pyarrow could not read {}: {}", file.display(), stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A model folder, prompts with needles, and an experiment: a trace with Eq. 2 scores (H_t its
/// top 3 heads), its static heads and their table; `later` is never run.
fn project(root: &Path) -> PathBuf {
    std::fs::create_dir_all(root.join("plain")).unwrap();
    for (name, bytes) in common::tiny_llama3_with_tokenizer() {
        std::fs::write(root.join("plain").join(name), bytes).unwrap();
    }
    std::fs::write(
        root.join("prompts.jsonl"),
        concat!(
            r#"{"id": "a", "text": "The magic word is xyzzy. The magic word is", "needle": "xyzzy"}"#,
            "\n",
            r#"{"id": "b", "text": "one two three four five", "needle": "three"}"#,
            "\n"
        ),
    )
    .unwrap();
    let exp = root.join("exp.rhx");
    std::fs::write(
        &exp,
        "experiment \"export\" { seed: 0 }\n\
         model lm = hf(\"plain\") { device: cpu }\n\
         dataset prompts = jsonl(\"prompts.jsonl\")\n\
         trace t = generate(lm, prompts) { max_new_tokens: 5, capture: [retrieval(reasoning, top: 3)] }\n\
         heads st = static_heads(t) { top: 4, method: step_frequency, success_filter: false }\n\
         table ht = head_table(st)\n\
         trace later = generate(lm, prompts) { max_new_tokens: 7 }\n",
    )
    .unwrap();
    exp
}

fn plan_key(root: &Path, node: &str) -> Key {
    let o = rhx(root).args(["plan", "exp.rhx", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let steps: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    Key::parse(steps.iter().find(|s| s["node"] == node).unwrap()["key"].as_str().unwrap()).unwrap()
}

fn f32_of(v: &Value) -> Option<f32> {
    v.as_f64().map(|x| x as f32)
}

#[test]
fn traces_and_tables_round_trip_through_pyarrow() {
    let root = tmp("roundtrip");
    project(&root);
    let o = rhx(&root).args(["run", "exp.rhx", "--quiet", "--threads", "1", "--set", "later.max_new_tokens=5"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let cache = Cache::open(root.join(".rhx/cache")).unwrap();
    let key = plan_key(&root, "t");
    let artifact = cache.get(&key).unwrap().expect("the trace is cached");
    let lines: Vec<TraceLine> = read_lines(&artifact).unwrap();
    let (layers, heads) = (3usize, 4usize);
    let n_steps: usize = lines.iter().map(|l| l.steps.len()).sum();
    assert!(n_steps >= 2 && lines.iter().all(|l| l.steps.iter().all(|s| s.reasoning.is_some())));

    // Long form: one row per (sample, step, layer, head), in that order.
    let o = rhx(&root).args(["export", "exp.rhx", "t", "--out", "out/long.parquet"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let long = read_with_pyarrow(&root.join("out/long.parquet"));
    assert_eq!(long["rows"], n_steps * layers * heads);
    let cols: Vec<&str> = long["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(
        cols,
        ["sample", "sample_id", "step", "token_id", "token_text", "layer", "head", "argmax_pos", "argmax_in_needle", "is_retrieval_head", "retrieval_weight", "argmax_weight", "reasoning_score"]
    );
    let d = &long["data"];
    let mut row = 0;
    for (i, l) in lines.iter().enumerate() {
        for (t, s) in l.steps.iter().enumerate() {
            for ly in 0..layers {
                for h in 0..heads {
                    let at = |c: &str| &d[c][row];
                    assert_eq!((at("sample"), at("sample_id"), at("step")), (&Value::from(i), &Value::from(l.id.clone()), &Value::from(t)), "row {row}");
                    assert_eq!((at("token_id"), at("token_text")), (&Value::from(s.token), &Value::from(l.pieces[t].clone())));
                    assert_eq!((at("layer"), at("head")), (&Value::from(ly), &Value::from(h)));
                    assert_eq!(at("argmax_pos"), &Value::from(s.argmax[ly * heads + h]));
                    assert_eq!(at("argmax_in_needle"), &Value::from(l.needle_span.contains(&(s.argmax[ly * heads + h] as usize))));
                    let pos = s.heads.iter().position(|&x| x == (ly, h));
                    assert_eq!(at("is_retrieval_head"), &Value::from(pos.is_some()), "row {row}");
                    assert_eq!(f32_of(at("retrieval_weight")), pos.map(|p| s.head_weights[p] as f32));
                    assert!(at("argmax_weight").is_null(), "not captured without --full");
                    assert_eq!(f32_of(at("reasoning_score")), Some(s.reasoning.as_ref().unwrap()[ly][h] as f32));
                    row += 1;
                }
            }
        }
    }
    let in_h: usize = lines.iter().flat_map(|l| &l.steps).map(|s| s.heads.len()).sum();
    assert!(in_h > 0, "some step has retrieval heads");
    assert_eq!(d["is_retrieval_head"].as_array().unwrap().iter().filter(|v| v.as_bool().unwrap()).count(), in_h);
    // Metadata: the model, the key, the version, the provenance (the trace's spec and info).
    let m = &long["meta"];
    assert_eq!(m["rhx:key"], key.as_str());
    assert_eq!(m["rhx:form"], "long");
    assert_eq!((m["rhx:layers"].as_str(), m["rhx:heads"].as_str()), (Some("3"), Some("4")));
    assert!(m["rhx:model"].as_str().unwrap().contains("plain"), "{m}");
    assert!(m["rhx:version"].as_str().unwrap().starts_with(env!("CARGO_PKG_VERSION")));
    let prov: Value = serde_json::from_str(m["rhx:provenance"].as_str().unwrap()).unwrap();
    assert_eq!(prov["spec"], artifact.manifest.spec);
    assert_eq!(prov["trace_info"]["layers"], 3);
    assert_eq!(prov["models"][0]["layers"], 3, "the model.json of the trace's model");
    assert_eq!(long["schema_meta"], long["meta"], "the Arrow schema carries the same metadata");

    // Steps form: one row per (sample, step), per-head lists layer-major.
    let o = rhx(&root).args(["export", "exp.rhx", "t", "--form", "steps", "--out", "out/steps.parquet"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let steps = read_with_pyarrow(&root.join("out/steps.parquet"));
    assert_eq!(steps["rows"], n_steps);
    assert_eq!(steps["meta"]["rhx:form"], "steps");
    let d = &steps["data"];
    let mut row = 0;
    for l in &lines {
        for s in &l.steps {
            assert_eq!(d["token_id"][row], s.token);
            let pairs: Vec<(u64, u64)> = d["retrieval_layer"][row].as_array().unwrap().iter().zip(d["retrieval_head"][row].as_array().unwrap()).map(|(a, b)| (a.as_u64().unwrap(), b.as_u64().unwrap())).collect();
            assert_eq!(pairs, s.heads.iter().map(|&(a, b)| (a as u64, b as u64)).collect::<Vec<_>>());
            assert_eq!(d["argmax_pos"][row], serde_json::json!(s.argmax));
            let scores: Vec<f32> = d["reasoning_score"][row].as_array().unwrap().iter().map(|v| f32_of(v).unwrap()).collect();
            assert_eq!(scores, s.reasoning.as_ref().unwrap().iter().flatten().map(|&x| x as f32).collect::<Vec<_>>());
            assert!(d["argmax_weight"][row].is_null());
            row += 1;
        }
    }

    // The same artifact named by its cache folder gives the same file content.
    let o = rhx(&root).arg("export").arg(&artifact.dir).args(["--out", "out/by_dir.parquet"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let by_dir = read_with_pyarrow(&root.join("out/by_dir.parquet"));
    assert_eq!(by_dir["data"], long["data"]);
    assert_eq!(by_dir["meta"]["rhx:key"], key.as_str());

    // A table: typed columns, one row per table row.
    let o = rhx(&root).args(["export", "exp.rhx", "ht", "--out", "out/table.parquet"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let table = read_with_pyarrow(&root.join("out/table.parquet"));
    let json: Value = serde_json::from_slice(&cache.get(&plan_key(&root, "ht")).unwrap().unwrap().read("table.json").unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(table["rows"], rows.len());
    assert_eq!(table["meta"]["rhx:form"], "table");
    assert_eq!(table["meta"]["rhx:model"], long["meta"]["rhx:model"], "found through the table's inputs");
    let names: Vec<String> = json["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    let cols: Vec<String> = table["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    assert_eq!(&cols[1..], &names[..], "the row label, then the table's columns");
    for (c, name) in names.iter().enumerate() {
        for (r, row) in rows.iter().enumerate() {
            let cell = &row["cells"][c];
            let got = &table["data"][name][r];
            match (cell.get("value"), cell.get("text")) {
                (Some(v), _) => assert_eq!(got.as_f64(), v.as_f64(), "{name} row {r}"),
                (_, Some(t)) => assert_eq!(got, t),
                _ => assert!(got.is_null()),
            }
        }
    }
    assert_eq!(table["data"][&cols[0]], serde_json::json!(rows.iter().map(|r| r["label"].clone()).collect::<Vec<_>>()));
}

#[test]
fn unusable_arguments_get_errors_and_leave_no_file() {
    let root = tmp("errors");
    project(&root);
    let run = |args: &[&str]| rhx(&root).arg("export").args(args).output().unwrap();
    let check = |o: Output, want: &[&str]| {
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{e}");
        for w in want {
            assert!(e.contains(w), "expected {w:?} in: {e}");
        }
        assert!(!e.contains("panicked"), "{e}");
    };
    // Not run yet: refused, saying how to make it.
    check(run(&["exp.rhx", "later", "--out", "x.parquet"]), &["node `later`", "not in the cache", "rhx run exp.rhx"]);
    check(run(&["exp.rhx", "nope", "--out", "x.parquet"]), &["no node `nope`", "later"]);
    check(run(&["exp.rhx", "--out", "x.parquet"]), &["name the node"]);
    check(run(&["exp.rhx", "t", "--out", "x.csv"]), &["give a .parquet file"]);
    check(run(&["missing.jsonl", "--out", "x.parquet"]), &["missing.jsonl: no such file"]);
    // A `rhx trace --out` file: a failed prompt's line and a line that is not JSON are named.
    std::fs::write(root.join("failed.jsonl"), "{\"id\": \"q\", \"line\": 1, \"error\": \"needle not found\"}\n").unwrap();
    check(run(&["failed.jsonl", "--out", "x.parquet"]), &["failed.jsonl:1", "prompt `q` failed"]);
    std::fs::write(root.join("bad.jsonl"), "not json\n").unwrap();
    check(run(&["bad.jsonl", "--out", "x.parquet"]), &["bad.jsonl:1: not JSON"]);
    assert!(!root.join("x.parquet").exists(), "no output on an error");
    assert!(std::fs::read_dir(&root).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().contains(".tmp-")), "no temporary file left");
}

/// `rhx trace --out` files: the shape comes from `--heads-per-layer` (or the Eq. 2 scores); the
/// metadata names the file by its sha256.
#[test]
fn rhx_trace_files_export_with_the_shape_given() {
    let root = tmp("trace_file");
    project(&root);
    let o = rhx(&root).args(["trace", "--device", "cpu", "--threads", "1", "--quiet", "--model", "plain", "--max-new-tokens", "4", "--full", "--prompts", "prompts.jsonl", "--out", "t.jsonl"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = rhx(&root).args(["export", "t.jsonl", "--out", "t.parquet"]).output().unwrap();
    assert!(o.status.code() == Some(2) && stderr(&o).contains("--heads-per-layer"), "{}", stderr(&o));
    let o = rhx(&root).args(["export", "t.jsonl", "--heads-per-layer", "5", "--out", "t.parquet"]).output().unwrap();
    assert!(o.status.code() == Some(2) && stderr(&o).contains("does not divide"), "{}", stderr(&o));
    let o = rhx(&root).args(["export", "t.jsonl", "--heads-per-layer", "4", "--out", "t.parquet"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let p = read_with_pyarrow(&root.join("t.parquet"));
    let lines: Vec<TraceLine> = std::fs::read_to_string(root.join("t.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let n_steps: usize = lines.iter().map(|l| l.steps.len()).sum();
    assert_eq!(p["rows"], n_steps * 12);
    let weights: Vec<f32> = lines.iter().flat_map(|l| l.steps.iter().flat_map(|s| s.argmax_weight.iter().map(|&w| w as f32))).collect();
    assert_eq!(p["data"]["argmax_weight"].as_array().unwrap().iter().map(|v| f32_of(v).unwrap()).collect::<Vec<_>>(), weights, "--full's weights, every head");
    assert!(p["data"]["reasoning_score"].as_array().unwrap().iter().all(Value::is_null));
    let sha = Key::of_bytes(&std::fs::read(root.join("t.jsonl")).unwrap());
    assert_eq!(p["meta"]["rhx:key"], format!("sha256:{}", sha.as_str()));
}
