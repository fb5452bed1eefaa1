//! `walctl segments`: one row per segment file with what a full scan found in it.
//! Read-only: nothing is locked or changed.

use std::io::Write;

use comfy_table::{Cell, CellAlignment, Color, Table};
use serde::Serialize;
use walctl::scan::{ScanReport, SegmentSummary};
use walctl::segment::segment_name;
use walctl::{ProblemKind, Severity};

use super::exit::Exit;
use super::open::{scan_with_progress, DirArg};
use super::output::{self, status_word, ProblemOut};

const EXAMPLES: &str = "\
Examples:
  walctl segments --dir /var/lib/app/wal
  walctl segments --dir /var/lib/app/wal --json | jq 'select(.status != \"ok\")'

Status: ok; torn tail at offset N (an incomplete record ends the newest segment);
corrupt at offset N: what is wrong. Nothing after a problem in a segment is read.
Exit codes: 0 clean, 3 torn tail only, 4 corruption, 1 the log could not be read,
2 usage error.";

/// List the segments of a log with what each one holds.
///
/// Scans every segment and prints a table with one row per segment: id, file name,
/// size in bytes, intact records, first and last LSN, checkpoints, and status (ok,
/// torn tail at offset N, or corrupt at offset N with the kind of damage). With
/// --json it prints one JSON object per segment (NDJSON). Nothing is locked or
/// changed.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(flatten)]
    dir: DirArg,

    /// Print one JSON object per segment (NDJSON) instead of a table.
    #[arg(long)]
    json: bool,

    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Serialize)]
struct SegmentOut<'a> {
    id: u64,
    name: &'a str,
    size: u64,
    records: u64,
    first_lsn: Option<u64>,
    last_lsn: Option<u64>,
    checkpoints: u64,
    last_checkpoint_lsn: Option<u64>,
    valid_len: u64,
    status: &'static str,
    problem: Option<ProblemOut<'a>>,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let report = scan_with_progress(&args.dir, args.quiet || args.json, "segments")?;
    let mut out = output::stdout();
    if args.json {
        write_json(&mut out, &report)?;
    } else {
        writeln!(out, "{}", table(&report))?;
        writeln!(out, "{}", summary_line(&report))?;
    }
    out.flush()?;
    Ok(Exit::from_severity(report.worst()))
}

/// One JSON object per segment.
fn write_json(out: &mut impl Write, report: &ScanReport) -> std::io::Result<()> {
    for s in &report.segments {
        output::json_line(
            out,
            &SegmentOut {
                id: s.id,
                name: &s.name,
                size: s.size,
                records: s.records,
                first_lsn: s.first_lsn,
                last_lsn: s.last_lsn,
                checkpoints: s.checkpoints,
                last_checkpoint_lsn: s.last_checkpoint_lsn,
                valid_len: s.valid_len,
                status: status_word(output::segment_severity(s)),
                problem: s.problem.as_ref().map(|p| ProblemOut::new(p, s.size)),
            },
        )?;
    }
    Ok(())
}

/// One row per segment, the status coloured on a terminal that allows it.
fn table(report: &ScanReport) -> Table {
    let color = output::color_enabled();
    let mut table = Table::new();
    output::fit_to_terminal(&mut table);
    table.load_preset(output::table_preset()).set_header([
        "ID",
        "FILE",
        "BYTES",
        "RECORDS",
        "FIRST LSN",
        "LAST LSN",
        "CHECKPOINTS",
        "STATUS",
    ]);
    if color {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    for i in [0, 2, 3, 4, 5, 6] {
        if let Some(c) = table.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    for s in &report.segments {
        table.add_row([
            Cell::new(s.id),
            Cell::new(&s.name),
            Cell::new(s.size),
            Cell::new(s.records),
            Cell::new(output::opt(s.first_lsn)),
            Cell::new(output::opt(s.last_lsn)),
            Cell::new(s.checkpoints),
            status_cell(s, color),
        ]);
    }
    table
}

/// The line under the table: the whole log's counts, LSN range, newest checkpoint
/// and status.
fn summary_line(report: &ScanReport) -> String {
    let lsns = output::lsn_range_spaced(report.first_lsn, report.last_lsn)
        .map_or_else(String::new, |r| format!(", {r}"));
    let newest = report.newest_checkpoint.map_or_else(String::new, |c| {
        format!(
            "; newest checkpoint LSN {} in {}",
            c.lsn,
            segment_name(c.segment_id)
        )
    });
    format!(
        "{}, {}{lsns}, {}, {}{newest}; status {}",
        output::count(report.segments.len() as u64, "segment", "segments"),
        output::count(report.records, "record", "records"),
        output::count(report.checkpoints, "checkpoint", "checkpoints"),
        output::count(report.bytes, "byte", "bytes"),
        output::status_text(report.worst()),
    )
}

fn status_cell(s: &SegmentSummary, color: bool) -> Cell {
    let word = output::status_text(output::segment_severity(s));
    let (text, fg) = match &s.problem {
        None => (word.to_string(), Color::Green),
        Some(p) if p.severity == Severity::TornTail => {
            (format!("{word} at offset {}", p.offset), Color::Yellow)
        }
        Some(p) if p.severity == Severity::Unreadable => (p.kind.to_string(), Color::Red),
        Some(p) if matches!(p.kind, ProblemKind::MissingSegment { .. }) => {
            (p.kind.to_string(), Color::Red)
        }
        Some(p) => (
            format!("{word} at offset {}: {}", p.offset, p.kind),
            Color::Red,
        ),
    };
    let cell = Cell::new(text);
    if color {
        cell.fg(fg)
    } else {
        cell
    }
}
