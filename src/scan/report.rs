//! A whole log at once: [`scan_log`] and its [`ScanReport`], checked in two
//! halves on two threads when the log is large.

use std::sync::Arc;

use serde::Serialize;

use crate::error::{Problem, Result, Severity};
use crate::segment::{list_segments, SegmentFile};
use crate::storage::ReadStorage;

use super::event::{Event, SegmentSummary};
use super::options::ScanOptions;
use super::scanner::Scanner;

/// The newest checkpoint of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckpointPos {
    /// Its LSN.
    pub lsn: u64,
    /// The segment holding it.
    pub segment_id: u64,
}

/// Everything a full scan learnt: per segment, and for the whole log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    /// One summary per segment, in id order.
    pub segments: Vec<SegmentSummary>,
    /// Intact records.
    pub records: u64,
    /// First intact LSN.
    pub first_lsn: Option<u64>,
    /// Last intact LSN.
    pub last_lsn: Option<u64>,
    /// Checkpoint records.
    pub checkpoints: u64,
    /// The newest intact checkpoint.
    pub newest_checkpoint: Option<CheckpointPos>,
    /// Total bytes of all segments.
    pub bytes: u64,
}

impl ScanReport {
    /// Every problem, in log order.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.segments.iter().filter_map(|s| s.problem.as_ref())
    }

    /// The worst severity found, `None` for a clean log.
    pub fn worst(&self) -> Option<Severity> {
        self.problems().map(|p| p.severity).max()
    }

    /// The newest segment that holds at least one intact record.
    pub fn last_lsn_segment(&self) -> Option<&SegmentSummary> {
        self.segments.iter().rev().find(|s| s.last_lsn.is_some())
    }
}

/// Scans a whole log and summarises it (records are read, checked and dropped).
/// `progress` is called with the bytes done after each segment and every few MiB.
/// A large log is checked in two halves at once (see [`ScanOptions::parallel_from`]).
pub fn scan_log(
    storage: Arc<dyn ReadStorage>,
    opts: ScanOptions,
    mut progress: impl FnMut(u64),
) -> Result<ScanReport> {
    // Never backwards, also when a split scan is redone in one pass.
    let mut shown = 0;
    let mut progress = |done: u64| {
        if done > shown {
            shown = done;
            progress(done);
        }
    };
    let segments = list_segments(storage.as_ref())?;
    if let Some(split) = split_point(&opts, &segments) {
        if let Some(report) = scan_halves(&storage, &opts, &segments, split, &mut progress) {
            return Ok(report);
        }
    }
    let mut scanner = Scanner::new(storage, opts)?;
    let newest_checkpoint = drain(&mut scanner, &mut progress)?;
    Ok(report(scanner.summaries, newest_checkpoint))
}

/// Reads every record of `scanner`, reporting progress; returns the newest checkpoint.
fn drain(scanner: &mut Scanner, progress: &mut dyn FnMut(u64)) -> Result<Option<CheckpointPos>> {
    let mut done_before = 0u64;
    let mut last_report = 0u64;
    let mut newest_checkpoint = None;
    while let Some(ev) = scanner.next()? {
        match ev {
            Event::Record(r) => {
                if r.checkpoint {
                    newest_checkpoint = Some(CheckpointPos {
                        lsn: r.lsn,
                        segment_id: r.segment_id,
                    });
                }
                let done = done_before + r.offset + r.len;
                if done - last_report >= 4 << 20 {
                    last_report = done;
                    progress(done);
                }
            }
            Event::SegmentEnd(s) => {
                done_before += s.size;
                last_report = done_before;
                progress(done_before);
            }
            // A whole-log check reports what is on disk; records retired while it
            // read are no damage.
            Event::Retired(_) => {}
        }
    }
    Ok(newest_checkpoint)
}

fn report(segments: Vec<SegmentSummary>, newest_checkpoint: Option<CheckpointPos>) -> ScanReport {
    ScanReport {
        records: segments.iter().map(|s| s.records).sum(),
        first_lsn: segments.iter().find_map(|s| s.first_lsn),
        last_lsn: segments.iter().rev().find_map(|s| s.last_lsn),
        checkpoints: segments.iter().map(|s| s.checkpoints).sum(),
        newest_checkpoint,
        bytes: segments.iter().map(|s| s.size).sum(),
        segments,
    }
}

/// Where to split a log for [`scan_halves`] (the first segment of the newer half),
/// when it is worth it: a large log of two or more segments, a whole-log scan, and
/// two cores.
fn split_point(opts: &ScanOptions, segments: &[SegmentFile]) -> Option<usize> {
    if opts.follow || opts.from_lsn.is_some() || opts.stop_at_first_problem {
        return None;
    }
    let total: u64 = segments.iter().map(|s| s.size).sum();
    if segments.len() < 2 || opts.parallel_from.is_none_or(|min| total < min) {
        return None;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    let mut sum = 0;
    let half = segments
        .iter()
        .position(|s| {
            sum += s.size;
            sum >= total / 2
        })
        .unwrap_or(0);
    Some((half + 1).clamp(1, segments.len() - 1))
}

/// Checks the older segments on a second thread while this one checks the newer,
/// each with its own scanner, and joins the halves if the seam is clean: the older
/// half ends without a problem, the newer starts with an intact record carrying the
/// next LSN, and no segment was retired under either. Anything else (an error, a
/// problem at the seam) returns `None`, and the caller reads the log in one pass,
/// which decides what the problem is. With two cores each half reads for itself (a
/// read-ahead thread per half would only take turns with it).
fn scan_halves(
    storage: &Arc<dyn ReadStorage>,
    opts: &ScanOptions,
    segments: &[SegmentFile],
    split: usize,
    progress: &mut dyn FnMut(u64),
) -> Option<ScanReport> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = opts
        .clone()
        .read_ahead_from(opts.read_ahead_from.filter(|_| cores >= 4));
    let (older, newer) = segments.split_at(split);
    let older_done = std::sync::atomic::AtomicU64::new(0);
    let older_bytes: u64 = older.iter().map(|s| s.size).sum();
    let half = |segs: &[SegmentFile], tail: bool, progress: &mut dyn FnMut(u64)| {
        let mut scanner = Scanner::over(storage.clone(), opts.clone(), segs.to_vec(), tail).ok()?;
        let checkpoint = drain(&mut scanner, progress).ok()?;
        scanner.retired.is_empty().then(|| {
            let last = scanner.prev_lsn;
            (scanner.summaries, checkpoint, last)
        })
    };
    // No thread to be had: one pass, like a small log.
    let (a, b) = std::thread::scope(|s| {
        let older_half = std::thread::Builder::new()
            .name("walctl-scan".into())
            .spawn_scoped(s, || {
                half(older, false, &mut |d| {
                    older_done.store(d, std::sync::atomic::Ordering::Relaxed)
                })
            })
            .ok()?;
        let b = half(newer, true, &mut |d| {
            progress(older_done.load(std::sync::atomic::Ordering::Relaxed) + d)
        });
        Some((older_half.join().ok().flatten(), b))
    })?;
    let (
        (mut summaries, older_checkpoint, Some(last)),
        Some((newer_summaries, newer_checkpoint, _)),
    ) = (a?, b)
    else {
        return None;
    };
    let seam_clean = summaries.last().is_some_and(|s| s.problem.is_none())
        && newer_summaries.first().is_some_and(|s| {
            last.checked_add(1)
                .is_some_and(|next| s.first_lsn == Some(next))
        });
    if !seam_clean {
        return None;
    }
    summaries.extend(newer_summaries);
    progress(older_bytes + summaries[split..].iter().map(|s| s.size).sum::<u64>());
    Some(report(summaries, newer_checkpoint.or(older_checkpoint)))
}
