//! `walctl checkpoint`: write one checkpoint record (the application's state
//! snapshot) and print its LSN once it is durable.

use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Serialize;

use super::args::{Encoding, Workload, WriterArgs};
use super::decode::{decode_arg, read_file_arg, read_stdin_whole};
use super::exit::{Exit, EXIT_CODES};
use super::open::{close_after, open_writer, DirArg};
use super::output;

fn checkpoint_after_help() -> String {
    format!(
        "\
Examples:
  walctl checkpoint --dir /var/lib/app/wal '{{\"applied_up_to\": 1042}}'
  app dump-state | walctl checkpoint --dir /var/lib/app/wal
  walctl checkpoint --dir wal --file state.bin --json
  echo 7b7d | walctl checkpoint --dir wal --encoding hex
  walctl checkpoint --dir wal --allow-empty ''           # an empty snapshot, on purpose

{}",
        EXIT_CODES
    )
}

/// Write one checkpoint record (a state snapshot) and print its LSN.
///
/// The snapshot is the DATA argument (text unless --encoding says otherwise), the
/// bytes of --file, or else all of standard input. File and standard-input bytes are
/// taken as they are unless --encoding is given (hex and base64 may then be wrapped
/// over several lines). The checkpoint is fsynced before its LSN is printed, whatever
/// --sync says: recovery (`WalReader::from_newest_checkpoint`) starts at it. The
/// directory is created when missing; a torn tail is saved to the quarantine and cut
/// first (reported on stderr); any other damage refuses the write.
#[derive(Debug, clap::Args)]
#[command(after_help = checkpoint_after_help())]
pub struct Args {
    #[command(flatten)]
    dir: DirArg,

    /// How DATA, --file or standard input is written. Without it DATA is UTF-8 text
    /// and a file or standard input is raw bytes.
    #[arg(long, short = 'e', value_enum, value_name = "ENCODING")]
    encoding: Option<Encoding>,

    /// Take the snapshot from this file.
    #[arg(long, value_name = "PATH", conflicts_with = "data")]
    file: Option<PathBuf>,

    /// Write the checkpoint even when the snapshot is empty. Without it an empty
    /// snapshot (a failed `pg_dump | walctl checkpoint`) is refused: recovery would
    /// start from it.
    #[arg(long)]
    allow_empty: bool,

    /// Print {"lsn":N} instead of the bare LSN.
    #[arg(long)]
    json: bool,

    /// The snapshot. Without DATA or --file, all of standard input is the snapshot.
    #[arg(value_name = "DATA")]
    data: Option<OsString>,

    #[command(flatten)]
    writer: WriterArgs,
}

#[derive(Serialize)]
struct Written {
    lsn: u64,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let opts = args.writer.options(Workload::OneShot);
    // The snapshot is read in full before the log is touched: bad input changes nothing.
    let snapshot = if let Some(data) = &args.data {
        decode_arg(args.encoding, data, 1)?
    } else if let Some(path) = &args.file {
        read_file_arg(path, args.encoding)?
    } else {
        if io::stdin().is_terminal() {
            output::note("reading the snapshot from standard input; end with Ctrl-D");
        }
        read_stdin_whole(args.encoding)?
    };

    if snapshot.is_empty() && !args.allow_empty {
        let source = if args.data.is_some() {
            "the DATA argument is empty".to_string()
        } else if let Some(path) = &args.file {
            format!("{} is empty", path.display())
        } else {
            "standard input was empty (did the program feeding it fail?)".to_string()
        };
        bail!(
            "refusing to write an empty checkpoint: {source}. Recovery starts at the newest \
             checkpoint, so an empty one would hide the state before it. Nothing was written; \
             pass --allow-empty if an empty snapshot is what you mean"
        );
    }

    let wal = open_writer(&args.dir.dir, opts, &args.writer.quarantine)?;
    let mut lsn = 0;
    let work = wal
        .checkpoint(&snapshot)
        .map(|l| lsn = l)
        .with_context(|| format!("writing a checkpoint to {}", args.dir.dir.display()));
    close_after(&wal, work).0?;
    let mut out = output::stdout();
    if args.json {
        output::json_line(&mut out, &Written { lsn })?;
    } else {
        writeln!(out, "{lsn}")?;
    }
    out.flush()?;
    Ok(Exit::Ok)
}
