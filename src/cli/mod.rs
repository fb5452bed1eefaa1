//! Command-line parsing, dispatch, and what an error's line on stderr says to do
//! next. Each subcommand lives in its own module with its own `Args`; what more than
//! one command uses lives in a shared module (args, decode, exit, open, output, sys),
//! so that no command imports another.

mod append;
#[cfg(feature = "s3")]
mod archive;
mod args;
mod bench;
mod checkpoint;
mod decode;
mod dump;
mod exit;
mod inspect;
mod meta;
mod open;
pub mod output;
mod repair;
mod segments;
mod stats;
mod sys;
mod verify;

use clap::{CommandFactory, Parser, Subcommand};
use walctl::Error;

use exit::{exit_for_error, EXIT_CODES};

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
        Command::Completions(a) => meta::completions(a, Cli::command()),
        Command::Man(a) => meta::man(a, Cli::command()),
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
