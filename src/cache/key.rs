//! Content keys: [`Key`] (a sha256 in hex), [`KeyBuilder`] (what goes into a node's key, in a
//! canonical, versioned form) and [`canonical_json`] (the canonical serialisation of a spec).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::digest::FileDigest;
use super::error::CacheError;

/// Version tag of the key derivation. Bump it whenever [`KeyBuilder::canonical_form`] changes
/// shape, so that old and new keys can never collide.
pub const KEY_SCHEME: &str = "rhx-key/1";

/// The one engine-version constant: the rhx release that every key contains (so two releases
/// never share results). What a trace's bytes depend on beyond that — the hash of the engine's
/// sources, the decoding and kernel options, the device — is in the trace's spec
/// (`plan::plan_with`, `engine::options::EngineIdentity`).
pub const ENGINE_VERSION: &str = concat!("rhx ", env!("CARGO_PKG_VERSION"));

/// A content key: 64 lowercase hexadecimal digits (a sha256).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Key(String);

impl Key {
    /// Parses and validates a key (64 lowercase hex digits).
    pub fn parse(s: &str) -> Result<Key, CacheError> {
        if s.len() != 64 {
            return Err(CacheError::InvalidKey {
                value: s.to_string(),
                reason: "a key has exactly 64 hexadecimal digits",
            });
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(CacheError::InvalidKey {
                value: s.to_string(),
                reason: "a key has only the characters 0-9 and a-f",
            });
        }
        Ok(Key(s.to_string()))
    }

    /// The key of a raw sha256 digest.
    pub fn from_digest(d: [u8; 32]) -> Key {
        Key(hex(&d))
    }

    /// sha256 of arbitrary bytes, as a key.
    pub fn of_bytes(bytes: &[u8]) -> Key {
        Key::from_digest(Sha256::digest(bytes).into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first two hex digits: the shard directory under `objects/`.
    pub fn shard(&self) -> &str {
        &self.0[..2]
    }

    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.0)
    }
}

impl FromStr for Key {
    type Err = CacheError;
    fn from_str(s: &str) -> Result<Key, CacheError> {
        Key::parse(s)
    }
}

impl TryFrom<String> for Key {
    type Error = CacheError;
    fn try_from(s: String) -> Result<Key, CacheError> {
        Key::parse(&s)
    }
}

impl From<Key> for String {
    fn from(k: Key) -> String {
        k.0
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lowercase hex encoding.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Canonical JSON: object keys sorted (by their UTF-8 bytes), no whitespace, strings escaped as
/// `serde_json` escapes them, and numbers in one form per value: integers (and floats with no
/// fractional part whose magnitude is below 2^53, so `1.0`, `1` and `-0.0`/`0` agree) in decimal
/// without exponent, other floats in their shortest round-tripping form.
///
/// This does not depend on whether `serde_json`'s `preserve_order` feature is enabled anywhere
/// in the dependency graph.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's string escaping is deterministic; serialising a &str cannot fail.
    match serde_json::to_string(s) {
        Ok(escaped) => out.push_str(&escaped),
        Err(_) => out.push_str("\"\""),
    }
}

fn write_number(n: &serde_json::Number, out: &mut String) {
    use std::fmt::Write;
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
        if f.fract() == 0.0 && f.abs() < EXACT {
            let _ = write!(out, "{}", f as i64);
        } else {
            // serde_json prints finite floats with ryu: shortest round-trip representation.
            let _ = write!(out, "{n}");
        }
    } else {
        let _ = write!(out, "{n}");
    }
}

/// Builds a node's content key from everything that determines its result.
///
/// The key is `sha256(canonical_json(doc))` where `doc` is
/// `{"scheme": "rhx-key/1", "kind", "spec", "inputs": [[name, key], ...],
///   "files": [[label, sha256, size], ...], "seed", "engine"}`.
/// Inputs keep the order they were added in (a node's inputs are positional and named);
/// files are sorted by label (they are a set), so the caller may add them in any order.
/// An absent seed (`null`) differs from seed 0.
#[derive(Clone, Debug)]
pub struct KeyBuilder {
    kind: String,
    spec: Value,
    inputs: Vec<(String, Key)>,
    files: Vec<(String, FileDigest)>,
    seed: Option<u64>,
    engine: String,
}

impl KeyBuilder {
    /// A builder for a node of this kind (e.g. `"generate"`), with a `null` spec, no inputs,
    /// no files, no seed and [`ENGINE_VERSION`] as the engine version.
    pub fn new(kind: impl Into<String>) -> KeyBuilder {
        KeyBuilder {
            kind: kind.into(),
            spec: Value::Null,
            inputs: Vec::new(),
            files: Vec::new(),
            seed: None,
            engine: ENGINE_VERSION.to_string(),
        }
    }

    /// The node's spec (its parameters after checking and defaulting).
    pub fn spec(mut self, spec: &Value) -> Self {
        self.spec = spec.clone();
        self
    }

    /// Appends a named input (the key of an upstream node).
    pub fn input(mut self, name: impl Into<String>, key: &Key) -> Self {
        self.inputs.push((name.into(), key.clone()));
        self
    }

    /// Adds a file the node reads (model weights, a tokenizer, a data file), by a stable label
    /// (not necessarily its path on this machine) and its digest.
    pub fn file(mut self, label: impl Into<String>, digest: &FileDigest) -> Self {
        self.files.push((label.into(), digest.clone()));
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Overrides the engine version string (default [`ENGINE_VERSION`]).
    pub fn engine_version(mut self, version: impl Into<String>) -> Self {
        self.engine = version.into();
        self
    }

    /// The exact text that is hashed (useful for provenance and for debugging a key).
    pub fn canonical_form(&self) -> String {
        let mut files: Vec<&(String, FileDigest)> = self.files.iter().collect();
        files.sort_by(|a, b| {
            (a.0.as_bytes(), a.1.sha256.as_bytes()).cmp(&(b.0.as_bytes(), b.1.sha256.as_bytes()))
        });
        let doc = json!({
            "scheme": KEY_SCHEME,
            "kind": self.kind,
            "spec": self.spec,
            "inputs": self.inputs.iter().map(|(n, k)| json!([n, k.as_str()])).collect::<Vec<_>>(),
            "files": files.iter().map(|(l, d)| json!([l, d.sha256, d.size])).collect::<Vec<_>>(),
            "seed": self.seed,
            "engine": self.engine,
        });
        canonical_json(&doc)
    }

    pub fn build(&self) -> Key {
        Key::of_bytes(self.canonical_form().as_bytes())
    }
}
