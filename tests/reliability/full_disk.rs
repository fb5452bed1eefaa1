//! Full disk: every test mounts its own small tmpfs (a real file system that really
//! runs out of space or of inodes), fills it, and checks that walctl fails clearly,
//! loses nothing it acknowledged, changes nothing it should not, and carries on with
//! the next LSN once space is freed.
//!
//! Mounting needs root; without it each test says why on stderr and returns.

use crate::common;

use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use assert_cmd::cargo::cargo_bin;
use common::*;
use walctl::codec::encode_record;
use walctl::quarantine;
use walctl::reader::{Entry, WalReader};
use walctl::storage::FileStorage;
use walctl::writer::{SyncPolicy, Wal, WalOptions};
use walctl::{Error, Severity};

const ENOSPC_TEXT: &str = "No space left on device";

// ---------------------------------------------------------------------------------
// A tmpfs of our own

/// A tmpfs mounted on a fresh temporary directory; unmounted on drop, also when the
/// test panics.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn cstr(b: &[u8]) -> CString {
    CString::new(b).unwrap()
}

/// mount(2) of a tmpfs on `path` with options `opts` and `flags`; its return code.
fn mount_tmpfs(path: &Path, opts: &str, flags: libc::c_ulong) -> libc::c_int {
    let (src, target, data) = (
        cstr(b"tmpfs"),
        cstr(path.as_os_str().as_bytes()),
        cstr(opts.as_bytes()),
    );
    // SAFETY: valid NUL-terminated strings that outlive the call.
    unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    }
}

impl Tmpfs {
    /// Mounts a tmpfs with `opts` (e.g. "size=128k"). `None` (after saying why on
    /// stderr) when this process may not mount: the only reason a test skips.
    fn mount(test: &str, opts: &str) -> Option<Tmpfs> {
        let dir = tempdir();
        let path = dir.path().to_path_buf();
        let rc = mount_tmpfs(&path, opts, 0);
        if rc != 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::ENODEV) => {
                    eprintln!(
                        "{test}: SKIPPED: cannot mount a tmpfs on {} ({e}); this test needs \
                         root (CAP_SYS_ADMIN)",
                        path.display()
                    );
                    return None;
                }
                _ => panic!("mount -t tmpfs -o {opts} {}: {e}", path.display()),
            }
        }
        Some(Tmpfs { path, _dir: dir })
    }

    /// `mount -o remount,<opts>`: more space or more inodes.
    fn remount(&self, opts: &str) {
        let rc = mount_tmpfs(&self.path, opts, libc::MS_REMOUNT);
        assert_eq!(rc, 0, "remount {opts}: {}", io::Error::last_os_error());
    }

    /// Bytes still free.
    fn free(&self) -> u64 {
        let target = cstr(self.path.as_os_str().as_bytes());
        // SAFETY: statvfs fills the struct we hand it.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(target.as_ptr(), &mut st) }, 0);
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = cstr(self.path.as_os_str().as_bytes());
        // SAFETY: unmounting the path we mounted. A busy mount (a child still running
        // after a failed assertion) is detached instead.
        unsafe {
            if libc::umount2(target.as_ptr(), 0) != 0 {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// Writes `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = fs::File::create(path).unwrap();
    let chunk = [0xA5u8; 4096];
    let mut total = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    f.sync_all().unwrap();
    total
}

// ---------------------------------------------------------------------------------
// Helpers

fn walctl(sub: &str, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(cargo_bin("walctl"));
    c.arg(sub).arg("--dir").arg(dir).args(args);
    c
}

fn run(c: &mut Command) -> Output {
    c.stdin(Stdio::null()).output().unwrap()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn lsn_lines(out: &Output) -> Vec<u64> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// The one `walctl: error:` line of a failed command; every other line must be a
/// `walctl:` note.
fn one_error_line(out: &Output) -> String {
    one_error_line_of(&stderr_of(out))
}

fn one_error_line_of(err: &str) -> String {
    assert!(
        err.lines().all(|l| l.starts_with("walctl: ")),
        "stray stderr output: {err}"
    );
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("walctl: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {err}");
    eprintln!("{}", errors[0]);
    errors[0].to_string()
}

fn segment_digests(dir: &Path) -> Vec<(String, String)> {
    segment_names(dir)
        .into_iter()
        .map(|n| {
            let d = sha256_file(&dir.join(&n));
            (n, d)
        })
        .collect()
}

/// Deterministic entry `i` (0-based), 40..1500 bytes.
fn entry(i: u64) -> Vec<u8> {
    let len = 40 + (i * 7919 % 1460) as usize;
    let mut d = format!("entry-{i}-").into_bytes();
    d.extend((0..len).map(|j| b'a' + ((i as usize + j * 31) % 26) as u8));
    d
}

/// A torn tail: the newest segment's bytes from the offset of its incomplete record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tail {
    segment: String,
    offset: u64,
    bytes: Vec<u8>,
}

/// Reads the whole log: its intact entries (LSN 1..=N, checked) and its torn tail.
/// Anything worse than a torn tail fails the test.
fn read_log(dir: &Path) -> (Vec<Entry>, Option<Tail>) {
    let reader = WalReader::open(dir).unwrap();
    let scan = reader.scan().unwrap();
    let problems: Vec<_> = scan.problems().cloned().collect();
    assert!(
        problems.len() <= 1 && problems.iter().all(|p| p.severity == Severity::TornTail),
        "a full disk may leave at most a torn tail: {problems:?}"
    );
    let tail = problems.first().map(|p| {
        assert_eq!(Some(&p.segment), segment_names(dir).last());
        Tail {
            segment: p.segment.clone(),
            offset: p.offset,
            bytes: fs::read(dir.join(&p.segment)).unwrap()[p.offset as usize..].to_vec(),
        }
    });
    let mut entries = Vec::new();
    for e in reader.entries_from(0).unwrap() {
        match e {
            Ok(e) => {
                assert_eq!(e.lsn, entries.len() as u64 + 1, "LSNs are 1..=N");
                entries.push(e);
            }
            Err(err) => {
                assert_eq!(err.problem(), problems.first(), "{err}");
                break;
            }
        }
    }
    assert_eq!(scan.last_lsn, entries.last().map(|e| e.lsn));
    (entries, tail)
}

/// Checks that the log holds exactly `entry(0..N)` as LSN 1..=N with N >= `acked`,
/// and that a torn tail is a proper prefix of record N+1 = `entry(N)`. Returns N.
fn check_log(dir: &Path, acked: u64) -> (u64, Option<Tail>) {
    let (entries, tail) = read_log(dir);
    let n = entries.len() as u64;
    assert!(
        n >= acked,
        "{acked} acknowledged but the log ends at LSN {n}"
    );
    for e in &entries {
        assert!(
            e.data == entry(e.lsn - 1),
            "LSN {} does not hold entry {}",
            e.lsn,
            e.lsn - 1
        );
        assert!(!e.checkpoint);
    }
    if let Some(t) = &tail {
        let mut enc = Vec::new();
        encode_record(&mut enc, n + 1, &entry(n), false);
        assert!(
            t.bytes.len() < enc.len() && enc.starts_with(&t.bytes),
            "the torn tail ({} bytes at {} offset {}) is not part of record {}",
            t.bytes.len(),
            t.segment,
            t.offset,
            n + 1
        );
    }
    let code = verify_code(dir);
    assert_eq!(
        code,
        Some(if tail.is_some() { 3 } else { 0 }),
        "walctl verify"
    );
    (n, tail)
}

/// The torn tail must be in the quarantine, byte for byte.
fn assert_quarantined(dir: &Path, t: &Tail) {
    let storage = FileStorage::open(dir).unwrap();
    let found = quarantine::list(&storage).unwrap().into_iter().any(|m| {
        m.items.iter().any(|i| {
            i.file == t.segment
                && i.offset == t.offset
                && fs::read(quarantine::Location::in_log(&storage).saved_file(&m.id, i)).unwrap()
                    == t.bytes
        })
    });
    assert!(
        found,
        "the torn tail of {} at offset {} is not in the quarantine",
        t.segment, t.offset
    );
}

fn quarantine_entries(dir: &Path) -> usize {
    quarantine::list(&FileStorage::open(dir).unwrap())
        .unwrap()
        .len()
}

// ---------------------------------------------------------------------------------
// (a) walctl append until the disk is full

#[test]
fn append_binary_until_enospc_then_continue_after_freeing_space() {
    let Some(mnt) = Tmpfs::mount("append_binary", "size=256k") else {
        return;
    };
    // Ballast, removed later to free space.
    let ballast = mnt.path.join("ballast");
    fs::write(&ballast, vec![0x5Au8; 64 << 10]).unwrap();
    let dir = mnt.path.join("log");
    let args = [
        "--sync",
        "always",
        "--max-segment-size",
        "16K",
        "--max-segments",
        "0",
    ];
    let mut child = walctl("append", &dir, &args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // Lines go in groups of 1..=8, each group acknowledged before the next is sent (a
    // client waiting for durability): small batches, so the disk fills mid-stream.
    let mut acks: Vec<u64> = Vec::new();
    let mut sent = 0u64;
    'feed: while sent < 20_000 {
        for _ in 0..1 + sent % 8 {
            let mut l = entry(sent);
            l.push(b'\n');
            if stdin.write_all(&l).is_err() {
                break 'feed;
            }
            sent += 1;
        }
        while (acks.len() as u64) < sent {
            let mut l = String::new();
            match stdout.read_line(&mut l) {
                Ok(0) | Err(_) => break 'feed,
                Ok(_) if !l.ends_with('\n') => break 'feed,
                Ok(_) => acks.push(l.trim_end().parse().unwrap()),
            }
        }
    }
    drop(stdin);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    acks.extend(
        rest.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| l.trim_end().parse::<u64>().unwrap()),
    );
    let status = child.wait().unwrap();
    let stderr = read_stderr(&mut child);
    assert!(
        sent < 20_000,
        "append took all input: the disk never filled"
    );

    assert_eq!(status.code(), Some(1), "{stderr}");
    let err = one_error_line_of(&stderr);
    assert!(err.contains(ENOSPC_TEXT), "{err}");
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(
        mnt.free() < 4096,
        "the disk was full: {} bytes free",
        mnt.free()
    );

    // Only complete stdout lines are acknowledgements; they are 1..=k in order.
    assert!(acks.len() > 100, "only {} records fit", acks.len());
    assert_eq!(acks, (1..=acks.len() as u64).collect::<Vec<_>>());
    let (n, tail) = check_log(&dir, acks.len() as u64);
    eprintln!(
        "append_binary: {} acknowledged, {n} in the log, torn tail: {:?}, {} segments",
        acks.len(),
        tail.as_ref().map(|t| t.bytes.len()),
        segment_names(&dir).len()
    );

    // Space freed: the next append continues at N + 1 and leaves a clean log.
    fs::remove_file(&ballast).unwrap();
    let mut args2 = args.to_vec();
    args2.extend(["--", "after-1", "after-2"]);
    let out = run(&mut walctl("append", &dir, &args2));
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(lsn_lines(&out), vec![n + 1, n + 2]);
    if let Some(t) = &tail {
        assert!(
            stderr_of(&out).contains("repaired a torn tail"),
            "{}",
            stderr_of(&out)
        );
        assert_quarantined(&dir, t);
    }
    assert_eq!(verify_code(&dir), Some(0));
    let (entries, tail) = read_log(&dir);
    assert!(tail.is_none());
    assert_eq!(entries.len() as u64, n + 2);
    for e in &entries[..n as usize] {
        assert!(e.data == entry(e.lsn - 1), "LSN {} changed", e.lsn);
    }
    assert_eq!(entries[n as usize].data, b"after-1");
    assert_eq!(entries[n as usize + 1].data, b"after-2");
}

// ---------------------------------------------------------------------------------
// (b) the library until the disk is full

fn lib_opts(max_segment_size: u64) -> WalOptions {
    WalOptions::default()
        .max_segment_size(max_segment_size)
        .max_segments(0)
        .sync(SyncPolicy::Always)
}

fn assert_poisoned(res: Result<impl std::fmt::Debug, Error>, what: &str) {
    match res {
        Err(e @ Error::Poisoned { .. }) => {
            assert!(e.to_string().contains(ENOSPC_TEXT), "{what}: {e}");
            assert_eq!(
                io_kind(&e),
                Some(io::ErrorKind::StorageFull),
                "{what}: {e:?}"
            );
        }
        other => panic!("{what} after ENOSPC: expected a poisoned writer, got {other:?}"),
    }
}

/// The kind of the `io::Error` that `e` keeps as its source (as a caller finds it).
fn io_kind(e: &Error) -> Option<io::ErrorKind> {
    std::error::Error::source(e)?
        .downcast_ref::<io::Error>()
        .map(io::Error::kind)
}

/// Appends `entry(0)`, `entry(1)`, ... until an append fails (at most `limit`);
/// returns how many were acknowledged, with LSNs 1.., and the error.
fn append_until_error(wal: &Wal, limit: u64, never: &str) -> (u64, Error) {
    let mut acked = 0u64;
    loop {
        assert!(acked < limit, "{never}");
        match wal.append(&entry(acked)) {
            Ok(lsn) => {
                acked += 1;
                assert_eq!(lsn, acked);
            }
            Err(e) => return (acked, e),
        }
    }
}

#[test]
fn library_append_until_enospc_poisons_the_writer_and_loses_nothing() {
    let Some(mnt) = Tmpfs::mount("library_append", "size=128k") else {
        return;
    };
    let dir = mnt.path.join("log");
    let wal = Wal::open(&dir, lib_opts(8192)).unwrap();
    let (acked, err) = append_until_error(&wal, 100_000, "the disk never filled");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Poisoned { .. } | Error::Io { .. }),
        "not an I/O error: {err:?}"
    );
    // A caller tells a full disk by the kind of the kept io::Error.
    assert_eq!(io_kind(&err), Some(io::ErrorKind::StorageFull), "{err:?}");
    assert!(msg.contains(ENOSPC_TEXT), "{msg}");
    assert!(acked > 50, "only {acked} records fit");
    assert!(wal.durable_lsn() >= acked);

    // Poisoned: every later call fails, also once space is back; nothing more is
    // written (a later fsync must never vouch for bytes an earlier write lost).
    let sizes = |d: &Path| -> Vec<u64> {
        segment_names(d)
            .iter()
            .map(|n| fs::metadata(d.join(n)).unwrap().len())
            .collect()
    };
    let before = sizes(&dir);
    assert_poisoned(wal.append(b"x"), "append");
    assert_poisoned(wal.append_batch(&[b"y", b"z"]), "append_batch");
    assert_poisoned(wal.checkpoint(b"state"), "checkpoint");
    assert_poisoned(wal.sync(), "sync");
    assert_poisoned(wal.flush(), "flush");
    mnt.remount("size=1m");
    assert_poisoned(wal.append(b"after remount"), "append after space was freed");
    assert_poisoned(wal.checkpoint(b"state"), "checkpoint after space was freed");
    assert_eq!(sizes(&dir), before, "a poisoned writer wrote");
    assert_poisoned(wal.close(), "close");
    drop(wal);

    let (n, tail) = check_log(&dir, acked);
    eprintln!(
        "library_append: {acked} acknowledged, {n} in the log, torn tail: {:?}",
        tail.as_ref().map(|t| t.bytes.len())
    );

    // A fresh writer continues at N + 1 (after saving and cutting a torn tail).
    let wal = Wal::open(&dir, lib_opts(8192)).unwrap();
    let report = wal.open_report().clone();
    assert_eq!(report.last_lsn, Some(n));
    assert_eq!(
        report
            .repaired_tail
            .as_ref()
            .map(|r| (&r.segment, r.offset)),
        tail.as_ref().map(|t| (&t.segment, t.offset))
    );
    if let Some(t) = &tail {
        assert_quarantined(&dir, t);
    }
    assert_eq!(wal.next_lsn(), n + 1);
    assert_eq!(wal.append(&entry(n)).unwrap(), n + 1);
    assert_eq!(wal.append(&entry(n + 1)).unwrap(), n + 2);
    wal.close().unwrap();
    let (m, tail) = check_log(&dir, n + 2);
    assert_eq!((m, tail), (n + 2, None));
}

// ---------------------------------------------------------------------------------
// Rotation that cannot create the next segment (no inode left)

#[test]
fn rotation_that_cannot_create_a_segment_fails_cleanly() {
    // 5 inodes: the root, the lock file, segment-0, segment-1, segment-2.
    let Some(mnt) = Tmpfs::mount("rotation", "size=1m,nr_inodes=5") else {
        return;
    };
    // The log is the root of the mount (a subdirectory would take an inode).
    let dir = mnt.path.clone();
    let wal = Wal::open(&dir, lib_opts(1024)).unwrap();
    let (acked, err) = append_until_error(&wal, 10_000, "rotation never failed");
    let msg = err.to_string();
    assert!(msg.contains("segment-3"), "{msg}");
    assert!(msg.contains(ENOSPC_TEXT), "{msg}");
    assert_eq!(segment_names(&dir), ["segment-0", "segment-1", "segment-2"]);
    assert_poisoned(wal.append(b"x"), "append");
    drop(wal);
    // Rotation syncs the old segment before creating the new one: nothing torn, and
    // the record that needed the new segment was not written.
    let (n, tail) = check_log(&dir, acked);
    assert_eq!((n, tail), (acked, None));

    // The binary, still without an inode: exit 1, one clear line, nothing changed.
    let before = segment_digests(&dir);
    let opts = ["--max-segment-size", "1K", "--max-segments", "0"];
    let mut a = opts.to_vec();
    a.push("one more");
    for sub in ["append", "checkpoint"] {
        let out = run(&mut walctl(sub, &dir, &a));
        assert_eq!(out.status.code(), Some(1), "{sub}: {}", stderr_of(&out));
        let err = one_error_line(&out);
        assert!(
            err.contains(ENOSPC_TEXT) && err.contains("segment-3"),
            "{sub}: {err}"
        );
        assert!(out.stdout.is_empty(), "{sub} acknowledged something");
        assert_eq!(segment_digests(&dir), before, "{sub} changed the log");
    }

    mnt.remount("nr_inodes=64");
    let mut a = opts.to_vec();
    a.extend(["--", "after-1", "after-2"]);
    let out = run(&mut walctl("append", &dir, &a));
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(lsn_lines(&out), vec![n + 1, n + 2]);
    assert!(segment_names(&dir).contains(&"segment-3".to_string()));
    assert_eq!(verify_code(&dir), Some(0));
    let (entries, _) = read_log(&dir);
    assert_eq!(entries.len() as u64, n + 2);
    assert_eq!(entries[n as usize].data, b"after-1");
}

// ---------------------------------------------------------------------------------
// (c) checkpoint on a full disk

#[test]
fn checkpoint_on_a_full_disk_fails_clearly() {
    let Some(mnt) = Tmpfs::mount("checkpoint", "size=128k") else {
        return;
    };
    let dir = mnt.path.join("log");
    let out = run(&mut walctl(
        "append",
        &dir,
        &[
            std::str::from_utf8(&entry(0)).unwrap(),
            std::str::from_utf8(&entry(1)).unwrap(),
            std::str::from_utf8(&entry(2)).unwrap(),
        ],
    ));
    assert!(out.status.success(), "{}", stderr_of(&out));
    let filler = mnt.path.join("filler");
    fill(&filler);
    assert!(mnt.free() < 4096);
    // A snapshot larger than any slack left in the segment's last page.
    let outside = tempdir();
    let snap_path = outside.path().join("state.bin");
    let snapshot: Vec<u8> = (0..20_000u32).map(|i| (i * 13 % 251) as u8).collect();
    fs::write(&snap_path, &snapshot).unwrap();

    let out = run(walctl("checkpoint", &dir, &["--file"]).arg(&snap_path));
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = one_error_line(&out);
    assert!(err.contains(ENOSPC_TEXT), "{err}");
    assert!(err.contains("checkpoint"), "{err}");
    assert!(out.stdout.is_empty(), "a failed checkpoint printed an LSN");
    let (entries, tail) = read_log(&dir);
    assert_eq!(entries.len(), 3, "the entries before are intact");
    for e in &entries {
        assert!(e.data == entry(e.lsn - 1) && !e.checkpoint);
    }
    assert_eq!(verify_code(&dir), Some(if tail.is_some() { 3 } else { 0 }));

    fs::remove_file(&filler).unwrap();
    let out = run(walctl("checkpoint", &dir, &["--json", "--file"]).arg(&snap_path));
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(out.stdout, b"{\"lsn\":4}\n");
    if let Some(t) = &tail {
        assert_quarantined(&dir, t);
    }
    assert_eq!(verify_code(&dir), Some(0));
    let recovered: Vec<Entry> = WalReader::open(&dir)
        .unwrap()
        .from_newest_checkpoint()
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(recovered.len(), 1);
    assert!(recovered[0].checkpoint && recovered[0].lsn == 4);
    assert!(recovered[0].data == snapshot);
}

// ---------------------------------------------------------------------------------
// (d) repairing a torn tail with no room for the quarantine copy

#[test]
fn torn_tail_repair_on_a_full_disk_refuses_and_changes_nothing() {
    let Some(mnt) = Tmpfs::mount("truncate_corrupt", "size=128k") else {
        return;
    };
    let dir = mnt.path.join("log");
    let wal = Wal::open(&dir, lib_opts(1 << 20)).unwrap();
    for i in 0..5 {
        wal.append(&entry(i)).unwrap();
    }
    let big: Vec<u8> = (0..12_000u32).map(|i| (i % 200) as u8).collect();
    wal.append(&big).unwrap();
    wal.close().unwrap();
    drop(wal);
    let seg = dir.join("segment-0");
    let (entries, _) = read_log(&dir);
    let last = entries.last().unwrap();
    assert_eq!(last.lsn, 6);
    let size = fs::metadata(&seg).unwrap().len();
    let cut_at = last.offset + (size - last.offset) / 2;
    cut(&seg, cut_at);
    let torn = Tail {
        segment: "segment-0".into(),
        offset: last.offset,
        bytes: fs::read(&seg).unwrap()[last.offset as usize..].to_vec(),
    };
    assert!(torn.bytes.len() > 5000);

    let filler = mnt.path.join("filler");
    fill(&filler);
    assert!(mnt.free() < 4096);
    let before = segment_digests(&dir);

    // A dry run needs no space and says what it would cut.
    let out = run(&mut walctl("truncate-corrupt", &dir, &[]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));

    // --apply cannot save the bytes: it refuses, exit 1, and cuts nothing.
    let out = run(&mut walctl("truncate-corrupt", &dir, &["--apply"]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr_of(&out)
    );
    let err = one_error_line(&out);
    assert!(err.contains(ENOSPC_TEXT), "{err}");
    assert_eq!(
        segment_digests(&dir),
        before,
        "truncate-corrupt changed the log"
    );
    assert_eq!(quarantine_entries(&dir), 0, "no complete quarantine entry");
    assert_eq!(verify_code(&dir), Some(3));

    // So does a writer that would repair the tail at open.
    for sub in ["append", "checkpoint"] {
        let out = run(&mut walctl(sub, &dir, &["x"]));
        assert_eq!(out.status.code(), Some(1), "{sub}: {}", stderr_of(&out));
        let err = one_error_line(&out);
        assert!(err.contains(ENOSPC_TEXT), "{sub}: {err}");
        assert!(out.stdout.is_empty());
        assert_eq!(segment_digests(&dir), before, "{sub} changed the log");
        assert_eq!(quarantine_entries(&dir), 0);
    }
    let leftovers: Vec<String> = fs::read_dir(dir.join(quarantine::QUARANTINE_DIR))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    // A failed save removes its half-made copy: it would only take space on a disk
    // that is already full (the log still holds every byte).
    assert!(
        leftovers.is_empty(),
        "half-made quarantine entries left behind: {leftovers:?}"
    );

    // Space freed: the repair goes through, the bytes are saved, the log is clean.
    fs::remove_file(&filler).unwrap();
    let out = run(&mut walctl("truncate-corrupt", &dir, &["--apply"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(fs::metadata(&seg).unwrap().len(), torn.offset);
    assert_eq!(quarantine_entries(&dir), 1);
    assert_quarantined(&dir, &torn);
    assert_eq!(verify_code(&dir), Some(0));
    let out = run(&mut walctl("append", &dir, &["next"]));
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(lsn_lines(&out), vec![6]);
    let (entries, tail) = read_log(&dir);
    assert!(tail.is_none());
    assert_eq!(entries.len(), 6);
    for e in &entries[..5] {
        assert!(e.data == entry(e.lsn - 1));
    }
    assert_eq!(entries[5].data, b"next");
}

// ---------------------------------------------------------------------------------
// The error of the append that hits ENOSPC

/// The call that runs into the full disk gets `Error::Poisoned`. Its text must not
/// claim that nothing was written or blame an earlier failure: the failure is its own,
/// and part of its record (a torn tail, or in a batch whole records written before a
/// rotation) can be in the segment. (Once said "poisoned by an earlier failure ...;
/// nothing was written".)
#[test]
fn the_failing_append_does_not_claim_that_nothing_was_written() {
    let Some(mnt) = Tmpfs::mount("failing_append_message", "size=64k") else {
        return;
    };
    let dir = mnt.path.join("log");
    let wal = Wal::open(&dir, lib_opts(1 << 20)).unwrap();
    let (acked, err) = append_until_error(&wal, 10_000, "the disk never filled");
    drop(wal);
    let (entries, tail) = read_log(&dir);
    let wrote_something = entries.len() as u64 > acked || tail.is_some();
    assert!(
        wrote_something,
        "the failed append left nothing in the log (expected a torn tail on tmpfs)"
    );
    let msg = err.to_string();
    assert!(msg.contains(ENOSPC_TEXT), "{msg}");
    assert!(
        !msg.contains("nothing was written") && !msg.contains("earlier failure"),
        "the failing append wrote {} bytes of its record, but its error says: {msg}",
        tail.map_or(0, |t| t.bytes.len())
    );
}

// ---------------------------------------------------------------------------------
// (e) what a full disk's refusal says, and --quarantine-dir on another file system

/// A log on `mnt` with LSN 1..=5 intact and a torn sixth record of over 5 KB, then
/// the file system filled. Returns (log dir, the torn tail, the filler).
fn torn_log_on_a_full_disk(mnt: &Tmpfs) -> (PathBuf, Tail, PathBuf) {
    let dir = mnt.path.join("log");
    let wal = Wal::open(&dir, lib_opts(1 << 20)).unwrap();
    for i in 0..5 {
        wal.append(&entry(i)).unwrap();
    }
    let big: Vec<u8> = (0..12_000u32).map(|i| (i % 200) as u8).collect();
    wal.append(&big).unwrap();
    wal.close().unwrap();
    drop(wal);
    let seg = dir.join("segment-0");
    let (entries, _) = read_log(&dir);
    let last = entries.last().unwrap();
    let size = fs::metadata(&seg).unwrap().len();
    cut(&seg, last.offset + (size - last.offset) / 2);
    let tail = Tail {
        segment: "segment-0".into(),
        offset: last.offset,
        bytes: fs::read(&seg).unwrap()[last.offset as usize..].to_vec(),
    };
    let filler = mnt.path.join("filler");
    fill(&filler);
    assert!(mnt.free() < 4096);
    (dir, tail, filler)
}

#[test]
fn a_full_disk_refusal_says_what_happened_and_what_to_do() {
    let Some(mnt) = Tmpfs::mount("full_disk_message", "size=128k") else {
        return;
    };
    let (dir, _tail, _filler) = torn_log_on_a_full_disk(&mnt);
    let before = segment_digests(&dir);
    let cases: [(&str, &[&str]); 3] = [
        ("truncate-corrupt", &["--apply"]),
        ("append", &["x"]),
        ("checkpoint", &["x"]),
    ];
    for (sub, args) in cases {
        let out = run(&mut walctl(sub, &dir, args));
        assert_eq!(out.status.code(), Some(1), "{sub}: {}", stderr_of(&out));
        let err = one_error_line(&out);
        for want in [
            ENOSPC_TEXT,
            "nothing was cut: the log is as it was, every acknowledged record still in it (the \
             last intact one is LSN 5)",
            "free space on the file system of",
            "or rerun with --quarantine-dir DIR on another file system",
        ] {
            assert!(err.contains(want), "{sub}: {want:?} in {err}");
        }
        assert_eq!(segment_digests(&dir), before, "{sub} changed the log");
    }
}

#[test]
fn quarantine_dir_on_another_file_system_lets_a_repair_through_a_full_disk() {
    let Some(mnt) = Tmpfs::mount("quarantine_dir", "size=128k") else {
        return;
    };
    let (dir, tail, _filler) = torn_log_on_a_full_disk(&mnt);
    let before = segment_digests(&dir);
    // Another file system: the test's temporary directory, not the tmpfs.
    let elsewhere = tempdir();
    let qdir = elsewhere.path().join("saved");
    let q = qdir.to_str().unwrap();

    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--apply", "--quarantine-dir", q, "--json"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["quarantine_id"].as_str().unwrap().to_string();
    assert_eq!(
        v["quarantine_dir"].as_str().unwrap(),
        qdir.join(&id).to_str().unwrap()
    );
    assert_eq!(
        fs::metadata(dir.join("segment-0")).unwrap().len(),
        tail.offset
    );
    assert_eq!(verify_code(&dir), Some(0));
    // The bytes are in DIR/<id>, and the manifest says where they went and whence.
    let m: quarantine::Manifest =
        serde_json::from_slice(&fs::read(qdir.join(&id).join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m.saved_in.as_deref(), qdir.join(&id).to_str());
    assert_eq!(m.log_dir.as_deref(), dir.to_str());
    assert_eq!(m.next_lsn, Some(6));
    let saved = fs::read(qdir.join(&id).join(&m.items[0].saved_as)).unwrap();
    assert!(
        saved == tail.bytes,
        "the saved copy differs from the torn tail"
    );
    assert!(!dir.join(quarantine::QUARANTINE_DIR).exists());

    // Listing finds it with the same flag, and says where to look without it.
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--list-quarantine"],
    ));
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--list-quarantine", "--json", "--quarantine-dir", q],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["id"], id.as_str());
    // Restore needs the flag too; without it the entry is not there.
    let out = run(&mut walctl("truncate-corrupt", &dir, &["--restore", &id]));
    assert_eq!(out.status.code(), Some(1));
    let err = one_error_line(&out);
    assert!(err.contains("no quarantine entry"), "{err}");
    let out = run(&mut walctl(
        "truncate-corrupt",
        &dir,
        &["--restore", &id, "--quarantine-dir", q],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(segment_digests(&dir), before, "restore is byte for byte");

    // A writer repairing the tail at open takes the same flag.
    let out = run(&mut walctl(
        "append",
        &dir,
        &["--quarantine-dir", q, "next"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(lsn_lines(&out), vec![6]);
    assert!(
        stderr_of(&out).contains(qdir.to_str().unwrap()),
        "{}",
        stderr_of(&out)
    );
    let ids: Vec<String> = fs::read_dir(&qdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(!dir.join(quarantine::QUARANTINE_DIR).exists());
}

#[test]
fn an_append_that_fills_the_disk_says_what_is_durable_and_what_to_do() {
    let Some(mnt) = Tmpfs::mount("append_full_message", "size=128k") else {
        return;
    };
    let dir = mnt.path.join("log");
    let out = run(&mut walctl("append", &dir, &["a", "b", "c"]));
    assert_eq!(lsn_lines(&out), vec![1, 2, 3]);
    fill(&mnt.path.join("filler"));
    // Lines acknowledged one by one until the disk refuses one.
    let mut child = walctl("append", &dir, &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked = Vec::new();
    for i in 0..1000 {
        let line = format!("{}\n", "x".repeat(1000 + i));
        if stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
            .is_err()
        {
            break;
        }
        let mut ack = String::new();
        if stdout.read_line(&mut ack).unwrap() == 0 {
            break;
        }
        acked.push(ack.trim().parse::<u64>().unwrap());
    }
    drop(stdin);
    let status = child.wait().unwrap();
    let err = read_stderr(&mut child);
    assert_eq!(status.code(), Some(1), "{err}");
    let err = one_error_line_of(&err);
    let durable = match acked.last() {
        Some(l) => format!("every LSN printed, up to {l}, is durable"),
        None => "no LSN was printed".to_string(),
    };
    for want in [
        ENOSPC_TEXT,
        durable.as_str(),
        "free space on that file system and run the command again",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
}
