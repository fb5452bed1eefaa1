//! Opening a log from the command line, the one path from `--dir` to storage: for
//! reading (a local directory or an archive URL), for a repair, and for writing
//! (`append`, `checkpoint`) with the CLI's diagnostics and a close that is never
//! reported as success when it failed. `--quarantine-dir` is opened here as well.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use walctl::quarantine::QUARANTINE_DIR;
use walctl::scan::{scan_log, ScanOptions, ScanReport};
use walctl::segment::{list_segments, segment_name};
use walctl::storage::{FileStorage, ReadStorage, Storage};
use walctl::writer::{Wal, WalOptions};

use super::output;

/// `--dir`, shared by every command that works on a log.
#[derive(Debug, Clone, clap::Args)]
pub struct DirArg {
    /// The log directory. Read commands also take an archive URL
    /// (s3://BUCKET/PREFIX) and read the log in place.
    #[arg(long, short = 'd', env = "WALCTL_DIR", value_name = "DIR")]
    pub dir: PathBuf,
}

impl DirArg {
    /// A `--dir` a command declares itself (with its own help), to open it the way
    /// every command does (`archive push` and `archive ls`).
    #[cfg(feature = "s3")]
    pub fn new(dir: &Path) -> DirArg {
        DirArg {
            dir: dir.to_path_buf(),
        }
    }

    /// Storage over the log directory for reading: nothing is locked or created.
    /// A missing path or one that is not a directory is "not a WAL directory".
    pub fn open_read(&self) -> anyhow::Result<Arc<dyn ReadStorage>> {
        #[cfg(feature = "s3")]
        if let Some(url) = self
            .dir
            .to_str()
            .filter(|d| walctl::archive::is_archive_url(d))
        {
            return open_in_place(url);
        }
        Ok(self.open_local()?)
    }

    /// Storage over a local log directory that exists (what a repair works on):
    /// nothing is locked or created.
    pub fn open_local(&self) -> anyhow::Result<Arc<dyn Storage>> {
        let dir = &self.dir;
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => anyhow::bail!("not a WAL directory: {} is not a directory", dir.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::read_link(dir) {
                Ok(target) => anyhow::bail!(
                    "not a WAL directory: {} is a symbolic link to {}, which does not exist",
                    dir.display(),
                    target.display()
                ),
                Err(_) => anyhow::bail!("not a WAL directory: {} does not exist", dir.display()),
            },
            Err(e) => anyhow::bail!("cannot open {}: {e}", dir.display()),
        }
        let storage = FileStorage::open(dir)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", dir.display()))?;
        Ok(Arc::new(storage))
    }

    /// [`DirArg::open_read`] for a log that must exist: a directory holding no
    /// segment file is "not a WAL directory" (exit 1), so that a mistyped `--dir`
    /// never passes for a clean, empty log.
    pub fn open_log(&self) -> anyhow::Result<Arc<dyn ReadStorage>> {
        let storage = self.open_read()?;
        require_segments(storage.as_ref())?;
        Ok(storage)
    }
}

/// A read-only log view of the archive at `url`, for the read commands' `--dir`.
#[cfg(feature = "s3")]
fn open_in_place(url: &str) -> anyhow::Result<Arc<dyn ReadStorage>> {
    use walctl::archive::{Archive, ArchiveStorage, Connect};
    let archive = Archive::open(url, &Connect::default())?;
    Ok(Arc::new(ArchiveStorage::new(Arc::new(archive))))
}

/// Fails unless the directory behind `storage` holds at least one segment file.
pub fn require_segments(storage: &dyn ReadStorage) -> anyhow::Result<()> {
    if list_segments(storage)?.is_empty() {
        anyhow::bail!(
            "not a WAL directory: {} holds no segment files (segment-<N>); nothing was changed",
            storage.root().display()
        );
    }
    Ok(())
}

/// Scans the whole log behind `dir` with a progress bar (hidden when `quiet`, and
/// unless stderr is a terminal and the log large).
pub fn scan_with_progress(dir: &DirArg, quiet: bool, what: &str) -> anyhow::Result<ScanReport> {
    let storage = dir.open_log()?;
    let total: u64 = list_segments(storage.as_ref())?
        .iter()
        .map(|s| s.size)
        .sum();
    let pb = output::progress(total, quiet, what);
    let report = scan_log(storage, ScanOptions::default(), |done| {
        pb.set_position(done)
    });
    pb.finish_and_clear();
    Ok(report?)
}

/// `--quarantine-dir`, shared by the commands that may cut bytes from a log.
#[derive(Debug, Clone, clap::Args)]
pub struct QuarantineArg {
    /// Keep quarantine entries (the bytes a cut saves first) in this directory
    /// instead of .walctl-quarantine inside the log directory, e.g. on another file
    /// system when the log's is full. Created if missing. Give the same directory to
    /// --list-quarantine, --restore and --prune-quarantine.
    #[arg(long, value_name = "DIR")]
    pub quarantine_dir: Option<PathBuf>,
}

impl QuarantineArg {
    /// Storage over the quarantine directory, created if `create` and missing;
    /// `None` for the log's own.
    pub fn open(&self, create: bool) -> anyhow::Result<Option<Arc<dyn Storage>>> {
        let Some(dir) = &self.quarantine_dir else {
            return Ok(None);
        };
        let storage = if create {
            FileStorage::create(dir).map(|(s, _)| s)
        } else {
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => FileStorage::open(dir),
                Ok(_) => anyhow::bail!("--quarantine-dir {} is not a directory", dir.display()),
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("--quarantine-dir {}", dir.display())))
                }
            }
        }
        .map_err(|e| anyhow::anyhow!("cannot open --quarantine-dir {}: {e}", dir.display()))?;
        Ok(Some(Arc::new(storage)))
    }
}

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
