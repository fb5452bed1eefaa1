//! `walctl bench`: walctl's speed on this disk, each number beside a plain-syscall
//! baseline measured in the same run.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use comfy_table::{presets, CellAlignment, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use walctl::codec::MAX_DATA_LEN;

use super::args::{parse_size, SyncMode};
use super::exit::Exit;
use super::output;
use model::{Config, Measure, Report, Stop, Workload, WorkloadResult};

mod append;
mod histogram;
mod model;
mod run;
mod scan;

/// Measure walctl on this disk, side by side with plain system calls.
///
/// With no arguments, runs the default suite in a fresh temporary directory (removed
/// afterwards) and prints a table: entries/s, MB/s, per-call latency percentiles and,
/// for every workload, a baseline doing the same job with plain system calls on the
/// same disk in the same run, with the ratio. Rounds alternate baseline and walctl.
///
/// Workloads: durable (sync always, 1 writer), concurrent (sync always, 16 writers:
/// group commit), batch (sync always, batches of 100), buffered (sync never), scan
/// (in-process verification of a 256 MiB log of 256 B entries in the page cache),
/// scan-cold (the same, evicted from the page cache first), verify and dump
/// (`walctl verify --quiet` and `walctl dump --json` as child processes, timed, with
/// their peak resident memory). Append knobs apply to every append workload run.
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = "\
Examples:
  walctl bench
  walctl bench --workload buffered --entry-size 1000 --duration 5s
  walctl bench --workload scan,verify,dump --scan-size 1GiB
  walctl bench --dir /mnt/data --json

Exit codes: 0 every workload ran; 1 a workload could not run (I/O error, a full
disk, a child process that failed); 2 usage error (also --count 0 or --duration 0s).
Speed never sets the status."
)]
pub struct Args {
    /// Run on this directory's file system (a temporary directory is made inside it;
    /// default: the system temporary directory).
    #[arg(long, short = 'd', value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Keep the files the benchmark wrote (their directory is printed on stderr).
    #[arg(long)]
    keep: bool,

    /// Workloads to run (repeatable or comma-separated; default: all).
    #[arg(long = "workload", short = 'w', value_name = "NAME", value_delimiter = ',',
          value_parser = clap::builder::PossibleValuesParser::new(
              ["durable", "concurrent", "batch", "buffered", "scan", "scan-cold", "verify",
               "dump"]))]
    workloads: Vec<String>,

    /// Payload size of appended entries (e.g. 100, 4KiB). Default 100 B.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    entry_size: Option<u64>,

    /// Entries per side per round of each append workload (instead of a duration).
    #[arg(long, value_name = "N", conflicts_with = "duration",
          value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,

    /// Time per side per round of each append workload. Default 0.75s.
    #[arg(long, value_name = "TIME", value_parser = parse_nonzero_duration)]
    duration: Option<Duration>,

    /// Sync policy of every append workload (default: each workload's own).
    #[arg(long, value_enum)]
    sync: Option<SyncMode>,

    /// The interval of `--sync interval`.
    #[arg(long, value_name = "TIME", default_value = "100ms",
          value_parser = parse_nonzero_duration)]
    sync_interval: Duration,

    /// Threads appending concurrently to one log, in every append workload.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
    writers: Option<u64>,

    /// Entries per append call (append_batch), in every append workload.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    batch: Option<u64>,

    /// Size of the log the scan, verify and dump workloads read (e.g. 256MiB, 1GiB).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    scan_size: u64,

    /// Payload size of that log's entries.
    #[arg(long, value_name = "SIZE", default_value = "256", value_parser = parse_size)]
    scan_entry_size: u64,

    /// Segment size of every log written (the library default is 4 MiB).
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = parse_size)]
    segment_size: u64,

    /// Rounds per workload; each runs the baseline and walctl once, alternating order.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=100))]
    rounds: u64,

    /// Evict the scan log from the page cache before every read pass of scan, verify
    /// and dump too (disk-bound numbers) instead of reading it warm (CPU-bound numbers).
    #[arg(long)]
    cold: bool,

    /// Print the results as one JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    check(&args)?;
    let workloads: Vec<Workload> = if args.workloads.is_empty() {
        Workload::ALL.to_vec()
    } else {
        args.workloads
            .iter()
            .filter_map(|n| Workload::from_name(n))
            .collect()
    };

    let parent = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir(),
    };
    let tmp = tempfile::Builder::new()
        .prefix("walctl-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a directory in {}", parent.display()))?;
    let cfg = config(&args, tmp.path());

    let bar = progress_bar();
    let result = run::run(&cfg, &workloads, &mut |done, total, what| {
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(what.to_string());
    });
    bar.finish_and_clear();
    if args.keep {
        let kept = tmp.keep();
        output::note(format!("kept the benchmark files in {}", kept.display()));
    } else {
        let path = tmp.path().to_path_buf();
        tmp.close()
            .with_context(|| format!("removing {}", path.display()))?;
    }
    let report = result.context("benchmark failed")?;

    let mut out = output::stdout();
    if args.json {
        output::json_line(&mut out, &report)?;
    } else {
        write_table(&mut out, &report)?;
    }
    out.flush()?;
    Ok(Exit::Ok)
}

/// Refuses values no workload can run with, before anything is made.
fn check(args: &Args) -> anyhow::Result<()> {
    for (what, v) in [
        ("--entry-size", args.entry_size.unwrap_or(0)),
        ("--scan-entry-size", args.scan_entry_size),
    ] {
        if v > MAX_DATA_LEN as u64 {
            anyhow::bail!("{what} {v} exceeds the largest entry, {MAX_DATA_LEN} bytes");
        }
    }
    if args.segment_size == 0 {
        anyhow::bail!("--segment-size must be at least 1 byte");
    }
    if args.sync_interval.is_zero() {
        anyhow::bail!("--sync-interval must be longer than zero");
    }
    Ok(())
}

/// The workloads' configuration from the flags, working in `dir`.
fn config(args: &Args, dir: &std::path::Path) -> Config {
    let mut cfg = Config::new(dir);
    cfg.entry_size = args.entry_size.map(|v| v as usize);
    cfg.stop = match (args.count, args.duration) {
        (Some(n), _) => Some(Stop::Count(n)),
        (None, Some(d)) => Some(Stop::Duration(d)),
        _ => None,
    };
    cfg.sync = args.sync.map(|s| s.policy(args.sync_interval));
    cfg.writers = args.writers.map(|v| v as usize);
    cfg.batch = args.batch.map(|v| v as usize);
    cfg.segment_size = args.segment_size;
    cfg.scan_size = args.scan_size;
    cfg.scan_entry_size = args.scan_entry_size as usize;
    cfg.rounds = args.rounds as usize;
    cfg.cold = args.cold;
    cfg.keep = args.keep;
    cfg.exe = std::env::current_exe().ok();
    cfg
}

/// A step bar on stderr when it is a terminal; hidden otherwise.
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("bench [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    pb.set_style(style);
    pb
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_ns(ns: u64) -> String {
    let v = ns as f64;
    if v >= 1e9 {
        format!("{:.2} s", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} µs", v / 1e3)
    } else {
        format!("{ns} ns")
    }
}

/// The text report: where it ran, the results table, then what each workload's
/// extra measurements say.
fn write_table(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    write_heading(out, r)?;
    writeln!(out, "{}", results_table(r))?;
    if let Some(g) = r.group_commit_gain {
        writeln!(
            out,
            "concurrent: {g:.1}x the single-writer durable rate (group commit: one fdatasync covers every waiting writer)"
        )?;
    }
    for res in &r.results {
        write_notes(out, res)?;
    }
    writeln!(
        out,
        "ratio: walctl/baseline entries/s over all rounds (lowest-highest single round); latency: per call (one entry, or one batch); MB = 10^6 bytes on disk; peak RSS: the child process"
    )?;
    Ok(())
}

/// The machine and file system the bench ran on.
fn write_heading(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    let m = &r.machine;
    writeln!(
        out,
        "walctl bench in {} ({}), {} CPUs ({}), Linux {}; {} round{} per workload, baseline and walctl alternating",
        r.dir,
        m.filesystem,
        m.cpus,
        m.cpu_model,
        m.kernel,
        r.rounds,
        if r.rounds == 1 { "" } else { "s" }
    )?;
    if m.filesystem == "tmpfs" {
        writeln!(
            out,
            "note: tmpfs keeps everything in memory; fsync costs nothing here. Use --dir on a disk."
        )?;
    }
    Ok(())
}

/// One row per workload: walctl's numbers beside the baseline's.
fn results_table(r: &Report) -> Table {
    let terminal = std::io::stdout().is_terminal();
    let mut t = Table::new();
    t.load_preset(if terminal {
        presets::UTF8_FULL_CONDENSED
    } else {
        presets::ASCII_MARKDOWN
    });
    output::fit_to_terminal(&mut t);
    t.set_header(vec![
        "workload",
        "entries/s",
        "MB/s",
        "p50",
        "p99",
        "p99.9",
        "peak RSS",
        "baseline (same run, same disk)",
        "baseline entries/s",
        "ratio",
    ]);
    for res in &r.results {
        t.add_row(result_row(res));
    }
    for i in (1..=6).chain(8..=9) {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// A workload's row of [`results_table`].
fn result_row(res: &WorkloadResult) -> Vec<String> {
    let dash = || "-".to_string();
    let (rate, mbs, p50, p99, p999, rss) = match &res.walctl {
        Some(w) => {
            let lat = |f: fn(&model::Latency) -> u64| {
                w.latency.as_ref().map_or_else(dash, |l| fmt_ns(f(l)))
            };
            (
                fmt_rate(w.entries_per_sec),
                format!("{:.1}", w.mb_per_sec),
                lat(|l| l.p50_ns),
                lat(|l| l.p99_ns),
                lat(|l| l.p999_ns),
                w.max_rss_kib
                    .map_or_else(dash, |k| format!("{:.1} MiB", k as f64 / 1024.0)),
            )
        }
        None => (
            res.status.to_string(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
        ),
    };
    let base_rate = res
        .baseline
        .as_ref()
        .map_or_else(dash, |b: &Measure| fmt_rate(b.entries_per_sec));
    let spread = match (
        res.round_ratios.iter().copied().reduce(f64::min),
        res.round_ratios.iter().copied().reduce(f64::max),
    ) {
        (Some(lo), Some(hi)) if res.round_ratios.len() > 1 => {
            format!(" ({lo:.2}-{hi:.2})")
        }
        _ => String::new(),
    };
    let ratio = res.ratio.map_or_else(dash, |x| format!("{x:.2}x{spread}"));
    vec![
        res.short.clone(),
        rate,
        mbs,
        p50,
        p99,
        p999,
        rss,
        res.baseline_what.clone(),
        base_rate,
        ratio,
    ]
}

/// What a workload's extra measurements say: the fsync bound, the page-cache
/// ceiling, the pre-zeroed baseline, and why it did not run.
fn write_notes(out: &mut impl Write, res: &WorkloadResult) -> std::io::Result<()> {
    if let Some((f, w)) = res
        .walctl
        .as_ref()
        .and_then(|w| Some((w.fsyncs.as_ref()?, w)))
    {
        // Back to back, fsyncs of this size and length would allow this rate: what
        // walctl reaches of it is the share of its time spent in fdatasync.
        let bound = f.records_per_fsync * 1e6 / f.mean_us.max(1e-9);
        writeln!(
            out,
            "{}: {:.1} records per fdatasync, {:.0} µs per write+fdatasync: fsyncs alone would allow {} entries/s; walctl reached {:.0}% of that",
            res.workload,
            f.records_per_fsync,
            f.mean_us,
            fmt_rate(bound),
            100.0 * w.entries_per_sec / bound.max(1e-9)
        )?;
    }
    if let (Some(c), Some(w)) = (&res.ceiling, &res.walctl) {
        writeln!(
            out,
            "{}: page-cache ceiling for the same bytes (encoded into 1 MiB write()s, no locks, no rotation): {} entries/s, {:.0} MB/s; walctl reaches {:.2}x of it",
            res.workload,
            fmt_rate(c.entries_per_sec),
            c.mb_per_sec,
            w.entries_per_sec / c.entries_per_sec.max(1e-9)
        )?;
    }
    if let (Some(z), Some(b), Some(w)) = (&res.prezeroed, &res.baseline, &res.walctl) {
        writeln!(
            out,
            "{}: the baseline into a pre-zeroed file (positioned write()+fdatasync(), no size change): {} entries/s, {:.2}x the appending baseline; walctl reaches {:.2}x of it",
            res.workload,
            fmt_rate(z.entries_per_sec),
            z.entries_per_sec / b.entries_per_sec.max(1e-9),
            w.entries_per_sec / z.entries_per_sec.max(1e-9)
        )?;
    }
    if let Some(reason) = &res.reason {
        writeln!(out, "{}: {}: {reason}", res.workload, res.status)?;
    }
    Ok(())
}

/// A duration longer than zero: a zero-length measurement has no rate, so `0s` is a
/// usage error, like `--count 0`.
fn parse_nonzero_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5XB").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }
}
