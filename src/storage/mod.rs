//! The small storage trait every byte of walctl goes through, and its file-backed
//! implementation. Tests put a fault-injecting implementation behind the same trait.

/// The write half of [`Storage`] for a read-only view (the in-memory storage, an
/// archive read in place, a salvage's view of a log): every write is refused with
/// the `io::Error` that `$err` builds. One place, so the views cannot drift apart.
macro_rules! refuse_writes {
    ($err:expr) => {
        fn open_append(&self, _: &str) -> std::io::Result<Box<dyn $crate::storage::WriteFile>> {
            Err($err)
        }
        fn create(&self, _: &str) -> std::io::Result<Box<dyn $crate::storage::WriteFile>> {
            Err($err)
        }
        fn truncate(&self, _: &str, _: u64) -> std::io::Result<()> {
            Err($err)
        }
        fn remove_file(&self, _: &str) -> std::io::Result<()> {
            Err($err)
        }
        fn create_dir(&self, _: &str) -> std::io::Result<()> {
            Err($err)
        }
        fn rename(&self, _: &str, _: &str) -> std::io::Result<()> {
            Err($err)
        }
        fn sync_dir(&self, _: &str) -> std::io::Result<()> {
            Err($err)
        }
        fn try_lock(&self) -> std::io::Result<$crate::storage::LockAttempt> {
            Err($err)
        }
    };
}
pub(crate) use refuse_writes;

mod mem;
pub use mem::MemStorage;

use std::any::Any;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Name of the writer's lock file inside a log directory.
pub const LOCK_FILE: &str = ".walctl.lock";

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A device, socket or FIFO.
    Other,
}

/// One entry of a listed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// File name (UTF-8 names only; others are never segments and are skipped).
    pub name: String,
    /// Its kind, without following links.
    pub kind: EntryKind,
    /// Size in bytes (regular files).
    pub size: u64,
}

/// A file opened for reading.
pub trait ReadFile: Read + Send {
    /// Moves the read position to `offset` bytes from the start.
    fn seek_to(&mut self, offset: u64) -> io::Result<()>;
    /// The file's current size.
    fn size(&self) -> io::Result<u64>;
    /// Hints that the file is about to be read sequentially and that its first
    /// `prefetch` bytes are wanted soon, so the OS can read ahead. Only a hint: the
    /// default does nothing.
    fn advise_sequential(&self, _prefetch: u64) {}
}

/// A file opened for appending.
pub trait WriteFile: Send {
    /// Writes all of `buf` at the end of the file, or fails.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Asks the OS to start writing what was written so far to the device, without
    /// waiting: a later [`WriteFile::sync_data`] then has little left to wait for.
    /// Only a hint that promises nothing about durability; the default does nothing
    /// (and so it does on every system but Linux).
    fn start_writeback(&mut self) {}
}

/// Outcome of [`Storage::try_lock`].
pub enum LockAttempt {
    /// The lock is ours until the guard is dropped.
    Acquired(Box<dyn Any + Send + Sync>),
    /// Someone else holds it.
    Held {
        /// Who, when known (e.g. "pid 1234").
        holder: Option<String>,
    },
}

/// Where a log's bytes live. Names are relative to the log directory and may name
/// one level of subdirectory (`quarantine/x`), separated by `/`.
pub trait Storage: Send + Sync + fmt::Debug {
    /// The log directory, for messages.
    fn root(&self) -> &Path;
    /// Entries of `dir` ("" is the log directory itself).
    fn list(&self, dir: &str) -> io::Result<Vec<DirEntry>>;
    /// Opens an existing file for reading.
    fn open_read(&self, name: &str) -> io::Result<Box<dyn ReadFile>>;
    /// Current size of a file.
    fn size(&self, name: &str) -> io::Result<u64>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, name: &str) -> io::Result<Box<dyn WriteFile>>;
    /// Creates a new, empty file (fails if it exists) opened for appending.
    fn create(&self, name: &str) -> io::Result<Box<dyn WriteFile>>;
    /// Opens an existing file for writing from `offset` on, over whatever the file
    /// holds there (preallocated zeros) and past its end: each
    /// [`WriteFile::write_all`] continues where the previous one stopped. Storages
    /// that cannot say [`io::ErrorKind::Unsupported`] (the default), and the writer
    /// then appends to files of exactly their logical size.
    fn open_write_at(&self, _name: &str, _offset: u64) -> io::Result<Box<dyn WriteFile>> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// Cuts a file to `len` bytes and makes that durable.
    fn truncate(&self, name: &str, len: u64) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, name: &str) -> io::Result<()>;
    /// Creates a directory (fails if it exists).
    fn create_dir(&self, name: &str) -> io::Result<()>;
    /// Removes an empty directory. Only used to clean up after a failed step; the
    /// default says it is not supported.
    fn remove_dir(&self, _name: &str) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// Renames a file or directory.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes the entries of `dir` durable (fsync of the directory).
    fn sync_dir(&self, dir: &str) -> io::Result<()>;
    /// Takes the exclusive writer lock without waiting.
    fn try_lock(&self) -> io::Result<LockAttempt>;
    /// The path of the lock, for messages.
    fn lock_path(&self) -> PathBuf {
        self.root().join(LOCK_FILE)
    }
    /// Whether a writer holds the lock right now, found without creating or changing
    /// any file (read-only tools use it to warn). Storages that cannot tell say
    /// [`LockProbe::Unknown`].
    fn probe_lock(&self) -> io::Result<LockProbe> {
        Ok(LockProbe::Unknown)
    }
}

/// Outcome of [`Storage::probe_lock`].
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

/// The default storage: real files in a real directory, real fsync.
#[derive(Debug, Clone)]
pub struct FileStorage {
    root: PathBuf,
}

impl FileStorage {
    /// Storage over an existing directory. Fails if `root` is not a directory.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        let meta = fs::metadata(&root)?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(FileStorage { root })
    }

    /// Storage over `root`, creating it (and its parents) if missing. Returns whether
    /// it was created.
    pub fn create(root: impl Into<PathBuf>) -> io::Result<(Self, bool)> {
        let root = root.into();
        let created = match fs::metadata(&root) {
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Ok(target) = fs::read_link(&root) {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "{} is a symbolic link to {}, which does not exist",
                            root.display(),
                            target.display()
                        ),
                    ));
                }
                let parent = root.parent().filter(|p| !p.as_os_str().is_empty());
                if let Some(parent) = parent {
                    fs::create_dir_all(parent)?;
                }
                // Only the process whose mkdir made it says it created it (two writers
                // started together on a fresh directory).
                let made = match fs::create_dir(&root) {
                    Ok(()) => true,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && root.is_dir() => false,
                    Err(e) => return Err(e),
                };
                if let (true, Some(parent)) = (made, parent) {
                    sync_path_dir(parent)?;
                }
                made
            }
            Err(e) => return Err(e),
        };
        Ok((Self::open(root)?, created))
    }

    fn path(&self, name: &str) -> PathBuf {
        if name.is_empty() {
            self.root.clone()
        } else {
            self.root.join(name)
        }
    }
}

fn sync_path_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

struct FsRead(File);

impl Read for FsRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl ReadFile for FsRead {
    fn seek_to(&mut self, offset: u64) -> io::Result<()> {
        self.0.seek(SeekFrom::Start(offset)).map(|_| ())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    #[cfg(target_os = "linux")]
    fn advise_sequential(&self, prefetch: u64) {
        let fd = self.0.as_raw_fd();
        let len = prefetch.min(i64::MAX as u64) as libc::off_t;
        // SAFETY: advisory calls on a descriptor we own; no memory is shared. Failure
        // only means no read-ahead.
        unsafe {
            libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_SEQUENTIAL);
            if len > 0 {
                libc::posix_fadvise(fd, 0, len, libc::POSIX_FADV_WILLNEED);
            }
        }
    }
}

struct FsWrite(File);

impl WriteFile for FsWrite {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    #[cfg(target_os = "linux")]
    fn start_writeback(&mut self) {
        // SAFETY: an advisory call on a descriptor we own. SYNC_FILE_RANGE_WRITE only
        // submits dirty pages for write-out and does not wait for them; a failure here
        // is seen (and reported) by the next fdatasync.
        unsafe {
            libc::sync_file_range(self.0.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
}

/// The writer lock, held while this lives.
struct FsLock(File);

impl Drop for FsLock {
    /// Unlocks explicitly: closing our descriptor alone does not release the lock
    /// while a child process, forked by any thread of this process and not yet
    /// exec'd, still holds a copy of it (a closed `Wal` then kept the log locked).
    fn drop(&mut self) {
        // SAFETY: flock on a descriptor we own; no memory is shared.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

impl Storage for FileStorage {
    fn root(&self) -> &Path {
        &self.root
    }

    fn list(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.path(dir))? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not UTF-8: never a segment, never ours
            };
            // An entry deleted between readdir and its stat (a live writer's
            // retention) is simply no longer there: it is left out, not an error.
            let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
            let ft = match entry.file_type() {
                Ok(ft) => ft,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            let (kind, size) = if ft.is_symlink() {
                (EntryKind::Symlink, 0)
            } else if ft.is_dir() {
                (EntryKind::Dir, 0)
            } else if ft.is_file() {
                match entry.metadata() {
                    Ok(m) => (EntryKind::File, m.len()),
                    Err(e) if gone(&e) => continue,
                    Err(e) => return Err(e),
                }
            } else {
                let _ = ft.is_fifo();
                (EntryKind::Other, 0)
            };
            out.push(DirEntry { name, kind, size });
        }
        Ok(out)
    }

    fn open_read(&self, name: &str) -> io::Result<Box<dyn ReadFile>> {
        // O_NONBLOCK: a FIFO put where a segment was listed must fail below, not block
        // the reader forever waiting for a writer. It changes nothing for regular
        // files, the only kind read past the check.
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.path(name))?;
        if !f.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(Box::new(FsRead(f)))
    }

    fn size(&self, name: &str) -> io::Result<u64> {
        Ok(fs::symlink_metadata(self.path(name))?.len())
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn WriteFile>> {
        let f = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.path(name))?;
        Ok(Box::new(FsWrite(f)))
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn WriteFile>> {
        let f = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(self.path(name))?;
        Ok(Box::new(FsWrite(f)))
    }

    fn open_write_at(&self, name: &str, offset: u64) -> io::Result<Box<dyn WriteFile>> {
        let mut f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.path(name))?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(FsWrite(f)))
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.path(name))?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn remove_file(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name))
    }

    fn create_dir(&self, name: &str) -> io::Result<()> {
        fs::create_dir(self.path(name))
    }

    fn remove_dir(&self, name: &str) -> io::Result<()> {
        fs::remove_dir(self.path(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path(from), self.path(to))
    }

    fn sync_dir(&self, dir: &str) -> io::Result<()> {
        sync_path_dir(&self.path(dir))
    }

    fn try_lock(&self) -> io::Result<LockAttempt> {
        let path = self.root.join(LOCK_FILE);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(LockAttempt::Held {
                    holder: lock_holder(&mut f),
                });
            }
            return Err(err);
        }
        f.set_len(0)?;
        write!(f, "pid {}", std::process::id())?;
        Ok(LockAttempt::Acquired(Box::new(FsLock(f))))
    }

    fn probe_lock(&self) -> io::Result<LockProbe> {
        // Read-only and never created: a missing lock file means no writer.
        let mut f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.root.join(LOCK_FILE))
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LockProbe::Free),
            Err(e) => return Err(e),
        };
        // Where the kernel lists its locks, look there: taking even a shared lock,
        // for an instant, makes a writer that opens in that instant fail.
        if let Some(holders) = proc_lock_holders(&f) {
            return Ok(match holders.first() {
                None => LockProbe::Free,
                Some(pid) => LockProbe::Held {
                    holder: Some(format!("pid {pid}")),
                },
            });
        }
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(LockProbe::Free);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err);
        }
        Ok(LockProbe::Held {
            holder: lock_holder(&mut f),
        })
    }
}

/// Who holds the writer lock on `f`, for a message: "pid N" only when that process
/// holds it. Where the kernel lists its locks (Linux), the pid comes from there; the
/// pid a writer writes into the file may be a dead writer's until the new holder
/// has rewritten it, so elsewhere it is named as the file's word, not as a fact.
fn lock_holder(f: &mut File) -> Option<String> {
    if let Some(holders) = proc_lock_holders(f) {
        return holders.first().map(|pid| format!("pid {pid}"));
    }
    let mut s = String::new();
    let _ = f.take(256).read_to_string(&mut s);
    let holder = s.trim();
    (!holder.is_empty() && holder.len() < 200)
        .then(|| format!("{holder} (as its lock file says; it may not have rewritten it yet)"))
}

/// The pids holding an exclusive flock on the file `f` is open on, from the
/// kernel's table of locks; `None` where there is no such table to read.
#[cfg(target_os = "linux")]
fn proc_lock_holders(f: &File) -> Option<Vec<u32>> {
    use std::os::unix::fs::MetadataExt;
    let meta = f.metadata().ok()?;
    let dev = meta.dev();
    // As the kernel prints it: major:minor in hex (two digits at least), inode.
    let key = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    );
    let table = fs::read_to_string("/proc/locks").ok()?;
    Some(parse_proc_locks(&table, &key))
}

#[cfg(not(target_os = "linux"))]
fn proc_lock_holders(_f: &File) -> Option<Vec<u32>> {
    None
}

/// Pids of the granted exclusive flocks on `key` (`maj:min:inode`) in a
/// `/proc/locks` table. Waiters (`->`) hold nothing and are left out.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_proc_locks(table: &str, key: &str) -> Vec<u32> {
    table
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip(1);
            let (kind, _, mode, pid, file) = (
                words.next()?,
                words.next()?,
                words.next()?,
                words.next()?,
                words.next()?,
            );
            (kind == "FLOCK" && mode == "WRITE" && file == key)
                .then(|| pid.parse().ok())
                .flatten()
        })
        .collect()
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
pub fn read_up_to(file: &mut dyn ReadFile, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod lock_table_tests {
    use super::parse_proc_locks;

    #[test]
    fn only_granted_exclusive_flocks_on_the_file_count() {
        let table = "\
1: FLOCK  ADVISORY  WRITE 10300 fe:00:10010692 0 EOF
1: -> FLOCK  ADVISORY  WRITE 10400 fe:00:10010692 0 EOF
2: OFDLCK ADVISORY  WRITE -1 fe:00:10010692 0 EOF
3: FLOCK  ADVISORY  READ 10500 fe:00:10010692 0 EOF
4: FLOCK  ADVISORY  WRITE 10600 fe:00:100106920 0 EOF
5: POSIX  ADVISORY  WRITE 10700 fe:00:10010692 0 EOF
";
        assert_eq!(parse_proc_locks(table, "fe:00:10010692"), vec![10300]);
        assert!(parse_proc_locks(table, "fe:01:10010692").is_empty());
    }
}
