//! A writable, in-memory directory ([`MemDir`]): a whole log, writer and readers,
//! with no disk, for users' own tests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    DirEntry, DirLock, EntryKind, LockAttempt, LockProbe, ReadFile, ReadStorage, Storage, WriteFile,
};

/// A directory that lives in memory: [`crate::Wal::open_with_storage`] writes a log
/// into it, [`crate::WalReader::new`] reads it, and clones share the same files (a
/// test keeps one to look at the bytes with [`MemDir::file`] or to damage them with
/// [`MemDir::put`]). Durability calls succeed at once; the writer lock works within
/// the process. Names are relative, `/`-separated; subdirectories (the quarantine)
/// are made with `create_dir`.
///
/// ```
/// use std::sync::Arc;
/// use walctl::storage::MemDir;
/// use walctl::{EntryWriter, Wal, WalOptions, WalReader};
///
/// let dir = MemDir::new();
/// let wal = Wal::open_with_storage(Arc::new(dir.clone()), WalOptions::default())?;
/// wal.append(b"first")?;
/// wal.checkpoint(b"state")?;
/// wal.close()?;
/// let lsns: Vec<u64> = WalReader::new(Arc::new(dir.clone()))
///     .entries_from(1)?
///     .map(|e| e.map(|e| e.lsn))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(lsns, [1, 2]);
/// // The closed log is byte for byte what the format says.
/// let mut w = EntryWriter::new(Vec::new());
/// w.write_entry(1, b"first", false)?;
/// w.write_entry(2, b"state", true)?;
/// assert_eq!(dir.file("segment-0").unwrap(), w.into_inner());
/// # Ok::<(), walctl::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemDir {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    dirs: Mutex<BTreeSet<String>>,
    locked: Arc<AtomicBool>,
}

impl MemDir {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes of file `name`, if there is one.
    pub fn file(&self, name: &str) -> Option<Vec<u8>> {
        self.files().get(name).cloned()
    }

    /// Puts `bytes` as file `name`, replacing what was there (to build a log by
    /// hand, or damage one).
    pub fn put(&self, name: &str, bytes: Vec<u8>) {
        self.files().insert(name.to_string(), bytes);
    }

    /// Every file's name, in order.
    pub fn names(&self) -> Vec<String> {
        self.files().keys().cloned().collect()
    }

    fn files(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.inner.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dirs(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.inner.dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dir_exists(&self, dir: &str) -> bool {
        dir.is_empty() || self.dirs().contains(dir)
    }

    /// The directory `name` is in ("" for the top), which must exist.
    fn check_parent(&self, name: &str) -> io::Result<()> {
        let parent = name.rsplit_once('/').map_or("", |(d, _)| d);
        match self.dir_exists(parent) {
            true => Ok(()),
            false => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn writer(&self, name: &str, pos: u64) -> Box<dyn WriteFile> {
        Box::new(MemWrite {
            dir: self.clone(),
            name: name.to_string(),
            pos,
        })
    }
}

const ROOT: &str = "/mem/dir";

impl ReadStorage for MemDir {
    fn root(&self) -> &Path {
        Path::new(ROOT)
    }

    fn list(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        if !self.dir_exists(dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let prefix = match dir.is_empty() {
            true => String::new(),
            false => format!("{dir}/"),
        };
        let direct = |name: &str| {
            name.strip_prefix(prefix.as_str())
                .filter(|rest| !rest.is_empty() && !rest.contains('/'))
                .map(str::to_string)
        };
        let mut out: Vec<DirEntry> = self
            .files()
            .iter()
            .filter_map(|(n, d)| {
                direct(n).map(|name| DirEntry {
                    name,
                    kind: EntryKind::File,
                    size: d.len() as u64,
                })
            })
            .collect();
        out.extend(self.dirs().iter().filter_map(|n| {
            direct(n).map(|name| DirEntry {
                name,
                kind: EntryKind::Dir,
                size: 0,
            })
        }));
        Ok(out)
    }

    fn open_read(&self, name: &str) -> io::Result<Box<dyn ReadFile>> {
        let data = self.file(name).ok_or(io::ErrorKind::NotFound)?;
        Ok(Box::new(MemRead { data, pos: 0 }))
    }

    fn size(&self, name: &str) -> io::Result<u64> {
        match self.files().get(name) {
            Some(d) => Ok(d.len() as u64),
            None if self.dirs().contains(name) => Ok(0),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn probe_lock(&self) -> io::Result<LockProbe> {
        Ok(match self.inner.locked.load(Ordering::SeqCst) {
            true => LockProbe::Held { holder: None },
            false => LockProbe::Free,
        })
    }
}

impl Storage for MemDir {
    fn open_append(&self, name: &str) -> io::Result<Box<dyn WriteFile>> {
        let len = self.size(name)?;
        Ok(self.writer(name, len))
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn WriteFile>> {
        self.check_parent(name)?;
        let mut files = self.files();
        if files.contains_key(name) || self.dirs().contains(name) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        files.insert(name.to_string(), Vec::new());
        drop(files);
        Ok(self.writer(name, 0))
    }

    fn open_write_at(&self, name: &str, offset: u64) -> io::Result<Box<dyn WriteFile>> {
        self.size(name)?;
        Ok(self.writer(name, offset))
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut files = self.files();
        let f = files.get_mut(name).ok_or(io::ErrorKind::NotFound)?;
        f.resize(len, 0);
        Ok(())
    }

    fn remove_file(&self, name: &str) -> io::Result<()> {
        match self.files().remove(name) {
            Some(_) => Ok(()),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn create_dir(&self, name: &str) -> io::Result<()> {
        self.check_parent(name)?;
        if self.files().contains_key(name) || !self.dirs().insert(name.to_string()) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        Ok(())
    }

    fn remove_dir(&self, name: &str) -> io::Result<()> {
        if !self.list(name)?.is_empty() {
            return Err(io::Error::other("directory not empty"));
        }
        self.dirs().remove(name);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.check_parent(to)?;
        let mut files = self.files();
        if let Some(data) = files.remove(from) {
            files.insert(to.to_string(), data);
            return Ok(());
        }
        drop(files);
        // A directory and everything under it.
        if !self.dirs().remove(from) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let moved = |n: &str| {
            n.strip_prefix(&format!("{from}/"))
                .map(|r| format!("{to}/{r}"))
        };
        let mut dirs = self.dirs();
        let subdirs: Vec<String> = dirs
            .iter()
            .filter(|n| moved(n).is_some())
            .cloned()
            .collect();
        for d in subdirs {
            dirs.remove(&d);
            dirs.insert(moved(&d).unwrap_or_default());
        }
        dirs.insert(to.to_string());
        drop(dirs);
        let mut files = self.files();
        let names: Vec<String> = files
            .keys()
            .filter(|n| moved(n).is_some())
            .cloned()
            .collect();
        for n in names {
            if let Some(data) = files.remove(&n) {
                files.insert(moved(&n).unwrap_or_default(), data);
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &str) -> io::Result<()> {
        match self.dir_exists(dir) {
            true => Ok(()),
            false => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn try_lock(&self) -> io::Result<LockAttempt> {
        let locked = self.inner.locked.clone();
        if locked.swap(true, Ordering::SeqCst) {
            return Ok(LockAttempt::Held { holder: None });
        }
        Ok(LockAttempt::Acquired(DirLock::from_guard(Unlock(locked))))
    }
}

/// Releases a [`MemDir`]'s writer lock when dropped.
struct Unlock(Arc<AtomicBool>);

impl Drop for Unlock {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

struct MemRead {
    data: Vec<u8>,
    pos: usize,
}

impl Read for MemRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl ReadFile for MemRead {
    fn seek_to(&mut self, offset: u64) -> io::Result<()> {
        self.pos = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.data.len() as u64)
    }
}

struct MemWrite {
    dir: MemDir,
    name: String,
    pos: u64,
}

impl WriteFile for MemWrite {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut files = self.dir.files();
        let f = files.get_mut(&self.name).ok_or(io::ErrorKind::NotFound)?;
        let at = usize::try_from(self.pos).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = at
            .checked_add(buf.len())
            .ok_or(io::ErrorKind::InvalidInput)?;
        if f.len() < end {
            f.resize(end, 0);
        }
        f[at..end].copy_from_slice(buf);
        self.pos = end as u64;
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_dirs_and_renames_behave_like_a_directory() {
        let d = MemDir::new();
        let mut w = d.create("a").unwrap();
        w.write_all(b"hello").unwrap();
        assert_eq!(
            d.create("a").err().map(|e| e.kind()),
            Some(io::ErrorKind::AlreadyExists)
        );
        assert!(d.create("q/x").is_err(), "no such directory");
        d.create_dir("q").unwrap();
        d.create_dir("q/e").unwrap();
        d.create("q/e/x").unwrap().write_all(b"12").unwrap();
        let mut names: Vec<_> = d
            .list("")
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            names,
            [("a".into(), EntryKind::File), ("q".into(), EntryKind::Dir)]
        );
        d.rename("q/e", "q/f").unwrap();
        assert_eq!(d.file("q/f/x").unwrap(), b"12");
        assert!(d.file("q/e/x").is_none());
        assert!(d.remove_dir("q").is_err(), "not empty");
        let mut w = d.open_write_at("a", 1).unwrap();
        w.write_all(b"EL").unwrap();
        assert_eq!(d.file("a").unwrap(), b"hELlo");
        d.truncate("a", 2).unwrap();
        d.open_append("a").unwrap().write_all(b"!").unwrap();
        assert_eq!(d.file("a").unwrap(), b"hE!");
        let mut r = d.open_read("a").unwrap();
        r.seek_to(1).unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "E!");
    }

    #[test]
    fn the_lock_is_held_until_its_guard_goes() {
        let d = MemDir::new();
        let LockAttempt::Acquired(guard) = d.try_lock().unwrap() else {
            panic!("free at first")
        };
        assert!(matches!(
            d.clone().try_lock().unwrap(),
            LockAttempt::Held { .. }
        ));
        assert!(matches!(d.probe_lock().unwrap(), LockProbe::Held { .. }));
        drop(guard);
        assert!(matches!(d.probe_lock().unwrap(), LockProbe::Free));
        assert!(matches!(d.try_lock().unwrap(), LockAttempt::Acquired(_)));
    }
}
