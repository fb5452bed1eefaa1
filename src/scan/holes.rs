//! Segments that are gone or missing: opening the next one past those retired
//! under the scan, holes in the listed ids, and retired records reported as gaps.

use crate::error::{Error, IoCause, Problem, ProblemKind, Result, Severity};
use crate::segment::{list_segments, SegmentFile};

use super::event::{RetiredGap, SegmentSummary, Step};
use super::scanner::{Position, Scanner};

/// What an LSN jump at the start of a segment, over ids missing from the log, means.
pub(super) enum Hole {
    /// Older segments are still there: the missing ones were not retired.
    Missing { first_id: u64, last_id: u64 },
    /// Nothing older is left: retention deleted them while the log was read.
    Retired { first_id: u64, last_id: u64 },
}

/// What an open of a listed segment found.
pub(super) enum Opened {
    Yes,
    /// It is gone; `front`: retired from the front of the log.
    Gone {
        front: bool,
        err: Error,
    },
    /// It is there but cannot be read.
    Unreadable(Error),
}

impl Scanner {
    /// Whether segment `idx`, which could not be opened because it does not exist
    /// (any more), was retired by retention: retention deletes segments oldest
    /// first, so a segment retired from the front leaves no older segment behind. A
    /// segment missing from the middle of the log is damage, not retirement.
    fn retired_from_front(&self, idx: usize) -> Result<bool> {
        let id = self.segments[idx].id;
        let now = list_segments(self.storage.as_ref())?;
        Ok(!now.iter().any(|s| s.id <= id))
    }

    /// Opens the current segment and says what happened when it could not.
    fn try_open_current(&mut self) -> Result<Opened> {
        let err = match self.open_current() {
            Ok(()) => return Ok(Opened::Yes),
            Err(e) => e,
        };
        let kind = match &err {
            Error::Io { source, .. } => source.kind(),
            _ => return Err(err),
        };
        if kind == std::io::ErrorKind::NotFound {
            let front = self.retired_from_front(self.idx)?;
            return Ok(Opened::Gone { front, err });
        }
        Ok(Opened::Unreadable(err))
    }

    /// Records an unreadable current segment as its problem and moves past it.
    fn finish_unreadable(&mut self, err: Error) {
        let seg = &self.segments[self.idx];
        // "open <path>: <OS error>": the operator sees which file and why; the
        // error itself stays the cause, for callers that look at its kind.
        let error = err.to_string();
        let cause = match err {
            Error::Io { source, .. } => IoCause::new(source),
            _ => IoCause::default(),
        };
        let mut summary = SegmentSummary::new(seg, seg.size);
        summary.problem = Some(Problem {
            segment: seg.name.clone(),
            segment_id: seg.id,
            offset: 0,
            severity: Severity::Unreadable,
            kind: ProblemKind::Unreadable { error },
            last_good_lsn: self.prev_lsn,
            cause,
        });
        self.cur_summary = Some(summary);
        let problem = self.cur_summary.as_mut().and_then(|s| s.problem.take());
        self.finish_segment(problem);
    }

    /// A directory listing taken while a writer creates segments may miss one that
    /// was created during it, yet show a newer one. Before reading a segment whose id
    /// does not follow the previous one's, the ids in between are looked for again.
    fn relist_hole(&mut self) -> Result<()> {
        let id = self.segments[self.idx].id;
        let prev = match self.idx.checked_sub(1) {
            Some(i) => self.segments[i].id,
            None => match self.summaries.last() {
                Some(s) => s.id,
                None => return Ok(()),
            },
        };
        if prev.saturating_add(1) >= id || self.hole_relisted == Some(id) {
            return Ok(());
        }
        self.hole_relisted = Some(id);
        let found: Vec<SegmentFile> = list_segments(self.storage.as_ref())?
            .into_iter()
            .filter(|s| s.id > prev && s.id < id)
            .collect();
        let at = self.idx;
        self.segments.splice(at..at, found);
        Ok(())
    }

    /// Ids between `prev_seg` and `seg_id` (both exclusive) that the scan never had
    /// as segments: the first and the last of them.
    fn missing_between(segments: &[SegmentFile], prev_seg: u64, seg_id: u64) -> Option<(u64, u64)> {
        let known: Vec<u64> = segments
            .iter()
            .map(|s| s.id)
            .filter(|&id| id > prev_seg && id < seg_id)
            .collect();
        let first = (prev_seg + 1..seg_id).find(|id| !known.contains(id))?;
        let last = (prev_seg + 1..seg_id)
            .rev()
            .find(|id| !known.contains(id))?;
        Some((first, last))
    }

    /// An LSN jump to `lsn` at the first record of a segment, over segment ids
    /// missing from the log: records retired under the scan, or a missing segment.
    /// `explained`: the jump needs no report (a problem before it, or reported).
    #[inline(always)]
    pub(super) fn classify_hole(
        &self,
        lsn: u64,
        at: &Position,
        explained: bool,
    ) -> Result<Option<Hole>> {
        let (Some(prev), Some(prev_seg)) = (self.prev_lsn, self.prev_segment) else {
            return Ok(None);
        };
        if at.offset != 0 || lsn <= prev.saturating_add(1) || explained {
            return Ok(None);
        }
        let Some((first_id, last_id)) = Self::missing_between(&self.segments, prev_seg, at.seg_id)
        else {
            return Ok(None);
        };
        let older_left = list_segments(self.storage.as_ref())?
            .iter()
            .any(|s| s.id < at.seg_id);
        Ok(Some(if older_left {
            Hole::Missing { first_id, last_id }
        } else {
            Hole::Retired { first_id, last_id }
        }))
    }

    /// Reports a hole found at the first record of the current segment, which is
    /// read again (and accepted) at the next step.
    pub(super) fn report_hole(&mut self, hole: Hole, rec_lsn: u64) -> Step {
        let prev = self.prev_lsn.unwrap_or(0);
        let seg_id = self.segments[self.idx].id;
        self.jump_reported = Some((seg_id, 0));
        match hole {
            Hole::Retired { first_id, last_id } => {
                self.gaps.push(RetiredGap {
                    first_lsn: prev + 1,
                    last_lsn: rec_lsn - 1,
                    first_segment: first_id,
                    last_segment: last_id,
                });
                Step::Retired
            }
            Hole::Missing { first_id, last_id } => {
                let name = crate::segment::segment_name(first_id);
                let mut summary = SegmentSummary::new(
                    &SegmentFile {
                        id: first_id,
                        name: name.clone(),
                        size: 0,
                    },
                    0,
                );
                summary.problem = Some(Problem {
                    segment: name,
                    segment_id: first_id,
                    offset: 0,
                    severity: Severity::Corruption,
                    kind: ProblemKind::MissingSegment {
                        first_id,
                        last_id,
                        first_lsn: prev + 1,
                        last_lsn: rec_lsn - 1,
                    },
                    last_good_lsn: self.prev_lsn,
                    cause: IoCause::default(),
                });
                self.summaries.push(summary);
                if self.opts.stop_at_first_problem {
                    self.stopped = true;
                }
                Step::SegmentEnd
            }
        }
    }

    /// Makes sure a segment is open: the next listed one that can be opened, skipping
    /// those retired since the listing. Returns the step to take instead when there is
    /// none left to read, or when the next one cannot be read.
    #[inline(always)]
    pub(super) fn open_next(&mut self) -> Result<Option<Step>> {
        while self.cur.is_none() {
            if self.idx >= self.segments.len() {
                if self.skipped_retired && self.tail && self.list_after_retired()? {
                    continue;
                }
                if self.opts.follow && (self.segments.is_empty() || self.skipped_retired) {
                    // A log with no segment yet: its first segment may still come.
                    // Or every segment known was retired before it could be read:
                    // newer ones exist, and `poll` finds them.
                    self.waiting = true;
                    return Ok(Some(Step::Waiting));
                }
                return Ok(Some(Step::Done));
            }
            self.relist_hole()?;
            match self.try_open_current()? {
                Opened::Yes => self.skipped_retired = false,
                // Deleted since it was listed. From the front of the log: retired,
                // and the next record says whether anything was missed. From the
                // middle: the segment after it reports it missing. The newest
                // segment gone while older ones stay is no retention: an error.
                Opened::Gone { front, err } => {
                    if !front && self.idx + 1 == self.segments.len() {
                        return Err(err);
                    }
                    let seg = self.segments.remove(self.idx);
                    self.retired.push(seg);
                    self.skipped_retired |= front;
                }
                Opened::Unreadable(err) => {
                    self.finish_unreadable(err);
                    return Ok(Some(Step::SegmentEnd));
                }
            }
        }
        Ok(None)
    }

    /// Every segment left in the list was retired while the scan read: the log went
    /// on in segments created since it was listed. Adds those; returns whether there
    /// were any.
    #[cold]
    fn list_after_retired(&mut self) -> Result<bool> {
        let known = self
            .segments
            .iter()
            .chain(&self.retired)
            .map(|s| s.id)
            .max();
        let newer: Vec<SegmentFile> = list_segments(self.storage.as_ref())?
            .into_iter()
            .filter(|s| known.is_none_or(|k| s.id > k))
            .collect();
        let found = !newer.is_empty();
        self.segments.extend(newer);
        Ok(found)
    }
}
