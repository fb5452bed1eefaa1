//! Reading a log in place in an archive: a [`ReadStorage`] over an archive's
//! prefix, so that dump, verify and segments (and every library reader) work on
//! `s3://BUCKET/PREFIX` as on a directory. Files are read with ranged GETs of a
//! bounded size, so memory stays bounded as for files; there is no write half.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::ArchiveError;
use super::store::Archive;
use crate::storage::{DirEntry, EntryKind, ReadFile, ReadStorage};

/// Bytes fetched by one ranged GET.
const RANGE: u64 = 8 << 20;

/// A read-only view of an archive as a log directory. It has no write half, so
/// neither a writer nor a repair can be given one:
///
/// ```compile_fail,E0277
/// fn writable(view: &walctl::archive::ArchiveStorage) -> &dyn walctl::storage::Storage {
///     view
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ArchiveStorage {
    archive: Arc<Archive>,
    root: PathBuf,
}

impl ArchiveStorage {
    /// A view of `archive`.
    pub fn new(archive: Arc<Archive>) -> Self {
        let root = PathBuf::from(archive.url());
        ArchiveStorage { archive, root }
    }
}

fn to_io(e: ArchiveError) -> io::Error {
    let kind = match &e {
        ArchiveError::Store {
            not_found: true, ..
        } => io::ErrorKind::NotFound,
        ArchiveError::AccessDenied { .. } => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

struct RangedRead {
    archive: Arc<Archive>,
    name: String,
    size: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl Read for RangedRead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || out.is_empty() {
            return Ok(0);
        }
        let buf_end = self.buf_start + self.buf.len() as u64;
        if self.pos < self.buf_start || self.pos >= buf_end {
            let end = (self.pos + RANGE).min(self.size);
            self.buf = self
                .archive
                .get_range(&self.name, self.pos..end)
                .map_err(to_io)?;
            self.buf_start = self.pos;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let at = (self.pos - self.buf_start) as usize;
        let n = (self.buf.len() - at).min(out.len());
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl ReadFile for RangedRead {
    fn seek_to(&mut self, offset: u64) -> io::Result<()> {
        self.pos = offset;
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.size)
    }
}

impl ReadStorage for ArchiveStorage {
    fn root(&self) -> &Path {
        &self.root
    }
    fn list(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        if !dir.is_empty() {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        Ok(self
            .archive
            .list()
            .map_err(to_io)?
            .into_iter()
            .map(|o| DirEntry {
                name: o.name,
                kind: EntryKind::File,
                size: o.size,
            })
            .collect())
    }
    fn open_read(&self, name: &str) -> io::Result<Box<dyn ReadFile>> {
        let size = self.size(name)?;
        Ok(Box::new(RangedRead {
            archive: self.archive.clone(),
            name: name.to_string(),
            size,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
        }))
    }
    fn size(&self, name: &str) -> io::Result<u64> {
        match self.archive.head(name).map_err(to_io)? {
            Some(o) => Ok(o.size),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }
}
