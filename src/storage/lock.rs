//! The writer's lock on a log directory: [`DirLock`], the one guard a writer or a
//! repair holds while it may change the log (released when dropped), and
//! [`LockProbe`], how read-only tools see whether a writer holds it without taking it.

use std::any::Any;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::sys::{self, Flock};
use super::Storage;
use crate::error::{Error, Result};

/// Name of the writer's lock file inside a log directory.
pub const LOCK_FILE: &str = ".walctl.lock";

/// The exclusive writer lock on a log directory, held while this lives: at most one
/// [`crate::Wal`] or repair changes a log at a time.
pub struct DirLock(Guard);

enum Guard {
    /// A `flock` on the directory's lock file (a [`super::FileStorage`]).
    File(File),
    /// Whatever another [`Storage`] holds for it; never read, only dropped with
    /// the lock.
    Other(#[allow(dead_code)] Box<dyn Any + Send + Sync>),
}

impl DirLock {
    /// Takes the lock of the log kept by `storage` without waiting:
    /// [`Error::Locked`] (naming the holder when known) while someone else holds it.
    pub fn acquire(storage: &dyn Storage) -> Result<DirLock> {
        match storage
            .try_lock()
            .map_err(|e| Error::io("lock", storage.lock_path(), e))?
        {
            LockAttempt::Acquired(lock) => Ok(lock),
            LockAttempt::Held { holder } => Err(Error::Locked {
                dir: storage.root().to_path_buf(),
                lock: storage.lock_path(),
                holder,
            }),
        }
    }

    /// The lock of a [`Storage`] that keeps it some other way than in a file: it is
    /// held until `guard` is dropped.
    pub fn from_guard(guard: impl Any + Send + Sync) -> DirLock {
        DirLock(Guard::Other(Box::new(guard)))
    }

    /// Takes the lock of the directory `root` on the real file system: an exclusive
    /// `flock` on its [`LOCK_FILE`] (created if missing), which then names our pid.
    pub(crate) fn try_file(root: &Path) -> io::Result<LockAttempt> {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(sys::O_NOFOLLOW)
            .open(root.join(LOCK_FILE))?;
        if !sys::try_flock(&f, Flock::Exclusive)? {
            return Ok(LockAttempt::Held {
                holder: holder(&mut f),
            });
        }
        // The guard owns the lock from here on: an error below releases it.
        let lock = DirLock(Guard::File(f));
        if let Guard::File(f) = &lock.0 {
            let mut f: &File = f;
            f.set_len(0)?;
            write!(f, "pid {}", std::process::id())?;
        }
        Ok(LockAttempt::Acquired(lock))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if let Guard::File(f) = &self.0 {
            sys::unlock(f);
        }
    }
}

impl fmt::Debug for DirLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Guard::File(_) => f.write_str("DirLock(flock)"),
            Guard::Other(_) => f.write_str("DirLock(other)"),
        }
    }
}

/// Outcome of [`Storage::try_lock`].
#[derive(Debug)]
pub enum LockAttempt {
    /// The lock is ours until the guard is dropped.
    Acquired(DirLock),
    /// Someone else holds it.
    Held {
        /// Who, when known (e.g. "pid 1234").
        holder: Option<String>,
    },
}

/// Outcome of [`super::ReadStorage::probe_lock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockProbe {
    /// Nobody holds the writer lock (or there is no lock file).
    Free,
    /// Someone holds it.
    Held {
        /// Who, when the lock file says so (e.g. "pid 1234").
        holder: Option<String>,
    },
    /// This storage cannot tell.
    Unknown,
}

/// Whether a writer holds the lock of the directory `root` on the real file system,
/// found without creating or changing any file.
pub(crate) fn probe_file(root: &Path) -> io::Result<LockProbe> {
    // Read-only and never created: a missing lock file means no writer.
    let mut f = match OpenOptions::new()
        .read(true)
        .custom_flags(sys::O_NOFOLLOW)
        .open(root.join(LOCK_FILE))
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LockProbe::Free),
        Err(e) => return Err(e),
    };
    // Where the kernel lists its locks, look there: taking even a shared lock,
    // for an instant, makes a writer that opens in that instant fail.
    if let Some(holders) = sys::flock_holders(&f) {
        return Ok(match holders.first() {
            None => LockProbe::Free,
            Some(pid) => LockProbe::Held {
                holder: Some(format!("pid {pid}")),
            },
        });
    }
    if sys::try_flock(&f, Flock::Shared)? {
        return Ok(LockProbe::Free);
    }
    Ok(LockProbe::Held {
        holder: holder(&mut f),
    })
}

/// Who holds the writer lock on `f`, for a message: "pid N" only when that process
/// holds it. Where the kernel lists its locks (Linux), the pid comes from there; the
/// pid a writer writes into the file may be a dead writer's until the new holder
/// has rewritten it, so elsewhere it is named as the file's word, not as a fact.
fn holder(f: &mut File) -> Option<String> {
    if let Some(holders) = sys::flock_holders(f) {
        return holders.first().map(|pid| format!("pid {pid}"));
    }
    let mut s = String::new();
    let _ = f.take(256).read_to_string(&mut s);
    let holder = s.trim();
    (!holder.is_empty() && holder.len() < 200)
        .then(|| format!("{holder} (as its lock file says; it may not have rewritten it yet)"))
}
