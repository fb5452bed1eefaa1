//! The in-memory, read-only storage of tests ([`MemStorage`]).

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{DirEntry, EntryKind, ReadFile, ReadStorage};

/// A read-only, in-memory [`ReadStorage`] for tests: a log built from byte vectors
/// is scanned, read and verified with no disk I/O (walctl's damage and fuzz tests
/// run thousands of scans over it). It has no write half ([`super::Storage`]), so a
/// [`crate::Wal`] cannot open it; [`crate::WalReader::new`] and
/// [`crate::scan::Scanner`] can.
///
/// ```
/// use std::sync::Arc;
/// use walctl::storage::MemStorage;
/// use walctl::{EntryWriter, WalReader};
///
/// let mut w = EntryWriter::new(Vec::new());
/// w.write_entry(1, b"first", false)?;
/// w.write_entry(2, b"second", true)?;
/// let reader = WalReader::new(Arc::new(MemStorage::segments(&[w.into_inner()])));
/// let lsns: Vec<u64> = reader.entries_from(1)?.map(|e| e.map(|e| e.lsn)).collect::<Result<_, _>>()?;
/// assert_eq!(lsns, [1, 2]);
/// # Ok::<(), walctl::Error>(())
/// ```
///
/// A writer is refused when the program is compiled, not when it runs:
///
/// ```compile_fail,E0277
/// use std::sync::Arc;
/// use walctl::storage::MemStorage;
/// use walctl::{Wal, WalOptions};
///
/// let storage = Arc::new(MemStorage::segments(&[]));
/// let _ = Wal::open_with_storage(storage, WalOptions::default());
/// ```
#[derive(Debug, Clone)]
pub struct MemStorage {
    root: PathBuf,
    files: Vec<(String, Arc<Vec<u8>>)>,
    /// A file that is listed (and has a size) but cannot be opened, as one at mode 000.
    unreadable: Option<String>,
}

impl MemStorage {
    /// Files by name, in a directory that exists nowhere.
    pub fn new(files: Vec<(String, Vec<u8>)>) -> Self {
        MemStorage {
            root: PathBuf::from("/mem/wal"),
            files: files.into_iter().map(|(n, d)| (n, Arc::new(d))).collect(),
            unreadable: None,
        }
    }

    /// The same files, `name`'s `open_read` failing with PermissionDenied.
    pub fn with_unreadable(mut self, name: &str) -> Self {
        self.unreadable = Some(name.to_string());
        self
    }

    fn find(&self, name: &str) -> io::Result<&Arc<Vec<u8>>> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    /// `segment-0`, `segment-1`, ... holding these bytes.
    pub fn segments(segments: &[Vec<u8>]) -> Self {
        Self::new(
            segments
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("segment-{i}"), b.clone()))
                .collect(),
        )
    }
}

struct MemRead {
    data: Arc<Vec<u8>>,
    pos: usize,
}

impl Read for MemRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.data.len().saturating_sub(self.pos));
        if n == 0 {
            return Ok(0);
        }
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl ReadFile for MemRead {
    fn seek_to(&mut self, offset: u64) -> io::Result<()> {
        // Past the end reads nothing, like a file.
        self.pos = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.data.len() as u64)
    }
}

impl ReadStorage for MemStorage {
    fn root(&self) -> &Path {
        &self.root
    }
    fn list(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        if !dir.is_empty() {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(self
            .files
            .iter()
            .map(|(n, d)| DirEntry {
                name: n.clone(),
                kind: EntryKind::File,
                size: d.len() as u64,
            })
            .collect())
    }
    fn open_read(&self, name: &str) -> io::Result<Box<dyn ReadFile>> {
        if self.unreadable.as_deref() == Some(name) {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        let d = self.find(name)?;
        Ok(Box::new(MemRead {
            data: d.clone(),
            pos: 0,
        }))
    }
    fn size(&self, name: &str) -> io::Result<u64> {
        Ok(self.find(name)?.len() as u64)
    }
}
