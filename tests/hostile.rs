//! Hostile input (the "Reliability" issue): logs and directories built to hurt, run
//! through the real binary (`verify`, `dump --json`, `segments`, `append`,
//! `truncate-corrupt` dry run and `--apply`) and the library (`Wal::open`,
//! `WalReader`, `Scanner`). Every case must end in a clear error (exit 1, or 3/4
//! where the log is damaged) that names the file (and offset), never a panic, never
//! a large allocation (every child runs under a 1 GiB address-space limit and its
//! peak memory is measured), and never a change on disk when the command reads or
//! refuses.

mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use walctl::error::{Error, ProblemKind, Severity};
use walctl::reader::WalReader;
use walctl::scan::{scan_log, ScanOptions, Scanner};
use walctl::storage::{FileStorage, Storage, LOCK_FILE};
use walctl::writer::{SyncPolicy, WalOptions};

/// Address space each child may use: a blind allocation for a 4 GiB length prefix
/// (or anything near it) fails and aborts the child, which the tests see.
const CHILD_ADDRESS_SPACE: u64 = 1 << 30;
/// Peak resident memory allowed to a child on these small logs.
const MAX_RSS_KIB: i64 = 64 * 1024;
/// A child still running after this long is hung (a hang guard, not a timing test).
const HANG: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- running the binary

#[derive(Default, Clone, Copy)]
struct As {
    /// Run as this uid/gid (an unprivileged user when the tests run as root).
    user: Option<u32>,
}

/// A copy of the walctl binary in the system temporary directory, readable and
/// executable by everyone, for the runs as an unprivileged user; made once.
fn unprivileged_binary() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("walctl-hostile-bin-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("walctl");
        fs::copy(env!("CARGO_BIN_EXE_walctl"), &bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        bin
    })
}

/// `cmd.spawn()`, retried for up to 5 s while the executable is busy: a child that
/// another test thread forked while `unprivileged_binary` was writing the copy holds
/// the copy open for writing until its own exec, and exec refuses a file open for
/// writing (ETXTBSY).
fn spawn_retrying_busy(cmd: &mut Command) -> std::process::Child {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match cmd.spawn() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10))
            }
            r => return r.unwrap(),
        }
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `walctl ARGS` (with `--dir DIR` unless `dir` is None) with WALCTL_DIR and
/// NO_COLOR removed and `env` set; asserts that it exited (no signal, no hang, no
/// panic) within its memory bounds.
fn walctl_in(args: &[&str], dir: Option<&Path>, env: &[(&str, &OsStr)], who: As) -> Run {
    // A writer closed by this test process may still look locked for a moment: a child
    // another test thread is starting holds a copy of the lock's descriptor between
    // its fork and exec (see `common::wal_open_retrying`). Only that case is retried:
    // the lock file then names this process.
    let ours = format!("held by pid {})", std::process::id());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let run = walctl_once(args, dir, env, who);
        let fork_window = run.code == 1
            && run.stderr.contains("is locked by another writer")
            && run.stderr.contains(&ours);
        if !fork_window || Instant::now() >= deadline {
            return run;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn walctl_once(args: &[&str], dir: Option<&Path>, env: &[(&str, &OsStr)], who: As) -> Run {
    let mut cmd = Command::new(match who.user {
        // The build's own path may not be reachable by an unprivileged user (a clone
        // under /root): run a copy kept beside the test's files.
        Some(_) => unprivileged_binary().to_path_buf(),
        None => PathBuf::from(env!("CARGO_BIN_EXE_walctl")),
    });
    cmd.env_remove("WALCTL_DIR")
        .env_remove("NO_COLOR")
        .args(args);
    if let Some(dir) = dir {
        cmd.arg("--dir").arg(dir);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap());
    if let Some(uid) = who.user {
        cmd.uid(uid).gid(uid);
    }
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: CHILD_ADDRESS_SPACE,
                rlim_max: CHILD_ADDRESS_SPACE,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Reaped by wait4 below, which also gives its peak memory.
    #[allow(clippy::zombie_processes)]
    let child = spawn_retrying_busy(&mut cmd);
    let (status, maxrss) = wait_with_rusage(child.id() as libc::pid_t, args);
    let read = |mut f: fs::File| {
        let mut v = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut v).unwrap();
        String::from_utf8(v).unwrap_or_else(|e| panic!("{args:?}: output not UTF-8: {e}"))
    };
    let (stdout, stderr) = (read(out), read(err));
    assert!(
        libc::WIFEXITED(status),
        "{args:?} was killed by signal {} (an allocation over {CHILD_ADDRESS_SPACE} bytes \
         aborts it): {stderr}",
        libc::WTERMSIG(status)
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(
        maxrss < MAX_RSS_KIB,
        "{args:?}: peak RSS {maxrss} KiB on a small log"
    );
    Run {
        code: libc::WEXITSTATUS(status),
        stdout,
        stderr,
    }
}

fn walctl(args: &[&str], dir: &Path) -> Run {
    walctl_in(args, Some(dir), &[], As::default())
}

/// Reaps `pid`, returning its wait status and peak RSS (KiB); kills it if it hangs.
fn wait_with_rusage(pid: libc::pid_t, what: &[&str]) -> (libc::c_int, i64) {
    let deadline = Instant::now() + HANG;
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data, filled by the kernel.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waiting for our own child; both pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            return (status, ru.ru_maxrss);
        }
        assert_eq!(r, 0, "wait4: {}", std::io::Error::last_os_error());
        if Instant::now() > deadline {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("{what:?} hung for {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------- the disk, before and after

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File(Result<Vec<u8>, String>, u32),
    Dir(u32),
    Link(PathBuf),
    Special,
}

/// Every entry under `dir` (names as bytes, recursively): kind, mode and contents;
/// links are read, never followed; FIFOs are never opened.
fn snapshot(dir: &Path) -> BTreeMap<OsString, Node> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<OsString, Node>) {
        for e in fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let rel = rel.join(e.file_name());
            let path = root.join(&rel);
            let m = fs::symlink_metadata(&path).unwrap();
            let mode = m.permissions().mode();
            let node = if m.file_type().is_symlink() {
                Node::Link(fs::read_link(&path).unwrap())
            } else if m.is_dir() {
                walk(root, &rel, out);
                Node::Dir(mode)
            } else if m.is_file() {
                Node::File(fs::read(&path).map_err(|e| e.to_string()), mode)
            } else {
                Node::Special
            };
            out.insert(rel.into_os_string(), node);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, Path::new(""), &mut out);
    out
}

/// The snapshot without the writer's lock file, which a refused writer may create
/// (it takes the lock before it looks at the log).
fn without_lock(mut s: BTreeMap<OsString, Node>) -> BTreeMap<OsString, Node> {
    s.remove(OsStr::new(LOCK_FILE));
    s
}

const READS: &[&[&str]] = &[
    &["verify"],
    &["verify", "--json"],
    &["dump", "--json"],
    &["segments"],
    &["segments", "--json"],
    &["truncate-corrupt"],
];
const WRITES: &[&[&str]] = &[
    &["truncate-corrupt", "--apply"],
    &["append", "refused entry"],
    &["checkpoint", "refused state"],
];

/// Runs every read command and (unless `code` is 0) every writing command on `dir`
/// and checks each one: exit `code`, the output says every one of `says`, and nothing
/// on disk changed (for a writer: except the lock file). Returns the runs, reads
/// first.
fn every_command(dir: &Path, code: i32, says: &[&str], who: As) -> Vec<Run> {
    let before = snapshot(dir);
    let mut runs = Vec::new();
    for (args, writes) in READS
        .iter()
        .map(|a| (a, false))
        .chain(WRITES.iter().map(|a| (a, true)).filter(|_| code != 0))
    {
        let r = walctl_in(args, Some(dir), &[], who);
        assert_eq!(r.code, code, "{args:?}: {}", r.all());
        for s in says {
            assert!(
                r.all().contains(s),
                "{args:?} does not say {s:?}: {}",
                r.all()
            );
        }
        if code == 1 {
            assert!(
                r.stderr.starts_with("walctl: error: "),
                "{args:?}: {}",
                r.stderr
            );
        }
        let after = snapshot(dir);
        if writes {
            assert_eq!(
                without_lock(after),
                without_lock(before.clone()),
                "{args:?}"
            );
        } else {
            assert_eq!(after, before, "{args:?} changed the disk");
        }
        runs.push(r);
    }
    runs
}

// ---------------------------------------------------------------- logs

fn payload(lsn: u64) -> Vec<u8> {
    format!("entry {lsn} ")
        .repeat(1 + (lsn % 9) as usize)
        .into_bytes()
}

/// A clean log of `n` records over several 1 KiB segments.
fn small_log(dir: &Path, n: u64) {
    let wal = wal_open_retrying(
        dir,
        WalOptions::default()
            .max_segment_size(1024)
            .max_segments(0)
            .sync(SyncPolicy::Never),
    )
    .unwrap();
    for lsn in 1..=n {
        assert_eq!(wal.append(&payload(lsn)).unwrap(), lsn);
    }
    wal.close().unwrap();
}

fn storage(dir: &Path) -> Arc<dyn Storage> {
    Arc::new(FileStorage::open(dir).unwrap())
}

fn scan(dir: &Path) -> walctl::Result<walctl::scan::ScanReport> {
    scan_log(storage(dir), ScanOptions::default(), |_| {})
}

/// Every record WalReader yields from LSN `from`, then its error if any.
fn read_from(dir: &Path, from: u64) -> (Vec<u64>, Option<Error>) {
    let mut lsns = Vec::new();
    let entries = match WalReader::open(dir).and_then(|r| r.entries_from(from)) {
        Ok(e) => e,
        Err(e) => return (lsns, Some(e)),
    };
    for e in entries {
        match e {
            Ok(e) => {
                assert_eq!(e.data, payload(e.lsn));
                lsns.push(e.lsn);
            }
            Err(e) => return (lsns, Some(e)),
        }
    }
    (lsns, None)
}

fn opts() -> WalOptions {
    WalOptions::default()
        .max_segment_size(1024)
        .max_segments(0)
        .sync(SyncPolicy::Never)
}

// ---------------------------------------------------------------- a 4 GiB length prefix

/// Writes `prefix` as the length prefix at `offset` of `file` (over what is there, or
/// appended with a few bytes after it at the end).
fn put_prefix(file: &Path, offset: u64, prefix: u32) {
    let mut bytes = fs::read(file).unwrap();
    let at = offset as usize;
    if at == bytes.len() {
        bytes.extend_from_slice(&prefix.to_le_bytes());
        bytes.extend_from_slice(b"\x0a\x0b\x0c");
    } else {
        bytes[at..at + 4].copy_from_slice(&prefix.to_le_bytes());
    }
    fs::write(file, bytes).unwrap();
}

/// The LSN of the first record of segment `name`.
fn first_lsn_of(dir: &Path, name: &str) -> u64 {
    let report = scan(dir).unwrap();
    let s = report.segments.iter().find(|s| s.name == name).unwrap();
    s.first_lsn.unwrap()
}

fn huge_prefix_case(in_newest: bool, prefix: u32) {
    let tmp = tempdir();
    let dir = tmp.path();
    small_log(dir, 60);
    let names = segment_names(dir);
    assert!(names.len() >= 4);
    let (seg, offset, last_good) = if in_newest {
        let seg = names.last().unwrap().clone();
        let end = fs::metadata(dir.join(&seg)).unwrap().len();
        (seg, end, 60)
    } else {
        // Over the length prefix of the first record of segment 1.
        let seg = names[1].clone();
        let first = first_lsn_of(dir, &seg);
        (seg, 0, first - 1)
    };
    put_prefix(&dir.join(&seg), offset, prefix);
    let ctx = format!("prefix {prefix:#x} in {seg} at {offset}");
    let at = format!("{seg} at offset {offset}");

    // (segments prints the name and "corrupt at offset N" in separate columns.)
    let runs = every_command(
        dir,
        4,
        &[&seg, &format!("at offset {offset}")],
        As::default(),
    );
    for r in &runs[..2] {
        assert!(r.all().contains(&at), "{ctx}: {}", r.all());
    }
    // verify --json names the kind; dump printed every record before the damage.
    let v: serde_json::Value = serde_json::from_str(runs[1].stdout.trim()).unwrap();
    let p = &v["problems"][0];
    assert_eq!(p["segment"], seg.as_str(), "{ctx}");
    assert_eq!(p["offset"], offset, "{ctx}");
    assert_eq!(p["severity"], "corruption", "{ctx}");
    let kind = if prefix == u32::MAX {
        "length_too_large"
    } else {
        "truncated_record"
    };
    assert_eq!(p["kind"], kind, "{ctx}: {p}");
    let dumped = runs[2].stdout.lines().count() as u64;
    assert_eq!(dumped, last_good, "{ctx}");
    assert!(
        runs[2]
            .stderr
            .contains(&dir.join(&seg).display().to_string()),
        "{ctx}: dump names the file: {}",
        runs[2].stderr
    );
    // --from skips segments by peeking at their first record: bounded as well.
    let r = walctl(&["dump", "--json", "--from", "50"], dir);
    assert!(r.code == 4, "{ctx}: {}", r.all());

    // The library: a clear problem, records before it delivered, no write.
    let report = scan(dir).unwrap();
    let problem = report.problems().next().unwrap().clone();
    assert_eq!(
        (problem.segment.as_str(), problem.offset),
        (seg.as_str(), offset)
    );
    assert_eq!(problem.severity, Severity::Corruption);
    if prefix == u32::MAX {
        assert!(
            matches!(
                problem.kind,
                ProblemKind::LengthTooLarge {
                    len: 0xffff_ffff,
                    ..
                }
            ),
            "{problem:?}"
        );
    }
    let (lsns, err) = read_from(dir, 0);
    assert_eq!(lsns, (1..=last_good).collect::<Vec<_>>(), "{ctx}");
    assert!(
        matches!(&err, Some(Error::Scan { problem: p, .. }) if **p == problem),
        "{err:?}"
    );
    let (lsns, err) = read_from(dir, 55);
    assert!(lsns.iter().all(|&l| l >= 55));
    assert!(err.is_some(), "{ctx}");
    let before = snapshot(dir);
    let err = wal_open_retrying(dir, opts()).unwrap_err();
    assert!(matches!(err, Error::Damaged { .. }), "{err:?}");
    assert!(err.to_string().contains(&at), "{err}");
    assert_eq!(without_lock(snapshot(dir)), without_lock(before));

    // A human chose point-in-time: the cut is saved and bounded too, and the log is
    // clean afterwards.
    let r = walctl(
        &["truncate-corrupt", "--policy", "point-in-time", "--apply"],
        dir,
    );
    assert_eq!(r.code, 0, "{ctx}: {}", r.all());
    let r = walctl(&["verify"], dir);
    assert_eq!(r.code, 0, "{ctx}: {}", r.all());
    assert_eq!(read_from(dir, 0).0, (1..=last_good).collect::<Vec<_>>());
}

#[test]
fn length_prefix_of_4_gib_in_the_newest_segment() {
    huge_prefix_case(true, u32::MAX);
}

#[test]
fn length_prefix_of_4_gib_in_an_older_segment() {
    huge_prefix_case(false, u32::MAX);
}

#[test]
fn length_prefix_under_the_cap_but_past_the_file_in_an_older_segment() {
    // 100 MiB: accepted by the cap, refused by the file size, never allocated.
    huge_prefix_case(false, 100 << 20);
}

// ---------------------------------------------------------------- things named segment-N

#[test]
fn a_directory_named_like_a_segment() {
    let tmp = tempdir();
    let dir = tmp.path();
    small_log(dir, 20);
    let bad = dir.join("segment-99");
    fs::create_dir(&bad).unwrap();
    fs::write(bad.join("inside"), b"x").unwrap();
    let says = bad.display().to_string();
    every_command(dir, 1, &[&says, "is a directory"], As::default());
    library_refuses(dir, "segment-99");
}

/// Wal::open, WalReader and Scanner all refuse the log with an error naming `name`.
fn library_refuses(dir: &Path, name: &str) {
    let before = without_lock(snapshot(dir));
    let err = wal_open_retrying(dir, opts()).unwrap_err();
    assert!(err.to_string().contains(name), "{err}");
    let err = read_from(dir, 0).1.expect("an error");
    assert!(err.to_string().contains(name), "{err}");
    let err = Scanner::new(storage(dir), ScanOptions::default()).unwrap_err();
    assert!(err.to_string().contains(name), "{err}");
    assert_eq!(without_lock(snapshot(dir)), before);
}

#[test]
fn a_symlinked_segment_is_never_followed() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    small_log(&dir, 20);
    // The link points at a real, valid segment elsewhere: following it would "work".
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let newest = segment_names(&dir).pop().unwrap();
    fs::copy(dir.join(&newest), elsewhere.join("segment-0")).unwrap();
    let target = elsewhere.join("segment-0");
    let target_bytes = fs::read(&target).unwrap();
    let next_id = walctl::segment::parse_segment_name(&newest).unwrap() + 1;
    let link_name = walctl::segment::segment_name(next_id);
    symlink(&target, dir.join(&link_name)).unwrap();
    let says = dir.join(&link_name).display().to_string();
    every_command(&dir, 1, &[&says, "symbolic link"], As::default());
    library_refuses(&dir, &link_name);
    assert_eq!(fs::read(&target).unwrap(), target_bytes);
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 1);
}

#[test]
fn a_fifo_named_like_a_segment_never_hangs() {
    let tmp = tempdir();
    let dir = tmp.path();
    small_log(dir, 20);
    let fifo = dir.join("segment-0");
    // Replace the oldest segment: a reader that opened it would block forever.
    fs::remove_file(&fifo).unwrap();
    mkfifo(&fifo);
    let says = fifo.display().to_string();
    every_command(dir, 1, &[&says, "not a regular file"], As::default());
    library_refuses(dir, "segment-0");

    // Opened by name (as after a listing that still saw a file there): an error at
    // once, never a reader blocked on the FIFO.
    let (tx, rx) = std::sync::mpsc::channel();
    let s = storage(dir);
    std::thread::spawn(move || {
        let r = s.open_read("segment-0").map(|_| ());
        let _ = tx.send(r);
    });
    match rx.recv_timeout(HANG) {
        Ok(r) => assert!(r.is_err(), "a FIFO opened as a segment"),
        Err(_) => {
            // Unblock the stuck open so the test process can end.
            let _ = fs::OpenOptions::new().write(true).open(&fifo);
            panic!("Storage::open_read blocked on a FIFO named segment-0");
        }
    }

    // A FIFO with any other name is a stray: ignored, no hang.
    let tmp = tempdir();
    let dir = tmp.path();
    small_log(dir, 20);
    mkfifo(&dir.join("segment-0.pipe"));
    every_command(dir, 0, &[], As::default());
    assert!(wal_open_retrying(dir, opts()).is_ok());
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

#[test]
fn an_unreadable_segment_is_a_clear_error() {
    let tmp = tempdir();
    let dir = tmp.path().join("wal");
    small_log(&dir, 60);
    let names = segment_names(&dir);
    assert!(names.len() >= 3, "{names:?}");
    let victim = dir.join(&names[1]);
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o000)).unwrap();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let who = if root {
        // Root reads anything: run the binary as nobody, in a directory nobody owns
        // (so a writer can take the lock) and can reach.
        let nobody = 65534;
        if let Some(a) = dir
            .ancestors()
            .skip(1)
            .find(|a| fs::metadata(a).unwrap().permissions().mode() & 0o001 == 0)
        {
            eprintln!(
                "skipped: {} is not traversable by others, so no unprivileged user can \
                 reach the log (set TMPDIR to a directory that is)",
                a.display()
            );
            return;
        }
        // The lock file root's writer left would keep nobody's writer out.
        fs::remove_file(dir.join(LOCK_FILE)).unwrap();
        std::os::unix::fs::chown(&dir, Some(nobody), Some(nobody)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        As { user: Some(nobody) }
    } else {
        As::default()
    };
    let says = victim.display().to_string();
    // Every command exits 1 naming the file and the reason, and changes nothing.
    // The writers refuse; the readers report the rest of the log around it.
    let before = snapshot(&dir);
    for args in READS.iter().chain(WRITES) {
        let r = walctl_in(args, Some(&dir), &[], who);
        assert_eq!(r.code, 1, "{args:?}: {}", r.all());
        for s in [says.as_str(), "Permission denied", "unreadable"] {
            assert!(
                r.all().contains(s),
                "{args:?} does not say {s:?}: {}",
                r.all()
            );
        }
        assert_eq!(
            without_lock(snapshot(&dir)),
            without_lock(before.clone()),
            "{args:?}"
        );
    }
    // verify and segments check every other segment.
    let r = walctl_in(&["verify", "--json"], Some(&dir), &[], who);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["status"], "unreadable", "{v}");
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["problems"][0]["kind"], "unreadable", "{v}");
    assert_eq!(v["last_lsn"], 60, "{v}");
    let r = walctl_in(&["segments", "--json"], Some(&dir), &[], who);
    let rows: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), names.len());
    assert_eq!(rows[1]["status"], "unreadable");
    assert!(rows
        .iter()
        .enumerate()
        .all(|(i, r)| i == 1 || r["status"] == "ok"));
    // dump from past it reads on; from before it, prints up to it and names it.
    let past = rows[2]["first_lsn"].as_u64().unwrap();
    let r = walctl_in(
        &["dump", "--json", "--from", &past.to_string()],
        Some(&dir),
        &[],
        who,
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.stdout.lines().count() as u64, 60 - past + 1);
    let r = walctl_in(&["dump", "--json"], Some(&dir), &[], who);
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(
        r.stdout.lines().count() as u64,
        rows[0]["records"].as_u64().unwrap()
    );
    assert!(r.stderr.contains(&says), "{}", r.stderr);
    if root {
        let _ = fs::remove_dir_all(unprivileged_binary().parent().unwrap());
    } else {
        library_refuses(&dir, &names[1]);
    }
}

// ---------------------------------------------------------------- names

/// A directory whose name is not UTF-8.
fn non_utf8(parent: &Path) -> PathBuf {
    parent.join(OsStr::from_bytes(b"log-\xff\xfe"))
}

#[test]
fn a_non_utf8_directory_works_for_every_command() {
    let tmp = tempdir();
    let dir = non_utf8(tmp.path());
    let r = walctl(&["append", "first", "second"], &dir);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.stdout, "1\n2\n");
    let r = walctl(&["checkpoint", "state"], &dir);
    assert_eq!((r.code, r.stdout.as_str()), (0, "3\n"), "{}", r.all());
    for args in READS {
        let r = walctl(args, &dir);
        assert_eq!(r.code, 0, "{args:?}: {}", r.all());
        if args.contains(&"--json") {
            for l in r.stdout.lines() {
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap_or_else(|e| panic!("{args:?}: {e}: {l}"));
            }
        }
    }
    let r = walctl(&["verify", "--json"], &dir);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        (v["records"].as_u64(), v["status"].as_str()),
        (Some(3), Some("ok"))
    );
    let datas: Vec<Vec<u8>> = WalReader::open(&dir)
        .unwrap()
        .entries_from(0)
        .unwrap()
        .map(|e| e.unwrap().data)
        .collect();
    assert_eq!(datas, [&b"first"[..], b"second", b"state"]);

    // Damaged: every message about it is still printed, with the path.
    let seg = dir.join("segment-0");
    let len = fs::metadata(&seg).unwrap().len();
    let mut f = fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, b"\x07\x00").unwrap();
    drop(f);
    let at = format!("segment-0 at offset {len}");
    for args in READS {
        let r = walctl(args, &dir);
        assert_eq!(r.code, 3, "{args:?}: {}", r.all());
        // (segments prints the name and the offset in separate columns.)
        let says = if args[0] == "segments" {
            &at[10..]
        } else {
            &at[..]
        };
        assert!(r.all().contains(says), "{args:?}: {}", r.all());
    }
    let r = walctl(&["dump"], &dir);
    assert!(r.stderr.contains("log-"), "{}", r.stderr);
    let r = walctl(&["truncate-corrupt", "--apply"], &dir);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = walctl(&["truncate-corrupt", "--list-quarantine"], &dir);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = walctl(&["append", "after"], &dir);
    assert_eq!((r.code, r.stdout.as_str()), (0, "4\n"), "{}", r.all());
    let r = walctl(&["verify"], &dir);
    assert_eq!(r.code, 0, "{}", r.all());
}

/// `truncate-corrupt --json` in a directory whose name is not UTF-8: one JSON object,
/// no panic. (Found by this suite: src/cli/repair.rs builds its JSON with `json!`,
/// which panics on a non-UTF-8 path.)
#[test]
fn truncate_corrupt_json_in_a_non_utf8_directory() {
    let tmp = tempdir();
    let dir = non_utf8(tmp.path());
    assert_eq!(walctl(&["append", "x"], &dir).code, 0);
    for args in [
        &["truncate-corrupt", "--json"][..],
        &["truncate-corrupt", "--json", "--apply"],
    ] {
        let r = walctl(args, &dir);
        assert_eq!(r.code, 0, "{args:?}: {}", r.all());
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(v["status"], "clean", "{args:?}");
    }
}

#[test]
fn strays_with_non_utf8_or_overflowing_names_are_ignored_and_kept() {
    let tmp = tempdir();
    let dir = tmp.path();
    small_log(dir, 30);
    let strays: Vec<OsString> = [
        &b"segment-1\xff"[..],
        b"\xfe\xff",
        b"segment-\xff",
        b"segment-18446744073709551616",
        b"segment-99999999999999999999999",
    ]
    .iter()
    .map(|b| OsString::from_vec(b.to_vec()))
    .collect();
    for s in &strays {
        // What a segment-shaped reader would choke on.
        fs::write(dir.join(s), b"\xff\xff\xff\xffjunk").unwrap();
    }
    let kept = |dir: &Path| {
        for s in &strays {
            assert_eq!(
                fs::read(dir.join(s)).unwrap(),
                b"\xff\xff\xff\xffjunk",
                "{s:?}"
            );
        }
    };
    // Read commands: a clean log, nothing changed.
    let runs = every_command(dir, 0, &[], As::default());
    let v: serde_json::Value = serde_json::from_str(runs[1].stdout.trim()).unwrap();
    assert_eq!(
        (v["records"].as_u64(), v["status"].as_str()),
        (Some(30), Some("ok"))
    );
    kept(dir);
    assert_eq!(scan(dir).unwrap().records, 30);

    // Writers with retention delete old segments, never the strays.
    let wal = wal_open_retrying(
        dir,
        WalOptions::default()
            .max_segment_size(512)
            .max_segments(2)
            .sync(SyncPolicy::Never),
    )
    .unwrap();
    for lsn in 31..=80 {
        if lsn % 10 == 0 {
            wal.checkpoint(&payload(lsn)).unwrap();
        } else {
            wal.append(&payload(lsn)).unwrap();
        }
    }
    wal.close().unwrap();
    assert!(!dir.join("segment-0").exists(), "retention ran");
    kept(dir);
    let r = walctl(
        &[
            "append",
            "--max-segment-size",
            "256",
            "--max-segments",
            "2",
            "a",
            "b",
            "c",
        ],
        dir,
    );
    assert_eq!(r.code, 0, "{}", r.all());
    kept(dir);

    // A point-in-time repair cuts segments and leaves the strays alone.
    let names = segment_names(dir);
    flip_bit(&dir.join(&names[0]), 6, 2);
    let r = walctl(
        &["truncate-corrupt", "--policy", "point-in-time", "--apply"],
        dir,
    );
    assert_eq!(r.code, 0, "{}", r.all());
    kept(dir);
    assert_eq!(walctl(&["verify"], dir).code, 0);
}

#[test]
fn an_empty_segment_0_is_an_empty_clean_log() {
    let tmp = tempdir();
    let dir = tmp.path();
    fs::write(dir.join("segment-0"), b"").unwrap();
    let runs = every_command_reads_only(dir);
    let v: serde_json::Value = serde_json::from_str(runs[1].stdout.trim()).unwrap();
    assert_eq!(v["records"], 0);
    assert_eq!(v["segments"], 1);
    assert!(v["last_lsn"].is_null());
    assert_eq!(runs[2].stdout, "", "dump prints nothing");
    let (lsns, err) = read_from(dir, 0);
    assert!(lsns.is_empty() && err.is_none(), "{err:?}");
    let report = scan(dir).unwrap();
    assert_eq!((report.records, report.worst()), (0, None));
    // A writer starts at LSN 1, in segment-0.
    let r = walctl(&["append", "one"], dir);
    assert_eq!((r.code, r.stdout.as_str()), (0, "1\n"), "{}", r.all());
    assert_eq!(segment_names(dir), ["segment-0"]);
    let wal = wal_open_retrying(dir, opts()).unwrap();
    assert_eq!(wal.append(b"two").unwrap(), 2);
    wal.close().unwrap();
}

/// The read commands on `dir`: exit 0, nothing changed.
fn every_command_reads_only(dir: &Path) -> Vec<Run> {
    let before = snapshot(dir);
    let runs: Vec<Run> = READS
        .iter()
        .map(|args| {
            let r = walctl(args, dir);
            assert_eq!(r.code, 0, "{args:?}: {}", r.all());
            r
        })
        .collect();
    assert_eq!(snapshot(dir), before);
    runs
}

#[test]
fn walctl_dir_naming_a_regular_file_exits_1() {
    let tmp = tempdir();
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, b"segment-0 lives elsewhere").unwrap();
    let before = snapshot(tmp.path());
    for args in READS.iter().chain(WRITES).copied().chain([
        &["dump", "--follow", "--json"][..],
        &["truncate-corrupt", "--list-quarantine"],
    ]) {
        let r = walctl_in(
            args,
            None,
            &[("WALCTL_DIR", file.as_os_str())],
            As::default(),
        );
        assert_eq!(r.code, 1, "{args:?}: {}", r.all());
        assert_eq!(r.stdout, "", "{args:?}");
        assert!(
            r.stderr.contains("not a directory"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&file.display().to_string()),
            "{args:?}: {}",
            r.stderr
        );
        assert_eq!(snapshot(tmp.path()), before, "{args:?}");
    }
    assert!(wal_open_retrying(&file, opts()).is_err());
    assert!(WalReader::open(&file).is_err());
}
