//! `walctl truncate-corrupt --prune-quarantine`: list (dry run) or delete quarantine
//! entries, all or those older than a duration, never the one a log without records
//! takes its next LSN from.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use walctl::quarantine::{self, Location, Manifest};
use walctl::storage::Storage;

use crate::cli::exit::Exit;
use crate::cli::output;

/// What `--prune-quarantine` was asked.
pub struct Opts {
    pub older_than: Option<Duration>,
    pub apply: bool,
    pub json: bool,
    pub quiet: bool,
}

/// One entry and what pruning does with it.
struct Candidate {
    manifest: Manifest,
    bytes: u64,
    /// Why it is kept although old enough.
    kept: Option<String>,
}

pub fn run(log: Arc<dyn Storage>, q: Option<Arc<dyn Storage>>, opts: Opts) -> anyhow::Result<Exit> {
    let loc = match &q {
        Some(q) => Location::dir(q.as_ref()),
        None => Location::in_log(log.as_ref()),
    };
    let (mut candidates, skipped) = find_candidates(loc, opts.older_than)?;
    protect_lsn_floor(log.as_ref(), loc, &mut candidates)?;

    let mut out: Box<dyn Write> = if opts.quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(output::stdout())
    };
    let mut deleted = 0u64;
    let mut freed = 0u64;
    for c in &candidates {
        let action = match (&c.kept, opts.apply) {
            (Some(_), _) => "kept",
            (None, false) => "would-delete",
            (None, true) => {
                quarantine::remove_at(loc, &c.manifest.id)?;
                deleted += 1;
                freed += c.bytes;
                "deleted"
            }
        };
        write_line(&mut out, c, action, opts.json)?;
    }
    out.flush()?;
    // Quiet: the exit code is the answer.
    if !opts.quiet {
        let n = candidates.iter().filter(|c| c.kept.is_none()).count() as u64;
        let summary = match (candidates.is_empty(), opts.apply) {
            (true, _) => Summary::None,
            (false, true) => Summary::Deleted { deleted, freed },
            (false, false) => Summary::WouldDelete(n),
        };
        note_summary(loc, opts.older_than, summary);
    }
    Ok(if skipped == 0 { Exit::Ok } else { Exit::Failed })
}

/// The entries at `loc` old enough to prune (all without `older_than`), and how many
/// were left alone because they could not be read (each named on stderr).
fn find_candidates(
    loc: Location<'_>,
    older_than: Option<Duration>,
) -> anyhow::Result<(Vec<Candidate>, usize)> {
    let now = SystemTime::now();
    let mut skipped = 0;
    let mut candidates = Vec::new();
    for (id, m) in quarantine::entries_at(loc)? {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                skipped += 1;
                output::note(format_args!(
                    "warning: leaving quarantine entry {id} alone: {e}"
                ));
                continue;
            }
        };
        if let Some(age) = older_than {
            let Ok(t) = humantime::parse_rfc3339(&m.time) else {
                skipped += 1;
                output::note(format_args!(
                    "warning: leaving quarantine entry {id} alone: its time {:?} cannot be read",
                    m.time
                ));
                continue;
            };
            if now.duration_since(t).unwrap_or(Duration::ZERO) <= age {
                continue;
            }
        }
        let bytes = m.items.iter().map(|i| i.length).sum();
        candidates.push(Candidate {
            manifest: m,
            bytes,
            kept: None,
        });
    }
    Ok((candidates, skipped))
}

/// One entry's line: what was (or would be) done with it, as text or JSON.
fn write_line(
    out: &mut impl Write,
    c: &Candidate,
    action: &str,
    json: bool,
) -> std::io::Result<()> {
    let id = &c.manifest.id;
    if json {
        return output::json_line(
            out,
            &json!({
                "id": id,
                "time": c.manifest.time,
                "bytes": c.bytes,
                "action": action,
                "kept_because": c.kept,
            }),
        );
    }
    let what = match action {
        "kept" => "keep",
        "would-delete" => "would delete",
        _ => "deleted",
    };
    write!(
        out,
        "{what} {id} ({}, {}, {})",
        c.manifest.time,
        output::count(c.bytes, "byte", "bytes"),
        c.manifest.policy
    )?;
    match &c.kept {
        Some(why) => writeln!(out, ": {why}"),
        None => writeln!(out),
    }
}

/// What a prune came to, for its last line.
enum Summary {
    /// No entry was old enough.
    None,
    Deleted {
        deleted: u64,
        freed: u64,
    },
    /// A dry run: this many entries would go.
    WouldDelete(u64),
}

/// The last line, on stderr.
fn note_summary(loc: Location<'_>, older_than: Option<Duration>, summary: Summary) {
    let which = match older_than {
        Some(d) => format!(" older than {}", humantime::format_duration(d)),
        None => String::new(),
    };
    match summary {
        Summary::None => output::note(format_args!(
            "no quarantine entries{which} in {}",
            loc.path().display()
        )),
        Summary::Deleted { deleted, freed } => output::note(format_args!(
            "deleted {} ({} freed) from {}",
            output::count(deleted, "entry", "entries"),
            output::count(freed, "byte", "bytes"),
            loc.path().display()
        )),
        Summary::WouldDelete(n) => output::note(format_args!(
            "dry run: nothing was deleted. Run again with --apply to delete {}{which}",
            output::count(n, "entry", "entries"),
        )),
    }
}

/// A log without records takes its next LSN from the quarantine (the highest
/// `next_lsn` recorded): the entry holding it stays, or LSNs would restart.
fn protect_lsn_floor(
    log: &dyn Storage,
    loc: Location<'_>,
    candidates: &mut [Candidate],
) -> anyhow::Result<()> {
    let Some(floor) = quarantine::lsn_floor_at(loc)? else {
        return Ok(());
    };
    let empty = walctl::segment::list_segments(log)?
        .iter()
        .all(|s| s.size == 0);
    if !empty {
        return Ok(());
    }
    if let Some(c) = candidates
        .iter_mut()
        .find(|c| c.manifest.next_lsn == Some(floor))
    {
        c.kept = Some(format!(
            "the log holds no records, and this entry records that its next LSN is {floor}"
        ));
    }
    Ok(())
}
