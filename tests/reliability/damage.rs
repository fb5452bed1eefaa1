//! Reliability: torn writes and bit flips on a real multi-segment log.
//!
//! A log is written with `walctl::writer::Wal` (4 KiB segments, records of mixed
//! sizes, empty payloads included, some checkpoints). Then:
//!
//! - the newest segment is cut at every byte offset inside its last record: the
//!   scanner and `walctl verify` call it a torn tail at that record's offset (exit 3),
//!   and `walctl truncate-corrupt --apply` saves the cut bytes and leaves a clean log
//!   holding every complete record;
//! - every bit of three whole records (a checkpoint in the middle of an older segment,
//!   a record in the middle of the newest segment, the newest segment's last record)
//!   and a seeded random sample of bits anywhere in the log are flipped, one at a time:
//!   the scanner must report exactly the principled problem (segment, byte offset,
//!   severity), hand every record before it intact, and never panic; the binary agrees
//!   on a sample (`verify` exit code and JSON, `dump` output and exit code).
//!
//! The principled answer is computed by [`model_segment`], an independent reading of
//! FORMAT.md: frames are walked from the start of the damaged segment, a record is
//! accepted when its body decodes (`walctl::codec::decode_body`), its CRC matches and
//! its LSN follows the previous one; the first record that fails is the problem, at
//! its length prefix. A frame that runs past the end of the newest segment is a torn
//! tail only when the bytes present can be the beginning of a record of the length its
//! prefix claims, as a write cut short leaves them (`walctl::codec::could_be_cut_short`,
//! whose rules its unit tests check against records built and cut independently): a
//! record that is complete in fewer bytes than its prefix claims was not cut short,
//! its prefix is damaged.
//!
//! Single-bit flips that no reader of this format can see are listed and asserted
//! exactly (see [`UNDETECTABLE`]): the CRC does not cover the checkpoint flag.
//!
//! The random sample is seeded; the seed is printed, and `WALCTL_DAMAGE_SEED=<n>`
//! replays it.

use crate::common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use assert_cmd::cargo::CommandCargoExt;
use common::*;
use serde_json::Value;
use walctl::codec::{could_be_cut_short, decode_body, MAX_BODY_LEN};
use walctl::quarantine;
use walctl::scan::{Event, ScanOptions, Scanner};
use walctl::storage::MemStorage;
use walctl::storage::{FileStorage, ReadStorage};
use walctl::writer::{SyncPolicy, Wal, WalOptions};
use walctl::{Problem, Severity};

// ---------------------------------------------------------------------------------
// The log

/// A record as written, and where it lies.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    lsn: u64,
    data: Vec<u8>,
    checkpoint: bool,
    /// Index of its segment in `Log::names`.
    seg: usize,
    /// Offset of its length prefix.
    offset: usize,
    /// Size on disk, prefix included.
    len: usize,
}

struct Log {
    _tmp: tempfile::TempDir,
    names: Vec<String>,
    files: Vec<Vec<u8>>,
    recs: Vec<Rec>,
}

impl Log {
    fn newest(&self) -> usize {
        self.names.len() - 1
    }
    /// The record holding byte `at` of segment `seg`.
    fn rec_at(&self, seg: usize, at: usize) -> usize {
        self.recs
            .iter()
            .position(|r| r.seg == seg && r.offset <= at && at < r.offset + r.len)
            .expect("every byte of a clean log belongs to a record")
    }
}

/// Mixed sizes: empty, tiny, small, medium, larger than a quarter segment, binary.
fn payload(i: u64) -> Vec<u8> {
    let n = match i % 8 {
        0 => 0,
        1 => 1,
        2 => 150,
        3 => 40,
        4 => 1300,
        5 => 17,
        6 => 127, // a data length whose varint is one byte, just below two
        _ => 200 + (i as usize * 37) % 700,
    };
    (0..n).map(|k| (k as u64 * 31 + i * 7) as u8).collect()
}

/// Writes the log: 90 records of mixed sizes (every 9th a checkpoint), small records
/// until the log rotates, then a newest segment of five small records and a final
/// small checkpoint.
fn build_log() -> Log {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(
        &dir,
        WalOptions::default()
            .max_segment_size(4096)
            .max_segments(0)
            .sync(SyncPolicy::Never),
    )
    .unwrap();
    let mut written: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut put = |data: Vec<u8>, cp: bool| {
        let lsn = if cp {
            wal.checkpoint(&data).unwrap()
        } else {
            wal.append(&data).unwrap()
        };
        written.push((data, cp));
        assert_eq!(lsn, written.len() as u64);
    };
    for i in 1..=90u64 {
        put(payload(i), i % 9 == 0);
    }
    let segs = segment_names(&dir).len();
    let mut k = 0u64;
    while segment_names(&dir).len() == segs {
        put(
            format!("filler {k} {}", "f".repeat(k as usize % 50)).into_bytes(),
            false,
        );
        k += 1;
    }
    for k in 0..5 {
        put(
            format!("newest {k} {}", "n".repeat(10 * k)).into_bytes(),
            false,
        );
    }
    put(b"final checkpoint: applied up to here".to_vec(), true);
    wal.close().unwrap();

    let names = segment_names(&dir);
    let files: Vec<Vec<u8>> = names
        .iter()
        .map(|n| fs::read(dir.join(n)).unwrap())
        .collect();
    let scan = scan_mem(&names, &files);
    assert!(scan.problems.is_empty(), "a clean log: {:?}", scan.problems);
    assert_eq!(scan.recs.len(), written.len());
    for (r, (data, cp)) in scan.recs.iter().zip(&written) {
        assert_eq!((&r.data, r.checkpoint), (data, *cp), "LSN {}", r.lsn);
    }
    assert!(names.len() >= 5, "several segments: {names:?}");
    let newest = names.len() - 1;
    assert!(scan.recs.iter().filter(|r| r.seg == newest).count() >= 4);
    Log {
        _tmp: tmp,
        names,
        files,
        recs: scan.recs,
    }
}

/// A checkpoint in the middle of an older segment, a regular record in the middle of
/// the newest segment, and the newest segment's last record.
fn chosen_records(log: &Log) -> [usize; 3] {
    let newest = log.newest();
    let middle = |i: usize| {
        let r = &log.recs[i];
        i > 0 && log.recs[i - 1].seg == r.seg && log.recs.get(i + 1).is_some_and(|n| n.seg == r.seg)
    };
    let older = (0..log.recs.len())
        .find(|&i| {
            let r = &log.recs[i];
            r.seg == 2 && r.checkpoint && middle(i) && r.len < 400
        })
        .expect("a checkpoint in the middle of segment-2");
    let newest_mid = (0..log.recs.len())
        .find(|&i| log.recs[i].seg == newest && middle(i) && !log.recs[i].checkpoint)
        .unwrap();
    let last = log.recs.len() - 1;
    assert!(log.recs[last].checkpoint && log.recs[last].seg == newest);
    [older, newest_mid, last]
}

/// What the library scanner delivered: every intact record and every problem.
struct Scan {
    recs: Vec<Rec>,
    problems: Vec<Problem>,
}

fn scan_storage(storage: Arc<dyn ReadStorage>) -> Scan {
    let mut scanner = Scanner::new(storage, ScanOptions::default()).unwrap();
    let ids: Vec<u64> = scanner.segments().iter().map(|s| s.id).collect();
    let mut recs = Vec::new();
    while let Some(ev) = scanner.next().unwrap() {
        if let Event::Record(r) = ev {
            recs.push(Rec {
                lsn: r.lsn,
                data: r.data.to_vec(),
                checkpoint: r.checkpoint,
                seg: ids.iter().position(|&id| id == r.segment_id).unwrap(),
                offset: r.offset as usize,
                len: r.len as usize,
            });
        }
    }
    let problems = scanner
        .summaries()
        .iter()
        .filter_map(|s| s.problem.clone())
        .collect();
    Scan { recs, problems }
}

fn scan_mem(names: &[String], files: &[Vec<u8>]) -> Scan {
    scan_storage(Arc::new(MemStorage::new(
        names.iter().cloned().zip(files.iter().cloned()).collect(),
    )))
}

// ---------------------------------------------------------------------------------
// The principled answer

/// Records accepted as (lsn, data, checkpoint, offset), and the first problem as
/// (offset, severity).
type ModelSegment = (Vec<(u64, Vec<u8>, bool, usize)>, Option<(usize, Severity)>);

/// The principled reading of one segment: the records accepted and the first problem
/// (offset, severity). `prev` is the LSN of the last record before this segment.
fn model_segment(bytes: &[u8], mut prev: Option<u64>, newest: bool) -> ModelSegment {
    let mut recs = Vec::new();
    let mut off = 0;
    let torn = |yes: bool| {
        if yes && newest {
            Severity::TornTail
        } else {
            Severity::Corruption
        }
    };
    while off < bytes.len() {
        let rest = &bytes[off..];
        // A never-written, zero-filled tail of the newest segment is a torn tail;
        // from a record boundary on, it is preallocated space not written yet: the
        // segment ends there, cleanly.
        let zero = rest.iter().all(|&b| b == 0);
        if zero && newest {
            return (recs, None);
        }
        if rest.len() < 4 {
            return (recs, Some((off, torn(true))));
        }
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        if len > MAX_BODY_LEN as usize {
            return (recs, Some((off, torn(zero))));
        }
        if 4 + len > rest.len() {
            return (
                recs,
                Some((off, torn(could_be_cut_short(&rest[4..], len as u64)))),
            );
        }
        let ok = match decode_body(&rest[4..4 + len]) {
            Ok(r) if r.crc_ok() && r.lsn != 0 && prev.is_none_or(|p| r.lsn == p + 1) => {
                recs.push((r.lsn, r.data.to_vec(), r.checkpoint, off));
                prev = Some(r.lsn);
                true
            }
            _ => false,
        };
        if !ok {
            return (recs, Some((off, torn(zero))));
        }
        off += 4 + len;
    }
    (recs, None)
}

/// Single-bit flips that no reader of the format can detect, as (field byte, bit):
/// byte 0 is the tag `0x20` of `isCheckpoint`, byte 1 its value `0x01`, the last two
/// bytes of every checkpoint record. The CRC covers data and LSN only (FORMAT.md), so
/// nothing vouches for these bytes:
///
/// - tag bit 3, 4 or 6 turns field 4 into field 5, 6 or 12 (varint, value 1): an
///   unknown field, which a protobuf reader must skip; the flag is gone.
/// - value bit 0 turns `true` into an explicitly encoded `false`, which FORMAT.md
///   says a reader must accept as a regular record.
///
/// Each turns a checkpoint into a regular record, silently: recovery then starts at an
/// older checkpoint (or replays from the start), which is safe but slower, and
/// `dump --checkpoints-only` misses it. Every other bit of the field is detected: a
/// wrong wire type, field number 0, a varint running past the body, or (walctl's own
/// strictness) a flag value other than 0 or 1.
const UNDETECTABLE: [(usize, u8); 4] = [(0, 3), (0, 4), (0, 6), (1, 0)];

fn undetectable(r: &Rec, rel: usize, bit: u8) -> bool {
    r.checkpoint && rel + 2 >= r.len && UNDETECTABLE.contains(&(rel + 2 - r.len, bit))
}

// ---------------------------------------------------------------------------------
// Checking one flip

/// A flipped bit: segment, byte offset in it, bit.
#[derive(Debug, Clone, Copy)]
struct Flip {
    seg: usize,
    at: usize,
    bit: u8,
}

/// What a flip must produce.
struct Expect {
    /// The first problem: (segment, offset, severity); `None` for an undetectable flip.
    problem: Option<(usize, usize, Severity)>,
    /// Every record the scanner must deliver, in order.
    recs: Vec<Rec>,
    /// Index (in `log.recs`) of the record the flip is in.
    hit: usize,
}

fn flipped_files(log: &Log, f: Flip) -> Vec<Vec<u8>> {
    let mut files = log.files.clone();
    files[f.seg][f.at] ^= 1 << f.bit;
    files
}

/// Works out the principled result of a flip and checks the library scanner against
/// it, and against hand-derived rules that do not depend on the model.
fn check_flip_library(log: &Log, f: Flip) -> Expect {
    let ctx = format!(
        "flip {}:{} bit {} (seed replay: see the printed WALCTL_DAMAGE_SEED)",
        log.names[f.seg], f.at, f.bit
    );
    let files = flipped_files(log, f);
    let hit = log.rec_at(f.seg, f.at);
    let r = &log.recs[hit];
    let rel = f.at - r.offset;
    let newest = f.seg == log.newest();

    // The model: every record of the other segments is intact; the damaged segment is
    // read from its start.
    let prev = log.recs.iter().rev().find(|x| x.seg < f.seg).map(|x| x.lsn);
    let (seg_recs, seg_problem) = model_segment(&files[f.seg], prev, newest);
    let mut recs: Vec<Rec> = log.recs.iter().filter(|x| x.seg < f.seg).cloned().collect();
    for (i, (lsn, data, checkpoint, offset)) in seg_recs.iter().enumerate() {
        let len = seg_recs.get(i + 1).map_or_else(
            || {
                // The last accepted record ends where the problem starts, or at the end.
                seg_problem.map_or(files[f.seg].len(), |p| p.0) - offset
            },
            |n| n.3 - offset,
        );
        recs.push(Rec {
            lsn: *lsn,
            data: data.clone(),
            checkpoint: *checkpoint,
            seg: f.seg,
            offset: *offset,
            len,
        });
    }
    recs.extend(log.recs.iter().filter(|x| x.seg > f.seg).cloned());
    let problem = seg_problem.map(|(off, sev)| (f.seg, off, sev));

    // Rules that hold whatever the model says.
    let before: Vec<&Rec> = log.recs[..hit].iter().collect();
    assert_eq!(
        recs[..hit].iter().collect::<Vec<_>>(),
        before,
        "{ctx}: records before the damage are kept"
    );
    for got in &recs {
        let orig = &log.recs[got.lsn as usize - 1];
        assert_eq!(
            (got.lsn, &got.data),
            (orig.lsn, &orig.data),
            "{ctx}: the CRC vouches for LSN and data"
        );
    }
    match problem {
        None => assert!(
            undetectable(r, rel, f.bit),
            "{ctx}: only the listed checkpoint-flag flips go unseen (byte {rel} of LSN {})",
            r.lsn
        ),
        Some((seg, off, sev)) => {
            assert!(
                !undetectable(r, rel, f.bit),
                "{ctx}: listed as undetectable"
            );
            assert_eq!(seg, f.seg, "{ctx}");
            if !newest {
                assert_eq!(sev, Severity::Corruption, "{ctx}: an older segment");
            }
            if rel >= 4 {
                // Inside the body the frame is intact: the damaged record is the problem.
                assert_eq!((off, sev), (r.offset, Severity::Corruption), "{ctx}");
            } else if off != r.offset {
                // A length prefix whose new length still frames a valid record (the
                // checkpoint flag cut off, or unknown fields swallowed): the record is
                // delivered and the broken framing shows right after it.
                let got = recs.iter().find(|x| x.lsn == r.lsn).expect("delivered");
                assert_eq!((got.offset, got.offset + got.len), (r.offset, off), "{ctx}");
            }
        }
    }

    // The library scanner.
    let scan = scan_mem(&log.names, &files);
    let got: Vec<(usize, usize, Severity)> = scan
        .problems
        .iter()
        .map(|p| {
            (
                log.names.iter().position(|n| *n == p.segment).unwrap(),
                p.offset as usize,
                p.severity,
            )
        })
        .collect();
    assert_eq!(
        got,
        problem.into_iter().collect::<Vec<_>>(),
        "{ctx}: problems {:?}",
        scan.problems
    );
    if let Some(p) = scan.problems.first() {
        assert_eq!(
            p.segment_id.to_string(),
            p.segment["segment-".len()..],
            "{ctx}"
        );
        let last_good = recs
            .iter()
            .rev()
            .find(|x| (x.seg, x.offset) < (f.seg, p.offset as usize));
        assert_eq!(p.last_good_lsn, last_good.map(|x| x.lsn), "{ctx}");
    }
    assert_eq!(scan.recs, recs, "{ctx}: records delivered");
    Expect { problem, recs, hit }
}

fn exit_code(sev: Option<Severity>) -> i32 {
    match sev {
        None => 0,
        Some(Severity::TornTail) => 3,
        Some(Severity::Unreadable) => 1,
        Some(Severity::Corruption) => 4,
    }
}

/// Runs the real binary: (exit code, stdout, stderr).
fn walctl(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = std::process::Command::cargo_bin("walctl")
        .unwrap()
        .env_remove("WALCTL_DIR")
        .env("NO_COLOR", "1")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status
            .code()
            .expect("exited, not killed by a signal (a panic aborts)"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn write_log(dir: &Path, names: &[String], files: &[Vec<u8>]) {
    fs::create_dir_all(dir).unwrap();
    for (n, b) in names.iter().zip(files) {
        fs::write(dir.join(n), b).unwrap();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A record as `dump --json` prints it: (lsn, hex data, checkpoint, segment, offset).
type DumpRec = (u64, String, bool, String, u64);

/// `walctl dump --json`: every printed record as (lsn, hex data, checkpoint, segment,
/// offset), and the exit code.
fn dump(dir: &Path) -> (i32, Vec<DumpRec>, String) {
    let (code, out, err) = walctl(&["dump", "--json", "--data-format", "hex"], dir);
    let recs = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["lsn"].as_u64().unwrap(),
                v["data"].as_str().unwrap().to_string(),
                v["checkpoint"].as_bool().unwrap(),
                v["segment"].as_str().unwrap().to_string(),
                v["offset"].as_u64().unwrap(),
            )
        })
        .collect();
    (code, recs, err)
}

fn dump_form(log: &Log, r: &Rec) -> DumpRec {
    (
        r.lsn,
        hex(&r.data),
        r.checkpoint,
        log.names[r.seg].clone(),
        r.offset as u64,
    )
}

/// The same flip through the binary: `verify --json` (exit code, first problem's
/// segment, offset, severity) and `dump --json` (every record before the damage,
/// nothing wrong, the same exit code).
fn check_flip_binary(log: &Log, f: Flip, e: &Expect) {
    let ctx = format!("binary, flip {}:{} bit {}", log.names[f.seg], f.at, f.bit);
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    write_log(&dir, &log.names, &flipped_files(log, f));
    let (code, out, err) = walctl(&["verify", "--json"], &dir);
    let want = exit_code(e.problem.map(|p| p.2));
    assert_eq!(code, want, "{ctx}: {out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["exit_code"], want, "{ctx}");
    let problems = v["problems"].as_array().unwrap();
    match e.problem {
        None => assert!(problems.is_empty(), "{ctx}: {out}"),
        Some((seg, off, sev)) => {
            assert_eq!(problems.len(), 1, "{ctx}: {out}");
            let p = &problems[0];
            assert_eq!(p["segment"], log.names[seg].as_str(), "{ctx}");
            assert_eq!(p["offset"], off as u64, "{ctx}");
            let word = if sev == Severity::TornTail {
                "torn_tail"
            } else {
                "corruption"
            };
            assert_eq!(p["severity"], word, "{ctx}");
        }
    }
    let (dcode, printed, derr) = dump(&dir);
    assert_eq!(dcode, want, "{ctx}: dump exits like verify: {derr}");
    let before: Vec<_> = log.recs[..e.hit]
        .iter()
        .map(|r| dump_form(log, r))
        .collect();
    assert!(
        printed.len() >= before.len() && printed[..before.len()] == before[..],
        "{ctx}: dump prints every record before the damage ({} of {})",
        printed.len(),
        before.len()
    );
    let all: Vec<_> = e.recs.iter().map(|r| dump_form(log, r)).collect();
    for p in &printed {
        assert!(
            all.contains(p),
            "{ctx}: dump printed {p:?}, which the scan does not deliver"
        );
    }
    if let Some((seg, _, _)) = e.problem {
        assert!(derr.contains(&log.names[seg]), "{ctx}: {derr}");
    }
}

// ---------------------------------------------------------------------------------
// (a) Torn writes

/// What a crash leaves when a write's new file size reached the disk but its data did
/// not: the last record's bytes from some point on are zeros (and the file may run on
/// in zeros). That is a torn tail at the record, repaired by a writer opening the log.
/// Zeros inside the record with a non-zero byte after them are not: corruption.
#[test]
fn newest_record_ending_in_unwritten_zeros_is_a_torn_tail() {
    let log = build_log();
    let newest = log.newest();
    let last = log.recs.last().unwrap().clone();
    let kept: Vec<Rec> = log.recs[..log.recs.len() - 1].to_vec();
    let end = last.offset + last.len;
    // From just after the length prefix to the last byte; with and without more
    // zeros after the record.
    assert!(last.checkpoint, "the log ends with a checkpoint");
    // Zeroing only the last byte (the flag's value 1) leaves an explicit `false`: a
    // regular record, with a valid CRC, that no reader can tell (see UNDETECTABLE).
    for zero_from in last.offset + 4..end - 1 {
        for extra in [0usize, 3, 5000] {
            let ctx = format!("zeros from {zero_from} to the end, {extra} more");
            let mut files = log.files.clone();
            let f = &mut files[newest];
            f[zero_from..].fill(0);
            f.resize(end + extra, 0);
            let scan = scan_mem(&log.names, &files);
            assert!(scan.recs == kept, "{ctx}: {} records", scan.recs.len());
            assert_eq!(scan.problems.len(), 1, "{ctx}: {:?}", scan.problems);
            let p = &scan.problems[0];
            assert_eq!(
                (p.offset, p.severity),
                (last.offset as u64, Severity::TornTail),
                "{ctx}: {p}"
            );
        }
        // A non-zero byte after the zeros: not an unwritten tail.
        if zero_from + 1 < end {
            let mut files = log.files.clone();
            let f = &mut files[newest];
            f[zero_from..end - 1].fill(0);
            f[end - 1] = 0x5a;
            let scan = scan_mem(&log.names, &files);
            let sev = scan.problems.first().map(|p| p.severity);
            assert_ne!(
                sev,
                Some(Severity::TornTail),
                "zeros {zero_from}..{} then 0x5a",
                end - 1
            );
        }
    }
    // The writer saves and cuts such a tail, and goes on at the record's LSN.
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    let mut files = log.files.clone();
    files[newest][last.offset + 10..].fill(0);
    files[newest].resize(end + 4096, 0);
    write_log(&dir, &log.names, &files);
    let wal = Wal::open(&dir, WalOptions::default()).unwrap();
    let repaired = wal.open_report().repaired_tail.clone().unwrap();
    assert_eq!(repaired.offset, last.offset as u64);
    assert_eq!(wal.append(b"next").unwrap(), last.lsn);
    wal.close().unwrap();
    let (code, out, err) = walctl(&["verify"], &dir);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn newest_segment_cut_inside_its_last_record_is_a_torn_tail_and_repairs_cleanly() {
    let log = build_log();
    let newest = log.newest();
    let last = log.recs.last().unwrap().clone();
    let name = &log.names[newest];
    let full = &log.files[newest];
    assert_eq!(last.offset + last.len, full.len());
    let kept: Vec<Rec> = log.recs[..log.recs.len() - 1].to_vec();
    // Small enough for the binary at every offset (a spawn is ~10 ms in debug).
    assert!(last.len <= 64, "{}", last.len);

    for cut_at in last.offset..last.offset + last.len {
        let ctx = format!("{name} cut at {cut_at} (last record at {})", last.offset);
        let mut files = log.files.clone();
        files[newest].truncate(cut_at);
        let scan = scan_mem(&log.names, &files);
        assert_eq!(scan.recs, kept, "{ctx}: every complete record");
        let (want_code, want_sev) = if cut_at == last.offset {
            assert!(
                scan.problems.is_empty(),
                "{ctx}: cut at a record boundary is clean"
            );
            (0, None)
        } else {
            assert_eq!(scan.problems.len(), 1, "{ctx}: {:?}", scan.problems);
            let p = &scan.problems[0];
            assert_eq!(
                (p.segment.as_str(), p.offset, p.severity, p.last_good_lsn),
                (
                    name.as_str(),
                    last.offset as u64,
                    Severity::TornTail,
                    Some(last.lsn - 1)
                ),
                "{ctx}: {p}"
            );
            (3, Some("torn_tail"))
        };

        let tmp = tempdir();
        let dir = tmp.path().join("wal");
        write_log(&dir, &log.names, &files);
        let (code, out, err) = walctl(&["verify", "--json"], &dir);
        assert_eq!(code, want_code, "{ctx}: {out}{err}");
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        if let Some(word) = want_sev {
            assert_eq!(v["problems"][0]["severity"], word, "{ctx}");
            assert_eq!(v["problems"][0]["segment"], name.as_str(), "{ctx}");
            assert_eq!(v["problems"][0]["offset"], last.offset as u64, "{ctx}");
        }

        // The repair: saved, cut, clean, nothing complete lost.
        let (code, out, err) = walctl(&["truncate-corrupt", "--apply"], &dir);
        assert_eq!(code, 0, "{ctx}: {out}{err}");
        let (code, out, err) = walctl(&["verify"], &dir);
        assert_eq!(code, 0, "{ctx}: verify after the repair: {out}{err}");
        let (code, printed, err) = dump(&dir);
        assert_eq!(code, 0, "{ctx}: {err}");
        assert_eq!(
            printed,
            kept.iter().map(|r| dump_form(&log, r)).collect::<Vec<_>>(),
            "{ctx}: every complete record with its exact data"
        );
        assert_eq!(
            fs::read(dir.join(name)).unwrap(),
            full[..last.offset],
            "{ctx}"
        );
        let storage = FileStorage::open(&dir).unwrap();
        let manifests = quarantine::list(&storage).unwrap();
        if cut_at == last.offset {
            assert!(manifests.is_empty(), "{ctx}: nothing to save");
            continue;
        }
        assert_eq!(manifests.len(), 1, "{ctx}");
        let m = &manifests[0];
        assert_eq!(m.items.len(), 1, "{ctx}");
        let item = &m.items[0];
        assert_eq!(
            (
                item.file.as_str(),
                item.offset,
                item.length,
                item.whole_file
            ),
            (
                name.as_str(),
                last.offset as u64,
                (cut_at - last.offset) as u64,
                false
            ),
            "{ctx}"
        );
        let saved =
            fs::read(quarantine::Location::in_log(&storage).saved_file(&m.id, item)).unwrap();
        assert_eq!(
            saved,
            full[last.offset..cut_at],
            "{ctx}: the cut bytes are saved"
        );
    }
}

// ---------------------------------------------------------------------------------
// (b) Bit flips

/// Every bit of the three chosen records, through the library; every fifth through
/// the binary too (and every flip of the checkpoint field and of the length prefix).
#[test]
fn every_bit_of_three_whole_records() {
    let log = build_log();
    let mut undetected = BTreeSet::new();
    for hit in chosen_records(&log) {
        let r = log.recs[hit].clone();
        let mut flips = 0;
        for at in r.offset..r.offset + r.len {
            for bit in 0..8u8 {
                let f = Flip {
                    seg: r.seg,
                    at,
                    bit,
                };
                let e = check_flip_library(&log, f);
                let rel = at - r.offset;
                if e.problem.is_none() {
                    undetected.insert((r.lsn, rel + 2 - r.len, bit));
                }
                if flips % 5 == 0 || rel < 4 || rel + 2 >= r.len {
                    check_flip_binary(&log, f, &e);
                }
                flips += 1;
            }
        }
    }
    // Exactly the listed flips of both checkpoints went unseen, nothing else.
    let [older, _, last] = chosen_records(&log);
    let want: BTreeSet<_> = [older, last]
        .iter()
        .map(|&i| log.recs[i].lsn)
        .flat_map(|lsn| UNDETECTABLE.iter().map(move |&(b, bit)| (lsn, b, bit)))
        .collect();
    assert_eq!(undetected, want);
}

/// The classification of length-prefix flips, spelled out for the record in the middle
/// of the newest segment and the newest segment's last record.
#[test]
fn length_prefix_flips_are_classified_by_what_the_bytes_present_can_be() {
    let log = build_log();
    let [_, mid, last] = chosen_records(&log);
    for hit in [mid, last] {
        let r = log.recs[hit].clone();
        let body = (r.len - 4) as u32;
        for bit in 0..32u32 {
            let f = Flip {
                seg: r.seg,
                at: r.offset + (bit / 8) as usize,
                bit: (bit % 8) as u8,
            };
            let e = check_flip_library(&log, f);
            let new_len = body ^ (1 << bit);
            let past_eof = r.offset + 4 + new_len as usize > log.files[r.seg].len();
            let (_, off, sev) = e.problem.expect("a length flip is always seen");
            if new_len > MAX_BODY_LEN {
                assert_eq!((off, sev), (r.offset, Severity::Corruption), "bit {bit}");
            } else if past_eof {
                // Complete records lie inside the bytes present (the record itself, and
                // in the middle of the segment the ones after it): no write was cut
                // short here. Calling it a torn tail would let `Wal::open` cut the
                // complete records after it and give their LSNs out again. The one
                // exception: a regular last record whose length grew by exactly 2 is
                // byte for byte a checkpoint record cut before its 2-byte flag.
                let torn = hit == last && !r.checkpoint && new_len == body + 2;
                let want = if torn {
                    Severity::TornTail
                } else {
                    Severity::Corruption
                };
                assert_eq!(
                    (off, sev),
                    (r.offset, want),
                    "bit {bit}: {new_len} past the end"
                );
            } else if new_len + 2 == body && r.checkpoint {
                // The body now ends before the checkpoint flag: a valid regular record;
                // the flag's 2 bytes are read as the next length prefix.
                assert_eq!(off, r.offset + r.len - 2, "bit {bit}");
            } else {
                assert_eq!(off, r.offset, "bit {bit}");
            }
        }
    }
}

/// A seeded random sample of bits anywhere in the log: through the library for all,
/// through the binary for some.
#[test]
fn random_bit_flips_anywhere_are_reported_where_they_are() {
    let log = build_log();
    let (mut rng, _seed) = Rng::from_env("WALCTL_DAMAGE_SEED");
    let total: usize = log.files.iter().map(|f| f.len()).sum();
    let mut codes = [0usize; 5];
    for i in 0..600 {
        let mut at = rng.below(total as u64) as usize;
        let mut seg = 0;
        while at >= log.files[seg].len() {
            at -= log.files[seg].len();
            seg += 1;
        }
        let f = Flip {
            seg,
            at,
            bit: rng.below(8) as u8,
        };
        let e = check_flip_library(&log, f);
        let code = exit_code(e.problem.map(|p| p.2));
        assert!(code == 3 || code == 4 || e.problem.is_none(), "{f:?}");
        codes[code as usize] += 1;
        if i % 20 == 0 {
            check_flip_binary(&log, f, &e);
        }
    }
    println!("exit codes of the sample: {codes:?}");
    assert!(codes[4] > 500, "{codes:?}");
}

/// The consequence of the classification above, end to end: a length prefix flipped
/// in a record followed by complete records in the newest segment is corruption.
/// Opening a writer must refuse (exit 4 for verify), never cut the complete records
/// after it as a "torn tail" and hand their LSNs out again.
#[test]
fn a_damaged_length_in_the_newest_segment_never_lets_the_writer_reuse_lsns() {
    let log = build_log();
    let [_, mid, _] = chosen_records(&log);
    let r = log.recs[mid].clone();
    // Bit 20 of the length: a megabyte more than the segment holds.
    let f = Flip {
        seg: r.seg,
        at: r.offset + 2,
        bit: 4,
    };
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    write_log(&dir, &log.names, &flipped_files(&log, f));
    let (code, out, err) = walctl(&["verify"], &dir);
    assert_eq!(code, 4, "{out}{err}");
    match Wal::open(&dir, WalOptions::default()) {
        Err(walctl::Error::Damaged { problem, .. }) => {
            assert_eq!(
                (problem.offset, problem.severity),
                (r.offset as u64, Severity::Corruption)
            );
        }
        Err(e) => panic!("{e}"),
        Ok(wal) => {
            let lsn = wal.append(b"after reopening").unwrap();
            panic!(
                "Wal::open accepted the log (repaired: {:?}) and gave out LSN {lsn} again; \
                 LSNs {}..={} were already acknowledged",
                wal.open_report().repaired_tail,
                r.lsn,
                log.recs.last().unwrap().lsn
            );
        }
    }
}
