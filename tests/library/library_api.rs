//! The library's public API at the crate root, as a user's program sees it: the Go
//! API's conveniences (ReadAll, ReadFromCheckpoint, EntryWriter/EntryReader), the
//! follow iterator, and the in-memory storage for users' tests.

use crate::common;

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{expected, fixture_dir, tempdir, FIXTURES};
use walctl::storage::MemStorage;
use walctl::{Entry, EntryReader, EntryWriter, SyncPolicy, Wal, WalOptions, WalReader};

fn lsns(entries: impl Iterator<Item = walctl::Result<Entry>>) -> Vec<u64> {
    entries.map(|e| e.unwrap().lsn).collect()
}

#[test]
fn entry_writer_writes_the_bytes_of_a_wal_segment() {
    let dir = tempdir();
    let wal = Wal::open(dir.path(), WalOptions::default().max_segments(0)).unwrap();
    let payloads: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; i as usize * 7]).collect();
    let mut w = EntryWriter::new(Vec::new());
    for (i, p) in payloads.iter().enumerate() {
        let cp = i % 10 == 9;
        let lsn = if cp { wal.checkpoint(p) } else { wal.append(p) }.unwrap();
        w.write_entry(lsn, p, cp).unwrap();
    }
    wal.close().unwrap();
    let segment = fs::read(dir.path().join("segment-0")).unwrap();
    assert_eq!(w.into_inner(), segment);
}

#[test]
fn entry_reader_and_writer_reproduce_the_go_fixtures() {
    for name in FIXTURES {
        let exp = expected(name);
        for (seg, _, _) in exp.segments() {
            let bytes = fs::read(fixture_dir(name).join(&seg)).unwrap();
            let read: Vec<Entry> = EntryReader::new(&bytes[..])
                .collect::<Result<_, _>>()
                .unwrap();
            let want: Vec<_> = exp.entries.iter().filter(|e| e.segment == seg).collect();
            assert_eq!(read.len(), want.len(), "{name}/{seg}");
            let mut w = EntryWriter::new(Vec::new());
            for (got, want) in read.iter().zip(&want) {
                assert_eq!(
                    (got.lsn, &got.data, got.checkpoint, got.offset),
                    (want.lsn, &want.data, want.checkpoint, want.offset)
                );
                w.write_entry(got.lsn, &got.data, got.checkpoint).unwrap();
            }
            assert_eq!(w.into_inner(), bytes, "{name}/{seg}");
        }
    }
}

#[test]
fn entry_reader_reports_a_torn_go_segment_after_its_intact_records() {
    let bytes = fs::read(fixture_dir("basic").join("segment-0")).unwrap();
    let exp = expected("basic");
    let last = exp
        .entries
        .iter()
        .rfind(|e| e.segment == "segment-0")
        .unwrap();
    let cut = &bytes[..(last.offset + last.record_len / 2) as usize];
    let items: Vec<_> = EntryReader::new(cut).collect();
    let (ok, err): (Vec<_>, Vec<_>) = items.into_iter().partition(Result::is_ok);
    assert_eq!(
        ok.len(),
        exp.entries
            .iter()
            .filter(|e| e.segment == "segment-0")
            .count()
            - 1
    );
    assert_eq!(err.len(), 1);
    let msg = err[0].as_ref().unwrap_err().to_string();
    assert!(
        msg.contains(&format!("record at byte {}", last.offset)),
        "{msg}"
    );
}

#[test]
fn read_all_and_read_from_checkpoint_stream_the_log_across_segments() {
    let dir = tempdir();
    let opts = WalOptions::default().max_segment_size(256).max_segments(0);
    let wal = Wal::open(dir.path(), opts).unwrap();
    for i in 1..=40u64 {
        if i == 25 {
            assert_eq!(wal.checkpoint(b"state").unwrap(), 25);
        } else {
            wal.append(format!("entry {i}").as_bytes()).unwrap();
        }
    }
    assert!(fs::read_dir(dir.path()).unwrap().count() > 3, "rotated");
    assert_eq!(lsns(wal.read_all().unwrap()), (1..=40).collect::<Vec<_>>());
    let recovered: Vec<Entry> = wal
        .read_from_checkpoint()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(recovered[0].lsn, 25);
    assert!(recovered[0].checkpoint);
    assert_eq!(recovered[0].data, b"state");
    assert_eq!(recovered.last().unwrap().lsn, 40);
    // Buffered appends are seen too.
    let wal2 = {
        drop(wal);
        Wal::open(dir.path(), WalOptions::default().sync(SyncPolicy::Never)).unwrap()
    };
    wal2.append(b"buffered").unwrap();
    assert_eq!(
        wal2.read_all().unwrap().last().unwrap().unwrap().data,
        b"buffered"
    );
}

#[test]
fn follow_waits_across_rotation_and_stops_on_timeout_or_cancel() {
    let dir = tempdir();
    let opts = WalOptions::default().max_segment_size(200).max_segments(0);
    let wal = Wal::open(dir.path(), opts).unwrap();
    wal.append(b"before").unwrap();
    let reader = WalReader::open(dir.path()).unwrap();
    let mut follow = reader
        .follow_from(1)
        .unwrap()
        .poll_interval(Duration::from_millis(5));
    assert_eq!(
        follow
            .next_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap()
            .lsn,
        1
    );
    // Nothing more: the call returns after its timeout, not before.
    let t = Instant::now();
    assert!(follow
        .next_timeout(Duration::from_millis(100))
        .unwrap()
        .is_none());
    assert!(t.elapsed() >= Duration::from_millis(100));

    let writer = std::thread::spawn(move || {
        for i in 2..=60u64 {
            wal.append(format!("record {i:04}").as_bytes()).unwrap();
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        wal
    });
    let mut seen = Vec::new();
    while seen.len() < 59 {
        let e = follow
            .next_timeout(Duration::from_secs(10))
            .unwrap()
            .expect("a record in time");
        seen.push((e.lsn, e.segment_id));
    }
    let wal = writer.join().unwrap();
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        (2..=60).collect::<Vec<_>>()
    );
    assert!(
        seen.last().unwrap().1 >= 3,
        "followed into later segments: {seen:?}"
    );

    // A cancel from another thread ends the blocking iterator.
    let stop = follow.cancel_handle();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        stop.cancel();
    });
    assert!(follow.next().is_none());
    canceller.join().unwrap();
    wal.append(b"after cancel").unwrap();
    assert!(follow
        .next_timeout(Duration::from_millis(50))
        .unwrap()
        .is_none());
}

#[test]
fn mem_storage_serves_readers() {
    let mut w = EntryWriter::new(Vec::new());
    for lsn in 1..=5 {
        w.write_entry(lsn, b"x", lsn == 3).unwrap();
    }
    let storage = Arc::new(MemStorage::segments(&[w.into_inner()]));
    let reader = WalReader::new(storage.clone());
    assert_eq!(lsns(reader.entries_from(1).unwrap()), [1, 2, 3, 4, 5]);
    assert_eq!(lsns(reader.from_newest_checkpoint().unwrap()), [3, 4, 5]);
    // A writer cannot open it at all: it has no write half (a compile_fail example
    // on `MemStorage` checks that).
}

/// A whole log in `MemDir`, no disk: preallocated rotation, retention after a
/// checkpoint, the writer lock, a torn tail cut (and saved) at the next open, and
/// the readers, all through the same storage traits as a directory on disk.
#[test]
fn a_whole_log_lives_in_a_mem_dir() {
    use walctl::storage::MemDir;
    let dir = MemDir::new();
    let opts = WalOptions::default()
        .max_segment_size(1024)
        .max_segments(2)
        .sync(SyncPolicy::Always);
    let wal = Wal::open_with_storage(Arc::new(dir.clone()), opts.clone()).unwrap();
    let second = Wal::open_with_storage(Arc::new(dir.clone()), opts.clone());
    assert!(
        matches!(second, Err(walctl::Error::Locked { .. })),
        "{second:?}"
    );
    for i in 1..=100u64 {
        assert_eq!(wal.append(format!("record {i:03}").as_bytes()).unwrap(), i);
    }
    assert_eq!(wal.checkpoint(b"state at 100").unwrap(), 101);
    for i in 102..=150u64 {
        wal.append(format!("record {i:03}").as_bytes()).unwrap();
    }
    wal.close().unwrap();
    let removed = wal.retention();
    assert!(!removed.segments.is_empty(), "retention deleted nothing");
    let segments: Vec<String> = dir
        .names()
        .into_iter()
        .filter(|n| n.starts_with("segment-"))
        .collect();
    assert!(!segments.contains(&"segment-0".to_string()), "{segments:?}");
    assert!(
        dir.names().iter().all(|n| !n.ends_with(".ready")),
        "{:?}",
        dir.names()
    );

    // From the newest checkpoint on, every record, in order.
    let reader = WalReader::new(Arc::new(dir.clone()));
    let got = lsns(reader.from_newest_checkpoint().unwrap());
    assert_eq!(got, (101..=150).collect::<Vec<u64>>());

    // Tear the last record; the next open cuts it, saves it, and goes on.
    let newest = segments
        .iter()
        .max_by_key(|n| n[8..].parse::<u64>().unwrap())
        .unwrap();
    let mut bytes = dir.file(newest).unwrap();
    bytes.truncate(bytes.len() - 3);
    dir.put(newest, bytes);
    let wal = Wal::open_with_storage(Arc::new(dir.clone()), opts).unwrap();
    assert!(wal.open_report().repaired_tail.is_some());
    assert_eq!(wal.append(b"after the cut").unwrap(), 150);
    wal.close().unwrap();
    assert!(
        dir.names()
            .iter()
            .any(|n| n.starts_with(".walctl-quarantine/")),
        "the cut bytes were saved: {:?}",
        dir.names()
    );
}
