//! The durable writer: LSN assignment, the reference's rotation rule, group commit,
//! sync policies, retention that never drops what recovery needs, the directory
//! lock, and torn-tail repair on open.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::codec::{encode_record, MAX_DATA_LEN};
use crate::error::{Error, Result, Severity};
use crate::prealloc::{self, NextSegment};
use crate::quarantine::{self, Cut};
use crate::reader::{Entries, WalReader};
use crate::scan::{scan_log, ScanOptions, ScanReport};
use crate::segment::segment_name;
use crate::storage::{DirLock, FileStorage, Storage, WriteFile};

/// When appended records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `append` returns only after an fdatasync covers the record. Concurrent
    /// appenders share one fsync (group commit). The default.
    Always,
    /// A background thread flushes and fsyncs every interval; `append` returns once
    /// the record is buffered.
    Interval(Duration),
    /// fsync only at rotation, checkpoint, `sync` and `close`.
    Never,
}

/// Writer options. Set them with the builder methods, which keep compiling as
/// options are added: `WalOptions::default().max_segments(0)`. (Not
/// `#[non_exhaustive]`: programs that build it with `..WalOptions::default()`, as
/// the shared peer benchmark does, keep compiling.)
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Rotate before a write when the current segment holds at least this many bytes
    /// (the reference's rule: a segment may exceed it by one record). Default 4 MiB.
    pub max_segment_size: u64,
    /// Keep at most this many segments (0 = unlimited). Default 10, the Go
    /// library's default. Retention only deletes segments wholly before the newest
    /// checkpoint: without a checkpoint, nothing is deleted. What it deleted is in
    /// [`Wal::retention`]. (The `walctl` command line defaults to 0: it deletes
    /// history only when asked.)
    pub max_segments: usize,
    /// Durability policy. Default [`SyncPolicy::Always`].
    pub sync: SyncPolicy,
    /// Preallocate segments (default on; it applies with [`SyncPolicy::Always`]
    /// only): the active segment is extended with durable zeros at open and the next
    /// one is made ready off the commit path, so that a commit's fdatasync flushes
    /// data only. With `Interval` or `Never` no commit waits for an fdatasync, and
    /// the zeros would only double what goes to the disk, so the writer appends. While the log is open its newest
    /// segment ends in zeros, which the Go library cannot read past; at rotation and
    /// close every segment is cut to its last record. Off: segments are always
    /// exactly as long as their records, at some cost in commit speed.
    pub preallocate: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            max_segment_size: 4 * 1024 * 1024,
            max_segments: 10,
            sync: SyncPolicy::Always,
            preallocate: true,
        }
    }
}

impl WalOptions {
    /// Sets [`max_segment_size`](Self::max_segment_size).
    pub fn max_segment_size(mut self, bytes: u64) -> Self {
        self.max_segment_size = bytes;
        self
    }

    /// Sets [`max_segments`](Self::max_segments) (0 = unlimited).
    pub fn max_segments(mut self, n: usize) -> Self {
        self.max_segments = n;
        self
    }

    /// Sets [`sync`](Self::sync).
    pub fn sync(mut self, policy: SyncPolicy) -> Self {
        self.sync = policy;
        self
    }

    /// Sets [`preallocate`](Self::preallocate).
    pub fn preallocate(mut self, on: bool) -> Self {
        self.preallocate = on;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.max_segment_size == 0 {
            return Err(Error::InvalidOption(
                "max segment size must be at least 1 byte".into(),
            ));
        }
        if self.sync == SyncPolicy::Interval(Duration::ZERO) {
            return Err(Error::InvalidOption(
                "sync interval must be longer than zero".into(),
            ));
        }
        Ok(())
    }
}

/// A torn tail cut when the log was opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TailRepair {
    /// Segment that was cut.
    pub segment: String,
    /// New length (where the torn record started).
    pub offset: u64,
    /// Bytes cut.
    pub bytes: u64,
    /// Quarantine entry holding them.
    pub quarantine_id: String,
    /// What the scanner saw there.
    pub reason: String,
}

/// Unwritten, zero-filled space at the end of the newest segment (preallocated by a
/// writer that did not close), cut when the log was opened. It held no record, so it
/// is not saved to the quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnwrittenTail {
    /// Segment that was cut.
    pub segment: String,
    /// New length (the end of its last record).
    pub offset: u64,
    /// Zero bytes cut.
    pub bytes: u64,
}

/// What opening the log found and did.
#[derive(Debug, Clone, Serialize)]
pub struct OpenReport {
    /// The torn tail that was saved and cut, if there was one.
    pub repaired_tail: Option<TailRepair>,
    /// The unwritten zeros cut from the end of the newest segment, if there were any.
    pub unwritten_tail: Option<UnwrittenTail>,
    /// Last LSN in the log at open.
    pub last_lsn: Option<u64>,
    /// Segment written to.
    pub segment: String,
    /// Whether that segment was created by this open.
    pub created_segment: bool,
}

/// A segment deleted by retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedSegment {
    /// Segment id.
    pub id: u64,
    /// File name.
    pub name: String,
    /// LSNs of the records it held, both ends included (`None`: it held none).
    pub lsns: Option<(u64, u64)>,
}

/// What retention ([`WalOptions::max_segments`]) deleted since the log was opened
/// ([`Wal::retention`]). Retention deletes the oldest segments first, so the deleted
/// ids and LSNs form one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Segments deleted.
    pub removed: u64,
    /// Lowest and highest id deleted.
    pub ids: Option<(u64, u64)>,
    /// Lowest and highest LSN among the records of the deleted segments.
    pub lsns: Option<(u64, u64)>,
    /// The deleted segments, oldest first; only the newest [`RetentionReport::KEPT`]
    /// are listed (the counts above cover all of them).
    pub segments: Vec<RemovedSegment>,
}

impl RetentionReport {
    /// How many deleted segments [`RetentionReport::segments`] lists at most.
    pub const KEPT: usize = 1024;

    fn add(&mut self, seg: RemovedSegment) {
        self.removed += 1;
        self.ids = Some(match self.ids {
            Some((a, _)) => (a, seg.id),
            None => (seg.id, seg.id),
        });
        if let Some((first, last)) = seg.lsns {
            self.lsns = Some(match self.lsns {
                Some((a, _)) => (a, last),
                None => (first, last),
            });
        }
        if self.segments.len() == Self::KEPT {
            self.segments.remove(0);
        }
        self.segments.push(seg);
    }
}

/// Counts of a writer's data fsyncs since it opened: how well group commit shares
/// them out ([`Wal::sync_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// fdatasync calls on segment files (group commits, interval and explicit syncs,
    /// rotations, close).
    pub fsyncs: u64,
    /// Records each of those made durable, summed: `records / fsyncs` is how many
    /// appends one fsync covered on average.
    pub records: u64,
    /// Time spent in those calls (with the write before each group commit's fsync).
    pub time: Duration,
}

impl SyncStats {
    fn add(&mut self, records: u64, took: Duration) {
        self.fsyncs += 1;
        self.records += records;
        self.time += took;
    }
}

/// Buffered bytes above which `Interval`/`Never` appends hand the buffer to the OS.
const FLUSH_AT: usize = 1 << 20;

struct State {
    buf: Vec<u8>,
    spare: Vec<u8>,
    next_lsn: u64,
    seg_id: u64,
    /// Bytes in the current segment, buffered ones included.
    seg_size: u64,
    /// Last LSN put into `buf` (or already on disk at open).
    appended_lsn: u64,
    /// Last LSN known durable.
    synced_lsn: u64,
    /// A group commit is in flight, or its leader is gathering records for it.
    syncing: bool,
    /// The next group commit's leader is waiting for more appenders (see `gather`).
    gathering: bool,
    /// Appenders whose records are appended (in `buf`, or written out by `flush`)
    /// and wait for the next group commit, which covers them all.
    pending: usize,
    /// How long the last group commit's write + fdatasync took.
    last_sync: Duration,
    /// What the fsyncs of this writer did so far.
    stats: SyncStats,
    poisoned: Option<Failure>,
    closed: bool,
    shutdown: bool,
    /// The log's segments, oldest first: (id, LSN its first record has or will have).
    segments: VecDeque<(u64, u64)>,
    /// What retention deleted.
    retention: RetentionReport,
    /// (segment id, lsn) of the newest checkpoint.
    newest_checkpoint: Option<(u64, u64)>,
    /// The next segment, being made ready (preallocation on).
    next: Option<NextSegment>,
    /// Why the last retention pass kept a segment it would have deleted (an archive
    /// of the directory does not hold it yet).
    archive_hold: Option<String>,
}

impl State {
    /// A writer's state at open: the next LSN, the last one on disk, the active
    /// segment (id, bytes), every segment's first LSN, the newest checkpoint.
    fn new(
        next_lsn: u64,
        last_lsn: Option<u64>,
        (seg_id, seg_size): (u64, u64),
        segments: VecDeque<(u64, u64)>,
        newest_checkpoint: Option<(u64, u64)>,
    ) -> State {
        State {
            buf: Vec::with_capacity(64 * 1024),
            spare: Vec::with_capacity(64 * 1024),
            next_lsn,
            seg_id,
            seg_size,
            appended_lsn: last_lsn.unwrap_or(next_lsn - 1),
            synced_lsn: last_lsn.unwrap_or(next_lsn - 1),
            syncing: false,
            gathering: false,
            pending: 0,
            last_sync: Duration::ZERO,
            stats: SyncStats::default(),
            poisoned: None,
            closed: false,
            shutdown: false,
            segments,
            retention: RetentionReport::default(),
            newest_checkpoint,
            next: None,
            archive_hold: None,
        }
    }
}

/// Each segment's id and the LSN its first record has or will have, oldest first.
/// Segments are contiguous in LSN: one without records starts where the next record
/// goes; an empty log has only the active segment.
fn segment_starts(scan: &ScanReport, active: u64, next_lsn: u64) -> VecDeque<(u64, u64)> {
    let mut segments: VecDeque<(u64, u64)> = VecDeque::new();
    let mut start = next_lsn;
    for s in scan.segments.iter().rev() {
        if let Some(first) = s.first_lsn {
            start = first;
        }
        segments.push_front((s.id, start));
    }
    if segments.is_empty() {
        segments.push_back((active, next_lsn));
    }
    segments
}

/// The segment a writer appends to, as opened.
struct Active {
    id: u64,
    file: Box<dyn WriteFile>,
    /// Its logical size: the end of its last record.
    size: u64,
    /// Made by this open (an empty log).
    created: bool,
    /// Extended with durable zeros past `size`.
    preallocated: bool,
}

struct Io {
    file: Box<dyn WriteFile>,
    seg_id: u64,
    /// The file runs on in preallocated zeros past its logical end: it is cut there
    /// at rotation and close.
    preallocated: bool,
    /// Set by a group commit whose write or fsync failed, before anyone else can
    /// touch the file: a later fsync must never vouch for bytes an earlier one lost.
    failed: Option<Failure>,
}

struct Inner {
    storage: Arc<dyn Storage>,
    opts: WalOptions,
    /// Preallocation is on and worked at open (a storage that cannot write at an
    /// offset, or a disk too full for the zeros, turns it off for this writer).
    preallocate: bool,
    state: Mutex<State>,
    io: Mutex<Io>,
    cond: Condvar,
    /// Wakes a leader gathering appenders for its group commit.
    gather: Condvar,
    /// Appenders that will wait for durability and have not returned yet, counted
    /// before they take the state lock (so that one blocked on it is seen).
    appenders: AtomicUsize,
    /// `State::gathering`, readable without the lock.
    gathering: AtomicBool,
    lock: Mutex<Option<DirLock>>,
}

/// An open write-ahead log. Share it between threads with `Arc<Wal>`; every method
/// takes `&self`.
pub struct Wal {
    inner: Arc<Inner>,
    syncer: Mutex<Option<JoinHandle<()>>>,
    report: OpenReport,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("root", &self.inner.storage.root())
            .field("opts", &self.inner.opts)
            .finish()
    }
}

/// Counts an appender that will wait for durability from before it takes the state
/// lock until it returns, and tells a gathering leader when it leaves (see
/// `Inner::gather`).
struct AppenderCount<'a>(&'a Inner);

impl<'a> AppenderCount<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.appenders.fetch_add(1, Ordering::SeqCst);
        AppenderCount(inner)
    }

    /// Leaves while holding the state lock (the usual way out: no second trip
    /// through the lock that every woken writer is queueing for).
    fn leave(self, st: &State) {
        self.0.appenders.fetch_sub(1, Ordering::SeqCst);
        self.0.wake_gatherer(st);
        std::mem::forget(self);
    }
}

impl Drop for AppenderCount<'_> {
    /// Leaving on an error path, without the state lock.
    fn drop(&mut self) {
        self.0.appenders.fetch_sub(1, Ordering::SeqCst);
        // SeqCst on both sides: either the leader sees the new count, or this sees
        // its flag and wakes it (taking the lock so the wake-up cannot be lost).
        if self.0.gathering.load(Ordering::SeqCst) {
            let st = lock(&self.0.state);
            self.0.wake_gatherer(&st);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a walctl mutex leaves no half-written state that a later
    // caller could mistake for success: the poisoned flag in State covers I/O.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Wal {
    /// Opens (creating if needed) the log in directory `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Wal> {
        let dir = dir.as_ref();
        opts.validate()?;
        let (storage, _created) =
            FileStorage::create(dir).map_err(|e| Error::io("open directory", dir, e))?;
        Self::open_with_storage(Arc::new(storage), opts)
    }

    /// Opens the log kept by `storage` (tests pass a fault-injecting one).
    pub fn open_with_storage(storage: Arc<dyn Storage>, opts: WalOptions) -> Result<Wal> {
        Self::open_with_quarantine(storage, opts, None)
    }

    /// [`Wal::open_with_storage`], saving a torn tail cut at open in the directory
    /// kept by `quarantine` instead of the log's own `.walctl-quarantine/` (`None`),
    /// for instance on another file system when the log's is full. A log without
    /// records also takes its next LSN from the entries there.
    pub fn open_with_quarantine(
        storage: Arc<dyn Storage>,
        opts: WalOptions,
        quarantine: Option<Arc<dyn Storage>>,
    ) -> Result<Wal> {
        opts.validate()?;
        let root = storage.root().to_path_buf();
        let guard = DirLock::acquire(storage.as_ref())?;
        let scan = scan_log(storage.clone(), ScanOptions::default(), |_| {})?;
        let q = match &quarantine {
            Some(q) => quarantine::Location::dir(q.as_ref()),
            None => quarantine::Location::in_log(storage.as_ref()),
        };
        prealloc::remove_leftovers(storage.as_ref());
        let unwritten_tail = Self::cut_unwritten_tail(storage.as_ref(), &scan)?;
        let size_now = unwritten_tail.as_ref().map(|u| u.offset);
        let repaired_tail = Self::repair_torn_tail(storage.as_ref(), q, &scan, size_now)?;
        let tail_end = repaired_tail
            .as_ref()
            .map(|r| r.offset)
            .or(unwritten_tail.as_ref().map(|u| u.offset));
        let active = Self::open_active(storage.as_ref(), &scan, tail_end, &opts)?;
        let (seg_id, seg_size, preallocated) = (active.id, active.size, active.preallocated);
        let last_lsn = scan.last_lsn;
        let next_lsn = Self::next_lsn_after(storage.as_ref(), q, last_lsn)?;
        let segments = segment_starts(&scan, seg_id, next_lsn);
        let newest_checkpoint = scan.newest_checkpoint.map(|c| (c.segment_id, c.lsn));
        let state = State::new(
            next_lsn,
            last_lsn,
            (seg_id, seg_size),
            segments,
            newest_checkpoint,
        );
        let inner = Arc::new(Inner {
            storage,
            opts: opts.clone(),
            preallocate: preallocated,
            state: Mutex::new(state),
            io: Mutex::new(Io {
                file: active.file,
                seg_id,
                preallocated,
                failed: None,
            }),
            cond: Condvar::new(),
            gather: Condvar::new(),
            appenders: AtomicUsize::new(0),
            gathering: AtomicBool::new(false),
            lock: Mutex::new(Some(guard)),
        });
        let syncer = match opts.sync {
            SyncPolicy::Interval(every) => {
                let inner = inner.clone();
                Some(
                    std::thread::Builder::new()
                        .name("walctl-sync".into())
                        .spawn(move || inner.interval_loop(every))
                        .map_err(|e| Error::io("spawn sync thread", &root, e))?,
                )
            }
            _ => None,
        };
        Ok(Wal {
            inner,
            syncer: Mutex::new(syncer),
            report: OpenReport {
                repaired_tail,
                unwritten_tail,
                last_lsn,
                segment: segment_name(seg_id),
                created_segment: active.created,
            },
        })
    }

    /// Opens the newest segment for appending at `tail_end` (where a cut at open
    /// left it; its size otherwise), or creates segment 0 in an empty log, and
    /// extends it with durable zeros when preallocation applies (`Always` only:
    /// with `Interval` or `Never` the zeros would double what goes to the disk).
    fn open_active(
        storage: &dyn Storage,
        scan: &ScanReport,
        tail_end: Option<u64>,
        opts: &WalOptions,
    ) -> Result<Active> {
        let io_err = |op, name: &str| {
            let path = storage.root().join(name);
            move |e| Error::io(op, path, e)
        };
        let (id, file, size, created) = match scan.segments.last() {
            None => {
                let name = segment_name(0);
                let file = storage.create(&name).map_err(io_err("create", &name))?;
                storage.sync_dir("").map_err(io_err("fsync", ""))?;
                (0, file, 0, true)
            }
            Some(last) => {
                let mut file = storage
                    .open_append(&last.name)
                    .map_err(io_err("open", &last.name))?;
                // What an earlier process left in the page cache becomes durable now,
                // so that it is safe to build on.
                file.sync_data().map_err(io_err("fsync", &last.name))?;
                (last.id, file, tail_end.unwrap_or(last.size), false)
            }
        };
        let ready = match opts.preallocate && opts.sync == SyncPolicy::Always {
            true => prealloc::open_active(
                storage,
                &segment_name(id),
                size,
                size,
                prealloc::prealloc_len(opts.max_segment_size),
            ),
            false => None,
        };
        Ok(Active {
            id,
            size,
            created,
            preallocated: ready.is_some(),
            file: ready.unwrap_or(file),
        })
    }

    /// The LSN the next record gets: one past the last (saturating: a log ending at
    /// LSN u64::MAX opens, and refuses every append). A log without records
    /// continues where an earlier cut left off, never at 1 again (the quarantine
    /// records where).
    fn next_lsn_after(
        storage: &dyn Storage,
        q: quarantine::Location<'_>,
        last_lsn: Option<u64>,
    ) -> Result<u64> {
        if let Some(l) = last_lsn {
            return Ok(l.saturating_add(1));
        }
        let mut floor = quarantine::lsn_floor(storage)?;
        if q.is_separate() {
            floor = floor.max(quarantine::lsn_floor_at(q)?);
        }
        Ok(floor.unwrap_or(1).max(1))
    }

    /// Cuts the zeros at the end of the newest segment (preallocated, never
    /// written): after its last record (the scanner reads them as space not yet
    /// written, see `scan`), or after the last non-zero byte of a torn tail, which is
    /// then saved and cut by `repair_torn_tail`. They hold nothing, so they are not
    /// saved to the quarantine. Any other problem: nothing is cut here.
    fn cut_unwritten_tail(
        storage: &dyn Storage,
        scan: &ScanReport,
    ) -> Result<Option<UnwrittenTail>> {
        let Some(last) = scan.segments.last() else {
            return Ok(None);
        };
        let mut problems = scan.problems();
        let from = match problems.next() {
            None => last.valid_len,
            Some(p)
                if p.segment_id == last.id
                    && p.severity == Severity::TornTail
                    && problems.next().is_none() =>
            {
                prealloc::nonzero_end(storage, &last.name, p.offset)
                    .map_err(|e| Error::io("read", storage.root().join(&last.name), e))?
            }
            Some(_) => return Ok(None),
        };
        if last.size <= from {
            return Ok(None);
        }
        storage
            .truncate(&last.name, from)
            .map_err(|e| Error::io("truncate", storage.root().join(&last.name), e))?;
        Ok(Some(UnwrittenTail {
            segment: last.name.clone(),
            offset: from,
            bytes: last.size - from,
        }))
    }

    fn repair_torn_tail(
        storage: &dyn Storage,
        q: quarantine::Location<'_>,
        scan: &ScanReport,
        size_now: Option<u64>,
    ) -> Result<Option<TailRepair>> {
        let mut problems = scan.problems();
        let Some(problem) = problems.next() else {
            return Ok(None);
        };
        // Corruption, or a segment that cannot be read (its LSNs are unknown, so the
        // next LSN is too): refused.
        if let Some(p) = scan.problems().find(|p| p.severity != Severity::TornTail) {
            return Err(Error::damaged(p.clone()));
        }
        // Only the newest segment can have a torn tail; the scanner says so.
        let seg = scan
            .segments
            .iter()
            .find(|s| s.id == problem.segment_id)
            .expect("a problem names a scanned segment");
        let reason = format!("torn tail found when opening for write: {problem}");
        let next_lsn = match scan.last_lsn {
            Some(l) => Some(l.saturating_add(1)),
            None => quarantine::lsn_floor(storage)?.max(quarantine::lsn_floor_at(q)?),
        };
        let info = quarantine::CutInfo {
            reason: &reason,
            policy: "open",
            next_lsn,
        };
        let cut = [Cut {
            file: seg.name.clone(),
            offset: problem.offset,
            whole_file: false,
        }];
        let manifest =
            quarantine::save_at(storage, q, info, &cut).map_err(|e| Error::SaveFailed {
                quarantine: q.path(),
                last_lsn: scan.last_lsn,
                source: Box::new(e),
            })?;
        storage
            .truncate(&seg.name, problem.offset)
            .map_err(|e| Error::io("truncate", storage.root().join(&seg.name), e))?;
        Ok(Some(TailRepair {
            segment: seg.name.clone(),
            offset: problem.offset,
            bytes: size_now.unwrap_or(seg.size) - problem.offset,
            quarantine_id: manifest.id,
            reason,
        }))
    }

    /// What opening found and did (a torn tail saved and cut, the last LSN).
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The options this log was opened with.
    pub fn options(&self) -> &WalOptions {
        &self.inner.opts
    }

    /// The storage under this log.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.inner.storage
    }

    /// The LSN the next record will get.
    pub fn next_lsn(&self) -> u64 {
        lock(&self.inner.state).next_lsn
    }

    /// The last LSN known durable.
    pub fn durable_lsn(&self) -> u64 {
        lock(&self.inner.state).synced_lsn
    }

    /// What retention ([`WalOptions::max_segments`]) deleted since the log was
    /// opened: how many segments, which ids, which LSNs.
    pub fn retention(&self) -> RetentionReport {
        lock(&self.inner.state).retention.clone()
    }

    /// What this writer's fsyncs did so far: how many, how many records they made
    /// durable, how long they took. With many threads appending under
    /// [`SyncPolicy::Always`], `records / fsyncs` shows group commit at work.
    pub fn sync_stats(&self) -> SyncStats {
        lock(&self.inner.state).stats
    }

    /// Appends one record and returns its LSN. Under [`SyncPolicy::Always`] it is
    /// durable when this returns.
    pub fn append(&self, data: &[u8]) -> Result<u64> {
        self.inner
            .append_many(std::slice::from_ref(&data), false, false)
            .map(|(_, l)| l)
    }

    /// Appends records as one batch (one write and at most one fsync) and returns the
    /// first and last LSN.
    pub fn append_batch<D: AsRef<[u8]>>(&self, datas: &[D]) -> Result<(u64, u64)> {
        if datas.is_empty() {
            return Err(Error::EmptyBatch);
        }
        self.inner.append_many(datas, false, false)
    }

    /// Writes a checkpoint record (the application's state snapshot) and returns its
    /// LSN. It is durable when this returns, whatever the sync policy.
    pub fn checkpoint(&self, data: &[u8]) -> Result<u64> {
        self.inner
            .append_many(std::slice::from_ref(&data), true, true)
            .map(|(_, l)| l)
    }

    /// Makes every record appended so far durable.
    pub fn sync(&self) -> Result<()> {
        let st = self.inner.writable()?;
        let target = st.appended_lsn;
        self.inner.wait_durable(st, target).map(drop)
    }

    /// Hands buffered records to the OS without an fsync (a process crash no longer
    /// loses them; a power loss may).
    pub fn flush(&self) -> Result<()> {
        let mut st = self.inner.writable()?;
        let mut io = self.inner.lock_io(&mut st)?;
        self.inner.write_out(&mut st, &mut io)
    }

    /// Syncs everything, stops the background syncer and releases the directory lock.
    /// Appending afterwards is an error. Closing twice is fine.
    pub fn close(&self) -> Result<()> {
        {
            let mut st = lock(&self.inner.state);
            st.shutdown = true;
            self.inner.cond.notify_all();
        }
        if let Some(h) = lock(&self.syncer).take() {
            let _ = h.join();
        }
        let st = lock(&self.inner.state);
        if st.closed {
            return Ok(());
        }
        let target = st.appended_lsn;
        let res = match st.poisoned.as_ref().map(Failure::error) {
            Some(e) => {
                // Let go of the state lock before taking it again below.
                drop(st);
                Err(e)
            }
            None => self
                .inner
                .wait_durable(st, target)
                .and_then(|st| self.inner.cut_preallocated(st)),
        };
        let next = lock(&self.inner.state).next.take();
        if let Some(n) = next {
            n.discard(self.inner.storage.as_ref());
        }
        lock(&self.inner.state).closed = true;
        lock(&self.inner.lock).take();
        res
    }

    /// Why retention last kept a segment beyond `max_segments` that it would
    /// otherwise have deleted: an archive of this directory does not hold it yet.
    pub fn archive_hold(&self) -> Option<String> {
        lock(&self.inner.state).archive_hold.clone()
    }

    /// A reader over this log that sees every record appended so far.
    pub fn reader(&self) -> Result<WalReader> {
        self.flush()?;
        Ok(WalReader::new(self.inner.storage.clone()))
    }

    /// Every record of the log, oldest first, streamed (memory is bounded by the
    /// largest record): the Go library's `ReadAll`. Sees every record appended before
    /// the call; stops with an `Err` at the first damage, after every intact record
    /// before it.
    pub fn read_all(&self) -> Result<Entries> {
        self.reader()?.entries_from(0)
    }

    /// The newest checkpoint, then every record after it (the whole log when there is
    /// no checkpoint): the Go library's `ReadFromCheckpoint`, streamed.
    pub fn read_from_checkpoint(&self) -> Result<Entries> {
        self.reader()?.from_newest_checkpoint()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl Inner {
    fn writable(&self) -> Result<MutexGuard<'_, State>> {
        let st = lock(&self.state);
        // `shutdown` is set as close() begins: an append racing it must fail, not
        // land after close's final sync and be dropped.
        if st.closed || st.shutdown {
            return Err(Error::Closed);
        }
        if let Some(p) = &st.poisoned {
            return Err(p.error());
        }
        Ok(st)
    }

    fn poison(&self, st: &mut State, failure: Failure) -> Error {
        let err = failure.error();
        st.poisoned.get_or_insert(failure);
        self.cond.notify_all();
        err
    }

    fn append_many<D: AsRef<[u8]>>(
        &self,
        datas: &[D],
        checkpoint: bool,
        force_sync: bool,
    ) -> Result<(u64, u64)> {
        for d in datas {
            if d.as_ref().len() > MAX_DATA_LEN {
                return Err(Error::RecordTooLarge {
                    len: d.as_ref().len() as u64,
                    max: MAX_DATA_LEN as u64,
                });
            }
        }
        let waits = force_sync || self.opts.sync == SyncPolicy::Always;
        // Declared before the state guard, so dropped after it on an error path.
        let counted = waits.then(|| AppenderCount::new(self));
        let mut st = self.writable()?;
        let first = st.next_lsn;
        // Checked before anything is encoded: a refused batch leaves nothing behind.
        if first.checked_add(datas.len() as u64).is_none() {
            return Err(Error::LsnExhausted {
                last_lsn: first - 1,
                records: datas.len() as u64,
            });
        }
        for d in datas {
            if st.seg_size >= self.opts.max_segment_size {
                self.rotate(&mut st)?;
            }
            let lsn = st.next_lsn;
            let n = encode_record(&mut st.buf, lsn, d.as_ref(), checkpoint);
            st.next_lsn = lsn + 1;
            st.appended_lsn = lsn;
            st.seg_size += n as u64;
            if checkpoint {
                st.newest_checkpoint = Some((st.seg_id, lsn));
            }
        }
        let last = st.appended_lsn;
        self.prepare_next(&mut st);
        if waits {
            st.pending += 1;
            self.wake_gatherer(&st);
            let st = self.wait_durable(st, last)?;
            if let Some(c) = counted {
                c.leave(&st);
            }
        } else if st.buf.len() >= FLUSH_AT {
            let mut io = self.lock_io(&mut st)?;
            self.write_out(&mut st, &mut io)?;
            // Let the device work while appenders fill the next MiB, so that the fsync
            // at rotation (or interval, or close) waits for a little, not for all of it.
            io.file.start_writeback();
        }
        Ok((first, last))
    }

    /// Takes the file lock on behalf of a caller holding the state lock, refusing if
    /// an earlier group commit failed on the file.
    fn lock_io(&self, st: &mut State) -> Result<MutexGuard<'_, Io>> {
        let io = lock(&self.io);
        if let Some(f) = &io.failed {
            return Err(self.poison(st, f.clone()));
        }
        Ok(io)
    }

    /// Writes the buffer to the current file (no fsync). Caller holds both locks.
    fn write_out(&self, st: &mut State, io: &mut Io) -> Result<()> {
        if let Some(f) = &io.failed {
            return Err(self.poison(st, f.clone()));
        }
        if st.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = io.file.write_all(&st.buf) {
            let what = format!("write to {}", segment_name(io.seg_id));
            return Err(self.poison(st, Failure::io(what, e)));
        }
        st.buf.clear();
        Ok(())
    }

    /// Rotation: sync and leave the current segment, create the next one, fsync the
    /// directory, then apply retention. Any failure poisons the writer.
    fn rotate(&self, st: &mut State) -> Result<()> {
        let mut io = self.lock_io(st)?;
        self.write_out(st, &mut io)?;
        let started = Instant::now();
        if let Err(e) = io.file.sync_data() {
            let what = format!("fsync of {}", segment_name(io.seg_id));
            return Err(self.poison(st, Failure::io(what, e)));
        }
        let covered = st.appended_lsn.saturating_sub(st.synced_lsn);
        st.stats.add(covered, started.elapsed());
        st.synced_lsn = st.synced_lsn.max(st.appended_lsn);
        st.pending = 0;
        self.cond.notify_all();
        let Some(id) = st.seg_id.checked_add(1) else {
            return Err(self.poison(st, Failure::other("segment ids are exhausted")));
        };
        let name = segment_name(id);
        if io.preallocated {
            if let Err(e) = self.storage.truncate(&segment_name(io.seg_id), st.seg_size) {
                let what = format!("cutting {} to its records", segment_name(io.seg_id));
                return Err(self.poison(st, Failure::io(what, e)));
            }
        }
        let ready = match st.next.take() {
            // Never renamed over a file already there (create fails on it below).
            Some(n) if n.id == id && self.storage.size(&name).is_err() => {
                n.finish()
                    && self
                        .storage
                        .rename(&prealloc::ready_name(id), &name)
                        .is_ok()
            }
            Some(n) => {
                n.discard(self.storage.as_ref());
                false
            }
            None => false,
        };
        let made = match ready {
            true => self.storage.open_write_at(&name, 0),
            false => self.storage.create(&name),
        };
        let file = match made {
            Ok(f) => f,
            Err(e) => return Err(self.poison(st, Failure::io(format!("creating {name}"), e))),
        };
        if let Err(e) = self.storage.sync_dir("") {
            return Err(self.poison(st, Failure::io("fsync of the directory", e)));
        }
        io.file = file;
        io.seg_id = id;
        io.preallocated = ready;
        drop(io);
        st.seg_id = id;
        st.seg_size = 0;
        st.segments.push_back((id, st.next_lsn));
        self.apply_retention(st)
    }

    /// Starts making the next segment ready once the active one is half full
    /// (preallocation on; see `prealloc`).
    fn prepare_next(&self, st: &mut State) {
        if !self.preallocate || st.next.is_some() || st.seg_size < self.opts.max_segment_size / 2 {
            return;
        }
        if let Some(id) = st.seg_id.checked_add(1) {
            let len = prealloc::prealloc_len(self.opts.max_segment_size);
            st.next = NextSegment::start(self.storage.clone(), id, len);
        }
    }

    /// At close, once everything is durable: cuts a preallocated active segment to
    /// its last record, so the closed log is what the Go library writes.
    fn cut_preallocated(&self, mut st: MutexGuard<'_, State>) -> Result<()> {
        let mut io = self.lock_io(&mut st)?;
        if !io.preallocated {
            return Ok(());
        }
        let name = segment_name(io.seg_id);
        self.storage
            .truncate(&name, st.seg_size)
            .map_err(|e| Error::io("truncate", self.storage.root().join(&name), e))?;
        io.preallocated = false;
        Ok(())
    }

    /// Deletes the oldest segments beyond `max_segments`, but never the segment that
    /// holds the newest checkpoint nor any after it (recovery needs them). A failed
    /// delete is retried at the next rotation; a failed fsync of the directory after
    /// deleting poisons the writer, like every failed fsync.
    fn apply_retention(&self, st: &mut State) -> Result<()> {
        let max = self.opts.max_segments;
        if max == 0 {
            return Ok(());
        }
        let mut removed = false;
        st.archive_hold = None;
        while st.segments.len() > max {
            let (oldest, first) = st.segments[0];
            match st.newest_checkpoint {
                Some((cp_seg, _)) if oldest < cp_seg => {}
                _ => break,
            }
            // Once archived, a segment goes only when every archive holds it.
            if let Some(why) = crate::archive::marker::retention_hold(&*self.storage, oldest) {
                st.archive_hold = Some(why);
                break;
            }
            let name = segment_name(oldest);
            if self.storage.remove_file(&name).is_err() {
                break;
            }
            st.segments.pop_front();
            // The next segment's first LSN ends this one's run (there is one: the
            // segment just created is never deleted).
            let end = st.segments.front().map_or(st.next_lsn, |s| s.1);
            st.retention.add(RemovedSegment {
                id: oldest,
                name,
                lsns: (end > first).then(|| (first, end - 1)),
            });
            removed = true;
        }
        if removed {
            if let Err(e) = self.storage.sync_dir("") {
                let what = "fsync of the directory after deleting old segments";
                return Err(self.poison(st, Failure::io(what, e)));
            }
        }
        Ok(())
    }

    /// Returns (still holding the state lock) once `lsn` is durable, leading a group
    /// commit when nobody else is.
    fn wait_durable<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        lsn: u64,
    ) -> Result<MutexGuard<'a, State>> {
        loop {
            if st.synced_lsn >= lsn {
                return Ok(st);
            }
            if let Some(p) = &st.poisoned {
                return Err(p.error());
            }
            if st.closed {
                return Err(Error::Closed);
            }
            st = if st.syncing {
                self.cond.wait(st).unwrap_or_else(|e| e.into_inner())
            } else {
                st = self.gather(st);
                if st.synced_lsn >= lsn || st.poisoned.is_some() || st.closed {
                    // Someone else's fsync (a rotation) covered it meanwhile.
                    st.syncing = false;
                    self.cond.notify_all();
                    continue;
                }
                self.sync_round(st)
            };
        }
    }

    /// Wakes a gathering leader once everyone it waits for is in the buffer (not at
    /// every arrival: each wake-up is a context switch on a busy machine).
    fn wake_gatherer(&self, st: &State) {
        if st.gathering && self.appenders.load(Ordering::SeqCst) <= st.pending {
            self.gather.notify_one();
        }
    }

    /// Before a group commit, waits (at most half the last commit's time) while some
    /// appender is inside `append` without a record in the buffer yet: one just woken
    /// by the previous commit and about to return, or one blocked on the state lock.
    /// Without this, writers split into two cohorts that alternate, each fsync
    /// covering half of them. A lone writer never waits: it is the only appender and
    /// its record is in the buffer.
    fn gather<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.syncing = true;
        let limit = (st.last_sync / 2).min(Duration::from_millis(2));
        if limit.is_zero() || self.appenders.load(Ordering::SeqCst) <= st.pending {
            return st;
        }
        let deadline = Instant::now() + limit;
        st.gathering = true;
        self.gathering.store(true, Ordering::SeqCst);
        while self.appenders.load(Ordering::SeqCst) > st.pending {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .gather
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.gathering = false;
        self.gathering.store(false, Ordering::SeqCst);
        st
    }

    /// One group commit: take the buffer, write and fdatasync it outside the state
    /// lock (appenders keep filling a fresh buffer meanwhile), then publish.
    fn sync_round<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.syncing = true;
        st.pending = 0;
        let target = st.appended_lsn;
        let started = Instant::now();
        let spare = std::mem::take(&mut st.spare);
        let mut data = std::mem::replace(&mut st.buf, spare);
        // Taking the file lock before letting go of the state lock keeps writes in
        // LSN order: whoever writes next waits for this round.
        let mut io = lock(&self.io);
        drop(st);
        let seg = segment_name(io.seg_id);
        let mut res: std::result::Result<(), Failure> = match &io.failed {
            Some(f) => Err(f.clone()),
            None => Ok(()),
        };
        if res.is_ok() && !data.is_empty() {
            res = io
                .file
                .write_all(&data)
                .map_err(|e| Failure::io(format!("write to {seg}"), e));
        }
        if res.is_ok() {
            res = io
                .file
                .sync_data()
                .map_err(|e| Failure::io(format!("fsync of {seg}"), e));
        }
        if let Err(msg) = &res {
            io.failed.get_or_insert(msg.clone());
        }
        drop(io);
        data.clear();
        if data.capacity() > 16 << 20 {
            data = Vec::with_capacity(64 * 1024);
        }
        let mut st = lock(&self.state);
        st.last_sync = started.elapsed();
        st.spare = data;
        st.syncing = false;
        match res {
            Ok(()) => {
                let covered = target.saturating_sub(st.synced_lsn);
                let took = st.last_sync;
                st.stats.add(covered, took);
                st.synced_lsn = st.synced_lsn.max(target);
            }
            Err(msg) => {
                st.poisoned.get_or_insert(msg);
            }
        }
        self.cond.notify_all();
        st
    }

    fn interval_loop(&self, every: Duration) {
        let mut st = lock(&self.state);
        let mut next = Instant::now() + every;
        loop {
            if st.shutdown {
                return;
            }
            let now = Instant::now();
            if now < next {
                st = self
                    .cond
                    .wait_timeout(st, next - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            next = now + every;
            if !st.syncing && st.poisoned.is_none() && !st.closed && st.synced_lsn < st.appended_lsn
            {
                st = self.sync_round(st);
            }
        }
    }
}

/// Why a writer stopped accepting records, kept for every later call: what failed and
/// the I/O error, shared.
#[derive(Debug, Clone)]
struct Failure {
    what: String,
    io: Option<Arc<std::io::Error>>,
}

impl Failure {
    fn io(what: impl Into<String>, e: std::io::Error) -> Failure {
        Failure {
            what: what.into(),
            io: Some(Arc::new(e)),
        }
    }

    fn other(what: impl Into<String>) -> Failure {
        Failure {
            what: what.into(),
            io: None,
        }
    }

    /// The error a call reports. `std::io::Error` is not `Clone`: each call gets a copy with
    /// the same kind, OS error code and message.
    fn error(&self) -> Error {
        Error::Poisoned {
            what: self.what.clone(),
            source: self.io.as_deref().map(crate::error::copy_io_error),
        }
    }
}
