//! The storage seam every byte of walctl goes through, in two halves:
//! [`ReadStorage`] (list, open for reading, size, lock probe), all a reader needs
//! and all a read-only view implements; and [`Storage`] on top of it, what a writer
//! or a repair changes. [`FileStorage`] is the file-backed one; [`MemStorage`] the
//! read-only, in-memory one for tests; tests put a fault-injecting [`Storage`] behind
//! the same traits.

mod fs;
mod lock;
mod mem;
mod memdir;
mod sys;

pub use fs::FileStorage;
pub use lock::{DirLock, LockAttempt, LockProbe, LOCK_FILE};
pub use mem::MemStorage;
pub use memdir::MemDir;

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

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

/// Where a log's bytes are read from: all that a reader (scan, follow, verify, dump,
/// salvage) needs. Names are relative to the log directory and may name one level
/// of subdirectory (`quarantine/x`), separated by `/`.
pub trait ReadStorage: Send + Sync + fmt::Debug {
    /// The log directory, for messages.
    fn root(&self) -> &Path;
    /// Entries of `dir` ("" is the log directory itself).
    fn list(&self, dir: &str) -> io::Result<Vec<DirEntry>>;
    /// Opens an existing file for reading.
    fn open_read(&self, name: &str) -> io::Result<Box<dyn ReadFile>>;
    /// Current size of a file.
    fn size(&self, name: &str) -> io::Result<u64>;
    /// Whether a writer holds the lock right now, found without creating or changing
    /// any file (read-only tools use it to warn). Storages that cannot tell say
    /// [`LockProbe::Unknown`].
    fn probe_lock(&self) -> io::Result<LockProbe> {
        Ok(LockProbe::Unknown)
    }
}

/// Where a log's bytes are written: the read half, and what a writer or a repair
/// changes (files, directories, their durability, the writer lock).
pub trait Storage: ReadStorage {
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
    /// Takes the exclusive writer lock without waiting ([`DirLock::acquire`] is how
    /// walctl calls it).
    fn try_lock(&self) -> io::Result<LockAttempt>;
    /// The path of the lock, for messages.
    fn lock_path(&self) -> PathBuf {
        self.root().join(LOCK_FILE)
    }
}

/// Reads until `buf` is full or the reader ends (retrying on `Interrupted`); returns
/// the bytes read. The one such loop: files, segments and `EntryReader` use it.
pub fn read_up_to<R: Read + ?Sized>(file: &mut R, buf: &mut [u8]) -> io::Result<usize> {
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
