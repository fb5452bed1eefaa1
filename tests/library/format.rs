//! The on-disk format against the Go reference's own files: decoding gives exactly
//! EXPECTED.json, writing the same entries gives byte-identical segments.

use crate::common;

use std::fs;

use common::*;
use walctl::reader::WalReader;
use walctl::scan::{Event, ScanOptions, Scanner};
use walctl::storage::FileStorage;
use walctl::writer::{SyncPolicy, Wal, WalOptions};

#[test]
fn fixtures_decode_to_expected_entries() {
    for name in FIXTURES {
        let exp = expected(name);
        let storage = std::sync::Arc::new(FileStorage::open(fixture_dir(name)).unwrap());
        let mut scanner = Scanner::new(storage, ScanOptions::default()).unwrap();
        let mut got = Vec::new();
        while let Some(ev) = scanner.next().unwrap() {
            match ev {
                Event::Record(r) => got.push(ExpectedEntry {
                    lsn: r.lsn,
                    checkpoint: r.checkpoint,
                    data: r.data.to_vec(),
                    crc: r.crc,
                    segment: walctl::segment::segment_name(r.segment_id),
                    offset: r.offset,
                    record_len: r.len,
                }),
                Event::SegmentEnd(s) => assert_eq!(s.problem, None, "{name}"),
                other => panic!("{name}: unexpected {other:?}"),
            }
        }
        assert_eq!(got.len(), exp.entries.len(), "{name}");
        assert_eq!(got, exp.entries, "{name}");
    }
}

#[test]
fn recovery_from_checkpoint_matches_reference() {
    for name in FIXTURES {
        let exp = expected(name);
        let observed = &exp.json["go_library_observed"];
        let reader = WalReader::open(fixture_dir(name)).unwrap();
        let all: Vec<_> = reader
            .entries_from(0)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(
            format!("ok: {} entries", all.len()),
            observed["read_all"].as_str().unwrap()
        );
        let rec: Vec<_> = reader
            .from_newest_checkpoint()
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(
            format!("ok: {} entries", rec.len()),
            observed["read_from_checkpoint"].as_str().unwrap(),
            "{name}"
        );
        let lsns = format!("{}-{}", rec[0].lsn, rec.last().unwrap().lsn);
        assert_eq!(
            lsns,
            observed["read_from_checkpoint_lsns"].as_str().unwrap()
        );
    }
}

#[test]
fn writing_fixture_entries_is_byte_identical() {
    for name in FIXTURES {
        let exp = expected(name);
        let dir = tempdir();
        let wal = Wal::open(
            dir.path(),
            WalOptions::default()
                .max_segment_size(exp.max_segment_size())
                .max_segments(exp.max_segments())
                .sync(SyncPolicy::Never),
        )
        .unwrap();
        for e in &exp.entries {
            let lsn = if e.checkpoint {
                wal.checkpoint(&e.data).unwrap()
            } else {
                wal.append(&e.data).unwrap()
            };
            assert_eq!(lsn, e.lsn);
        }
        wal.close().unwrap();
        let segs = exp.segments();
        assert_eq!(
            segment_names(dir.path()),
            segs.iter().map(|s| s.0.clone()).collect::<Vec<_>>()
        );
        for (seg, size, sha) in segs {
            let path = dir.path().join(&seg);
            assert_eq!(fs::metadata(&path).unwrap().len(), size, "{name}/{seg}");
            assert_eq!(sha256_file(&path), sha, "{name}/{seg}");
        }
    }
}
