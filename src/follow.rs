//! Following a live log: [`Follow`] yields each record as a writer appends it, waiting
//! across rotation, until its caller stops it (a timeout per call, or a
//! [`CancelHandle`] from any thread). Built on [`Scanner::poll`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::reader::Entry;
use crate::scan::{Event, ScanOptions, Scanner};
use crate::storage::Storage;

/// How often a [`Follow`] looks for new records by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(50);

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

/// The records of a live log, from an LSN on, as they are appended; see
/// [`WalReader::follow_from`](crate::WalReader::follow_from). Read-only, no lock.
///
/// As an [`Iterator`] it waits as long as it takes and ends when cancelled;
/// [`next_timeout`](Self::next_timeout) waits at most a given time. An incomplete
/// record at the end of the newest segment is a record still being written, not
/// damage. Damage, and records deleted by retention before they were read, end it
/// with an `Err` (every record before them was yielded).
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
    cancel: CancelHandle,
    done: bool,
}

impl Follow {
    /// Follows the log in `storage` from LSN `from` (records before it are skipped).
    /// The log may be empty, or not have its first segment yet.
    pub fn new(storage: Arc<dyn Storage>, from: u64) -> Result<Follow> {
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
            cancel: CancelHandle::default(),
            done: false,
        })
    }

    /// Looks for new records this often while waiting (default
    /// [`DEFAULT_POLL_INTERVAL`]).
    pub fn poll_interval(mut self, interval: Duration) -> Follow {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// A handle that stops this follow from any thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// The next record, waiting for it at most `timeout`: `Ok(None)` when none came
    /// in time, or when the follow was cancelled.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Entry>> {
        self.wait(Instant::now().checked_add(timeout))
    }

    /// The next record; `deadline` `None` waits until cancelled.
    fn wait(&mut self, deadline: Option<Instant>) -> Result<Option<Entry>> {
        if self.done {
            return Ok(None);
        }
        let res = self.wait_inner(deadline);
        if res.is_err() {
            self.done = true;
        }
        res
    }

    fn wait_inner(&mut self, deadline: Option<Instant>) -> Result<Option<Entry>> {
        loop {
            if self.cancel.is_cancelled() {
                return Ok(None);
            }
            match self.scanner.next()? {
                Some(Event::Record(r)) if r.lsn >= self.from => {
                    return Ok(Some(Entry {
                        lsn: r.lsn,
                        data: r.data.to_vec(),
                        checkpoint: r.checkpoint,
                        segment_id: r.segment_id,
                        offset: r.offset,
                    }));
                }
                Some(Event::Record(_)) => {}
                Some(Event::Retired(gap)) if gap.last_lsn >= self.from => {
                    return Err(Error::Retired {
                        first_lsn: gap.first_lsn.max(self.from),
                        last_lsn: gap.last_lsn,
                        first_segment: gap.first_segment,
                        last_segment: gap.last_segment,
                    });
                }
                Some(Event::Retired(_)) => {}
                Some(Event::SegmentEnd(s)) => {
                    if let Some(p) = &s.problem {
                        return Err(Error::Scan {
                            problem: Box::new(p.clone()),
                        });
                    }
                }
                None => {
                    if let Some(p) = self.scanner.first_problem() {
                        return Err(Error::Scan {
                            problem: Box::new(p.clone()),
                        });
                    }
                    if self.scanner.poll()? {
                        continue;
                    }
                    let nap = match deadline {
                        None => self.interval,
                        Some(d) => {
                            let left = d.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                return Ok(None);
                            }
                            left.min(self.interval)
                        }
                    };
                    std::thread::sleep(nap);
                }
            }
        }
    }
}

impl Iterator for Follow {
    type Item = Result<Entry>;

    /// Waits for the next record; `None` once cancelled (or after an error).
    fn next(&mut self) -> Option<Result<Entry>> {
        self.wait(None).transpose()
    }
}
