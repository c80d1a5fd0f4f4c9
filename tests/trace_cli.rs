//! `rhx trace` end to end on the real SmolLM2 model: good lines run, bad lines get an error
//! naming their id and line number, outputs are written atomically, and broken model files
//! give an error naming the file instead of a panic.
mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

fn rhx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rhx"))
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trace_cli");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn model_installed() -> bool {
    common::smollm2_installed()
}

#[test]
fn bad_lines_are_reported_and_good_lines_still_run() {
    if !model_installed() {
        return;
    }
    let input = tmp("mixed.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"id": "ok", "messages": [{"role": "user", "content": "The magic word is 42-abc. What is the magic word?"}], "needle": "The magic word is 42-abc."}"#, "\n",
            r#"{"id": "no-needle", "messages": [{"role": "user", "content": "hello"}], "needle": "absent sentence"}"#, "\n",
            r#"{"id": "empty", "messages": []}"#, "\n",
            "not json\n",
            "\n",
            r#"{"id": "raw", "text": "The magic word is xyz. The magic word is", "needle": "xyz"}"#, "\n",
        ),
    )
    .unwrap();
    let out = tmp("mixed.out.jsonl");
    let r = rhx()
        .args(["trace", "--device", "cpu", "--max-new-tokens", "4", "--quiet", "--prompts"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "exit status with bad lines; stderr: {stderr}");
    assert!(stderr.contains("line 2 (id no-needle)") && stderr.contains("does not occur"), "{stderr}");
    assert!(stderr.contains("line 3 (id empty)") && stderr.contains("`messages` is empty"), "{stderr}");
    assert!(stderr.contains("line 4 (id ?)"), "{stderr}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5, "one output line per non-empty input line");
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ok", "no-needle", "empty", "?", "raw"]);
    for good in [&lines[0], &lines[4]] {
        assert_eq!(good["tokens"].as_array().unwrap().len(), good["steps"].as_array().unwrap().len());
        assert!(!good["needle_span"].as_array().unwrap().is_empty());
        assert!(good["prompt_tokens"].as_u64().unwrap() > 5);
    }
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["error"].as_str().unwrap().contains("needle"));
}

/// `"needles": [..]` (HotpotQA's supporting facts): the span is every token of the first
/// occurrence of each needle, sorted, the union of the spans each needle gets alone; a missing
/// needle is named by its index; `needle` and `needles` together are refused.
#[test]
fn needles_give_the_sorted_union_of_their_spans() {
    if !model_installed() {
        return;
    }
    let user = "Paris is in France. Rome is in Italy. Berlin is in Germany. Where is Rome?";
    let line = |id: &str, extra: &str| format!(r#"{{"id": "{id}", "messages": [{{"role": "user", "content": "{user}"}}], {extra}}}"#);
    let input = tmp("needles.jsonl");
    let lines = [
        line("both", r#""needles": ["Berlin is in Germany.", "Paris is in France."]"#),
        line("first", r#""needle": "Paris is in France.""#),
        line("second", r#""needle": "Berlin is in Germany.""#),
        line("missing", r#""needles": ["Paris is in France.", "Madrid is in Spain."]"#),
        line("clash", r#""needle": "Rome", "needles": ["Rome"]"#),
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = tmp("needles.out.jsonl");
    let r = rhx().args(["trace", "--device", "cpu", "--max-new-tokens", "1", "--quiet", "--prompts"]).arg(&input).arg("--out").arg(&out).output().unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("needles[1] \"Madrid is in Spain.\" does not occur"), "{stderr}");
    assert!(stderr.contains("give either `needle` or `needles`"), "{stderr}");
    let got: Vec<serde_json::Value> = std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let span = |i: usize| -> Vec<u64> { got[i]["needle_span"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect() };
    let mut union = [span(1), span(2)].concat();
    union.sort_unstable();
    assert!(!span(1).is_empty() && span(1).iter().max() < span(2).iter().min(), "{:?} {:?}", span(1), span(2));
    assert_eq!(span(0), union);
}

#[test]
fn broken_model_files_give_errors_naming_the_file() {
    let input = tmp("one.jsonl");
    std::fs::write(&input, r#"{"id": "a", "text": "hi"}"#).unwrap();
    // A truncated copy of a real GGUF (the tiny Llama-3 fixture).
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/llama3/model-f32.gguf");
    let bytes = std::fs::read(&src).unwrap();
    let truncated = tmp("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let not_gguf = tmp("not-a-model.gguf");
    std::fs::write(&not_gguf, b"hello world, definitely not gguf").unwrap();
    for (model, expect) in [
        (truncated.display().to_string(), "truncated"),
        (not_gguf.display().to_string(), "not-a-model.gguf"),
        ("no-such-model".to_string(), "was not found"),
    ] {
        let r = rhx().args(["trace", "--device", "cpu", "--quiet", "--model", &model, "--prompts"]).arg(&input).arg("--out").arg(tmp("x.jsonl")).output().unwrap();
        let stderr = String::from_utf8_lossy(&r.stderr).to_lowercase();
        assert_eq!(r.status.code(), Some(2), "{model}: {stderr}");
        assert!(stderr.contains(&expect.to_lowercase()), "{model}: expected {expect:?} in: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn cuda_request_without_gpu_says_why() {
    if rhx::engine::device::cuda_status().is_ok() {
        return; // a GPU is present: nothing to check here
    }
    let input = tmp("one2.jsonl");
    std::fs::write(&input, r#"{"id": "a", "text": "hi"}"#).unwrap();
    let r = rhx().args(["trace", "--device", "cuda", "--quiet", "--prompts"]).arg(&input).arg("--out").arg(tmp("y.jsonl")).output().unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr.contains("CUDA was requested but is not usable"), "{stderr}");
}

/// `--report` goes through rhx's report renderer: a `.md` path gets the Markdown, a folder the
/// whole report (Markdown, HTML, `report.json`, the table as CSV), with the prompts file's digest.
#[test]
fn report_is_rendered_by_the_report_module_as_a_file_or_a_folder() {
    if !model_installed() {
        return;
    }
    let input = tmp("report.jsonl");
    std::fs::write(&input, concat!(r#"{"id": "q1", "messages": [{"role": "user", "content": "The magic word is 42-abc. What is the magic word?"}], "needle": "The magic word is 42-abc.", "answer": "42-abc"}"#, "\n")).unwrap();
    let md = tmp("report.md");
    let folder = tmp("report_folder");
    let _ = std::fs::remove_dir_all(&folder);
    for report in [&md, &folder] {
        let r = rhx().args(["trace", "--device", "cpu", "--max-new-tokens", "6", "--quiet", "--prompts"]).arg(&input).arg("--out").arg(tmp("report.out.jsonl")).arg("--report").arg(report).output().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
    let digest = rhx::engine::loader::sha256_file(&input).unwrap();
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("| q1 ") && text.contains("answer found") && !text.contains("tables/") && text.contains("/ 1**"), "{text}");
    assert!(text.contains(&digest), "the prompts' sha256 is in the provenance: {text}");
    let report = rhx::report::load_report(&folder.join("report.json")).unwrap();
    let table = &report.sections[0].tables[0];
    assert_eq!((table.id.as_str(), table.rows.len(), table.rows[0].label.as_str()), ("generations", 1, "q1"));
    assert_eq!(report.provenance.datasets[0].sha256, digest);
    for f in ["report.md", "report.html", "tables/generations.csv"] {
        assert!(folder.join(f).is_file(), "{f}");
    }
}
