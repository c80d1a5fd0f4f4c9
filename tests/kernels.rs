//! The fused CUDA decode kernels (`csrc/decode_kernels.cu`) compile with NVRTC for the shapes
//! and dtypes rhx runs — checked on the CPU, without a GPU, so a broken kernel source fails CI.
//! NVRTC comes from the `nvidia-cuda-nvrtc` wheel that `scripts/setup.sh` installs into `.venv`
//! (or `RHX_NVRTC`). Whether the kernels compute the right thing is checked on a GPU by
//! `tests/decode_modes.rs::fused_kernels_equal_eager_on_cuda`.
use rhx::engine::kernels::{compile_check, Spec};
use tch::Kind;

fn spec(kind: Kind, head_dim: usize, n_heads: usize, n_kv_heads: usize, rotary_dim: usize, qk_norm: bool, rows: [usize; 3]) -> Spec {
    Spec { kind, head_dim, n_heads, n_kv_heads, rotary_dim, qk_norm, row_lengths: rows.to_vec() }
}

#[test]
fn kernels_compile_for_every_dtype_and_head_layout() {
    // Touch libtorch so that NVRTC is looked up next to it (the wheel's `nvidia/cu13/lib`).
    let _ = tch::Tensor::zeros([1], (Kind::Float, tch::Device::Cpu));
    let cases = [
        ("Llama-3.1-8B bf16, sm_90", spec(Kind::BFloat16, 128, 32, 8, 128, false, [4096, 14336, 4096]), (9, 0), false),
        ("Llama-3.1-8B bf16, sm_90, timeline build", spec(Kind::BFloat16, 128, 32, 8, 128, false, [4096, 14336, 4096]), (9, 0), true),
        ("SmolLM2-135M f32, sm_90", spec(Kind::Float, 64, 9, 3, 64, false, [576, 1536, 576]), (9, 0), false),
        ("SmolLM2-135M bf16 (head dim 64: tensor-core attention), sm_90", spec(Kind::BFloat16, 64, 9, 3, 64, false, [576, 1536, 576]), (9, 0), false),
        ("Phi-3-mini f16 (MHA, head dim 96), sm_80", spec(Kind::Half, 96, 32, 32, 96, false, [3072, 8192, 3072]), (8, 0), false),
        ("Llama-2-13B f16 (MHA, head dim 128: tensor-core attention), sm_80", spec(Kind::Half, 128, 40, 40, 128, false, [5120, 13824, 5120]), (8, 0), false),
        ("Qwen3 tiny f32 (q/k norm)", spec(Kind::Float, 32, 4, 2, 32, true, [64, 128, 128]), (9, 0), false),
        ("Llama tiny f32 (head dim 16, partial rotary)", spec(Kind::Float, 16, 4, 2, 8, false, [64, 128, 64]), (9, 0), false),
    ];
    let results: Vec<(&str, Result<usize, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases.iter().map(|(name, sp, arch, timeline)| s.spawn(move || (*name, compile_check(sp, *arch, *timeline)))).collect();
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
