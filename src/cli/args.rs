//! Argument types more than one command takes: the writer options of `append` and
//! `checkpoint`, the encodings of entries, the sync policy, byte counts.

use std::time::Duration;

use walctl::writer::WalOptions;
use walctl::SyncPolicy;

use super::open::QuarantineArg;

/// When appended entries are made durable (`--sync`, of `append`, `checkpoint` and
/// `bench`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// fsync before acknowledging (one fsync per batch).
    Always,
    /// Hand each batch to the OS before acknowledging; fsync every interval.
    Interval,
    /// Hand each batch to the OS before acknowledging; fsync only at rotation and exit.
    Never,
}

impl SyncMode {
    /// The library's policy; `interval` is used by `Interval` only.
    pub fn policy(self, interval: Duration) -> SyncPolicy {
        match self {
            SyncMode::Always => SyncPolicy::Always,
            SyncMode::Interval => SyncPolicy::Interval(interval),
            SyncMode::Never => SyncPolicy::Never,
        }
    }
}

/// Parses a byte count: digits (`_` allowed between them) and an optional unit.
/// K, M, G, KiB, MiB, GiB are powers of 1024; KB, MB, GB powers of 1000 (as `df -H`
/// and disk makers count); B or nothing is bytes. Case does not matter.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let digits = digits.replace('_', "");
    if digits.is_empty() {
        return Err(format!(
            "{s:?} is not a byte count (e.g. 4096, 512K, 4MiB, 10MB)"
        ));
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use K, M, G, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is too large"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// [`parse_size`], refusing zero.
pub fn parse_positive_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("must be at least 1 byte".into()),
        v => Ok(v),
    }
}

/// How entries are written on the command line and on standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// Text, stored as its UTF-8 bytes (invalid UTF-8 is an error).
    Utf8,
    /// Hexadecimal digits, two per byte, either case.
    Hex,
    /// Standard base64 alphabet; the trailing '=' padding is optional.
    Base64,
}

/// The writer options shared by `append` and `checkpoint`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Writer options")]
pub struct WriterArgs {
    /// Start a new segment before a write once the current one holds at least this
    /// many bytes (a segment may exceed it by one record, as in the reference).
    /// Sizes: K, M, G, KiB, MiB, GiB multiply by 1024; KB, MB, GB by 1000.
    #[arg(long, value_name = "BYTES", default_value = "4MiB", value_parser = parse_positive_size)]
    max_segment_size: u64,

    /// Delete the oldest segments beyond N (0, the default: delete nothing). Only
    /// segments wholly before the newest checkpoint are ever deleted, and the ones
    /// deleted are named on stderr. (The library's default is 10, as in Go.)
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_segments: usize,

    /// When entries are made durable. Exit 0 always means durable: the log is
    /// fsynced when the command ends.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = SyncMode::Always)]
    pub sync: SyncMode,

    /// Milliseconds between background fsyncs with --sync interval [default: 200].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    sync_interval_ms: Option<u64>,

    /// Preallocate segments with durable zeros ahead of the writes, so each fsync
    /// flushes data only (faster commits). While the command runs, the newest
    /// segment ends in zeros the Go library cannot read past; every segment is cut
    /// to its last record when it is left. "off" keeps every segment exactly as long
    /// as its records at every moment. "auto" (the default) is "on" while entries
    /// stream in on standard input and "off" for entries given as arguments or
    /// --file and for checkpoint: a one-shot write would spend more time writing
    /// the zeros (4 MiB at open) than it saves. Applies with --sync always only:
    /// with interval or never no write waits for an fsync, and the zeros would only
    /// double what goes to the disk.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = Preallocate::Auto)]
    preallocate: Preallocate,

    /// Where a torn tail cut at open is saved (see truncate-corrupt).
    #[command(flatten)]
    pub quarantine: QuarantineArg,
}

/// Whether segments are preallocated (`--preallocate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preallocate {
    /// On for a stream of entries (standard input), off for a one-shot write.
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// How many entries a command writes, as far as preallocation is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// A known, finite set given up front (DATA arguments, --file, a checkpoint).
    OneShot,
    /// Entries streamed in for as long as the input lasts.
    Stream,
}

impl WriterArgs {
    /// The library options for a command writing `workload`. An interval given
    /// without `--sync interval` is a usage error (exit 2), reported before anything
    /// is opened.
    pub fn options(&self, workload: Workload) -> WalOptions {
        if self.sync_interval_ms.is_some() && self.sync != SyncMode::Interval {
            clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                "--sync-interval-ms applies only with --sync interval\n",
            )
            .exit();
        }
        let sync = self
            .sync
            .policy(Duration::from_millis(self.sync_interval_ms.unwrap_or(200)));
        WalOptions::default()
            .max_segment_size(self.max_segment_size)
            .max_segments(self.max_segments)
            .sync(sync)
            .preallocate(match self.preallocate {
                Preallocate::On => true,
                Preallocate::Off => false,
                Preallocate::Auto => workload == Workload::Stream,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_binary_and_decimal_units() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("2kb"), Ok(2_000));
        assert_eq!(parse_size("1_000"), Ok(1000));
        assert_eq!(parse_size(" 100 B "), Ok(100));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_positive_size("0").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("4TB").is_err());
        assert!(parse_size("99999999999G").is_err());
        assert!(parse_size("99999999999999999999999").is_err());
    }

    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        writer: WriterArgs,
    }

    fn preallocates(args: &[&str], workload: Workload) -> bool {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).unwrap();
        cli.writer.options(workload).preallocate
    }

    #[test]
    fn preallocate_auto_follows_the_workload() {
        assert!(preallocates(&[], Workload::Stream));
        assert!(!preallocates(&[], Workload::OneShot));
        assert!(preallocates(&["--preallocate", "on"], Workload::OneShot));
        assert!(!preallocates(&["--preallocate", "off"], Workload::Stream));
    }
}
