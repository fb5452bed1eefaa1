//! `walctl append` and `walctl checkpoint` through the real binary, checked against
//! the log as the library reads it back.

use crate::common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command as StdCommand, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use assert_cmd::cargo::cargo_bin;
use assert_cmd::Command;
use base64::Engine;
use common::*;
use walctl::reader::{Entry, WalReader};
use walctl::storage::FileStorage;
use walctl::writer::{SyncPolicy, Wal, WalOptions};

fn walctl() -> Command {
    Command::new(cargo_bin("walctl"))
}

/// `walctl <sub> --dir <dir> <args...>`.
fn cmd(sub: &str, dir: &Path, args: &[&str]) -> Command {
    let mut c = walctl();
    c.arg(sub).arg("--dir").arg(dir).args(args);
    c
}

fn entries(dir: &Path) -> Vec<Entry> {
    WalReader::open(dir)
        .unwrap()
        .entries_from(0)
        .unwrap()
        .map(|e| e.unwrap())
        .collect()
}

fn datas(dir: &Path) -> Vec<Vec<u8>> {
    entries(dir).into_iter().map(|e| e.data).collect()
}

fn lsn_lines(stdout: &[u8]) -> Vec<u64> {
    String::from_utf8(stdout.to_vec())
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn v(items: &[&[u8]]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.to_vec()).collect()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of every segment file, by name.
fn segment_digests(dir: &Path) -> Vec<(String, String)> {
    segment_names(dir)
        .into_iter()
        .map(|n| {
            let d = sha256_file(&dir.join(&n));
            (n, d)
        })
        .collect()
}

#[test]
fn arguments_become_entries_and_lsns_are_printed() {
    let tmp = tempdir();
    let dir = tmp.path().join("new/log");
    let out = cmd("append", &dir, &["first", "", "third entry"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(lsn_lines(&out.stdout), vec![1, 2, 3]);
    assert!(
        stderr_of(&out).contains(&format!("created log directory {}", dir.display())),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(datas(&dir), v(&[b"first", b"", b"third entry"]));

    // A second run continues the LSNs and creates nothing.
    let out = cmd("append", &dir, &["--", "-dash"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(lsn_lines(&out.stdout), vec![4]);
    assert!(!stderr_of(&out).contains("created"), "{}", stderr_of(&out));
    assert_eq!(datas(&dir).last().unwrap(), b"-dash");
}

#[test]
fn existing_empty_directory_starts_a_new_log() {
    let tmp = tempdir();
    let out = cmd("append", tmp.path(), &["x"]).output().unwrap();
    assert!(out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains("started a new log"), "{err}");
    assert!(!err.contains("created log directory"), "{err}");
}

#[test]
fn stdin_lines_with_every_kind_of_ending() {
    let tmp = tempdir();
    let dir = tmp.path();
    cmd("append", dir, &[])
        .write_stdin("one\ntwo\r\n\nfour\r\n\r\nlast without newline")
        .assert()
        .success()
        .stdout("1\n2\n3\n4\n5\n6\n");
    assert_eq!(
        datas(dir),
        v(&[b"one", b"two", b"", b"four", b"", b"last without newline"])
    );
    // A trailing newline does not make an extra empty entry; a lone "\n" is one.
    cmd("append", dir, &[])
        .write_stdin("seven\n")
        .assert()
        .success()
        .stdout("7\n");
    cmd("append", dir, &[])
        .write_stdin("\n")
        .assert()
        .success()
        .stdout("8\n");
    let all = datas(dir);
    assert_eq!(all.len(), 8);
    assert_eq!(all[6], b"seven");
    assert_eq!(all[7], b"");
}

#[test]
fn empty_stdin_appends_nothing() {
    let tmp = tempdir();
    let dir = tmp.path();
    cmd("append", dir, &[])
        .write_stdin("")
        .assert()
        .success()
        .stdout("");
    cmd("append", dir, &["--json"])
        .write_stdin("")
        .assert()
        .success()
        .stdout("{\"first_lsn\":null,\"last_lsn\":null,\"count\":0}\n");
    assert!(entries(dir).is_empty());
}

#[test]
fn nul_separated_stdin_is_raw_binary() {
    let tmp = tempdir();
    let dir = tmp.path();
    cmd("append", dir, &["-0"])
        .write_stdin(&b"a\r\n\0\0\xff\xfe binary\n\0last"[..])
        .assert()
        .success()
        .stdout("1\n2\n3\n4\n");
    assert_eq!(
        datas(dir),
        v(&[b"a\r\n", b"", b"\xff\xfe binary\n", b"last"])
    );
    cmd("append", dir, &["--null"])
        .write_stdin(&b"x\0"[..])
        .assert()
        .success()
        .stdout("5\n");
    assert_eq!(datas(dir).len(), 5);
}

#[test]
fn files_are_one_entry_each_raw_or_decoded() {
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    let bin = tmp.path().join("blob.bin");
    let blob: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    fs::write(&bin, &blob).unwrap();
    let text = tmp.path().join("text");
    fs::write(&text, b"line one\nline two\n").unwrap();
    let wrapped = tmp.path().join("wrapped.b64");
    let enc = b64(&blob);
    let lines: Vec<&str> = enc
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    fs::write(&wrapped, lines.join("\n") + "\n").unwrap();

    let out = cmd("append", &dir, &["--file"])
        .arg(&bin)
        .arg("--file")
        .arg(&text)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(lsn_lines(&out.stdout), vec![1, 2]);
    let out = cmd("append", &dir, &["--encoding", "base64", "--file"])
        .arg(&wrapped)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(lsn_lines(&out.stdout), vec![3]);
    assert_eq!(
        datas(&dir),
        vec![blob.clone(), b"line one\nline two\n".to_vec(), blob]
    );

    // A missing file is named, and nothing is appended (not even the good file).
    let out = cmd("append", &dir, &["--file"])
        .arg(&text)
        .arg("--file")
        .arg(tmp.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("missing"), "{}", stderr_of(&out));
    assert_eq!(datas(&dir).len(), 3);
}

#[test]
fn hex_and_base64_lines_and_arguments() {
    let tmp = tempdir();
    let dir = tmp.path();
    cmd("append", dir, &["--encoding", "hex"])
        .write_stdin("00ff\nDEADbeef\r\n\n")
        .assert()
        .success()
        .stdout("1\n2\n3\n");
    cmd("append", dir, &["-e", "base64"])
        .write_stdin("aGVsbG8=\naGk\n\nAP8=")
        .assert()
        .success()
        .stdout("4\n5\n6\n7\n");
    cmd("append", dir, &["--encoding", "hex", "0a0b", ""])
        .assert()
        .success()
        .stdout("8\n9\n");
    assert_eq!(
        datas(dir),
        v(&[
            b"\x00\xff",
            b"\xde\xad\xbe\xef",
            b"",
            b"hello",
            b"hi",
            b"",
            b"\x00\xff",
            b"\x0a\x0b",
            b""
        ])
    );
}

#[test]
fn undecodable_lines_stop_with_the_line_number_and_keep_what_came_before() {
    let cases: &[(&str, &[u8], &str, usize)] = &[
        ("hex", b"00\n0102\nzz\n03\n", "line 3", 2),
        ("hex", b"abc\n", "line 1", 0),
        ("base64", b"aGk=\n!!!!\n", "line 2", 1),
        ("utf8", b"ok\n\xff\xfebad\nafter\n", "line 2", 1),
    ];
    for (enc, input, where_, kept) in cases {
        let tmp = tempdir();
        let dir = tmp.path();
        let out = cmd("append", dir, &["--encoding", enc])
            .write_stdin(*input)
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{enc}: {err}");
        assert!(err.contains(where_), "{enc}: {err}");
        assert!(err.contains("standard input"), "{enc}: {err}");
        assert_eq!(
            err.lines().count(),
            2,
            "one note (new log) + one error: {err}"
        );
        // The lines before the bad one were appended and acknowledged; nothing after.
        let expected: Vec<u64> = (1..=*kept as u64).collect();
        assert_eq!(lsn_lines(&out.stdout), expected, "{enc}");
        assert_eq!(entries(dir).len(), *kept, "{enc}");
    }
    // With --json the summary still says what was appended before the bad line.
    let tmp = tempdir();
    let out = cmd("append", tmp.path(), &["--json", "--encoding", "hex"])
        .write_stdin("00\n01\nxx\n02\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stdout,
        b"{\"first_lsn\":1,\"last_lsn\":2,\"count\":2}\n"
    );
    assert_eq!(entries(tmp.path()).len(), 2);
}

#[test]
fn undecodable_argument_changes_nothing() {
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    let out = cmd("append", &dir, &["--encoding", "hex", "00", "0g"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("argument 2"), "{err}");
    assert!(err.contains("'g'"), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        !dir.exists(),
        "bad input must not even create the directory"
    );
}

#[test]
fn json_summary_at_the_end() {
    let tmp = tempdir();
    let dir = tmp.path();
    cmd("append", dir, &["a"]).assert().success();
    cmd("append", dir, &["--json"])
        .write_stdin("b\nc\nd\n")
        .assert()
        .success()
        .stdout("{\"first_lsn\":2,\"last_lsn\":4,\"count\":3}\n");
    cmd("append", dir, &["--json", "e"])
        .assert()
        .success()
        .stdout("{\"first_lsn\":5,\"last_lsn\":5,\"count\":1}\n");
}

#[test]
fn sync_policies_and_options() {
    let tmp = tempdir();
    let dir = tmp.path();
    let input: String = (0..300).map(|i| format!("entry {i}\n")).collect();
    for sync in [
        &["--sync", "never"][..],
        &["--sync", "interval", "--sync-interval-ms", "5"][..],
        &["--sync", "interval"][..],
        &["--sync", "always"][..],
    ] {
        let mut args = sync.to_vec();
        args.extend(["--max-segment-size", "1K", "--max-segments", "0"]);
        let out = cmd("append", dir, &args)
            .write_stdin(input.clone())
            .output()
            .unwrap();
        assert!(out.status.success(), "{sync:?}: {}", stderr_of(&out));
        assert_eq!(lsn_lines(&out.stdout).len(), 300);
    }
    let all = entries(dir);
    assert_eq!(all.len(), 1200);
    assert!(all.iter().enumerate().all(|(i, e)| e.lsn == i as u64 + 1));
    assert!(
        segment_names(dir).len() > 10,
        "1K segments with no retention"
    );
}

#[test]
fn usage_errors_exit_2_and_touch_nothing() {
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    for args in [
        &["--sync", "interval", "--sync-interval-ms", "0"][..],
        &["--max-segment-size", "0"][..],
        &["--max-segment-size", "4TB"][..],
        &["--sync-interval-ms", "50"][..],
        &["--sync", "sometimes"][..],
        &["--encoding", "rot13"][..],
        &["-0", "data"][..],
        &["-0", "--encoding", "hex"][..],
        &["--file", "x", "data"][..],
    ] {
        let out = cmd("append", &dir, args)
            .write_stdin("x\n")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        assert!(out.stdout.is_empty());
    }
    assert!(!dir.exists());
    let out = cmd("checkpoint", &dir, &["--file", "x", "data"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_has_summary_description_and_examples() {
    for sub in ["append", "checkpoint"] {
        let out = walctl().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("Usage: walctl"), "{help}");
        assert!(help.contains("Examples:"), "{help}");
        assert!(help.contains(&format!("walctl {sub} --dir")), "{help}");
        assert!(help.contains("Exit codes"), "{help}");
        assert!(help.contains("--max-segment-size"), "{help}");
    }
    let out = walctl().args(["append", "-h"]).output().unwrap();
    let short = String::from_utf8(out.stdout).unwrap();
    assert!(short.starts_with("Append entries to a log"), "{short}");
}

// ---------------------------------------------------------------------------------
// Acknowledged as it goes

/// Lines from a child's stdout, delivered through a channel so that a missing
/// acknowledgement fails the test instead of hanging it.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn ack_as_it_goes(sync: &[&str]) {
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    let mut child = StdCommand::new(cargo_bin("walctl"))
        .arg("append")
        .arg("--dir")
        .arg(&dir)
        .args(sync)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let acks = stdout_lines(&mut child);
    for i in 1..=8u64 {
        let line = format!("line {i}{}", if i % 2 == 0 { "\r" } else { "" });
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        let ack = match acks.recv_timeout(Duration::from_secs(15)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("{sync:?}: no acknowledgement for line {i}");
            }
        };
        assert_eq!(ack, i.to_string(), "{sync:?}");
        // The acknowledged line is in the log while append is still running, as a
        // separate `walctl dump` process sees it.
        let out = cmd("dump", &dir, &["--json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{sync:?}");
        let got: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got.len() as u64, i, "{sync:?}");
        let last = got.last().unwrap();
        assert_eq!(last["lsn"], i, "{sync:?}");
        assert_eq!(last["data"], format!("line {i}"), "{sync:?}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "append is still running"
        );
    }
    // A partial line is not acknowledged until it is complete or input ends.
    stdin.write_all(b"tail without newline").unwrap();
    stdin.flush().unwrap();
    assert!(acks.recv_timeout(Duration::from_millis(300)).is_err());
    drop(stdin);
    assert_eq!(
        acks.recv_timeout(Duration::from_secs(15)).unwrap(),
        "9",
        "{sync:?}"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{sync:?}");
    assert_eq!(datas(&dir).last().unwrap(), b"tail without newline");
}

#[test]
fn stdin_is_acknowledged_as_it_goes_with_sync_always() {
    ack_as_it_goes(&["--sync", "always"]);
}

#[test]
fn stdin_is_acknowledged_as_it_goes_with_sync_never() {
    ack_as_it_goes(&["--sync", "never"]);
}

#[test]
fn bulk_input_is_complete_and_in_order() {
    let tmp = tempdir();
    let dir = tmp.path();
    let n = 50_000u64;
    let input: String = (1..=n).map(|i| format!("{i:08}\n")).collect();
    let out = cmd("append", dir, &["--max-segment-size", "256K"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(lsn_lines(&out.stdout), (1..=n).collect::<Vec<_>>());
    let all = entries(dir);
    assert_eq!(all.len() as u64, n);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.data, format!("{:08}", i + 1).into_bytes());
    }
}

#[test]
fn closed_stdout_ends_quietly_and_still_appends_all_input() {
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    fs::create_dir(&dir).unwrap();
    let mut child = StdCommand::new(cargo_bin("walctl"))
        .arg("append")
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    // The first acknowledgement hits the closed pipe; append stops printing but
    // keeps appending: a reader that went away must not make input disappear.
    let lines: Vec<String> = (1..=30_000).map(|i| format!("line {i}")).collect();
    let writer = std::thread::spawn(move || {
        for l in &lines {
            if stdin.write_all(format!("{l}\n").as_bytes()).is_err() {
                return false;
            }
        }
        true
    });
    let out = child.wait_with_output().unwrap();
    assert!(writer.join().unwrap(), "append stopped reading its input");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(!stderr_of(&out).contains("error"), "{}", stderr_of(&out));
    let got = datas(&dir);
    assert_eq!(got.len(), 30_000);
    assert_eq!(got[29_999], b"line 30000");
}

// ---------------------------------------------------------------------------------
// Byte-identical to the reference

fn assert_same_segments(dir: &Path, exp: &Expected) {
    let want: Vec<(String, String)> = exp
        .segments()
        .into_iter()
        .map(|(n, _, sha)| (n, sha))
        .collect();
    assert_eq!(segment_digests(dir), want);
}

#[test]
fn basic_fixture_reproduced_byte_for_byte_from_base64_and_hex_lines() {
    let exp = expected("basic");
    assert!(exp.entries.iter().all(|e| !e.checkpoint));
    let size = exp.max_segment_size().to_string();
    let segs = exp.max_segments().to_string();
    for (enc, f) in [("base64", b64 as fn(&[u8]) -> String), ("hex", hex)] {
        let tmp = tempdir();
        let dir = tmp.path();
        let input: String = exp.entries.iter().map(|e| f(&e.data) + "\n").collect();
        let out = cmd(
            "append",
            dir,
            &[
                "--encoding",
                enc,
                "--max-segment-size",
                &size,
                "--max-segments",
                &segs,
            ],
        )
        .write_stdin(input)
        .output()
        .unwrap();
        assert!(out.status.success(), "{enc}: {}", stderr_of(&out));
        assert_eq!(
            lsn_lines(&out.stdout),
            exp.entries.iter().map(|e| e.lsn).collect::<Vec<_>>()
        );
        assert_same_segments(dir, &exp);
    }
}

#[test]
fn checkpoints_fixture_reproduced_byte_for_byte_with_append_and_checkpoint() {
    let exp = expected("checkpoints");
    let tmp = tempdir();
    let dir = tmp.path();
    let opts = [
        "--max-segment-size".to_string(),
        exp.max_segment_size().to_string(),
        "--max-segments".to_string(),
        exp.max_segments().to_string(),
    ];
    let opts: Vec<&str> = opts.iter().map(|s| s.as_str()).collect();
    // Runs of regular entries go through append (base64 lines), each checkpoint
    // through `walctl checkpoint` (an argument, or standard input when empty).
    let mut run: Vec<&ExpectedEntry> = Vec::new();
    let flush_run = |run: &mut Vec<&ExpectedEntry>| {
        if run.is_empty() {
            return;
        }
        let input: String = run.iter().map(|e| b64(&e.data) + "\n").collect();
        let mut args = vec!["--encoding", "base64"];
        args.extend(&opts);
        let out = cmd("append", dir, &args)
            .write_stdin(input)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert_eq!(
            lsn_lines(&out.stdout),
            run.iter().map(|e| e.lsn).collect::<Vec<_>>()
        );
        run.clear();
    };
    let mut checkpoints = 0;
    for e in &exp.entries {
        if !e.checkpoint {
            run.push(e);
            continue;
        }
        flush_run(&mut run);
        checkpoints += 1;
        let mut c = if e.data.is_empty() {
            // The Go fixture holds an empty checkpoint: written on purpose.
            let mut c = cmd("checkpoint", dir, &["--allow-empty"]);
            c.args(&opts);
            c.write_stdin("");
            c
        } else {
            let data = b64(&e.data);
            let mut args = vec!["--encoding", "base64", data.as_str()];
            args.extend(&opts);
            cmd("checkpoint", dir, &args)
        };
        c.assert().success().stdout(format!("{}\n", e.lsn));
    }
    flush_run(&mut run);
    assert_eq!(checkpoints, 2);
    assert_same_segments(dir, &exp);
}

#[test]
fn rotation_matches_record_by_record_appends_however_input_is_batched() {
    let tmp = tempdir();
    let by_library = tmp.path().join("lib");
    let by_cli = tmp.path().join("cli");
    let datas: Vec<Vec<u8>> = (0..400u32)
        .map(|i| {
            let len = (i * 37 % 300) as usize;
            (0..len).map(|j| (i as usize * 7 + j) as u8).collect()
        })
        .collect();
    let opts = WalOptions::default()
        .max_segment_size(1000)
        .max_segments(0)
        .sync(SyncPolicy::Never);
    let wal = Wal::open(&by_library, opts).unwrap();
    for d in &datas {
        wal.append(d).unwrap();
    }
    wal.close().unwrap();

    // All in one stdin (large batches), with a checkpoint-free mix of run sizes.
    let input: String = datas.iter().map(|d| hex(d) + "\n").collect();
    cmd(
        "append",
        &by_cli,
        &[
            "-e",
            "hex",
            "--max-segment-size",
            "1000",
            "--max-segments",
            "0",
        ],
    )
    .write_stdin(input)
    .assert()
    .success();
    let lib = segment_digests(&by_library);
    assert!(lib.len() > 20, "the test must rotate many times");
    assert_eq!(segment_digests(&by_cli), lib);
}

// ---------------------------------------------------------------------------------
// Locks, torn tails, corruption

#[test]
fn second_writer_is_refused_naming_the_lock() {
    let tmp = tempdir();
    let dir = tmp.path();
    let wal = Wal::open(dir, WalOptions::default()).unwrap();
    wal.append(b"held").unwrap();
    for sub in ["append", "checkpoint"] {
        let out = cmd(sub, dir, &["x"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{sub}");
        let err = stderr_of(&out);
        assert!(err.contains(".walctl.lock"), "{err}");
        assert!(err.contains("locked by another writer"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(out.stdout.is_empty());
    }
    wal.close().unwrap();
    assert_eq!(datas(dir), v(&[b"held"]));
    cmd("append", dir, &["after"])
        .assert()
        .success()
        .stdout("2\n");
}

#[test]
fn torn_tail_is_saved_cut_and_reported_then_append_continues() {
    let tmp = tempdir();
    let dir = tmp.path();
    cmd(
        "append",
        dir,
        &["one", "two", "three", "a longer fourth entry"],
    )
    .assert()
    .success();
    let seg = dir.join("segment-0");
    let last = entries(dir).pop().unwrap();
    let size = fs::metadata(&seg).unwrap().len();
    let cut_at = last.offset + (size - last.offset) / 2;
    let original = fs::read(&seg).unwrap();
    cut(&seg, cut_at);
    let torn = original[last.offset as usize..cut_at as usize].to_vec();

    let out = cmd("append", dir, &["new"]).output().unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(lsn_lines(&out.stdout), vec![4], "last intact LSN was 3");
    assert!(err.contains("torn tail"), "{err}");
    assert!(err.contains("segment-0"), "{err}");
    assert!(err.contains(&format!("offset {}", last.offset)), "{err}");
    assert!(err.contains(&format!("{} bytes", torn.len())), "{err}");

    let storage = FileStorage::open(dir).unwrap();
    let manifests = walctl::quarantine::list(&storage).unwrap();
    assert_eq!(manifests.len(), 1);
    let m = &manifests[0];
    assert!(err.contains(&m.id), "the quarantine id is reported: {err}");
    assert_eq!(m.items.len(), 1);
    let item = &m.items[0];
    assert_eq!(
        (item.file.as_str(), item.offset),
        ("segment-0", last.offset)
    );
    let saved =
        fs::read(walctl::quarantine::Location::in_log(&storage).saved_file(&m.id, item)).unwrap();
    assert_eq!(saved, torn);

    assert_eq!(datas(dir), v(&[b"one", b"two", b"three", b"new"]));
}

#[test]
fn corrupt_log_is_refused_with_exit_4_and_left_unchanged() {
    let tmp = tempdir();
    let dir = tmp.path();
    let input: String = (1..=10)
        .map(|i| format!("payload number {i:04}\n"))
        .collect();
    cmd("append", dir, &["--max-segment-size", "120"])
        .write_stdin(input)
        .assert()
        .success();
    assert!(segment_names(dir).len() >= 3);
    // Flip a data bit of entry 5, in the middle of the log.
    let e5 = entries(dir).into_iter().find(|e| e.lsn == 5).unwrap();
    let seg = dir.join(walctl::segment::segment_name(e5.segment_id));
    let bytes = fs::read(&seg).unwrap();
    let needle = b"payload number 0005";
    let pos = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    flip_bit(&seg, (pos + 3) as u64, 2);
    let before = segment_digests(dir);

    for sub in ["append", "checkpoint"] {
        let out = cmd(sub, dir, &["more"]).output().unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(4), "{sub}: {err}");
        assert!(err.contains("corruption"), "{err}");
        assert!(
            err.contains(&walctl::segment::segment_name(e5.segment_id)),
            "{err}"
        );
        assert!(out.stdout.is_empty());
        assert_eq!(segment_digests(dir), before, "{sub} changed the log");
    }
    assert!(!dir.join(walctl::quarantine::QUARANTINE_DIR).exists());
}

// ---------------------------------------------------------------------------------
// checkpoint

#[test]
fn checkpoint_from_argument_prints_its_lsn() {
    let tmp = tempdir();
    let dir = tmp.path();
    cmd("append", dir, &["a", "b"]).assert().success();
    cmd("checkpoint", dir, &["{\"state\":2}"])
        .assert()
        .success()
        .stdout("3\n");
    cmd("append", dir, &["c"]).assert().success().stdout("4\n");
    let all = entries(dir);
    assert_eq!(
        all.iter().map(|e| e.checkpoint).collect::<Vec<_>>(),
        [false, false, true, false]
    );
    assert_eq!(all[2].data, b"{\"state\":2}");
    let recovered: Vec<_> = WalReader::open(dir)
        .unwrap()
        .from_newest_checkpoint()
        .unwrap()
        .map(|e| e.unwrap().lsn)
        .collect();
    assert_eq!(recovered, [3, 4]);
}

#[test]
fn checkpoint_from_stdin_is_the_bytes_as_they_are() {
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    let snapshot: &[u8] = b"line 1\r\nline 2\n\0\xff\xfe\n";
    let out = cmd("checkpoint", &dir, &["--sync", "never"])
        .write_stdin(snapshot)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(out.stdout, b"1\n");
    assert!(stderr_of(&out).contains("created log directory"));
    let all = entries(&dir);
    assert_eq!(all.len(), 1);
    assert!(all[0].checkpoint);
    assert_eq!(all[0].data, snapshot);

    // With an encoding, standard input is decoded (surrounding whitespace ignored).
    cmd("checkpoint", &dir, &["--encoding", "hex", "--json"])
        .write_stdin("7b7d\n")
        .assert()
        .success()
        .stdout("{\"lsn\":2}\n");
    assert_eq!(entries(&dir)[1].data, b"{}");
    // Undecodable: exit 1, nothing written.
    let out = cmd("checkpoint", &dir, &["--encoding", "base64"])
        .write_stdin("not base64!")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("standard input"));
    assert_eq!(entries(&dir).len(), 2);
}

#[test]
fn checkpoint_from_file() {
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    let file = tmp.path().join("state.bin");
    let state: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
    fs::write(&file, &state).unwrap();
    let out = cmd("checkpoint", &dir, &["--json", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(out.stdout, b"{\"lsn\":1}\n");
    let all = entries(&dir);
    assert!(all[0].checkpoint);
    assert_eq!(all[0].data, state);

    let out = cmd("checkpoint", &dir, &["--file"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("is a directory"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(entries(&dir).len(), 1);
}
