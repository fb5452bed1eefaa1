//! The exit-code contract shared by every command: the table `--help` prints, the
//! [`Exit`] statuses, and the status an error maps to.

use walctl::{Error, Severity};

/// The exit-code table, printed by `--help` and copied in README.md.
pub const EXIT_CODES: &str = "\
Exit codes (the same for every command):
  0  ok: the job is done and the log is clean
  1  could not do the job: I/O error, not a WAL directory, lock held, bad input
  2  usage error
  3  the log's only problem is a torn tail in its newest segment
     (what a crash mid-write leaves; `walctl truncate-corrupt --apply` cuts it)
  4  corruption: CRC mismatch, undecodable record, LSN gap or regression,
     or damage in a segment other than the newest";

/// Process exit status, per [`EXIT_CODES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failed = 1,
    TornTail = 3,
    Corrupt = 4,
}

impl Exit {
    /// The exit status for the worst problem of a log (`None`: clean).
    pub fn from_severity(worst: Option<Severity>) -> Exit {
        match worst {
            None => Exit::Ok,
            Some(Severity::TornTail) => Exit::TornTail,
            Some(Severity::Unreadable) => Exit::Failed,
            Some(Severity::Corruption) => Exit::Corrupt,
        }
    }
}

/// 3 or 4 for an error that reports damage in the log, 1 otherwise.
pub fn exit_for_error(e: &anyhow::Error) -> Exit {
    e.chain()
        .find_map(|c| c.downcast_ref::<Error>())
        .and_then(|e| e.problem())
        .map_or(Exit::Failed, |p| Exit::from_severity(Some(p.severity)))
}
