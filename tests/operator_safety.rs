//! Nothing deleted or lost that the operator did not ask for, and every refusal says
//! what to do next (issue 14): retention only when asked and always reported, no
//! empty checkpoint by accident, LSNs that never restart after a cut, cuts that name
//! the checkpoints they take, oversized input refused before it is read, and the
//! quarantine's housekeeping. Through the real binary, and through the library where
//! it has something to say.

mod common;

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
    let opts = WalOptions {
        max_segment_size: 256,
        max_segments: 2,
        sync: SyncPolicy::Never,
    };
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
