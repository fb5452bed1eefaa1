//! The scan workloads: one generated log read in process with
//! [`scan_log`](walctl::scan::scan_log), and by the child processes
//! `walctl verify --quiet` and `walctl dump --json` (wall time and peak resident
//! memory measured with `wait4`), beside plain 1 MiB `read()`s of the same files.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use walctl::scan::{scan_log, ScanOptions};
use walctl::segment::list_segments;
use walctl::storage::FileStorage;
use walctl::writer::{SyncPolicy, SyncStats, Wal, WalOptions};
use walctl::{Error, Result};

use super::append::Payload;
use super::model::*;
use crate::cli::sys::{self, evict, Ended};

impl Bench<'_, '_> {
    pub(super) fn make_scan_log(&mut self) -> Result<ScanLog> {
        self.step("writing the scan log");
        let dir = self.fresh_dir("scan-log")?;
        let payload = Payload::new(self.cfg.scan_entry_size);
        let wal = Wal::open(
            &dir,
            WalOptions::default()
                .max_segment_size(self.cfg.segment_size)
                .max_segments(0)
                .sync(SyncPolicy::Never),
        )?;
        let per_record = self.cfg.scan_entry_size as u64 + 16;
        let mut written = 0u64;
        let mut i = 0usize;
        let mut batch: Vec<&[u8]> = Vec::with_capacity(256);
        while written < self.cfg.scan_size {
            batch.clear();
            for _ in 0..256 {
                batch.push(payload.get(i));
                i += 1;
                written += per_record;
                if written >= self.cfg.scan_size {
                    break;
                }
            }
            wal.append_batch(&batch)?;
        }
        wal.close()?;
        drop(wal);
        let storage: Arc<FileStorage> =
            Arc::new(FileStorage::open(&dir).map_err(io_err("open", &dir))?);
        let files = list_segments(storage.as_ref())?
            .into_iter()
            .map(|s| dir.join(s.name))
            .collect();
        let report = scan_log(storage, ScanOptions::default(), |_| {})?;
        if let Some(p) = report.problems().next() {
            return Err(Error::damaged(p.clone()));
        }
        Ok(ScanLog {
            dir,
            files,
            records: report.records,
            bytes: report.bytes,
        })
    }

    /// Warms (or, when `cold`, evicts) the scan log before a measured pass.
    pub(super) fn prepare(&self, log: &ScanLog, cold: bool) -> Result<()> {
        if cold {
            for f in &log.files {
                evict(f);
            }
        } else {
            plain_read(&log.files)?;
        }
        Ok(())
    }

    pub(super) fn scan_workload(
        &mut self,
        w: Workload,
        log: &ScanLog,
        cold: bool,
    ) -> Result<WorkloadResult> {
        let name = w.name();
        let cache = if cold {
            "from disk (evicted from the page cache)"
        } else {
            "from the page cache"
        };
        let (mut ours, mut base) = (Sum::default(), Sum::default());
        let storage: Arc<FileStorage> =
            Arc::new(FileStorage::open(&log.dir).map_err(io_err("open", &log.dir))?);
        for round in 0..self.rounds {
            let r = round + 1;
            for walctl_side in sides_in_order(round) {
                self.prepare(log, cold)?;
                if walctl_side {
                    self.step(&format!("{name}: walctl, round {r}"));
                    ours.add(scan_side(storage.clone(), log)?);
                } else {
                    self.step(&format!("{name}: baseline, round {r}"));
                    base.add(timed_plain_read(log)?);
                }
            }
        }
        let short = format!(
            "{name}: {} MiB, {} B",
            log.bytes >> 20,
            self.cfg.scan_entry_size
        );
        let label = format!(
            "in-process scan_log (decode, CRC, LSN checks; a log this large is checked in two halves on two threads) of {} MiB, {} B entries, {cache}",
            log.bytes >> 20,
            self.cfg.scan_entry_size
        );
        Ok(against_plain_read(w, label, short, &ours, &base))
    }

    pub(super) fn child_workload(
        &mut self,
        w: Workload,
        log: &ScanLog,
        args: &[&str],
        what: &str,
    ) -> Result<WorkloadResult> {
        let label = format!(
            "{what} of {} MiB, {} B entries",
            log.bytes >> 20,
            self.cfg.scan_entry_size
        );
        let short = format!(
            "{}: {} MiB, {} B",
            w.name(),
            log.bytes >> 20,
            self.cfg.scan_entry_size
        );
        let unavailable = |reason: String| WorkloadResult {
            workload: w.name(),
            label: label.clone(),
            short: short.clone(),
            status: "unavailable",
            reason: Some(reason),
            walctl: None,
            baseline_what: "read() 1 MiB at a time".into(),
            baseline: None,
            ratio: None,
            round_ratios: Vec::new(),
            ceiling: None,
            prezeroed: None,
        };
        let end = self.done + 2 * self.rounds as u64;
        let Some(exe) = self.cfg.exe.clone() else {
            self.done = end;
            return Ok(unavailable("no walctl binary to run".into()));
        };
        let (mut ours, mut base) = (Sum::default(), Sum::default());
        for round in 0..self.rounds {
            let r = round + 1;
            for walctl_side in sides_in_order(round) {
                self.prepare(log, self.cfg.cold)?;
                if walctl_side {
                    self.step(&format!("{}: walctl, round {r}", w.name()));
                    match run_child(&exe, args, &self.cfg.work_dir)? {
                        Ok(c) => ours.add(Side {
                            entries: log.records,
                            bytes: log.bytes,
                            secs: c.secs,
                            hist: None,
                            rss_kib: Some(c.max_rss_kib),
                            syncs: SyncStats::default(),
                        }),
                        Err(reason) => {
                            self.done = end;
                            return Ok(unavailable(reason));
                        }
                    }
                } else {
                    self.step(&format!("{}: baseline, round {r}", w.name()));
                    base.add(timed_plain_read(log)?);
                }
            }
        }
        Ok(against_plain_read(w, label, short, &ours, &base))
    }
}

/// One walctl side of the scan workload: `scan_log` over the whole log, which must
/// be clean and hold what was written.
fn scan_side(storage: Arc<FileStorage>, log: &ScanLog) -> Result<Side> {
    let start = Instant::now();
    let report = scan_log(storage, ScanOptions::default(), |_| {})?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(p) = report.problems().next() {
        return Err(Error::scan(p.clone()));
    }
    if report.records != log.records {
        return Err(Error::BadSegment {
            path: log.dir.clone(),
            reason: format!(
                "the benchmark log changed: {} records, {} written",
                report.records, log.records
            ),
        });
    }
    Ok(Side {
        entries: report.records,
        bytes: report.bytes,
        secs,
        hist: None,
        rss_kib: None,
        syncs: SyncStats::default(),
    })
}

/// The result of a read workload, measured against reading the same files 1 MiB at
/// a time.
fn against_plain_read(
    w: Workload,
    label: String,
    short: String,
    ours: &Sum,
    base: &Sum,
) -> WorkloadResult {
    let rr = round_ratios(ours, base);
    let (ours, base) = (ours.measure(), base.measure());
    WorkloadResult {
        workload: w.name(),
        label,
        short,
        status: "ok",
        reason: None,
        ratio: ratio(&ours, &base),
        round_ratios: rr,
        walctl: Some(ours),
        baseline_what: "read() 1 MiB at a time".into(),
        baseline: Some(base),
        ceiling: None,
        prezeroed: None,
    }
}

pub(super) struct ScanLog {
    pub(super) dir: PathBuf,
    pub(super) files: Vec<PathBuf>,
    pub(super) records: u64,
    pub(super) bytes: u64,
}

/// Reads every file to the end with 1 MiB `read()`s; returns the bytes read.
pub(super) fn plain_read(files: &[PathBuf]) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    for f in files {
        let mut file = File::open(f).map_err(io_err("open", f))?;
        loop {
            let n = file.read(&mut buf).map_err(io_err("read", f))?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok(total)
}

pub(super) fn timed_plain_read(log: &ScanLog) -> Result<Side> {
    let start = Instant::now();
    let bytes = plain_read(&log.files)?;
    Ok(Side {
        entries: log.records,
        bytes,
        secs: start.elapsed().as_secs_f64(),
        hist: None,
        rss_kib: None,
        syncs: SyncStats::default(),
    })
}

#[derive(Debug)]
pub(super) struct ChildRun {
    pub(super) secs: f64,
    pub(super) max_rss_kib: u64,
}

/// Runs `exe args` with stdout to /dev/null, waits with `wait4` for its resource
/// usage. `Ok(Err(reason))` when it could not run or did not exit 0.
pub(super) fn run_child(
    exe: &Path,
    args: &[&str],
    work: &Path,
) -> Result<std::result::Result<ChildRun, String>> {
    let err_path = work.join("child-stderr.txt");
    let err_file = File::create(&err_path).map_err(io_err("create", &err_path))?;
    let start = Instant::now();
    let child = match Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = fs::remove_file(&err_path);
            return Ok(Err(format!("could not start {}: {e}", exe.display())));
        }
    };
    let exit = sys::wait_with_rusage(&child).map_err(|e| Error::io("wait for", exe, e))?;
    let secs = start.elapsed().as_secs_f64();
    // The child is reaped; std's handle must not wait for it again.
    drop(child);
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&err_path);
    if exit.ended != Ended::Exited(0) {
        let how = match exit.ended {
            Ended::Exited(code) => format!("exit status {code}"),
            Ended::Killed(signal) => format!("killed by signal {signal}"),
        };
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let cmd = format!("walctl {}", args.first().copied().unwrap_or(""));
        return Ok(Err(if first.is_empty() {
            format!("`{cmd}` failed ({how})")
        } else {
            format!("`{cmd}` failed ({how}): {}", first.trim())
        }));
    }
    Ok(Ok(ChildRun {
        secs,
        max_rss_kib: exit.max_rss_kib,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_runs_report_time_memory_and_failures() {
        let work = tempfile::tempdir().unwrap();
        let sh = Path::new("/bin/sh");
        let ok = run_child(sh, &["-c", "exit 0"], work.path())
            .unwrap()
            .unwrap();
        assert!(ok.secs > 0.0);
        assert!(ok.max_rss_kib > 0);
        let err = run_child(sh, &["-c", "echo boom >&2; exit 3"], work.path())
            .unwrap()
            .unwrap_err();
        assert!(
            err.contains("exit status 3") && err.contains("boom"),
            "{err}"
        );
        let err = run_child(sh, &["-c", "kill -9 $$"], work.path())
            .unwrap()
            .unwrap_err();
        assert!(err.contains("signal 9"), "{err}");
        let missing = Path::new("/nonexistent/walctl");
        let err = run_child(missing, &[], work.path()).unwrap().unwrap_err();
        assert!(err.contains("could not start"), "{err}");
        // The stderr capture is cleaned up.
        assert_eq!(fs::read_dir(work.path()).unwrap().count(), 0);
    }
}
