//! Exclusive locks on files under `locks/`, safe on local and on shared (network) file systems.
//!
//! Two layers: an in-process table (so two threads of one process exclude each other whatever
//! the file system's lock semantics) and a lock between processes, of one of two kinds
//! ([`LockKind`], chosen per cache root by [`LockMode::for_root`]):
//!
//! * **`flock`** (local file systems): `flock(2)` through the standard library's `File::lock`,
//!   released by the kernel when the holder dies, even by `kill -9`. After locking, the holder
//!   checks that the path still names the file it locked (a `gc` may have unlinked an unused lock
//!   file in between); if not, it starts over.
//! * **`file`** (NFS, Lustre, GPFS, BeeGFS, CIFS, CephFS, FUSE; `flock` there depends on mount
//!   options and lock daemons): the lock *is* the file. It is created whole by `link(2)` of a
//!   unique file holding the owner (host, boot id, pid, the pid's start time, a nonce) — atomic
//!   on NFS, where `O_EXCL` was not before v3, and checked by the link count as `open(2)`
//!   advises — and removed on release. A holder refreshes its mtime every quarter lease. A waiter
//!   takes a lock over only when it is stale: the owner is on this host and its process is gone
//!   (or the host rebooted), or, for an owner on another host, the file did not change for a
//!   whole lease as timed by the waiter's own clock (so clock skew between nodes does not
//!   matter). Take-overs are serialised by a `<lock>.break` file and verify, after renaming the
//!   stale file away, that they removed the file they judged.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::error::{io_err, CacheError};
use super::key::Key;
use super::sys;

#[derive(Clone, Copy)]
pub(crate) enum Wait {
    Forever,
    No,
    Until(Instant),
}

struct Table {
    /// Lock paths held by this process, and by which thread.
    held: Mutex<HashMap<PathBuf, ThreadId>>,
    freed: Condvar,
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| Table {
        held: Mutex::new(HashMap::new()),
        freed: Condvar::new(),
    })
}

fn held() -> MutexGuard<'static, HashMap<PathBuf, ThreadId>> {
    // A poisoned table only means a thread panicked while holding the (tiny) critical section;
    // the set itself is still consistent.
    table().held.lock().unwrap_or_else(|p| p.into_inner())
}

/// The in-process claim on a lock path; released on drop.
struct Claim(PathBuf);

impl Claim {
    /// `Ok(None)`: busy and not waiting (or the deadline passed).
    fn take(path: &Path, wait: Wait) -> Result<Option<Claim>, CacheError> {
        let t = table();
        let me = std::thread::current().id();
        let mut set = held();
        loop {
            match set.get(path) {
                None => {
                    set.insert(path.to_path_buf(), me);
                    return Ok(Some(Claim(path.to_path_buf())));
                }
                Some(holder) if *holder == me && !matches!(wait, Wait::No) => {
                    // Waiting would wait for ourselves forever.
                    return Err(CacheError::Reentrant {
                        path: path.to_path_buf(),
                    });
                }
                Some(_) => {}
            }
            match wait {
                Wait::No => return Ok(None),
                Wait::Forever => set = t.freed.wait(set).unwrap_or_else(|p| p.into_inner()),
                Wait::Until(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(None);
                    }
                    set = t
                        .freed
                        .wait_timeout(set, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        held().remove(&self.0);
        table().freed.notify_all();
    }
}

/// How lock files exclude processes; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    Flock,
    File,
}

impl LockKind {
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Flock => "flock",
            LockKind::File => "file",
        }
    }
}

/// The lock kind of one cache root and, for `file` locks, the lease after which a lock of
/// another host whose file stopped changing is taken over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockMode {
    pub kind: LockKind,
    pub lease: Duration,
    /// Why this kind: the file system's name, or the environment variable that chose it.
    pub why: &'static str,
}

/// Default lease of `file` locks (`RHX_LOCK_LEASE`, seconds).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

impl LockMode {
    /// `RHX_LOCK=flock|file|auto` (default `auto`: `file` on the network and cluster file
    /// systems of [`filesystem_of`], `flock` elsewhere) and `RHX_LOCK_LEASE` (seconds, default
    /// 60; every process sharing a cache must use the same value).
    pub fn for_root(root: &Path) -> Result<LockMode, CacheError> {
        let lease = match std::env::var("RHX_LOCK_LEASE") {
            Ok(v) => match v.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && s >= 0.05 => Duration::from_secs_f64(s),
                _ => return Err(CacheError::BadSetting { name: "RHX_LOCK_LEASE", value: v, expected: "a number of seconds ≥ 0.05, e.g. 60" }),
            },
            Err(_) => DEFAULT_LEASE,
        };
        let (kind, why) = match std::env::var("RHX_LOCK").as_deref() {
            Ok("flock") => (LockKind::Flock, "RHX_LOCK=flock"),
            Ok("file") => (LockKind::File, "RHX_LOCK=file"),
            Ok("auto") | Ok("") | Err(_) => {
                let (fs, kind) = filesystem_of(root);
                (kind, fs)
            }
            Ok(other) => return Err(CacheError::BadSetting { name: "RHX_LOCK", value: other.to_string(), expected: "flock, file or auto" }),
        };
        Ok(LockMode { kind, lease, why })
    }

    pub fn flock() -> LockMode {
        LockMode { kind: LockKind::Flock, lease: DEFAULT_LEASE, why: "chosen by the caller" }
    }

    pub fn file(lease: Duration) -> LockMode {
        LockMode { kind: LockKind::File, lease, why: "chosen by the caller" }
    }
}

/// The file system `path` is on (by `statfs(2)`'s magic number) and the lock kind `auto`
/// gives it: `file` for network and cluster file systems, `flock` for local ones and unknown.
pub fn filesystem_of(path: &Path) -> (&'static str, LockKind) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return ("unknown", LockKind::Flock);
    };
    // SAFETY: `c` is a valid NUL-terminated path and `buf` a writable statfs struct.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut buf) } != 0 {
        return ("unknown", LockKind::Flock);
    }
    #[allow(clippy::unnecessary_cast)]
    let magic = buf.f_type as i64 as u32;
    match magic {
        0x6969 => ("nfs", LockKind::File),
        0x0BD0_0BD0 => ("lustre", LockKind::File),
        0x4750_4653 => ("gpfs", LockKind::File),
        0x1983_0326 => ("beegfs", LockKind::File),
        0x00C3_6400 => ("cephfs", LockKind::File),
        0xFF53_4D42 | 0xFE53_4D42 | 0x517B => ("cifs/smb", LockKind::File),
        0x6573_5546 => ("fuse", LockKind::File),
        0x5346_414F => ("afs", LockKind::File),
        0x2003_0528 => ("orangefs", LockKind::File),
        0xEF53 => ("ext4", LockKind::Flock),
        0x5846_5342 => ("xfs", LockKind::Flock),
        0x9123_683E => ("btrfs", LockKind::Flock),
        0x0102_1994 => ("tmpfs", LockKind::Flock),
        0x794C_7630 => ("overlayfs", LockKind::Flock),
        0x2FC1_2FC1 => ("zfs", LockKind::Flock),
        0x0102_1997 => ("9p", LockKind::Flock),
        _ => ("another local file system", LockKind::Flock),
    }
}

/// Who holds a lock, as written in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockOwner {
    pub host: String,
    pub pid: u32,
    /// When the lock was taken (RFC 3339).
    pub since: String,
    boot: String,
    start: String,
}

impl LockOwner {
    fn me() -> LockOwner {
        let pid = std::process::id();
        LockOwner {
            host: sys::hostname().to_string(),
            pid,
            since: sys::rfc3339(std::time::SystemTime::now()),
            boot: sys::boot_id().to_string(),
            start: sys::process_start(pid).unwrap_or_default(),
        }
    }

    fn line(&self, nonce: &str) -> String {
        format!("rhx-lock 1 host={} boot={} pid={} start={} since={} nonce={nonce}\n", self.host, self.boot, self.pid, self.start, self.since)
    }

    /// Parses a lock file's content; `None` for anything else (an empty or foreign file).
    pub fn parse(text: &str) -> Option<LockOwner> {
        let rest = text.trim().strip_prefix("rhx-lock 1 ")?;
        let field = |k: &str| rest.split(' ').find_map(|w| w.strip_prefix(k)?.strip_prefix('=')).map(str::to_string);
        Some(LockOwner { host: field("host")?, pid: field("pid")?.parse().ok()?, since: field("since")?, boot: field("boot")?, start: field("start")? })
    }

    /// On this host: whether the owning process is gone (or the host rebooted since);
    /// `None` for an owner on another host (only the lease can tell).
    fn gone_here(&self) -> Option<bool> {
        if self.host != sys::hostname() {
            return None;
        }
        if self.boot != sys::boot_id() {
            return Some(true);
        }
        if !sys::pid_alive(self.pid) {
            return Some(true);
        }
        // A pid reused by another process after the owner died.
        Some(!self.start.is_empty() && sys::process_start(self.pid).is_some_and(|s| s != self.start))
    }
}

/// What [`Cache::lock_holder`](super::Cache::lock_holder) found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    Free,
    /// Held; the owner when its lock file names one.
    Held(Option<LockOwner>),
}

/// Reads a lock file's owner (in either kind); `None` when it is absent or not an rhx lock line.
pub fn read_owner(path: &Path) -> Option<LockOwner> {
    std::fs::read_to_string(path).ok().and_then(|t| LockOwner::parse(&t))
}

/// A held exclusive lock on a file. Unlocked when dropped (or when the process dies).
pub(crate) struct FileLock {
    held: Held,
    path: PathBuf,
    _claim: Claim,
}

enum Held {
    Flock(File),
    /// The content of the lock file we created (removed on drop if it still holds it).
    File(String),
}

impl FileLock {
    /// Locks `path` (creating it). `Ok(None)` when `wait` is not `Forever` and the lock stayed busy.
    pub(crate) fn acquire(path: &Path, wait: Wait, mode: LockMode) -> Result<Option<FileLock>, CacheError> {
        let Some(claim) = Claim::take(path, wait)? else {
            return Ok(None);
        };
        let held = match mode.kind {
            LockKind::Flock => acquire_flock(path, wait)?.map(Held::Flock),
            LockKind::File => acquire_file(path, wait, mode.lease)?.map(Held::File),
        };
        Ok(held.map(|held| FileLock { held, path: path.to_path_buf(), _claim: claim }))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn acquire_flock(path: &Path, wait: Wait) -> Result<Option<File>, CacheError> {
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err("open the lock file", path, e))?;
        let locked = match wait {
            Wait::Forever => {
                file.lock().map_err(|e| io_err("lock", path, e))?;
                true
            }
            Wait::No => try_lock(&file, path)?,
            Wait::Until(deadline) => {
                let mut pause = Duration::from_millis(2);
                loop {
                    if try_lock(&file, path)? {
                        break true;
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        break false;
                    }
                    std::thread::sleep(pause.min(deadline - now));
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
            }
        };
        if !locked {
            return Ok(None);
        }
        // The file we locked must still be the one at `path` (gc unlinks idle lock files
        // while holding their lock; whoever locked the unlinked inode must start over).
        let ours = file.metadata().map_err(|e| io_err("stat the lock file", path, e))?;
        match std::fs::metadata(path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {
                // Say who holds it (read by `rhx plan`); not needed for exclusion.
                let _ = file.set_len(0);
                let _ = (&file).write_all(LockOwner::me().line("flock").as_bytes());
                return Ok(Some(file));
            }
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("stat the lock file", path, e)),
        }
    }
}

fn try_lock(file: &File, path: &Path) -> Result<bool, CacheError> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err("lock", path, e)),
    }
}

/// A unique name beside `path`: `<name>.<suffix>.<host>.<pid>.<n>`.
fn unique_beside(path: &Path, suffix: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{name}.{suffix}.{}.{}.{ns}-{n}", sys::hostname(), std::process::id()))
}

/// Creates `path` holding `content` if it does not exist: `Ok(false)` when it does.
fn create_whole(path: &Path, content: &str) -> Result<bool, CacheError> {
    let tmp = unique_beside(path, "link");
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err("write the lock file", &tmp, e));
    }
    let linked = match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // File systems without hard links: an exclusive create (atomic on NFSv3 and later).
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EOPNOTSUPP) | Some(libc::EXDEV)) => {
            let _ = std::fs::remove_file(&tmp);
            return match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    f.write_all(content.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| io_err("write the lock file", path, e))?;
                    Ok(true)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(io_err("create the lock file", path, e)),
            };
        }
        // The reply to a link over NFS can be lost although the link was made: the link count
        // of our unique file tells (open(2), O_EXCL).
        Err(e) => match std::fs::metadata(&tmp) {
            Ok(m) if m.nlink() == 2 => Ok(true),
            _ => Err(io_err("create the lock file", path, e)),
        },
    };
    let _ = std::fs::remove_file(&tmp);
    linked
}

/// What a waiter saw of a busy lock file, to tell a dead holder on another host by a file
/// that stopped changing.
#[derive(Default)]
struct Observer {
    seen: Option<(String, Option<std::time::SystemTime>, Instant)>,
}

impl Observer {
    /// Whether the lock file (content `text`, mtime `mtime`) is stale.
    fn stale(&mut self, text: &str, mtime: Option<std::time::SystemTime>, lease: Duration) -> bool {
        if let Some(gone) = LockOwner::parse(text).and_then(|o| o.gone_here()) {
            self.seen = None;
            return gone;
        }
        match &self.seen {
            Some((t, m, since)) if t == text && *m == mtime => since.elapsed() >= lease,
            _ => {
                self.seen = Some((text.to_string(), mtime, Instant::now()));
                false
            }
        }
    }
}

/// Reads a lock file: `None` when it is gone.
fn read_lock(path: &Path) -> Result<Option<(String, Option<std::time::SystemTime>)>, CacheError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let mtime = std::fs::metadata(path).ok().and_then(|m| m.modified().ok());
            Ok(Some((String::from_utf8_lossy(&bytes).into_owned(), mtime)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read the lock file", path, e)),
    }
}

fn acquire_file(path: &Path, wait: Wait, lease: Duration) -> Result<Option<String>, CacheError> {
    static NONCE: AtomicU64 = AtomicU64::new(0);
    let me = LockOwner::me();
    let mut lock_seen = Observer::default();
    let mut breaker_seen = Observer::default();
    let mut pause = Duration::from_millis(2);
    loop {
        let content = me.line(&format!("{}-{}", sys::unix_now(), NONCE.fetch_add(1, Ordering::Relaxed)));
        if create_whole(path, &content)? {
            heartbeat::register(path, &content, lease);
            return Ok(Some(content));
        }
        if let Some((text, mtime)) = read_lock(path)? {
            if lock_seen.stale(&text, mtime, lease) {
                take_over(path, &text, &me, lease, &mut breaker_seen)?;
                lock_seen = Observer::default();
                continue;
            }
        } else {
            continue; // released meanwhile
        }
        let now = Instant::now();
        let sleep = match wait {
            Wait::No => return Ok(None),
            Wait::Forever => pause,
            Wait::Until(deadline) if now >= deadline => return Ok(None),
            Wait::Until(deadline) => pause.min(deadline - now),
        };
        std::thread::sleep(sleep);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Removes the stale lock file `path` if it still holds `judged`, one taker at a time.
fn take_over(path: &Path, judged: &str, me: &LockOwner, lease: Duration, breaker_seen: &mut Observer) -> Result<(), CacheError> {
    let breaker = path.with_file_name(format!("{}.break", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
    let mine = me.line("break");
    if !create_whole(&breaker, &mine)? {
        // Someone else is taking it over; a breaker left by a dead taker is itself stale.
        if let Some((text, mtime)) = read_lock(&breaker)? {
            if breaker_seen.stale(&text, mtime, lease) {
                remove_if_holds(&breaker, &text)?;
            }
        }
        return Ok(());
    }
    let result = match read_lock(path)? {
        Some((text, _)) if text == judged => remove_if_holds(path, judged),
        _ => Ok(()),
    };
    let _ = remove_if_holds(&breaker, &mine);
    result
}

/// Renames `path` away and deletes it if it held `content`; puts it back otherwise (a lock
/// taken between our read and the rename).
fn remove_if_holds(path: &Path, content: &str) -> Result<(), CacheError> {
    let aside = unique_beside(path, "stale");
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("move the stale lock file", path, e)),
    }
    let held = std::fs::read_to_string(&aside).unwrap_or_default();
    if held != content {
        // Not the file we judged: restore it unless a new lock exists already.
        let _ = std::fs::hard_link(&aside, path);
    }
    let _ = std::fs::remove_file(&aside);
    Ok(())
}

/// Refreshes the mtime of the `file` locks this process holds, every quarter lease, so that
/// waiters on other hosts can tell them from the locks of a dead host.
mod heartbeat {
    use super::*;

    fn held() -> MutexGuard<'static, HashMap<PathBuf, (String, Duration)>> {
        static H: OnceLock<Mutex<HashMap<PathBuf, (String, Duration)>>> = OnceLock::new();
        H.get_or_init(|| {
            std::thread::Builder::new()
                .name("rhx-lock-heartbeat".into())
                .spawn(beat)
                .ok();
            Mutex::new(HashMap::new())
        })
        .lock()
        .unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn register(path: &Path, content: &str, lease: Duration) {
        held().insert(path.to_path_buf(), (content.to_string(), lease));
    }

    pub(super) fn unregister(path: &Path) {
        held().remove(path);
    }

    fn beat() {
        loop {
            let entries: Vec<(PathBuf, String, Duration)> = held().iter().map(|(p, (c, l))| (p.clone(), c.clone(), *l)).collect();
            let period = entries.iter().map(|(_, _, l)| *l / 4).min().unwrap_or(Duration::from_secs(1)).max(Duration::from_millis(10));
            for (path, content, _) in entries {
                // Only a file that is still ours (a gc may have removed it while we held it).
                if std::fs::read_to_string(&path).is_ok_and(|t| t == content) {
                    if let Ok(f) = OpenOptions::new().write(true).open(&path) {
                        let _ = f.set_modified(std::time::SystemTime::now());
                    }
                }
            }
            std::thread::sleep(period);
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        match &self.held {
            // Closing the file releases the lock anyway; unlocking first makes the order
            // explicit (the OS lock goes before the in-process claim, dropped after this).
            Held::Flock(file) => {
                let _ = file.unlock();
            }
            Held::File(content) => {
                heartbeat::unregister(&self.path);
                if std::fs::read_to_string(&self.path).is_ok_and(|t| &t == content) {
                    let _ = std::fs::remove_file(&self.path);
                }
            }
        }
    }
}

/// An exclusive lock on one key, held while its node is computed. See
/// [`Cache::lock`](super::Cache::lock). Released on drop.
pub struct KeyLock {
    pub(crate) inner: FileLock,
    pub(crate) key: Key,
}

impl KeyLock {
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        self.inner.path()
    }
}

impl std::fmt::Debug for KeyLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLock")
            .field("key", &self.key)
            .field("path", &self.inner.path)
            .finish()
    }
}
