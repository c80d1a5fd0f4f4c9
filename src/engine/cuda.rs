//! CUDA features that `tch` does not expose: CUDA graphs (`at::cuda::CUDAGraph`), a side stream to
//! capture them on, the caching allocator's statistics (peak memory) and `cudaMemGetInfo`.
//!
//! They come from a small C++ shim (`csrc/cuda_shim.cpp`) that `build.rs` compiles against
//! libtorch's headers and the binary embeds. At run time it is written to a temporary file and
//! `dlopen`ed — only after `device::cuda_status()` has loaded `libtorch_cuda.so` with
//! `RTLD_GLOBAL`, which is where its symbols resolve. A binary built without the headers, or a
//! CPU-only run, never loads it; every caller has a path without it (eager decode steps, no
//! memory statistics).
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use tch::Device;

type FnI = unsafe extern "C" fn(c_int) -> c_int;
type FnV = unsafe extern "C" fn() -> c_int;
type FnP = unsafe extern "C" fn(*mut c_void) -> c_int;

pub struct Shim {
    last_error: unsafe extern "C" fn() -> *const c_char,
    side_enter: FnI,
    side_exit: FnV,
    graph_new: unsafe extern "C" fn() -> *mut c_void,
    graph_free: unsafe extern "C" fn(*mut c_void),
    capture_begin: FnP,
    capture_end: FnP,
    replay: FnP,
    synchronize: FnI,
    memory_stats: unsafe extern "C" fn(c_int, *mut i64) -> c_int,
    reset_peak: FnI,
    empty_cache: FnV,
    device_info: unsafe extern "C" fn(c_int, *mut i64, *mut c_char, c_int) -> c_int,
    current_stream: unsafe extern "C" fn(c_int, *mut *mut c_void) -> c_int,
}

static SHIM: OnceLock<Result<Shim, String>> = OnceLock::new();

/// The loaded shim, or why it is not available (CPU-only build, no CUDA, load failure).
pub fn shim() -> Result<&'static Shim, String> {
    SHIM.get_or_init(load).as_ref().map_err(Clone::clone)
}

#[cfg(rhx_cuda_shim)]
const SHIM_BYTES: Option<&[u8]> = Some(include_bytes!(env!("RHX_CUDA_SHIM_PATH")));
#[cfg(not(rhx_cuda_shim))]
const SHIM_BYTES: Option<&[u8]> = None;

fn load() -> Result<Shim, String> {
    let bytes = SHIM_BYTES.ok_or("this rhx was built without the CUDA shim (see build.rs: CUDA runtime headers missing)")?;
    super::device::cuda_status()?;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let name = format!("rhx-cuda-shim-{}.so", digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>());
    let path = std::env::temp_dir().join(name);
    if std::fs::read(&path).map(|b| b != bytes).unwrap_or(true) {
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("renaming to {}: {e}", path.display()))?;
    }
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL;
    // SAFETY: the shim's initialisers are empty; its undefined symbols are libtorch_cuda's and
    // the CUDA runtime's, loaded globally by `cuda_status` above.
    let lib = unsafe { libloading::os::unix::Library::open(Some(&path), flags) }.map_err(|e| format!("loading the CUDA shim {}: {e}", path.display()))?;
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: the signatures match csrc/cuda_shim.cpp.
            *unsafe { lib.get($name) }.map_err(|e| format!("CUDA shim: {e}"))?
        };
    }
    let shim = Shim {
        last_error: sym!(b"rhx_shim_last_error\0"),
        side_enter: sym!(b"rhx_side_stream_enter\0"),
        side_exit: sym!(b"rhx_side_stream_exit\0"),
        graph_new: sym!(b"rhx_graph_new\0"),
        graph_free: sym!(b"rhx_graph_free\0"),
        capture_begin: sym!(b"rhx_graph_capture_begin\0"),
        capture_end: sym!(b"rhx_graph_capture_end\0"),
        replay: sym!(b"rhx_graph_replay\0"),
        synchronize: sym!(b"rhx_synchronize\0"),
        memory_stats: sym!(b"rhx_memory_stats\0"),
        reset_peak: sym!(b"rhx_reset_peak\0"),
        empty_cache: sym!(b"rhx_empty_cache\0"),
        device_info: sym!(b"rhx_device_info\0"),
        current_stream: sym!(b"rhx_current_stream\0"),
    };
    std::mem::forget(lib); // stays loaded for the life of the process
    Ok(shim)
}

impl Shim {
    fn check(&self, rc: c_int, what: &str) -> Result<(), String> {
        if rc == 0 {
            Ok(())
        } else {
            // SAFETY: a NUL-terminated thread-local string owned by the shim.
            let msg = unsafe { CStr::from_ptr((self.last_error)()) }.to_string_lossy().into_owned();
            Err(format!("{what}: {msg}"))
        }
    }
}

fn index(device: Device) -> Result<c_int, String> {
    match device {
        Device::Cuda(i) => Ok(i as c_int),
        other => Err(format!("{other:?} is not a CUDA device")),
    }
}

/// Makes a side stream current (it first waits for the current stream's work). CUDA graphs
/// must be captured on a stream other than the default one; run the warm-up there too.
pub fn side_stream_enter(device: Device) -> Result<(), String> {
    let s = shim()?;
    s.check(unsafe { (s.side_enter)(index(device)?) }, "entering the side stream")
}

/// Goes back to the stream that was current before `side_stream_enter`.
pub fn side_stream_exit() -> Result<(), String> {
    let s = shim()?;
    s.check(unsafe { (s.side_exit)() }, "leaving the side stream")
}

/// A captured CUDA graph: the kernels that one decode step launches, replayed with one call.
/// Tensors allocated during capture live in the graph's private memory pool; their addresses
/// are fixed, so inputs are updated in place and outputs read after each replay.
pub struct CudaGraph {
    ptr: *mut c_void,
    captured: bool,
}

impl CudaGraph {
    pub fn new() -> Result<Self, String> {
        let s = shim()?;
        let ptr = unsafe { (s.graph_new)() };
        if ptr.is_null() {
            return Err(s.check(-1, "creating a CUDA graph").unwrap_err());
        }
        Ok(Self { ptr, captured: false })
    }

    /// Starts capturing the work queued on the current stream (thread-local capture mode).
    pub fn capture_begin(&mut self) -> Result<(), String> {
        let s = shim()?;
        s.check(unsafe { (s.capture_begin)(self.ptr) }, "beginning CUDA graph capture")
    }

    pub fn capture_end(&mut self) -> Result<(), String> {
        let s = shim()?;
        s.check(unsafe { (s.capture_end)(self.ptr) }, "ending CUDA graph capture")?;
        self.captured = true;
        Ok(())
    }

    pub fn replay(&self) -> Result<(), String> {
        assert!(self.captured, "replay of a graph that was not captured");
        let s = shim()?;
        s.check(unsafe { (s.replay)(self.ptr) }, "replaying a CUDA graph")
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        if let Ok(s) = shim() {
            unsafe { (s.graph_free)(self.ptr) }
        }
    }
}

/// Waits for all work on the device.
pub fn synchronize(device: Device) {
    match shim() {
        Ok(s) => {
            if let Ok(i) = index(device) {
                let _ = unsafe { (s.synchronize)(i) };
            }
        }
        Err(_) => {
            if let Device::Cuda(i) = device {
                tch::Cuda::synchronize(i as i64);
            }
        }
    }
}

/// libtorch caching-allocator statistics, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryStats {
    pub allocated: i64,
    pub peak_allocated: i64,
    pub reserved: i64,
    pub peak_reserved: i64,
}

pub fn memory_stats(device: Device) -> Result<MemoryStats, String> {
    let s = shim()?;
    let mut v = [0i64; 4];
    s.check(unsafe { (s.memory_stats)(index(device)?, v.as_mut_ptr()) }, "reading allocator statistics")?;
    Ok(MemoryStats { allocated: v[0], peak_allocated: v[1], reserved: v[2], peak_reserved: v[3] })
}

pub fn reset_peak(device: Device) -> Result<(), String> {
    let s = shim()?;
    s.check(unsafe { (s.reset_peak)(index(device)?) }, "resetting peak statistics")
}

/// Returns the allocator's cached, unused blocks to the driver.
pub fn empty_cache() -> Result<(), String> {
    let s = shim()?;
    s.check(unsafe { (s.empty_cache)() }, "emptying the allocator cache")
}

/// Free and total device memory (`cudaMemGetInfo`, bytes) and the device's name.
pub fn device_info(device: Device) -> Result<(i64, i64, String), String> {
    let s = shim()?;
    let mut ft = [0i64; 2];
    let mut name = vec![0 as c_char; 256];
    s.check(unsafe { (s.device_info)(index(device)?, ft.as_mut_ptr(), name.as_mut_ptr(), 256) }, "reading device properties")?;
    let name = unsafe { CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned();
    Ok((ft[0], ft[1], name))
}

/// libtorch's current CUDA stream on `device` (a `cudaStream_t`): kernels launched on it are
/// ordered with libtorch's ops and captured into a graph with them.
pub fn current_stream(device: Device) -> Result<*mut c_void, String> {
    let s = shim()?;
    let mut p: *mut c_void = std::ptr::null_mut();
    s.check(unsafe { (s.current_stream)(index(device)?, &mut p) }, "reading the current CUDA stream")?;
    Ok(p)
}
