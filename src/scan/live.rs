//! A log that changes while it is read: a newest segment cut or grown, zeros a
//! writer was filling read again, and following (waiting, polling for more).

use crate::codec::LEN_PREFIX;
use crate::error::{Error, Result};
use crate::segment::{list_segments, SegmentFile};
use crate::storage::ReadFile;

use super::event::Step;
use super::scanner::{Position, Scanner};
use super::source::{read_error, Source};

impl Scanner {
    /// The newest segment was cut while being read: a writer trimming the unwritten
    /// zeros it had preallocated (at rotation or close). When nothing already read
    /// was cut, the scan reads on from the first unread byte to the new end, on this
    /// thread. Returns whether it did; anything else stays the error it was.
    pub(super) fn recover_shrink(&mut self, err: &Error) -> Result<bool> {
        let shrank = matches!(err, Error::Io { source, .. }
            if source.kind() == std::io::ErrorKind::UnexpectedEof);
        if !shrank || self.cur.is_none() || !self.is_last_segment() {
            return Ok(false);
        }
        let name = &self.segments[self.idx].name;
        let path = self.storage.root().join(name);
        let now = match self.storage.size(name) {
            Ok(n) => n,
            Err(_) => return Ok(false),
        };
        let offset = self.cur.as_ref().expect("checked above").offset;
        if now < offset {
            return Ok(false);
        }
        self.reopen_at(offset, now, &path)?;
        Ok(true)
    }

    /// Reads the current segment again from `offset` (on this thread, with a fresh
    /// descriptor), taking `size` for its size.
    fn reopen_at(&mut self, offset: u64, size: u64, path: &std::path::Path) -> Result<()> {
        let name = &self.segments[self.idx].name;
        let mut f = self
            .storage
            .open_read(name)
            .map_err(|e| Error::io("open", path, e))?;
        f.seek_to(offset).map_err(|e| Error::io("seek", path, e))?;
        let r = self.cur.as_mut().expect("a segment is open");
        if let Source::Ahead(ahead) = &mut r.source {
            self.pool = ahead.stop();
        }
        r.source = Source::Direct(f);
        r.offset = offset;
        r.start = 0;
        r.end = 0;
        r.size = size;
        if let Some(s) = self.cur_summary.as_mut() {
            s.size = size;
        }
        Ok(())
    }

    /// Zeros at a record boundary of the newest segment, with non-zero bytes after
    /// them: corruption, unless a writer was writing there while this read (a write
    /// into preallocated space reaches the page cache page by page, so a reader can
    /// see a later page's new bytes after an earlier page's old zeros). Reads the
    /// position again, at most twice, before believing it. Returns whether it did.
    pub(super) fn reread_zeros(&mut self, at: &Position) -> Result<bool> {
        let times = match self.reread {
            Some((idx, offset, n)) if idx == self.idx && offset == at.offset => n,
            _ => 0,
        };
        if times >= 2 {
            return Ok(false);
        }
        self.reread = Some((self.idx, at.offset, times + 1));
        let name = &self.segments[self.idx].name;
        let path = self.storage.root().join(name);
        let size = match self.storage.size(name) {
            Ok(n) if n > at.offset => n,
            _ => return Ok(false),
        };
        self.reopen_at(at.offset, size, &path)?;
        Ok(true)
    }

    /// The newest segment may have grown since it was opened (a writer finishing
    /// the record the scan found incomplete): looks again at its size, and reads on
    /// when it is larger. Returns whether it grew.
    pub(super) fn regrow(&mut self) -> Result<bool> {
        let name = &self.segments[self.idx].name;
        let path = self.storage.root().join(name);
        let Some(r) = self.cur.as_mut() else {
            return Ok(false);
        };
        let now = match &r.source {
            Source::Direct(f) => f.size(),
            Source::Ahead(_) => self.storage.size(name),
        };
        let now = match now {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("stat", path, e)),
        };
        if now <= r.size {
            return Ok(false);
        }
        if let Source::Ahead(ahead) = &mut r.source {
            // The helper thread read up to the old size: read the rest here, from
            // the byte after the last one buffered.
            let mut f = self
                .storage
                .open_read(name)
                .map_err(|e| Error::io("open", &path, e))?;
            f.seek_to(r.offset + (r.end - r.start) as u64)
                .map_err(|e| Error::io("seek", &path, e))?;
            self.pool = ahead.stop();
            r.source = Source::Direct(f);
        }
        r.size = now;
        if let Some(s) = self.cur_summary.as_mut() {
            s.size = now;
        }
        Ok(true)
    }

    /// Following: a record still being written at `offset` of the newest segment.
    /// The scan waits there for the rest, watching the bytes (see `wait_probe`).
    pub(super) fn wait_at(&mut self, offset: u64) -> Result<Step> {
        let io = read_error(self.storage.as_ref(), &self.segments[self.idx].name);
        let max = self.opts.max_body_len as u64;
        let r = self.cur.as_mut().expect("a segment is open");
        r.file().and_then(|f| f.seek_to(offset)).map_err(io)?;
        r.offset = offset;
        r.start = 0;
        r.end = 0;
        let probe = probe_unread(r.file().map_err(io)?.as_mut(), offset, max);
        self.wait_probe = Some(probe.map_err(io)?);
        self.waiting = true;
        Ok(Step::Waiting)
    }

    /// Follow mode: looks for bytes appended to the newest segment and for new
    /// segments. Returns whether there may be more to read.
    pub fn poll(&mut self) -> Result<bool> {
        if !self.waiting {
            return Ok(!self.stopped && self.idx < self.segments.len());
        }
        let newer: Vec<SegmentFile> = list_segments(self.storage.as_ref())?
            .into_iter()
            .filter(|s| self.segments.last().is_none_or(|last| s.id > last.id))
            .collect();
        let mut more = false;
        if let Some(r) = self.cur.as_mut() {
            // The open file, not its name: retention may delete a segment a slow
            // follower is still reading, and its bytes stay readable through it.
            let size = r.file().and_then(|f| f.size()).map_err(|e| {
                Error::io(
                    "stat",
                    self.storage.root().join(&self.segments[self.idx].name),
                    e,
                )
            })?;
            if size < r.offset {
                // Cut below records already delivered: a repair ran under us.
                let name = &self.segments[self.idx].name;
                return Err(Error::BadSegment {
                    path: self.storage.root().join(name),
                    reason: format!(
                        "was cut to {size} bytes while being followed, below the {} bytes \
                         already read",
                        r.offset
                    ),
                });
            }
            if size < r.size {
                // A writer opening the log saved and cut the torn tail we were waiting
                // at, and may have written new records there: forget what was
                // buffered and read again from the first unread byte.
                let unread = r.offset;
                r.file().and_then(|f| f.seek_to(unread)).map_err(|e| {
                    Error::io(
                        "seek",
                        self.storage.root().join(&self.segments[self.idx].name),
                        e,
                    )
                })?;
                r.start = 0;
                r.end = 0;
            }
            if let (true, Some((_, sig))) = (size == r.size, self.wait_probe) {
                // Same size: was the space we wait at written in place?
                let max = self.opts.max_body_len as u64;
                let at = r.offset;
                let probe = r.file().and_then(|f| probe_unread(f.as_mut(), at, max));
                let now = probe.map_err(|e| {
                    Error::io(
                        "read",
                        self.storage.root().join(&self.segments[self.idx].name),
                        e,
                    )
                })?;
                if now.1 != sig {
                    more = true;
                }
            }
            if size != r.size {
                r.size = size;
                if let Some(s) = self.cur_summary.as_mut() {
                    s.size = size;
                }
                more = true;
            }
        } else if self.segments.is_empty() {
            more = !newer.is_empty();
        }
        if !newer.is_empty() {
            self.segments.extend(newer);
            more = true;
        }
        if more {
            self.waiting = false;
            self.wait_probe = None;
        }
        Ok(more)
    }
}

/// The bytes a follower waiting at `offset` watches: the length prefix there and,
/// when it is not zero, the record it announces (bounded by `max` and the file).
/// Returns how many bytes were read and their CRC; the file is left at `offset`.
fn probe_unread(file: &mut dyn ReadFile, offset: u64, max: u64) -> std::io::Result<(usize, u32)> {
    file.seek_to(offset)?;
    let mut prefix = [0u8; LEN_PREFIX];
    let n = crate::storage::read_up_to(file, &mut prefix)?;
    let len = u32::from_le_bytes(prefix) as u64;
    let mut h = crc32fast::Hasher::new();
    h.update(&prefix[..n]);
    let mut read = n;
    if n == LEN_PREFIX && len > 0 && len <= max {
        let mut body = vec![0u8; len.min(1 << 20) as usize];
        let m = crate::storage::read_up_to(file, &mut body)?;
        h.update(&body[..m]);
        read += m;
    }
    file.seek_to(offset)?;
    Ok((read, h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::event::Event;
    use crate::scan::options::ScanOptions;
    use crate::scan::report::{scan_log, ScanReport};
    use crate::storage::{DirEntry, EntryKind, MemStorage, ReadFile, ReadStorage};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// One segment whose first `torn` opens show `before` and later ones `after`:
    /// a reader that caught a write into preallocated space half done (a later page
    /// already new, an earlier one still zeros).
    #[derive(Debug)]
    struct Changing {
        before: Vec<u8>,
        after: Vec<u8>,
        torn: usize,
        opens: AtomicUsize,
    }

    impl Changing {
        fn view(&self) -> MemStorage {
            let n = self.opens.fetch_add(1, Ordering::SeqCst);
            let bytes = if n < self.torn {
                &self.before
            } else {
                &self.after
            };
            MemStorage::segments(std::slice::from_ref(bytes))
        }
    }

    impl ReadStorage for Changing {
        fn root(&self) -> &std::path::Path {
            std::path::Path::new("/changing")
        }
        fn list(&self, _dir: &str) -> std::io::Result<Vec<DirEntry>> {
            Ok(vec![DirEntry {
                name: "segment-0".into(),
                kind: EntryKind::File,
                size: self.after.len() as u64,
            }])
        }
        fn open_read(&self, name: &str) -> std::io::Result<Box<dyn ReadFile>> {
            self.view().open_read(name)
        }
        fn size(&self, _name: &str) -> std::io::Result<u64> {
            Ok(self.after.len() as u64)
        }
    }

    fn torn_view(torn: usize) -> ScanReport {
        let (mut after, mut r2) = (Vec::new(), Vec::new());
        crate::codec::encode_record(&mut after, 1, b"first", false);
        let start = after.len();
        crate::codec::encode_record(&mut r2, 2, &[7u8; 6000], false);
        after.extend_from_slice(&r2);
        crate::codec::encode_record(&mut after, 3, b"third", false);
        // What a reader may see while record 2 is written: its first page still
        // zeros, the rest (and record 3) already there.
        let mut before = after.clone();
        before[start..start + 4096].fill(0);
        let storage = Changing {
            before,
            after,
            torn,
            opens: AtomicUsize::new(0),
        };
        let opts = ScanOptions::default()
            .read_ahead_from(None)
            .parallel_from(None);
        scan_log(Arc::new(storage), opts, |_| {}).unwrap()
    }

    #[test]
    fn zeros_a_writer_was_filling_are_read_again_not_called_corruption() {
        let report = torn_view(1);
        assert!(
            report.problems().next().is_none(),
            "{:?}",
            report.problems().next()
        );
        assert_eq!(report.records, 3);
        // The same bytes for good: zeros with data after them stay corruption.
        let report = torn_view(usize::MAX);
        let p = report.problems().next().expect("corruption");
        assert_eq!(p.severity, crate::error::Severity::Corruption, "{p}");
        assert_eq!(report.records, 1);
    }

    /// Following, the scan knows where it waits for the rest of an incomplete record
    /// at the end of the newest segment (the follower's stall report comes from it);
    /// once the next writer's open cut the torn bytes and appended, it reads on and
    /// waits at no incomplete record any more.
    #[test]
    fn a_follower_at_a_torn_tail_knows_where_it_waits() {
        use crate::storage::FileStorage;
        use crate::writer::{SyncPolicy, Wal, WalOptions};
        use std::io::Write;

        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let data = |lsn: u64| format!("record {lsn}").repeat(80).into_bytes();
        let append = |lsns: std::ops::RangeInclusive<u64>| {
            let opts = WalOptions::default()
                .max_segment_size(16 * 1024)
                .max_segments(0)
                .sync(SyncPolicy::Never);
            let wal = Wal::open(dir, opts).unwrap();
            for lsn in lsns {
                assert_eq!(wal.append(&data(lsn)).unwrap(), lsn);
            }
            wal.close().unwrap();
        };
        append(1..=30);
        let storage = Arc::new(FileStorage::open(dir).unwrap());
        let segments = list_segments(storage.as_ref()).unwrap();
        assert!(segments.len() >= 2, "{segments:?}");
        let newest = segments.last().unwrap().name.clone();
        let path = dir.join(&newest);
        let base = std::fs::metadata(&path).unwrap().len();
        let mut rec = Vec::new();
        crate::codec::encode_record(&mut rec, 31, b"a record cut short by a crash", false);
        let cut = rec.len() as u64 - 7;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&rec[..cut as usize]).unwrap();
        drop(f);

        let drain = |scanner: &mut Scanner| -> Vec<u64> {
            let mut lsns = Vec::new();
            while let Some(ev) = scanner.next().unwrap() {
                match ev {
                    Event::Record(r) => {
                        assert_eq!(r.data, data(r.lsn).as_slice());
                        lsns.push(r.lsn);
                    }
                    Event::SegmentEnd(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            lsns
        };
        let mut scanner = Scanner::new(storage, ScanOptions::default().follow(true)).unwrap();
        let lsns = drain(&mut scanner);
        assert_eq!(lsns, (1..=30).collect::<Vec<_>>());
        assert_eq!(
            scanner.first_problem(),
            None,
            "a follower waits at a torn tail"
        );
        assert_eq!(
            scanner.waiting_at_partial(),
            Some((newest.as_str(), base, cut))
        );

        // The next writer's open cuts the torn bytes; its records arrive.
        append(31..=45);
        scanner.poll().unwrap();
        let more = drain(&mut scanner);
        assert_eq!(scanner.first_problem(), None);
        assert_eq!(more, (31..=45).collect::<Vec<_>>());
        assert_eq!(scanner.waiting_at_partial(), None);
    }
}
