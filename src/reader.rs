//! Streaming readers: every record from an LSN, or recovery from the newest
//! checkpoint. Memory is bounded by the largest record, never by the log.

use std::path::Path;
use std::sync::Arc;

pub use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::follow::Follow;
use crate::scan::{scan_log, Event, ScanOptions, ScanReport, Scanner};
use crate::storage::{FileStorage, ReadStorage};

/// Reads a log without locking or changing anything; safe beside a running writer.
#[derive(Debug, Clone)]
pub struct WalReader {
    storage: Arc<dyn ReadStorage>,
}

impl WalReader {
    /// A reader over the log in `dir` (which must exist).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let storage = FileStorage::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
        Ok(Self::new(Arc::new(storage)))
    }

    /// A reader over `storage`.
    pub fn new(storage: Arc<dyn ReadStorage>) -> Self {
        WalReader { storage }
    }

    /// Scans and summarises the whole log.
    pub fn scan(&self) -> Result<ScanReport> {
        scan_log(self.storage.clone(), ScanOptions::default(), |_| {})
    }

    /// Every record with LSN >= `from`, in order. Stops with an error at the first
    /// problem, after yielding every intact record before it.
    pub fn entries_from(&self, from: u64) -> Result<Entries> {
        let scanner = Scanner::new(
            self.storage.clone(),
            ScanOptions::default()
                .from_lsn(Some(from))
                .stop_at_first_problem(true),
        )?;
        Ok(Entries {
            scanner,
            from,
            done: false,
        })
    }

    /// Follows the log from LSN `from`: every record there is, then each one a writer
    /// appends, across rotation, until stopped (see [`Follow`]).
    pub fn follow_from(&self, from: u64) -> Result<Follow> {
        Follow::new(self.storage.clone(), from)
    }

    /// Recovery: the newest checkpoint, then every record after it (the whole log
    /// when there is no checkpoint).
    pub fn from_newest_checkpoint(&self) -> Result<Entries> {
        let report = self.scan()?;
        let from = report.newest_checkpoint.map_or(0, |c| c.lsn);
        self.entries_from(from)
    }
}

/// Iterator over [`Entry`]s; see [`WalReader::entries_from`].
#[derive(Debug)]
pub struct Entries {
    scanner: Scanner,
    from: u64,
    done: bool,
}

impl Iterator for Entries {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            match self.scanner.next() {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Ok(Some(Event::Record(r))) => {
                    if r.lsn >= self.from {
                        return Some(Ok(Entry::from(&r)));
                    }
                }
                Ok(Some(Event::Retired(gap))) => {
                    if gap.last_lsn >= self.from {
                        self.done = true;
                        return Some(Err(gap.undelivered(self.from)));
                    }
                }
                Ok(Some(Event::SegmentEnd(s))) => {
                    if let Some(p) = &s.problem {
                        self.done = true;
                        return Some(Err(Error::scan(p.clone())));
                    }
                }
            }
        }
    }
}
