//! The investigator's toolbox on real logs with real damage (the fixtures and logs
//! written here, cut and flipped): `dump --salvage`, `dump --grep`, `inspect`,
//! `stats`, and the repair plan's count of intact records behind a damaged length.

use crate::common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use assert_cmd::Command;
use common::*;
use serde_json::Value;
use walctl::repair::{self, LsnRange, Policy};
use walctl::salvage::{SalvageEvent, Salvager};
use walctl::scan::{Event, ScanOptions, Scanner};
use walctl::storage::{FileStorage, Storage};
use walctl::writer::{SyncPolicy, Wal, WalOptions};

/// The binary, with no WALCTL_DIR or NO_COLOR inherited from the caller.
fn walctl() -> Command {
    let mut c = Command::cargo_bin("walctl").unwrap();
    c.env_remove("WALCTL_DIR").env_remove("NO_COLOR");
    c
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(dir: &Path, args: &[&str]) -> Run {
    let out = walctl().args(args).arg("--dir").arg(dir).output().unwrap();
    Run {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

fn lsns_of(records: &[Value]) -> Vec<u64> {
    records.iter().map(|v| v["lsn"].as_u64().unwrap()).collect()
}

/// A record as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    lsn: u64,
    segment: String,
    segment_id: u64,
    offset: u64,
    len: u64,
    data: Vec<u8>,
}

fn storage(dir: &Path) -> Arc<dyn Storage> {
    Arc::new(FileStorage::open(dir).unwrap())
}

/// Every intact record of a clean log, with its place.
fn records(dir: &Path) -> Vec<Rec> {
    let mut s = Scanner::new(storage(dir), ScanOptions::default()).unwrap();
    let mut out = Vec::new();
    while let Some(ev) = s.next().unwrap() {
        if let Event::Record(r) = ev {
            out.push(Rec {
                lsn: r.lsn,
                segment: walctl::segment::segment_name(r.segment_id),
                segment_id: r.segment_id,
                offset: r.offset,
                len: r.len,
                data: r.data.to_vec(),
            });
        }
    }
    assert!(s.first_problem().is_none(), "a clean log");
    out
}

fn payload(i: u64) -> Vec<u8> {
    format!(
        "order {i:05} user={} {}",
        i % 97,
        "p".repeat((i % 60) as usize)
    )
    .into_bytes()
}

/// A real log of `n` records written by the library over 4 KiB segments.
fn library_log(n: u64) -> (tempfile::TempDir, Vec<Rec>) {
    let tmp = tempdir();
    let wal = Wal::open(
        tmp.path(),
        WalOptions::default()
            .max_segment_size(4096)
            .max_segments(0)
            .sync(SyncPolicy::Never),
    )
    .unwrap();
    for i in 1..=n {
        if i % 50 == 0 {
            wal.checkpoint(&payload(i)).unwrap();
        } else {
            wal.append(&payload(i)).unwrap();
        }
    }
    wal.close().unwrap();
    let recs = records(tmp.path());
    assert_eq!(recs.len() as u64, n);
    (tmp, recs)
}

/// Overwrites `len` bytes of `file` at `offset` with bytes that hold no record.
fn scribble(file: &Path, offset: u64, len: usize, seed: u64) {
    let mut bytes = fs::read(file).unwrap();
    let junk = Rng::new(seed).bytes(len);
    bytes[offset as usize..offset as usize + len].copy_from_slice(&junk);
    fs::write(file, bytes).unwrap();
}

/// A skipped range: (segment, offset, len, lsn_before, lsn_after).
type Range = (String, u64, u64, Option<u64>, Option<u64>);

/// Every skipped range in a `--json` salvage summary.
fn skipped(summary: &Value) -> Vec<Range> {
    summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["segment"].as_str().unwrap().to_string(),
                s["offset"].as_u64().unwrap(),
                s["len"].as_u64().unwrap(),
                s["lsn_before"].as_u64(),
                s["lsn_after"].as_u64(),
            )
        })
        .collect()
}

/// `dump --salvage --json`: the records on stdout and the one summary on stderr.
fn salvage_json(dir: &Path, extra: &[&str]) -> (i32, Vec<Value>, Value) {
    let mut args = vec!["dump", "--salvage", "--json"];
    args.extend_from_slice(extra);
    let r = run(dir, &args);
    let summary = json_lines(&r.stderr);
    assert_eq!(summary.len(), 1, "one summary object: {}", r.stderr);
    assert_eq!(summary[0]["exit_code"], r.code);
    (r.code, json_lines(&r.stdout), summary[0].clone())
}

// ---------------------------------------------------------------- dump --salvage

#[test]
fn salvage_prints_every_record_around_a_flipped_bit_in_a_go_fixture() {
    let exp = expected("basic");
    let tmp = tempdir();
    copy_fixture("basic", tmp.path());
    let bad = &exp.entries[40];
    // A bit of its payload, near the end of the record.
    flip_bit(
        &tmp.path().join("segment-0"),
        bad.offset + bad.record_len - 8,
        2,
    );

    // Without --salvage, dump stops at the damage.
    let r = run(tmp.path(), &["dump", "--json"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(
        lsns_of(&json_lines(&r.stdout)),
        (1..bad.lsn).collect::<Vec<_>>()
    );

    let (code, recs, summary) = salvage_json(tmp.path(), &[]);
    assert_eq!(code, 4);
    let want: Vec<&ExpectedEntry> = exp.entries.iter().filter(|e| e.lsn != bad.lsn).collect();
    assert_eq!(recs.len(), want.len());
    for (v, e) in recs.iter().zip(&want) {
        assert_eq!(v["lsn"], e.lsn);
        assert_eq!(v["offset"], e.offset);
        assert_eq!(v["crc"], e.crc);
    }
    assert_eq!(
        skipped(&summary),
        vec![(
            "segment-0".to_string(),
            bad.offset,
            bad.record_len,
            Some(bad.lsn - 1),
            Some(bad.lsn + 1)
        )]
    );
    assert_eq!(summary["status"], "corrupt");
    assert_eq!(summary["printed"], want.len());
    assert_eq!(summary["skipped_bytes"], bad.record_len);
}

#[test]
fn salvage_resyncs_after_a_damaged_length_and_across_segments() {
    let (tmp, recs) = library_log(400);
    let dir = tmp.path();
    let segs = segment_names(dir);
    assert!(segs.len() >= 6, "{segs:?}");
    let in_seg = |name: &str| -> Vec<&Rec> { recs.iter().filter(|r| r.segment == name).collect() };
    // Segment 1: the high byte of a length prefix (a length far past the file).
    let s1 = in_seg(&segs[1]);
    let a = s1[4];
    flip_bit(&dir.join(&a.segment), a.offset + 3, 6);
    // Segment 3 from its 6th record to the end, and segment 4's first 3 records:
    // garbage.
    let s3 = in_seg(&segs[3]);
    let s4 = in_seg(&segs[4]);
    let b = s3[5];
    let s3_len = fs::metadata(dir.join(&segs[3])).unwrap().len();
    scribble(
        &dir.join(&segs[3]),
        b.offset,
        (s3_len - b.offset) as usize,
        1,
    );
    scribble(&dir.join(&segs[4]), 0, s4[3].offset as usize, 2);

    let (code, out, summary) = salvage_json(dir, &[]);
    assert_eq!(code, 4);
    let lost: Vec<u64> = std::iter::once(a.lsn)
        .chain(s3[5..].iter().map(|r| r.lsn))
        .chain(s4[..3].iter().map(|r| r.lsn))
        .collect();
    let want: Vec<u64> = recs
        .iter()
        .map(|r| r.lsn)
        .filter(|l| !lost.contains(l))
        .collect();
    assert_eq!(lsns_of(&out), want);
    // Every printed record is byte for byte the one written.
    for v in &out {
        let r = &recs[v["lsn"].as_u64().unwrap() as usize - 1];
        assert_eq!(v["data"].as_str().unwrap().as_bytes(), r.data);
        assert_eq!(v["segment"], r.segment.as_str());
        assert_eq!(v["offset"], r.offset);
    }
    let last3 = s3[4].lsn;
    assert_eq!(
        skipped(&summary),
        vec![
            (
                segs[1].clone(),
                a.offset,
                a.len,
                Some(a.lsn - 1),
                Some(a.lsn + 1)
            ),
            (
                segs[3].clone(),
                b.offset,
                s3_len - b.offset,
                Some(last3),
                Some(s4[3].lsn)
            ),
            (
                segs[4].clone(),
                0,
                s4[3].offset,
                Some(last3),
                Some(s4[3].lsn)
            ),
        ]
    );

    // The text form names the same ranges on stderr, each with its inspect command.
    let r = run(dir, &["dump", "--salvage"]);
    assert_eq!(r.code, 4);
    assert_eq!(r.stdout.lines().count(), want.len());
    let line = format!(
        "skipped {} bytes of {} at offset {}, between LSN {} and LSN {}",
        a.len,
        segs[1],
        a.offset,
        a.lsn - 1,
        a.lsn + 1
    );
    assert!(r.stderr.contains(&line), "{line}\n{}", r.stderr);
    let hint = format!("--segment {} --offset {}", a.segment_id, a.offset);
    assert!(r.stderr.contains(&hint), "{}", r.stderr);
    assert_eq!(
        r.stderr.lines().count(),
        4,
        "3 ranges and a summary: {}",
        r.stderr
    );
}

#[test]
fn salvage_of_a_torn_tail_exits_3_and_filters_still_apply() {
    let (tmp, recs) = library_log(120);
    let dir = tmp.path();
    let last = recs.last().unwrap();
    cut(&dir.join(&last.segment), last.offset + last.len - 5);
    let (code, out, summary) = salvage_json(dir, &[]);
    assert_eq!(code, 3, "only a torn tail");
    assert_eq!(lsns_of(&out), (1..last.lsn).collect::<Vec<_>>());
    assert_eq!(summary["status"], "torn_tail");
    assert_eq!(
        skipped(&summary),
        vec![(
            last.segment.clone(),
            last.offset,
            last.len - 5,
            Some(last.lsn - 1),
            None
        )]
    );
    // With --from, --to and --checkpoints-only, as without --salvage.
    let (_, out, _) = salvage_json(dir, &["--from", "20", "--to", "110", "--checkpoints-only"]);
    assert_eq!(lsns_of(&out), vec![50, 100]);
    let (_, out, _) = salvage_json(dir, &["--from", "30", "--limit", "4"]);
    assert_eq!(lsns_of(&out), vec![30, 31, 32, 33]);
    // A clean log: exit 0, nothing skipped.
    let (tmp, _) = library_log(30);
    let (code, out, summary) = salvage_json(tmp.path(), &[]);
    assert_eq!((code, out.len()), (0, 30));
    assert_eq!(summary["skipped_ranges"], 0);
    assert_eq!(summary["status"], "ok");
}

#[test]
fn salvage_never_presents_a_record_that_was_not_written() {
    // Random bit flips and scribbles anywhere in a real log: every record salvage
    // delivers is one the writer wrote (LSN and bytes), and every record the damage
    // did not touch is delivered.
    let (tmp, recs) = library_log(150);
    let (mut rng, seed) = Rng::from_env("WALCTL_SALVAGE_SEED");
    let segs = segment_names(tmp.path());
    for round in 0..60 {
        let work = tempdir();
        copy_segments(tmp.path(), work.path());
        let mut touched: Vec<(String, u64, u64)> = Vec::new();
        for _ in 0..rng.range(1, 3) {
            let seg = &segs[rng.below(segs.len() as u64) as usize];
            let file = work.path().join(seg);
            let size = fs::metadata(&file).unwrap().len();
            let at = rng.below(size);
            if rng.below(2) == 0 {
                flip_bit(&file, at, rng.below(8) as u8);
                touched.push((seg.clone(), at, 1));
            } else {
                let len = rng.range(1, 300).min(size - at);
                scribble(&file, at, len as usize, rng.next_u64());
                touched.push((seg.clone(), at, len));
            }
        }
        let ctx = format!("seed {seed}, round {round}, damage {touched:?}");
        let mut s = Salvager::new(storage(work.path()), ScanOptions::default()).unwrap();
        let mut got = Vec::new();
        while let Some(ev) = s.next().unwrap() {
            if let SalvageEvent::Record(r) = ev {
                got.push((r.lsn, r.data.to_vec(), r.segment_id, r.offset));
            }
        }
        for (lsn, data, seg, offset) in &got {
            let r = &recs[*lsn as usize - 1];
            assert_eq!(
                (&r.data, r.segment_id, r.offset),
                (data, *seg, *offset),
                "{ctx}"
            );
        }
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{ctx}: LSN order");
        for r in &recs {
            let hit = touched.iter().any(|(seg, at, len)| {
                *seg == r.segment && *at < r.offset + r.len && r.offset < at + len
            });
            if !hit {
                assert!(
                    got.iter().any(|g| g.0 == r.lsn),
                    "{ctx}: LSN {} lost",
                    r.lsn
                );
            }
        }
    }
}

// ---------------------------------------------------------------- dump --grep

#[test]
fn grep_matches_payload_bytes_and_combines_with_the_other_filters() {
    let exp = expected("basic");
    let dir = fixture_dir("basic");
    let re = regex::bytes::Regex::new(r"^entry [0-9]*[48]:").unwrap();
    let want: Vec<u64> = exp
        .entries
        .iter()
        .filter(|e| re.is_match(&e.data))
        .map(|e| e.lsn)
        .collect();
    assert!(want.len() >= 4, "{want:?}");
    let r = run(&dir, &["dump", "--json", "--grep", r"^entry [0-9]*[48]:"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(lsns_of(&json_lines(&r.stdout)), want);
    // --from and --limit count matching records only.
    let from = want[1].to_string();
    let r = run(
        &dir,
        &[
            "dump",
            "--json",
            "--grep",
            r"^entry [0-9]*[48]:",
            "--from",
            &from,
            "--limit",
            "2",
        ],
    );
    assert_eq!(lsns_of(&json_lines(&r.stdout)), want[1..3].to_vec());
    // Raw bytes: a binary payload matched by a byte pattern.
    let bin = exp
        .entries
        .iter()
        .find(|e| std::str::from_utf8(&e.data).is_err() && e.data.len() >= 3)
        .unwrap();
    let pat = format!(
        "(?-u)^\\x{:02x}\\x{:02x}\\x{:02x}",
        bin.data[0], bin.data[1], bin.data[2]
    );
    let r = run(&dir, &["dump", "--json", "--grep", &pat]);
    let got = lsns_of(&json_lines(&r.stdout));
    assert!(got.contains(&bin.lsn), "{pat}: {got:?}");
    assert!(
        got.iter().all(|l| exp.entries[*l as usize - 1]
            .data
            .starts_with(&bin.data[..3])),
        "{got:?}"
    );
    // With --salvage too.
    let (_, out, _) = salvage_json(&dir, &["--grep", r"^entry [0-9]*[48]:"]);
    assert_eq!(lsns_of(&out), want);
    // A pattern that does not parse is a usage error, and so is following a salvage.
    let r = run(&dir, &["dump", "--grep", "(unclosed"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    let r = run(&dir, &["dump", "--salvage", "--follow"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

// ---------------------------------------------------------------- inspect

fn inspect_json(dir: &Path, segment: u64, offset: u64) -> (i32, Value) {
    let r = run(
        dir,
        &[
            "inspect",
            "--json",
            "--segment",
            &segment.to_string(),
            "--offset",
            &offset.to_string(),
        ],
    );
    let v = json_lines(&r.stdout);
    assert_eq!(v.len(), 1, "{}{}", r.stdout, r.stderr);
    (r.code, v[0].clone())
}

#[test]
fn inspect_decodes_intact_records_field_by_field() {
    for name in FIXTURES {
        let exp = expected(name);
        let dir = fixture_dir(name);
        for e in exp.entries.iter().step_by(7) {
            let (code, v) = inspect_json(&dir, 0, e.offset);
            assert_eq!(code, 0, "{name} LSN {}", e.lsn);
            assert_eq!(v["ok"], true);
            assert_eq!(v["lsn"], e.lsn);
            assert_eq!(v["checkpoint"], e.checkpoint);
            assert_eq!(v["data_len"], e.data.len());
            assert_eq!(v["length_prefix"], e.record_len - 4);
            assert_eq!(v["crc_stored"], e.crc);
            assert_eq!(v["crc_computed"], e.crc);
            assert_eq!(v["next_offset"], e.offset + e.record_len);
            assert_eq!(v["problems"].as_array().unwrap().len(), 0);
        }
    }
    // The text form: the fields, a hex dump with the record's first byte marked, and
    // the command for the next record.
    let exp = expected("checkpoints");
    let cp = exp.entries.iter().find(|e| e.checkpoint).unwrap();
    let r = run(
        &fixture_dir("checkpoints"),
        &[
            "inspect",
            "--segment",
            "0",
            "--offset",
            &cp.offset.to_string(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!("lsn             {}", cp.lsn)),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("checkpoint      true"), "{}", r.stdout);
    let prefix = ((cp.record_len - 4) as u32).to_le_bytes();
    let marked = format!("[{:02x} {:02x}", prefix[0], prefix[1]);
    assert!(r.stdout.contains(&marked), "{marked}\n{}", r.stdout);
    let next = format!("--segment 0 --offset {}", cp.offset + cp.record_len);
    assert!(r.stdout.contains(&next), "{}", r.stdout);
}

#[test]
fn inspect_says_what_is_wrong_at_the_offsets_verify_and_dump_report() {
    let exp = expected("basic");
    let tmp = tempdir();
    let dir = tmp.path();
    copy_fixture("basic", dir);
    let seg = dir.join("segment-0");
    let e = &exp.entries[30];
    flip_bit(&seg, e.offset + e.record_len - 9, 0);

    // verify's and dump's messages carry the command, with the offset of the damage.
    let hint = format!(
        "walctl inspect --dir {} --segment 0 --offset {}",
        dir.display(),
        e.offset
    );
    let r = run(dir, &["verify"]);
    assert_eq!(r.code, 4);
    assert!(r.stdout.contains(&hint), "{}", r.stdout);
    let r = run(dir, &["dump"]);
    assert_eq!(r.code, 4);
    assert!(r.stderr.contains(&hint), "{}", r.stderr);
    let v = json_lines(&run(dir, &["verify", "--json"]).stdout).remove(0);
    assert_eq!(v["problems"][0]["offset"], e.offset);

    let (code, v) = inspect_json(dir, 0, e.offset);
    assert_eq!(code, 4);
    assert_eq!(v["ok"], false);
    assert_eq!(v["lsn"], e.lsn);
    assert_eq!(v["crc_stored"], e.crc);
    assert_ne!(v["crc_computed"], e.crc);
    assert!(
        v["problems"][0].as_str().unwrap().contains("CRC mismatch"),
        "{v}"
    );
    // The records around it are fine.
    assert_eq!(inspect_json(dir, 0, exp.entries[31].offset).0, 0);

    // A length prefix whose high byte flipped: beyond the limit, never allocated.
    let f = &exp.entries[50];
    flip_bit(&seg, f.offset + 3, 7);
    let (code, v) = inspect_json(dir, 0, f.offset);
    assert_eq!(code, 4);
    assert!(
        v["problems"][0]
            .as_str()
            .unwrap()
            .contains("exceeds the maximum"),
        "{v}"
    );
    assert_eq!(v["lsn"], Value::Null);
    // Grown within the limit but past the end of the file, by a damaged prefix.
    flip_bit(&seg, f.offset + 3, 7);
    flip_bit(&seg, f.offset + 2, 0);
    let (code, v) = inspect_json(dir, 0, f.offset);
    assert_eq!(code, 4);
    let p = v["problems"][0].as_str().unwrap();
    assert!(
        p.contains("the length prefix (or what follows it) is damaged"),
        "{p}"
    );

    // Cut inside the last record: what a crash leaves.
    let last = exp.entries.last().unwrap();
    cut(&seg, last.offset + last.record_len - 3);
    let (code, v) = inspect_json(dir, 0, last.offset);
    assert_eq!(code, 4);
    assert!(
        v["problems"][0]
            .as_str()
            .unwrap()
            .contains("a write cut short"),
        "{v}"
    );

    // Not a record boundary: an offset inside a record is decoded as what it is.
    let (code, _) = inspect_json(dir, 0, exp.entries[10].offset + 1);
    assert_eq!(code, 4);
    // Past the end of the file, or a segment that does not exist: exit 1.
    let size = fs::metadata(&seg).unwrap().len().to_string();
    let r = run(dir, &["inspect", "--segment", "0", "--offset", &size]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("past the end"), "{}", r.stderr);
    let r = run(dir, &["inspect", "--segment", "7", "--offset", "0"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("segment-7"), "{}", r.stderr);
}

// ---------------------------------------------------------------- repair plan

#[test]
fn the_repair_plan_counts_the_intact_records_behind_a_damaged_length_prefix() {
    let (tmp, recs) = library_log(300);
    let dir = tmp.path();
    let segs = segment_names(dir);
    let in_seg: Vec<&Rec> = recs.iter().filter(|r| r.segment == segs[2]).collect();
    let bad = in_seg[3];
    // The length's third byte: a length within the cap but past the end of the file.
    flip_bit(&dir.join(&bad.segment), bad.offset + 2, 1);
    let plan = repair::plan(storage(dir), Policy::PointInTime).unwrap();
    let c = &plan.cuts[0];
    assert_eq!(
        (c.segment.as_str(), c.offset),
        (bad.segment.as_str(), bad.offset)
    );
    let last = in_seg.last().unwrap().lsn;
    assert_eq!(
        c.lsns,
        vec![LsnRange {
            first: bad.lsn + 1,
            last
        }]
    );
    assert_eq!(c.intact_records, last - bad.lsn);
    assert_eq!(c.damaged_bytes, bad.len);
    let r = run(dir, &["truncate-corrupt", "--policy", "point-in-time"]);
    assert_eq!(r.code, 4);
    let line = format!(
        "{} intact records (LSN {}-{last}), {} damaged bytes",
        last - bad.lsn,
        bad.lsn + 1,
        bad.len
    );
    assert!(r.stdout.contains(&line), "{line}\n{}", r.stdout);
}

// ---------------------------------------------------------------- stats

/// The nearest-rank quantile of sorted sizes.
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[test]
fn stats_counts_records_checkpoints_sizes_and_segment_fill() {
    let (tmp, recs) = library_log(400);
    let dir = tmp.path();
    let segs = segment_names(dir);
    // A known modification time on one segment.
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    fs::File::options()
        .write(true)
        .open(dir.join(&segs[1]))
        .unwrap()
        .set_modified(when)
        .unwrap();

    let r = run(dir, &["stats", "--json", "--max-segment-size", "4KiB"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json_lines(&r.stdout);
    assert_eq!(v.len(), 1, "one object");
    let v = &v[0];
    assert_eq!(v["records"], 400);
    assert_eq!(
        (v["first_lsn"].as_u64(), v["last_lsn"].as_u64()),
        (Some(1), Some(400))
    );
    let files: u64 = segs
        .iter()
        .map(|s| fs::metadata(dir.join(s)).unwrap().len())
        .sum();
    assert_eq!(v["bytes"], files);
    assert_eq!(v["record_bytes"], recs.iter().map(|r| r.len).sum::<u64>());
    let sizes: Vec<u64> = recs.iter().map(|r| r.data.len() as u64).collect();
    assert_eq!(v["payload_bytes"], sizes.iter().sum::<u64>());
    let mut sorted = sizes.clone();
    sorted.sort();
    let max = *sorted.last().unwrap();
    let p = &v["payload"];
    assert_eq!(p["min"], sorted[0]);
    assert_eq!(p["p50"], nearest_rank(&sorted, 0.5));
    assert_eq!(p["p99"], nearest_rank(&sorted, 0.99));
    assert_eq!(p["max"], max);
    let max_lsn = recs
        .iter()
        .find(|r| r.data.len() as u64 == max)
        .unwrap()
        .lsn;
    assert_eq!(p["max_lsn"], max_lsn);
    let hist: u64 = v["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["count"].as_u64().unwrap())
        .sum();
    assert_eq!(hist, 400);

    let c = &v["checkpoints"];
    assert_eq!(c["count"], 8);
    let want: Vec<u64> = (1..=8).map(|i| i * 50).collect();
    assert_eq!(c["lsns"], serde_json::json!(want));
    assert_eq!(
        (c["min_distance"].as_u64(), c["max_distance"].as_u64()),
        (Some(50), Some(50))
    );
    assert_eq!(c["after_newest"], 0);

    let out = v["segments"].as_array().unwrap();
    assert_eq!(out.len(), segs.len());
    for (o, name) in out.iter().zip(&segs) {
        let size = fs::metadata(dir.join(name)).unwrap().len();
        assert_eq!(o["name"], name.as_str());
        assert_eq!(o["size"], size);
        let fill = (size as f64 * 1000.0 / 4096.0).round() / 10.0;
        assert_eq!(o["fill_percent"].as_f64(), Some(fill), "{name}");
        let n = recs.iter().filter(|r| &r.segment == name).count();
        assert_eq!(o["records"], n);
    }
    assert_eq!(out[1]["modified"], "2023-11-14T22:13:20Z");

    // The default max segment size is the library's.
    let v = json_lines(&run(dir, &["stats", "--json"]).stdout).remove(0);
    assert_eq!(v["max_segment_size"], 4 << 20);

    // Piped text: the figures, and the histogram's counts without bars.
    let r = run(dir, &["stats"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("records        400 (LSN 1 ..= 400)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("max {max} (LSN {max_lsn})")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("checkpoints    8 (newest first: LSN 400, 350"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.is_ascii(),
        "no bars or box drawing when piped:\n{}",
        r.stdout
    );
}

#[test]
fn stats_of_a_damaged_log_covers_its_intact_records_and_exits_as_verify() {
    let (tmp, recs) = library_log(200);
    let dir = tmp.path();
    let bad = &recs[120];
    flip_bit(&dir.join(&bad.segment), bad.offset + bad.len - 7, 4);
    let r = run(dir, &["stats", "--json"]);
    assert_eq!(r.code, 4);
    let v = json_lines(&r.stdout).remove(0);
    assert_eq!(v["status"], "corrupt");
    // Verify reads on in the next segment; so does stats.
    let verify = json_lines(&run(dir, &["verify", "--json"]).stdout).remove(0);
    assert_eq!(v["records"], verify["records"]);
    assert!(v["records"].as_u64().unwrap() < 200);
    // Only a torn tail: exit 3, every complete record counted.
    let (tmp2, recs2) = library_log(50);
    let last2 = recs2.last().unwrap();
    cut(&tmp2.path().join(&last2.segment), last2.offset + 6);
    let r = run(tmp2.path(), &["stats", "--json"]);
    assert_eq!(r.code, 3);
    assert_eq!(json_lines(&r.stdout)[0]["records"], 49);
}

#[test]
fn a_closed_pipe_ends_salvage_quietly_with_0() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command as StdCommand, Stdio};
    // More output than a pipe holds, from a damaged log.
    let (tmp, recs) = library_log(3000);
    let bad = &recs[10];
    flip_bit(&tmp.path().join(&bad.segment), bad.offset + bad.len - 5, 1);
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("walctl"))
        .args(["dump", "--salvage", "--json", "--dir"])
        .arg(tmp.path())
        .env_remove("WALCTL_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("{\"lsn\":1,"), "{first}");
    // The reader is gone now.
    let status = child.wait().unwrap();
    let stderr = read_stderr(&mut child);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

// ---------------------------------------------------------------- help and man

#[test]
fn help_and_man_pages_carry_the_new_commands_and_their_examples() {
    for (args, example) in [
        (
            &["inspect", "--help"][..],
            "walctl inspect --dir /var/lib/app/wal --segment 3 --offset 8192",
        ),
        (
            &["stats", "--help"][..],
            "walctl stats --dir /var/lib/app/wal --json",
        ),
        (
            &["dump", "--help"][..],
            "walctl dump --dir /var/lib/app/wal --salvage --json",
        ),
        (&["dump", "--help"][..], "--grep 'user=(42|43)\\b'"),
    ] {
        let out = walctl().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(example), "{args:?}: {text}");
    }
    let mandir = tempdir();
    let out = walctl()
        .args(["man", "--out-dir"])
        .arg(mandir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    for cmd in ["walctl-inspect", "walctl-stats"] {
        let text = fs::read_to_string(mandir.path().join(format!("{cmd}.1"))).unwrap();
        assert!(text.contains(&format!(".TH {cmd} 1")), "{cmd}");
        assert!(text.contains("Examples:"), "{cmd}");
    }
}
