//! The one segment scanner. Writer open, the readers, dump, verify, segments and
//! repair all walk a log through [`Scanner`]: it streams records with memory bounded
//! by the largest record, checks framing, protobuf, CRC and LSN continuity, and
//! classifies the first problem of each segment as a torn tail or corruption.

use std::sync::Arc;

use serde::Serialize;

use crate::codec::{could_be_cut_short, decode_body, LEN_PREFIX, MAX_BODY_LEN};
use crate::error::{Error, IoCause, Problem, ProblemKind, Result, Severity};
use crate::readahead::{Chunk, ReadAhead, HEADROOM};
use crate::segment::{list_segments, SegmentFile};
use crate::storage::{ReadFile, ReadStorage};

/// Buffer for reading a segment: large sequential reads, one chunk (256 KiB) each.
const READ_CHUNK: usize = crate::readahead::CHUNK;

/// Bytes of a segment the scanner asks the OS to read ahead when it opens it (and
/// the one after it).
const PREFETCH: u64 = 8 << 20;

/// How a [`Scanner`] walks a log. Set with the builder methods, which survive new
/// options: `ScanOptions::default().from_lsn(Some(100)).stop_at_first_problem(true)`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScanOptions {
    /// Largest length prefix accepted; anything above is corruption, never allocated.
    pub max_body_len: u32,
    /// Skip whole segments whose records all come before this LSN (found by peeking
    /// at the first record of the following segment). Records before it in the first
    /// segment read are still returned; the caller filters them.
    pub from_lsn: Option<u64>,
    /// Stop at the first problem (readers) instead of going on with the next segment
    /// (verify).
    pub stop_at_first_problem: bool,
    /// Follow a live log: an incomplete record at the end of the newest segment means
    /// "not written yet", not damage; [`Scanner::poll`] looks for more.
    pub follow: bool,
    /// Read segments of at least this many bytes on a helper thread, a chunk ahead
    /// of the checks, so the copy from the page cache (or the wait for the disk)
    /// overlaps them. `None` reads every segment on the caller's thread. Never used
    /// while following. Default: 1 MiB.
    pub read_ahead_from: Option<u64>,
    /// [`scan_log`] only: split a log of at least this many bytes (in two or more
    /// segments) into an older and a newer half, checked at once on two threads
    /// when the machine has two cores. The result is the one a single pass gives: the
    /// halves are joined only when the newer one starts with the LSN after the last
    /// of the older one and nothing is wrong at the seam; otherwise the log is read
    /// again in one pass. `None`: one pass. Default: 64 MiB.
    pub parallel_from: Option<u64>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            max_body_len: MAX_BODY_LEN,
            from_lsn: None,
            stop_at_first_problem: false,
            follow: false,
            read_ahead_from: Some(1 << 20),
            parallel_from: Some(64 << 20),
        }
    }
}

impl ScanOptions {
    /// Sets [`max_body_len`](Self::max_body_len).
    pub fn max_body_len(mut self, max: u32) -> Self {
        self.max_body_len = max;
        self
    }

    /// Sets [`from_lsn`](Self::from_lsn).
    pub fn from_lsn(mut self, from: Option<u64>) -> Self {
        self.from_lsn = from;
        self
    }

    /// Sets [`stop_at_first_problem`](Self::stop_at_first_problem).
    pub fn stop_at_first_problem(mut self, stop: bool) -> Self {
        self.stop_at_first_problem = stop;
        self
    }

    /// Sets [`follow`](Self::follow).
    pub fn follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// Sets [`read_ahead_from`](Self::read_ahead_from).
    pub fn read_ahead_from(mut self, min: Option<u64>) -> Self {
        self.read_ahead_from = min;
        self
    }

    /// Sets [`parallel_from`](Self::parallel_from).
    pub fn parallel_from(mut self, min: Option<u64>) -> Self {
        self.parallel_from = min;
        self
    }
}

/// What the scanner learnt about one segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentSummary {
    /// Segment id.
    pub id: u64,
    /// File name.
    pub name: String,
    /// Size in bytes when scanned.
    pub size: u64,
    /// Intact records read.
    pub records: u64,
    /// LSN of the first intact record.
    pub first_lsn: Option<u64>,
    /// LSN of the last intact record.
    pub last_lsn: Option<u64>,
    /// Checkpoint records among them.
    pub checkpoints: u64,
    /// LSN of the last checkpoint in this segment.
    pub last_checkpoint_lsn: Option<u64>,
    /// Bytes from the start up to the end of the last intact record.
    pub valid_len: u64,
    /// The first problem, if any; nothing after it in this segment was read.
    pub problem: Option<Problem>,
}

impl SegmentSummary {
    fn new(seg: &SegmentFile, size: u64) -> Self {
        SegmentSummary {
            id: seg.id,
            name: seg.name.clone(),
            size,
            records: 0,
            first_lsn: None,
            last_lsn: None,
            checkpoints: 0,
            last_checkpoint_lsn: None,
            valid_len: 0,
            problem: None,
        }
    }
}

/// A record as the scanner found it: decoded, CRC-checked, LSN-checked.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct ScannedRecord<'a> {
    /// LSN.
    pub lsn: u64,
    /// Payload, borrowed from the scanner's buffer.
    pub data: &'a [u8],
    /// Stored (and verified) CRC.
    pub crc: u32,
    /// Checkpoint flag.
    pub checkpoint: bool,
    /// Segment id.
    pub segment_id: u64,
    /// Offset of the record's length prefix in its segment.
    pub offset: u64,
    /// Size on disk including the 4-byte prefix.
    pub len: u64,
}

/// One step of a scan.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// An intact record.
    Record(ScannedRecord<'a>),
    /// A segment is done; its summary holds its problem, if any.
    SegmentEnd(&'a SegmentSummary),
    /// Records after the last one returned were deleted (retired by a live writer's
    /// retention, oldest segments first) before the scan reached them. The scan goes
    /// on with the oldest record still there; the caller decides whether the hole is
    /// acceptable. Never reported before the first record: a log that starts after
    /// LSN 1 because retention ran earlier has no hole.
    Retired(&'a RetiredGap),
}

/// Records a scan could not deliver because their segments were deleted from the
/// front of the log while it read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetiredGap {
    /// First LSN that was not delivered.
    pub first_lsn: u64,
    /// Last LSN that was not delivered.
    pub last_lsn: u64,
    /// Id of the first segment deleted.
    pub first_segment: u64,
    /// Id of the last segment deleted.
    pub last_segment: u64,
}

impl RetiredGap {
    /// The error of a reader that must deliver every record from LSN `from` on and
    /// met this hole (see [`Error::Retired`]).
    pub(crate) fn undelivered(&self, from: u64) -> Error {
        Error::Retired {
            first_lsn: self.first_lsn.max(from),
            last_lsn: self.last_lsn,
            first_segment: self.first_segment,
            last_segment: self.last_segment,
        }
    }
}

/// Where a segment's bytes come from.
enum Source {
    /// Read by the scanner's own thread.
    Direct(Box<dyn ReadFile>),
    /// Read by a helper thread, a chunk ahead (never while following).
    Ahead(ReadAhead),
}

/// Reads one segment with a reusable buffer.
struct SegReader {
    source: Source,
    /// File size this reader trusts (a snapshot; `poll` may raise it).
    size: u64,
    /// File offset of `buf[start]`.
    offset: u64,
    start: usize,
    end: usize,
}

impl SegReader {
    fn available(&self) -> u64 {
        self.size - self.offset
    }

    /// Makes `need` bytes from `offset` contiguous in `buf`. The caller has checked
    /// that the file holds them and that `need` is bounded.
    fn fill(&mut self, buf: &mut Vec<u8>, need: usize) -> std::io::Result<()> {
        if self.end - self.start >= need {
            return Ok(());
        }
        if let Source::Ahead(ahead) = &mut self.source {
            return fill_ahead(ahead, buf, &mut self.start, &mut self.end, need);
        }
        if self.start + need > buf.len() {
            buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if need > buf.len() {
                buf.resize(need.max(READ_CHUNK), 0);
            }
        }
        while self.end - self.start < need {
            let in_buf = (self.end - self.start) as u64;
            let file_left = self.size - self.offset - in_buf;
            let room = (buf.len() - self.end) as u64;
            let want = room.min(file_left) as usize;
            if want == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shrank while being read",
                ));
            }
            let at = self.end;
            let n = self.file()?.read(&mut buf[at..at + want])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shrank while being read",
                ));
            }
            self.end += n;
        }
        Ok(())
    }

    /// The file, read by this thread (following never reads ahead).
    fn file(&mut self) -> std::io::Result<&mut Box<dyn ReadFile>> {
        match &mut self.source {
            Source::Direct(f) => Ok(f),
            Source::Ahead(_) => Err(std::io::Error::other(
                "the segment is being read by the read-ahead thread",
            )),
        }
    }

    fn advance(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// Whether every byte from `offset` to the end of the file is zero. A file cut
    /// short while this reads it counts as its zeros ending there: a writer cuts
    /// the unwritten, preallocated zeros of a segment at rotation.
    fn rest_is_zero(&mut self, buf: &mut Vec<u8>) -> std::io::Result<bool> {
        let mut left = self.available();
        while left > 0 {
            let chunk = left.min(READ_CHUNK as u64) as usize;
            match self.fill(buf, chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(true),
                r => r?,
            }
            if buf[self.start..self.start + chunk].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            self.advance(chunk);
            left -= chunk as u64;
        }
        Ok(true)
    }
}

/// [`SegReader::fill`] from a read-ahead thread: the unread bytes `buf[start..end]`
/// go in front of the next chunk, in its headroom, and the chunk becomes the buffer
/// (no copy of the chunk itself). Only a record longer than the headroom that
/// straddles chunks is put together by copying.
fn fill_ahead(
    ahead: &mut ReadAhead,
    buf: &mut Vec<u8>,
    start: &mut usize,
    end: &mut usize,
    need: usize,
) -> std::io::Result<()> {
    while *end - *start < need {
        let Chunk {
            buf: mut chunk,
            len,
        } = ahead.next().unwrap_or_else(|| {
            Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shrank while being read",
            ))
        })?;
        let left = *end - *start;
        if left <= HEADROOM {
            chunk[HEADROOM - left..HEADROOM].copy_from_slice(&buf[*start..*end]);
            ahead.recycle(std::mem::replace(buf, chunk));
            *start = HEADROOM - left;
            *end = HEADROOM + len;
        } else {
            buf.copy_within(*start..*end, 0);
            *end = left;
            *start = 0;
            if buf.len() < left + len {
                buf.resize(left + len, 0);
            }
            buf[left..left + len].copy_from_slice(&chunk[HEADROOM..HEADROOM + len]);
            *end += len;
            ahead.recycle(chunk);
        }
    }
    Ok(())
}

/// A record a step found, by its place in the buffer.
///
/// `repr(C)`, in an order where no two neighbouring fields are neighbours in
/// [`ScannedRecord`] (also `repr(C)`): otherwise the compiler copies two of them with
/// one 16-byte load from the two 8-byte stores just made, a store-forwarding stall
/// that perf showed as an eighth of a warm scan's time on the scanning thread.
#[repr(C)]
pub(crate) struct FoundRecord {
    len: u64,
    pub(crate) lsn: u64,
    offset: u64,
    data_start: usize,
    crc: u32,
    checkpoint: bool,
    data_end: usize,
}

/// Where a step landed, without borrowing the buffer (see [`Scanner::advance`]).
pub(crate) enum Step {
    Record(FoundRecord),
    SegmentEnd,
    Retired,
    Waiting,
    Done,
}

/// Where the scan stands in the open segment, as one step's checks see it.
struct Position {
    /// Offset of the next length prefix.
    offset: u64,
    /// Bytes from there to the size the scan trusts.
    available: u64,
    /// The segment is the newest of the log.
    last: bool,
    /// The segment's id.
    seg_id: u64,
}

/// What one check passes on to the next, or the damage it found.
type Checked<T> = std::result::Result<T, Damage>;

/// Why the bytes at the position are not a record the scan accepts.
struct Damage {
    kind: ProblemKind,
    /// The bytes present can be the start of a record cut short: a torn tail when
    /// they end the newest segment.
    tornish: bool,
    /// A whole-length record whose body is the start of a record followed by zeros:
    /// its body length (see [`Scanner::body`]).
    zero_filled: Option<usize>,
}

impl Damage {
    fn new(kind: ProblemKind, tornish: bool) -> Self {
        Damage {
            kind,
            tornish,
            zero_filled: None,
        }
    }
}

/// What the checks made of the bytes at the position.
enum Check {
    /// An intact record that follows the one before it.
    Intact(FoundRecord),
    /// An intact record with this LSN after a jump over segment ids that are not
    /// there: the hole is reported first.
    Hole(Hole, u64),
    /// Not a record the scan accepts.
    Damaged(Damage),
}

/// The error of a failed read of segment `name`. The path is only built for an
/// error: reads run once per record.
fn read_error<'a>(
    storage: &'a dyn ReadStorage,
    name: &'a str,
) -> impl Fn(std::io::Error) -> Error + Copy + 'a {
    move |e| Error::io("read", storage.root().join(name), e)
}

/// What an LSN jump at the start of a segment, over ids missing from the log, means.
enum Hole {
    /// Older segments are still there: the missing ones were not retired.
    Missing { first_id: u64, last_id: u64 },
    /// Nothing older is left: retention deleted them while the log was read.
    Retired { first_id: u64, last_id: u64 },
}

/// What an open of a listed segment found.
enum Opened {
    Yes,
    /// It is gone; `front`: retired from the front of the log.
    Gone {
        front: bool,
        err: Error,
    },
    /// It is there but cannot be read.
    Unreadable(Error),
}

/// What a peek at the first record of a segment found.
enum Peek {
    Lsn(u64),
    /// No intact first record (empty, short, damaged, or deleted since listed).
    Unknown,
    /// The file cannot be opened.
    Unreadable,
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
    storage: Arc<dyn ReadStorage>,
    opts: ScanOptions,
    segments: Vec<SegmentFile>,
    idx: usize,
    cur: Option<SegReader>,
    cur_summary: Option<SegmentSummary>,
    summaries: Vec<SegmentSummary>,
    buf: Vec<u8>,
    /// Read-ahead buffers kept from one segment for the next.
    pool: Vec<Vec<u8>>,
    prev_lsn: Option<u64>,
    /// The previous segment ended with a problem: the LSN break at the start of the
    /// next one is explained by it and not reported again.
    after_problem: bool,
    /// Segments listed at the start (or found by `poll`) that were gone when their
    /// turn came, retired by retention from the front of the log while it was read.
    retired: Vec<SegmentFile>,
    /// Retired segments were skipped and no segment was opened since.
    skipped_retired: bool,
    /// Id of the segment the last intact record came from.
    prev_segment: Option<u64>,
    /// Holes of retired records reported so far.
    gaps: Vec<RetiredGap>,
    /// (segment id, offset) of a record whose LSN jump was reported (a retired gap
    /// or a missing segment) and is accepted when it is read again.
    jump_reported: Option<(u64, u64)>,
    /// Id of the segment before which a hole in the listed ids was listed again.
    hole_relisted: Option<u64>,
    stopped: bool,
    waiting: bool,
    /// Following, waiting at unread bytes of the newest segment (preallocated zeros,
    /// or a record seen half-written into them): how many bytes from the wait's
    /// offset to watch, and their CRC. Written in place, they change but the file's
    /// size does not.
    wait_probe: Option<(usize, u32)>,
    /// (segment index, offset, times): a position of the newest segment read again
    /// because zeros there had non-zero bytes after them (see `reread_zeros`).
    reread: Option<(usize, u64, u8)>,
    /// The segments listed end the log (false for the older half of a split scan:
    /// none of them is the newest, and nothing newer is looked for).
    tail: bool,
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

impl Scanner {
    /// Lists the log's segments and prepares to read them.
    pub fn new(storage: Arc<dyn ReadStorage>, opts: ScanOptions) -> Result<Self> {
        let segments = list_segments(storage.as_ref())?;
        Self::over(storage, opts, segments, true)
    }

    /// A scanner over these segments; `tail`: they end the log.
    fn over(
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

    /// Whether segment `idx`, which could not be opened because it does not exist
    /// (any more), was retired by retention: retention deletes segments oldest
    /// first, so a segment retired from the front leaves no older segment behind. A
    /// segment missing from the middle of the log is damage, not retirement.
    fn retired_from_front(&self, idx: usize) -> Result<bool> {
        let id = self.segments[idx].id;
        let now = list_segments(self.storage.as_ref())?;
        Ok(!now.iter().any(|s| s.id <= id))
    }

    /// Opens the current segment and says what happened when it could not.
    fn try_open_current(&mut self) -> Result<Opened> {
        let err = match self.open_current() {
            Ok(()) => return Ok(Opened::Yes),
            Err(e) => e,
        };
        let kind = match &err {
            Error::Io { source, .. } => source.kind(),
            _ => return Err(err),
        };
        if kind == std::io::ErrorKind::NotFound {
            let front = self.retired_from_front(self.idx)?;
            return Ok(Opened::Gone { front, err });
        }
        Ok(Opened::Unreadable(err))
    }

    /// Records an unreadable current segment as its problem and moves past it.
    fn finish_unreadable(&mut self, err: Error) {
        let seg = &self.segments[self.idx];
        // "open <path>: <OS error>": the operator sees which file and why; the
        // error itself stays the cause, for callers that look at its kind.
        let error = err.to_string();
        let cause = match err {
            Error::Io { source, .. } => IoCause::new(source),
            _ => IoCause::default(),
        };
        let mut summary = SegmentSummary::new(seg, seg.size);
        summary.problem = Some(Problem {
            segment: seg.name.clone(),
            segment_id: seg.id,
            offset: 0,
            severity: Severity::Unreadable,
            kind: ProblemKind::Unreadable { error },
            last_good_lsn: self.prev_lsn,
            cause,
        });
        self.cur_summary = Some(summary);
        let problem = self.cur_summary.as_mut().and_then(|s| s.problem.take());
        self.finish_segment(problem);
    }

    /// A directory listing taken while a writer creates segments may miss one that
    /// was created during it, yet show a newer one. Before reading a segment whose id
    /// does not follow the previous one's, the ids in between are looked for again.
    fn relist_hole(&mut self) -> Result<()> {
        let id = self.segments[self.idx].id;
        let prev = match self.idx.checked_sub(1) {
            Some(i) => self.segments[i].id,
            None => match self.summaries.last() {
                Some(s) => s.id,
                None => return Ok(()),
            },
        };
        if prev.saturating_add(1) >= id || self.hole_relisted == Some(id) {
            return Ok(());
        }
        self.hole_relisted = Some(id);
        let found: Vec<SegmentFile> = list_segments(self.storage.as_ref())?
            .into_iter()
            .filter(|s| s.id > prev && s.id < id)
            .collect();
        let at = self.idx;
        self.segments.splice(at..at, found);
        Ok(())
    }

    /// Ids between `prev_seg` and `seg_id` (both exclusive) that the scan never had
    /// as segments: the first and the last of them.
    fn missing_between(segments: &[SegmentFile], prev_seg: u64, seg_id: u64) -> Option<(u64, u64)> {
        let known: Vec<u64> = segments
            .iter()
            .map(|s| s.id)
            .filter(|&id| id > prev_seg && id < seg_id)
            .collect();
        let first = (prev_seg + 1..seg_id).find(|id| !known.contains(id))?;
        let last = (prev_seg + 1..seg_id)
            .rev()
            .find(|id| !known.contains(id))?;
        Some((first, last))
    }

    /// An LSN jump to `lsn` at the first record of a segment, over segment ids
    /// missing from the log: records retired under the scan, or a missing segment.
    /// `explained`: the jump needs no report (a problem before it, or reported).
    #[inline(always)]
    fn classify_hole(&self, lsn: u64, at: &Position, explained: bool) -> Result<Option<Hole>> {
        let (Some(prev), Some(prev_seg)) = (self.prev_lsn, self.prev_segment) else {
            return Ok(None);
        };
        if at.offset != 0 || lsn <= prev.saturating_add(1) || explained {
            return Ok(None);
        }
        let Some((first_id, last_id)) = Self::missing_between(&self.segments, prev_seg, at.seg_id)
        else {
            return Ok(None);
        };
        let older_left = list_segments(self.storage.as_ref())?
            .iter()
            .any(|s| s.id < at.seg_id);
        Ok(Some(if older_left {
            Hole::Missing { first_id, last_id }
        } else {
            Hole::Retired { first_id, last_id }
        }))
    }

    /// Reports a hole found at the first record of the current segment, which is
    /// read again (and accepted) at the next step.
    fn report_hole(&mut self, hole: Hole, rec_lsn: u64) -> Step {
        let prev = self.prev_lsn.unwrap_or(0);
        let seg_id = self.segments[self.idx].id;
        self.jump_reported = Some((seg_id, 0));
        match hole {
            Hole::Retired { first_id, last_id } => {
                self.gaps.push(RetiredGap {
                    first_lsn: prev + 1,
                    last_lsn: rec_lsn - 1,
                    first_segment: first_id,
                    last_segment: last_id,
                });
                Step::Retired
            }
            Hole::Missing { first_id, last_id } => {
                let name = crate::segment::segment_name(first_id);
                let mut summary = SegmentSummary::new(
                    &SegmentFile {
                        id: first_id,
                        name: name.clone(),
                        size: 0,
                    },
                    0,
                );
                summary.problem = Some(Problem {
                    segment: name,
                    segment_id: first_id,
                    offset: 0,
                    severity: Severity::Corruption,
                    kind: ProblemKind::MissingSegment {
                        first_id,
                        last_id,
                        first_lsn: prev + 1,
                        last_lsn: rec_lsn - 1,
                    },
                    last_good_lsn: self.prev_lsn,
                    cause: IoCause::default(),
                });
                self.summaries.push(summary);
                if self.opts.stop_at_first_problem {
                    self.stopped = true;
                }
                Step::SegmentEnd
            }
        }
    }

    /// The newest segment was cut while being read: a writer trimming the unwritten
    /// zeros it had preallocated (at rotation or close). When nothing already read
    /// was cut, the scan reads on from the first unread byte to the new end, on this
    /// thread. Returns whether it did; anything else stays the error it was.
    fn recover_shrink(&mut self, err: &Error) -> Result<bool> {
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
    fn reread_zeros(&mut self, at: &Position) -> Result<bool> {
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
    fn regrow(&mut self) -> Result<bool> {
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

    fn is_last_segment(&self) -> bool {
        self.tail && self.idx + 1 == self.segments.len()
    }

    fn problem(&self, offset: u64, kind: ProblemKind, tornish: bool) -> Problem {
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

    fn open_current(&mut self) -> Result<()> {
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

    fn finish_segment(&mut self, problem: Option<Problem>) {
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

    /// Reads one step without borrowing the buffer in the result: makes sure a
    /// segment is open, checks the bytes at the position (framing, body, continuity)
    /// and decides what the step yields (verdict).
    fn step(&mut self) -> Result<Step> {
        if self.waiting {
            return Ok(Step::Waiting);
        }
        if self.stopped {
            return Ok(Step::Done);
        }
        if let Some(step) = self.open_next()? {
            return Ok(step);
        }
        let at = self.position();
        // The end of what was seen of the newest segment, or an incomplete record
        // there: a writer may have gone on since. Read on if it did.
        if at.last && !self.opts.follow && self.at_seen_end(&at)? && self.regrow()? {
            return self.step();
        }
        if at.available == 0 {
            return Ok(self.end_of_bytes(&at));
        }
        let check = match self.framing(&at)? {
            Err(damage) => Check::Damaged(damage),
            Ok(body_len) => match self.body(&at, body_len)? {
                Err(damage) => Check::Damaged(damage),
                Ok(found) => self.continuity(&at, found)?,
            },
        };
        self.verdict(&at, check)
    }

    /// Makes sure a segment is open: the next listed one that can be opened, skipping
    /// those retired since the listing. Returns the step to take instead when there is
    /// none left to read, or when the next one cannot be read.
    #[inline(always)]
    fn open_next(&mut self) -> Result<Option<Step>> {
        while self.cur.is_none() {
            if self.idx >= self.segments.len() {
                if self.skipped_retired && self.tail && self.list_after_retired()? {
                    continue;
                }
                if self.opts.follow && (self.segments.is_empty() || self.skipped_retired) {
                    // A log with no segment yet: its first segment may still come.
                    // Or every segment known was retired before it could be read:
                    // newer ones exist, and `poll` finds them.
                    self.waiting = true;
                    return Ok(Some(Step::Waiting));
                }
                return Ok(Some(Step::Done));
            }
            self.relist_hole()?;
            match self.try_open_current()? {
                Opened::Yes => self.skipped_retired = false,
                // Deleted since it was listed. From the front of the log: retired,
                // and the next record says whether anything was missed. From the
                // middle: the segment after it reports it missing. The newest
                // segment gone while older ones stay is no retention: an error.
                Opened::Gone { front, err } => {
                    if !front && self.idx + 1 == self.segments.len() {
                        return Err(err);
                    }
                    let seg = self.segments.remove(self.idx);
                    self.retired.push(seg);
                    self.skipped_retired |= front;
                }
                Opened::Unreadable(err) => {
                    self.finish_unreadable(err);
                    return Ok(Some(Step::SegmentEnd));
                }
            }
        }
        Ok(None)
    }

    /// Every segment left in the list was retired while the scan read: the log went
    /// on in segments created since it was listed. Adds those; returns whether there
    /// were any.
    #[cold]
    fn list_after_retired(&mut self) -> Result<bool> {
        let known = self
            .segments
            .iter()
            .chain(&self.retired)
            .map(|s| s.id)
            .max();
        let newer: Vec<SegmentFile> = list_segments(self.storage.as_ref())?
            .into_iter()
            .filter(|s| known.is_none_or(|k| s.id > k))
            .collect();
        let found = !newer.is_empty();
        self.segments.extend(newer);
        Ok(found)
    }

    /// Where the scan stands in the open segment.
    #[inline(always)]
    fn position(&self) -> Position {
        let r = self.cur.as_ref().expect("a segment is open");
        Position {
            offset: r.offset,
            available: r.available(),
            last: self.is_last_segment(),
            seg_id: self.segments[self.idx].id,
        }
    }

    /// The length prefix at the position; the file holds its four bytes.
    #[inline(always)]
    fn prefix_len(&mut self) -> Result<u64> {
        let io = read_error(self.storage.as_ref(), &self.segments[self.idx].name);
        let r = self.cur.as_mut().expect("a segment is open");
        r.fill(&mut self.buf, LEN_PREFIX).map_err(io)?;
        let prefix = &self.buf[r.start..r.start + LEN_PREFIX];
        Ok(u32::from_le_bytes(prefix.try_into().expect("four bytes")) as u64)
    }

    /// Whether the position is at the end of the bytes seen, or at a record (of a
    /// length the scan accepts) longer than what is there.
    #[inline(always)]
    fn at_seen_end(&mut self, at: &Position) -> Result<bool> {
        if at.available < LEN_PREFIX as u64 {
            return Ok(true);
        }
        let len = self.prefix_len()?;
        Ok(LEN_PREFIX as u64 + len > at.available && len <= self.opts.max_body_len as u64)
    }

    /// No byte left in the segment: its end, or (following the newest) a wait for more.
    #[cold]
    fn end_of_bytes(&mut self, at: &Position) -> Step {
        if self.opts.follow && at.last {
            self.waiting = true;
            return Step::Waiting;
        }
        self.finish_segment(None);
        Step::SegmentEnd
    }

    /// Framing: a length prefix, bounded, and a body the file holds. Passes on the
    /// body's length.
    #[inline(always)]
    fn framing(&mut self, at: &Position) -> Result<Checked<usize>> {
        let available = at.available;
        if available < LEN_PREFIX as u64 {
            let kind = ProblemKind::TruncatedPrefix { available };
            return Ok(Err(Damage::new(kind, true)));
        }
        let len = self.prefix_len()?;
        let max = self.opts.max_body_len as u64;
        if len > max {
            let kind = ProblemKind::LengthTooLarge { len, max };
            return Ok(Err(Damage::new(kind, false)));
        }
        if LEN_PREFIX as u64 + len <= available {
            return Ok(Ok(len as usize));
        }
        // A torn tail only where the bytes present can be the start of a record of
        // that length: a complete record in fewer bytes means the prefix is damaged,
        // and cutting there would drop good records and reuse their LSNs.
        // (Following, the record may still be being written.)
        let tornish = at.last && (self.opts.follow || self.present_could_be_cut(at, len)?);
        let kind = ProblemKind::TruncatedRecord {
            len,
            available: available - LEN_PREFIX as u64,
        };
        Ok(Err(Damage::new(kind, tornish)))
    }

    /// Whether the bytes from the position to the end of the file can be the start
    /// of a record whose body is `len` bytes. The read is bounded by the file, which
    /// is shorter than the bounded length.
    #[cold]
    fn present_could_be_cut(&mut self, at: &Position, len: u64) -> Result<bool> {
        let io = read_error(self.storage.as_ref(), &self.segments[self.idx].name);
        let r = self.cur.as_mut().expect("a segment is open");
        r.fill(&mut self.buf, at.available as usize).map_err(io)?;
        let present = &self.buf[r.start + LEN_PREFIX..r.start + at.available as usize];
        Ok(could_be_cut_short(present, len))
    }

    /// Body: the record's `len` bytes after the prefix, decoded and CRC-checked by the
    /// codec. Passes on the record, by its place in the buffer.
    #[inline(always)]
    fn body(&mut self, at: &Position, len: usize) -> Result<Checked<FoundRecord>> {
        let io = read_error(self.storage.as_ref(), &self.segments[self.idx].name);
        let r = self.cur.as_mut().expect("a segment is open");
        r.fill(&mut self.buf, LEN_PREFIX + len).map_err(io)?;
        let body_start = r.start + LEN_PREFIX;
        let body = &self.buf[body_start..body_start + len];
        // A whole-length record of the newest segment that fails its checks, whose
        // body is the start of such a record followed by zeros: the size of a write
        // reached the disk and (part of) its data did not.
        let zero_filled = || {
            let end = body.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            (at.last && end < len && could_be_cut_short(&body[..end], len as u64)).then_some(len)
        };
        let kind = match decode_body(body) {
            Ok(rec) if rec.crc_ok() => {
                // An empty payload may not point into the buffer at all.
                let data_start = if rec.data.is_empty() {
                    body_start
                } else {
                    rec.data.as_ptr() as usize - self.buf.as_ptr() as usize
                };
                return Ok(Ok(FoundRecord {
                    len: (LEN_PREFIX + len) as u64,
                    lsn: rec.lsn,
                    offset: at.offset,
                    data_start,
                    crc: rec.crc,
                    checkpoint: rec.checkpoint,
                    data_end: data_start + rec.data.len(),
                }));
            }
            Ok(rec) => ProblemKind::CrcMismatch {
                stored: rec.crc,
                computed: rec.computed_crc(),
            },
            Err(e) => ProblemKind::Undecodable {
                reason: e.to_string(),
            },
        };
        Ok(Err(Damage {
            kind,
            tornish: false,
            zero_filled: zero_filled(),
        }))
    }

    /// Continuity: an intact record's LSN against the one before it. An LSN jump at
    /// the start of a segment over segment ids that are not there (retired under the
    /// scan, or missing) is reported once, before the record, which is then read
    /// again and accepted.
    #[inline(always)]
    fn continuity(&self, at: &Position, found: FoundRecord) -> Result<Check> {
        let reported = self.jump_reported == Some((at.seg_id, at.offset));
        if let Some(hole) = self.classify_hole(found.lsn, at, self.after_problem || reported)? {
            return Ok(Check::Hole(hole, found.lsn));
        }
        let lsn = found.lsn;
        let kind = match self.prev_lsn {
            _ if lsn == 0 => ProblemKind::Undecodable {
                reason: "LSN 0 is never written".into(),
            },
            Some(prev) if lsn <= prev => ProblemKind::LsnRegression {
                previous: prev,
                found: lsn,
            },
            Some(prev)
                if lsn != prev + 1
                    && !(self.after_problem && lsn > prev)
                    && !(reported && lsn > prev) =>
            {
                ProblemKind::LsnGap {
                    expected: prev + 1,
                    found: lsn,
                }
            }
            _ => return Ok(Check::Intact(found)),
        };
        Ok(Check::Damaged(Damage::new(kind, false)))
    }

    /// Verdict: what the step yields for what the checks found.
    #[inline(always)]
    fn verdict(&mut self, at: &Position, check: Check) -> Result<Step> {
        match check {
            Check::Intact(found) => Ok(self.accept(at, found)),
            Check::Hole(hole, lsn) => Ok(self.report_hole(hole, lsn)),
            Check::Damaged(damage) => self.damaged(at, damage),
        }
    }

    /// An intact record: the scan moves past it and counts it.
    #[inline(always)]
    fn accept(&mut self, at: &Position, found: FoundRecord) -> Step {
        let r = self.cur.as_mut().expect("a segment is open");
        r.advance(found.len as usize);
        self.prev_lsn = Some(found.lsn);
        self.after_problem = false;
        self.prev_segment = Some(at.seg_id);
        let sum = self.cur_summary.as_mut().expect("a segment is open");
        sum.records += 1;
        sum.first_lsn.get_or_insert(found.lsn);
        sum.last_lsn = Some(found.lsn);
        if found.checkpoint {
            sum.checkpoints += 1;
            sum.last_checkpoint_lsn = Some(found.lsn);
        }
        sum.valid_len = at.offset + found.len;
        Step::Record(found)
    }

    /// Damage at the position: zeros a writer never wrote (the end of the newest
    /// segment, or a torn tail), a record still being written (following: wait for
    /// it), or a problem that ends the segment.
    #[cold]
    fn damaged(&mut self, at: &Position, damage: Damage) -> Result<Step> {
        let io = read_error(self.storage.as_ref(), &self.segments[self.idx].name);
        let r = self.cur.as_mut().expect("a segment is open");
        let Damage {
            kind,
            tornish,
            zero_filled,
        } = damage;
        // A never-written, zero-filled tail of the newest segment is a torn tail:
        // zeros from this record's start, or from inside it (then its bytes before
        // them must be the start of the record, and nothing but zeros may follow it).
        let (kind, tornish) = if let Some(len) = zero_filled {
            r.advance(LEN_PREFIX + len);
            let zero = r.rest_is_zero(&mut self.buf).map_err(io)?;
            if !zero && at.last && !self.opts.follow && self.reread_zeros(at)? {
                return self.step();
            }
            (kind, zero)
        } else if at.last && (!tornish || at.available < LEN_PREFIX as u64) {
            let zero = r.rest_is_zero(&mut self.buf).map_err(io)?;
            if !zero && !self.opts.follow && self.reread_zeros(at)? {
                return self.step();
            }
            if zero && !self.opts.follow {
                // Zeros from a record boundary to the end of the newest segment:
                // space a writer preallocated and has not written yet (or did not
                // cut, having crashed). Nothing more yet, not damage; a writer
                // opening the log cuts it without saving it. Zeros with a non-zero
                // byte after them are still corruption.
                self.finish_segment(None);
                return Ok(Step::SegmentEnd);
            } else if zero {
                let bytes = at.available;
                (ProblemKind::ZeroTail { bytes }, true)
            } else {
                (kind, tornish)
            }
        } else {
            (kind, tornish)
        };
        if tornish && at.last && self.opts.follow {
            return self.wait_at(at.offset);
        }
        let p = self.problem(at.offset, kind, tornish);
        self.finish_segment(Some(p));
        Ok(Step::SegmentEnd)
    }

    /// Following: a record still being written at `offset` of the newest segment.
    /// The scan waits there for the rest, watching the bytes (see `wait_probe`).
    fn wait_at(&mut self, offset: u64) -> Result<Step> {
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

/// The newest checkpoint of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckpointPos {
    /// Its LSN.
    pub lsn: u64,
    /// The segment holding it.
    pub segment_id: u64,
}

/// Everything a full scan learnt: per segment, and for the whole log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    /// One summary per segment, in id order.
    pub segments: Vec<SegmentSummary>,
    /// Intact records.
    pub records: u64,
    /// First intact LSN.
    pub first_lsn: Option<u64>,
    /// Last intact LSN.
    pub last_lsn: Option<u64>,
    /// Checkpoint records.
    pub checkpoints: u64,
    /// The newest intact checkpoint.
    pub newest_checkpoint: Option<CheckpointPos>,
    /// Total bytes of all segments.
    pub bytes: u64,
}

impl ScanReport {
    /// Every problem, in log order.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.segments.iter().filter_map(|s| s.problem.as_ref())
    }

    /// The worst severity found, `None` for a clean log.
    pub fn worst(&self) -> Option<Severity> {
        self.problems().map(|p| p.severity).max()
    }

    /// The newest segment that holds at least one intact record.
    pub fn last_lsn_segment(&self) -> Option<&SegmentSummary> {
        self.segments.iter().rev().find(|s| s.last_lsn.is_some())
    }
}

/// Scans a whole log and summarises it (records are read, checked and dropped).
/// `progress` is called with the bytes done after each segment and every few MiB.
/// A large log is checked in two halves at once (see [`ScanOptions::parallel_from`]).
pub fn scan_log(
    storage: Arc<dyn ReadStorage>,
    opts: ScanOptions,
    mut progress: impl FnMut(u64),
) -> Result<ScanReport> {
    // Never backwards, also when a split scan is redone in one pass.
    let mut shown = 0;
    let mut progress = |done: u64| {
        if done > shown {
            shown = done;
            progress(done);
        }
    };
    let segments = list_segments(storage.as_ref())?;
    if let Some(split) = split_point(&opts, &segments) {
        if let Some(report) = scan_halves(&storage, &opts, &segments, split, &mut progress) {
            return Ok(report);
        }
    }
    let mut scanner = Scanner::new(storage, opts)?;
    let newest_checkpoint = drain(&mut scanner, &mut progress)?;
    Ok(report(scanner.summaries, newest_checkpoint))
}

/// Reads every record of `scanner`, reporting progress; returns the newest checkpoint.
fn drain(scanner: &mut Scanner, progress: &mut dyn FnMut(u64)) -> Result<Option<CheckpointPos>> {
    let mut done_before = 0u64;
    let mut last_report = 0u64;
    let mut newest_checkpoint = None;
    while let Some(ev) = scanner.next()? {
        match ev {
            Event::Record(r) => {
                if r.checkpoint {
                    newest_checkpoint = Some(CheckpointPos {
                        lsn: r.lsn,
                        segment_id: r.segment_id,
                    });
                }
                let done = done_before + r.offset + r.len;
                if done - last_report >= 4 << 20 {
                    last_report = done;
                    progress(done);
                }
            }
            Event::SegmentEnd(s) => {
                done_before += s.size;
                last_report = done_before;
                progress(done_before);
            }
            // A whole-log check reports what is on disk; records retired while it
            // read are no damage.
            Event::Retired(_) => {}
        }
    }
    Ok(newest_checkpoint)
}

fn report(segments: Vec<SegmentSummary>, newest_checkpoint: Option<CheckpointPos>) -> ScanReport {
    ScanReport {
        records: segments.iter().map(|s| s.records).sum(),
        first_lsn: segments.iter().find_map(|s| s.first_lsn),
        last_lsn: segments.iter().rev().find_map(|s| s.last_lsn),
        checkpoints: segments.iter().map(|s| s.checkpoints).sum(),
        newest_checkpoint,
        bytes: segments.iter().map(|s| s.size).sum(),
        segments,
    }
}

/// Where to split a log for [`scan_halves`] (the first segment of the newer half),
/// when it is worth it: a large log of two or more segments, a whole-log scan, and
/// two cores.
fn split_point(opts: &ScanOptions, segments: &[SegmentFile]) -> Option<usize> {
    if opts.follow || opts.from_lsn.is_some() || opts.stop_at_first_problem {
        return None;
    }
    let total: u64 = segments.iter().map(|s| s.size).sum();
    if segments.len() < 2 || opts.parallel_from.is_none_or(|min| total < min) {
        return None;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    let mut sum = 0;
    let half = segments
        .iter()
        .position(|s| {
            sum += s.size;
            sum >= total / 2
        })
        .unwrap_or(0);
    Some((half + 1).clamp(1, segments.len() - 1))
}

/// Checks the older segments on a second thread while this one checks the newer,
/// each with its own scanner, and joins the halves if the seam is clean: the older
/// half ends without a problem, the newer starts with an intact record carrying the
/// next LSN, and no segment was retired under either. Anything else (an error, a
/// problem at the seam) returns `None`, and the caller reads the log in one pass,
/// which decides what the problem is. With two cores each half reads for itself (a
/// read-ahead thread per half would only take turns with it).
fn scan_halves(
    storage: &Arc<dyn ReadStorage>,
    opts: &ScanOptions,
    segments: &[SegmentFile],
    split: usize,
    progress: &mut dyn FnMut(u64),
) -> Option<ScanReport> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = opts
        .clone()
        .read_ahead_from(opts.read_ahead_from.filter(|_| cores >= 4));
    let (older, newer) = segments.split_at(split);
    let older_done = std::sync::atomic::AtomicU64::new(0);
    let older_bytes: u64 = older.iter().map(|s| s.size).sum();
    let half = |segs: &[SegmentFile], tail: bool, progress: &mut dyn FnMut(u64)| {
        let mut scanner = Scanner::over(storage.clone(), opts.clone(), segs.to_vec(), tail).ok()?;
        let checkpoint = drain(&mut scanner, progress).ok()?;
        scanner.retired.is_empty().then(|| {
            let last = scanner.prev_lsn;
            (scanner.summaries, checkpoint, last)
        })
    };
    // No thread to be had: one pass, like a small log.
    let (a, b) = std::thread::scope(|s| {
        let older_half = std::thread::Builder::new()
            .name("walctl-scan".into())
            .spawn_scoped(s, || {
                half(older, false, &mut |d| {
                    older_done.store(d, std::sync::atomic::Ordering::Relaxed)
                })
            })
            .ok()?;
        let b = half(newer, true, &mut |d| {
            progress(older_done.load(std::sync::atomic::Ordering::Relaxed) + d)
        });
        Some((older_half.join().ok().flatten(), b))
    })?;
    let (
        (mut summaries, older_checkpoint, Some(last)),
        Some((newer_summaries, newer_checkpoint, _)),
    ) = (a?, b)
    else {
        return None;
    };
    let seam_clean = summaries.last().is_some_and(|s| s.problem.is_none())
        && newer_summaries.first().is_some_and(|s| {
            last.checked_add(1)
                .is_some_and(|next| s.first_lsn == Some(next))
        });
    if !seam_clean {
        return None;
    }
    summaries.extend(newer_summaries);
    progress(older_bytes + summaries[split..].iter().map(|s| s.size).sum::<u64>());
    Some(report(summaries, newer_checkpoint.or(older_checkpoint)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{DirEntry, EntryKind, MemStorage, ReadFile};
    use std::sync::atomic::{AtomicUsize, Ordering};

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

    #[test]
    fn each_builder_sets_its_own_option() {
        let d = ScanOptions::default();
        let o = ScanOptions::default()
            .max_body_len(7)
            .from_lsn(Some(9))
            .stop_at_first_problem(!d.stop_at_first_problem)
            .follow(!d.follow)
            .read_ahead_from(Some(11))
            .parallel_from(Some(13));
        assert_eq!(o.max_body_len, 7);
        assert_eq!(o.from_lsn, Some(9));
        assert_eq!(o.stop_at_first_problem, !d.stop_at_first_problem);
        assert_eq!(o.follow, !d.follow);
        assert_eq!(o.read_ahead_from, Some(11));
        assert_eq!(o.parallel_from, Some(13));
        let none = o.read_ahead_from(None).parallel_from(None).from_lsn(None);
        assert_eq!(
            (none.read_ahead_from, none.parallel_from, none.from_lsn),
            (None, None, None)
        );
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
