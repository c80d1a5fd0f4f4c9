//! Parsing: the header, the metadata and the tensor index of a mapped GGUF file, every read
//! bounds-checked so that a malformed or truncated file gives a [`GgufError`], never a panic.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use super::{GgmlType, GgufError, GgufValue, TensorInfo, DEFAULT_ALIGNMENT, MAX_DIMS};

/// Nested metadata arrays deeper than this are rejected (guards the recursive parser's stack).
const MAX_ARRAY_DEPTH: usize = 16;

pub(super) struct Parsed {
    pub(super) version: u32,
    pub(super) alignment: u64,
    pub(super) data_offset: u64,
    pub(super) metadata: BTreeMap<String, GgufValue>,
    pub(super) tensors: Vec<TensorInfo>,
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

pub(super) fn parse(path: &Path, buf: &[u8]) -> Result<Parsed, GgufError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
