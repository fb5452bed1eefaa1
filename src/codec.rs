//! The one record codec: `u32 LE length ‖ protobuf(WAL_Entry)`, CRC-32/IEEE over
//! `data ‖ lsn as u64 LE`, encoded and decoded without allocating per record.
//!
//! Encoding writes the fields exactly as Go's `proto.Marshal` does for `WAL_Entry`
//! (field order 1..4, defaults omitted), so the bytes equal what the prost-generated
//! [`crate::proto::WalEntry`] encodes; the tests hold both to that. Decoding borrows
//! the data from the caller's buffer and never trusts a length before checking it.

use std::fmt;

/// Bytes in a record's length prefix.
pub const LEN_PREFIX: usize = 4;

/// The largest protobuf body (length prefix value) walctl reads or writes: 128 MiB.
/// A prefix above this is corruption, never an allocation.
pub const MAX_BODY_LEN: u32 = 128 * 1024 * 1024;

/// The largest payload [`encode_record`] accepts, leaving room for the other fields.
pub const MAX_DATA_LEN: usize = MAX_BODY_LEN as usize - 32;

/// The first byte of a body as writers lay it out: field 1 (the LSN), varint.
pub(crate) const TAG_LSN: u8 = 1 << 3;
const TAG_DATA: u8 = (2 << 3) | 2; // field 2, length-delimited
const TAG_CRC: u8 = 3 << 3; // field 3, varint
const TAG_CHECKPOINT: u8 = 4 << 3; // field 4, varint

/// CRC of a record: CRC-32/IEEE over the data followed by the LSN as 8 bytes LE.
#[inline]
pub fn record_crc(data: &[u8], lsn: u64) -> u32 {
    // Hasher::new() detects the CPU's features every time (about 10 ns, a third of a
    // 256-byte record's CRC); a clone of one made once does not.
    static PROTO: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
    let mut h = PROTO.get_or_init(crc32fast::Hasher::new).clone();
    h.update(data);
    h.update(&lsn.to_le_bytes());
    h.finalize()
}

#[inline]
fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least 1.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Size of the protobuf body for these field values.
#[inline]
pub(crate) fn body_len(lsn: u64, data_len: usize, crc: u32, checkpoint: bool) -> usize {
    let mut n = 0;
    if lsn != 0 {
        n += 1 + varint_len(lsn);
    }
    if data_len != 0 {
        n += 1 + varint_len(data_len as u64) + data_len;
    }
    if crc != 0 {
        n += 1 + varint_len(crc as u64);
    }
    if checkpoint {
        n += 2;
    }
    n
}

/// Size on disk (prefix included) of the record [`encode_record`] would write.
#[cfg(test)]
pub(crate) fn record_len(lsn: u64, data: &[u8], checkpoint: bool) -> usize {
    LEN_PREFIX + body_len(lsn, data.len(), record_crc(data, lsn), checkpoint)
}

/// Appends one framed record to `out` and returns its size on disk (prefix included).
///
/// The caller bounds `data` by [`MAX_DATA_LEN`]; this function asserts it only in
/// debug builds because every public write path checks it first.
#[inline]
pub fn encode_record(out: &mut Vec<u8>, lsn: u64, data: &[u8], checkpoint: bool) -> usize {
    debug_assert!(data.len() <= MAX_DATA_LEN);
    let crc = record_crc(data, lsn);
    let body = body_len(lsn, data.len(), crc, checkpoint);
    out.reserve(LEN_PREFIX + body);
    out.extend_from_slice(&(body as u32).to_le_bytes());
    if lsn != 0 {
        out.push(TAG_LSN);
        put_varint(out, lsn);
    }
    if !data.is_empty() {
        out.push(TAG_DATA);
        put_varint(out, data.len() as u64);
        out.extend_from_slice(data);
    }
    if crc != 0 {
        out.push(TAG_CRC);
        put_varint(out, crc as u64);
    }
    if checkpoint {
        out.push(TAG_CHECKPOINT);
        out.push(1);
    }
    LEN_PREFIX + body
}

/// A decoded record body; `data` borrows from the buffer it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Log sequence number.
    pub lsn: u64,
    /// The payload.
    pub data: &'a [u8],
    /// The stored CRC.
    pub crc: u32,
    /// Whether this is a checkpoint record.
    pub checkpoint: bool,
}

impl RecordRef<'_> {
    /// The CRC that data and LSN should have.
    #[inline]
    pub fn computed_crc(&self) -> u32 {
        record_crc(self.data, self.lsn)
    }

    /// Whether the stored CRC matches.
    #[inline]
    pub fn crc_ok(&self) -> bool {
        self.computed_crc() == self.crc
    }
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset inside the body where decoding failed.
    pub at: usize,
    /// What was wrong.
    pub reason: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at body byte {}", self.reason, self.at)
    }
}

impl std::error::Error for DecodeError {}

#[inline]
fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let start = *pos;
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some(&b) = buf.get(*pos) else {
            return Err(DecodeError {
                at: start,
                reason: "truncated varint",
            });
        };
        *pos += 1;
        if i == 9 && b > 1 {
            return Err(DecodeError {
                at: start,
                reason: "varint overflows 64 bits",
            });
        }
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b < 0x80 {
            return Ok(v);
        }
    }
    unreachable!("the loop returns by its tenth byte")
}

#[inline]
fn skip(buf: &[u8], pos: &mut usize, n: u64, at: usize) -> Result<(), DecodeError> {
    let remaining = (buf.len() - *pos) as u64;
    if n > remaining {
        return Err(DecodeError {
            at,
            reason: "field runs past the end of the record",
        });
    }
    *pos += n as usize;
    Ok(())
}

/// Whether `present`, the bytes found after a length prefix that claims `len` body
/// bytes (more than `present` holds), can be what a write cut short leaves of such a
/// record: the fields writers emit (LSN, data, CRC, checkpoint flag), in that order,
/// each cut off or consistent with `len`, possibly followed by zero bytes (blocks a
/// crash left unwritten). A whole record in fewer bytes than claimed, or anything
/// else, means the length prefix itself is damaged: corruption, not a torn tail.
/// Never allocates; reads only `present`.
pub fn could_be_cut_short(present: &[u8], len: u64) -> bool {
    // Trailing zeros may be unwritten blocks: what is left must be a cut-short record.
    // (Zeros that belong to the record only make it a shorter prefix of itself.)
    let end = present.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let present = &present[..end];
    // A varint: Some(value), or None when the bytes run out inside it (cut short);
    // Err(()) when it is malformed.
    let varint = |pos: &mut usize| -> Result<Option<u64>, ()> {
        let at = *pos;
        match get_varint(present, pos) {
            Ok(v) => Ok(Some(v)),
            // get_varint fails at the end of the bytes or on an overlong varint.
            Err(_) if present.len() - at < 10 => Ok(None),
            Err(_) => Err(()),
        }
    };
    let mut pos = 0;
    match present.first() {
        None => return true,
        Some(&TAG_LSN) => pos += 1,
        Some(_) => return false,
    }
    match varint(&mut pos) {
        Ok(Some(lsn)) if lsn != 0 => {}
        Ok(None) => return true,
        _ => return false,
    }
    let Some(&tag) = present.get(pos) else {
        return true;
    };
    if tag == TAG_DATA {
        pos += 1;
        let n = match varint(&mut pos) {
            Ok(Some(n)) => n,
            Ok(None) => return true,
            Err(()) => return false,
        };
        // After the data come the CRC field (absent when 0, else 2..=6 bytes) and the
        // checkpoint flag (absent, or 2 bytes): 0 or 2..=8 bytes in all.
        let end = (pos as u64).saturating_add(n);
        match len.checked_sub(end) {
            Some(rest) if rest <= 8 && rest != 1 => {}
            _ => return false,
        }
        if end >= present.len() as u64 {
            return true;
        }
        pos = end as usize;
    }
    if present[pos] == TAG_CRC {
        pos += 1;
        match varint(&mut pos) {
            Ok(Some(crc)) if crc <= u32::MAX as u64 => {}
            Ok(None) => return true,
            _ => return false,
        }
    }
    // Only the checkpoint flag can be missing now.
    len.checked_sub(pos as u64) == Some(2) && [TAG_CHECKPOINT, 1].starts_with(&present[pos..])
}

/// The LSN of the record whose body starts with `head`, when those bytes can begin a
/// body of `len` bytes laid out as writers lay it out: a non-zero LSN first, then the
/// data field (its length leaving 0 or 2..=8 bytes for the CRC and checkpoint flag),
/// the CRC field, or the flag. The cheap test [`crate::salvage`] applies before a full
/// decode and CRC while it looks for where intact records start again after damage.
/// `head` is the whole body or at least its first 22 bytes; reads nothing else.
pub(crate) fn plausible_start(head: &[u8], len: u64) -> Option<u64> {
    if *head.first()? != TAG_LSN {
        return None;
    }
    let mut pos = 1;
    let lsn = get_varint(head, &mut pos).ok().filter(|&l| l != 0)?;
    let after_lsn = len.checked_sub(pos as u64)?;
    let fits = match head.get(pos) {
        None => after_lsn == 0,
        Some(&TAG_DATA) => {
            pos += 1;
            let n = get_varint(head, &mut pos).ok()?;
            let rest = len.checked_sub(pos as u64)?.checked_sub(n)?;
            rest <= 8 && rest != 1
        }
        Some(&TAG_CRC) => (2..=8).contains(&after_lsn),
        Some(&TAG_CHECKPOINT) => after_lsn == 2,
        Some(_) => false,
    };
    fits.then_some(lsn)
}

/// Reads a varint for the fast path: `None` when it is truncated or overflows (the
/// general decoder then reports why).
#[inline(always)]
fn fast_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    // Eight bytes at once: the first byte without the continuation bit ends the
    // varint, and the 7-bit groups before it are packed with shifts and masks instead
    // of a loop over bytes (varints were a third of the scanner's own time). With
    // fewer than eight bytes left (the CRC at the end of a body), the last eight bytes
    // of `buf` are read and shifted down, zeros above: a varint that runs past the end
    // then shows as longer than what is left. (Copying the tail into a zeroed word
    // instead stalled on store forwarding.)
    let left = buf.len().checked_sub(*pos)?;
    let w = match left {
        0 => return None,
        8.. => u64::from_le_bytes(buf[*pos..*pos + 8].try_into().unwrap()),
        _ if buf.len() >= 8 => {
            let last = u64::from_le_bytes(buf[buf.len() - 8..].try_into().unwrap());
            last >> (8 * (8 - left))
        }
        _ => return slow_varint(buf, pos),
    };
    let ends = !w & 0x8080_8080_8080_8080;
    if ends != 0 {
        let n = (ends.trailing_zeros() as usize >> 3) + 1;
        if n > left {
            return None;
        }
        let w = w & (u64::MAX >> (64 - 8 * n));
        let v = (w & 0x7f)
            | ((w >> 1) & (0x7f << 7))
            | ((w >> 2) & (0x7f << 14))
            | ((w >> 3) & (0x7f << 21))
            | ((w >> 4) & (0x7f << 28))
            | ((w >> 5) & (0x7f << 35))
            | ((w >> 6) & (0x7f << 42))
            | ((w >> 7) & (0x7f << 49));
        *pos += n;
        return Some(v);
    }
    // Nine or ten bytes.
    slow_varint(buf, pos)
}

/// [`fast_varint`] a byte at a time.
#[inline(never)]
fn slow_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    let mut shift = 0;
    while shift < 64 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            // The tenth byte may only carry the top bit of a u64.
            return (shift < 63 || b <= 1).then_some(v);
        }
        shift += 7;
    }
    None
}

/// The layout walctl and the Go reference write: `lsn, data, crc[, checkpoint=1]`,
/// each present once, in field order. Anything else (absent defaults, other order,
/// unknown or repeated fields, damage) returns `None` and goes to the general decoder,
/// which gives the same result for every body this accepts.
#[inline(always)]
fn decode_canonical(buf: &[u8]) -> Option<RecordRef<'_>> {
    let mut pos = 0;
    if *buf.first()? != TAG_LSN {
        return None;
    }
    pos += 1;
    let lsn = fast_varint(buf, &mut pos)?;
    if *buf.get(pos)? != TAG_DATA {
        return None;
    }
    pos += 1;
    let n = fast_varint(buf, &mut pos)?;
    if n > (buf.len() - pos) as u64 {
        return None;
    }
    let data = &buf[pos..pos + n as usize];
    pos += n as usize;
    if *buf.get(pos)? != TAG_CRC {
        return None;
    }
    pos += 1;
    let crc = u32::try_from(fast_varint(buf, &mut pos)?).ok()?;
    let checkpoint = match &buf[pos..] {
        [] => false,
        [TAG_CHECKPOINT, 1] => true,
        _ => return None,
    };
    Some(RecordRef {
        lsn,
        data,
        crc,
        checkpoint,
    })
}

/// Decodes a protobuf `WAL_Entry` body (the bytes after the length prefix).
///
/// Accepts what a protobuf parser accepts for this message: fields in any order,
/// repeated scalar fields (the last one wins), unknown fields (skipped). Rejects
/// wire-type mismatches on known fields, groups, field number 0 and anything that
/// runs past the end; and, stricter than protobuf, two encodings no writer produces,
/// so that a flipped bit in them is seen: a CRC varint above `u32::MAX` (protobuf
/// would truncate it) and an `isCheckpoint` other than 0 or 1 (protobuf reads any
/// non-zero value as true). Never panics, never allocates. The layout walctl writes takes a
/// straight-line fast path.
#[inline]
pub fn decode_body(buf: &[u8]) -> Result<RecordRef<'_>, DecodeError> {
    match decode_canonical(buf) {
        Some(rec) => Ok(rec),
        None => decode_general(buf),
    }
}

#[inline(never)]
fn decode_general(buf: &[u8]) -> Result<RecordRef<'_>, DecodeError> {
    let mut rec = RecordRef {
        lsn: 0,
        data: &[],
        crc: 0,
        checkpoint: false,
    };
    let mut pos = 0;
    while pos < buf.len() {
        let at = pos;
        let key = get_varint(buf, &mut pos)?;
        let field = key >> 3;
        let wire = (key & 7) as u8;
        match (field, wire) {
            (0, _) => {
                return Err(DecodeError {
                    at,
                    reason: "field number 0",
                })
            }
            (1, 0) => rec.lsn = get_varint(buf, &mut pos)?,
            (2, 2) => {
                let n = get_varint(buf, &mut pos)?;
                let start = pos;
                skip(buf, &mut pos, n, at)?;
                rec.data = &buf[start..pos];
            }
            (3, 0) => {
                // A uint32 varint that does not fit 32 bits is never written; reading
                // it truncated would hide a flipped bit in the CRC's fifth byte.
                rec.crc = u32::try_from(get_varint(buf, &mut pos)?).map_err(|_| DecodeError {
                    at,
                    reason: "CRC does not fit 32 bits",
                })?
            }
            (4, 0) => {
                // FORMAT.md: absent and false are both a regular record. A bool other
                // than 0 or 1 is never written: it is damage, not `true`.
                rec.checkpoint = match get_varint(buf, &mut pos)? {
                    0 => false,
                    1 => true,
                    _ => {
                        return Err(DecodeError {
                            at,
                            reason: "isCheckpoint is neither 0 nor 1",
                        })
                    }
                }
            }
            (1..=4, _) => {
                return Err(DecodeError {
                    at,
                    reason: "wrong wire type for a WAL_Entry field",
                })
            }
            (_, 0) => {
                get_varint(buf, &mut pos)?;
            }
            (_, 1) => skip(buf, &mut pos, 8, at)?,
            (_, 2) => {
                let n = get_varint(buf, &mut pos)?;
                skip(buf, &mut pos, n, at)?;
            }
            (_, 5) => skip(buf, &mut pos, 4, at)?,
            _ => {
                return Err(DecodeError {
                    at,
                    reason: "unsupported wire type",
                })
            }
        }
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record as the prost-generated type encodes it: an encoder independent of
    /// this file's.
    #[cfg(feature = "proto")]
    fn prost_bytes(lsn: u64, data: &[u8], checkpoint: bool) -> Vec<u8> {
        use crate::entry::Entry;
        use crate::proto::WalEntry;
        use prost::Message;
        let entry = Entry {
            lsn,
            data: data.to_vec(),
            checkpoint,
            segment_id: 0,
            offset: 0,
        };
        let body = WalEntry::from(&entry).encode_to_vec();
        let mut out = (body.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn varint_len_matches_encoding() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "value {v}");
            let mut pos = 0;
            assert_eq!(get_varint(&b, &mut pos).unwrap(), v);
        }
    }

    #[cfg(feature = "proto")]
    #[test]
    fn prost_messages_convert_to_entries_and_back_checking_the_crc() {
        use crate::entry::Entry;
        use crate::proto::WalEntry;
        use prost::Message;
        for (lsn, data, cp) in [(1u64, &b"hello"[..], false), (9, b"", true)] {
            let mut ours = Vec::new();
            encode_record(&mut ours, lsn, data, cp);
            let msg = WalEntry::decode(&ours[LEN_PREFIX..]).unwrap();
            let entry = Entry::try_from(msg.clone()).unwrap();
            assert_eq!(
                (entry.lsn, &entry.data[..], entry.checkpoint),
                (lsn, data, cp)
            );
            assert_eq!(WalEntry::from(&entry), msg);
            let bad = WalEntry {
                crc: msg.crc ^ 1,
                ..msg
            };
            let err = Entry::try_from(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    crate::Error::Record {
                        kind: crate::ProblemKind::CrcMismatch { .. },
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[cfg(feature = "proto")]
    #[test]
    fn encoding_equals_prost() {
        for (lsn, data, cp) in [
            (1u64, &b""[..], false),
            (2, b"hello", false),
            (300, &[0u8; 200][..], true),
            (u64::MAX, b"x", true),
            (7, b"", true),
        ] {
            let mut ours = Vec::new();
            let n = encode_record(&mut ours, lsn, data, cp);
            assert_eq!(n, ours.len());
            assert_eq!(ours, prost_bytes(lsn, data, cp), "lsn {lsn}");
            assert_eq!(record_len(lsn, data, cp), n);
            let rec = decode_body(&ours[4..]).unwrap();
            assert_eq!((rec.lsn, rec.data, rec.checkpoint), (lsn, data, cp));
            assert!(rec.crc_ok());
        }
    }

    #[test]
    fn fast_path_agrees_with_the_general_decoder() {
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        for (lsn, data, cp) in [
            (1u64, &b"abc"[..], false),
            (u64::MAX, &[7u8; 300][..], true),
            (0, b"x", false),
            (5, b"", true),
        ] {
            let mut rec = Vec::new();
            encode_record(&mut rec, lsn, data, cp);
            bodies.push(rec[4..].to_vec());
        }
        // Checkpoint false written explicitly, a repeated LSN, an unknown field, fields
        // out of order, a ten-byte varint that overflows, a truncated CRC.
        bodies.push(vec![0x08, 1, 0x12, 1, b'a', 0x18, 2, 0x20, 0]);
        bodies.push(vec![0x08, 1, 0x12, 1, b'a', 0x18, 2, 0x08, 9]);
        bodies.push(vec![0x08, 1, 0x12, 1, b'a', 0x18, 2, 0x28, 3]);
        bodies.push(vec![0x12, 1, b'a', 0x08, 1, 0x18, 2]);
        bodies.push(vec![
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x12, 0, 0x18, 1,
        ]);
        bodies.push(vec![0x08, 1, 0x12, 1, b'a', 0x18, 0x80]);
        bodies.push(vec![0x08, 1, 0x12, 5, b'a', 0x18, 2]);
        for b in &bodies {
            assert_eq!(decode_body(b), decode_general(b), "{b:?}");
            if let Some(fast) = decode_canonical(b) {
                assert_eq!(Ok(fast), decode_general(b), "{b:?}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_path_agrees_on_arbitrary_bytes(b in proptest::collection::vec(0u8..=255, 0..40)) {
            if let Some(fast) = decode_canonical(&b) {
                proptest::prop_assert_eq!(Ok(fast), decode_general(&b));
            }
        }

        #[test]
        fn fast_varint_agrees_with_the_general_one(v: u64, shift in 0u32..64,
                                                   head in proptest::collection::vec(0u8..=255, 0..12),
                                                   tail in proptest::collection::vec(0u8..=255, 0..12),
                                                   junk in proptest::collection::vec(0u8..=255, 0..12)) {
            // Every length from 1 to 10 bytes, after anything and followed by anything:
            // with eight bytes from its start, with fewer (the end of the buffer read
            // as a word), and with fewer than eight in the whole buffer; and arbitrary
            // bytes. The varint may also run past the end (`tail` cut off).
            let mut buf = head.clone();
            put_varint(&mut buf, v >> shift);
            buf.extend_from_slice(&tail);
            let cut = buf.len().saturating_sub(tail.len() + 1).max(head.len());
            for (b, start) in [(&buf[..], head.len()), (&buf[..cut], head.len()), (&junk[..], 0)] {
                let (mut p1, mut p2) = (start, start);
                let fast = fast_varint(b, &mut p1);
                let general = get_varint(b, &mut p2).ok();
                proptest::prop_assert_eq!(fast, general, "{:?} from {}", b, start);
                if fast.is_some() {
                    proptest::prop_assert_eq!(p1, p2);
                }
            }
        }

        #[test]
        fn fast_path_agrees_on_mutated_records(lsn: u64, len in 0usize..200, cp: bool,
                                               at: usize, byte: u8) {
            let data = vec![0xa5u8; len];
            let mut rec = Vec::new();
            encode_record(&mut rec, lsn, &data, cp);
            let mut body = rec[4..].to_vec();
            let i = at % body.len();
            body[i] = byte;
            proptest::prop_assert_eq!(decode_body(&body), decode_general(&body));
        }
    }

    /// Records of every shape the length checks care about: empty, one byte with the
    /// checkpoint flag, a multi-byte length, the largest LSN.
    #[cfg(feature = "proto")]
    const SAMPLES: &[(u64, &[u8], bool)] = &[
        (1, b"", false),
        (7, b"x", true),
        (300, &[0xff; 200], false),
        (u64::MAX, b"abc", true),
    ];

    #[cfg(feature = "proto")]
    #[test]
    fn cut_short_records_are_told_from_damaged_length_prefixes() {
        for &(lsn, data, cp) in SAMPLES {
            let rec = prost_bytes(lsn, data, cp);
            let body = &rec[LEN_PREFIX..];
            let len = body.len() as u64;
            // Every proper prefix of a body is what a cut-short write leaves, and so
            // is one followed by zeros (unwritten blocks).
            for cut in 0..body.len() {
                assert!(could_be_cut_short(&body[..cut], len), "{lsn} cut {cut}");
                let mut z = body[..cut].to_vec();
                z.resize(body.len() - 1, 0);
                assert!(could_be_cut_short(&z, len), "{lsn} cut {cut} + zeros");
            }
            // A whole body under a length prefix that claims more is a damaged prefix,
            // and so is a whole body followed by the start of the next record (except
            // the one ambiguous case: a regular record whose length grew by exactly
            // the 2 bytes of a checkpoint flag).
            for extra in [1u64, 3, 4, 100, 1 << 20] {
                assert!(!could_be_cut_short(body, len + extra), "{lsn} +{extra}");
            }
            assert_eq!(could_be_cut_short(body, len + 2), !cp, "{lsn} +2");
            let mut two = body.to_vec();
            two.extend_from_slice(&prost_bytes(lsn.saturating_add(1), data, cp)[..6]);
            assert!(!could_be_cut_short(&two, len + 50), "{lsn} then the next");
        }
        // Garbage is not a cut-short record.
        assert!(!could_be_cut_short(&[0x12, 0x05, 1], 40));
        assert!(!could_be_cut_short(
            &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
            40
        ));
    }

    #[cfg(feature = "proto")]
    #[test]
    fn plausible_start_accepts_every_written_layout_and_little_else() {
        for &(lsn, data, cp) in SAMPLES {
            let rec = prost_bytes(lsn, data, cp);
            let body = &rec[LEN_PREFIX..];
            let len = body.len() as u64;
            let head = &body[..body.len().min(22)];
            assert_eq!(plausible_start(head, len), Some(lsn), "{lsn}");
            // The same bytes under a length prefix that is off by more than the
            // optional fields allow are not a record start.
            assert_eq!(plausible_start(head, len + 9), None, "{lsn} +9");
            // (9: more than the CRC field and the flag can make up.)
            assert_eq!(
                plausible_start(head, len.saturating_sub(9)),
                None,
                "{lsn} -9"
            );
        }
        assert_eq!(plausible_start(&[0x12, 1, b'a'], 3), None, "data first");
        assert_eq!(plausible_start(&[0x08, 0, 0x18, 1], 4), None, "LSN 0");
        assert_eq!(plausible_start(&[0x08, 5], 2), Some(5), "LSN only");
        assert_eq!(plausible_start(&[0x08, 5, 0x30], 5), None, "unknown field");
    }

    #[test]
    fn decode_rejects_bad_bodies_without_panicking() {
        // Truncated varint, data running past the end, group wire type, field 0.
        for bad in [
            &[0x08u8, 0x80][..],
            &[0x12, 0x05, 1, 2],
            &[0x0b],
            &[0x00, 0x01],
        ] {
            assert!(decode_body(bad).is_err(), "{bad:?}");
        }
        // Stricter than protobuf: a CRC above 32 bits (here 2^32 + 5: its fifth byte
        // 0x10 holds bit 32) and a checkpoint flag of 2 are damage.
        let crc_33_bits = [0x08u8, 1, 0x18, 0x85, 0x80, 0x80, 0x80, 0x10];
        assert!(decode_body(&crc_33_bits).is_err());
        let mut crc_32_bits = crc_33_bits;
        crc_32_bits[7] = 0x0f;
        assert_eq!(decode_body(&crc_32_bits).unwrap().crc, 0xf000_0005);
        assert!(decode_body(&[0x08, 1, 0x18, 5, 0x20, 2]).is_err());
        // An explicit false is a regular record (FORMAT.md), an explicit true a checkpoint.
        assert!(
            !decode_body(&[0x08, 1, 0x18, 5, 0x20, 0])
                .unwrap()
                .checkpoint
        );
        assert!(
            decode_body(&[0x08, 1, 0x18, 5, 0x20, 1])
                .unwrap()
                .checkpoint
        );
        // Unknown fields are skipped.
        let rec = decode_body(&[0x08, 0x05, 0x28, 0x07, 0x35, 1, 2, 3, 4]).unwrap();
        assert_eq!(rec.lsn, 5);
    }
}
