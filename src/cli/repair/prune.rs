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
        if let Some(age) = opts.older_than {
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
    protect_lsn_floor(log.as_ref(), loc, &mut candidates)?;

    let mut out: Box<dyn Write> = if opts.quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(output::stdout())
    };
    let mut deleted = 0u64;
    let mut freed = 0u64;
    for c in &candidates {
        let id = &c.manifest.id;
        let action = match (&c.kept, opts.apply) {
            (Some(_), _) => "kept",
            (None, false) => "would-delete",
            (None, true) => {
                quarantine::remove_at(loc, id)?;
                deleted += 1;
                freed += c.bytes;
                "deleted"
            }
        };
        if opts.json {
            output::json_line(
                &mut out,
                &json!({
                    "id": id,
                    "time": c.manifest.time,
                    "bytes": c.bytes,
                    "action": action,
                    "kept_because": c.kept,
                }),
            )?;
        } else {
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
                Some(why) => writeln!(out, ": {why}")?,
                None => writeln!(out)?,
            }
        }
    }
    out.flush()?;
    let n = candidates.iter().filter(|c| c.kept.is_none()).count() as u64;
    let which = match opts.older_than {
        Some(d) => format!(" older than {}", humantime::format_duration(d)),
        None => String::new(),
    };
    if opts.quiet {
        // The exit code is the answer.
    } else if candidates.is_empty() {
        output::note(format_args!(
            "no quarantine entries{which} in {}",
            loc.path().display()
        ));
    } else if opts.apply {
        output::note(format_args!(
            "deleted {} ({} freed) from {}",
            output::count(deleted, "entry", "entries"),
            output::count(freed, "byte", "bytes"),
            loc.path().display()
        ));
    } else {
        output::note(format_args!(
            "dry run: nothing was deleted. Run again with --apply to delete {}{which}",
            output::count(n, "entry", "entries"),
        ));
    }
    Ok(if skipped == 0 { Exit::Ok } else { Exit::Failed })
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
