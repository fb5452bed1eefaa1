//! Group commit under `SyncPolicy::Always`: many writers share fsyncs, every
//! acknowledged record is on disk with its own LSN, and a failing fsync wakes every
//! waiting writer with an error instead of leaving one asleep or acknowledging
//! unsynced bytes.

use crate::common;

use std::collections::HashSet;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::sim::SimDisk;
use walctl::reader::WalReader;
use walctl::writer::{SyncPolicy, Wal, WalOptions};

fn always() -> WalOptions {
    WalOptions::default()
        .sync(SyncPolicy::Always)
        .max_segments(0)
}

#[test]
fn concurrent_durable_appends_get_unique_contiguous_lsns_and_all_land() {
    let dir = common::tempdir();
    let wal = Arc::new(Wal::open(dir.path(), always()).unwrap());
    const THREADS: usize = 16;
    const EACH: usize = 60;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|i| {
                        let data = format!("t{t}-i{i}");
                        let lsn = wal.append(data.as_bytes()).unwrap();
                        // Durable when append returned.
                        assert!(wal.durable_lsn() >= lsn);
                        (lsn, data)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: Vec<(u64, String)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    wal.close().unwrap();
    acked.sort();
    let lsns: Vec<u64> = acked.iter().map(|(l, _)| *l).collect();
    assert_eq!(lsns, (1..=(THREADS * EACH) as u64).collect::<Vec<_>>());

    let reader = WalReader::open(dir.path()).unwrap();
    let on_disk: Vec<(u64, String)> = reader
        .entries_from(1)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.lsn, String::from_utf8(e.data).unwrap())
        })
        .collect();
    assert_eq!(on_disk, acked);
}

#[test]
fn one_fsync_covers_many_waiting_writers_and_sync_stats_counts_every_one() {
    let dir = common::tempdir();
    let disk = SimDisk::new(dir.path());
    // A slow disk (3 ms per fdatasync): writers pile up behind each group commit.
    disk.slow_file_sync(Duration::from_millis(3));
    let wal = Arc::new(Wal::open_with_storage(Arc::new(disk.clone()), always()).unwrap());
    let syncs_at_open = disk.syncs();
    assert_eq!(wal.sync_stats().fsyncs, 0);
    const THREADS: usize = 16;
    const EACH: u64 = 20;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    wal.append(format!("t{t}-{i}").as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = wal.sync_stats();
    let records = THREADS as u64 * EACH;
    // Every acknowledged record was made durable by exactly one counted fsync, and
    // the stats count exactly the fdatasyncs the disk saw.
    assert_eq!(stats.records, records, "{stats:?}");
    assert_eq!(stats.fsyncs, disk.syncs() - syncs_at_open, "{stats:?}");
    assert!(
        stats.time >= Duration::from_millis(3) * stats.fsyncs as u32,
        "{stats:?}"
    );
    // One fsync per append would be 320; group commit shares them.
    assert!(
        stats.fsyncs * 4 <= records,
        "{} fsyncs for {records} appends by {THREADS} writers: {stats:?}",
        stats.fsyncs
    );
    wal.close().unwrap();
}

#[test]
fn a_failed_fsync_wakes_every_waiting_writer_with_an_error() {
    let dir = common::tempdir();
    let disk = SimDisk::new(dir.path());
    let wal = Arc::new(Wal::open_with_storage(Arc::new(disk.clone()), always()).unwrap());
    let (tx, rx) = mpsc::channel();
    for t in 0..8 {
        let (wal, tx) = (wal.clone(), tx.clone());
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let err = loop {
                match wal.append(format!("writer {t}").as_bytes()) {
                    Ok(lsn) => acked.push(lsn),
                    Err(e) => break e,
                }
            };
            tx.send((acked, err.to_string())).unwrap();
        });
    }
    drop(tx);
    // Let group commits happen, then make every fsync fail.
    while disk.syncs() < 20 {
        std::thread::sleep(Duration::from_millis(1));
    }
    disk.fail_file_sync(true);
    let mut all_acked = HashSet::new();
    for _ in 0..8 {
        let (acked, err) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a writer was left waiting after the fsync failure");
        assert!(
            err.contains("injected fsync failure") || err.contains("poisoned"),
            "{err}"
        );
        for l in acked {
            assert!(all_acked.insert(l), "LSN {l} acknowledged twice");
        }
    }
    // Nothing acknowledged beyond what a successful fsync covered.
    let durable = wal.durable_lsn();
    assert!(all_acked.iter().all(|&l| l <= durable));
    assert!(wal.append(b"after").is_err());
    assert!(wal.close().is_err());
    drop(wal);

    // Everything acknowledged is in the log, in order.
    let reader = WalReader::open(dir.path()).unwrap();
    let lsns: HashSet<u64> = reader
        .entries_from(1)
        .unwrap()
        .map(|e| e.unwrap().lsn)
        .collect();
    assert!(all_acked.is_subset(&lsns));
}

#[test]
fn a_lone_durable_writer_and_sync_still_work_between_group_commits() {
    let dir = common::tempdir();
    let wal = Wal::open(dir.path(), always()).unwrap();
    for i in 0..50u64 {
        assert_eq!(wal.append(&i.to_le_bytes()).unwrap(), i + 1);
        assert_eq!(wal.durable_lsn(), i + 1);
    }
    let (first, last) = wal.append_batch(&[b"a", b"b", b"c"]).unwrap();
    assert_eq!((first, last), (51, 53));
    wal.flush().unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.durable_lsn(), 53);
    wal.close().unwrap();
}
