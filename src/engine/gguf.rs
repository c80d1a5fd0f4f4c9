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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;

/// Alignment of the tensor data section when `general.alignment` is absent (GGUF spec).
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most 4 dimensions; gguf.c rejects more, so do we.
pub const MAX_DIMS: usize = 4;
/// Nested metadata arrays deeper than this are rejected (guards the recursive parser's stack).
const MAX_ARRAY_DEPTH: usize = 16;
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

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

struct Parsed {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<TensorInfo>,
}

/// Bounds-checked little-endian reader over the mapped file.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn truncated(&self, what: impl fmt::Display, need: u64) -> GgufError {
        GgufError::Truncated {
            path: self.path.to_path_buf(),
            what: format!(
                "{what}: needs {need} bytes at offset {}, but the file is {} bytes long",
                self.pos,
                self.buf.len()
            ),
        }
    }

    fn malformed(&self, what: String) -> GgufError {
        GgufError::Malformed {
            path: self.path.to_path_buf(),
            what,
        }
    }

    fn take(&mut self, n: u64, what: &dyn fmt::Display) -> Result<&'a [u8], GgufError> {
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => {
                let s = &self.buf[self.pos..self.pos + n];
                self.pos += n;
                Ok(s)
            }
            _ => Err(self.truncated(what, n)),
        }
    }

    fn array<const N: usize>(&mut self, what: &dyn fmt::Display) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn fmt::Display) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn fmt::Display) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// GGUF strings are u64-length-prefixed UTF-8. Invalid UTF-8 is replaced (U+FFFD) rather than
    /// rejected, matching llama.cpp, which does not validate either.
    fn string(&mut self, what: &dyn fmt::Display) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(
        &mut self,
        type_id: u32,
        depth: usize,
        what: &dyn fmt::Display,
    ) -> Result<GgufValue, GgufError> {
        Ok(match type_id {
            0 => GgufValue::U8(u8::from_le_bytes(self.array(what)?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.array(what)?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.array(what)?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => GgufValue::Bool(self.array::<1>(what)?[0] != 0),
            8 => GgufValue::String(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.malformed(format!(
                        "{what}: arrays nested more than {MAX_ARRAY_DEPTH} deep"
                    )));
                }
                let elem_type = self.u32(what)?;
                let len = self.u64(what)?;
                let min_size =
                    match elem_type {
                        0 | 1 | 7 => 1u64,
                        2 | 3 => 2,
                        4..=6 => 4,
                        8 | 10..=12 => 8,
                        9 => 12,
                        _ => return Err(self.malformed(format!(
                            "{what}: array element type id {elem_type} is not a GGUF value type"
                        ))),
                    };
                // Reject impossible lengths before allocating anything.
                match len.checked_mul(min_size) {
                    Some(need) if need <= self.remaining() as u64 => {}
                    _ => {
                        return Err(self.truncated(
                            format_args!("{what}: array of {len} elements"),
                            len.saturating_mul(min_size),
                        ))
                    }
                }
                let mut items = Vec::with_capacity((len as usize).min(1 << 20));
                for _ in 0..len {
                    items.push(self.value(elem_type, depth + 1, what)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(u64::from_le_bytes(self.array(what)?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(what)?)),
            _ => {
                return Err(self.malformed(format!(
                    "{what}: value type id {type_id} is not a GGUF value type"
                )))
            }
        })
    }
}

fn parse(path: &Path, buf: &[u8]) -> Result<Parsed, GgufError> {
    let mut cur = Cursor { buf, pos: 0, path };
    let magic: [u8; 4] = cur.array(&"GGUF magic")?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic {
            path: path.to_path_buf(),
        });
    }
    let version = cur.u32(&"GGUF version")?;
    if version != 2 && version != 3 {
        // v1 used u32 lengths; a byte-swapped 2/3 means a big-endian file. Neither is handled.
        return Err(GgufError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    let n_tensors = cur.u64(&"tensor count")?;
    let n_kv = cur.u64(&"metadata key/value count")?;

    // Smallest possible encodings: key (8-byte length) + type + 1-byte value; name + n_dims +
    // type + offset. Counts that cannot fit in the file are rejected before allocating.
    let (min_kv, min_ti) = (13u64, 24u64);
    let rest = cur.remaining() as u64;
    if n_kv.checked_mul(min_kv).is_none_or(|n| n > rest) {
        return Err(cur.truncated(
            format_args!("header declares {n_kv} metadata entries"),
            n_kv.saturating_mul(min_kv),
        ));
    }
    if n_tensors.checked_mul(min_ti).is_none_or(|n| n > rest) {
        return Err(cur.truncated(
            format_args!("header declares {n_tensors} tensors"),
            n_tensors.saturating_mul(min_ti),
        ));
    }

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = cur.string(&format_args!("key of metadata entry #{i}"))?;
        let ctx = format!("value of metadata key `{key}`");
        let type_id = cur.u32(&ctx)?;
        let value = cur.value(type_id, 0, &ctx)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(cur.malformed(format!("duplicate metadata key `{key}`")));
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            _ => {
                return Err(
                    cur.malformed(format!("general.alignment = {v:?} is not a power of two"))
                )
            }
        },
    };

    struct RawTensor {
        name: String,
        ne: Vec<u64>,
        type_id: u32,
        rel_offset: u64,
    }
    let mut raw = Vec::with_capacity((n_tensors as usize).min(1 << 16));
    for i in 0..n_tensors {
        let name = cur.string(&format_args!("name of tensor #{i}"))?;
        let ctx = format!("info of tensor `{name}`");
        let n_dims = cur.u32(&ctx)?;
        if n_dims as usize > MAX_DIMS {
            return Err(cur.malformed(format!(
                "tensor `{name}` has {n_dims} dimensions (ggml allows at most {MAX_DIMS})"
            )));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            ne.push(cur.u64(&ctx)?);
        }
        let type_id = cur.u32(&ctx)?;
        let rel_offset = cur.u64(&ctx)?;
        raw.push(RawTensor {
            name,
            ne,
            type_id,
            rel_offset,
        });
    }

    let data_offset = (cur.pos as u64)
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| cur.malformed("data section offset overflows".into()))?;
    let file_len = buf.len() as u64;

    let mut tensors = Vec::with_capacity(raw.len());
    let mut seen = HashMap::with_capacity(raw.len());
    for RawTensor {
        name,
        ne,
        type_id,
        rel_offset,
    } in raw
    {
        let malformed = |what: String| GgufError::Malformed {
            path: path.to_path_buf(),
            what,
        };
        if seen.insert(name.clone(), ()).is_some() {
            return Err(malformed(format!("duplicate tensor name `{name}`")));
        }
        let ggml_type = GgmlType::from_id(type_id);
        let (Some(bs), Some(ts)) = (ggml_type.block_size(), ggml_type.type_size()) else {
            return Err(GgufError::UnknownType {
                path: path.to_path_buf(),
                tensor: name,
                type_id,
            });
        };
        let shape: Vec<usize> = ne
            .iter()
            .rev()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                malformed(format!(
                    "tensor `{name}` has a dimension that does not fit in usize: {ne:?}"
                ))
            })?;
        let n_elements = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                malformed(format!(
                    "tensor `{name}`: element count of {ne:?} overflows"
                ))
            })?;
        let row = ne.first().copied().unwrap_or(1);
        if !row.is_multiple_of(bs as u64) {
            return Err(malformed(format!(
                "tensor `{name}`: row length {row} is not a multiple of the {ggml_type} block size {bs}"
            )));
        }
        let n_bytes = (n_elements / bs)
            .checked_mul(ts)
            .ok_or_else(|| malformed(format!("tensor `{name}`: byte size overflows")))?;
        if !rel_offset.is_multiple_of(alignment) {
            return Err(malformed(format!(
                "tensor `{name}`: data offset {rel_offset} is not a multiple of the alignment {alignment}"
            )));
        }
        let offset = data_offset.checked_add(rel_offset);
        let end = offset.and_then(|o| o.checked_add(n_bytes as u64));
        match (offset, end) {
            (Some(offset), Some(end)) if end <= file_len => {
                tensors.push(TensorInfo { name, shape, ggml_type, offset, n_bytes })
            }
            _ => {
                return Err(GgufError::Truncated {
                    path: path.to_path_buf(),
                    what: format!(
                        "data of tensor `{name}` ({n_bytes} bytes at data offset {rel_offset}, i.e. file offset {}) \
                         extends past the end of the file ({file_len} bytes)",
                        data_offset as u128 + rel_offset as u128
                    ),
                })
            }
        }
    }

    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        tensors,
    })
}

// ---------------------------------------------------------------------------------------------
// Dequantisation kernels: each takes a whole number of blocks and fills exactly the matching
// number of outputs (the caller guarantees the lengths). They mirror ggml-quants.c's
// dequantize_row_* so that rounding is identical.
// ---------------------------------------------------------------------------------------------

type Kernel = fn(&[u8], &mut [f32]);

fn kernel_for(t: GgmlType) -> Option<Kernel> {
    Some(match t {
        GgmlType::F32 => deq_f32,
        GgmlType::F16 => deq_f16,
        GgmlType::BF16 => deq_bf16,
        GgmlType::Q4_0 => deq_q4_0,
        GgmlType::Q4_1 => deq_q4_1,
        GgmlType::Q5_0 => deq_q5_0,
        GgmlType::Q5_1 => deq_q5_1,
        GgmlType::Q8_0 => deq_q8_0,
        GgmlType::Q2_K => deq_q2_k,
        GgmlType::Q3_K => deq_q3_k,
        GgmlType::Q4_K => deq_q4_k,
        GgmlType::Q5_K => deq_q5_k,
        GgmlType::Q6_K => deq_q6_k,
        GgmlType::Q8_K => deq_q8_k,
        GgmlType::Other(_) => return None,
    })
}

#[inline(always)]
fn f16_le(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Pairs source blocks of `TS` bytes with output blocks of `BS` floats.
#[inline(always)]
fn blocks<'s, 'd, const TS: usize, const BS: usize>(
    src: &'s [u8],
    dst: &'d mut [f32],
) -> impl Iterator<Item = (&'s [u8; TS], &'d mut [f32; BS])> {
    src.as_chunks::<TS>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<BS>().0.iter_mut())
}

fn deq_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<4, 1>(src, dst) {
        y[0] = f32::from_le_bytes(*b);
    }
}

fn deq_f16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<2, 1>(src, dst) {
        y[0] = half::f16::from_le_bytes(*b).to_f32();
    }
}

fn deq_bf16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<2, 1>(src, dst) {
        y[0] = f32::from_bits((u16::from_le_bytes(*b) as u32) << 16);
    }
}

/// block_q4_0: f16 d; u8 qs[16] (low nibbles = elements 0..16, high nibbles = 16..32).
fn deq_q4_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<18, 32>(src, dst) {
        let d = f16_le(b, 0);
        let qs = &b[2..18];
        for j in 0..16 {
            let x0 = (qs[j] & 0x0F) as i32 - 8;
            let x1 = (qs[j] >> 4) as i32 - 8;
            y[j] = x0 as f32 * d;
            y[j + 16] = x1 as f32 * d;
        }
    }
}

/// block_q4_1: f16 d, f16 m; u8 qs[16].
fn deq_q4_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<20, 32>(src, dst) {
        let d = f16_le(b, 0);
        let m = f16_le(b, 2);
        let qs = &b[4..20];
        for j in 0..16 {
            let x0 = (qs[j] & 0x0F) as f32;
            let x1 = (qs[j] >> 4) as f32;
            y[j] = x0 * d + m;
            y[j + 16] = x1 * d + m;
        }
    }
}

/// block_q5_0: f16 d; u32 qh (5th bits); u8 qs[16].
fn deq_q5_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<22, 32>(src, dst) {
        let d = f16_le(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..22];
        for j in 0..16 {
            let xh0 = (((qh >> j) << 4) & 0x10) as i32;
            let xh1 = ((qh >> (j + 12)) & 0x10) as i32;
            let x0 = ((qs[j] & 0x0F) as i32 | xh0) - 16;
            let x1 = ((qs[j] >> 4) as i32 | xh1) - 16;
            y[j] = x0 as f32 * d;
            y[j + 16] = x1 as f32 * d;
        }
    }
}

/// block_q5_1: f16 d, f16 m; u32 qh; u8 qs[16].
fn deq_q5_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<24, 32>(src, dst) {
        let d = f16_le(b, 0);
        let m = f16_le(b, 2);
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let qs = &b[8..24];
        for j in 0..16 {
            let xh0 = (((qh >> j) << 4) & 0x10) as i32;
            let xh1 = ((qh >> (j + 12)) & 0x10) as i32;
            let x0 = (qs[j] & 0x0F) as i32 | xh0;
            let x1 = (qs[j] >> 4) as i32 | xh1;
            y[j] = x0 as f32 * d + m;
            y[j + 16] = x1 as f32 * d + m;
        }
    }
}

/// block_q8_0: f16 d; i8 qs[32].
fn deq_q8_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<34, 32>(src, dst) {
        let d = f16_le(b, 0);
        for j in 0..32 {
            y[j] = (b[2 + j] as i8) as f32 * d;
        }
    }
}

/// K-quants' packed 6-bit scale/min pairs (ggml's get_scale_min_k4).
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// block_q2_K: u8 scales[16] (low nibble scale, high nibble min); u8 qs[64]; f16 d; f16 dmin.
fn deq_q2_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<84, 256>(src, dst) {
        let scales = &b[0..16];
        let d = f16_le(b, 80);
        let min = f16_le(b, 82);
        let mut out = 0;
        let mut is = 0;
        for n in 0..2 {
            let q = &b[16 + 32 * n..16 + 32 * n + 32];
            for shift in [0u32, 2, 4, 6] {
                for off in [0usize, 16] {
                    let sc = scales[is];
                    is += 1;
                    let dl = d * (sc & 0x0F) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for l in 0..16 {
                        y[out] = dl * ((q[l + off] >> shift) & 3) as f32 - ml;
                        out += 1;
                    }
                }
            }
        }
    }
}

/// block_q3_K: u8 hmask[32]; u8 qs[64]; u8 scales[12] (16 packed 6-bit scales); f16 d.
fn deq_q3_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<110, 256>(src, dst) {
        let hm = &b[0..32];
        let sb = &b[96..108];
        let d_all = f16_le(b, 108);
        // Scale i: low 4 bits from byte i % 8 (nibble i / 8), high 2 bits from byte 8 + i % 4
        // (bit pair i / 4). Same result as ggml's kmask1/kmask2 shuffle.
        let mut scales = [0i32; 16];
        for (i, s) in scales.iter_mut().enumerate() {
            let lo = (sb[i % 8] >> (4 * (i / 8))) & 0x0F;
            let hi = (sb[8 + i % 4] >> (2 * (i / 4))) & 0x03;
            *s = (lo | (hi << 4)) as i32 - 32;
        }
        let mut out = 0;
        let mut is = 0;
        let mut m = 1u8;
        for n in 0..2 {
            let q = &b[32 + 32 * n..32 + 32 * n + 32];
            for shift in [0u32, 2, 4, 6] {
                for off in [0usize, 16] {
                    let dl = d_all * scales[is] as f32;
                    is += 1;
                    for l in 0..16 {
                        let v = ((q[l + off] >> shift) & 3) as i32
                            - if hm[l + off] & m != 0 { 0 } else { 4 };
                        y[out] = dl * v as f32;
                        out += 1;
                    }
                }
                m = m.wrapping_shl(1);
            }
        }
    }
}

/// block_q4_K: f16 d; f16 dmin; u8 scales[12]; u8 qs[128].
fn deq_q4_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<144, 256>(src, dst) {
        let d = f16_le(b, 0);
        let min = f16_le(b, 2);
        let scales = &b[4..16];
        for j in 0..4 {
            let q = &b[16 + 32 * j..16 + 32 * j + 32];
            let (sc1, m1) = scale_min_k4(2 * j, scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let y = &mut y[64 * j..64 * j + 64];
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0x0F) as f32 - m1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// block_q5_K: f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128].
fn deq_q5_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<176, 256>(src, dst) {
        let d = f16_le(b, 0);
        let min = f16_le(b, 2);
        let scales = &b[4..16];
        let qh = &b[16..48];
        for j in 0..4 {
            let ql = &b[48 + 32 * j..48 + 32 * j + 32];
            let (sc1, m1) = scale_min_k4(2 * j, scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let u1 = 1u8 << (2 * j);
            let u2 = 2u8 << (2 * j);
            let y = &mut y[64 * j..64 * j + 64];
            for l in 0..32 {
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((ql[l] & 0x0F) + h1) as f32 - m1;
                y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// block_q6_K: u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d.
fn deq_q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<210, 256>(src, dst) {
        let d = f16_le(b, 208);
        for n in 0..2 {
            let ql = &b[64 * n..64 * n + 64];
            let qh = &b[128 + 32 * n..128 + 32 * n + 32];
            let sc = &b[192 + 8 * n..192 + 8 * n + 8];
            let y = &mut y[128 * n..128 * n + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                // ggml evaluates `d * sc * q` left to right.
                y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
            }
        }
    }
}

/// block_q8_K: f32 d; i8 qs[256]; i16 bsums[16] (unused here).
fn deq_q8_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<292, 256>(src, dst) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for j in 0..256 {
            y[j] = d * (b[4 + j] as i8) as f32;
        }
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

    #[test]
    fn garbage_never_panics() {
        // Every prefix of a tiny valid header, and a few corruptions of it, must give an error
        // (or parse), never a panic.
        let mut v = Vec::new();
        v.extend_from_slice(b"GGUF");
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&1u64.to_le_bytes()); // tensors
        v.extend_from_slice(&1u64.to_le_bytes()); // kv
        v.extend_from_slice(&3u64.to_le_bytes());
        v.extend_from_slice(b"k.a");
        v.extend_from_slice(&9u32.to_le_bytes());
        v.extend_from_slice(&8u32.to_le_bytes());
        v.extend_from_slice(&1u64.to_le_bytes());
        v.extend_from_slice(&1u64.to_le_bytes());
        v.extend_from_slice(b"x");
        v.extend_from_slice(&1u64.to_le_bytes());
        v.extend_from_slice(b"t");
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&4u64.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&0u64.to_le_bytes());
        while v.len() % 32 != 0 {
            v.push(0);
        }
        v.extend_from_slice(&[0u8; 16]);
        let p = Path::new("mem");
        let ok = parse(p, &v).expect("valid");
        assert_eq!(ok.tensors[0].shape, vec![4]);
        for cut in 0..v.len() {
            assert!(parse(p, &v[..cut]).is_err(), "prefix {cut} parsed");
        }
        for i in 0..v.len() {
            for x in [0u8, 0x7F, 0xFF] {
                let mut w = v.clone();
                w[i] = x;
                let _ = parse(p, &w);
            }
        }
    }
}
