//! The content-addressed cache (`rhx::cache`) with real processes and real files: round trip,
//! key sensitivity, corruption and quarantine, kill -9 in the middle of a write, four processes
//! racing on the same keys, the digest cache, gc, and error reporting.
//!
//! Crash and concurrency tests re-execute this test binary: the child runs the test
//! `child_process_entry` with `RHX_CACHE_CHILD=<role>:<cache root>` set (without that variable
//! the test does nothing).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use rhx::cache::*;
use serde_json::{json, Value};

const CHILD_ENV: &str = "RHX_CACHE_CHILD";

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("rhx-cache-tests")
        .join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn key(name: &str) -> Key {
    KeyBuilder::new("test")
        .spec(&json!({ "name": name }))
        .build()
}

/// Writes `data.bin` (content) and `sub/info.json` into an artifact directory.
fn write_two(dir: &Path, content: &[u8]) -> std::io::Result<()> {
    fs::write(dir.join("data.bin"), content)?;
    fs::create_dir(dir.join("sub"))?;
    fs::write(dir.join("sub/info.json"), br#"{"ok":true}"#)
}

fn put_two(cache: &Cache, key: &Key, content: &[u8]) -> Artifact {
    cache
        .put(key, ArtifactMeta::new("test"), |dir| {
            write_two(dir, content)
        })
        .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Gives back the write bits the cache took from stored files (so a test can damage them even
/// when it does not run as root).
fn make_writable(dir: &Path) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            make_writable(&p);
        } else {
            let mut perms = fs::metadata(&p).unwrap().permissions();
            perms.set_mode(perms.mode() | 0o200);
            fs::set_permissions(&p, perms).unwrap();
        }
    }
}

/// Deterministic artifact content for a key (used by the concurrency test).
fn content_for(key: &Key) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..500u32 {
        out.extend_from_slice(format!("{key}:{i}\n").as_bytes());
    }
    out
}

fn child(role: &str, root: &Path, extra_env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, format!("{role}:{}", root.display()))
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Entry point of the child processes; a no-op in a normal test run.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (what, root) = role.split_once(':').unwrap();
    let root = Path::new(root);
    match what {
        "write_slowly" => child_write_slowly(root),
        "worker" => child_worker(root),
        "hold" => child_hold(root),
        "lock_kind" => {
            match Cache::open(root) {
                Ok(_) => panic!("a bad RHX_LOCK was accepted"),
                Err(e) => panic!("{e}"),
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

fn slow_key() -> Key {
    KeyBuilder::new("slow")
        .spec(&json!({"size": "large"}))
        .build()
}

fn child_write_slowly(root: &Path) {
    let cache = Cache::open(root).unwrap();
    cache
        .put(&slow_key(), ArtifactMeta::new("slow"), |dir| {
            let mut f = fs::File::create(dir.join("big.bin"))?;
            let chunk = vec![0xabu8; 64 << 10];
            for _ in 0..20_000 {
                f.write_all(&chunk)?;
                f.flush()?;
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok::<(), std::io::Error>(())
        })
        .unwrap();
    panic!("the parent should have killed this child before the write finished");
}

fn worker_keys() -> Vec<Key> {
    (0..20)
        .map(|i| {
            KeyBuilder::new("conc")
                .spec(&json!({ "i": i }))
                .seed(7)
                .build()
        })
        .collect()
}

fn child_worker(root: &Path) {
    let id: u64 = std::env::var("RHX_CACHE_WORKER").unwrap().parse().unwrap();
    let log_path = PathBuf::from(std::env::var("RHX_CACHE_LOG").unwrap());
    let go = PathBuf::from(std::env::var("RHX_CACHE_GO").unwrap());
    let cache = Cache::open(root).unwrap();
    let mut keys = worker_keys();
    // Fisher-Yates with a per-child xorshift.
    let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ (id + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    for i in (1..keys.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        keys.swap(i, (s % (i as u64 + 1)) as usize);
    }
    // Barrier: say we are ready, wait for the parent's go (so all children race).
    fs::write(format!("{}.ready", log_path.display()), b"").unwrap();
    let started = Instant::now();
    while !go.exists() {
        assert!(started.elapsed() < Duration::from_secs(20), "no go signal");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap();
    for k in &keys {
        let (art, _computed) = cache
            .get_or_put(k, ArtifactMeta::new("conc"), |dir| {
                writeln!(log, "{k}")?;
                log.flush()?;
                std::thread::sleep(Duration::from_millis(4));
                fs::write(dir.join("data.bin"), content_for(k))
            })
            .unwrap();
        assert_eq!(art.read("data.bin").unwrap(), content_for(k));
    }
}

// ------------------------------------------------------------------------------------ 1

#[test]
fn round_trip() {
    let root = scratch("round_trip");
    let cache = Cache::open(&root).unwrap();
    for d in ["objects", "tmp", "locks", "quarantine"] {
        assert!(root.join(d).is_dir(), "{d} missing");
    }
    let upstream = key("upstream");
    let k = key("round");
    assert!(cache.get(&k).unwrap().is_none());
    let meta = ArtifactMeta::new("generate")
        .spec(json!({"max_new_tokens": 40, "capture": ["retrieval"]}))
        .input("dataset", &upstream)
        .wall_time(1.25)
        .extra("device", json!("cpu"));
    let stored = cache.put(&k, meta, |dir| write_two(dir, b"hello")).unwrap();
    assert_eq!(
        stored.dir,
        root.canonicalize()
            .unwrap()
            .join("objects")
            .join(k.shard())
            .join(k.as_str())
    );

    let got = cache.get(&k).unwrap().expect("hit");
    let m = &got.manifest;
    assert_eq!(m.key, k);
    assert_eq!(m.kind, "generate");
    assert_eq!(m.spec["max_new_tokens"], json!(40));
    assert_eq!(
        m.inputs,
        vec![InputRef {
            name: "dataset".into(),
            key: upstream.clone()
        }]
    );
    assert_eq!(m.wall_time_s, 1.25);
    assert_eq!(m.extra["device"], json!("cpu"));
    assert_eq!(
        m.rhx_version.split(' ').next().unwrap(),
        env!("CARGO_PKG_VERSION")
    );
    // RFC 3339 UTC with milliseconds, e.g. 2026-05-01T12:34:56.789Z
    assert_eq!(m.created.len(), 24, "{}", m.created);
    assert!(
        m.created.ends_with('Z') && &m.created[10..11] == "T",
        "{}",
        m.created
    );
    let names: Vec<&str> = got.file_names().collect();
    assert_eq!(names, ["data.bin", "sub/info.json"]);
    assert_eq!(m.files[0].size, 5);
    assert_eq!(
        m.files[0].sha256,
        hash_file(got.dir.join("data.bin")).unwrap().sha256
    );
    assert_eq!(got.read("data.bin").unwrap(), b"hello");
    assert!(got.file("nope").is_none());
    assert!(got.dir.join(MANIFEST).is_file());
    assert!(cache
        .get_with(&k, Verification::SizeOnly)
        .unwrap()
        .is_some());

    let ls = cache.ls().unwrap();
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0].key, k);
    assert_eq!(ls[0].kind.as_deref(), Some("generate"));
    assert_eq!(ls[0].size, 5 + 11);
    assert_eq!(ls[0].files, 2);

    // A second put of the same key keeps the first artifact.
    let again = cache
        .put(&k, ArtifactMeta::new("generate"), |dir| {
            write_two(dir, b"other")
        })
        .unwrap();
    assert_eq!(again.read("data.bin").unwrap(), b"hello");
    assert!(entries(&root.join("tmp"))
        .iter()
        .all(|n| !n.starts_with("put-")));

    // Survives reopening; remove works.
    let cache = Cache::open(&root).unwrap();
    assert!(cache.get(&k).unwrap().is_some());
    assert!(cache.remove(&k).unwrap());
    assert!(!cache.remove(&k).unwrap());
    assert!(cache.get(&k).unwrap().is_none());
    assert!(cache.take_warnings().is_empty());
}

#[test]
fn key_sensitivity() {
    let model = FileDigest {
        sha256: "11".repeat(32),
        size: 100,
    };
    let tok = FileDigest {
        sha256: "22".repeat(32),
        size: 7,
    };
    let up = key("up");
    let spec: Value = serde_json::from_str(r#"{"a": 1, "b": {"x": [1, 2.5], "y": "s"}}"#).unwrap();
    let base = || {
        KeyBuilder::new("generate")
            .spec(&spec)
            .input("data", &up)
            .input("heads", &key("heads"))
            .file("model", &model)
            .file("tokenizer", &tok)
            .seed(0)
            .engine_version("engine 1")
    };
    let k0 = base().build();
    assert_eq!(k0, base().build(), "deterministic");
    assert_eq!(k0.as_str().len(), 64);

    // The exact key of a fixed description is part of the format: changing the derivation must
    // bump KEY_SCHEME (and then this constant).
    assert_eq!(
        base().canonical_form(),
        format!(
            r#"{{"engine":"engine 1","files":[["model","{}",100],["tokenizer","{}",7]],"inputs":[["data","{up}"],["heads","{}"]],"kind":"generate","scheme":"rhx-key/1","seed":0,"spec":{{"a":1,"b":{{"x":[1,2.5],"y":"s"}}}}}}"#,
            model.sha256,
            tok.sha256,
            key("heads")
        )
    );

    // JSON key order, and 1 vs 1.0, do not matter.
    let reordered: Value =
        serde_json::from_str(r#"{"b": {"y": "s", "x": [1.0, 2.5]}, "a": 1.0}"#).unwrap();
    assert_eq!(base().spec(&reordered).build(), k0);
    // Adding files in another order does not matter either (they are a set, sorted by label).
    let swapped = KeyBuilder::new("generate")
        .spec(&spec)
        .input("data", &up)
        .input("heads", &key("heads"))
        .file("tokenizer", &tok)
        .file("model", &model)
        .seed(0)
        .engine_version("engine 1")
        .build();
    assert_eq!(swapped, k0);

    let variants: Vec<(&str, Key)> = vec![
        ("kind", {
            let b = KeyBuilder::new("generate2")
                .spec(&spec)
                .input("data", &up)
                .input("heads", &key("heads"));
            b.file("model", &model)
                .file("tokenizer", &tok)
                .seed(0)
                .engine_version("engine 1")
                .build()
        }),
        (
            "spec value",
            base()
                .spec(&json!({"a": 2, "b": {"x": [1, 2.5], "y": "s"}}))
                .build(),
        ),
        (
            "nested spec value",
            base()
                .spec(&json!({"a": 1, "b": {"x": [1, 2.25], "y": "s"}}))
                .build(),
        ),
        (
            "spec array order",
            base()
                .spec(&json!({"a": 1, "b": {"x": [2.5, 1], "y": "s"}}))
                .build(),
        ),
        (
            "spec type",
            base()
                .spec(&json!({"a": "1", "b": {"x": [1, 2.5], "y": "s"}}))
                .build(),
        ),
        ("input key", base().input("extra", &up).build()),
        ("seed", base().seed(1).build()),
        ("engine version", base().engine_version("engine 2").build()),
        (
            "file digest",
            base()
                .file(
                    "model",
                    &FileDigest {
                        sha256: "12".repeat(32),
                        size: 100,
                    },
                )
                .build(),
        ),
    ];
    let mut seen = HashSet::new();
    seen.insert(k0.clone());
    for (what, k) in &variants {
        assert_ne!(*k, k0, "changing {what} must change the key");
        assert!(
            seen.insert(k.clone()),
            "{what} collides with another variant"
        );
    }

    // Pieces that replace rather than extend: build from scratch.
    let build =
        |input_key: &Key, input_name: &str, file: &FileDigest, label: &str, seed: Option<u64>| {
            let b = KeyBuilder::new("k")
                .spec(&json!({"p": 1}))
                .input(input_name, input_key)
                .file(label, file);
            match seed {
                Some(s) => b.seed(s).build(),
                None => b.build(),
            }
        };
    let r = build(&up, "data", &model, "model", Some(0));
    assert_ne!(
        r,
        build(&key("other"), "data", &model, "model", Some(0)),
        "input key"
    );
    assert_ne!(
        r,
        build(&up, "dataset", &model, "model", Some(0)),
        "input name"
    );
    assert_ne!(r, build(&up, "data", &tok, "model", Some(0)), "file digest");
    assert_ne!(
        r,
        build(&up, "data", &model, "weights", Some(0)),
        "file label"
    );
    assert_ne!(r, build(&up, "data", &model, "model", Some(1)), "seed");
    assert_ne!(
        r,
        build(&up, "data", &model, "model", None),
        "no seed vs seed 0"
    );
    // Input order matters (inputs are positional).
    let ab = KeyBuilder::new("k").input("a", &up).input("b", &r).build();
    let ba = KeyBuilder::new("k").input("b", &r).input("a", &up).build();
    assert_ne!(ab, ba);
    // The default engine version is this crate's.
    assert_eq!(
        KeyBuilder::new("k").build(),
        KeyBuilder::new("k").engine_version(ENGINE_VERSION).build()
    );

    // Canonical JSON.
    let v: Value =
        serde_json::from_str(r#"{ "z": [true, null, -0.0, 3.0, 1e300, 0.1], "a\u00e9": "q\"\n" }"#)
            .unwrap();
    assert_eq!(
        canonical_json(&v),
        r#"{"aé":"q\"\n","z":[true,null,0,3,1e+300,0.1]}"#
    );

    // Keys parse and validate.
    assert_eq!(Key::parse(k0.as_str()).unwrap(), k0);
    assert!(Key::parse("abc").is_err());
    assert!(Key::parse(&"G".repeat(64)).is_err());
    assert!(Key::parse(&k0.as_str().to_uppercase()).is_err());
    let via_serde: Key = serde_json::from_value(json!(k0.as_str())).unwrap();
    assert_eq!(via_serde, k0);
    assert!(serde_json::from_value::<Key>(json!("../../etc")).is_err());
}

// ------------------------------------------------------------------------------------ 2

#[test]
fn corruption_is_detected_quarantined_and_recomputed() {
    let root = scratch("corruption");
    let cache = Cache::open(&root).unwrap();
    type Damage = fn(&Path);
    let cases: Vec<(&str, Damage, bool /* size-only check notices */)> = vec![
        (
            "flip a byte",
            |d| {
                let p = d.join("data.bin");
                let mut b = fs::read(&p).unwrap();
                b[3] ^= 0x01;
                fs::write(&p, b).unwrap();
            },
            false,
        ),
        (
            "truncate",
            |d| {
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("data.bin"))
                    .unwrap();
                f.set_len(2).unwrap();
            },
            true,
        ),
        (
            "delete a file",
            |d| fs::remove_file(d.join("sub/info.json")).unwrap(),
            true,
        ),
        (
            "garble the manifest",
            |d| fs::write(d.join(MANIFEST), b"{\"key\": garbage").unwrap(),
            true,
        ),
        (
            "delete the manifest",
            |d| fs::remove_file(d.join(MANIFEST)).unwrap(),
            true,
        ),
        (
            "edit a manifest field",
            |d| {
                let p = d.join(MANIFEST);
                let text = fs::read_to_string(&p)
                    .unwrap()
                    .replace("\"kind\": \"test\"", "\"kind\": \"tset\"");
                fs::write(&p, text).unwrap();
            },
            true,
        ),
        (
            "add a file",
            |d| fs::write(d.join("stowaway"), b"x").unwrap(),
            true,
        ),
    ];
    for (what, damage, size_only_notices) in cases {
        let k = key(what);
        let a = put_two(&cache, &k, b"0123456789");
        for name in ["data.bin", "sub/info.json"] {
            let mode = fs::metadata(a.dir.join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o222, 0, "stored files are read-only");
        }
        make_writable(&a.dir);
        damage(&a.dir);
        if !size_only_notices {
            assert!(
                cache
                    .get_with(&k, Verification::SizeOnly)
                    .unwrap()
                    .is_some(),
                "{what}"
            );
        }
        assert!(
            cache.get(&k).unwrap().is_none(),
            "{what}: damaged artifact returned"
        );
        assert!(
            !a.dir.exists(),
            "{what}: damaged artifact still in objects/"
        );
        let q = entries(&root.join("quarantine"));
        assert!(
            q.iter()
                .any(|n| n.starts_with(k.as_str()) && !n.ends_with(".reason.txt")),
            "{what}: {q:?}"
        );
        let warnings = cache.take_warnings();
        assert_eq!(warnings.len(), 1, "{what}: {warnings:?}");
        assert_eq!(warnings[0].key.as_ref(), Some(&k));
        // Recompute.
        put_two(&cache, &k, b"0123456789");
        assert_eq!(
            cache.get(&k).unwrap().unwrap().read("data.bin").unwrap(),
            b"0123456789"
        );
    }

    // verify() finds damage that get() has not seen yet.
    let good = key("good");
    put_two(&cache, &good, b"fine");
    let bad1 = put_two(&cache, &key("bad1"), b"abcdef");
    let bad2 = put_two(&cache, &key("bad2"), b"abcdef");
    make_writable(&bad1.dir);
    fs::write(bad1.dir.join("data.bin"), b"abcdeF").unwrap();
    make_writable(&bad2.dir);
    fs::write(bad2.dir.join(MANIFEST), b"").unwrap();
    fs::create_dir_all(root.join("objects/zz/not-a-key")).unwrap();
    let report = cache.verify().unwrap();
    assert_eq!(report.checked, 7 + 3 + 1, "{report:?}");
    assert_eq!(report.corrupted.len(), 3, "{report:?}");
    let bad: HashSet<Option<Key>> = report.corrupted.iter().map(|c| c.key.clone()).collect();
    assert!(
        bad.contains(&Some(bad1.key.clone()))
            && bad.contains(&Some(bad2.key.clone()))
            && bad.contains(&None)
    );
    for c in &report.corrupted {
        assert!(c.quarantined_to.exists());
        assert!(!c.reason.is_empty());
    }
    assert!(!bad1.dir.exists() && !bad2.dir.exists());
    let again = cache.verify().unwrap();
    assert!(again.is_clean(), "{again:?}");
    assert_eq!(again.ok, 8);
    assert!(again.bytes_hashed > 0);
}

// ------------------------------------------------------------------------------------ 3

#[test]
fn kill_mid_write_leaves_no_artifact_and_is_cleaned() {
    let root = scratch("kill");
    let cache = Cache::open(&root).unwrap();
    let other = key("bystander");
    put_two(&cache, &other, b"bystander");

    let mut child = child("write_slowly", &root, &[]);
    let pid = child.id();
    let prefix = format!("put-{pid}-");
    let deadline = Instant::now() + Duration::from_secs(15);
    let tmp_dir = loop {
        let found = entries(&root.join("tmp"))
            .into_iter()
            .find(|n| n.starts_with(&prefix));
        if let Some(name) = found {
            let dir = root.join("tmp").join(name);
            if fs::metadata(dir.join("big.bin"))
                .map(|m| m.len() > (1 << 20))
                .unwrap_or(false)
            {
                break dir;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child exited early: {status}");
        }
        assert!(Instant::now() < deadline, "child never started writing");
        std::thread::sleep(Duration::from_millis(5));
    };
    // SAFETY: sending SIGKILL to our own child process.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    let status = child.wait().unwrap();
    assert!(!status.success());

    assert!(cache.get(&slow_key()).unwrap().is_none());
    assert!(!cache.contains(&slow_key()));
    let report = cache.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.ok, 1);
    assert!(
        tmp_dir.exists(),
        "the dead child's temp dir is there until the next open"
    );

    let cache = Cache::open(&root).unwrap();
    assert!(
        !tmp_dir.exists(),
        "open must remove a dead owner's temp dir"
    );
    let warnings = cache.take_warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.path.file_name() == tmp_dir.file_name() && w.message.contains("died")),
        "{warnings:?}"
    );

    let a = cache
        .put(&slow_key(), ArtifactMeta::new("slow"), |dir| {
            fs::write(dir.join("big.bin"), b"done")
        })
        .unwrap();
    assert_eq!(
        cache
            .get(&slow_key())
            .unwrap()
            .unwrap()
            .read("big.bin")
            .unwrap(),
        b"done"
    );
    assert_eq!(a.manifest.files.len(), 1);
    assert!(cache.verify().unwrap().is_clean());
}

#[test]
fn failing_or_panicking_producer_leaves_nothing() {
    let root = scratch("producer_fails");
    let cache = Cache::open(&root).unwrap();
    let k = key("fails");
    let err = cache
        .put(&k, ArtifactMeta::new("analysis"), |dir| {
            fs::write(dir.join("partial"), b"half")?;
            Err::<(), anyhow::Error>(anyhow::anyhow!("the probe diverged"))
        })
        .unwrap_err();
    assert!(matches!(err, CacheError::Producer { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("analysis") && msg.contains(k.as_str()),
        "{msg}"
    );
    assert!(std::error::Error::source(&err)
        .unwrap()
        .to_string()
        .contains("diverged"));
    assert!(entries(&root.join("tmp"))
        .iter()
        .all(|n| !n.starts_with("put-")));

    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = cache.put(&k, ArtifactMeta::new("analysis"), |dir| {
            fs::write(dir.join("partial"), b"half").unwrap();
            panic!("producer bug");
            #[allow(unreachable_code)]
            Ok::<(), std::io::Error>(())
        });
    }));
    assert!(r.is_err());
    assert!(entries(&root.join("tmp"))
        .iter()
        .all(|n| !n.starts_with("put-")));
    assert!(cache.get(&k).unwrap().is_none());

    // Bad outputs are refused with a clear error.
    let err = cache
        .put(&k, ArtifactMeta::new("x"), |dir| {
            fs::write(dir.join(MANIFEST), b"{}")
        })
        .unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    let err = cache
        .put(&k, ArtifactMeta::new("x"), |dir| {
            std::os::unix::fs::symlink("/etc/hostname", dir.join("link"))
        })
        .unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(!cache.contains(&k));
}

#[test]
fn disk_full_is_reported_as_such() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipping: no /dev/full");
        return;
    }
    let root = scratch("disk_full");
    let cache = Cache::open(&root).unwrap();
    let err = cache
        .put(&key("full"), ArtifactMeta::new("x"), |_dir| {
            let mut f = fs::OpenOptions::new().write(true).open("/dev/full")?;
            f.write_all(&[0u8; 4096])?;
            f.flush()
        })
        .unwrap_err();
    assert!(err.is_disk_full(), "{err:?}");
    assert!(err.to_string().contains("no space left on device"), "{err}");
    assert!(!cache.contains(&key("full")));
}

// ------------------------------------------------------------------------------------ 4

/// Takes the lock of `key("held")`, says so in `<root>.held`, and sleeps until killed.
fn child_hold(root: &Path) {
    let cache = Cache::open(root).unwrap();
    let _lock = cache.lock(&key("held")).unwrap();
    fs::write(format!("{}.held", root.display()), b"").unwrap();
    std::thread::sleep(Duration::from_secs(120));
    panic!("the parent should have killed this child");
}

#[test]
fn concurrent_processes_compute_each_key_once() {
    concurrent_processes_compute_each_key_once_with("flock");
}

/// The same race with the lock kind of shared file systems (link-created lock files).
#[test]
fn concurrent_processes_compute_each_key_once_with_file_locks() {
    concurrent_processes_compute_each_key_once_with("file");
}

fn concurrent_processes_compute_each_key_once_with(kind: &str) {
    let root = scratch(&format!("concurrent_{kind}"));
    let logs = scratch(&format!("concurrent_logs_{kind}"));
    let go = logs.join("go");
    let mode = if kind == "file" { LockMode::file(DEFAULT_LEASE) } else { LockMode::flock() };
    Cache::open_with(&root, Some(mode)).unwrap();
    let n = 4;
    let mut children: Vec<Child> = (0..n)
        .map(|i| {
            child(
                "worker",
                &root,
                &[
                    ("RHX_CACHE_WORKER", i.to_string()),
                    (
                        "RHX_CACHE_LOG",
                        logs.join(format!("child{i}.log")).display().to_string(),
                    ),
                    ("RHX_CACHE_GO", go.display().to_string()),
                    ("RHX_LOCK", kind.to_string()),
                ],
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (0..n).any(|i| !logs.join(format!("child{i}.log.ready")).exists()) {
        for c in &mut children {
            if let Some(status) = c.try_wait().unwrap() {
                panic!("worker exited before the start: {status}");
            }
        }
        assert!(Instant::now() < deadline, "workers did not get ready");
        std::thread::sleep(Duration::from_millis(2));
    }
    fs::write(&go, b"go").unwrap();
    for c in &mut children {
        let status = c.wait().unwrap();
        assert!(status.success(), "worker failed: {status}");
    }

    // Each key computed exactly once, across all children.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_child = Vec::new();
    for i in 0..n {
        let text = fs::read_to_string(logs.join(format!("child{i}.log"))).unwrap_or_default();
        per_child.push(text.lines().count());
        for line in text.lines() {
            *counts.entry(line.to_string()).or_default() += 1;
        }
    }
    let keys = worker_keys();
    assert_eq!(counts.len(), keys.len(), "computed: {counts:?}");
    for k in &keys {
        assert_eq!(
            counts.get(k.as_str()),
            Some(&1),
            "{k} computed {:?} times",
            counts.get(k.as_str())
        );
    }
    eprintln!("computations per child: {per_child:?}");

    // Everything verifies, and equals a clean single-process run.
    let cache = Cache::open_with(&root, Some(mode)).unwrap();
    // Released `file` locks leave no lock files behind (nor their link temporaries).
    if kind == "file" {
        assert!(entries(&root.join("locks")).is_empty(), "{:?}", entries(&root.join("locks")));
    }
    let report = cache.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.ok, keys.len());
    let clean_root = scratch("concurrent_clean");
    let clean = Cache::open(&clean_root).unwrap();
    for k in &keys {
        let reference = clean
            .put(k, ArtifactMeta::new("conc"), |dir| {
                fs::write(dir.join("data.bin"), content_for(k))
            })
            .unwrap();
        let shared = cache
            .get(k)
            .unwrap()
            .expect("every key is in the shared cache");
        assert_eq!(
            shared.read("data.bin").unwrap(),
            reference.read("data.bin").unwrap()
        );
        assert_eq!(shared.manifest.files, reference.manifest.files);
    }
    assert!(
        entries(&root.join("tmp")).is_empty(),
        "{:?}",
        entries(&root.join("tmp"))
    );
    assert!(cache.take_warnings().is_empty());
}

#[test]
fn locks_exclude_threads_and_time_out() {
    locks_exclude_threads_and_time_out_with(LockMode::flock(), "locks_flock");
}

#[test]
fn file_locks_exclude_threads_and_time_out() {
    locks_exclude_threads_and_time_out_with(LockMode::file(DEFAULT_LEASE), "locks_file");
}

fn locks_exclude_threads_and_time_out_with(mode: LockMode, dir: &str) {
    let root = scratch(dir);
    let cache = Cache::open_with(&root, Some(mode)).unwrap();
    let k = key("locked");
    let held = cache.lock(&k).unwrap();
    assert_eq!(held.key(), &k);
    assert!(
        cache.try_lock(&k).unwrap().is_none(),
        "same process, second claim"
    );
    // The holding thread waiting for itself is an error, not a hang.
    let err = cache.lock(&k).unwrap_err();
    assert!(matches!(err, CacheError::Reentrant { .. }), "{err:?}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let t0 = Instant::now();
            let err = cache
                .lock_timeout(&k, Duration::from_millis(60))
                .unwrap_err();
            assert!(matches!(err, CacheError::LockTimeout { .. }), "{err:?}");
            assert!(t0.elapsed() >= Duration::from_millis(60));
            assert!(cache.try_lock(&k).unwrap().is_none());
        });
    });
    assert!(
        cache.try_lock(&key("other")).unwrap().is_some(),
        "other keys are free"
    );

    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let t = Instant::now();
            let _l = cache.lock(&k).unwrap();
            t.elapsed()
        });
        std::thread::sleep(Duration::from_millis(80));
        drop(held);
        let waited = waiter.join().unwrap();
        assert!(waited >= Duration::from_millis(60), "{waited:?}");
    });
    assert!(cache.try_lock(&k).unwrap().is_some());
}

// ------------------------------------------------------------------------------------ 5

#[test]
fn digest_cache_reuses_and_notices_changes() {
    let root = scratch("digests");
    let files = scratch("digests_files");
    let cache = Cache::open(&root).unwrap();
    let model = files.join("model.bin");
    let old = SystemTime::now() - Duration::from_secs(3600);
    let write = |bytes: &[u8]| {
        fs::write(&model, bytes).unwrap();
        fs::File::options()
            .write(true)
            .open(&model)
            .unwrap()
            .set_modified(old)
            .unwrap();
    };
    write(b"weights v1");
    let (d1, src) = cache.file_digest_traced(&model).unwrap();
    assert_eq!(src, DigestSource::Computed);
    assert_eq!(d1, hash_file(&model).unwrap());
    assert_eq!(d1.size, 10);
    let (again, src) = cache.file_digest_traced(&model).unwrap();
    assert_eq!((again, src), (d1.clone(), DigestSource::Cached));
    // Remembered across processes (reopen).
    let reopened = Cache::open(&root).unwrap();
    assert_eq!(
        reopened.file_digest_traced(&model).unwrap().1,
        DigestSource::Cached
    );
    // Through another spelling of the same path.
    let spelled = files.join(".").join("model.bin");
    assert_eq!(
        cache.file_digest_traced(&spelled).unwrap().1,
        DigestSource::Cached
    );

    // Same size, same mtime, different bytes: ctime gives it away.
    std::thread::sleep(Duration::from_millis(20));
    write(b"weights v2");
    let (d2, src) = cache.file_digest_traced(&model).unwrap();
    assert_eq!(src, DigestSource::Computed);
    assert_ne!(d2.sha256, d1.sha256);
    assert_eq!(d2, hash_file(&model).unwrap());
    assert_eq!(
        cache.file_digest_traced(&model).unwrap(),
        (d2.clone(), DigestSource::Cached)
    );

    // Size change.
    write(b"weights v2 + more");
    let (d3, src) = cache.file_digest_traced(&model).unwrap();
    assert_eq!(src, DigestSource::Computed);
    assert_eq!(d3.size, 17);

    // Replaced by another file (new inode) with identical size and mtime.
    let other = files.join("new.bin");
    fs::write(&other, b"weights v3 + more").unwrap();
    fs::File::options()
        .write(true)
        .open(&other)
        .unwrap()
        .set_modified(old)
        .unwrap();
    fs::rename(&other, &model).unwrap();
    let (d4, src) = cache.file_digest_traced(&model).unwrap();
    assert_eq!(src, DigestSource::Computed);
    assert_eq!(d4, hash_file(&model).unwrap());

    // A file written just now is not remembered yet (racy window), so it is hashed each time.
    let fresh = files.join("fresh.bin");
    fs::write(&fresh, b"fresh").unwrap();
    assert_eq!(
        cache.file_digest_traced(&fresh).unwrap().1,
        DigestSource::Computed
    );
    assert_eq!(
        cache.file_digest_traced(&fresh).unwrap().1,
        DigestSource::Computed
    );

    // Missing files are an error naming the path.
    let err = cache.file_digest(files.join("missing.bin")).unwrap_err();
    assert!(err.to_string().contains("missing.bin"), "{err}");

    // gc drops digests of files that are gone.
    fs::remove_file(&model).unwrap();
    let report = cache.gc(&HashSet::new(), GcOptions::default()).unwrap();
    assert_eq!(report.pruned_digests, 1);
}

/// A folder that is not a cache (files, no marker) is refused by every command, and nothing in
/// it is touched or stamped.
#[test]
fn a_folder_that_is_not_a_cache_is_refused() {
    let root = scratch("not_a_cache");
    fs::create_dir_all(root.join("objects/ab")).unwrap();
    fs::write(root.join("objects/ab/precious.txt"), b"someone's data").unwrap();
    fs::write(root.join("notes.md"), b"notes").unwrap();
    let err = Cache::open(&root).expect_err("refused");
    assert!(err.to_string().contains("not an rhx cache"), "{err}");
    assert!(root.join("objects/ab/precious.txt").exists());
    assert!(!root.join("rhx-cache-layout").exists() && !root.join("CACHEDIR.TAG").exists());
    // Through the CLI: `rhx cache gc` says so and exits non-zero.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rhx")).args(["cache", "gc", "--cache"]).arg(&root).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an rhx cache"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(root.join("objects/ab/precious.txt").exists());
    // An empty folder becomes a cache.
    let empty = scratch("empty_cache");
    fs::create_dir_all(&empty).unwrap();
    assert!(Cache::open(&empty).is_ok());
}

/// `digests.json` edited by hand (a model's sha256 set to zeros) is neither used by a run nor
/// passed by `rhx cache verify`.
#[test]
fn poisoned_digest_is_not_used_and_verify_catches_it() {
    let root = scratch("digests_poisoned");
    let files = scratch("digests_poisoned_files");
    let cache = Cache::open(&root).unwrap();
    let model = files.join("model.bin");
    fs::write(&model, b"weights").unwrap();
    fs::File::options().write(true).open(&model).unwrap().set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();
    let good = cache.file_digest(&model).unwrap();
    assert_eq!(cache.file_digest_traced(&model).unwrap().1, DigestSource::Cached);
    let table = root.join("digests.json");
    let poison = || {
        let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&table).unwrap()).unwrap();
        for e in v["entries"].as_object_mut().unwrap().values_mut() {
            e["sha256"] = serde_json::json!("0".repeat(64));
        }
        fs::write(&table, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    };
    poison();
    // Not used: the file is hashed again and the key gets its real digest.
    let (d, src) = cache.file_digest_traced(&model).unwrap();
    assert_eq!((d, src), (good.clone(), DigestSource::Computed));
    // Caught by verify, named, and dropped.
    poison();
    let r = cache.verify().unwrap();
    assert_eq!(r.digests_checked, 1);
    assert_eq!(r.digests_wrong.len(), 1, "{r:?}");
    assert!(r.digests_wrong[0].contains("model.bin") && r.digests_wrong[0].contains("edited"), "{r:?}");
    assert!(!r.is_clean());
    let r = cache.verify().unwrap();
    assert!(r.is_clean() && r.digests_checked == 0, "{r:?}");
    assert_eq!(cache.file_digest_traced(&model).unwrap(), (good, DigestSource::Computed));
}

// ------------------------------------------------------------------------------------ gc

#[test]
fn gc_removes_unreferenced_stale_and_quarantined() {
    let root = scratch("gc");
    let cache = Cache::open(&root).unwrap();
    let keep_k = key("keep");
    let drop_k = key("drop");
    let busy_k = key("busy");
    put_two(&cache, &keep_k, b"keep");
    put_two(&cache, &drop_k, b"drop");
    put_two(&cache, &busy_k, b"busy");
    let damaged = put_two(&cache, &key("damaged"), b"damaged");
    fs::remove_file(damaged.dir.join("data.bin")).unwrap();
    assert!(cache.get(&key("damaged")).unwrap().is_none());

    // A temp dir of a process that is gone (a child we started and reaped).
    let mut done = Command::new("true").spawn().unwrap();
    let dead_pid = done.id();
    done.wait().unwrap();
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stale = root.join("tmp").join(format!("put-{dead_pid}-1-0@{host}"));
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("x"), b"x").unwrap();
    let foreign = root
        .join("tmp")
        .join(format!("put-{dead_pid}-1-0@some-other-node"));
    fs::create_dir(&foreign).unwrap();

    let keep: HashSet<Key> = [keep_k.clone()].into_iter().collect();
    let busy = cache.lock(&busy_k).unwrap();
    let dry = cache
        .gc(
            &keep,
            GcOptions {
                dry_run: true,
                ..GcOptions::default()
            },
        )
        .unwrap();
    assert!(dry.dry_run);
    assert_eq!(
        dry.removed
            .iter()
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>(),
        vec![drop_k.clone()]
    );
    assert_eq!(dry.skipped_locked, vec![busy_k.clone()]);
    assert_eq!(dry.removed_tmp, vec![stale.clone()]);
    assert_eq!(
        dry.removed_quarantine.len(),
        2,
        "{:?}",
        dry.removed_quarantine
    ); // dir + reason
    assert!(
        cache.contains(&drop_k) && stale.exists(),
        "dry run removed something"
    );

    let report = cache.gc(&keep, GcOptions::default()).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert!(
        report.removed[0].1 > 4 + 11,
        "files + manifest: {:?}",
        report.removed
    );
    assert!(!cache.contains(&drop_k));
    assert!(cache.contains(&keep_k) && cache.contains(&busy_k));
    assert!(!stale.exists());
    assert!(
        foreign.exists(),
        "another host's fresh temp dir is left alone"
    );
    assert!(entries(&root.join("quarantine")).is_empty());
    assert!(report.freed_bytes >= 15);
    drop(busy);
    let report = cache.gc(&keep, GcOptions::default()).unwrap();
    assert_eq!(
        report
            .removed
            .iter()
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>(),
        vec![busy_k.clone()]
    );
    let report = cache
        .gc(
            &keep,
            GcOptions {
                foreign_tmp_max_age: Duration::ZERO,
                ..GcOptions::default()
            },
        )
        .unwrap();
    assert_eq!(report.removed_tmp, vec![foreign.clone()]);
    assert_eq!(cache.ls().unwrap().len(), 1);
    assert!(cache.get(&keep_k).unwrap().is_some());
    assert!(cache.verify().unwrap().is_clean());
}

#[test]
fn foreign_directory_layout_is_refused() {
    let root = scratch("foreign_layout");
    fs::write(root.join("rhx-cache-layout"), "rhx cache layout 99\n").unwrap();
    let err = Cache::open(&root).unwrap_err();
    assert!(matches!(err, CacheError::NotACache { .. }), "{err:?}");
    let file = scratch("not_a_dir").join("file");
    fs::write(&file, b"x").unwrap();
    let err = Cache::open(&file).unwrap_err();
    assert!(err.to_string().contains("file"), "{err}");
}

// ------------------------------------------------------------------------------ file locks

/// A process killed while it holds a lock: `flock` is released by the kernel; a `file` lock of
/// a dead process on this host is taken over at once, its owner named while it lived.
#[test]
fn a_killed_holder_s_lock_is_taken_over() {
    for kind in ["flock", "file"] {
        let root = scratch(&format!("killed_holder_{kind}"));
        let mode = if kind == "file" { LockMode::file(Duration::from_secs(3600)) } else { LockMode::flock() };
        let cache = Cache::open_with(&root, Some(mode)).unwrap();
        let marker = PathBuf::from(format!("{}.held", root.display()));
        let _ = fs::remove_file(&marker);
        let mut c = child("hold", &root, &[("RHX_LOCK", kind.to_string())]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !marker.exists() {
            assert!(c.try_wait().unwrap().is_none(), "holder exited early");
            assert!(Instant::now() < deadline, "holder never took the lock");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(cache.try_lock(&key("held")).unwrap().is_none(), "{kind}: held by the child");
        match cache.lock_holder(&key("held")).unwrap() {
            Holder::Held(Some(owner)) => assert_eq!(owner.pid, c.id(), "{kind}"),
            other => panic!("{kind}: {other:?}"),
        }
        c.kill().unwrap();
        c.wait().unwrap();
        let t = Instant::now();
        let lock = cache.lock_timeout(&key("held"), Duration::from_secs(10)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "{kind}: took {:?} (the lease is an hour)", t.elapsed());
        drop(lock);
        assert_eq!(cache.lock_holder(&key("held")).unwrap(), Holder::Free);
    }
}

/// A `file` lock of another host is taken over only after its file stopped changing for a
/// lease; while its holder refreshes it, it is never taken.
#[test]
fn a_foreign_file_lock_is_taken_over_after_the_lease_only_when_it_stops_changing() {
    let root = scratch("foreign_lock");
    let lease = Duration::from_millis(400);
    let cache = Cache::open_with(&root, Some(LockMode::file(lease))).unwrap();
    let k = key("foreign");
    let path = root.join("locks").join(format!("{k}.lock"));
    let line = "rhx-lock 1 host=some-other-node boot=x pid=4242 start=1 since=2026-12-04T00:00:00.000Z nonce=1\n";
    fs::write(&path, line).unwrap();
    assert!(matches!(cache.lock_holder(&k).unwrap(), Holder::Held(Some(o)) if o.host == "some-other-node" && o.pid == 4242));

    // A live holder elsewhere: its heartbeat changes the mtime; never taken over.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(f) = fs::OpenOptions::new().write(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now() + Duration::from_secs(rand_secs()));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let err = cache.lock_timeout(&k, lease * 3).unwrap_err();
        assert!(matches!(err, CacheError::LockTimeout { .. }), "{err:?}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(fs::read_to_string(&path).unwrap(), line, "the live lock is untouched");

    // Its heartbeat stopped: taken over after one lease (timed by the waiter's clock).
    let t = Instant::now();
    let held = cache.lock_timeout(&k, Duration::from_secs(10)).unwrap();
    assert!(t.elapsed() >= lease, "taken over after {:?}", t.elapsed());
    assert!(t.elapsed() < lease * 4, "taken over after {:?}", t.elapsed());
    let owner = LockOwner::parse(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(owner.pid, std::process::id());
    drop(held);
    assert!(!path.exists());
    assert!(entries(&root.join("locks")).is_empty(), "{:?}", entries(&root.join("locks")));
}

/// Distinct mtimes for the fake heartbeat (any change counts, even a clock that runs behind).
fn rand_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos() as u64 % 1000
}

/// `RHX_LOCK` picks the kind; `auto` picks by file system; a bad value is an error naming it.
#[test]
fn lock_kind_comes_from_rhx_lock_or_the_file_system() {
    let root = scratch("lock_kind");
    let (fs_name, kind) = filesystem_of(&root);
    if std::env::var_os("RHX_LOCK").is_none() {
        let mode = Cache::open(&root).unwrap().lock_mode();
        assert_eq!((mode.kind, mode.why), (kind, fs_name));
    }
    assert_eq!(filesystem_of(Path::new("/proc")).1, LockKind::Flock, "procfs is local");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("lock_kind:{}", root.display()))
        .env("RHX_LOCK", "nfs-please")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("RHX_LOCK=\"nfs-please\": expected flock, file or auto"), "{text}");
}
