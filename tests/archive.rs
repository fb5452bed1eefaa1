//! `walctl archive` and the archive library: push, verify, restore, the never-overwrite
//! rule (with a store that ignores If-None-Match), crash reruns, and retention held
//! back by the archive marker. The library cases use `memory://`-style stores; the
//! CLI cases run the real binary against a real S3-protocol server (moto, started by
//! `.ci/s3-server`) and are skipped, saying why, only when none is configured.
#![cfg(feature = "s3")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use assert_cmd::cargo::CommandCargoExt;
use assert_cmd::Command;
use async_trait::async_trait;
use common::*;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use serde_json::Value;
use walctl::archive::manifest::{Manifest, MANIFEST_OBJECT};
use walctl::archive::marker::{Marker, MARKER_FILE};
use walctl::archive::{
    self, Archive, ArchiveError, Connect, ProblemKind, PushEvent, RestoreOptions, WriteMode,
};
use walctl::reader::WalReader;
use walctl::storage::FileStorage;
use walctl::writer::{SyncPolicy, WalOptions};

// ---------------------------------------------------------------------------------
// Helpers

/// Writes `records` records (`record-<i>`, a checkpoint every `cp_every`) into a log
/// in `dir` with small segments, and returns the payloads by LSN.
fn make_log(dir: &Path, records: u64, seg_size: u64, cp_every: u64) -> Vec<Vec<u8>> {
    let wal = wal_open_retrying(
        dir,
        WalOptions::default()
            .max_segment_size(seg_size)
            .max_segments(0)
            .sync(SyncPolicy::Never),
    )
    .unwrap();
    let mut out = Vec::new();
    for i in 0..records {
        let data = format!("record-{i}-{}", "x".repeat((i % 37) as usize)).into_bytes();
        if cp_every > 0 && i % cp_every == cp_every - 1 {
            wal.checkpoint(&data).unwrap();
        } else {
            wal.append(&data).unwrap();
        }
        out.push(data);
    }
    wal.close().unwrap();
    out
}

/// (name, bytes) of every file in `dir`, for "nothing changed" checks.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn sealed(dir: &Path) -> Vec<String> {
    let mut names = segment_names(dir);
    names.pop();
    names
}

fn mem_archive() -> (Arc<InMemory>, Archive) {
    let store = Arc::new(InMemory::new());
    let archive = Archive::with_store(store.clone(), "memory://test").unwrap();
    (store, archive)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn get_obj(store: &dyn ObjectStore, key: &str) -> Option<Vec<u8>> {
    block_on(async {
        match store.get(&ObjPath::from(key)).await {
            Ok(r) => Some(r.bytes().await.unwrap().to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("{e}"),
        }
    })
}

fn put_obj(store: &dyn ObjectStore, key: &str, bytes: Vec<u8>) {
    block_on(store.put(&ObjPath::from(key), PutPayload::from(bytes))).unwrap();
}

fn delete_obj(store: &dyn ObjectStore, key: &str) {
    block_on(store.delete(&ObjPath::from(key))).unwrap();
}

/// Pushes and returns (uploaded, recorded) segment names.
fn push_names(archive: &Archive, dir: &Path) -> archive::Result<(Vec<String>, Vec<String>)> {
    let (mut up, mut rec) = (Vec::new(), Vec::new());
    archive::push(archive, dir, |ev| match ev {
        PushEvent::Uploaded(e) => up.push(e.name.clone()),
        PushEvent::Recorded(e) => rec.push(e.name.clone()),
        PushEvent::WriteMode(_) => {}
    })?;
    Ok((up, rec))
}

/// A store that ignores `PutMode::Create` (If-None-Match) and overwrites, like some
/// S3-compatible stores do, and counts the PUTs of each object.
#[derive(Debug)]
struct Wrapper {
    inner: InMemory,
    ignore_conditional: bool,
    puts: Mutex<BTreeMap<String, usize>>,
    fail_puts_after: AtomicUsize,
}

impl Wrapper {
    fn new(ignore_conditional: bool) -> Arc<Self> {
        Arc::new(Wrapper {
            inner: InMemory::new(),
            ignore_conditional,
            puts: Mutex::new(BTreeMap::new()),
            fail_puts_after: AtomicUsize::new(usize::MAX),
        })
    }
    fn segment_puts(&self) -> BTreeMap<String, usize> {
        self.puts
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("segment-"))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

impl fmt::Display for Wrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wrapper")
    }
}

#[async_trait]
impl ObjectStore for Wrapper {
    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if location.as_ref().starts_with("segment-")
            && self
                .fail_puts_after
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err()
        {
            return Err(object_store::Error::Generic {
                store: "Wrapper",
                source: "injected failure: the process died here".into(),
            });
        }
        if self.ignore_conditional && opts.mode == PutMode::Create {
            opts.mode = PutMode::Overwrite;
        }
        let r = self.inner.put_opts(location, payload, opts).await?;
        *self
            .puts
            .lock()
            .unwrap()
            .entry(location.to_string())
            .or_default() += 1;
        Ok(r)
    }
    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &ObjPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjPath>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&ObjPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

// ---------------------------------------------------------------------------------
// Library: memory and wrapper stores

#[test]
fn push_verify_restore_round_trip_in_memory() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    let payloads = make_log(&dir, 600, 2048, 100);
    let (store, archive) = mem_archive();

    let (up, rec) = push_names(&archive, &dir).unwrap();
    assert_eq!(up, sealed(&dir), "every sealed segment, oldest first");
    assert!(rec.is_empty());
    let newest = segment_names(&dir).pop().unwrap();
    assert!(
        get_obj(&*store, &newest).is_none(),
        "the live segment stays local"
    );
    for name in sealed(&dir) {
        assert_eq!(
            get_obj(&*store, &name).unwrap(),
            fs::read(dir.join(&name)).unwrap()
        );
    }
    // The marker records what the archive holds.
    let marker = Marker::load(&FileStorage::open(&dir).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        marker.archives["memory://test"],
        vec![[0, up.len() as u64 - 1]]
    );

    // Pushing again uploads nothing.
    assert_eq!(push_names(&archive, &dir).unwrap(), (vec![], vec![]));

    let report = archive::verify(&archive, true).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.segments, up.len());
    let manifest = Manifest::load(&archive).unwrap().unwrap();
    let archived_last = manifest.segments.last().unwrap().last_lsn.unwrap();
    assert_eq!(report.records_checked, archived_last);

    let out = tmp.path().join("restored");
    let s = archive::restore(&archive, &out, &RestoreOptions::default(), |_| {}).unwrap();
    assert_eq!(s.last_lsn, Some(archived_last));
    for name in sealed(&dir) {
        assert_eq!(
            fs::read(out.join(&name)).unwrap(),
            fs::read(dir.join(&name)).unwrap()
        );
    }
    assert_eq!(segment_names(&out), sealed(&dir));
    let got: Vec<Vec<u8>> = WalReader::open(&out)
        .unwrap()
        .entries_from(1)
        .unwrap()
        .map(|e| e.unwrap().data)
        .collect();
    assert_eq!(got, payloads[..archived_last as usize]);
}

#[test]
fn push_after_more_appends_uploads_only_the_new_sealed_segments() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 200, 2048, 0);
    let (_store, archive) = mem_archive();
    let (first, _) = push_names(&archive, &dir).unwrap();
    make_log(&dir, 300, 2048, 0);
    let (second, rec) = push_names(&archive, &dir).unwrap();
    assert!(rec.is_empty());
    assert!(!second.is_empty());
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(all, sealed(&dir), "no segment twice, none left out");
    // The segment that was live at the first push is sealed and archived now.
    assert!(second.contains(&segment_names(&dir)[first.len()]));
    assert!(archive::verify(&archive, true).unwrap().problems.is_empty());
}

#[test]
fn a_store_that_ignores_if_none_match_is_detected_and_never_overwritten() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 200, 2048, 0);
    let store = Wrapper::new(true);
    // The wrapper really overwrites on a conditional PUT: the danger is real.
    put_obj(&*store, "x", b"one".to_vec());
    block_on(store.put_opts(
        &ObjPath::from("x"),
        PutPayload::from_static(b"two"),
        PutMode::Create.into(),
    ))
    .unwrap();
    assert_eq!(get_obj(&*store, "x").unwrap(), b"two");

    let archive = Archive::with_store(store.clone(), "memory://lying").unwrap();
    // Another log's segment-1 is already there: it must survive.
    let foreign = b"someone else's segment".to_vec();
    put_obj(&*store, "segment-1", foreign.clone());
    let mut modes = Vec::new();
    let err = archive::push(&archive, &dir, |ev| {
        if let PushEvent::WriteMode(m) = ev {
            modes.push(m.clone());
        }
    })
    .unwrap_err();
    // Detected, and said so (the push's first write probes the store).
    match &modes[..] {
        [WriteMode::CheckThenWrite(why)] => assert!(why.contains("ignores"), "{why}"),
        m => panic!("not detected: {m:?}"),
    }
    match &err {
        ArchiveError::Conflict { object, .. } => assert!(object.ends_with("/segment-1"), "{err}"),
        e => panic!("expected a conflict, got {e}"),
    }
    assert_eq!(
        get_obj(&*store, "segment-1").unwrap(),
        foreign,
        "not overwritten"
    );
    // segment-0 went up before the conflict; the probe object is gone.
    assert_eq!(
        get_obj(&*store, "segment-0").unwrap(),
        fs::read(dir.join("segment-0")).unwrap()
    );
    let names: Vec<_> = block_on(store.list_with_delimiter(None)).unwrap().objects;
    assert!(names.iter().all(|o| !o.location.as_ref().contains("probe")));
    // The marker does not claim segment-1.
    let marker = Marker::load(&FileStorage::open(&dir).unwrap())
        .unwrap()
        .unwrap();
    assert!(marker.holds("memory://lying", 0) && !marker.holds("memory://lying", 1));
}

#[test]
fn a_conflict_is_refused_with_a_conditional_store_too() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 100, 2048, 0);
    let (store, archive) = mem_archive();
    put_obj(&*store, "segment-0", b"other bytes".to_vec());
    let mut modes = Vec::new();
    let err = archive::push(&archive, &dir, |ev| {
        if let PushEvent::WriteMode(m) = ev {
            modes.push(m.clone());
        }
    })
    .unwrap_err();
    assert_eq!(modes, [WriteMode::Conditional]);
    assert!(
        matches!(&err, ArchiveError::Conflict { object, .. } if object == "memory://test/segment-0"),
        "{err}"
    );
    assert!(err.to_string().contains("refusing to overwrite"));
    assert_eq!(get_obj(&*store, "segment-0").unwrap(), b"other bytes");
    assert!(
        get_obj(&*store, "segment-1").is_none(),
        "nothing after the conflict"
    );
}

#[test]
fn a_push_cut_short_at_any_step_is_finished_without_uploading_twice() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 300, 2048, 0);
    let store = Wrapper::new(false);
    let archive = Archive::with_store(store.clone(), "memory://crash").unwrap();

    // Dies at the third segment's upload.
    store.fail_puts_after.store(2, Ordering::SeqCst);
    assert!(push_names(&archive, &dir).is_err());
    store.fail_puts_after.store(usize::MAX, Ordering::SeqCst);

    // Uploaded but the manifest never written (killed between the two): put by hand.
    put_obj(
        &*store,
        "segment-2",
        fs::read(dir.join("segment-2")).unwrap(),
    );
    // Recorded in the manifest but the marker never written: forget segment-1.
    let local = FileStorage::open(&dir).unwrap();
    let mut marker = Marker::load(&local).unwrap().unwrap();
    marker
        .archives
        .insert("memory://crash".into(), vec![[0, 0]]);
    marker.save(&local).unwrap();

    let before = store.segment_puts();
    let (up, rec) = push_names(&archive, &dir).unwrap();
    assert_eq!(
        rec,
        ["segment-1", "segment-2"],
        "found, recorded, not uploaded"
    );
    assert!(!up.contains(&"segment-0".to_string()));
    let after = store.segment_puts();
    for (name, n) in &after {
        assert_eq!(*n, 1, "{name} uploaded {n} times");
        if before.contains_key(name) {
            assert!(!up.contains(name));
        }
    }
    assert_eq!(
        after.keys().cloned().collect::<Vec<_>>().len(),
        sealed(&dir).len()
    );
    assert!(archive::verify(&archive, true).unwrap().problems.is_empty());
}

#[test]
fn a_damaged_sealed_segment_is_not_pushed() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 200, 2048, 0);
    flip_bit(&dir.join("segment-1"), 30, 2);
    let (store, archive) = mem_archive();
    let err = push_names(&archive, &dir).unwrap_err();
    assert!(err.is_damage(), "{err}");
    assert!(err.to_string().contains("segment-1"), "{err}");
    assert!(get_obj(&*store, "segment-0").is_some());
    assert!(get_obj(&*store, "segment-1").is_none());
    assert!(
        get_obj(&*store, "segment-2").is_none(),
        "never a hole in the archive"
    );
    // The library says what is wrong; the command to run is the CLI's to say.
    assert!(!err.to_string().contains("`walctl verify`"), "{err}");
    let url = format!("file://{}", tmp.path().join("bucket").display());
    let out = run(&["archive", "push", "--dir", s(&dir), "--to", &url]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("segment-1") && out.stderr.contains("run `walctl verify`"),
        "{}",
        out.stderr
    );
}

#[test]
fn verify_names_missing_changed_and_corrupted_objects() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 400, 2048, 0);
    let (store, archive) = mem_archive();
    push_names(&archive, &dir).unwrap();

    delete_obj(&*store, "segment-2");
    let mut flipped = get_obj(&*store, "segment-4").unwrap();
    flipped[40] ^= 0x10;
    put_obj(&*store, "segment-4", flipped);
    let cut = get_obj(&*store, "segment-5").unwrap();
    put_obj(&*store, "segment-5", cut[..cut.len() - 3].to_vec());

    let shallow = archive::verify(&archive, false).unwrap();
    let kinds: Vec<_> = shallow
        .problems
        .iter()
        .map(|p| (p.kind, p.object.as_str()))
        .collect();
    assert!(
        kinds.contains(&(ProblemKind::Missing, "segment-2")),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(ProblemKind::SizeMismatch, "segment-5")),
        "{kinds:?}"
    );
    // Same size: the entity tag shows it was replaced; --deep shows how.
    assert!(
        kinds.contains(&(ProblemKind::Replaced, "segment-4")),
        "{kinds:?}"
    );
    // The message says what was found, not which flag shows more.
    assert!(
        shallow.problems.iter().all(|p| !p.message.contains("--")),
        "{:?}",
        shallow.problems
    );
    assert!(!kinds.contains(&(ProblemKind::ChecksumMismatch, "segment-4")));

    let deep = archive::verify(&archive, true).unwrap();
    let kinds: Vec<_> = deep
        .problems
        .iter()
        .map(|p| (p.kind, p.object.as_str()))
        .collect();
    assert!(
        kinds.contains(&(ProblemKind::ChecksumMismatch, "segment-4")),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(ProblemKind::Damaged, "segment-4")),
        "{kinds:?}"
    );

    // A damaged manifest is found too, and can be rebuilt from the objects.
    let mut m = get_obj(&*store, MANIFEST_OBJECT).unwrap();
    let at = m.windows(6).position(|w| w == b"\"size\"").unwrap() + 9;
    m[at] = if m[at] == b'1' { b'2' } else { b'1' };
    put_obj(&*store, MANIFEST_OBJECT, m);
    let r = archive::verify(&archive, false).unwrap();
    assert_eq!(
        r.problems[0].kind,
        ProblemKind::ManifestInvalid,
        "{:?}",
        r.problems
    );
}

#[test]
fn the_manifest_is_rebuilt_from_the_objects() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 300, 2048, 50);
    let (store, archive) = mem_archive();
    push_names(&archive, &dir).unwrap();
    let original = Manifest::load(&archive).unwrap().unwrap();
    delete_obj(&*store, MANIFEST_OBJECT);
    assert_eq!(
        archive::verify(&archive, false).unwrap().problems[0].kind,
        ProblemKind::ManifestMissing
    );
    let (rebuilt, bad) = Manifest::rebuild(&archive).unwrap();
    assert!(bad.is_empty());
    assert_eq!(rebuilt, original);
}

#[test]
fn restore_to_lsn_cuts_right_after_it_and_refuses_what_it_cannot_do() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    let payloads = make_log(&dir, 500, 2048, 0);
    let (store, archive) = mem_archive();
    push_names(&archive, &dir).unwrap();
    let manifest = Manifest::load(&archive).unwrap().unwrap();
    // An LSN in the middle of the third segment.
    let seg = &manifest.segments[2];
    let lsn = seg.first_lsn.unwrap() + 3;
    let out = tmp.path().join("at");
    let opts = RestoreOptions::default().to_lsn(Some(lsn)).parallel(2);
    let s = archive::restore(&archive, &out, &opts, |_| {}).unwrap();
    assert_eq!(s.last_lsn, Some(lsn));
    assert_eq!(segment_names(&out), ["segment-0", "segment-1", "segment-2"]);
    for name in ["segment-0", "segment-1"] {
        assert_eq!(
            fs::read(out.join(name)).unwrap(),
            fs::read(dir.join(name)).unwrap()
        );
    }
    let cut = fs::read(out.join("segment-2")).unwrap();
    let orig = fs::read(dir.join("segment-2")).unwrap();
    assert!(cut.len() < orig.len() && orig.starts_with(&cut));
    let got: Vec<Vec<u8>> = WalReader::open(&out)
        .unwrap()
        .entries_from(1)
        .unwrap()
        .map(|e| e.unwrap().data)
        .collect();
    assert_eq!(got, payloads[..lsn as usize]);
    assert_eq!(verify_code(&out), Some(0));

    // Into an existing directory: refused, nothing touched.
    let err = archive::restore(&archive, &out, &opts, |_| {}).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    // Beyond the archive: refused.
    let far = RestoreOptions::default().to_lsn(Some(10_000)).parallel(2);
    let err = archive::restore(&archive, &tmp.path().join("far"), &far, |_| {}).unwrap_err();
    assert!(
        err.to_string()
            .contains("LSN 10000, the point to restore to"),
        "{err}"
    );
    // A corrupted object: nothing restored, no partial directory left behind.
    let mut bad = get_obj(&*store, "segment-3").unwrap();
    bad[10] ^= 1;
    put_obj(&*store, "segment-3", bad);
    let target = tmp.path().join("broken");
    let err = archive::restore(&archive, &target, &RestoreOptions::default(), |_| {}).unwrap_err();
    assert!(err.to_string().contains("segment-3"), "{err}");
    assert!(!target.exists());
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn retention_keeps_what_the_archive_does_not_hold_yet() {
    let tmp = tempdir();
    let opts = WalOptions::default()
        .max_segment_size(1024)
        .max_segments(2)
        .sync(SyncPolicy::Never);
    let fill = |dir: &Path, n: usize| -> Option<String> {
        let wal = wal_open_retrying(dir, opts.clone()).unwrap();
        for i in 0..n {
            wal.append(&[b'a'; 100]).unwrap();
            if i % 10 == 9 {
                wal.checkpoint(b"cp").unwrap();
            }
        }
        let hold = wal.archive_hold();
        wal.close().unwrap();
        hold
    };
    // A directory never archived: retention deletes as before.
    let plain = tmp.path().join("plain");
    assert_eq!(fill(&plain, 100), None);
    assert!(
        segment_names(&plain).len() <= 3,
        "{:?}",
        segment_names(&plain)
    );

    let dir = tmp.path().join("wal");
    let wal = wal_open_retrying(&dir, opts.clone().max_segments(0)).unwrap();
    for _ in 0..30 {
        wal.append(&[b'a'; 100]).unwrap();
    }
    wal.close().unwrap();
    let (_store, archive) = mem_archive();
    let (pushed, _) = push_names(&archive, &dir).unwrap();
    assert!(pushed.len() >= 2);
    let hold = fill(&dir, 100).expect("retention says why it kept segments");
    assert!(
        hold.contains("memory://test") && hold.contains("does not hold it yet"),
        "{hold}"
    );
    let names = segment_names(&dir);
    let first_unarchived = walctl::segment::segment_name(pushed.len() as u64);
    assert!(names.contains(&first_unarchived), "kept: {names:?}");
    assert!(names.len() > 3, "{names:?}");
    // Once pushed, they may go; what was deleted is exactly what the archive holds.
    let kept_before = segment_names(&dir).len();
    push_names(&archive, &dir).unwrap();
    let archived = Manifest::load(&archive).unwrap().unwrap().segments.len() as u64;
    fill(&dir, 30);
    let names = segment_names(&dir);
    assert!(!names.contains(&"segment-0".to_string()), "{names:?}");
    assert!(names.len() < kept_before, "{names:?}");
    let oldest_local = walctl::segment::parse_segment_name(&names[0]).unwrap();
    assert!(
        oldest_local <= archived,
        "segment-{archived} deleted unarchived: {names:?}"
    );
    assert!(archive::verify(&archive, true).unwrap().problems.is_empty());
}

#[test]
fn file_urls_work_across_processes() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 200, 2048, 0);
    let url = format!("file://{}", tmp.path().join("bucket").display());
    let out = walctl()
        .args(["archive", "push", "--json", "--dir"])
        .arg(&dir)
        .args(["--to", &url])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archive = Archive::open(&url, &Connect::default()).unwrap();
    assert!(archive::verify(&archive, true).unwrap().problems.is_empty());
    for name in sealed(&dir) {
        assert_eq!(
            fs::read(tmp.path().join("bucket").join(&name)).unwrap(),
            fs::read(dir.join(&name)).unwrap()
        );
    }
    // Without its manifest the archive says how to rebuild it, and rebuild does.
    let manifest = tmp.path().join("bucket").join(MANIFEST_OBJECT);
    let original = fs::read(&manifest).unwrap();
    fs::remove_file(&manifest).unwrap();
    let ls = run(&["archive", "ls", "--from", &url]);
    assert_eq!(ls.code, 0);
    assert!(ls.stderr.contains("archive rebuild"), "{}", ls.stderr);
    assert_eq!(run(&["archive", "verify", "--from", &url]).code, 4);
    let r = run(&["archive", "rebuild", "--from", &url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(fs::read(&manifest).unwrap(), original);
    assert_eq!(
        run(&["archive", "verify", "--deep", "--from", &url]).code,
        0
    );
}

// ---------------------------------------------------------------------------------
// The binary against a real S3-protocol server

fn walctl() -> Command {
    let mut c = Command::cargo_bin("walctl").unwrap();
    c.env_remove("WALCTL_DIR").env_remove("NO_COLOR");
    c
}

/// The test bucket, or `None` (with the reason printed) when no server is configured.
fn s3_bucket() -> Option<String> {
    match (
        std::env::var("WALCTL_TEST_S3_BUCKET"),
        std::env::var("AWS_ENDPOINT_URL"),
    ) {
        (Ok(b), Ok(_)) => Some(b),
        _ => {
            eprintln!(
                "skipped: no S3 server configured (set AWS_ENDPOINT_URL, AWS_* credentials and \
                 WALCTL_TEST_S3_BUCKET, e.g. eval \"$(.ci/s3-server start)\"; .ci/run does)"
            );
            None
        }
    }
}

/// A fresh prefix in the test bucket.
fn s3_url(bucket: &str, name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("s3://{bucket}/{name}-{}-{nanos}", std::process::id())
}

/// A raw client on the test bucket, to damage objects behind walctl's back.
fn raw_s3(bucket: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_allow_http(true)
        .build()
        .unwrap()
}

fn key_of(url: &str, name: &str) -> String {
    let rest = url.strip_prefix("s3://").unwrap();
    let (_, prefix) = rest.split_once('/').unwrap();
    format!("{prefix}/{name}")
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Out {
    let out = walctl().args(args).output().unwrap();
    let o = Out {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    o
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events(lines: &[Value], kind: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|v| v["event"] == kind)
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn s3_push_repush_more_appends_verify_and_restore() {
    let Some(bucket) = s3_bucket() else { return };
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 400, 4096, 50);
    let url = s3_url(&bucket, "round");

    let first = run(&["archive", "push", "--json", "--dir", s(&dir), "--to", &url]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let lines = json_lines(&first.stdout);
    assert_eq!(events(&lines, "uploaded"), sealed(&dir));
    let done = lines.last().unwrap();
    assert_eq!(done["event"], "done");
    assert_eq!(done["uploaded"], sealed(&dir).len());

    let again = run(&["archive", "push", "--json", "--dir", s(&dir), "--to", &url]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let lines = json_lines(&again.stdout);
    assert!(events(&lines, "uploaded").is_empty(), "{}", again.stdout);
    assert_eq!(
        lines.last().unwrap()["already_archived"],
        sealed(&dir).len()
    );

    let before = sealed(&dir);
    make_log(&dir, 200, 4096, 50);
    let more = run(&["archive", "push", "--json", "--dir", s(&dir), "--to", &url]);
    assert_eq!(more.code, 0, "{}", more.stderr);
    let up = events(&json_lines(&more.stdout), "uploaded");
    let expect: Vec<String> = sealed(&dir)
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(up, expect);

    let ls = run(&["archive", "ls", "--json", "--from", &url, "--dir", s(&dir)]);
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    let lines = json_lines(&ls.stdout);
    let listed: Vec<&str> = lines
        .iter()
        .filter(|v| v["kind"] == "segment")
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, sealed(&dir));
    let gap = lines.last().unwrap();
    assert_eq!(gap["kind"], "local");
    assert_eq!(gap["not_archived"].as_array().unwrap().len(), 0);
    assert_eq!(gap["live"], segment_names(&dir).pop().unwrap());

    let v = run(&["archive", "verify", "--deep", "--json", "--from", &url]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert_eq!(json_lines(&v.stdout)[0]["status"], "ok");

    let out = tmp.path().join("restored");
    let r = run(&["archive", "restore", "--from", &url, "--to", s(&out)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(segment_names(&out), sealed(&dir));
    for name in sealed(&dir) {
        assert_eq!(
            sha256_file(&out.join(&name)),
            sha256_file(&dir.join(&name)),
            "{name}"
        );
    }
    assert_eq!(verify_code(&out), Some(0));

    // --to-lsn through the binary.
    let at = tmp.path().join("at");
    let r = run(&[
        "archive",
        "restore",
        "--json",
        "--from",
        &url,
        "--to",
        s(&at),
        "--to-lsn",
        "123",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json_lines(&r.stdout)[0]["last_lsn"], 123);
    let last = WalReader::open(&at).unwrap().scan().unwrap().last_lsn;
    assert_eq!(last, Some(123));
}

#[test]
fn s3_a_second_log_pushed_to_the_same_prefix_is_refused() {
    let Some(bucket) = s3_bucket() else { return };
    let tmp = tempdir();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    make_log(&a, 200, 4096, 0);
    make_log(&b, 250, 4096, 7);
    let url = s3_url(&bucket, "conflict");
    assert_eq!(
        run(&["archive", "push", "--dir", s(&a), "--to", &url]).code,
        0
    );
    let before = snapshot(&b);
    let r = run(&["archive", "push", "--dir", s(&b), "--to", &url]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("conflict") && r.stderr.contains("/segment-0"),
        "{}",
        r.stderr
    );
    // Log a's archive is intact, byte for byte.
    let v = run(&["archive", "verify", "--deep", "--from", &url]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    let raw = raw_s3(&bucket);
    for name in sealed(&a) {
        assert_eq!(
            get_obj(&raw, &key_of(&url, &name)).unwrap(),
            fs::read(a.join(&name)).unwrap()
        );
    }
    // Log b lost nothing (the marker is the only new file).
    let mut after = snapshot(&b);
    after.remove(MARKER_FILE);
    assert_eq!(after, before);
}

#[test]
fn s3_kill_9_during_push_then_rerun_uploads_nothing_twice() {
    let Some(bucket) = s3_bucket() else { return };
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 3000, 2048, 0);
    let all = sealed(&dir);
    assert!(all.len() > 40, "{}", all.len());
    let url = s3_url(&bucket, "kill");

    let mut child = std::process::Command::cargo_bin("walctl")
        .unwrap()
        .args(["archive", "push", "--json", "--dir", s(&dir), "--to", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut printed = Vec::new();
    let mut line = String::new();
    while printed.len() < 5 {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "push ended early");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "uploaded" {
            printed.push(v["name"].as_str().unwrap().to_string());
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let raw = raw_s3(&bucket);
    let there: BTreeSet<String> = all
        .iter()
        .filter(|n| get_obj(&raw, &key_of(&url, n)).is_some())
        .cloned()
        .collect();
    assert!(
        there.len() < all.len(),
        "the kill came too late to test anything"
    );
    for p in &printed {
        assert!(there.contains(p));
    }

    let r = run(&["archive", "push", "--json", "--dir", s(&dir), "--to", &url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = json_lines(&r.stdout);
    let up = events(&lines, "uploaded");
    for name in &up {
        assert!(!there.contains(name), "{name} uploaded twice");
    }
    let covered: BTreeSet<String> = there.iter().cloned().chain(up).collect();
    assert_eq!(covered, all.iter().cloned().collect());
    let v = run(&["archive", "verify", "--deep", "--from", &url]);
    assert_eq!(v.code, 0, "{}", v.stdout);
}

#[test]
fn s3_verify_names_a_corrupted_and_a_deleted_object() {
    let Some(bucket) = s3_bucket() else { return };
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 300, 4096, 0);
    let url = s3_url(&bucket, "damage");
    assert_eq!(
        run(&["archive", "push", "--dir", s(&dir), "--to", &url]).code,
        0
    );
    let raw = raw_s3(&bucket);

    let key = key_of(&url, "segment-1");
    let mut bytes = get_obj(&raw, &key).unwrap();
    bytes[100] ^= 0x04;
    put_obj(&raw, &key, bytes);
    let v = run(&["archive", "verify", "--from", &url]);
    assert_eq!(v.code, 4, "{}", v.stdout);
    assert!(v.stdout.contains("replaced segment-1"), "{}", v.stdout);
    // The library says what it found; how to see more is the CLI's to say.
    assert!(
        v.stdout.contains("`--deep` compares its bytes"),
        "{}",
        v.stdout
    );
    let v = run(&["archive", "verify", "--deep", "--from", &url]);
    assert_eq!(v.code, 4, "{}", v.stdout);
    assert!(
        v.stdout.contains("checksum_mismatch segment-1"),
        "{}",
        v.stdout
    );
    assert!(v.stdout.contains("damaged segment-1"), "{}", v.stdout);

    delete_obj(&raw, &key_of(&url, "segment-2"));
    let v = run(&["archive", "verify", "--json", "--from", &url]);
    assert_eq!(v.code, 4, "{}", v.stdout);
    let report = &json_lines(&v.stdout)[0];
    assert_eq!(report["status"], "damaged");
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "missing" && p["object"] == "segment-2"),
        "{problems:?}"
    );
    // A restore refuses an archive with a hole, and leaves nothing behind.
    let out = tmp.path().join("restored");
    let r = run(&["archive", "restore", "--from", &url, "--to", s(&out)]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("segment-2 is missing"), "{}", r.stderr);
    assert!(!out.exists());
}

#[test]
fn s3_retention_through_the_cli_holds_back_unarchived_segments() {
    let Some(bucket) = s3_bucket() else { return };
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 100, 1024, 0);
    let url = s3_url(&bucket, "retention");
    assert_eq!(
        run(&["archive", "push", "--dir", s(&dir), "--to", &url]).code,
        0
    );
    let archived = sealed(&dir);
    // Checkpoints, so that retention would delete without the archive.
    let input: String = (0..200)
        .map(|i| format!("entry {i} {}\n", "y".repeat(60)))
        .collect();
    for _ in 0..2 {
        let out = walctl()
            .args([
                "append",
                "--max-segment-size",
                "1024",
                "--max-segments",
                "2",
                "--dir",
                s(&dir),
            ])
            .write_stdin(input.clone())
            .output()
            .unwrap();
        assert!(out.status.success());
        let cp = run(&[
            "checkpoint",
            "--max-segments",
            "2",
            "--dir",
            s(&dir),
            "state",
        ]);
        assert_eq!(cp.code, 0, "{}", cp.stderr);
    }
    let out = walctl()
        .args([
            "append",
            "--max-segment-size",
            "1024",
            "--max-segments",
            "2",
            "--dir",
            s(&dir),
        ])
        .write_stdin(input)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("does not hold it yet") && stderr.contains(&url),
        "{stderr}"
    );
    let names = segment_names(&dir);
    let first_unarchived = walctl::segment::segment_name(archived.len() as u64);
    assert!(names.contains(&first_unarchived), "{names:?}");
    assert!(names.len() > 2);
    // Every segment is either local or archived: nothing was lost.
    assert_eq!(
        run(&["archive", "push", "--dir", s(&dir), "--to", &url]).code,
        0
    );
    let v = run(&["archive", "verify", "--deep", "--from", &url]);
    assert_eq!(v.code, 0, "{}", v.stdout);
}

#[test]
fn s3_wrong_credentials_and_a_stopped_server_fail_clearly_and_touch_nothing() {
    let Some(bucket) = s3_bucket() else { return };
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 200, 4096, 0);
    let before = snapshot(&dir);
    let url = s3_url(&bucket, "denied");
    let secret = "Wr0ngSecretThatMustNeverBePrinted";
    let key_id = std::env::var("AWS_ACCESS_KEY_ID").unwrap();
    for args in [
        vec!["archive", "push", "--dir", s(&dir), "--to", &url],
        vec!["archive", "push", "--json", "--dir", s(&dir), "--to", &url],
        vec!["archive", "verify", "--deep", "--from", &url],
        vec!["archive", "ls", "--from", &url],
    ] {
        let out = walctl()
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .args(&args)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        );
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("access denied"), "{stderr}");
        assert!(
            stderr.contains(&std::env::var("AWS_ENDPOINT_URL").unwrap()),
            "{stderr}"
        );
        assert!(stderr.contains(&bucket), "{stderr}");
        for text in [&stdout, &stderr] {
            assert!(!text.contains(secret) && !text.contains(&key_id), "{text}");
            assert!(!text.contains("panicked"), "{text}");
        }
    }
    assert_eq!(snapshot(&dir), before, "no marker, no change");

    // A bucket that does not exist: said so, nothing written locally.
    let nowhere = format!("s3://{bucket}-does-not-exist/x");
    let r = run(&["archive", "push", "--dir", s(&dir), "--to", &nowhere]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    assert_eq!(snapshot(&dir), before);

    // A stopped server: nothing listens on the port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = walctl()
        .env("AWS_ENDPOINT_URL", &endpoint)
        .args(["archive", "push", "--dir", s(&dir), "--to", &url])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach") && stderr.contains(&endpoint),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked") && !stderr.contains(&key_id));
    assert_eq!(snapshot(&dir), before);
    let out = tmp.path().join("restored");
    let r = walctl()
        .env("AWS_ENDPOINT_URL", &endpoint)
        .args(["archive", "restore", "--from", &url, "--to", s(&out)])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(!out.exists());
}

/// Throughput figures for the report: `WALCTL_ARCHIVE_MB=64 cargo test --release
/// --test archive s3_throughput -- --nocapture`. Checks correctness at any size.
#[test]
fn s3_throughput() {
    let Some(bucket) = s3_bucket() else { return };
    let mb = env_count("WALCTL_ARCHIVE_MB", 4);
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    let wal = wal_open_retrying(
        &dir,
        WalOptions::default()
            .max_segment_size(4 << 20)
            .max_segments(0)
            .sync(SyncPolicy::Never),
    )
    .unwrap();
    let payload = vec![b'z'; 4000];
    let records = mb * 1_000_000 / 4000 + 1100;
    for _ in 0..records {
        wal.append(&payload).unwrap();
    }
    wal.close().unwrap();
    let url = s3_url(&bucket, "speed");
    let archive = Archive::open(&url, &Connect::default()).unwrap();
    let t = std::time::Instant::now();
    let s = archive::push(&archive, &dir, |_| {}).unwrap();
    let push_secs = t.elapsed().as_secs_f64();
    let out = tmp.path().join("restored");
    let t = std::time::Instant::now();
    let r = archive::restore(&archive, &out, &RestoreOptions::default(), |_| {}).unwrap();
    let restore_secs = t.elapsed().as_secs_f64();
    let lost = r.last_lsn.unwrap()
        - WalReader::open(&out)
            .unwrap()
            .entries_from(1)
            .unwrap()
            .count() as u64;
    eprintln!(
        "push {} bytes in {push_secs:.2} s = {:.1} MB/s; restore {} bytes in {restore_secs:.2} s \
         = {:.1} MB/s; records lost: {lost}",
        s.uploaded_bytes,
        s.uploaded_bytes as f64 / 1e6 / push_secs,
        r.bytes,
        r.bytes as f64 / 1e6 / restore_secs
    );
    assert_eq!(lost, 0);
    assert_eq!(r.bytes, s.uploaded_bytes);
}

// ---------------------------------------------------------------------------------
// Reading in place

#[test]
fn an_archive_reads_in_place_like_a_directory() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    // Segments larger than one ranged GET (8 MiB), so that reads span several.
    let wal = wal_open_retrying(
        &dir,
        WalOptions::default()
            .max_segment_size(20 << 20)
            .max_segments(0)
            .sync(SyncPolicy::Never),
    )
    .unwrap();
    for i in 0..12_000u32 {
        let mut data = vec![(i % 251) as u8; 3000];
        data[..4].copy_from_slice(&i.to_le_bytes());
        wal.append(&data).unwrap();
    }
    wal.close().unwrap();
    let (_store, archive) = mem_archive();
    push_names(&archive, &dir).unwrap();
    // Only a reader's storage: there is no write half to refuse (a compile_fail
    // example on `ArchiveStorage` checks that).
    let view: Arc<dyn walctl::storage::ReadStorage> =
        Arc::new(archive::ArchiveStorage::new(Arc::new(archive)));

    let remote = walctl::scan::scan_log(view.clone(), Default::default(), |_| {}).unwrap();
    let local_storage = Arc::new(FileStorage::open(&dir).unwrap());
    let local = walctl::scan::scan_log(local_storage, Default::default(), |_| {}).unwrap();
    assert!(remote.segments[0].size > 8 << 20);
    assert_eq!(remote.segments[..], local.segments[..remote.segments.len()]);
    assert!(remote.worst().is_none());
    let got: Vec<Vec<u8>> = WalReader::new(view.clone())
        .entries_from(6000)
        .unwrap()
        .map(|e| e.unwrap().data)
        .take(3)
        .collect();
    assert_eq!(&got[0][..4], &5999u32.to_le_bytes());
    assert_eq!(got.len(), 3);
}

#[test]
fn s3_dump_verify_and_segments_read_an_archive_in_place() {
    let Some(bucket) = s3_bucket() else { return };
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 300, 4096, 25);
    let url = s3_url(&bucket, "inplace");
    assert_eq!(
        run(&["archive", "push", "--dir", s(&dir), "--to", &url]).code,
        0
    );

    // Everything archived reads back exactly as the local copy dumps it.
    let remote = run(&["dump", "--json", "--dir", &url]);
    assert_eq!(remote.code, 0, "{}", remote.stderr);
    let local = run(&["dump", "--json", "--dir", s(&dir)]);
    let remote_lines: Vec<&str> = remote.stdout.lines().collect();
    let local_lines: Vec<&str> = local.stdout.lines().collect();
    assert!(remote_lines.len() > 100);
    assert_eq!(remote_lines[..], local_lines[..remote_lines.len()]);
    let v = run(&["verify", "--json", "--dir", &url]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    let segs = run(&["segments", "--json", "--dir", &url]);
    assert_eq!(segs.code, 0);
    assert_eq!(segs.stdout.lines().count(), sealed(&dir).len());

    // Damage in the bucket is found in place, with the segment and offset.
    let raw = raw_s3(&bucket);
    let key = key_of(&url, "segment-1");
    let mut bytes = get_obj(&raw, &key).unwrap();
    bytes[200] ^= 0x01;
    put_obj(&raw, &key, bytes);
    let v = run(&["verify", "--dir", &url]);
    assert_eq!(v.code, 4, "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.contains("segment-1"), "{}", v.stdout);
}

#[test]
fn push_watch_uploads_segments_as_they_seal_and_a_non_log_is_refused() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 100, 2048, 0);
    let url = format!("file://{}", tmp.path().join("bucket").display());
    let mut child = std::process::Command::cargo_bin("walctl")
        .unwrap()
        .args([
            "archive",
            "push",
            "--watch",
            "--interval",
            "100ms",
            "--json",
            "--dir",
        ])
        .arg(&dir)
        .args(["--to", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut uploaded = BTreeSet::new();
    let mut line = String::new();
    let first = sealed(&dir);
    while !first.iter().all(|n| uploaded.contains(n)) {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0);
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "uploaded" {
            uploaded.insert(v["name"].as_str().unwrap().to_string());
        }
    }
    // More records seal more segments; the watcher picks them up.
    make_log(&dir, 200, 2048, 0);
    let now = sealed(&dir);
    assert!(now.len() > first.len());
    while !now.iter().all(|n| uploaded.contains(n)) {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "watch stopped");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "uploaded" {
            assert!(
                uploaded.insert(v["name"].as_str().unwrap().to_string()),
                "twice: {line}"
            );
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // Read commands on a file URL where nothing is: an error, and nothing created.
    let typo = tmp.path().join("no-such-archive");
    let typo_url = format!("file://{}", typo.display());
    let v = run(&["archive", "verify", "--from", &typo_url]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(v.stderr.contains("nothing to verify"), "{}", v.stderr);
    assert!(!typo.exists());

    // A directory without segments is not a log: refused, nothing written there.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let r = run(&["archive", "push", "--dir", s(&empty), "--to", &url]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not a WAL directory"), "{}", r.stderr);
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn every_archive_command_documents_its_exit_status_and_has_a_man_page() {
    for cmd in ["push", "ls", "verify", "restore", "rebuild"] {
        let out = walctl().args(["archive", cmd, "--help"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8(out.stdout).unwrap();
        let at = help.find("Exit status").unwrap_or_else(|| panic!("{cmd}"));
        assert!(help[at..].contains("2 usage"), "{cmd}");
        assert!(help.contains(&format!("walctl archive {cmd} --")), "{cmd}");
    }
    let out = walctl().args(["man", "archive"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH walctl-archive 1") && page.contains("restore"));
    // A usage error is exit 2, with nothing on stdout.
    let out = walctl()
        .args(["archive", "push", "--dir", "."])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_segment_recorded_but_gone_from_the_store_is_uploaded_again_before_the_marker_claims_it() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 200, 2048, 0);
    let (store, archive) = mem_archive();
    push_names(&archive, &dir).unwrap();
    // The marker write was lost, and someone deleted an object.
    fs::remove_file(dir.join(MARKER_FILE)).unwrap();
    delete_obj(&*store, "segment-1");
    let (up, rec) = push_names(&archive, &dir).unwrap();
    assert_eq!(up, ["segment-1"]);
    assert_eq!(rec.len(), sealed(&dir).len() - 1);
    assert_eq!(
        get_obj(&*store, "segment-1").unwrap(),
        fs::read(dir.join("segment-1")).unwrap()
    );
    assert!(archive::verify(&archive, true).unwrap().problems.is_empty());
}

#[test]
fn s3_a_restore_killed_midway_never_leaves_dir_looking_complete() {
    let Some(bucket) = s3_bucket() else { return };
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 20_000, 8192, 0);
    assert!(sealed(&dir).len() > 60);
    let url = s3_url(&bucket, "killrestore");
    assert_eq!(
        run(&["archive", "push", "--dir", s(&dir), "--to", &url]).code,
        0
    );

    let parent = tmp.path().join("out");
    fs::create_dir(&parent).unwrap();
    let target = parent.join("restored");
    let mut child = std::process::Command::cargo_bin("walctl")
        .unwrap()
        // One download at a time: a long window to be killed in.
        .args([
            "archive",
            "restore",
            "--parallel",
            "1",
            "--from",
            &url,
            "--to",
            s(&target),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as its partial directory holds a first segment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let partial = loop {
        let found = fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains(".partial-"));
        if let Some(p) = found.filter(|p| !segment_names(p).is_empty()) {
            break p;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "restore ended before the kill"
        );
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!target.exists(), "a partial restore looks like DIR");
    assert!(segment_names(&partial).len() < sealed(&dir).len());

    // Run again: a complete, byte-identical copy.
    let r = run(&["archive", "restore", "--from", &url, "--to", s(&target)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for name in sealed(&dir) {
        assert_eq!(
            sha256_file(&target.join(&name)),
            sha256_file(&dir.join(&name))
        );
    }
}

#[test]
fn a_hostile_manifest_is_a_clear_finding_never_a_hang_or_panic() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    make_log(&dir, 100, 2048, 0);
    let (_store, archive) = mem_archive();
    push_names(&archive, &dir).unwrap();
    let mut m = Manifest::load(&archive).unwrap().unwrap();
    // A valid checksum over entries with an id at the far end and odd text.
    let mut far = m.segments[0].clone();
    far.id = u64::MAX;
    far.name = "segment-18446744073709551615".into();
    far.sha256 = "é".repeat(40);
    m.insert(far);
    let mut first = m.segments[0].clone();
    first.sha256 = format!("a{}", "é".repeat(40)); // a message must not cut a character
    m.insert(first);
    m.save(&archive).unwrap();
    let t = std::time::Instant::now();
    let report = archive::verify(&archive, true).unwrap();
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    let missing: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Missing)
        .collect();
    assert_eq!(missing.len(), 2, "{:?}", report.problems); // the run, and the far one
    assert!(
        missing[0].message.contains("are missing"),
        "{}",
        missing[0].message
    );
    let err = archive::restore(
        &archive,
        &tmp.path().join("r"),
        &RestoreOptions::default(),
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("not contiguous"), "{err}");
    // What shows the gap is named, not spelled as a command.
    assert_eq!(err.remedy(), Some(walctl::archive::Remedy::Verify), "{err}");
    assert!(!err.to_string().contains("walctl"), "{err}");

    // A name that would leave the restore directory is refused before anything.
    let mut m = Manifest::load(&archive).unwrap().unwrap();
    m.segments[0].name = "../escaped".into();
    let entry = m.segments[0].clone();
    m.insert(entry);
    m.save(&archive).unwrap();
    let target = tmp.path().join("r2");
    let err = archive::restore(&archive, &target, &RestoreOptions::default(), |_| {}).unwrap_err();
    assert!(err.to_string().contains("\"../escaped\""), "{err}");
    assert!(!tmp.path().join("escaped").exists() && !target.exists());
    let report = archive::verify(&archive, false).unwrap();
    assert_eq!(report.problems[0].kind, ProblemKind::ManifestInvalid);
}
