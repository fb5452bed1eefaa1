//! Nothing deleted or lost that the operator did not ask for, and every refusal says
//! what to do next (issue 14): retention only when asked and always reported, no
//! empty checkpoint by accident, LSNs that never restart after a cut, cuts that name
//! the checkpoints they take, oversized input refused before it is read, and the
//! quarantine's housekeeping. Through the real binary, and through the library where
//! it has something to say.

use crate::common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use assert_cmd::cargo::cargo_bin;
use common::*;
use walctl::codec::encode_record;
use walctl::reader::WalReader;
use walctl::writer::{SyncPolicy, Wal, WalOptions};

fn walctl(sub: &str, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(cargo_bin("walctl"));
    c.arg(sub).arg("--dir").arg(dir).args(args);
    c
}

/// Runs with `input` on stdin (empty: stdin is /dev/null).
fn run_with(c: &mut Command, input: &[u8]) -> Output {
    if input.is_empty() {
        return c.stdin(Stdio::null()).output().unwrap();
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

fn run(c: &mut Command) -> Output {
    run_with(c, b"")
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) -> &Output {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout_of(out),
        stderr_of(out)
    );
    out
}

fn lsns(out: &Output) -> Vec<u64> {
    stdout_of(out).lines().map(|l| l.parse().unwrap()).collect()
}

/// LSNs of every record the library reads back, in order.
fn log_lsns(dir: &Path) -> Vec<u64> {
    WalReader::open(dir)
        .unwrap()
        .entries_from(0)
        .unwrap()
        .map(|e| e.unwrap().lsn)
        .collect()
}

fn numbers(from: u64, to: u64) -> Vec<u8> {
    (from..=to)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

// ---------------------------------------------------------------------------------
// 1. Retention: only when asked, and always said

/// A log of many small segments with a checkpoint near its end.
fn log_with_checkpoint(dir: &Path) {
    ok(&run_with(
        &mut walctl("append", dir, &["--max-segment-size", "1K"]),
        &numbers(1, 2000),
    ));
    ok(&run(&mut walctl(
        "checkpoint",
        dir,
        &["--max-segment-size", "1K", "{\"applied_up_to\":2000}"],
    )));
}

#[test]
fn the_cli_deletes_no_segment_unless_asked() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    log_with_checkpoint(&dir);
    let before = segment_names(&dir);
    assert!(before.len() > 12, "{} segments", before.len());
    // Appending after the checkpoint rotates several times: with the library's
    // default of 10 this used to delete most of the log, silently.
    let out = run_with(
        &mut walctl("append", &dir, &["--max-segment-size", "1K"]),
        &numbers(1, 300),
    );
    ok(&out);
    assert!(!stderr_of(&out).contains("deleted"), "{}", stderr_of(&out));
    let after = segment_names(&dir);
    assert!(after.len() > before.len());
    assert_eq!(&after[..before.len()], &before[..], "a segment was deleted");
    assert_eq!(log_lsns(&dir), (1..=2301).collect::<Vec<_>>());
}

#[test]
fn retention_when_asked_names_what_it_deleted() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    log_with_checkpoint(&dir);
    let before = segment_names(&dir);
    // LSN ranges of every segment, from the library's reading of the log.
    let reader = WalReader::open(&dir).unwrap();
    let scan = reader.scan().unwrap();
    let out = run_with(
        &mut walctl(
            "append",
            &dir,
            &["--max-segment-size", "1K", "--max-segments", "3"],
        ),
        &numbers(1, 100),
    );
    ok(&out);
    let after = segment_names(&dir);
    let gone: Vec<&String> = before.iter().filter(|n| !after.contains(n)).collect();
    assert!(gone.len() > 5, "retention deleted {gone:?}");
    let first = scan.segments.iter().find(|s| &s.name == gone[0]).unwrap();
    let last = scan
        .segments
        .iter()
        .find(|s| &s.name == gone[gone.len() - 1])
        .unwrap();
    let err = stderr_of(&out);
    let want = format!(
        "deleted {} segments: {}..{} (LSN {}-{})",
        gone.len(),
        gone[0],
        gone[gone.len() - 1],
        first.first_lsn.unwrap(),
        last.last_lsn.unwrap()
    );
    assert!(err.contains(&want), "want {want:?} in: {err}");
    assert!(err.contains("--max-segments 3"), "{err}");
    // What is left starts right after what was deleted, checkpoint included.
    assert_eq!(log_lsns(&dir)[0], last.last_lsn.unwrap() + 1);
}

#[test]
fn the_library_reports_what_retention_deleted() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    // The library's default stays the Go library's 10.
    assert_eq!(WalOptions::default().max_segments, 10);
    let opts = WalOptions::default()
        .max_segment_size(256)
        .max_segments(2)
        .sync(SyncPolicy::Never);
    let wal = Wal::open(&dir, opts.clone()).unwrap();
    for i in 0..50u32 {
        wal.append(format!("record {i:04} {}", "x".repeat(40)).as_bytes())
            .unwrap();
    }
    assert_eq!(wal.retention().removed, 0, "no checkpoint: nothing deleted");
    let cp = wal.checkpoint(b"state").unwrap();
    for i in 0..20u32 {
        wal.append(format!("after {i:04} {}", "y".repeat(40)).as_bytes())
            .unwrap();
    }
    let r = wal.retention();
    wal.close().unwrap();
    let left = segment_names(&dir);
    let first_left: u64 = left[0].strip_prefix("segment-").unwrap().parse().unwrap();
    assert!(r.removed > 0);
    assert_eq!(r.ids, Some((0, first_left - 1)));
    assert_eq!(r.removed, first_left);
    let kept = log_lsns(&dir);
    assert_eq!(r.lsns, Some((1, kept[0] - 1)), "{r:?}");
    assert!(kept[0] <= cp, "the checkpoint is kept");
    assert_eq!(r.segments.len() as u64, r.removed);
    for pair in r.segments.windows(2) {
        let (a, b) = (pair[0].lsns.unwrap(), pair[1].lsns.unwrap());
        assert_eq!(a.1 + 1, b.0, "contiguous LSN runs: {r:?}");
    }
}

// ---------------------------------------------------------------------------------
// 2. An empty checkpoint only on purpose

#[test]
fn an_empty_checkpoint_is_refused_unless_allowed() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    ok(&run(&mut walctl("append", &dir, &["a", "b"])));
    let before: Vec<(String, String)> = segment_names(&dir)
        .into_iter()
        .map(|n| {
            let d = sha256_file(&dir.join(&n));
            (n, d)
        })
        .collect();
    let empty_file = tmp.path().join("empty");
    fs::write(&empty_file, b"").unwrap();
    let fresh = tmp.path().join("fresh");
    // `false | walctl checkpoint`, `--file /dev/null`, an empty file, `''`.
    let cases: Vec<(Command, &str)> = vec![
        (walctl("checkpoint", &dir, &[]), "standard input was empty"),
        (
            walctl("checkpoint", &dir, &["--file", "/dev/null"]),
            "/dev/null is empty",
        ),
        (
            {
                let mut c = walctl("checkpoint", &dir, &["--file"]);
                c.arg(&empty_file);
                c
            },
            "is empty",
        ),
        (walctl("checkpoint", &dir, &[""]), "DATA argument is empty"),
        (
            walctl("checkpoint", &fresh, &[""]),
            "DATA argument is empty",
        ),
    ];
    for (mut c, why) in cases {
        let out = run(&mut c);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(out.stdout.is_empty());
        assert!(
            err.contains("refusing to write an empty checkpoint"),
            "{err}"
        );
        assert!(err.contains(why), "{why:?} in {err}");
        assert!(err.contains("--allow-empty"), "{err}");
        assert!(err.contains("Nothing was written"), "{err}");
    }
    let after: Vec<(String, String)> = segment_names(&dir)
        .into_iter()
        .map(|n| {
            let d = sha256_file(&dir.join(&n));
            (n, d)
        })
        .collect();
    assert_eq!(before, after, "a refused checkpoint changed the log");
    assert!(
        !fresh.exists(),
        "a refused checkpoint created the directory"
    );

    let out = run(&mut walctl("checkpoint", &dir, &["--allow-empty", ""]));
    ok(&out);
    assert_eq!(lsns(&out), vec![3]);
    let e = WalReader::open(&dir)
        .unwrap()
        .from_newest_checkpoint()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert!(e.checkpoint && e.lsn == 3 && e.data.is_empty());
}

// ---------------------------------------------------------------------------------
// 8. LSNs never restart after a cut that keeps nothing

fn manifests(dir: &Path) -> Vec<walctl::quarantine::Manifest> {
    walctl::quarantine::list(&walctl::storage::FileStorage::open(dir).unwrap()).unwrap()
}

/// The reproduction: a log holding LSN 930..1301 whose first record is
/// damaged; a point-in-time cut keeps nothing.
#[test]
fn a_cut_that_keeps_nothing_continues_at_the_first_lsn_cut() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    let seg = ["--max-segment-size", "4K"];
    ok(&run_with(
        walctl("append", &dir, &seg).args(["--max-segments", "0"]),
        &numbers(1, 1000),
    ));
    ok(&run(walctl("checkpoint", &dir, &seg).args([
        "--max-segments",
        "2",
        "{\"applied_up_to\":1000}",
    ])));
    ok(&run_with(
        walctl("append", &dir, &seg).args(["--max-segments", "2"]),
        &numbers(1, 300),
    ));
    let held = log_lsns(&dir);
    assert_eq!((held[0], *held.last().unwrap()), (930, 1301));
    let first = segment_names(&dir)[0].clone();
    let mut bytes = fs::read(dir.join(&first)).unwrap();
    bytes[12] = b'Q';
    fs::write(dir.join(&first), bytes).unwrap();

    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--policy", "point-in-time"],
    ));
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stdout_of(&out).contains("the log would keep no records; the next append gets LSN 930"),
        "{}",
        stdout_of(&out)
    );
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--policy", "point-in-time", "--apply"],
    ));
    ok(&out);
    assert!(
        stdout_of(&out).contains("no records; the next append gets LSN 930"),
        "{}",
        stdout_of(&out)
    );
    assert!(log_lsns(&dir).is_empty());
    let m = manifests(&dir);
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0].next_lsn,
        Some(930),
        "the manifest records the point in time"
    );
    // The library agrees with the CLI.
    let wal = Wal::open(&dir, WalOptions::default()).unwrap();
    assert_eq!(wal.next_lsn(), 930);
    drop(wal);
    let out = run(&mut walctl("append", &dir, &["x"]));
    ok(&out);
    assert_eq!(lsns(&out), vec![930]);

    // Damage that one record too: nothing around it to derive its LSN from, but the
    // earlier cut's manifest still says where the log is.
    let first = segment_names(&dir)[0].clone();
    let mut bytes = fs::read(dir.join(&first)).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0x40;
    fs::write(dir.join(&first), bytes).unwrap();
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--policy", "point-in-time", "--apply"],
    ));
    ok(&out);
    assert!(
        stdout_of(&out).contains("the next append gets LSN 930"),
        "{}",
        stdout_of(&out)
    );
    let out = run(&mut walctl("append", &dir, &["y", "z"]));
    assert_eq!(lsns(ok(&out)), vec![930, 931]);
}

/// A log as the Go library leaves it after retention: only segment-7 and segment-8,
/// LSN 500..504.
fn go_log_500(dir: &Path) -> Vec<u8> {
    fs::create_dir_all(dir).unwrap();
    let mut s7 = Vec::new();
    for lsn in 500..=502u64 {
        encode_record(&mut s7, lsn, format!("entry {lsn}").as_bytes(), false);
    }
    let mut s8 = Vec::new();
    for lsn in 503..=504u64 {
        encode_record(&mut s8, lsn, format!("entry {lsn}").as_bytes(), false);
    }
    fs::write(dir.join("segment-7"), &s7).unwrap();
    fs::write(dir.join("segment-8"), &s8).unwrap();
    s7
}

#[test]
fn a_go_log_cut_at_its_first_record_continues_at_that_records_lsn() {
    let tmp = tempdir();
    let dir = tmp.path().join("go");
    let s7 = go_log_500(&dir);
    // A flipped byte in the first record's payload: its framing is whole, so its
    // neighbour (LSN 501) gives its LSN.
    let mut damaged = s7.clone();
    let n = 4 + 2 + 2 + 2; // prefix, LSN field (tag + 2-byte varint), data tag + len
    damaged[n] ^= 0x01;
    fs::write(dir.join("segment-7"), &damaged).unwrap();
    let plan = walctl::repair::plan(
        std::sync::Arc::new(walctl::storage::FileStorage::open(&dir).unwrap()),
        walctl::repair::Policy::PointInTime,
    )
    .unwrap();
    assert_eq!(plan.kept_last_lsn, None);
    assert_eq!(plan.next_lsn(), 500);
    ok(&run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--policy", "point-in-time", "--apply"],
    )));
    assert_eq!(manifests(&dir)[0].next_lsn, Some(500));
    let out = run(&mut walctl("append", &dir, &["next"]));
    assert_eq!(lsns(ok(&out)), vec![500]);
}

#[test]
fn when_the_damaged_records_cannot_be_counted_the_next_lsn_errs_high() {
    let tmp = tempdir();
    let dir = tmp.path().join("go");
    let s7 = go_log_500(&dir);
    // The first two records (LSN 500 and 501, 24 bytes each) are garbage: the
    // resync finds LSN 502 after one damaged range, which holds at least one
    // record. The next LSN is then 501: one too high, never one that may already
    // have been given out.
    let mut damaged = s7.clone();
    damaged[..48].fill(0x7f);
    fs::write(dir.join("segment-7"), &damaged).unwrap();
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--policy", "point-in-time", "--apply"],
    ));
    ok(&out);
    assert!(
        stdout_of(&out).contains("the next append gets LSN 501"),
        "{}",
        stdout_of(&out)
    );
    let out = run(&mut walctl("append", &dir, &["next"]));
    assert_eq!(lsns(ok(&out)), vec![501]);
}

// ---------------------------------------------------------------------------------
// 3. A point-in-time cut names the checkpoints it removes

#[test]
fn a_point_in_time_cut_names_the_checkpoints_it_removes_and_where_recovery_starts() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    let seg = ["--max-segment-size", "4K"];
    ok(&run_with(
        &mut walctl("append", &dir, &seg),
        &numbers(1, 300),
    ));
    ok(&run(walctl("checkpoint", &dir, &seg).arg("cp-301")));
    ok(&run_with(
        &mut walctl("append", &dir, &seg),
        &numbers(1, 300),
    ));
    ok(&run(walctl("checkpoint", &dir, &seg).arg("cp-602")));
    ok(&run_with(
        &mut walctl("append", &dir, &seg),
        &numbers(1, 10),
    ));
    ok(&run(walctl("checkpoint", &dir, &seg).arg("cp-613")));
    ok(&run_with(
        &mut walctl("append", &dir, &seg),
        &numbers(1, 300),
    ));
    // Damage the record after LSN 450: the cut takes the checkpoints 602 and 613.
    let reader = WalReader::open(&dir).unwrap();
    let e451 = reader.entries_from(451).unwrap().next().unwrap().unwrap();
    assert_eq!(e451.lsn, 451);
    let seg_file = dir.join(walctl::segment::segment_name(e451.segment_id));
    flip_bit(&seg_file, e451.offset + 4, 3);

    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--policy", "point-in-time"],
    ));
    assert_eq!(out.status.code(), Some(4));
    let text = stdout_of(&out);
    assert!(
        text.contains(
            "the cut removes 2 checkpoints: LSN 613, 602 (newest first); recovery will then \
             start at checkpoint LSN 301"
        ),
        "{text}"
    );
    // The default policy refuses, and says the same about the cut it suggests.
    let out = run(&mut walctl("truncate-corrupt", &dir, &[]));
    assert!(
        stdout_of(&out).contains("it removes 2 checkpoints: LSN 613, 602"),
        "{}",
        stdout_of(&out)
    );
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--policy", "point-in-time", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cut_checkpoints"], serde_json::json!([602, 613]));
    assert_eq!(v["kept_checkpoint_lsn"], 301);

    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--policy", "point-in-time", "--apply"],
    ));
    ok(&out);
    assert!(
        stdout_of(&out).contains(
            "the cut removed 2 checkpoints: LSN 613, 602 (newest first); recovery now starts \
             at checkpoint LSN 301"
        ),
        "{}",
        stdout_of(&out)
    );
    // ...which is where the library's recovery does start.
    let first = WalReader::open(&dir)
        .unwrap()
        .from_newest_checkpoint()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!((first.lsn, first.checkpoint), (301, true));

    // Damage before the first checkpoint: none kept, recovery starts at the first
    // record.
    let e10 = WalReader::open(&dir)
        .unwrap()
        .entries_from(10)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    flip_bit(
        &dir.join(walctl::segment::segment_name(e10.segment_id)),
        e10.offset + 4,
        3,
    );
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--policy", "point-in-time"],
    ));
    assert!(
        stdout_of(&out).contains(
            "the cut removes checkpoint LSN 301; recovery will then start at the first kept \
             record, LSN 1: no checkpoint is kept"
        ),
        "{}",
        stdout_of(&out)
    );
}

// ---------------------------------------------------------------------------------
// 5. Oversized input (the refusals, whose memory is measured, are in input_limits.rs)

#[test]
fn large_piped_input_that_fits_is_written_whole() {
    // Larger than what is held in memory while reading: the rest waits in a
    // temporary file and comes back intact.
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    let data: Vec<u8> = (0..(20u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let out = run_with(&mut walctl("checkpoint", &dir, &[]), &data);
    assert_eq!(lsns(ok(&out)), vec![1]);
    let e = WalReader::open(&dir)
        .unwrap()
        .from_newest_checkpoint()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert!(e.data == data, "the snapshot came back different");
}

// ---------------------------------------------------------------------------------
// 6, 9, 10, 11. The quarantine's housekeeping

/// A log of LSN 1..=5 whose torn sixth record is cut by `truncate-corrupt --apply`;
/// returns the quarantine entry's id and the undo line printed.
fn torn_and_repaired(dir: &Path) -> (String, String) {
    ok(&run(&mut walctl("append", dir, &["a", "b", "c", "d", "e"])));
    let mut tail = Vec::new();
    encode_record(&mut tail, 6, &[7u8; 300], false);
    let seg = dir.join("segment-0");
    let mut bytes = fs::read(&seg).unwrap();
    bytes.extend_from_slice(&tail[..150]);
    fs::write(&seg, bytes).unwrap();
    let out = run(&mut walctl("truncate-corrupt", dir, &["--apply", "--json"]));
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["quarantine_id"].as_str().unwrap().to_string();
    let out = run(&mut walctl("truncate-corrupt", dir, &["--apply"]));
    ok(&out);
    (id, stdout_of(&out))
}

#[test]
fn restoring_an_unknown_entry_says_there_is_none_and_where_to_look() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    ok(&run(&mut walctl("append", &dir, &["a"])));
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--restore", "no-such-id"],
    ));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    let qdir = dir.join(".walctl-quarantine");
    let want = format!("no quarantine entry no-such-id in {}", qdir.display());
    assert!(err.contains(&want), "{want:?} in {err}");
    assert!(err.contains("--list-quarantine"), "{err}");
    assert!(!err.contains("No such file"), "{err}");
}

#[test]
fn the_listing_says_whether_an_entry_was_restored() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    let (id, _) = torn_and_repaired(&dir);
    let listed = |dir: &Path| -> serde_json::Value {
        let out = run(&mut walctl(
            "truncate-corrupt",
            dir,
            &["--list-quarantine", "--json"],
        ));
        serde_json::from_slice(&ok(&out).stdout).unwrap()
    };
    assert_eq!(listed(&dir)["restored"], serde_json::Value::Null);
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--list-quarantine"],
    ));
    let text = stdout_of(ok(&out));
    assert!(text.lines().next().unwrap().contains("RESTORED"), "{text}");
    assert!(text.contains(" no "), "{text}");
    ok(&run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--restore", &id],
    )));
    let v = listed(&dir);
    let when = v["restored"].as_str().expect("a restore time");
    assert!(humantime::parse_rfc3339(when).is_ok(), "{when}");
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--list-quarantine"],
    ));
    assert!(stdout_of(&out).contains(when), "{}", stdout_of(&out));
}

#[test]
fn pruning_lists_first_and_deletes_only_with_apply() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    let (old, _) = torn_and_repaired(&dir);
    // A second entry, then the first made a year old.
    let mut tail = Vec::new();
    encode_record(&mut tail, 7, &[9u8; 300], false);
    ok(&run(&mut walctl("append", &dir, &["f"])));
    let seg = dir.join("segment-0");
    let mut bytes = fs::read(&seg).unwrap();
    bytes.extend_from_slice(&tail[..100]);
    fs::write(&seg, bytes).unwrap();
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--apply", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_slice(&ok(&out).stdout).unwrap();
    let new = v["quarantine_id"].as_str().unwrap().to_string();
    let qdir = dir.join(".walctl-quarantine");
    let mpath = qdir.join(&old).join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&mpath).unwrap()).unwrap();
    m["time"] = "2025-01-01T00:00:00Z".into();
    fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();

    // A dry run names both and deletes nothing.
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--prune-quarantine"],
    ));
    let text = stdout_of(ok(&out));
    assert!(text.contains(&format!("would delete {old}")), "{text}");
    assert!(text.contains(&format!("would delete {new}")), "{text}");
    assert!(stderr_of(&out).contains("dry run: nothing was deleted"));
    assert!(qdir.join(&old).exists() && qdir.join(&new).exists());
    // --older-than picks the old one only.
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--prune-quarantine", "--older-than", "30d", "--apply"],
    ));
    let text = stdout_of(ok(&out));
    assert!(text.contains(&format!("deleted {old}")), "{text}");
    assert!(!text.contains(&new), "{text}");
    assert!(!qdir.join(&old).exists());
    assert!(qdir.join(&new).exists());
    // --older-than without --prune-quarantine is a usage error.
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--older-than", "1d"],
    ));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn pruning_keeps_the_entry_an_empty_log_takes_its_next_lsn_from() {
    let tmp = tempdir();
    let dir = tmp.path().join("go");
    let mut s7 = go_log_500(&dir);
    s7[10] ^= 1;
    fs::write(dir.join("segment-7"), &s7).unwrap();
    ok(&run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--policy", "point-in-time", "--apply"],
    )));
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--prune-quarantine", "--apply"],
    ));
    let text = stdout_of(ok(&out));
    assert!(
        text.contains("the log holds no records, and this entry records that its next LSN is 500"),
        "{text}"
    );
    assert_eq!(manifests(&dir).len(), 1);
    let out = run(&mut walctl("append", &dir, &["next"]));
    assert_eq!(lsns(ok(&out)), vec![500]);
}

#[test]
fn an_older_entry_is_not_restored_before_a_newer_cut_at_or_before_it() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    let (a, _) = torn_and_repaired(&dir);
    let cut_at = fs::metadata(dir.join("segment-0")).unwrap().len();
    // Acknowledged records where A's cut began, then damage there: cut B.
    let out = run(&mut walctl("append", &dir, &["r6", "r7"]));
    assert_eq!(lsns(ok(&out)), vec![6, 7]);
    let written = fs::read(dir.join("segment-0")).unwrap();
    flip_bit(&dir.join("segment-0"), cut_at + 4, 3);
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--policy", "point-in-time", "--apply", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_slice(&ok(&out).stdout).unwrap();
    let b = v["quarantine_id"].as_str().unwrap().to_string();
    assert_eq!(v["cuts"][0]["offset"], cut_at);

    let out = run(&mut walctl("truncate-corrupt", &dir, &["--restore", &a]));
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "the newer entry {b} cut segment-0 at offset {cut_at}"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("Restore {b} first")), "{err}");
    assert_eq!(
        fs::metadata(dir.join("segment-0")).unwrap().len(),
        cut_at,
        "nothing changed"
    );
    // B first brings back the acknowledged records (with the damage B cut).
    ok(&run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--restore", &b],
    )));
    let mut want = written.clone();
    want[cut_at as usize + 4] ^= 1 << 3;
    assert!(fs::read(dir.join("segment-0")).unwrap() == want);
}

#[test]
fn the_listing_is_oldest_first_whatever_the_pids() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    let (id, _) = torn_and_repaired(&dir);
    let qdir = dir.join(".walctl-quarantine");
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(qdir.join(&id).join("manifest.json")).unwrap()).unwrap();
    // Same second; as strings "10003" sorts before "9987" and "301" before "32762",
    // but the nanoseconds say which came first.
    let made = [
        "2026-01-01T000000Z-10003-000000900-0",
        "2026-01-01T000000Z-9987-000000100-0",
        "2026-01-01T000000Z-301-000000700-0",
        "2026-01-01T000000Z-32762-000000500-0",
    ];
    for new_id in made {
        let d = qdir.join(new_id);
        fs::create_dir(&d).unwrap();
        for f in fs::read_dir(qdir.join(&id)).unwrap() {
            let f = f.unwrap();
            fs::copy(f.path(), d.join(f.file_name())).unwrap();
        }
        let mut m = m.clone();
        m["id"] = new_id.into();
        fs::write(d.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    }
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--list-quarantine", "--json"],
    ));
    let ids: Vec<String> = stdout_of(ok(&out))
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        ids,
        vec![made[1], made[3], made[2], made[0], id.as_str()],
        "oldest first"
    );
}

#[test]
fn the_hints_can_be_pasted_into_a_shell() {
    /// Runs a suggested command line with sh, `$x` set: it must succeed.
    fn pasted(hint: &str) -> Output {
        let exe = cargo_bin("walctl");
        let cmd = hint.replacen("walctl", &exe.to_string_lossy(), 1);
        let out = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .env("x", "EXPANDED")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{cmd}: {}", stderr_of(&out));
        out
    }
    let tmp = tempdir();
    let dir = tmp.path().join("my wal ü'$x");
    torn_and_repaired(&dir);
    let mut tail = Vec::new();
    encode_record(&mut tail, 6, &[7u8; 300], false);
    let seg = dir.join("segment-0");
    let before = fs::read(&seg).unwrap();
    let mut bytes = before.clone();
    bytes.extend_from_slice(&tail[..150]);
    fs::write(&seg, &bytes).unwrap();
    // verify's hint, pasted, cuts the torn tail...
    let out = run(&mut walctl("verify", &dir, &[]));
    assert_eq!(out.status.code(), Some(3));
    let text = stdout_of(&out);
    let hint = text
        .split('`')
        .find(|s| s.starts_with("walctl truncate-corrupt"))
        .unwrap_or_else(|| panic!("no hint in {text}"));
    let out = pasted(hint);
    assert!(
        fs::read(&seg).unwrap() == before,
        "the pasted hint cut the tail"
    );
    // ...and its undo hint, pasted, puts it back.
    let text = stdout_of(&out);
    let hint = text
        .lines()
        .find_map(|l| l.strip_prefix("undo with: "))
        .unwrap_or_else(|| panic!("no undo hint in {text}"));
    pasted(hint);
    assert!(
        fs::read(&seg).unwrap() == bytes,
        "the pasted hint restored the cut"
    );
}

// ---------------------------------------------------------------------------------
// 12. Small messages

#[test]
fn a_dangling_symlink_as_dir_says_its_target_is_missing() {
    let tmp = tempdir();
    let link = tmp.path().join("wal");
    let target = tmp.path().join("gone");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let want = format!(
        "{} is a symbolic link to {}, which does not exist",
        link.display(),
        target.display()
    );
    for (sub, args) in [
        ("append", &["x"][..]),
        ("checkpoint", &["x"]),
        ("dump", &[]),
        ("verify", &[]),
    ] {
        let out = run(&mut walctl(sub, &link, args));
        assert_eq!(out.status.code(), Some(1), "{sub}");
        let err = stderr_of(&out);
        assert!(err.contains(&want), "{sub}: {want:?} in {err}");
        assert!(!err.contains("os error 17"), "{sub}: {err}");
    }
    assert!(!target.exists());
}

#[test]
fn only_the_writer_that_made_the_directory_says_it_created_it() {
    for round in 0..5 {
        let tmp = tempdir();
        let dir = tmp.path().join(format!("fresh-{round}"));
        let children: Vec<_> = (0..2)
            .map(|i| {
                walctl("append", &dir, &[&format!("entry {i}")])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut said = 0;
        for c in children {
            let out = c.wait_with_output().unwrap();
            // One of the two may find the lock held: that is fine here.
            if stderr_of(&out).contains("created log directory") {
                said += 1;
            }
        }
        assert_eq!(
            said, 1,
            "round {round}: 'created log directory' said {said} times"
        );
    }
}

#[test]
fn hex_whitespace_is_ignored_alike_everywhere_and_errors_name_the_byte() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    // An argument, a line, a file: "ab cd" is two bytes everywhere.
    ok(&run(&mut walctl("append", &dir, &["-e", "hex", "ab cd"])));
    ok(&run_with(
        &mut walctl("append", &dir, &["-e", "hex"]),
        b"ab cd\n",
    ));
    let f = tmp.path().join("f.hex");
    fs::write(&f, b"ab\n cd\n").unwrap();
    ok(&run(
        walctl("append", &dir, &["-e", "hex", "--file"]).arg(&f)
    ));
    let datas: Vec<Vec<u8>> = WalReader::open(&dir)
        .unwrap()
        .entries_from(0)
        .unwrap()
        .map(|e| e.unwrap().data)
        .collect();
    assert_eq!(datas, vec![vec![0xab, 0xcd]; 3]);
    // An odd digit count names the unpaired digit, whitespace not counted.
    fs::write(&f, b"ab c").unwrap();
    let mut arg = walctl("append", &dir, &["-e", "hex", "ab c"]);
    let mut line = walctl("append", &dir, &["-e", "hex"]);
    let mut file = walctl("append", &dir, &["-e", "hex", "--file"]);
    file.arg(&f);
    for (name, c, input) in [
        ("argument", &mut arg, &b""[..]),
        ("line", &mut line, b"ab c\n"),
        ("file", &mut file, b""),
    ] {
        let out = run_with(c, input);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = stderr_of(&out);
        assert!(
            err.contains("odd number of digits (3, whitespace not counted): the last, 'c' at byte 3, has no pair"),
            "{name}: {err}"
        );
    }
    let out = run(&mut walctl("append", &dir, &["-e", "hex", "ab zz"]));
    assert!(
        stderr_of(&out).contains("invalid hex digit 'z' at byte 3"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(log_lsns(&dir), vec![1, 2, 3], "refused input wrote nothing");
}

// ---------------------------------------------------------------------------------
// 7. Contract details

#[test]
fn every_help_has_the_same_shape() {
    for cmd in [
        "append",
        "checkpoint",
        "dump",
        "verify",
        "segments",
        "truncate-corrupt",
        "bench",
        "completions",
        "man",
    ] {
        let out = Command::new(cargo_bin("walctl"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        let help = stdout_of(ok(&out));
        let at = |heading: &str| {
            help.lines()
                .position(|l| l.starts_with(heading))
                .unwrap_or_else(|| panic!("{cmd} --help has no {heading:?}:\n{help}"))
        };
        let (usage, options, examples, codes) = (
            at("Usage:"),
            at("Options:"),
            at("Examples:"),
            at("Exit codes"),
        );
        assert!(usage > 0, "{cmd}: a summary comes first");
        assert!(
            usage < options && options < examples && examples < codes,
            "{cmd}: summary, usage, options, examples, exit codes:\n{help}"
        );
        assert!(
            help.contains("2 usage error") || help.contains("2  usage error"),
            "{cmd}"
        );
    }
}

#[test]
fn bench_with_a_zero_duration_is_a_usage_error() {
    for args in [&["--duration", "0s"][..], &["--count", "0"]] {
        let out = Command::new(cargo_bin("walctl"))
            .arg("bench")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn tables_off_a_terminal_are_plain_and_statuses_have_one_spelling() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    let (_, _) = torn_and_repaired(&dir);
    let mut tail = Vec::new();
    encode_record(&mut tail, 6, &[7u8; 300], false);
    let seg = dir.join("segment-0");
    let mut bytes = fs::read(&seg).unwrap();
    bytes.extend_from_slice(&tail[..150]);
    fs::write(&seg, &bytes).unwrap();
    let out = run(&mut walctl("segments", &dir, &[]));
    assert_eq!(out.status.code(), Some(3));
    let text = stdout_of(&out);
    assert!(
        !text.chars().any(|c| ('\u{2500}'..='\u{257f}').contains(&c)),
        "box drawing off a terminal:\n{text}"
    );
    // awk-able: the row's second field is the file.
    let row = text.lines().find(|l| l.contains("segment-0")).unwrap();
    assert_eq!(row.split_whitespace().nth(1), Some("segment-0"), "{row}");
    // Text says "torn tail", JSON says "torn_tail", in every command.
    assert!(text.contains("status torn tail"), "{text}");
    assert!(!text.contains("torn_tail"), "{text}");
    for sub in ["verify", "segments", "dump"] {
        let out = run(&mut walctl(sub, &dir, &[]));
        let all = format!("{}{}", stdout_of(&out), stderr_of(&out));
        assert!(
            !all.contains("torn_tail") && !all.contains("torn-tail"),
            "{sub}: {all}"
        );
        // JSON values (prose in "message" aside) spell it torn_tail.
        fn strip_messages(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => {
                    m.remove("message");
                    m.values_mut().for_each(strip_messages);
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(strip_messages),
                _ => {}
            }
        }
        let out = run(&mut walctl(sub, &dir, &["--json"]));
        for line in stdout_of(&out).lines() {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            strip_messages(&mut v);
            let text = v.to_string();
            assert!(
                !text.contains("torn tail") && !text.contains("torn-tail"),
                "{sub}: {text}"
            );
        }
    }
    let out = run(&mut walctl("truncate-corrupt", &dir, &["--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "would_cut");
    assert_eq!(v["worst"], "torn_tail");
    // "1 segment", not "1 segments".
    ok(&run(&mut walctl("truncate-corrupt", &dir, &["--apply"])));
    let out = run(&mut walctl("truncate-corrupt", &dir, &[]));
    assert!(
        stdout_of(&out).contains("(1 segment,"),
        "{}",
        stdout_of(&out)
    );
}

#[test]
fn truncate_corrupt_quiet_prints_nothing_and_answers_by_exit_code() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    ok(&run(&mut walctl("append", &dir, &["a", "b"])));
    let mut tail = Vec::new();
    encode_record(&mut tail, 3, &[7u8; 300], false);
    let seg = dir.join("segment-0");
    let mut bytes = fs::read(&seg).unwrap();
    let kept = bytes.len() as u64;
    bytes.extend_from_slice(&tail[..150]);
    fs::write(&seg, &bytes).unwrap();
    for (args, code) in [(&["--quiet"][..], 3), (&["-q", "--apply"], 0), (&["-q"], 0)] {
        let out = run(&mut walctl("truncate-corrupt", &dir, args));
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{args:?}");
    }
    assert_eq!(fs::metadata(&seg).unwrap().len(), kept);
    let out = run(&mut walctl("truncate-corrupt", &dir, &["-q", "--json"]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_binary_payload_in_text_mode_uses_the_encoding_of_json_auto_mode() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    ok(&run(&mut walctl(
        "append",
        &dir,
        &["-e", "hex", "00fffe61"],
    )));
    let out = run(&mut walctl("dump", &dir, &["--json"]));
    let v: serde_json::Value = serde_json::from_slice(&ok(&out).stdout).unwrap();
    assert_eq!(v["data_encoding"], "base64");
    let b64 = v["data"].as_str().unwrap();
    let out = run(&mut walctl("dump", &dir, &[]));
    let text = stdout_of(ok(&out));
    assert!(text.contains(&format!("base64:{b64}")), "{text}");
}

#[test]
fn a_cut_saved_elsewhere_that_keeps_nothing_still_keeps_the_next_lsn_in_the_log() {
    let tmp = tempdir();
    let dir = tmp.path().join("go");
    let mut s7 = go_log_500(&dir);
    s7[10] ^= 1;
    fs::write(dir.join("segment-7"), &s7).unwrap();
    let q = tmp.path().join("elsewhere");
    ok(&run(walctl(
        "truncate-corrupt",
        &dir,
        &["--policy", "point-in-time", "--apply", "--quarantine-dir"],
    )
    .arg(&q)));
    // The bytes went elsewhere; the log's own quarantine notes only where, and the
    // next LSN, so a writer given no --quarantine-dir does not restart at 1.
    let own = manifests(&dir);
    assert_eq!(own.len(), 1);
    assert!(own[0].items.is_empty());
    assert_eq!(own[0].next_lsn, Some(500));
    assert!(
        own[0].reason.contains(&q.display().to_string()),
        "{}",
        own[0].reason
    );
    let out = run(&mut walctl("append", &dir, &["next"]));
    assert_eq!(lsns(ok(&out)), vec![500]);
}

#[test]
fn a_long_line_between_short_ones_is_appended_whole() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    let long: Vec<u8> = (0..(20u32 << 20)).map(|i| b'a' + (i % 26) as u8).collect();
    let mut input = b"first\n".to_vec();
    input.extend_from_slice(&long);
    input.extend_from_slice(b"\r\nlast\n");
    let out = run_with(&mut walctl("append", &dir, &[]), &input);
    assert_eq!(lsns(ok(&out)), vec![1, 2, 3]);
    let datas: Vec<Vec<u8>> = WalReader::open(&dir)
        .unwrap()
        .entries_from(0)
        .unwrap()
        .map(|e| e.unwrap().data)
        .collect();
    assert_eq!(datas.len(), 3);
    assert_eq!(datas[0], b"first");
    assert!(datas[1] == long, "the long line came back different");
    assert_eq!(datas[2], b"last");
}
