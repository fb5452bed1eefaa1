//! The vocabulary of `walctl bench`: workloads, configuration, the measures and the
//! report, and the per-run state (`Bench`) that the workload files extend.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use walctl::writer::{SyncPolicy, SyncStats, WalOptions};
use walctl::{Error, Result};

use super::histogram::Histogram;
pub use super::histogram::Latency;
use crate::cli::sys::syncfs;

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

    pub(super) fn is_append(self) -> bool {
        matches!(
            self,
            Workload::Durable | Workload::Concurrent | Workload::Buffered | Workload::Batch
        )
    }

    /// Default (sync, writers, batch) of an append workload.
    pub(super) fn append_defaults(self) -> (SyncPolicy, usize, usize) {
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

pub(super) struct Bench<'a, 'p> {
    pub(super) cfg: &'a Config,
    pub(super) rounds: usize,
    pub(super) done: u64,
    pub(super) total: u64,
    pub(super) progress: &'a mut ProgressFn<'p>,
}

/// The parameters one append workload runs with.
#[derive(Debug, Clone, Copy)]
pub(super) struct AppendParams {
    pub(super) sync: SyncPolicy,
    pub(super) writers: usize,
    pub(super) batch: usize,
    pub(super) entry_size: usize,
    pub(super) segment_size: u64,
}

/// One side of one round.
pub(super) struct Side {
    pub(super) entries: u64,
    pub(super) bytes: u64,
    pub(super) secs: f64,
    pub(super) hist: Option<Histogram>,
    pub(super) rss_kib: Option<u64>,
    pub(super) syncs: SyncStats,
}

#[derive(Default)]
pub(super) struct Sum {
    pub(super) entries: u64,
    pub(super) bytes: u64,
    pub(super) secs: f64,
    pub(super) hist: Option<Histogram>,
    pub(super) rss_kib: Option<u64>,
    /// Entries per second of each side added.
    pub(super) rates: Vec<f64>,
    pub(super) syncs: SyncStats,
}

impl Sum {
    pub(super) fn add(&mut self, s: Side) {
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

    pub(super) fn measure(&self) -> Measure {
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

pub(super) fn sync_name(s: SyncPolicy) -> String {
    match s {
        SyncPolicy::Always => "always".into(),
        SyncPolicy::Never => "never".into(),
        SyncPolicy::Interval(d) => format!("interval {}", humantime::format_duration(d)),
    }
}

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

impl Bench<'_, '_> {
    pub(super) fn step(&mut self, what: &str) {
        (self.progress)(self.done, self.total, what);
        self.done += 1;
    }

    pub(super) fn fresh_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.cfg.work_dir.join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
        }
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok(dir)
    }

    /// Drops a side's files (unless kept) and writes back whatever is left dirty, so
    /// that the next measurement starts from a quiet disk.
    pub(super) fn settle(&self, dir: &Path) {
        if !self.cfg.keep {
            let _ = fs::remove_dir_all(dir);
        }
        syncfs(&self.cfg.work_dir);
    }

    pub(super) fn append_params(&self, w: Workload) -> AppendParams {
        let (sync, writers, batch) = w.append_defaults();
        AppendParams {
            sync: self.cfg.sync.unwrap_or(sync),
            writers: self.cfg.writers.unwrap_or(writers).max(1),
            batch: self.cfg.batch.unwrap_or(batch).max(1),
            entry_size: self.cfg.entry_size.unwrap_or(100),
            segment_size: self.cfg.segment_size,
        }
    }
}

/// The sides of round `round` (0-based) in the order they run, `true` for walctl:
/// the baseline first in even rounds, walctl first in odd ones, so that neither
/// always runs on a cache the other warmed.
pub(super) fn sides_in_order(round: usize) -> [bool; 2] {
    if round % 2 == 0 {
        [false, true]
    } else {
        [true, false]
    }
}

pub(super) fn ratio(ours: &Measure, base: &Measure) -> Option<f64> {
    (base.entries_per_sec > 0.0).then(|| ours.entries_per_sec / base.entries_per_sec)
}

pub(super) fn round_ratios(ours: &Sum, base: &Sum) -> Vec<f64> {
    ours.rates
        .iter()
        .zip(&base.rates)
        .filter(|(_, b)| **b > 0.0)
        .map(|(o, b)| o / b)
        .collect()
}
