//! Device and dtype selection. One binary serves CPU and CUDA: the `torch` wheel's
//! `libtorch_cuda.so` is not a link-time dependency of the binary (the linker drops it as
//! unused), so it is loaded at start-up with `RTLD_GLOBAL` before `tch` asks for a GPU.
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use tch::{Device, Kind};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device `{0}`: expected `auto`, `cpu`, `cuda` or `cuda:N`")]
    UnknownDevice(String),
    #[error("unknown dtype `{0}`: expected `f32`, `bf16` or `f16`")]
    UnknownDtype(String),
    #[error("CUDA was requested but is not usable: {0}")]
    CudaUnavailable(String),
    #[error("CUDA device {index} does not exist: this machine has {count} CUDA device(s)")]
    NoSuchCudaDevice { index: usize, count: usize },
}

/// What the user asked for on the command line or in an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeviceRequest {
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceRequest {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| DeviceError::UnknownDevice(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Floating-point type of weights and activations. Softmax and capture reductions are always
/// computed in f32 whatever this is (as HF eager attention does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DType {
    F32,
    BF16,
    F16,
}

impl DType {
    pub fn kind(self) -> Kind {
        match self {
            Self::F32 => Kind::Float,
            Self::BF16 => Kind::BFloat16,
            Self::F16 => Kind::Half,
        }
    }
}

impl FromStr for DType {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::BF16),
            "f16" | "fp16" | "float16" => Ok(Self::F16),
            _ => Err(DeviceError::UnknownDtype(s.to_string())),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::BF16 => "bf16",
            Self::F16 => "f16",
        })
    }
}

/// Result of trying to make CUDA usable: `Ok(device count)` or why not.
static CUDA: OnceLock<Result<usize, String>> = OnceLock::new();

/// Loads `libtorch_cuda.so` once (next to the `libtorch_cpu.so` this process uses, or through
/// the library search path) and reports how many GPUs `tch` sees, or a sentence saying why none.
pub fn cuda_status() -> Result<usize, String> {
    CUDA.get_or_init(init_cuda).clone()
}

fn init_cuda() -> Result<usize, String> {
    if !std::path::Path::new("/proc/driver/nvidia").exists() && !std::path::Path::new("/dev/nvidiactl").exists() {
        return Err("no NVIDIA driver on this machine (/proc/driver/nvidia and /dev/nvidiactl are absent)".into());
    }
    let mut errors = Vec::new();
    let mut candidates: Vec<String> = Vec::new();
    if let Some(dir) = libtorch_cpu_dir() {
        candidates.push(format!("{dir}/libtorch_cuda.so"));
    }
    candidates.push("libtorch_cuda.so".into());
    let mut loaded = false;
    for cand in &candidates {
        // SAFETY: loading a shared library runs its initialisers; libtorch_cuda's only register
        // CUDA kernels and allocators with the already-loaded libtorch_cpu.
        let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
        match unsafe { libloading::os::unix::Library::open(Some(cand), flags) } {
            Ok(lib) => {
                std::mem::forget(lib); // must stay loaded for the life of the process
                loaded = true;
                break;
            }
            Err(e) => errors.push(format!("{cand}: {e}")),
        }
    }
    if !loaded {
        return Err(format!("could not load libtorch_cuda.so ({})", errors.join("; ")));
    }
    let count = tch::Cuda::device_count() as usize;
    if count == 0 {
        return Err("libtorch_cuda.so loaded but no CUDA device is visible (check CUDA_VISIBLE_DEVICES and the driver)".into());
    }
    Ok(count)
}

/// Directory holding the `libtorch_cpu.so` mapped into this process (from /proc/self/maps).
pub fn libtorch_dir() -> Option<String> {
    libtorch_cpu_dir()
}

fn libtorch_cpu_dir() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| p.rsplit_once('/').map(|(d, _)| d.to_string()))
}

/// Resolves a request to a concrete device. `auto` picks `cuda:0` when usable, else the CPU.
pub fn resolve(req: DeviceRequest) -> Result<Device, DeviceError> {
    match req {
        DeviceRequest::Cpu => Ok(Device::Cpu),
        DeviceRequest::Auto => Ok(match cuda_status() {
            Ok(_) => Device::Cuda(0),
            Err(_) => Device::Cpu,
        }),
        DeviceRequest::Cuda(index) => {
            let count = cuda_status().map_err(DeviceError::CudaUnavailable)?;
            if index >= count {
                return Err(DeviceError::NoSuchCudaDevice { index, count });
            }
            Ok(Device::Cuda(index))
        }
    }
}

/// Human-readable name of a device for logs and provenance.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}
