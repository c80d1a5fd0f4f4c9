//! Content-addressed, crash-safe, concurrently shared cache of node results.
//!
//! The planner gives every node of an experiment's DAG a content [`Key`] (built with
//! [`KeyBuilder`] from the node's kind, canonical spec, input keys, input-file digests, seed and
//! engine version); the executor asks the cache for that key and computes the node only on a
//! miss. A result is an *artifact*: a directory of files plus a `manifest.json`.
//!
//! # Layout
//!
//! ```text
//! <root>/                     (default `.rhx/cache`, see DEFAULT_ROOT; the caller passes it)
//!   rhx-cache-layout          "rhx cache layout 1": refuses to open a foreign directory layout
//!   CACHEDIR.TAG              tells backup tools to skip the cache
//!   objects/ab/<key>/         one artifact: the node's files + manifest.json
//!   tmp/                      work in progress: put-<pid>-<ns>-<n>@<host>/, trash-…, digests-…
//!   locks/<key>.lock          advisory per-key locks; locks/digests.lock
//!   quarantine/<key>.q-…/     artifacts that failed verification (+ a .reason.txt beside each)
//!   digests.json              digest cache of input files (see `file_digest`)
//! ```
//!
//! # API
//!
//! * [`Cache::open`]`(root)`: creates the layout and removes temp entries left by dead
//!   processes of this host.
//! * [`Cache::get`]`(&key) -> Result<Option<Artifact>>` verifies the artifact (sizes and sha256
//!   of every file, exact file set, authentic manifest; [`Cache::get_with`] with
//!   [`Verification::SizeOnly`] skips reading file contents, and
//!   [`Cache::with_verification`] sets the default). A damaged artifact is moved to
//!   `quarantine/`, a [`CacheWarning`] is recorded ([`Cache::take_warnings`]) and `None` is
//!   returned, so the caller recomputes.
//! * [`Cache::put`]`(&key, meta, |dir| { write files into dir })`: the closure writes into a fresh
//!   directory under `tmp/`; the cache hashes the files, writes the manifest, fsyncs files and
//!   directories, makes the files read-only and renames the directory into `objects/` (atomic
//!   on POSIX file systems). If the key appeared meanwhile, the existing (verified) artifact is
//!   kept and ours dropped. If the closure fails or panics, its temp directory is removed; if
//!   the process dies, the next `open` (or `gc`) removes it.
//! * [`Cache::lock`] / [`Cache::try_lock`] / [`Cache::lock_timeout`] -> [`KeyLock`]: an
//!   exclusive lock held while a node is computed, so two processes (or threads) never compute
//!   the same node at once. [`Cache::get_or_put`] is the usual pattern: get, else lock, get
//!   again, else put.
//! * [`Cache::ls`] -> [`ArtifactInfo`]s, [`Cache::verify`] -> [`VerifyReport`] (rehashes all,
//!   quarantines damaged), [`Cache::gc`]`(&keep, GcOptions)` -> [`GcReport`] (removes
//!   unreferenced artifacts that nobody holds a lock on, stale temp entries, the quarantine,
//!   idle lock files, digest entries of deleted files; `dry_run` reports only),
//!   [`Cache::remove`].
//! * [`hash_file`] (streaming sha256) and [`Cache::file_digest`] (the same, remembered in
//!   `digests.json` by (path, size, mtime, ctime, inode) so an unchanged 16 GB checkpoint is
//!   hashed once; see the [`digest`] module for the safeguards).
//! * Errors are [`CacheError`]; each names the path and the problem, `ENOSPC`/`EDQUOT` become
//!   [`CacheError::DiskFull`]/[`CacheError::QuotaExceeded`]. Nothing here panics on bad data.
//!
//! # Keys
//!
//! `key = sha256(canonical_json({"scheme": "rhx-key/1", kind, spec, inputs: [[name, key]…],
//! files: [[label, sha256, size]…] sorted by label, seed, engine}))`, see [`KeyBuilder`] and
//! [`canonical_json`] (sorted object keys, no whitespace, one spelling per number).
//!
//! # Caveats
//!
//! * **Shared/cluster file systems.** Locks are `flock(2)` (via `std::fs::File::lock`). On
//!   Linux NFS clients `flock` is emulated with POSIX byte-range locks through the NFS lock
//!   protocol (NFSv4 built in, NFSv3 needs `lockd`/`rpc.statd`), so it works across nodes, but
//!   a mount with `nolock`/`local_lock=all` makes locks node-local, and a client that loses
//!   its lease (network partition) can lose the lock silently. Cluster file systems differ:
//!   older Lustre needs the `flock` mount option, BeeGFS needs `tuneUseGlobalFileLocks`;
//!   check yours (two `try_lock`s from two nodes). Even without working locks the cache stays
//!   *consistent* (artifacts are renamed into place whole, a duplicate `put` keeps the first)
//!   and only risks computing a node twice. `rename(2)` within one directory tree is atomic on
//!   NFS too; that is why `tmp/` lives inside the cache root. Keep the whole root on one file
//!   system.
//! * **Temp-dir liveness** uses the pid in the name and `/proc/<pid>` (or `kill(pid, 0)`), and
//!   only for entries of this host (the host name is in the name). Entries of other hosts are
//!   removed by `gc` once older than [`GcOptions::foreign_tmp_max_age`] (default 24 h).
//!   A reused pid only delays cleanup.
//! * **Digest cache and mtime granularity.** A digest is reused only if size, mtime, ctime and
//!   inode are all unchanged, and it is not remembered while the mtime is within
//!   [`digest::RACY_WINDOW`] (2 s) of now, so same-tick rewrites on coarse-timestamp file
//!   systems are not missed. A tool that rewrites a file in place keeping size and both times
//!   (impossible without root: ctime cannot be set) would defeat it.
//! * **Concurrent `gc`.** `gc` skips artifacts whose key lock is held, but a process that
//!   already got an artifact and reads its files without holding the lock may see them vanish;
//!   run `gc` when no run uses keys outside `keep`, or hold the key lock while reading.
//! * **Locks are not reentrant**: a thread asking again for a lock it holds gets
//!   [`CacheError::Reentrant`] rather than waiting for itself forever (`try_lock` says `None`).
//! * **Several users on one cache**: files are created with the process umask and stored files
//!   lose their write bits; for a group-shared cache use a setgid root directory and a umask of
//!   002, or stale temp entries and locks of other users cannot be removed (`open` then only
//!   warns).
//! * `put` reads every file back once to hash it (the producer writes through plain `std::fs`);
//!   for very large artifacts this is an extra sequential read, usually from the page cache.
//! * A quarantine race: if one process quarantines a damaged artifact and another puts a
//!   fresh one before a third (which read the damaged one) quarantines too, the fresh one is
//!   quarantined; this only costs a recomputation.

pub mod digest;
mod error;
mod key;
mod lock;
mod manifest;
mod sys;

use std::collections::HashSet;
use std::error::Error as StdError;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

pub use digest::{hash_file, DigestSource, FileDigest};
pub use error::CacheError;
pub use key::{canonical_json, Key, KeyBuilder, ENGINE_VERSION, KEY_SCHEME};
pub use lock::{filesystem_of, Holder, KeyLock, LockKind, LockMode, LockOwner, DEFAULT_LEASE};
pub use manifest::{
    Artifact, ArtifactMeta, FileEntry, InputRef, Manifest, Verification, MANIFEST, MANIFEST_FORMAT,
};

use digest::DigestCache;
use error::{find_space_error, io_err};
use lock::{FileLock, Wait};
use manifest::{check, walk, Check, WalkError};

/// The cache root used when the user names none (relative to the project directory).
pub const DEFAULT_ROOT: &str = ".rhx/cache";

const LAYOUT_FILE: &str = "rhx-cache-layout";
const LAYOUT: &str = "rhx cache layout 1";
const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by rhx.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// The rhx build that wrote an artifact (crate version and, when known, git commit).
fn rhx_version() -> String {
    match option_env!("RHX_GIT_COMMIT") {
        Some(c) if !c.is_empty() => format!("{} ({c})", env!("CARGO_PKG_VERSION")),
        _ => env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Something the cache did on its own that the user should hear about (a quarantined
/// artifact, a removed leftover temp directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheWarning {
    pub key: Option<Key>,
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for CacheWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(
                f,
                "cache: {} ({}): {}",
                k.short(),
                self.path.display(),
                self.message
            ),
            None => write!(f, "cache: {}: {}", self.path.display(), self.message),
        }
    }
}

/// One artifact as listed by [`Cache::ls`] (from its manifest, not verified).
#[derive(Clone, Debug)]
pub struct ArtifactInfo {
    pub key: Key,
    /// `None` when the manifest cannot be read (`verify` will quarantine it).
    pub kind: Option<String>,
    /// Bytes of the stored files (from the manifest, or on disk when it is unreadable).
    pub size: u64,
    pub files: usize,
    pub created: Option<String>,
    pub dir: PathBuf,
}

/// An artifact that failed verification.
#[derive(Clone, Debug)]
pub struct Corrupted {
    /// `None` for a directory under `objects/` whose name is not a key.
    pub key: Option<Key>,
    pub name: String,
    pub reason: String,
    pub quarantined_to: PathBuf,
}

/// What [`Cache::verify`] found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    pub checked: usize,
    pub ok: usize,
    pub bytes_hashed: u64,
    pub corrupted: Vec<Corrupted>,
    /// I/O problems that are not evidence of damage (e.g. permission denied), per path.
    pub errors: Vec<String>,
    /// Input files whose remembered digest was re-hashed (`digests.json`).
    pub digests_checked: usize,
    /// Remembered digests that were wrong (dropped; the file is hashed again on next use).
    pub digests_wrong: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.corrupted.is_empty() && self.errors.is_empty() && self.digests_wrong.is_empty()
    }
}

/// Options of [`Cache::gc`].
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Report what would be removed, remove nothing.
    pub dry_run: bool,
    /// Empty `quarantine/` (default true).
    pub clear_quarantine: bool,
    /// Temp entries of other hosts (whose liveness cannot be checked) or with unparseable
    /// names are removed once their mtime is this old (default 24 h).
    pub foreign_tmp_max_age: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            clear_quarantine: true,
            foreign_tmp_max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// What [`Cache::gc`] removed (or, with `dry_run`, would remove).
#[derive(Clone, Debug, Default)]
pub struct GcReport {
    pub dry_run: bool,
    /// Unreferenced artifacts and their sizes.
    pub removed: Vec<(Key, u64)>,
    /// Unreferenced artifacts left alone because some process holds their lock.
    pub skipped_locked: Vec<Key>,
    /// Entries under `objects/` whose names are not keys.
    pub removed_strays: Vec<PathBuf>,
    pub removed_tmp: Vec<PathBuf>,
    pub removed_quarantine: Vec<PathBuf>,
    pub removed_locks: usize,
    pub pruned_digests: usize,
    pub freed_bytes: u64,
}

/// A content-addressed cache rooted at one directory. Cheap to share between threads
/// (`&Cache` is `Sync`); several processes may open the same root.
pub struct Cache {
    root: PathBuf,
    verification: Verification,
    warnings: Mutex<Vec<CacheWarning>>,
    seq: AtomicU64,
    digests: DigestCache,
    locks: LockMode,
}

/// Removes a temp directory on drop unless disarmed (covers errors and panics in `put`).
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

enum TmpOwner {
    Alive,
    Dead,
    /// Another host's, or a name we cannot parse: liveness unknown.
    Unknown,
}

fn tmp_owner(name: &str) -> TmpOwner {
    let Some((stem, host)) = name.rsplit_once('@') else {
        return TmpOwner::Unknown;
    };
    let Some(pid) = stem.split('-').nth(1).and_then(|p| p.parse::<u32>().ok()) else {
        return TmpOwner::Unknown;
    };
    if host != sys::hostname() {
        return TmpOwner::Unknown;
    }
    if sys::pid_alive(pid) {
        TmpOwner::Alive
    } else {
        TmpOwner::Dead
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    let r = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Bytes under a path (files only; errors count as 0).
fn tree_size(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn is_collision(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AlreadyExists
            | io::ErrorKind::DirectoryNotEmpty
            | io::ErrorKind::NotADirectory
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EEXIST) | Some(libc::ENOTEMPTY) | Some(libc::ENOTDIR)
    )
}

/// A directory entry under `objects/<shard>/`.
struct ObjectEntry {
    name: String,
    /// Set when the name is a valid key stored under its own shard.
    key: Option<Key>,
    dir: PathBuf,
}

impl Cache {
    /// Opens (creating if needed) the cache at `root`, and removes temp entries whose owning
    /// process (on this host) is gone.
    ///
    /// Locks are of the kind `RHX_LOCK` / the root's file system gives ([`LockMode::for_root`]).
    pub fn open(root: impl AsRef<Path>) -> Result<Cache, CacheError> {
        Cache::open_with(root, None)
    }

    /// [`Cache::open`] with the lock kind given (`None`: from the environment and file system).
    pub fn open_with(root: impl AsRef<Path>, locks: Option<LockMode>) -> Result<Cache, CacheError> {
        let root = root.as_ref();
        fs::create_dir_all(root).map_err(|e| io_err("create the cache directory", root, e))?;
        let root = fs::canonicalize(root).map_err(|e| io_err("resolve", root, e))?;
        let meta = fs::metadata(&root).map_err(|e| io_err("stat", &root, e))?;
        if !meta.is_dir() {
            return Err(CacheError::NotACache {
                path: root,
                reason: "not a directory".into(),
            });
        }
        // A folder with files but without the cache's own marker is someone else's: never write
        // into it (`rhx cache gc` there would delete files under its `objects/`).
        // (Another process may be creating this cache right now: its own entries, with an empty
        // `objects/`, are not a reason to refuse.)
        const OWN: &[&str] = &["objects", "tmp", "locks", "quarantine", "digests.json", "CACHEDIR.TAG", LAYOUT_FILE];
        let foreign = fs::read_dir(&root)
            .map_err(|e| io_err("list", &root, e))?
            .flatten()
            .any(|e| !OWN.contains(&e.file_name().to_string_lossy().as_ref()));
        let objects = fs::read_dir(root.join("objects")).map(|mut rd| rd.next().is_some()).unwrap_or(false);
        if (foreign || objects) && !root.join(LAYOUT_FILE).exists() {
            return Err(CacheError::NotACache {
                path: root,
                reason: format!("the folder is not empty and has no `{LAYOUT_FILE}` marker, so it is not an rhx cache; give the cache's own folder, or a new or empty one"),
            });
        }
        for sub in ["objects", "tmp", "locks", "quarantine"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(|e| io_err("create", &d, e))?;
        }
        let locks = match locks {
            Some(m) => m,
            None => LockMode::for_root(&root)?,
        };
        let cache = Cache {
            digests: DigestCache {
                file: root.join("digests.json"),
                lock: root.join("locks").join("digests.lock"),
                tmp_dir: root.join("tmp"),
                locks,
            },
            locks,
            root,
            verification: Verification::Full,
            warnings: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
        };
        cache.ensure_marker(LAYOUT_FILE, &format!("{LAYOUT}\n"), true)?;
        cache.ensure_marker("CACHEDIR.TAG", CACHEDIR_TAG, false)?;
        for (path, _) in cache.sweep_tmp(None, false)? {
            cache.warn(
                None,
                &path,
                "removed a temp entry left by a process that died",
            );
        }
        Ok(cache)
    }

    /// Writes a marker file if missing (atomically); when `check`, an existing one must match.
    fn ensure_marker(&self, name: &str, content: &str, check: bool) -> Result<(), CacheError> {
        let path = self.root.join(name);
        match fs::read_to_string(&path) {
            Ok(s) if !check || s.trim() == content.trim() => return Ok(()),
            Ok(s) => {
                return Err(CacheError::NotACache {
                    path: self.root.clone(),
                    reason: format!(
                        "{name} says {:?}, this build understands {:?}",
                        s.trim(),
                        content.trim()
                    ),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", path, e)),
        }
        let tmp = self.tmp_path("marker");
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(content.as_bytes())?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("write", &tmp, e));
        }
        fs::rename(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("create", &path, e)
        })
    }

    /// Sets the verification `get` and `get_or_put` use (default [`Verification::Full`]).
    pub fn with_verification(mut self, v: Verification) -> Cache {
        self.verification = v;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an artifact lives (whether or not it exists).
    pub fn object_dir(&self, key: &Key) -> PathBuf {
        self.root
            .join("objects")
            .join(key.shard())
            .join(key.as_str())
    }

    fn lock_path(&self, key: &Key) -> PathBuf {
        self.root.join("locks").join(format!("{key}.lock"))
    }

    /// A fresh, unique name under `tmp/` carrying pid and host: `<purpose>-<pid>-<ns>-<n>@<host>`.
    fn tmp_path(&self, purpose: &str) -> PathBuf {
        self.root.join("tmp").join(self.tmp_name(purpose))
    }

    fn tmp_name(&self, purpose: &str) -> String {
        let ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!(
            "{purpose}-{}-{ns}-{n}@{}",
            std::process::id(),
            sys::hostname()
        )
    }

    fn warn(&self, key: Option<&Key>, path: &Path, message: impl Into<String>) {
        let w = CacheWarning {
            key: key.cloned(),
            path: path.to_path_buf(),
            message: message.into(),
        };
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(w);
    }

    /// Returns and clears the warnings recorded so far.
    pub fn take_warnings(&self) -> Vec<CacheWarning> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|p| p.into_inner()))
    }

    // ----------------------------------------------------------------------------- get / put

    /// The verified artifact for `key`, or `None` (absent, or damaged and now quarantined).
    pub fn get(&self, key: &Key) -> Result<Option<Artifact>, CacheError> {
        self.get_with(key, self.verification)
    }

    /// [`Cache::get`] with an explicit verification level.
    pub fn get_with(&self, key: &Key, mode: Verification) -> Result<Option<Artifact>, CacheError> {
        let dir = self.object_dir(key);
        match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("stat", dir, e)),
            Ok(m) if !m.is_dir() => {
                self.quarantine(&dir, Some(key), "not a directory")?;
                return Ok(None);
            }
            Ok(_) => {}
        }
        match check(&dir, key, mode)? {
            Check::Good { manifest, .. } => Ok(Some(Artifact {
                key: key.clone(),
                dir,
                manifest: *manifest,
            })),
            Check::Bad(reason) => {
                self.quarantine(&dir, Some(key), &reason)?;
                Ok(None)
            }
        }
    }

    /// Whether an artifact directory exists for `key` (not verified).
    pub fn contains(&self, key: &Key) -> bool {
        self.object_dir(key).is_dir()
    }

    /// Moves a damaged entry to `quarantine/`, with a `.reason.txt` beside it. `Ok(None)` when
    /// it had vanished already (someone else moved or removed it).
    fn quarantine(
        &self,
        dir: &Path,
        key: Option<&Key>,
        reason: &str,
    ) -> Result<Option<PathBuf>, CacheError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dest = self
            .root
            .join("quarantine")
            .join(format!("{name}.{}", self.tmp_name("q")));
        match fs::rename(dir, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("move to quarantine", dir, e)),
        }
        let mut note = dest.clone().into_os_string();
        note.push(".reason.txt");
        let _ = fs::write(&note, format!("{reason}\n"));
        self.warn(
            key,
            dir,
            format!("damaged artifact moved to {}: {reason}", dest.display()),
        );
        Ok(Some(dest))
    }

    /// Stores the artifact for `key`. `write` receives a fresh empty directory (on the cache's
    /// file system) and writes the node's files into it (subdirectories allowed; no symlinks;
    /// no top-level `manifest.json`). The cache then hashes the files, writes the manifest,
    /// fsyncs, and renames the directory into place. If a valid artifact for `key` exists by
    /// then, it is kept and returned, and ours is dropped.
    pub fn put<F, E>(&self, key: &Key, meta: ArtifactMeta, write: F) -> Result<Artifact, CacheError>
    where
        F: FnOnce(&Path) -> Result<(), E>,
        E: Into<Box<dyn StdError + Send + Sync + 'static>>,
    {
        let tmp = self.tmp_path("put");
        fs::create_dir(&tmp).map_err(|e| io_err("create the temp directory", &tmp, e))?;
        let mut guard = TmpGuard(Some(tmp.clone()));

        let started = Instant::now();
        if let Err(e) = write(&tmp) {
            let source: Box<dyn StdError + Send + Sync> = e.into();
            return Err(match find_space_error(source.as_ref()) {
                Some(true) => CacheError::DiskFull {
                    op: "write the artifact into",
                    path: tmp.clone(),
                },
                Some(false) => CacheError::QuotaExceeded {
                    op: "write the artifact into",
                    path: tmp.clone(),
                },
                None => CacheError::Producer {
                    key: key.clone(),
                    kind: meta.kind.clone(),
                    source,
                },
            });
        }
        let wall = meta
            .wall_time_s
            .unwrap_or_else(|| started.elapsed().as_secs_f64());
        let wall = if wall.is_finite() { wall } else { 0.0 };

        // Hash and fsync what the producer wrote.
        let mut dirs = Vec::new();
        let found = walk(&tmp, &mut dirs).map_err(|e| match e {
            WalkError::Io(op, path, e) => io_err(op, path, e),
            WalkError::Odd(reason) => CacheError::BadOutput {
                path: tmp.clone(),
                reason,
            },
        })?;
        let mut files = Vec::with_capacity(found.len());
        for f in found {
            if f.name == MANIFEST {
                return Err(CacheError::BadOutput {
                    path: f.path,
                    reason: format!("{MANIFEST} is reserved for the cache's manifest"),
                });
            }
            let file = fs::File::open(&f.path).map_err(|e| io_err("open", &f.path, e))?;
            let (sha256, size) =
                sys::sha256_reader(&file).map_err(|e| io_err("read", &f.path, e))?;
            // Stored files are immutable: drop the write bits (guards against accidental
            // in-place edits; the hash check catches the rest).
            let mut perms = file
                .metadata()
                .map_err(|e| io_err("stat", &f.path, e))?
                .permissions();
            perms.set_mode(perms.mode() & !0o222);
            file.set_permissions(perms)
                .map_err(|e| io_err("make read-only", &f.path, e))?;
            file.sync_all().map_err(|e| io_err("fsync", &f.path, e))?;
            files.push(FileEntry {
                name: f.name,
                size,
                sha256,
            });
        }
        for d in dirs.iter().rev() {
            sys::fsync_dir(d).map_err(|e| io_err("fsync", d, e))?;
        }

        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            key: key.clone(),
            kind: meta.kind,
            spec: meta.spec,
            inputs: meta.inputs,
            files,
            created: sys::rfc3339(SystemTime::now()),
            rhx_version: rhx_version(),
            wall_time_s: wall,
            extra: meta.extra,
            manifest_sha256: String::new(),
        }
        .seal()
        .map_err(|reason| CacheError::BadOutput {
            path: tmp.clone(),
            reason: format!("cannot serialise the manifest: {reason}"),
        })?;
        let mpath = tmp.join(MANIFEST);
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| CacheError::BadOutput {
            path: mpath.clone(),
            reason: format!("cannot serialise the manifest: {e}"),
        })?;
        let write_manifest = || -> io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&mpath)?;
            f.write_all(&text)?;
            f.sync_all()
        };
        write_manifest().map_err(|e| io_err("write", &mpath, e))?;
        sys::fsync_dir(&tmp).map_err(|e| io_err("fsync", &tmp, e))?;

        // Move into place.
        let dest = self.object_dir(key);
        let shard = dest.parent().map(Path::to_path_buf).unwrap_or_default();
        if !shard.is_dir() {
            fs::create_dir_all(&shard).map_err(|e| io_err("create", &shard, e))?;
            let objects = self.root.join("objects");
            sys::fsync_dir(&objects).map_err(|e| io_err("fsync", &objects, e))?;
        }
        for _attempt in 0..3 {
            match fs::rename(&tmp, &dest) {
                Ok(()) => {
                    guard.0 = None;
                    sys::fsync_dir(&shard).map_err(|e| io_err("fsync", &shard, e))?;
                    let tmp_root = self.root.join("tmp");
                    let _ = sys::fsync_dir(&tmp_root);
                    return Ok(Artifact {
                        key: key.clone(),
                        dir: dest,
                        manifest,
                    });
                }
                Err(e) if is_collision(&e) || dest.exists() => {
                    // Someone stored this key meanwhile: keep theirs if it is sound.
                    if let Some(existing) = self.get_with(key, self.verification)? {
                        return Ok(existing);
                    }
                    // It was damaged and is now quarantined: try again.
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && !shard.is_dir() => {
                    fs::create_dir_all(&shard).map_err(|e| io_err("create", &shard, e))?;
                }
                Err(e) => return Err(io_err("move into place", &tmp, e)),
            }
        }
        Err(CacheError::Io {
            op: "move into place",
            path: tmp.clone(),
            source: io::Error::other(format!(
                "{} kept being replaced by damaged artifacts",
                dest.display()
            )),
        })
    }

    /// The usual pattern: a verified hit, else lock the key, look again (another process may
    /// have computed it while we waited), else compute with `write` and store. Returns the
    /// artifact and whether this call computed it.
    pub fn get_or_put<F, E>(
        &self,
        key: &Key,
        meta: ArtifactMeta,
        write: F,
    ) -> Result<(Artifact, bool), CacheError>
    where
        F: FnOnce(&Path) -> Result<(), E>,
        E: Into<Box<dyn StdError + Send + Sync + 'static>>,
    {
        if let Some(a) = self.get(key)? {
            return Ok((a, false));
        }
        let _lock = self.lock(key)?;
        if let Some(a) = self.get(key)? {
            return Ok((a, false));
        }
        let a = self.put(key, meta, write)?;
        Ok((a, true))
    }

    /// Removes the artifact for `key` (renamed out of `objects/` first, so no half-removed
    /// artifact is ever visible). Returns whether there was one. Does not take the key lock.
    pub fn remove(&self, key: &Key) -> Result<bool, CacheError> {
        self.remove_entry(&self.object_dir(key))
    }

    fn remove_entry(&self, dir: &Path) -> Result<bool, CacheError> {
        let trash = self.tmp_path("trash");
        match fs::rename(dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("remove", dir, e)),
        }
        if let Some(parent) = dir.parent() {
            let _ = sys::fsync_dir(parent);
        }
        remove_any(&trash).map_err(|e| io_err("remove", &trash, e))?;
        Ok(true)
    }

    // ----------------------------------------------------------------------------- locks

    /// Blocks until this process holds the exclusive lock on `key`.
    pub fn lock(&self, key: &Key) -> Result<KeyLock, CacheError> {
        match FileLock::acquire(&self.lock_path(key), Wait::Forever, self.locks)? {
            Some(inner) => Ok(KeyLock {
                inner,
                key: key.clone(),
            }),
            None => Err(CacheError::LockTimeout {
                key: key.clone(),
                path: self.lock_path(key),
                waited: Duration::MAX,
            }),
        }
    }

    /// How this cache's locks exclude processes.
    pub fn lock_mode(&self) -> LockMode {
        self.locks
    }

    /// Whether some process holds the lock on `key` now, and who (as its lock file says). Takes
    /// and drops the lock when free, so never ask for a key this thread holds.
    pub fn lock_holder(&self, key: &Key) -> Result<Holder, CacheError> {
        match self.try_lock(key)? {
            Some(_free) => Ok(Holder::Free),
            None => Ok(Holder::Held(lock::read_owner(&self.lock_path(key)))),
        }
    }

    /// The lock on `key` if it is free now, else `None`.
    pub fn try_lock(&self, key: &Key) -> Result<Option<KeyLock>, CacheError> {
        Ok(
            FileLock::acquire(&self.lock_path(key), Wait::No, self.locks)?.map(|inner| KeyLock {
                inner,
                key: key.clone(),
            }),
        )
    }

    /// Waits at most `timeout` for the lock on `key`; [`CacheError::LockTimeout`] after that.
    pub fn lock_timeout(&self, key: &Key, timeout: Duration) -> Result<KeyLock, CacheError> {
        let deadline = Instant::now() + timeout;
        match FileLock::acquire(&self.lock_path(key), Wait::Until(deadline), self.locks)? {
            Some(inner) => Ok(KeyLock {
                inner,
                key: key.clone(),
            }),
            None => Err(CacheError::LockTimeout {
                key: key.clone(),
                path: self.lock_path(key),
                waited: timeout,
            }),
        }
    }

    // ----------------------------------------------------------------------------- digests

    /// The digest of an input file, reused from `digests.json` when the file is unchanged.
    pub fn file_digest(&self, path: impl AsRef<Path>) -> Result<FileDigest, CacheError> {
        Ok(self.file_digest_traced(path)?.0)
    }

    /// [`Cache::file_digest`], also saying whether the digest was reused or computed.
    pub fn file_digest_traced(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<(FileDigest, DigestSource), CacheError> {
        self.digests
            .digest(path.as_ref(), || self.tmp_name("digests"))
    }

    // ----------------------------------------------------------------------------- maintenance

    fn object_entries(&self) -> Result<Vec<ObjectEntry>, CacheError> {
        let objects = self.root.join("objects");
        let mut out = Vec::new();
        let shards = fs::read_dir(&objects).map_err(|e| io_err("list", &objects, e))?;
        for shard in shards {
            let shard = shard.map_err(|e| io_err("list", &objects, e))?;
            let shard_name = shard.file_name().to_string_lossy().into_owned();
            let shard_path = shard.path();
            if !shard_path.is_dir() {
                out.push(ObjectEntry {
                    name: shard_name,
                    key: None,
                    dir: shard_path,
                });
                continue;
            }
            let entries = match fs::read_dir(&shard_path) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("list", &shard_path, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err("list", &shard_path, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let key = Key::parse(&name).ok().filter(|k| k.shard() == shard_name);
                out.push(ObjectEntry {
                    name,
                    key,
                    dir: entry.path(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Lists the stored artifacts (from their manifests; nothing is verified or moved).
    pub fn ls(&self) -> Result<Vec<ArtifactInfo>, CacheError> {
        let mut out = Vec::new();
        for e in self.object_entries()? {
            let Some(key) = e.key else { continue };
            let manifest = fs::read(e.dir.join(MANIFEST))
                .ok()
                .and_then(|b| Manifest::from_bytes(&b).ok());
            out.push(match manifest {
                Some(m) => ArtifactInfo {
                    key,
                    kind: Some(m.kind.clone()),
                    size: m.total_size(),
                    files: m.files.len(),
                    created: Some(m.created.clone()),
                    dir: e.dir,
                },
                None => ArtifactInfo {
                    key,
                    kind: None,
                    size: tree_size(&e.dir),
                    files: 0,
                    created: None,
                    dir: e.dir,
                },
            });
        }
        Ok(out)
    }

    /// Rehashes every artifact; damaged ones (and entries under `objects/` that are not
    /// artifacts) are quarantined and listed. Re-hashes every input file `digests.json`
    /// remembers and drops the entries that are wrong.
    pub fn verify(&self) -> Result<VerifyReport, CacheError> {
        enum Outcome {
            Ok(u64),
            Bad(Corrupted),
            Vanished,
            Error(String),
        }
        let entries = self.object_entries()?;
        let outcomes: Vec<Outcome> = entries
            .par_iter()
            .map(|e| {
                let (reason, key) = match &e.key {
                    None => (
                        "not an artifact (name is not a key of this shard)".to_string(),
                        None,
                    ),
                    Some(k) => match check(&e.dir, k, Verification::Full) {
                        Ok(Check::Good { bytes_hashed, .. }) => return Outcome::Ok(bytes_hashed),
                        Ok(Check::Bad(reason)) => (reason, Some(k)),
                        Err(err) => return Outcome::Error(err.to_string()),
                    },
                };
                match self.quarantine(&e.dir, key, &reason) {
                    Ok(Some(dest)) => Outcome::Bad(Corrupted {
                        key: key.cloned(),
                        name: e.name.clone(),
                        reason,
                        quarantined_to: dest,
                    }),
                    Ok(None) => Outcome::Vanished,
                    Err(err) => Outcome::Error(err.to_string()),
                }
            })
            .collect();
        let mut report = VerifyReport::default();
        let digests = self.digests.verify(|| self.tmp_name("digests"))?;
        report.digests_checked = digests.checked;
        report.digests_wrong = digests.wrong;
        for o in outcomes {
            match o {
                Outcome::Ok(bytes) => {
                    report.checked += 1;
                    report.ok += 1;
                    report.bytes_hashed += bytes;
                }
                Outcome::Bad(c) => {
                    report.checked += 1;
                    report.corrupted.push(c);
                }
                Outcome::Vanished => {}
                Outcome::Error(e) => {
                    report.checked += 1;
                    report.errors.push(e);
                }
            }
        }
        Ok(report)
    }

    /// Removes stale entries of `tmp/`: those of dead processes of this host, and (when
    /// `foreign_max_age` is given) those of unknown liveness older than that.
    fn sweep_tmp(
        &self,
        foreign_max_age: Option<Duration>,
        dry_run: bool,
    ) -> Result<Vec<(PathBuf, u64)>, CacheError> {
        let tmp = self.root.join("tmp");
        let mut removed = Vec::new();
        let rd = fs::read_dir(&tmp).map_err(|e| io_err("list", &tmp, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| io_err("list", &tmp, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let stale = match tmp_owner(&name) {
                TmpOwner::Alive => false,
                TmpOwner::Dead => true,
                TmpOwner::Unknown => match foreign_max_age {
                    None => false,
                    Some(max) => fs::symlink_metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > max),
                },
            };
            if stale {
                let size = tree_size(&path);
                if !dry_run {
                    if let Err(e) = remove_any(&path) {
                        // Not fatal: e.g. another user's leftover on a shared cache.
                        self.warn(None, &path, format!("cannot remove stale temp entry: {e}"));
                        continue;
                    }
                }
                removed.push((path, size));
            }
        }
        Ok(removed)
    }

    /// Removes artifacts whose keys are not in `keep` (unless some process holds their lock),
    /// entries under `objects/` that are not artifacts, stale temp entries, the quarantine
    /// (unless told not to), idle lock files of absent artifacts, and digest-cache entries of
    /// deleted files.
    pub fn gc(&self, keep: &HashSet<Key>, opts: GcOptions) -> Result<GcReport, CacheError> {
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        for e in self.object_entries()? {
            match e.key {
                Some(key) if keep.contains(&key) => {}
                Some(key) => {
                    let Some(lock) = self.try_lock(&key)? else {
                        report.skipped_locked.push(key);
                        continue;
                    };
                    let size = tree_size(&e.dir);
                    if !opts.dry_run {
                        self.remove_entry(&e.dir)?;
                        // Unlink the lock file while holding it; waiters notice and retry.
                        let _ = fs::remove_file(lock.path());
                    }
                    drop(lock);
                    report.freed_bytes += size;
                    report.removed.push((key, size));
                }
                None => {
                    report.freed_bytes += tree_size(&e.dir);
                    if !opts.dry_run {
                        self.remove_entry(&e.dir)?;
                    }
                    report.removed_strays.push(e.dir);
                }
            }
        }
        for (path, size) in self.sweep_tmp(Some(opts.foreign_tmp_max_age), opts.dry_run)? {
            report.freed_bytes += size;
            report.removed_tmp.push(path);
        }
        if opts.clear_quarantine {
            let q = self.root.join("quarantine");
            let rd = fs::read_dir(&q).map_err(|e| io_err("list", &q, e))?;
            for entry in rd {
                let path = entry.map_err(|e| io_err("list", &q, e))?.path();
                report.freed_bytes += tree_size(&path);
                if !opts.dry_run {
                    remove_any(&path).map_err(|e| io_err("remove", &path, e))?;
                }
                report.removed_quarantine.push(path);
            }
        }
        let locks = self.root.join("locks");
        let rd = fs::read_dir(&locks).map_err(|e| io_err("list", &locks, e))?;
        for entry in rd {
            let name = entry
                .map_err(|e| io_err("list", &locks, e))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            let Some(key) = name.strip_suffix(".lock").and_then(|k| Key::parse(k).ok()) else {
                continue;
            };
            if self.contains(&key) {
                continue;
            }
            if let Some(lock) = self.try_lock(&key)? {
                if !self.contains(&key) {
                    if !opts.dry_run {
                        let _ = fs::remove_file(lock.path());
                    }
                    report.removed_locks += 1;
                }
            }
        }
        report.pruned_digests = self
            .digests
            .prune(|| self.tmp_name("digests"), opts.dry_run)?;
        Ok(report)
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("root", &self.root)
            .field("verification", &self.verification)
            .finish()
    }
}

/// The current time as an RFC 3339 UTC timestamp (what manifests record), for other stages'
/// provenance.
pub fn rfc3339_now() -> String {
    sys::rfc3339(std::time::SystemTime::now())
}
