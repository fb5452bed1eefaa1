//! `truncate-corrupt` on real logs written by the walctl writer and damaged by cutting
//! and flipping their files: the library (plan → apply, restore) and the binary.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use assert_cmd::cargo::CommandCargoExt;
use common::*;
use serde_json::Value;
use walctl::quarantine::{self, Location, RestoreAction, QUARANTINE_DIR};
use walctl::reader::WalReader;
use walctl::repair::{self, CutAction, LsnRange, Policy, Verdict};
use walctl::scan::{Event, ScanOptions, Scanner};
use walctl::storage::{FileStorage, Storage, LOCK_FILE};
use walctl::writer::{SyncPolicy, Wal, WalOptions};
use walctl::{Error, Severity};

// ---------------------------------------------------------------------------------
// Helpers

/// Where a record lies in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pos {
    lsn: u64,
    data: Vec<u8>,
    segment: String,
    offset: u64,
    len: u64,
}

fn opts() -> WalOptions {
    WalOptions::default()
        .max_segment_size(4096)
        .max_segments(0)
        .sync(SyncPolicy::Never)
}

fn payload(i: u64) -> Vec<u8> {
    let mut d = format!("record {i:05} ").into_bytes();
    d.extend(std::iter::repeat_n(
        b'a' + (i % 26) as u8,
        100 + (i % 97) as usize,
    ));
    d
}

/// Writes `n` records (every 25th a checkpoint) into a multi-segment log.
fn write_log(dir: &Path, n: u64) {
    let wal = open_wal(dir);
    for i in 1..=n {
        if i % 25 == 0 {
            wal.checkpoint(&payload(i)).unwrap();
        } else {
            wal.append(&payload(i)).unwrap();
        }
    }
    wal.close().unwrap();
}

fn storage(dir: &Path) -> Arc<dyn Storage> {
    Arc::new(FileStorage::open(dir).unwrap())
}

/// Every intact record of the log, with its position (reads through the scanner).
fn records(dir: &Path) -> Vec<Pos> {
    let mut scanner = Scanner::new(storage(dir), ScanOptions::default()).unwrap();
    let mut out = Vec::new();
    while let Some(ev) = scanner.next().unwrap() {
        if let Event::Record(r) = ev {
            out.push(Pos {
                lsn: r.lsn,
                data: r.data.to_vec(),
                segment: walctl::segment::segment_name(r.segment_id),
                offset: r.offset,
                len: r.len,
            });
        }
    }
    out
}

fn worst(dir: &Path) -> Option<Severity> {
    WalReader::open(dir).unwrap().scan().unwrap().worst()
}

/// sha256 of every file under `dir` (recursively), by relative path: any created,
/// removed or changed file shows.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(root, &p, out);
            } else {
                out.insert(rel, sha256_file(&p));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The snapshot without the writer's lock file (taking the lock records the holder
/// in it; it is not part of the log).
fn log_snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut s = snapshot(dir);
    s.remove(LOCK_FILE);
    s
}

/// The bytes of every segment.
fn segment_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    segment_names(dir)
        .into_iter()
        .map(|n| {
            let b = fs::read(dir.join(&n)).unwrap();
            (n, b)
        })
        .collect()
}

/// sha256 of each segment's bytes (readable in a failed assertion, unlike the bytes).
fn shas(segments: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    segments
        .iter()
        .map(|(n, b)| (n.clone(), quarantine::sha256_hex(b)))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Every byte of `original` is either still in the log or in a complete quarantine
/// entry: a segment present in the log is a prefix of its original, and whatever
/// it lacks was saved byte for byte.
fn assert_nothing_lost(dir: &Path, original: &BTreeMap<String, Vec<u8>>, ctx: &str) {
    let st = storage(dir);
    let entries = quarantine::list(st.as_ref()).unwrap();
    let saved = |name: &str, from: u64, want: &[u8]| {
        entries.iter().any(|m| {
            m.items.iter().any(|i| {
                i.file == name
                    && i.offset <= from
                    && i.offset + i.length == original[name].len() as u64
                    && fs::read(Location::in_log(st.as_ref()).saved_file(&m.id, i)).unwrap()
                        == original[name][i.offset as usize..]
                    && want.len() as u64 + from == i.offset + i.length
            })
        })
    };
    for (name, bytes) in original {
        match fs::read(dir.join(name)) {
            Ok(cur) => {
                assert!(
                    bytes.starts_with(&cur),
                    "{ctx}: {name} is not a prefix of what it was"
                );
                if cur.len() < bytes.len() {
                    assert!(
                        saved(name, cur.len() as u64, &bytes[cur.len()..]),
                        "{ctx}: {name} lost bytes {}.. that no quarantine entry holds",
                        cur.len()
                    );
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                assert!(
                    saved(name, 0, bytes),
                    "{ctx}: {name} is gone and no quarantine entry holds it"
                );
            }
            Err(e) => panic!("{ctx}: {e}"),
        }
    }
}

/// flock and fork: a child that another test thread is spawning holds a copy of
/// every descriptor of this process (lock files included) until it execs, so a lock
/// this process has just released can look held for a moment. Every spawn and every
/// in-process lock acquisition of this file hold this mutex, so that none of them
/// overlaps a fork-to-exec window.
static FORK: Mutex<()> = Mutex::new(());

fn no_fork() -> MutexGuard<'static, ()> {
    FORK.lock().unwrap_or_else(|e| e.into_inner())
}

fn apply(storage: Arc<dyn Storage>, policy: Policy) -> walctl::Result<repair::Applied> {
    let _g = no_fork();
    repair::apply(storage, policy)
}

fn restore(storage: Arc<dyn Storage>, id: &str) -> walctl::Result<repair::Restored> {
    let _g = no_fork();
    repair::restore(storage, id)
}

fn open_wal(dir: &Path) -> Wal {
    let _g = no_fork();
    Wal::open(dir, opts()).unwrap()
}

/// Runs `walctl truncate-corrupt --dir DIR ARGS...` (built by cargo, found by
/// assert_cmd).
fn run(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::cargo_bin("walctl").unwrap();
    cmd.arg("truncate-corrupt")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // `spawn` returns once the child has exec'd (or failed to).
    let child = {
        let _g = no_fork();
        cmd.spawn().unwrap()
    };
    child.wait_with_output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn json(o: &Output) -> Value {
    let s = stdout(o);
    assert_eq!(s.lines().count(), 1, "one JSON object: {s}");
    serde_json::from_str(&s).unwrap()
}

/// A pristine log and where its records are.
struct Log {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    recs: Vec<Pos>,
}

fn pristine(n: u64) -> Log {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    write_log(&dir, n);
    let recs = records(&dir);
    assert_eq!(recs.len() as u64, n);
    assert!(segment_names(&dir).len() >= 4, "a multi-segment log");
    Log {
        _tmp: tmp,
        dir,
        recs,
    }
}

/// A fresh copy of `from` in a new temporary directory.
fn copy_of(from: &Path) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    copy_dir(from, &dir);
    (tmp, dir)
}

/// The single piece of quarantine entry `id` for `file`, and its saved bytes.
fn saved_piece(dir: &Path, id: &str, file: &str) -> (quarantine::ManifestItem, Vec<u8>) {
    let st = storage(dir);
    let m = quarantine::load(st.as_ref(), id).unwrap();
    let item = m.items.iter().find(|i| i.file == file).unwrap().clone();
    let bytes = fs::read(Location::in_log(st.as_ref()).saved_file(id, &item)).unwrap();
    (item, bytes)
}

// ---------------------------------------------------------------------------------
// Torn tail

#[test]
fn torn_final_record_at_every_offset_is_cut_and_saved() {
    let log = pristine(160);
    let last = log.recs.last().unwrap().clone();
    let seg_path = log.dir.join(&last.segment);
    let full = fs::read(&seg_path).unwrap();
    assert_eq!(full.len() as u64, last.offset + last.len);
    for cut_at in last.offset..last.offset + last.len {
        let ctx = format!("cut at {cut_at}");
        let (_t, dir) = copy_of(&log.dir);
        cut(&dir.join(&last.segment), cut_at);
        let before = snapshot(&dir);
        let plan = repair::plan(storage(&dir), Policy::TolerateTail).unwrap();
        assert_eq!(snapshot(&dir), before, "{ctx}: planning changed nothing");
        if cut_at == last.offset {
            // The record is simply absent: a clean log.
            assert_eq!(plan.verdict, Verdict::Clean, "{ctx}");
            continue;
        }
        assert_eq!(plan.verdict, Verdict::Cut, "{ctx}");
        assert_eq!(plan.worst, Some(Severity::TornTail), "{ctx}");
        assert_eq!(plan.cuts.len(), 1, "{ctx}");
        let c = &plan.cuts[0];
        assert_eq!(
            (c.segment.as_str(), c.action, c.offset, c.bytes),
            (
                last.segment.as_str(),
                CutAction::Truncate,
                last.offset,
                cut_at - last.offset
            ),
            "{ctx}"
        );
        assert_eq!((c.intact_records, c.damaged_bytes), (0, c.bytes), "{ctx}");
        assert_eq!(plan.kept_last_lsn, Some(last.lsn - 1), "{ctx}");

        let done = apply(storage(&dir), Policy::TolerateTail).unwrap();
        assert_eq!(done.plan, plan, "{ctx}: apply re-plans the same cut");
        assert_eq!(done.after.unwrap().worst(), None, "{ctx}");
        assert_eq!(worst(&dir), None, "{ctx}");
        assert_eq!(records(&dir), log.recs[..log.recs.len() - 1], "{ctx}");
        let id = done.quarantine.unwrap().id;
        let (item, bytes) = saved_piece(&dir, &id, &last.segment);
        assert_eq!(bytes, full[last.offset as usize..cut_at as usize], "{ctx}");
        assert_eq!(item.sha256, quarantine::sha256_hex(&bytes), "{ctx}");
        assert_eq!(
            (
                item.offset,
                item.length,
                item.original_size,
                item.whole_file
            ),
            (last.offset, cut_at - last.offset, cut_at, false),
            "{ctx}"
        );
        // Nothing else moved: every other segment is untouched.
        for name in segment_names(&log.dir) {
            if name != last.segment {
                assert_eq!(
                    sha256_file(&dir.join(&name)),
                    sha256_file(&log.dir.join(&name)),
                    "{ctx}: {name}"
                );
            }
        }
    }
}

#[test]
fn binary_dry_run_changes_nothing_and_apply_cuts_the_torn_tail() {
    let log = pristine(120);
    let last = log.recs.last().unwrap().clone();
    let full = fs::read(log.dir.join(&last.segment)).unwrap();
    for cut_at in [last.offset + 1, last.offset + 4, last.offset + last.len - 1] {
        let (_t, dir) = copy_of(&log.dir);
        cut(&dir.join(&last.segment), cut_at);
        // A dry run never creates the lock file.
        fs::remove_file(dir.join(LOCK_FILE)).unwrap();
        let before = snapshot(&dir);

        let o = run(&dir, &[]);
        assert_eq!(code(&o), 3, "{}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains(&format!(
                "{}  truncate at offset {}",
                last.segment, last.offset
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("{} bytes", cut_at - last.offset)),
            "{out}"
        );
        assert!(
            out.contains(&format!("the next append gets LSN {}", last.lsn)),
            "{out}"
        );
        assert!(stderr(&o).contains("--apply"), "{}", stderr(&o));

        let o = run(&dir, &["--json"]);
        assert_eq!(code(&o), 3);
        let v = json(&o);
        assert_eq!(v["status"], "would_cut");
        assert_eq!(v["worst"], "torn_tail");
        assert_eq!(v["cuts"][0]["segment"], last.segment.as_str());
        assert_eq!(v["cuts"][0]["offset"], last.offset);
        assert_eq!(v["cuts"][0]["bytes"], cut_at - last.offset);
        assert_eq!(v["next_lsn"], last.lsn);
        assert_eq!(v["writer_active"], false);
        assert_eq!(snapshot(&dir), before, "dry runs changed nothing");
        assert!(!dir.join(LOCK_FILE).exists());

        let o = run(&dir, &["--apply", "--json"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let v = json(&o);
        assert_eq!(v["status"], "cut");
        assert_eq!(v["worst_after"], Value::Null);
        let id = v["quarantine_id"].as_str().unwrap().to_string();
        let (_, bytes) = saved_piece(&dir, &id, &last.segment);
        assert_eq!(bytes, full[last.offset as usize..cut_at as usize]);
        assert_eq!(records(&dir), log.recs[..log.recs.len() - 1]);

        // verify-clean, and the writer continues right after the last kept record.
        let o = run(&dir, &[]);
        assert_eq!(code(&o), 0);
        assert!(stdout(&o).contains("nothing to do"), "{}", stdout(&o));
        let wal = open_wal(&dir);
        assert!(wal.open_report().repaired_tail.is_none());
        assert_eq!(wal.next_lsn(), last.lsn);
        assert_eq!(wal.append(b"after repair").unwrap(), last.lsn);
        wal.close().unwrap();
        assert_eq!(worst(&dir), None);
    }
}

#[test]
fn torn_record_alone_in_a_fresh_newest_segment() {
    // The crash came right after a rotation: the newest segment holds only the torn
    // first record.
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    let wal = open_wal(&dir);
    let mut lsn = 0;
    let segs = loop {
        lsn = wal.append(&payload(lsn + 1)).unwrap();
        wal.flush().unwrap();
        let segs = segment_names(&dir);
        if segs.len() == 3 {
            break segs;
        }
    };
    wal.close().unwrap();
    let newest = dir.join(segs.last().unwrap());
    let len = fs::metadata(&newest).unwrap().len();
    cut(&newest, len - 7);
    let plan = repair::plan(storage(&dir), Policy::TolerateTail).unwrap();
    assert_eq!(plan.verdict, Verdict::Cut);
    assert_eq!(plan.cuts[0].offset, 0);
    assert_eq!(plan.cuts[0].bytes, len - 7);
    apply(storage(&dir), Policy::TolerateTail).unwrap();
    assert_eq!(worst(&dir), None);
    assert_eq!(
        fs::metadata(&newest).unwrap().len(),
        0,
        "the segment stays, empty"
    );
    let wal = open_wal(&dir);
    assert_eq!(
        wal.next_lsn(),
        lsn,
        "the writer continues after the last kept LSN"
    );
}

/// Zeros from a record boundary to the end of the newest segment are space a writer
/// preallocated and did not write (it crashed before cutting it): not damage, so
/// repair has nothing to do, and a writer opening the log cuts it without saving
/// zeros to the quarantine.
#[test]
fn zero_filled_tail_is_unwritten_space() {
    let log = pristine(100);
    let (_t, dir) = copy_of(&log.dir);
    let newest_name = segment_names(&dir).last().unwrap().clone();
    let newest = dir.join(&newest_name);
    let size = fs::metadata(&newest).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(size + 300)
        .unwrap();
    let o = run(&dir, &["--apply"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(records(&dir), log.recs);
    assert_eq!(fs::metadata(&newest).unwrap().len(), size + 300);

    let wal = Wal::open(&dir, opts()).unwrap();
    let cut = wal.open_report().unwritten_tail.clone().expect("zeros cut");
    assert_eq!(
        (cut.segment.as_str(), cut.offset, cut.bytes),
        (newest_name.as_str(), size, 300)
    );
    assert!(wal.open_report().repaired_tail.is_none());
    wal.close().unwrap();
    assert_eq!(fs::metadata(&newest).unwrap().len(), size);
    assert!(!dir.join(QUARANTINE_DIR).exists(), "nothing quarantined");
    assert_eq!(records(&dir), log.recs);
}

// ---------------------------------------------------------------------------------
// Corruption in the middle

/// A copy of `log` with one bit flipped in the payload of the record `k` records
/// into its second segment.
fn flipped_in_middle(log: &Log) -> (tempfile::TempDir, PathBuf, Pos) {
    let second = segment_names(&log.dir)[1].clone();
    let bad = log
        .recs
        .iter()
        .filter(|r| r.segment == second)
        .nth(5)
        .unwrap()
        .clone();
    let (t, dir) = copy_of(&log.dir);
    flip_bit(&dir.join(&bad.segment), bad.offset + bad.len - 20, 3);
    (t, dir, bad)
}

#[test]
fn flipped_bit_tolerate_tail_refuses_and_changes_nothing() {
    let log = pristine(200);
    let (_t, dir, bad) = flipped_in_middle(&log);
    let before = snapshot(&dir);
    let readable = records(&dir);

    let o = run(&dir, &[]);
    assert_eq!(code(&o), 4);
    assert!(stderr(&o).contains("point-in-time"), "{}", stderr(&o));
    assert!(stdout(&o).contains("refusing"), "{}", stdout(&o));
    assert_eq!(snapshot(&dir), before);

    let o = run(&dir, &["--apply"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--policy point-in-time"),
        "{}",
        stderr(&o)
    );
    assert_eq!(log_snapshot(&dir), {
        let mut b = before.clone();
        b.remove(LOCK_FILE);
        b
    });
    assert!(!dir.join(QUARANTINE_DIR).exists());

    let o = run(&dir, &["--apply", "--json"]);
    assert_eq!(code(&o), 4);
    let v = json(&o);
    assert_eq!(v["status"], "refused");
    assert_eq!(v["suggested_policy"], "point-in-time");
    assert_eq!(v["cuts"], Value::Array(vec![]));
    assert_eq!(v["suggested"]["kept_last_lsn"], bad.lsn - 1);
    assert_eq!(v["problems"][0]["kind"], "crc_mismatch");

    // The library says the same.
    let done = apply(storage(&dir), Policy::TolerateTail).unwrap();
    let Verdict::Refuse(alt) = &done.plan.verdict else {
        panic!("{:?}", done.plan.verdict)
    };
    assert_eq!(alt.policy, Policy::PointInTime);
    assert!(done.quarantine.is_none());
    assert_eq!(records(&dir), readable);
}

#[test]
fn flipped_bit_point_in_time_keeps_exactly_the_records_before_it() {
    let log = pristine(200);
    let (_t, dir, bad) = flipped_in_middle(&log);
    let damaged = segment_bytes(&dir);
    let before = snapshot(&dir);

    let plan = repair::plan(storage(&dir), Policy::PointInTime).unwrap();
    assert_eq!(snapshot(&dir), before);
    assert_eq!(plan.verdict, Verdict::Cut);
    assert_eq!(plan.worst, Some(Severity::Corruption));
    assert_eq!(plan.kept_last_lsn, Some(bad.lsn - 1));
    let names = segment_names(&dir);
    let later: Vec<&String> = names.iter().skip(2).collect();
    assert_eq!(plan.cuts.len(), 1 + later.len());
    let t = &plan.cuts[0];
    assert_eq!(
        (t.segment.as_str(), t.action, t.offset),
        (bad.segment.as_str(), CutAction::Truncate, bad.offset)
    );
    assert_eq!(t.bytes, damaged[&bad.segment].len() as u64 - bad.offset);
    // Everything after the damaged record is intact and listed, the damaged record
    // itself is not.
    let last_in_seg = log.recs.iter().rfind(|r| r.segment == bad.segment).unwrap();
    assert_eq!(
        t.lsns,
        vec![LsnRange {
            first: bad.lsn + 1,
            last: last_in_seg.lsn
        }]
    );
    assert_eq!(t.damaged_bytes, bad.len);
    for (c, name) in plan.cuts[1..].iter().zip(&later) {
        assert_eq!((&c.segment, c.action), (*name, CutAction::Remove));
        assert_eq!(c.bytes, damaged[*name].len() as u64);
        assert_eq!(c.damaged_bytes, 0);
    }
    assert_eq!(
        plan.intact_records(),
        log.recs.last().unwrap().lsn - bad.lsn
    );

    let o = run(&dir, &["--policy", "point-in-time"]);
    assert_eq!(code(&o), 4, "a dry run that found corruption");
    let out = stdout(&o);
    assert!(out.contains("remove whole segment"), "{out}");
    assert!(
        out.contains(&format!("LSN {}-{}", bad.lsn + 1, last_in_seg.lsn)),
        "{out}"
    );
    assert_eq!(snapshot(&dir), before);

    let o = run(&dir, &["--policy", "point-in-time", "--apply", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["status"], "cut");
    assert_eq!(v["kept_last_lsn"], bad.lsn - 1);
    let id = v["quarantine_id"].as_str().unwrap().to_string();

    assert_eq!(worst(&dir), None);
    let kept: Vec<Pos> = log
        .recs
        .iter()
        .filter(|r| r.lsn < bad.lsn)
        .cloned()
        .collect();
    assert_eq!(records(&dir), kept);
    assert_eq!(
        segment_names(&dir),
        names[..2].to_vec(),
        "later segments are gone"
    );
    // ... and in the quarantine, byte for byte.
    for name in &later {
        let (item, bytes) = saved_piece(&dir, &id, name);
        assert!(item.whole_file);
        assert_eq!(bytes, damaged[*name]);
    }
    let (item, bytes) = saved_piece(&dir, &id, &bad.segment);
    assert!(!item.whole_file);
    assert_eq!(bytes, damaged[&bad.segment][bad.offset as usize..]);
    assert_nothing_lost(&dir, &damaged, "after point-in-time");

    let wal = open_wal(&dir);
    assert_eq!(wal.next_lsn(), bad.lsn);
    assert_eq!(wal.append(b"continues").unwrap(), bad.lsn);
}

#[test]
fn corruption_in_an_older_segment_with_a_torn_tail_is_refused_by_tolerate_tail() {
    let log = pristine(150);
    let (_t, dir, bad) = flipped_in_middle(&log);
    let last = log.recs.last().unwrap();
    cut(&dir.join(&last.segment), last.offset + 3);
    let plan = repair::plan(storage(&dir), Policy::TolerateTail).unwrap();
    assert_eq!(plan.problems.len(), 2);
    let Verdict::Refuse(alt) = &plan.verdict else {
        panic!("{:?}", plan.verdict)
    };
    assert!(plan.cuts.is_empty());
    // The newest segment goes whole: its intact records are listed, its torn record
    // counted as damaged bytes.
    let newest = alt.cuts.last().unwrap();
    assert_eq!(newest.segment, last.segment);
    assert_eq!(newest.action, CutAction::Remove);
    assert_eq!(newest.damaged_bytes, 3);
    let in_newest: Vec<&Pos> = log
        .recs
        .iter()
        .filter(|r| r.segment == last.segment)
        .collect();
    assert_eq!(newest.intact_records, in_newest.len() as u64 - 1);
    assert_eq!(
        newest.lsns,
        vec![LsnRange {
            first: in_newest[0].lsn,
            last: last.lsn - 1
        }]
    );
    let o = run(&dir, &["--policy", "point-in-time", "--apply"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(records(&dir).last().unwrap().lsn, bad.lsn - 1);
}

// ---------------------------------------------------------------------------------
// Restore

#[test]
fn restore_returns_byte_identical_files() {
    let log = pristine(200);
    let (_t, dir, _bad) = flipped_in_middle(&log);
    let damaged = segment_bytes(&dir);
    let names = segment_names(&dir);

    let o = run(&dir, &["--policy", "point-in-time", "--apply", "--json"]);
    assert_eq!(code(&o), 0);
    let id = json(&o)["quarantine_id"].as_str().unwrap().to_string();
    assert_ne!(shas(&segment_bytes(&dir)), shas(&damaged));

    let o = run(&dir, &["--list-quarantine"]);
    assert_eq!(code(&o), 0);
    let table = stdout(&o);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains(&id) && table.contains("point-in-time"),
        "{table}"
    );
    let o = run(&dir, &["--list-quarantine", "--json"]);
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], id.as_str());
    assert_eq!(lines[0]["items"].as_array().unwrap().len(), names.len() - 1);

    // A stray directory and an entry with a broken manifest do not hide the good one:
    // each is named on stderr and skipped.
    let q = dir.join(QUARANTINE_DIR);
    fs::create_dir(q.join("notes")).unwrap();
    fs::create_dir(q.join("broken")).unwrap();
    fs::write(q.join("broken/manifest.json"), b"{").unwrap();
    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec!["--list-quarantine"];
        args.extend_from_slice(extra);
        let o = run(&dir, &args);
        // Listed, but incomplete: exit 1 tells a script so.
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert!(stdout(&o).contains(&id), "{}", stdout(&o));
        assert!(!stdout(&o).contains("notes") && !stdout(&o).contains("broken"));
        let err = stderr(&o);
        assert!(err.contains("notes") && err.contains("broken"), "{err}");
    }
    fs::remove_dir_all(q.join("notes")).unwrap();
    fs::remove_dir_all(q.join("broken")).unwrap();

    let o = run(&dir, &["--restore", &id]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("recreated"), "{}", stdout(&o));
    assert_eq!(segment_names(&dir), names);
    for (name, bytes) in &damaged {
        assert_eq!(
            sha256_file(&dir.join(name)),
            quarantine::sha256_hex(bytes),
            "{name}"
        );
    }
    assert_eq!(shas(&segment_bytes(&dir)), shas(&damaged));
    assert_eq!(
        worst(&dir),
        Some(Severity::Corruption),
        "the damage is back"
    );

    // Idempotent: the bytes are already there.
    let o = run(&dir, &["--restore", &id, "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert!(v["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["action"] == "already-present"));
    assert_eq!(shas(&segment_bytes(&dir)), shas(&damaged));

    // The repair can be made again.
    let o = run(&dir, &["--policy", "point-in-time", "--apply"]);
    assert_eq!(code(&o), 0);
    assert_eq!(worst(&dir), None);
}

#[test]
fn restore_of_a_torn_tail_and_refusal_after_new_writes() {
    let log = pristine(120);
    let last = log.recs.last().unwrap().clone();
    let (_t, dir) = copy_of(&log.dir);
    cut(&dir.join(&last.segment), last.offset + 10);
    let torn = segment_bytes(&dir);
    let done = apply(storage(&dir), Policy::TolerateTail).unwrap();
    let id = done.quarantine.unwrap().id;

    // A writer appended after the repair: restoring would mix old and new records.
    let wal = open_wal(&dir);
    wal.append(b"new record").unwrap();
    wal.close().unwrap();
    let before = log_snapshot(&dir);
    let o = run(&dir, &["--restore", &id]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(err.contains("does not end where the cut began"), "{err}");
    assert!(err.contains("Nothing was changed"), "{err}");
    assert_eq!(log_snapshot(&dir), before);

    // Put the log back as it was right after the repair: restore works.
    cut(&dir.join(&last.segment), last.offset);
    let r = restore(storage(&dir), &id).unwrap();
    assert_eq!(r.items.len(), 1);
    assert_eq!(r.items[0].action, RestoreAction::Appended);
    assert_eq!(shas(&segment_bytes(&dir)), shas(&torn));
    assert_eq!(r.after.worst(), Some(Severity::TornTail));
}

#[test]
fn restore_refuses_a_segment_written_after_the_cut_and_a_damaged_copy() {
    let log = pristine(200);
    let (_t, dir, _bad) = flipped_in_middle(&log);
    let done = apply(storage(&dir), Policy::PointInTime).unwrap();
    let m = done.quarantine.unwrap();

    // A damaged saved copy: refuse, change nothing.
    let piece = Location::in_log(storage(&dir).as_ref()).saved_file(&m.id, &m.items[1]);
    flip_bit(&piece, 10, 0);
    let before = log_snapshot(&dir);
    let o = run(&dir, &["--restore", &m.id]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("damaged"), "{}", stderr(&o));
    assert_eq!(log_snapshot(&dir), before);
    flip_bit(&piece, 10, 0);

    // A newer segment the entry does not hold: refuse.
    let stray = walctl::segment::segment_name(
        walctl::segment::parse_segment_name(&m.items.last().unwrap().file).unwrap() + 1,
    );
    fs::write(dir.join(&stray), b"").unwrap();
    let before = log_snapshot(&dir);
    let err = restore(storage(&dir), &m.id).unwrap_err();
    assert!(err.to_string().contains(&stray), "{err}");
    assert_eq!(log_snapshot(&dir), before);
    fs::remove_file(dir.join(&stray)).unwrap();

    // An unknown id, and one that tries to leave the quarantine.
    for bad in ["no-such-entry", "../x", ".."] {
        let o = run(&dir, &["--restore", bad]);
        assert_eq!(code(&o), 1, "{bad}");
    }
    restore(storage(&dir), &m.id).unwrap();
}

// ---------------------------------------------------------------------------------
// Crashes: `SimDisk::crash_at(dir, n)` fails the n-th mutating call (a write lands
// half-way) and every call after it, as if the process were killed there.

/// Kills `apply` before each of its mutating steps in turn; each time, nothing may be
/// lost, and a rerun must finish the job with the same result as an uninterrupted
/// repair.
fn crash_at_every_step(damaged_dir: &Path, policy: Policy, expect_kept: &[Pos]) -> u64 {
    let original = segment_bytes(damaged_dir);
    // What an uninterrupted repair leaves: the segments and their bytes.
    let expect_log = {
        let (_t, dir) = copy_of(damaged_dir);
        apply(storage(&dir), policy).unwrap();
        segment_bytes(&dir)
    };
    let mut n = 0;
    loop {
        let ctx = format!("{policy} killed at step {n}");
        let (_t, dir) = copy_of(damaged_dir);
        let faulty: Arc<dyn Storage> = Arc::new(common::sim::SimDisk::crash_at(&dir, n));
        match apply(faulty, policy) {
            Ok(done) => {
                // Every step ran: the uninterrupted repair.
                assert_eq!(done.plan.verdict, Verdict::Cut, "{ctx}");
                assert_eq!(records(&dir), expect_kept, "{ctx}");
                assert_eq!(shas(&segment_bytes(&dir)), shas(&expect_log), "{ctx}");
                assert_nothing_lost(&dir, &original, &ctx);
                return n;
            }
            Err(e) => assert!(e.to_string().contains("injected crash"), "{ctx}: {e}"),
        }
        assert_nothing_lost(&dir, &original, &ctx);
        // Later segments go newest first: never a hole in the middle of the ids.
        let ids: Vec<u64> = segment_names(&dir)
            .iter()
            .map(|n| walctl::segment::parse_segment_name(n).unwrap())
            .collect();
        assert_eq!(ids, (0..ids.len() as u64).collect::<Vec<_>>(), "{ctx}");
        let done =
            apply(storage(&dir), policy).unwrap_or_else(|e| panic!("{ctx}: the rerun failed: {e}"));
        assert!(
            !matches!(done.plan.verdict, Verdict::Refuse(_)),
            "{ctx}: the rerun refused"
        );
        assert_eq!(worst(&dir), None, "{ctx}: the rerun finished the job");
        assert_eq!(records(&dir), expect_kept, "{ctx}");
        assert_eq!(
            shas(&segment_bytes(&dir)),
            shas(&expect_log),
            "{ctx}: same as uninterrupted"
        );
        assert_nothing_lost(&dir, &original, &ctx);
        let wal = open_wal(&dir);
        assert_eq!(
            wal.next_lsn(),
            expect_kept.last().map_or(1, |r| r.lsn + 1),
            "{ctx}"
        );
        drop(wal);
        n += 1;
    }
}

#[test]
fn killed_point_in_time_repair_loses_nothing_and_a_rerun_finishes() {
    let log = pristine(200);
    let (_t, dir, bad) = flipped_in_middle(&log);
    let kept: Vec<Pos> = log
        .recs
        .iter()
        .filter(|r| r.lsn < bad.lsn)
        .cloned()
        .collect();
    let steps = crash_at_every_step(&dir, Policy::PointInTime, &kept);
    eprintln!("point-in-time repair: {steps} mutating steps");
    // Quarantine (dirs, copies, manifest, renames), removals and truncation: many
    // distinct stopping points were exercised.
    assert!(steps > 20, "only {steps} steps");
}

/// A cut that leaves the log without records, its bytes saved in a quarantine
/// directory of its own, also notes the next LSN in the log's own quarantine. When
/// that note cannot be written (the process killed there), the repair still stands:
/// it warns, and names the directory that alone holds the next LSN, for the front
/// end to say how to give it to the next writer. The library's warning names no flag.
#[test]
fn a_next_lsn_noted_only_elsewhere_names_the_quarantine_that_holds_it() {
    let log = pristine(120);
    let first = log.recs[0].clone();
    let mut n = 0;
    let (applied, elsewhere) = loop {
        let ctx = format!("killed at step {n}");
        let (_t, dir) = copy_of(&log.dir);
        let elsewhere = tempdir();
        flip_bit(&dir.join(&first.segment), first.offset + first.len - 20, 3);
        let q = FileStorage::open(elsewhere.path()).unwrap();
        let faulty: Arc<dyn Storage> = Arc::new(common::sim::SimDisk::crash_at(&dir, n));
        let res = {
            let _g = no_fork();
            repair::apply_with(faulty, Policy::PointInTime, Some(&q))
        };
        match res {
            Ok(a) if !a.warnings.is_empty() => break (a, elsewhere),
            Ok(a) => panic!("{ctx}: never warned: {a:?}"),
            Err(e) => assert!(e.to_string().contains("injected crash"), "{ctx}: {e}"),
        }
        n += 1;
    };
    assert_eq!(applied.plan.verdict, Verdict::Cut);
    assert_eq!(applied.plan.kept_last_lsn, None, "the log keeps no record");
    assert_eq!(applied.plan.next_lsn, 1);
    assert_eq!(
        applied.next_lsn_only_in.as_deref(),
        Some(elsewhere.path()),
        "{applied:?}"
    );
    let w = &applied.warnings[..];
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("could not note the next LSN (1)"), "{w:?}");
    assert!(
        w[0].contains(&elsewhere.path().display().to_string()),
        "{w:?}"
    );
    assert!(!w[0].contains("--"), "no CLI flag in the library: {w:?}");
}

/// The fsync of the quarantine directory after the entry got its final name fails:
/// the repair fails, cuts nothing, and leaves no entry (neither half-made nor one
/// that claims a cut that never happened).
#[test]
fn a_failed_fsync_after_the_quarantine_rename_leaves_no_entry_and_cuts_nothing() {
    let log = pristine(120);
    let last = log.recs.last().unwrap().clone();
    let (_t, dir) = copy_of(&log.dir);
    cut(&dir.join(&last.segment), last.offset + last.len / 2);
    let before = segment_bytes(&dir);
    // Directory fsyncs: the log directory (new quarantine), the entry, then the
    // quarantine directory after the rename, which fails.
    let disk = common::sim::SimDisk::new(&dir);
    disk.fail_dir_sync_after(2);
    let err = apply(Arc::new(disk), Policy::TolerateTail).unwrap_err();
    assert!(err.to_string().contains("directory fsync"), "{err}");
    assert_eq!(segment_bytes(&dir), before);
    let left: Vec<_> = fs::read_dir(dir.join(QUARANTINE_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // And with the disk well again, the repair goes through.
    apply(storage(&dir), Policy::TolerateTail).unwrap();
    assert_eq!(worst(&dir), None);
}

#[test]
fn killed_torn_tail_repair_loses_nothing_and_a_rerun_finishes() {
    let log = pristine(120);
    let last = log.recs.last().unwrap().clone();
    let (_t, dir) = copy_of(&log.dir);
    cut(&dir.join(&last.segment), last.offset + last.len / 2);
    let steps = crash_at_every_step(&dir, Policy::TolerateTail, &log.recs[..log.recs.len() - 1]);
    assert!(steps > 8, "only {steps} steps");
}

#[test]
fn killed_restore_loses_nothing_and_a_rerun_finishes() {
    let log = pristine(200);
    let (_t, damaged, _bad) = flipped_in_middle(&log);
    let want = segment_bytes(&damaged);
    let (_t2, repaired) = copy_of(&damaged);
    let id = apply(storage(&repaired), Policy::PointInTime)
        .unwrap()
        .quarantine
        .unwrap()
        .id;
    let mut n = 0;
    loop {
        let ctx = format!("restore killed at step {n}");
        let (_t, dir) = copy_of(&repaired);
        let faulty: Arc<dyn Storage> = Arc::new(common::sim::SimDisk::crash_at(&dir, n));
        let finished = restore(faulty, &id).is_ok();
        // Whatever was restored so far is the original, and the rest is still saved.
        assert_nothing_lost(&dir, &want, &ctx);
        if !finished {
            restore(storage(&dir), &id).unwrap();
        }
        assert_eq!(shas(&segment_bytes(&dir)), shas(&want), "{ctx}");
        if finished {
            break;
        }
        n += 1;
    }
    assert!(n > 5, "only {n} steps");
}

// ---------------------------------------------------------------------------------
// Lock, clean logs, bad directories

#[test]
fn a_running_writer_blocks_apply_and_restore() {
    let log = pristine(100);
    let (_t, dir) = copy_of(&log.dir);
    let wal = open_wal(&dir);
    wal.append(b"live").unwrap();
    wal.flush().unwrap();

    let before = log_snapshot(&dir);
    let o = run(&dir, &["--apply"]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(err.contains(LOCK_FILE) && err.contains("locked"), "{err}");
    let o = run(&dir, &["--restore", "any-id"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains(LOCK_FILE), "{}", stderr(&o));
    assert!(matches!(
        apply(storage(&dir), Policy::PointInTime),
        Err(Error::Locked { .. })
    ));
    assert_eq!(log_snapshot(&dir), before);

    // A dry run reads without the lock and says a writer is there.
    let before = snapshot(&dir);
    let o = run(&dir, &["--json"]);
    assert_eq!(code(&o), 0);
    assert_eq!(json(&o)["writer_active"], true);
    assert!(stderr(&o).contains("a writer has"), "{}", stderr(&o));
    assert_eq!(snapshot(&dir), before);

    wal.close().unwrap();
    let o = run(&dir, &["--apply"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn clean_log_has_nothing_to_do() {
    let log = pristine(100);
    let (_t, dir) = copy_of(&log.dir);
    let before = snapshot(&dir);
    for policy in ["tolerate-tail", "point-in-time"] {
        let o = run(&dir, &["--policy", policy]);
        assert_eq!(code(&o), 0);
        assert!(stdout(&o).contains("nothing to do"), "{}", stdout(&o));
        let o = run(&dir, &["--policy", policy, "--json"]);
        assert_eq!(code(&o), 0);
        let v = json(&o);
        assert_eq!(v["status"], "clean");
        assert_eq!(v["next_lsn"], 101);
        assert_eq!(v["exit_code"], 0);
        let o = run(&dir, &["--policy", policy, "--apply"]);
        assert_eq!(code(&o), 0);
        assert!(stdout(&o).contains("nothing to do"), "{}", stdout(&o));
    }
    assert_eq!(log_snapshot(&dir), {
        let mut b = before;
        b.remove(LOCK_FILE);
        b
    });
    assert!(!dir.join(QUARANTINE_DIR).exists());
    let o = run(&dir, &["--list-quarantine", "--json"]);
    assert_eq!(code(&o), 0);
    assert_eq!(stdout(&o), "");
}

#[test]
fn not_a_log_directory_fails_without_creating_anything() {
    let tmp = tempdir();
    fs::write(tmp.path().join("notes.txt"), b"hello").unwrap();
    for args in [&[][..], &["--apply"][..]] {
        let o = run(tmp.path(), args);
        assert_eq!(code(&o), 1);
        assert!(stderr(&o).contains("no segment files"), "{}", stderr(&o));
    }
    let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
    let o = run(&tmp.path().join("missing"), &[]);
    assert_eq!(code(&o), 1);
    // Usage errors are 2.
    let o = run(tmp.path(), &["--restore", "x", "--apply"]);
    assert_eq!(code(&o), 2);
    let o = run(tmp.path(), &["--policy", "skip-everything"]);
    assert_eq!(code(&o), 2);
}

#[test]
fn the_plan_lists_intact_records_past_several_damaged_ones() {
    let log = pristine(200);
    let second = segment_names(&log.dir)[1].clone();
    let in_seg: Vec<&Pos> = log.recs.iter().filter(|r| r.segment == second).collect();
    let (a, b) = (in_seg[3], in_seg[9]);
    let (_t, dir) = copy_of(&log.dir);
    for r in [a, b] {
        flip_bit(&dir.join(&r.segment), r.offset + r.len - 30, 6);
    }
    let plan = repair::plan(storage(&dir), Policy::PointInTime).unwrap();
    let c = &plan.cuts[0];
    assert_eq!((c.segment.as_str(), c.offset), (second.as_str(), a.offset));
    assert_eq!(
        c.lsns,
        vec![
            LsnRange {
                first: a.lsn + 1,
                last: b.lsn - 1
            },
            LsnRange {
                first: b.lsn + 1,
                last: in_seg.last().unwrap().lsn
            }
        ]
    );
    assert_eq!(c.intact_records, in_seg.len() as u64 - 3 - 2);
    assert_eq!(c.damaged_bytes, a.len + b.len);
    assert_eq!(plan.kept_last_lsn, Some(a.lsn - 1));
}
