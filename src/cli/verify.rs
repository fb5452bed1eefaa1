//! `walctl verify`: scans every segment (not stopping at the first problem) and
//! reports the log's shape and every problem with its segment and byte offset.
//! Read-only: nothing is locked or changed.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use walctl::scan::ScanReport;
use walctl::segment::segment_name;
use walctl::{ProblemKind, Severity};

use super::exit::Exit;
use super::open::{scan_with_progress, DirArg};
use super::output::{self, ProblemOut};

const EXAMPLES: &str = "\
Examples:
  walctl verify --dir /var/lib/app/wal
  walctl verify --dir /var/lib/app/wal --json | jq .status
  walctl verify --dir /var/lib/app/wal --quiet || echo \"damaged: $?\"

Exit codes: 0 clean; 3 the only problem is a torn tail in the newest segment
(what a crash mid-write leaves); 4 corruption; 1 the log could not be read;
2 usage error.";

/// Check every record of every segment and report what is wrong.
///
/// Reads the whole log (framing, protobuf, CRC and LSN continuity of every record)
/// without stopping at the first problem, then prints a summary (segments, records,
/// LSN range, checkpoints, bytes, newest checkpoint) and every problem with its
/// segment, byte offset and kind. With --json it prints one JSON object instead;
/// with --quiet nothing, for scripts that only need the exit status. Nothing is
/// locked or changed, so verify can run beside a live writer (a record being
/// written at that moment may show as a torn tail).
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(flatten)]
    dir: DirArg,

    /// Print one JSON object (the whole report) instead of text.
    #[arg(long)]
    json: bool,

    /// Print nothing (not even with --json); only set the exit status.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Serialize)]
struct CheckpointOut {
    lsn: u64,
    segment: String,
    segment_id: u64,
}

#[derive(Serialize)]
struct Report<'a> {
    /// The directory as given; a name that is not UTF-8 is shown with U+FFFD for
    /// the bytes that are not (JSON strings cannot hold them).
    dir: String,
    status: &'static str,
    exit_code: i32,
    segments: usize,
    records: u64,
    first_lsn: Option<u64>,
    last_lsn: Option<u64>,
    checkpoints: u64,
    newest_checkpoint: Option<CheckpointOut>,
    bytes: u64,
    problems: Vec<ProblemOut<'a>>,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let report = scan_with_progress(&args.dir, args.quiet || args.json, "verify")?;
    let exit = Exit::from_severity(report.worst());
    if args.quiet {
        return Ok(exit);
    }
    let mut out = output::stdout();
    if args.json {
        output::json_line(&mut out, &json_report(&args.dir.dir, &report, exit))?;
    } else {
        write_text(&mut out, &args.dir.dir, &report, exit)?;
    }
    out.flush()?;
    Ok(exit)
}

/// The whole report as one JSON object.
fn json_report<'a>(dir: &Path, report: &'a ScanReport, exit: Exit) -> Report<'a> {
    Report {
        dir: dir.to_string_lossy().into_owned(),
        status: output::status_word(report.worst()),
        exit_code: exit as i32,
        segments: report.segments.len(),
        records: report.records,
        first_lsn: report.first_lsn,
        last_lsn: report.last_lsn,
        checkpoints: report.checkpoints,
        newest_checkpoint: report.newest_checkpoint.map(|c| CheckpointOut {
            lsn: c.lsn,
            segment: segment_name(c.segment_id),
            segment_id: c.segment_id,
        }),
        bytes: report.bytes,
        problems: report
            .segments
            .iter()
            .filter_map(|s| s.problem.as_ref().map(|p| ProblemOut::new(p, s.size)))
            .collect(),
    }
}

/// The text report: the log's shape, every problem, then the status.
fn write_text(
    out: &mut impl Write,
    dir: &Path,
    report: &ScanReport,
    exit: Exit,
) -> std::io::Result<()> {
    write_shape(out, dir, report)?;
    write_problems(out, dir, report)?;
    writeln!(out, "status       {}", status_line(dir, report, exit))
}

/// The log, its segments, records, checkpoints and bytes.
fn write_shape(out: &mut impl Write, dir: &Path, report: &ScanReport) -> std::io::Result<()> {
    writeln!(out, "log          {}", dir.display())?;
    match (report.segments.first(), report.segments.last()) {
        (Some(a), Some(b)) if a.id != b.id => writeln!(
            out,
            "segments     {} ({} .. {}){}",
            // Files there: a missing run of ids has a row of its own in the report.
            report
                .segments
                .iter()
                .filter(|s| !matches!(
                    s.problem.as_ref().map(|p| &p.kind),
                    Some(ProblemKind::MissingSegment { .. })
                ))
                .count(),
            a.name,
            b.name,
            missing_or_unreadable(report)
        )?,
        (Some(a), _) => writeln!(out, "segments     1 ({})", a.name)?,
        _ => writeln!(out, "segments     0 (an empty log)")?,
    }
    match output::lsn_range_spaced(report.first_lsn, report.last_lsn) {
        Some(r) => writeln!(out, "records      {} ({r})", report.records)?,
        None => writeln!(out, "records      {}", report.records)?,
    }
    match report.newest_checkpoint {
        Some(c) => writeln!(
            out,
            "checkpoints  {} (newest: LSN {} in {})",
            report.checkpoints,
            c.lsn,
            segment_name(c.segment_id)
        )?,
        None => writeln!(out, "checkpoints  0")?,
    }
    writeln!(out, "bytes        {}", report.bytes)
}

/// Every problem with where it is and what was left unchecked after it.
fn write_problems(out: &mut impl Write, dir: &Path, report: &ScanReport) -> std::io::Result<()> {
    let problems: Vec<_> = report
        .segments
        .iter()
        .filter_map(|s| s.problem.as_ref().map(|p| (p, s.size)))
        .collect();
    if !problems.is_empty() {
        writeln!(out, "problems     {}", problems.len())?;
        for (p, size) in &problems {
            let unchecked = size.saturating_sub(p.offset);
            let after = p.last_good_lsn.map_or_else(
                || "before any intact record".to_string(),
                |l| format!("after LSN {l}"),
            );
            match p.kind {
                ProblemKind::MissingSegment { .. } => {
                    writeln!(out, "  {p} [{after}; the segments after it were checked]")?
                }
                ProblemKind::Unreadable { .. } => writeln!(
                    out,
                    "  {p} [{after}; its {size} bytes were not checked, the segments after it were]"
                )?,
                _ => writeln!(
                    out,
                    "  {p} [{after}; {unchecked} bytes from there to the end of {} not checked; \
                     to see the record there: {}]",
                    p.segment,
                    output::inspect_hint(dir, p.segment_id, p.offset)
                )?,
            }
        }
    }
    Ok(())
}

/// The status word, with the exit status and what it means.
fn status_line(dir: &Path, report: &ScanReport, exit: Exit) -> String {
    let worst = report.worst();
    let word = output::status_text(worst);
    let code = exit as i32;
    match worst {
        None => word.to_string(),
        Some(Severity::TornTail) => format!(
            "{word} (exit {code}): the newest segment ends with an incomplete record, as a \
             crash mid-write leaves; `walctl truncate-corrupt --dir {} --apply` cuts it",
            output::shell_quote(dir.as_os_str())
        ),
        Some(Severity::Unreadable) => format!(
            "{word} (exit {code}): a segment could not be read; every other segment was checked"
        ),
        Some(Severity::Corruption) => format!("{word} (exit {code})"),
    }
}

/// ", 1 missing, 1 unreadable" for the segments line of a log that has such.
fn missing_or_unreadable(report: &ScanReport) -> String {
    let mut missing = 0;
    let mut unreadable = 0;
    for p in report.problems() {
        match p.kind {
            ProblemKind::MissingSegment {
                first_id, last_id, ..
            } => missing += last_id - first_id + 1,
            ProblemKind::Unreadable { .. } => unreadable += 1,
            _ => {}
        }
    }
    let mut out = String::new();
    if missing > 0 {
        out += &format!(", {missing} missing");
    }
    if unreadable > 0 {
        out += &format!(", {unreadable} unreadable");
    }
    out
}
