//! A fault-injecting [`Storage`] over real files, the one every test that needs a
//! fault uses: it crashes at the N-th mutating call (a write lands half-way, the call
//! fails and so does every later one, as if the process died there), fails fdatasync
//! or directory fsync on demand, and cuts the power: what was written but never
//! fsynced is dropped, all but a random prefix, and a file or directory whose entry
//! was never made durable by a directory fsync may vanish.
//!
//! Preallocated files (opened with `open_write_at` over durable zeros) keep their
//! size at a power cut; what was written into them and never fsynced becomes zeros
//! again from a random point on, or (when asked, [`SimDisk::lose_a_block`]) only one
//! block of it does, the bytes after it surviving.
//!
//! Renames and removals are taken as durable at once (not modelled).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use walctl::storage::{
    DirEntry, FileStorage, LockAttempt, ReadFile, ReadStorage, Storage, WriteFile,
};

use super::Rng;

/// Lengths of a file this storage wrote to.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    /// Bytes written (in the page cache).
    written: u64,
    /// Bytes covered by a successful fdatasync (or there before this storage).
    durable: u64,
}

#[derive(Debug, Default)]
struct SimState {
    /// Mutating calls made so far.
    ops: u64,
    /// The mutating call (0-based) at which the process "dies".
    crash_at: Option<u64>,
    crashed: bool,
    fail_file_sync: bool,
    fail_dir_sync: bool,
    /// Directory fsyncs left to succeed before they start failing.
    dir_syncs_until_failure: Option<u64>,
    /// Successful fdatasyncs.
    syncs: u64,
    /// Extra time every fdatasync of a file takes (a slow disk).
    file_sync_delay: std::time::Duration,
    files: HashMap<String, Tracked>,
    /// Files and directories created since their parent directory's last fsync.
    unsynced_entries: Vec<String>,
    /// At a power cut, a preallocated file loses one block of its unsynced writes
    /// in the middle instead of all of them from some point on.
    lose_a_block: bool,
    /// A file whose `open_read` fails with this OS error code.
    unreadable: Option<(String, i32)>,
}

impl SimState {
    /// Counts one mutating call; fails it (and all later ones) at the crash point.
    fn tick(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(io::Error::other("injected crash: the process is gone"));
        }
        let n = self.ops;
        self.ops += 1;
        if self.crash_at == Some(n) {
            self.crashed = true;
            return Err(io::Error::other("injected crash"));
        }
        Ok(())
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct SimDisk {
    inner: FileStorage,
    st: Arc<Mutex<SimState>>,
}

fn parent(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(p, _)| p)
}

impl SimDisk {
    /// A storage over `dir` that injects nothing until told to. Files already there
    /// count as durable.
    pub fn new(dir: &Path) -> Self {
        SimDisk {
            inner: FileStorage::open(dir).unwrap(),
            st: Arc::new(Mutex::new(SimState::default())),
        }
    }

    /// A storage whose `n`-th mutating call (0-based: writes, fsyncs, creates,
    /// truncates, removes, renames) is where the process dies.
    pub fn crash_at(dir: &Path, n: u64) -> Self {
        let s = Self::new(dir);
        s.state().crash_at = Some(n);
        s
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every later `open_read` of `name` fail with the OS error `code` (EIO,
    /// EACCES): a segment on a failing disk, or one at mode 000 for a non-root user.
    pub fn unreadable(&self, name: &str, code: i32) {
        self.state().unreadable = Some((name.to_string(), code));
    }

    /// Makes every later fdatasync of a file fail (or succeed again).
    pub fn fail_file_sync(&self, on: bool) {
        self.state().fail_file_sync = on;
    }

    /// Makes every later fsync of a directory fail (or succeed again).
    pub fn fail_dir_sync(&self, on: bool) {
        self.state().fail_dir_sync = on;
    }

    /// Lets the next `n` directory fsyncs succeed, then makes every later one fail.
    pub fn fail_dir_sync_after(&self, n: u64) {
        self.state().dir_syncs_until_failure = Some(n);
    }

    /// Makes every later fdatasync of a file take `d` longer, like a slow disk (the
    /// sleep holds no lock: other threads go on meanwhile).
    pub fn slow_file_sync(&self, d: std::time::Duration) {
        self.state().file_sync_delay = d;
    }

    /// At the next power cut, preallocated files lose one 512-byte block in the
    /// middle of what was written into them and never fsynced, and keep the bytes
    /// after it (page write-back out of order).
    pub fn lose_a_block(&self, on: bool) {
        self.state().lose_a_block = on;
    }

    /// Successful fdatasyncs so far.
    pub fn syncs(&self) -> u64 {
        self.state().syncs
    }

    /// Mutating calls so far.
    pub fn ops(&self) -> u64 {
        self.state().ops
    }

    /// Whether the injected crash has happened.
    pub fn crashed(&self) -> bool {
        self.state().crashed
    }

    /// Cuts the power now: every later call fails, and the files on disk are left as
    /// a machine would find them after a reboot. Returns what was dropped, for
    /// messages.
    pub fn power_cut(&self, rng: &mut Rng) -> String {
        let mut st = self.state();
        st.crashed = true;
        let root = self.inner.root().to_path_buf();
        let mut said = Vec::new();
        // Entries never made durable may vanish, deepest first.
        let mut entries = std::mem::take(&mut st.unsynced_entries);
        entries.sort_by_key(|e| std::cmp::Reverse(e.matches('/').count()));
        for e in entries {
            if rng.below(2) == 0 {
                continue;
            }
            let path = root.join(&e);
            let gone = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&path).is_ok(),
                Ok(_) => fs::remove_file(&path).is_ok(),
                Err(_) => false,
            };
            if gone {
                let prefix = format!("{e}/");
                st.files.retain(|k, _| k != &e && !k.starts_with(&prefix));
                said.push(format!("{e} vanished"));
            }
        }
        let files: Vec<(String, Tracked)> = st.files.drain().collect();
        for (name, t) in files {
            let path = root.join(&name);
            let Ok(size) = fs::metadata(&path).map(|m| m.len()) else {
                continue;
            };
            let durable = t.durable.min(size);
            if t.written < size {
                // Preallocated: the size is durable; unsynced writes revert to zeros.
                let end = t.written.max(durable);
                if end > durable {
                    let (from, to) = if st.lose_a_block {
                        let at = durable + rng.below(end - durable);
                        (at, (at + 512).min(end))
                    } else {
                        (durable + rng.below(end - durable + 1), end)
                    };
                    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
                    use std::os::unix::fs::FileExt;
                    f.write_all_at(&vec![0u8; (to - from) as usize], from)
                        .unwrap();
                    f.sync_all().unwrap();
                    said.push(format!(
                        "{name} (preallocated, {size} bytes): {from}..{to} lost (durable {durable})"
                    ));
                }
                continue;
            }
            let keep = durable + rng.below(size - durable + 1);
            if keep < size {
                let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
                // Sometimes the new size reached the disk but the data did not: the
                // file ends in zeros where the lost bytes were.
                let len = if rng.below(4) == 0 {
                    keep + rng.below(size - keep + 1)
                } else {
                    keep
                };
                f.set_len(keep).unwrap();
                f.set_len(len).unwrap();
                f.sync_all().unwrap();
                said.push(format!(
                    "{name}: {size} -> {keep} kept + {} zeros (durable {durable})",
                    len - keep
                ));
            }
        }
        said.join(", ")
    }

    fn wrap(&self, name: &str, inner: Box<dyn WriteFile>) -> Box<dyn WriteFile> {
        Box::new(SimFile {
            name: name.to_string(),
            inner,
            st: self.st.clone(),
        })
    }
}

struct SimFile {
    name: String,
    inner: Box<dyn WriteFile>,
    st: Arc<Mutex<SimState>>,
}

impl WriteFile for SimFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let st = self.st.clone();
        let mut st = st.lock().unwrap_or_else(|e| e.into_inner());
        let was_crashed = st.crashed;
        let res = st.tick();
        // Killed part-way through: half of the bytes reach the file.
        let n = match &res {
            Ok(()) => buf.len(),
            Err(_) if !was_crashed => buf.len() / 2,
            Err(_) => 0,
        };
        if n > 0 {
            self.inner.write_all(&buf[..n])?;
            if let Some(t) = st.files.get_mut(&self.name) {
                t.written += n as u64;
            }
        }
        res
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let st = self.st.clone();
        let delay = st.lock().unwrap_or_else(|e| e.into_inner()).file_sync_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut st = st.lock().unwrap_or_else(|e| e.into_inner());
        st.tick()?;
        if st.fail_file_sync {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.inner.sync_data()?;
        st.syncs += 1;
        if let Some(t) = st.files.get_mut(&self.name) {
            t.durable = t.written;
        }
        Ok(())
    }
}

impl ReadStorage for SimDisk {
    fn root(&self) -> &Path {
        self.inner.root()
    }
    fn list(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        self.inner.list(dir)
    }
    fn open_read(&self, name: &str) -> io::Result<Box<dyn ReadFile>> {
        if let Some((_, code)) = self.state().unreadable.as_ref().filter(|(n, _)| n == name) {
            return Err(io::Error::from_raw_os_error(*code));
        }
        self.inner.open_read(name)
    }
    fn size(&self, name: &str) -> io::Result<u64> {
        self.inner.size(name)
    }
}

impl Storage for SimDisk {
    fn open_append(&self, name: &str) -> io::Result<Box<dyn WriteFile>> {
        let mut st = self.state();
        st.tick()?;
        let f = self.inner.open_append(name)?;
        let size = self.inner.size(name)?;
        st.files.entry(name.to_string()).or_insert(Tracked {
            written: size,
            durable: size,
        });
        drop(st);
        Ok(self.wrap(name, f))
    }
    fn create(&self, name: &str) -> io::Result<Box<dyn WriteFile>> {
        let mut st = self.state();
        st.tick()?;
        let f = self.inner.create(name)?;
        st.files.insert(
            name.to_string(),
            Tracked {
                written: 0,
                durable: 0,
            },
        );
        st.unsynced_entries.push(name.to_string());
        drop(st);
        Ok(self.wrap(name, f))
    }
    fn open_write_at(&self, name: &str, offset: u64) -> io::Result<Box<dyn WriteFile>> {
        let mut st = self.state();
        st.tick()?;
        let f = self.inner.open_write_at(name, offset)?;
        // What is before `offset` was durable already (or is tracked as written).
        let durable = st.files.get(name).map_or(offset, |t| t.durable.min(offset));
        st.files.insert(
            name.to_string(),
            Tracked {
                written: offset,
                durable,
            },
        );
        drop(st);
        Ok(self.wrap(name, f))
    }
    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let mut st = self.state();
        st.tick()?;
        self.inner.truncate(name, len)?;
        // FileStorage::truncate makes the new length durable.
        st.files.insert(
            name.to_string(),
            Tracked {
                written: len,
                durable: len,
            },
        );
        Ok(())
    }
    fn remove_file(&self, name: &str) -> io::Result<()> {
        let mut st = self.state();
        st.tick()?;
        self.inner.remove_file(name)?;
        st.files.remove(name);
        st.unsynced_entries.retain(|e| e != name);
        Ok(())
    }
    fn create_dir(&self, name: &str) -> io::Result<()> {
        let mut st = self.state();
        st.tick()?;
        self.inner.create_dir(name)?;
        st.unsynced_entries.push(name.to_string());
        Ok(())
    }
    fn remove_dir(&self, name: &str) -> io::Result<()> {
        let mut st = self.state();
        st.tick()?;
        self.inner.remove_dir(name)?;
        st.unsynced_entries.retain(|e| e != name);
        Ok(())
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut st = self.state();
        st.tick()?;
        self.inner.rename(from, to)?;
        let moved = |k: &str| -> Option<String> {
            if k == from {
                Some(to.to_string())
            } else {
                k.strip_prefix(from)
                    .filter(|rest| rest.starts_with('/'))
                    .map(|rest| format!("{to}{rest}"))
            }
        };
        let files: Vec<(String, Tracked)> = st.files.drain().collect();
        for (k, t) in files {
            let k = moved(&k).unwrap_or(k);
            st.files.insert(k, t);
        }
        let entries: Vec<String> = std::mem::take(&mut st.unsynced_entries);
        st.unsynced_entries = entries
            .into_iter()
            .map(|e| moved(&e).unwrap_or(e))
            .collect();
        Ok(())
    }
    fn sync_dir(&self, dir: &str) -> io::Result<()> {
        let mut st = self.state();
        st.tick()?;
        match &mut st.dir_syncs_until_failure {
            Some(0) => st.fail_dir_sync = true,
            Some(n) => *n -= 1,
            None => {}
        }
        if st.fail_dir_sync {
            return Err(io::Error::other("injected directory fsync failure"));
        }
        self.inner.sync_dir(dir)?;
        st.unsynced_entries.retain(|e| parent(e) != dir);
        Ok(())
    }
    fn try_lock(&self) -> io::Result<LockAttempt> {
        self.inner.try_lock()
    }
}
