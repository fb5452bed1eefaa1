//! The [`Scanner`]: its state, opening segments in turn, and the public way to
//! drive it one event at a time.

use std::sync::Arc;

use crate::codec::{decode_body, LEN_PREFIX};
use crate::error::{Error, IoCause, Problem, ProblemKind, Result, Severity};
use crate::readahead::ReadAhead;
use crate::segment::{list_segments, SegmentFile};
use crate::storage::ReadStorage;

use super::event::{Event, FoundRecord, RetiredGap, ScannedRecord, SegmentSummary, Step};
use super::options::ScanOptions;
use super::source::{SegReader, Source, PREFETCH, READ_CHUNK};

/// Where the scan stands in the open segment, as one step's checks see it.
pub(super) struct Position {
    /// Offset of the next length prefix.
    pub(super) offset: u64,
    /// Bytes from there to the size the scan trusts.
    pub(super) available: u64,
    /// The segment is the newest of the log.
    pub(super) last: bool,
    /// The segment's id.
    pub(super) seg_id: u64,
}

/// Streams every segment of a log in id order. Drive it with [`Scanner::next`]:
///
/// ```no_run
/// # use std::sync::Arc;
/// # use walctl::scan::{Scanner, ScanOptions, Event};
/// # use walctl::storage::FileStorage;
/// let storage = Arc::new(FileStorage::open("wal_data").unwrap());
/// let mut scanner = Scanner::new(storage, ScanOptions::default()).unwrap();
/// while let Some(event) = scanner.next().unwrap() {
///     if let Event::Record(r) = event {
///         println!("{} {} bytes", r.lsn, r.data.len());
///     }
/// }
/// ```
pub struct Scanner {
    pub(super) storage: Arc<dyn ReadStorage>,
    pub(super) opts: ScanOptions,
    pub(super) segments: Vec<SegmentFile>,
    pub(super) idx: usize,
    pub(super) cur: Option<SegReader>,
    pub(super) cur_summary: Option<SegmentSummary>,
    pub(super) summaries: Vec<SegmentSummary>,
    pub(super) buf: Vec<u8>,
    /// Read-ahead buffers kept from one segment for the next.
    pub(super) pool: Vec<Vec<u8>>,
    pub(super) prev_lsn: Option<u64>,
    /// The previous segment ended with a problem: the LSN break at the start of the
    /// next one is explained by it and not reported again.
    pub(super) after_problem: bool,
    /// Segments listed at the start (or found by `poll`) that were gone when their
    /// turn came, retired by retention from the front of the log while it was read.
    pub(super) retired: Vec<SegmentFile>,
    /// Retired segments were skipped and no segment was opened since.
    pub(super) skipped_retired: bool,
    /// Id of the segment the last intact record came from.
    pub(super) prev_segment: Option<u64>,
    /// Holes of retired records reported so far.
    pub(super) gaps: Vec<RetiredGap>,
    /// (segment id, offset) of a record whose LSN jump was reported (a retired gap
    /// or a missing segment) and is accepted when it is read again.
    pub(super) jump_reported: Option<(u64, u64)>,
    /// Id of the segment before which a hole in the listed ids was listed again.
    pub(super) hole_relisted: Option<u64>,
    pub(super) stopped: bool,
    pub(super) waiting: bool,
    /// Following, waiting at unread bytes of the newest segment (preallocated zeros,
    /// or a record seen half-written into them): how many bytes from the wait's
    /// offset to watch, and their CRC. Written in place, they change but the file's
    /// size does not.
    pub(super) wait_probe: Option<(usize, u32)>,
    /// (segment index, offset, times): a position of the newest segment read again
    /// because zeros there had non-zero bytes after them (see `reread_zeros`).
    pub(super) reread: Option<(usize, u64, u8)>,
    /// The segments listed end the log (false for the older half of a split scan:
    /// none of them is the newest, and nothing newer is looked for).
    pub(super) tail: bool,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("root", &self.storage.root())
            .field("segment_index", &self.idx)
            .field("prev_lsn", &self.prev_lsn)
            .finish()
    }
}

/// What a peek at the first record of a segment found.
enum Peek {
    Lsn(u64),
    /// No intact first record (empty, short, damaged, or deleted since listed).
    Unknown,
    /// The file cannot be opened.
    Unreadable,
}

impl Scanner {
    /// Lists the log's segments and prepares to read them.
    pub fn new(storage: Arc<dyn ReadStorage>, opts: ScanOptions) -> Result<Self> {
        let segments = list_segments(storage.as_ref())?;
        Self::over(storage, opts, segments, true)
    }

    /// A scanner over these segments; `tail`: they end the log.
    pub(super) fn over(
        storage: Arc<dyn ReadStorage>,
        opts: ScanOptions,
        segments: Vec<SegmentFile>,
        tail: bool,
    ) -> Result<Self> {
        let mut s = Scanner {
            storage,
            opts,
            segments,
            idx: 0,
            cur: None,
            cur_summary: None,
            summaries: Vec::new(),
            buf: Vec::new(),
            pool: Vec::new(),
            prev_lsn: None,
            after_problem: false,
            retired: Vec::new(),
            skipped_retired: false,
            prev_segment: None,
            gaps: Vec::new(),
            jump_reported: None,
            hole_relisted: None,
            stopped: false,
            waiting: false,
            wait_probe: None,
            reread: None,
            tail,
        };
        if let Some(from) = s.opts.from_lsn {
            // An unreadable segment decides nothing: the next readable one may still
            // start at or before `from`, and then everything before it is skipped.
            let mut next = s.idx + 1;
            while next < s.segments.len() {
                match s.peek_first_lsn(next)? {
                    Peek::Lsn(first) if first <= from => s.idx = next,
                    Peek::Unreadable => {}
                    _ => break,
                }
                next += 1;
            }
        }
        Ok(s)
    }

    /// The segments as listed (ids in order).
    pub fn segments(&self) -> &[SegmentFile] {
        &self.segments
    }

    /// Summaries of the segments finished so far.
    pub fn summaries(&self) -> &[SegmentSummary] {
        &self.summaries
    }

    /// The first problem met so far, in log order.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.summaries.iter().find_map(|s| s.problem.as_ref())
    }

    /// LSN of the last intact record returned.
    pub fn last_lsn(&self) -> Option<u64> {
        self.prev_lsn
    }

    /// Segments that were listed but had been deleted by the time the scan reached
    /// them; they were skipped. Deleted from the front of the log, they were retired
    /// by a live writer's retention (each hole reported as an [`Event::Retired`]); deleted from the
    /// middle, the segment after them reports a missing segment.
    pub fn retired(&self) -> &[SegmentFile] {
        &self.retired
    }

    /// The holes of records deleted under the scan, as [`Event::Retired`] reported them.
    pub(crate) fn retired_gaps(&self) -> &[RetiredGap] {
        &self.gaps
    }

    /// Following: where the scan waits for the rest of an incomplete record at the
    /// end of the newest segment, as (segment name, offset of the record, bytes of it
    /// present). `None` when it is not waiting, or waits at the end of whole records.
    pub(crate) fn waiting_at_partial(&self) -> Option<(&str, u64, u64)> {
        let r = self.cur.as_ref().filter(|_| self.waiting)?;
        let present = r.size.checked_sub(r.offset).filter(|&n| n > 0)?;
        Some((&self.segments[self.idx].name, r.offset, present))
    }

    fn peek_first_lsn(&mut self, idx: usize) -> Result<Peek> {
        let seg = &self.segments[idx];
        let mut file = match self.storage.open_read(&seg.name) {
            Ok(f) => f,
            // Deleted (by retention) since it was listed: it cannot decide a skip;
            // reading it in turn finds out what happened to it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Peek::Unknown),
            Err(_) => return Ok(Peek::Unreadable),
        };
        let size = file
            .size()
            .map_err(|e| Error::io("stat", self.storage.root().join(&seg.name), e))?;
        let io = |e| Error::io("read", self.storage.root().join(&seg.name), e);
        let mut prefix = [0u8; LEN_PREFIX];
        if size < LEN_PREFIX as u64
            || crate::storage::read_up_to(&mut *file, &mut prefix).map_err(io)? < LEN_PREFIX
        {
            return Ok(Peek::Unknown);
        }
        let len = u32::from_le_bytes(prefix) as u64;
        // Bounded before allocating: by the record cap and by the file.
        if len > self.opts.max_body_len as u64 || LEN_PREFIX as u64 + len > size {
            return Ok(Peek::Unknown);
        }
        let mut body = vec![0u8; len as usize];
        if crate::storage::read_up_to(&mut *file, &mut body).map_err(io)? < body.len() {
            return Ok(Peek::Unknown);
        }
        // Only an intact record may decide to skip a segment: a damaged first LSN
        // must not hide records at or after `from`.
        Ok(decode_body(&body)
            .ok()
            .filter(|r| r.crc_ok())
            .map_or(Peek::Unknown, |r| Peek::Lsn(r.lsn)))
    }

    pub(super) fn is_last_segment(&self) -> bool {
        self.tail && self.idx + 1 == self.segments.len()
    }

    pub(super) fn problem(&self, offset: u64, kind: ProblemKind, tornish: bool) -> Problem {
        let seg = &self.segments[self.idx];
        Problem {
            segment: seg.name.clone(),
            segment_id: seg.id,
            offset,
            severity: if tornish && self.is_last_segment() {
                Severity::TornTail
            } else {
                Severity::Corruption
            },
            kind,
            last_good_lsn: self.prev_lsn,
            cause: IoCause::default(),
        }
    }

    pub(super) fn open_current(&mut self) -> Result<()> {
        let seg = &self.segments[self.idx];
        let path = self.storage.root().join(&seg.name);
        let file = self
            .storage
            .open_read(&seg.name)
            .map_err(|e| Error::io("open", &path, e))?;
        let size = file.size().map_err(|e| Error::io("stat", &path, e))?;
        if !self.opts.follow {
            // Read ahead in this segment, and let the start of the next one stream in
            // while this one is checked (cold logs read at disk speed, not disk + CPU).
            file.advise_sequential(PREFETCH);
            if let Some(next) = self.segments.get(self.idx + 1) {
                if let Ok(f) = self.storage.open_read(&next.name) {
                    f.advise_sequential(PREFETCH);
                }
            }
        }
        let ahead = !self.opts.follow && self.opts.read_ahead_from.is_some_and(|min| size >= min);
        let source = if ahead {
            match ReadAhead::start(file, size, std::mem::take(&mut self.pool)) {
                Ok(a) => Source::Ahead(a),
                Err(file) => Source::Direct(file),
            }
        } else {
            Source::Direct(file)
        };
        if self.buf.is_empty() {
            self.buf.resize(READ_CHUNK.min(size.max(4096) as usize), 0);
        }
        self.cur_summary = Some(SegmentSummary::new(seg, size));
        self.cur = Some(SegReader {
            source,
            size,
            offset: 0,
            start: 0,
            end: 0,
        });
        Ok(())
    }

    pub(super) fn finish_segment(&mut self, problem: Option<Problem>) {
        let mut summary = self.cur_summary.take().expect("a segment is open");
        self.after_problem = problem.is_some();
        if problem.is_some() && self.opts.stop_at_first_problem {
            self.stopped = true;
        }
        summary.problem = problem;
        self.summaries.push(summary);
        if let Some(SegReader {
            source: Source::Ahead(mut ahead),
            ..
        }) = self.cur.take()
        {
            self.pool = ahead.stop();
        }
        self.idx += 1;
    }

    /// One step, without borrowing the buffer: the half of [`Scanner::next`] for a
    /// loop that goes on after some steps and returns a record at others (a borrowed
    /// event cannot be returned from such a loop). [`Scanner::event`] is the other.
    #[inline(always)]
    pub(crate) fn advance(&mut self) -> Result<Step> {
        match self.step() {
            Err(e) if self.recover_shrink(&e)? => self.step(),
            r => r,
        }
    }

    /// The event of the step [`Scanner::advance`] just took.
    #[inline(always)]
    fn event(&self, step: &Step) -> Option<Event<'_>> {
        match step {
            Step::Record(r) => Some(Event::Record(self.record(r))),
            Step::SegmentEnd => Some(Event::SegmentEnd(
                self.summaries.last().expect("just pushed"),
            )),
            Step::Retired => Some(Event::Retired(self.gaps.last().expect("just pushed"))),
            Step::Waiting | Step::Done => None,
        }
    }

    /// The record a step found, from the buffer.
    #[inline(always)]
    pub(crate) fn record(&self, r: &FoundRecord) -> ScannedRecord<'_> {
        ScannedRecord {
            lsn: r.lsn,
            data: &self.buf[r.data_start..r.data_end],
            crc: r.crc,
            checkpoint: r.checkpoint,
            segment_id: self.segments[self.idx].id,
            offset: r.offset,
            len: r.len,
        }
    }

    /// The next record or segment end, or `None` when the log is done (or, in follow
    /// mode, when nothing more is there yet: call [`Scanner::poll`] and try again).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Event<'_>>> {
        let step = self.advance()?;
        Ok(self.event(&step))
    }
}
