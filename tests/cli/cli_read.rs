//! The read-only commands through the real binary: `dump`, `verify`, `segments`,
//! plus the meta commands (`completions`, `man`, `--version`) and usage errors.

use crate::common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use assert_cmd::Command;
use base64::Engine;
use common::follow::Follower;
use common::*;
use serde_json::Value;
use walctl::writer::{SyncPolicy, Wal, WalOptions};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

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

fn run(args: &[&str], dir: &Path) -> Run {
    let out = walctl().args(args).arg("--dir").arg(dir).output().unwrap();
    Run {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// Every stdout line parsed as JSON (each line must parse).
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

fn dump_json(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["dump", "--json"];
    args.extend_from_slice(extra);
    let r = run(&args, dir);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "");
    json_lines(&r.stdout)
}

fn lsns(records: &[Value]) -> Vec<u64> {
    records.iter().map(|v| v["lsn"].as_u64().unwrap()).collect()
}

/// A record's payload from `dump --json` (auto format).
fn payload(v: &Value) -> Vec<u8> {
    let data = v["data"].as_str().unwrap();
    match v.get("data_encoding").and_then(Value::as_str) {
        None => data.as_bytes().to_vec(),
        Some("base64") => B64.decode(data).unwrap(),
        Some(other) => panic!("unexpected encoding {other}"),
    }
}

fn record_data(i: u64) -> Vec<u8> {
    format!("record-{i:06}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

/// A real multi-segment log written by the library: `n` records of `record_data`.
fn write_log(dir: &Path, n: u64, max_segment_size: u64) {
    let wal = Wal::open(
        dir,
        WalOptions::default()
            .max_segment_size(max_segment_size)
            .max_segments(0)
            .sync(SyncPolicy::Never),
    )
    .unwrap();
    let datas: Vec<Vec<u8>> = (1..=n).map(record_data).collect();
    for chunk in datas.chunks(5000) {
        wal.append_batch(chunk).unwrap();
    }
    wal.close().unwrap();
}

/// A log of 300 records over several 4 KiB segments, with its `dump --json` records.
fn multi_segment_log() -> (tempfile::TempDir, Vec<Value>) {
    let tmp = tempdir();
    write_log(tmp.path(), 300, 4096);
    assert!(segment_names(tmp.path()).len() >= 4);
    let records = dump_json(tmp.path(), &[]);
    assert_eq!(lsns(&records), (1..=300).collect::<Vec<_>>());
    (tmp, records)
}

fn records_in<'a>(records: &'a [Value], segment: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["segment"] == segment).collect()
}

/// Flips one bit in the middle of record `rec`'s payload, found by its content.
fn flip_in_payload(dir: &Path, rec: &Value) {
    let file = dir.join(rec["segment"].as_str().unwrap());
    let bytes = fs::read(&file).unwrap();
    let data = payload(rec);
    let start = rec["offset"].as_u64().unwrap() as usize;
    let end = start + rec["len"].as_u64().unwrap() as usize;
    let at = bytes[start..end]
        .windows(data.len())
        .position(|w| w == data)
        .expect("payload inside its record")
        + start
        + data.len() / 2;
    flip_bit(&file, at as u64, 3);
}

// ---------------------------------------------------------------- dump

#[test]
fn dump_json_equals_the_fixtures_expected_entries() {
    for name in FIXTURES {
        let exp = expected(name);
        let r = run(&["dump", "--json"], &fixture_dir(name));
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert_eq!(r.stderr, "");
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines.len(), exp.entries.len(), "{name}");
        for (line, e) in lines.iter().zip(&exp.entries) {
            // Exactly these keys, in this order.
            let keys = [
                "\"lsn\":",
                "\"checkpoint\":",
                "\"segment\":",
                "\"offset\":",
                "\"len\":",
                "\"crc\":",
                "\"data\":",
            ];
            let pos: Vec<usize> = keys.iter().map(|k| line.find(k).unwrap()).collect();
            assert!(pos.windows(2).all(|w| w[0] < w[1]), "{line}");
            assert!(line.starts_with("{\"lsn\":"), "{line}");
            let v: Value = serde_json::from_str(line).unwrap();
            let obj = v.as_object().unwrap();
            let extra = usize::from(obj.contains_key("data_encoding"));
            assert_eq!(obj.len(), 7 + extra, "{line}");
            assert_eq!(v["lsn"].as_u64(), Some(e.lsn));
            assert_eq!(v["checkpoint"].as_bool(), Some(e.checkpoint));
            assert_eq!(v["segment"].as_str(), Some(e.segment.as_str()));
            assert_eq!(v["offset"].as_u64(), Some(e.offset));
            assert_eq!(v["len"].as_u64(), Some(e.record_len));
            assert_eq!(v["crc"].as_u64(), Some(e.crc as u64));
            assert_eq!(payload(&v), e.data, "{name} lsn {}", e.lsn);
            // auto: text exactly when the payload is valid UTF-8.
            assert_eq!(
                obj.contains_key("data_encoding"),
                std::str::from_utf8(&e.data).is_err(),
                "{name} lsn {}",
                e.lsn
            );
        }
    }
}

#[test]
fn dump_data_formats() {
    let exp = expected("basic");
    let dir = fixture_dir("basic");
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    for (format, encoding) in [
        ("utf8", None),
        ("hex", Some("hex")),
        ("base64", Some("base64")),
        ("none", None),
    ] {
        let got = dump_json(&dir, &["--data-format", format]);
        assert_eq!(got.len(), exp.entries.len(), "{format}");
        for (v, e) in got.iter().zip(&exp.entries) {
            assert_eq!(v["lsn"].as_u64(), Some(e.lsn));
            assert_eq!(
                v.get("data_encoding").and_then(Value::as_str),
                encoding,
                "{format}"
            );
            match format {
                "utf8" => assert_eq!(v["data"], *String::from_utf8_lossy(&e.data)),
                "hex" => assert_eq!(v["data"], hex(&e.data)),
                "base64" => assert_eq!(v["data"], B64.encode(&e.data)),
                _ => assert!(v.get("data").is_none(), "{v}"),
            }
        }
    }
    // The default is auto.
    let auto = dump_json(&dir, &["--data-format", "auto"]);
    assert_eq!(auto, dump_json(&dir, &[]));
}

#[test]
fn dump_filters() {
    let dir = fixture_dir("checkpoints");
    let exp = expected("checkpoints");
    let range = |a: u64, b: u64| (a..=b).collect::<Vec<u64>>();
    assert_eq!(lsns(&dump_json(&dir, &["--from", "10"])), range(10, 102));
    assert_eq!(lsns(&dump_json(&dir, &["--to", "7"])), range(1, 7));
    assert_eq!(
        lsns(&dump_json(&dir, &["--from", "10", "--to", "20"])),
        range(10, 20)
    );
    assert_eq!(lsns(&dump_json(&dir, &["--limit", "5"])), range(1, 5));
    assert_eq!(
        lsns(&dump_json(&dir, &["--from", "100", "--limit", "50"])),
        range(100, 102)
    );
    assert!(dump_json(&dir, &["--limit", "0"]).is_empty());
    assert!(dump_json(&dir, &["--from", "1000"]).is_empty());

    let checkpoints: Vec<u64> = exp
        .entries
        .iter()
        .filter(|e| e.checkpoint)
        .map(|e| e.lsn)
        .collect();
    assert_eq!(checkpoints.len(), 2);
    let got = dump_json(&dir, &["--checkpoints-only"]);
    assert_eq!(lsns(&got), checkpoints);
    assert!(got.iter().all(|v| v["checkpoint"] == true));

    assert_eq!(
        lsns(&dump_json(&dir, &["--since-checkpoint"])),
        range(82, 102)
    );
    assert_eq!(
        lsns(&dump_json(
            &dir,
            &["--since-checkpoint", "--checkpoints-only"]
        )),
        vec![82]
    );
    assert_eq!(
        lsns(&dump_json(&dir, &["--since-checkpoint", "--limit", "3"])),
        range(82, 84)
    );
    // --since-checkpoint on a log without checkpoints: the whole log, with a note.
    let r = run(
        &["dump", "--json", "--since-checkpoint"],
        &fixture_dir("basic"),
    );
    assert_eq!(r.code, 0);
    assert_eq!(json_lines(&r.stdout).len(), 100);
    assert!(r.stderr.contains("no checkpoint"), "{}", r.stderr);

    // An empty range is a usage error.
    let r = run(&["dump", "--from", "9", "--to", "3"], &dir);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// `--since-checkpoint` starts where the library's recovery starts: the newest
/// checkpoint found by a full scan, also when damage comes earlier in the log.
#[test]
fn since_checkpoint_past_earlier_damage_agrees_with_the_library() {
    let (tmp, all) = multi_segment_log();
    let wal = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.checkpoint(b"state").unwrap(), 301);
    for i in 302..=310 {
        wal.append(&record_data(i)).unwrap();
    }
    wal.close().unwrap();
    let names = segment_names(tmp.path());
    flip_in_payload(tmp.path(), records_in(&all, &names[1])[2]);
    assert_eq!(run(&["verify", "--quiet"], tmp.path()).code, 4);

    let r = run(&["dump", "--json", "--since-checkpoint"], tmp.path());
    assert!(!r.stderr.contains("no checkpoint"), "{}", r.stderr);
    let got = json_lines(&r.stdout);
    assert_eq!(lsns(&got), (301..=310).collect::<Vec<_>>());
    // The records asked for are intact, so dump itself met no damage.
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lib: Vec<u64> = walctl::reader::WalReader::open(tmp.path())
        .unwrap()
        .from_newest_checkpoint()
        .unwrap()
        .map(|e| e.unwrap().lsn)
        .collect();
    assert_eq!(lib, lsns(&got));
}

#[test]
fn dump_from_skips_segments_and_matches_the_full_dump() {
    let (tmp, all) = multi_segment_log();
    for from in [1u64, 2, 77, 150, 299, 300] {
        let got = dump_json(tmp.path(), &["--from", &from.to_string()]);
        assert_eq!(got, all[from as usize - 1..].to_vec(), "--from {from}");
    }
    for (i, v) in all.iter().enumerate() {
        assert_eq!(payload(v), record_data(i as u64 + 1));
    }
    // Whole segments before --from are not read at all: damage in one goes unseen.
    let names = segment_names(tmp.path());
    flip_in_payload(tmp.path(), records_in(&all, &names[0])[3]);
    let from = records_in(&all, &names[2])[0]["lsn"].as_u64().unwrap();
    let got = dump_json(tmp.path(), &["--from", &from.to_string()]);
    assert_eq!(got, all[from as usize - 1..].to_vec());
    assert_eq!(run(&["dump", "--json"], tmp.path()).code, 4);
}

#[test]
fn dump_text_shows_every_lsn_and_no_control_bytes() {
    for name in FIXTURES {
        let exp = expected(name);
        let r = run(&["dump"], &fixture_dir(name));
        assert_eq!(r.code, 0, "{}", r.stderr);
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines.len(), exp.entries.len());
        for (line, e) in lines.iter().zip(&exp.entries) {
            let mut words = line.split_whitespace();
            assert_eq!(words.next(), Some(e.lsn.to_string().as_str()), "{line}");
            assert_eq!(line.contains(" ckpt "), e.checkpoint, "{line}");
            assert!(
                line.contains(&format!("{} @{}", e.segment, e.offset)),
                "{line}"
            );
            assert!(line.contains(&format!("{} B", e.record_len)), "{line}");
        }
        assert!(
            !r.stdout.chars().any(|c| c.is_control() && c != '\n'),
            "raw control characters in the text output of {name}"
        );
    }
    // A short preview by default, the whole payload with --preview 0.
    let dir = fixture_dir("basic");
    let long = run(&["dump", "--preview", "0", "--data-format", "hex"], &dir);
    let short = run(&["dump", "--data-format", "hex"], &dir);
    assert!(long.stdout.len() > short.stdout.len() + 10_000);
    assert!(short.stdout.contains('…'));
    let none = run(&["dump", "--data-format", "none"], &dir);
    assert!(!none.stdout.contains("hex:") && !none.stdout.contains('"'));
}

#[test]
fn dump_stops_at_damage_after_every_good_record() {
    // Torn tail: the newest segment is cut in the middle of its last record.
    let (tmp, all) = multi_segment_log();
    let last = all.last().unwrap();
    let seg = last["segment"].as_str().unwrap();
    let off = last["offset"].as_u64().unwrap();
    cut(
        &tmp.path().join(seg),
        off + last["len"].as_u64().unwrap() / 2,
    );
    let r = run(&["dump", "--json"], tmp.path());
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(json_lines(&r.stdout), all[..299].to_vec());
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("torn tail"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{seg} at offset {off}")),
        "{}",
        r.stderr
    );

    // A flipped data bit in the middle of the newest segment: corruption.
    let (tmp, all) = multi_segment_log();
    let newest = segment_names(tmp.path()).pop().unwrap();
    let in_newest = records_in(&all, &newest);
    let victim = in_newest[in_newest.len() / 2].clone();
    flip_in_payload(tmp.path(), &victim);
    let lsn = victim["lsn"].as_u64().unwrap();
    let r = run(&["dump", "--json"], tmp.path());
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(json_lines(&r.stdout), all[..lsn as usize - 1].to_vec());
    assert!(r.stderr.contains("CRC mismatch"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("{newest} at offset {}", victim["offset"])),
        "{}",
        r.stderr
    );

    // Also in text mode: the good records, then the problem.
    let r = run(&["dump"], tmp.path());
    assert_eq!(r.code, 4);
    assert_eq!(r.stdout.lines().count(), lsn as usize - 1);

    // A damaged range that is never reached is not read: --to before the damage.
    let to = (lsn - 1).to_string();
    let got = dump_json(tmp.path(), &["--to", &to]);
    assert_eq!(got.len(), lsn as usize - 1);
}

// ---------------------------------------------------------------- verify

#[test]
fn verify_clean_logs() {
    for name in FIXTURES {
        let exp = expected(name);
        let dir = fixture_dir(name);
        let r = run(&["verify"], &dir);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stderr, "");
        let n = exp.entries.len();
        assert!(
            r.stdout
                .contains(&format!("records      {n} (LSN 1 ..= {n})")),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("segments     1 (segment-0)"));
        assert!(r.stdout.lines().last().unwrap().contains("ok"));

        let r = run(&["verify", "--json"], &dir);
        assert_eq!(r.code, 0);
        let v = json_lines(&r.stdout);
        assert_eq!(v.len(), 1, "one report object");
        let v = &v[0];
        assert_eq!(v["status"], "ok");
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["records"].as_u64(), Some(n as u64));
        assert_eq!(v["first_lsn"], 1);
        assert_eq!(v["last_lsn"].as_u64(), Some(n as u64));
        assert_eq!(v["segments"], 1);
        assert_eq!(v["bytes"].as_u64(), Some(exp.segments()[0].1));
        assert_eq!(v["problems"].as_array().unwrap().len(), 0);
        let cps: Vec<u64> = exp
            .entries
            .iter()
            .filter(|e| e.checkpoint)
            .map(|e| e.lsn)
            .collect();
        assert_eq!(v["checkpoints"].as_u64(), Some(cps.len() as u64));
        match cps.last() {
            Some(&lsn) => {
                assert_eq!(v["newest_checkpoint"]["lsn"].as_u64(), Some(lsn));
                assert_eq!(v["newest_checkpoint"]["segment"], "segment-0");
                assert!(r.stdout.contains("segment-0"));
            }
            None => assert!(v["newest_checkpoint"].is_null()),
        }

        let r = run(&["verify", "--quiet"], &dir);
        assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    }
    let (tmp, _) = multi_segment_log();
    let r = run(&["verify", "--json"], tmp.path());
    assert_eq!(r.code, 0);
    let v = &json_lines(&r.stdout)[0];
    assert_eq!(
        v["segments"].as_u64(),
        Some(segment_names(tmp.path()).len() as u64)
    );
    assert_eq!(v["records"], 300);
}

#[test]
fn verify_torn_tail_exits_3() {
    let (tmp, all) = multi_segment_log();
    let last = all.last().unwrap();
    let seg = last["segment"].as_str().unwrap();
    let off = last["offset"].as_u64().unwrap();
    cut(
        &tmp.path().join(seg),
        off + last["len"].as_u64().unwrap() / 2,
    );

    let r = run(&["verify"], tmp.path());
    assert_eq!(r.code, 3, "{}", r.stdout);
    assert!(r
        .stdout
        .contains(&format!("torn tail in {seg} at offset {off}")));
    assert!(r.stdout.contains("records      299"));

    let r = run(&["verify", "--json"], tmp.path());
    assert_eq!(r.code, 3);
    let v = &json_lines(&r.stdout)[0];
    assert_eq!(v["status"], "torn_tail");
    assert_eq!(v["exit_code"], 3);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0]["segment"], seg);
    assert_eq!(problems[0]["offset"].as_u64(), Some(off));
    assert_eq!(problems[0]["severity"], "torn_tail");
    assert_eq!(problems[0]["kind"], "truncated_record");
    assert_eq!(problems[0]["last_good_lsn"], 299);

    let r = run(&["verify", "-q"], tmp.path());
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (3, "", ""));
}

#[test]
fn verify_flipped_bit_exits_4_naming_segment_and_offset() {
    // In the middle of the newest segment, then in an older segment.
    for older in [false, true] {
        let (tmp, all) = multi_segment_log();
        let names = segment_names(tmp.path());
        let seg = if older {
            &names[1]
        } else {
            names.last().unwrap()
        };
        let recs = records_in(&all, seg);
        let victim = recs[recs.len() / 2].clone();
        flip_in_payload(tmp.path(), &victim);
        let off = victim["offset"].as_u64().unwrap();

        let r = run(&["verify"], tmp.path());
        assert_eq!(r.code, 4, "{}", r.stdout);
        assert!(
            r.stdout
                .contains(&format!("corruption in {seg} at offset {off}")),
            "{}",
            r.stdout
        );

        let r = run(&["verify", "--json"], tmp.path());
        assert_eq!(r.code, 4);
        let v = &json_lines(&r.stdout)[0];
        assert_eq!(v["status"], "corrupt");
        assert_eq!(v["exit_code"], 4);
        let problems = v["problems"].as_array().unwrap();
        assert_eq!(problems.len(), 1, "{v}");
        let p = &problems[0];
        assert_eq!(p["segment"], seg.as_str());
        assert_eq!(p["offset"].as_u64(), Some(off));
        assert_eq!(p["severity"], "corruption");
        assert_eq!(p["kind"], "crc_mismatch");
        assert_eq!(
            p["last_good_lsn"].as_u64(),
            Some(victim["lsn"].as_u64().unwrap() - 1)
        );
        // verify goes on after the problem: later segments are still counted.
        if older {
            let later: usize = names[2..].iter().map(|n| records_in(&all, n).len()).sum();
            assert!(v["records"].as_u64().unwrap() as usize >= later + recs.len() / 2);
        }

        let r = run(&["verify", "--quiet"], tmp.path());
        assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (4, "", ""));
    }
}

#[test]
fn not_a_wal_directory_exits_1_even_when_it_exists() {
    let tmp = tempdir();
    let missing = tmp.path().join("missing");
    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    for cmd in ["dump", "verify", "segments"] {
        for (path, says) in [(&missing, "does not exist"), (&file, "is not a directory")] {
            let r = run(&[cmd], path);
            assert_eq!(r.code, 1, "{cmd} {}", path.display());
            assert_eq!(r.stdout, "");
            assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
            assert!(r.stderr.contains("not a WAL directory"), "{}", r.stderr);
            assert!(r.stderr.contains(says), "{}", r.stderr);
        }
    }
    // An existing directory without segments is not a log either: a mistyped --dir
    // must never pass for a clean, empty log. (`dump --follow` may wait for one.)
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    fs::write(empty.join("segment-0.bak"), b"not a segment").unwrap();
    for cmd in [
        &["dump", "--json"][..],
        &["verify", "--json"],
        &["verify", "--quiet"],
        &["segments"],
    ] {
        let r = run(cmd, &empty);
        assert_eq!(r.code, 1, "{cmd:?}");
        assert_eq!(r.stdout, "", "{cmd:?}");
        assert!(r.stderr.contains("not a WAL directory"), "{}", r.stderr);
        assert!(r.stderr.contains("holds no segment files"), "{}", r.stderr);
    }
    // WALCTL_DIR works in place of --dir.
    let out = walctl()
        .args(["verify", "--json"])
        .env("WALCTL_DIR", fixture_dir("basic"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        json_lines(&String::from_utf8(out.stdout).unwrap())[0]["records"],
        100
    );
}

// ---------------------------------------------------------------- segments

#[test]
fn segments_table_and_json() {
    let (tmp, all) = multi_segment_log();
    let names = segment_names(tmp.path());
    let r = run(&["segments", "--json"], tmp.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = json_lines(&r.stdout);
    assert_eq!(rows.len(), names.len());
    for (row, name) in rows.iter().zip(&names) {
        let recs = records_in(&all, name);
        assert_eq!(row["name"], name.as_str());
        assert_eq!(
            row["id"].as_u64(),
            walctl::segment::parse_segment_name(name)
        );
        assert_eq!(
            row["size"].as_u64(),
            Some(fs::metadata(tmp.path().join(name)).unwrap().len())
        );
        assert_eq!(row["records"].as_u64(), Some(recs.len() as u64));
        assert_eq!(row["first_lsn"], recs[0]["lsn"]);
        assert_eq!(row["last_lsn"], recs.last().unwrap()["lsn"]);
        assert_eq!(row["checkpoints"], 0);
        assert_eq!(row["status"], "ok");
        assert!(row["problem"].is_null());
    }

    let r = run(&["segments"], tmp.path());
    assert_eq!(r.code, 0);
    for name in &names {
        let line = r
            .stdout
            .lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", r.stdout));
        assert!(line.contains(" ok "), "{line}");
    }
    assert!(r
        .stdout
        .contains(&format!("{} segments, 300 records", names.len())));

    // Damage: a flipped bit in segment-1 and a torn tail in the newest.
    let seg1 = records_in(&all, &names[1]);
    flip_in_payload(tmp.path(), seg1[1]);
    let last = all.last().unwrap();
    let torn_at = last["offset"].as_u64().unwrap();
    cut(&tmp.path().join(names.last().unwrap()), torn_at + 3);
    let r = run(&["segments"], tmp.path());
    assert_eq!(r.code, 4, "{}", r.stdout);
    let row = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap()
            .to_string()
    };
    assert!(
        row(&names[1]).contains(&format!(
            "corrupt at offset {}: CRC mismatch",
            seg1[1]["offset"]
        )),
        "{}",
        r.stdout
    );
    assert!(
        row(names.last().unwrap()).contains(&format!("torn tail at offset {torn_at}")),
        "{}",
        r.stdout
    );
    assert!(row(&names[0]).contains(" ok "));

    let r = run(&["segments", "--json"], tmp.path());
    assert_eq!(r.code, 4);
    let rows = json_lines(&r.stdout);
    assert_eq!(rows[0]["status"], "ok");
    assert_eq!(rows[1]["status"], "corrupt");
    assert_eq!(rows[1]["problem"]["kind"], "crc_mismatch");
    assert_eq!(rows[1]["problem"]["offset"], seg1[1]["offset"]);
    assert_eq!(rows[1]["records"], 1);
    let newest = rows.last().unwrap();
    assert_eq!(newest["status"], "torn_tail");
    assert_eq!(newest["problem"]["offset"].as_u64(), Some(torn_at));
    assert_eq!(newest["problem"]["kind"], "truncated_prefix");
}

#[test]
fn no_color_means_no_escape_bytes() {
    let (tmp, all) = multi_segment_log();
    let names = segment_names(tmp.path());
    flip_in_payload(tmp.path(), records_in(&all, &names[1])[0]);
    for cmd in ["segments", "verify", "dump"] {
        let out = walctl()
            .args([cmd, "--dir"])
            .arg(tmp.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "{cmd}");
        assert!(!out.stdout.contains(&0x1b), "{cmd}");
        assert!(!out.stderr.contains(&0x1b), "{cmd}");
    }
    // On a terminal the status is coloured, unless NO_COLOR is set.
    let on_tty = |no_color: Option<&str>| {
        let mut cmd = StdCommand::cargo_bin("walctl").unwrap();
        cmd.args(["segments", "--dir"]).arg(tmp.path());
        cmd.env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        run_on_pty(cmd)
    };
    let colored = on_tty(None);
    assert!(
        colored.contains(&0x1b),
        "{}",
        String::from_utf8_lossy(&colored)
    );
    assert!(String::from_utf8_lossy(&colored).contains("corrupt at offset"));
    let plain = on_tty(Some("1"));
    assert!(
        !plain.contains(&0x1b),
        "{}",
        String::from_utf8_lossy(&plain)
    );
    assert!(String::from_utf8_lossy(&plain).contains("corrupt at offset"));
}

/// Runs `cmd` with its stdout on a fresh pseudo-terminal; returns what it printed.
fn run_on_pty(mut cmd: StdCommand) -> Vec<u8> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (-1, -1);
    let winsize = libc::winsize {
        ws_row: 50,
        ws_col: 200,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills two fds we then own; null name/termios are allowed.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &winsize,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened by openpty and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = cmd
        .stdout(Stdio::from(slave))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(cmd); // closes the parent's copy of the slave
    let mut master = fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // EIO once the child closed the terminal.
            Err(_) => break,
        }
    }
    child.wait().unwrap();
    out
}

// ---------------------------------------------------------------- read-only, live

#[test]
fn read_commands_change_nothing_and_run_beside_a_writer() {
    let tmp = tempdir();
    copy_fixture("checkpoints", tmp.path());
    let before = sha256_file(&tmp.path().join("segment-0"));
    // A live writer holds the directory's lock.
    let wal = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    wal.append(b"written while readers read").unwrap();
    for args in [
        &["dump", "--json"][..],
        &["dump"],
        &["verify"],
        &["verify", "--json"],
        &["segments"],
        &["segments", "--json"],
    ] {
        let r = run(args, tmp.path());
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr, "", "{args:?}");
    }
    let got = dump_json(tmp.path(), &["--from", "103"]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["data"], "written while readers read");
    wal.close().unwrap();

    // Readers never create, lock or modify anything.
    let fresh = tempdir();
    copy_fixture("checkpoints", fresh.path());
    for args in [
        &["dump"][..],
        &["verify"],
        &["segments"],
        &["dump", "--since-checkpoint"],
    ] {
        assert_eq!(run(args, fresh.path()).code, 0);
    }
    let entries: Vec<String> = fs::read_dir(fresh.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, vec!["segment-0".to_string()]);
    assert_eq!(sha256_file(&fresh.path().join("segment-0")), before);
}

#[test]
fn closed_pipe_ends_quietly() {
    let tmp = tempdir();
    let wal = Wal::open(tmp.path(), WalOptions::default().sync(SyncPolicy::Never)).unwrap();
    let datas: Vec<Vec<u8>> = (0..200_000u32).map(|i| i.to_le_bytes().to_vec()).collect();
    for chunk in datas.chunks(20_000) {
        wal.append_batch(chunk).unwrap();
    }
    wal.close().unwrap();

    for args in [&["dump", "--json"][..], &["dump"]] {
        let mut child = StdCommand::cargo_bin("walctl")
            .unwrap()
            .args(args)
            .arg("--dir")
            .arg(tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with(if args.len() == 2 {
            "{\"lsn\":1,"
        } else {
            "       1 "
        }));
        drop(stdout);
        let status = child.wait().unwrap();
        let stderr = read_stderr(&mut child);
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}

#[test]
fn follow_prints_new_records_across_rotation_until_sigterm() {
    let tmp = tempdir();
    write_log(tmp.path(), 5, 256);
    let f = Follower::start(tmp.path(), &[]);
    assert_eq!(lsns(&f.records(5)), vec![1, 2, 3, 4, 5]);

    let segments_before = segment_names(tmp.path()).len();
    let wal = Wal::open(
        tmp.path(),
        WalOptions::default()
            .max_segment_size(256)
            .max_segments(0)
            .sync(SyncPolicy::Always),
    )
    .unwrap();
    for i in 6..=30 {
        wal.append(&record_data(i)).unwrap();
    }
    let got = f.records(25);
    assert_eq!(lsns(&got), (6..=30).collect::<Vec<_>>());
    for (i, v) in (6..).zip(&got) {
        assert_eq!(payload(v), record_data(i));
    }
    assert!(segment_names(tmp.path()).len() >= segments_before + 3);
    assert!(got.first().unwrap()["segment"] != got.last().unwrap()["segment"]);
    wal.checkpoint(b"state").unwrap();
    let cp = &f.records(1)[0];
    assert_eq!(
        (cp["lsn"].as_u64(), cp["checkpoint"].as_bool()),
        (Some(31), Some(true))
    );
    wal.close().unwrap();

    // A record written in two halves is reported once complete, and never as damage.
    let newest = segment_names(tmp.path()).pop().unwrap();
    let mut bytes = Vec::new();
    walctl::codec::encode_record(&mut bytes, 32, b"written in two halves", false);
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(tmp.path().join(&newest))
        .unwrap();
    let half = bytes.len() / 2;
    file.write_all(&bytes[..half]).unwrap();
    file.flush().unwrap();
    f.nothing_for(Duration::from_millis(400));
    file.write_all(&bytes[half..]).unwrap();
    file.flush().unwrap();
    let v = &f.records(1)[0];
    assert_eq!(v["lsn"], 32);
    assert_eq!(v["data"], "written in two halves");
    assert_eq!(v["segment"], newest.as_str());

    f.nothing_for(Duration::from_millis(200));
    let (code, stderr) = f.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

/// A follower waiting at a torn tail keeps going when a writer opening the log saves
/// and cuts that tail and writes new records where it was (fewer bytes than the torn
/// tail, then a rotation): it prints the new records, never an error.
#[test]
fn follow_goes_on_when_a_writer_cuts_the_torn_tail_it_waits_at() {
    let tmp = tempdir();
    write_log(tmp.path(), 5, 4096);
    let newest = segment_names(tmp.path()).pop().unwrap();
    let mut torn = Vec::new();
    walctl::codec::encode_record(&mut torn, 6, &[b'x'; 200], false);
    torn.truncate(150);
    fs::OpenOptions::new()
        .append(true)
        .open(tmp.path().join(&newest))
        .unwrap()
        .write_all(&torn)
        .unwrap();
    let f = Follower::start(tmp.path(), &[]);
    assert_eq!(lsns(&f.records(5)), vec![1, 2, 3, 4, 5]);
    f.nothing_for(Duration::from_millis(300));

    let wal = Wal::open(
        tmp.path(),
        WalOptions::default()
            .max_segment_size(1)
            .max_segments(0)
            .sync(SyncPolicy::Always),
    )
    .unwrap();
    assert!(wal.open_report().repaired_tail.is_some());
    wal.append(b"short").unwrap();
    wal.append(b"next segment").unwrap();
    let got = f.records(2);
    assert_eq!(lsns(&got), vec![6, 7]);
    assert_eq!(payload(&got[0]), b"short");
    assert_eq!(payload(&got[1]), b"next segment");
    wal.close().unwrap();
    let (code, stderr) = f.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

/// `walctl dump --follow | head -1`: once the reader is gone, the follower ends by
/// itself with exit 0 and nothing on stderr, without waiting for another record.
#[test]
fn follow_ends_quietly_when_its_reader_goes() {
    let tmp = tempdir();
    write_log(tmp.path(), 3, 4096);
    let mut child = StdCommand::cargo_bin("walctl")
        .unwrap()
        .args(["dump", "--follow", "--json", "--dir"])
        .arg(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["lsn"], 1);
    drop(lines); // like `head -1` exiting
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the follower kept running after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = read_stderr(&mut child);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn follow_an_empty_directory_and_stop_at_to() {
    let tmp = tempdir();
    let f = Follower::start(tmp.path(), &["--to", "4", "--from", "2"]);
    f.nothing_for(Duration::from_millis(200));
    // The writer creates the first segment after the follower started.
    write_log(tmp.path(), 3, 4096);
    assert_eq!(lsns(&f.records(2)), vec![2, 3]);
    write_log(tmp.path(), 3, 4096); // LSN 4..=6
    assert_eq!(lsns(&f.records(1)), vec![4]);
    // --to reached: dump ends by itself.
    let (code, stderr) = f.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn follow_reports_corruption_and_exits_4() {
    let (tmp, all) = multi_segment_log();
    let names = segment_names(tmp.path());
    let victim = records_in(&all, &names[2])[0].clone();
    flip_in_payload(tmp.path(), &victim);
    let f = Follower::start(tmp.path(), &[]);
    let lsn = victim["lsn"].as_u64().unwrap() as usize;
    assert_eq!(f.records(lsn - 1), all[..lsn - 1].to_vec());
    let (code, stderr) = f.finish();
    assert_eq!(code, Some(4));
    assert!(
        stderr.contains(&format!("{} at offset {}", names[2], victim["offset"])),
        "{stderr}"
    );
}

// ---------------------------------------------------------------- meta

#[test]
fn completions_man_version_and_usage_errors() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = walctl().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.len() > 500, "{shell}");
        assert!(text.contains("walctl") && text.contains("dump"), "{shell}");
    }
    let out = walctl().arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let man = String::from_utf8(out.stdout).unwrap();
    assert!(
        man.starts_with(".ie") || man.starts_with(".TH"),
        "{}",
        &man[..40]
    );
    assert!(man.contains("walctl"));
    // One page per command, with its examples and exit status kept line by line.
    let out = walctl().args(["man", "dump"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH walctl-dump 1"), "{}", &page[..200]);
    assert!(page.contains("--since-checkpoint"));
    let nf = page.find(".nf").expect("examples kept as written");
    assert!(page[nf..].contains("\n  walctl dump --dir /var/lib/app/wal\n"));
    let mandir = tempdir();
    let out = walctl()
        .args(["man", "--out-dir"])
        .arg(mandir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    for cmd in [
        "walctl",
        "walctl-append",
        "walctl-checkpoint",
        "walctl-dump",
        "walctl-verify",
        "walctl-segments",
        "walctl-truncate-corrupt",
        "walctl-bench",
    ] {
        let text = fs::read_to_string(mandir.path().join(format!("{cmd}.1"))).unwrap();
        assert!(text.contains(&format!(".TH {cmd} 1")), "{cmd}");
    }

    let out = walctl().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("walctl {}", env!("CARGO_PKG_VERSION"))
    );

    for args in [
        &["--no-such-flag"][..],
        &["dump", "--no-such-flag", "--dir", "."],
        &["verify"],
        &["dump", "--dir", ".", "--data-format", "rot13"],
        &["dump", "--dir", ".", "--limit", "-1"],
        &["completions", "tcsh"],
        &["man", "no-such-command"],
        &["no-such-command"],
    ] {
        let out = walctl().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }

    // Every command's help gives its exit status, usage errors included.
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
        let out = walctl().args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        let at = help
            .find("Exit status")
            .or_else(|| help.find("Exit codes"))
            .unwrap_or_else(|| panic!("{cmd} --help names no exit codes"));
        assert!(
            help[at..].contains("2 usage error") || help[at..].contains("2  usage error"),
            "{cmd}"
        );
    }

    // Each read command's help has a summary, a description and examples.
    for cmd in ["dump", "verify", "segments"] {
        let out = walctl().args([cmd, "--help"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("Examples:"), "{cmd}");
        assert!(help.contains(&format!("walctl {cmd} --dir")), "{cmd}");
        assert!(
            help.contains("--json") && help.contains("Exit codes"),
            "{cmd}"
        );
        assert!(help.lines().count() > 15, "{cmd}");
    }
}
