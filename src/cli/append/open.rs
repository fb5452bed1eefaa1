//! Opening the writer for `append` and `checkpoint` with the CLI's diagnostics, and
//! closing it so that a failed close is never reported as success.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use walctl::quarantine::QUARANTINE_DIR;
use walctl::segment::segment_name;
use walctl::storage::FileStorage;
use walctl::writer::{Wal, WalOptions};

use crate::cli::{output, QuarantineArg};

/// Opens (creating if needed) the log for writing, saying on stderr what opening did:
/// a created directory, a new log, a torn tail saved and cut.
pub fn open_writer(dir: &Path, opts: WalOptions, q: &QuarantineArg) -> anyhow::Result<Wal> {
    let (storage, created) = FileStorage::create(dir)
        .with_context(|| format!("open log directory {}", dir.display()))?;
    if created {
        output::note(format!("created log directory {}", dir.display()));
    }
    let quarantine = q.open(true)?;
    let saved_in = match &quarantine {
        Some(q) => q.root().to_path_buf(),
        None => dir.join(QUARANTINE_DIR),
    };
    let wal = Wal::open_with_quarantine(Arc::new(storage), opts, quarantine)?;
    let report = wal.open_report();
    if let Some(r) = &report.repaired_tail {
        output::note(format!(
            "repaired a torn tail in {} at offset {}: cut {} bytes, saved in quarantine {} ({})",
            r.segment,
            r.offset,
            r.bytes,
            r.quarantine_id,
            saved_in.join(&r.quarantine_id).display()
        ));
    }
    if let Some(u) = &report.unwritten_tail {
        output::note(format!(
            "cut {} bytes of unwritten, preallocated zeros from the end of {} (at offset {}): \
             they held no record",
            u.bytes, u.segment, u.offset
        ));
    }
    if report.created_segment && !created {
        output::note(format!(
            "started a new log in {} ({})",
            dir.display(),
            report.segment
        ));
    }
    Ok(wal)
}

/// Closes the log after the work is done (or failed), so that what was acknowledged
/// is durable, and picks the error to report. The flag says whether the close
/// succeeded (everything appended is durable).
pub fn close_after(wal: &Wal, work: anyhow::Result<()>) -> (anyhow::Result<()>, bool) {
    let closed = wal
        .close()
        .with_context(|| format!("closing {}", wal.storage().root().display()));
    if let Some(why) = wal.archive_hold() {
        output::note(why);
    }
    let ok = closed.is_ok();
    note_retention(wal);
    let res = match (work, closed) {
        (Ok(()), c) => c,
        (Err(e), Ok(())) => Err(e),
        // A closed stdout would be reported as success: the failed close must win.
        (Err(e), Err(c)) if output::is_broken_pipe(&e) => Err(c),
        // The writer refuses to close after the failure the work already reports.
        (Err(e), Err(c)) if is_poisoned(&c) => Err(e),
        (Err(e), Err(c)) => Err(anyhow!("{e:#}; closing the log also failed: {c:#}")),
    };
    (res, ok)
}

/// Says on stderr which segments retention (`--max-segments`) deleted, if any.
fn note_retention(wal: &Wal) {
    let r = wal.retention();
    let Some((a, b)) = r.ids else {
        return;
    };
    let names = if a == b {
        segment_name(a)
    } else {
        format!("{}..{}", segment_name(a), segment_name(b))
    };
    let lsns = match r.lsns {
        Some((x, y)) if x == y => format!("LSN {x}"),
        Some((x, y)) => format!("LSN {x}-{y}"),
        None => "no records".to_string(),
    };
    output::note(format_args!(
        "retention (--max-segments {}) deleted {}: {names} ({lsns}), all before the newest \
         checkpoint",
        wal.options().max_segments,
        output::count(r.removed, "segment", "segments"),
    ));
}

fn is_poisoned(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<walctl::Error>(),
            Some(walctl::Error::Poisoned { .. })
        )
    })
}
