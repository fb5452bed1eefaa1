//! A [`ReadStorage`] over segments held in memory, so that the one scanner
//! checks exactly the bytes that are uploaded (or were downloaded), with no second
//! read of a file that may have changed in between.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::scan::{scan_log, Event, ScanOptions, Scanner, SegmentSummary};
use crate::segment::segment_name;
use crate::storage::{DirEntry, EntryKind, ReadFile, ReadStorage};

/// One segment's bytes, seen as a log of that single segment.
#[derive(Debug)]
pub(crate) struct OneSegment {
    root: PathBuf,
    name: String,
    bytes: Arc<Vec<u8>>,
}

impl OneSegment {
    /// `root` names where the bytes come from, for messages.
    pub(crate) fn new(root: impl Into<PathBuf>, id: u64, bytes: Arc<Vec<u8>>) -> Self {
        OneSegment {
            root: root.into(),
            name: segment_name(id),
            bytes,
        }
    }

    /// Checks every record (framing, protobuf, CRC, LSN order) and summarises the
    /// segment; its problem, if any, is in the summary.
    pub(crate) fn check(self) -> Result<SegmentSummary> {
        let opts = ScanOptions::default()
            .read_ahead_from(None)
            .parallel_from(None);
        let mut report = scan_log(Arc::new(self), opts, |_| {})?;
        Ok(report.segments.remove(0))
    }

    /// The length of the segment up to and including the record with LSN `lsn`, or
    /// `None` when no intact record has that LSN.
    pub(crate) fn end_of(self, lsn: u64) -> Result<Option<u64>> {
        let opts = ScanOptions::default()
            .read_ahead_from(None)
            .parallel_from(None)
            .stop_at_first_problem(true);
        let mut scanner = Scanner::new(Arc::new(self), opts)?;
        while let Some(ev) = scanner.next()? {
            if let Event::Record(r) = ev {
                if r.lsn == lsn {
                    return Ok(Some(r.offset + r.len));
                }
            }
        }
        Ok(None)
    }
}

struct Cursor {
    bytes: Arc<Vec<u8>>,
    pos: usize,
}

impl Read for Cursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl ReadFile for Cursor {
    fn seek_to(&mut self, offset: u64) -> io::Result<()> {
        self.pos = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.bytes.len() as u64)
    }
}

impl ReadStorage for OneSegment {
    fn root(&self) -> &Path {
        &self.root
    }
    fn list(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        if !dir.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![DirEntry {
            name: self.name.clone(),
            kind: EntryKind::File,
            size: self.bytes.len() as u64,
        }])
    }
    fn open_read(&self, name: &str) -> io::Result<Box<dyn ReadFile>> {
        if name != self.name {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        Ok(Box::new(Cursor {
            bytes: self.bytes.clone(),
            pos: 0,
        }))
    }
    fn size(&self, name: &str) -> io::Result<u64> {
        if name != self.name {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        Ok(self.bytes.len() as u64)
    }
}
