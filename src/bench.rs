//! The workloads behind `walctl bench`: every walctl number is measured side by side
//! with a baseline that does the same job with plain system calls on the same disk,
//! in the same run, in alternating rounds (baseline first in even rounds, walctl first
//! in odd ones) so that drift in the machine hits both alike.
//!
//! - Append workloads run [`Wal`] with the chosen sync policy, writer threads and batch
//!   size. Their baseline writes the very same encoded records with `write()` (one
//!   call per record or batch) and, for a durable policy, `fdatasync()` after each.
//! - The scan workloads read one generated log: in process with [`scan_log`], and as
//!   child processes `walctl verify --quiet` and `walctl dump --json` (whose wall time
//!   and peak resident memory are measured with `wait4`). Their baseline reads the same
//!   files with plain 1 MiB `read()`s.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::codec::encode_record;
use crate::error::{Error, Result};
use crate::scan::{scan_log, ScanOptions};
use crate::segment::list_segments;
use crate::storage::FileStorage;
use crate::writer::{SyncPolicy, SyncStats, Wal, WalOptions};

/// One benchmark workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Durable appends (sync always) from one writer.
    Durable,
    /// Durable appends from 16 writer threads sharing one log (group commit).
    Concurrent,
    /// Buffered appends (sync never) from one writer.
    Buffered,
    /// Durable `append_batch` calls.
    Batch,
    /// In-process full-log scan with CRC and LSN checks ([`scan_log`]), log in the
    /// page cache.
    Scan,
    /// The same scan with the log evicted from the page cache first: disk speed.
    ScanCold,
    /// `walctl verify --quiet` as a child process.
    Verify,
    /// `walctl dump --json` to /dev/null as a child process.
    Dump,
}

impl Workload {
    /// Every workload, in the order the default suite runs them.
    pub const ALL: [Workload; 8] = [
        Workload::Durable,
        Workload::Concurrent,
        Workload::Batch,
        Workload::Buffered,
        Workload::Scan,
        Workload::ScanCold,
        Workload::Verify,
        Workload::Dump,
    ];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Durable => "durable",
            Workload::Concurrent => "concurrent",
            Workload::Buffered => "buffered",
            Workload::Batch => "batch",
            Workload::Scan => "scan",
            Workload::ScanCold => "scan-cold",
            Workload::Verify => "verify",
            Workload::Dump => "dump",
        }
    }

    /// The workload called `name`.
    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    fn is_append(self) -> bool {
        matches!(
            self,
            Workload::Durable | Workload::Concurrent | Workload::Buffered | Workload::Batch
        )
    }

    /// Default (sync, writers, batch) of an append workload.
    fn append_defaults(self) -> (SyncPolicy, usize, usize) {
        match self {
            Workload::Concurrent => (SyncPolicy::Always, 16, 1),
            Workload::Buffered => (SyncPolicy::Never, 1, 1),
            Workload::Batch => (SyncPolicy::Always, 1, 100),
            _ => (SyncPolicy::Always, 1, 1),
        }
    }
}

/// When one measured run (one side of one round) stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many entries (shared out between the writers).
    Count(u64),
    /// After this much time.
    Duration(Duration),
}

/// What to run and where. `None` knobs take each workload's default.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory the workloads create their files in (a fresh, empty one).
    pub work_dir: PathBuf,
    /// Payload bytes per appended entry. Default 100.
    pub entry_size: Option<usize>,
    /// How long each side of each round of an append workload runs. Default 0.75 s.
    pub stop: Option<Stop>,
    /// Sync policy of every append workload.
    pub sync: Option<SyncPolicy>,
    /// Writer threads of every append workload.
    pub writers: Option<usize>,
    /// Entries per append call of every append workload.
    pub batch: Option<usize>,
    /// Segment size of the logs written (the library's default is 4 MiB).
    pub segment_size: u64,
    /// Size of the log the scan workloads read.
    pub scan_size: u64,
    /// Payload bytes per entry of that log.
    pub scan_entry_size: usize,
    /// Alternating rounds per workload (each runs walctl and its baseline once).
    pub rounds: usize,
    /// Evict the scan log from the page cache before every scan pass (disk-bound
    /// numbers) instead of warming it (CPU-bound numbers).
    pub cold: bool,
    /// Keep the files each run wrote.
    pub keep: bool,
    /// The walctl binary for the child-process workloads.
    pub exe: Option<PathBuf>,
}

impl Config {
    /// Defaults for a run in `work_dir`.
    pub fn new(work_dir: impl Into<PathBuf>) -> Config {
        Config {
            work_dir: work_dir.into(),
            entry_size: None,
            stop: None,
            sync: None,
            writers: None,
            batch: None,
            segment_size: WalOptions::default().max_segment_size,
            scan_size: 256 << 20,
            scan_entry_size: 256,
            rounds: 4,
            cold: false,
            keep: false,
            exe: None,
        }
    }
}

/// Latency percentiles of single calls, in nanoseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Slowest call.
    pub max_ns: u64,
    /// Calls measured.
    pub calls: u64,
}

/// One side's numbers, summed over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    /// Entries written or read.
    pub entries: u64,
    /// Bytes on disk written or read.
    pub bytes: u64,
    /// Wall time in seconds.
    pub secs: f64,
    /// Entries per second.
    pub entries_per_sec: f64,
    /// Megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// Per-call latency (append workloads).
    pub latency: Option<Latency>,
    /// Peak resident memory of the child process in KiB (child workloads).
    pub max_rss_kib: Option<u64>,
    /// walctl's data fsyncs (append workloads that sync).
    pub fsyncs: Option<FsyncMeasure>,
}

/// What walctl's fsyncs did in an append workload: group commit shows as many
/// records per fsync.
#[derive(Debug, Clone, Serialize)]
pub struct FsyncMeasure {
    /// fdatasync calls.
    pub fsyncs: u64,
    /// Records made durable per fdatasync, on average.
    pub records_per_fsync: f64,
    /// Mean time of one group commit's write + fdatasync, in microseconds.
    pub mean_us: f64,
}

/// The outcome of one workload.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadResult {
    /// Workload name.
    pub workload: &'static str,
    /// What exactly ran.
    pub label: String,
    /// The same, in a few words (a table cell).
    pub short: String,
    /// "ok", or "unavailable" when the child command failed.
    pub status: &'static str,
    /// Why it is unavailable.
    pub reason: Option<String>,
    /// walctl's numbers.
    pub walctl: Option<Measure>,
    /// What the baseline does.
    pub baseline_what: String,
    /// The baseline's numbers.
    pub baseline: Option<Measure>,
    /// walctl entries/s ÷ baseline entries/s, over all rounds.
    pub ratio: Option<f64>,
    /// The same ratio round by round: its spread is the noise of this machine.
    pub round_ratios: Vec<f64>,
    /// For non-durable appends: the same bytes encoded into a 1 MiB buffer and written
    /// with one `write()` per MiB, no locks and no rotation: the most a single-threaded
    /// writer could get from this page cache.
    pub ceiling: Option<Measure>,
    /// For durable appends: the baseline's records written into a file pre-filled
    /// with fsynced zeros (positioned writes, one fdatasync per commit, no change of
    /// size or extents): the most a durable writer can get from this disk.
    pub prezeroed: Option<Measure>,
}

/// The machine and file system a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    /// Logical CPUs available.
    pub cpus: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// File system type of the work directory.
    pub filesystem: String,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where it ran.
    pub machine: MachineInfo,
    /// The work directory.
    pub dir: String,
    /// Rounds per workload.
    pub rounds: usize,
    /// Per workload, in run order.
    pub results: Vec<WorkloadResult>,
    /// Concurrent durable rate ÷ single-writer durable rate, when both ran.
    pub group_commit_gain: Option<f64>,
}

/// Progress: steps done, steps in total, what runs now.
pub type ProgressFn<'a> = dyn FnMut(u64, u64, &str) + 'a;

/// Runs `workloads` (in [`Workload::ALL`] order) and measures them.
pub fn run(cfg: &Config, workloads: &[Workload], progress: &mut ProgressFn<'_>) -> Result<Report> {
    let mut selected: Vec<Workload> = Workload::ALL
        .into_iter()
        .filter(|w| workloads.contains(w))
        .collect();
    selected.dedup();
    let rounds = cfg.rounds.max(1);
    let scanning = selected.iter().any(|w| !w.is_append());
    let total = selected.len() as u64 * 2 * rounds as u64 + scanning as u64;
    let mut b = Bench {
        cfg,
        rounds,
        done: 0,
        total,
        progress,
    };
    let mut results = Vec::new();
    let mut scan_log_info: Option<ScanLog> = None;
    for w in selected {
        let res = if w.is_append() {
            b.append_workload(w)?
        } else {
            if scan_log_info.is_none() {
                scan_log_info = Some(b.make_scan_log()?);
            }
            let log = scan_log_info.as_ref().expect("made above");
            match w {
                Workload::Scan => b.scan_workload(w, log, cfg.cold)?,
                Workload::ScanCold => b.scan_workload(w, log, true)?,
                Workload::Verify => {
                    let dir = log.dir.display().to_string();
                    b.child_workload(
                        w,
                        log,
                        &["verify", "--quiet", "--dir", &dir],
                        "walctl verify --quiet (child process)",
                    )?
                }
                _ => {
                    let dir = log.dir.display().to_string();
                    b.child_workload(
                        w,
                        log,
                        &["dump", "--json", "--dir", &dir],
                        "walctl dump --json > /dev/null (child process)",
                    )?
                }
            }
        };
        results.push(res);
    }
    if let Some(log) = scan_log_info {
        if !cfg.keep {
            let _ = fs::remove_dir_all(&log.dir);
        }
    }
    let rate = |name: &str| {
        results
            .iter()
            .find(|r| r.workload == name)
            .and_then(|r| r.walctl.as_ref())
            .map(|m| m.entries_per_sec)
    };
    let group_commit_gain = match (rate("concurrent"), rate("durable")) {
        (Some(c), Some(d)) if d > 0.0 && cfg.sync.is_none_or(|s| s == SyncPolicy::Always) => {
            Some(c / d)
        }
        _ => None,
    };
    Ok(Report {
        machine: machine_info(&cfg.work_dir),
        dir: cfg.work_dir.display().to_string(),
        rounds,
        results,
        group_commit_gain,
    })
}

struct Bench<'a, 'p> {
    cfg: &'a Config,
    rounds: usize,
    done: u64,
    total: u64,
    progress: &'a mut ProgressFn<'p>,
}

/// The parameters one append workload runs with.
#[derive(Debug, Clone, Copy)]
struct AppendParams {
    sync: SyncPolicy,
    writers: usize,
    batch: usize,
    entry_size: usize,
    segment_size: u64,
}

/// One side of one round.
struct Side {
    entries: u64,
    bytes: u64,
    secs: f64,
    hist: Option<Histogram>,
    rss_kib: Option<u64>,
    syncs: SyncStats,
}

#[derive(Default)]
struct Sum {
    entries: u64,
    bytes: u64,
    secs: f64,
    hist: Option<Histogram>,
    rss_kib: Option<u64>,
    /// Entries per second of each side added.
    rates: Vec<f64>,
    syncs: SyncStats,
}

impl Sum {
    fn add(&mut self, s: Side) {
        self.rates.push(s.entries as f64 / s.secs.max(1e-9));
        self.entries += s.entries;
        self.bytes += s.bytes;
        self.secs += s.secs;
        if let Some(h) = s.hist {
            match &mut self.hist {
                Some(mine) => mine.merge(&h),
                None => self.hist = Some(h),
            }
        }
        if let Some(r) = s.rss_kib {
            self.rss_kib = Some(self.rss_kib.map_or(r, |m| m.max(r)));
        }
        self.syncs.fsyncs += s.syncs.fsyncs;
        self.syncs.records += s.syncs.records;
        self.syncs.time += s.syncs.time;
    }

    fn measure(&self) -> Measure {
        let secs = self.secs.max(1e-9);
        Measure {
            entries: self.entries,
            bytes: self.bytes,
            secs: self.secs,
            entries_per_sec: self.entries as f64 / secs,
            mb_per_sec: self.bytes as f64 / secs / 1e6,
            latency: self.hist.as_ref().map(Histogram::latency),
            max_rss_kib: self.rss_kib,
            fsyncs: (self.syncs.fsyncs > 0).then(|| {
                let n = self.syncs.fsyncs as f64;
                FsyncMeasure {
                    fsyncs: self.syncs.fsyncs,
                    records_per_fsync: self.syncs.records as f64 / n,
                    mean_us: self.syncs.time.as_secs_f64() * 1e6 / n,
                }
            }),
        }
    }
}

fn sync_name(s: SyncPolicy) -> String {
    match s {
        SyncPolicy::Always => "always".into(),
        SyncPolicy::Never => "never".into(),
        SyncPolicy::Interval(d) => format!("interval {}", humantime::format_duration(d)),
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

impl Bench<'_, '_> {
    fn step(&mut self, what: &str) {
        (self.progress)(self.done, self.total, what);
        self.done += 1;
    }

    fn fresh_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.cfg.work_dir.join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
        }
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok(dir)
    }

    /// Drops a side's files (unless kept) and writes back whatever is left dirty, so
    /// that the next measurement starts from a quiet disk.
    fn settle(&self, dir: &Path) {
        if !self.cfg.keep {
            let _ = fs::remove_dir_all(dir);
        }
        syncfs(&self.cfg.work_dir);
    }

    fn append_params(&self, w: Workload) -> AppendParams {
        let (sync, writers, batch) = w.append_defaults();
        AppendParams {
            sync: self.cfg.sync.unwrap_or(sync),
            writers: self.cfg.writers.unwrap_or(writers).max(1),
            batch: self.cfg.batch.unwrap_or(batch).max(1),
            entry_size: self.cfg.entry_size.unwrap_or(100),
            segment_size: self.cfg.segment_size,
        }
    }

    fn append_workload(&mut self, w: Workload) -> Result<WorkloadResult> {
        let p = self.append_params(w);
        let stop = self
            .cfg
            .stop
            .unwrap_or(Stop::Duration(Duration::from_millis(750)));
        let payload = Payload::new(p.entry_size);
        let label = format!(
            "{} append: sync {}, {} writer{}, {}{} B entries",
            w.name(),
            sync_name(p.sync),
            p.writers,
            if p.writers == 1 { "" } else { "s" },
            if p.batch > 1 {
                format!("batches of {}, ", p.batch)
            } else {
                String::new()
            },
            p.entry_size
        );
        let short = format!(
            "{}: {}, {}w{}, {} B",
            w.name(),
            sync_name(p.sync),
            p.writers,
            if p.batch > 1 {
                format!(", x{}", p.batch)
            } else {
                String::new()
            },
            p.entry_size
        );
        let durable = p.sync == SyncPolicy::Always;
        let per = if p.batch > 1 { "batch" } else { "record" };
        let threads = if p.writers > 1 {
            format!(", {} threads", p.writers)
        } else {
            String::new()
        };
        let baseline_what = match p.sync {
            SyncPolicy::Always => format!("write()+fdatasync() per {per}{threads}"),
            SyncPolicy::Never => format!("write() per {per}{threads}"),
            SyncPolicy::Interval(_) => {
                format!("write() per {per}, fdatasync() per interval{threads}")
            }
        };
        let want_ceiling = !durable && p.writers == 1;
        let (mut ours, mut base, mut ceil) = (Sum::default(), Sum::default(), Sum::default());
        let mut zeroed = Sum::default();
        for round in 0..self.rounds {
            let r = round + 1;
            let order: [bool; 2] = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for walctl_side in order {
                if walctl_side {
                    self.step(&format!("{}: walctl, round {r}", w.name()));
                    let dir = self.fresh_dir(&format!("{}-r{r}-walctl", w.name()))?;
                    let side = walctl_append(&dir, &p, stop, &payload)?;
                    let entries = side.entries;
                    ours.add(side);
                    self.settle(&dir);
                    if want_ceiling {
                        let dir = self.fresh_dir(&format!("{}-r{r}-ceiling", w.name()))?;
                        ceil.add(ceiling_append(&dir, &p, entries, &payload)?);
                        self.settle(&dir);
                    }
                } else {
                    self.step(&format!("{}: baseline, round {r}", w.name()));
                    let dir = self.fresh_dir(&format!("{}-r{r}-baseline", w.name()))?;
                    base.add(baseline_append(&dir, &p, stop, &payload)?);
                    self.settle(&dir);
                    if durable {
                        self.step(&format!("{}: pre-zeroed baseline, round {r}", w.name()));
                        let dir = self.fresh_dir(&format!("{}-r{r}-prezeroed", w.name()))?;
                        zeroed.add(prezeroed_append(&dir, &p, stop, &payload)?);
                        self.settle(&dir);
                    }
                }
            }
        }
        let rr = round_ratios(&ours, &base);
        let (ours, base) = (ours.measure(), base.measure());
        Ok(WorkloadResult {
            workload: w.name(),
            label,
            short,
            status: "ok",
            reason: None,
            ratio: ratio(&ours, &base),
            round_ratios: rr,
            walctl: Some(ours),
            baseline_what,
            baseline: Some(base),
            ceiling: want_ceiling.then(|| ceil.measure()),
            prezeroed: durable.then(|| zeroed.measure()),
        })
    }

    fn make_scan_log(&mut self) -> Result<ScanLog> {
        self.step("writing the scan log");
        let dir = self.fresh_dir("scan-log")?;
        let payload = Payload::new(self.cfg.scan_entry_size);
        let wal = Wal::open(
            &dir,
            WalOptions {
                max_segment_size: self.cfg.segment_size,
                max_segments: 0,
                sync: SyncPolicy::Never,
                ..Default::default()
            },
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
            return Err(Error::Damaged {
                problem: Box::new(p.clone()),
            });
        }
        Ok(ScanLog {
            dir,
            files,
            records: report.records,
            bytes: report.bytes,
        })
    }

    /// Warms (or, when `cold`, evicts) the scan log before a measured pass.
    fn prepare(&self, log: &ScanLog, cold: bool) -> Result<()> {
        if cold {
            for f in &log.files {
                evict(f);
            }
        } else {
            plain_read(&log.files)?;
        }
        Ok(())
    }

    fn scan_workload(&mut self, w: Workload, log: &ScanLog, cold: bool) -> Result<WorkloadResult> {
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
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for walctl_side in order {
                self.prepare(log, cold)?;
                if walctl_side {
                    self.step(&format!("{name}: walctl, round {r}"));
                    let start = Instant::now();
                    let report = scan_log(storage.clone(), ScanOptions::default(), |_| {})?;
                    let secs = start.elapsed().as_secs_f64();
                    if let Some(p) = report.problems().next() {
                        return Err(Error::Scan {
                            problem: Box::new(p.clone()),
                        });
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
                    ours.add(Side {
                        entries: report.records,
                        bytes: report.bytes,
                        secs,
                        hist: None,
                        rss_kib: None,
                        syncs: SyncStats::default(),
                    });
                } else {
                    self.step(&format!("{name}: baseline, round {r}"));
                    base.add(timed_plain_read(log)?);
                }
            }
        }
        let rr = round_ratios(&ours, &base);
        let (ours, base) = (ours.measure(), base.measure());
        Ok(WorkloadResult {
            workload: name,
            short: format!(
                "{name}: {} MiB, {} B",
                log.bytes >> 20,
                self.cfg.scan_entry_size
            ),
            label: format!(
                "in-process scan_log (decode, CRC, LSN checks; a log this large is checked in two halves on two threads) of {} MiB, {} B entries, {cache}",
                log.bytes >> 20,
                self.cfg.scan_entry_size
            ),
            status: "ok",
            reason: None,
            ratio: ratio(&ours, &base),
            round_ratios: rr,
            walctl: Some(ours),
            baseline_what: "read() 1 MiB at a time".into(),
            baseline: Some(base),
            ceiling: None,
            prezeroed: None,
        })
    }

    fn child_workload(
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
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for walctl_side in order {
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
        let rr = round_ratios(&ours, &base);
        let (ours, base) = (ours.measure(), base.measure());
        Ok(WorkloadResult {
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
        })
    }
}

fn ratio(ours: &Measure, base: &Measure) -> Option<f64> {
    (base.entries_per_sec > 0.0).then(|| ours.entries_per_sec / base.entries_per_sec)
}

fn round_ratios(ours: &Sum, base: &Sum) -> Vec<f64> {
    ours.rates
        .iter()
        .zip(&base.rates)
        .filter(|(_, b)| **b > 0.0)
        .map(|(o, b)| o / b)
        .collect()
}

/// Deterministic, incompressible-looking payloads: entry `i` is a window into a
/// pseudo-random buffer, so consecutive entries (and their CRCs) differ.
struct Payload {
    bytes: Vec<u8>,
    size: usize,
}

const PAYLOAD_WINDOWS: usize = 4096;

impl Payload {
    fn new(size: usize) -> Payload {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let bytes = (0..size + PAYLOAD_WINDOWS)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Payload { bytes, size }
    }

    #[inline]
    fn get(&self, i: usize) -> &[u8] {
        let off = i.wrapping_mul(61) % PAYLOAD_WINDOWS;
        &self.bytes[off..off + self.size]
    }
}

/// Per-thread share of a count-bounded run: calls of `batch` entries.
fn calls_for(stop: Stop, writers: usize, batch: usize, w: usize) -> Option<u64> {
    match stop {
        Stop::Duration(_) => None,
        Stop::Count(n) => {
            let share = n / writers as u64 + u64::from((w as u64) < n % writers as u64);
            Some(share.div_ceil(batch as u64).max(1))
        }
    }
}

/// Runs `body(writer, calls_limit, deadline)` on `writers` threads released together;
/// returns the wall time from release to the last thread's end and what they returned.
fn run_threads<T: Send>(
    writers: usize,
    stop: Stop,
    batch: usize,
    body: impl Fn(usize, Option<u64>, Option<Instant>) -> Result<T> + Sync,
) -> Result<(f64, Vec<T>)> {
    let barrier = Barrier::new(writers + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (barrier, body) = (&barrier, &body);
                s.spawn(move || {
                    barrier.wait();
                    let deadline = match stop {
                        Stop::Duration(d) => Some(Instant::now() + d),
                        Stop::Count(_) => None,
                    };
                    let out = body(w, calls_for(stop, writers, batch, w), deadline);
                    (out, Instant::now())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut outs = Vec::with_capacity(writers);
        let mut end = start;
        for h in handles {
            let (out, t) = h.join().expect("benchmark thread panicked");
            end = end.max(t);
            outs.push(out?);
        }
        Ok((end.duration_since(start).as_secs_f64(), outs))
    })
}

/// The timed loop shared by every append side: calls `op(call)` until the limit or
/// deadline and records each call's latency (one clock read per call).
#[inline]
fn timed_loop(
    limit: Option<u64>,
    deadline: Option<Instant>,
    mut op: impl FnMut(u64) -> Result<()>,
) -> Result<(u64, Histogram)> {
    let mut hist = Histogram::new();
    let mut calls = 0u64;
    let mut prev = Instant::now();
    loop {
        if limit.is_some_and(|l| calls >= l) {
            break;
        }
        op(calls)?;
        calls += 1;
        let now = Instant::now();
        hist.record(now.duration_since(prev).as_nanos() as u64);
        prev = now;
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
    }
    Ok((calls, hist))
}

fn walctl_append(dir: &Path, p: &AppendParams, stop: Stop, payload: &Payload) -> Result<Side> {
    let wal = Wal::open(
        dir,
        WalOptions {
            max_segment_size: p.segment_size,
            max_segments: 0,
            sync: p.sync,
            ..Default::default()
        },
    )?;
    let (secs, outs) = run_threads(p.writers, stop, p.batch, |w, limit, deadline| {
        let mut batch: Vec<&[u8]> = Vec::with_capacity(p.batch);
        timed_loop(limit, deadline, |call| {
            let i = (call as usize).wrapping_mul(p.writers) + w;
            if p.batch == 1 {
                wal.append(payload.get(i))?;
            } else {
                batch.clear();
                batch.extend((0..p.batch).map(|k| payload.get(i * p.batch + k)));
                wal.append_batch(&batch)?;
            }
            Ok(())
        })
    })?;
    // Before close, whose final fsync covers nothing the workload waited for. Only
    // where every append waits for its fsync: elsewhere the few fsyncs say nothing.
    let syncs = if p.sync == SyncPolicy::Always {
        wal.sync_stats()
    } else {
        SyncStats::default()
    };
    wal.close()?;
    drop(wal);
    let storage = FileStorage::open(dir).map_err(io_err("open", dir))?;
    let bytes = list_segments(&storage)?.iter().map(|s| s.size).sum();
    Ok(Side {
        syncs,
        ..side_from(secs, outs, p.batch, bytes)
    })
}

fn side_from(secs: f64, outs: Vec<(u64, Histogram)>, batch: usize, bytes: u64) -> Side {
    let mut hist = Histogram::new();
    let mut calls = 0;
    for (c, h) in &outs {
        calls += c;
        hist.merge(h);
    }
    Side {
        entries: calls * batch as u64,
        bytes,
        secs,
        hist: Some(hist),
        rss_kib: None,
        syncs: SyncStats::default(),
    }
}

/// The same records, encoded with the same codec, written with plain system calls.
fn baseline_append(dir: &Path, p: &AppendParams, stop: Stop, payload: &Payload) -> Result<Side> {
    let path = dir.join("baseline");
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    let (secs, outs) = run_threads(p.writers, stop, p.batch, |w, limit, deadline| {
        let mut buf = Vec::with_capacity(p.batch * (p.entry_size + 32));
        let mut last_sync = Instant::now();
        timed_loop(limit, deadline, |call| {
            buf.clear();
            for k in 0..p.batch {
                let i = ((call as usize).wrapping_mul(p.writers) + w) * p.batch + k;
                encode_record(&mut buf, i as u64 + 1, payload.get(i), false);
            }
            (&file).write_all(&buf).map_err(io_err("write", &path))?;
            let sync = match p.sync {
                SyncPolicy::Always => true,
                SyncPolicy::Never => false,
                SyncPolicy::Interval(d) => last_sync.elapsed() >= d,
            };
            if sync {
                file.sync_data().map_err(io_err("fdatasync", &path))?;
                last_sync = Instant::now();
            }
            Ok(())
        })
    })?;
    let bytes = file.metadata().map_err(io_err("stat", &path))?.len();
    Ok(side_from(secs, outs, p.batch, bytes))
}

/// Bytes pre-zeroed for [`prezeroed_append`]; writes past them append.
const PREZEROED: u64 = 64 << 20;

/// [`baseline_append`] into a file first filled with [`PREZEROED`] fsynced zeros:
/// each commit is a positioned `write()` + `fdatasync()` that changes no size.
fn prezeroed_append(dir: &Path, p: &AppendParams, stop: Stop, payload: &Payload) -> Result<Side> {
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    let path = dir.join("prezeroed");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..PREZEROED >> 20 {
        file.write_all(&zeros).map_err(io_err("write", &path))?;
    }
    file.sync_all().map_err(io_err("fsync", &path))?;
    let end = AtomicU64::new(0);
    let (secs, outs) = run_threads(p.writers, stop, p.batch, |w, limit, deadline| {
        let mut buf = Vec::with_capacity(p.batch * (p.entry_size + 32));
        timed_loop(limit, deadline, |call| {
            buf.clear();
            for k in 0..p.batch {
                let i = ((call as usize).wrapping_mul(p.writers) + w) * p.batch + k;
                encode_record(&mut buf, i as u64 + 1, payload.get(i), false);
            }
            let at = end.fetch_add(buf.len() as u64, Ordering::Relaxed);
            file.write_all_at(&buf, at)
                .map_err(io_err("write", &path))?;
            file.sync_data().map_err(io_err("fdatasync", &path))?;
            Ok(())
        })
    })?;
    Ok(side_from(secs, outs, p.batch, end.into_inner()))
}

/// The page-cache ceiling for a non-durable writer: the same number of records,
/// encoded into a 1 MiB buffer, one `write()` per MiB.
fn ceiling_append(dir: &Path, p: &AppendParams, entries: u64, payload: &Payload) -> Result<Side> {
    let path = dir.join("ceiling");
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    let mut buf = Vec::with_capacity(2 << 20);
    let calls = entries.div_ceil(p.batch as u64);
    let start = Instant::now();
    let (calls, hist) = timed_loop(Some(calls), None, |call| {
        for k in 0..p.batch {
            let i = call as usize * p.batch + k;
            encode_record(&mut buf, i as u64 + 1, payload.get(i), false);
        }
        if buf.len() >= 1 << 20 {
            file.write_all(&buf).map_err(io_err("write", &path))?;
            buf.clear();
        }
        Ok(())
    })?;
    file.write_all(&buf).map_err(io_err("write", &path))?;
    let secs = start.elapsed().as_secs_f64();
    let bytes = file.metadata().map_err(io_err("stat", &path))?.len();
    Ok(side_from(secs, vec![(calls, hist)], p.batch, bytes))
}

struct ScanLog {
    dir: PathBuf,
    files: Vec<PathBuf>,
    records: u64,
    bytes: u64,
}

/// Reads every file to the end with 1 MiB `read()`s; returns the bytes read.
fn plain_read(files: &[PathBuf]) -> Result<u64> {
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

fn timed_plain_read(log: &ScanLog) -> Result<Side> {
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

/// Drops a file's clean pages from the page cache (Linux; elsewhere the read is
/// warm and the numbers say less about the disk).
fn evict(path: &Path) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        if let Ok(f) = File::open(path) {
            // SAFETY: advisory call on a descriptor we own; no memory is shared.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
}

/// Writes back every dirty page of the file system holding `dir`.
fn syncfs(dir: &Path) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        if let Ok(f) = File::open(dir) {
            // SAFETY: syncfs on a descriptor we own.
            unsafe {
                libc::syncfs(f.as_raw_fd());
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        // SAFETY: sync takes no arguments.
        unsafe { libc::sync() };
    }
}

#[derive(Debug)]
struct ChildRun {
    secs: f64,
    max_rss_kib: u64,
}

/// Runs `exe args` with stdout to /dev/null, waits with `wait4` for its resource
/// usage. `Ok(Err(reason))` when it could not run or did not exit 0.
fn run_child(
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
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; zero is a valid value for every field.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child; both pointers are to live locals.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io("wait for", exe, e));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // The child is reaped; std's handle must not wait for it again.
    drop(child);
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&err_path);
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !ok {
        let how = if libc::WIFEXITED(status) {
            format!("exit status {}", libc::WEXITSTATUS(status))
        } else {
            format!("killed by signal {}", libc::WTERMSIG(status))
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
        max_rss_kib: usage.ru_maxrss.max(0) as u64,
    }))
}

fn machine_info(dir: &Path) -> MachineInfo {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    MachineInfo {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        kernel,
        filesystem: filesystem_type(dir),
    }
}

/// The file system type of `dir`, by its statfs magic number.
#[cfg(not(target_os = "linux"))]
pub fn filesystem_type(_dir: &Path) -> String {
    "unknown".into()
}

/// The file system type of `dir`, by its statfs magic number.
#[cfg(target_os = "linux")]
pub fn filesystem_type(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return "unknown".into();
    };
    // SAFETY: statfs is plain old data; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown".into();
    }
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as u64;
    match magic {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x6969 => "nfs".into(),
        0xF2F5_2010 => "f2fs".into(),
        other => format!("unknown (statfs magic {other:#x})"),
    }
}

/// A log-linear latency histogram: exact below 128 ns, then 64 buckets per power of
/// two (under 1.6 % error), constant memory, two instructions per record.
#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: vec![0; (SUB as usize) * (64 - SUB_BITS as usize + 1)],
            total: 0,
            max: 0,
        }
    }

    #[inline]
    fn index(v: u64) -> usize {
        if v < 2 * SUB {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // >= SUB_BITS + 1
        let m = e - SUB_BITS;
        (SUB as usize) * m as usize + (v >> m) as usize
    }

    /// The middle of bucket `i`'s value range.
    fn value(i: usize) -> u64 {
        if i < 2 * SUB as usize {
            return i as u64;
        }
        let m = (i as u64 / SUB) - 1;
        let sub = i as u64 - SUB * m;
        let low = sub << m;
        low + ((1u64 << m) >> 1)
    }

    #[inline]
    fn record(&mut self, ns: u64) {
        self.counts[Self::index(ns)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    fn percentile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }

    fn latency(&self) -> Latency {
        Latency {
            p50_ns: self.percentile(0.50),
            p99_ns: self.percentile(0.99),
            p999_ns: self.percentile(0.999),
            max_ns: self.max,
            calls: self.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_close() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            123_456,
            9_999_999,
            u64::MAX,
        ] {
            let i = Histogram::index(v);
            assert!(i >= last, "index must grow with the value ({v})");
            last = i;
            assert!(i < Histogram::new().counts.len());
            let back = Histogram::value(i);
            let err = (back as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.02, "{v} came back as {back}");
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let l = h.latency();
        assert!((l.p50_ns as f64 - 500_000.0).abs() < 10_000.0, "{l:?}");
        assert!((l.p99_ns as f64 - 990_000.0).abs() < 20_000.0, "{l:?}");
        assert_eq!(l.max_ns, 1_000_000);
        assert_eq!(l.calls, 1000);
    }

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

    #[test]
    fn counts_are_shared_out_between_writers() {
        let total: u64 = (0..3)
            .map(|w| calls_for(Stop::Count(10), 3, 1, w).unwrap())
            .sum();
        assert_eq!(total, 10);
        assert_eq!(calls_for(Stop::Count(10), 1, 4, 0), Some(3));
        assert_eq!(calls_for(Stop::Duration(Duration::ZERO), 1, 1, 0), None);
    }
}
