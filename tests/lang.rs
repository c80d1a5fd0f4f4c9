//! Golden tests of the experiment language (snapshots in golden/lang/):
//! * `check__<file>`: the checked program of every `tests/lang/valid/*.rhx`;
//! * `fmt__<file>`: the formatter's output for the same files;
//! * `broken__<file>`: the rendered diagnostic of every `tests/lang/broken/*.rhx`, each of which
//!   holds exactly one mistake and names its error kind on its first line (`# error: <kind>`);
//!   a second line `# profile: <name>` selects that profile, else every profile is checked (as
//!   `rhx check` does);
//! * overrides, profiles, the schema's defaults and the real model-shape reader.
#[path = "lang/support.rs"]
mod support;

use std::path::Path;

use rhx::lang::{
    self, apply_override, check, check_path, check_path_with, format_source, load_path,
    render_diagnostics, CheckOptions, Code, EngineShapes, ModelDecl, ModelShapes, NoShapes, Origin,
};
use support::{rhx_files, stem, FakeShapes};

macro_rules! golden {
    ($name:expr, $value:expr) => {
        insta::with_settings!({snapshot_path => "../golden/lang", prepend_module_to_snapshot => false, omit_expression => true}, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

#[test]
fn valid_files_check() {
    let files = rhx_files("tests/lang/valid");
    assert!(
        files.len() >= 5,
        "expected the valid corpus, found {files:?}"
    );
    for f in files {
        let program = check_path(&f, &[], &FakeShapes).unwrap_or_else(|d| {
            panic!("{} should check:\n{}", f.display(), render_diagnostics(&d))
        });
        golden!(format!("check__{}", stem(&f)), program.dump());
    }
}

#[test]
fn valid_files_format() {
    for f in rhx_files("tests/lang/valid") {
        let text = std::fs::read_to_string(&f).unwrap();
        let out =
            format_source(&text).unwrap_or_else(|d| panic!("{}: {}", f.display(), d.render()));
        assert_eq!(
            format_source(&out).unwrap(),
            out,
            "{}: formatting is not idempotent",
            f.display()
        );
        golden!(format!("fmt__{}", stem(&f)), out);
    }
}

#[test]
fn broken_files_report_one_precise_error() {
    let files = rhx_files("tests/lang/broken");
    assert!(
        files.len() >= 45,
        "the broken corpus has {} files",
        files.len()
    );
    let mut kinds = std::collections::BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# error: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# error: <kind>`", f.display()))
            .trim()
            .to_string();
        let profile = text
            .lines()
            .nth(1)
            .and_then(|l| l.strip_prefix("# profile: "))
            .map(str::trim);
        let opts = CheckOptions {
            profile,
            all_profiles: true,
            ..CheckOptions::default()
        };
        let diags = match check_path_with(&f, &opts, &FakeShapes) {
            Ok(_) => panic!("{} should not check", f.display()),
            Err(d) => d,
        };
        let rendered = render_diagnostics(&diags);
        assert_eq!(
            diags.len(),
            1,
            "{}: expected exactly one diagnostic, got:\n{rendered}",
            f.display()
        );
        assert_eq!(
            diags[0].code.as_str(),
            expected,
            "{}: wrong error kind:\n{rendered}",
            f.display()
        );
        assert!(
            diags[0].location.is_some(),
            "{}: diagnostic without a location",
            f.display()
        );
        kinds.insert(diags[0].code);
        golden!(format!("broken__{}", stem(&f)), rendered);
    }
    // Every error kind that a file can trigger is covered (overrides are tested below).
    let all = [
        Code::Syntax,
        Code::UnknownKind,
        Code::UnknownConstructor,
        Code::UnknownName,
        Code::UnknownParam,
        Code::WrongType,
        Code::InvalidValue,
        Code::OutOfRange,
        Code::DuplicateParam,
        Code::MissingParam,
        Code::TooManyArgs,
        Code::DuplicateDecl,
        Code::DuplicateExperiment,
        Code::Cycle,
        Code::MissingFile,
        Code::ImportCycle,
        Code::HeadOutOfRange,
        Code::ModelUnavailable,
        Code::Sweep,
        Code::Profile,
    ];
    for k in all {
        assert!(kinds.contains(&k), "no broken file covers {k:?}");
    }
}

fn section3_with(overrides: &[&str]) -> Result<lang::Program, Vec<lang::Diagnostic>> {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    check_path(Path::new("tests/lang/valid/section3.rhx"), &o, &FakeShapes)
}

#[test]
fn overrides_apply() {
    let p = section3_with(&[
        "niah.runs=20",
        "experiment.seed=7",
        "k=[0, 10]",
        "base.max_new_tokens = 64",
        "fig1.trace=ablated",
        "smol.dtype=bf16",
    ])
    .unwrap_or_else(|d| panic!("{}", render_diagnostics(&d)));
    let niah = p.node("niah").unwrap();
    assert_eq!(niah.arg("runs").and_then(|v| v.as_int()), Some(20));
    assert_eq!(niah.arg_entry("runs").unwrap().origin, Origin::Override);
    assert_eq!(p.experiment.seed, 7);
    // The experiment seed flows into every defaulted `seed`.
    assert_eq!(niah.arg("seed").and_then(|v| v.as_int()), Some(7));
    assert_eq!(p.families["fig3"], vec!["fig3_k0", "fig3_k10"]);
    assert_eq!(
        p.node("base")
            .unwrap()
            .arg("max_new_tokens")
            .and_then(|v| v.as_int()),
        Some(64)
    );
    assert_eq!(
        p.node("fig1").unwrap().arg("trace").map(|v| v.render()),
        Some("ablated".to_string())
    );
    assert_eq!(
        p.node("smol").unwrap().arg("dtype").map(|v| v.render()),
        Some("bf16".to_string())
    );
    assert!(p.node("fig3_k5").is_none());
}

#[test]
fn override_errors() {
    let cases = [
        ("unknown_decl", "nia.runs=20"),
        ("unknown_param", "niah.run=20"),
        ("no_equals", "niah.runs"),
        ("bad_value_syntax", "niah.runs=[1,"),
        ("out_of_range", "niah.runs=0"),
        ("wrong_type", "base.model=niah"),
        ("unknown_sweep_var", "kk=[1]"),
        ("instance", "fig3_k5.max_new_tokens=3"),
        ("experiment_param", "experiment.sed=1"),
    ];
    let mut out = String::new();
    for (name, o) in cases {
        let diags = section3_with(&[o]).expect_err(o);
        out.push_str(&format!(
            "=== --set {o}   ({name})\n{}\n",
            render_diagnostics(&diags)
        ));
    }
    golden!("overrides__errors", out);
}

/// A program's dump without node locations, with profile values marked like `--set` ones, so
/// that a profile and the equivalent flags can be compared.
fn comparable(p: &lang::Program) -> String {
    p.dump()
        .lines()
        .map(|l| {
            let l = l.replace("    = --profile", "    = --set");
            match l.find("    # ") {
                Some(i) => l[..i].to_string(),
                None => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `--set` flags that `experiments/section3.rhx` documented before it had `profile full`.
const SECTION3_FULL_FLAGS: &[&str] = &[
    "experiment.profile=\"full\"",
    "niah.lengths=[1000, 2000, 4000, 8000]",
    "niah.depths=linspace(0.0, 1.0, 11)",
    "niah.runs=5",
    "long.lengths=[5000]",
    "long.runs=20",
    "k=0..=20 step 5",
    "detect.lengths=[1000, 2000, 4000, 8000]",
    "detect.runs=20",
    "probe.scale_layers=false",
];

fn section3_experiment(profile: Option<&str>, sets: &[&str]) -> lang::Program {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let opts = CheckOptions {
        profile,
        overrides: &sets,
        all_profiles: true,
    };
    check_path_with(Path::new("experiments/section3.rhx"), &opts, &FakeShapes)
        .unwrap_or_else(|d| panic!("{}", render_diagnostics(&d)))
}

#[test]
fn profile_is_its_set_flags() {
    let by_profile = section3_experiment(Some("full"), &[]);
    let by_flags = section3_experiment(None, SECTION3_FULL_FLAGS);
    assert_eq!(comparable(&by_profile), comparable(&by_flags));
    assert_eq!(by_profile.experiment.profile, "full");
    assert_eq!(by_profile.profiles, ["full"]);
    let niah = by_profile.node("niah").unwrap();
    assert_eq!(niah.arg("runs").and_then(|v| v.as_int()), Some(5));
    assert_eq!(niah.arg_entry("runs").unwrap().origin, Origin::Profile);
    assert_eq!(niah.arg_entry("haystack").unwrap().origin, Origin::Default);
    assert_eq!(
        by_profile.families["fig3"],
        ["fig3_k0", "fig3_k5", "fig3_k10", "fig3_k15", "fig3_k20"]
    );
    // Not selected, the profile changes nothing: the same file without it checks the same.
    let text = std::fs::read_to_string("experiments/section3.rhx").unwrap();
    let start = text.find("\nprofile full {").unwrap();
    let end = start + text[start..].find("\n}\n").unwrap() + 2;
    let stripped = format!("{}{}", &text[..start], &text[end..]);
    assert!(!stripped.contains("profile full {"));
    let without = lang::check_str(
        "experiments/section3.rhx",
        Path::new("experiments/section3.rhx"),
        &stripped,
        &[],
        &FakeShapes,
    )
    .unwrap_or_else(|d| panic!("{}", render_diagnostics(&d)));
    let default = section3_experiment(None, &[]);
    assert_eq!(comparable(&default), comparable(&without));
    assert_eq!(default.experiment.profile, "default");
}

#[test]
fn set_flags_win_over_the_profile() {
    let p = section3_experiment(
        Some("full"),
        &["niah.runs=2", "experiment.profile=\"full-2runs\""],
    );
    let niah = p.node("niah").unwrap();
    assert_eq!(niah.arg("runs").and_then(|v| v.as_int()), Some(2));
    assert_eq!(niah.arg_entry("runs").unwrap().origin, Origin::Override);
    // The profile's other entries still apply.
    assert_eq!(
        niah.arg("lengths").map(|v| v.render()),
        Some("[1000, 2000, 4000, 8000]".into())
    );
    assert_eq!(niah.arg_entry("lengths").unwrap().origin, Origin::Profile);
    assert_eq!(p.experiment.profile, "full-2runs");
    assert!(p.dump().contains("runs: 2    = --set"), "{}", p.dump());
    assert!(p
        .dump()
        .contains("lengths: [1000, 2000, 4000, 8000]    = --profile"));
}

#[test]
fn unselected_profiles_are_checked_only_on_request() {
    // `rhx run` without `--profile` is not held up by a mistake in a profile it does not use;
    // `rhx check` (every profile) finds it.
    let f = Path::new("tests/lang/broken/profile_unknown_decl.rhx");
    assert!(check_path(f, &[], &FakeShapes).is_ok());
    let all = CheckOptions {
        all_profiles: true,
        ..CheckOptions::default()
    };
    let err = check_path_with(f, &all, &FakeShapes).unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].code, Code::Profile);
    assert_eq!(
        err[0].location.as_ref().map(|l| (l.line, l.col)),
        Some((4, 3)),
        "points at the entry: {}",
        render_diagnostics(&err)
    );
    // Profiles are checked with the `--set` flags applied after them, like a real selection.
    let sets = vec!["niah.runs=0".to_string()];
    let file = Path::new("tests/lang/valid/profiles.rhx");
    let opts = CheckOptions {
        overrides: &sets,
        all_profiles: true,
        ..CheckOptions::default()
    };
    let err = check_path_with(file, &opts, &FakeShapes).unwrap_err();
    assert_eq!(err.len(), 1, "reported once, not once per profile");
    assert_eq!(err[0].code, Code::OutOfRange);
}

#[test]
fn profile_applies_step_by_step() {
    let mut set = load_path(Path::new("tests/lang/valid/profiles.rhx")).unwrap();
    assert_eq!(
        set.profiles()
            .map(|p| p.name.name.as_str())
            .collect::<Vec<_>>(),
        ["full", "smoke", "other_model"]
    );
    lang::apply_profile(&mut set, "smoke").unwrap();
    apply_override(&mut set, "niah.lengths=[300]").unwrap();
    let p = check(&set, &FakeShapes).unwrap();
    let niah = p.node("niah").unwrap();
    assert_eq!(niah.arg("runs").and_then(|v| v.as_int()), Some(1));
    assert_eq!(
        niah.arg("lengths").map(|v| v.render()),
        Some("[300]".into())
    );
    assert_eq!(p.experiment.profile, "smoke");
    let err = lang::apply_profile(&mut set, "smok").unwrap_err();
    assert_eq!(err[0].code, Code::Profile);
    assert_eq!(err[0].help.as_deref(), Some("did you mean `smoke`? (`tests/lang/valid/profiles.rhx` declares `full`, `smoke`, `other_model`)"));
}

#[test]
fn apply_override_step_by_step() {
    let mut set = load_path(Path::new("tests/lang/valid/common.rhx")).unwrap();
    apply_override(&mut set, "niah.lengths=[100, 200]").unwrap();
    apply_override(&mut set, "smol.source=\"llama-3.1-8b-instruct\"").unwrap();
    let p = check(&set, &FakeShapes).unwrap();
    assert_eq!(
        p.node("niah").unwrap().arg("lengths").map(|v| v.render()),
        Some("[100, 200]".into())
    );
    assert_eq!(
        p.node("smol").unwrap().arg("source").map(|v| v.render()),
        Some("\"llama-3.1-8b-instruct\"".into())
    );
    let e = apply_override(&mut set, "smol.colour=red").unwrap_err();
    assert!(e.message.contains("no parameter `colour`"), "{}", e.message);
}

#[test]
fn schema_defaults_type_check() {
    // Every default in the registry is a valid value of its parameter: a program that uses
    // every constructor and function with only required arguments checks.
    let text = r#"
model m = random { layers: 2, heads: 4, hidden: 64 }
model g = gguf("smollm2-135m-instruct")
model hf_tiny = hf("valid/models/tiny-llama")
dataset d = niah { lengths: [100] }
dataset j = jsonl("valid/data/prompts.jsonl")
dataset h = hotpotqa("valid/data/hotpot.json")
trace t = generate(m, d) { capture: [retrieval, hidden, span_mass, top_k], intervene: [mask_heads(explicit(["L0H0"]))] }
heads s = static_heads(t)
heads y = dynamic(t)
heads p = top(s, 2)
heads r = random(m, count: 3)
heads f = from_file("valid/data/heads.json")
heads ex = explicit(["L1H3"])
table a = dynamism(t, s)
table b = scores(t)
table c = compensated([t], s)
table e = probe(t)
trace tr = generate(m, h) { capture: [retrieval(reasoning), hidden] }
table rg = regressor(tr)
trace ra = rag(m, h)
heads hp = predicted(tr)
table rt = rag_table([ra])
table ht = head_table(s)
figure f1 = heatmap(t)
figure f2 = ablation_grid(t)
figure f3 = progressive(t, s)
figure f4 = cca(t)
report rep = template("valid/reports/section3.md.j2")
"#;
    let p = lang::check_str(
        "<defaults>",
        Path::new("tests/lang/defaults.rhx"),
        text,
        &[],
        &FakeShapes,
    )
    .unwrap_or_else(|d| panic!("{}", render_diagnostics(&d)));
    let reg = lang::registry();
    let used: std::collections::BTreeSet<String> =
        p.nodes.iter().map(|n| n.constructor.clone()).collect();
    for c in &reg.ctors {
        assert!(
            used.contains(c.func.name),
            "constructor {} is not exercised",
            c.func.name
        );
    }
    for n in &p.nodes {
        for a in &n.args {
            let spec = reg
                .ctors
                .iter()
                .find(|c| c.kind == n.kind && c.func.name == n.constructor)
                .unwrap();
            let ps = spec.func.param(&a.name).unwrap();
            if matches!(ps.default, lang::schema::Default::Value(_)) && a.origin == Origin::Default
            {
                assert!(
                    a.value.is_some(),
                    "{}.{} default did not check",
                    n.constructor,
                    a.name
                );
            }
        }
    }
}

#[test]
fn engine_shapes_read_config_json() {
    let m = ModelDecl {
        name: "tiny".into(),
        constructor: "hf".into(),
        spec: "models/tiny-llama".into(),
        path: Some("tests/lang/valid/models/tiny-llama".into()),
    };
    let s = EngineShapes::new().shape(&m).unwrap().unwrap();
    assert_eq!((s.layers, s.heads), (3, 4));
    let missing = ModelDecl {
        name: "x".into(),
        constructor: "gguf".into(),
        spec: "no-such-model-anywhere".into(),
        path: None,
    };
    assert!(EngineShapes::new().shape(&missing).is_err());
}

#[test]
fn no_shapes_skips_head_checks() {
    // With NoShapes, a head index beyond SmolLM2's 30 layers is not an error (shape unknown).
    let text = "model smol = gguf(\"smollm2-135m-instruct\")\ndataset d = niah { lengths: [100] }\ntrace t = generate(smol, d) { intervene: mask_heads(explicit([\"L99H0\"])) }\n";
    assert!(lang::check_str("x.rhx", Path::new("tests/lang/x.rhx"), text, &[], &NoShapes).is_ok());
    assert!(lang::check_str(
        "x.rhx",
        Path::new("tests/lang/x.rhx"),
        text,
        &[],
        &FakeShapes
    )
    .is_err());
}

#[test]
fn diagnostics_display_location() {
    let err = lang::check_str(
        "a.rhx",
        Path::new("tests/lang/a.rhx"),
        "dataset d = niah { lengths: [100], runs: 0 }\n",
        &[],
        &NoShapes,
    )
    .unwrap_err();
    assert_eq!(
        err[0].to_string(),
        "a.rhx:1:42: `runs` must be from 1 to 100000, found 0"
    );
}

/// A metadata-only GGUF (no tensors) with the keys `ModelConfig::from_gguf` reads.
fn tiny_gguf(layers: u32, heads: u32) -> Vec<u8> {
    fn s(out: &mut Vec<u8>, v: &str) {
        out.extend((v.len() as u64).to_le_bytes());
        out.extend(v.as_bytes());
    }
    let u32s = [
        ("llama.block_count", layers),
        ("llama.attention.head_count", heads),
        ("llama.attention.head_count_kv", heads),
        ("llama.embedding_length", 16 * heads),
        ("llama.feed_forward_length", 64),
        ("llama.context_length", 128),
        ("llama.vocab_size", 32),
    ];
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(0u64.to_le_bytes()); // tensors
    out.extend((u32s.len() as u64 + 1).to_le_bytes()); // metadata entries
    s(&mut out, "general.architecture");
    out.extend(8u32.to_le_bytes()); // string
    s(&mut out, "llama");
    for (k, v) in u32s {
        s(&mut out, k);
        out.extend(4u32.to_le_bytes()); // uint32
        out.extend(v.to_le_bytes());
    }
    out
}

#[test]
fn engine_shapes_read_gguf_header() {
    let dir = std::env::temp_dir().join(format!("rhx-lang-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, tiny_gguf(5, 6)).unwrap();
    let m = ModelDecl {
        name: "g".into(),
        constructor: "gguf".into(),
        spec: path.display().to_string(),
        path: Some(path.clone()),
    };
    let s = EngineShapes::new().shape(&m).unwrap().unwrap();
    assert_eq!((s.layers, s.heads), (5, 6));
    // End to end: a head beyond the GGUF's 6 heads is rejected before anything loads.
    let text = format!(
        "model g = gguf({:?})\ndataset d = niah {{ lengths: [64] }}\ntrace t = generate(g, d) {{ intervene: mask_heads(explicit([\"L4H6\"])) }}\n",
        path.display().to_string()
    );
    let err = lang::check_str(
        "g.rhx",
        &dir.join("g.rhx"),
        &text,
        &[],
        &EngineShapes::new(),
    )
    .unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(
        err[0].code,
        Code::HeadOutOfRange,
        "{}",
        render_diagnostics(&err)
    );
    // A file that is not a GGUF is reported as unavailable, not a panic.
    std::fs::write(&path, b"not a gguf").unwrap();
    let err = lang::check_str(
        "g.rhx",
        &dir.join("g.rhx"),
        &text,
        &[],
        &EngineShapes::new(),
    )
    .unwrap_err();
    assert_eq!(
        err[0].code,
        Code::ModelUnavailable,
        "{}",
        render_diagnostics(&err)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Diagnostics on very long lines: never a panic (miette's width argument overflows past column
/// 65,535), `file:line:col` exact, the snippet cut to a window around the span, a long
/// neighbouring line left out, and the check itself fast.
#[test]
fn long_lines_give_clipped_diagnostics() {
    let started = std::time::Instant::now();
    let pad = " ".repeat(70_000);
    let text = format!("experiment \"x\" {{ seed: 0 }}\nmodel lm = gguf(\"smollm2-135m-instruct\") {{ dtype: f32, {pad}bogus: 1 }}\n");
    let d = rhx::lang::check_str("long.rhx", Path::new("long.rhx"), &text, &[], &NoShapes).unwrap_err();
    let out = render_diagnostics(&d);
    assert!(out.contains("[long.rhx:2:70056]"), "{}", &out[..out.len().min(2000)]);
    assert!(out.contains("bogus: 1 }") && out.lines().all(|l| l.chars().count() < 400), "{}", &out[..out.len().min(2000)]);

    // A 100 KB comment line just above the error is not printed.
    let text = format!("experiment \"x\" {{ seed: 0 }}\n# {}\nmodel lm = gguf(\"smollm2-135m-instruct\") {{ bogus: 1 }}\n", "a".repeat(100_000));
    let out = render_diagnostics(&rhx::lang::check_str("c.rhx", Path::new("c.rhx"), &text, &[], &NoShapes).unwrap_err());
    assert!(out.contains("[c.rhx:3:") && out.lines().all(|l| l.chars().count() < 400), "{}", &out[..out.len().min(2000)]);

    // A `--set` value longer than 65,535 characters with a mistake at its end.
    let text = "experiment \"x\" { seed: 0 }\ndataset d = niah { runs: 1, lengths: [300] }\n";
    let set = format!("d.runs={}x", " ".repeat(70_000));
    let out = render_diagnostics(&rhx::lang::check_str("s.rhx", Path::new("s.rhx"), text, &[set], &NoShapes).unwrap_err());
    assert!(out.contains("[--set:1:70008]") && out.lines().all(|l| l.chars().count() < 400), "{}", &out[..out.len().min(2000)]);

    // A 2 MB file with an error on every declaration checks in seconds and lists the first 100.
    let many = (0..20_000).map(|i| format!("model m{i} = gguf(\"a\") {{ bogus: 1 }}")).collect::<Vec<_>>().join(" ");
    let text = format!("experiment \"x\" {{ seed: 0 }} {many} {}\n", " ".repeat(1_500_000));
    let d = rhx::lang::check_str("big.rhx", Path::new("big.rhx"), &text, &[], &NoShapes).unwrap_err();
    let out = render_diagnostics(&d);
    assert!(out.contains(&format!("and {} more error(s) not shown", d.len() - 100)), "{}", &out[out.len().saturating_sub(500)..]);
    assert!(started.elapsed().as_secs() < 60, "took {:?}", started.elapsed());
}

/// A file that is not UTF-8 is reported at its first bad byte, not as a missing file.
#[test]
fn invalid_utf8_is_reported_at_the_byte() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lang_utf8");
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.rhx");
    std::fs::write(&f, b"experiment \"x\" { seed: 0 }\n# caf\xe9\n").unwrap();
    let d = rhx::lang::check_path(&f, &[], &NoShapes).unwrap_err();
    let out = render_diagnostics(&d);
    assert!(out.contains("not valid UTF-8 (byte offset 32)") && out.contains("bad.rhx:2:6]") && !out.contains("cannot read"), "{out}");
    // Through an import: named at the import, with the line and column of the bad byte.
    let g = dir.join("main.rhx");
    std::fs::write(&g, "import \"bad.rhx\"\n").unwrap();
    let out = render_diagnostics(&rhx::lang::check_path(&g, &[], &NoShapes).unwrap_err());
    assert!(out.contains("is not valid UTF-8 at 2:6") && out.contains("main.rhx:1:8]"), "{out}");
}
