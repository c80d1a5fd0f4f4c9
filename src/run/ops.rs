//! What each constructor computes. An op reads its inputs' artifacts and returns the files of
//! its own artifact. Constructors or option values that the executor does not implement yet are
//! rejected by [`supported`] before anything runs, with a message saying so.
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{json, Value as Json};

use super::{ablation_ops, Ctx, RunError};
use crate::analysis::dynamism::{self, BothEmpty, DynamismOptions, EmptyStep, EntropyPool, Head, SampleHeads};
use crate::analysis::metrics::{rouge1_with, rouge_l_with, uuid_accuracy};
use crate::cache::Artifact;
use crate::data::niah::{self, Cell, Haystack, LengthMode, PromptTexts};
use crate::data::prompts::prepare_line;
use crate::engine::capture::retrieval_heads;
use crate::engine::config::ModelConfig;
use crate::engine::device::{self, DType, DeviceRequest};
use crate::engine::generate::{default_batch_size, generate_with, FixedMask, GenerateOptions, MaskScope, Prompt, StepPolicy};
use crate::engine::gguf::GgufFile;
use crate::engine::loader;
use crate::engine::model::{HiddenSite, MaskMode};
use crate::lang::{Kind, Node, Value};
use crate::plan::Step;
use crate::report::{self, Cell as RCell, Column, Figure, Heatmap, Report, Row, Section, Table};

pub(super) type Files = Vec<(String, Vec<u8>)>;

pub(super) fn enum_arg<'a>(n: &'a Node, name: &str) -> Option<&'a str> {
    n.arg(name).and_then(Value::as_str)
}

pub(super) fn int_arg(n: &Node, name: &str) -> Option<i64> {
    n.arg(name).and_then(Value::as_int)
}

fn calls<'a>(n: &'a Node, name: &str) -> Vec<(&'a str, &'a [crate::lang::Arg])> {
    n.arg(name)
        .and_then(Value::as_list)
        .unwrap_or(&[])
        .iter()
        .filter_map(|v| match v {
            Value::Call { func, args, .. } => Some((func.as_str(), args.as_slice())),
            _ => None,
        })
        .collect()
}

fn call_arg<'a>(args: &'a [crate::lang::Arg], name: &str) -> Option<&'a Value> {
    args.iter().find(|a| a.name == name).and_then(|a| a.value.as_ref())
}

pub(super) fn ref_name(v: &Value) -> Option<&str> {
    match v {
        Value::Ref { name, .. } => Some(name),
        Value::Inline(n) => Some(&n.name),
        _ => None,
    }
}

/// Rejects what the executor cannot run yet, before any work starts.
pub(super) fn supported(n: &Node) -> Result<(), String> {
    let no = |what: String| Err(format!("{what} is not implemented by the executor yet"));
    let need = |param: &str, allowed: &[&str]| -> Result<(), String> {
        match enum_arg(n, param) {
            Some(v) if !allowed.contains(&v) => Err(format!("`{param}: {v}` is not implemented by the executor yet (implemented: {})", allowed.join(", "))),
            _ => Ok(()),
        }
    };
    match (n.kind, n.constructor.as_str()) {
        (Kind::Model, "gguf" | "hf") => {}
        (Kind::Dataset, "niah") => {
            need("depth_mode", &["grid", "uniform_random"])?;
            need("length_mode", &["kamradt", "haystack_exact"])?;
            need("sentence_end", &["decoded_endswith_period"])?;
            need("span_locator", &["char_offsets"])?;
            if n.arg("reencode_quirk") == Some(&Value::Bool(true)) {
                return no("`reencode_quirk: true`".into());
            }
        }
        (Kind::Dataset, "jsonl") => {}
        (Kind::Trace, "generate") => {
            for (func, args) in calls(n, "capture") {
                match func {
                    "retrieval" => {
                        for (p, ok) in [("method", "copy_paste"), ("match", "id"), ("argmax_on", "fp32_logits"), ("keys", "all")] {
                            if let Some(v) = call_arg(args, p).and_then(Value::as_str) {
                                if v != ok {
                                    return no(format!("`retrieval({p}: {v})`"));
                                }
                            }
                        }
                    }
                    "hidden" => {
                        if call_arg(args, "norm").and_then(Value::as_str) == Some("pre_norm") {
                            return no("`hidden(norm: pre_norm)`".into());
                        }
                    }
                    "top_k" => {}
                    other => return no(format!("capture `{other}`")),
                }
            }
            for (func, args) in calls(n, "intervene") {
                if func != "mask_heads" {
                    return no(format!("intervention `{func}`"));
                }
                if let Some(m) = call_arg(args, "mode").and_then(Value::as_str) {
                    if m == "mean_output" {
                        return no("`mask_heads(mode: mean_output)`".into());
                    }
                }
                if call_arg(args, "kv").and_then(Value::as_str) == Some("clean") {
                    return no("`mask_heads(kv: clean)`".into());
                }
            }
        }
        (Kind::Heads, "static_heads") => need("method", &["wu_mean", "step_frequency"])?,
        (Kind::Heads, "top") => need("match_count", &["global_mean", "sample_mean"])?,
        (Kind::Heads, "random") => {
            need("match_count", &["global_mean", "sample_mean"])?;
            need("redraw", &["per_sample", "per_cell"])?;
        }
        (Kind::Heads, "explicit" | "from_file" | "dynamic") => {}
        (Kind::Table, "dynamism" | "scores" | "compensated" | "probe") => {}
        (Kind::Figure, "heatmap" | "ablation_grid" | "progressive" | "cca") => {}
        (Kind::Report, "template") => {
            for v in n.arg("compare").and_then(Value::as_list).unwrap_or(&[]) {
                if let Value::Builtin { name, .. } = v {
                    if !super::paper::has(name) {
                        return no(format!("`paper.{name}` (its values are not transcribed yet: Sections 4–5)"));
                    }
                }
            }
        }
        (k, c) => return no(format!("`{c}` ({k:?})")),
    }
    Ok(())
}

pub(super) fn compute(ctx: &mut Ctx, step: &Step, inputs: &BTreeMap<String, &Artifact>) -> Result<Files, RunError> {
    let n = &step.node;
    let err = |m: String| RunError::node(&n.name, m);
    match (n.kind, n.constructor.as_str()) {
        (Kind::Model, _) => model_info(ctx, step).map_err(err),
        (Kind::Dataset, _) => {
            // Prompts depend on the model's tokenizer, so they are built by the trace; the
            // dataset's artifact records its resolved parameters.
            let mut args = serde_json::Map::new();
            for a in &n.args {
                if let Some(v) = &a.value {
                    args.insert(a.name.clone(), json!(v.render()));
                }
            }
            Ok(vec![("dataset.json".into(), serde_json::to_vec_pretty(&json!({"constructor": n.constructor, "args": args})).unwrap())])
        }
        (Kind::Trace, _) => trace(ctx, step, inputs).map_err(err),
        (Kind::Heads, _) => heads(ctx, step, inputs).map_err(err),
        (Kind::Table, "dynamism") => dynamism_table(ctx, step, inputs).map_err(err),
        (Kind::Table, "compensated") => ablation_ops::compensated_table(step, inputs).map_err(err),
        (Kind::Table, "probe") => super::hidden_ops::probe_table(step, inputs).map_err(err),
        (Kind::Table, _) => scores_table(ctx, step, inputs).map_err(err),
        (Kind::Figure, "ablation_grid") => ablation_ops::ablation_grid(step, inputs).map_err(err),
        (Kind::Figure, "progressive") => ablation_ops::progressive(step, inputs).map_err(err),
        (Kind::Figure, "cca") => super::hidden_ops::cca_figure(step, inputs).map_err(err),
        (Kind::Figure, _) => heatmap(ctx, step, inputs).map_err(err),
        (Kind::Report, _) => report_data(ctx, step, inputs).map_err(err),
    }
}

fn model_spec(n: &Node) -> Result<String, String> {
    match n.args.first().and_then(|a| a.value.as_ref()) {
        Some(Value::ModelName(s)) | Some(Value::Str(s)) => Ok(s.clone()),
        Some(Value::Path { resolved, .. }) => Ok(resolved.display().to_string()),
        other => Err(format!("unexpected model source {other:?}")),
    }
}

fn model_info(ctx: &Ctx, step: &Step) -> Result<Files, String> {
    let n = &step.node;
    let spec = model_spec(n)?;
    let path = loader::resolve(&spec).map_err(|e| e.to_string())?;
    let cfg = if path.is_file() {
        ModelConfig::from_gguf(&GgufFile::open(&path).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?
    } else {
        ModelConfig::from_hf_json(&path.join("config.json")).map_err(|e| e.to_string())?
    };
    let files: Vec<Json> = step
        .files
        .values()
        .map(|p| ctx.cache.file_digest(p).map(|d| json!({"path": p.display().to_string(), "sha256": d.sha256.to_string()})))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let info = json!({
        "source": spec, "path": path.display().to_string(), "files": files,
        "arch": cfg.arch, "layers": cfg.num_layers, "heads": cfg.num_heads, "kv_heads": cfg.num_kv_heads,
        "dtype": enum_arg(n, "dtype").unwrap_or("f32"), "device": enum_arg(n, "device").unwrap_or("auto"),
    });
    Ok(vec![("model.json".into(), serde_json::to_vec_pretty(&info).unwrap())])
}

pub(super) fn read_json(a: &Artifact, file: &str) -> Result<Json, String> {
    let bytes = a.read(file).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{file}: {e}"))
}

pub(super) fn read_jsonl(a: &Artifact, file: &str) -> Result<Vec<Json>, String> {
    let bytes = a.read(file).map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&bytes).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).map_err(|e| format!("{file}: {e}"))).collect()
}

pub(super) fn heads_of(a: &Artifact) -> Result<Vec<Head>, String> {
    let v = read_json(a, "heads.json")?;
    serde_json::from_value(v["heads"].clone()).map_err(|e| e.to_string())
}

fn node<'a>(ctx: &'a Ctx, name: &str) -> Result<&'a Node, String> {
    ctx.plan.step(name).map(|s| &s.node).ok_or_else(|| format!("no node `{name}`"))
}

fn trace(ctx: &mut Ctx, step: &Step, inputs: &BTreeMap<String, &Artifact>) -> Result<Files, String> {
    let n = &step.node;
    let model_name = n.arg("model").and_then(ref_name).ok_or("no model")?.to_string();
    let dataset_name = n.arg("dataset").and_then(ref_name).ok_or("no dataset")?.to_string();
    let model_node = node(ctx, &model_name)?.clone();
    let data_node = node(ctx, &dataset_name)?.clone();
    if !ctx.models.contains_key(&model_name) {
        let spec = model_spec(&model_node)?;
        let dev_req: DeviceRequest = enum_arg(&model_node, "device").unwrap_or("auto").parse().map_err(|e: device::DeviceError| e.to_string())?;
        let dtype: DType = enum_arg(&model_node, "dtype").unwrap_or("f32").parse().map_err(|e: device::DeviceError| e.to_string())?;
        let dev = device::resolve(dev_req).map_err(|e| e.to_string())?;
        let lm = loader::load(&spec, dev, dtype.kind()).map_err(|e| format!("{e:#}"))?;
        ctx.models.insert(model_name.clone(), lm);
    }
    let lm = &ctx.models[&model_name];
    let extra: BTreeMap<String, Json> = [("enable_thinking".to_string(), json!(model_node.arg("enable_thinking") == Some(&Value::Bool(true))))].into();

    // Prompts, with the answer each generation is scored against.
    struct P {
        prep: crate::data::prompts::PreparedPrompt,
        answer: Option<String>,
        meta: Json,
    }
    let mut prompts: Vec<P> = Vec::new();
    match data_node.constructor.as_str() {
        "niah" => {
            let haystack = match data_node.arg("haystack") {
                Some(Value::Path { resolved, .. }) => Haystack::Dir(resolved.clone()),
                _ => Haystack::Alice,
            };
            let lengths: Vec<usize> = data_node.arg("lengths").and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(Value::as_int).map(|x| x as usize).collect();
            let depths: Vec<f64> = data_node.arg("depths").and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(Value::as_f64).collect();
            let runs = int_arg(&data_node, "runs").unwrap_or(1) as usize;
            let seed = int_arg(&data_node, "seed").map(|s| s as u64).unwrap_or(ctx.plan.seed);
            let texts = PromptTexts {
                system: data_node.arg("system").and_then(Value::as_str).unwrap_or(niah::SYSTEM).to_string(),
                question: data_node.arg("question").and_then(Value::as_str).unwrap_or(niah::QUESTION).to_string(),
                user_template: data_node.arg("user_template").and_then(Value::as_str).unwrap_or(niah::USER_TEMPLATE).to_string(),
                needle: data_node.arg("needle").and_then(Value::as_str).unwrap_or(niah::NEEDLE_TEMPLATE).to_string(),
            };
            let mode = if enum_arg(&data_node, "length_mode") == Some("haystack_exact") { LengthMode::HaystackExact } else { LengthMode::Kamradt };
            let cells: Vec<Cell> = if enum_arg(&data_node, "depth_mode") == Some("uniform_random") {
                niah::random_depths(&lengths, runs, seed)
            } else {
                niah::grid(&lengths, &depths, runs)
            };
            let samples = niah::build_with(&lm.tokenizer, &haystack, &cells, seed, &texts, mode).map_err(|e| e.to_string())?;
            let uuid_span = enum_arg(&data_node, "needle_span") == Some("uuid");
            for (i, s) in samples.into_iter().enumerate() {
                let needle = if uuid_span { s.answer.clone() } else { s.needle.clone() };
                let line = json!({"id": s.id, "messages": s.messages, "needle": needle}).to_string();
                let prep = prepare_line(&line, i + 1, &lm.tokenizer, &extra).map_err(|e| e.to_string())?;
                prompts.push(P { prep, answer: Some(s.answer.clone()), meta: json!({"length": s.haystack_tokens, "depth": s.depth, "run": s.run, "insert_token": s.insert_token}) });
            }
        }
        "jsonl" => {
            let Some(Value::Path { resolved, .. }) = data_node.arg("path") else { return Err("jsonl: no path".into()) };
            let text = std::fs::read_to_string(resolved).map_err(|e| format!("{}: {e}", resolved.display()))?;
            let limit = int_arg(&data_node, "limit").map(|l| l as usize).unwrap_or(usize::MAX);
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).take(limit) {
                let prep = prepare_line(line, i + 1, &lm.tokenizer, &extra).map_err(|e| format!("{}: {e}", resolved.display()))?;
                let answer = serde_json::from_str::<Json>(line).ok().and_then(|v| v.get("answer").and_then(Json::as_str).map(str::to_string));
                prompts.push(P { prep, answer, meta: json!({}) });
            }
        }
        other => return Err(format!("dataset `{other}` cannot feed a trace yet")),
    }

    // Captures and interventions.
    let mut hidden = Vec::new();
    let mut top_k = 0;
    for (func, args) in calls(n, "capture") {
        match func {
            "hidden" => hidden.push(match call_arg(args, "layer") {
                Some(Value::Int(l)) => HiddenSite::Layer(*l as usize),
                _ => HiddenSite::Final,
            }),
            "top_k" => top_k = call_arg(args, "k").and_then(Value::as_int).unwrap_or(5) as usize,
            _ => {}
        }
    }
    let mut fixed_mask = None;
    let mut prompt_sets: Option<PromptSets> = None;
    let mut dynamic: Option<DynamicSpec> = None;
    let mut intervention = Json::Null;
    for (_, args) in calls(n, "intervene") {
        let heads_ref = call_arg(args, "heads").and_then(ref_name).ok_or("mask_heads needs a head set")?;
        let art = inputs.get(heads_ref).ok_or_else(|| format!("head set `{heads_ref}` not computed"))?;
        let mode = if call_arg(args, "mode").and_then(Value::as_str) == Some("zero_output") { MaskMode::ZeroOutput } else { MaskMode::UniformAttention };
        let spec = read_json(art, "heads.json")?;
        if spec["dynamic"] == json!(true) {
            let d: DynamicSpec = serde_json::from_value(spec.clone()).map_err(|e| format!("{heads_ref}: {e}"))?;
            intervention = json!({"kind": "dynamic", "heads": heads_ref, "k": d.k, "order": d.order, "post_token": d.post_token,
                "source": if d.recorded.is_some() { "trace" } else { "online" }});
            dynamic = Some(DynamicSpec { mode: Some(mode), ..d });
            continue;
        }
        let heads = heads_of(art)?;
        prompt_sets = PromptSets::from_spec(&spec, heads_ref)?;
        intervention = json!({"kind": if prompt_sets.is_some() { "per_sample" } else { "fixed" }, "heads": heads_ref, "count": heads.len(),
            "random": spec.get("random").map(|r| json!({"count": r["count"], "redraw": r["redraw"]}))});
        let all = call_arg(args, "scope").and_then(Value::as_str) == Some("all_positions") || call_arg(args, "prefill") == Some(&Value::Bool(true));
        fixed_mask = Some(FixedMask { heads, per_prompt: vec![], mode, scope: if all { MaskScope::AllPositions } else { MaskScope::Steps } });
    }
    let mut eos: Vec<u32> = lm.tokenizer.eos_ids.iter().chain(lm.model.config.eos_token_ids.iter()).copied().collect();
    eos.extend(n.arg("stop").and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(Value::as_int).map(|x| x as u32));
    let mut opts = GenerateOptions {
        max_new_tokens: int_arg(n, "max_new_tokens").unwrap_or(50) as usize,
        eos_ids: eos,
        argmax: true,
        top_k,
        hidden: hidden.clone(),
        fixed_mask,
        top_logits: 0,
    };
    // Unset: as large as the free GPU memory allows on CUDA (`auto_batch_size`), one prompt at
    // a time on the CPU (batching gains nothing there and holds a padded batch in memory).
    let batch = match int_arg(n, "batch_size") {
        Some(b) => b.max(1) as usize,
        None => default_batch_size(&lm.model, prompts.iter().map(|p| p.prep.ids.len()).max().unwrap_or(1), opts.max_new_tokens, 1),
    };
    let n_heads = lm.model.config.num_heads;
    let mut out = String::new();
    let total = prompts.len();
    // Progress with ETA on a terminal (indicatif draws nothing when stderr is not one).
    let bar = if ctx.opts.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(total as u64) };
    bar.set_style(indicatif::ProgressStyle::with_template("    {bar:30} {pos}/{len} prompts [{elapsed_precise}, ETA {eta}] {msg}").unwrap());
    // Which decoding loops made the trace (CUDA graph, fused kernels), for its metadata.
    let mut decode_loops = BTreeSet::new();
    for chunk in prompts.chunks(batch) {
        let ps: Vec<Prompt> = chunk.iter().map(|p| Prompt { ids: p.prep.ids.clone(), ..Default::default() }).collect();
        if let (Some(sets), Some(m)) = (&prompt_sets, opts.fixed_mask.as_mut()) {
            m.per_prompt = chunk.iter().map(|p| sets.heads_for(&p.prep.id, &p.meta)).collect::<Result<_, _>>()?;
        }
        let mut policy = dynamic.as_ref().map(|d| DynamicPolicy {
            k: d.k,
            order: d.order.clone(),
            static_rank: d.static_rank.iter().enumerate().map(|(i, h)| (*h, i)).collect(),
            mode: d.mode.unwrap_or(MaskMode::UniformAttention),
            n_heads,
            needles: chunk.iter().map(|p| {
                let mut m = vec![false; p.prep.ids.len()];
                p.prep.needle_span.iter().for_each(|&i| m[i] = true);
                m
            }).collect(),
            rng: niah::PyRandom::new(d.seed),
            recorded: d.recorded.as_ref().map(|r| chunk.iter().map(|p| r.get(&p.prep.id).cloned().unwrap_or_default()).collect()),
        });
        let (gens, stats) = generate_with(&lm.model, &ps, &opts, &ctx.engine.options, policy.as_mut().map(|p| p as &mut dyn StepPolicy), |s| bar.set_message(format!("step {}", s + 1))).map_err(|e| e.to_string())?;
        decode_loops.insert(stats.decode_loop());
        bar.inc(chunk.len() as u64);
        for (p, g) in chunk.iter().zip(gens) {
            let mut needle = vec![false; p.prep.ids.len()];
            p.prep.needle_span.iter().for_each(|&i| needle[i] = true);
            let steps: Vec<Json> = g
                .steps
                .iter()
                .enumerate()
                .map(|(step_i, s)| {
                    let heads: Vec<[usize; 2]> = retrieval_heads(s, n_heads, &p.prep.ids, &needle).into_iter().map(|(l, h)| [l, h]).collect();
                    let weights: Vec<f32> = heads.iter().map(|[l, h]| s.argmax_weight.get(l * n_heads + h).copied().unwrap_or(0.0)).collect();
                    let mut v = json!({"token": s.token, "heads": heads, "head_weights": weights, "argmax": s.argmax});
                    if let Some(rec) = dynamic.as_ref().and_then(|d| d.recorded.as_ref()) {
                        // One-pass step with H_t read from the unablated trace (`source: trace`).
                        let h: Vec<Head> = rec.get(&p.prep.id).and_then(|r| r.get(step_i)).map(|r| r.iter().map(|x| x.0).collect()).unwrap_or_default();
                        v["clean_heads"] = json!(h);
                        v["masked"] = json!(s.masked);
                    } else if dynamic.is_some() {
                        // Two-pass step: H_t and the token of the clean pass (the committed pass
                        // itself when nothing was masked), and the heads masked.
                        let clean = s.unmasked.as_deref().unwrap_or(s);
                        let h: Vec<[usize; 2]> = retrieval_heads(clean, n_heads, &p.prep.ids, &needle).into_iter().map(|(l, h)| [l, h]).collect();
                        v["clean_heads"] = json!(h);
                        v["clean_token"] = json!(clean.token);
                        v["masked"] = json!(s.masked);
                        if dynamic.as_ref().is_some_and(|d| d.post_token == "clean") && s.unmasked.is_some() {
                            // H'_t scored against the clean pass's token ŷ_t (option 13).
                            let rec = crate::engine::generate::StepRecord { token: clean.token, argmax: s.argmax.clone(), ..Default::default() };
                            let hp: Vec<[usize; 2]> = retrieval_heads(&rec, n_heads, &p.prep.ids, &needle).into_iter().map(|(l, h)| [l, h]).collect();
                            v["post_heads"] = json!(hp);
                        }
                    } else if !s.masked.is_empty() {
                        v["masked"] = json!(s.masked);
                    }
                    if !s.hidden.is_empty() {
                        v["hidden"] = json!(s.hidden);
                    }
                    if !s.top_k.is_empty() {
                        v["top_k"] = json!(s.top_k);
                    }
                    v
                })
                .collect();
            let pieces: Vec<String> = g.tokens.iter().map(|&t| lm.tokenizer.decode_exact(&[t])).collect();
            let line = json!({
                "id": p.prep.id, "answer": p.answer, "meta": p.meta, "prompt_tokens": p.prep.ids.len(),
                "needle_span": p.prep.needle_span, "tokens": g.tokens, "pieces": pieces,
                "text": lm.tokenizer.decode(&g.tokens, true), "stopped_by_eos": g.stopped_by_eos, "steps": steps,
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    bar.finish_and_clear();
    let info = json!({"model": model_name, "dataset": dataset_name, "layers": lm.model.config.num_layers, "heads": n_heads,
        "device": device::describe(lm.model.device), "decode_loops": decode_loops, "samples": total, "intervention": intervention,
        "engine": ctx.engine});
    Ok(vec![("trace.jsonl".into(), out.into_bytes()), ("trace_info.json".into(), serde_json::to_vec_pretty(&info).unwrap())])
}

/// The `heads.json` of a `dynamic(...)` head set.
/// One sample's recorded trace: per step, H_t with each head's attention weight.
type RecordedSteps = Vec<Vec<(Head, f32)>>;

#[derive(serde::Deserialize)]
struct DynamicSpec {
    k: Option<usize>,
    order: String,
    #[serde(default)]
    seed: u64,
    #[serde(default = "post_masked")]
    post_token: String,
    #[serde(default)]
    static_rank: Vec<Head>,
    /// `source: trace`: per sample id, per step, H_t of the unablated trace with each head's
    /// attention weight (the cheaper one-pass variant).
    #[serde(default)]
    recorded: Option<BTreeMap<String, RecordedSteps>>,
    #[serde(skip)]
    mode: Option<MaskMode>,
}

fn post_masked() -> String {
    "masked".into()
}

/// Fixed head sets that differ per sample: a random baseline (redrawn per sample or per cell) or
/// a ranking cut at each sample's own matched count.
enum PromptSets {
    Random { pool: Vec<Head>, count: usize, per_sample_count: Option<BTreeMap<String, usize>>, per_cell: bool, seed: u64, name: String },
    PerSample { sets: BTreeMap<String, Vec<Head>>, name: String },
}

impl PromptSets {
    fn from_spec(spec: &Json, name: &str) -> Result<Option<Self>, String> {
        if let Some(r) = spec.get("random") {
            let pool: Vec<Head> = serde_json::from_value(r["pool"].clone()).map_err(|e| e.to_string())?;
            let per_sample_count: Option<BTreeMap<String, usize>> = serde_json::from_value(r["per_sample_count"].clone()).map_err(|e| e.to_string())?;
            return Ok(Some(PromptSets::Random {
                pool,
                count: r["count"].as_u64().unwrap_or(0) as usize,
                per_sample_count,
                per_cell: r["redraw"] == json!("per_cell"),
                seed: r["seed"].as_u64().unwrap_or(0),
                name: name.to_string(),
            }));
        }
        if let Some(p) = spec.get("per_sample") {
            let sets = serde_json::from_value(p.clone()).map_err(|e| e.to_string())?;
            return Ok(Some(PromptSets::PerSample { sets, name: name.to_string() }));
        }
        Ok(None)
    }

    fn heads_for(&self, id: &str, meta: &Json) -> Result<Vec<Head>, String> {
        let missing = |name: &str| format!("sample `{id}` is not in the trace that `{name}` is matched to: match it to a trace of the same dataset");
        match self {
            PromptSets::PerSample { sets, name } => sets.get(id).cloned().ok_or_else(|| missing(name)),
            PromptSets::Random { pool, count, per_sample_count, per_cell, seed, name } => {
                let count = match per_sample_count {
                    Some(m) => *m.get(id).ok_or_else(|| missing(name))?,
                    None => *count,
                };
                // One stream per sample (or per (length, depth) cell), derived from the seed, so a
                // draw does not depend on batch order.
                let key = if *per_cell { format!("{seed}/{}/{}", meta["length"], meta["depth"]) } else { format!("{seed}/{id}") };
                use sha2::Digest;
                let d = sha2::Sha256::digest(key.as_bytes());
                let mut rng = niah::PyRandom::new(u64::from_le_bytes(d[..8].try_into().unwrap()));
                let mut p = pool.clone();
                for i in 0..count.min(p.len()) {
                    let j = i + (rng.getrandbits_128() % (p.len() - i) as u128) as usize;
                    p.swap(i, j);
                }
                let mut set = p[..count.min(p.len())].to_vec();
                set.sort();
                Ok(set)
            }
        }
    }
}

/// Per-step dynamic ablation (Section 3.3): the unmasked pass of a step gives H_t (Eq. 1 with
/// that pass's token); `k` of them (all if fewer or `k` unset), chosen by `order`, are masked in
/// the committed pass.
struct DynamicPolicy {
    k: Option<usize>,
    order: String,
    /// Rank of each head in the static ranking (`order: static_rank`).
    static_rank: BTreeMap<Head, usize>,
    mode: MaskMode,
    n_heads: usize,
    /// Needle mask per sequence of the batch.
    needles: Vec<Vec<bool>>,
    rng: niah::PyRandom,
    /// `source: trace`: per sequence of the batch, per step, the recorded H_t with weights.
    recorded: Option<Vec<RecordedSteps>>,
}

impl StepPolicy for DynamicPolicy {
    fn heads_to_mask(&mut self, seq: usize, step: usize, unmasked: &crate::engine::generate::StepRecord, prompt: &Prompt) -> Vec<(usize, usize)> {
        let (mut h, weights): (Vec<Head>, BTreeMap<Head, f32>) = match &self.recorded {
            Some(r) => {
                let at: Vec<(Head, f32)> = r[seq].get(step).cloned().unwrap_or_default();
                (at.iter().map(|x| x.0).collect(), at.into_iter().collect())
            }
            None => {
                let h = retrieval_heads(unmasked, self.n_heads, &prompt.ids, &self.needles[seq]);
                let w = h.iter().map(|x| (*x, unmasked.argmax_weight[x.0 * self.n_heads + x.1])).collect();
                (h, w)
            }
        };
        let w = |x: &Head| weights.get(x).copied().unwrap_or(0.0);
        match self.order.as_str() {
            // Largest attention weight at the copied position first; ties by (layer, head).
            "attn_weight" => h.sort_by(|a, b| w(b).total_cmp(&w(a)).then(a.cmp(b))),
            // Best static rank first; heads outside the ranking after them, by attention weight.
            "static_rank" => h.sort_by(|a, b| {
                let r = |x: &(usize, usize)| self.static_rank.get(x).copied().unwrap_or(usize::MAX);
                r(a).cmp(&r(b)).then(w(b).total_cmp(&w(a))).then(a.cmp(b))
            }),
            "random" => {
                // Fisher–Yates with the seeded stream.
                for i in (1..h.len()).rev() {
                    let j = (self.rng.getrandbits_128() % (i as u128 + 1)) as usize;
                    h.swap(i, j);
                }
            }
            _ => h.sort(),
        }
        if let Some(k) = self.k {
            h.truncate(k);
        }
        h
    }

    fn mode(&self) -> MaskMode {
        self.mode
    }

    fn needs_unmasked_pass(&self) -> bool {
        self.recorded.is_none()
    }
}

/// Per-sample head sets of a trace, with Wu's success flag.
/// `stem`: Porter stemming in the ROUGE-1 of Wu's success filter (Wu et al.: `use_stemmer=True`).
fn samples_of(a: &Artifact, min_recall: f64, stem: bool) -> Result<Vec<(SampleHeads, Json)>, String> {
    read_jsonl(a, "trace.jsonl")?
        .into_iter()
        .map(|line| {
            let steps: Vec<BTreeSet<Head>> = line["steps"]
                .as_array()
                .unwrap_or(&vec![])
                .iter()
                .map(|s| serde_json::from_value::<Vec<Head>>(s["heads"].clone()).map(|v| v.into_iter().collect()))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            let text = line["text"].as_str().unwrap_or("");
            let success = line["answer"].as_str().is_some_and(|ans| rouge1_with(ans, text, stem).recall > min_recall);
            let needle_len = line["needle_span"].as_array().map_or(1, Vec::len);
            Ok((SampleHeads { steps, needle_len, success }, line))
        })
        .collect()
}

pub(super) fn input<'a>(inputs: &'a BTreeMap<String, &Artifact>, n: &Node, param: &str) -> Result<(&'a Artifact, String), String> {
    let name = n.arg(param).and_then(ref_name).ok_or_else(|| format!("`{param}` is not a reference"))?;
    Ok((inputs.get(name).ok_or_else(|| format!("`{name}` not computed"))?, name.to_string()))
}

fn heads(ctx: &Ctx, step: &Step, inputs: &BTreeMap<String, &Artifact>) -> Result<Files, String> {
    let n = &step.node;
    let write = |selected: &[Head], ranked: &[(Head, f64)]| -> Files {
        let ranked: Vec<Json> = ranked.iter().map(|((l, h), s)| json!([l, h, s])).collect();
        vec![("heads.json".into(), serde_json::to_vec_pretty(&json!({"heads": selected, "ranked": ranked})).unwrap())]
    };
    match n.constructor.as_str() {
        "static_heads" => {
            let (a, _) = input(inputs, n, "trace")?;
            let min = n.arg("min_rouge1_recall").and_then(Value::as_f64).unwrap_or(0.5);
            let stem = n.arg("rouge1_stem") != Some(&Value::Bool(false));
            let samples: Vec<SampleHeads> = samples_of(a, min, stem)?.into_iter().map(|(s, _)| s).collect();
            let ranked = if enum_arg(n, "method") == Some("step_frequency") {
                let mut counts: BTreeMap<Head, f64> = BTreeMap::new();
                let steps: usize = samples.iter().map(|s| s.steps.len()).sum();
                for s in &samples {
                    for h in s.steps.iter().flatten() {
                        *counts.entry(*h).or_default() += 1.0 / steps.max(1) as f64;
                    }
                }
                let mut r: Vec<(Head, f64)> = counts.into_iter().collect();
                r.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                r
            } else {
                dynamism::static_scores(&samples)
            };
            let top = int_arg(n, "top").unwrap_or(20) as usize;
            let selected: Vec<Head> = ranked.iter().take(top).map(|x| x.0).collect();
            Ok(write(&selected, &ranked))
        }
        "top" => {
            let (a, _) = input(inputs, n, "heads")?;
            let v = read_json(a, "heads.json")?;
            let ranked: Vec<(usize, usize, f64)> = serde_json::from_value(v["ranked"].clone()).unwrap_or_default();
            let base: Vec<Head> = if ranked.is_empty() { heads_of(a)? } else { ranked.iter().map(|r| (r.0, r.1)).collect() };
            let (k, per_sample) = match n.arg("n").and_then(Value::as_int) {
                Some(k) => (k as usize, None),
                None => {
                    let (t, t_name) = input(inputs, n, "matched")?;
                    let m = matched_count(t, &t_name, enum_arg(n, "match_count").unwrap_or("global_mean"))?;
                    (m.global, m.per_sample)
                }
            };
            // A ranking shorter than k (e.g. a static set from runs that all failed Wu's success
            // filter) gives what it has; heads.json records both counts.
            let selected: Vec<Head> = base.iter().copied().take(k).collect();
            let mut files = write(&selected, &ranked.iter().take(k).map(|r| ((r.0, r.1), r.2)).collect::<Vec<_>>());
            if let Some(per) = per_sample {
                // Each sample masks its own count of the ranking's first heads.
                let mut v: Json = serde_json::from_slice(&files[0].1).unwrap();
                v["per_sample"] = json!(per.iter().map(|(id, &c)| (id.clone(), json!(base.iter().take(c).collect::<Vec<_>>()))).collect::<serde_json::Map<_, _>>());
                files[0].1 = serde_json::to_vec_pretty(&v).unwrap();
            }
            Ok(files)
        }
        "random" => {
            let (m, _) = input(inputs, n, "model")?;
            let info = read_json(m, "model.json")?;
            let (layers, per_layer) = (info["layers"].as_u64().unwrap_or(0) as usize, info["heads"].as_u64().unwrap_or(0) as usize);
            let excluded: BTreeSet<Head> = match n.arg("exclude") {
                Some(_) => {
                    let (e, _) = input(inputs, n, "exclude")?;
                    let v = read_json(e, "heads.json")?;
                    let ranked: Vec<(usize, usize, f64)> = serde_json::from_value(v["ranked"].clone()).unwrap_or_default();
                    let list: Vec<Head> = if ranked.is_empty() { heads_of(e)? } else { ranked.iter().map(|r| (r.0, r.1)).collect() };
                    let top = int_arg(n, "exclude_top").unwrap_or(20) as usize;
                    list.into_iter().take(top).collect()
                }
                None => BTreeSet::new(),
            };
            let pool: Vec<Head> = (0..layers).flat_map(|l| (0..per_layer).map(move |h| (l, h))).filter(|h| !excluded.contains(h)).collect();
            let (count, per_sample) = match int_arg(n, "count") {
                Some(c) => (c as usize, None),
                None => {
                    let (t, t_name) = input(inputs, n, "matched")?;
                    let m = matched_count(t, &t_name, enum_arg(n, "match_count").unwrap_or("global_mean"))?;
                    (m.global, m.per_sample)
                }
            };
            let most = per_sample.as_ref().and_then(|p| p.values().max().copied()).unwrap_or(0).max(count);
            if most > pool.len() {
                return Err(format!("{most} random heads asked of a pool of {} heads ({} left out)", pool.len(), excluded.len()));
            }
            let spec = json!({
                "heads": [], "ranked": [],
                "random": {"pool": pool, "count": count, "per_sample_count": per_sample, "excluded": excluded.len(),
                           "redraw": enum_arg(n, "redraw").unwrap_or("per_sample"), "seed": int_arg(n, "seed").unwrap_or(0)},
            });
            Ok(vec![("heads.json".into(), serde_json::to_vec_pretty(&spec).unwrap())])
        }
        "explicit" => {
            let heads: Vec<Head> = n.arg("heads").and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(|v| if let Value::Head { layer, head, .. } = v { Some((*layer, *head)) } else { None }).collect();
            Ok(write(&heads, &[]))
        }
        "from_file" => {
            let Some(Value::Path { resolved, .. }) = n.arg("path") else { return Err("no path".into()) };
            let text = std::fs::read_to_string(resolved).map_err(|e| format!("{}: {e}", resolved.display()))?;
            let fmt = enum_arg(n, "format").unwrap_or("auto");
            let is_csv = fmt == "csv" || (fmt == "auto" && resolved.extension().is_some_and(|e| e == "csv"));
            let (selected, ranked) = if is_csv {
                let mut v = Vec::new();
                for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                    let (l, h) = line.split_once(',').ok_or_else(|| format!("{}:{}: expected `layer,head`", resolved.display(), i + 1))?;
                    v.push((l.trim().parse().map_err(|_| format!("{}:{}: bad layer `{l}`", resolved.display(), i + 1))?, h.trim().parse().map_err(|_| format!("{}:{}: bad head `{h}`", resolved.display(), i + 1))?));
                }
                (v, vec![])
            } else if text.trim_start().starts_with('{') {
                let r = dynamism::parse_head_score_json(&text).map_err(|e| format!("{}: {e}", resolved.display()))?;
                (r.iter().map(|x| x.0).collect(), r)
            } else {
                let v: Vec<Head> = serde_json::from_str(&text).map_err(|e| format!("{}: expected a JSON list of [layer, head]: {e}", resolved.display()))?;
                (v, vec![])
            };
            let _ = ctx;
            Ok(write(&selected, &ranked))
        }
        "dynamic" => {
            // The per-step sets are found online by the trace that masks them (two passes per
            // step); this artifact records how.
            let k = int_arg(n, "k");
            let static_rank: Vec<Head> = match n.arg("static") {
                Some(_) => {
                    let (st, _) = input(inputs, n, "static")?;
                    let v = read_json(st, "heads.json")?;
                    let ranked: Vec<(usize, usize, f64)> = serde_json::from_value(v["ranked"].clone()).unwrap_or_default();
                    if ranked.is_empty() { heads_of(st)? } else { ranked.iter().map(|r| (r.0, r.1)).collect() }
                }
                None => vec![],
            };
            let mut v = json!({"dynamic": true, "k": k, "order": enum_arg(n, "order").unwrap_or("attn_weight"), "seed": int_arg(n, "seed").unwrap_or(0),
                "post_token": enum_arg(n, "post_token").unwrap_or("masked"), "static_rank": static_rank, "source": enum_arg(n, "source").unwrap_or("online")});
            if enum_arg(n, "source") == Some("trace") {
                // The cheaper variant: H_t read from the unablated trace at the same step.
                let (t, t_name) = input(inputs, n, "trace")?;
                let mut rec = serde_json::Map::new();
                for line in read_jsonl(t, "trace.jsonl")? {
                    let steps: Vec<Json> = line["steps"].as_array().cloned().unwrap_or_default();
                    let per_step: Vec<Json> = steps
                        .iter()
                        .map(|st| {
                            let hs = st["heads"].as_array().cloned().unwrap_or_default();
                            let ws = st["head_weights"].as_array().cloned().unwrap_or_default();
                            json!(hs.iter().enumerate().map(|(i, h)| json!([h, ws.get(i).cloned().unwrap_or(json!(0.0))])).collect::<Vec<_>>())
                        })
                        .collect();
                    if steps.iter().any(|st| st.get("head_weights").is_none()) && v["order"] == json!("attn_weight") {
                        return Err(format!("trace `{t_name}` records no per-head attention weights (made by an older rhx): recompute it (`rhx run --recompute`)"));
                    }
                    rec.insert(line["id"].as_str().unwrap_or("").to_string(), json!(per_step));
                }
                v["recorded"] = Json::Object(rec);
            }
            Ok(vec![("heads.json".into(), serde_json::to_vec_pretty(&v).unwrap())])
        }
        other => Err(format!("heads `{other}`")),
    }
}

/// How many heads a baseline masks to match a dynamic-ablation trace (reference §8.4, option 9).
struct MatchedCount {
    /// Mean number of masked heads per step over all steps of all samples, rounded.
    global: usize,
    /// Per sample id: that sample's mean, rounded (`match_count: sample_mean`).
    per_sample: Option<BTreeMap<String, usize>>,
}

fn matched_count(trace: &Artifact, name: &str, mode: &str) -> Result<MatchedCount, String> {
    let lines = read_jsonl(trace, "trace.jsonl")?;
    let (mut total, mut steps) = (0usize, 0usize);
    let mut per = BTreeMap::new();
    for line in &lines {
        let st = line["steps"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        // A dynamic-ablation trace: the heads it masked per step; any other trace: its Eq. 1
        // heads per step (e.g. the unablated run's |H_t|).
        let dynamic = st.iter().any(|s| s.get("clean_heads").is_some());
        let field = if dynamic { "masked" } else { "heads" };
        let masked: usize = st.iter().map(|s| s[field].as_array().map_or(0, Vec::len)).sum();
        total += masked;
        steps += st.len();
        per.insert(line["id"].as_str().unwrap_or("").to_string(), (masked as f64 / st.len().max(1) as f64).round() as usize);
    }
    if steps == 0 {
        return Err(format!("`{name}` has no generated steps to match"));
    }
    Ok(MatchedCount { global: (total as f64 / steps as f64).round() as usize, per_sample: (mode == "sample_mean").then_some(per) })
}

fn dynamism_table(_ctx: &Ctx, step: &Step, inputs: &BTreeMap<String, &Artifact>) -> Result<Files, String> {
    let n = &step.node;
    let (trace_a, trace_name) = input(inputs, n, "trace")?;
    let (static_a, _) = input(inputs, n, "static")?;
    let samples: Vec<SampleHeads> = samples_of(trace_a, 0.5, true)?.into_iter().map(|(s, _)| s).collect();
    let stat: BTreeSet<Head> = heads_of(static_a)?.into_iter().collect();
    let opts = DynamismOptions {
        empty_static: if enum_arg(n, "empty_static") == Some("skip") { EmptyStep::Skip } else { EmptyStep::Zero },
        both_empty: match enum_arg(n, "empty_adjacent") {
            Some("one") => BothEmpty::One,
            Some("zero") => BothEmpty::Zero,
            _ => BothEmpty::Skip,
        },
        entropy_pool: if enum_arg(n, "entropy_pool") == Some("sample_mean") { EntropyPool::SampleMean } else { EntropyPool::Model },
    };
    let d = dynamism::dynamism(&samples, &stat, &opts);
    let pm = |s: &dynamism::Spread| RCell::num_pm(s.mean, s.std, s.n as u64);
    let table = Table {
        id: n.name.clone(),
        caption: format!("Retrieval-head dynamism of `{trace_name}` (as in the paper's Table 1): {} samples, static set of {} heads", samples.len(), stat.len()),
        row_header: "Trace".into(),
        columns: vec![
            Column::new("Jaccard w/ static").precision(4),
            Column::new("Adjacent Jaccard").precision(4),
            Column::new("Entropy (nats)").precision(4),
            Column::new("Effective heads").precision(1),
            Column::new("Heads per step").precision(2),
            Column::new("Distinct heads").precision(0),
        ],
        rows: vec![Row::new(
            trace_name,
            vec![pm(&d.jaccard_static), pm(&d.jaccard_adjacent), pm(&d.entropy), RCell::num(d.effective_heads), pm(&d.heads_per_step), RCell::num(d.distinct_heads as f64)],
        )],
        ..Default::default()
    };
    Ok(vec![("table.json".into(), serde_json::to_vec_pretty(&table).unwrap())])
}

fn scores_table(ctx: &Ctx, step: &Step, inputs: &BTreeMap<String, &Artifact>) -> Result<Files, String> {
    let n = &step.node;
    let traces: Vec<&str> = n.arg("traces").and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(ref_name).collect();
    let by: Vec<&str> = n.arg("by").and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(Value::as_str).collect();
    let mut rows = Vec::new();
    for t in &traces {
        let a = inputs.get(*t).ok_or_else(|| format!("`{t}` not computed"))?;
        let mut groups: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for line in read_jsonl(a, "trace.jsonl")? {
            let Some((acc, rl)) = task_scores(n, &line) else { continue };
            let key = by.iter().map(|b| format!("{b}={}", line["meta"][b])).collect::<Vec<_>>().join(", ");
            let g = groups.entry(key).or_default();
            g.0.push(acc);
            g.1.push(rl);
        }
        for (key, (acc, rl)) in groups {
            let label = if key.is_empty() { t.to_string() } else { format!("{t} ({key})") };
            let s_acc = dynamism::Spread::of(&acc);
            let s_rl = dynamism::Spread::of(&rl);
            rows.push(Row::new(label, vec![RCell::num_pm(s_acc.mean, s_acc.std, s_acc.n as u64), RCell::num_pm(s_rl.mean, s_rl.std, s_rl.n as u64)]));
        }
    }
    let _ = ctx;
    let table = Table {
        id: n.name.clone(),
        caption: "Task scores: UUID accuracy (exact substring) and ROUGE-L F against the answer, mean ± std over samples".into(),
        row_header: "Trace".into(),
        columns: vec![Column::new("UUID accuracy").precision(3), Column::new("ROUGE-L").precision(3)],
        rows,
        ..Default::default()
    };
    Ok(vec![("table.json".into(), serde_json::to_vec_pretty(&table).unwrap())])
}

/// UUID accuracy and ROUGE-L of one generation against its answer (`None` without an answer),
/// with the node's `uuid_match` / `rouge_target` options.
pub(super) fn task_scores(n: &Node, line: &Json) -> Option<(f64, f64)> {
    let text = line["text"].as_str().unwrap_or("");
    let ans = line["answer"].as_str()?;
    let acc = if enum_arg(n, "uuid_match") == Some("case_insensitive") { uuid_accuracy(&text.to_lowercase(), &ans.to_lowercase()) } else { uuid_accuracy(text, ans) };
    let target = if enum_arg(n, "rouge_target") == Some("needle") { format!("The magic word is {ans}.") } else { ans.to_string() };
    let r = rouge_l_with(&target, text, n.arg("rouge_stem") == Some(&Value::Bool(true)));
    Some((acc, if enum_arg(n, "rouge_field") == Some("r") { r.recall } else { r.f }))
}

fn heatmap(_ctx: &Ctx, step: &Step, inputs: &BTreeMap<String, &Artifact>) -> Result<Files, String> {
    let n = &step.node;
    let (a, trace_name) = input(inputs, n, "trace")?;
    let lines = read_jsonl(a, "trace.jsonl")?;
    let idx = int_arg(n, "sample").unwrap_or(0) as usize;
    let line = lines.get(idx).ok_or_else(|| format!("sample {idx} does not exist: `{trace_name}` has {} samples", lines.len()))?;
    let steps: Vec<BTreeSet<Head>> = line["steps"].as_array().unwrap_or(&vec![]).iter().map(|s| serde_json::from_value::<Vec<Head>>(s["heads"].clone()).unwrap_or_default().into_iter().collect()).collect();
    let t = steps.len().max(1) as f64;
    let mut count: BTreeMap<Head, f64> = BTreeMap::new();
    for h in steps.iter().flatten() {
        *count.entry(*h).or_default() += 1.0;
    }
    // Variance of a 0/1 series with mean p is p(1 − p): most varying = closest to half the steps.
    let mut ranked: Vec<(Head, f64)> = count.iter().map(|(&h, &c)| (h, (c / t) * (1.0 - c / t))).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(count[&b.0].total_cmp(&count[&a.0])).then(a.0.cmp(&b.0)));
    let k = int_arg(n, "most_varying").unwrap_or(10) as usize;
    let mut heads: Vec<Head> = ranked.into_iter().take(k).map(|x| x.0).collect();
    heads.sort();
    let values: Vec<f64> = heads.iter().flat_map(|h| steps.iter().map(move |s| if s.contains(h) { 1.0 } else { 0.0 })).collect();
    let pieces: Vec<String> = line["pieces"].as_array().map(|v| v.iter().map(|p| p.as_str().unwrap_or("").replace('\n', "\\n")).collect()).unwrap_or_default();
    let fig = Figure::Heatmap(Heatmap {
        id: n.name.clone(),
        title: format!("Retrieval heads per step — {}", line["id"].as_str().unwrap_or("")),
        caption: format!("Eq. 1 score of the {} most varying heads over the generation steps of sample {idx} of `{trace_name}` (dark = retrieval head at that step).", heads.len()),
        x_label: "generated token".into(),
        y_label: "head".into(),
        x_labels: pieces,
        y_labels: heads.iter().map(|(l, h)| format!("L{l}.H{h}")).collect(),
        values,
        color_label: "Eq. 1 score".into(),
        vmin: Some(0.0),
        vmax: Some(1.0),
        colormap: report::Colormap::Blues,
        annotate: false,
    });
    Ok(vec![("figure.json".into(), serde_json::to_vec_pretty(&fig).unwrap())])
}

fn report_data(ctx: &Ctx, step: &Step, inputs: &BTreeMap<String, &Artifact>) -> Result<Files, String> {
    let n = &step.node;
    let names = |param: &str| -> Vec<String> { n.arg(param).and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(ref_name).map(str::to_string).collect() };
    let mut tables = Vec::new();
    let mut ours = Vec::new();
    let constructor = |name: &str| ctx.plan.step(name).map(|s| s.node.constructor.clone()).unwrap_or_default();
    for t in names("tables") {
        let a = inputs.get(&t).ok_or_else(|| format!("`{t}` not computed"))?;
        let table = serde_json::from_value::<Table>(read_json(a, "table.json")?).map_err(|e| e.to_string())?;
        ours.push(super::paper::Ours { constructor: constructor(&t), node: t.clone(), table: Some(table.clone()), compare: read_json(a, "compare.json").ok() });
        tables.push(table);
    }
    let mut figures = Vec::new();
    for f in names("figures") {
        let a = inputs.get(&f).ok_or_else(|| format!("`{f}` not computed"))?;
        figures.push(serde_json::from_value::<Figure>(read_json(a, "figure.json")?).map_err(|e| e.to_string())?);
        ours.push(super::paper::Ours { constructor: constructor(&f), node: f.clone(), table: None, compare: read_json(a, "compare.json").ok() });
    }
    let mut sections = vec![Section { title: "Results".into(), text: String::new(), tables, figures }];
    let refs: Vec<&str> = n.arg("compare").and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(|v| if let Value::Builtin { name, .. } = v { Some(name.as_str()) } else { None }).collect();
    if !refs.is_empty() {
        let mut text = Vec::new();
        let mut ref_tables = Vec::new();
        for r in refs {
            let c = super::paper::compare(r, &ours)?;
            text.push(c.text);
            ref_tables.extend(c.table);
        }
        sections.push(Section { title: "The paper's values beside ours".into(), text: text.join("\n\n"), tables: ref_tables, figures: vec![] });
    }
    let mut prov = report::Provenance::current();
    prov.started = ctx.started_at.clone();
    prov.wall_time_s = ctx.started.elapsed().as_secs_f64();
    prov.seeds.insert("experiment".into(), ctx.plan.seed);
    let mut devices = BTreeSet::new();
    for s in &ctx.plan.steps {
        prov.cache_keys.insert(s.node.name.clone(), s.key.as_str().to_string());
        for a in &s.node.args {
            if let Some(v) = &a.value {
                prov.settings.insert(format!("{}.{}", s.node.name, a.name), v.render());
            }
        }
        if s.node.kind == Kind::Model {
            let files = s
                .files
                .values()
                .map(|p| ctx.cache.file_digest(p).map(|d| report::FileDigest { path: p.display().to_string(), sha256: d.sha256.to_string() }))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            prov.models.push(report::ModelProvenance { name: s.node.name.clone(), files });
        }
    }
    for lm in ctx.models.values() {
        devices.insert(device::describe(lm.model.device));
    }
    prov.device = devices.into_iter().collect::<Vec<_>>().join(", ");
    let title = n.arg("title").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| ctx.program.experiment.name.clone());
    let report = Report {
        title,
        subtitle: Some(format!("experiment `{}`, report `{}`", ctx.program.experiment.name, n.name)),
        sections,
        provenance: prov,
    };
    let mut files = vec![("report.json".to_string(), serde_json::to_vec_pretty(&report).unwrap())];
    if let Some(Value::Path { resolved, .. }) = n.arg("path") {
        let tpl = std::fs::read(resolved).map_err(|e| format!("{}: {e}", resolved.display()))?;
        files.push(("template.md.j2".into(), tpl));
    }
    Ok(files)
}

/// Renders a report artifact into `<reports_dir>/<report name>/`.
pub(super) fn publish_report(ctx: &Ctx, step: &Step, a: &Artifact) -> Result<PathBuf, RunError> {
    let err = |m: String| RunError::node(&step.node.name, m);
    let report: Report = serde_json::from_value(read_json(a, "report.json").map_err(err)?).map_err(|e| err(e.to_string()))?;
    let templates = report::Templates { markdown: a.file("template.md.j2"), html: None };
    let dir = ctx.opts.reports_dir.join(&step.node.name);
    let files = report::write_report_with(&report, &dir, &templates).map_err(|e| err(e.to_string()))?;
    Ok(files.dir)
}
