//! Exclusive advisory locks on files under `locks/`.
//!
//! Two layers: an in-process table (so two threads of one process exclude each other whatever
//! the file system's lock semantics) and an OS lock on the lock file (`flock(2)` through the
//! standard library's `File::lock`, which is released by the kernel when the holder dies,
//! even by `kill -9`). After locking, the holder checks that the path still names the file it
//! locked (a `gc` may have unlinked an unused lock file in between); if not, it starts over.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::error::{io_err, CacheError};
use super::key::Key;

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

/// A held exclusive lock on a file. Unlocked when dropped (or when the process dies).
pub(crate) struct FileLock {
    file: File,
    path: PathBuf,
    _claim: Claim,
}

impl FileLock {
    /// Locks `path` (creating it). `Ok(None)` when `wait` is not `Forever` and the lock stayed busy.
    pub(crate) fn acquire(path: &Path, wait: Wait) -> Result<Option<FileLock>, CacheError> {
        let Some(claim) = Claim::take(path, wait)? else {
            return Ok(None);
        };
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
            let ours = file
                .metadata()
                .map_err(|e| io_err("stat the lock file", path, e))?;
            match std::fs::metadata(path) {
                Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {
                    return Ok(Some(FileLock {
                        file,
                        path: path.to_path_buf(),
                        _claim: claim,
                    }))
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("stat the lock file", path, e)),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn try_lock(file: &File, path: &Path) -> Result<bool, CacheError> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err("lock", path, e)),
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first makes the order explicit
        // (the OS lock goes before the in-process claim, which is dropped after this).
        let _ = self.file.unlock();
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
