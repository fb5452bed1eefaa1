//! `walctl dump --salvage`: prints every intact record of a damaged log, stepping
//! over each damaged range ([`walctl::salvage::Salvager`]), and names the ranges on
//! stderr (as text, or as one JSON summary object with `--json`).

use std::io::{self, IsTerminal};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use walctl::salvage::{SalvageEvent, Salvager, Skip};
use walctl::scan::ScanOptions;
use walctl::segment::list_segments;
use walctl::storage::ReadStorage;

use super::records::{Filter, Printer, Progress, Take};
use crate::cli::exit::Exit;
use crate::cli::output;

/// What the salvage is asked for besides the records.
pub struct Job<'a> {
    /// The log directory as given (for messages).
    pub dir: &'a Path,
    /// Records as NDJSON; the summary on stderr as one JSON object.
    pub json: bool,
    /// No progress bar and no summary line (skipped ranges are still named).
    pub quiet: bool,
    /// Skip whole segments before this LSN, as dump does without --salvage.
    pub from_lsn: Option<u64>,
}

/// The `--json` summary on stderr.
#[derive(Serialize)]
struct Summary<'a> {
    salvage: bool,
    status: &'static str,
    exit_code: i32,
    printed: u64,
    last_lsn: Option<u64>,
    skipped_ranges: u64,
    skipped_bytes: u64,
    skipped: &'a [Skip],
}

pub fn run(
    job: Job<'_>,
    storage: Arc<dyn ReadStorage>,
    mut filter: Filter,
    mut printer: Printer<io::StdoutLock<'static>>,
) -> anyhow::Result<Exit> {
    let segments = list_segments(storage.as_ref())?;
    let total: u64 = segments.iter().map(|s| s.size).sum();
    let pb = output::progress(
        total,
        job.quiet || job.json || io::stdout().is_terminal(),
        "salvage",
    );
    let mut progress = Progress::new(&segments, !pb.is_hidden());
    let opts = ScanOptions::default().from_lsn(job.from_lsn);
    let mut salvage = Salvager::new(storage, opts)?;
    let mut skipped = Vec::new();
    let mut last_printed = None;
    while let Some(ev) = salvage.next()? {
        match ev {
            SalvageEvent::Record(r) => {
                if let Some(pos) = progress.advance(&r) {
                    pb.set_position(pos);
                }
                match filter.take(&r) {
                    Take::Skip => continue,
                    Take::Stop => break,
                    Take::Print { last } => {
                        printer.record(&r)?;
                        last_printed = Some(r.lsn);
                        if last {
                            break;
                        }
                    }
                }
            }
            SalvageEvent::Skipped(skip) if job.json => skipped.push(skip),
            SalvageEvent::Skipped(skip) => {
                // The records before it first, so a terminal shows them in order.
                printer.flush()?;
                pb.suspend(|| output::note(describe(&skip, job.dir)));
            }
            SalvageEvent::Progress => {}
        }
    }
    pb.finish_and_clear();
    printer.flush()?;
    let exit = Exit::from_severity(salvage.worst());
    let (ranges, bytes) = salvage.skipped();
    if job.json {
        let summary = Summary {
            salvage: true,
            status: output::status_word(salvage.worst()),
            exit_code: exit as i32,
            printed: filter.printed,
            last_lsn: last_printed,
            skipped_ranges: ranges,
            skipped_bytes: bytes,
            skipped: &skipped,
        };
        output::json_line(&mut io::stderr().lock(), &summary)?;
    } else if !job.quiet || ranges > 0 {
        let upto = last_printed.map_or(String::new(), |l| format!(", up to LSN {l}"));
        let s = if ranges == 1 { "" } else { "s" };
        output::note(format!(
            "salvage: {} records printed{upto}; {ranges} damaged range{s} skipped ({bytes} bytes)",
            filter.printed
        ));
    }
    Ok(exit)
}

/// One line naming a skipped range: where, how long, between which LSNs, why, and
/// the command that shows the bytes there.
fn describe(skip: &Skip, dir: &Path) -> String {
    let lsn = |l: Option<u64>| l.map_or("none".to_string(), |l| format!("LSN {l}"));
    let between = match skip.lsn_after {
        Some(_) => format!(
            "between {} and {}",
            lsn(skip.lsn_before),
            lsn(skip.lsn_after)
        ),
        None => format!("after {}; nothing intact after it", lsn(skip.lsn_before)),
    };
    let what = skip.severity.word();
    let range = if skip.len == 0 {
        format!(
            "LSN gap in {} at offset {} (no bytes skipped)",
            skip.segment, skip.offset
        )
    } else {
        format!(
            "skipped {} bytes of {} at offset {}",
            skip.len, skip.segment, skip.offset
        )
    };
    format!(
        "{what}: {range}, {between}: {}; to see it: {}",
        skip.reason,
        output::inspect_hint(dir, skip.segment_id, skip.offset)
    )
}
