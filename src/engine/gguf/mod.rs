//! GGUF (v2/v3, little-endian) reader: metadata, tensor index, and dequantisation to f32.
//!
//! The file is memory-mapped; tensor data is only touched when asked for. Every read of the
//! header is bounds-checked so that malformed or truncated files give a [`GgufError`] naming the
//! file and the offending key or tensor instead of panicking. Dequantisation follows ggml's
//! reference `dequantize_row_*` (ggml-quants.c) operation for operation, so results match
//! ggml / gguf-py bit for bit (Rust never fuses `a * b + c` into an FMA).
//!
//! Caveat inherent to mmap: if another process truncates the file while it is open, touching
//! the missing pages raises SIGBUS; the size checks here only cover the file as it was opened.
//!
//! Layout: this file holds the types and the accessors; `parse.rs` reads the header,
//! metadata and tensor index; `dequant.rs` holds the dequantisation kernels.

mod dequant;
mod parse;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;

use dequant::kernel_for;
use parse::parse;

/// Alignment of the tensor data section when `general.alignment` is absent (GGUF spec).
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most 4 dimensions; gguf.c rejects more, so do we.
pub const MAX_DIMS: usize = 4;
/// Tensors with at least this many elements are dequantised on the rayon pool.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{}: cannot read file: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a GGUF file (bad magic)", path.display())]
    BadMagic { path: PathBuf },
    #[error("{}: unsupported GGUF version {version} (this reader handles little-endian GGUF v2 and v3)", path.display())]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{}: file is truncated: {what}", path.display())]
    Truncated { path: PathBuf, what: String },
    #[error("{}: tensor `{tensor}` has unknown ggml type id {type_id}", path.display())]
    UnknownType {
        path: PathBuf,
        tensor: String,
        type_id: u32,
    },
    #[error("{}: tensor `{tensor}` has type {ggml_type}, which this reader cannot dequantise (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K)", path.display())]
    UnsupportedQuant {
        path: PathBuf,
        tensor: String,
        ggml_type: String,
    },
    #[error("{}: metadata key `{key}` is missing", path.display())]
    MissingKey { path: PathBuf, key: String },
    #[error("{}: metadata key `{key}` does not hold {expected}", path.display())]
    WrongKeyType {
        path: PathBuf,
        key: String,
        expected: &'static str,
    },
    #[error("{}: no tensor named `{name}`", path.display())]
    MissingTensor { path: PathBuf, name: String },
    /// Structurally invalid content that is not a truncation (bad alignment, duplicate names, ...).
    #[error("{}: malformed GGUF: {what}", path.display())]
    Malformed { path: PathBuf, what: String },
}

/// A metadata value. Variant order mirrors the GGUF value type ids (0..=12).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// Any integer that is non-negative (writers are inconsistent about u32 vs i32 for counts).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer representable as i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => i64::try_from(v).ok(),
            GgufValue::I8(v) => Some(v.into()),
            GgufValue::I16(v) => Some(v.into()),
            GgufValue::I32(v) => Some(v.into()),
            GgufValue::I64(v) => Some(v),
            _ => None,
        }
    }

    /// Any number (integers included, since e.g. a rope base may be stored as an integer).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            GgufValue::U64(v) => Some(v as f64),
            GgufValue::I64(v) => Some(v as f64),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// GGUF's name for the value type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            GgufValue::U8(_) => "u8",
            GgufValue::I8(_) => "i8",
            GgufValue::U16(_) => "u16",
            GgufValue::I16(_) => "i16",
            GgufValue::U32(_) => "u32",
            GgufValue::I32(_) => "i32",
            GgufValue::F32(_) => "f32",
            GgufValue::Bool(_) => "bool",
            GgufValue::String(_) => "string",
            GgufValue::Array(_) => "array",
            GgufValue::U64(_) => "u64",
            GgufValue::I64(_) => "i64",
            GgufValue::F64(_) => "f64",
        }
    }
}

/// ggml tensor type. Types this reader does not dequantise are kept as `Other(id)` so files
/// containing them can still be opened and inspected. Always build it with [`GgmlType::from_id`]
/// so that e.g. id 0 is `F32`, never `Other(0)`.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    Other(u32),
}

/// (id, name, elements per block, bytes per block) for every type ggml currently knows.
/// Ids missing here (4, 5, 31-33, 36-38) are types ggml has removed.
const GGML_TYPES: &[(u32, &str, usize, usize)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

impl GgmlType {
    pub fn from_id(id: u32) -> Self {
        match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            30 => GgmlType::BF16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            10 => GgmlType::Q2_K,
            11 => GgmlType::Q3_K,
            12 => GgmlType::Q4_K,
            13 => GgmlType::Q5_K,
            14 => GgmlType::Q6_K,
            15 => GgmlType::Q8_K,
            other => GgmlType::Other(other),
        }
    }

    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::BF16 => 30,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2_K => 10,
            GgmlType::Q3_K => 11,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::Q8_K => 15,
            GgmlType::Other(id) => id,
        }
    }

    fn traits(self) -> Option<&'static (u32, &'static str, usize, usize)> {
        let id = self.id();
        GGML_TYPES.iter().find(|t| t.0 == id)
    }

    /// ggml's name ("Q4_K", "IQ2_XS", ...); "unknown" for ids ggml does not (or no longer) define.
    pub fn name(self) -> &'static str {
        self.traits().map_or("unknown", |t| t.1)
    }

    /// Elements per quantisation block; `None` for unknown ids.
    pub fn block_size(self) -> Option<usize> {
        self.traits().map(|t| t.2)
    }

    /// Bytes per quantisation block; `None` for unknown ids.
    pub fn type_size(self) -> Option<usize> {
        self.traits().map(|t| t.3)
    }

    /// Whether [`GgufFile::dequantize`] handles this type.
    pub fn can_dequantize(self) -> bool {
        !matches!(self, GgmlType::Other(_))
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgmlType::Other(id) if self.traits().is_none() => write!(f, "unknown type id {id}"),
            _ => f.write_str(self.name()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// PyTorch order: GGUF's `ne` reversed, outermost dimension first.
    pub shape: Vec<usize>,
    pub ggml_type: GgmlType,
    /// Absolute file offset of the tensor's data.
    pub offset: u64,
    pub n_bytes: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    alignment: u64,
    data_offset: u64,
    index: HashMap<String, usize>,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<TensorInfo>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("file_len", &self.mmap.len())
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps `path` and parses the header, metadata and tensor index, checking that every
    /// tensor's data lies inside the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io_err)?;
        // SAFETY: the map is read-only and private to this struct; the usual mmap caveat (another
        // process truncating the file) is documented at module level.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io_err)?;
        let parsed = parse(&path, &mmap)?;
        let index = parsed
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            path,
            mmap,
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            index,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section (`general.alignment` or 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset where the tensor data section starts.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&GgufValue, GgufError> {
        self.metadata.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    fn wrong_type(&self, key: &str, expected: &'static str) -> GgufError {
        GgufError::WrongKeyType {
            path: self.path.clone(),
            key: key.to_string(),
            expected,
        }
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.require(key)?
            .as_u64()
            .ok_or_else(|| self.wrong_type(key, "a non-negative integer"))
    }

    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.require(key)?
            .as_i64()
            .ok_or_else(|| self.wrong_type(key, "an integer"))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        self.require(key)?
            .as_f64()
            .ok_or_else(|| self.wrong_type(key, "a number"))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        self.require(key)?
            .as_bool()
            .ok_or_else(|| self.wrong_type(key, "a bool"))
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.require(key)?
            .as_str()
            .ok_or_else(|| self.wrong_type(key, "a string"))
    }

    fn get_array_of<T>(
        &self,
        key: &str,
        expected: &'static str,
        conv: impl Fn(&GgufValue) -> Option<T>,
    ) -> Result<Vec<T>, GgufError> {
        let arr = self
            .require(key)?
            .as_array()
            .ok_or_else(|| self.wrong_type(key, expected))?;
        arr.iter()
            .map(|v| conv(v).ok_or_else(|| self.wrong_type(key, expected)))
            .collect()
    }

    pub fn get_string_array(&self, key: &str) -> Result<Vec<String>, GgufError> {
        self.get_array_of(key, "an array of strings", |v| {
            v.as_str().map(str::to_owned)
        })
    }

    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>, GgufError> {
        self.get_array_of(key, "an array of integers", GgufValue::as_i64)
    }

    pub fn get_f64_array(&self, key: &str) -> Result<Vec<f64>, GgufError> {
        self.get_array_of(key, "an array of numbers", GgufValue::as_f64)
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        // `tensors` is public, so the index may be stale if a caller edited it; fall back to a scan.
        match self.index.get(name).and_then(|&i| self.tensors.get(i)) {
            Some(t) if t.name == name => Some(t),
            _ => self.tensors.iter().find(|t| t.name == name),
        }
    }

    fn info_or_missing(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })
    }

    fn bytes_of(&self, info: &TensorInfo) -> Result<&[u8], GgufError> {
        // Re-checked here (not only in `open`) because `tensors` is public and may have been edited.
        let range = usize::try_from(info.offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(info.n_bytes)?));
        range.and_then(|r| self.mmap.get(r)).ok_or_else(|| GgufError::Truncated {
            path: self.path.clone(),
            what: format!(
                "data of tensor `{}` ({} bytes at offset {}) lies beyond the end of the file ({} bytes)",
                info.name,
                info.n_bytes,
                info.offset,
                self.mmap.len()
            ),
        })
    }

    /// The tensor's bytes exactly as stored (still quantised).
    pub fn raw_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        self.bytes_of(self.info_or_missing(name)?)
    }

    /// Dequantises a tensor to f32, row-major in `shape` order.
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let info = self.info_or_missing(name)?;
        let mut out = vec![0f32; info.n_elements()];
        self.dequantize_info_into(info, &mut out)?;
        Ok(out)
    }

    /// Like [`dequantize`](Self::dequantize) but into a caller-provided buffer (e.g. tensor
    /// storage), which must hold exactly the tensor's element count.
    pub fn dequantize_into(&self, name: &str, out: &mut [f32]) -> Result<(), GgufError> {
        let info = self.info_or_missing(name)?;
        self.dequantize_info_into(info, out)
    }

    fn dequantize_info_into(&self, info: &TensorInfo, out: &mut [f32]) -> Result<(), GgufError> {
        let unsupported = || GgufError::UnsupportedQuant {
            path: self.path.clone(),
            tensor: info.name.clone(),
            ggml_type: info.ggml_type.to_string(),
        };
        let kernel = kernel_for(info.ggml_type).ok_or_else(unsupported)?;
        let (bs, ts) = info
            .ggml_type
            .block_size()
            .zip(info.ggml_type.type_size())
            .ok_or_else(unsupported)?;
        let data = self.bytes_of(info)?;
        let n = info.n_elements();
        if !n.is_multiple_of(bs) || data.len() != n / bs * ts || out.len() != n {
            return Err(GgufError::Malformed {
                path: self.path.clone(),
                what: format!(
                    "tensor `{}`: {} elements of {} need {} bytes, index says {}, output buffer holds {}",
                    info.name,
                    n,
                    info.ggml_type,
                    (n / bs) * ts,
                    data.len(),
                    out.len()
                ),
            });
        }
        if n < PARALLEL_MIN_ELEMENTS {
            kernel(data, out);
        } else {
            // Chunks of whole blocks, ~16k elements each, so every chunk is independent.
            let per_chunk = (16384 / bs).max(1);
            out.par_chunks_mut(per_chunk * bs)
                .zip(data.par_chunks(per_chunk * ts))
                .for_each(|(dst, src)| kernel(src, dst));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_table_is_consistent() {
        for &(id, name, bs, ts) in GGML_TYPES {
            let t = GgmlType::from_id(id);
            assert_eq!(t.id(), id);
            assert_eq!(t.name(), name);
            assert_eq!((t.block_size(), t.type_size()), (Some(bs), Some(ts)));
        }
        assert_eq!(GgmlType::from_id(4).name(), "unknown");
        assert!(GgmlType::from_id(4).block_size().is_none());
        assert_eq!(GgmlType::Other(20).to_string(), "IQ4_NL");
        assert_eq!(GgmlType::Other(99).to_string(), "unknown type id 99");
    }

    #[test]
    fn value_conversions() {
        assert_eq!(GgufValue::I32(-1).as_u64(), None);
        assert_eq!(GgufValue::I32(7).as_u64(), Some(7));
        assert_eq!(GgufValue::U64(u64::MAX).as_i64(), None);
        assert_eq!(GgufValue::U32(3).as_f64(), Some(3.0));
        assert_eq!(GgufValue::F32(0.5).as_u64(), None);
        assert_eq!(GgufValue::String("x".into()).as_str(), Some("x"));
        assert_eq!(GgufValue::Bool(true).as_i64(), None);
    }
}
