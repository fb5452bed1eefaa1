//! `walctl dump`: the records of a log in LSN order, as readable lines or NDJSON,
//! optionally following a live log through the library's [`Follow`]. Read-only:
//! nothing is locked or changed. How records are chosen and printed is in
//! [`records`]; `--salvage` is [`salvage`].

mod records;
mod salvage;

use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::time::Duration;

use walctl::follow::{Follow, FollowEvent, Stall};
use walctl::scan::{Event, RetiredGap, ScanOptions, ScannedRecord, Scanner};
use walctl::segment::SEGMENT_PREFIX;
use walctl::storage::ReadStorage;
use walctl::{Problem, ProblemKind};

use super::exit::Exit;
use super::open::DirArg;
use super::output;
use super::sys;
use records::{DataFormat, Filter, Printer, Progress, Take};

/// While `--follow` waits, how often it looks at Ctrl-C, SIGTERM and a closed stdout.
const STOP_CHECK: Duration = Duration::from_millis(50);

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

    let from = first_lsn(&args, &storage)?;

    let filter = Filter::new(
        from,
        args.to,
        args.limit,
        args.checkpoints_only,
        args.grep.clone(),
    );
    let printer = Printer::new(
        io::stdout().lock(),
        args.json,
        args.data_format,
        args.preview,
    );
    if args.salvage {
        let job = salvage::Job {
            dir: &args.dir.dir,
            json: args.json,
            quiet: args.quiet,
            from_lsn: (from > 1).then_some(from),
        };
        return salvage::run(job, storage, filter, printer);
    }

    let mut sink = Sink {
        filter,
        printer,
        progress: Progress::new(&[], false),
        pb: output::progress(0, true, "dump"),
        from,
        skip_retired: args.skip_retired,
    };
    // --limit 0 opens the log and reads nothing.
    let reads = args.limit != Some(0);
    let end = if args.follow {
        sys::install_stop_handler()?;
        follow_from(storage, &mut sink, reads)?
    } else {
        let hidden = args.quiet || args.json || io::stdout().is_terminal();
        scan_from(storage, &mut sink, reads, hidden)?
    };
    sink.pb.finish_and_clear();
    sink.printer.flush()?;
    Ok(report_end(end, &args, sink.filter.printed))
}

/// The first LSN to print: `--from`, or with `--since-checkpoint` the newest
/// checkpoint's when that is later.
fn first_lsn(args: &Args, storage: &Arc<dyn ReadStorage>) -> anyhow::Result<u64> {
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
    Ok(from)
}

/// `--follow`: the records from `sink.from` on, waiting for new ones until stopped.
fn follow_from(storage: Arc<dyn ReadStorage>, sink: &mut Sink, reads: bool) -> anyhow::Result<End> {
    let follow = walctl::reader::WalReader::new(storage)
        .follow_from(sink.from)?
        .skip_retired(sink.skip_retired);
    if reads {
        follow_all(follow, sink)
    } else {
        Ok(End::Done)
    }
}

/// The records from `sink.from` to the end of the log or its first problem, with a
/// progress bar unless `hidden` (or the log is small).
fn scan_from(
    storage: Arc<dyn ReadStorage>,
    sink: &mut Sink,
    reads: bool,
    hidden: bool,
) -> anyhow::Result<End> {
    let from = sink.from;
    let scanner = Scanner::new(
        storage,
        ScanOptions::default()
            .from_lsn((from > 1).then_some(from))
            .stop_at_first_problem(true),
    )?;
    // Progress only when dumping a large log somewhere other than the terminal.
    let total: u64 = scanner.segments().iter().map(|s| s.size).sum();
    sink.pb = output::progress(total, hidden, "dump");
    sink.progress = Progress::new(scanner.segments(), !sink.pb.is_hidden());
    if reads {
        scan_all(scanner, sink)
    } else {
        Ok(End::Done)
    }
}

/// How the records ended.
enum End {
    /// Every record asked for was printed (or, following, dump was stopped).
    Done,
    /// Records were retired under dump; it stopped at the hole.
    Retired(RetiredGap),
    /// Damage; every good record before it was printed.
    Problem(Problem),
}

/// What dump does with the records and holes it meets, scanned or followed.
struct Sink {
    filter: Filter,
    printer: Printer<io::StdoutLock<'static>>,
    progress: Progress,
    pb: indicatif::ProgressBar,
    from: u64,
    skip_retired: bool,
}

impl Sink {
    /// Prints `r` if it is wanted; returns whether dump reads on.
    fn record(&mut self, r: &ScannedRecord<'_>) -> io::Result<bool> {
        if let Some(pos) = self.progress.advance(r) {
            self.pb.set_position(pos);
        }
        match self.filter.take(r) {
            Take::Skip => Ok(true),
            Take::Stop => Ok(false),
            Take::Print { last } => {
                self.printer.record(r)?;
                Ok(!last)
            }
        }
    }

    /// Names a hole of retired records; returns whether dump reads on past it.
    /// Holes entirely before --from cost the reader nothing.
    fn retired(&mut self, gap: &RetiredGap) -> io::Result<bool> {
        if gap.last_lsn < self.from {
            return Ok(true);
        }
        self.printer.flush()?;
        note_retired(gap, self.from, self.skip_retired);
        Ok(self.skip_retired)
    }
}

/// Reads the log once, to its end or its first problem.
fn scan_all(mut scanner: Scanner, sink: &mut Sink) -> anyhow::Result<End> {
    while let Some(ev) = scanner.next()? {
        let go_on = match ev {
            Event::Record(r) => sink.record(&r)?,
            Event::Retired(gap) => {
                if !sink.retired(gap)? {
                    return Ok(End::Retired(gap.clone()));
                }
                true
            }
            // Segment ends (and anything a newer library adds) print nothing.
            _ => true,
        };
        if !go_on {
            return Ok(End::Done);
        }
    }
    Ok(scanner
        .first_problem()
        .cloned()
        .map_or(End::Done, End::Problem))
}

/// `--follow`: prints what there is and what comes, until stopped (Ctrl-C,
/// SIGTERM, nobody reading stdout), damage, or a hole it may not skip.
fn follow_all(mut follow: Follow, sink: &mut Sink) -> anyhow::Result<End> {
    loop {
        let event = match follow.next_event(STOP_CHECK) {
            Ok(event) => event,
            Err(walctl::Error::Scan { problem, .. }) => return Ok(End::Problem(*problem)),
            Err(e) => return Err(e.into()),
        };
        let go_on = match event {
            Some(FollowEvent::Record(r)) => sink.record(&r)?,
            Some(FollowEvent::Retired(gap)) => {
                if !sink.retired(&gap)? {
                    return Ok(End::Retired(gap));
                }
                true
            }
            // Everything there is has been printed; the follow waits for more.
            Some(FollowEvent::CaughtUp) => {
                sink.printer.flush()?;
                true
            }
            Some(FollowEvent::Stalled(stall)) => {
                note_stall(&stall);
                true
            }
            Some(_) => true,
            // Interrupted, or nobody reads our output any more: a quiet end.
            None => !sys::stop_requested() && !output::stdout_closed(),
        };
        if !go_on {
            return Ok(End::Done);
        }
    }
}

/// The exit status for how the records ended, with what stderr says about it.
fn report_end(end: End, args: &Args, printed: u64) -> Exit {
    let p = match end {
        End::Done => return Exit::Ok,
        End::Retired(gap) => {
            output::note(format!(
                "stopped after LSN {} ({printed} records printed): the records after it are \
                 gone; `walctl dump --from {}` reads what is left, `--skip-retired` goes on \
                 past such holes",
                gap.first_lsn - 1,
                gap.last_lsn + 1
            ));
            return Exit::Failed;
        }
        End::Problem(p) => p,
    };
    let before = match (printed, p.last_good_lsn) {
        (0, _) => "no record was printed".to_string(),
        (n, Some(lsn)) => format!("{n} records printed, up to LSN {lsn}"),
        (n, None) => format!("{n} records printed"),
    };
    if matches!(
        p.kind,
        ProblemKind::Unreadable { .. } | ProblemKind::MissingSegment { .. }
    ) {
        output::note(format!("{p} ({before}; nothing after it was read)"));
        return Exit::from_severity(Some(p.severity));
    }
    let path = args.dir.dir.join(&p.segment);
    output::note(format!(
        "{p} (file {}; {before}; nothing after it was read; to see the record \
         there: {}; to read past it: --salvage)",
        path.display(),
        output::inspect_hint(&args.dir.dir, p.segment_id, p.offset)
    ));
    Exit::from_severity(Some(p.severity))
}

/// Names on stderr the records a writer's retention deleted before dump read them.
fn note_retired(gap: &RetiredGap, from: u64, skipping: bool) {
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

/// `--follow` waited a while at an incomplete record: what it is waiting for.
fn note_stall(stall: &Stall) {
    let Stall {
        segment,
        offset,
        present,
    } = stall;
    output::note(format!(
        "waiting at {segment} offset {offset}: {present} bytes of an incomplete \
         record are there and no more have come. A writer may still be writing it; \
         if the writer crashed, the next writer's open saves these bytes to the \
         quarantine and cuts them, and dump goes on from there"
    ));
}

/// Exits with status 2 and clap's usage message.
fn usage_error(msg: &str) -> ! {
    // The usage line is built from dump's own arguments, named as the user typed it.
    let mut cmd =
        <Args as clap::Args>::augment_args(clap::Command::new("dump")).bin_name("walctl dump");
    cmd.error(clap::error::ErrorKind::ArgumentConflict, msg)
        .exit()
}
