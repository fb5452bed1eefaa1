//! The core library's promises (issue 3): rotation, reopen, torn tails, corruption,
//! locking, closing, retention, stray files, sync policies, group commit.

use crate::common;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use prost::Message;
use walctl::error::{Error, ProblemKind, Severity};
use walctl::proto::WalEntry;
use walctl::quarantine;
use walctl::reader::WalReader;
use walctl::scan::{scan_log, ScanOptions};
use walctl::storage::FileStorage;
use walctl::writer::{SyncPolicy, Wal, WalOptions};

fn opts(max_segment_size: u64, max_segments: usize) -> WalOptions {
    WalOptions::default()
        .max_segment_size(max_segment_size)
        .max_segments(max_segments)
        .sync(SyncPolicy::Never)
}

fn payload(lsn: u64) -> Vec<u8> {
    format!("record {lsn} ")
        .repeat((lsn % 17) as usize + 1)
        .into_bytes()
}

fn read_all(dir: &Path) -> Vec<(u64, Vec<u8>, bool)> {
    WalReader::open(dir)
        .unwrap()
        .entries_from(0)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.lsn, e.data, e.checkpoint)
        })
        .collect()
}

fn scan(dir: &Path) -> walctl::scan::ScanReport {
    scan_log(
        Arc::new(FileStorage::open(dir).unwrap()),
        ScanOptions::default(),
        |_| {},
    )
    .unwrap()
}

/// Encodes a record with the prost-generated type: an encoder independent of codec.rs.
fn prost_record(lsn: u64, data: &[u8], checkpoint: bool) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(data);
    crc.update(&lsn.to_le_bytes());
    let body = WalEntry {
        log_sequence_number: lsn,
        data: data.to_vec(),
        crc: crc.finalize(),
        is_checkpoint: checkpoint.then_some(true),
    }
    .encode_to_vec();
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend(body);
    out
}

#[test]
fn multi_segment_log_with_4096_byte_segments_matches_an_independent_encoder() {
    let dir = tempdir();
    let wal = Wal::open(dir.path(), opts(4096, 0)).unwrap();
    // Independent model of the reference: before each write, rotate when the
    // current segment already holds >= max bytes.
    let mut model: Vec<Vec<u8>> = vec![Vec::new()];
    for lsn in 1..=400u64 {
        let data = payload(lsn);
        let cp = lsn % 97 == 0;
        let got = if cp {
            wal.checkpoint(&data).unwrap()
        } else if lsn % 5 == 0 {
            // Batches must rotate record by record exactly like single appends.
            let (first, last) = wal.append_batch(&[&data]).unwrap();
            assert_eq!(first, last);
            last
        } else {
            wal.append(&data).unwrap()
        };
        assert_eq!(got, lsn);
        if model.last().unwrap().len() >= 4096 {
            model.push(Vec::new());
        }
        model
            .last_mut()
            .unwrap()
            .extend(prost_record(lsn, &data, cp));
    }
    wal.close().unwrap();
    let names = segment_names(dir.path());
    assert!(model.len() > 5, "the test must rotate several times");
    assert_eq!(names.len(), model.len());
    for (i, bytes) in model.iter().enumerate() {
        assert_eq!(
            &fs::read(dir.path().join(format!("segment-{i}"))).unwrap(),
            bytes,
            "segment-{i}"
        );
    }
    let all = read_all(dir.path());
    assert_eq!(all.len(), 400);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, e)| e.0 == i as u64 + 1 && e.1 == payload(e.0)));
}

#[test]
fn batches_across_rotation_are_byte_identical_to_single_appends() {
    let a = tempdir();
    let b = tempdir();
    let datas: Vec<Vec<u8>> = (1..=300).map(payload).collect();
    let wa = Wal::open(a.path(), opts(1000, 0)).unwrap();
    for d in &datas {
        wa.append(d).unwrap();
    }
    wa.close().unwrap();
    let wb = Wal::open(b.path(), opts(1000, 0)).unwrap();
    for chunk in datas.chunks(37) {
        wb.append_batch(chunk).unwrap();
    }
    wb.close().unwrap();
    let names = segment_names(a.path());
    assert_eq!(names, segment_names(b.path()));
    for n in names {
        assert_eq!(
            fs::read(a.path().join(&n)).unwrap(),
            fs::read(b.path().join(&n)).unwrap()
        );
    }
}

#[test]
fn reopen_after_an_empty_newest_segment_continues_lsns() {
    let dir = tempdir();
    let wal = Wal::open(dir.path(), opts(4096, 0)).unwrap();
    for i in 0..100 {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    let names = segment_names(dir.path());
    let last_id: u64 = names.last().unwrap()["segment-".len()..].parse().unwrap();
    // A crash right after rotation leaves an empty newest segment.
    fs::write(dir.path().join(format!("segment-{}", last_id + 1)), b"").unwrap();
    let wal = Wal::open(dir.path(), opts(4096, 0)).unwrap();
    assert_eq!(wal.next_lsn(), 101);
    assert_eq!(wal.append(b"after").unwrap(), 101);
    wal.close().unwrap();
    let size = fs::metadata(dir.path().join(format!("segment-{}", last_id + 1)))
        .unwrap()
        .len();
    assert!(size > 0, "the record went into the empty newest segment");
    assert_eq!(read_all(dir.path()).last().unwrap().0, 101);
}

#[test]
fn torn_tail_at_open_is_saved_then_cut() {
    let dir = tempdir();
    let wal = Wal::open(dir.path(), opts(4096, 0)).unwrap();
    for i in 1..=50 {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    let names = segment_names(dir.path());
    let last = dir.path().join(names.last().unwrap());
    let report = scan(dir.path());
    let seg = report.segments.last().unwrap();
    let full = fs::read(&last).unwrap();
    // Find the start of the last record: walk the framing.
    let mut off = 0usize;
    let mut starts = vec![];
    while off < full.len() {
        starts.push(off);
        off += 4 + u32::from_le_bytes(full[off..off + 4].try_into().unwrap()) as usize;
    }
    let last_start = *starts.last().unwrap() as u64;
    let cut_at = last_start + 7;
    cut(&last, cut_at);
    let torn = fs::read(&last).unwrap()[last_start as usize..].to_vec();

    let wal = Wal::open(dir.path(), opts(4096, 0)).unwrap();
    let rep = wal.open_report().repaired_tail.clone().expect("a repair");
    assert_eq!(rep.offset, last_start);
    assert_eq!(rep.bytes, 7);
    // Cut there; the space after it is preallocated zeros, no longer the torn bytes.
    let now = fs::read(&last).unwrap();
    assert_eq!(&now[..last_start as usize], &full[..last_start as usize]);
    assert!(now[last_start as usize..].iter().all(|&b| b == 0));
    let m = quarantine::load(wal.storage().as_ref(), &rep.quarantine_id).unwrap();
    assert_eq!(m.items.len(), 1);
    assert_eq!(m.items[0].offset, last_start);
    assert_eq!(m.items[0].sha256, quarantine::sha256_hex(&torn));
    let saved = quarantine::Location::in_log(wal.storage().as_ref()).saved_file(&m.id, &m.items[0]);
    let saved = fs::read(saved).unwrap();
    assert_eq!(saved, torn);
    // The lost record was never acknowledged by this writer; the LSN sequence goes on
    // from the last intact one.
    assert_eq!(wal.append(b"next").unwrap(), seg.last_lsn.unwrap());
    wal.close().unwrap();
    assert_eq!(scan(dir.path()).worst(), None);
}

#[test]
fn corruption_refuses_a_write_open_and_changes_nothing() {
    let dir = tempdir();
    let wal = Wal::open(dir.path(), opts(4096, 0)).unwrap();
    for i in 1..=200 {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    let names = segment_names(dir.path());
    let victim = dir.path().join(&names[1]);
    flip_bit(&victim, 40, 3);
    let before: Vec<String> = names
        .iter()
        .map(|n| sha256_file(&dir.path().join(n)))
        .collect();
    let err = Wal::open(dir.path(), opts(4096, 0)).unwrap_err();
    let msg = err.to_string();
    match &err {
        Error::Damaged { problem, .. } => {
            assert_eq!(problem.segment, names[1]);
            assert_eq!(problem.severity, Severity::Corruption);
        }
        other => panic!("expected Damaged, got {other:?}"),
    }
    // The library says what is wrong; which commands to run is the CLI's to say.
    assert!(!msg.contains("walctl"), "{msg}");
    assert!(msg.contains(&names[1]), "{msg}");
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("walctl"))
        .args(["append", "--dir"])
        .arg(dir.path())
        .arg("x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&names[1])
            && stderr.contains("walctl verify")
            && stderr.contains("truncate-corrupt"),
        "{stderr}"
    );
    let after: Vec<String> = names
        .iter()
        .map(|n| sha256_file(&dir.path().join(n)))
        .collect();
    assert_eq!(before, after);
    assert!(!dir.path().join(quarantine::QUARANTINE_DIR).exists());
}

#[test]
fn a_second_writer_is_refused_with_the_lock_named() {
    let dir = tempdir();
    let wal = Wal::open(dir.path(), opts(4096, 0)).unwrap();
    let err = Wal::open(dir.path(), opts(4096, 0)).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(".walctl.lock"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    wal.close().unwrap();
    // Closed: the lock is free again.
    Wal::open(dir.path(), opts(4096, 0))
        .unwrap()
        .close()
        .unwrap();
}

#[test]
fn append_after_close_is_an_error_and_writes_nothing() {
    let dir = tempdir();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append(b"one").unwrap();
    wal.close().unwrap();
    let size = fs::metadata(dir.path().join("segment-0")).unwrap().len();
    assert!(matches!(wal.append(b"two"), Err(Error::Closed)));
    assert!(matches!(wal.checkpoint(b"cp"), Err(Error::Closed)));
    assert!(matches!(wal.append_batch(&[b"x"]), Err(Error::Closed)));
    assert!(matches!(wal.sync(), Err(Error::Closed)));
    wal.close().unwrap();
    assert_eq!(
        fs::metadata(dir.path().join("segment-0")).unwrap().len(),
        size
    );
}

#[test]
fn invalid_options_are_clear_errors() {
    let dir = tempdir();
    for o in [
        WalOptions::default().max_segment_size(0),
        WalOptions::default().sync(SyncPolicy::Interval(Duration::ZERO)),
    ] {
        let err = Wal::open(dir.path(), o).unwrap_err();
        assert!(matches!(err, Error::InvalidOption(_)), "{err:?}");
    }
    assert!(matches!(
        Wal::open(dir.path(), WalOptions::default())
            .unwrap()
            .append_batch::<&[u8]>(&[]),
        Err(Error::EmptyBatch)
    ));
}

#[test]
fn retention_never_deletes_the_newest_checkpoint_or_what_follows() {
    let dir = tempdir();
    // Without a checkpoint nothing may go: recovery replays from the start.
    let wal = Wal::open(dir.path(), opts(512, 3)).unwrap();
    for i in 1..=100 {
        wal.append(&payload(i)).unwrap();
    }
    let n_before = segment_names(dir.path()).len();
    assert!(n_before > 3);
    wal.flush().unwrap();
    assert_eq!(read_all(dir.path()).len(), 100);
    // A checkpoint, then more records: the checkpoint's segment and later stay.
    let cp = wal.checkpoint(b"state@101").unwrap();
    assert_eq!(cp, 101);
    for i in 102..=300 {
        wal.append(&payload(i)).unwrap();
        let names = segment_names(dir.path());
        assert!(
            names.len() <= 3 || dir.path().join(&names[0]).exists(),
            "at most 3 segments unless protected"
        );
        // Recovery must always find the checkpoint and every record after it.
        if i % 50 == 0 {
            wal.flush().unwrap();
            let rec: Vec<_> = WalReader::open(dir.path())
                .unwrap()
                .from_newest_checkpoint()
                .unwrap()
                .map(|e| e.unwrap())
                .collect();
            assert_eq!(rec[0].lsn, 101);
            assert!(rec[0].checkpoint);
            assert_eq!(rec.len() as u64, i - 100);
        }
    }
    wal.close().unwrap();
    let report = scan(dir.path());
    assert_eq!(report.worst(), None);
    let cp_seg = report.newest_checkpoint.unwrap().segment_id;
    // Everything before the checkpoint's segment was reclaimed; it and later stay.
    assert_eq!(report.segments[0].id, cp_seg);
    assert_eq!(report.last_lsn, Some(300));

    // A later checkpoint lets retention reclaim everything before its segment.
    let wal = Wal::open(dir.path(), opts(512, 3)).unwrap();
    wal.checkpoint(b"state@301").unwrap();
    for i in 302..=400 {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    let report = scan(dir.path());
    assert_eq!(
        report.segments[0].id,
        report.newest_checkpoint.unwrap().segment_id
    );
    assert!(report.segments[0].id > cp_seg);
    let rec: Vec<_> = WalReader::open(dir.path())
        .unwrap()
        .from_newest_checkpoint()
        .unwrap()
        .map(|e| e.unwrap().lsn)
        .collect();
    assert_eq!(rec, (301..=400).collect::<Vec<_>>());
}

#[test]
fn stray_files_are_ignored_and_never_deleted() {
    let dir = tempdir();
    let strays = [
        "segment-0.bak",
        "segment-1.tmp",
        "segment-01",
        "notes.txt",
        "segment-",
    ];
    for s in strays {
        fs::write(dir.path().join(s), b"\xff\xff\xff\xffgarbage").unwrap();
    }
    fs::create_dir(dir.path().join("archive")).unwrap();
    let wal = Wal::open(dir.path(), opts(256, 2)).unwrap();
    wal.checkpoint(b"cp").unwrap();
    for i in 1..200 {
        wal.append(&payload(i)).unwrap();
        if i % 40 == 0 {
            wal.checkpoint(b"cp").unwrap();
        }
    }
    wal.close().unwrap();
    for s in strays {
        assert_eq!(
            fs::read(dir.path().join(s)).unwrap(),
            b"\xff\xff\xff\xffgarbage",
            "{s}"
        );
    }
    assert!(dir.path().join("archive").is_dir());
    assert_eq!(scan(dir.path()).worst(), None);
}

#[test]
fn length_prefix_of_4_gib_is_rejected_as_corruption() {
    let dir = tempdir();
    copy_fixture("basic", dir.path());
    let mut f = fs::read(dir.path().join("segment-0")).unwrap();
    let at = f.len() as u64;
    f.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    fs::write(dir.path().join("segment-0"), &f).unwrap();
    let report = scan(dir.path());
    let p = report.problems().next().unwrap();
    assert_eq!(p.offset, at);
    assert_eq!(p.severity, Severity::Corruption);
    assert!(
        matches!(
            p.kind,
            ProblemKind::LengthTooLarge {
                len: 0xffff_ffff,
                ..
            }
        ),
        "{p:?}"
    );
    assert_eq!(report.records, 100);
}

#[test]
fn sync_policies_reach_the_disk_when_promised() {
    // Interval: the background syncer writes without being asked.
    let dir = tempdir();
    let wal = Wal::open(
        dir.path(),
        WalOptions::default().sync(SyncPolicy::Interval(Duration::from_millis(20))),
    )
    .unwrap();
    let lsn = wal.append(b"interval").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while wal.durable_lsn() < lsn {
        assert!(
            std::time::Instant::now() < deadline,
            "interval sync never ran"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(read_all(dir.path()).len(), 1);
    wal.close().unwrap();

    // Never: buffered until flush/close; checkpoint is durable at once.
    let dir = tempdir();
    let wal = Wal::open(dir.path(), opts(1 << 20, 0)).unwrap();
    wal.append(b"buffered").unwrap();
    let seg0 = fs::read(dir.path().join("segment-0")).unwrap();
    assert!(seg0.iter().all(|&b| b == 0), "nothing written yet");
    assert_eq!(wal.durable_lsn(), 0);
    let cp = wal.checkpoint(b"cp").unwrap();
    assert_eq!(wal.durable_lsn(), cp);
    assert_eq!(read_all(dir.path()).len(), 2);
    wal.close().unwrap();

    // Always: durable on return.
    let dir = tempdir();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let lsn = wal.append(b"always").unwrap();
    assert_eq!(wal.durable_lsn(), lsn);
    assert_eq!(read_all(dir.path()).len(), 1);
}

#[test]
fn concurrent_appenders_get_distinct_contiguous_lsns() {
    let dir = tempdir();
    let wal =
        Arc::new(Wal::open(dir.path(), WalOptions::default().max_segment_size(8192)).unwrap());
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                (0..40)
                    .map(|i| {
                        let data = format!("t{t}-i{i}");
                        let lsn = wal.append(data.as_bytes()).unwrap();
                        assert!(wal.durable_lsn() >= lsn, "acknowledged before durable");
                        (lsn, data)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: Vec<(u64, String)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    acked.sort();
    wal.close().unwrap();
    let all = read_all(dir.path());
    assert_eq!(all.len(), 640);
    for ((lsn, data), (rlsn, rdata, _)) in acked.iter().zip(&all) {
        assert_eq!(lsn, rlsn);
        assert_eq!(data.as_bytes(), &rdata[..]);
    }
}

#[test]
fn lsn_exhaustion_is_refused_before_anything_is_written() {
    let dir = tempdir();
    let mut seg = Vec::new();
    walctl::codec::encode_record(&mut seg, u64::MAX - 2, b"nearly full", false);
    fs::write(dir.path().join("segment-0"), &seg).unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    // The last usable LSN is u64::MAX - 1, so that "the next LSN" always exists.
    assert_eq!(wal.append(b"last").unwrap(), u64::MAX - 1);
    walctl::codec::encode_record(&mut seg, u64::MAX - 1, b"last", false);
    let size = seg.len() as u64;
    assert!(matches!(
        wal.append(b"one too many"),
        Err(Error::LsnExhausted {
            last_lsn,
            records: 1
        }) if last_lsn == u64::MAX - 1
    ));
    assert!(matches!(
        wal.append_batch(&[b"a", b"b"]),
        Err(Error::LsnExhausted { records: 2, .. })
    ));
    wal.close().unwrap();
    assert_eq!(
        fs::metadata(dir.path().join("segment-0")).unwrap().len(),
        size
    );
    let lsns: Vec<u64> = read_all(dir.path()).iter().map(|e| e.0).collect();
    assert_eq!(lsns, vec![u64::MAX - 2, u64::MAX - 1]);

    // A log whose last record claims LSN u64::MAX still opens (no overflow) and
    // refuses to append.
    let dir = tempdir();
    let mut seg = Vec::new();
    walctl::codec::encode_record(&mut seg, u64::MAX, b"max", false);
    fs::write(dir.path().join("segment-0"), &seg).unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.durable_lsn(), u64::MAX);
    assert!(matches!(wal.append(b"x"), Err(Error::LsnExhausted { .. })));
}

#[test]
fn a_damaged_first_record_never_makes_a_reader_skip_a_segment() {
    let dir = tempdir();
    let wal = Wal::open(dir.path(), opts(1024, 0)).unwrap();
    for i in 1..=60 {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    let report = scan(dir.path());
    let (s1, s2) = (&report.segments[1], &report.segments[2]);
    let from = s1.last_lsn.unwrap(); // in segment 1
                                     // Segment 2's first record is LSN s2.first_lsn: make its varint claim LSN 1
                                     // (`08 <lsn>` starts the body); the CRC no longer matches.
    let path = dir.path().join(&s2.name);
    let mut bytes = fs::read(&path).unwrap();
    assert_eq!(bytes[4], 0x08);
    bytes[5] = 1;
    fs::write(&path, bytes).unwrap();
    let mut it = WalReader::open(dir.path())
        .unwrap()
        .entries_from(from)
        .unwrap();
    assert_eq!(
        it.next().unwrap().unwrap().lsn,
        from,
        "segment 1 was not skipped"
    );
    let err = it.next().unwrap().unwrap_err();
    assert_eq!(err.problem().unwrap().segment, s2.name);
    assert_eq!(err.problem().unwrap().offset, 0);
}
