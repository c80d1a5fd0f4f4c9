//! Fused decode kernels on CUDA (`csrc/decode_kernels.cu`), compiled at run time with NVRTC
//! for the model's shape and dtype and launched through the CUDA driver API on libtorch's
//! current stream, so that they are ordered with libtorch's ops and captured into the same
//! CUDA graph. A decoding step is bound by kernel launches as much as by bytes at small batch
//! sizes: these kernels make one layer 8 launches instead of ~25 and read the weights with
//! 16-byte streaming loads (cuBLAS's batch-1 GEMV reached ~75% of the bandwidth).
//!
//! Nothing here is linked: `libnvrtc` (the `nvidia-cuda-nvrtc` wheel that PyTorch depends on,
//! found next to libtorch, or on the library path, or at `RHX_NVRTC`) and `libcuda.so.1` (the
//! driver, already loaded by libtorch) are opened at first use. When either is missing, or
//! the shape is not one the kernels handle, `Model::decode_step` keeps its libtorch ops.
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

use tch::{Device, Kind, Tensor};
use super::options::{EngineOptions, KernelKnobs};

const SOURCE: &str = include_str!("../../csrc/decode_kernels.cu");

type CuResult = c_int;
type NvrtcResult = c_int;
type Ptr = *mut c_void;

/// The CUDA driver entry points used to load and launch the kernels.
struct Api {
    module_load_data: unsafe extern "C" fn(*mut Ptr, *const c_void) -> CuResult,
    module_get_function: unsafe extern "C" fn(*mut Ptr, Ptr, *const c_char) -> CuResult,
    launch_kernel: unsafe extern "C" fn(Ptr, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, Ptr, *mut Ptr, *mut Ptr) -> CuResult,
    launch_kernel_ex: Option<unsafe extern "C" fn(*const LaunchConfig, Ptr, *mut Ptr, *mut Ptr) -> CuResult>,
    func_set_attribute: unsafe extern "C" fn(Ptr, c_int, c_int) -> CuResult,
    get_error_string: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
    ctx_get_current: unsafe extern "C" fn(*mut Ptr) -> CuResult,
    ctx_set_current: unsafe extern "C" fn(Ptr) -> CuResult,
    primary_ctx_retain: unsafe extern "C" fn(*mut Ptr, c_int) -> CuResult,
    device_get_attribute: unsafe extern "C" fn(*mut c_int, c_int, c_int) -> CuResult,
    module_get_global: unsafe extern "C" fn(*mut u64, *mut usize, Ptr, *const c_char) -> CuResult,
}

/// The NVRTC entry points (no GPU needed: the CPU-only tests compile the source with them).
struct Nvrtc {
    create_program: unsafe extern "C" fn(*mut Ptr, *const c_char, *const c_char, c_int, *const *const c_char, *const *const c_char) -> NvrtcResult,
    compile_program: unsafe extern "C" fn(Ptr, c_int, *const *const c_char) -> NvrtcResult,
    program_log_size: unsafe extern "C" fn(Ptr, *mut usize) -> NvrtcResult,
    program_log: unsafe extern "C" fn(Ptr, *mut c_char) -> NvrtcResult,
    cubin_size: unsafe extern "C" fn(Ptr, *mut usize) -> NvrtcResult,
    cubin: unsafe extern "C" fn(Ptr, *mut c_char) -> NvrtcResult,
    destroy_program: unsafe extern "C" fn(*mut Ptr) -> NvrtcResult,
    error_string: unsafe extern "C" fn(NvrtcResult) -> *const c_char,
}

// SAFETY: plain C function pointers into libraries that stay loaded.
unsafe impl Send for Api {}
unsafe impl Sync for Api {}
unsafe impl Send for Nvrtc {}
unsafe impl Sync for Nvrtc {}

static API: OnceLock<Result<Api, String>> = OnceLock::new();
static NVRTC: OnceLock<Result<Nvrtc, String>> = OnceLock::new();

fn api() -> Result<&'static Api, String> {
    API.get_or_init(load_api).as_ref().map_err(Clone::clone)
}

fn nvrtc() -> Result<&'static Nvrtc, String> {
    NVRTC.get_or_init(load_nvrtc).as_ref().map_err(Clone::clone)
}

// SAFETY (for every use): the signatures follow cuda.h and nvrtc.h.
macro_rules! sym {
    ($lib:expr, $name:literal) => {
        *unsafe { $lib.get($name) }.map_err(|e| format!("{}: {e}", String::from_utf8_lossy($name)))?
    };
}

fn open(path: &str, global: bool) -> Result<libloading::os::unix::Library, String> {
    let flags = libloading::os::unix::RTLD_NOW | if global { libloading::os::unix::RTLD_GLOBAL } else { libloading::os::unix::RTLD_LOCAL };
    // SAFETY: NVRTC and the CUDA driver have no initialisers with preconditions.
    unsafe { libloading::os::unix::Library::open(Some(path), flags) }.map_err(|e| format!("{path}: {e}"))
}

/// `libnvrtc.so.*` and its `libnvrtc-builtins.so.*` (preloaded: NVRTC opens it by name, and the
/// wheel's directory is usually not on the library path).
fn open_nvrtc() -> Result<libloading::os::unix::Library, String> {
    let mut errors = Vec::new();
    if let Some(p) = std::env::var_os("RHX_NVRTC") {
        return open(&p.to_string_lossy(), true);
    }
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    if let Some(torch_lib) = super::device::libtorch_dir() {
        let site = std::path::Path::new(&torch_lib).join("../..");
        for sub in ["nvidia/cu13/lib", "nvidia/cuda_nvrtc/lib", "nvidia/cu12/lib"] {
            dirs.push(site.join(sub));
        }
        dirs.push(std::path::PathBuf::from(&torch_lib));
    }
    dirs.push("/usr/local/cuda/lib64".into());
    for dir in &dirs {
        let Ok(rd) = std::fs::read_dir(dir) else { continue };
        let mut names: Vec<String> = rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !n.contains(".alt.")).collect();
        names.sort();
        if let Some(b) = names.iter().find(|n| n.starts_with("libnvrtc-builtins.so")) {
            if let Ok(lib) = open(&dir.join(b).to_string_lossy(), true) {
                std::mem::forget(lib);
            }
        }
        if let Some(n) = names.iter().find(|n| n.starts_with("libnvrtc.so")) {
            match open(&dir.join(n).to_string_lossy(), true) {
                Ok(lib) => return Ok(lib),
                Err(e) => errors.push(e),
            }
        }
    }
    for name in ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"] {
        match open(name, true) {
            Ok(lib) => return Ok(lib),
            Err(e) => errors.push(e),
        }
    }
    Err(format!("NVRTC not found (set RHX_NVRTC to libnvrtc.so): {}", errors.join("; ")))
}

fn load_api() -> Result<Api, String> {
    super::device::cuda_status()?;
    let cuda = open("libcuda.so.1", false)?;
    let api = Api {
        module_load_data: sym!(cuda, b"cuModuleLoadData\0"),
        module_get_function: sym!(cuda, b"cuModuleGetFunction\0"),
        launch_kernel: sym!(cuda, b"cuLaunchKernel\0"),
        // SAFETY: signature of cuda.h's cuLaunchKernelEx (CUDA 12.0+).
        launch_kernel_ex: unsafe { cuda.get(b"cuLaunchKernelEx\0") }.ok().map(|f: libloading::os::unix::Symbol<_>| *f),
        func_set_attribute: sym!(cuda, b"cuFuncSetAttribute\0"),
        get_error_string: sym!(cuda, b"cuGetErrorString\0"),
        ctx_get_current: sym!(cuda, b"cuCtxGetCurrent\0"),
        ctx_set_current: sym!(cuda, b"cuCtxSetCurrent\0"),
        primary_ctx_retain: sym!(cuda, b"cuDevicePrimaryCtxRetain\0"),
        device_get_attribute: sym!(cuda, b"cuDeviceGetAttribute\0"),
        module_get_global: sym!(cuda, b"cuModuleGetGlobal_v2\0"),
    };
    std::mem::forget(cuda);
    Ok(api)
}

fn load_nvrtc() -> Result<Nvrtc, String> {
    let lib = open_nvrtc()?;
    let n = Nvrtc {
        create_program: sym!(lib, b"nvrtcCreateProgram\0"),
        compile_program: sym!(lib, b"nvrtcCompileProgram\0"),
        program_log_size: sym!(lib, b"nvrtcGetProgramLogSize\0"),
        program_log: sym!(lib, b"nvrtcGetProgramLog\0"),
        cubin_size: sym!(lib, b"nvrtcGetCUBINSize\0"),
        cubin: sym!(lib, b"nvrtcGetCUBIN\0"),
        destroy_program: sym!(lib, b"nvrtcDestroyProgram\0"),
        error_string: sym!(lib, b"nvrtcGetErrorString\0"),
    };
    std::mem::forget(lib);
    Ok(n)
}

impl Api {
    fn cu(&self, rc: CuResult, what: &str) -> Result<(), String> {
        if rc == 0 {
            return Ok(());
        }
        let mut s: *const c_char = std::ptr::null();
        unsafe { (self.get_error_string)(rc, &mut s) };
        let msg = if s.is_null() { String::new() } else { unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned() };
        Err(format!("{what}: CUDA error {rc} {msg}"))
    }

    /// Makes the device's primary context (the one libtorch uses) current on this thread.
    fn ensure_context(&self, ordinal: c_int) -> Result<(), String> {
        let mut ctx: Ptr = std::ptr::null_mut();
        self.cu(unsafe { (self.ctx_get_current)(&mut ctx) }, "cuCtxGetCurrent")?;
        if ctx.is_null() {
            self.cu(unsafe { (self.primary_ctx_retain)(&mut ctx, ordinal) }, "cuDevicePrimaryCtxRetain")?;
            self.cu(unsafe { (self.ctx_set_current)(ctx) }, "cuCtxSetCurrent")?;
        }
        Ok(())
    }
}

impl Nvrtc {
    fn nv(&self, rc: NvrtcResult, what: &str) -> Result<(), String> {
        if rc == 0 {
            return Ok(());
        }
        let msg = unsafe { CStr::from_ptr((self.error_string)(rc)) }.to_string_lossy().into_owned();
        Err(format!("{what}: {msg}"))
    }

    fn compile(&self, options: &[String]) -> Result<Vec<u8>, String> {
        let src = CString::new(SOURCE).unwrap();
        let name = CString::new("decode_kernels.cu").unwrap();
        let mut prog: Ptr = std::ptr::null_mut();
        self.nv(unsafe { (self.create_program)(&mut prog, src.as_ptr(), name.as_ptr(), 0, std::ptr::null(), std::ptr::null()) }, "nvrtcCreateProgram")?;
        let opts: Vec<CString> = options.iter().map(|o| CString::new(o.as_str()).unwrap()).collect();
        let ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
        let rc = unsafe { (self.compile_program)(prog, ptrs.len() as c_int, ptrs.as_ptr()) };
        let result = if rc != 0 {
            let mut n = 0usize;
            unsafe { (self.program_log_size)(prog, &mut n) };
            let mut log = vec![0 as c_char; n.max(1)];
            unsafe { (self.program_log)(prog, log.as_mut_ptr()) };
            let log = unsafe { CStr::from_ptr(log.as_ptr()) }.to_string_lossy().into_owned();
            Err(format!("{}\n{log}", self.nv(rc, "compiling csrc/decode_kernels.cu").unwrap_err()))
        } else {
            let mut n = 0usize;
            self.nv(unsafe { (self.cubin_size)(prog, &mut n) }, "nvrtcGetCUBINSize").and_then(|_| {
                let mut bin = vec![0u8; n];
                self.nv(unsafe { (self.cubin)(prog, bin.as_mut_ptr() as *mut c_char) }, "nvrtcGetCUBIN").map(|_| bin)
            })
        };
        unsafe { (self.destroy_program)(&mut prog) };
        result
    }
}

/// `CUlaunchAttribute` (cuda.h): an id, padding to 8 bytes, a 64-byte value union.
#[repr(C)]
struct LaunchAttribute {
    id: c_uint,
    pad: [u8; 4],
    value: [u8; 64],
}

/// `CUlaunchConfig` (cuda.h).
#[repr(C)]
struct LaunchConfig {
    grid: [c_uint; 3],
    block: [c_uint; 3],
    shared_mem_bytes: c_uint,
    stream: Ptr,
    attrs: *mut LaunchAttribute,
    num_attrs: c_uint,
}

/// `CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION`.
const PDL_ATTRIBUTE: c_uint = 6;
/// `CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION` (value: x, y, z as u32).
const CLUSTER_ATTRIBUTE: c_uint = 4;

/// What the kernels are specialised for (compile-time constants of the CUDA source).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spec {
    pub kind: Kind,
    pub head_dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub rotary_dim: usize,
    pub qk_norm: bool,
    /// Row lengths the GEMVs read with 16-byte loads (hidden, intermediate, heads × head_dim).
    pub row_lengths: Vec<usize>,
}

impl Spec {
    fn dtype_code(&self) -> Option<i32> {
        match self.kind {
            Kind::BFloat16 => Some(0),
            Kind::Half => Some(1),
            Kind::Float => Some(2),
            _ => None,
        }
    }

    fn elem_bytes(&self) -> usize {
        if self.kind == Kind::Float {
            4
        } else {
            2
        }
    }

    /// Head-dim elements per lane in the attention kernel: 16 bytes when the lanes of one
    /// column then form a power of two ≤ 32, else the fewest that do.
    fn elems_per_lane(&self) -> Option<usize> {
        let hd = self.head_dim;
        let vec = 16 / self.elem_bytes();
        let ok = |e: usize| e > 0 && hd.is_multiple_of(e) && (hd / e).is_power_of_two() && hd / e <= 32;
        if ok(vec) {
            return Some(vec);
        }
        (1..=hd).find(|&e| ok(e))
    }

    /// Why these kernels cannot run this shape, if they cannot.
    pub fn unsupported(&self) -> Option<String> {
        let dt = self.dtype_code();
        if dt.is_none() {
            return Some(format!("dtype {:?}", self.kind));
        }
        let epl = match self.elems_per_lane() {
            Some(e) if e <= 16 => e,
            _ => return Some(format!("head_dim {}", self.head_dim)),
        };
        if self.head_dim > 256 || self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) || !self.rotary_dim.is_multiple_of(2) || self.rotary_dim > self.head_dim {
            return Some("head layout".into());
        }
        let g = self.n_heads / self.n_kv_heads;
        if g > 16 || self.attn_smem_bytes(epl) > 46 * 1024 {
            return Some(format!("{g} query heads per kv head of dim {}", self.head_dim));
        }
        if let Some(n) = self.row_lengths.iter().find(|&&n| !(n * self.elem_bytes()).is_multiple_of(16)) {
            return Some(format!("row length {n} is not a multiple of 16 bytes"));
        }
        None
    }

    /// Whether the source builds `attn_decode_mma` for this shape (`#if` above it in the
    /// source: mma.m16n8k16 has bf16 and f16 operands; its operand layout is written for head
    /// dims 64 and 128 and the query heads of a kv head in rows 0..7). It also needs sm_80 or
    /// newer.
    pub fn tensor_core_attention(&self) -> bool {
        matches!(self.kind, Kind::BFloat16 | Kind::Half) && matches!(self.head_dim, 64 | 128) && self.n_heads / self.n_kv_heads <= 8
    }

    /// Static shared memory of the attention kernel: its in-block merge (`sm` in the source:
    /// `NW · CPW` lane groups × G heads × (hd + 5) floats in the Eq. 2 variant, NW = 8 warps)
    /// and the G query heads (`qs`, f32).
    fn attn_smem_bytes(&self, epl: usize) -> usize {
        let (g, hd) = (self.n_heads / self.n_kv_heads, self.head_dim);
        let slots = 8 * (32 / (hd / epl));
        (slots * g * (hd + 5) + g * hd) * 4
    }

    /// Why the wide steps' tensor-core GEMM (`wgemm` in the source) cannot run this shape on a
    /// GPU of compute capability `arch`, if it cannot: it needs bf16/f16 (mma operands), Hopper
    /// (thread-block clusters) and rows of whole 32-element pieces.
    pub fn wide_gemm_unsupported(&self, arch: (c_int, c_int)) -> Option<String> {
        if !matches!(self.kind, Kind::BFloat16 | Kind::Half) {
            return Some(format!("dtype {:?} (bf16 and f16 only)", self.kind));
        }
        if arch.0 < 9 {
            return Some(format!("compute capability {}.{} (thread-block clusters need 9.0)", arch.0, arch.1));
        }
        self.row_lengths.iter().find(|&&n| !n.is_multiple_of(32)).map(|n| format!("row length {n} is not a multiple of 32"))
    }

    fn options(&self, arch: (c_int, c_int), knobs: &KernelKnobs, part: Part) -> Vec<String> {
        let (core, gemv, rope, wide) = match part {
            Part::All { wide } => (1, 9, 0, wide as i64),
            Part::Core => (1, 0, 0, 0),
            Part::Gemv(b) => (0, b, 0, 0),
            Part::GemvRope(b) => (0, b, 1, 0),
            Part::Wide => (0, 0, 0, 1),
        };
        vec![
            format!("--gpu-architecture=sm_{}{}", arch.0, arch.1),
            "-std=c++17".into(),
            format!("-DDT={}", self.dtype_code().unwrap()),
            format!("-DHD={}", self.head_dim),
            format!("-DEPL={}", self.elems_per_lane().unwrap()),
            format!("-DNQ={}", self.n_heads),
            format!("-DNKV={}", self.n_kv_heads),
            format!("-DROT={}", self.rotary_dim),
            format!("-DQKNORM={}", self.qk_norm as i32),
            format!("-DWANT_CORE={core}"),
            format!("-DWANT_GEMV={gemv}"),
            format!("-DGEMV_ROPE={rope}"),
            format!("-DWANT_WIDE={wide}"),
            // Tuning knobs for measurements: registers vs occupancy of the batch-1 GEMVs, threads
            // per GEMV block, weight loads per lane and stage, attention blocks per SM.
            format!("-DGEMV_B1_BLOCKS={}", knobs.gemv_b1_blocks),
            format!("-DGEMV_THREADS={}", knobs.gemv_threads),
            format!("-DGEMV_U={}", knobs.gemv_u),
            format!("-DATTN_BLOCKS={}", knobs.attn_blocks),
            format!("-DATTN_PREFETCH={}", knobs.attn_prefetch as i32),
            format!("-DTIMELINE={}", knobs.timeline as i32),
        ]
    }
}

/// Which kernels one NVRTC compilation builds (`WANT_*` in the source). A process compiles the
/// core once per shape and the GEMVs of each batch size it decodes at (the GEMVs of all eight
/// batch sizes are ~85% of the compile time: Llama-3.1-8B shape, sm_90, 20.8 s for everything,
/// 3.4 s without the GEMVs of batches 2-8); a timeline build is one module of every part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Everything, with or without the wide GEMM (timeline builds).
    All { wide: bool },
    /// Norms, RoPE + cache write, attention and its merge.
    Core,
    /// The GEMVs of one batch size (1..=FUSED_MAX_BATCH).
    Gemv(i64),
    /// The q|k|v GEMVs with RoPE of one batch size (`RHX_ROPE_GEMV`).
    GemvRope(i64),
    /// The tensor-core GEMM of wide steps.
    Wide,
}

#[derive(Clone, Copy)]
struct Func(Ptr);
// SAFETY: CUfunction handles are usable from any thread with the context current.
unsafe impl Send for Func {}
unsafe impl Sync for Func {}

/// A loaded CUDA module.
#[derive(Clone, Copy)]
struct Module(Ptr);
// SAFETY: CUmodule handles are usable from any thread with the context current.
unsafe impl Send for Module {}
unsafe impl Sync for Module {}

/// The compiled kernels for one `Spec` on one device.
pub struct Kernels {
    device: Device,
    module: Module,
    ordinal: c_int,
    /// Launch with programmatic dependent launch (compute capability ≥ 9.0, `RHX_PDL` ≠ 0):
    /// each kernel may start while the previous one drains (the GEMVs request their first
    /// weights before waiting for their input).
    pdl: bool,
    /// Dynamic shared memory a block may use (opt-in maximum), bytes.
    smem_optin: i64,
    elem_bytes: i64,
    rmsnorm: Func,
    add_rmsnorm: Func,
    silu_mul: Func,
    rope_kv: Func,
    /// The attention kernels, each `[plain, with Eq. 2]` (`attn_decode` and `attn_decode_rs`, …).
    attn: [Func; 2],
    /// `attn` compiled for one block per SM (more registers, no spills): for grids of at most
    /// `sms` blocks (H200, batch 1: 238 vs 235 tok/s at 1k). `RHX_ATTN_ONE=0`: never.
    attn_1: Option<[Func; 2]>,
    /// Tensor-core attention (`attn_decode_mma`: bf16/f16, head dim 64 or 128, ≤ 8 query heads
    /// per kv head, sm_80+), used for every grid when built; `RHX_ATTN_MMA=0`: never.
    attn_mma: Option<[Func; 2]>,
    /// Whether [`Kernels::attention`] uses `attn_mma` (on when built; the tests turn it off to
    /// compare it with the FMA kernel).
    use_mma: std::sync::atomic::AtomicBool,
    sms: i64,
    combine: Func,
    /// Attention blocks in one wave: `ATTN_BLOCKS` per SM × SMs.
    attention_blocks: i64,
    /// Batch-1 GEMV grids hold at most this many blocks (`RHX_GEMV_GRID_CAP`; default one wave,
    /// `GEMV_B1_BLOCKS` per SM × SMs; 0: one warp group per row pair): the blocks walk the
    /// row pairs, so a grid of 2.9 waves (q|k|v) runs without a partly filled last wave.
    /// H200, 4k: 222.3 -> 229.9 tok/s (benchmarks/gpu.md).
    grid_cap: u32,
    /// The GEMVs of each batch size (`[batch - 1]`), compiled by the first [`Kernels::prepare`]
    /// for that size.
    gemv: [OnceLock<Result<GemvSet<3, 2>, String>>; FUSED_MAX_BATCH as usize],
    /// The q|k|v GEMVs with RoPE of each batch size, compiled by [`Kernels::prepare`] while
    /// [`Kernels::rope_in_gemv`].
    gemv_rope: [OnceLock<Result<GemvSet<1, 1>, String>>; FUSED_MAX_BATCH as usize],
    /// The wide steps' tensor-core GEMMs, compiled by the first [`Kernels::prepare`] of a batch
    /// they take.
    wide: OnceLock<Result<WideSet, String>>,
    /// Largest batch the wide GEMMs take (`RHX_WGEMM`, 0: none; tests set it).
    wide_rows: std::sync::atomic::AtomicI64,
    /// Whether narrow steps apply RoPE in the q|k|v GEMV (`RHX_ROPE_GEMV`; tests set it).
    rope_gemv: std::sync::atomic::AtomicBool,
    /// What the parts compiled later are compiled for.
    spec: Spec,
    arch: (c_int, c_int),
    knobs: KernelKnobs,
    /// A timeline build: every part is in `module` (its records share one sequence counter).
    one_module: bool,
    /// Batch-1 GEMVs of fewer blocks than this split K: two waves of the GPU's resident blocks
    /// (`RHX_GEMV_SPLIT`: 0 never, 1 = two waves, the default, 2 always).
    split_below_blocks: u32,
    /// Threads per GEMV block (`RHX_GEMV_THREADS`, compiled in as `GEMV_THREADS`).
    gemv_threads: i64,
}

/// Most chunks the attention kernel's merge takes (`MAXCHUNKS` in the source).
const ATTN_MAX_CHUNKS: i64 = 512;

/// Largest batch the GEMVs take. Above it the fused decode step runs its projections as cuBLAS
/// GEMMs (tensor cores; the GEMVs' registers grow with the rows and they were slower than
/// cuBLAS at batch 64: 2868 vs 3240 tok/s, H200, Llama-3.1-8B shape, 4k context) and keeps its
/// norms, RoPE + cache write and attention kernels.
pub const FUSED_MAX_BATCH: i64 = 8;

/// The GEMVs of one batch size: `[mode][input staging: global, shared, normalised]`, and at batch
/// 1 those that split K over two warps, `[mode][input staging]` — modes Plain, Residual and
/// SiluMul (Plain and Residual split), or, a part of their own, Rope alone.
struct GemvSet<const M: usize, const SM: usize> {
    modes: [[Func; 3]; M],
    split: Option<[[Func; 3]; SM]>,
}

/// The wide steps' GEMMs, `[rows: 16, 32, 64, 128][mode: Plain, SiluMul]`.
struct WideSet([[Func; 2]; 4]);

/// Row counts the wide GEMM is compiled for (`wgemm_r{rows}_m{mode}` in the source).
const WIDE_ROWS: [i64; 4] = [16, 32, 64, 128];

/// GEMV (and wide GEMM) epilogue.
#[derive(Clone, Copy)]
pub enum GemvMode {
    /// `y = W·x + bias`.
    Plain = 0,
    /// `y = res + round(W·x + bias)`.
    Residual = 1,
    /// `W = [gate; up]`: `y = round(silu(round(gate))) · round(up)`.
    SiluMul = 2,
    /// q|k|v without q/k norm: RoPE, the uniform-attention mask and the cache write in the
    /// epilogue ([`RopeArgs`]), no `y`.
    Rope = 3,
}

type Cache = Mutex<HashMap<(Spec, c_int), Result<&'static Kernels, String>>>;
static COMPILED: OnceLock<Cache> = OnceLock::new();

/// The kernels for `spec` on `device`, compiled on first use (about a second) and kept for the
/// life of the process; `Err` says why they are not available.
pub fn get(spec: &Spec, device: Device) -> Result<&'static Kernels, String> {
    let Device::Cuda(ordinal) = device else { return Err("not a CUDA device".into()) };
    if let Some(why) = spec.unsupported() {
        return Err(format!("fused kernels do not cover this shape: {why}"));
    }
    let key = (spec.clone(), ordinal as c_int);
    let mut map = COMPILED.get_or_init(Default::default).lock().unwrap();
    if let Some(r) = map.get(&key) {
        return r.clone();
    }
    let r = build(spec, device, ordinal as c_int).map(|k| &*Box::leak(Box::new(k)));
    if let Err(e) = &r {
        // Once per shape and device: runs stay correct on libtorch ops, only slower.
        eprintln!("rhx: fused CUDA decode kernels unavailable, decoding on libtorch ops: {e}");
    }
    map.insert(key, r.clone());
    r
}

fn build(spec: &Spec, device: Device, ordinal: c_int) -> Result<Kernels, String> {
    let a = api()?;
    super::cuda::shim()?;
    a.ensure_context(ordinal)?;
    let (mut major, mut minor) = (0, 0);
    a.cu(unsafe { (a.device_get_attribute)(&mut major, 75, ordinal) }, "compute capability")?;
    a.cu(unsafe { (a.device_get_attribute)(&mut minor, 76, ordinal) }, "compute capability")?;
    // The knobs were read once from the environment (`EngineOptions::process`); the same value
    // is in every trace key, so what a trace records and what compiled it cannot differ.
    let knobs = EngineOptions::process().map_err(|e| e.to_string())?.kernels;
    let arch = (major, minor);
    let one_module = knobs.timeline;
    let core = if one_module { Part::All { wide: knobs.wgemm_rows > 0 && spec.wide_gemm_unsupported(arch).is_none() } } else { Part::Core };
    let module = load_module(&cached_cubin(&spec.options(arch, &knobs, core))?)?;
    let f = |name: &str| function(module, name);
    let mut optin = 0;
    a.cu(unsafe { (a.device_get_attribute)(&mut optin, 97, ordinal) }, "shared memory per block (opt-in)")?;
    let smem_optin = (optin as i64 - 1024).max(0);
    let mut sms = 0;
    a.cu(unsafe { (a.device_get_attribute)(&mut sms, 16, ordinal) }, "multiprocessor count")?;
    let pdl = major >= 9 && a.launch_kernel_ex.is_some() && knobs.pdl;
    let elem_bytes = spec.elem_bytes() as i64;
    let two_waves = 2 * knobs.gemv_b1_blocks * sms as u32;
    let split_below_blocks = match knobs.gemv_split {
        0 => 0,
        1 => two_waves,
        _ => u32::MAX,
    };
    let attention_blocks = knobs.attn_blocks as i64 * sms as i64;
    let grid_cap = knobs.gemv_grid_cap.unwrap_or(knobs.gemv_b1_blocks * sms as u32);
    let pair = |name: &str| -> Result<[Func; 2], String> { Ok([f(name)?, f(&format!("{name}_rs"))?]) };
    let attn_mma = if spec.tensor_core_attention() && major >= 8 && knobs.attn_mma { Some(pair("attn_decode_mma")?) } else { None };
    let attn_1 = if knobs.attn_one { Some(pair("attn_decode_1")?) } else { None };
    Ok(Kernels {
        device,
        module,
        ordinal,
        pdl,
        smem_optin,
        elem_bytes,
        split_below_blocks,
        attention_blocks,
        grid_cap,
        rmsnorm: f("rmsnorm")?,
        add_rmsnorm: f("add_rmsnorm")?,
        silu_mul: f("silu_mul")?,
        rope_kv: f("rope_kv")?,
        attn: pair("attn_decode")?,
        attn_1,
        attn_mma,
        gemv_threads: knobs.gemv_threads as i64,
        use_mma: std::sync::atomic::AtomicBool::new(true),
        sms: sms as i64,
        combine: f("attn_combine")?,
        gemv: std::array::from_fn(|_| OnceLock::new()),
        gemv_rope: std::array::from_fn(|_| OnceLock::new()),
        wide: OnceLock::new(),
        wide_rows: std::sync::atomic::AtomicI64::new(knobs.wgemm_rows as i64),
        rope_gemv: std::sync::atomic::AtomicBool::new(knobs.rope_gemv),
        spec: spec.clone(),
        arch,
        knobs,
        one_module,
    })
}

/// Loads compiled kernels into the current context (never unloaded: the kernels live as long as
/// the process).
fn load_module(cubin: &[u8]) -> Result<Module, String> {
    let a = api()?;
    let mut module: Ptr = std::ptr::null_mut();
    a.cu(unsafe { (a.module_load_data)(&mut module, cubin.as_ptr() as *const c_void) }, "cuModuleLoadData")?;
    Ok(Module(module))
}

fn function(module: Module, name: &str) -> Result<Func, String> {
    let a = api()?;
    let c = CString::new(name).unwrap();
    let mut p: Ptr = std::ptr::null_mut();
    a.cu(unsafe { (a.module_get_function)(&mut p, module.0, c.as_ptr()) }, name)?;
    Ok(Func(p))
}

/// `function`, allowed up to `smem` bytes of dynamic shared memory.
fn function_smem(module: Module, name: &str, smem: i64) -> Result<Func, String> {
    let a = api()?;
    let func = function(module, name)?;
    // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES.
    a.cu(unsafe { (a.func_set_attribute)(func.0, 8, smem as c_int) }, "cuFuncSetAttribute")?;
    Ok(func)
}

/// `RHX_TIMELINE`: where `rhx bench` writes the kernel timeline; when set, the kernels are
/// built with their per-block timestamps (`TIMELINE` in the source) in any command, which
/// only `rhx bench` writes out.
pub fn timeline_path() -> Option<std::path::PathBuf> {
    std::env::var_os("RHX_TIMELINE").filter(|v| !v.is_empty()).map(Into::into)
}

/// u64 fields of a timeline record, as the kernels write them: sequence number, tag (kernel |
/// extra << 8), grid size, block, SM, start, release from the wait, end.
const TIMELINE_FIELDS: usize = 8;

/// Names of the kernel codes in the timeline tags (`TL(code, extra)` in the source).
const TIMELINE_KERNELS: [&str; 10] = ["rmsnorm", "gemv", "rope", "attn", "attn(1/SM)", "merge", "attn(mma)", "add+rmsnorm", "silu·up", "wgemm"];

/// Writes the last blocks recorded by every timeline build of the kernels (a ring of 2^18
/// blocks per module: the last few decode steps) as CSV, oldest first: `kernel` (the code) and
/// `name` ([`TIMELINE_KERNELS`]) and `extra` (GEMV: K · 2^24 + N, attention and merge: chunks)
/// come from the tag; times are `%globaltimer` ns, `waited_ns` 0 for a block that did not wait.
/// Returns the number of records.
pub fn write_timeline(path: &std::path::Path) -> Result<usize, String> {
    let a = api()?;
    let map = COMPILED.get().ok_or("no fused kernels were built")?.lock().unwrap();
    let mut out = String::from("module,seq,kernel,name,extra,grid,block,sm,start_ns,waited_ns,end_ns\n");
    let mut n = 0;
    for (mi, k) in map.values().filter_map(|r| r.as_ref().ok()).enumerate() {
        let global = |name: &str| -> Result<(u64, usize), String> {
            let c = CString::new(name).unwrap();
            let (mut ptr, mut bytes) = (0u64, 0usize);
            a.cu(unsafe { (a.module_get_global)(&mut ptr, &mut bytes, k.module.0, c.as_ptr()) }, name)?;
            Ok((ptr, bytes))
        };
        let ((rec, rec_bytes), (next, _)) = (global("tl_records")?, global("tl_next")?);
        let n_rec = (rec_bytes / 8 / TIMELINE_FIELDS) as i64;
        // SAFETY: the module's globals, alive as long as the module (never unloaded); copied out.
        let copy = |ptr: u64, len: i64| unsafe { Tensor::from_blob(ptr as *const u8, &[len], &[1], Kind::Int64, k.device) }.to_device(Device::Cpu);
        let next = i64::try_from(&copy(next, 1)).map_err(|e| e.to_string())?;
        let records = Vec::<i64>::try_from(&copy(rec, n_rec * TIMELINE_FIELDS as i64)).map_err(|e| e.to_string())?;
        let mut rows: Vec<&[i64]> = records.chunks(TIMELINE_FIELDS).filter(|r| r[7] != 0 && r[0] >= next - n_rec).collect();
        rows.sort_by_key(|r| r[0]);
        for r in rows {
            let name = TIMELINE_KERNELS.get((r[1] & 0xff) as usize).copied().unwrap_or("?");
            out.push_str(&format!("{mi},{},{},{name},{},{},{},{},{},{},{}\n", r[0], r[1] & 0xff, r[1] >> 8, r[2], r[3], r[4], r[5], r[6], r[7]));
            n += 1;
        }
    }
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(n)
}

/// The compiled kernels, from a file in the temporary directory named by the hash of the source
/// and the options when an earlier process compiled them (NVRTC takes seconds per shape).
fn cached_cubin(options: &[String]) -> Result<Vec<u8>, String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(SOURCE.as_bytes());
    for o in options {
        h.update([0u8]);
        h.update(o.as_bytes());
    }
    let hex: String = h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
    let path = std::env::temp_dir().join(format!("rhx-kernels-{hex}.cubin"));
    if let Ok(bin) = std::fs::read(&path) {
        return Ok(bin);
    }
    let bin = nvrtc()?.compile(options)?;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    if std::fs::write(&tmp, &bin).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
    Ok(bin)
}

/// Compiles the kernels for `spec` and compute capability `arch` without a GPU (NVRTC only) and
/// returns the size of the machine code: what the CPU-only tests use to check the CUDA source.
/// The core and the parts a process would build for `batches` (the GEMVs of a batch of at most
/// `FUSED_MAX_BATCH` rows, the q|k|v GEMVs with RoPE for `-batch`, the wide GEMM for more); `timeline`: the measurement build, one
/// module of everything.
pub fn compile_check(spec: &Spec, arch: (i32, i32), timeline: bool, batches: &[i64]) -> Result<usize, String> {
    if let Some(why) = spec.unsupported() {
        return Err(format!("fused kernels do not cover this shape: {why}"));
    }
    let knobs = KernelKnobs { timeline, ..KernelKnobs::default() };
    let wide = spec.wide_gemm_unsupported(arch);
    let parts: Vec<Part> = if timeline {
        vec![Part::All { wide: wide.is_none() }]
    } else {
        let mut parts = vec![Part::Core];
        for &b in batches {
            parts.push(match b {
                1..=FUSED_MAX_BATCH => Part::Gemv(b),
                -8..=-1 => Part::GemvRope(-b),
                _ if b <= WIDE_ROWS[3] => match &wide {
                    None => Part::Wide,
                    Some(why) => return Err(format!("batch {b}: {why}")),
                },
                _ => return Err(format!("batch {b}: no kernels are built for it")),
            });
        }
        parts
    };
    let mut bytes = 0;
    for part in parts {
        let bin = nvrtc()?.compile(&spec.options(arch, &knobs, part)).map_err(|e| format!("{part:?}: {e}"))?;
        // A part whose `#if` left its kernels out would compile to an empty module: look for
        // one entry point of each kind the loader asks for.
        let names = match part {
            Part::Core => vec!["rope_kv".to_string(), "attn_combine".into()],
            Part::Gemv(b) => vec![format!("gemv_b{b}_m2_x2_s1")],
            Part::GemvRope(b) => vec![format!("gemv_b{b}_m3_x2_s1")],
            Part::Wide => vec!["wgemm_r128_m2".into()],
            Part::All { wide } => ["attn_combine", "gemv_b8_m2_x2_s1", "gemv_b1_m1_x2_s2", "gemv_b1_m3_x2_s2"].into_iter().chain(wide.then_some("wgemm_r16_m0")).map(String::from).collect(),
        };
        if let Some(missing) = names.iter().find(|n| !bin.windows(n.len() + 1).any(|w| w[..n.len()] == *n.as_bytes() && w[n.len()] == 0)) {
            return Err(format!("{part:?}: no kernel {missing} in the compiled module"));
        }
        bytes += bin.len();
    }
    Ok(bytes)
}

/// Dynamic shared memory of the wide GEMM for `rows` batch rows: two stages of activations
/// (`WG_XS` = 32·`WGEMM_U` + 32 two-byte elements per row in the source, `WGEMM_U` = 4), which
/// the block's partial tile (`WG_RS` = 132 floats per row) reuses after the last stage.
fn wide_smem(rows: i64) -> i64 {
    (2 * rows * (32 * 4 + 32) * 2).max(rows * 132 * 4)
}

/// The cluster size S (1, 2, 4 or 8, at most the 32-k pieces of K) that splits K for `tiles`
/// output tiles on a GPU of `slots` resident blocks: the fewest that fill two thirds of the
/// slots — enough weight loads in flight to stream at full bandwidth (the step is memory-bound:
/// an SM with one block instead of two costs nothing while HBM is busy), and no second wave
/// where one suffices. Doubling S until a wave is full — the first version — gave the 48 tiles
/// of a Llama-3-8B q|k|v projection 384 blocks on 264 slots: a second wave 45 % full.
pub fn wide_splits(tiles: i64, pieces: i64, slots: i64) -> i64 {
    let mut s = 1;
    while 3 * tiles * s < 2 * slots && s * 2 <= pieces.min(8) {
        s *= 2;
    }
    s
}

/// Kernel arguments, each in an 8-byte slot (the driver reads the argument's size from it).
struct Args {
    slots: Vec<u64>,
    /// Where each argument starts in `slots` (a struct argument takes several).
    starts: Vec<usize>,
}

impl Args {
    fn new() -> Self {
        Self { slots: Vec::with_capacity(32), starts: Vec::with_capacity(20) }
    }
    fn slot(mut self, v: u64) -> Self {
        self.starts.push(self.slots.len());
        self.slots.push(v);
        self
    }
    fn t(self, t: &Tensor) -> Self {
        self.slot(t.data_ptr() as u64)
    }
    fn opt(self, t: Option<&Tensor>) -> Self {
        self.slot(t.map(|t| t.data_ptr() as u64).unwrap_or(0))
    }
    fn i32(self, v: i64) -> Self {
        self.slot(v as i32 as u32 as u64)
    }
    fn i64(self, v: i64) -> Self {
        self.slot(v as u64)
    }
    fn f32(self, v: f64) -> Self {
        self.slot((v as f32).to_bits() as u64)
    }
    /// A struct argument whose fields are each 8 bytes (pointers, 64-bit integers, or a float
    /// in the low half of a padded slot), in declaration order.
    fn record(mut self, fields: &[u64]) -> Self {
        self.starts.push(self.slots.len());
        self.slots.extend_from_slice(fields);
        self
    }
    /// `RopeOut` of the source: all zero without RoPE.
    fn rope(self, r: Option<&RopeArgs>) -> Self {
        let fields = match r {
            None => [0; 9],
            Some(r) => {
                let p = |t: &Tensor| t.data_ptr() as u64;
                [p(r.pos), p(r.inv_freq), (r.attn_scale as f32).to_bits() as u64, r.keep.map(p).unwrap_or(0), p(r.q), p(r.kc), p(r.vc), r.kc.size()[2] as u64, p(r.col)]
            }
        };
        self.record(&fields)
    }
}

/// What the q|k|v GEMV with RoPE ([`GemvMode::Rope`]) writes instead of its output: what
/// [`Kernels::rope_kv`] would (queries after RoPE and the uniform-attention mask, the new key
/// and value in the caches at `*col`).
pub struct RopeArgs<'a> {
    /// `[B]` int64: each row's RoPE position.
    pub pos: &'a Tensor,
    /// `[ROT / 2]` f32.
    pub inv_freq: &'a Tensor,
    pub attn_scale: f64,
    /// `[B, Hq]`: the uniform-attention mask, when that mask mode is on.
    pub keep: Option<&'a Tensor>,
    /// `[B, Hq · hd]`.
    pub q: &'a Tensor,
    /// `[B, Hkv, capacity, hd]` each.
    pub kc: &'a Tensor,
    pub vc: &'a Tensor,
    /// `[1]` int64: the cache column of this step.
    pub col: &'a Tensor,
}

fn blocks(n: i64, per: i64) -> u32 {
    ((n + per - 1) / per) as u32
}

impl Kernels {
    /// Turns the tensor-core attention kernel on or off (it is on when built; tests compare it
    /// with the FMA kernel). Returns whether it was built for this shape.
    pub fn set_tensor_core_attention(&self, on: bool) -> bool {
        self.use_mma.store(on, std::sync::atomic::Ordering::Relaxed);
        self.attn_mma.is_some()
    }

    /// Compiles and loads what a step of `batch` rows launches beyond the core kernels — the
    /// GEMVs of that batch size, or the wide GEMMs when they take it — unless done already.
    /// Module loading must not happen while a stream captures a CUDA graph: the decoding loop
    /// calls this before the first step of each batch size. `Err` only when the GEMVs do not
    /// build (the step then has no fused path).
    pub fn prepare(&self, batch: i64) -> Result<(), String> {
        // The RoPE GEMVs and the wide GEMM have fallbacks (`rope_kv`, cuBLAS): when they do not
        // build, their first build says so once and `uses_rope_gemv` / `uses_wide_gemm` are false.
        if batch <= FUSED_MAX_BATCH {
            self.gemv_set(batch)?;
            if self.rope_in_gemv() {
                let _ = self.gemv_rope_set(batch);
            }
        } else if batch <= self.wide_rows.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = self.wide_set();
        }
        Ok(())
    }

    /// Whether a step of `batch` rows runs its projections and LM head on the wide GEMMs
    /// (prepared, and `batch` within `RHX_WGEMM`); else on cuBLAS.
    pub fn uses_wide_gemm(&self, batch: i64) -> bool {
        batch > FUSED_MAX_BATCH && batch <= self.wide_rows.load(std::sync::atomic::Ordering::Relaxed) && matches!(self.wide.get(), Some(Ok(_)))
    }

    /// Sets the largest batch the wide GEMMs take (0: none) for this process's steps from now
    /// on, whatever `RHX_WGEMM` said (tests compare both paths; trace keys hold `RHX_WGEMM`, not
    /// this). Returns why they cannot run here, if they cannot.
    pub fn set_wide_gemm_rows(&self, rows: i64) -> Result<(), String> {
        self.wide_rows.store(rows.min(WIDE_ROWS[3]), std::sync::atomic::Ordering::Relaxed);
        match rows > FUSED_MAX_BATCH {
            true => self.wide_set().map(|_| ()),
            false => Ok(()),
        }
    }

    /// Whether steps of at most 8 rows are to apply RoPE in the q|k|v GEMV ([`GemvMode::Rope`])
    /// of models without q/k norm, instead of launching [`Kernels::rope_kv`].
    pub fn rope_in_gemv(&self) -> bool {
        self.rope_gemv.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a step of `batch` rows does ([`Kernels::rope_in_gemv`], and its GEMVs built).
    pub fn uses_rope_gemv(&self, batch: i64) -> bool {
        batch <= FUSED_MAX_BATCH && self.rope_in_gemv() && matches!(self.gemv_rope[(batch - 1) as usize].get(), Some(Ok(_)))
    }

    /// Sets [`Kernels::rope_in_gemv`] for this process's steps from now on, whatever
    /// `RHX_ROPE_GEMV` said (tests compare both; trace keys hold `RHX_ROPE_GEMV`, not this).
    pub fn set_rope_in_gemv(&self, on: bool) {
        self.rope_gemv.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// A module with `part`'s kernels: the timeline build's one module, else compiled (or read
    /// from the cubin cache) and loaded now.
    fn part_module(&self, part: Part) -> Result<Module, String> {
        if self.one_module {
            return Ok(self.module);
        }
        api()?.ensure_context(self.ordinal)?;
        load_module(&cached_cubin(&self.spec.options(self.arch, &self.knobs, part))?)
    }

    fn gemv_set(&self, batch: i64) -> Result<&GemvSet<3, 2>, String> {
        self.gemv[(batch - 1) as usize].get_or_init(|| self.build_gemvs(Part::Gemv(batch), [0, 1, 2], [0, 1])).as_ref().map_err(Clone::clone)
    }

    fn gemv_rope_set(&self, batch: i64) -> Result<&GemvSet<1, 1>, String> {
        let build = || {
            let r = self.build_gemvs(Part::GemvRope(batch), [3], [3]);
            if let Err(e) = &r {
                eprintln!("rhx: q|k|v GEMV with RoPE for {batch} rows unavailable, RoPE runs on its own: {e}");
            }
            r
        };
        self.gemv_rope[(batch - 1) as usize].get_or_init(build).as_ref().map_err(Clone::clone)
    }

    /// The GEMVs of `modes` (and at batch 1 the K-split ones of `split_modes`) from `part`.
    fn build_gemvs<const M: usize, const SM: usize>(&self, part: Part, modes: [usize; M], split_modes: [usize; SM]) -> Result<GemvSet<M, SM>, String> {
        let (Part::Gemv(batch) | Part::GemvRope(batch)) = part else { unreachable!("GEMV parts only") };
        assert!((1..=FUSED_MAX_BATCH).contains(&batch), "GEMV batch {batch}");
        let m = self.part_module(part)?;
        let xs_func = |name: String, xs: usize| if xs > 0 { function_smem(m, &name, self.smem_optin) } else { function(m, &name) };
        let funcs = |b: i64, mode: usize, s: usize| -> Result<[Func; 3], String> {
            let mut row = [Func(std::ptr::null_mut()); 3];
            for (xs, slot) in row.iter_mut().enumerate() {
                *slot = xs_func(format!("gemv_b{b}_m{mode}_x{xs}_s{s}"), xs)?;
            }
            Ok(row)
        };
        let mut set = GemvSet { modes: [[Func(std::ptr::null_mut()); 3]; M], split: None };
        for (slot, mode) in set.modes.iter_mut().zip(modes) {
            *slot = funcs(batch, mode, 1)?;
        }
        if batch == 1 {
            let mut split = [[Func(std::ptr::null_mut()); 3]; SM];
            for (slot, mode) in split.iter_mut().zip(split_modes) {
                *slot = funcs(1, mode, 2)?;
            }
            set.split = Some(split);
        }
        Ok(set)
    }

    fn wide_set(&self) -> Result<&WideSet, String> {
        let build = || -> Result<WideSet, String> {
            if let Some(why) = self.spec.wide_gemm_unsupported(self.arch) {
                return Err(format!("the wide GEMM does not cover this model or GPU: {why}"));
            }
            if api()?.launch_kernel_ex.is_none() {
                return Err("the wide GEMM needs cuLaunchKernelEx (CUDA 12 driver)".into());
            }
            let m = self.part_module(Part::Wide)?;
            let mut set = [[Func(std::ptr::null_mut()); 2]; 4];
            for (rows, row) in WIDE_ROWS.iter().zip(set.iter_mut()) {
                for (slot, mode) in row.iter_mut().zip([0, 2]) {
                    *slot = function_smem(m, &format!("wgemm_r{rows}_m{mode}"), wide_smem(*rows))?;
                }
            }
            Ok(WideSet(set))
        };
        let build_once = || {
            let r = build();
            if let Err(e) = &r {
                eprintln!("rhx: wide tensor-core GEMM unavailable, wide steps use cuBLAS: {e}");
            }
            r
        };
        self.wide.get_or_init(build_once).as_ref().map_err(Clone::clone)
    }

    fn launch(&self, f: Func, grid: (u32, u32, u32), block: u32, args: Args) {
        self.launch_smem(f, grid, block, 0, args)
    }

    fn launch_smem(&self, f: Func, grid: (u32, u32, u32), block: u32, smem: u32, args: Args) {
        self.launch_cluster(f, grid, block, smem, None, args)
    }

    /// Launches `f` on libtorch's current stream: with programmatic dependent launch when on,
    /// in clusters of `cluster` blocks along x when given.
    fn launch_cluster(&self, f: Func, grid: (u32, u32, u32), block: u32, smem: u32, cluster: Option<u32>, mut args: Args) {
        let a = api().expect("kernels exist only when the API loaded");
        let stream = super::cuda::current_stream(self.device).expect("CUDA shim loaded with the kernels");
        let base = args.slots.as_mut_ptr();
        // SAFETY: every start indexes `slots`, which is not resized from here on.
        let mut ptrs: Vec<Ptr> = args.starts.iter().map(|&i| unsafe { base.add(i) } as Ptr).collect();
        let mut attrs = Vec::with_capacity(2);
        if self.pdl {
            let mut attr = LaunchAttribute { id: PDL_ATTRIBUTE, pad: [0; 4], value: [0; 64] };
            attr.value[0] = 1; // programmaticStreamSerializationAllowed = 1
            attrs.push(attr);
        }
        if let Some(c) = cluster {
            let mut attr = LaunchAttribute { id: CLUSTER_ATTRIBUTE, pad: [0; 4], value: [0; 64] };
            for (i, d) in [c, 1, 1].into_iter().enumerate() {
                attr.value[4 * i..4 * i + 4].copy_from_slice(&d.to_ne_bytes());
            }
            attrs.push(attr);
        }
        let rc = match a.launch_kernel_ex.filter(|_| !attrs.is_empty()) {
            Some(ex) => {
                let cfg = LaunchConfig { grid: [grid.0, grid.1, grid.2], block: [block, 1, 1], shared_mem_bytes: smem, stream, attrs: attrs.as_mut_ptr(), num_attrs: attrs.len() as c_uint };
                unsafe { ex(&cfg, f.0, ptrs.as_mut_ptr(), std::ptr::null_mut()) }
            }
            None => unsafe { (a.launch_kernel)(f.0, grid.0, grid.1, grid.2, block, 1, 1, smem, stream, ptrs.as_mut_ptr(), std::ptr::null_mut()) },
        };
        if let Err(e) = a.cu(rc, "cuLaunchKernel") {
            panic!("fused decode kernel on cuda:{}: {e}", self.ordinal);
        }
    }

    /// Columns per chunk and chunk count of the attention kernel for this GPU (one wave of
    /// blocks).
    pub fn attention_chunks(&self, capacity: i64, batch: i64, kv_heads: i64) -> (i64, i64) {
        attention_chunks(capacity, batch, kv_heads, self.attention_blocks)
    }

    /// `out[b] = w · round(x[b] / rms(x[b]))` for `x: [B, d]`.
    pub fn rmsnorm(&self, x: &Tensor, w: &Tensor, out: &Tensor, eps: f64) {
        let s = x.size();
        let (b, d) = (s[0], s[1]);
        self.launch(self.rmsnorm, (b as u32, 1, 1), 256.min(((d + 31) / 32 * 32) as u32), Args::new().t(x).t(w).t(out).i32(d).f32(eps));
    }

    /// `x[b] = round(x[b] + y[b])` in place, then `out[b] = w · round(x[b] / rms(x[b]))`.
    pub fn add_rmsnorm(&self, x: &Tensor, y: &Tensor, w: &Tensor, out: &Tensor, eps: f64) {
        let s = x.size();
        let (b, d) = (s[0], s[1]);
        debug_assert!(y.is_contiguous() && y.size() == s, "y: [B, d] contiguous");
        self.launch(self.add_rmsnorm, (b as u32, 1, 1), 256.min(((d + 31) / 32 * 32) as u32), Args::new().t(x).t(y).t(w).t(out).i32(d).f32(eps));
    }

    /// `out: [B, n] = round(silu(gate)) · up` for `gu: [B, 2n] = [gate | up]`.
    pub fn silu_mul(&self, gu: &Tensor, out: &Tensor) {
        let (b, n) = (out.size()[0], out.size()[1]);
        debug_assert!(gu.is_contiguous() && gu.size() == [b, 2 * n], "gu: [B, 2n] contiguous");
        let total = b * n;
        self.launch(self.silu_mul, (blocks(total, 256).min(8 * self.sms as u32), 1, 1), 256, Args::new().t(gu).t(out).i32(n).i32(total));
    }

    /// `y: [B, N]` from `x: [B, K]` and `w: [N, K]` (`[2N, K]` for `SiluMul`), `B ≤ FUSED_MAX_BATCH`;
    /// with `norm = Some((weight, eps))` the GEMV reads RMSNorm(x) (see [`Kernels::can_norm`]).
    #[allow(clippy::too_many_arguments)]
    pub fn gemv(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>, y: &Tensor, mode: GemvMode, norm: Option<(&Tensor, f64)>, rope: Option<&RopeArgs>) {
        let (b, k) = (x.size()[0], x.size()[1]);
        assert_eq!(matches!(mode, GemvMode::Rope), rope.is_some(), "RopeArgs go with GemvMode::Rope");
        // `Rope` writes no `y`: its rows are all of W's.
        let n = if rope.is_some() { w.size()[0] } else { y.size()[1] };
        let res = matches!(mode, GemvMode::Residual).then_some(y);
        let staged = b * k * self.elem_bytes <= self.smem_optin;
        assert!(staged || norm.is_none(), "normalising GEMV over rows that do not fit in shared memory");
        let xs = if norm.is_some() { 2 } else { staged as usize };
        let smem = if xs > 0 { (b * k * self.elem_bytes) as u32 } else { 0 };
        let args = Args::new().t(x).t(w).opt(bias).t(y).opt(res).i32(n).i32(k).opt(norm.map(|p| p.0)).f32(norm.map(|p| p.1).unwrap_or(0.0)).rope(rope);
        // One warp per two output rows (per gate/up pair for SiluMul), eight warps per block;
        // at batch 1 two warps per row pair when that many rows fill under two waves of blocks.
        let warps = if matches!(mode, GemvMode::SiluMul) { n } else { (n + 1) / 2 };
        let threads = self.gemv_threads;
        let splits = b == 1 && !matches!(mode, GemvMode::SiluMul) && (k * self.elem_bytes) % 32 == 0 && blocks(warps * 32, threads) < self.split_below_blocks;
        let prepared = "Kernels::prepare(batch) ran before a step of this batch";
        let (f, warps) = if matches!(mode, GemvMode::Rope) {
            let set = self.gemv_rope_set(b).expect(prepared);
            match &set.split {
                Some(split) if splits => (split[0][xs], warps * 2),
                _ => (set.modes[0][xs], warps),
            }
        } else {
            let set = self.gemv_set(b).expect(prepared);
            match &set.split {
                Some(split) if splits => (split[mode as usize][xs], warps * 2),
                _ => (set.modes[mode as usize][xs], warps),
            }
        };
        // At batch 1 at most `grid_cap` blocks (one wave), each walking the same number of row
        // pairs: the grid is divided evenly over the walks, so no walk is mostly idle (the LM
        // head's 8016 blocks: 31 walks of 259 blocks, not 30.4 of 264).
        let grid = blocks(warps * 32, threads);
        let grid = if b == 1 && self.grid_cap > 0 && grid > self.grid_cap { grid.div_ceil(grid.div_ceil(self.grid_cap)) } else { grid };
        self.launch_smem(f, (grid, 1, 1), threads as u32, smem, args);
    }

    /// `y: [M, N]` from `x: [M, K]` and `w: [N, K]` (`[2N, K]` for `SiluMul`) on the wide GEMMs
    /// (`wgemm` in the source), `FUSED_MAX_BATCH < M ≤` [`Kernels::uses_wide_gemm`]'s limit;
    /// `Plain` or `SiluMul` epilogue. K is split over a cluster of S blocks per tile of 128
    /// outputs (64 for `SiluMul`): S, a power of two up to 8, the fewest that make about one
    /// wave of blocks.
    pub fn wgemm(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>, y: &Tensor, mode: GemvMode) {
        let (m, k) = (x.size()[0], x.size()[1]);
        let n = y.size()[1];
        let set = self.wide_set().expect("Kernels::prepare(batch) ran before a wide step");
        let ri = WIDE_ROWS.iter().position(|&r| m <= r).expect("at most 128 rows");
        let (mi, tile) = match mode {
            GemvMode::Plain => (0, 128),
            GemvMode::SiluMul => (1, 64),
            GemvMode::Residual | GemvMode::Rope => unreachable!("the wide GEMM has no residual or RoPE epilogue"),
        };
        debug_assert!(x.is_contiguous() && w.is_contiguous() && y.is_contiguous() && k % 32 == 0, "contiguous rows of whole 32-element pieces");
        let tiles = (n + tile - 1) / tile;
        let splits = wide_splits(tiles, k / 32, if WIDE_ROWS[ri] <= 64 { 2 } else { 1 } * self.sms);
        let args = Args::new().t(x).t(w).opt(bias).t(y).i32(m).i32(n).i32(k);
        self.launch_cluster(set.0[ri][mi], (splits as u32, tiles as u32, 1), 256, wide_smem(WIDE_ROWS[ri]) as u32, Some(splits as u32), args);
    }

    /// Whether a GEMV over `batch` rows of `k` can normalise its input itself (the rows fit in
    /// a block's shared memory).
    pub fn can_norm(&self, batch: i64, k: i64) -> bool {
        batch <= FUSED_MAX_BATCH && batch * k * self.elem_bytes <= self.smem_optin
    }

    /// RoPE (+ q/k norm, + uniform-attention mask) on `qkv: [B, (Hq + 2 Hkv) · hd]`; rotated
    /// queries into `q: [B, Hq · hd]`, the new key and value into the caches at `*col`.
    #[allow(clippy::too_many_arguments)]
    pub fn rope_kv(&self, qkv: &Tensor, pos: &Tensor, inv_freq: &Tensor, attn_scale: f64, qk_norm: Option<(&Tensor, &Tensor)>, eps: f64, keep: Option<&Tensor>, q: &Tensor, kc: &Tensor, vc: &Tensor, col: &Tensor, heads: (i64, i64, i64)) {
        let (nq, nkv, hd) = heads;
        let b = qkv.size()[0];
        let cap = kc.size()[2];
        let args = Args::new().t(qkv).t(pos).t(inv_freq).f32(attn_scale).opt(qk_norm.map(|p| p.0)).opt(qk_norm.map(|p| p.1)).f32(eps).opt(keep).t(q).t(kc).t(vc).i64(cap).t(col);
        self.launch(self.rope_kv, (b as u32, (nq + 2 * nkv) as u32, 1), ((hd + 31) / 32 * 32) as u32, args);
    }

    /// Decode attention with the argmax capture for one layer (see the kernels' comments): the
    /// chunks' partials, then their merge into `out` (`[B, Hq · hd]`), `argmax` and `weight`
    /// (`[B, Hq]`), and with `eq2` Eq. 2's score into `eq2.out` (`[B, Hq]`).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(&self, q: &Tensor, kc: &Tensor, vc: &Tensor, col: &Tensor, key_ok: &Tensor, chunks: (i64, i64), scale: f64, keep: Option<&Tensor>, zero_out: bool, partials: &Tensor, out: &Tensor, argmax: &Tensor, weight: &Tensor, eq2: Option<&Eq2Args>) {
        let s = kc.size();
        let (b, nkv, cap, hd) = (s[0], s[1], s[2], s[3]);
        let nq = argmax.size()[1];
        let (chunk, n) = chunks;
        let mma = self.attn_mma.filter(|_| self.use_mma.load(std::sync::atomic::Ordering::Relaxed));
        let attn = mma.or(self.attn_1.filter(|_| n * nkv * b <= self.sms)).unwrap_or(self.attn)[eq2.is_some() as usize];
        let mut args = Args::new().t(q).t(kc).t(vc).i64(cap).t(col).t(key_ok).i32(chunk).i32(n).f32(scale).t(partials);
        args = match eq2 {
            Some(e) => {
                debug_assert!(e.needle.kind() == Kind::Float && e.needle.is_contiguous() && e.needle.size()[0] == b, "needle: [B, P] f32, contiguous");
                debug_assert!(e.pos.kind() == Kind::Int64 && e.pos.is_contiguous() && e.pos.numel() as i64 == b, "positions: [B] int64");
                args.t(e.needle).i32(e.needle.size()[1]).t(e.pos).i64(e.sink).i64(e.local)
            }
            None => args.opt(None).i32(0).opt(None).i64(0).i64(0),
        };
        self.launch(attn, (n as u32, nkv as u32, b as u32), 256, args);
        let args = Args::new().t(partials).i32(n).opt(keep).i32(zero_out as i64).t(out).t(argmax).t(weight).opt(eq2.map(|e| e.out));
        // `CB` in the source.
        self.launch(self.combine, (nq as u32, b as u32, 1), if hd <= 128 { 128 } else { 256 }, args);
    }
}

/// Eq. 2's inputs and output for [`Kernels::attention`] (see `Eq2` in the source and
/// `ReasoningRequest` in `model.rs`).
pub struct Eq2Args<'a> {
    /// `[B, P]` f32 contiguous: needle membership of the first `P` cache columns.
    pub needle: &'a Tensor,
    /// `[B, 1]` int64 contiguous: each row's RoPE position at this step (its left padding is
    /// the column minus it).
    pub pos: &'a Tensor,
    /// The first `sink` tokens of a sequence are left out of the denominator.
    pub sink: i64,
    /// The last `local` keys (the query included) are left out of the denominator.
    pub local: i64,
    /// `[B, Hq]` f32: the scores.
    pub out: &'a Tensor,
}

/// Scratch of the attention kernel: `[B · Hq · chunks · (hd + 5)]` f32 chunk partials (`PS` in
/// the source).
pub fn attention_partials(batch: i64, heads: i64, head_dim: i64, chunks: i64, device: Device) -> Tensor {
    Tensor::empty([batch * heads * chunks * (head_dim + 5)], (Kind::Float, device))
}

/// Columns per chunk and chunk count for the attention kernel: about `blocks` blocks in all
/// (one wave: resident blocks per SM × SMs, [`Kernels::attention_blocks`]), chunks of 128 to
/// 1024 columns (a block walks 64 per iteration; more chunks make the merge longer), a multiple
/// of 64 columns, at most `ATTN_MAX_CHUNKS` chunks.
pub fn attention_chunks(capacity: i64, batch: i64, kv_heads: i64, blocks: i64) -> (i64, i64) {
    let want = (blocks + batch * kv_heads - 1) / (batch * kv_heads);
    let chunk = ((capacity + want - 1) / want).clamp(128, 1024).max((capacity + ATTN_MAX_CHUNKS - 1) / ATTN_MAX_CHUNKS);
    let chunk = (chunk + 63) / 64 * 64;
    (chunk, (capacity + chunk - 1) / chunk)
}
