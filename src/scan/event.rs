//! What a scan yields: records, segment summaries, retired gaps, and the
//! borrow-free step the scanner takes to find them.

use serde::Serialize;

use crate::error::{Error, Problem};
use crate::segment::SegmentFile;

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
    pub(super) fn new(seg: &SegmentFile, size: u64) -> Self {
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

/// A record a step found, by its place in the buffer.
///
/// `repr(C)`, in an order where no two neighbouring fields are neighbours in
/// [`ScannedRecord`] (also `repr(C)`): otherwise the compiler copies two of them with
/// one 16-byte load from the two 8-byte stores just made, a store-forwarding stall
/// that perf showed as an eighth of a warm scan's time on the scanning thread.
#[repr(C)]
pub(crate) struct FoundRecord {
    pub(super) len: u64,
    pub(crate) lsn: u64,
    pub(super) offset: u64,
    pub(super) data_start: usize,
    pub(super) crc: u32,
    pub(super) checkpoint: bool,
    pub(super) data_end: usize,
}

/// Where a step landed, without borrowing the buffer (see [`Scanner::advance`](crate::scan::Scanner::advance)).
pub(crate) enum Step {
    Record(FoundRecord),
    SegmentEnd,
    Retired,
    Waiting,
    Done,
}
