//! The loop `walctl bench` runs: every selected workload in alternating rounds
//! (baseline first in even rounds, walctl first in odd ones) so that drift in the
//! machine hits both sides alike, and the description of the machine it ran on.

use std::fs;
use std::path::Path;

use walctl::writer::SyncPolicy;
use walctl::Result;

use super::model::*;
use super::scan::ScanLog;

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
            b.read_workload(w, log)?
        };
        results.push(res);
    }
    if let Some(log) = scan_log_info {
        if !cfg.keep {
            let _ = fs::remove_dir_all(&log.dir);
        }
    }
    Ok(Report {
        machine: machine_info(&cfg.work_dir),
        dir: cfg.work_dir.display().to_string(),
        rounds,
        group_commit_gain: group_commit_gain(cfg, &results),
        results,
    })
}

impl Bench<'_, '_> {
    /// A workload reading the scan log: in process, or `walctl verify` / `dump` as a
    /// child.
    fn read_workload(&mut self, w: Workload, log: &ScanLog) -> Result<WorkloadResult> {
        let dir = log.dir.display().to_string();
        match w {
            Workload::Scan => self.scan_workload(w, log, self.cfg.cold),
            Workload::ScanCold => self.scan_workload(w, log, true),
            Workload::Verify => self.child_workload(
                w,
                log,
                &["verify", "--quiet", "--dir", &dir],
                "walctl verify --quiet (child process)",
            ),
            _ => self.child_workload(
                w,
                log,
                &["dump", "--json", "--dir", &dir],
                "walctl dump --json > /dev/null (child process)",
            ),
        }
    }
}

/// How many times the single-writer durable rate the concurrent workload reached,
/// when both ran with sync always.
fn group_commit_gain(cfg: &Config, results: &[WorkloadResult]) -> Option<f64> {
    let rate = |name: &str| {
        results
            .iter()
            .find(|r| r.workload == name)
            .and_then(|r| r.walctl.as_ref())
            .map(|m| m.entries_per_sec)
    };
    match (rate("concurrent"), rate("durable")) {
        (Some(c), Some(d)) if d > 0.0 && cfg.sync.is_none_or(|s| s == SyncPolicy::Always) => {
            Some(c / d)
        }
        _ => None,
    }
}

pub(super) fn machine_info(dir: &Path) -> MachineInfo {
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
pub fn filesystem_type(dir: &Path) -> String {
    let Some(magic) = crate::cli::sys::filesystem_magic(dir) else {
        return "unknown".into();
    };
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
