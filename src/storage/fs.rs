//! [`FileStorage`]: a log's bytes as real files in a real directory, with real fsync.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::lock::{self, DirLock, LockAttempt, LockProbe};
use super::{sys, DirEntry, EntryKind, ReadFile, ReadStorage, Storage, WriteFile};

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
    fn advise_sequential(&self, prefetch: u64) {
        sys::advise_sequential(&self.0, prefetch);
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
    fn start_writeback(&mut self) {
        sys::start_writeback(&self.0);
    }
}

impl ReadStorage for FileStorage {
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
            .custom_flags(sys::O_NOFOLLOW | sys::O_NONBLOCK)
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

    fn probe_lock(&self) -> io::Result<LockProbe> {
        lock::probe_file(&self.root)
    }
}

impl Storage for FileStorage {
    fn open_append(&self, name: &str) -> io::Result<Box<dyn WriteFile>> {
        let f = OpenOptions::new()
            .append(true)
            .custom_flags(sys::O_NOFOLLOW)
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
            .custom_flags(sys::O_NOFOLLOW)
            .open(self.path(name))?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(FsWrite(f)))
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .custom_flags(sys::O_NOFOLLOW)
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
        DirLock::try_file(&self.root)
    }
}
