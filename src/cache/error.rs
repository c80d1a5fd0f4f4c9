//! The cache's error type. Every variant names the path (or key) involved and what went wrong;
//! a full disk or an exhausted quota is reported as such rather than as a bare OS error.

use std::error::Error as StdError;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::key::Key;

/// Everything that can go wrong in the cache. Corruption of a stored artifact is *not* an error:
/// [`Cache::get`](super::Cache::get) quarantines it, records a warning and returns `None`.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// `ENOSPC`: the file system holding the cache (or the file being written) is full.
    #[error(
        "disk full: no space left on device while trying to {op} {}; free some space \
         (e.g. `gc` the cache) or put the cache on a larger file system",
        .path.display()
    )]
    DiskFull { op: &'static str, path: PathBuf },

    /// `EDQUOT`: the user's quota on that file system is exhausted.
    #[error(
        "disk quota exceeded while trying to {op} {}; free some space (e.g. `gc` the cache) \
         or put the cache on another file system",
        .path.display()
    )]
    QuotaExceeded { op: &'static str, path: PathBuf },

    /// Any other I/O failure.
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A string that is not 64 lowercase hexadecimal digits was used as a key.
    #[error("invalid cache key {value:?}: {reason}")]
    InvalidKey { value: String, reason: &'static str },

    /// The directory exists but is not an rhx cache of a layout this build understands.
    #[error("{} is not a usable rhx cache: {reason}", .path.display())]
    NotACache { path: PathBuf, reason: String },

    /// The closure given to [`Cache::put`](super::Cache::put) returned an error.
    #[error("computing {kind} node {key} failed: {source}")]
    Producer {
        key: Key,
        kind: String,
        #[source]
        source: Box<dyn StdError + Send + Sync + 'static>,
    },

    /// The closure left something in the artifact directory that the cache cannot store
    /// (a symlink, a socket, a reserved or non-UTF-8 name).
    #[error("cannot store the output in {}: {reason}", .path.display())]
    BadOutput { path: PathBuf, reason: String },

    /// A cache-internal JSON file (the digest cache) could not be read or written.
    #[error("{}: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },

    /// The calling thread already holds this lock (locks are not reentrant; waiting would
    /// never end).
    #[error(
        "this thread already holds the lock {}; drop its KeyLock first (locks are not reentrant)",
        .path.display()
    )]
    Reentrant { path: PathBuf },

    /// [`Cache::lock_timeout`](super::Cache::lock_timeout) gave up.
    #[error("timed out after {waited:?} waiting for the lock on {key} ({})", .path.display())]
    LockTimeout {
        key: Key,
        path: PathBuf,
        waited: Duration,
    },

    /// An environment variable that configures the cache has a value it cannot use.
    #[error("{name}={value:?}: expected {expected}")]
    BadSetting { name: &'static str, value: String, expected: &'static str },
}

impl CacheError {
    /// True for [`CacheError::DiskFull`] and [`CacheError::QuotaExceeded`].
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            CacheError::DiskFull { .. } | CacheError::QuotaExceeded { .. }
        )
    }
}

/// Which kind of "out of space" an I/O error is, if any.
pub(crate) fn space_error(e: &io::Error) -> Option<bool /* true: ENOSPC, false: EDQUOT */> {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => Some(true),
        Some(libc::EDQUOT) => Some(false),
        _ if e.kind() == io::ErrorKind::StorageFull => Some(true),
        _ if e.kind() == io::ErrorKind::QuotaExceeded => Some(false),
        _ => None,
    }
}

/// Wraps an I/O error with the operation and path, mapping ENOSPC / EDQUOT to their own variants.
pub(crate) fn io_err(op: &'static str, path: impl Into<PathBuf>, e: io::Error) -> CacheError {
    let path = path.into();
    match space_error(&e) {
        Some(true) => CacheError::DiskFull { op, path },
        Some(false) => CacheError::QuotaExceeded { op, path },
        None => CacheError::Io {
            op,
            path,
            source: e,
        },
    }
}

/// Finds an out-of-space I/O error anywhere in an error's source chain.
pub(crate) fn find_space_error(e: &(dyn StdError + 'static)) -> Option<bool> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(full) = space_error(io) {
                return Some(full);
            }
        }
        if let Some(ce) = err.downcast_ref::<CacheError>() {
            match ce {
                CacheError::DiskFull { .. } => return Some(true),
                CacheError::QuotaExceeded { .. } => return Some(false),
                _ => {}
            }
        }
        cur = err.source();
    }
    None
}
