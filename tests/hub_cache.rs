//! Models by Hub id from the local Hugging Face cache (`src/engine/hub.rs`): the tiny Llama-3
//! checkpoint laid out as `huggingface_hub` lays a download (blobs named by sha256, snapshots of
//! symlinks, refs holding commit hashes), read by child `rhx` processes with `HF_HUB_CACHE` or
//! `HF_HOME` set (the test's own environment is never changed).
mod common;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

const ID: &str = "tiny-org/tiny-llama3";
const MAIN: &str = "1111111111111111111111111111111111111111";
const V1: &str = "2222222222222222222222222222222222222222";
const GONE: &str = "3333333333333333333333333333333333333333";

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hub_cache").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A plain model folder with the same files.
fn plain_folder(root: &Path) -> PathBuf {
    let d = root.join("plain");
    std::fs::create_dir_all(&d).unwrap();
    for (name, bytes) in common::tiny_llama3_with_tokenizer() {
        std::fs::write(d.join(name), bytes).unwrap();
    }
    d
}

/// `<hub>/models--tiny-org--tiny-llama3` with snapshots MAIN (refs/main) and V1 (refs/v1, the
/// same blobs), and refs/broken naming a snapshot that is not there.
fn hub_cache(hub: &Path) {
    let repo = hub.join(format!("models--{}", ID.replace('/', "--")));
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    for (name, bytes) in common::tiny_llama3_with_tokenizer() {
        let blob = format!("{:x}", Sha256::digest(&bytes));
        std::fs::write(repo.join("blobs").join(&blob), &bytes).unwrap();
        for commit in [MAIN, V1] {
            let snap = repo.join("snapshots").join(commit);
            std::fs::create_dir_all(&snap).unwrap();
            std::os::unix::fs::symlink(Path::new("../../blobs").join(&blob), snap.join(name)).unwrap();
        }
    }
    // huggingface_hub writes the hash without a newline.
    std::fs::write(repo.join("refs/main"), MAIN).unwrap();
    std::fs::write(repo.join("refs/v1"), V1).unwrap();
    std::fs::write(repo.join("refs/broken"), GONE).unwrap();
}

/// `rhx` with only the Hub variables given (none inherited from the test's environment).
fn rhx(env: &[(&str, &Path)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rhx"));
    for k in ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn prompts(root: &Path) -> PathBuf {
    let p = root.join("prompts.jsonl");
    std::fs::write(&p, concat!(r#"{"id": "a", "text": "The magic word is xyzzy. The magic word is", "needle": "xyzzy"}"#, "\n", r#"{"id": "b", "text": "one two three four", "needle": "two"}"#, "\n")).unwrap();
    p
}

fn trace(cmd: &mut Command, model: &str, revision: Option<&str>, prompts: &Path, out: &Path) -> Output {
    cmd.args(["trace", "--device", "cpu", "--threads", "1", "--max-new-tokens", "6", "--quiet", "--model", model]);
    if let Some(r) = revision {
        cmd.args(["--revision", r]);
    }
    cmd.arg("--prompts").arg(prompts).arg("--out").arg(out).output().unwrap()
}

/// stderr without whitespace and miette's frame characters: the terminal's line wrapping
/// (which may break inside a path) does not matter to `contains`.
fn stderr(o: &Output) -> String {
    flat(&String::from_utf8_lossy(&o.stderr))
}

fn flat(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace() && !matches!(c, '│' | '×' | '╭' | '╰' | '─' | '┬' | '·')).collect()
}

#[test]
fn trace_by_hub_id_equals_the_plain_folder_at_every_revision() {
    let root = tmp("trace");
    let hub = root.join("hub");
    hub_cache(&hub);
    let plain = plain_folder(&root);
    let p = prompts(&root);
    let want_out = root.join("plain.jsonl");
    let o = trace(&mut rhx(&[]), plain.to_str().unwrap(), None, &p, &want_out);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = std::fs::read_to_string(&want_out).unwrap();
    assert_eq!(want.lines().count(), 2);
    for revision in [None, Some("main"), Some("v1"), Some(V1)] {
        let out = root.join("hub.jsonl");
        let o = trace(&mut rhx(&[("HF_HUB_CACHE", &hub)]), ID, revision, &p, &out);
        assert!(o.status.success(), "{revision:?}: {}", stderr(&o));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), want, "{revision:?}: same tokens, heads and argmax positions as the folder");
    }
    // The commit is in the trace report's provenance.
    let report = root.join("report");
    let o = rhx(&[("HF_HUB_CACHE", &hub)])
        .args(["trace", "--device", "cpu", "--threads", "1", "--max-new-tokens", "2", "--quiet", "--model", ID, "--revision", "v1", "--prompts"])
        .arg(&p)
        .args(["--out"])
        .arg(root.join("r.jsonl"))
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["provenance"]["models"][0]["revision"], V1, "{}", r["provenance"]);
    assert!(std::fs::read_to_string(report.join("report.md")).unwrap().contains(&format!("Hub revision {V1}")));
}

#[test]
fn a_missing_model_lists_where_it_looked_and_how_to_download() {
    let root = tmp("missing");
    let hub = root.join("hub");
    hub_cache(&hub);
    let p = prompts(&root);
    let out = root.join("x.jsonl");
    // HF_HUB_CACHE first; HF_HOME/hub without it; XDG_CACHE_HOME/huggingface/hub without both.
    let home = root.join("hf-home");
    let xdg = root.join("xdg");
    for (env, cache, var) in [
        (vec![("HF_HUB_CACHE", hub.as_path()), ("HF_HOME", home.as_path())], hub.clone(), "$HF_HUB_CACHE"),
        (vec![("HF_HOME", home.as_path()), ("XDG_CACHE_HOME", xdg.as_path())], home.join("hub"), "$HF_HOME/hub"),
        (vec![("XDG_CACHE_HOME", xdg.as_path())], xdg.join("huggingface/hub"), "$XDG_CACHE_HOME/huggingface/hub"),
    ] {
        let o = trace(&mut rhx(&env), "tiny-org/absent", None, &p, &out);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{e}");
        assert!(e.contains(&flat(&format!("{} (the Hub cache, from {var})", cache.display()))), "{var}: {e}");
        assert!(e.contains(&flat(&cache.join("models--tiny-org--absent").display().to_string())), "{e}");
        assert!(e.contains(&flat("hf download tiny-org/absent")) && e.contains(&flat("huggingface-cli download tiny-org/absent")), "{e}");
        assert!(!e.contains("panicked") && !out.exists(), "{e}");
    }
    // A revision that is no ref names refs/<revision>; a hash that is not there names its snapshot.
    let repo = hub.join("models--tiny-org--tiny-llama3");
    let o = trace(&mut rhx(&[("HF_HUB_CACHE", &hub)]), ID, Some("v2"), &p, &out);
    assert!(stderr(&o).contains(&flat(&repo.join("refs/v2").display().to_string())) && stderr(&o).contains(&flat("--revision v2")), "{}", stderr(&o));
    let o = trace(&mut rhx(&[("HF_HUB_CACHE", &hub)]), ID, Some(GONE), &p, &out);
    assert!(stderr(&o).contains(&flat(&repo.join("snapshots").join(GONE).display().to_string())), "{}", stderr(&o));
    // A ref to a snapshot that is not there: named, with the ref file.
    let o = trace(&mut rhx(&[("HF_HUB_CACHE", &hub)]), ID, Some("broken"), &p, &out);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains(&flat(&repo.join("snapshots").join(GONE).display().to_string())) && e.contains(&flat(&repo.join("refs/broken").display().to_string())), "{e}");
    // --revision beside a folder would be ignored: refused.
    let o = trace(&mut rhx(&[]), plain_folder(&root).to_str().unwrap(), Some("main"), &p, &out);
    assert!(o.status.code() == Some(2) && stderr(&o).contains(&flat("applies to a Hub id")), "{}", stderr(&o));
}

/// An experiment with `hf("owner/name")`: `rhx check` errors at the argument; the key holds the
/// commit (two revisions of identical files get two keys); the model artifact records it; the
/// traces equal those of the plain folder.
#[test]
fn experiments_resolve_hub_ids_with_the_revision_in_key_and_provenance() {
    let root = tmp("exp");
    let hub = root.join("hub");
    hub_cache(&hub);
    plain_folder(&root);
    prompts(&root);
    let exp = root.join("hub.rhx");
    std::fs::write(
        &exp,
        format!(
            "experiment \"hub\" {{ seed: 0 }}\n\
             model hub = hf(\"{ID}\") {{ device: cpu }}\n\
             model tagged = hf(\"{ID}\", revision: \"v1\") {{ device: cpu }}\n\
             model plain = hf(\"plain\") {{ device: cpu }}\n\
             dataset prompts = jsonl(\"prompts.jsonl\")\n\
             trace t_hub = generate(hub, prompts) {{ max_new_tokens: 6 }}\n\
             trace t_plain = generate(plain, prompts) {{ max_new_tokens: 6 }}\n"
        ),
    )
    .unwrap();
    let cache = root.join("cache");
    let plan = |extra: &[&str]| -> Vec<serde_json::Value> {
        let o = rhx(&[("HF_HUB_CACHE", &hub)]).arg("plan").arg(&exp).arg("--cache").arg(&cache).arg("--json").args(extra).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let steps = plan(&[]);
    let key = |steps: &[serde_json::Value], n: &str| steps.iter().find(|s| s["node"] == n).unwrap()["key"].as_str().unwrap().to_string();
    assert_ne!(key(&steps, "hub"), key(&steps, "tagged"), "same files, another commit: another key");
    // main moved to another commit (same files): the key follows it.
    let refs_main = hub.join("models--tiny-org--tiny-llama3/refs/main");
    std::fs::write(&refs_main, V1).unwrap();
    assert_ne!(key(&plan(&[]), "hub"), key(&steps, "hub"), "a moved main is another model");
    std::fs::write(&refs_main, MAIN).unwrap();
    assert_eq!(key(&plan(&[]), "hub"), key(&steps, "hub"));
    let o = rhx(&[("HF_HUB_CACHE", &hub)]).args(["run", "--quiet", "--threads", "1"]).arg(&exp).arg("--cache").arg(&cache).arg("--reports").arg(root.join("reports")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let artifact = |k: &str| cache.join("objects").join(&k[..2]).join(k);
    let model: serde_json::Value = serde_json::from_slice(&std::fs::read(artifact(&key(&steps, "hub")).join("model.json")).unwrap()).unwrap();
    assert_eq!(model["revision"], MAIN, "{model}");
    let tokens = |n: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(artifact(&key(&steps, n)).join("trace.jsonl")).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["tokens"].clone()).collect()
    };
    assert_eq!(tokens("t_hub"), tokens("t_plain"));
    assert_eq!(tokens("t_hub").len(), 2);

    // `rhx check`: a model in no cache, and a revision that is not there, at the argument's span.
    let bad = root.join("bad.rhx");
    std::fs::write(&bad, "experiment \"bad\" { seed: 0 }\nmodel m = hf(\"tiny-org/absent\")\nmodel n = hf(\"tiny-org/tiny-llama3\", revision: \"nope\")\n").unwrap();
    let o = rhx(&[("HF_HUB_CACHE", &hub)]).arg("check").arg(&bad).output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("bad.rhx:2:14") && e.contains("models--tiny-org--absent") && e.contains(&flat("hf download tiny-org/absent")), "{e}");
    assert!(e.contains("bad.rhx:3:14") && e.contains("refs/nope") && e.contains(&flat("--revision nope")), "{e}");
    // `revision:` beside a folder is refused, not ignored.
    std::fs::write(&bad, "experiment \"bad\" { seed: 0 }\nmodel m = hf(\"plain\", revision: \"main\")\n").unwrap();
    let o = rhx(&[("HF_HUB_CACHE", &hub)]).arg("check").arg(&bad).output().unwrap();
    assert!(o.status.code() != Some(0) && stderr(&o).contains(&flat("applies to a Hub id")), "{}", stderr(&o));
}
