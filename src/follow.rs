//! Following a live log: [`Follow`] yields each record as a writer appends it, waiting
//! across rotation, until its caller stops it (a timeout per call, or a
//! [`CancelHandle`] from any thread). As [`Entry`]s, or step by step with each record's
//! place on disk and what the follow waits for ([`Follow::next_event`], what `walctl
//! dump --follow` prints from). The one follow loop; built on [`Scanner::poll`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::scan::{FoundRecord, RetiredGap, ScanOptions, ScannedRecord, Scanner, Step};
use crate::storage::ReadStorage;

/// How often a [`Follow`] looks for new records by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long a [`Follow`] waits at an incomplete record, by default, before
/// [`FollowEvent::Stalled`] says so.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(3);

/// Stops a [`Follow`] from another thread: its waiting call returns `Ok(None)` within
/// one poll interval, and so does every later one.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// Stops the follow.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One step of a [`Follow`]; see [`Follow::next_event`].
#[derive(Debug)]
#[non_exhaustive]
pub enum FollowEvent<'a> {
    /// A record at or after the follow's first LSN, with its CRC, segment, offset
    /// and size on disk; the payload is borrowed until the next call.
    Record(ScannedRecord<'a>),
    /// Records from the follow's first LSN on that a writer's retention deleted before
    /// the follow read them. With [`Follow::skip_retired`] the follow goes on with the
    /// oldest record still there; without, this is its last event.
    Retired(RetiredGap),
    /// Every record there is has been yielded: the follow starts waiting for more.
    /// Once each time it catches up (a moment to flush buffered output).
    CaughtUp,
    /// The follow has waited [`Follow::stall_after`] at an incomplete record at the
    /// end of the newest segment, and no more of it came. Once per place.
    Stalled(Stall),
}

/// An incomplete record a [`Follow`] waits at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// File name of the segment.
    pub segment: String,
    /// Offset of the record's length prefix.
    pub offset: u64,
    /// Bytes of the record present.
    pub present: u64,
}

/// A step of the follow that borrows nothing (see [`Scanner::advance`]).
enum Next {
    Record(FoundRecord),
    Retired(RetiredGap),
    CaughtUp,
    Stalled(Stall),
}

/// What a follow with nothing to read does next (see [`Follow::idle`]).
enum Idle {
    /// Yield this.
    Yield(Next),
    /// The deadline passed: yield nothing.
    TimedOut,
    /// Step the scanner again: a poll found more, or a nap ended.
    ReadOn,
}

/// Watches the place the follow waits at for [`FollowEvent::Stalled`].
#[derive(Debug, Default)]
struct StallWatch {
    /// (segment, offset) of the incomplete record, and since when it is waited at.
    at: Option<(String, u64, Instant)>,
    said: bool,
}

impl StallWatch {
    /// After a poll found nothing: the stall to report, when the scan has waited
    /// `after` at the same incomplete record and it was not reported yet.
    fn check(&mut self, scanner: &Scanner, after: Duration) -> Option<Stall> {
        let Some((segment, offset, present)) = scanner.waiting_at_partial() else {
            *self = StallWatch::default();
            return None;
        };
        match &self.at {
            Some((s, o, since)) if s == segment && *o == offset => {
                if self.said || since.elapsed() < after {
                    return None;
                }
                self.said = true;
                Some(Stall {
                    segment: segment.to_string(),
                    offset,
                    present,
                })
            }
            _ => {
                *self = StallWatch {
                    at: Some((segment.to_string(), offset, Instant::now())),
                    said: false,
                };
                None
            }
        }
    }
}

/// The records of a live log, from an LSN on, as they are appended; see
/// [`WalReader::follow_from`](crate::WalReader::follow_from). Read-only, no lock.
///
/// As an [`Iterator`] it waits as long as it takes and ends when cancelled;
/// [`next_timeout`](Self::next_timeout) waits at most a given time. An incomplete
/// record at the end of the newest segment is a record still being written, not
/// damage. Damage, and records deleted by retention before they were read, end it
/// with an `Err` (every record before them was yielded), unless
/// [`skip_retired`](Self::skip_retired) lets it go on past such holes.
///
/// ```no_run
/// use std::time::Duration;
/// let reader = walctl::WalReader::open("wal_data")?;
/// let mut follow = reader.follow_from(1)?;
/// let stop = follow.cancel_handle(); // stop.cancel() from another thread ends it
/// while let Some(entry) = follow.next_timeout(Duration::from_secs(1))? {
///     println!("{} {:?}", entry.lsn, entry.data);
/// }
/// # Ok::<(), walctl::Error>(())
/// ```
#[derive(Debug)]
pub struct Follow {
    scanner: Scanner,
    from: u64,
    interval: Duration,
    stall_after: Duration,
    skip_retired: bool,
    cancel: CancelHandle,
    done: bool,
    /// Caught up: [`FollowEvent::CaughtUp`] was yielded and no poll found more since.
    idle: bool,
    /// When the last poll that found nothing ran; `None` after one that found more.
    last_poll: Option<Instant>,
    stall: StallWatch,
}

impl Follow {
    /// Follows the log in `storage` from LSN `from` (records before it are skipped).
    /// The log may be empty, or not have its first segment yet.
    pub fn new(storage: Arc<dyn ReadStorage>, from: u64) -> Result<Follow> {
        let scanner = Scanner::new(
            storage,
            ScanOptions::default()
                .from_lsn((from > 1).then_some(from))
                .stop_at_first_problem(true)
                .follow(true),
        )?;
        Ok(Follow {
            scanner,
            from,
            interval: DEFAULT_POLL_INTERVAL,
            stall_after: DEFAULT_STALL_AFTER,
            skip_retired: false,
            cancel: CancelHandle::default(),
            done: false,
            idle: false,
            last_poll: None,
            stall: StallWatch::default(),
        })
    }

    /// Looks for new records this often while waiting (default
    /// [`DEFAULT_POLL_INTERVAL`]).
    pub fn poll_interval(mut self, interval: Duration) -> Follow {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Goes on past records that retention deleted before they were read (a
    /// follower that fell behind), at the oldest record still there, instead of
    /// ending with [`Error::Retired`]. [`next_event`](Self::next_event) still names
    /// each hole. Default: off.
    pub fn skip_retired(mut self, skip: bool) -> Follow {
        self.skip_retired = skip;
        self
    }

    /// How long to wait at an incomplete record before
    /// [`FollowEvent::Stalled`] (default [`DEFAULT_STALL_AFTER`]).
    pub fn stall_after(mut self, after: Duration) -> Follow {
        self.stall_after = after;
        self
    }

    /// A handle that stops this follow from any thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// The next record, waiting for it at most `timeout`: `Ok(None)` when none came
    /// in time, or when the follow was cancelled.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Entry>> {
        self.next_entry(Instant::now().checked_add(timeout))
    }

    /// The next step of the follow, waiting for one at most `timeout`: `Ok(None)`
    /// when none came in time, when the follow was cancelled, or after its end.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<FollowEvent<'_>>> {
        let next = match self.wait(Instant::now().checked_add(timeout)) {
            Ok(next) => next,
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        Ok(next.map(|next| match next {
            Next::Record(r) => FollowEvent::Record(self.scanner.record(&r)),
            Next::Retired(gap) => FollowEvent::Retired(gap),
            Next::CaughtUp => FollowEvent::CaughtUp,
            Next::Stalled(stall) => FollowEvent::Stalled(stall),
        }))
    }

    /// The next record; `deadline` `None` waits until cancelled.
    fn next_entry(&mut self, deadline: Option<Instant>) -> Result<Option<Entry>> {
        loop {
            let next = match self.wait(deadline) {
                Ok(next) => next,
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            match next {
                None => return Ok(None),
                Some(Next::Record(r)) => return Ok(Some(Entry::from(&self.scanner.record(&r)))),
                Some(Next::Retired(gap)) if !self.skip_retired => {
                    return Err(gap.undelivered(self.from))
                }
                Some(_) => {}
            }
        }
    }

    /// Steps the scanner until there is something to yield, waiting while there is
    /// nothing (until `deadline`, `None`: until cancelled).
    fn wait(&mut self, deadline: Option<Instant>) -> Result<Option<Next>> {
        loop {
            if self.done || self.cancel.is_cancelled() {
                return Ok(None);
            }
            match self.scanner.advance()? {
                Step::Record(r) if r.lsn >= self.from => return Ok(Some(Next::Record(r))),
                Step::Record(_) => {}
                Step::Retired => {
                    let gap = self.scanner.retired_gaps().last().cloned();
                    if let Some(gap) = gap.filter(|g| g.last_lsn >= self.from) {
                        self.done = !self.skip_retired;
                        return Ok(Some(Next::Retired(gap)));
                    }
                }
                Step::SegmentEnd => {
                    let end = self.scanner.summaries().last();
                    if let Some(p) = end.and_then(|s| s.problem.as_ref()) {
                        return Err(Error::scan(p.clone()));
                    }
                }
                Step::Waiting | Step::Done => match self.idle(deadline)? {
                    Idle::Yield(next) => return Ok(Some(next)),
                    Idle::TimedOut => return Ok(None),
                    Idle::ReadOn => {}
                },
            }
        }
    }

    /// Nothing more to read for now: says so once, looks for more when a poll is
    /// due, says when it stalls at an incomplete record, and sleeps until the next
    /// poll or the deadline.
    fn idle(&mut self, deadline: Option<Instant>) -> Result<Idle> {
        if let Some(p) = self.scanner.first_problem() {
            return Err(Error::scan(p.clone()));
        }
        if !self.idle {
            self.idle = true;
            return Ok(Idle::Yield(Next::CaughtUp));
        }
        let now = Instant::now();
        if self.last_poll.is_none_or(|t| now >= t + self.interval) {
            if self.scanner.poll()? {
                self.idle = false;
                self.last_poll = None;
                self.stall = StallWatch::default();
                return Ok(Idle::ReadOn);
            }
            self.last_poll = Some(now);
            if let Some(stall) = self.stall.check(&self.scanner, self.stall_after) {
                return Ok(Idle::Yield(Next::Stalled(stall)));
            }
        }
        let next_poll = self.last_poll.map_or(now, |t| t + self.interval);
        let wake = match deadline {
            Some(d) if now >= d => return Ok(Idle::TimedOut),
            Some(d) => d.min(next_poll),
            None => next_poll,
        };
        std::thread::sleep(wake.saturating_duration_since(now));
        Ok(Idle::ReadOn)
    }
}

impl Iterator for Follow {
    type Item = Result<Entry>;

    /// Waits for the next record; `None` once cancelled (or after an error).
    fn next(&mut self) -> Option<Result<Entry>> {
        self.next_entry(None).transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use super::*;
    use crate::segment::segment_name;
    use crate::storage::FileStorage;
    use crate::EntryWriter;

    /// The bytes of records `lsns`, as a writer frames them.
    fn records(lsns: impl IntoIterator<Item = u64>) -> Vec<u8> {
        let mut w = EntryWriter::new(Vec::new());
        for lsn in lsns {
            w.write_entry(lsn, format!("record {lsn}").as_bytes(), lsn == 2)
                .unwrap();
        }
        w.into_inner()
    }

    fn append(dir: &Path, id: u64, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(segment_name(id)))
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    fn follow(dir: &Path, from: u64) -> Follow {
        let storage = Arc::new(FileStorage::open(dir).unwrap());
        Follow::new(storage, from)
            .unwrap()
            .poll_interval(Duration::from_millis(2))
    }

    /// What the next event is, owned: ("record", lsn), ("retired", first lsn), ...
    fn next(f: &mut Follow, timeout: Duration) -> Option<(&'static str, u64)> {
        Some(match f.next_event(timeout).unwrap()? {
            FollowEvent::Record(r) => ("record", r.lsn),
            FollowEvent::Retired(gap) => ("retired", gap.first_lsn),
            FollowEvent::CaughtUp => ("caught up", 0),
            FollowEvent::Stalled(s) => ("stalled", s.offset),
        })
    }

    const SHORT: Duration = Duration::from_millis(30);

    #[test]
    fn records_carry_their_place_and_each_catch_up_is_said_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = records(1..=3);
        append(dir.path(), 0, &first);
        let mut f = follow(dir.path(), 2);
        let Some(FollowEvent::Record(r)) = f.next_event(SHORT).unwrap() else {
            panic!("a record first");
        };
        let one = records([1]).len() as u64;
        assert_eq!((r.lsn, r.data, r.checkpoint), (2, &b"record 2"[..], true));
        assert_eq!((r.segment_id, r.offset), (0, one));
        assert_eq!(r.len, records([2]).len() as u64);
        assert_eq!(r.crc, crate::codec::record_crc(b"record 2", 2));
        assert_eq!(next(&mut f, SHORT), Some(("record", 3)));
        assert_eq!(next(&mut f, SHORT), Some(("caught up", 0)));
        // Waiting: nothing, not even a second catch-up, until the timeout.
        let t = Instant::now();
        assert_eq!(next(&mut f, SHORT), None);
        assert!(t.elapsed() >= SHORT);
        append(dir.path(), 0, &records([4]));
        append(dir.path(), 1, &records([5]));
        assert_eq!(next(&mut f, SHORT), Some(("record", 4)));
        assert_eq!(next(&mut f, SHORT), Some(("record", 5)));
        assert_eq!(next(&mut f, SHORT), Some(("caught up", 0)));
        assert_eq!(next(&mut f, SHORT), None);
    }

    #[test]
    fn a_stall_at_an_incomplete_record_is_said_once_per_place() {
        let dir = tempfile::tempdir().unwrap();
        let whole = records(1..=2);
        let third = records([3]);
        append(dir.path(), 0, &whole);
        append(dir.path(), 0, &third[..5]);
        let mut f = follow(dir.path(), 1).stall_after(Duration::from_millis(40));
        assert_eq!(next(&mut f, SHORT), Some(("record", 1)));
        assert_eq!(next(&mut f, SHORT), Some(("record", 2)));
        assert_eq!(next(&mut f, SHORT), Some(("caught up", 0)));
        let Some(FollowEvent::Stalled(stall)) = f.next_event(Duration::from_secs(5)).unwrap()
        else {
            panic!("a stall");
        };
        let expect = Stall {
            segment: segment_name(0),
            offset: whole.len() as u64,
            present: 5,
        };
        assert_eq!(stall, expect);
        assert_eq!(next(&mut f, Duration::from_millis(150)), None, "said once");
        // The record completes: read on; the next stall is another place.
        append(dir.path(), 0, &third[5..]);
        let fourth = records([4]);
        append(dir.path(), 0, &fourth[..3]);
        assert_eq!(next(&mut f, SHORT), Some(("record", 3)));
        assert_eq!(next(&mut f, SHORT), Some(("caught up", 0)));
        let at = (whole.len() + third.len()) as u64;
        assert_eq!(next(&mut f, Duration::from_secs(5)), Some(("stalled", at)));
    }

    /// Segments 0, 1, 2 of two records each; the follow reads LSN 1, then
    /// retention deletes segments 0 and 1 (0 stays readable through the open file).
    fn retired_under(dir: &Path, skip: bool) -> Follow {
        for id in 0..3 {
            append(dir, id, &records([2 * id + 1, 2 * id + 2]));
        }
        let mut f = follow(dir, 1).skip_retired(skip);
        assert_eq!(next(&mut f, SHORT), Some(("record", 1)));
        std::fs::remove_file(dir.join(segment_name(0))).unwrap();
        std::fs::remove_file(dir.join(segment_name(1))).unwrap();
        assert_eq!(next(&mut f, SHORT), Some(("record", 2)));
        f
    }

    #[test]
    fn a_retired_hole_ends_the_follow_unless_it_may_skip_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = retired_under(dir.path(), false);
        let Some(FollowEvent::Retired(gap)) = f.next_event(SHORT).unwrap() else {
            panic!("a hole");
        };
        assert_eq!((gap.first_lsn, gap.last_lsn), (3, 4));
        assert_eq!((gap.first_segment, gap.last_segment), (1, 1));
        assert_eq!(next(&mut f, SHORT), None, "the hole was the last event");

        let dir = tempfile::tempdir().unwrap();
        let mut f = retired_under(dir.path(), true);
        assert_eq!(next(&mut f, SHORT), Some(("retired", 3)));
        assert_eq!(next(&mut f, SHORT), Some(("record", 5)));
        assert_eq!(next(&mut f, SHORT), Some(("record", 6)));

        // As entries: the hole is an error, or (skipping) not there at all.
        let dir = tempfile::tempdir().unwrap();
        let mut f = retired_under(dir.path(), false);
        let err = f.next_timeout(SHORT).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Retired {
                    first_lsn: 3,
                    last_lsn: 4,
                    ..
                }
            ),
            "{err}"
        );
        assert!(f.next_timeout(SHORT).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let mut f = retired_under(dir.path(), true);
        assert_eq!(f.next_timeout(SHORT).unwrap().map(|e| e.lsn), Some(5));
    }
}
