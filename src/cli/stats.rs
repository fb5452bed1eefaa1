//! `walctl stats`: what a log holds: records and bytes, checkpoints and the distance
//! between them, payload sizes (with a small histogram on a terminal), and each
//! segment's fill and modification time.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;
use walctl::scan::{Event, ScanOptions, ScannedRecord, Scanner, SegmentSummary};
use walctl::writer::WalOptions;

use super::exit::Exit;
use super::open::DirArg;
use super::output;

/// Checkpoint LSNs listed (the newest ones); the count and distances cover all.
const CHECKPOINTS_LISTED: usize = 100;

/// Width of the longest histogram bar, in characters.
const BAR: u64 = 40;

const EXAMPLES: &str = "\
Examples:
  walctl stats --dir /var/lib/app/wal
  walctl stats --dir /var/lib/app/wal --json | jq '{records, p99: .payload.p99}'
  walctl stats --dir /var/lib/app/wal --max-segment-size 64MiB

Payload percentiles are exact below 1 KiB and within 1/64 of the size above (the
sizes are counted in bounded buckets, not kept). The format holds no timestamps:
a segment's time is its file's modification time.

Exit status: 0 the log is clean; 3 or 4 as for verify (the figures then cover the
intact records); 1 the log could not be read; 2 usage error.";

/// Figures about a log: records, bytes, checkpoints, payload sizes, segments.
///
/// Reads every record once (as verify does) and prints: records and bytes;
/// checkpoints (count, the newest LSNs, the distance between them); payload sizes
/// (min, p50, p99, max and the LSN of the largest) with a small histogram on a
/// terminal; and each segment's size against the max segment size and its file's
/// modification time. --json prints one object. Nothing is locked or changed.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(flatten)]
    dir: DirArg,

    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,

    /// The writer's segment size, to show how full each segment is. Sizes as for
    /// append --max-segment-size. Default: the library's default.
    #[arg(long, value_name = "BYTES", value_parser = super::args::parse_positive_size)]
    max_segment_size: Option<u64>,

    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// Counts of payload sizes in bounded memory: one bucket per size below 1 KiB,
/// then 64 buckets per power of two.
#[derive(Debug, Clone)]
pub struct SizeHistogram {
    counts: Vec<u64>,
    n: u64,
}

const EXACT: u64 = 1024;
const SUB: u32 = 64;

impl Default for SizeHistogram {
    fn default() -> Self {
        SizeHistogram {
            counts: vec![0; EXACT as usize + (64 - 10) * SUB as usize],
            n: 0,
        }
    }
}

impl SizeHistogram {
    fn bucket(v: u64) -> usize {
        if v < EXACT {
            return v as usize;
        }
        let k = 63 - v.leading_zeros(); // 10..=63
        let sub = (v >> (k - 6)) & (SUB as u64 - 1);
        EXACT as usize + (k as usize - 10) * SUB as usize + sub as usize
    }

    /// The smallest size that falls in bucket `i`.
    fn lower(i: usize) -> u64 {
        if i < EXACT as usize {
            return i as u64;
        }
        let j = i - EXACT as usize;
        let k = (j / SUB as usize) as u32 + 10;
        let sub = (j % SUB as usize) as u64;
        (SUB as u64 + sub) << (k - 6)
    }

    /// Counts one size.
    pub fn add(&mut self, v: u64) {
        self.counts[Self::bucket(v)] += 1;
        self.n += 1;
    }

    /// The size at quantile `q` (nearest rank): the smallest counted size with at
    /// least `q` of all sizes at or below it, to a bucket's precision.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::lower(i));
            }
        }
        None
    }

    /// (from, to, count) per power of two (0, 1, 2-3, 4-7, ...), from the smallest
    /// size counted to the largest.
    pub fn rows(&self) -> Vec<(u64, u64, u64)> {
        let mut rows: Vec<(u64, u64, u64)> = Vec::new();
        for (i, &c) in self.counts.iter().enumerate() {
            let lo = Self::lower(i);
            let (from, to) = match lo {
                0 => (0, 0),
                _ => {
                    let p = 63 - lo.leading_zeros();
                    (1 << p, (1u64 << p).saturating_mul(2) - 1)
                }
            };
            match rows.last_mut() {
                Some(r) if r.0 == from => r.2 += c,
                _ => rows.push((from, to, c)),
            }
        }
        let first = rows.iter().position(|r| r.2 > 0).unwrap_or(0);
        let last = rows.iter().rposition(|r| r.2 > 0).map_or(0, |i| i + 1);
        rows.get(first..last).unwrap_or_default().to_vec()
    }
}

/// Checkpoints seen: the count, the newest LSNs, and distances between them.
#[derive(Debug, Default, Serialize)]
struct Checkpoints {
    count: u64,
    /// The newest LSNs (up to [`CHECKPOINTS_LISTED`]), oldest first.
    lsns: VecDeque<u64>,
    /// Records from one checkpoint to the next (LSN difference): min, max, mean.
    min_distance: Option<u64>,
    max_distance: Option<u64>,
    mean_distance: Option<f64>,
    /// Records after the newest checkpoint.
    after_newest: Option<u64>,
    #[serde(skip)]
    last: Option<u64>,
    #[serde(skip)]
    distance_sum: u64,
}

impl Checkpoints {
    fn add(&mut self, lsn: u64) {
        if let Some(prev) = self.last {
            let d = lsn - prev;
            self.min_distance = Some(self.min_distance.map_or(d, |m| m.min(d)));
            self.max_distance = Some(self.max_distance.map_or(d, |m| m.max(d)));
            self.distance_sum += d;
            self.mean_distance = Some(self.distance_sum as f64 / self.count as f64);
        }
        self.count += 1;
        self.last = Some(lsn);
        if self.lsns.len() == CHECKPOINTS_LISTED {
            self.lsns.pop_front();
        }
        self.lsns.push_back(lsn);
    }
}

#[derive(Debug, Default, Serialize)]
struct Payload {
    min: Option<u64>,
    p50: Option<u64>,
    p99: Option<u64>,
    max: Option<u64>,
    /// LSN of the (first) largest payload.
    max_lsn: Option<u64>,
    mean: Option<f64>,
}

#[derive(Debug, Serialize)]
struct SegmentOut {
    name: String,
    id: u64,
    size: u64,
    /// Size against the max segment size, in percent.
    fill_percent: f64,
    records: u64,
    first_lsn: Option<u64>,
    last_lsn: Option<u64>,
    /// The file's modification time (RFC 3339, UTC).
    modified: Option<String>,
    status: &'static str,
}

#[derive(Debug, Serialize)]
struct HistRow {
    from: u64,
    to: u64,
    count: u64,
}

#[derive(Debug, Serialize)]
struct Stats {
    dir: String,
    status: &'static str,
    exit_code: i32,
    records: u64,
    first_lsn: Option<u64>,
    last_lsn: Option<u64>,
    /// Bytes of all segment files.
    bytes: u64,
    /// Bytes of intact records (prefixes included).
    record_bytes: u64,
    payload_bytes: u64,
    checkpoints: Checkpoints,
    payload: Payload,
    histogram: Vec<HistRow>,
    max_segment_size: u64,
    segments: Vec<SegmentOut>,
}

/// Figures gathered record by record.
#[derive(Default)]
struct Tally {
    hist: SizeHistogram,
    checkpoints: Checkpoints,
    payload: Payload,
    record_bytes: u64,
    payload_bytes: u64,
}

impl Tally {
    fn add(&mut self, r: &ScannedRecord<'_>) {
        let n = r.data.len() as u64;
        self.hist.add(n);
        self.record_bytes += r.len;
        self.payload_bytes += n;
        let p = &mut self.payload;
        p.min = Some(p.min.map_or(n, |m| m.min(n)));
        if p.max.is_none_or(|m| n > m) {
            p.max = Some(n);
            p.max_lsn = Some(r.lsn);
        }
        if r.checkpoint {
            self.checkpoints.add(r.lsn);
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let storage = args.dir.open_log()?;
    let mut scanner = Scanner::new(storage, ScanOptions::default())?;
    let total: u64 = scanner.segments().iter().map(|s| s.size).sum();
    let pb = output::progress(total, args.quiet || args.json, "stats");
    let mut tally = Tally::default();
    let mut done_before = 0u64;
    while let Some(ev) = scanner.next()? {
        match ev {
            Event::Record(r) => {
                tally.add(&r);
                if (r.lsn & 0xffff) == 0 {
                    pb.set_position(done_before + r.offset + r.len);
                }
            }
            Event::SegmentEnd(s) => {
                done_before += s.size;
                pb.set_position(done_before);
            }
            // Segments retired while stats read the log: it counts what it read.
            _ => {}
        }
    }
    pb.finish_and_clear();
    let stats = report(&args, total, tally, scanner.summaries());
    let mut out = output::stdout();
    if args.json {
        output::json_line(&mut out, &stats)?;
    } else {
        let bars = std::io::stdout().is_terminal();
        write_text(&mut out, &stats, bars)?;
    }
    out.flush()?;
    Ok(Exit::from_severity(output::worst_of(scanner.summaries())))
}

/// The whole report from the tally and the segments' summaries.
fn report(args: &Args, bytes: u64, tally: Tally, summaries: &[SegmentSummary]) -> Stats {
    let Tally {
        hist,
        mut checkpoints,
        mut payload,
        record_bytes,
        payload_bytes,
    } = tally;
    let records = hist.n;
    payload.p50 = hist.quantile(0.5);
    payload.p99 = hist.quantile(0.99);
    payload.mean = (records > 0).then(|| payload_bytes as f64 / records as f64);
    let last_lsn = summaries.iter().rev().find_map(|s| s.last_lsn);
    checkpoints.after_newest = checkpoints.last.zip(last_lsn).map(|(c, l)| l - c);
    let max_segment_size = args
        .max_segment_size
        .unwrap_or(WalOptions::default().max_segment_size);
    let worst = output::worst_of(summaries);
    Stats {
        dir: args.dir.dir.to_string_lossy().into_owned(),
        status: output::status_word(worst),
        exit_code: Exit::from_severity(worst) as i32,
        records,
        first_lsn: summaries.iter().find_map(|s| s.first_lsn),
        last_lsn,
        bytes,
        record_bytes,
        payload_bytes,
        checkpoints,
        payload,
        histogram: hist
            .rows()
            .into_iter()
            .map(|(from, to, count)| HistRow { from, to, count })
            .collect(),
        max_segment_size,
        segments: summaries
            .iter()
            .map(|s| segment_out(&args.dir.dir, s, max_segment_size))
            .collect(),
    }
}

fn segment_out(dir: &Path, s: &SegmentSummary, max: u64) -> SegmentOut {
    let modified = std::fs::metadata(dir.join(&s.name))
        .and_then(|m| m.modified())
        .ok()
        .map(rfc3339);
    SegmentOut {
        name: s.name.clone(),
        id: s.id,
        size: s.size,
        fill_percent: (s.size as f64 * 1000.0 / max as f64).round() / 10.0,
        records: s.records,
        first_lsn: s.first_lsn,
        last_lsn: s.last_lsn,
        modified,
        status: output::status_word(output::segment_severity(s)),
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The text report; `bars`: draw the histogram's bars (a terminal), else counts only.
fn write_text(out: &mut impl Write, s: &Stats, bars: bool) -> std::io::Result<()> {
    writeln!(out, "log            {}", s.dir)?;
    match output::lsn_range_spaced(s.first_lsn, s.last_lsn) {
        Some(r) => writeln!(out, "records        {} ({r})", s.records)?,
        None => writeln!(out, "records        {}", s.records)?,
    }
    writeln!(
        out,
        "bytes          {} in files, {} in intact records, {} of payload",
        s.bytes, s.record_bytes, s.payload_bytes
    )?;
    write_checkpoints(out, &s.checkpoints)?;
    let p = &s.payload;
    writeln!(
        out,
        "payload bytes  min {}  p50 {}  p99 {}  max {} (LSN {})",
        output::opt(p.min),
        output::opt(p.p50),
        output::opt(p.p99),
        output::opt(p.max),
        output::opt(p.max_lsn)
    )?;
    if !s.histogram.is_empty() {
        writeln!(out, "payload sizes")?;
        let most = s
            .histogram
            .iter()
            .map(|r| r.count)
            .max()
            .unwrap_or(1)
            .max(1);
        for r in &s.histogram {
            let range = format!("{:>9} .. {:<9}", r.from, r.to);
            if bars {
                let n = (r.count * BAR).div_ceil(most) as usize;
                writeln!(out, "  {range} {:<40} {}", "█".repeat(n), r.count)?;
            } else {
                writeln!(out, "  {range} {}", r.count)?;
            }
        }
    }
    writeln!(
        out,
        "segments       {} (max segment size {} bytes)",
        s.segments.len(),
        s.max_segment_size
    )?;
    for g in &s.segments {
        writeln!(
            out,
            "  {:<14} {:>12} bytes {:>6.1}% full {:>9} records  LSN {}..{}  modified {}  {}",
            g.name,
            g.size,
            g.fill_percent,
            g.records,
            output::opt(g.first_lsn),
            output::opt(g.last_lsn),
            output::opt(g.modified.as_deref()),
            g.status
        )?;
    }
    writeln!(out, "status         {}", s.status)
}

fn write_checkpoints(out: &mut impl Write, c: &Checkpoints) -> std::io::Result<()> {
    if c.count == 0 {
        return writeln!(out, "checkpoints    0");
    }
    let shown: Vec<String> = c
        .lsns
        .iter()
        .rev()
        .take(10)
        .map(|l| l.to_string())
        .collect();
    let more = if c.count > 10 { ", ..." } else { "" };
    writeln!(
        out,
        "checkpoints    {} (newest first: LSN {}{more})",
        c.count,
        shown.join(", ")
    )?;
    if let (Some(min), Some(max), Some(mean)) = (c.min_distance, c.max_distance, c.mean_distance) {
        writeln!(
            out,
            "  distance     min {min}, mean {mean:.1}, max {max} records between checkpoints"
        )?;
    }
    writeln!(
        out,
        "  after newest {} records",
        output::opt(c.after_newest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_exact_below_1_kib_and_close_above() {
        let mut h = SizeHistogram::default();
        for v in 1..=100 {
            h.add(v);
        }
        assert_eq!(h.quantile(0.5), Some(50));
        assert_eq!(h.quantile(0.99), Some(99));
        assert_eq!(h.quantile(1.0), Some(100));
        let mut h = SizeHistogram::default();
        for v in [5000u64, 70_000, 1 << 27, 3] {
            h.add(v);
        }
        for (q, v) in [(0.5, 5000u64), (0.75, 70_000), (1.0, 1 << 27)] {
            let got = h.quantile(q).unwrap();
            assert!(got <= v && v - got <= v / 64, "{q}: {got} for {v}");
        }
        for v in [1024u64, 1025, 4095, 4096, u64::MAX] {
            let b = SizeHistogram::bucket(v);
            assert!(SizeHistogram::lower(b) <= v, "{v}");
            assert!(
                b + 1 >= h.counts.len() || SizeHistogram::lower(b + 1) > v,
                "{v}"
            );
        }
    }

    #[test]
    fn rows_group_by_power_of_two_from_first_to_last_count() {
        let mut h = SizeHistogram::default();
        for v in [0u64, 5, 6, 7, 100, 3000] {
            h.add(v);
        }
        let rows = h.rows();
        assert_eq!(rows.first(), Some(&(0, 0, 1)));
        assert!(rows.contains(&(4, 7, 3)));
        assert!(rows.contains(&(64, 127, 1)));
        assert_eq!(rows.last(), Some(&(2048, 4095, 1)));
        assert_eq!(rows.iter().map(|r| r.2).sum::<u64>(), 6);
    }

    #[test]
    fn bars_only_on_a_terminal() {
        let mut h = SizeHistogram::default();
        for v in [10u64, 20, 20, 300] {
            h.add(v);
        }
        let stats = Stats {
            dir: "d".into(),
            status: "ok",
            exit_code: 0,
            records: 4,
            first_lsn: Some(1),
            last_lsn: Some(4),
            bytes: 1,
            record_bytes: 1,
            payload_bytes: 350,
            checkpoints: Checkpoints::default(),
            payload: Payload::default(),
            histogram: h
                .rows()
                .into_iter()
                .map(|(from, to, count)| HistRow { from, to, count })
                .collect(),
            max_segment_size: 4096,
            segments: Vec::new(),
        };
        let mut tty = Vec::new();
        write_text(&mut tty, &stats, true).unwrap();
        let tty = String::from_utf8(tty).unwrap();
        assert!(tty.contains(&"█".repeat(40)), "{tty}");
        let mut piped = Vec::new();
        write_text(&mut piped, &stats, false).unwrap();
        let piped = String::from_utf8(piped).unwrap();
        assert!(piped.is_ascii(), "{piped}");
        assert!(piped.contains("       16 .. 31        2"), "{piped}");
    }
}
