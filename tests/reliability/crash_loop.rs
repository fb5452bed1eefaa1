//! Crash loop: `walctl append --sync always` is fed lines on standard input and
//! SIGKILLed at a random moment, over and over, on the same log. After every kill the
//! log must hold every acknowledged record with its exact data, LSNs 1..=N with no gap
//! or repeat, nothing but lines that were really sent (for the LSN they got), at most
//! a torn tail that is a prefix of the record being written, and the next writer must
//! continue at N + 1. Whatever a writer cut at open must be in the quarantine, and
//! nothing acknowledged ever is.
//!
//! `WALCTL_CRASH_SEED=<u64>` replays a run (the seed is printed); `WALCTL_CRASH_CYCLES`
//! sets the number of kills (default 50; e.g. 1000 for the long run).

use crate::common;

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use common::*;
use walctl::codec::encode_record;
use walctl::quarantine::{self, QUARANTINE_DIR};
use walctl::reader::WalReader;
use walctl::storage::FileStorage;
use walctl::Severity;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// The `i`-th line (0-based) sent in cycle `cycle`: unique, and of varying length so
/// that records differ in size and rotation falls at different records.
fn line(cycle: u64, i: u64) -> Vec<u8> {
    let mut r = Rng::new(cycle.wrapping_mul(0x1000_0000_01B3) ^ i.wrapping_mul(0x9E37_79B9));
    let pad = r.below(200) as usize;
    let mut s = format!("c{cycle}-{i}-").into_bytes();
    s.extend((0..pad).map(|_| b'a' + r.below(26) as u8));
    s
}

/// Acknowledgements received so far in a cycle, and whether stdout has ended.
#[derive(Default)]
struct Progress {
    acked: AtomicU64,
    ended: AtomicBool,
}

/// Writes lines of `cycle` into the child's stdin, in bursts of random size with
/// random pauses, never more than `window` lines ahead of the acknowledgements (so
/// that batches stay small and a kill lands among few records), until the pipe
/// breaks or stdout ends (the child died). Returns how many complete lines (newline
/// included) went into the pipe.
fn feed(mut stdin: ChildStdin, cycle: u64, mut rng: Rng, window: u64, progress: &Progress) -> u64 {
    let mut complete = 0u64;
    let mut next = 0u64;
    let mut buf = Vec::new();
    let mut ends = Vec::new();
    loop {
        while complete >= progress.acked.load(Ordering::SeqCst) + window {
            if progress.ended.load(Ordering::SeqCst) {
                return complete;
            }
            thread::sleep(Duration::from_micros(50));
        }
        buf.clear();
        ends.clear();
        for _ in 0..rng.range(1, window.min(40)) {
            buf.extend_from_slice(&line(cycle, next));
            buf.push(b'\n');
            ends.push(buf.len());
            next += 1;
        }
        let mut off = 0;
        while off < buf.len() {
            match stdin.write(&buf[off..]) {
                Ok(0) => return complete + ends.iter().filter(|&&e| e <= off).count() as u64,
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return complete + ends.iter().filter(|&&e| e <= off).count() as u64,
            }
        }
        complete += ends.len() as u64;
        if rng.below(4) == 0 {
            thread::sleep(Duration::from_micros(rng.below(400)));
        }
    }
}

/// Complete lines of the child's stdout (a line cut short by the kill was never
/// printed in full, so it acknowledges nothing).
fn read_acks(stdout: ChildStdout, progress: Arc<Progress>) -> (Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if buf.last() != Some(&b'\n') {
                break;
            }
            buf.pop();
            progress.acked.fetch_add(1, Ordering::SeqCst);
            if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                break;
            }
        }
        progress.ended.store(true, Ordering::SeqCst);
    });
    (rx, h)
}

/// A torn tail as seen after a kill: the bytes of the newest segment from `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tail {
    segment: String,
    offset: u64,
    bytes: Vec<u8>,
}

fn spawn_append(dir: &Path, stderr: &Path) -> Child {
    Command::new(cargo_bin("walctl"))
        .args(["append", "--dir"])
        .arg(dir)
        .args([
            "--sync",
            "always",
            "--max-segment-size",
            "4096",
            "--max-segments",
            "0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

/// The state of the log after a kill, checked against everything known.
struct Checker {
    dir: PathBuf,
    /// Data of LSN 1..=N as verified after the previous kill.
    log: Vec<Vec<u8>>,
    /// The torn tail left after the previous kill (or planted before this cycle).
    prev_tail: Option<Tail>,
    /// Every torn tail ever seen: the only bytes a writer may cut at open.
    tails: Vec<Tail>,
    acked_total: u64,
    repairs_seen: usize,
    /// Torn tails left by a killed writer (not planted).
    torn_by_kill: usize,
}

impl Checker {
    fn quarantined(&self) -> Vec<(String, u64, Vec<u8>, String)> {
        let storage = FileStorage::open(&self.dir).unwrap();
        let mut out = Vec::new();
        for m in quarantine::list(&storage).unwrap() {
            quarantine::verify(&storage, &m)
                .unwrap_or_else(|e| panic!("quarantine entry {} is damaged: {e}", m.id));
            for item in &m.items {
                let saved =
                    fs::read(quarantine::Location::in_log(&storage).saved_file(&m.id, item))
                        .unwrap();
                out.push((item.file.clone(), item.offset, saved, m.policy.clone()));
            }
        }
        out
    }

    /// Checks the log after the kill of cycle `cycle`, which started at LSN `start`,
    /// sent `sent` complete lines and got `acks` printed.
    fn after_kill(&mut self, cycle: u64, sent: u64, acks: &[String], ctx: &str) {
        let start = self.log.len() as u64 + 1;
        // (e) The writer continued at the last LSN + 1, and the k-th LSN printed
        // acknowledges the k-th line sent.
        for (k, a) in acks.iter().enumerate() {
            let lsn: u64 = a
                .parse()
                .unwrap_or_else(|_| panic!("{ctx}: stdout line {a:?} is not an LSN"));
            assert_eq!(
                lsn,
                start + k as u64,
                "{ctx}: acknowledgement {k} of the cycle (the log held {} records before)",
                start - 1
            );
        }
        let acked = acks.len() as u64;
        assert!(acked <= sent, "{ctx}: {acked} acks for {sent} lines sent");
        if segment_names(&self.dir).is_empty() {
            // Killed before the first writer created the log (or its first segment):
            // nothing can have been acknowledged.
            assert!(
                self.log.is_empty() && acks.is_empty(),
                "{ctx}: log vanished"
            );
            return;
        }

        let reader = WalReader::open(&self.dir).unwrap();
        let scan = reader.scan().unwrap();
        let problems: Vec<_> = scan.problems().cloned().collect();
        assert!(
            problems.len() <= 1 && problems.iter().all(|p| p.severity == Severity::TornTail),
            "{ctx}: a kill may leave at most a torn tail: {problems:?}"
        );
        let names = segment_names(&self.dir);
        let want: Vec<String> = (0..names.len() as u64)
            .map(walctl::segment::segment_name)
            .collect();
        assert_eq!(names, want, "{ctx}: segment ids are 0..=K without a hole");
        let tail = problems.first().map(|p| {
            assert_eq!(
                Some(&p.segment),
                names.last(),
                "{ctx}: torn tail not in the newest segment: {p}"
            );
            let mut bytes =
                fs::read(self.dir.join(&p.segment)).unwrap()[p.offset as usize..].to_vec();
            // Preallocated zeros after the torn bytes are unwritten space: a writer
            // cuts them without saving them.
            bytes.truncate(bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1));
            Tail {
                segment: p.segment.clone(),
                offset: p.offset,
                bytes,
            }
        });

        // (a), (b), (c): read everything back.
        let mut n = 0u64;
        for e in reader.entries_from(0).unwrap() {
            let e = match e {
                Ok(e) => e,
                Err(err) => {
                    assert!(
                        tail.is_some() && err.problem() == problems.first(),
                        "{ctx}: reading stopped at {err}"
                    );
                    break;
                }
            };
            n += 1;
            assert_eq!(e.lsn, n, "{ctx}: LSNs must be exactly 1..=N");
            assert!(!e.checkpoint, "{ctx}: LSN {n} is a checkpoint");
            if n < start {
                assert!(
                    e.data == self.log[n as usize - 1],
                    "{ctx}: LSN {n}, verified after an earlier kill, changed to {:?}",
                    String::from_utf8_lossy(&e.data)
                );
            } else {
                let idx = n - start;
                assert!(
                    idx < sent,
                    "{ctx}: LSN {n} would be line {idx} of the cycle, but only {sent} lines were sent"
                );
                assert!(
                    e.data == line(cycle, idx),
                    "{ctx}: LSN {n} holds {:?}, not line {idx} of cycle {cycle}",
                    String::from_utf8_lossy(&e.data)
                );
                self.log.push(e.data);
            }
        }
        assert_eq!(n, self.log.len() as u64);
        assert_eq!(scan.last_lsn, (n > 0).then_some(n), "{ctx}");
        assert!(
            n >= start - 1,
            "{ctx}: the log lost records: {n} left, {} before the cycle",
            start - 1
        );
        assert!(
            n >= start - 1 + acked,
            "{ctx}: {acked} acknowledged in this cycle (up to LSN {}), but the log ends at {n}",
            start - 1 + acked
        );
        self.acked_total += acked;

        // A torn tail is what a write cut short leaves: a proper prefix of the next
        // record, holding a line that was sent. Or the previous tail, not cut yet.
        if let Some(t) = &tail {
            if self.prev_tail.as_ref() != Some(t) {
                let idx = n + 1 - start;
                assert!(
                    idx < sent,
                    "{ctx}: torn tail {t:?} after LSN {n}, but no line {idx} was sent"
                );
                let mut enc = Vec::new();
                encode_record(&mut enc, n + 1, &line(cycle, idx), false);
                assert!(
                    t.bytes.len() < enc.len() && enc.starts_with(&t.bytes),
                    "{ctx}: torn tail at {} offset {} ({} bytes) is not a prefix of record {} \
                     being written",
                    t.segment,
                    t.offset,
                    t.bytes.len(),
                    n + 1
                );
                self.torn_by_kill += 1;
            }
            self.tails.push(t.clone());
        }

        // A tail that went away was saved to the quarantine first, byte for byte.
        if let Some(prev) = &self.prev_tail {
            if tail.as_ref() != Some(prev) {
                let saved = self.quarantined();
                assert!(
                    saved.iter().any(|(f, o, b, _)| (f, *o, b)
                        == (&prev.segment, prev.offset, &prev.bytes)),
                    "{ctx}: the torn tail at {} offset {} was cut without being saved",
                    prev.segment,
                    prev.offset
                );
                self.repairs_seen += 1;
            }
        }

        // (d) verify agrees.
        let code = verify_code(&self.dir);
        let want = if tail.is_some() { 3 } else { 0 };
        assert_eq!(code, Some(want), "{ctx}: walctl verify");
        self.prev_tail = tail;
    }

    /// Plants what a kill in the middle of writing record N+1 would leave: a proper
    /// prefix of it at the end of the newest segment. The bytes were never sent by
    /// anyone, never acknowledged: the next writer must save them and cut them.
    fn plant_tail(&mut self, cycle: u64, rng: &mut Rng) {
        let Some(newest) = segment_names(&self.dir).pop() else {
            return;
        };
        let mut enc = Vec::new();
        let data = format!(
            "planted-never-sent-{cycle}-{}",
            "x".repeat(rng.below(300) as usize)
        );
        encode_record(&mut enc, self.log.len() as u64 + 1, data.as_bytes(), false);
        let keep = rng.range(1, enc.len() as u64 - 1) as usize;
        let path = self.dir.join(&newest);
        // At the end of the last record: a killed writer may have left preallocated
        // zeros after it, which the torn write goes over (and stay after it).
        let scan = WalReader::open(&self.dir).unwrap().scan().unwrap();
        let offset = scan.segments.last().unwrap().valid_len;
        let mut planted = enc[..keep].to_vec();
        planted.truncate(planted.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1));
        if planted.is_empty() {
            return; // zeros only: nothing torn to see
        }
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &enc[..keep], offset).unwrap();
        f.sync_all().unwrap();
        let t = Tail {
            segment: newest,
            offset,
            bytes: planted,
        };
        self.tails.push(t.clone());
        self.prev_tail = Some(t);
    }

    /// At the end: every quarantine entry (and every half-made one) holds only bytes
    /// of a torn tail seen after a kill, past every acknowledged record.
    fn check_quarantine(&self) -> usize {
        let saved = self.quarantined();
        for (file, offset, bytes, policy) in &saved {
            assert_eq!(policy, "open", "only open-time repairs cut in this test");
            assert!(
                self.tails
                    .iter()
                    .any(|t| (&t.segment, t.offset, &t.bytes) == (file, *offset, bytes)),
                "quarantine holds {} bytes of {file} at offset {offset} that were never a \
                 torn tail",
                bytes.len()
            );
        }
        let qdir = self.dir.join(QUARANTINE_DIR);
        if let Ok(rd) = fs::read_dir(&qdir) {
            for e in rd {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".partial") {
                    continue;
                }
                // A writer killed while saving: its copies must be parts of a tail.
                for f in fs::read_dir(e.path()).unwrap() {
                    let f = f.unwrap();
                    let fname = f.file_name().to_string_lossy().into_owned();
                    let Some((seg, off)) = fname.split_once('@') else {
                        continue;
                    };
                    let off: u64 = off.parse().unwrap();
                    let bytes = fs::read(f.path()).unwrap();
                    assert!(
                        self.tails.iter().any(|t| t.segment == seg
                            && t.offset == off
                            && t.bytes.starts_with(&bytes)),
                        "{name}/{fname} holds bytes that were never a torn tail"
                    );
                }
            }
        }
        saved.len()
    }
}

#[test]
fn append_survives_sigkill_at_random_moments() {
    let seed = env_u64("WALCTL_CRASH_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32)
    });
    let cycles = env_u64("WALCTL_CRASH_CYCLES").unwrap_or(50);
    eprintln!("crash loop: WALCTL_CRASH_SEED={seed} WALCTL_CRASH_CYCLES={cycles}");
    let mut rng = Rng::new(seed);
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    let stderr = tmp.path().join("append.stderr");
    let mut ck = Checker {
        dir: dir.clone(),
        log: Vec::new(),
        prev_tail: None,
        tails: Vec::new(),
        acked_total: 0,
        repairs_seen: 0,
        torn_by_kill: 0,
    };
    let mut modes = [0u32; 4];
    let began = Instant::now();

    for cycle in 0..cycles {
        if ck.prev_tail.is_none() && rng.below(5) == 0 {
            ck.plant_tail(cycle, &mut rng);
        }
        let mut child = spawn_append(&dir, &stderr);
        let progress = Arc::new(Progress::default());
        let (acks_rx, reader) = read_acks(child.stdout.take().unwrap(), progress.clone());
        let stdin = child.stdin.take().unwrap();
        let feed_rng = Rng::new(rng.next_u64());
        let window = [1, 3, 8, 32, 128, 512][rng.below(6) as usize];
        let feeder = thread::spawn(move || feed(stdin, cycle, feed_rng, window, &progress));

        // When to kill: during start-up and open (torn-tail repair included), or after
        // a few, some, or many acknowledgements, plus a random delay.
        let mode = match rng.below(10) {
            0 | 1 => 0,
            2..=4 => 1,
            5..=8 => 2,
            _ => 3,
        };
        modes[mode] += 1;
        let mut acks = Vec::new();
        let mut died = false;
        if mode == 0 {
            thread::sleep(Duration::from_micros(rng.below(15_000)));
        } else {
            let want = match mode {
                1 => rng.range(1, 10),
                2 => rng.range(10, 200),
                _ => rng.range(200, 1500),
            };
            while (acks.len() as u64) < want {
                match acks_rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(a) => acks.push(a),
                    Err(RecvTimeoutError::Disconnected) => {
                        died = true;
                        break;
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "seed {seed} cycle {cycle}: no acknowledgement for 60 s after {}; \
                             stderr: {}",
                            acks.len(),
                            fs::read_to_string(&stderr).unwrap_or_default()
                        );
                    }
                }
            }
            let delay = rng.below(1500);
            if delay > 0 && !died {
                thread::sleep(Duration::from_micros(delay));
            }
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        reader.join().unwrap();
        acks.extend(acks_rx.iter());
        let sent = feeder.join().unwrap();
        let ctx = format!(
            "seed {seed} cycle {cycle} (kill mode {mode}, window {window}, {} acks, {sent} lines \
             sent)",
            acks.len()
        );
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{ctx}: append ended by itself ({status}) before the kill; stderr: {}",
            fs::read_to_string(&stderr).unwrap_or_default()
        );
        let err = fs::read_to_string(&stderr).unwrap_or_default();
        assert!(
            !err.contains("walctl: error"),
            "{ctx}: append reported an error before the kill: {err}"
        );
        ck.after_kill(cycle, sent, &acks, &ctx);
    }

    // A last writer, not killed, continues at N + 1 and leaves a clean log.
    let n = ck.log.len() as u64;
    let out = Command::new(cargo_bin("walctl"))
        .args([
            "append",
            "--max-segment-size",
            "4096",
            "--max-segments",
            "0",
            "--dir",
        ])
        .arg(&dir)
        .args(["final one", "final two"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "seed {seed}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n{}\n", n + 1, n + 2),
        "seed {seed}"
    );
    ck.log.push(b"final one".to_vec());
    ck.log.push(b"final two".to_vec());
    assert_eq!(verify_code(&dir), Some(0), "seed {seed}");
    if let Some(prev) = &ck.prev_tail {
        assert!(
            ck.quarantined()
                .iter()
                .any(|(f, o, b, _)| (f, *o, b) == (&prev.segment, prev.offset, &prev.bytes)),
            "seed {seed}: the last torn tail was cut without being saved"
        );
        ck.repairs_seen += 1;
    }

    // The whole log once more, through `walctl dump --json`.
    let out = Command::new(cargo_bin("walctl"))
        .args(["dump", "--json", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "seed {seed}");
    let dumped: Vec<(u64, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["lsn"].as_u64().unwrap(),
                v["data"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(u64, String)> = ck
        .log
        .iter()
        .enumerate()
        .map(|(i, d)| (i as u64 + 1, String::from_utf8(d.clone()).unwrap()))
        .collect();
    assert!(
        dumped == want,
        "seed {seed}: dump --json differs from the log"
    );

    let entries = ck.check_quarantine();
    assert!(
        entries >= ck.repairs_seen,
        "seed {seed}: {} torn tails were cut but only {entries} quarantine entries exist",
        ck.repairs_seen
    );
    eprintln!(
        "crash loop: {cycles} kills in {:.1?} (modes {modes:?}), {} records, {} acknowledged, \
         {} torn tails seen ({} left by a kill), {} cut at open, {} segments",
        began.elapsed(),
        ck.log.len(),
        ck.acked_total,
        ck.tails.len(),
        ck.torn_by_kill,
        ck.repairs_seen,
        segment_names(&dir).len()
    );
}
