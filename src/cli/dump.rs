//! `walctl dump`: the records of a log in LSN order, as readable lines or NDJSON,
//! optionally following a live log. Read-only: nothing is locked or changed.
//!
//! The JSON path is the hot one (a million records a second is the target): each
//! line is built by hand in one reused buffer, numbers and strings are formatted
//! without allocating, and everything goes through one `BufWriter`.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use walctl::scan::{Event, ScanOptions, ScannedRecord, Scanner};
use walctl::segment::{SegmentFile, SEGMENT_PREFIX};
use walctl::ProblemKind;

use super::{output, DirArg, Exit};

/// How often `--follow` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// Progress is redrawn after this many bytes.
const PROGRESS_STEP: u64 = 4 << 20;

const EXAMPLES: &str = "\
Examples:
  walctl dump --dir /var/lib/app/wal
  walctl dump --dir /var/lib/app/wal --json --from 1000 --limit 10
  walctl dump --dir /var/lib/app/wal --since-checkpoint --data-format hex
  walctl dump --dir /var/lib/app/wal --follow --json | jq .lsn
  walctl dump --dir /var/lib/app/wal --salvage --json > records.ndjson 2> salvage.json
  walctl dump --dir /var/lib/app/wal --grep 'user=(42|43)\\b' --from 1000

Output (--json), one object per record, keys always in this order:
  {\"lsn\":2,\"checkpoint\":false,\"segment\":\"segment-0\",\"offset\":12,\"len\":26,
   \"crc\":4047663106,\"data\":\"hello, world\"}
  offset: where the record's 4-byte length prefix starts in its segment;
  len: the record's size on disk, prefix included;
  \"data_encoding\":\"base64\" or \"hex\" follows \"data\" when the payload is encoded.

Exit codes: 0 every record read was intact; 3 the newest segment ends with a torn
record; 4 corruption (the problem is reported on stderr after every good record
before it was printed); 1 the log could not be read; 2 usage error. With --to or
--limit, dump stops reading once it has printed what was asked for. With --salvage
the same codes say what was stepped over (3: only a torn tail at the very end).";

/// Print the records of a log in LSN order.
///
/// Streams every intact record, in LSN order across segments, as one readable line
/// each (LSN, checkpoint marker, segment, byte offset, size on disk, a short escaped
/// preview of the payload) or, with --json, as one JSON object per line. On a
/// damaged log every good record before the damage is printed, then the problem
/// (segment, offset, kind) is reported on stderr and the exit status says how bad it
/// is. Memory is bounded by the largest record. Nothing is locked or changed: dump
/// runs beside a live writer, and --follow keeps printing what it appends.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(flatten)]
    dir: DirArg,

    /// Print one JSON object per record (NDJSON) instead of readable lines.
    #[arg(long)]
    json: bool,

    /// How to print payloads: auto = text when valid UTF-8, base64 otherwise;
    /// utf8 = text, invalid bytes replaced; hex and base64 always encode; none
    /// omits the payload.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = DataFormat::Auto)]
    data_format: DataFormat,

    /// Start at this LSN (whole segments before it are skipped without reading).
    #[arg(long, value_name = "LSN")]
    from: Option<u64>,

    /// Stop after this LSN.
    #[arg(long, value_name = "LSN")]
    to: Option<u64>,

    /// Print at most N records.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,

    /// Start at the newest checkpoint: what recovery replays (the whole log when
    /// there is no checkpoint).
    #[arg(long)]
    since_checkpoint: bool,

    /// Print checkpoint records only.
    #[arg(long)]
    checkpoints_only: bool,

    /// After the last record, wait for new ones (across segment rotation) until
    /// interrupted with Ctrl-C or SIGTERM, which ends with status 0.
    #[arg(long, short = 'f')]
    follow: bool,

    /// Payload preview length in characters for the readable output (0 = whole
    /// payload). JSON output always carries the whole payload.
    #[arg(long, value_name = "CHARS", default_value_t = 60)]
    preview: usize,

    /// No progress bar and no notes on stderr (problems are still reported).
    #[arg(long, short = 'q')]
    quiet: bool,

    /// Go on past records that a writer's retention deleted before dump could read
    /// them (a reader that fell behind). Each such hole is still named on stderr;
    /// without this flag dump stops at the first one with status 1.
    #[arg(long)]
    skip_retired: bool,

    /// Read past damage: after a bad record, go on at the next position where an
    /// intact record with a later LSN starts, in the same segment or a later one.
    /// Never prints a record whose CRC fails. Each skipped byte range (segment,
    /// offset, length, the LSNs on either side) is named on stderr; with --json,
    /// stderr gets one JSON summary object instead. Exit status as without it.
    #[arg(long, conflicts_with = "follow")]
    salvage: bool,

    /// Print only records whose payload matches this regular expression (Rust
    /// `regex` syntax, matched against the raw bytes; `(?i)` ignores case).
    /// Combines with the other filters; --limit counts matching records.
    #[arg(long, value_name = "PATTERN", value_parser = parse_grep)]
    grep: Option<regex::bytes::Regex>,
}

/// `--grep`'s value: a regular expression over bytes, or a usage error.
fn parse_grep(s: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::Regex::new(s).map_err(|e| e.to_string())
}

/// How long `--follow` waits at an incomplete record before it says so.
const TORN_WAIT_NOTE: Duration = Duration::from_secs(3);

/// Payload rendering of `--data-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DataFormat {
    /// Text when valid UTF-8, base64 otherwise.
    Auto,
    /// Text; invalid UTF-8 sequences become U+FFFD.
    Utf8,
    /// Lower-case hexadecimal.
    Hex,
    /// Standard base64 with padding.
    Base64,
    /// No payload.
    None,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    if let (Some(from), Some(to)) = (args.from, args.to) {
        if from > to {
            usage_error(&format!(
                "--from {from} is after --to {to}: the range holds no record"
            ));
        }
    }
    // Following may start before the first segment exists; anything else needs a log.
    let storage = if args.follow {
        args.dir.open_read()?
    } else {
        args.dir.open_log()?
    };

    let mut from = args.from.unwrap_or(0);
    if args.since_checkpoint {
        // The same newest checkpoint as the library's recovery: found by a full scan,
        // also past damage earlier in the log.
        match walctl::reader::WalReader::new(storage.clone())
            .scan()?
            .newest_checkpoint
        {
            Some(c) => from = from.max(c.lsn),
            None if !args.quiet => {
                output::note("no checkpoint in the log: dumping from its first record")
            }
            None => {}
        }
    }

    let filter = Filter {
        from,
        to: args.to,
        limit: args.limit,
        checkpoints_only: args.checkpoints_only,
        grep: args.grep.clone(),
        printed: 0,
    };
    let printer = Printer {
        out: io::stdout().lock(),
        buf: Vec::with_capacity(OUT_CHUNK * 2),
        json: args.json,
        format: args.data_format,
        preview: args.preview,
    };
    if args.salvage {
        let job = super::salvage::Job {
            dir: &args.dir.dir,
            json: args.json,
            quiet: args.quiet,
            from_lsn: (from > 1).then_some(from),
        };
        return super::salvage::run(job, storage, filter, printer);
    }

    if args.follow {
        install_stop_handler()?;
    }

    let mut scanner = Scanner::new(
        storage,
        ScanOptions::default()
            .from_lsn((from > 1).then_some(from))
            .stop_at_first_problem(true)
            .follow(args.follow),
    )?;

    // Progress only when dumping a large log somewhere other than the terminal.
    let total: u64 = scanner.segments().iter().map(|s| s.size).sum();
    let pb = output::progress(
        total,
        args.quiet || args.json || args.follow || io::stdout().is_terminal(),
        "dump",
    );
    let mut progress = Progress::new(scanner.segments(), !pb.is_hidden());
    let (mut filter, mut printer) = (filter, printer);

    let mut problem = None;
    let mut retired_stop = None;
    if args.limit != Some(0) {
        'scan: loop {
            while let Some(ev) = scanner.next()? {
                let r = match ev {
                    Event::Record(r) => r,
                    // Holes entirely before --from cost the reader nothing.
                    Event::Retired(gap) if gap.last_lsn < from => continue,
                    Event::Retired(gap) => {
                        let gap = gap.clone();
                        printer.flush()?;
                        note_retired(&gap, from, args.skip_retired);
                        if args.skip_retired {
                            continue;
                        }
                        retired_stop = Some(gap);
                        break 'scan;
                    }
                    // Segment ends (and anything a newer library adds) print nothing.
                    _ => continue,
                };
                if let Some(pos) = progress.advance(&r) {
                    pb.set_position(pos);
                }
                match filter.take(&r) {
                    Take::Skip => continue,
                    Take::Stop => break 'scan,
                    Take::Print { last } => {
                        printer.record(&r)?;
                        if last {
                            break 'scan;
                        }
                    }
                }
            }
            if let Some(p) = scanner.first_problem() {
                problem = Some(p.clone());
                break;
            }
            if !args.follow {
                break;
            }
            // Following: everything there is has been printed; wait for more.
            printer.flush()?;
            let mut torn_wait = TornWait::default();
            loop {
                // Interrupted, or nobody reads our output any more: a quiet end.
                if STOP.load(Ordering::SeqCst) || output::stdout_closed() {
                    break 'scan;
                }
                if scanner.poll()? {
                    break;
                }
                torn_wait.check(&scanner);
                std::thread::sleep(FOLLOW_POLL);
            }
        }
    }
    pb.finish_and_clear();
    printer.flush()?;

    if let Some(gap) = retired_stop {
        output::note(format!(
            "stopped after LSN {} ({} records printed): the records after it are gone; \
             `walctl dump --from {}` reads what is left, `--skip-retired` goes on past such holes",
            gap.first_lsn - 1,
            filter.printed,
            gap.last_lsn + 1
        ));
        return Ok(Exit::Failed);
    }
    match problem {
        None => Ok(Exit::Ok),
        Some(p) => {
            let before = match (filter.printed, p.last_good_lsn) {
                (0, _) => "no record was printed".to_string(),
                (n, Some(lsn)) => format!("{n} records printed, up to LSN {lsn}"),
                (n, None) => format!("{n} records printed"),
            };
            let path = args.dir.dir.join(&p.segment);
            if matches!(
                p.kind,
                ProblemKind::Unreadable { .. } | ProblemKind::MissingSegment { .. }
            ) {
                output::note(format!("{p} ({before}; nothing after it was read)"));
                return Ok(Exit::from_severity(Some(p.severity)));
            }
            output::note(format!(
                "{p} (file {}; {before}; nothing after it was read; to see the record \
                 there: {}; to read past it: --salvage)",
                path.display(),
                super::inspect::hint(&args.dir.dir, p.segment_id, p.offset)
            ));
            Ok(Exit::from_severity(Some(p.severity)))
        }
    }
}

/// Names on stderr the records a writer's retention deleted before dump read them.
fn note_retired(gap: &walctl::scan::RetiredGap, from: u64, skipping: bool) {
    let first = gap.first_lsn.max(from);
    let segments = if gap.first_segment == gap.last_segment {
        format!("{SEGMENT_PREFIX}{}", gap.first_segment)
    } else {
        format!(
            "{SEGMENT_PREFIX}{}..{SEGMENT_PREFIX}{}",
            gap.first_segment, gap.last_segment
        )
    };
    let then = if skipping {
        format!("going on at LSN {}", gap.last_lsn + 1)
    } else {
        "stopping".to_string()
    };
    output::note(format!(
        "LSNs {first}..{} were not delivered: retention deleted {segments} before dump \
         could read them (the reader fell behind the writer); {then}",
        gap.last_lsn
    ));
}

/// `--follow` at an incomplete record: says once, after a few seconds at the same
/// place, what it is waiting for.
#[derive(Default)]
struct TornWait {
    at: Option<(String, u64)>,
    since: Option<std::time::Instant>,
    said: bool,
}

impl TornWait {
    fn check(&mut self, scanner: &Scanner) {
        let Some((segment, offset, present)) = scanner.waiting_at_partial() else {
            *self = TornWait::default();
            return;
        };
        let here = Some((segment.to_string(), offset));
        if self.at != here {
            *self = TornWait {
                at: here,
                since: Some(std::time::Instant::now()),
                said: false,
            };
            return;
        }
        if !self.said && self.since.is_some_and(|t| t.elapsed() >= TORN_WAIT_NOTE) {
            self.said = true;
            output::note(format!(
                "waiting at {segment} offset {offset}: {present} bytes of an incomplete \
                 record are there and no more have come. A writer may still be writing it; \
                 if the writer crashed, the next writer's open saves these bytes to the \
                 quarantine and cuts them, and dump goes on from there"
            ));
        }
    }
}

/// Exits with status 2 and clap's usage message.
fn usage_error(msg: &str) -> ! {
    use clap::CommandFactory;
    let mut cmd = super::Cli::command();
    // Build first so the subcommand's usage line says "walctl dump".
    cmd.build();
    let sub = cmd.find_subcommand_mut("dump").cloned();
    let mut cmd = sub.unwrap_or(cmd);
    cmd.error(clap::error::ErrorKind::ArgumentConflict, msg)
        .exit()
}

/// Which records dump prints: `--from`, `--to`, `--limit`, `--checkpoints-only`
/// and `--grep` together.
pub(super) struct Filter {
    from: u64,
    to: Option<u64>,
    limit: Option<u64>,
    checkpoints_only: bool,
    grep: Option<regex::bytes::Regex>,
    /// Records printed so far.
    pub(super) printed: u64,
}

/// What to do with a record.
pub(super) enum Take {
    /// Not wanted; read on.
    Skip,
    /// Print it; `last`: nothing after it is wanted.
    Print { last: bool },
    /// Nothing from here on is wanted.
    Stop,
}

impl Filter {
    /// Decides about `r` (records come in LSN order) and counts it when printed.
    pub(super) fn take(&mut self, r: &ScannedRecord<'_>) -> Take {
        if self.limit == Some(0) {
            return Take::Stop;
        }
        if r.lsn < self.from {
            return Take::Skip;
        }
        if self.to.is_some_and(|to| r.lsn > to) {
            return Take::Stop;
        }
        let wanted = (!self.checkpoints_only || r.checkpoint)
            && self.grep.as_ref().is_none_or(|re| re.is_match(r.data));
        self.printed += wanted as u64;
        let last = self.to == Some(r.lsn) || self.limit.is_some_and(|l| self.printed >= l);
        match (wanted, last) {
            (true, last) => Take::Print { last },
            (false, true) => Take::Stop,
            (false, false) => Take::Skip,
        }
    }
}

/// Tracks the byte position of the scan for the progress bar, cheaply.
pub(super) struct Progress {
    enabled: bool,
    /// (segment id, bytes of all segments before it).
    bases: Vec<(u64, u64)>,
    seg: Option<u64>,
    base: u64,
    next_draw: u64,
}

impl Progress {
    pub(super) fn new(segments: &[SegmentFile], enabled: bool) -> Self {
        let mut bases = Vec::new();
        let mut sum = 0;
        for s in segments {
            bases.push((s.id, sum));
            sum += s.size;
        }
        Progress {
            enabled,
            bases,
            seg: None,
            base: 0,
            next_draw: 0,
        }
    }

    /// The position to draw after `r`, when it is time to redraw.
    pub(super) fn advance(&mut self, r: &ScannedRecord<'_>) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        if self.seg != Some(r.segment_id) {
            self.seg = Some(r.segment_id);
            self.base = self
                .bases
                .iter()
                .find(|(id, _)| *id == r.segment_id)
                .map_or(self.base, |(_, b)| *b);
        }
        let pos = self.base + r.offset + r.len;
        if pos >= self.next_draw {
            self.next_draw = pos + PROGRESS_STEP;
            return Some(pos);
        }
        None
    }
}

/// Set by SIGINT/SIGTERM while following.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM end `--follow` cleanly (status 0). The handler resets itself
/// (SA_RESETHAND): a second signal ends the process at once, even if it is stuck
/// writing to a full pipe.
fn install_stop_handler() -> io::Result<()> {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the
    // sigaction struct is fully initialised (zeroed, then the fields we set).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESETHAND;
        libc::sigemptyset(&mut sa.sa_mask);
        for sig in [libc::SIGINT, libc::SIGTERM] {
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Output is written in chunks of about this size.
const OUT_CHUNK: usize = 64 * 1024;

/// Formats records straight into one reused output buffer, written out in large
/// chunks (each ends with a whole line).
pub(super) struct Printer<W: Write> {
    out: W,
    buf: Vec<u8>,
    json: bool,
    format: DataFormat,
    preview: usize,
}

impl<W: Write> Printer<W> {
    pub(super) fn record(&mut self, r: &ScannedRecord<'_>) -> io::Result<()> {
        if self.json {
            json_record(&mut self.buf, r, self.format);
        } else {
            text_record(&mut self.buf, r, self.format, self.preview);
        }
        if self.buf.len() >= OUT_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes out everything formatted so far.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}

/// "00" to "99", for formatting two digits at a time.
static DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// Appends the decimal digits of `v`.
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if v >= 10 {
        let pair = v as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    out.extend_from_slice(&buf[i..]);
}

/// Bytes that cannot appear raw inside a JSON string.
static JSON_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether any of the 8 bytes of `w` needs escaping in a JSON string: a control
/// byte (< 0x20), `"` or `\\`. Exact for "any", word-at-a-time (SWAR).
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_0x20 = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let q = w ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q & HIGH;
    let bs = w ^ (ONES * b'\\' as u64);
    let backslash = bs.wrapping_sub(ONES) & !bs & HIGH;
    (below_0x20 | quote | backslash) != 0
}

/// Appends `s` as the inside of a JSON string: quotes, backslashes and control
/// characters escaped, everything else (non-ASCII included) passed through.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip clean 8-byte words; look at bytes one by one only near an escape.
        let end = match bytes.get(i..i + 8) {
            Some(w) if !word_needs_escape(u64::from_le_bytes(w.try_into().unwrap())) => {
                i += 8;
                continue;
            }
            Some(_) => i + 8,
            None => bytes.len(),
        };
        while i < end {
            let b = bytes[i];
            if JSON_ESCAPE[b as usize] {
                out.extend_from_slice(&bytes[run..i]);
                run = i + 1;
                push_escape(out, b);
            }
            i += 1;
        }
    }
    out.extend_from_slice(&bytes[run..]);
}

fn push_escape(out: &mut Vec<u8>, b: u8) {
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(b >> 4) as usize],
            HEX[(b & 0xf) as usize],
        ]),
    }
}

fn push_hex(out: &mut Vec<u8>, data: &[u8]) {
    out.reserve(data.len() * 2);
    for &b in data {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0xf) as usize]);
    }
}

fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    let engine = &base64::engine::general_purpose::STANDARD;
    let start = out.len();
    // Cannot overflow: data is bounded by the scanner's maximum record size.
    let len = base64::encoded_len(data.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    let written = engine
        .encode_slice(data, &mut out[start..])
        .unwrap_or_default();
    out.truncate(start + written);
}

fn json_record(out: &mut Vec<u8>, r: &ScannedRecord<'_>, format: DataFormat) {
    out.extend_from_slice(b"{\"lsn\":");
    push_u64(out, r.lsn);
    out.extend_from_slice(if r.checkpoint {
        b",\"checkpoint\":true,\"segment\":\""
    } else {
        b",\"checkpoint\":false,\"segment\":\""
    });
    out.extend_from_slice(SEGMENT_PREFIX.as_bytes());
    push_u64(out, r.segment_id);
    out.extend_from_slice(b"\",\"offset\":");
    push_u64(out, r.offset);
    out.extend_from_slice(b",\"len\":");
    push_u64(out, r.len);
    out.extend_from_slice(b",\"crc\":");
    push_u64(out, r.crc as u64);
    let text = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(b",\"data\":\"");
        push_json_str(out, s);
        out.extend_from_slice(b"\"");
    };
    let base64 = |out: &mut Vec<u8>| {
        out.extend_from_slice(b",\"data\":\"");
        push_base64(out, r.data);
        out.extend_from_slice(b"\",\"data_encoding\":\"base64\"");
    };
    match format {
        DataFormat::Auto => match std::str::from_utf8(r.data) {
            Ok(s) => text(out, s),
            Err(_) => base64(out),
        },
        DataFormat::Utf8 => text(out, &String::from_utf8_lossy(r.data)),
        DataFormat::Base64 => base64(out),
        DataFormat::Hex => {
            out.extend_from_slice(b",\"data\":\"");
            push_hex(out, r.data);
            out.extend_from_slice(b"\",\"data_encoding\":\"hex\"");
        }
        DataFormat::None => {}
    }
    out.extend_from_slice(b"}\n");
}

/// `       82 ckpt segment-0 @1234        40 B  "snapshot"`
fn text_record(out: &mut Vec<u8>, r: &ScannedRecord<'_>, format: DataFormat, preview: usize) {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(128);
    let _ = write!(
        s,
        "{:>8} {:<4} {}{} @{:<10} {:>8} B",
        r.lsn,
        if r.checkpoint { "ckpt" } else { "" },
        SEGMENT_PREFIX,
        r.segment_id,
        r.offset,
        r.len,
    );
    let limit = if preview == 0 { usize::MAX } else { preview };
    let shown = match format {
        DataFormat::None => None,
        DataFormat::Auto => Some(match std::str::from_utf8(r.data) {
            Ok(text) => quoted_preview(&mut s, text, limit),
            // The encoding JSON's auto mode uses.
            Err(_) => encoded_preview(&mut s, "base64:", r.data, limit, DataFormat::Base64),
        }),
        DataFormat::Utf8 => Some(quoted_preview(
            &mut s,
            &String::from_utf8_lossy(r.data),
            limit,
        )),
        DataFormat::Hex => Some(encoded_preview(&mut s, "hex:", r.data, limit, format)),
        DataFormat::Base64 => Some(encoded_preview(&mut s, "base64:", r.data, limit, format)),
    };
    if shown == Some(false) {
        let _ = write!(s, " ({} bytes)", r.data.len());
    }
    s.push('\n');
    out.extend_from_slice(s.as_bytes());
}

/// `  "text"` with every quote, backslash, control or invisible character escaped so
/// nothing reaches the terminal raw; `…` when cut. Returns whether all was shown.
fn quoted_preview(s: &mut String, text: &str, limit: usize) -> bool {
    s.push_str("  \"");
    let mut complete = true;
    for (n, c) in text.chars().enumerate() {
        if n == limit {
            complete = false;
            break;
        }
        match c {
            '\'' => s.push(c),
            c => s.extend(c.escape_debug()),
        }
    }
    s.push('"');
    if !complete {
        s.push('…');
    }
    complete
}

/// `  hex:00ff…` of the first bytes that fit in `limit` characters.
fn encoded_preview(
    s: &mut String,
    label: &str,
    data: &[u8],
    limit: usize,
    format: DataFormat,
) -> bool {
    s.push_str("  ");
    s.push_str(label);
    let take = match format {
        DataFormat::Hex => limit / 2,
        _ => limit / 4 * 3,
    }
    .max(1)
    .min(data.len());
    let mut buf = Vec::new();
    if format == DataFormat::Hex {
        push_hex(&mut buf, &data[..take]);
    } else {
        push_base64(&mut buf, &data[..take]);
    }
    s.push_str(std::str::from_utf8(&buf).unwrap_or_default());
    let complete = take == data.len();
    if !complete {
        s.push('…');
    }
    complete
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(data: &[u8]) -> ScannedRecord<'_> {
        ScannedRecord {
            lsn: 18446744073709551615,
            data,
            crc: 4294967295,
            checkpoint: true,
            segment_id: 12,
            offset: 0,
            len: 99,
        }
    }

    #[test]
    fn json_lines_parse_and_round_trip_every_byte() {
        let mut all: Vec<u8> = (0u8..=0x7f).collect();
        all.extend_from_slice("é✓🦀\u{2028}\"\\".as_bytes());
        let text = String::from_utf8(all.clone()).unwrap();
        let mut out = Vec::new();
        json_record(&mut out, &rec(&all), DataFormat::Auto);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"].as_str().unwrap(), text);
        assert_eq!(v["lsn"].as_u64(), Some(u64::MAX));
        assert_eq!(v["crc"].as_u64(), Some(u32::MAX as u64));
        assert_eq!(v["segment"], "segment-12");
        assert!(v.get("data_encoding").is_none());

        for (format, enc) in [
            (DataFormat::Auto, "base64"),
            (DataFormat::Base64, "base64"),
            (DataFormat::Hex, "hex"),
        ] {
            let bin = [0u8, 0xff, 0xfe, b'a'];
            let mut out = Vec::new();
            json_record(&mut out, &rec(&bin), format);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["data_encoding"], enc);
            let expect = if enc == "hex" {
                "00fffe61".to_string()
            } else {
                base64::engine::general_purpose::STANDARD.encode(bin)
            };
            assert_eq!(v["data"], expect.as_str());
        }
    }

    proptest::proptest! {
        #[test]
        fn json_strings_round_trip(s in "(?s).{0,40}", bytes in proptest::collection::vec(0u8..0x80, 0..40)) {
            // Arbitrary text, and ASCII dense in control bytes, quotes and backslashes.
            for text in [s, String::from_utf8(bytes).unwrap()] {
                let mut out = vec![b'"'];
                push_json_str(&mut out, &text);
                out.push(b'"');
                let back: String = serde_json::from_slice(&out).unwrap();
                proptest::prop_assert_eq!(back, text);
            }
        }
    }

    #[test]
    fn swar_escape_check_matches_the_table() {
        for b in 0..=255u8 {
            for (pos, fill) in
                (0..8).flat_map(|p| [b'a', 0x20, 0x21, 0x23, 0x5d, 0x80, 0xff].map(|f| (p, f)))
            {
                let mut w = [fill; 8];
                w[pos] = b;
                assert_eq!(
                    word_needs_escape(u64::from_le_bytes(w)),
                    JSON_ESCAPE[b as usize],
                    "byte {b:#x} at {pos} among {fill:#x}"
                );
            }
        }
    }

    #[test]
    fn numbers_format_like_display() {
        for v in [0u64, 1, 9, 10, 99, 100, 12345678901234, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }

    #[test]
    fn text_preview_never_prints_control_bytes() {
        let mut out = Vec::new();
        text_record(
            &mut out,
            &rec(b"a\x1b[31mred\x07\r\n\t\x7f\xe2\x80\xae"),
            DataFormat::Auto,
            60,
        );
        let line = String::from_utf8(out).unwrap();
        assert!(line.ends_with('\n'));
        let body = &line[..line.len() - 1];
        assert!(
            body.chars().all(|c| !c.is_control() && c != '\u{202e}'),
            "{body:?}"
        );
        assert!(body.contains("ckpt"));
    }
}
