//! One step over one record: framing, body, continuity, and the verdict on what
//! the step yields.

use crate::codec::{could_be_cut_short, decode_body, LEN_PREFIX};
use crate::error::{ProblemKind, Result};

use super::event::{FoundRecord, Step};
use super::holes::Hole;
use super::scanner::{Position, Scanner};
use super::source::read_error;

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

impl Scanner {
    /// Reads one step without borrowing the buffer in the result: makes sure a
    /// segment is open, checks the bytes at the position (framing, body, continuity)
    /// and decides what the step yields (verdict).
    pub(super) fn step(&mut self) -> Result<Step> {
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
}
