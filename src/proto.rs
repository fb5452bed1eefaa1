//! The prost-generated `WAL_Entry` of `proto/wal.proto`, the format's definition,
//! and its conversions to and from [`Entry`]. The library's own codec
//! ([`crate::codec`]) writes the same bytes without it; the tests hold both to that.

#![allow(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/wal.rs"));

use crate::codec::record_crc;
use crate::entry::Entry;
use crate::error::{Error, ProblemKind};

impl From<&Entry> for WalEntry {
    /// The message a writer stores for `entry`, its CRC computed over data and LSN.
    fn from(entry: &Entry) -> WalEntry {
        WalEntry {
            log_sequence_number: entry.lsn,
            data: entry.data.clone(),
            crc: record_crc(&entry.data, entry.lsn),
            is_checkpoint: entry.checkpoint.then_some(true),
        }
    }
}

impl TryFrom<WalEntry> for Entry {
    type Error = Error;

    /// The entry `msg` holds, once its CRC is checked. It is not read from a segment,
    /// so `segment_id` and `offset` are 0.
    fn try_from(msg: WalEntry) -> Result<Entry, Error> {
        let computed = record_crc(&msg.data, msg.log_sequence_number);
        if computed != msg.crc {
            return Err(Error::Record {
                offset: None,
                kind: ProblemKind::CrcMismatch {
                    stored: msg.crc,
                    computed,
                },
            });
        }
        Ok(Entry {
            lsn: msg.log_sequence_number,
            data: msg.data,
            checkpoint: msg.is_checkpoint.unwrap_or(false),
            segment_id: 0,
            offset: 0,
        })
    }
}
