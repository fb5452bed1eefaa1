//! `walctl inspect`: one record, field by field, at a segment and byte offset (the
//! ones verify, dump and salvage print), with a hex dump around it and what is wrong.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use walctl::codec::{could_be_cut_short, decode_body, record_crc, LEN_PREFIX, MAX_BODY_LEN};
use walctl::segment::segment_name;
use walctl::storage::{read_up_to, ReadFile};

use super::exit::Exit;
use super::open::DirArg;
use super::output;

/// Bytes shown after the record's prefix at most; longer records are cut in the dump.
const SHOWN_BODY: u64 = 256;

const EXAMPLES: &str = "\
Examples:
  walctl inspect --dir /var/lib/app/wal --segment 3 --offset 8192
  walctl inspect --dir /var/lib/app/wal --segment 3 --offset 8192 --json | jq .problems
  walctl inspect --dir /var/lib/app/wal --segment 0 --offset 0 --context 0

The segment and offset are the ones verify, dump and dump --salvage print (the
offset of a record's 4-byte length prefix). The output ends with the offset where
the next record would start, to walk a segment record by record.

Exit status: 0 the record there is intact; 4 it is not (each problem is listed);
1 the segment cannot be read or the offset is past its end; 2 usage error.";

/// Decode the record at one offset of one segment, field by field.
///
/// Shows the length prefix, LSN, checkpoint flag, data length, stored and computed
/// CRC, a hex dump of the bytes around the record, and what is wrong with it: a
/// length beyond the limit or the file, a protobuf that does not decode (and at
/// which byte), a CRC mismatch, LSN 0. LSN continuity with the records around it
/// is not checked here (verify does). Reads only.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(flatten)]
    dir: DirArg,

    /// Segment id (the N of segment-N).
    #[arg(long, value_name = "ID")]
    segment: u64,

    /// Byte offset of the record's length prefix in the segment.
    #[arg(long, value_name = "N")]
    offset: u64,

    /// Bytes shown before and after the record in the hex dump.
    #[arg(long, value_name = "BYTES", default_value_t = 32)]
    context: u64,

    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// What was found at the offset.
#[derive(Debug, Default, Serialize)]
struct Report {
    segment: String,
    segment_id: u64,
    offset: u64,
    file_size: u64,
    ok: bool,
    length_prefix: Option<u64>,
    lsn: Option<u64>,
    checkpoint: Option<bool>,
    data_len: Option<u64>,
    crc_stored: Option<u32>,
    crc_computed: Option<u32>,
    problems: Vec<String>,
    /// Where the next record would start, when the length prefix is within the file.
    next_offset: Option<u64>,
    hex_offset: u64,
    hex: String,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let storage = args.dir.open_log()?;
    let name = segment_name(args.segment);
    let path = args.dir.dir.join(&name);
    let mut file = storage
        .open_read(&name)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let size = file
        .size()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    if args.offset >= size {
        anyhow::bail!(
            "offset {} is at or past the end of {name} ({size} bytes)",
            args.offset
        );
    }
    let mut report = Report {
        segment: name,
        segment_id: args.segment,
        offset: args.offset,
        file_size: size,
        ..Report::default()
    };
    let bytes = read_record(&mut *file, args.offset, size)
        .with_context(|| format!("cannot read {}", path.display()))?;
    judge(&mut report, &bytes);
    report.ok = report.problems.is_empty();
    let around = around(&mut *file, &mut report, bytes.len() as u64, args.context)
        .with_context(|| format!("cannot read {}", path.display()))?;

    let mut out = output::stdout();
    if args.json {
        output::json_line(&mut out, &report)?;
    } else {
        write_text(&mut out, &report, &around, &args.dir.dir)?;
    }
    out.flush()?;
    Ok(if report.ok { Exit::Ok } else { Exit::Corrupt })
}

/// The bytes shown in the hex dump: `context` bytes before the record, its prefix
/// and at most [`SHOWN_BODY`] bytes of its body, `context` bytes after; also put
/// in the report as hex.
fn around(
    file: &mut dyn ReadFile,
    report: &mut Report,
    read: u64,
    context: u64,
) -> std::io::Result<Vec<u8>> {
    let shown = match report.length_prefix {
        Some(len) => LEN_PREFIX as u64 + len.min(SHOWN_BODY),
        None => read,
    };
    report.hex_offset = report.offset.saturating_sub(context);
    let end = (report.offset + shown + context).min(report.file_size);
    let mut bytes = vec![0u8; (end - report.hex_offset) as usize];
    file.seek_to(report.hex_offset)?;
    let n = read_up_to(file, &mut bytes)?;
    bytes.truncate(n);
    report.hex = bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    Ok(bytes)
}

/// The record's bytes from `offset`: its prefix and body when the prefix is within
/// bounds and the file, else what the file holds of it (at most a prefix and a
/// bounded look at what follows).
fn read_record(file: &mut dyn ReadFile, offset: u64, size: u64) -> std::io::Result<Vec<u8>> {
    let avail = size - offset;
    let mut prefix = [0u8; LEN_PREFIX];
    file.seek_to(offset)?;
    let n = read_up_to(file, &mut prefix[..avail.min(LEN_PREFIX as u64) as usize])?;
    let mut bytes = prefix[..n].to_vec();
    if n < LEN_PREFIX {
        return Ok(bytes);
    }
    let len = u32::from_le_bytes(prefix) as u64;
    // Bounded before allocating: by the record cap and by the file.
    let want = if len <= MAX_BODY_LEN as u64 {
        len.min(avail - LEN_PREFIX as u64)
    } else {
        (avail - LEN_PREFIX as u64).min(SHOWN_BODY)
    };
    bytes.resize(LEN_PREFIX + want as usize, 0);
    let got = read_up_to(file, &mut bytes[LEN_PREFIX..])?;
    bytes.truncate(LEN_PREFIX + got);
    Ok(bytes)
}

/// Fills in the fields and problems from the record's bytes.
fn judge(report: &mut Report, bytes: &[u8]) {
    let avail = report.file_size - report.offset;
    if bytes.len() < LEN_PREFIX {
        report.problems.push(format!(
            "only {} of the 4 length-prefix bytes before the end of the file",
            bytes.len()
        ));
        return;
    }
    let len = u32::from_le_bytes(bytes[..LEN_PREFIX].try_into().expect("four bytes")) as u64;
    report.length_prefix = Some(len);
    let body = &bytes[LEN_PREFIX..];
    if len > MAX_BODY_LEN as u64 {
        report.problems.push(format!(
            "length prefix {len} exceeds the maximum record size {MAX_BODY_LEN}"
        ));
        return;
    }
    if LEN_PREFIX as u64 + len > avail {
        let cut = if could_be_cut_short(body, len) {
            "the bytes present can be the start of such a record: a write cut short"
        } else {
            "the bytes present are not the start of such a record: the length prefix \
             (or what follows it) is damaged"
        };
        report.problems.push(format!(
            "length prefix says {len} bytes, the file holds {} after it; {cut}",
            body.len()
        ));
        return;
    }
    report.next_offset = Some(report.offset + LEN_PREFIX as u64 + len);
    match decode_body(body) {
        Err(e) => report
            .problems
            .push(format!("protobuf does not decode: {e}")),
        Ok(rec) => {
            report.lsn = Some(rec.lsn);
            report.checkpoint = Some(rec.checkpoint);
            report.data_len = Some(rec.data.len() as u64);
            report.crc_stored = Some(rec.crc);
            let computed = record_crc(rec.data, rec.lsn);
            report.crc_computed = Some(computed);
            if computed != rec.crc {
                report.problems.push(format!(
                    "CRC mismatch: stored {:#010x}, computed {computed:#010x}",
                    rec.crc
                ));
            }
            if rec.lsn == 0 {
                report.problems.push("LSN 0 is never written".into());
            }
        }
    }
}

fn write_text(out: &mut impl Write, r: &Report, around: &[u8], dir: &Path) -> std::io::Result<()> {
    writeln!(
        out,
        "{} at offset {} ({} bytes in the file)",
        r.segment, r.offset, r.file_size
    )?;
    writeln!(out, "length prefix   {}", output::opt(r.length_prefix))?;
    writeln!(out, "lsn             {}", output::opt(r.lsn))?;
    writeln!(out, "checkpoint      {}", output::opt(r.checkpoint))?;
    writeln!(out, "data length     {}", output::opt(r.data_len))?;
    let hex32 = |v: Option<u32>| v.map_or_else(|| "-".to_string(), |v| format!("{v:#010x}"));
    writeln!(out, "crc stored      {}", hex32(r.crc_stored))?;
    writeln!(out, "crc computed    {}", hex32(r.crc_computed))?;
    if r.problems.is_empty() {
        writeln!(out, "status          ok: an intact record")?;
    } else {
        writeln!(out, "status          BAD")?;
        for p in &r.problems {
            writeln!(out, "  - {p}")?;
        }
    }
    writeln!(out)?;
    hexdump(out, r.hex_offset, around, r.offset)?;
    if let Some(next) = r.next_offset.filter(|&n| n < r.file_size) {
        writeln!(out)?;
        writeln!(
            out,
            "next record at offset {next}: {}",
            output::inspect_hint(dir, r.segment_id, next)
        )?;
    }
    Ok(())
}

/// 16 bytes a line: offset, hex, printable ASCII; the record's first line marked `>`.
fn hexdump(out: &mut impl Write, base: u64, bytes: &[u8], mark: u64) -> std::io::Result<()> {
    for (i, line) in bytes.chunks(16).enumerate() {
        let at = base + 16 * i as u64;
        let marker = if (at..at + 16).contains(&mark) {
            '>'
        } else {
            ' '
        };
        let mut hex = String::new();
        for (j, b) in line.iter().enumerate() {
            let sep = if at + j as u64 == mark { '[' } else { ' ' };
            let _ = write!(hex, "{sep}{b:02x}");
        }
        let ascii: String = line
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        writeln!(out, "{marker}{at:08x} {hex:<48}  |{ascii}|")?;
    }
    Ok(())
}
