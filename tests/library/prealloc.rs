//! Preallocated segments (the default): the live newest segment runs on in durable
//! zeros, which readers beside the writer take for "nothing more yet"; a closed log
//! is byte for byte what the writer without preallocation leaves; after a crash the
//! zeros are cut at open without quarantine and said so; zeros followed by a
//! non-zero byte are corruption; a power cut that loses a block in the middle never
//! costs an acknowledged record.

use crate::common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use assert_cmd::cargo::CommandCargoExt;
use common::sim::SimDisk;
use common::*;
use walctl::quarantine::QUARANTINE_DIR;
use walctl::reader::WalReader;
use walctl::writer::{SyncPolicy, Wal, WalOptions};
use walctl::{Error, Severity};

fn opts(max_segment_size: u64, preallocate: bool) -> WalOptions {
    WalOptions::default()
        .max_segment_size(max_segment_size)
        .max_segments(0)
        .sync(SyncPolicy::Always)
        .preallocate(preallocate)
}

fn payload(i: u64) -> Vec<u8> {
    format!("record {i} {}", "p".repeat((i % 29) as usize)).into_bytes()
}

fn records(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    WalReader::open(dir)
        .unwrap()
        .entries_from(0)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.lsn, e.data)
        })
        .collect()
}

fn walctl(args: &[&str], dir: &Path) -> std::process::Output {
    Command::cargo_bin("walctl")
        .unwrap()
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap()
}

/// A copy of the segments (and only them) of a live log: what a crash leaves.
fn crash_copy(from: &Path) -> tempfile::TempDir {
    let t = tempdir();
    for name in segment_names(from) {
        fs::copy(from.join(&name), t.path().join(&name)).unwrap();
    }
    t
}

#[test]
fn closed_log_is_byte_identical_with_and_without_preallocation() {
    let (on, off) = (tempdir(), tempdir());
    for (dir, pre) in [(on.path(), true), (off.path(), false)] {
        let wal = Wal::open(dir, opts(2048, pre)).unwrap();
        for i in 1..=300 {
            wal.append(&payload(i)).unwrap();
            if i % 97 == 0 {
                wal.checkpoint(b"cp").unwrap();
            }
        }
        let names = segment_names(dir);
        assert!(names.len() > 5, "several rotations");
        // Every segment but the newest is already cut to its records.
        for n in &names[..names.len() - 1] {
            let bytes = fs::read(dir.join(n)).unwrap();
            assert_ne!(bytes.last(), Some(&0), "{n} ends in preallocated zeros");
        }
        let newest = fs::metadata(dir.join(names.last().unwrap())).unwrap().len();
        if pre {
            assert_eq!(newest, 2048, "the live newest segment is preallocated");
        } else {
            assert!(newest < 2048 + 300);
        }
        wal.close().unwrap();
        let left: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".ready"))
            .collect();
        assert!(left.is_empty(), "ready files left behind: {left:?}");
    }
    let (a, b) = (segment_names(on.path()), segment_names(off.path()));
    assert_eq!(a, b);
    for n in &a {
        assert_eq!(
            fs::read(on.path().join(n)).unwrap(),
            fs::read(off.path().join(n)).unwrap(),
            "{n}"
        );
    }
}

#[test]
fn readers_beside_the_writer_see_a_clean_log() {
    let dir = tempdir();
    let wal = Wal::open(dir.path(), opts(1 << 20, true)).unwrap();
    for i in 1..=20 {
        wal.append(&payload(i)).unwrap();
    }
    let seg = dir.path().join("segment-0");
    assert_eq!(fs::metadata(&seg).unwrap().len(), 1 << 20);
    assert_eq!(records(dir.path()).len(), 20);
    let v = walctl(&["verify"], dir.path());
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    let d = walctl(&["dump", "--json"], dir.path());
    assert_eq!(d.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&d.stdout).lines().count(), 20);
    wal.close().unwrap();
}

#[test]
fn crash_leaves_zeros_that_open_cuts_without_quarantine() {
    let dir = tempdir();
    let wal = Wal::open(dir.path(), opts(1 << 20, true)).unwrap();
    for i in 1..=50 {
        wal.append(&payload(i)).unwrap();
    }
    let copy = crash_copy(dir.path());
    wal.close().unwrap();
    let logical = fs::metadata(dir.path().join("segment-0")).unwrap().len();
    let seg = copy.path().join("segment-0");
    assert_eq!(fs::metadata(&seg).unwrap().len(), 1 << 20);

    // The CLI says what it cut, on stderr, and goes on from the last record.
    let o = walctl(&["append", "--preallocate", "off", "next"], copy.path());
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("cut {} bytes of unwritten", (1 << 20) - logical)),
        "{err}"
    );
    assert!(!copy.path().join(QUARANTINE_DIR).exists());
    let recs = records(copy.path());
    assert_eq!(recs.len(), 51);
    assert_eq!(recs[49], (50, payload(50)));
    assert_eq!(recs[50], (51, b"next".to_vec()));

    // The library reports it too.
    let copy2 = crash_copy(copy.path());
    let f = fs::OpenOptions::new()
        .write(true)
        .open(copy2.path().join("segment-0"))
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len + 4096).unwrap();
    let wal = Wal::open(copy2.path(), opts(1 << 20, true)).unwrap();
    let cut = wal.open_report().unwritten_tail.clone().unwrap();
    assert_eq!((cut.offset, cut.bytes), (len, 4096));
    assert!(wal.open_report().repaired_tail.is_none());
}

#[test]
fn zeros_then_a_written_byte_are_corruption() {
    let dir = tempdir();
    let wal = Wal::open(dir.path(), opts(1 << 20, true)).unwrap();
    for i in 1..=10 {
        wal.append(&payload(i)).unwrap();
    }
    let copy = crash_copy(dir.path());
    wal.close().unwrap();
    let seg = copy.path().join("segment-0");
    let mut bytes = fs::read(&seg).unwrap();
    bytes[600_000] = 0x42;
    fs::write(&seg, &bytes).unwrap();
    assert_eq!(verify_code(copy.path()), Some(4));
    match Wal::open(copy.path(), opts(1 << 20, true)) {
        Err(Error::Damaged { problem, .. }) => assert_eq!(problem.severity, Severity::Corruption),
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(fs::read(&seg).unwrap(), bytes, "nothing changed");
}

#[test]
fn preallocation_off_keeps_the_live_file_exact() {
    let dir = tempdir();
    let wal = Wal::open(dir.path(), opts(1 << 20, false)).unwrap();
    let mut expect = Vec::new();
    for i in 1..=10 {
        let l = wal.append(&payload(i)).unwrap();
        walctl::codec::encode_record(&mut expect, l, &payload(i), false);
    }
    assert_eq!(fs::read(dir.path().join("segment-0")).unwrap(), expect);
    wal.close().unwrap();
}

/// A power cut that loses one block in the middle of unsynced writes into
/// preallocated space (a batch written whose fdatasync failed, so never
/// acknowledged): every acknowledged record survives; what follows the hole is
/// either cut as a torn tail or refused as corruption, never read as records.
#[test]
fn power_cut_losing_a_block_keeps_every_acknowledged_record() {
    let (mut rng, seed) = Rng::from_env("WALCTL_PREALLOC_SEED");
    let (mut holes, mut refused) = (0, 0);
    for round in 0..40 {
        let ctx = format!("seed {seed} round {round}");
        let dir = tempdir();
        let disk = SimDisk::new(dir.path());
        disk.lose_a_block(true);
        let o = opts(64 * 1024, true);
        let wal = Wal::open_with_storage(Arc::new(disk.clone()), o.clone()).unwrap();
        let acked = rng.range(1, 200);
        for i in 1..=acked {
            wal.append(&payload(i)).unwrap();
        }
        disk.fail_file_sync(true);
        let more: Vec<Vec<u8>> = (acked + 1..=acked + rng.range(1, 100))
            .map(payload)
            .collect();
        let more: Vec<&[u8]> = more.iter().map(|p| p.as_slice()).collect();
        assert!(wal.append_batch(&more).is_err(), "{ctx}: not acknowledged");
        disk.fail_file_sync(false);
        let said = disk.power_cut(&mut rng);
        holes += said.contains("lost") as u32;
        drop(wal);
        let got: Vec<_> = WalReader::open(dir.path())
            .unwrap()
            .entries_from(0)
            .unwrap()
            .map_while(|e| e.ok())
            .map(|e| (e.lsn, e.data))
            .collect();
        assert!(got.len() as u64 >= acked, "{ctx}: {said}");
        for (k, (lsn, data)) in got.iter().enumerate() {
            assert_eq!(
                (*lsn, data),
                (k as u64 + 1, &payload(k as u64 + 1)),
                "{ctx}"
            );
        }
        match Wal::open(dir.path(), o) {
            Ok(w) => {
                assert!(w.next_lsn() > acked, "{ctx}: {said}");
                w.close().unwrap();
            }
            Err(Error::Damaged { problem, .. }) => {
                assert_eq!(problem.severity, Severity::Corruption, "{ctx}: {said}");
                assert!(problem.last_good_lsn.unwrap_or(0) >= acked, "{ctx}: {said}");
                refused += 1;
            }
            Err(e) => panic!("{ctx}: {e}"),
        }
    }
    assert!(
        holes > 20 && refused > 0,
        "seed {seed}: {holes} holes, {refused} refused"
    );
}

/// A record torn while being written into preallocated space: its bytes are saved
/// and cut as a torn tail; the zeros after them are cut without being saved.
#[test]
fn torn_record_in_preallocated_space_saves_only_its_bytes() {
    let dir = tempdir();
    let wal = Wal::open(dir.path(), opts(1 << 20, true)).unwrap();
    for i in 1..=10 {
        wal.append(&payload(i)).unwrap();
    }
    let copy = crash_copy(dir.path());
    wal.close().unwrap();
    let logical = fs::metadata(dir.path().join("segment-0")).unwrap().len();
    let mut enc = Vec::new();
    walctl::codec::encode_record(&mut enc, 11, b"never acknowledged, torn", false);
    let torn = &enc[..enc.len() - 5];
    let seg = copy.path().join("segment-0");
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, torn, logical).unwrap();
    assert_eq!(verify_code(copy.path()), Some(3));

    let wal = Wal::open(copy.path(), opts(1 << 20, true)).unwrap();
    let rep = wal.open_report();
    let cut = rep.unwritten_tail.clone().unwrap();
    assert_eq!(
        (cut.offset, cut.bytes),
        (
            logical + torn.len() as u64,
            (1 << 20) - logical - torn.len() as u64
        )
    );
    let repaired = rep.repaired_tail.clone().unwrap();
    assert_eq!(
        (repaired.offset, repaired.bytes),
        (logical, torn.len() as u64)
    );
    let m = walctl::quarantine::load(wal.storage().as_ref(), &repaired.quarantine_id).unwrap();
    let saved = fs::read(
        walctl::quarantine::Location::in_log(wal.storage().as_ref()).saved_file(&m.id, &m.items[0]),
    )
    .unwrap();
    assert_eq!(saved, torn);
    assert_eq!(wal.append(b"next").unwrap(), 11);
    wal.close().unwrap();
    assert_eq!(records(copy.path()).len(), 11);
}

/// `--preallocate auto` (the CLI default): a stream of entries on standard input is
/// written into preallocated space (the live newest segment is its full size while
/// the command runs), and the segment is cut to its records when input ends.
#[test]
fn append_auto_preallocates_a_stream_on_stdin() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempdir();
    let mut child = Command::cargo_bin("walctl")
        .unwrap()
        .args(["append", "--max-segment-size", "1MiB", "--dir"])
        .arg(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "first").unwrap();
    stdin.flush().unwrap();
    let mut lsn = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut lsn)
        .unwrap();
    assert_eq!(lsn.trim(), "1");
    let seg = dir.path().join("segment-0");
    assert_eq!(fs::metadata(&seg).unwrap().len(), 1 << 20, "preallocated");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(records(dir.path()).len(), 1);
    assert!(fs::metadata(&seg).unwrap().len() < 100, "cut at the end");
}

/// Preallocation applies with `SyncPolicy::Always` only: with `Interval` or `Never`
/// no write waits for an fsync, so the writer appends and writes no zeros.
#[test]
fn only_always_preallocates() {
    for (sync, zeros) in [
        (SyncPolicy::Always, true),
        (SyncPolicy::Never, false),
        (
            SyncPolicy::Interval(std::time::Duration::from_millis(50)),
            false,
        ),
    ] {
        let dir = tempdir();
        let wal = Wal::open(dir.path(), opts(1 << 20, true).sync(sync)).unwrap();
        for i in 1..=600 {
            wal.append(&payload(i)).unwrap();
        }
        wal.flush().unwrap();
        let names = segment_names(dir.path());
        let size = fs::metadata(dir.path().join(names.last().unwrap()))
            .unwrap()
            .len();
        assert_eq!(
            size == 1 << 20,
            zeros,
            "{sync:?}: newest segment {size} bytes"
        );
        let ready = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".ready")
            })
            .count();
        assert!(zeros || ready == 0, "{sync:?}: {ready} ready files");
        wal.close().unwrap();
    }
}
