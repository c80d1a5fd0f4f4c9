//! Every setting that can change what the engine computes, in one value: the decoding loop and
//! its switches ([`EngineOptions`]) and the fused CUDA kernels' compile-time and launch knobs
//! ([`KernelKnobs`]). The `RHX_*` environment variables are read once, here, and nowhere else;
//! the value is recorded in every trace's `trace_info.json` and enters every trace's cache key
//! (with [`FINGERPRINT`], the hash of the engine's sources), so a trace computed by other code
//! or other settings is never reused.
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// sha256 of the engine's sources, kernels, data generators, the trace writer and `Cargo.lock`,
/// made by `build.rs` from the files this binary was built from (the list is `ENGINE_SOURCES`
/// there). Any change to any of them changes every trace key.
pub const FINGERPRINT: &str = env!("RHX_ENGINE_FINGERPRINT");

/// How decoding steps run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecodeMode {
    /// `Graph` on CUDA when the binary has the CUDA shim and the run is eligible (not a step
    /// policy together with a fixed mask, no LongRoPE, top-k within the shortest prompt, no hidden span over a prompt's
    /// last token), `Static` on CUDA otherwise when eligible, else `Eager`. `RHX_DECODE`
    /// sets another mode.
    #[default]
    Auto,
    /// `Model::forward` per step over the written cache columns (the reference path; CPU default).
    Eager,
    /// `Model::decode_step`: fixed addresses, device-side position and token, finished
    /// sequences dropped from the batch.
    Static,
    /// `Static`, with the step captured once as a CUDA graph and replayed.
    Graph,
}

/// Knobs of the fused CUDA decode kernels (`engine::kernels`): compiled into the kernels or
/// used when they are launched. They change rounding (split-K, chunk counts) or which kernel
/// runs, so they are part of a trace's key even though the defaults are what anyone should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelKnobs {
    /// `RHX_GEMV_U`: weight loads per lane and pipeline stage.
    pub gemv_u: u32,
    /// `RHX_GEMV_B1_BLOCKS`: blocks per SM the batch-1 GEMVs' registers aim at (≥ 1).
    pub gemv_b1_blocks: u32,
    /// `RHX_GEMV_THREADS`: threads per GEMV block (128, 256 or 512).
    pub gemv_threads: u32,
    /// `RHX_GEMV_SPLIT`: split K over two warps at batch 1 — 0 never, 1 below two waves, 2 always.
    pub gemv_split: u32,
    /// `RHX_GEMV_GRID_CAP`: most blocks of a batch-1 GEMV grid (unset: `gemv_b1_blocks` × SMs).
    pub gemv_grid_cap: Option<u32>,
    /// `RHX_ATTN_BLOCKS`: attention blocks per SM (≥ 1); sets the chunk count.
    pub attn_blocks: u32,
    /// `RHX_ATTN_PREFETCH`: the tensor-core attention requests its first K/V before the wait.
    pub attn_prefetch: bool,
    /// `RHX_ATTN_MMA`: tensor-core attention where the shape allows it.
    pub attn_mma: bool,
    /// `RHX_ATTN_ONE`: the one-block-per-SM attention build for grids that fit one wave of it.
    pub attn_one: bool,
    /// `RHX_PDL`: programmatic dependent launch on Hopper.
    pub pdl: bool,
    /// `RHX_TIMELINE` set: the kernels are built with per-block timestamps.
    pub timeline: bool,
    /// `RHX_WGEMM`: wide steps (9 rows and more) run their projections and LM head on the
    /// tensor-core split-K GEMM of `csrc/decode_kernels.cu` (bf16/f16, Hopper) up to this many
    /// rows, at most 128; 0, the default, keeps cuBLAS (faster so far on the H200: docs/ARCHITECTURE.md).
    /// Left out of the serialised options while 0, so that trace keys made without it stay.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wgemm_rows: u32,
    /// `RHX_ROPE_GEMV=1`: steps of at most 8 rows apply RoPE and write the K/V cache in the q|k|v
    /// GEMV's epilogue (one launch fewer per layer; not for Qwen3's q/k norm). Off by default:
    /// no gain measured on the H200; left out of the serialised options while off.
    #[serde(default, skip_serializing_if = "is_false")]
    pub rope_gemv: bool,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl Default for KernelKnobs {
    fn default() -> Self {
        KernelKnobs {
            gemv_u: 4,
            gemv_b1_blocks: 2,
            gemv_threads: 256,
            gemv_split: 1,
            gemv_grid_cap: None,
            attn_blocks: 2,
            attn_prefetch: true,
            attn_mma: true,
            attn_one: true,
            pdl: true,
            timeline: false,
            wgemm_rows: 0,
            rope_gemv: false,
        }
    }
}

/// Everything about how the engine runs a generation that is not the model, the prompts or the
/// capture request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineOptions {
    /// `RHX_DECODE=eager|static|graph` (unset: `auto`).
    pub decode: DecodeMode,
    /// Static/graph decoding: remove sequences that emitted EOS from the batch, so they stop
    /// costing compute (with graphs, once a quarter of the rows are finished: each change of
    /// batch size costs a new capture).
    pub drop_finished: bool,
    /// Unpadded batches are prefilled in slices of rows of at most this many tokens (bounds
    /// the activation memory of a large batch).
    pub prefill_chunk_tokens: i64,
    /// `RHX_FUSED=0` turns them off. Static/graph decoding on CUDA: run steps on the fused
    /// kernels (`engine::kernels`) when they cover the model and the capture (argmax and
    /// hidden states; not top-k or span mass).
    pub fused_kernels: bool,
    pub kernels: KernelKnobs,
}

impl Default for EngineOptions {
    /// The built-in defaults, whatever the environment says (tests and benchmarks start here;
    /// commands start from [`EngineOptions::from_env`]).
    fn default() -> Self {
        EngineOptions { decode: DecodeMode::Auto, drop_finished: true, prefill_chunk_tokens: 1 << 16, fused_kernels: true, kernels: KernelKnobs::default() }
    }
}

/// An `RHX_*` variable with a value the engine cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}={value:?}: {expected}")]
pub struct OptionsError {
    pub var: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// The variables [`EngineOptions::from_lookup`] reads, with what each sets (for `--help`, the
/// docs and the test that flips each one).
pub const VARIABLES: &[(&str, &str)] = &[
    ("RHX_DECODE", "decoding loop: eager, static or graph (default: graph on CUDA, eager on the CPU)"),
    ("RHX_FUSED", "0: no fused CUDA kernels"),
    ("RHX_GEMV_U", "fused GEMV: weight loads per lane and stage (default 4)"),
    ("RHX_GEMV_B1_BLOCKS", "fused GEMV: blocks per SM at batch 1 (default 2)"),
    ("RHX_GEMV_THREADS", "fused GEMV: threads per block, 128, 256 or 512 (default 256)"),
    ("RHX_GEMV_SPLIT", "fused GEMV: split K at batch 1, 0 never, 1 below two waves, 2 always (default 1)"),
    ("RHX_GEMV_GRID_CAP", "fused GEMV: most blocks of a batch-1 grid (default: blocks per SM x SMs)"),
    ("RHX_ATTN_BLOCKS", "fused attention: blocks per SM (default 2)"),
    ("RHX_ATTN_PREFETCH", "0: tensor-core attention waits before its first loads"),
    ("RHX_ATTN_MMA", "0: no tensor-core attention"),
    ("RHX_ATTN_ONE", "0: no one-block-per-SM attention build"),
    ("RHX_PDL", "0: no programmatic dependent launch"),
    ("RHX_ROPE_GEMV", "1: RoPE and the K/V cache write in the q|k|v GEMV (steps of at most 8 rows; default 0)"),
    ("RHX_WGEMM", "fused wide steps: tensor-core GEMMs up to this many rows, at most 128 (default 0: cuBLAS)"),
    ("RHX_TIMELINE", "path: build the kernels with per-block timestamps (rhx bench writes them there)"),
];

impl EngineOptions {
    /// The options this process's environment sets (`RHX_*`, see [`VARIABLES`]).
    pub fn from_env() -> Result<EngineOptions, OptionsError> {
        EngineOptions::from_lookup(|var| std::env::var(var).ok())
    }

    /// The [`VARIABLES`] this process's environment sets, as `NAME=value` (what a benchmark
    /// report states beside its command line).
    pub fn env_settings() -> Vec<String> {
        VARIABLES.iter().filter_map(|(var, _)| std::env::var(var).ok().filter(|v| !v.is_empty()).map(|v| format!("{var}={v}"))).collect()
    }

    /// The options set by `lookup(variable)`; unset variables keep the defaults, a value that
    /// does not parse is an error naming the variable (never silently the default).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<EngineOptions, OptionsError> {
        let d = EngineOptions::default();
        let k = d.kernels;
        let get = |var: &'static str| lookup(var).filter(|v| !v.is_empty()).map(|v| (var, v));
        let uint = |var: &'static str, default: u32, min: u32| -> Result<u32, OptionsError> {
            match get(var) {
                None => Ok(default),
                Some((var, v)) => v.trim().parse::<u32>().ok().filter(|x| *x >= min).ok_or(OptionsError { var, value: v, expected: if min > 0 { "a whole number of at least 1" } else { "a whole number" } }),
            }
        };
        let switch = |var: &'static str, default: bool| -> Result<bool, OptionsError> {
            match get(var) {
                None => Ok(default),
                Some((_, v)) if v == "0" => Ok(false),
                Some((_, v)) if v == "1" => Ok(true),
                Some((var, v)) => Err(OptionsError { var, value: v, expected: "0 (off) or 1 (on)" }),
            }
        };
        let decode = match get("RHX_DECODE") {
            None => DecodeMode::Auto,
            Some((var, v)) => match v.as_str() {
                "auto" => DecodeMode::Auto,
                "eager" => DecodeMode::Eager,
                "static" => DecodeMode::Static,
                "graph" => DecodeMode::Graph,
                _ => return Err(OptionsError { var, value: v, expected: "eager, static, graph or auto" }),
            },
        };
        let gemv_threads = uint("RHX_GEMV_THREADS", k.gemv_threads, 1)?;
        if ![128, 256, 512].contains(&gemv_threads) {
            return Err(OptionsError { var: "RHX_GEMV_THREADS", value: gemv_threads.to_string(), expected: "128, 256 or 512" });
        }
        let gemv_split = uint("RHX_GEMV_SPLIT", k.gemv_split, 0)?;
        if gemv_split > 2 {
            return Err(OptionsError { var: "RHX_GEMV_SPLIT", value: gemv_split.to_string(), expected: "0 (never), 1 (below two waves) or 2 (always)" });
        }
        let wgemm_rows = uint("RHX_WGEMM", k.wgemm_rows, 0)?;
        if wgemm_rows > 128 {
            return Err(OptionsError { var: "RHX_WGEMM", value: wgemm_rows.to_string(), expected: "a number of rows from 0 (off) to 128" });
        }
        let kernels = KernelKnobs {
            gemv_u: uint("RHX_GEMV_U", k.gemv_u, 1)?,
            gemv_b1_blocks: uint("RHX_GEMV_B1_BLOCKS", k.gemv_b1_blocks, 1)?,
            gemv_threads,
            gemv_split,
            gemv_grid_cap: match get("RHX_GEMV_GRID_CAP") {
                None => None,
                Some(_) => Some(uint("RHX_GEMV_GRID_CAP", 0, 1)?),
            },
            attn_blocks: uint("RHX_ATTN_BLOCKS", k.attn_blocks, 1)?,
            attn_prefetch: switch("RHX_ATTN_PREFETCH", k.attn_prefetch)?,
            attn_mma: switch("RHX_ATTN_MMA", k.attn_mma)?,
            attn_one: switch("RHX_ATTN_ONE", k.attn_one)?,
            pdl: switch("RHX_PDL", k.pdl)?,
            timeline: get("RHX_TIMELINE").is_some(),
            wgemm_rows,
            rope_gemv: switch("RHX_ROPE_GEMV", k.rope_gemv)?,
        };
        Ok(EngineOptions { decode, fused_kernels: switch("RHX_FUSED", d.fused_kernels)?, kernels, ..d })
    }

    /// This process's options, read from the environment on first use and kept (the kernels
    /// are compiled once per process, so their knobs cannot change within it).
    pub fn process() -> Result<&'static EngineOptions, OptionsError> {
        static PROCESS: OnceLock<Result<EngineOptions, OptionsError>> = OnceLock::new();
        PROCESS.get_or_init(EngineOptions::from_env).as_ref().map_err(Clone::clone)
    }
}

/// What identifies the engine that computes a trace: the build's source fingerprint and the
/// options. Part of every trace key (`plan`) and of every trace's `trace_info.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineIdentity {
    pub fingerprint: String,
    pub options: EngineOptions,
    /// The libtorch this process runs on ([`libtorch_runtime`]): the binary links it
    /// dynamically, so the same build can run on another libtorch (and its MKL) than it was
    /// built against.
    #[serde(default)]
    pub libtorch: String,
}

impl EngineIdentity {
    /// This binary's fingerprint with this process's options and libtorch.
    pub fn current() -> Result<EngineIdentity, OptionsError> {
        Ok(EngineIdentity { fingerprint: FINGERPRINT.to_string(), options: EngineOptions::process()?.clone(), libtorch: libtorch_runtime().to_string() })
    }
}

/// The version of the libtorch loaded into this process: `libtorch_cpu.so`'s folder is found
/// in `/proc/self/maps`, and its version read beside it (`../version.py` of a torch wheel:
/// `__version__` and `git_version`; `../build-version` of a libtorch archive). Without either,
/// the library's path and size, so that a different library still gives a different identity.
pub fn libtorch_runtime() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let Some(lib) = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.ends_with("/libtorch_cpu.so")).map(std::path::PathBuf::from) else {
            return "unknown (libtorch_cpu.so not mapped)".to_string();
        };
        let root = lib.parent().and_then(|d| d.parent()).map(std::path::Path::to_path_buf).unwrap_or_default();
        if let Ok(py) = std::fs::read_to_string(root.join("version.py")) {
            let field = |name: &str| py.lines().find_map(|l| l.strip_prefix(name)?.trim_start().strip_prefix('=')?.trim().trim_matches(['\'', '"']).to_string().into());
            if let Some(v) = field("__version__") {
                return match field("git_version") {
                    Some(g) => format!("{v} (git {})", &g[..g.len().min(12)]),
                    None => v,
                };
            }
        }
        if let Ok(v) = std::fs::read_to_string(root.join("build-version")) {
            return v.trim().to_string();
        }
        let size = std::fs::metadata(&lib).map(|m| m.len()).unwrap_or(0);
        format!("unknown ({}, {size} bytes)", lib.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loaded_libtorch_is_identified_by_its_version() {
        let v = libtorch_runtime();
        assert!(v.starts_with(|c: char| c.is_ascii_digit()), "{v}");
        assert_eq!(EngineIdentity::current().unwrap().libtorch, v);
    }

    #[test]
    fn unset_variables_give_the_defaults_and_bad_values_are_errors() {
        assert_eq!(EngineOptions::from_lookup(|_| None).unwrap(), EngineOptions::default());
        let one = |var: &'static str, val: &'static str| EngineOptions::from_lookup(move |v| (v == var).then(|| val.to_string()));
        assert_eq!(one("RHX_DECODE", "static").unwrap().decode, DecodeMode::Static);
        assert!(!one("RHX_FUSED", "0").unwrap().fused_kernels);
        assert_eq!(one("RHX_GEMV_GRID_CAP", "64").unwrap().kernels.gemv_grid_cap, Some(64));
        for (var, bad) in [("RHX_DECODE", "fast"), ("RHX_FUSED", "no"), ("RHX_GEMV_U", "x"), ("RHX_GEMV_THREADS", "100"), ("RHX_GEMV_B1_BLOCKS", "0"), ("RHX_GEMV_SPLIT", "3"), ("RHX_WGEMM", "129")] {
            let e = one(var, bad).unwrap_err();
            assert_eq!(e.var, var, "{e}");
        }
    }

    #[test]
    fn every_documented_variable_changes_the_options() {
        for (var, _) in VARIABLES {
            let val = match *var {
                "RHX_DECODE" => "graph",
                "RHX_GEMV_THREADS" => "512",
                "RHX_GEMV_SPLIT" => "2",
                "RHX_TIMELINE" => "/tmp/t.csv",
                "RHX_WGEMM" => "64",
                "RHX_ROPE_GEMV" => "1",
                v if v.starts_with("RHX_GEMV") || v == "RHX_ATTN_BLOCKS" => "7",
                _ => "0",
            };
            let o = EngineOptions::from_lookup(|v| (v == *var).then(|| val.to_string())).unwrap();
            assert_ne!(o, EngineOptions::default(), "{var}={val} changed nothing");
        }
    }
}
