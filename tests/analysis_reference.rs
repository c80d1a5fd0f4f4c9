//! Section 3 analyses against reference implementations, through the committed fixture
//! `tests/fixtures/analysis/reference.json` made by `scripts/fixtures/analysis_reference.py`
//! (sklearn PCA + statsmodels CanCorr for CCA, sklearn for AUPRC and the best-F1 threshold, the
//! ASL formula in numpy, the rouge-score package for ROUGE-1 / ROUGE-L).
use rhx::analysis::cca::{self, CcaOptions, Pca};
use rhx::analysis::metrics::{average_precision, best_f1_threshold};
use rhx::analysis::probe::Asl;
use serde_json::Value;
use tch::{Kind, Tensor};

fn fixture() -> Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/analysis/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn cca_equals_sklearn_pca_and_statsmodels_cancorr() {
    for (i, case) in fixture()["cca"].as_array().unwrap().iter().enumerate() {
        let x = cca::matrix(&rows(&case["x"]));
        let y = cca::min_max(&cca::matrix(&rows(&case["y"])));
        let opts = CcaOptions::default();
        // sklearn's PCA(0.95) / PCA(0.99) component counts.
        assert_eq!(Pca::fit(&x, 0.95).kept() as u64, case["kx"].as_u64().unwrap(), "case {i}: kx");
        assert_eq!(Pca::fit(&y, 0.99).kept() as u64, case["ky"].as_u64().unwrap(), "case {i}: ky");
        let fit = cca::fit(&x, &y, None, None, &opts);
        let want = floats(&case["rho"]);
        assert_eq!(fit.in_sample.len(), want.len().min(50), "case {i}: number of correlations");
        for (j, (a, b)) in fit.in_sample.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-9, "case {i} rho[{j}]: ours {a} statsmodels {b}");
        }
        // sklearn's NIPALS CCA agrees on the leading correlations (to its convergence tolerance).
        for (j, b) in floats(&case["sklearn_cca_first2"]).iter().enumerate() {
            assert!((fit.in_sample[j] - b).abs() < 1e-6, "case {i} sklearn CCA rho[{j}]: ours {} sklearn {b}", fit.in_sample[j]);
        }
    }
}

#[test]
fn nipals_solver_equals_sklearn_cca() {
    // sklearn `CCA(n_components=5)` with its defaults (max_iter 500, tol 1e-6) on PCA scores
    // fitted on the first 80 % of the rows; correlations of the transformed columns, in
    // component order, on those rows and on the rest.
    for (i, case) in fixture()["cca"].as_array().unwrap().iter().enumerate() {
        let nip = &case["nipals"];
        let n_tr = nip["train_rows"].as_i64().unwrap();
        let x = cca::matrix(&rows(&case["x"]));
        let y = cca::matrix(&rows(&case["y"]));
        let n = x.size()[0];
        let (xtr, xte) = (x.narrow(0, 0, n_tr), x.narrow(0, n_tr, n - n_tr));
        let mm = cca::MinMax::fit(&y.narrow(0, 0, n_tr));
        let (ytr, yte) = (mm.apply(&y.narrow(0, 0, n_tr)), mm.apply(&y.narrow(0, n_tr, n - n_tr)));
        let opts = CcaOptions { components: nip["components"].as_u64().unwrap() as usize, solver: cca::Solver::NipalsSklearn { max_iter: 500, tol: 1e-6 }, ..CcaOptions::default() };
        let fit = cca::fit(&xtr, &ytr, None, Some((&xte, &yte)), &opts);
        for (what, got, want) in [("in-sample", fit.in_sample.clone(), floats(&nip["in_sample"])), ("held-out", fit.held_out.clone().unwrap(), floats(&nip["held_out"]))] {
            assert_eq!(got.len(), want.len(), "case {i} {what}: components");
            for (j, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() < 1e-6, "case {i} {what} rho[{j}]: ours {a} sklearn {b}");
            }
        }
    }
}

#[test]
fn cca_held_out_is_below_in_sample_on_noise() {
    // Independent X and Y: in-sample correlations are inflated by the fit, held-out ones are not.
    tch::manual_seed(7);
    let x = Tensor::randn([200, 30], (Kind::Double, tch::Device::Cpu));
    let y = Tensor::randn([200, 20], (Kind::Double, tch::Device::Cpu));
    let (xtr, xte) = (x.narrow(0, 0, 150), x.narrow(0, 150, 50));
    let (ytr, yte) = (y.narrow(0, 0, 150), y.narrow(0, 150, 50));
    let fit = cca::fit(&xtr, &ytr, None, Some((&xte, &yte)), &CcaOptions::default());
    let held = fit.held_out.unwrap();
    assert!(fit.in_sample[0] > 0.5, "in-sample top-1 on noise is inflated: {}", fit.in_sample[0]);
    assert!(held[0].abs() < fit.in_sample[0] - 0.2, "held-out {} vs in-sample {}", held[0], fit.in_sample[0]);
}

#[test]
fn auprc_and_best_f1_threshold_equal_sklearn() {
    for case in fixture()["pr"].as_array().unwrap() {
        let s = floats(&case["scores"]);
        let l: Vec<bool> = case["labels"].as_array().unwrap().iter().map(|v| v.as_i64() == Some(1)).collect();
        let ap = average_precision(&s, &l).unwrap();
        assert!((ap - case["ap"].as_f64().unwrap()).abs() < 1e-12, "AP {ap} vs {}", case["ap"]);
        let (t, f1) = best_f1_threshold(&s, &l).unwrap();
        assert_eq!(t, case["best_threshold"].as_f64().unwrap());
        assert!((f1 - case["best_f1"].as_f64().unwrap()).abs() < 1e-12);
    }
}

#[test]
fn asl_equals_its_formula() {
    for case in fixture()["asl"].as_array().unwrap() {
        let x = cca::matrix(&rows(&case["logits"]));
        let y = cca::matrix(&rows(&case["labels"]));
        let asl = Asl { gamma_pos: case["gamma_pos"].as_f64().unwrap(), ..Asl::default() };
        let got = asl.loss(&x, &y).double_value(&[]);
        let want = case["loss"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9 * want.abs().max(1.0), "ASL {got} vs {want}");
    }
    // The focusing weight carries no gradient: d/dx of the positive term is exactly
    // −w·(1 − p) with w = (1 − p)^γ+ held constant.
    let x = Tensor::from_slice(&[0.3f64]).view([1, 1]).set_requires_grad(true);
    let y = Tensor::from_slice(&[1.0f64]).view([1, 1]);
    let loss = Asl::default().loss(&x, &y);
    loss.backward();
    let p = 1.0 / (1.0 + (-0.3f64).exp());
    let g = x.grad().double_value(&[0, 0]);
    assert!((g - (-(1.0 - p) * (1.0 - p))).abs() < 1e-12, "grad {g}");
}

#[test]
fn rouge_equals_the_rouge_score_package() {
    use rhx::analysis::metrics::{rouge1, rouge1_with, rouge_l, rouge_l_with};
    let mut stem_mattered = 0;
    for case in fixture()["rouge"].as_array().unwrap() {
        let (t, p) = (case["target"].as_str().unwrap(), case["prediction"].as_str().unwrap());
        stem_mattered += (case["rouge1"] != case["rouge1_stem"]) as usize;
        for (name, got) in [("rouge1", rouge1(t, p)), ("rougeL", rouge_l(t, p)), ("rouge1_stem", rouge1_with(t, p, true)), ("rougeL_stem", rouge_l_with(t, p, true))] {
            let want = floats(&case[name]);
            let got = [got.precision, got.recall, got.f];
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-12, "{name}({t:?}, {p:?}): ours {got:?}, rouge-score {want:?}");
            }
        }
    }
    assert!(stem_mattered >= 3, "the fixture needs cases where stemming changes ROUGE-1 ({stem_mattered})");
}

fn qa_fixture() -> Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/analysis/qa_reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// HotpotQA's official `normalize_answer` / `exact_match_score` / `f1_score` (with the
/// yes/no/noanswer rule), on every gold answer of 103 dev questions against variants of it and
/// hand-written edge cases (Unicode case, whitespace, punctuation, articles).
#[test]
fn qa_scores_equal_the_official_hotpotqa_script() {
    use rhx::analysis::qa::{normalize_answer, qa_score};
    let fx = qa_fixture();
    let cases = fx["scores"].as_array().unwrap();
    assert!(cases.len() > 1000);
    for c in cases {
        let (p, g) = (c["prediction"].as_str().unwrap(), c["gold"].as_str().unwrap());
        assert_eq!(normalize_answer(p), c["normalized"].as_str().unwrap(), "normalize_answer({p:?})");
        let s = qa_score(p, g);
        for (name, ours) in [("em", s.em), ("f1", s.f1), ("precision", s.precision), ("recall", s.recall)] {
            let want = c[name].as_f64().unwrap();
            assert!((ours - want).abs() < 1e-12, "{name}({p:?}, {g:?}): ours {ours}, official {want}");
        }
    }
}

/// DRAGIN's `get_real_prediction` and the first cut of `regenerate_answer`.
#[test]
fn answer_extraction_equals_dragin() {
    use rhx::analysis::qa::{cut_at_markers, extract_answer};
    for c in qa_fixture()["extraction"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        assert_eq!(cut_at_markers(text), c["cut"].as_str().unwrap(), "cut of {text:?}");
        assert_eq!(extract_answer(text).unwrap_or_default(), c["answer"].as_str().unwrap(), "answer of {text:?}");
        assert_eq!(extract_answer(text).is_some(), c["has_phrase"].as_bool().unwrap(), "phrase in {text:?}");
        assert_eq!(extract_answer(cut_at_markers(text)).unwrap_or_default(), c["answer_after_cut"].as_str().unwrap(), "answer after the cut of {text:?}");
    }
}

fn rind_fixture() -> Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/analysis/rind_reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

fn bools(v: &Value) -> Vec<bool> {
    v.as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect()
}

fn ranges(v: &Value) -> Vec<std::ops::Range<usize>> {
    v.as_array().unwrap().iter().map(|r| r[0].as_u64().unwrap() as usize..r[1].as_u64().unwrap() as usize).collect()
}

/// |ours − reference| ≤ 1e-6 · |reference| (+1e-12 for values at 0).
fn rel_close(ours: f64, want: f64) -> bool {
    (ours - want).abs() <= 1e-6 * want.abs() + 1e-12
}

/// A case's per-token inputs as rhx's loop computes them: entropies from the f32 logits, a_max
/// from the last-layer attention (rows zero-padded above the diagonal, as the engine gives them).
fn rind_inputs(case: &Value) -> (Vec<f64>, Vec<f64>) {
    use rhx::analysis::rag::{entropy, rind_attention};
    let ent = case["logits"].as_array().unwrap().iter().map(|row| entropy(&floats(row).iter().map(|&x| x as f32).collect::<Vec<f32>>())).collect();
    let n = case["tokens"].as_array().unwrap().len();
    let attn: Vec<Vec<Vec<f32>>> = case["attn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|head| {
            rows(head)
                .into_iter()
                .map(|r| {
                    let mut row: Vec<f32> = r.iter().map(|&x| x as f32).collect();
                    row.resize(n, 0.0);
                    row
                })
                .collect()
        })
        .collect();
    (ent, rind_attention(&attn, case["first_is_eos"].as_bool().unwrap()))
}

/// DRAGIN's `generate_attn` (oneal2000/DRAGIN src/generate.py@4d71efc): per-token entropy
/// (softmax, −Σ p log(p + 1e-10)), solver-"max" attention with the `</s>` renormalisation, and the
/// sub-token → word merge (space marker, id 13 = `<0x0A>`, after `</s>`), on llama-2 style tokens;
/// and rhx's punctuation sentence rule (which stands in for spaCy) on the merged words.
#[test]
fn rind_token_values_and_words_equal_dragin_generate_attn() {
    use rhx::analysis::rag::{merge_words, sentences};
    let fx = rind_fixture();
    let cases = fx["rind"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let (ent, attn) = rind_inputs(c);
        for (t, (ours, want)) in ent.iter().zip(floats(&c["entropy"])).enumerate() {
            assert!(rel_close(*ours, want), "{name} token {t}: entropy ours {ours}, DRAGIN {want}");
        }
        let want = floats(&c["a_max"]);
        assert_eq!(attn.len(), want.len(), "{name}");
        for (t, (ours, want)) in attn.iter().zip(&want).enumerate() {
            assert!((ours - want).abs() <= 1e-6 * want.abs().max(1.0), "{name} token {t}: a_max ours {ours}, DRAGIN {want}");
        }
        // Words from decoded pieces (" x", "\n", "</s>"), and from pieces that keep the raw `▁`.
        let is_eos = bools(&c["is_eos"]);
        let words = ranges(&c["words"]);
        let pieces = strings(&c["pieces"]);
        assert_eq!(merge_words(&pieces, &is_eos), words, "{name}: words of {pieces:?}");
        let raw: Vec<String> = strings(&c["tokens"]).into_iter().map(|t| if t == "<0x0A>" { "\n".to_string() } else { t }).collect();
        assert_eq!(merge_words(&raw, &is_eos), words, "{name}: words of {raw:?}");
        let texts: Vec<String> = words.iter().map(|w| pieces[w.clone()].concat()).collect();
        assert_eq!(texts, strings(&c["word_texts"]), "{name}");
        assert_eq!(sentences(&texts), ranges(&c["rule_sentences"]), "{name}: sentences of {texts:?}");
    }
}

/// DRAGIN's `AttnWeightRAG.modifier`: per sentence v_i = a_i / Σa · m · H_i with word attention
/// summed and word entropy averaged over sub-tokens, the first sentence with any v_i > θ fires,
/// the content-word filter clears flags after the decision. Two segmentations: rhx's rule
/// (`rule_sentences`, what its loop feeds `rind`) and DRAGIN's own string alignment of the same
/// sentence texts (`dragin_sentences`, which can hold empty ranges).
#[test]
fn rind_trigger_equals_dragin_modifier() {
    use rhx::analysis::rag::rind;
    let fx = rind_fixture();
    let (mut fired, mut later, mut cleared, mut quiet) = (0, 0, 0, 0);
    for c in fx["rind"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let (ent, attn) = rind_inputs(c);
        let words = ranges(&c["words"]);
        for path in ["rule", "dragin"] {
            let sents = ranges(&c[format!("{path}_sentences")]);
            let content = bools(&c[format!("content_{path}")]);
            assert_eq!(content.len(), words.len(), "{name}");
            // Every sentence's scores (θ = −∞ fires on any non-empty sentence).
            for (si, (s, v)) in sents.iter().zip(c[format!("v_{path}")].as_array().unwrap()).enumerate() {
                let want: Vec<f64> = v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect();
                let got = rind(&attn, &ent, &words, std::slice::from_ref(s), f64::NEG_INFINITY, &|_| true);
                if want.is_empty() {
                    assert_eq!(got, None, "{name} {path} sentence {si}: empty");
                    continue;
                }
                let got = got.unwrap_or_else(|| panic!("{name} {path} sentence {si}: no scores"));
                assert_eq!(got.scores.len(), want.len(), "{name} {path} sentence {si}");
                for (ours, want) in got.scores.iter().zip(&want) {
                    assert!(rel_close(*ours, *want), "{name} {path} sentence {si}: v ours {:?}, DRAGIN {want:?}", got.scores);
                }
            }
            for t in c["thetas"].as_array().unwrap() {
                let theta = t["theta"].as_f64().unwrap();
                let got = rind(&attn, &ent, &words, &sents, theta, &|i| content[i]);
                let want = &t[path];
                match got {
                    None => {
                        assert!(want.is_null(), "{name} {path} θ {theta}: rhx does not fire, DRAGIN {want}");
                        quiet += 1;
                    }
                    Some(got) => {
                        assert!(!want.is_null(), "{name} {path} θ {theta}: rhx fires ({got:?}), DRAGIN does not");
                        assert_eq!(got.sentence as u64, want["sentence"].as_u64().unwrap(), "{name} {path} θ {theta}: sentence");
                        assert_eq!(got.flagged, bools(&want["flagged"]), "{name} {path} θ {theta}: flags");
                        fired += 1;
                        later += (got.sentence > 0) as usize;
                        cleared += got.flagged.iter().all(|f| !f) as usize;
                    }
                }
            }
        }
    }
    // The fixture exercises every branch.
    assert!(fired > 100 && later >= 10 && cleared >= 10 && quiet >= 30, "fired {fired}, later {later}, cleared {cleared}, quiet {quiet}");
}

/// Algorithm 2 (paper Appendix C) with rhx's documented choices, against an independent
/// implementation (top-k, clusters by gap, representative, ±window clipped, merged via a mask).
#[test]
fn retrieval_windows_equal_the_reference() {
    use rhx::analysis::rag::{retrieval_windows, retrieval_windows_top, Representative};
    let fx = rind_fixture();
    let cases = fx["windows"].as_array().unwrap();
    assert!(cases.len() >= 50);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let scores: Vec<f32> = floats(&c["scores"]).iter().map(|&x| x as f32).collect();
        let ctx = c["context"][0].as_u64().unwrap() as usize..c["context"][1].as_u64().unwrap() as usize;
        let (topk, gap, window) = (c["topk"].as_u64().unwrap() as usize, c["gap"].as_u64().unwrap() as usize, c["window"].as_u64().unwrap() as usize);
        let rep = match c["representative"].as_str().unwrap() {
            "max_attn" => Representative::MaxAttn,
            "median" => Representative::Median,
            r => panic!("{r}"),
        };
        let want = ranges(&c["windows"]);
        assert_eq!(retrieval_windows(&scores, ctx.clone(), topk, gap, window, rep), want, "{name} k {topk} gap {gap} window {window} {rep:?}");
        let top: Vec<(usize, f32)> = c["top"].as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_f64().unwrap() as f32)).collect();
        assert_eq!(retrieval_windows_top(&top, ctx, gap, window, rep), want, "{name} (from the shuffled top positions)");
    }
}
