//! Power loss and failing fsync, through the fault-injecting storage of
//! `common::sim`: after a power cut at a random point (which drops everything not
//! fsynced, keeping a random prefix, and may forget files whose directory entry was
//! never fsynced), reopening recovers every record whose append returned under
//! `SyncPolicy::Always` (or that a checkpoint or `sync()` covered), and never presents
//! a record that was not fully written. A failed fsync fails that call and every later
//! one. `WALCTL_POWER_CYCLES` raises the number of power cuts; `WALCTL_POWER_SEED`
//! replays a run.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::sim::SimDisk;
use common::{env_count, segment_names, Rng};
use walctl::reader::WalReader;
use walctl::storage::Storage;
use walctl::writer::{SyncPolicy, Wal, WalOptions};

/// Every record now in the log (after a write-open repaired any torn tail), checked
/// to be clean and contiguous.
fn recover(dir: &Path, opts: &WalOptions, ctx: &str) -> Vec<(u64, Vec<u8>, bool)> {
    let wal = Wal::open(dir, opts.clone())
        .unwrap_or_else(|e| panic!("{ctx}: reopen after the power cut failed: {e}"));
    wal.close().unwrap();
    let reader = WalReader::open(dir).unwrap();
    let report = reader.scan().unwrap();
    assert_eq!(
        report.problems().count(),
        0,
        "{ctx}: the log is not clean after reopen: {:?}",
        report.problems().collect::<Vec<_>>()
    );
    let recs: Vec<(u64, Vec<u8>, bool)> = reader
        .entries_from(0)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.lsn, e.data, e.checkpoint)
        })
        .collect();
    for w in recs.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "{ctx}: LSNs not contiguous");
    }
    recs
}

fn payload(rng: &mut Rng, lsn_hint: u64) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => 0,
        1..=6 => rng.below(120) as usize,
        7 | 8 => 120 + rng.below(900) as usize,
        _ => 2000 + rng.below(6000) as usize,
    };
    let mut d = format!("<{lsn_hint}>").into_bytes();
    d.extend(rng.bytes(len));
    d
}

/// What the test knows about the log across crashes.
#[derive(Default)]
struct Model {
    /// The data last handed to the writer for each LSN.
    intended: BTreeMap<u64, (Vec<u8>, bool)>,
    /// Every LSN up to this one was promised durable (by a checkpoint or `sync()`).
    durable_upto: u64,
    /// The highest LSN an `Always` append promised durable.
    acked_max: u64,
    /// The newest checkpoint promised durable.
    acked_checkpoint: Option<u64>,
    /// Promises made, for the summary.
    promises: u64,
}

impl Model {
    /// The highest LSN promised durable.
    fn promised(&self) -> u64 {
        self.durable_upto.max(self.acked_max)
    }

    /// Checks the recovered log against the model, then forgets what was lost (those
    /// LSNs were never acknowledged and may be given to new records).
    fn check(&mut self, recs: &[(u64, Vec<u8>, bool)], retained_from: u64, ctx: &str) {
        // Every record present is exactly what was appended at its LSN...
        for (lsn, data, cp) in recs {
            let want = self
                .intended
                .get(lsn)
                .unwrap_or_else(|| panic!("{ctx}: LSN {lsn} is in the log but was never appended"));
            assert!(
                want.0 == *data && want.1 == *cp,
                "{ctx}: LSN {lsn} holds other bytes than were appended"
            );
        }
        // ...and the log is contiguous (checked by `recover`) from `retained_from`
        // (1 without retention): every promised LSN is present when the last one is.
        let first = recs.first().map_or(0, |r| r.0);
        let last = recs.last().map_or(0, |r| r.0);
        assert!(
            self.promised() <= last,
            "{ctx}: acknowledged LSN {} is lost (log holds {first}..={last})",
            self.promised()
        );
        assert!(
            recs.is_empty() || first <= retained_from.max(1),
            "{ctx}: records from {} on were promised but the log starts at {first}",
            retained_from.max(1)
        );
        self.intended.retain(|l, _| *l <= last);
    }
}

fn random_options(rng: &mut Rng, retention: bool) -> WalOptions {
    WalOptions::default()
        .max_segment_size([512, 1500, 4096, 20_000][rng.below(4) as usize])
        .max_segments(if retention { 3 } else { 0 })
        .sync(match rng.below(4) {
            0 => SyncPolicy::Never,
            1 => SyncPolicy::Interval(Duration::from_millis(1 + rng.below(5))),
            _ => SyncPolicy::Always,
        })
}

/// One life of the writer: opens the log over a storage that dies at a random call
/// (or never), appends until it dies or has done enough, then cuts the power.
fn one_life(dir: &Path, rng: &mut Rng, model: &mut Model, opts: &WalOptions, ctx: &str) {
    let crash_at = match rng.below(4) {
        0 => None,
        1 => Some(rng.below(12)), // during open and the torn-tail repair
        _ => Some(rng.below(400)),
    };
    let disk = match crash_at {
        Some(n) => SimDisk::crash_at(dir, n),
        None => SimDisk::new(dir),
    };
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let wal = match Wal::open_with_storage(storage, opts.clone()) {
        Ok(w) => w,
        Err(e) => {
            assert!(disk.crashed(), "{ctx}: open failed without a crash: {e}");
            disk.power_cut(rng);
            return;
        }
    };
    let always = opts.sync == SyncPolicy::Always;
    let ops = 20 + rng.below(200);
    for _ in 0..ops {
        let first = wal.next_lsn();
        let res = match rng.below(10) {
            0..=5 => {
                let d = payload(rng, first);
                model.intended.insert(first, (d.clone(), false));
                wal.append(&d).map(|l| {
                    assert_eq!(l, first, "{ctx}");
                    if always {
                        model.acked_max = l;
                        model.promises += 1;
                    }
                })
            }
            6 | 7 => {
                let n = 1 + rng.below(12);
                let ds: Vec<Vec<u8>> = (0..n).map(|i| payload(rng, first + i)).collect();
                for (i, d) in ds.iter().enumerate() {
                    model.intended.insert(first + i as u64, (d.clone(), false));
                }
                wal.append_batch(&ds).map(|(a, b)| {
                    assert_eq!((a, b), (first, first + n - 1), "{ctx}");
                    if always {
                        model.acked_max = b;
                        model.promises += n;
                    }
                })
            }
            8 => {
                // A checkpoint is durable whatever the policy, and so is all before it.
                let d = payload(rng, first);
                model.intended.insert(first, (d.clone(), true));
                wal.checkpoint(&d).map(|l| {
                    assert_eq!(l, first, "{ctx}");
                    model.durable_upto = l;
                    model.acked_checkpoint = Some(l);
                    model.promises += 1;
                })
            }
            _ => wal.sync().map(|()| {
                model.durable_upto = model.durable_upto.max(first - 1);
                model.promises += 1;
            }),
        };
        if let Err(e) = res {
            assert!(
                disk.crashed(),
                "{ctx}: a call failed without an injected fault: {e}"
            );
            // Dead: nothing more may succeed.
            assert!(wal.append(b"after the crash").is_err(), "{ctx}");
            assert!(wal.sync().is_err(), "{ctx}");
            break;
        }
    }
    // Power goes while the writer still holds the log; then its process is gone.
    disk.power_cut(rng);
    drop(wal);
}

fn power_cut_cycles(retention: bool) {
    let (mut rng, seed) = Rng::from_env("WALCTL_POWER_SEED");
    let cycles = env_count("WALCTL_POWER_CYCLES", 60);
    let dir = common::tempdir();
    let mut model = Model::default();
    let mut lost_unacked = 0u64;
    for cycle in 0..cycles {
        let ctx = format!("seed {seed}, cycle {cycle}");
        let opts = random_options(&mut rng, retention);
        one_life(dir.path(), &mut rng, &mut model, &opts, &ctx);
        let before = model.intended.len() as u64;
        let recs = recover(dir.path(), &opts, &ctx);
        // With retention, records before the newest checkpoint's segment may be gone.
        let retained_from = if retention {
            recs.first().map_or(0, |r| r.0)
        } else {
            assert!(
                recs.is_empty() || recs[0].0 == 1,
                "{ctx}: without retention the log starts at LSN 1"
            );
            0
        };
        if retention {
            // What was deleted lies before the newest checkpoint, which is kept.
            if let Some(cp) = model.acked_checkpoint {
                assert!(retained_from <= cp, "{ctx}: newest checkpoint {cp} deleted");
            }
        }
        model.check(&recs, retained_from, &ctx);
        lost_unacked += before.saturating_sub(model.intended.len() as u64);
    }
    eprintln!(
        "{cycles} power cuts; {} durability promises (appends, checkpoints, syncs) up to LSN {} kept; {lost_unacked} never-acknowledged LSNs lost and reused",
        model.promises,
        model.promised()
    );
    assert!(
        model.promised() > 0,
        "seed {seed}: the run acknowledged nothing, so it proved nothing"
    );
}

#[test]
fn power_cut_keeps_every_acknowledged_record_and_no_partial_one() {
    power_cut_cycles(false);
}

#[test]
fn power_cut_with_retention_keeps_the_newest_checkpoint_and_what_follows() {
    power_cut_cycles(true);
}

/// Group commit under power loss: several threads append under `Always`; whatever
/// each was told is durable survives the cut.
#[test]
fn power_cut_during_group_commit_keeps_every_acknowledged_record() {
    let (mut rng, seed) = Rng::from_env("WALCTL_POWER_SEED");
    let cycles = env_count("WALCTL_POWER_CYCLES", 60) / 4 + 1;
    for cycle in 0..cycles {
        let ctx = format!("seed {seed}, cycle {cycle}");
        let dir = common::tempdir();
        let disk = SimDisk::crash_at(dir.path(), 5 + rng.below(150));
        let opts = WalOptions::default()
            .max_segment_size(2048)
            .max_segments(0)
            .sync(SyncPolicy::Always);
        let wal = Arc::new(Wal::open_with_storage(Arc::new(disk.clone()), opts.clone()).unwrap());
        const THREADS: usize = 4;
        let start = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (wal, start) = (wal.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut acked = Vec::new();
                    for i in 0..10_000 {
                        let d = format!("t{t}-{i}-{}", "x".repeat(i % 97));
                        match wal.append(d.as_bytes()) {
                            Ok(l) => acked.push((l, d)),
                            Err(_) => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        let acked: Vec<(u64, String)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert!(disk.crashed(), "{ctx}: the writers stopped without a crash");
        disk.power_cut(&mut rng);
        drop(wal);

        let recs = recover(dir.path(), &opts, &ctx);
        let by_lsn: HashMap<u64, &[u8]> = recs.iter().map(|r| (r.0, r.1.as_slice())).collect();
        for (lsn, d) in &acked {
            assert_eq!(
                by_lsn.get(lsn).copied(),
                Some(d.as_bytes()),
                "{ctx}: acknowledged LSN {lsn} lost or changed"
            );
        }
        // Every record present is one a thread appended, whole, and each thread's
        // records are in the order it appended them.
        let mut next_of_thread = [0usize; THREADS];
        for (lsn, data, _) in &recs {
            let s = std::str::from_utf8(data)
                .unwrap_or_else(|_| panic!("{ctx}: LSN {lsn} is not a record we wrote"));
            let (t, rest) = s[1..].split_once('-').unwrap();
            let (i, pad) = rest.split_once('-').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(pad, "x".repeat(i % 97), "{ctx}: LSN {lsn} partial");
            assert_eq!(
                i, next_of_thread[t],
                "{ctx}: thread {t} out of order at {lsn}"
            );
            next_of_thread[t] += 1;
        }
    }
}

// ---------------------------------------------------------------------------------
// Failing fsync: the call that needed it fails, and so does every later one.

fn opts(sync: SyncPolicy) -> WalOptions {
    WalOptions::default()
        .max_segment_size(1 << 20)
        .max_segments(0)
        .sync(sync)
}

/// After the writer saw a failed fsync, nothing reports success, and a reopen finds
/// every acknowledged record.
fn assert_dead_and_acked_kept(wal: Wal, dir: &Path, acked: &[(u64, Vec<u8>)], ctx: &str) {
    let durable = wal.durable_lsn();
    assert!(wal.append(b"later").is_err(), "{ctx}: append");
    assert!(wal.append_batch(&[b"a", b"b"]).is_err(), "{ctx}: batch");
    assert!(wal.checkpoint(b"cp").is_err(), "{ctx}: checkpoint");
    assert!(wal.sync().is_err(), "{ctx}: sync");
    assert!(wal.flush().is_err(), "{ctx}: flush");
    assert_eq!(wal.durable_lsn(), durable, "{ctx}: durable LSN moved");
    let err = wal.close().unwrap_err().to_string();
    assert!(err.contains("fsync"), "{ctx}: close: {err}");
    drop(wal);
    let recs = recover(dir, &opts(SyncPolicy::Always), ctx);
    for (lsn, d) in acked {
        assert!(
            recs.iter().any(|r| r.0 == *lsn && r.1 == *d),
            "{ctx}: acknowledged LSN {lsn} lost"
        );
    }
}

#[test]
fn failed_fsync_under_always_fails_that_append_and_every_later_call() {
    let dir = common::tempdir();
    let disk = SimDisk::new(dir.path());
    let wal = Wal::open_with_storage(Arc::new(disk.clone()), opts(SyncPolicy::Always)).unwrap();
    let mut acked = Vec::new();
    for i in 0..20u64 {
        let d = format!("ok {i}").into_bytes();
        acked.push((wal.append(&d).unwrap(), d));
    }
    disk.fail_file_sync(true);
    let err = wal.append(b"not durable").unwrap_err().to_string();
    assert!(err.contains("injected fsync failure"), "{err}");
    assert_eq!(wal.durable_lsn(), 20);
    // Even once the disk "recovers", the writer never retries and reports success.
    disk.fail_file_sync(false);
    assert_dead_and_acked_kept(wal, dir.path(), &acked, "always");
}

#[test]
fn failed_fsync_under_never_fails_sync_and_every_later_call() {
    let dir = common::tempdir();
    let disk = SimDisk::new(dir.path());
    let wal = Wal::open_with_storage(Arc::new(disk.clone()), opts(SyncPolicy::Never)).unwrap();
    let mut acked = Vec::new();
    for i in 0..20u64 {
        let d = format!("ok {i}").into_bytes();
        wal.append(&d).unwrap();
        acked.push((i + 1, d));
    }
    wal.sync().unwrap();
    for i in 0..5u64 {
        // Buffered, promised nothing yet.
        assert_eq!(wal.append(b"buffered").unwrap(), 21 + i);
    }
    disk.fail_file_sync(true);
    let err = wal.sync().unwrap_err().to_string();
    assert!(err.contains("injected fsync failure"), "{err}");
    disk.fail_file_sync(false);
    assert_dead_and_acked_kept(wal, dir.path(), &acked, "never");
}

#[test]
fn failed_fsync_under_interval_poisons_the_writer() {
    let dir = common::tempdir();
    let disk = SimDisk::new(dir.path());
    let wal = Wal::open_with_storage(
        Arc::new(disk.clone()),
        opts(SyncPolicy::Interval(Duration::from_millis(2))),
    )
    .unwrap();
    let mut acked = Vec::new();
    for i in 0..10u64 {
        let d = format!("ok {i}").into_bytes();
        wal.append(&d).unwrap();
        acked.push((i + 1, d));
    }
    wal.sync().unwrap();
    disk.fail_file_sync(true);
    // The background syncer meets the failure; appends then fail. Bounded wait, not
    // a timing assertion: the syncer runs every 2 ms.
    let mut failed = None;
    for _ in 0..20_000 {
        if let Err(e) = wal.append(b"more") {
            failed = Some(e.to_string());
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let err = failed.expect("appends kept succeeding after the background fsync failed");
    assert!(err.contains("injected fsync failure"), "{err}");
    disk.fail_file_sync(false);
    assert_dead_and_acked_kept(wal, dir.path(), &acked, "interval");
}

#[test]
fn failed_fsync_at_rotation_and_failed_directory_fsync_fail_the_append() {
    for dir_sync in [false, true] {
        let ctx = if dir_sync {
            "directory fsync"
        } else {
            "segment fsync"
        };
        let dir = common::tempdir();
        let disk = SimDisk::new(dir.path());
        let o = WalOptions::default()
            .max_segment_size(300)
            .max_segments(0)
            .sync(SyncPolicy::Never);
        let wal = Wal::open_with_storage(Arc::new(disk.clone()), o).unwrap();
        let mut acked = Vec::new();
        let d = vec![7u8; 100];
        // Fills segment-0 up to the rotation point; the checkpoint makes it durable.
        for _ in 0..2 {
            acked.push((wal.append(&d).unwrap(), d.clone()));
        }
        acked.push((wal.checkpoint(&d).unwrap(), d.clone()));
        if dir_sync {
            disk.fail_dir_sync(true);
        } else {
            disk.fail_file_sync(true);
        }
        let err = wal.append(&d).unwrap_err().to_string();
        assert!(err.contains("fsync"), "{ctx}: {err}");
        disk.fail_dir_sync(false);
        disk.fail_file_sync(false);
        assert_dead_and_acked_kept(wal, dir.path(), &acked, ctx);
    }
}

#[test]
fn failed_directory_fsync_after_retention_deletes_fails_the_append() {
    let dir = common::tempdir();
    let disk = SimDisk::new(dir.path());
    let o = WalOptions::default()
        .max_segment_size(300)
        .max_segments(2)
        .sync(SyncPolicy::Never);
    let wal = Wal::open_with_storage(Arc::new(disk.clone()), o).unwrap();
    let d = vec![7u8; 100];
    let mut acked = Vec::new();
    // segment-0 and segment-1 fill up; a checkpoint in segment-2 lets retention go.
    for _ in 0..6 {
        acked.push((wal.append(&d).unwrap(), d.clone()));
    }
    acked.push((wal.checkpoint(&d).unwrap(), d.clone()));
    assert_eq!(segment_names(dir.path()).len(), 3);
    for _ in 0..2 {
        acked.push((wal.append(&d).unwrap(), d.clone()));
    }
    wal.sync().unwrap();
    // The next rotation creates segment-3 (its directory fsync succeeds), deletes the
    // oldest segment, and the directory fsync after that fails.
    disk.fail_dir_sync_after(1);
    let err = wal.append(&d).unwrap_err().to_string();
    assert!(err.contains("after deleting old segments"), "{err}");
    disk.fail_dir_sync(false);
    assert!(!segment_names(dir.path()).contains(&"segment-0".to_string()));
    // Recovery needs only what follows the checkpoint; that must all be there.
    let kept: Vec<(u64, Vec<u8>)> = acked.into_iter().filter(|(l, _)| *l >= 7).collect();
    assert_dead_and_acked_kept(wal, dir.path(), &kept, "retention");
}
