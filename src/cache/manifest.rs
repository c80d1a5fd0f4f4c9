//! The artifact manifest (`manifest.json`), the metadata a producer hands to `put`, the
//! [`Artifact`] handle returned by `get`, and the integrity check of a stored artifact.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{io_err, CacheError};
use super::key::{canonical_json, Key};
use super::sys;

/// The manifest's file name inside every artifact directory (reserved: a producer may not
/// write a top-level file of that name).
pub const MANIFEST: &str = "manifest.json";

/// Version of the manifest layout.
pub const MANIFEST_FORMAT: u32 = 1;

/// A named input of a node, by key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRef {
    pub name: String,
    pub key: Key,
}

/// One stored file: its path relative to the artifact directory (`/`-separated), size and sha256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// `manifest.json`. `manifest_sha256` is the sha256 of the canonical JSON of the manifest
/// without that field, so edits to any field (not just the file list) are detected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub key: Key,
    pub kind: String,
    pub spec: Value,
    pub inputs: Vec<InputRef>,
    pub files: Vec<FileEntry>,
    /// RFC 3339 UTC, e.g. `2026-05-01T12:34:56.789Z`.
    pub created: String,
    pub rhx_version: String,
    pub wall_time_s: f64,
    #[serde(default)]
    pub extra: BTreeMap<String, Value>,
    #[serde(default)]
    pub manifest_sha256: String,
}

impl Manifest {
    /// Total size of the stored files (the manifest itself excluded).
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The checksum of this manifest's content. Computed on the JSON as it reads back from its
    /// serialised text, so that float parsing cannot make a sound manifest look tampered with.
    fn checksum(&self) -> Result<String, String> {
        let mut v = serde_json::to_value(self).map_err(|e| e.to_string())?;
        if let Value::Object(m) = &mut v {
            m.remove("manifest_sha256");
        }
        let text = serde_json::to_string(&v).map_err(|e| e.to_string())?;
        let reparsed: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        Ok(Key::of_bytes(canonical_json(&reparsed).as_bytes()).to_string())
    }

    pub(crate) fn seal(mut self) -> Result<Manifest, String> {
        self.manifest_sha256.clear();
        self.manifest_sha256 = self.checksum()?;
        Ok(self)
    }

    /// Parses and authenticates a manifest; the error says what is wrong with it.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Manifest, String> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("{MANIFEST} is not valid JSON ({e})"))?;
        let stored = v
            .get("manifest_sha256")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("{MANIFEST} has no manifest_sha256"))?;
        let m: Manifest = serde_json::from_value(v)
            .map_err(|e| format!("{MANIFEST} does not have the manifest layout ({e})"))?;
        if m.format != MANIFEST_FORMAT {
            return Err(format!(
                "{MANIFEST} has format {}, this build reads format {MANIFEST_FORMAT}",
                m.format
            ));
        }
        let actual = m.checksum()?;
        if actual != stored {
            return Err(format!(
                "{MANIFEST} was modified: its content hashes to {actual}, it records {stored}"
            ));
        }
        Ok(m)
    }
}

/// What a producer tells `put` about the artifact it writes.
#[derive(Clone, Debug, Default)]
pub struct ArtifactMeta {
    pub kind: String,
    pub spec: Value,
    pub inputs: Vec<InputRef>,
    /// Compute time; when `None`, `put` records how long its closure ran.
    pub wall_time_s: Option<f64>,
    pub extra: BTreeMap<String, Value>,
}

impl ArtifactMeta {
    pub fn new(kind: impl Into<String>) -> ArtifactMeta {
        ArtifactMeta {
            kind: kind.into(),
            ..ArtifactMeta::default()
        }
    }

    pub fn spec(mut self, spec: Value) -> Self {
        self.spec = spec;
        self
    }

    pub fn input(mut self, name: impl Into<String>, key: &Key) -> Self {
        self.inputs.push(InputRef {
            name: name.into(),
            key: key.clone(),
        });
        self
    }

    pub fn wall_time(mut self, seconds: f64) -> Self {
        self.wall_time_s = Some(seconds);
        self
    }

    pub fn extra(mut self, name: impl Into<String>, value: Value) -> Self {
        self.extra.insert(name.into(), value);
        self
    }
}

/// A verified artifact in the cache.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub key: Key,
    /// `objects/<ab>/<key>/`.
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Artifact {
    /// The path of a stored file, if the manifest lists it.
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        self.manifest
            .files
            .iter()
            .any(|f| f.name == name)
            .then(|| self.dir.join(name))
    }

    /// Reads a stored file whole.
    pub fn read(&self, name: &str) -> Result<Vec<u8>, CacheError> {
        let path = self.file(name).ok_or_else(|| CacheError::BadOutput {
            path: self.dir.join(name),
            reason: format!("artifact {} has no file {name:?}", self.key),
        })?;
        fs::read(&path).map_err(|e| io_err("read", path, e))
    }

    pub fn file_names(&self) -> impl Iterator<Item = &str> {
        self.manifest.files.iter().map(|f| f.name.as_str())
    }
}

/// A file found under an artifact (or temp) directory.
pub(crate) struct Found {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
}

pub(crate) enum WalkError {
    Io(&'static str, PathBuf, io::Error),
    /// Something a cache directory may not hold.
    Odd(String),
}

/// Lists regular files under `dir` recursively, sorted by name; subdirectories in `dirs`.
pub(crate) fn walk(dir: &Path, dirs: &mut Vec<PathBuf>) -> Result<Vec<Found>, WalkError> {
    let mut out = Vec::new();
    walk_into(dir, "", &mut out, dirs)?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn walk_into(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<Found>,
    dirs: &mut Vec<PathBuf>,
) -> Result<(), WalkError> {
    let rd = fs::read_dir(dir).map_err(|e| WalkError::Io("list", dir.to_path_buf(), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| WalkError::Io("list", dir.to_path_buf(), e))?;
        let path = entry.path();
        let Some(file_name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(WalkError::Odd(format!(
                "file name {:?} is not UTF-8",
                entry.file_name()
            )));
        };
        let name = format!("{prefix}{file_name}");
        let meta =
            fs::symlink_metadata(&path).map_err(|e| WalkError::Io("stat", path.clone(), e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            dirs.push(path.clone());
            walk_into(&path, &format!("{name}/"), out, dirs)?;
        } else if ft.is_file() {
            out.push(Found {
                name,
                path,
                size: meta.len(),
            });
        } else if ft.is_symlink() {
            return Err(WalkError::Odd(format!("{name} is a symbolic link")));
        } else {
            return Err(WalkError::Odd(format!("{name} is not a regular file")));
        }
    }
    Ok(())
}

/// Whether an I/O error on an artifact's file means the artifact is damaged (rather than the
/// environment being wrong, e.g. a permission problem).
pub(crate) fn is_damage(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
    ) || e.raw_os_error() == Some(libc::EIO)
        || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// How thoroughly `get` checks an artifact before handing it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Verification {
    /// Manifest authentic, file set exact, sizes and sha256 of every file match (reads every byte).
    #[default]
    Full,
    /// Manifest authentic, file set exact, sizes match (no file content is read).
    SizeOnly,
}

pub(crate) enum Check {
    Good {
        manifest: Box<Manifest>,
        bytes_hashed: u64,
    },
    Bad(String),
}

/// Checks a stored artifact against its manifest.
pub(crate) fn check(dir: &Path, key: &Key, mode: Verification) -> Result<Check, CacheError> {
    let mpath = dir.join(MANIFEST);
    let bytes = match fs::read(&mpath) {
        Ok(b) => b,
        Err(e) if is_damage(&e) => return Ok(Check::Bad(format!("{MANIFEST}: {e}"))),
        Err(e) => return Err(io_err("read", mpath, e)),
    };
    let manifest = match Manifest::from_bytes(&bytes) {
        Ok(m) => m,
        Err(reason) => return Ok(Check::Bad(reason)),
    };
    if manifest.key != *key {
        return Ok(Check::Bad(format!(
            "{MANIFEST} is for key {}, the directory is {key}",
            manifest.key
        )));
    }
    let mut found: BTreeMap<String, Found> = match walk(dir, &mut Vec::new()) {
        Ok(files) => files.into_iter().map(|f| (f.name.clone(), f)).collect(),
        Err(WalkError::Odd(reason)) => return Ok(Check::Bad(reason)),
        Err(WalkError::Io(_, _, e)) if is_damage(&e) => return Ok(Check::Bad(e.to_string())),
        Err(WalkError::Io(op, path, e)) => return Err(io_err(op, path, e)),
    };
    found.remove(MANIFEST);
    let mut on_disk = Vec::with_capacity(manifest.files.len());
    for f in &manifest.files {
        match found.remove(&f.name) {
            None => return Ok(Check::Bad(format!("file {} is missing", f.name))),
            Some(d) if d.size != f.size => {
                return Ok(Check::Bad(format!(
                    "file {} has {} bytes, the manifest says {}",
                    f.name, d.size, f.size
                )))
            }
            Some(d) => on_disk.push((f, d)),
        }
    }
    if !found.is_empty() {
        let extra: Vec<&str> = found.keys().map(String::as_str).collect();
        return Ok(Check::Bad(format!(
            "unexpected file(s) not in the manifest: {}",
            extra.join(", ")
        )));
    }
    let mut bytes_hashed = 0;
    if mode == Verification::Full {
        for (f, d) in on_disk {
            let read = fs::File::open(&d.path).and_then(sys::sha256_reader);
            match read {
                Ok((sha, n)) => {
                    bytes_hashed += n;
                    if sha != f.sha256 || n != f.size {
                        return Ok(Check::Bad(format!(
                            "file {} has sha256 {sha}, the manifest says {}",
                            f.name, f.sha256
                        )));
                    }
                }
                Err(e) if is_damage(&e) => return Ok(Check::Bad(format!("file {}: {e}", f.name))),
                Err(e) => return Err(io_err("read", d.path, e)),
            }
        }
    }
    Ok(Check::Good {
        manifest: Box::new(manifest),
        bytes_hashed,
    })
}
