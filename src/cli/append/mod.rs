//! `walctl append`: append entries from arguments, files or standard input, and
//! acknowledge each one (its LSN on stdout) once it is durable per `--sync`.
//!
//! Standard input is acknowledged as it goes: whenever it has nothing more ready,
//! everything read so far is appended as one batch and its LSNs are printed and
//! flushed before append blocks for more. While input keeps coming, records group
//! into batches bounded by [`BATCH_MAX_BYTES`] / [`BATCH_MAX_RECORDS`] /
//! [`BATCH_MAX_AGE`], so a bulk load is one write and one fsync per batch and memory
//! never grows with the input.
//!
//! The writer options and encodings (cli/args.rs), decoding (cli/decode.rs) and the
//! open-with-diagnostics step (cli/open.rs) are shared with `walctl checkpoint`.

use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::args::{Encoding, SyncMode, Workload, WriterArgs};
use super::decode::{decode_arg, read_file_arg};
use super::exit::{Exit, EXIT_CODES};
use super::open::{close_after, open_writer, DirArg};
use super::output;

mod batch;

use batch::{pump, Batch, Committer, Sink, Split, StdinFd};

/// A batch is committed once it holds this many data bytes...
const BATCH_MAX_BYTES: usize = 4 << 20;
/// ...or this many records...
const BATCH_MAX_RECORDS: usize = 10_000;
/// ...or its first record has waited this long while input kept coming.
const BATCH_MAX_AGE: Duration = Duration::from_millis(100);
/// Bytes asked of one read(2) on standard input.
const READ_CHUNK: usize = 256 << 10;

fn append_after_help() -> String {
    format!(
        "\
Examples:
  walctl append --dir /var/lib/app/wal 'first entry' 'second entry'
  tail -f app.log | walctl append --dir /var/lib/app/wal --sync interval
  printf 'deadbeef\\n00ff\\n' | walctl append --dir wal --encoding hex
  find . -type f -print0 | walctl append --dir wal -0 --json
  walctl append --dir wal --file blob.bin

{}",
        EXIT_CODES
    )
}

/// Append entries to a log and print the LSN of each, one per line.
///
/// Each DATA argument is one entry (use `--` before data that starts with '-'). Each
/// --file is one entry holding that file's bytes. Otherwise standard input is read:
/// one entry per line, its line ending (\n or \r\n) removed; an empty line is an
/// empty entry and a last line without a newline still counts. With -0, standard
/// input is split on NUL bytes instead and taken as raw bytes.
///
/// Entries are acknowledged as they go: whenever standard input has nothing more
/// ready, everything read so far is appended as one batch, made durable per --sync
/// (with --sync interval or never it is at least handed to the OS), and its LSNs are
/// printed and flushed before append waits for more. A program that writes a line
/// into `walctl append --sync always` and reads back its LSN knows that line is on
/// disk. Exit status 0 means every entry is durable.
///
/// The directory is created when missing. A torn tail left by a crash is saved to
/// the quarantine and cut (reported on stderr); any other damage refuses the write.
/// Undecodable input stops with an error naming the line; the entries before it are
/// appended and printed.
#[derive(Debug, clap::Args)]
#[command(after_help = append_after_help())]
pub struct Args {
    #[command(flatten)]
    dir: DirArg,

    /// How each DATA argument and each input line is written [default: utf8].
    /// With --file, the file is raw bytes unless --encoding is given; hex and base64
    /// input may then be wrapped over several lines.
    #[arg(long, short = 'e', value_enum, value_name = "ENCODING")]
    encoding: Option<Encoding>,

    /// Split standard input on NUL bytes (not lines) and take each piece as raw bytes.
    #[arg(short = '0', long = "null", conflicts_with_all = ["encoding", "data", "file"])]
    null: bool,

    /// Append the bytes of this file as one entry (repeatable; appended in order, as
    /// one batch).
    #[arg(long, value_name = "PATH", conflicts_with = "data")]
    file: Vec<PathBuf>,

    /// Print one JSON object at the end, {"first_lsn":..,"last_lsn":..,"count":..},
    /// instead of one LSN per line.
    #[arg(long)]
    json: bool,

    /// Entries to append, one per argument. Without DATA or --file, standard input
    /// is read.
    #[arg(value_name = "DATA")]
    data: Vec<OsString>,

    #[command(flatten)]
    writer: WriterArgs,
}

#[derive(Serialize)]
struct Summary {
    first_lsn: Option<u64>,
    last_lsn: Option<u64>,
    count: u64,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let workload = match args.data.is_empty() && args.file.is_empty() {
        true => Workload::Stream,
        false => Workload::OneShot,
    };
    let opts = args.writer.options(workload);
    // Arguments and files are read and decoded before the log is touched: bad input
    // changes nothing.
    let prepared = prepare(&args)?;

    let wal = open_writer(&args.dir.dir, opts, &args.writer.quarantine)?;
    let mut committer = Committer {
        wal: &wal,
        out: output::stdout(),
        json: args.json,
        flush_os: args.writer.sync != SyncMode::Always,
        first: None,
        last: None,
        count: 0,
        stdout_closed: false,
    };
    let work = match prepared {
        Some(mut batch) => committer.commit(&mut batch),
        None => pump(&mut StdinFd, stdin_split(&args), &mut committer),
    };
    let (first_lsn, last_lsn, count) = (committer.first, committer.last, committer.count);
    let mut out = committer.out;
    let (res, durable) = close_after(&wal, work);
    // The summary says what is durable, also when input stopped with an error.
    let pipe_closed = res.as_ref().is_err_and(output::is_broken_pipe);
    if args.json && durable && !pipe_closed {
        let summary = Summary {
            first_lsn,
            last_lsn,
            count,
        };
        let printed = output::json_line(&mut out, &summary).and_then(|()| out.flush());
        if res.is_ok() {
            printed?;
        }
    }
    res?;
    Ok(Exit::Ok)
}

/// The entries given as DATA arguments or --file, decoded; `None` when they come
/// from standard input.
fn prepare(args: &Args) -> anyhow::Result<Option<Batch>> {
    let mut batch = Batch::default();
    if !args.data.is_empty() {
        for (i, arg) in args.data.iter().enumerate() {
            batch.push(&decode_arg(args.encoding, arg, i + 1)?);
        }
    } else if !args.file.is_empty() {
        for path in &args.file {
            batch.push(&read_file_arg(path, args.encoding)?);
        }
    } else {
        return Ok(None);
    }
    Ok(Some(batch))
}

/// How standard input is cut into entries (saying so on a terminal, where the
/// user types them).
fn stdin_split(args: &Args) -> Split {
    let split = if args.null {
        Split {
            sep: 0,
            strip_cr: false,
            enc: None,
        }
    } else {
        Split {
            sep: b'\n',
            strip_cr: true,
            enc: Some(args.encoding.unwrap_or(Encoding::Utf8)),
        }
    };
    if io::stdin().is_terminal() {
        output::note(if args.null {
            "reading NUL-separated entries from standard input; end with Ctrl-D"
        } else {
            "reading entries from standard input, one per line; end with Ctrl-D"
        });
    }
    split
}
