//! Embeds an rpath to the project-local libtorch so the binary and the tests run without
//! `LD_LIBRARY_PATH`. On another machine (e.g. the GPU box) `LD_LIBRARY_PATH` still wins,
//! because GNU ld writes the rpath as `DT_RUNPATH`.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        let lib = PathBuf::from(libtorch).join("lib");
        let lib = lib.canonicalize().unwrap_or(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
    // Record the git commit for provenance (empty outside a checkout); rebuild when HEAD moves.
    for f in [".git/HEAD", ".git/packed-refs"] {
        println!("cargo:rerun-if-changed={f}");
    }
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(r) = head.trim().strip_prefix("ref: ") {
            println!("cargo:rerun-if-changed=.git/{r}");
        }
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git").args(args).output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let mut commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_default();
    // A build from a tree with uncommitted changes to tracked files says so (`<commit>-dirty`):
    // reports and artifacts must not claim sources they were not built from. Rerun when the
    // sources or the index change, so the mark follows the tree.
    for dir in ["src", "csrc", "grammar", "Cargo.toml", "Cargo.lock", ".git/index"] {
        println!("cargo:rerun-if-changed={dir}");
    }
    if !commit.is_empty() && git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty()) {
        commit.push_str("-dirty");
    }
    println!("cargo:rustc-env=RHX_GIT_COMMIT={commit}");
    source_hashes();
    build_cuda_shim();
}

/// What the engine fingerprint covers: everything that can change a trace's bytes — the model
/// code, kernels, tokenizer and chat templates (`src/engine`, `csrc`), the prompt generators
/// (`src/data`), the trace op and artifact types that write a trace, and `Cargo.lock` (tch,
/// tokenizers and minijinja versions). Keep it in step with `docs/ARCHITECTURE.md`.
const ENGINE_SOURCES: &[&str] = &["src/engine", "csrc", "src/data", "src/run/ops.rs", "Cargo.lock"];

/// Hashes the sources at build time: `RHX_ENGINE_FINGERPRINT` (sha256 over [`ENGINE_SOURCES`],
/// path and bytes of each file in sorted order) and `$OUT_DIR/source_hashes.rs`, the sha256 of
/// every file under `src/` (an op's cache key contains the hashes of the files it names, so a
/// change to an analysis invalidates exactly its cached results).
fn source_hashes() {
    use sha2::{Digest, Sha256};
    fn walk(p: &std::path::Path, out: &mut Vec<PathBuf>) {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    walk(&e.path(), out);
                }
            }
        } else if p.is_file() {
            out.push(p.to_path_buf());
        }
    }
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut engine = Vec::new();
    for s in ENGINE_SOURCES {
        walk(std::path::Path::new(s), &mut engine);
    }
    engine.sort();
    let mut h = Sha256::new();
    for f in &engine {
        let bytes = std::fs::read(f).unwrap_or_default();
        h.update(f.to_string_lossy().as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    println!("cargo:rustc-env=RHX_ENGINE_FINGERPRINT={}", hex(&h.finalize()));
    let mut all = Vec::new();
    walk(std::path::Path::new("src"), &mut all);
    all.sort();
    let mut table = String::from("/// sha256 of every file under `src/` when this binary was built (made by `build.rs`).\npub const SOURCE_HASHES: &[(&str, &str)] = &[\n");
    for f in &all {
        let bytes = std::fs::read(f).unwrap_or_default();
        table.push_str(&format!("    ({:?}, \"{}\"),\n", f.to_string_lossy(), hex(&Sha256::digest(&bytes))));
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("source_hashes.rs");
    std::fs::write(out, table).expect("writing source_hashes.rs");
}

/// Compiles `csrc/cuda_shim.cpp` (CUDA graphs and allocator statistics through libtorch's C++
/// API, which `tch` does not expose) into a shared library that the binary embeds and loads at
/// run time, only after `libtorch_cuda.so`. It needs libtorch's headers and the CUDA runtime
/// headers (`cuda_runtime_api.h` and `crt/host_defines.h`: the `nvidia-cuda-runtime` and
/// `nvidia-cuda-crt` wheels, a CUDA toolkit, or directories named in `RHX_CUDA_INCLUDE`). When
/// any is missing the binary is built without it: CPU runs are unaffected and CUDA runs decode
/// without graphs.
fn build_cuda_shim() {
    println!("cargo::rustc-check-cfg=cfg(rhx_cuda_shim)");
    println!("cargo:rerun-if-changed=csrc/cuda_shim.cpp");
    println!("cargo:rerun-if-env-changed=RHX_CUDA_INCLUDE");
    println!("cargo:rerun-if-env-changed=RHX_NO_CUDA_SHIM");
    if std::env::var_os("RHX_NO_CUDA_SHIM").is_some() {
        return;
    }
    let Ok(libtorch) = std::env::var("LIBTORCH") else { return };
    let torch = PathBuf::from(libtorch);
    let torch = torch.canonicalize().unwrap_or(torch);
    if !torch.join("include/ATen/cuda/CUDAGraph.h").exists() {
        println!("cargo:warning=no CUDA graph header in libtorch: building without the CUDA shim");
        return;
    }
    let mut dirs: Vec<PathBuf> = std::env::var("RHX_CUDA_INCLUDE").map(|v| v.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect()).unwrap_or_default();
    if let Some(site) = torch.parent() {
        dirs.push(site.join("nvidia/cu13/include"));
        dirs.push(site.join("nvidia/cuda_runtime/include"));
    }
    dirs.push(PathBuf::from("/usr/local/cuda/include"));
    let has = |f: &str| dirs.iter().any(|d| d.join(f).exists());
    if !has("cuda_runtime_api.h") || !has("crt/host_defines.h") {
        println!("cargo:warning=CUDA runtime headers (cuda_runtime_api.h, crt/host_defines.h) not found: building without the CUDA shim (no CUDA graphs); set RHX_CUDA_INCLUDE");
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("librhx_cuda_shim.so");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let mut cmd = std::process::Command::new(&cxx);
    cmd.args(["-shared", "-fPIC", "-O2", "-std=c++17", "-D_GLIBCXX_USE_CXX11_ABI=1", "-w"]);
    cmd.arg(format!("-I{}", torch.join("include").display()));
    cmd.arg(format!("-I{}", torch.join("include/torch/csrc/api/include").display()));
    for d in dirs.iter().filter(|d| d.exists()) {
        cmd.arg(format!("-I{}", d.display()));
    }
    cmd.arg("csrc/cuda_shim.cpp").arg("-o").arg(&out);
    // The build script reruns on every source change (for the dirty mark above); recompile the
    // shim only when its source or the compiler command changed.
    let stamp = out.with_extension("stamp");
    let want = format!("{cmd:?}\n{}", std::fs::read_to_string("csrc/cuda_shim.cpp").unwrap_or_default());
    let fresh = out.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want);
    match if fresh { Ok(None) } else { cmd.status().map(Some) } {
        Ok(None) => {}
        Ok(Some(s)) if s.success() => {
            let _ = std::fs::write(&stamp, &want);
        }
        other => {
            let _ = std::fs::remove_file(&stamp);
            println!("cargo:warning=compiling csrc/cuda_shim.cpp with {cxx} failed ({other:?}): building without the CUDA shim");
            return;
        }
    }
    println!("cargo:rustc-cfg=rhx_cuda_shim");
    println!("cargo:rustc-env=RHX_CUDA_SHIM_PATH={}", out.display());
}
