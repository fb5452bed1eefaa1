//! Oversized input is refused before it is read, and refused input never costs more
//! than 32 MiB of memory (issue 14). Measured with wait4 on the child: the peak RSS
//! of a child includes its parent's at exec, so this test binary holds nothing large.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use assert_cmd::cargo::cargo_bin;
use common::*;

fn walctl(sub: &str, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(cargo_bin("walctl"));
    c.arg(sub).arg("--dir").arg(dir).args(args);
    c
}

const MAX_DATA_LEN: u64 = walctl::codec::MAX_DATA_LEN as u64;
/// What refused input may cost, at most.
const REFUSED_RSS_KIB: i64 = 32 << 10;

/// Runs `c` with stdin fed by `feed` (None: /dev/null), stdout and stderr captured;
/// returns (exit code, stderr, peak RSS in KiB, bytes `feed` got into the pipe).
fn run_measured(
    c: &mut Command,
    feed: Option<Box<dyn FnOnce(std::process::ChildStdin) -> u64 + Send>>,
) -> (Option<i32>, String, i64, u64) {
    use std::io::Read;
    if feed.is_some() {
        c.stdin(Stdio::piped());
    }
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    // Reaped by wait4 below, which also gives its peak memory.
    #[allow(clippy::zombie_processes)]
    let mut child = c.spawn().unwrap();
    let feeder = feed.map(|f| {
        let stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || f(stdin))
    });
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data filled by the kernel; waiting for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    assert_eq!(r, child.id() as libc::pid_t);
    let fed = feeder.map_or(0, |t| t.join().unwrap());
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, err, ru.ru_maxrss, fed)
}

/// Writes `total` bytes of `byte` into the pipe until the reader goes; returns how
/// many got in.
fn feed_bytes(byte: u8, total: u64) -> Box<dyn FnOnce(std::process::ChildStdin) -> u64 + Send> {
    Box::new(move |mut stdin| {
        let chunk = vec![byte; 64 << 10];
        let mut sent = 0u64;
        while sent < total {
            let n = (total - sent).min(chunk.len() as u64) as usize;
            match stdin.write(&chunk[..n]) {
                Ok(w) => sent += w as u64,
                Err(_) => break,
            }
        }
        sent
    })
}

#[test]
fn an_oversized_file_is_refused_by_its_size_before_it_is_read() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    // Sparse: the size is what matters, not the disk.
    let big = tmp.path().join("big.bin");
    fs::File::create(&big)
        .unwrap()
        .set_len(MAX_DATA_LEN + (2 << 20))
        .unwrap();
    for sub in ["append", "checkpoint"] {
        let (code, err, rss, _) = run_measured(
            walctl(sub, &dir, &["--file"])
                .arg(&big)
                .stdin(Stdio::null()),
            None,
        );
        assert_eq!(code, Some(1), "{sub}: {err}");
        assert!(err.contains("refused before reading it"), "{sub}: {err}");
        assert!(
            err.contains(&(MAX_DATA_LEN + (2 << 20)).to_string()),
            "{err}"
        );
        eprintln!("{sub}: peak RSS {rss} KiB");
        assert!(rss < REFUSED_RSS_KIB, "{sub}: peak RSS {rss} KiB");
        assert!(!dir.exists(), "{sub} created the log for refused input");
    }
    // Redirected from the same file, standard input is refused the same way.
    let (code, err, rss, _) = run_measured(
        walctl("checkpoint", &dir, &[]).stdin(fs::File::open(&big).unwrap()),
        None,
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("standard input is"), "{err}");
    eprintln!("peak RSS {rss} KiB");
    assert!(rss < REFUSED_RSS_KIB, "peak RSS {rss} KiB");
}

#[test]
fn oversized_piped_input_stops_at_the_limit_plus_one_byte() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    let (code, err, rss, fed) = run_measured(
        &mut walctl("checkpoint", &dir, &[]),
        Some(feed_bytes(b'a', MAX_DATA_LEN + (64 << 20))),
    );
    assert_eq!(code, Some(1), "{err}");
    let want = format!("refused after reading {} bytes", MAX_DATA_LEN + 1);
    assert!(err.contains(&want), "{want:?} in {err}");
    assert!(err.contains("nothing was written"), "{err}");
    eprintln!("peak RSS {rss} KiB");
    assert!(rss < REFUSED_RSS_KIB, "peak RSS {rss} KiB");
    // What got into the pipe beyond the limit is at most what a pipe holds.
    assert!(fed < MAX_DATA_LEN + (2 << 20), "{fed} bytes were taken");
    assert!(!dir.exists());

    // Hex is refused once its digits alone make too large a record, whitespace
    // not counted.
    let (code, err, rss, _) = run_measured(
        &mut walctl("checkpoint", &dir, &["--encoding", "hex"]),
        Some(feed_bytes(b'0', 2 * MAX_DATA_LEN + (8 << 20))),
    );
    assert_eq!(code, Some(1), "{err}");
    let want = format!("refused after reading {} bytes", 2 * MAX_DATA_LEN + 2);
    assert!(err.contains(&want), "{want:?} in {err}");
    eprintln!("peak RSS {rss} KiB");
    assert!(rss < REFUSED_RSS_KIB, "peak RSS {rss} KiB");
}

#[test]
fn an_oversized_line_is_refused_without_holding_it() {
    let tmp = tempdir();
    let dir = tmp.path().join("w");
    let (code, err, rss, fed) = run_measured(
        &mut walctl("append", &dir, &[]),
        Some(feed_bytes(b'a', MAX_DATA_LEN + (64 << 20))),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("standard input line 1 (byte offset 0) is longer than any record can be"),
        "{err}"
    );
    eprintln!("peak RSS {rss} KiB");
    assert!(rss < REFUSED_RSS_KIB, "peak RSS {rss} KiB");
    assert!(fed < MAX_DATA_LEN + (2 << 20), "{fed} bytes were taken");
}
