//! [`Entry`]: a record as the library hands it back, owned. The readers, the follow,
//! [`EntryReader`](crate::EntryReader) and the `proto` conversions all produce it;
//! this module owns it so none of them imports another for it.

use crate::scan::ScannedRecord;

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its LSN.
    pub lsn: u64,
    /// Its payload.
    pub data: Vec<u8>,
    /// Whether it is a checkpoint.
    pub checkpoint: bool,
    /// The segment holding it.
    pub segment_id: u64,
    /// Offset of its length prefix in that segment.
    pub offset: u64,
}

impl From<&ScannedRecord<'_>> for Entry {
    /// The record a scan found, its payload copied out of the scanner's buffer.
    fn from(r: &ScannedRecord<'_>) -> Entry {
        Entry {
            lsn: r.lsn,
            data: r.data.to_vec(),
            checkpoint: r.checkpoint,
            segment_id: r.segment_id,
            offset: r.offset,
        }
    }
}
