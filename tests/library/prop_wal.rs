//! Property test: random sequences of appends, batches, checkpoints, syncs and reopens,
//! with rotation and retention, read back exactly what was appended with contiguous
//! LSNs. `WALCTL_PROPTEST_CASES` raises the case count.

use crate::common;

use common::tempdir;
use proptest::prelude::*;
use walctl::reader::WalReader;
use walctl::writer::{SyncPolicy, Wal, WalOptions};

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Batch(Vec<Vec<u8>>),
    Checkpoint(Vec<u8>),
    Sync,
    Reopen,
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 64..700),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => data().prop_map(Op::Append),
        2 => proptest::collection::vec(data(), 1..8).prop_map(Op::Batch),
        1 => data().prop_map(Op::Checkpoint),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

fn cases() -> u32 {
    std::env::var("WALCTL_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

proptest! {
    #![proptest_config(common::proptest_config(cases()))]

    #[test]
    fn random_sequences_read_back_exactly(
        ops in proptest::collection::vec(op(), 1..40),
        max_segment_size in 64u64..2048,
        max_segments in prop_oneof![Just(0usize), 2usize..5],
        sync in prop_oneof![Just(SyncPolicy::Never), Just(SyncPolicy::Always)],
    ) {
        let dir = tempdir();
        let opts = WalOptions::default().max_segment_size(max_segment_size).max_segments(max_segments).sync(sync);
        let mut wal = Wal::open(dir.path(), opts.clone()).unwrap();
        // The model: every record ever appended, (lsn, data, checkpoint).
        let mut model: Vec<(u64, Vec<u8>, bool)> = Vec::new();
        for op in ops {
            match op {
                Op::Append(d) => {
                    let lsn = wal.append(&d).unwrap();
                    model.push((lsn, d, false));
                }
                Op::Batch(ds) => {
                    let (first, last) = wal.append_batch(&ds).unwrap();
                    prop_assert_eq!(last - first + 1, ds.len() as u64);
                    for (i, d) in ds.into_iter().enumerate() {
                        model.push((first + i as u64, d, false));
                    }
                }
                Op::Checkpoint(d) => {
                    let lsn = wal.checkpoint(&d).unwrap();
                    prop_assert_eq!(wal.durable_lsn(), lsn);
                    model.push((lsn, d, true));
                }
                Op::Sync => {
                    wal.sync().unwrap();
                    prop_assert_eq!(wal.durable_lsn(), model.last().map_or(0, |m| m.0));
                }
                Op::Reopen => {
                    wal.close().unwrap();
                    wal = Wal::open(dir.path(), opts.clone()).unwrap();
                    prop_assert!(wal.open_report().repaired_tail.is_none());
                }
            }
            // LSNs are contiguous from 1 and never reused, across reopens.
            prop_assert_eq!(model.last().map_or(0, |m| m.0), model.len() as u64);
        }
        wal.close().unwrap();

        let reader = WalReader::open(dir.path()).unwrap();
        let all: Vec<_> = reader.entries_from(0).unwrap().map(|e| e.unwrap()).collect();
        // Retention may reclaim a prefix, never anything from the newest checkpoint on.
        let newest_cp = model.iter().rposition(|m| m.2);
        let skipped = model.len() - all.len();
        if newest_cp.is_none() || max_segments == 0 {
            prop_assert_eq!(skipped, 0);
        } else {
            prop_assert!(skipped <= newest_cp.unwrap());
        }
        for (e, m) in all.iter().zip(&model[skipped..]) {
            prop_assert_eq!(e.lsn, m.0);
            prop_assert_eq!(&e.data, &m.1);
            prop_assert_eq!(e.checkpoint, m.2);
        }
        let rec: Vec<_> = reader.from_newest_checkpoint().unwrap().map(|e| e.unwrap()).collect();
        let from = newest_cp.unwrap_or(0);
        prop_assert_eq!(rec.len(), model.len() - from);
        for (e, m) in rec.iter().zip(&model[from..]) {
            prop_assert_eq!(e.lsn, m.0);
            prop_assert_eq!(&e.data, &m.1);
        }
    }
}
