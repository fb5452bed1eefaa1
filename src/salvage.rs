//! Reading past damage: [`Salvager`] delivers every intact record of a log, and
//! after a problem resynchronises on the next position where an intact record
//! starts ([`resync`]), in the same segment or a later one, naming each byte range
//! it skipped. `walctl dump --salvage` and the repair plan's count of intact records
//! inside the bytes it would cut both use it.
//!
//! The records themselves are read by the one scanner ([`Scanner`]): from the start
//! of the log, and again from each place [`resync`] finds, through a read-only view
//! of the log that begins there (`LogView`). A record is only ever delivered by the
//! scanner, so none whose CRC fails is ever presented.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::codec::{decode_body, plausible_start, LEN_PREFIX, TAG_LSN};
use crate::error::{Error, Problem, Result, Severity};
use crate::scan::{Event, ScanOptions, ScannedRecord, Scanner};
use crate::segment::{parse_segment_name, SegmentFile};
use crate::storage::{read_up_to, DirEntry, EntryKind, ReadFile, ReadStorage};

/// Bytes [`resync`] reads at a time while it looks for a record start, at most.
const WINDOW: usize = 1 << 20;

/// Bytes of its first read: most damage is a record or two, and a resync per
/// damaged record should not read (or allocate) a whole [`WINDOW`]. Each later
/// read doubles, up to [`WINDOW`].
const FIRST_WINDOW: usize = 16 << 10;

/// Bytes of a body [`plausible_start`] needs to judge a candidate (a ten-byte LSN,
/// a tag, a ten-byte data length, and one spare).
const HEAD: usize = 22;

/// Where [`resync`] found an intact record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Offset of its length prefix in the segment.
    pub offset: u64,
    /// Its LSN.
    pub lsn: u64,
}

/// Finds the first offset in `from..end` of a segment where an intact record starts
/// whose LSN is greater than `after`: its length prefix at most `max_body` and held
/// by the bytes up to `end`, its body a protobuf that decodes, its CRC matching.
///
/// Linear in the bytes searched: candidates are the positions whose fifth byte is
/// the LSN field's tag (found with `memchr`), and each is first judged from its
/// prefix and first `HEAD` body bytes (the codec's plausibility check, the LSN compared with
/// `after`); only a candidate that passes is read whole, decoded and CRC-checked.
/// Memory: one window of at most `WINDOW` bytes plus the largest candidate read whole (at most `max_body`,
/// and never more than the segment holds).
pub fn resync(
    file: &mut dyn ReadFile,
    from: u64,
    end: u64,
    after: Option<u64>,
    max_body: u32,
) -> io::Result<Option<Found>> {
    let mut win = Window {
        buf: Vec::new(),
        base: from,
        len: 0,
        end,
        next_load: FIRST_WINDOW,
    };
    let mut scratch = Vec::new();
    let mut p = from;
    loop {
        // A record needs its prefix and at least a tag and an LSN byte.
        if p.saturating_add(LEN_PREFIX as u64 + 2) > end {
            return Ok(None);
        }
        // The window holds the candidate's prefix and the head of its body, or
        // everything up to the end of the segment.
        if p < win.base || (p + (LEN_PREFIX + HEAD) as u64 > win.end_pos() && win.end_pos() < end) {
            win.load(file, p)?;
        }
        let search = (p - win.base) as usize + LEN_PREFIX;
        let tag = win
            .bytes()
            .get(search..)
            .and_then(|b| memchr::memchr(TAG_LSN, b));
        let Some(i) = tag else {
            // No candidate in this window: the next one's tag lies past it.
            if win.end_pos() >= end {
                return Ok(None);
            }
            p = win.end_pos() - LEN_PREFIX as u64;
            continue;
        };
        p = win.base + (search + i - LEN_PREFIX) as u64;
        if p + (LEN_PREFIX + HEAD) as u64 > win.end_pos() && win.end_pos() < end {
            continue; // the window is moved to it above
        }
        if let Some(found) = check(&win, p, after, max_body, file, &mut scratch)? {
            return Ok(Some(found));
        }
        p += 1;
    }
}

/// Bytes `base..base + len` of a segment whose end is `end`.
struct Window {
    buf: Vec<u8>,
    base: u64,
    len: usize,
    end: u64,
    /// Bytes the next load reads (doubling up to [`WINDOW`]).
    next_load: usize,
}

impl Window {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The offset after the window's last byte.
    fn end_pos(&self) -> u64 {
        self.base + self.len as u64
    }

    fn load(&mut self, file: &mut dyn ReadFile, at: u64) -> io::Result<()> {
        let want = (self.end.saturating_sub(at)).min(self.next_load as u64) as usize;
        self.next_load = (self.next_load * 2).min(WINDOW);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        file.seek_to(at)?;
        self.base = at;
        self.len = read_up_to(file, &mut self.buf[..want])?;
        Ok(())
    }
}

/// Whether an intact record with an LSN greater than `after` starts at `p` (in the
/// window): the cheap checks first, then decode and CRC.
fn check(
    win: &Window,
    p: u64,
    after: Option<u64>,
    max_body: u32,
    file: &mut dyn ReadFile,
    scratch: &mut Vec<u8>,
) -> io::Result<Option<Found>> {
    let at = (p - win.base) as usize;
    let bytes = win.bytes();
    let Some(prefix) = bytes.get(at..at + LEN_PREFIX) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(prefix.try_into().expect("four bytes"));
    let body_at = p + LEN_PREFIX as u64;
    if len > max_body || body_at + len as u64 > win.end {
        return Ok(None);
    }
    let head_end = (at + LEN_PREFIX + (len as usize).min(HEAD)).min(bytes.len());
    let Some(lsn) = plausible_start(&bytes[at + LEN_PREFIX..head_end], len as u64) else {
        return Ok(None);
    };
    if after.is_some_and(|a| lsn <= a) {
        return Ok(None);
    }
    let body_in_window = at + LEN_PREFIX + len as usize <= bytes.len();
    let body = if body_in_window {
        &bytes[at + LEN_PREFIX..at + LEN_PREFIX + len as usize]
    } else {
        // Bounded above: by `max_body` and by the segment.
        scratch.resize(len as usize, 0);
        file.seek_to(body_at)?;
        if read_up_to(file, scratch)? < len as usize {
            return Ok(None);
        }
        &scratch[..]
    };
    Ok(decode_body(body)
        .ok()
        .filter(|r| r.lsn == lsn && r.crc_ok())
        .map(|_| Found { offset: p, lsn }))
}

/// A byte range [`Salvager`] stepped over, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    /// Segment file name.
    pub segment: String,
    /// Segment id.
    pub segment_id: u64,
    /// First byte skipped.
    pub offset: u64,
    /// Bytes skipped (0 for an LSN gap between two intact records).
    pub len: u64,
    /// LSN of the last intact record before the range.
    pub lsn_before: Option<u64>,
    /// LSN of the first intact record after it (`None`: none was found).
    pub lsn_after: Option<u64>,
    /// Torn tail (nothing intact after it in the newest segment) or corruption.
    pub severity: Severity,
    /// What the scanner found at `offset` (a [`crate::ProblemKind`] as text), or
    /// that the range continues the damage of the segment before.
    pub reason: String,
}

/// One step of a salvage.
#[derive(Debug)]
pub enum SalvageEvent<'a> {
    /// An intact record (offsets are in its segment, as from a plain scan).
    Record(ScannedRecord<'a>),
    /// A byte range was stepped over: complete once the next intact record was found.
    Skipped(Skip),
    /// Nothing to deliver in this step (a segment ended, or a resync was made).
    Progress,
}

/// Reads every intact record of a log in LSN order, past damage (see the module).
pub struct Salvager {
    storage: Arc<dyn ReadStorage>,
    opts: ScanOptions,
    /// The log directory as listed when the salvage started: every resumed scan
    /// reads these segments (a resync per damaged record must not list the
    /// directory and stat every file again).
    listing: Arc<Vec<DirEntry>>,
    /// The segments in it, by id.
    segments: Vec<SegmentFile>,
    scanner: Option<Scanner>,
    /// Segment id and offset where the current scanner's view starts.
    base: (u64, u64),
    /// The current scanner has returned `None`.
    scanner_done: bool,
    /// The problem the current scanner stopped at, taken from its segment's end.
    stopped_at: Option<Problem>,
    /// Records delivered by the current scanner.
    since_resume: u64,
    /// Where to look for the next record start: segment and offset.
    resync_at: Option<(SegmentFile, u64)>,
    /// Only this segment, up to this offset (a survey); `None`: the whole log.
    only: Option<(u64, u64)>,
    last: Option<u64>,
    /// Skips still waiting for the next intact record.
    open: Vec<Skip>,
    ready: VecDeque<Skip>,
    worst: Option<Severity>,
    skipped_bytes: u64,
    skips: u64,
}

impl std::fmt::Debug for Salvager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Salvager")
            .field("root", &self.storage.root())
            .field("last_lsn", &self.last)
            .finish()
    }
}

impl Salvager {
    /// A salvage of the whole log, from its first segment. `opts.from_lsn` and the
    /// read-ahead settings apply; the scanner always stops at each problem, which
    /// the salvager then steps over.
    pub fn new(storage: Arc<dyn ReadStorage>, opts: ScanOptions) -> Result<Self> {
        let opts = opts.stop_at_first_problem(true).follow(false);
        let mut s = Self::idle(storage, opts, None, None)?;
        s.scanner = Some(Scanner::new(s.storage.clone(), s.opts.clone())?);
        Ok(s)
    }

    /// A salvage of bytes `from..end` of one segment only, delivering records with
    /// an LSN greater than `after`: what lies in a range a repair would cut.
    pub fn within(
        storage: Arc<dyn ReadStorage>,
        segment: &SegmentFile,
        from: u64,
        end: u64,
        after: Option<u64>,
    ) -> Result<Self> {
        let opts = ScanOptions::default().stop_at_first_problem(true);
        let mut s = Self::idle(storage, opts, after, Some((segment.id, end)))?;
        s.resync_at = Some((segment.clone(), from));
        Ok(s)
    }

    fn idle(
        storage: Arc<dyn ReadStorage>,
        opts: ScanOptions,
        after: Option<u64>,
        only: Option<(u64, u64)>,
    ) -> Result<Self> {
        let listing = storage
            .list("")
            .map_err(|e| Error::io("list", storage.root(), e))?;
        let mut segments: Vec<SegmentFile> = listing
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .filter_map(|e| {
                parse_segment_name(&e.name).map(|id| SegmentFile {
                    id,
                    name: e.name.clone(),
                    size: e.size,
                })
            })
            .collect();
        segments.sort_by_key(|s| s.id);
        Ok(Salvager {
            storage,
            opts,
            listing: Arc::new(listing),
            segments,
            scanner: None,
            base: (0, 0),
            scanner_done: false,
            stopped_at: None,
            since_resume: 0,
            resync_at: None,
            only,
            last: after,
            open: Vec::new(),
            ready: VecDeque::new(),
            worst: None,
            skipped_bytes: 0,
            skips: 0,
        })
    }

    /// LSN of the last intact record delivered.
    pub fn last_lsn(&self) -> Option<u64> {
        self.last
    }

    /// The worst problem stepped over so far (`None`: nothing was skipped).
    pub fn worst(&self) -> Option<Severity> {
        self.worst
    }

    /// Skipped ranges reported so far, and their bytes.
    pub fn skipped(&self) -> (u64, u64) {
        (self.skips, self.skipped_bytes)
    }

    /// The next step; `None` when the log is done.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<SalvageEvent<'_>>> {
        if let Some(skip) = self.ready.pop_front() {
            return Ok(Some(SalvageEvent::Skipped(skip)));
        }
        if self.settle()? {
            return Ok(Some(SalvageEvent::Progress));
        }
        let (base_id, base_offset) = self.base;
        let Some(scanner) = self.scanner.as_mut() else {
            return Ok(None);
        };
        match scanner.next()? {
            Some(Event::Record(mut r)) => {
                if r.segment_id == base_id {
                    r.offset += base_offset;
                }
                self.last = Some(r.lsn);
                self.since_resume += 1;
                Ok(Some(SalvageEvent::Record(r)))
            }
            Some(Event::SegmentEnd(summary)) => {
                self.stopped_at = summary.problem.clone();
                Ok(Some(SalvageEvent::Progress))
            }
            None => {
                self.scanner_done = true;
                Ok(Some(SalvageEvent::Progress))
            }
            // The salvage reads the listing taken when it started: nothing in it
            // retires (and anything a newer scanner reports is no record).
            Some(_) => Ok(Some(SalvageEvent::Progress)),
        }
    }

    /// Moves the salvage on without delivering a record: after the scanner stopped
    /// at a problem or ended, and while resynchronising. Returns whether it did.
    fn settle(&mut self) -> Result<bool> {
        if let Some((segment, from)) = self.resync_at.take() {
            self.resync_in(segment, from)?;
            return Ok(true);
        }
        if self.scanner.is_none() {
            return Ok(false);
        }
        if let Some(p) = self.stopped_at.take() {
            self.scanner = None;
            self.begin_skip(p)?;
            return Ok(true);
        }
        if self.scanner_done {
            self.scanner = None;
            self.finish();
            return Ok(true);
        }
        Ok(false)
    }

    /// The scanner stopped at `p`: a skip starts there, and the search for the next
    /// record start with it (from the byte after it when the scanner stopped right
    /// where the last search put it, so that no search repeats itself).
    fn begin_skip(&mut self, p: Problem) -> Result<()> {
        let offset = if p.segment_id == self.base.0 {
            p.offset + self.base.1
        } else {
            p.offset
        };
        let segment = self.segments.iter().find(|s| s.id == p.segment_id).cloned();
        let Some(segment) = segment else {
            return Err(Error::BadSegment {
                path: self.storage.root().join(&p.segment),
                reason: "disappeared while it was being salvaged".into(),
            });
        };
        let stuck = (p.segment_id, offset) == self.base && self.since_resume == 0;
        self.open.push(Skip {
            segment: p.segment.clone(),
            segment_id: p.segment_id,
            offset,
            len: 0,
            lsn_before: self.last,
            lsn_after: None,
            severity: p.severity,
            reason: p.kind.to_string(),
        });
        self.resync_at = Some((segment, offset + stuck as u64));
        Ok(())
    }

    /// Looks for the next record start in `segment` from `from`; resumes the scan
    /// there, or goes on to the next segment, or ends the salvage.
    fn resync_in(&mut self, segment: SegmentFile, from: u64) -> Result<()> {
        let path = self.storage.root().join(&segment.name);
        let io_err = |op, e| Error::io(op, &path, e);
        let mut file = self
            .storage
            .open_read(&segment.name)
            .map_err(|e| io_err("open", e))?;
        let mut end = file.size().map_err(|e| io_err("stat", e))?;
        if let Some((_, limit)) = self.only {
            end = end.min(limit);
        }
        let found = resync(&mut *file, from, end, self.last, self.opts.max_body_len)
            .map_err(|e| io_err("read", e))?;
        let skip_end = found.map_or(end, |f| f.offset);
        match self.open.last_mut() {
            Some(s) if s.segment_id == segment.id => s.len = skip_end.saturating_sub(s.offset),
            _ => {}
        }
        match found {
            Some(f) => self.resume(&segment, f),
            None => self.look_past(&segment),
        }
    }

    /// An intact record starts at `f` in `segment`: the open skips end there, and a
    /// new scanner reads on from it.
    fn resume(&mut self, segment: &SegmentFile, f: Found) -> Result<()> {
        self.close_skips(Some(f.lsn));
        let view = LogView {
            inner: self.storage.clone(),
            listing: self.listing.clone(),
            id: segment.id,
            name: segment.name.clone(),
            start: f.offset,
            end: self.only.map(|(_, end)| end),
            only: self.only.is_some(),
        };
        // No read-ahead thread: where damage is dense, it would read chunks the scan
        // never reaches before the next resync.
        let opts = self.opts.clone().read_ahead_from(None);
        self.scanner = Some(Scanner::new(Arc::new(view), opts)?);
        self.base = (segment.id, f.offset);
        self.scanner_done = false;
        self.since_resume = 0;
        Ok(())
    }

    /// No intact record starts in the rest of `segment`: the search goes on from
    /// the start of the next segment (the damage may continue there), or the
    /// salvage ends.
    fn look_past(&mut self, segment: &SegmentFile) -> Result<()> {
        let next = match self.only {
            Some(_) => None,
            None => self.segments.iter().find(|s| s.id > segment.id).cloned(),
        };
        let Some(next) = next else {
            self.finish();
            return Ok(());
        };
        self.open.push(Skip {
            segment: next.name.clone(),
            segment_id: next.id,
            offset: 0,
            len: 0,
            lsn_before: self.last,
            lsn_after: None,
            severity: Severity::Corruption,
            reason: "the damage of the segment before goes on here (no intact record \
                     starts in between)"
                .into(),
        });
        self.resync_at = Some((next, 0));
        Ok(())
    }

    /// Completes the open skips: the next intact record has `lsn_after`. A range that
    /// only continues damage into a segment whose first record is intact is empty and
    /// dropped; an empty range where the scanner found a problem is an LSN gap.
    fn close_skips(&mut self, lsn_after: Option<u64>) {
        for (i, mut s) in std::mem::take(&mut self.open).into_iter().enumerate() {
            if s.len == 0 && i > 0 {
                continue;
            }
            s.lsn_after = lsn_after;
            if lsn_after.is_some() {
                // Intact records after it: not the end of the log, so not torn.
                s.severity = Severity::Corruption;
            }
            self.worst = self.worst.max(Some(s.severity));
            self.skips += 1;
            self.skipped_bytes += s.len;
            self.ready.push_back(s);
        }
    }

    fn finish(&mut self) {
        self.close_skips(None);
    }
}

/// A read-only view of a log that begins at byte `start` of segment `id` (older
/// segments hidden) and, for a survey, holds only that segment up to `end`. The
/// scanner reads it as a log; offsets in that segment are relative to `start`. Its
/// directory is the listing the salvage started with; its files give no read-ahead
/// advice (a resumed scan may stop again a few records later).
#[derive(Debug)]
struct LogView {
    inner: Arc<dyn ReadStorage>,
    listing: Arc<Vec<DirEntry>>,
    id: u64,
    name: String,
    start: u64,
    end: Option<u64>,
    only: bool,
}

impl LogView {
    /// Whether a segment of this id is outside the view.
    fn hides(&self, id: u64) -> bool {
        id < self.id || (self.only && id > self.id)
    }

    fn view_size(&self, size: u64) -> u64 {
        self.end
            .map_or(size, |e| e.min(size))
            .saturating_sub(self.start)
    }
}

/// A file of the view: for its first segment, bytes `start..end` read as `0..`;
/// for the others, the whole file.
struct ViewFile {
    file: Box<dyn ReadFile>,
    /// Absolute offset of the next read.
    pos: u64,
    start: u64,
    end: Option<u64>,
}

impl Read for ViewFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = match self.end {
            Some(end) => (buf.len() as u64).min(end.saturating_sub(self.pos)) as usize,
            None => buf.len(),
        };
        let n = self.file.read(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl ReadFile for ViewFile {
    fn seek_to(&mut self, offset: u64) -> io::Result<()> {
        let pos = self.start.saturating_add(offset);
        self.file.seek_to(pos)?;
        self.pos = pos;
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        let size = self.file.size()?;
        Ok(self
            .end
            .map_or(size, |e| e.min(size))
            .saturating_sub(self.start))
    }
}

impl ReadStorage for LogView {
    fn root(&self) -> &Path {
        self.inner.root()
    }
    fn list(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        if !dir.is_empty() {
            return self.inner.list(dir);
        }
        let mut entries: Vec<DirEntry> = self
            .listing
            .iter()
            .filter(|e| parse_segment_name(&e.name).is_none_or(|id| !self.hides(id)))
            .cloned()
            .collect();
        for e in &mut entries {
            if e.name == self.name {
                e.size = self.view_size(e.size);
            }
        }
        Ok(entries)
    }
    fn open_read(&self, name: &str) -> io::Result<Box<dyn ReadFile>> {
        if parse_segment_name(name).is_some_and(|id| self.hides(id)) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let mut file = self.inner.open_read(name)?;
        let (start, end) = match name == self.name {
            true => (self.start, self.end),
            false => (0, None),
        };
        file.seek_to(start)?;
        Ok(Box::new(ViewFile {
            file,
            pos: start,
            start,
            end,
        }))
    }
    fn size(&self, name: &str) -> io::Result<u64> {
        if parse_segment_name(name).is_some_and(|id| self.hides(id)) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let size = self.inner.size(name)?;
        Ok(if name == self.name {
            self.view_size(size)
        } else {
            size
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_record;
    use crate::storage::FileStorage;

    /// Records `lsns` encoded back to back, with the offset of each.
    fn records(lsns: std::ops::RangeInclusive<u64>) -> (Vec<u8>, Vec<u64>) {
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        for lsn in lsns {
            offsets.push(out.len() as u64);
            let data = format!("payload {lsn} {}", "z".repeat((lsn % 40) as usize));
            encode_record(&mut out, lsn, data.as_bytes(), lsn % 25 == 0);
        }
        (out, offsets)
    }

    /// Bytes that hold no record start: a small xorshift stream.
    fn garbage(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A `ReadFile` over bytes in memory that counts the bytes read.
    struct Counting {
        bytes: Vec<u8>,
        pos: usize,
        read: Arc<std::sync::atomic::AtomicU64>,
    }

    impl Read for Counting {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.bytes.len().saturating_sub(self.pos));
            buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
            self.pos += n;
            self.read
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(n)
        }
    }

    impl ReadFile for Counting {
        fn seek_to(&mut self, offset: u64) -> io::Result<()> {
            self.pos = offset as usize;
            Ok(())
        }
        fn size(&self) -> io::Result<u64> {
            Ok(self.bytes.len() as u64)
        }
    }

    fn counting(bytes: Vec<u8>) -> (Counting, Arc<std::sync::atomic::AtomicU64>) {
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let file = Counting {
            bytes,
            pos: 0,
            read: read.clone(),
        };
        (file, read)
    }

    fn find(bytes: Vec<u8>, from: u64, after: Option<u64>) -> Option<Found> {
        let end = bytes.len() as u64;
        let (mut f, _) = counting(bytes);
        resync(&mut f, from, end, after, crate::codec::MAX_BODY_LEN).unwrap()
    }

    #[test]
    fn resync_finds_the_first_intact_record_after_garbage() {
        let (recs, offsets) = records(10..=20);
        for junk in [1usize, 3, 4, 5, 100, 70_000, (WINDOW * 2) + 7] {
            let mut bytes = garbage(junk, junk as u64);
            bytes.extend_from_slice(&recs);
            let at = junk as u64;
            assert_eq!(
                find(bytes.clone(), 0, Some(9)),
                Some(Found {
                    offset: at,
                    lsn: 10
                }),
                "{junk} bytes of garbage"
            );
            // Not an LSN at or before the last good one: the next after it.
            assert_eq!(
                find(bytes, 0, Some(14)),
                Some(Found {
                    offset: at + offsets[5],
                    lsn: 15
                }),
                "{junk}"
            );
        }
    }

    #[test]
    fn resync_never_accepts_a_record_whose_crc_fails() {
        let (mut bytes, offsets) = records(1..=5);
        // A bit of record 2's payload, then of record 3's stored CRC.
        bytes[offsets[1] as usize + 12] ^= 0x04;
        bytes[offsets[3] as usize - 3] ^= 0x01;
        assert_eq!(
            find(bytes.clone(), 0, None),
            Some(Found { offset: 0, lsn: 1 })
        );
        assert_eq!(
            find(bytes.clone(), 1, None),
            Some(Found {
                offset: offsets[3],
                lsn: 4
            })
        );
        // Nothing at all after the last record's start.
        assert_eq!(find(bytes, offsets[4] + 1, None), None);
    }

    #[test]
    fn resync_reads_garbage_once_in_bounded_windows() {
        // 8 MiB of garbage (one in 256 bytes the LSN tag), then records: every
        // garbage byte is read about once, never a window per candidate.
        let junk = 8 << 20;
        let mut bytes = garbage(junk, 7);
        let (recs, _) = records(100..=110);
        bytes.extend_from_slice(&recs);
        let end = bytes.len() as u64;
        let (mut f, read) = counting(bytes);
        let found = resync(&mut f, 0, end, None, crate::codec::MAX_BODY_LEN).unwrap();
        assert_eq!(found.map(|f| f.offset), Some(junk as u64));
        let read = read.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            read < junk as u64 + 2 * WINDOW as u64,
            "read {read} bytes to search {junk}"
        );
        // A small damaged spot in a large segment: a small read, not a whole window.
        let mut bytes = garbage(100, 9);
        let (recs, _) = records(1..=20_000);
        bytes.extend_from_slice(&recs);
        let end = bytes.len() as u64;
        let (mut f, read) = counting(bytes);
        let found = resync(&mut f, 0, end, None, crate::codec::MAX_BODY_LEN).unwrap();
        assert_eq!(
            found,
            Some(Found {
                offset: 100,
                lsn: 1
            })
        );
        let read = read.load(std::sync::atomic::Ordering::Relaxed);
        assert!(read <= FIRST_WINDOW as u64, "read {read} bytes of {end}");
    }

    fn write_log(segments: &[Vec<u8>]) -> (tempfile::TempDir, Arc<dyn ReadStorage>) {
        let dir = tempfile::tempdir().unwrap();
        for (i, bytes) in segments.iter().enumerate() {
            std::fs::write(dir.path().join(format!("segment-{i}")), bytes).unwrap();
        }
        let storage: Arc<dyn ReadStorage> = Arc::new(FileStorage::open(dir.path()).unwrap());
        (dir, storage)
    }

    /// Every record and skip a salvage delivers.
    fn salvage_all(mut s: Salvager) -> (Vec<(u64, u64, u64)>, Vec<Skip>) {
        let mut recs = Vec::new();
        let mut skips = Vec::new();
        while let Some(ev) = s.next().unwrap() {
            match ev {
                SalvageEvent::Record(r) => {
                    recs.push((r.lsn, r.segment_id, r.offset));
                }
                SalvageEvent::Skipped(k) => skips.push(k),
                SalvageEvent::Progress => {}
            }
        }
        (recs, skips)
    }

    #[test]
    fn salvage_steps_over_damage_within_and_across_segments() {
        let (a, a_off) = records(1..=30);
        let (b, b_off) = records(31..=60);
        let (c, c_off) = records(61..=90);
        // Segment 0: records 5..=7 overwritten with garbage (8 starts clean).
        let mut s0 = a.clone();
        let g = garbage((a_off[7] - a_off[4]) as usize, 3);
        s0[a_off[4] as usize..a_off[7] as usize].copy_from_slice(&g);
        // Segment 1: from record 50 to its end garbage; segment 2: its first two
        // records garbage too.
        let mut s1 = b.clone();
        let tail = garbage(b.len() - b_off[19] as usize, 4);
        s1[b_off[19] as usize..].copy_from_slice(&tail);
        let mut s2 = c.clone();
        let head = garbage(c_off[2] as usize, 5);
        s2[..c_off[2] as usize].copy_from_slice(&head);
        let (_d, storage) = write_log(&[s0, s1.clone(), s2]);

        let (recs, skips) = salvage_all(Salvager::new(storage, ScanOptions::default()).unwrap());
        let lsns: Vec<u64> = recs.iter().map(|r| r.0).collect();
        let expect: Vec<u64> = (1..=4).chain(8..=49).chain(63..=90).collect();
        assert_eq!(lsns, expect);
        // Offsets are where the records are in their segments.
        assert!(recs.contains(&(8, 0, a_off[7])));
        assert!(recs.contains(&(63, 2, c_off[2])));
        let ranges: Vec<_> = skips
            .iter()
            .map(|k| (k.segment_id, k.offset, k.len, k.lsn_before, k.lsn_after))
            .collect();
        assert_eq!(
            ranges,
            vec![
                (0, a_off[4], a_off[7] - a_off[4], Some(4), Some(8)),
                (
                    1,
                    b_off[19],
                    s1.len() as u64 - b_off[19],
                    Some(49),
                    Some(63)
                ),
                (2, 0, c_off[2], Some(49), Some(63)),
            ]
        );
        assert!(skips.iter().all(|k| k.severity == Severity::Corruption));
    }

    #[test]
    fn a_torn_tail_is_skipped_as_torn_and_a_gap_as_an_empty_range() {
        let (a, a_off) = records(1..=10);
        let (b, _) = records(12..=15);
        let mut s0 = a[..a_off[9] as usize].to_vec();
        s0.extend_from_slice(&b);
        s0.extend_from_slice(&a[a_off[9] as usize..a.len() - 3]);
        let (_d, storage) = write_log(&[s0]);
        let mut s = Salvager::new(storage, ScanOptions::default()).unwrap();
        let mut events = Vec::new();
        while let Some(ev) = s.next().unwrap() {
            match ev {
                SalvageEvent::Record(r) => events.push(format!("{}", r.lsn)),
                SalvageEvent::Skipped(k) => events.push(format!(
                    "skip {}+{} {:?}..{:?} {:?}",
                    k.offset, k.len, k.lsn_before, k.lsn_after, k.severity
                )),
                SalvageEvent::Progress => {}
            }
        }
        let gap_at = a_off[9];
        let tail_at = gap_at + b.len() as u64;
        let tail_len = (a.len() - 3) as u64 - a_off[9];
        let mut expect: Vec<String> = (1..=9).map(|l| l.to_string()).collect();
        expect.push(format!("skip {gap_at}+0 Some(9)..Some(12) Corruption"));
        expect.extend((12..=15).map(|l| l.to_string()));
        // Record 10, cut short at the end of the newest segment: a torn tail.
        expect.push(format!("skip {tail_at}+{tail_len} Some(15)..None TornTail"));
        assert_eq!(events, expect);
        assert_eq!(s.worst(), Some(Severity::Corruption));
    }

    #[test]
    fn within_counts_only_the_range_and_lsns_after_the_last_good_one() {
        let (a, a_off) = records(1..=20);
        let mut s0 = a.clone();
        s0[a_off[5] as usize] ^= 0xff; // record 6's length prefix
        let (_d, storage) = write_log(&[s0]);
        let seg = crate::segment::list_segments(storage.as_ref())
            .unwrap()
            .remove(0);
        let s = Salvager::within(storage.clone(), &seg, a_off[5], a_off[15], Some(5)).unwrap();
        let (recs, _) = salvage_all(s);
        let lsns: Vec<u64> = recs.iter().map(|r| r.0).collect();
        assert_eq!(lsns, (7..=15).collect::<Vec<_>>());
        // From the start, with a last good LSN of 10: records up to 10 are not after it.
        let s = Salvager::within(storage, &seg, 0, a.len() as u64, Some(10)).unwrap();
        let lsns: Vec<u64> = salvage_all(s).0.iter().map(|r| r.0).collect();
        assert_eq!(lsns, (11..=20).collect::<Vec<_>>());
    }
}
