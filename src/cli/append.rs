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
//! The writer options, the encodings and the open-with-diagnostics step are shared
//! with `walctl checkpoint`.

use std::ffi::OsString;
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::Serialize;
use walctl::codec::MAX_DATA_LEN;
use walctl::quarantine::QUARANTINE_DIR;
use walctl::segment::segment_name;
use walctl::storage::FileStorage;
use walctl::writer::{SyncPolicy, Wal, WalOptions};

use super::{output, DirArg, Exit, QuarantineArg};

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
        super::EXIT_CODES
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

/// How entries are written on the command line and on standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// Text, stored as its UTF-8 bytes (invalid UTF-8 is an error).
    Utf8,
    /// Hexadecimal digits, two per byte, either case.
    Hex,
    /// Standard base64 alphabet; the trailing '=' padding is optional.
    Base64,
}

/// When appended entries are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// fsync before acknowledging (one fsync per batch).
    Always,
    /// Hand each batch to the OS before acknowledging; fsync every --sync-interval-ms.
    Interval,
    /// Hand each batch to the OS before acknowledging; fsync only at rotation and exit.
    Never,
}

/// The writer options shared by `append` and `checkpoint`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Writer options")]
pub struct WriterArgs {
    /// Start a new segment before a write once the current one holds at least this
    /// many bytes (a segment may exceed it by one record, as in the reference).
    /// Suffixes K, M, G (or KiB, MiB, GiB) multiply by 1024.
    #[arg(long, value_name = "BYTES", default_value = "4MiB", value_parser = parse_size)]
    max_segment_size: u64,

    /// Delete the oldest segments beyond N (0, the default: delete nothing). Only
    /// segments wholly before the newest checkpoint are ever deleted, and the ones
    /// deleted are named on stderr. (The library's default is 10, as in Go.)
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_segments: usize,

    /// When entries are made durable. Exit 0 always means durable: the log is
    /// fsynced when the command ends.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = SyncMode::Always)]
    sync: SyncMode,

    /// Milliseconds between background fsyncs with --sync interval [default: 200].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    sync_interval_ms: Option<u64>,

    /// Preallocate segments with durable zeros ahead of the writes, so each fsync
    /// flushes data only (faster commits). While the command runs, the newest
    /// segment ends in zeros the Go library cannot read past; every segment is cut
    /// to its last record when it is left. "off" keeps every segment exactly as long
    /// as its records at every moment.
    #[arg(long, value_enum, value_name = "ON|OFF", default_value_t = OnOff::On)]
    preallocate: OnOff,

    /// Where a torn tail cut at open is saved (see truncate-corrupt).
    #[command(flatten)]
    pub quarantine: QuarantineArg,
}

/// A switch given as `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

impl WriterArgs {
    /// The library options. An interval given without `--sync interval` is a usage
    /// error (exit 2), reported before anything is opened.
    pub fn options(&self) -> WalOptions {
        if self.sync_interval_ms.is_some() && self.sync != SyncMode::Interval {
            clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                "--sync-interval-ms applies only with --sync interval\n",
            )
            .exit();
        }
        let sync = match self.sync {
            SyncMode::Always => SyncPolicy::Always,
            SyncMode::Never => SyncPolicy::Never,
            SyncMode::Interval => {
                SyncPolicy::Interval(Duration::from_millis(self.sync_interval_ms.unwrap_or(200)))
            }
        };
        WalOptions {
            max_segment_size: self.max_segment_size,
            max_segments: self.max_segments,
            sync,
            preallocate: self.preallocate == OnOff::On,
        }
    }
}

/// Parses a byte count: digits with an optional binary suffix (K, M, G, KiB, MiB, GiB,
/// B). Zero is refused.
pub(super) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "{s:?} is not a byte count (e.g. 4194304, 512K, 4MiB)"
        ));
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} (use K, M, G, KiB, MiB or GiB)"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{digits:?} is too large"))?;
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if v == 0 {
        return Err("must be at least 1 byte".into());
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------
// Decoding

fn base64_engine() -> GeneralPurpose {
    GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

fn hex_nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("{:?}", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// Decodes `input` per `enc`, appending to `out`. On error `out` is left as it was and
/// the message says what is wrong and where in `input`.
pub fn decode_into(enc: Encoding, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let before = out.len();
    let res = match enc {
        Encoding::Utf8 => match std::str::from_utf8(input) {
            Ok(_) => {
                out.extend_from_slice(input);
                Ok(())
            }
            Err(e) => Err(format!(
                "invalid UTF-8 at byte {} (use --encoding base64 or hex, or -0, for binary data)",
                e.valid_up_to()
            )),
        },
        Encoding::Hex => decode_hex(input, out),
        Encoding::Base64 => decode_base64(input, out),
    };
    if res.is_err() {
        out.truncate(before);
    }
    res
}

/// Hex digits, two per byte; ASCII whitespace anywhere is ignored (the same for
/// arguments, lines and whole documents). Errors name the offending byte.
fn decode_hex(input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    out.reserve(input.len() / 2);
    let mut high: Option<(u8, usize)> = None;
    let mut digits = 0usize;
    for (pos, &b) in input.iter().enumerate() {
        if b.is_ascii_whitespace() {
            continue;
        }
        let Some(n) = hex_nibble(b) else {
            return Err(format!(
                "invalid hex digit {} at byte {pos}",
                describe_byte(b)
            ));
        };
        digits += 1;
        match high.take() {
            None => high = Some((n, pos)),
            Some((h, _)) => out.push(h << 4 | n),
        }
    }
    match high {
        None => Ok(()),
        Some((_, pos)) => Err(format!(
            "invalid hex: odd number of digits ({digits}, whitespace not counted): the last, {} \
             at byte {pos}, has no pair",
            describe_byte(input[pos])
        )),
    }
}

/// Standard base64; ASCII whitespace anywhere is ignored. Errors name the offending
/// byte by its place in `input`.
fn decode_base64(input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let compact: std::borrow::Cow<[u8]> = if input.iter().any(u8::is_ascii_whitespace) {
        input
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect::<Vec<u8>>()
            .into()
    } else {
        input.into()
    };
    // Where the n-th byte that is not whitespace sits in `input`.
    let original = |n: usize| {
        input
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.is_ascii_whitespace())
            .nth(n)
            .map_or(input.len(), |(i, _)| i)
    };
    base64_engine()
        .decode_vec(&compact, out)
        .map_err(|e| match e {
            base64::DecodeError::InvalidByte(at, b) => format!(
                "invalid base64: {} at byte {}",
                describe_byte(b),
                original(at)
            ),
            base64::DecodeError::InvalidLastSymbol(at, b) => format!(
                "invalid base64: last symbol {} at byte {} leaves stray bits",
                describe_byte(b),
                original(at)
            ),
            e => format!("invalid base64: {e}"),
        })
}

/// The longest encoded form of a record of at most [`MAX_DATA_LEN`] bytes.
fn max_encoded_len(enc: Option<Encoding>) -> usize {
    match enc {
        None | Some(Encoding::Utf8) => MAX_DATA_LEN,
        Some(Encoding::Hex) => 2 * MAX_DATA_LEN,
        Some(Encoding::Base64) => MAX_DATA_LEN.div_ceil(3) * 4,
    }
}

fn too_large(what: &str) -> anyhow::Error {
    anyhow!("{what} is larger than the maximum record size ({MAX_DATA_LEN} bytes)")
}

/// Decodes a whole document (a file or all of standard input): raw bytes without an
/// encoding; hex and base64 may be wrapped (ASCII whitespace is ignored).
pub fn decode_whole(enc: Option<Encoding>, raw: Vec<u8>, what: &str) -> anyhow::Result<Vec<u8>> {
    let data = match enc {
        None => raw,
        Some(Encoding::Utf8) => {
            let mut out = Vec::new();
            decode_into(Encoding::Utf8, &raw, &mut out).map_err(|m| anyhow!("{what}: {m}"))?;
            out
        }
        Some(enc) => {
            let mut out = Vec::new();
            decode_into(enc, &raw, &mut out).map_err(|m| anyhow!("{what}: {m}"))?;
            out
        }
    };
    if data.len() > MAX_DATA_LEN {
        return Err(too_large(what));
    }
    Ok(data)
}

/// Input held in memory while it is not yet known to fit a record; the rest waits in
/// an unlinked temporary file, so that refused input never costs more than this.
const IN_MEMORY_MAX: usize = 8 << 20;
/// Bytes asked of one read of a file or of standard input read whole.
const WHOLE_CHUNK: usize = 1 << 20;

/// The most raw bytes a document may have: wrapped hex/base64 carries whitespace, so
/// an eighth more is allowed.
fn raw_limit(enc: Option<Encoding>) -> u64 {
    (match enc {
        None | Some(Encoding::Utf8) => MAX_DATA_LEN,
        e => max_encoded_len(e) + max_encoded_len(e) / 8,
    }) as u64
}

/// Counts, as a document is read, the bytes its decoding can be at most.
struct DecodedBound {
    enc: Option<Encoding>,
    significant: u64,
}

impl DecodedBound {
    fn feed(&mut self, bytes: &[u8]) {
        self.significant += match self.enc {
            None | Some(Encoding::Utf8) => bytes.len(),
            Some(Encoding::Hex) => bytes.iter().filter(|b| !b.is_ascii_whitespace()).count(),
            Some(Encoding::Base64) => bytes
                .iter()
                .filter(|b| !b.is_ascii_whitespace() && **b != b'=')
                .count(),
        } as u64;
    }

    /// Significant bytes that, read on top of those so far, make the decoding too
    /// large for a record (at least 1 while it still fits).
    fn room(&self) -> u64 {
        let over = MAX_DATA_LEN as u64 + 1;
        let needed = match self.enc {
            None | Some(Encoding::Utf8) => over,
            Some(Encoding::Hex) => 2 * over,
            Some(Encoding::Base64) => (4 * over).div_ceil(3),
        };
        needed.saturating_sub(self.significant).max(1)
    }

    fn decoded(&self) -> u64 {
        match self.enc {
            None | Some(Encoding::Utf8) => self.significant,
            Some(Encoding::Hex) => self.significant / 2,
            Some(Encoding::Base64) => self.significant * 3 / 4,
        }
    }
}

fn refused_after(what: &str, read: u64) -> anyhow::Error {
    anyhow!(
        "{what} is larger than the maximum record size ({MAX_DATA_LEN} bytes): refused after \
         reading {read} bytes of it; nothing was written"
    )
}

/// Reads all of `r`, stopping as soon as what was read cannot fit a record (at most
/// the limit plus one byte is read). Past [`IN_MEMORY_MAX`] bytes the input waits in
/// an unlinked temporary file until it is known to fit, so refused input costs
/// little memory, however large it is.
fn read_bounded(mut r: impl Read, enc: Option<Encoding>, what: &str) -> anyhow::Result<Vec<u8>> {
    let limit = raw_limit(enc);
    let mut bound = DecodedBound {
        enc,
        significant: 0,
    };
    let mut mem = Vec::new();
    let mut spill: Option<std::fs::File> = None;
    let mut chunk = vec![0u8; WHOLE_CHUNK];
    let mut total = 0u64;
    loop {
        // Never past the byte that shows the input cannot fit.
        let want = (limit + 1 - total)
            .min(bound.room())
            .min(WHOLE_CHUNK as u64) as usize;
        let n = match r.read(&mut chunk[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("read {what}"))),
        };
        if n == 0 {
            break;
        }
        let bytes = &chunk[..n];
        total += n as u64;
        bound.feed(bytes);
        if total > limit || bound.decoded() > MAX_DATA_LEN as u64 {
            return Err(refused_after(what, total));
        }
        match &mut spill {
            None if mem.len() + n <= IN_MEMORY_MAX => mem.extend_from_slice(bytes),
            _ => {
                if spill.is_none() {
                    spill = Some(tempfile::tempfile().with_context(|| {
                        format!("create a temporary file to hold {what} while it is read")
                    })?);
                }
                let f = spill.as_mut().expect("just created");
                f.write_all(bytes)
                    .with_context(|| format!("buffer {what} in a temporary file"))?;
            }
        }
    }
    let Some(mut f) = spill else {
        return Ok(mem);
    };
    // It fits: now it may take the memory it needs.
    let mut all = Vec::with_capacity(total as usize);
    all.append(&mut mem);
    drop(mem);
    use std::io::Seek;
    f.rewind()
        .and_then(|()| f.read_to_end(&mut all))
        .with_context(|| format!("read back {what} from its temporary file"))?;
    Ok(all)
}

/// Refuses, before reading any of it, a regular file whose size alone says it cannot
/// fit a record.
fn check_size(size: u64, enc: Option<Encoding>, what: &str) -> anyhow::Result<()> {
    let limit = raw_limit(enc);
    if size > limit {
        bail!(
            "{what} is {size} bytes, larger than {} ({MAX_DATA_LEN} bytes{}): refused before \
             reading it; nothing was written",
            if enc.is_none() || enc == Some(Encoding::Utf8) {
                "the maximum record size".to_string()
            } else {
                "any encoding of the largest record can be".to_string()
            },
            if enc.is_none() || enc == Some(Encoding::Utf8) {
                String::new()
            } else {
                format!(" decoded, {limit} bytes encoded with whitespace")
            }
        );
    }
    Ok(())
}

/// Reads a file named on the command line, checking its size before reading.
pub fn read_file_arg(path: &Path, enc: Option<Encoding>) -> anyhow::Result<Vec<u8>> {
    let what = path.display().to_string();
    let f = std::fs::File::open(path).with_context(|| format!("open {what}"))?;
    let meta = f.metadata().with_context(|| format!("stat {what}"))?;
    if meta.is_dir() {
        bail!("{what} is a directory, not a file");
    }
    if meta.is_file() {
        check_size(meta.len(), enc, &what)?;
    }
    let raw = read_bounded(f, enc, &what)?;
    decode_whole(enc, raw, &what)
}

/// Reads all of standard input as one document (a regular file redirected to it is
/// refused by its size, before it is read).
pub fn read_stdin_whole(enc: Option<Encoding>) -> anyhow::Result<Vec<u8>> {
    // SAFETY: fstat(2) on descriptor 0 into a struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(libc::STDIN_FILENO, &mut st) } == 0
        && st.st_mode & libc::S_IFMT == libc::S_IFREG
    {
        check_size(st.st_size as u64, enc, "standard input")?;
    }
    let raw = read_bounded(io::stdin().lock(), enc, "standard input")?;
    decode_whole(enc, raw, "standard input")
}

/// Decodes a command-line argument (text unless an encoding says otherwise).
pub fn decode_arg(enc: Option<Encoding>, arg: &OsString, n: usize) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    decode_into(enc.unwrap_or(Encoding::Utf8), arg.as_bytes(), &mut out)
        .map_err(|m| anyhow!("argument {n}: {m}"))?;
    if out.len() > MAX_DATA_LEN {
        return Err(too_large(&format!("argument {n}")));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// Opening

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
            Some(walctl::Error::Poisoned(_))
        )
    })
}

// ---------------------------------------------------------------------------------
// Batching

/// Entries waiting to be appended, in one arena.
#[derive(Debug, Default)]
pub struct Batch {
    arena: Vec<u8>,
    ends: Vec<usize>,
    started: Option<Instant>,
}

impl Batch {
    fn push_decoded(&mut self, enc: Option<Encoding>, raw: &[u8]) -> Result<(), String> {
        match enc {
            None => self.arena.extend_from_slice(raw),
            Some(enc) => decode_into(enc, raw, &mut self.arena)?,
        }
        let start = self.ends.last().copied().unwrap_or(0);
        if self.arena.len() - start > MAX_DATA_LEN {
            self.arena.truncate(start);
            return Err(format!(
                "entry is larger than the maximum record size ({MAX_DATA_LEN} bytes)"
            ));
        }
        self.ends.push(self.arena.len());
        self.started.get_or_insert_with(Instant::now);
        Ok(())
    }

    fn push(&mut self, data: &[u8]) {
        self.arena.extend_from_slice(data);
        self.ends.push(self.arena.len());
    }

    /// The entries, in order.
    pub fn slices(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let s = &self.arena[start..end];
                start = end;
                s
            })
            .collect()
    }

    /// Whether there is nothing to append.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn full(&self) -> bool {
        self.arena.len() >= BATCH_MAX_BYTES || self.ends.len() >= BATCH_MAX_RECORDS
    }

    fn aged(&self) -> bool {
        self.started.is_some_and(|t| t.elapsed() >= BATCH_MAX_AGE)
    }

    fn clear(&mut self) {
        self.arena.clear();
        self.ends.clear();
        self.started = None;
        if self.arena.capacity() > 4 * BATCH_MAX_BYTES {
            self.arena.shrink_to(BATCH_MAX_BYTES);
        }
    }
}

/// Where committed batches go.
pub trait Sink {
    /// Appends the batch, makes it durable per the sync policy, acknowledges it, and
    /// empties it. An empty batch is a no-op.
    fn commit(&mut self, batch: &mut Batch) -> anyhow::Result<()>;
}

/// Appends batches to the log and prints their LSNs.
struct Committer<'a, W: Write> {
    wal: &'a Wal,
    out: W,
    json: bool,
    /// Whether to hand each batch to the OS (the policy does not fsync it).
    flush_os: bool,
    first: Option<u64>,
    last: Option<u64>,
    count: u64,
    /// stdout was closed by its reader: keep appending, stop printing.
    stdout_closed: bool,
}

impl<W: Write> Sink for Committer<'_, W> {
    fn commit(&mut self, batch: &mut Batch) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let dir = self.wal.storage().root();
        let acked = self.last;
        let what = || match acked {
            Some(l) => format!(
                "appending to {} (every LSN printed, up to {l}, is durable)",
                dir.display()
            ),
            None => format!("appending to {} (no LSN was printed)", dir.display()),
        };
        let (first, last) = self.wal.append_batch(&batch.slices()).with_context(what)?;
        if self.flush_os {
            self.wal.flush().with_context(what)?;
        }
        batch.clear();
        self.first.get_or_insert(first);
        self.last = Some(last);
        self.count += last - first + 1;
        if !self.json && !self.stdout_closed {
            let printed = (first..=last)
                .try_for_each(|lsn| writeln!(self.out, "{lsn}"))
                .and_then(|()| self.out.flush());
            match printed {
                // Whoever read the LSNs has gone (`| head -1`). The input is still
                // appended, all of it: a closed stdout must not drop entries.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => self.stdout_closed = true,
                other => other?,
            }
        }
        Ok(())
    }
}

/// Standard input as the pump sees it.
pub trait Input {
    /// One read; 0 is end of input.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Whether a read would return at once (data or end of input is ready).
    fn ready(&mut self) -> bool;
}

/// File descriptor 0, read with read(2) (no user-space buffer hides data from poll).
struct StdinFd;

fn poll_stdin(timeout_ms: libc::c_int) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd on the stack.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc >= 0 {
            return Ok(rc > 0 && pfd.revents != 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

impl Input for StdinFd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: reads at most buf.len() bytes into memory we own.
            let rc = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
            if rc >= 0 {
                return Ok(rc as usize);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                // An inherited non-blocking descriptor: wait until it is readable.
                io::ErrorKind::WouldBlock => {
                    poll_stdin(-1)?;
                }
                _ => return Err(err),
            }
        }
    }

    fn ready(&mut self) -> bool {
        // On a poll failure, commit now rather than sit on read input.
        poll_stdin(0).unwrap_or(false)
    }
}

/// How standard input is cut into entries.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    /// The terminator: `\n` or NUL.
    pub sep: u8,
    /// Remove a `\r` before the terminator.
    pub strip_cr: bool,
    /// Decode each piece (`None`: raw bytes).
    pub enc: Option<Encoding>,
}

impl Split {
    fn unit(&self) -> &'static str {
        if self.sep == b'\n' {
            "line"
        } else {
            "entry"
        }
    }

    fn max_piece_len(&self) -> usize {
        max_encoded_len(self.enc) + usize::from(self.strip_cr)
    }
}

/// Reads `input` to its end, cutting it per `split` and committing batches to `sink`
/// whenever input has nothing more ready, a batch is full or old, and at the end.
/// On undecodable input the entries before it are committed, then it fails naming the
/// line (or NUL-separated entry) and its byte offset.
pub fn pump(input: &mut impl Input, split: Split, sink: &mut impl Sink) -> anyhow::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    // Bytes at the front of `buf` known to hold no terminator.
    let mut searched = 0usize;
    // Offset in the input of buf[0], and pieces completed before it.
    let mut base: u64 = 0;
    let mut pieces: u64 = 0;
    let mut batch = Batch::default();
    // `buf` holds input left over after a long piece: look at it before reading more.
    let mut carried = false;
    loop {
        let eof = if std::mem::take(&mut carried) {
            false
        } else {
            let len = buf.len();
            buf.resize(len + READ_CHUNK, 0);
            let n = match input.read(&mut buf[len..]) {
                Ok(n) => n,
                Err(e) => {
                    sink.commit(&mut batch)?;
                    return Err(anyhow::Error::new(e).context("read standard input"));
                }
            };
            buf.truncate(len + n);
            n == 0
        };

        let mut start = 0usize;
        while start < buf.len() {
            let end = match memchr::memchr(split.sep, &buf[searched..]) {
                Some(p) => searched + p,
                None if eof => buf.len(),
                None => break,
            };
            let terminated = end < buf.len();
            let mut piece = &buf[start..end];
            if terminated && split.strip_cr {
                piece = piece.strip_suffix(b"\r").unwrap_or(piece);
            }
            pieces += 1;
            if let Err(msg) = batch.push_decoded(split.enc, piece) {
                sink.commit(&mut batch)?;
                bail!(
                    "standard input {} {pieces} (byte offset {}): {msg}",
                    split.unit(),
                    base + start as u64
                );
            }
            start = end + usize::from(terminated);
            searched = start;
            if batch.full() {
                sink.commit(&mut batch)?;
            }
        }
        if start > 0 {
            buf.drain(..start);
            base += start as u64;
        }
        searched = buf.len();
        if eof {
            return sink.commit(&mut batch);
        }
        if buf.len() > IN_MEMORY_MAX {
            // One piece longer than what input may hold in memory before it is known
            // to fit: the rest of it waits in a temporary file.
            let long = match long_piece(input, split, &mut buf) {
                Ok(l) => l,
                Err(e) => {
                    sink.commit(&mut batch)?;
                    return Err(e);
                }
            };
            let Some((raw, terminated, eof)) = long else {
                sink.commit(&mut batch)?;
                bail!(
                    "standard input {} {} (byte offset {base}) is longer than any record can be ({MAX_DATA_LEN} bytes)",
                    split.unit(),
                    pieces + 1
                );
            };
            let mut piece = &raw[..];
            if terminated && split.strip_cr {
                piece = piece.strip_suffix(b"\r").unwrap_or(piece);
            }
            pieces += 1;
            if let Err(msg) = batch.push_decoded(split.enc, piece) {
                sink.commit(&mut batch)?;
                bail!(
                    "standard input {} {pieces} (byte offset {base}): {msg}",
                    split.unit()
                );
            }
            base += raw.len() as u64 + u64::from(terminated);
            drop(raw);
            sink.commit(&mut batch)?;
            if eof {
                return Ok(());
            }
            searched = 0;
            carried = true;
            continue;
        }
        if buf.len() > split.max_piece_len() {
            sink.commit(&mut batch)?;
            bail!(
                "standard input {} {} (byte offset {base}) is longer than any record can be ({MAX_DATA_LEN} bytes)",
                split.unit(),
                pieces + 1
            );
        }
        if buf.capacity() > 4 * READ_CHUNK && buf.len() < READ_CHUNK {
            buf.shrink_to(2 * READ_CHUNK);
        }
        if !batch.is_empty() && (batch.aged() || !input.ready()) {
            sink.commit(&mut batch)?;
        }
    }
}

/// Reads the rest of a piece that already fills `buf` (all of `buf` is its start)
/// into a temporary file, stopping as soon as it cannot fit a record (`None`).
/// Otherwise returns the whole piece, whether a terminator ended it, and whether
/// input ended; `buf` then holds the input after the terminator.
fn long_piece(
    input: &mut impl Input,
    split: Split,
    buf: &mut Vec<u8>,
) -> anyhow::Result<Option<(Vec<u8>, bool, bool)>> {
    let limit = split.max_piece_len() as u64;
    let mut bound = DecodedBound {
        enc: split.enc,
        significant: 0,
    };
    let over = MAX_DATA_LEN as u64 + u64::from(split.strip_cr);
    bound.feed(buf);
    let mut total = buf.len() as u64;
    let context = "hold a long standard input line in a temporary file";
    let mut spill = tempfile::tempfile().context(context)?;
    spill.write_all(buf).context(context)?;
    buf.clear();
    buf.shrink_to(2 * READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    let (terminated, eof) = loop {
        let n = input.read(&mut chunk).context("read standard input")?;
        if n == 0 {
            break (false, true);
        }
        let (body, rest) = match memchr::memchr(split.sep, &chunk[..n]) {
            Some(p) => (&chunk[..p], Some(&chunk[p + 1..n])),
            None => (&chunk[..n], None),
        };
        total += body.len() as u64;
        bound.feed(body);
        if total > limit || bound.decoded() > over {
            return Ok(None);
        }
        spill.write_all(body).context(context)?;
        if let Some(rest) = rest {
            buf.extend_from_slice(rest);
            break (true, false);
        }
    };
    let mut piece = Vec::with_capacity(total as usize);
    use std::io::Seek;
    spill
        .rewind()
        .and_then(|()| spill.read_to_end(&mut piece))
        .context(context)?;
    Ok(Some((piece, terminated, eof)))
}

// ---------------------------------------------------------------------------------
// The command

#[derive(Serialize)]
struct Summary {
    first_lsn: Option<u64>,
    last_lsn: Option<u64>,
    count: u64,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let opts = args.writer.options();
    // Arguments and files are read and decoded before the log is touched: bad input
    // changes nothing.
    let prepared = if !args.data.is_empty() {
        let mut batch = Batch::default();
        for (i, arg) in args.data.iter().enumerate() {
            batch.push(&decode_arg(args.encoding, arg, i + 1)?);
        }
        Some(batch)
    } else if !args.file.is_empty() {
        let mut batch = Batch::default();
        for path in &args.file {
            batch.push(&read_file_arg(path, args.encoding)?);
        }
        Some(batch)
    } else {
        None
    };

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
        None => {
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
            pump(&mut StdinFd, split, &mut committer)
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Input delivered in fixed chunks; `ready` says whether the next chunk is
    /// "already there".
    struct Chunks {
        chunks: Vec<(Vec<u8>, bool)>,
        next: usize,
    }

    impl Input for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((c, _)) = self.chunks.get(self.next) else {
                return Ok(0);
            };
            assert!(c.len() <= buf.len());
            buf[..c.len()].copy_from_slice(c);
            self.next += 1;
            Ok(c.len())
        }
        fn ready(&mut self) -> bool {
            // Whether the chunk just read was followed at once by the next one.
            self.chunks[self.next - 1].1
        }
    }

    #[derive(Default)]
    struct Collect(Vec<Vec<Vec<u8>>>);

    impl Sink for Collect {
        fn commit(&mut self, batch: &mut Batch) -> anyhow::Result<()> {
            if !batch.is_empty() {
                self.0
                    .push(batch.slices().iter().map(|s| s.to_vec()).collect());
                batch.clear();
            }
            Ok(())
        }
    }

    fn lines() -> Split {
        Split {
            sep: b'\n',
            strip_cr: true,
            enc: Some(Encoding::Utf8),
        }
    }

    fn run_chunks(chunks: &[(&[u8], bool)], split: Split) -> (Collect, anyhow::Result<()>) {
        let mut input = Chunks {
            chunks: chunks.iter().map(|(c, r)| (c.to_vec(), *r)).collect(),
            next: 0,
        };
        let mut sink = Collect::default();
        let res = pump(&mut input, split, &mut sink);
        (sink, res)
    }

    fn v(items: &[&[u8]]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.to_vec()).collect()
    }

    #[test]
    fn commits_when_input_pauses_and_keeps_partial_lines() {
        let (sink, res) = run_chunks(
            &[
                (b"a\nb", true),
                (b"c\r", false),
                (b"\n\nd\r\n", false),
                (b"last", false),
            ],
            lines(),
        );
        res.unwrap();
        // "a" waits while more input is ready; the pause after "c\r" commits it alone
        // ("bc" is still incomplete); the next pause commits "bc", "" and "d"; "last"
        // goes at end of input.
        assert_eq!(
            sink.0,
            vec![v(&[b"a"]), v(&[b"bc", b"", b"d"]), v(&[b"last"])]
        );
    }

    #[test]
    fn lone_cr_at_end_of_input_is_data() {
        let (sink, res) = run_chunks(&[(b"x\r", false)], lines());
        res.unwrap();
        assert_eq!(sink.0, vec![v(&[b"x\r"])]);
    }

    #[test]
    fn nul_split_takes_raw_bytes() {
        let split = Split {
            sep: 0,
            strip_cr: false,
            enc: None,
        };
        let (sink, res) = run_chunks(&[(b"a\r\n\xff\0\0b", false)], split);
        res.unwrap();
        // The complete pieces go at the pause; "b" is unterminated until input ends.
        assert_eq!(sink.0, vec![v(&[b"a\r\n\xff", b""]), v(&[b"b"])]);
    }

    #[test]
    fn bad_line_commits_earlier_lines_then_names_line_and_offset() {
        let split = Split {
            enc: Some(Encoding::Hex),
            ..lines()
        };
        let (sink, res) = run_chunks(&[(b"00ff\n", true), (b"ab\nzz\n01\n", false)], split);
        let err = format!("{:#}", res.unwrap_err());
        assert!(err.contains("line 3 (byte offset 8)"), "{err}");
        assert!(err.contains("'z'"), "{err}");
        assert_eq!(sink.0, vec![v(&[b"\x00\xff", b"\xab"])]);
    }

    #[test]
    fn decoders() {
        let mut out = Vec::new();
        decode_into(Encoding::Hex, b"DeadBEEF", &mut out).unwrap();
        assert_eq!(out, b"\xde\xad\xbe\xef");
        out.clear();
        decode_into(Encoding::Base64, b"aGk", &mut out).unwrap();
        decode_into(Encoding::Base64, b"aGk=", &mut out).unwrap();
        assert_eq!(out, b"hihi");
        assert!(decode_into(Encoding::Hex, b"abc", &mut out)
            .unwrap_err()
            .contains("odd"));
        assert!(decode_into(Encoding::Base64, b"a!==", &mut out).is_err());
        assert!(decode_into(Encoding::Utf8, b"ok\xc3", &mut out)
            .unwrap_err()
            .contains("at byte 2"));
        assert_eq!(out, b"hihi", "failed decodes leave the output as it was");
        assert_eq!(
            decode_whole(Some(Encoding::Base64), b"aGVs\nbG8=\n".to_vec(), "x").unwrap(),
            b"hello"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("0").is_err());
        assert!(parse_size("4MB").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }
}
