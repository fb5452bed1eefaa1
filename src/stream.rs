//! Records over any byte stream: [`EntryWriter`] frames entries onto an
//! [`io::Write`](std::io::Write), [`EntryReader`] reads them back from an
//! [`io::Read`](std::io::Read). The Go library's `EntryWriter` / `EntryReader`; both
//! go through the one codec ([`crate::codec`]), so the bytes are a segment's bytes.

use std::io::{Read, Write};

use crate::codec::{decode_body, encode_record, LEN_PREFIX, MAX_BODY_LEN, MAX_DATA_LEN};
use crate::entry::Entry;
use crate::error::{Error, ProblemKind, Result};

/// Writes framed records (`u32 LE length ‖ protobuf(WAL_Entry)`) to `W`, exactly the
/// bytes a [`Wal`](crate::Wal) writes into a segment for the same entries.
///
/// Each record is handed to `W` with one `write_all`; wrap a file in a
/// [`BufWriter`](std::io::BufWriter) to batch them. Nothing is synced: that is the
/// caller's (or [`Wal`](crate::Wal)'s) job.
///
/// ```
/// use walctl::{EntryReader, EntryWriter};
/// let mut w = EntryWriter::new(Vec::new());
/// w.write_entry(1, b"hello", false)?;
/// w.write_entry(2, b"state", true)?;
/// let bytes = w.into_inner();
/// let entries = EntryReader::new(&bytes[..]).collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(entries[1].data, b"state");
/// assert!(entries[1].checkpoint);
/// # Ok::<(), walctl::Error>(())
/// ```
#[derive(Debug)]
pub struct EntryWriter<W> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> EntryWriter<W> {
    /// A writer of records to `out`.
    pub fn new(out: W) -> Self {
        EntryWriter {
            out,
            buf: Vec::new(),
        }
    }

    /// Writes one record. The LSN is the caller's to choose; readers of a log expect
    /// each to be the previous one plus 1.
    pub fn write_entry(&mut self, lsn: u64, data: &[u8], checkpoint: bool) -> Result<()> {
        if data.len() > MAX_DATA_LEN {
            return Err(Error::RecordTooLarge {
                len: data.len() as u64,
                max: MAX_DATA_LEN as u64,
            });
        }
        self.buf.clear();
        encode_record(&mut self.buf, lsn, data, checkpoint);
        self.out
            .write_all(&self.buf)
            .map_err(|source| Error::Stream {
                op: "write",
                source,
            })
    }

    /// Flushes `W`.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|source| Error::Stream {
            op: "flush",
            source,
        })
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The underlying writer, given back.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Reads framed records from `R`, one [`Entry`] per item, until the end of the stream.
///
/// Every record's CRC is checked. A record cut short at the end (a torn tail), a
/// length prefix above [`MAX_BODY_LEN`], a body that does not decode or a CRC that
/// does not match is an `Err` item ([`Error::Record`], with the byte offset), after
/// which the iterator ends. Memory is bounded by the largest record actually present:
/// a length prefix is never trusted to size an allocation. LSN order is not checked
/// here (a [`WalReader`](crate::WalReader) checks it across a log's segments).
/// `segment_id` of the entries is 0 and `offset` is the record's offset in the stream.
#[derive(Debug)]
pub struct EntryReader<R> {
    input: R,
    offset: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: Read> EntryReader<R> {
    /// A reader of records from `input`.
    pub fn new(input: R) -> Self {
        EntryReader {
            input,
            offset: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    /// Bytes consumed so far: the offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The underlying reader, given back.
    pub fn into_inner(self) -> R {
        self.input
    }

    fn bad(&self, kind: ProblemKind) -> Error {
        Error::Record {
            offset: Some(self.offset),
            kind,
        }
    }

    fn read_one(&mut self) -> Result<Option<Entry>> {
        let mut prefix = [0u8; LEN_PREFIX];
        let got = read_up_to(&mut self.input, &mut prefix)?;
        if got == 0 {
            return Ok(None);
        }
        if got < LEN_PREFIX {
            return Err(self.bad(ProblemKind::TruncatedPrefix {
                available: got as u64,
            }));
        }
        let len = u32::from_le_bytes(prefix);
        if len > MAX_BODY_LEN {
            return Err(self.bad(ProblemKind::LengthTooLarge {
                len: len.into(),
                max: MAX_BODY_LEN.into(),
            }));
        }
        // `take` + `read_to_end` grows the buffer with the bytes that arrive, so a
        // damaged prefix over a short stream costs no more than the stream holds.
        self.buf.clear();
        (&mut self.input)
            .take(len.into())
            .read_to_end(&mut self.buf)
            .map_err(|source| Error::Stream { op: "read", source })?;
        if self.buf.len() < len as usize {
            return Err(self.bad(ProblemKind::TruncatedRecord {
                len: len.into(),
                available: self.buf.len() as u64,
            }));
        }
        let rec = decode_body(&self.buf).map_err(|e| {
            self.bad(ProblemKind::Undecodable {
                reason: e.to_string(),
            })
        })?;
        if !rec.crc_ok() {
            return Err(self.bad(ProblemKind::CrcMismatch {
                stored: rec.crc,
                computed: rec.computed_crc(),
            }));
        }
        let entry = Entry {
            lsn: rec.lsn,
            data: rec.data.to_vec(),
            checkpoint: rec.checkpoint,
            segment_id: 0,
            offset: self.offset,
        };
        self.offset += (LEN_PREFIX + self.buf.len()) as u64;
        Ok(Some(entry))
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    crate::storage::read_up_to(r, buf).map_err(|source| Error::Stream { op: "read", source })
}

impl<R: Read> Iterator for EntryReader<R> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.done {
            return None;
        }
        let res = self.read_one().transpose();
        if !matches!(res, Some(Ok(_))) {
            self.done = true;
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn written(entries: &[(u64, &[u8], bool)]) -> Vec<u8> {
        let mut w = EntryWriter::new(Vec::new());
        for &(lsn, data, cp) in entries {
            w.write_entry(lsn, data, cp).unwrap();
        }
        w.into_inner()
    }

    #[test]
    fn round_trip_with_offsets() {
        let bytes = written(&[(1, b"a", false), (2, b"", true), (3, &[7; 300], false)]);
        let got: Vec<Entry> = EntryReader::new(&bytes[..]).map(Result::unwrap).collect();
        assert_eq!(got.len(), 3);
        assert_eq!((got[1].lsn, got[1].checkpoint), (2, true));
        assert_eq!(got[2].data, vec![7; 300]);
        assert_eq!(got[0].offset, 0);
        let first = crate::codec::record_len(1, b"a", false) as u64;
        assert_eq!(got[1].offset, first);
        assert_eq!(
            got[2].offset,
            first + crate::codec::record_len(2, b"", true) as u64
        );
    }

    #[test]
    fn every_cut_of_the_last_record_is_an_error_after_the_intact_ones() {
        let bytes = written(&[(1, b"first", false), (2, b"second record", false)]);
        let first_len = crate::codec::record_len(1, b"first", false);
        for cut in first_len + 1..bytes.len() {
            let items: Vec<Result<Entry>> = EntryReader::new(&bytes[..cut]).collect();
            assert_eq!(items.len(), 2, "cut at {cut}");
            assert_eq!(items[0].as_ref().unwrap().lsn, 1);
            let err = items[1].as_ref().unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Record {
                        offset: Some(o),
                        kind: ProblemKind::TruncatedPrefix { .. } | ProblemKind::TruncatedRecord { .. }
                    } if *o == first_len as u64
                ),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn a_huge_length_prefix_allocates_nothing_and_a_flipped_byte_fails_the_crc() {
        let mut huge = (MAX_BODY_LEN + 1).to_le_bytes().to_vec();
        huge.extend_from_slice(b"xx");
        let err = EntryReader::new(&huge[..]).next().unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Record {
                    kind: ProblemKind::LengthTooLarge { .. },
                    ..
                }
            ),
            "{err}"
        );
        // A prefix within bounds over a short stream: only what is there is read.
        let mut short = (MAX_BODY_LEN - 1).to_le_bytes().to_vec();
        short.extend_from_slice(&[1, 2, 3]);
        let mut r = EntryReader::new(&short[..]);
        let err = r.next().unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Record {
                    kind: ProblemKind::TruncatedRecord { available: 3, .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(r.buf.capacity() < 1 << 20, "{}", r.buf.capacity());
        assert!(r.next().is_none());

        let mut bytes = written(&[(5, b"payload", false)]);
        let at = bytes.len() - 10;
        bytes[at] ^= 0x01;
        let err = EntryReader::new(&bytes[..]).next().unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Record {
                    kind: ProblemKind::CrcMismatch { .. } | ProblemKind::Undecodable { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn write_errors_keep_the_io_error() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::StorageFull.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = EntryWriter::new(Full)
            .write_entry(1, b"x", false)
            .unwrap_err();
        let io = std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .expect("io::Error as source");
        assert_eq!(io.kind(), io::ErrorKind::StorageFull);
    }
}
