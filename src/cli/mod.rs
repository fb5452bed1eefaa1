//! Command-line parsing, dispatch, and the exit-code contract shared by every
//! subcommand. Each subcommand lives in its own module with its own `Args`.

mod append;
#[cfg(feature = "s3")]
mod archive;
mod args;
mod bench;
mod checkpoint;
mod dump;
mod inspect;
mod meta;
pub mod output;
mod prune;
mod records;
mod repair;
mod salvage;
mod segments;
mod stats;
mod sys;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use walctl::storage::{FileStorage, ReadStorage, Storage};
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

/// walctl: inspect, verify, repair and write a write-ahead log in the format of
/// github.com/wizenheimer/wal.
#[derive(Debug, Parser)]
#[command(name = "walctl", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Append(append::Args),
    Checkpoint(checkpoint::Args),
    Dump(dump::Args),
    Verify(verify::Args),
    Segments(segments::Args),
    Inspect(inspect::Args),
    Stats(stats::Args),
    TruncateCorrupt(repair::Args),
    Bench(bench::Args),
    #[cfg(feature = "s3")]
    Archive(archive::Args),
    Completions(meta::CompletionsArgs),
    Man(meta::ManArgs),
}

/// `--dir`, shared by every command that works on a log.
#[derive(Debug, Clone, clap::Args)]
pub struct DirArg {
    /// The log directory. Read commands also take an archive URL
    /// (s3://BUCKET/PREFIX) and read the log in place.
    #[arg(long, short = 'd', env = "WALCTL_DIR", value_name = "DIR")]
    pub dir: PathBuf,
}

impl DirArg {
    /// Storage over the log directory for reading: nothing is locked or created.
    /// A missing path or one that is not a directory is "not a WAL directory".
    pub fn open_read(&self) -> anyhow::Result<Arc<dyn ReadStorage>> {
        #[cfg(feature = "s3")]
        if let Some(url) = self
            .dir
            .to_str()
            .filter(|d| walctl::archive::is_archive_url(d))
        {
            return archive::open_in_place(url);
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

/// Fails unless the directory behind `storage` holds at least one segment file.
pub fn require_segments(storage: &dyn ReadStorage) -> anyhow::Result<()> {
    if walctl::segment::list_segments(storage)?.is_empty() {
        anyhow::bail!(
            "not a WAL directory: {} holds no segment files (segment-<N>); nothing was changed",
            storage.root().display()
        );
    }
    Ok(())
}

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

/// Parses the command line, runs the command, and returns the exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Append(a) => append::run(a),
        Command::Checkpoint(a) => checkpoint::run(a),
        Command::Dump(a) => dump::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Segments(a) => segments::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Stats(a) => stats::run(a),
        Command::TruncateCorrupt(a) => repair::run(a),
        Command::Bench(a) => bench::run(a),
        #[cfg(feature = "s3")]
        Command::Archive(a) => archive::run(a),
        Command::Completions(a) => meta::completions(a),
        Command::Man(a) => meta::man(a),
    };
    match result {
        Ok(code) => code as i32,
        Err(e) if output::is_broken_pipe(&e) => 0,
        Err(e) => {
            output::error_line_with(&e, what_next(&e));
            exit_for_error(&e) as i32
        }
    }
}

/// What to do about an error that needs more than its text: bytes that could not be
/// saved before a cut (a full disk, most often), a damaged log, an unknown quarantine
/// entry. The library's messages say what happened; the commands to run are the CLI's.
fn what_next(e: &anyhow::Error) -> Option<String> {
    let ours = || e.chain().filter_map(|c| c.downcast_ref::<Error>());
    let poisoned_full =
        ours().any(|c| matches!(c, Error::Poisoned { source: Some(io), .. } if is_full(io)));
    if poisoned_full {
        return Some(
            "to go on, free space on that file system and run the command again: the next \
             writer saves any partial record in the quarantine, cuts it, and continues after \
             the last durable LSN (--quarantine-dir DIR puts the saved bytes on another file \
             system)"
                .into(),
        );
    }
    if ours().any(|c| matches!(c, Error::Damaged { .. })) {
        return Some(
            "run `walctl verify` to see the damage and `walctl truncate-corrupt` to repair it"
                .into(),
        );
    }
    if ours().any(|c| matches!(c, Error::NoSuchEntry { .. })) {
        return Some(
            "`walctl truncate-corrupt --list-quarantine` lists the entries (with \
             --quarantine-dir DIR for entries saved elsewhere)"
                .into(),
        );
    }
    #[cfg(feature = "s3")]
    if let Some(r) = e
        .chain()
        .find_map(|c| c.downcast_ref::<walctl::archive::ArchiveError>())
        .and_then(|a| a.remedy())
    {
        use walctl::archive::Remedy;
        return Some(
            match r {
                Remedy::Rebuild => "`walctl archive rebuild --from URL` rebuilds the manifest from the segment objects",
                Remedy::Verify => "`walctl archive verify --from URL` lists what the archive lacks",
                Remedy::VerifyDeep => "`walctl archive verify --deep --from URL` checks every object's bytes",
                _ => return None,
            }
            .into(),
        );
    }
    let (quarantine, source) = e.chain().find_map(|c| match c.downcast_ref::<Error>() {
        Some(Error::SaveFailed {
            quarantine, source, ..
        }) => Some((quarantine, source)),
        _ => None,
    })?;
    let full = std::iter::successors(Some(source.as_ref() as &dyn std::error::Error), |c| {
        c.source()
    })
    .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(is_full));
    Some(if full {
        format!(
            "to go on, free space on the file system of {}, or rerun with --quarantine-dir DIR \
             on another file system (give the same --quarantine-dir to --list-quarantine and \
             --restore later)",
            quarantine.display()
        )
    } else {
        "to go on, rerun with --quarantine-dir DIR to save the bytes somewhere else (give the \
         same --quarantine-dir to --list-quarantine and --restore later)"
            .to_string()
    })
}

/// A full disk or an exceeded quota.
fn is_full(io: &std::io::Error) -> bool {
    matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
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

/// 3 or 4 for an error that reports damage in the log, 1 otherwise.
pub fn exit_for_error(e: &anyhow::Error) -> Exit {
    e.chain()
        .find_map(|c| c.downcast_ref::<Error>())
        .and_then(|e| e.problem())
        .map_or(Exit::Failed, |p| Exit::from_severity(Some(p.severity)))
}
