//! A `walctl dump --follow --json` child whose stdout lines arrive on a channel, for
//! the tests that watch a log grow.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
    reaped: bool,
}

impl Drop for Follower {
    /// A failed test must not leave a follower running forever.
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Follower {
    /// `walctl dump --follow --json --dir DIR EXTRA...`.
    pub fn start(dir: &Path, extra: &[&str]) -> Follower {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("walctl"))
            .args(["dump", "--follow", "--json", "--dir"])
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        Follower {
            child,
            lines,
            reaped: false,
        }
    }

    /// The next `n` records, waiting up to 20 s for them (a hang guard, not a timing
    /// assertion).
    pub fn records(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        (0..n)
            .map(|i| {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = self
                    .lines
                    .recv_timeout(left)
                    .unwrap_or_else(|e| panic!("record {i} of {n} never came: {e}"));
                serde_json::from_str(&line).unwrap()
            })
            .collect()
    }

    /// Asserts nothing is printed for `d`.
    pub fn nothing_for(&self, d: Duration) {
        match self.lines.recv_timeout(d) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            other => panic!("unexpected output: {other:?}"),
        }
    }

    /// Reads records until LSN `last` arrives (a 60 s hang guard), then SIGTERM;
    /// returns every record printed (also any after `last`), the exit status and
    /// stderr.
    pub fn collect_until(mut self, last: u64) -> (Vec<Value>, Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(e) => {
                    let (_, stderr) = self.kill_and_finish();
                    panic!(
                        "follower: LSN {last} never came ({e}); got {} records; {stderr}",
                        seen.len()
                    );
                }
            };
            let v: Value = serde_json::from_str(&line).unwrap();
            let lsn = v["lsn"].as_u64().unwrap();
            seen.push(v);
            if lsn >= last {
                break;
            }
        }
        self.sigterm();
        let status = self.child_wait();
        // Whatever it printed before it ended.
        seen.extend(
            self.lines
                .iter()
                .map(|l| serde_json::from_str::<Value>(&l).unwrap()),
        );
        let (code, stderr) = self.finish_with(status);
        (seen, code, stderr)
    }

    /// SIGTERM, then the exit status and stderr.
    pub fn terminate(self) -> (Option<i32>, String) {
        self.sigterm();
        self.finish()
    }

    /// Waits for the follower to end by itself; its exit status and stderr.
    pub fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child_wait();
        self.finish_with(status)
    }

    fn sigterm(&self) {
        // SAFETY: plain kill(2) of our own child.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0);
    }

    fn child_wait(&mut self) -> std::process::ExitStatus {
        let status = self.child.wait().unwrap();
        self.reaped = true;
        status
    }

    fn kill_and_finish(mut self) -> (Option<i32>, String) {
        let _ = self.child.kill();
        self.finish()
    }

    fn finish_with(mut self, status: std::process::ExitStatus) -> (Option<i32>, String) {
        let stderr = super::read_stderr(&mut self.child);
        self.reaped = true;
        (status.code(), stderr)
    }
}
