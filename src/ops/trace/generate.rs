//! `trace … = generate(…)`: greedy generation with per-step captures and interventions.
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value as Json};

use crate::lang::schema::{FuncSpec, int_min, int_range, list, decl, Ty, Family};
use crate::analysis::dynamism::Head;

use crate::lang::{Kind, Node, Value};
use crate::ops::args::*;
use crate::ops::inputs::*;
use crate::ops::{Exec, Files, Inputs, OpDef, Refusal};
use crate::plan::Step;
use crate::run::Ctx;
use crate::data::prompts::PreparedPrompt;
use crate::engine::generate::{Generation, StepRecord};
use crate::engine::tokenizer::Tokenizer;
use crate::artifact::trace::{shortest_f32, write_trace, HeadRule, TraceInfo, TraceLine, TraceStep, TRACE_FORMAT};
use crate::support::pyrandom::PyRandom;
use crate::engine::device;
use crate::engine::generate::{default_batch_size, generate_with, FixedMask, GenerateOptions, MaskScope, Prompt, Reasoning, StepPolicy};
use crate::engine::model::{HiddenSite, MaskMode};
use crate::artifact::heads::{Choice, DynamicSpec, PostToken};
use crate::ops::trace::policy::{step_heads, DynamicPolicy, PromptSets};

pub const OP: OpDef = OpDef { kind: Kind::Trace, name: "generate", spec, source: file!(), check: Some(check), exec: Exec::Artifact(run) };

fn spec() -> FuncSpec {
    use Kind::*;
    FuncSpec::new("generate", "Greedy generation with a KV cache; at every step records the captures and applies the interventions.")
        .pos("model", decl(Model), "the model to run")
        .pos("dataset", decl(Dataset), "the prompts")
        .def("max_new_tokens", int_range(1, 32768), "50", "gen.max_new_tokens")
        .def("capture", list(Ty::Func(Family::Capture)), "[retrieval(copy_paste)]", "what to record per step, layer and head")
        .def("intervene", list(Ty::Func(Family::Intervention)), "[]", "what to change in the forward pass")
        .opt("stop", list(int_min(0)), "gen.stop: extra stop token ids (EOS/eot always stop)")
        .opt("batch_size", int_range(1, 4096), "prompts per batch (default: as many as fit in free GPU memory on CUDA, 1 on the CPU; batched results equal one-by-one results in f32)")
        .seed("seed of any sampling inside interventions")
}

fn run(ctx: &mut Ctx, step: &Step, inputs: &Inputs) -> Result<Files, String> {
    let n = &step.node;
    let model_name = n.arg("model").and_then(ref_name).ok_or("no model")?.to_string();
    let dataset_name = n.arg("dataset").and_then(ref_name).ok_or("no dataset")?.to_string();
    let (model_node, data_node) = super::load_model(ctx, &model_name, &dataset_name)?;
    let lm = &ctx.models[&model_name];
    let extra: BTreeMap<String, Json> = [("enable_thinking".to_string(), json!(req_bool(&model_node, "enable_thinking")?))].into();

    // Prompts, with the answer each generation is scored against: the dataset's op makes them.
    let prompts_of = match crate::ops::find(data_node.kind, &data_node.constructor).map(|op| op.exec) {
        Some(Exec::Dataset(prompts)) => prompts,
        _ => return Err(format!("dataset `{}` cannot feed a trace", data_node.constructor)),
    };
    let prompts = prompts_of(&data_node, &lm.tokenizer, &extra)?;

    // Captures and interventions.
    let mut hidden = Vec::new();
    let mut top_k = 0;
    let mut reasoning = None;
    let mut rule = HeadRule::CopyPaste;
    for (func, args) in calls(n, "capture") {
        match func {
            "hidden" => hidden.push(match call_arg(args, "layer") {
                Some(Value::Int(l)) => HiddenSite::Layer(*l as usize),
                _ => HiddenSite::Final,
            }),
            "top_k" => top_k = call_arg(args, "k").and_then(Value::as_int).ok_or("`top_k(k)` has no value (a bug in rhx's checker)")? as usize,
            "retrieval" if call_arg(args, "method").and_then(Value::as_str) == Some("reasoning") => {
                let int = |p: &str| call_arg(args, p).and_then(Value::as_int).map(|x| x as usize).ok_or_else(|| format!("`retrieval({p})` has no value (a bug in rhx's checker)"));
                let (sink, local) = (int("sink")?, int("local")?);
                let threshold = call_arg(args, "threshold").and_then(Value::as_f64).ok_or("`retrieval(threshold)` has no value (a bug in rhx's checker)")?;
                let top = call_arg(args, "top").and_then(Value::as_int).map(|k| k as usize);
                rule = HeadRule::Reasoning { sink, local, threshold, top };
                reasoning = Some(Reasoning { sink, local });
            }
            _ => {}
        }
    }
    let mut fixed_mask = None;
    let mut prompt_sets: Option<PromptSets> = None;
    let mut dynamic: Option<(DynamicSpec, MaskMode)> = None;
    let mut intervention = Json::Null;
    for (_, args) in calls(n, "intervene") {
        let heads_ref = call_arg(args, "heads").and_then(ref_name).ok_or("mask_heads needs a head set")?;
        let art = inputs.get(heads_ref).ok_or_else(|| format!("head set `{heads_ref}` not computed"))?;
        let mode = if call_arg(args, "mode").and_then(Value::as_str) == Some("zero_output") { MaskMode::ZeroOutput } else { MaskMode::UniformAttention };
        let set = head_set(art)?;
        let heads: Vec<Head> = match set.set {
            Choice::Dynamic(d) => {
                intervention = json!({"kind": "dynamic", "heads": heads_ref, "k": d.k, "order": d.order, "post_token": d.post_token,
                    "source": if d.recorded.is_some() { "trace" } else { "online" }});
                dynamic = Some((d, mode));
                continue;
            }
            // The set at the global count; each sample's own set replaces it per batch.
            Choice::Fixed { ref heads, .. } | Choice::PerSample { ref heads, .. } => heads.clone(),
            Choice::Random(_) => vec![],
            Choice::Predicted(_) => return Err(format!("`{heads_ref}` is predicted per step by an MLP: `rag(strategy: dynamic, heads: {heads_ref})` reads it; `mask_heads` masks fixed, per-sample, random or dynamic (Eq. 1/2) sets")),
        };
        prompt_sets = PromptSets::of(&set.set, heads_ref);
        let random = match &set.set {
            Choice::Random(r) => json!({"count": r.count, "redraw": r.redraw}),
            _ => Json::Null,
        };
        intervention = json!({"kind": if prompt_sets.is_some() { "per_sample" } else { "fixed" }, "heads": heads_ref, "count": heads.len(), "random": random});
        let all = call_arg(args, "scope").and_then(Value::as_str) == Some("all_positions") || call_arg(args, "prefill") == Some(&Value::Bool(true));
        fixed_mask = Some(FixedMask { heads, per_prompt: vec![], mode, scope: if all { MaskScope::AllPositions } else { MaskScope::Steps } });
    }
    if let Some((d, _)) = &dynamic {
        // The masked steps' H_t and this trace's own H'_t must mean the same thing, or the
        // compensation table compares Eq. 1 sets with Eq. 2 sets.
        if d.rule != rule {
            return Err(format!(
                "this trace masks dynamic heads defined by {}, but its own `capture` defines H_t by {}: give it the same `retrieval(…)` capture as the trace its dynamic heads come from",
                d.rule.describe(),
                rule.describe()
            ));
        }
    }
    if reasoning.is_some() {
        if let Some(p) = prompts.iter().find(|p| p.prep.needle_span.is_empty()) {
            return Err(format!("`retrieval(reasoning)` (Eq. 2) needs each prompt's needle tokens, and dataset `{dataset_name}` gives prompt {} none", p.prep.id));
        }
    }
    let mut eos: Vec<u32> = lm.tokenizer.eos_ids.iter().chain(lm.model.config.eos_token_ids.iter()).copied().collect();
    eos.extend(n.arg("stop").and_then(Value::as_list).unwrap_or(&[]).iter().filter_map(Value::as_int).map(|x| x as u32));
    let mut opts = GenerateOptions {
        max_new_tokens: req_int(n, "max_new_tokens")? as usize,
        eos_ids: eos,
        argmax: true,
        top_k,
        hidden: hidden.clone(),
        fixed_mask,
        top_logits: 0,
        reasoning,
    };
    // Unset: as large as the free GPU memory allows on CUDA (`auto_batch_size`), one prompt at
    // a time on the CPU (batching gains nothing there and holds a padded batch in memory).
    let batch = match int_arg(n, "batch_size") {
        Some(b) => b.max(1) as usize,
        None => default_batch_size(&lm.model, prompts.iter().map(|p| p.prep.ids.len()).max().unwrap_or(1), opts.max_new_tokens, 1),
    };
    let n_heads = lm.model.config.num_heads;
    let mut lines: Vec<TraceLine> = Vec::with_capacity(prompts.len());
    let total = prompts.len();
    // Progress with ETA on a terminal (indicatif draws nothing when stderr is not one).
    let bar = if ctx.opts.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(total as u64) };
    bar.set_style(indicatif::ProgressStyle::with_template("    {bar:30} {pos}/{len} prompts [{elapsed_precise}, ETA {eta}] {msg}").unwrap());
    // Which decoding loops made the trace (CUDA graph, fused kernels), for its metadata.
    let mut decode_loops = BTreeSet::new();
    for chunk in prompts.chunks(batch) {
        let ps: Vec<Prompt> = chunk.iter().map(|p| Prompt { ids: p.prep.ids.clone(), needle: p.prep.needle_span.clone(), ..Default::default() }).collect();
        if let (Some(sets), Some(m)) = (&prompt_sets, opts.fixed_mask.as_mut()) {
            m.per_prompt = chunk.iter().map(|p| sets.heads_for(&p.prep.id, &p.meta)).collect::<Result<_, _>>()?;
        }
        let mut policy = dynamic.as_ref().map(|(d, mode)| DynamicPolicy {
            k: d.k,
            rule: d.rule,
            order: d.order,
            static_rank: d.static_rank.iter().enumerate().map(|(i, h)| (*h, i)).collect(),
            mode: *mode,
            n_heads,
            needles: chunk.iter().map(|p| {
                let mut m = vec![false; p.prep.ids.len()];
                p.prep.needle_span.iter().for_each(|&i| m[i] = true);
                m
            }).collect(),
            rng: PyRandom::new(d.seed),
            recorded: d.recorded.as_ref().map(|r| chunk.iter().map(|p| r.get(&p.prep.id).cloned().unwrap_or_default()).collect()),
        });
        let (gens, stats) = generate_with(&lm.model, &ps, &opts, &ctx.engine.options, policy.as_mut().map(|p| p as &mut dyn StepPolicy), |s| bar.set_message(format!("step {}", s + 1))).map_err(|e| e.to_string())?;
        decode_loops.insert(stats.decode_loop());
        bar.inc(chunk.len() as u64);
        if matches!(lm.model.device, tch::Device::Cuda(_)) {
            // This batch's KV cache and graph buffers go back to the driver before the next
            // batch, whose prompts have other lengths (fragmentation, see default_batch_size).
            let _ = crate::engine::cuda::empty_cache();
        }
        for (p, g) in chunk.iter().zip(gens) {
            let needle = needle_mask(&p.prep);
            let h_t = |s: &StepRecord| -> Vec<Head> { step_heads(&rule, s, n_heads, &p.prep.ids, &needle).into_iter().map(|x| x.0).collect() };
            let steps: Vec<TraceStep> = g
                .steps
                .iter()
                .enumerate()
                .map(|(step_i, s)| {
                    let mut v = base_step(s, &rule, n_heads, &p.prep.ids, &needle);
                    if let Some(rec) = dynamic.as_ref().and_then(|(d, _)| d.recorded.as_ref()) {
                        // One-pass step with H_t read from the unablated trace (`source: trace`).
                        let h: Vec<Head> = rec.get(&p.prep.id).and_then(|r| r.get(step_i)).map(|r| r.iter().map(|x| x.0).collect()).unwrap_or_default();
                        v.clean_heads = Some(h);
                        v.masked = Some(s.masked.clone());
                    } else if let Some((d, _)) = &dynamic {
                        // Two-pass step: H_t and the token of the clean pass (the committed pass
                        // itself when nothing was masked), and the heads masked.
                        let clean = s.unmasked.as_deref().unwrap_or(s);
                        v.clean_heads = Some(h_t(clean));
                        v.clean_token = Some(clean.token);
                        v.masked = Some(s.masked.clone());
                        if d.post_token == PostToken::Clean && s.unmasked.is_some() {
                            // H'_t scored against the clean pass's token ŷ_t (option 13).
                            let rec = StepRecord { token: clean.token, argmax: s.argmax.clone(), argmax_weight: s.argmax_weight.clone(), reasoning: s.reasoning.clone(), ..Default::default() };
                            v.post_heads = Some(h_t(&rec));
                        }
                    } else if !s.masked.is_empty() {
                        v.masked = Some(s.masked.clone());
                    }
                    v
                })
                .collect();
            lines.push(trace_line(&p.prep, p.answer.clone(), p.meta.clone(), &g, &lm.tokenizer, steps));
        }
    }
    bar.finish_and_clear();
    let info = TraceInfo {
        dataset: dataset_name,
        decode_loops: decode_loops.into_iter().collect(),
        device: device::describe(lm.model.device),
        engine: serde_json::to_value(&ctx.engine).map_err(|e| e.to_string())?,
        format: TRACE_FORMAT,
        heads: n_heads,
        intervention,
        layers: lm.model.config.num_layers,
        model: model_name,
        retrieval: rule,
        samples: total,
    };
    let info = serde_json::to_vec_pretty(&info).map_err(|e| e.to_string())?;
    let mut files = write_trace(&lines).map_err(|e| e.to_string())?;
    files.push(("trace_info.json".into(), info));
    Ok(files)
}

/// Captures and interventions that are declared but not run yet.
fn check(n: &Node) -> Result<(), Refusal> {
    let no = |param: &str, what: String| Err(Refusal::new(param, format!("{what} is not implemented by the executor yet")));
    if calls(n, "capture").into_iter().filter(|(f, _)| *f == "retrieval").count() > 1 {
        return Err(Refusal::new("capture", "a trace defines its retrieval heads H_t once: give one `retrieval(…)` capture (Eq. 2's scores come with `retrieval(reasoning)`, every head's argmax with either)".to_string()));
    }
    for (func, args) in calls(n, "capture") {
        match func {
            "retrieval" => {
                for (p, ok) in [("match", "id"), ("argmax_on", "fp32_logits"), ("keys", "all"), ("denominator", "all_keys")] {
                    if let Some(v) = call_arg(args, p).and_then(Value::as_str) {
                        if v != ok {
                            return no("capture", format!("`retrieval({p}: {v})`"));
                        }
                    }
                }
                // Eq. 2's options change nothing in Eq. 1: under `copy_paste` a value other than
                // the default would be silently ignored.
                if call_arg(args, "method").and_then(Value::as_str) != Some("reasoning") {
                    if call_arg(args, "top").is_some() {
                        return Err(Refusal::new("capture", "`retrieval(top: …)` is an option of Eq. 2 (`retrieval(reasoning)`); Eq. 1 does not use it".to_string()));
                    }
                    let spec = crate::lang::schema::registry().func(Family::Capture, "retrieval").expect("`retrieval` is a capture function");
                    for p in ["sink", "local", "threshold"] {
                        let default = spec.params.iter().find(|q| q.name == p).and_then(|q| match q.default {
                            crate::lang::schema::Default::Value(v) => Some(v),
                            _ => None,
                        });
                        if let (Some(v), Some(d)) = (call_arg(args, p), default) {
                            if v.render() != d {
                                return Err(Refusal::new("capture", format!("`retrieval({p}: {})` is an option of Eq. 2 (`retrieval(reasoning)`); Eq. 1 does not use it", v.render())));
                            }
                        }
                    }
                }
            }
            "hidden" => {
                if call_arg(args, "norm").and_then(Value::as_str) == Some("pre_norm") {
                    return no("capture", "`hidden(norm: pre_norm)`".into());
                }
            }
            "top_k" => {}
            other => return no("capture", format!("capture `{other}`")),
        }
    }
    for (func, args) in calls(n, "intervene") {
        if func != "mask_heads" {
            return no("intervene", format!("intervention `{func}`"));
        }
        if call_arg(args, "mode").and_then(Value::as_str) == Some("mean_output") {
            return no("intervene", "`mask_heads(mode: mean_output)`".into());
        }
        if call_arg(args, "kv").and_then(Value::as_str) == Some("clean") {
            return no("intervene", "`mask_heads(kv: clean)`".into());
        }
    }
    Ok(())
}

/// Which prompt positions are the needle's.
pub fn needle_mask(prep: &PreparedPrompt) -> Vec<bool> {
    let mut m = vec![false; prep.ids.len()];
    prep.needle_span.iter().for_each(|&i| m[i] = true);
    m
}

/// What every trace records of a step (the `generate` op and `rhx trace` alike): the token, H_t
/// by the trace's rule (Eq. 1 or Eq. 2) with each head's score (Eq. 1: the attention weight at
/// its argmax; Eq. 2: S), every head's argmax, and the captured hidden states, top-k positions
/// and Eq. 2 scores.
pub fn base_step(s: &StepRecord, rule: &HeadRule, n_heads: usize, ids: &[u32], needle: &[bool]) -> TraceStep {
    let (heads, head_weights) = step_heads(rule, s, n_heads, ids, needle).into_iter().map(|(h, w)| (h, f64::from(w))).unzip();
    TraceStep {
        token: s.token,
        heads,
        head_weights,
        argmax: s.argmax.clone(),
        hidden: s.hidden.iter().map(|h| h.iter().map(|&x| f64::from(x)).collect()).collect(),
        top_k: s.top_k.clone(),
        reasoning: (!s.reasoning.is_empty()).then(|| s.reasoning.chunks(n_heads).map(|l| l.iter().map(|&x| shortest_f32(x)).collect()).collect()),
        ..Default::default()
    }
}

/// One generation as a trace line.
pub fn trace_line(prep: &PreparedPrompt, answer: Option<String>, meta: Json, g: &Generation, tokenizer: &Tokenizer, steps: Vec<TraceStep>) -> TraceLine {
    TraceLine {
        answer,
        id: prep.id.clone(),
        meta,
        needle_span: prep.needle_span.clone(),
        pieces: g.tokens.iter().map(|&t| tokenizer.decode_exact(&[t])).collect(),
        prompt_pieces: prep.ids.iter().map(|&t| tokenizer.decode_exact(&[t])).collect(),
        prompt_tokens: prep.ids.len(),
        steps,
        stopped_by_eos: g.stopped_by_eos,
        text: tokenizer.decode(&g.tokens, true),
        tokens: g.tokens.clone(),
    }
}
