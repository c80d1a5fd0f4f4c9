//! The fused CUDA decode kernels (`csrc/decode_kernels.cu`) compile with NVRTC for the shapes
//! and dtypes rhx runs — checked on the CPU, without a GPU, so a broken kernel source fails CI.
//! NVRTC comes from the `nvidia-cuda-nvrtc` wheel that `scripts/setup.sh` installs into `.venv`
//! (or `RHX_NVRTC`). Whether the kernels compute the right thing is checked on a GPU by
//! `tests/decode_modes.rs::fused_kernels_equal_eager_on_cuda`.
use rhx::engine::kernels::{compile_check, Spec};
use tch::Kind;

mod common;

fn spec(kind: Kind, head_dim: usize, n_heads: usize, n_kv_heads: usize, rotary_dim: usize, qk_norm: bool, rows: [usize; 3]) -> Spec {
    Spec { kind, head_dim, n_heads, n_kv_heads, rotary_dim, qk_norm, row_lengths: rows.to_vec() }
}

#[test]
fn kernels_compile_for_every_dtype_and_head_layout() {
    // Touch libtorch so that NVRTC is looked up next to it (the wheel's `nvidia/cu13/lib`).
    let _ = tch::Tensor::zeros([1], (Kind::Float, tch::Device::Cpu));
    let llama8b = spec(Kind::BFloat16, 128, 32, 8, 128, false, [4096, 14336, 4096]);
    // The core, plus the parts a process builds at these batch sizes (GEMVs up to 8 rows, -B:
    // their q|k|v variants with RoPE, the wide GEMM above 8): every batch size for two shapes,
    // the smallest and largest GEMV and the wide GEMM (where it applies: bf16/f16 on sm_90) for
    // the rest.
    let every: Vec<i64> = (1..=9).chain([-1, -8]).collect();
    let cases = [
        ("Llama-3.1-8B bf16, sm_90", llama8b.clone(), (9, 0), false, every.clone()),
        ("Llama-3.1-8B bf16, sm_90, timeline build", llama8b, (9, 0), true, vec![]),
        ("SmolLM2-135M f32, sm_90", spec(Kind::Float, 64, 9, 3, 64, false, [576, 1536, 576]), (9, 0), false, every.iter().copied().filter(|&b| b <= 8).collect()),
        ("SmolLM2-135M bf16 (head dim 64: tensor-core attention), sm_90", spec(Kind::BFloat16, 64, 9, 3, 64, false, [576, 1536, 576]), (9, 0), false, vec![1, 8, 16]),
        ("Phi-3-mini f16 (MHA, head dim 96), sm_80", spec(Kind::Half, 96, 32, 32, 96, false, [3072, 8192, 3072]), (8, 0), false, vec![1, 8]),
        ("Llama-2-13B f16 (MHA, head dim 128: tensor-core attention), sm_80", spec(Kind::Half, 128, 40, 40, 128, false, [5120, 13824, 5120]), (8, 0), false, vec![1, 8]),
        ("Qwen3 tiny f32 (q/k norm)", spec(Kind::Float, 32, 4, 2, 32, true, [64, 128, 128]), (9, 0), false, vec![1, 8]),
        ("Llama tiny f32 (head dim 16, partial rotary)", spec(Kind::Float, 16, 4, 2, 8, false, [64, 128, 64]), (9, 0), false, vec![1, 8, -1, -3]),
    ];
    let results: Vec<(&str, Result<usize, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases.iter().map(|(name, sp, arch, timeline, batches)| s.spawn(move || (*name, compile_check(sp, *arch, *timeline, batches)))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (name, r) in results {
        match r {
            Ok(bytes) => assert!(bytes > 100_000, "{name}: only {bytes} bytes of machine code"),
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

#[test]
fn the_wide_gemm_is_refused_where_it_cannot_run() {
    let _ = tch::Tensor::zeros([1], (Kind::Float, tch::Device::Cpu));
    let f32_spec = spec(Kind::Float, 64, 9, 3, 64, false, [576, 1536, 576]);
    let e = compile_check(&f32_spec, (9, 0), false, &[16]).unwrap_err();
    assert!(e.contains("dtype"), "{e}");
    let bf16 = spec(Kind::BFloat16, 64, 9, 3, 64, false, [576, 1536, 576]);
    let e = compile_check(&bf16, (8, 0), false, &[16]).unwrap_err();
    assert!(e.contains("clusters"), "{e}");
    // Rows of 16-byte vectors but not whole 32-element pieces (hidden size 40 in bf16).
    let rows = spec(Kind::BFloat16, 16, 4, 2, 16, false, [40, 128, 64]);
    assert!(rows.wide_gemm_unsupported((9, 0)).unwrap().contains("row length 40"));
    assert_eq!(bf16.wide_gemm_unsupported((9, 0)), None);
}

#[test]
fn shapes_the_kernels_do_not_cover_are_refused_with_a_reason() {
    let f64_spec = spec(Kind::Double, 64, 4, 2, 64, false, [64, 128, 64]);
    assert!(f64_spec.unsupported().unwrap().contains("dtype"));
    // Head dim 34 = 17 × 2: a power-of-two number of lanes would each hold 17 elements (> 16).
    let odd = spec(Kind::Float, 34, 4, 2, 34, false, [136, 160, 136]);
    assert!(odd.unsupported().unwrap().contains("head_dim 34"));
    // 96 = 3 × 32 is fine (3 per lane, as Phi-3's heads).
    assert_eq!(spec(Kind::Half, 96, 32, 32, 96, false, [3072, 8192, 3072]).unsupported(), None);
    // Rows that are not whole 16-byte vectors (hidden size 62 in f32).
    let rows = spec(Kind::Float, 16, 4, 2, 16, false, [62, 128, 64]);
    assert!(rows.unsupported().unwrap().contains("row length 62"));
    assert_eq!(spec(Kind::BFloat16, 128, 32, 8, 128, false, [4096, 14336, 4096]).unsupported(), None);
}

#[test]
fn attention_chunks_cover_the_cache() {
    use rhx::engine::kernels::attention_chunks;
    for cap in [1, 63, 64, 200, 4128, 9024, 131072, 1 << 20] {
        for (batch, blocks) in [(1, 264), (3, 264), (8, 264), (1, 114), (2, 528)] {
            let (chunk, n) = attention_chunks(cap, batch, 8, blocks);
            assert!(chunk % 64 == 0 && chunk * n >= cap && chunk * (n - 1) < cap, "cap {cap} batch {batch}: {chunk} × {n}");
            assert!(n <= 512, "cap {cap}: {n} chunks exceed the merge's 512");
        }
    }
}

#[test]
fn wide_gemm_splits_fill_two_thirds_of_the_slots_with_the_fewest_blocks() {
    use rhx::engine::kernels::wide_splits;
    // Llama-3.1-8B on an H200 at ≤ 64 rows (264 slots): q|k|v 48 tiles → 4, o and down 32 → 8,
    // gate|up (64-output tiles) 224 → 1, the LM head 1002 → 1.
    assert_eq!([(48, 128), (32, 128), (32, 448), (224, 128), (1002, 128)].map(|(t, p)| wide_splits(t, p, 264)), [4, 8, 8, 1, 1]);
    for tiles in 1..300 {
        for pieces in [1, 2, 3, 5, 8, 18, 448] {
            let s = wide_splits(tiles, pieces, 264);
            assert!([1, 2, 4, 8].contains(&s) && s <= pieces.min(8), "{tiles} tiles, {pieces} pieces: {s}");
            // Fewest: half as many would not fill two thirds; and it stops only when full or capped.
            assert!(s == 1 || 3 * tiles * (s / 2) < 2 * 264, "{tiles} tiles: {s} is more than needed");
            assert!(3 * tiles * s >= 2 * 264 || s * 2 > pieces.min(8), "{tiles} tiles, {pieces} pieces: {s} leaves slots idle");
        }
    }
}

/// `RHX_TEST_DEVICE=cuda` (Hopper): the wide steps' tensor-core GEMM (`wgemm`) equals an f32
/// matmul of the same bf16/f16 operands rounded as the epilogue rounds — within one unit in the
/// last place for `y = x·Wᵀ + bias`, three for SiLU·up (gate and up may each round the other
/// way), plus what f32 sums in another order may differ by (4·2^-24 · Σ|x·w|) — for 9
/// to 128 rows (partly filled batch groups), outputs that are not whole tiles, K of 576 to 14336
/// (cluster splits of 1 to 8 blocks), and gives the same bits when run again. Skipped on the CPU.
#[test]
fn wide_gemm_equals_f32_matmul_on_cuda() {
    use rhx::engine::kernels::{get, GemvMode};
    use tch::Tensor;
    let Some((device, _gpu)) = common::cuda_or_skip() else { return };
    for kind in [Kind::BFloat16, Kind::Half] {
        let k = get(&spec(kind, 64, 8, 2, 64, false, [576, 1536, 512]), device).expect("fused kernels on the GPU");
        k.set_wide_gemm_rows(128).expect("the wide GEMM runs on this GPU (Hopper)");
        tch::manual_seed(7);
        for (m, n, kk) in [(9, 200, 576), (16, 4096, 4096), (24, 1000, 1536), (33, 6144, 4096), (64, 4096, 14336), (100, 333, 576), (128, 2048, 4096)] {
            let x = (Tensor::randn([m, kk], (Kind::Float, device)) * 0.5).to_kind(kind);
            let w = (Tensor::randn([2 * n, kk], (Kind::Float, device)) * (1.0 / (kk as f64).sqrt())).to_kind(kind);
            let bias = (Tensor::randn([2 * n], (Kind::Float, device)) * 0.1).to_kind(kind);
            let round = |t: &Tensor| t.to_kind(kind).to_kind(Kind::Float);
            // `slack`: what the f32 sums may differ by when they run in another order, 4·2^-24
            // times the sum of the terms' magnitudes — it matters near zero, where one unit in
            // the last place is smaller than that.
            let check = |got: &Tensor, want: &Tensor, slack: &Tensor, ulps: f64, what: &str| {
                let got = got.to_kind(Kind::Float);
                // One unit in the last place: 2^-7 (bf16) or 2^-10 (f16) of the value.
                let ulp = if kind == Kind::BFloat16 { 1.0 / 128.0 } else { 1.0 / 1024.0 };
                // f16's subnormals (below 2^-14) are spaced 2^-24 apart, more than ulp · value.
                let tiny = if kind == Kind::Half { 2f64.powi(-24) } else { 0.0 };
                let excess = ((&got - want).abs() - (want.abs() * (ulp * ulps) + slack + tiny * ulps)).max().double_value(&[]);
                assert!(excess <= 0.0, "{kind:?} {what} M={m} N={n} K={kk}: off by {excess} beyond {ulps} ulp");
            };
            let xf = x.to_kind(Kind::Float);
            let full = xf.matmul(&w.to_kind(Kind::Float).tr()) + bias.to_kind(Kind::Float);
            let u = 4.0 * 2f64.powi(-24);
            let mag = xf.abs().matmul(&w.to_kind(Kind::Float).abs().tr()) * u;
            let mag_bias = &mag + bias.to_kind(Kind::Float).abs() * u;
            // Plain, with the bias, over the first N rows of W.
            let y = Tensor::empty([m, n], (kind, device));
            k.wgemm(&x, &w.narrow(0, 0, n), Some(&bias.narrow(0, 0, n)), &y, GemvMode::Plain);
            check(&y, &round(&full.narrow(1, 0, n)), &mag_bias.narrow(1, 0, n), 1.0, "plain");
            let again = Tensor::empty([m, n], (kind, device));
            k.wgemm(&x, &w.narrow(0, 0, n), Some(&bias.narrow(0, 0, n)), &again, GemvMode::Plain);
            assert!(y.equal(&again), "{kind:?} M={m} N={n} K={kk}: a second run gave other bits");
            // Plain without a bias, 2N rows.
            let y2 = Tensor::empty([m, 2 * n], (kind, device));
            k.wgemm(&x, &w, None, &y2, GemvMode::Plain);
            check(&y2, &round(&xf.matmul(&w.to_kind(Kind::Float).tr())), &mag, 1.0, "plain, no bias");
            // SiLU·up: W = [gate; up].
            let act = Tensor::empty([m, n], (kind, device));
            k.wgemm(&x, &w, Some(&bias), &act, GemvMode::SiluMul);
            let (gate, up) = (round(&full.narrow(1, 0, n)), round(&full.narrow(1, n, n)));
            // silu' ≤ 1.1: the gate's slack scaled by |up|, the up's by |silu(gate)|.
            let slack = mag_bias.narrow(1, 0, n) * up.abs() * 1.1 + mag_bias.narrow(1, n, n) * gate.silu().abs();
            check(&act, &round(&(round(&gate.silu()) * &up)), &slack, 3.0, "silu·up");
        }
        k.set_wide_gemm_rows(0).unwrap();
    }
}

/// `RHX_TEST_DEVICE=cuda` (Hopper): a whole decode on the wide GEMMs agrees with the same decode
/// on cuBLAS — tiny Llama-3 checkpoint in bf16, 13 rows of unequal lengths (left padding) and 11
/// rows, the CUDA-graph loop on the fused kernels. Not bit for bit (the sums run in another
/// order, then round to bf16): the first step's greedy tokens are equal in all but at most one
/// row and its top logits within 0.05; the argmax positions of the heads are equal for at least
/// 95 % of all heads and steps while the tokens agree. Skipped on the CPU.
#[test]
fn wide_gemm_decode_agrees_with_cublas_on_cuda() {
    use rhx::engine::generate::{generate_with, DecodeMode, EngineOptions, GenerateOptions, Generation, Prompt};
    use rhx::engine::model::Model;
    let Some((device, _gpu)) = common::cuda_or_skip() else { return };
    let (cfg, w) = rhx::engine::weights::load_hf_dir(&common::fixture_dir("llama3")).unwrap();
    let m = Model::new(cfg, w, device, Kind::BFloat16).unwrap();
    let k = m.fused_kernels(&Default::default()).expect("the kernels cover the tiny model");
    let prompts = |rows: usize| -> Vec<Prompt> { (0..rows).map(|r| Prompt { ids: (0..(4 + 5 * r)).map(|i| ((i * 31 + r * 17 + 3) % 250) as u32).collect(), ..Default::default() }).collect() };
    let opts = GenerateOptions { max_new_tokens: 8, top_logits: 3, ..Default::default() };
    let eng = EngineOptions { decode: DecodeMode::Graph, fused_kernels: true, ..Default::default() };
    let run = |ps: &[Prompt], rows: i64| -> Vec<Generation> {
        k.set_wide_gemm_rows(rows).expect("the wide GEMM runs on this GPU (Hopper)");
        let (g, stats) = generate_with(&m, ps, &opts, &eng, None, |_| {}).unwrap();
        assert!(stats.fused_kernels, "fused kernels must run: {:?}", stats.fused_unavailable);
        g
    };
    for rows in [13, 11] {
        let ps = prompts(rows);
        let (cublas, wide) = (run(&ps, 0), run(&ps, 128));
        let first_equal = cublas.iter().zip(&wide).filter(|(a, b)| a.steps[0].token == b.steps[0].token).count();
        assert!(first_equal + 1 >= rows, "{rows} rows: first tokens equal in only {first_equal}");
        let (mut heads, mut equal) = (0, 0);
        for (a, b) in cublas.iter().zip(&wide) {
            let (la, lb) = (&a.steps[0].top_logits, &b.steps[0].top_logits);
            assert!((la[0].1 - lb[0].1).abs() <= 0.05, "{rows} rows: top logit {:?} vs {:?}", la[0], lb[0]);
            for (sa, sb) in a.steps.iter().zip(&b.steps) {
                heads += sa.argmax.len();
                equal += sa.argmax.iter().zip(&sb.argmax).filter(|(x, y)| x == y).count();
                if sa.token != sb.token {
                    break;
                }
            }
        }
        assert!(equal as f64 >= 0.95 * heads as f64, "{rows} rows: argmax positions equal for {equal} of {heads} heads");
    }
    k.set_wide_gemm_rows(0).unwrap();
}

/// `RHX_TEST_DEVICE=cuda`: RoPE, the uniform-attention mask and the cache write in the q|k|v
/// GEMV's epilogue (`RHX_ROPE_GEMV`) give the same bits as the GEMV then `rope_kv` — the same
/// dot products (a row's sum does not depend on the row it is paired with) and the same rounding
/// code. Tiny Llama-3 (GQA), Llama-2 (MHA) and Llama-3 with half its head dims rotary, f32 and
/// bf16, batches of 1, 5 (left padding) and 8 rows, unmasked and with per-prompt uniform-attention
/// masks: tokens, argmax positions and weights and hidden states equal. Skipped on the CPU.
#[test]
fn rope_in_the_qkv_gemv_equals_rope_kv_on_cuda() {
    use rhx::engine::generate::{generate_with, DecodeMode, EngineOptions, FixedMask, GenerateOptions, Generation, MaskScope, Prompt};
    use rhx::engine::model::{HiddenSite, MaskMode, Model};
    let Some((device, _gpu)) = common::cuda_or_skip() else { return };
    let eng = EngineOptions { decode: DecodeMode::Graph, fused_kernels: true, ..Default::default() };
    for (arch, rotary) in [("llama3", 1.0), ("llama2", 1.0), ("llama3", 0.5)] {
        for kind in [Kind::Float, Kind::BFloat16] {
            let (mut cfg, w) = rhx::engine::weights::load_hf_dir(&common::fixture_dir(arch)).unwrap();
            cfg.partial_rotary_factor = rotary;
            let m = Model::new(cfg, w, device, kind).unwrap();
            let k = m.fused_kernels(&Default::default()).expect("the kernels cover the tiny models");
            let mixed = common::mixed_prompts();
            let eight: Vec<Prompt> = (0..8).map(|r| Prompt { ids: (0..(3 + 4 * r)).map(|i| ((i * 13 + r * 7 + 1) % 250) as u32).collect(), ..Default::default() }).collect();
            for ps in [&mixed[..1], &mixed[..], &eight[..]] {
                let sets: Vec<Vec<(usize, usize)>> = (0..ps.len()).map(|i| vec![(i % 2, i % 4), ((i + 1) % 2, (i + 2) % 4)]).collect();
                let plain = GenerateOptions { max_new_tokens: 10, hidden: vec![HiddenSite::Final, HiddenSite::Layer(0)], ..Default::default() };
                let masked = GenerateOptions { fixed_mask: Some(FixedMask { heads: vec![], per_prompt: sets, mode: MaskMode::UniformAttention, scope: MaskScope::AllPositions }), ..plain.clone() };
                for opts in [plain, masked] {
                    let run = |on: bool| -> Vec<Generation> {
                        k.set_rope_in_gemv(on);
                        let (g, stats) = generate_with(&m, ps, &opts, &eng, None, |_| {}).unwrap();
                        assert!(stats.fused_kernels, "fused kernels must run: {:?}", stats.fused_unavailable);
                        g
                    };
                    let (apart, fused) = (run(false), run(true));
                    let what = format!("{arch} rotary {rotary} {kind:?} {} rows, mask {}", ps.len(), opts.fixed_mask.is_some());
                    for (a, b) in apart.iter().zip(&fused) {
                        assert_eq!(a.tokens, b.tokens, "{what}: tokens");
                        for (sa, sb) in a.steps.iter().zip(&b.steps) {
                            assert_eq!(sa.argmax, sb.argmax, "{what}: argmax positions");
                            assert!(sa.argmax_weight.iter().zip(&sb.argmax_weight).all(|(x, y)| x.to_bits() == y.to_bits()), "{what}: argmax weights");
                            assert!(sa.hidden.iter().flatten().zip(sb.hidden.iter().flatten()).all(|(x, y)| x.to_bits() == y.to_bits()), "{what}: hidden states");
                        }
                    }
                }
            }
            k.set_rope_in_gemv(false);
        }
    }
}
