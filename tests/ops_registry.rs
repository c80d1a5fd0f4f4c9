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
    for op in REGISTRY.iter().filter(|op| !op.implemented()) {
        let decl = match (op.kind, op.name) {
            (Kind::Model, "random") => "model m = random { layers: 1, heads: 1, hidden: 8 }".to_string(),
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
    let opts = RunOptions { shard: None, shard_plan: None, reports_dir: dir.join("reports"), recompute: false, quiet: true, compute_traces: true, threads: None, engine: None };
    run::run(&program, &cache, &opts).unwrap();
    let plan = rhx::plan::plan(&program, &cache).unwrap();
    let artifact = |name: &str, file: &str| -> Json {
        let a = cache.get(&plan.step(name).unwrap().key).unwrap().unwrap();
        serde_json::from_slice(&a.read(file).unwrap()).unwrap()
    };
    let mut report = artifact("ops", "report.json");
    report.as_object_mut().unwrap().remove("provenance");
    // The trace viewer's data is the traces' own (checked in tests/trace_view.rs), not a result.
    report.as_object_mut().unwrap().remove("traces");
    let mut snap = serde_json::json!({"report": report});
    for h in ["listed", "filed", "drawn"] {
        snap[h] = artifact(h, "heads.json");
    }
    for t in ["base", "listed_masked", "filed_masked", "drawn_masked"] {
        let info = artifact(t, "trace_info.json");
        snap[format!("{t}.intervention")] = info["intervention"].clone();
        snap[format!("{t}.samples")] = info["samples"].clone();
    }
    // HotpotQA prompts: their length, needle spans (supporting facts) and cell, and what SmolLM2 says.
    let hotpot = cache.get(&plan.step("hotpot_trace").unwrap().key).unwrap().unwrap();
    // The typed reader: Eq. 2 scores live in `tensors.safetensors` (trace format 2).
    assert!(hotpot.file(rhx::artifact::trace::TENSORS_FILE).is_some(), "Eq. 2 scores are stored as f32 tensors");
    let lines: Vec<Json> = rhx::artifact::trace::read_lines(&hotpot).unwrap().iter().map(|l| serde_json::to_value(l).unwrap()).collect();
    snap["hotpot_trace"] = lines
        .iter()
        .map(|l| {
            let span = l["needle_span"].as_array().unwrap();
            // Eq. 2 at step 0: the three highest-scoring heads, as (score to 3 decimals, layer,
            // head); 3 decimals keep the golden independent of the CPU's rounding.
            let r = l["steps"][0]["reasoning"].as_array().unwrap();
            let mut top: Vec<(f64, usize, usize)> = r.iter().enumerate().flat_map(|(li, row)| row.as_array().unwrap().iter().enumerate().map(move |(h, v)| (v.as_f64().unwrap(), li, h))).collect();
            top.sort_by(|a, b| b.0.total_cmp(&a.0));
            serde_json::json!({"id": l["id"], "answer": l["answer"], "prompt_tokens": l["prompt_tokens"], "needle_tokens": span.len(), "needle_first": span.first(), "needle_last": span.last(), "meta": l["meta"], "text": l["text"], "reasoning_step0_top3": top[..3].iter().map(|(v, l, h)| (format!("{v:.3}"), l, h)).collect::<Vec<_>>()})
        })
        .collect();
    // Section 5: each question's text, retrievals (where, which heads, which windows) and drafts.
    let rag = cache.get(&plan.step("hotpot_rag").unwrap().key).unwrap().unwrap();
    snap["hotpot_rag"] = rhx::artifact::trace::read_lines(&rag)
        .unwrap()
        .iter()
        .map(|l| {
            let r = &l.meta["rag"];
            let retrievals: Vec<Json> = r["retrievals"].as_array().unwrap().iter().map(|x| serde_json::json!({"at": x["at"], "heads": x["heads"], "windows": x["windows"]})).collect();
            serde_json::json!({"id": l.id, "text": l.text, "tokens": l.tokens.len(), "drafts": r["drafts"], "forced": r["forced"], "retrievals": retrievals})
        })
        .collect();
    // The predictor's shape and split (its weights come from training: not snapshotted); every
    // retrieval of the dynamic run used `top` = 5 heads of the model.
    let mut probe = artifact("hotpot_probe", "heads.json");
    for k in ["test_r2", "test_top1_hit"] {
        assert!(probe["set"][k].as_f64().is_some_and(f64::is_finite), "{probe}");
        probe["set"].as_object_mut().unwrap().remove(k);
    }
    snap["hotpot_probe"] = probe;
    let dyn_lines = rhx::artifact::trace::read_lines(&cache.get(&plan.step("hotpot_dyn").unwrap().key).unwrap().unwrap()).unwrap();
    assert_eq!(dyn_lines.len(), 3);
    for l in &dyn_lines {
        for r in l.meta["rag"]["retrievals"].as_array().unwrap() {
            let heads = r["heads"].as_array().unwrap();
            assert_eq!(heads.len(), 5, "{r}");
            assert!(heads.iter().all(|h| h[0].as_u64().unwrap() < 30 && h[1].as_u64().unwrap() < 9), "{r}");
        }
    }
    // Reasoning heads (`top: 5`): each step's `heads` are its 5 heads of largest S, with S.
    for l in &lines {
        for st in l["steps"].as_array().unwrap() {
            let mut s: Vec<(f64, usize, usize)> = st["reasoning"].as_array().unwrap().iter().enumerate().flat_map(|(li, row)| row.as_array().unwrap().iter().enumerate().map(move |(h, v)| (v.as_f64().unwrap(), li, h))).collect();
            s.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
            let mut want: Vec<(usize, usize)> = s.iter().filter(|x| x.0 > 0.0).take(5).map(|x| (x.1, x.2)).collect();
            want.sort();
            let got: Vec<(usize, usize)> = serde_json::from_value(st["heads"].clone()).unwrap();
            assert_eq!(got, want, "{}", l["id"]);
        }
    }
    assert_eq!(artifact("hotpot_trace", "trace_info.json")["retrieval"], serde_json::json!({"method": "reasoning", "sink": 4, "local": 32, "threshold": 0.5, "top": 5}));
    // Table 3 on 3 generations: its rows and columns (the numbers come from an MLP's training,
    // which moves in the last digits between CPUs: checked for sense, not snapshotted).
    let reg = artifact("hotpot_reg", "table.json");
    let rows = reg["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let num = |r: usize, c: usize| rows[r]["cells"][c]["value"].as_f64().unwrap_or(f64::NAN);
    for r in 0..3 {
        assert!(num(r, 0) >= 0.0 && num(r, 1) >= 0.0 && num(r, 2).is_finite() && num(r, 3) <= 1.0, "{reg}");
    }
    // The training mean explains nothing of the pooled variance it was not fitted on.
    assert!(num(2, 3) <= 0.05, "{reg}");
    snap["hotpot_reg.columns"] = reg["columns"].clone();
    snap["hotpot_reg.rows"] = rows.iter().map(|r| r["label"].clone()).collect();
    // The random draw comes from the tiny model's shape (3 layers x 4 heads).
    let pool = snap["drawn"]["set"]["pool"].as_array().unwrap().len();
    assert_eq!(pool, 12);
    round(&mut snap);
    insta::with_settings!({snapshot_path => "../golden/ops", prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!("ops_small", serde_json::to_string_pretty(&snap).unwrap());
    });
}

/// Every value an enum or boolean option can take (`None` for other types: the option tests
/// try each value other than the current one).
fn option_values(ty: &rhx::lang::schema::Ty) -> Option<Vec<String>> {
    use rhx::lang::schema::Ty;
    match ty {
        Ty::Enum(vs) => Some(vs.iter().map(|v| v.to_string()).collect()),
        Ty::Bool => Some(vec!["true".into(), "false".into()]),
        _ => None,
    }
}

/// Options that leave this experiment's output as it is, each with the reason: the input has
/// none of the cases the option decides (`op.param=value`). (The metric options `uuid_match`,
/// `rouge_stem`, … change at least the caption that states how the scores were computed.) Any other declared option must
/// change the output of `tests/run/section3_small.rhx` or be refused by `rhx check`.
const NO_EFFECT_HERE: &[(&str, &str)] = &[
    ("static_heads.rouge1_stem=false", "the answers are UUIDs: Porter stemming leaves them as they are"),
    ("probe.checkpoint=best_val_loss", "in 20 epochs the validation loss falls every epoch here, so the best epoch is the last"),
    ("static_heads.success_filter=false", "every generation of this detection trace passes Wu's filter (the UUID answers have ROUGE-1 recall 1), so dropping the filter keeps the same samples; experiments/section4.rhx turns it off on HotpotQA, where few answers pass"),
];

/// Options that only play a role beside another: `(op, option prefix, the other setting)`.
/// (`probe.scale_layers=false` would train the paper's [8192, 4096, 4096] here: small widths
/// show the same effect at a test's cost.)
const CONTEXT: &[(&str, &str, &str)] = &[("ablation_grid", "rouge_", "metric=rouge_l"), ("progressive", "rouge_", "metric=rouge_l"), ("probe", "scale_layers", "layers=[64, 32, 32]")];

/// Every enum or boolean option of the analyses (head sets, tables, figures) of Section 3, set in
/// turn to each value other than its default on `tests/run/section3_small.rhx`: the node's
/// artifact must change, or `rhx check` must refuse the value, or it is listed in
/// [`NO_EFFECT_HERE`] with the reason.
#[test]
fn every_declared_option_changes_the_output_or_is_refused() {
    if !common::smollm2_installed() {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("options");
    let _ = std::fs::remove_dir_all(&dir);
    let exp = root().join("tests/run/section3_small.rhx");
    let cache = Cache::open(dir.join("cache")).unwrap();
    let opts = RunOptions { shard: None, shard_plan: None, reports_dir: dir.join("reports"), recompute: false, quiet: true, compute_traces: true, threads: None, engine: None };
    // A node's artifact: its files' names and sha256s.
    let files_of = |program: &rhx::lang::Program, name: &str| -> Vec<(String, String)> {
        let plan = rhx::plan::plan(program, &cache).unwrap();
        let a = cache.get(&plan.step(name).unwrap().key).unwrap().unwrap();
        a.manifest.files.iter().map(|f| (f.name.clone(), f.sha256.clone())).collect()
    };
    let base = lang::check_path(&exp, &[], &NoShapes).unwrap();
    run::run(&base, &cache, &opts).unwrap();
    let (mut changed, mut refused, mut no_effect) = (vec![], vec![], vec![]);
    for op in REGISTRY.iter().filter(|op| op.implemented() && matches!(op.kind, Kind::Heads | Kind::Table | Kind::Figure)) {
        let Some(node) = base.nodes.iter().find(|n| n.kind == op.kind && n.constructor == op.name) else { continue };
        let spec = (op.spec)();
        for p in &spec.params {
            let Some(values) = option_values(&p.ty) else { continue };
            let current = node.arg(p.name).map(Value::render);
            let context: Vec<String> = CONTEXT.iter().filter(|(o, prefix, _)| *o == op.name && p.name.starts_with(prefix)).map(|(_, _, c)| format!("{}.{c}", node.name)).collect();
            let reference = lang::check_path(&exp, &context, &NoShapes).unwrap();
            run::run(&reference, &cache, &opts).unwrap();
            for v in values.into_iter().filter(|v| Some(v) != current.as_ref()) {
                let id = format!("{}.{}={v}", op.name, p.name);
                let set = format!("{}.{}={v}", node.name, p.name);
                let sets: Vec<String> = context.iter().cloned().chain([set.clone()]).collect();
                let program = match lang::check_path(&exp, &sets, &NoShapes) {
                    Ok(p) => p,
                    Err(_) => {
                        refused.push(id);
                        continue;
                    }
                };
                if run::check_supported(&program).is_err() {
                    refused.push(id);
                    continue;
                }
                run::run(&program, &cache, &opts).unwrap_or_else(|e| panic!("{set}: {e}"));
                if files_of(&program, &node.name) == files_of(&reference, &node.name) {
                    no_effect.push(id);
                } else {
                    changed.push(id);
                }
            }
        }
    }
    eprintln!("changed: {changed:?}\nrefused: {refused:?}\nno effect: {no_effect:?}");
    let unexplained: Vec<&String> = no_effect.iter().filter(|id| !NO_EFFECT_HERE.iter().any(|(o, _)| o == id)).collect();
    assert!(unexplained.is_empty(), "options that change nothing and are not refused: {unexplained:?}");
    assert!(changed.len() >= 10, "{changed:?}");
}

/// What a dataset contributes to a trace, per prompt: token ids, needle span, answer, cell.
type PromptRecord = (Vec<u32>, Vec<usize>, Option<String>, String);

/// Dataset options that leave the prompts of `tests/run/section3_small.rhx` as they are, each
/// with the reason (`op.param=value`).
const DATASET_NO_EFFECT_HERE: &[(&str, &str)] = &[
    ("niah.full_depth=back_up", "no prompt here is at depth 1.0 (depths 0.25 and 0.75, and random depths in [0, 1)); `data::niah`'s unit test checks the placement"),
    ("hotpotqa.chat=false", "only `context_format: dragin_numbered` prompts use it (this one is title_paragraph); `hotpotqa.context_format=dragin_numbered` changes the prompts, and `data::hotpotqa`'s unit test checks DRAGIN's text"),
];

/// Every enum or boolean option of a dataset constructor used by the golden experiments,
/// set in turn to each value other than its own: the prompts it makes for SmolLM2's tokenizer
/// (token ids, needle span, answer, cell) must change, or `rhx check` must refuse the value, or
/// it is listed in [`DATASET_NO_EFFECT_HERE`] with the reason. No model runs: the prompts are
/// all a dataset contributes to a trace.
#[test]
fn every_declared_dataset_option_changes_the_prompts_or_is_refused() {
    if !common::smollm2_installed() {
        return;
    }
    let lm = rhx::engine::loader::load("smollm2-135m-instruct", tch::Device::Cpu, tch::Kind::Float).unwrap();
    let extra: std::collections::BTreeMap<String, Json> = [("enable_thinking".to_string(), Json::Bool(false))].into();
    let prompts = |program: &rhx::lang::Program, name: &str| -> Vec<PromptRecord> {
        let node = program.nodes.iter().find(|n| n.name == name).unwrap();
        let Exec::Dataset(make) = rhx::ops::find(node.kind, &node.constructor).unwrap().exec else { unreachable!() };
        make(node, &lm.tokenizer, &extra).unwrap().into_iter().map(|p| (p.prep.ids, p.prep.needle_span, p.answer, p.meta.to_string())).collect()
    };
    let (mut changed, mut refused, mut no_effect) = (vec![], vec![], vec![]);
    for exp in GOLDEN_EXPERIMENTS.iter().map(|f| root().join(f)) {
        let base = lang::check_path(&exp, &[], &NoShapes).unwrap();
        for node in base.nodes.iter().filter(|n| n.kind == Kind::Dataset) {
            let op = rhx::ops::find(node.kind, &node.constructor).unwrap();
            let reference = prompts(&base, &node.name);
            assert!(!reference.is_empty(), "{}", node.name);
            for p in &(op.spec)().params {
                let Some(values) = option_values(&p.ty) else { continue };
                let current = node.arg(p.name).map(Value::render);
                for v in values.into_iter().filter(|v| Some(v) != current.as_ref()) {
                    let id = format!("{}.{}={v}", op.name, p.name);
                    let set = format!("{}.{}={v}", node.name, p.name);
                    let program = match lang::check_path(&exp, std::slice::from_ref(&set), &NoShapes) {
                        Ok(p) if run::check_supported(&p).is_ok() => p,
                        _ => {
                            refused.push(id);
                            continue;
                        }
                    };
                    if prompts(&program, &node.name) == reference {
                        no_effect.push(id);
                    } else {
                        changed.push(id);
                    }
                }
            }
        }
    }
    eprintln!("changed: {changed:?}\nrefused: {refused:?}\nno effect: {no_effect:?}");
    let unexplained: Vec<&String> = no_effect.iter().filter(|id| !DATASET_NO_EFFECT_HERE.iter().any(|(o, _)| o == id)).collect();
    assert!(unexplained.is_empty(), "dataset options that change no prompt and are not refused: {unexplained:?}");
    assert!(changed.len() >= 4, "{changed:?}");
}

/// Options of the capture and intervention functions that leave a trace as it is here, each with
/// the reason (`function.param=value`).
const FUNCTION_NO_EFFECT_HERE: &[(&str, &str)] = &[];

/// Every enum or boolean option of a `capture:` or `intervene:` function, set in turn to each
/// value other than its default on a short SmolLM2 trace: the trace's records must change, or
/// `rhx check` must refuse the value (or the function), or it is listed in
/// [`FUNCTION_NO_EFFECT_HERE`] with the reason.
#[test]
fn every_capture_and_intervention_option_changes_the_trace_or_is_refused() {
    if !common::smollm2_installed() {
        return;
    }
    use rhx::lang::schema::{registry, Family};
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("function_options");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cache = Cache::open(dir.join("cache")).unwrap();
    let opts = RunOptions { shard: None, shard_plan: None, reports_dir: dir.join("reports"), recompute: false, quiet: true, compute_traces: true, threads: None, engine: None };
    let prompts = root().join("experiments/prompts/niah_smoke.jsonl");
    // The trace's records (everything but `trace_info.json`, which names the settings), or why
    // the program is refused.
    let trace_of = |i: usize, capture: &str, intervene: &str| -> Result<Vec<(String, String)>, String> {
        let src = format!(
            "experiment \"function-options\" {{ seed: 0 }}\nmodel lm = gguf(\"smollm2-135m-instruct\") {{ dtype: f32, device: cpu }}\n\
             dataset prompts = jsonl({prompts:?}) {{ limit: 1 }}\nheads listed = explicit([\"L3H1\", \"L5H2\", \"L10H4\", \"L20H0\"])\n\
             trace t = generate(lm, prompts) {{ max_new_tokens: 8, capture: [{capture}], intervene: [{intervene}] }}\n"
        );
        let path = dir.join(format!("e{i}.rhx"));
        std::fs::write(&path, src).unwrap();
        let program = lang::check_path(&path, &[], &NoShapes).map_err(|e| format!("{e:?}"))?;
        run::check_supported(&program).map_err(|e| format!("{e:?}"))?;
        run::run(&program, &cache, &opts).map_err(|e| e.to_string())?;
        let plan = rhx::plan::plan(&program, &cache).unwrap();
        let a = cache.get(&plan.step("t").unwrap().key).unwrap().unwrap();
        Ok(a.manifest.files.iter().filter(|f| f.name != "trace_info.json").map(|f| (f.name.clone(), f.sha256.clone())).collect())
    };
    let (mut changed, mut refused, mut no_effect) = (vec![], vec![], vec![]);
    let mut i = 0;
    for family in [Family::Capture, Family::Intervention] {
        for f in registry().funcs_of(family) {
            // The call with its defaults; an intervention needs its head set.
            let call = |arg: &str| {
                let args: Vec<&str> = [(family == Family::Intervention).then_some("listed"), (!arg.is_empty()).then_some(arg)].into_iter().flatten().collect();
                format!("{}({})", f.name, args.join(", "))
            };
            let program = |arg: &str| if family == Family::Capture { (call(arg), String::new()) } else { ("retrieval(copy_paste)".to_string(), call(arg)) };
            i += 1;
            let (c, m) = program("");
            let reference = trace_of(i, &c, &m);
            for p in &f.params {
                let Some(values) = option_values(&p.ty) else { continue };
                for v in values.into_iter().filter(|v| p.default != rhx::lang::schema::Default::Value(leak(v))) {
                    let id = format!("{}.{}={v}", f.name, p.name);
                    i += 1;
                    let (c, m) = program(&format!("{}: {v}", p.name));
                    match (&reference, trace_of(i, &c, &m)) {
                        (_, Err(_)) => refused.push(id),
                        (Ok(r), Ok(t)) if *r == t => no_effect.push(id),
                        (Ok(_), Ok(_)) => changed.push(id),
                        (Err(e), Ok(_)) => panic!("`{}` with its defaults is refused ({e}) but {id} runs", f.name),
                    }
                }
            }
        }
    }
    eprintln!("changed: {changed:?}\nrefused: {refused:?}\nno effect: {no_effect:?}");
    let unexplained: Vec<&String> = no_effect.iter().filter(|id| !FUNCTION_NO_EFFECT_HERE.iter().any(|(o, _)| o == id)).collect();
    assert!(unexplained.is_empty(), "function options that change no trace and are not refused: {unexplained:?}");
    assert!(!changed.is_empty(), "{changed:?}");
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}
