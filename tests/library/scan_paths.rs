//! The scanner's two shortcuts for large logs, held to the answers of the plain
//! path on clean, flipped and cut logs:
//! - read-ahead (a helper thread reads a large segment a chunk ahead): the same
//!   records, summaries and first problem as reading on the caller's thread, with
//!   records straddling the chunk boundaries, including records longer than a chunk;
//! - the split scan (`scan_log` checks the older and the newer half of a large log
//!   on two threads): the same report as one pass, damage at the seam included.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use common::{copy_segments, cut, flip_bit, segment_names, tempdir, Rng};
use walctl::scan::{scan_log, Event, ScanOptions, ScanReport, Scanner, SegmentSummary};
use walctl::storage::FileStorage;
use walctl::writer::{SyncPolicy, Wal, WalOptions};

/// What a scan saw: every record (LSN, segment, offset, checkpoint, a digest of its
/// data), every segment summary, or the error it ended with.
#[derive(Debug, PartialEq)]
struct Seen {
    records: Vec<(u64, u64, u64, bool, u64)>,
    summaries: Vec<SegmentSummary>,
    error: Option<String>,
}

fn digest(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn scan(dir: &Path, read_ahead: bool) -> Seen {
    let storage = Arc::new(FileStorage::open(dir).unwrap());
    let opts = ScanOptions::default().read_ahead_from(if read_ahead { Some(0) } else { None });
    let mut seen = Seen {
        records: Vec::new(),
        summaries: Vec::new(),
        error: None,
    };
    let mut scanner = Scanner::new(storage, opts).unwrap();
    loop {
        match scanner.next() {
            Ok(Some(Event::Record(r))) => {
                seen.records
                    .push((r.lsn, r.segment_id, r.offset, r.checkpoint, digest(r.data)))
            }
            Ok(Some(Event::SegmentEnd(_))) => {}
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => break,
            Err(e) => {
                seen.error = Some(e.to_string());
                break;
            }
        }
    }
    seen.summaries = scanner.summaries().to_vec();
    seen
}

/// `scan_log`, split in two halves whatever the log's size, or in one pass.
fn report(dir: &Path, split: bool) -> Result<ScanReport, String> {
    let storage = Arc::new(FileStorage::open(dir).unwrap());
    let opts = ScanOptions::default().parallel_from(if split { Some(0) } else { None });
    let mut last = 0;
    let report = scan_log(storage, opts, |done| {
        assert!(done >= last, "progress went back from {last} to {done}");
        last = done;
    })
    .map_err(|e| e.to_string())?;
    assert_eq!(last, report.bytes, "progress must end at the log's size");
    Ok(report)
}

/// A log of three segments of about 3 MiB: mostly small records, and records of
/// 40 KiB, 100 KiB (more than the 64 KiB a chunk keeps in front of it) and 600 KiB
/// (more than two 256 KiB chunks), so records straddle chunk boundaries every way.
fn build_log(dir: &Path) -> u64 {
    let wal = Wal::open(
        dir,
        WalOptions::default()
            .max_segment_size(3 << 20)
            .max_segments(0)
            .sync(SyncPolicy::Never),
    )
    .unwrap();
    let mut rng = Rng::new(0x005e_ed0f_4ead);
    let (mut last, mut written) = (0, 0);
    // Two full segments and most of a third.
    while written < 8 << 20 {
        let len = match rng.below(100) {
            0 => 600 << 10,
            1..=2 => 100 << 10,
            3..=6 => 40 << 10,
            _ => rng.range(1, 400) as usize,
        };
        let data = rng.bytes(len);
        written += len;
        last = if rng.below(50) == 0 {
            wal.checkpoint(&data).unwrap()
        } else {
            wal.append(&data).unwrap()
        };
    }
    wal.close().unwrap();
    last
}

#[test]
fn read_ahead_reads_a_clean_log_exactly_as_the_callers_thread_does() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    let last = build_log(&dir);
    let ahead = scan(&dir, true);
    let direct = scan(&dir, false);
    assert_eq!(ahead.error, None);
    assert_eq!(ahead.records.len() as u64, last);
    assert!(ahead.summaries.iter().all(|s| s.problem.is_none()));
    assert_eq!(ahead, direct);
    let split = report(&dir, true).unwrap();
    assert_eq!(split.records, last);
    assert_eq!(split.segments.len(), 3);
    assert_eq!(split, report(&dir, false).unwrap());
}

#[test]
fn read_ahead_finds_the_same_first_problem_at_flips_and_cuts_across_chunk_boundaries() {
    let tmp = tempdir();
    let clean = tmp.path().join("clean");
    build_log(&clean);
    let names = segment_names(&clean);
    let newest = names.last().unwrap().clone();
    let middle = names[names.len() / 2].clone();
    let mut rng = Rng::new(0x0c4a_011e);
    let chunk = 256u64 << 10;
    let mut cases = 0;
    let oldest = names[0].clone();
    for (name, cut_it) in [
        (&oldest, false),
        (&middle, false),
        (&middle, true),
        (&newest, false),
        (&newest, true),
    ] {
        let size = std::fs::metadata(clean.join(name)).unwrap().len();
        // Around every chunk boundary, and at random places.
        let mut offsets: Vec<u64> = (1..=size / chunk)
            .flat_map(|k| [k * chunk - 3, k * chunk, k * chunk + 70])
            .filter(|&o| o < size)
            .collect();
        offsets.extend((0..6).map(|_| rng.below(size)));
        for off in offsets {
            let dir = tmp.path().join(format!("case-{cases}"));
            cases += 1;
            copy_segments(&clean, &dir);
            if cut_it {
                cut(&dir.join(name), off);
            } else {
                flip_bit(&dir.join(name), off, (off % 8) as u8);
            }
            let ahead = scan(&dir, true);
            let direct = scan(&dir, false);
            let what = if cut_it { "cut" } else { "flip" };
            assert_eq!(ahead, direct, "{what} {name} at {off}");
            assert_eq!(
                report(&dir, true),
                report(&dir, false),
                "split scan, {what} {name} at {off}"
            );
            let problems = ahead
                .summaries
                .iter()
                .filter(|s| s.problem.is_some())
                .count();
            assert!(
                problems > 0 || ahead.error.is_some() || (cut_it && name == &newest),
                "a {what} at {name}:{off} went unseen"
            );
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    assert!(cases > 30, "only {cases} cases");
}

#[test]
fn a_segment_cut_while_read_ahead_reads_it_is_an_error_not_a_short_clean_log() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    build_log(&dir);
    let first = segment_names(&dir)[0].clone();
    let size = std::fs::metadata(dir.join(&first)).unwrap().len();
    let storage = Arc::new(FileStorage::open(&dir).unwrap());
    let opts = ScanOptions::default().read_ahead_from(Some(0));
    let mut scanner = Scanner::new(storage, opts).unwrap();
    // The first record starts the helper thread on the first segment; then most of
    // the segment goes away under it.
    assert!(matches!(scanner.next().unwrap(), Some(Event::Record(_))));
    cut(&dir.join(&first), size / 4);
    // The thread is at most four 256 KiB chunks ahead, far short of the 3 MiB it was
    // told to read: it meets the end of the file and says so.
    let err = loop {
        match scanner.next() {
            Ok(Some(Event::Record(_))) => continue,
            Ok(other) => panic!("the scan went on past the cut: {other:?}"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(err.contains("shrank"), "{err}");
    assert!(err.contains(&first), "{err}");
}

#[test]
fn a_split_scan_finds_a_missing_or_repeated_segment_at_its_seam_as_one_pass_does() {
    let tmp = tempdir();
    let clean = tmp.path().join("clean");
    build_log(&clean);
    let names = segment_names(&clean);
    assert_eq!(names.len(), 3);
    // The middle segment gone: the halves are the oldest and the newest segment, and
    // the newest starts far past the LSN after the oldest's last.
    let gap = tmp.path().join("gap");
    copy_segments(&clean, &gap);
    std::fs::remove_file(gap.join(&names[1])).unwrap();
    // The middle segment again as a fourth: LSNs go back at the seam.
    let repeat = tmp.path().join("repeat");
    copy_segments(&clean, &repeat);
    std::fs::copy(clean.join(&names[1]), repeat.join("segment-3")).unwrap();
    for (dir, kind) in [(&gap, "missing_segment"), (&repeat, "lsn_regression")] {
        let one_pass = report(dir, false).unwrap();
        let problem = one_pass.segments.iter().find_map(|s| s.problem.as_ref());
        let problem = problem.unwrap_or_else(|| panic!("{kind}: one pass saw nothing"));
        let json = serde_json::to_value(problem).unwrap();
        assert_eq!(json["kind"], kind, "{json}");
        assert_eq!(report(dir, true).unwrap(), one_pass, "{kind}");
    }
}

#[test]
fn a_split_scan_after_the_last_possible_lsn_is_not_fooled_by_an_empty_segment() {
    // Crafted (no writer reaches u64::MAX): the older half ends at the last LSN, the
    // newer starts with an empty segment, then LSNs start again at 1. One pass calls
    // that a regression; "no next LSN" must not pass for "no first record".
    let tmp = tempdir();
    let dir = tmp.path();
    let segment = |id: u64, lsns: &[u64]| {
        let mut bytes = Vec::new();
        for &lsn in lsns {
            walctl::codec::encode_record(&mut bytes, lsn, format!("r{lsn}").as_bytes(), false);
        }
        std::fs::write(dir.join(format!("segment-{id}")), bytes).unwrap();
    };
    segment(0, &[u64::MAX - 2, u64::MAX - 1, u64::MAX]);
    segment(1, &[]);
    segment(2, &[1, 2, 3]);
    let one_pass = report(dir, false).unwrap();
    let problem = one_pass.segments.iter().find_map(|s| s.problem.as_ref());
    let json = serde_json::to_value(problem.expect("one pass sees the regression")).unwrap();
    assert_eq!(json["kind"], "lsn_regression", "{json}");
    assert_eq!(report(dir, true).unwrap(), one_pass);
}
