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
const ENGINE_SOURCES: &[&str] = &["src/engine", "csrc", "src/data", "src/support", "src/ops/trace", "Cargo.lock"];

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
    let included: Vec<PathBuf> = engine
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        .flat_map(|f| included_files(&f.to_string_lossy(), &std::fs::read_to_string(f).unwrap_or_default()))
        .map(PathBuf::from)
        .collect();
    engine.extend(included);
    engine.sort();
    engine.dedup();
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
    // Per op file (`src/ops/<kind>/<name>.rs`): the files it depends on, followed through
    // `use crate::…` / `crate::…` / `super::…` paths and private submodules (`mod x;`)
    // transitively, and one hash over them.
    let hash_of: std::collections::BTreeMap<String, String> = all.iter().map(|f| (f.to_string_lossy().into_owned(), hex(&Sha256::digest(std::fs::read(f).unwrap_or_default())))).collect();
    table.push_str("/// Per op file: sha256 over the files it depends on (transitively, through `crate::` and `super::`\n/// paths; not `lang`, `plan`, `run`, `cache`, `cli`) and the list of them (made by `build.rs`).\npub const OP_SOURCES: &[(&str, &str, &[&str])] = &[\n");
    for f in all.iter().map(|f| f.to_string_lossy().into_owned()).filter(|f| f.starts_with("src/ops/") && f.matches('/').count() == 3 && !f.ends_with("/mod.rs")) {
        let deps = dependencies(&f);
        let mut h = Sha256::new();
        for d in &deps {
            h.update(d.as_bytes());
            h.update([0]);
            let direct = || std::fs::read(d).map(|b| hex(&Sha256::digest(&b))).unwrap_or_else(|_| "missing".into());
            h.update(hash_of.get(d).cloned().unwrap_or_else(direct).as_bytes());
            h.update([0]);
        }
        let list: Vec<String> = deps.iter().map(|d| format!("{d:?}")).collect();
        table.push_str(&format!("    ({f:?}, \"{}\", &[{}]),\n", hex(&h.finalize()), list.join(", ")));
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("source_hashes.rs");
    std::fs::write(out, table).expect("writing source_hashes.rs");
}

/// Top-level modules whose code does not change what an op computes (the language front end,
/// the planner, the executor's loop, the cache, the command line).
const NOT_OP_CODE: &[&str] = &["lang", "plan", "run", "cache", "cli"];

/// `file` and every source file it reaches through module paths and private submodules, sorted.
fn dependencies(file: &str) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut todo = vec![file.to_string()];
    while let Some(f) = todo.pop() {
        if !seen.insert(f.clone()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        // Files compiled in (`include_str!`: templates, the paper's values, the haystack) are
        // part of what the op computes.
        seen.extend(included_files(&f, &text));
        todo.extend(private_submodules(&f, &text));
        let here = module_of(&f);
        for path in module_paths(&text) {
            let abs: Vec<String> = match path.first().map(String::as_str) {
                Some("crate") => path[1..].to_vec(),
                Some("self") => here.iter().chain(&path[1..]).cloned().collect(),
                Some("super") => {
                    let mut m = here.clone();
                    let mut rest = &path[..];
                    while rest.first().map(String::as_str) == Some("super") {
                        m.pop();
                        rest = &rest[1..];
                    }
                    m.extend(rest.iter().cloned());
                    m
                }
                // Relative to this module (a child module re-exported by a mod.rs); paths into
                // other crates match no file and are dropped below.
                Some(_) => here.iter().chain(&path).cloned().collect(),
                None => continue,
            };
            if abs.first().is_some_and(|m| NOT_OP_CODE.contains(&m.as_str())) {
                continue;
            }
            // The longest prefix of the path that is a module file (not the op registry's own
            // file, which every op names for its types and which computes nothing).
            for n in (1..=abs.len()).rev() {
                if abs[..n] == ["ops".to_string()] {
                    break;
                }
                let base = format!("src/{}", abs[..n].join("/"));
                let candidates = [format!("{base}.rs"), format!("{base}/mod.rs")];
                if let Some(c) = candidates.into_iter().find(|c| std::path::Path::new(c).is_file()) {
                    todo.push(c);
                    break;
                }
            }
        }
    }
    seen.into_iter().collect()
}

/// The files of the private submodules `file` declares (`mod name;`, not `pub mod`): their code
/// is reachable only through `file` (its re-exports, or methods on its types, e.g.
/// `Tokenizer::from_hf_dir` in `engine/tokenizer/hf.rs`), so what depends on `file` depends on
/// them. Public submodules are followed where a path names them.
fn private_submodules(file: &str, text: &str) -> Vec<String> {
    let here = module_of(file);
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("").trim();
        let Some(name) = code.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')).map(str::trim) else { continue };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let base = format!("src/{}", here.iter().map(String::as_str).chain([name]).collect::<Vec<_>>().join("/"));
        if let Some(c) = [format!("{base}.rs"), format!("{base}/mod.rs")].into_iter().find(|c| std::path::Path::new(c).is_file()) {
            out.push(c);
        }
    }
    out
}

/// The module path of a source file: `src/ops/heads/top.rs` → `[ops, heads, top]`.
fn module_of(file: &str) -> Vec<String> {
    let rel = file.trim_start_matches("src/").trim_end_matches(".rs");
    let mut m: Vec<String> = rel.split('/').map(str::to_string).collect();
    if m.last().is_some_and(|l| l == "mod" || l == "lib") {
        m.pop();
    }
    m
}

/// The files `file` compiles in with `include_str!("…")` / `include_bytes!("…")` (relative to
/// its folder), as normalised paths from the crate root; each one also reruns this script.
fn included_files(file: &str, text: &str) -> Vec<String> {
    let dir = std::path::Path::new(file).parent().unwrap_or(std::path::Path::new(""));
    let mut out = Vec::new();
    for mac in ["include_str!(\"", "include_bytes!(\""] {
        let mut rest = text;
        while let Some(i) = rest.find(mac) {
            rest = &rest[i + mac.len()..];
            let Some(end) = rest.find('"') else { break };
            let mut parts: Vec<String> = Vec::new();
            for c in dir.join(&rest[..end]).components() {
                match c {
                    std::path::Component::ParentDir => {
                        parts.pop();
                    }
                    std::path::Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
                    _ => {}
                }
            }
            let path = parts.join("/");
            println!("cargo:rerun-if-changed={path}");
            out.push(path);
        }
    }
    out
}

/// Every `crate::…` and `super::…` path in Rust source, with `use` groups (`a::{b, c::d}`)
/// expanded. Comments are skipped; string contents are not parsed as paths.
fn module_paths(text: &str) -> Vec<Vec<String>> {
    let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = |w: &str| b[i..].starts_with(w.as_bytes()) && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':'));
        if starts("use ") {
            // A `use` path, relative ones included (`pub use model::Table` in a mod.rs).
            let (paths, end) = parse_path(b, i + 4);
            out.extend(paths);
            i = end.max(i + 1);
        } else if starts("crate::") || starts("super::") {
            let (paths, end) = parse_path(b, i);
            out.extend(paths);
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Parses `seg::seg::{…}` at `i`; returns the expanded paths and the index after it.
fn parse_path(b: &[u8], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let ident = |i: &mut usize| -> String {
        let s = *i;
        while *i < b.len() && (b[*i].is_ascii_alphanumeric() || b[*i] == b'_') {
            *i += 1;
        }
        String::from_utf8_lossy(&b[s..*i]).into_owned()
    };
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    let mut prefix = Vec::new();
    loop {
        skip_ws(&mut i);
        if i < b.len() && b[i] == b'{' {
            i += 1;
            let mut out = Vec::new();
            loop {
                skip_ws(&mut i);
                if i >= b.len() || b[i] == b'}' {
                    i += 1;
                    break;
                }
                if b[i] == b',' {
                    i += 1;
                    continue;
                }
                let (inner, end) = parse_path(b, i);
                for p in inner {
                    let mut full = prefix.clone();
                    full.extend(p.into_iter().filter(|s| s != "self"));
                    out.push(full);
                }
                // Skip `as name` and anything else up to the next `,` or `}` at this level.
                i = end;
                while i < b.len() && b[i] != b',' && b[i] != b'}' {
                    i += 1;
                }
            }
            return (out, i);
        }
        let seg = ident(&mut i);
        if seg.is_empty() {
            return (vec![prefix], i);
        }
        prefix.push(seg);
        if b.get(i..i + 2) == Some(b"::") {
            i += 2;
        } else {
            return (vec![prefix], i);
        }
    }
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
