//! A segment that cannot be read: every error the library builds from it keeps the
//! I/O error as its `source()`, so a caller tells a permission problem from a failing
//! disk by `kind()` and the OS error code, not by parsing text.

use crate::common;

use std::error::Error as _;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use common::sim::SimDisk;
use common::{segment_names, tempdir};
use walctl::scan::{scan_log, ScanOptions};
use walctl::storage::MemStorage;
use walctl::{Error, Follow, Severity, SyncPolicy, Wal, WalOptions, WalReader};

/// A log of `n` records in 16 KiB segments.
fn small_segments(dir: &std::path::Path, n: u64) {
    let wal = Wal::open(
        dir,
        WalOptions::default()
            .max_segment_size(16 * 1024)
            .max_segments(0)
            .sync(SyncPolicy::Never),
    )
    .unwrap();
    for i in 0..n {
        wal.append(&vec![i as u8; 700]).unwrap();
    }
    wal.close().unwrap();
}

/// The `io::Error` that `e`'s `source()` is.
fn io_source(e: &Error) -> &io::Error {
    e.source()
        .unwrap_or_else(|| panic!("no source: {e:?}"))
        .downcast_ref::<io::Error>()
        .unwrap_or_else(|| panic!("the source is no io::Error: {e:?}"))
}

/// The segments of a log in `dir` in memory, `segment-3` refusing to open.
fn mem_log_with_unreadable_segment_3() -> Arc<MemStorage> {
    let tmp = tempdir();
    small_segments(tmp.path(), 120);
    let names = segment_names(tmp.path());
    assert!(names.len() >= 5, "{names:?}");
    let files = names
        .iter()
        .map(|n| (n.clone(), std::fs::read(tmp.path().join(n)).unwrap()))
        .collect();
    Arc::new(MemStorage::new(files).with_unreadable("segment-3"))
}

#[test]
fn an_unreadable_segment_keeps_its_io_error_for_readers() {
    let storage = mem_log_with_unreadable_segment_3();

    // The scanner's problem.
    let report = scan_log(storage.clone(), ScanOptions::default(), |_| {}).unwrap();
    let p = report.problems().next().unwrap();
    assert_eq!(p.severity, Severity::Unreadable);
    assert_eq!(
        p.io_error().map(io::Error::kind),
        Some(io::ErrorKind::PermissionDenied)
    );
    // Its JSON is what it was: the error as text, nothing more.
    let json = serde_json::to_value(p).unwrap();
    assert!(json.get("cause").is_none(), "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("ermission"),
        "{json}"
    );

    // A reader's error.
    let err = WalReader::new(storage.clone())
        .entries_from(1)
        .unwrap()
        .find_map(|e| e.err())
        .expect("the reader stops at segment-3");
    assert!(matches!(err, Error::Scan { .. }), "{err:?}");
    assert_eq!(io_source(&err).kind(), io::ErrorKind::PermissionDenied);

    // A follower's error.
    let mut follow = Follow::new(storage, 1).unwrap();
    let err = loop {
        match follow.next_timeout(Duration::from_secs(20)) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the follower waited instead of reporting segment-3"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::Scan { .. }), "{err:?}");
    assert_eq!(io_source(&err).kind(), io::ErrorKind::PermissionDenied);
}

#[test]
fn an_unreadable_segment_keeps_its_os_error_for_the_writer_and_repair() {
    let tmp = tempdir();
    small_segments(tmp.path(), 120);
    let disk = SimDisk::new(tmp.path());
    disk.unreadable("segment-2", libc::EIO);

    // Opening for write refuses, the disk's error the source.
    let err = Wal::open_with_storage(Arc::new(disk.clone()), WalOptions::default())
        .expect_err("the open refuses a log it cannot read");
    assert!(matches!(err, Error::Damaged { .. }), "{err:?}");
    assert_eq!(io_source(&err).raw_os_error(), Some(libc::EIO));
    assert_eq!(err.problem().unwrap().segment, "segment-2");

    // So does planning a repair: nothing can be saved from bytes that cannot be read.
    let err = walctl::repair::plan(Arc::new(disk), walctl::repair::Policy::TolerateTail)
        .expect_err("a repair refuses a log it cannot read");
    assert!(matches!(err, Error::Scan { .. }), "{err:?}");
    assert_eq!(io_source(&err).raw_os_error(), Some(libc::EIO));
}
