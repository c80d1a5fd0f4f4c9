//! File digests: [`hash_file`] (streaming sha256) and the digest cache that lets a large input
//! (a 16 GB checkpoint) be hashed once rather than on every run.
//!
//! The digest cache is `<cache root>/digests.json`, a map from a file's canonical absolute path
//! to its stamp (size, mtime, ctime, inode) and sha256. A digest is reused only when the stamp
//! is unchanged. Two guards against stale digests:
//! * ctime is part of the stamp: restoring an old mtime (`touch -d`, `cp -p`) after changing the
//!   bytes still changes ctime, which cannot be set from user space;
//! * a digest is not stored while the file's mtime is within [`RACY_WINDOW`] of the clock, as
//!   git does for "racily clean" entries: a write in the same timestamp tick (coarse on some
//!   file systems, 1 s on some NFS servers) could otherwise go unseen. Such a file is simply
//!   hashed again next time.
//!
//! * each entry also holds a cheap probe (sha256 of the file's first and last 64 KiB), checked on
//!   every reuse: a file rewritten in place that somehow keeps size, mtime, ctime and inode
//!   (a file system with coarse or frozen ctime, a restored snapshot) is still caught when the
//!   change touches either end — where GGUF and safetensors keep their headers.
//!
//! Entries are sealed like manifests: a checksum over (path, stamp, probe, sha256). An entry
//! edited by hand (a sha256 set to zeros) fails its seal and is not used; `rhx cache verify`
//! re-hashes every file the table names and drops the entries that are wrong.
//!
//! The device number is not part of the stamp, because one NFS file shows different device
//! numbers on different cluster nodes; the inode number (NFS fileid) is stable.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{io_err, CacheError};
use super::lock::{FileLock, Wait};
use super::sys;

/// A digest is only remembered once the file's mtime is at least this far in the past.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// The sha256 (lowercase hex) and size of a file's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileDigest {
    pub sha256: String,
    pub size: u64,
}

/// Hashes a file's bytes, streaming (constant memory).
pub fn hash_file(path: impl AsRef<Path>) -> Result<FileDigest, CacheError> {
    let path = path.as_ref();
    let f = File::open(path).map_err(|e| io_err("open", path, e))?;
    let (sha256, size) = sys::sha256_reader(f).map_err(|e| io_err("read", path, e))?;
    Ok(FileDigest { sha256, size })
}

/// Where a digest came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestSource {
    /// Reused from the digest cache (stamp unchanged).
    Cached,
    /// The file was read and hashed.
    Computed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_s: i64,
    mtime_ns: i64,
    ctime_s: i64,
    ctime_ns: i64,
    ino: u64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: m.size(),
            mtime_s: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            ctime_s: m.ctime(),
            ctime_ns: m.ctime_nsec(),
            ino: m.ino(),
        }
    }

    /// Whether the mtime is old enough for the digest to be remembered safely.
    fn settled(&self) -> bool {
        let now = sys::unix_now();
        let mtime = self.mtime_s as f64 + self.mtime_ns as f64 * 1e-9;
        mtime + RACY_WINDOW.as_secs_f64() <= now
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    #[serde(flatten)]
    stamp: Stamp,
    sha256: String,
    /// sha256 of the first and last [`PROBE_BYTES`] of the file.
    probe: String,
    /// Checksum of (path, stamp, probe, sha256): see [`Entry::seal_of`].
    seal: String,
}

/// Bytes read from each end of a file for its probe.
const PROBE_BYTES: u64 = 64 * 1024;

impl Entry {
    fn seal_of(path: &str, stamp: &Stamp, probe: &str, sha256: &str) -> String {
        let text = serde_json::json!(["rhx-digest/1", path, stamp, probe, sha256]).to_string();
        super::key::Key::of_bytes(text.as_bytes()).to_string()
    }
    fn new(path: &str, stamp: Stamp, probe: String, sha256: String) -> Entry {
        let seal = Entry::seal_of(path, &stamp, &probe, &sha256);
        Entry { stamp, sha256, probe, seal }
    }
    fn sealed(&self, path: &str) -> bool {
        self.seal == Entry::seal_of(path, &self.stamp, &self.probe, &self.sha256)
    }
}

/// sha256 of a file's first and last [`PROBE_BYTES`] (all of it when smaller than twice that).
fn probe(f: &File, size: u64) -> std::io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; PROBE_BYTES as usize];
    let ranges = if size <= 2 * PROBE_BYTES { vec![(0, size)] } else { vec![(0, PROBE_BYTES), (size - PROBE_BYTES, PROBE_BYTES)] };
    for (at, len) in ranges {
        let mut done = 0u64;
        while done < len {
            let want = ((len - done) as usize).min(buf.len());
            let n = f.read_at(&mut buf[..want], at + done)?;
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut hasher, &buf[..n]);
            done += n as u64;
        }
    }
    Ok(super::key::hex(&sha2::Digest::finalize(hasher)))
}

/// What `rhx cache verify` found in the digest cache.
#[derive(Clone, Debug, Default)]
pub struct DigestCheck {
    /// Entries whose file was re-hashed.
    pub checked: usize,
    /// Entries that were wrong (path and why); they are dropped from the table.
    pub wrong: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Table {
    format: u32,
    entries: BTreeMap<String, Entry>,
}

/// 2: entries carry a probe and a seal (format-1 tables are read as empty: files are re-hashed once).
const TABLE_FORMAT: u32 = 2;

pub(crate) struct DigestCache {
    pub(crate) file: PathBuf,
    pub(crate) lock: PathBuf,
    pub(crate) tmp_dir: PathBuf,
    pub(crate) locks: super::lock::LockMode,
}

impl DigestCache {
    fn load(&self) -> Table {
        // A missing, unreadable or garbled table is treated as empty: it only costs rehashing,
        // and the next store replaces it atomically.
        let Ok(text) = std::fs::read(&self.file) else {
            return Table::default();
        };
        match serde_json::from_slice::<Table>(&text) {
            Ok(t) if t.format == TABLE_FORMAT => t,
            _ => Table::default(),
        }
    }

    fn store(&self, table: &Table, tmp_name: &str) -> Result<(), CacheError> {
        let tmp = self.tmp_dir.join(tmp_name);
        let text = serde_json::to_vec_pretty(table).map_err(|e| CacheError::Corrupt {
            path: self.file.clone(),
            reason: format!("cannot serialise the digest cache: {e}"),
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err("write the digest cache", &tmp, e));
        }
        std::fs::rename(&tmp, &self.file).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err("replace the digest cache", &self.file, e)
        })
    }

    /// The digest of `path`, from the table when its stamp is unchanged.
    pub(crate) fn digest(
        &self,
        path: &Path,
        tmp_name: impl Fn() -> String,
    ) -> Result<(FileDigest, DigestSource), CacheError> {
        let abs = std::fs::canonicalize(path).map_err(|e| io_err("resolve", path, e))?;
        let meta = std::fs::metadata(&abs).map_err(|e| io_err("stat", &abs, e))?;
        if !meta.is_file() {
            return Err(CacheError::BadOutput {
                path: abs,
                reason: "not a regular file, cannot take its digest".into(),
            });
        }
        let name = abs.to_string_lossy().into_owned();
        let stamp = Stamp::of(&meta);
        if let Some(e) = self.load().entries.get(&name) {
            let same_ends = || File::open(&abs).and_then(|f| probe(&f, stamp.size)).is_ok_and(|p| p == e.probe);
            if e.stamp == stamp && e.sealed(&name) && same_ends() {
                return Ok((
                    FileDigest {
                        sha256: e.sha256.clone(),
                        size: stamp.size,
                    },
                    DigestSource::Cached,
                ));
            }
        }
        // Hash, and only trust the result if the file did not change while we read it.
        let mut attempt = 0;
        let (digest, stamp, stable) = loop {
            let f = File::open(&abs).map_err(|e| io_err("open", &abs, e))?;
            let before = Stamp::of(&f.metadata().map_err(|e| io_err("stat", &abs, e))?);
            let ends = probe(&f, before.size).map_err(|e| io_err("read", &abs, e))?;
            let (sha256, size) = sys::sha256_reader(&f).map_err(|e| io_err("read", &abs, e))?;
            let after = std::fs::metadata(&abs).map_err(|e| io_err("stat", &abs, e))?;
            let stable = before == Stamp::of(&after) && size == before.size;
            attempt += 1;
            if stable || attempt >= 3 {
                break (FileDigest { sha256, size }, (before, ends), stable);
            }
        };
        let (stamp, ends) = stamp;
        if stable && stamp.settled() {
            let _guard = FileLock::acquire(&self.lock, Wait::Forever, self.locks)?;
            let mut table = self.load();
            table.format = TABLE_FORMAT;
            table.entries.insert(name.clone(), Entry::new(&name, stamp, ends, digest.sha256.clone()));
            self.store(&table, &tmp_name())?;
        }
        Ok((digest, DigestSource::Computed))
    }

    /// Re-hashes every file the table names and drops the entries that are wrong: a broken
    /// seal (edited by hand), a stamp that no longer matches, or a digest that is not the file's.
    pub(crate) fn verify(&self, tmp_name: impl Fn() -> String) -> Result<DigestCheck, CacheError> {
        if !self.file.exists() {
            return Ok(DigestCheck::default());
        }
        let _guard = FileLock::acquire(&self.lock, Wait::Forever, self.locks)?;
        let mut table = self.load();
        let mut check = DigestCheck::default();
        let mut drop = Vec::new();
        for (path, e) in &table.entries {
            let Ok(f) = File::open(path) else { continue };
            check.checked += 1;
            let stamp = f.metadata().map(|m| Stamp::of(&m));
            let wrong = if !e.sealed(path) {
                Some("its entry was edited (the seal does not match)".to_string())
            } else if stamp.as_ref().ok() != Some(&e.stamp) {
                Some("the file changed since it was hashed".to_string())
            } else {
                match sys::sha256_reader(&f) {
                    Ok((sha, _)) if sha == e.sha256 => None,
                    Ok((sha, _)) => Some(format!("recorded sha256 {} but the file hashes to {sha}", e.sha256)),
                    Err(err) => Some(format!("cannot read it: {err}")),
                }
            };
            if let Some(why) = wrong {
                check.wrong.push(format!("{path}: {why}"));
                drop.push(path.clone());
            }
        }
        if !drop.is_empty() {
            for p in &drop {
                table.entries.remove(p);
            }
            table.format = TABLE_FORMAT;
            self.store(&table, &tmp_name())?;
        }
        Ok(check)
    }

    /// Drops entries whose file no longer exists. Returns how many were dropped.
    pub(crate) fn prune(
        &self,
        tmp_name: impl Fn() -> String,
        dry_run: bool,
    ) -> Result<usize, CacheError> {
        if !self.file.exists() {
            return Ok(0);
        }
        let _guard = FileLock::acquire(&self.lock, Wait::Forever, self.locks)?;
        let mut table = self.load();
        let before = table.entries.len();
        table.entries.retain(|p, _| Path::new(p).exists());
        let dropped = before - table.entries.len();
        if dropped > 0 && !dry_run {
            table.format = TABLE_FORMAT;
            self.store(&table, &tmp_name())?;
        }
        Ok(dropped)
    }
}
