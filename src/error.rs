//! The library's typed errors and the scanner's problem reports, each carrying the
//! segment and byte offset it is about.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

/// How bad a [`Problem`] is. The order matters: `Corruption` is worse than
/// `Unreadable`, which is worse than `TornTail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// An incomplete final record in the newest segment: what a crash mid-write leaves.
    TornTail,
    /// A segment could not be read (permissions, an I/O error): nothing is known to
    /// be wrong with its bytes, and the segments around it are still checked.
    Unreadable,
    /// Anything else: damaged bytes, a CRC mismatch, an LSN gap, damage in an older segment.
    Corruption,
}

impl Severity {
    /// How the severity is written in text ("torn tail", "unreadable", "corruption").
    pub fn word(self) -> &'static str {
        match self {
            Severity::TornTail => "torn tail",
            Severity::Unreadable => "unreadable",
            Severity::Corruption => "corruption",
        }
    }
}

/// What exactly is wrong at a [`Problem`]'s position. Field names say what they hold.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// Fewer than 4 bytes remain where a length prefix should start.
    TruncatedPrefix { available: u64 },
    /// The length prefix asks for more bytes than the file holds after it.
    TruncatedRecord { len: u64, available: u64 },
    /// Everything from here to the end of the file is zero bytes (a pre-extended,
    /// never-written tail).
    ZeroTail { bytes: u64 },
    /// The length prefix is larger than any record walctl accepts.
    LengthTooLarge { len: u64, max: u64 },
    /// The protobuf body cannot be decoded.
    Undecodable { reason: String },
    /// The stored CRC does not match data and LSN.
    CrcMismatch { stored: u32, computed: u32 },
    /// The record's LSN is not the previous LSN + 1.
    LsnGap { expected: u64, found: u64 },
    /// The record's LSN is not larger than the previous one.
    LsnRegression { previous: u64, found: u64 },
    /// The segment could not be read.
    Unreadable { error: String },
    /// Segment files are missing from the middle of the log (segments older and
    /// newer than them are there), and with them the LSNs `first_lsn..=last_lsn`.
    MissingSegment {
        first_id: u64,
        last_id: u64,
        first_lsn: u64,
        last_lsn: u64,
    },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::TruncatedPrefix { available } => {
                write!(f, "incomplete length prefix ({available} of 4 bytes)")
            }
            ProblemKind::TruncatedRecord { len, available } => write!(
                f,
                "incomplete record (length prefix says {len} bytes, {available} present)"
            ),
            ProblemKind::ZeroTail { bytes } => {
                write!(f, "{bytes} zero bytes where a record should start")
            }
            ProblemKind::LengthTooLarge { len, max } => {
                write!(
                    f,
                    "length prefix {len} exceeds the maximum record size {max}"
                )
            }
            ProblemKind::Undecodable { reason } => write!(f, "undecodable record: {reason}"),
            ProblemKind::CrcMismatch { stored, computed } => write!(
                f,
                "CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            ProblemKind::LsnGap { expected, found } => {
                write!(f, "LSN gap (expected {expected}, found {found})")
            }
            ProblemKind::LsnRegression { previous, found } => {
                write!(f, "LSN regression ({found} after {previous})")
            }
            ProblemKind::Unreadable { error } => write!(f, "unreadable: {error}"),
            ProblemKind::MissingSegment {
                first_id,
                last_id,
                first_lsn,
                last_lsn,
            } => {
                // The segment file name (`segment-<id>`), as segment.rs spells it.
                write!(f, "missing segment-{first_id}")?;
                if last_id > first_id {
                    write!(f, "..segment-{last_id}")?;
                }
                write!(f, " (LSNs {first_lsn}..{last_lsn} absent)")
            }
        }
    }
}

/// One thing wrong with a log, found by the scanner, at a segment and byte offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// File name of the segment, e.g. `segment-3`.
    pub segment: String,
    /// Numeric id of the segment.
    pub segment_id: u64,
    /// Byte offset in the segment where the bad record (its length prefix) starts.
    pub offset: u64,
    /// Torn tail or corruption.
    pub severity: Severity,
    /// Details.
    #[serde(flatten)]
    pub kind: ProblemKind,
    /// LSN of the last good record before the problem, if any.
    pub last_good_lsn: Option<u64>,
    /// The I/O error that made the segment unreadable (see [`Problem::io_error`]).
    /// Not part of the JSON: [`ProblemKind::Unreadable`]'s `error` says it there.
    #[serde(skip)]
    pub(crate) cause: IoCause,
}

impl Problem {
    /// The I/O error behind a [`ProblemKind::Unreadable`] problem (permissions, a
    /// failing disk), with its kind and OS error code; `None` for every other kind.
    /// The errors built from the problem ([`Error::Scan`], [`Error::Damaged`]) keep a
    /// copy as their [`source`](std::error::Error::source).
    pub fn io_error(&self) -> Option<&io::Error> {
        self.cause.0.as_deref()
    }
}

/// The I/O error behind a problem, shared by the problem's clones. Two causes are
/// equal when their kind and OS error code are: a problem found twice is the same
/// problem.
#[derive(Debug, Clone, Default)]
pub(crate) struct IoCause(Option<Arc<io::Error>>);

impl IoCause {
    /// The cause `e`.
    pub(crate) fn new(e: io::Error) -> Self {
        IoCause(Some(Arc::new(e)))
    }

    /// An owned copy for an [`Error`]'s source.
    fn copy(&self) -> Option<io::Error> {
        self.0.as_deref().map(copy_io_error)
    }
}

impl PartialEq for IoCause {
    fn eq(&self, other: &Self) -> bool {
        let key = |c: &IoCause| c.0.as_ref().map(|e| (e.kind(), e.raw_os_error()));
        key(self) == key(other)
    }
}

impl Eq for IoCause {}

/// An `std::io::Error` equal to `e` in kind, OS error code and text (`io::Error` is
/// not `Clone`).
pub(crate) fn copy_io_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, self.severity) {
            (ProblemKind::MissingSegment { .. }, _) => write!(f, "corruption: {}", self.kind),
            (_, Severity::Unreadable) => write!(f, "{}: {}", self.segment, self.kind),
            (_, sev) => write!(
                f,
                "{} in {} at offset {}: {}",
                sev.word(),
                self.segment,
                self.offset,
                self.kind
            ),
        }
    }
}

/// Errors of the walctl library. Every I/O failure keeps its [`io::Error`] as the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed on a file of the log.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", "fsync", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing a byte stream ([`crate::EntryReader`], [`crate::EntryWriter`])
    /// failed.
    #[error("{op}: {source}")]
    Stream {
        /// What was being done ("read", "write", "flush").
        op: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A writer option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Another writer holds the directory.
    #[error("{} is locked by another writer (lock file {}{}); readers need no lock", dir.display(), lock.display(), holder.as_deref().map(|h| format!(", held by {h}")).unwrap_or_default())]
    Locked {
        /// The log directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// Who holds it, when the lock file says so.
        holder: Option<String>,
    },
    /// The log is damaged in a way that opening for write must not paper over.
    /// Built with [`Error::damaged`].
    #[error("{problem}; refusing to write to a damaged log")]
    Damaged {
        /// The first problem found.
        problem: Box<Problem>,
        /// The I/O error, when the problem is a segment that cannot be read
        /// ([`Problem::io_error`]).
        #[source]
        source: Option<io::Error>,
    },
    /// A reader met a problem in the log; every record before it was delivered.
    /// Built with [`Error::scan`].
    #[error("{problem}")]
    Scan {
        /// The problem.
        problem: Box<Problem>,
        /// The I/O error, when the problem is a segment that cannot be read
        /// ([`Problem::io_error`]).
        #[source]
        source: Option<io::Error>,
    },
    /// Records a reader still had to deliver were deleted (by a writer's retention)
    /// before it could read them: LSNs `first_lsn..=last_lsn` cannot be delivered.
    /// Every record before them was.
    #[error("LSNs {first_lsn}..{last_lsn} were deleted before they could be read: retention removed segment-{first_segment}..segment-{last_segment} while the log was read")]
    Retired {
        /// First LSN that could not be delivered.
        first_lsn: u64,
        /// Last LSN that could not be delivered.
        last_lsn: u64,
        /// Id of the first segment removed.
        first_segment: u64,
        /// Id of the last segment removed.
        last_segment: u64,
    },
    /// A record read from a byte stream (not from a log's segments) is damaged or cut
    /// short.
    #[error("{}{kind}", offset.map(|o| format!("record at byte {o}: ")).unwrap_or_default())]
    Record {
        /// Where in the stream its length prefix starts, when it was read from one.
        offset: Option<u64>,
        /// What is wrong with it.
        kind: ProblemKind,
    },
    /// A directory entry that claims to be a segment cannot be used as one.
    #[error("{}: {reason}", path.display())]
    BadSegment {
        /// The entry.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The writer was closed; nothing was written.
    #[error("the log is closed; nothing was written")]
    Closed,
    /// A write or fsync failed (in this call or an earlier one); the writer accepts
    /// nothing more. Records not acknowledged may be partly on disk. The I/O error
    /// that failed is the [`source`](std::error::Error::source), in this call's error
    /// and in every later one's (each gets a copy with the same kind and OS error
    /// code), so `ErrorKind::StorageFull` tells a full disk.
    #[error("the writer failed ({what}{}) and accepts nothing more: records not yet acknowledged may be partly on disk (the next open saves and cuts a torn tail); reopen the log to continue", source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Poisoned {
        /// What failed, e.g. "write to segment-3".
        what: String,
        /// The I/O error, when the failure was one.
        #[source]
        source: Option<io::Error>,
    },
    /// The next LSN would not fit in 64 bits: the log holds all the records it ever
    /// can. Nothing was written.
    #[error("LSN space exhausted: {records} more record(s) after LSN {last_lsn} do not fit in 64 bits; nothing was written")]
    LsnExhausted {
        /// The last LSN handed out.
        last_lsn: u64,
        /// Records the call asked for.
        records: u64,
    },
    /// A record is larger than walctl accepts.
    #[error("record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// Size asked for.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// `append_batch` was given nothing.
    #[error("empty batch: nothing to append")]
    EmptyBatch,
    /// No quarantine entry has this id.
    #[error("no quarantine entry {id} in {}", dir.display())]
    NoSuchEntry {
        /// The id asked for.
        id: String,
        /// Where the entries were looked for.
        dir: PathBuf,
    },
    /// The bytes to be cut could not be saved in the quarantine, so nothing was cut.
    #[error("could not save the bytes to be cut in {} ({source}); nothing was cut: the log is as it was, every acknowledged record still in it{}", quarantine.display(), last_lsn.map(|l| format!(" (the last intact one is LSN {l})")).unwrap_or_default())]
    SaveFailed {
        /// Where they were to be saved.
        quarantine: PathBuf,
        /// The last intact record of the log, left where it was.
        last_lsn: Option<u64>,
        /// Why saving failed.
        #[source]
        source: Box<Error>,
    },
    /// A quarantine (saved bytes) is missing or inconsistent.
    #[error("quarantine {id}: {reason}")]
    Quarantine {
        /// The quarantine entry.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// Wraps an I/O error with the operation and the path it concerns.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// [`Error::Scan`] for `problem`, its I/O error (if any) the source.
    pub fn scan(problem: Problem) -> Self {
        Error::Scan {
            source: problem.cause.copy(),
            problem: Box::new(problem),
        }
    }

    /// [`Error::Damaged`] for `problem`, its I/O error (if any) the source.
    pub fn damaged(problem: Problem) -> Self {
        Error::Damaged {
            source: problem.cause.copy(),
            problem: Box::new(problem),
        }
    }

    /// The problem this error reports, if it is about damage in the log.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Error::Damaged { problem, .. } | Error::Scan { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
