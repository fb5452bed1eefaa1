//! `walctl archive`: push sealed segments to S3-compatible object storage, and list,
//! verify, restore and rebuild the manifest from there. The work is the library's
//! (`walctl::archive`); this module parses flags and prints.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Subcommand;
use serde::Serialize;
use walctl::archive::manifest::{Entry, Manifest};
use walctl::archive::marker::Marker;
use walctl::archive::{
    self, Archive, ArchiveError, Connect, PushEvent, PushSummary, RestoreOptions, VerifyReport,
    WriteMode,
};
use walctl::digest::short_sha;
use walctl::segment::list_segments;

use super::exit::Exit;
use super::open::DirArg;
use super::output;

const EXAMPLES: &str = "\
Set-up (credentials only ever come from the environment):
  export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_REGION=eu-west-1
  export AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_ALLOW_HTTP=true   # not AWS itself

Examples:
  walctl archive push --dir /var/lib/app/wal --to s3://backups/app-wal
  walctl archive push --dir /var/lib/app/wal --to s3://backups/app-wal --watch
  walctl archive ls --from s3://backups/app-wal --dir /var/lib/app/wal
  walctl archive verify --from s3://backups/app-wal --deep
  walctl archive restore --from s3://backups/app-wal --to /var/lib/app/wal-restored --to-lsn 1200
  walctl dump --dir s3://backups/app-wal --from 1200     # read in place

Exit status: 0 ok; 1 could not do the job (store unreachable, access denied, a
conflict, a local I/O error); 2 usage error; 4 damage (a sealed segment that fails
its check before push; an archive that fails verify).";

const PUSH_HELP: &str = "\
Examples:
  walctl archive push --dir /var/lib/app/wal --to s3://backups/app-wal
  walctl archive push --dir /var/lib/app/wal --to s3://backups/app-wal --watch --json

Exit status: 0 every sealed segment is archived; 1 could not do the job (store
unreachable, access denied, a conflict, not a WAL directory); 2 usage error;
4 a sealed segment failed its check and was not archived.";

const LS_HELP: &str = "\
Examples:
  walctl archive ls --from s3://backups/app-wal
  walctl archive ls --from s3://backups/app-wal --dir /var/lib/app/wal --json

Exit status: 0 listed; 1 the archive could not be read; 2 usage error.";

const VERIFY_HELP: &str = "\
Examples:
  walctl archive verify --from s3://backups/app-wal
  walctl archive verify --from s3://backups/app-wal --deep --json | jq .problems

Exit status: 0 clean; 4 damaged or incomplete (missing, size_mismatch, replaced,
checksum_mismatch, damaged, lsn_gap, manifest_missing, manifest_invalid); 1 the
archive could not be read; 2 usage error.";

const RESTORE_HELP: &str = "\
Examples:
  walctl archive restore --from s3://backups/app-wal --to /var/lib/app/wal-new
  walctl archive restore --from s3://backups/app-wal --to /tmp/wal-at-1200 --to-lsn 1200

Exit status: 0 restored; 1 nothing restored (the directory exists, the archive is
incomplete or does not match its manifest, the store could not be read); 2 usage
error.";

const REBUILD_HELP: &str = "\
Examples:
  walctl archive rebuild --from s3://backups/app-wal

Exit status: 0 rebuilt; 4 rebuilt without segments that failed their check; 1 the
archive could not be read or written; 2 usage error.";

/// Archive sealed segments to object storage, and list, verify and restore them.
///
/// Archive URLs: s3://BUCKET/PREFIX (any S3-compatible store), file:///PATH, and
/// memory://NAME (empty, for trying things out). A segment object is never
/// overwritten: an object that exists with other bytes is a conflict (exit 1).
/// Once a directory has been pushed, no walctl writer deletes a segment the archive
/// does not hold yet, whatever --max-segments says.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    Push(PushArgs),
    Ls(LsArgs),
    Verify(VerifyArgs),
    Restore(RestoreArgs),
    Rebuild(RebuildArgs),
}

/// How to reach an S3-compatible store. The standard variables AWS_ENDPOINT_URL,
/// AWS_REGION and AWS_ALLOW_HTTP say the same; a flag wins.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Endpoint of an S3-compatible store (default: AWS_ENDPOINT_URL, else AWS S3).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Region (default: AWS_REGION, else us-east-1).
    #[arg(long)]
    region: Option<String>,
    /// Allow plain HTTP to the endpoint (default: AWS_ALLOW_HTTP).
    #[arg(long)]
    allow_http: bool,
}

impl StoreArgs {
    /// Connects to the archive at `url`.
    pub fn open(&self, url: &str) -> anyhow::Result<Archive> {
        let connect = Connect {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            allow_http: self.allow_http,
        };
        Ok(Archive::open(url, &connect)?)
    }
}

/// Upload every sealed segment (all but the newest) the archive does not hold yet.
///
/// Each segment is checked record by record first (a damaged one is not uploaded:
/// exit 4), uploaded without overwriting anything, confirmed, and recorded in the
/// archive's manifest and in the directory's marker (.walctl-archive.json). A push
/// cut short at any step is finished by the next one, which uploads nothing twice.
/// Prints one line per segment (--json: one object per segment, then a summary).
#[derive(Debug, clap::Args)]
#[command(after_help = PUSH_HELP)]
struct PushArgs {
    // Its own declaration, not a flattened DirArg: push takes no archive URL (so its
    // help says less), and ls's is optional and never read from WALCTL_DIR. Both open
    // the directory through DirArg.
    /// The log directory.
    #[arg(long, short = 'd', env = "WALCTL_DIR", value_name = "DIR")]
    dir: PathBuf,
    /// Archive URL: s3://BUCKET/PREFIX, file:///PATH or memory://NAME.
    #[arg(long, value_name = "URL")]
    to: String,
    /// Keep pushing as segments seal, until interrupted.
    #[arg(long)]
    watch: bool,
    /// With --watch: how often to look for newly sealed segments.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    interval: Duration,
    /// One JSON object per line (NDJSON).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// List the archived segments, and with --dir what the local log holds that the
/// archive does not yet.
#[derive(Debug, clap::Args)]
#[command(after_help = LS_HELP)]
struct LsArgs {
    /// Archive URL.
    #[arg(long, value_name = "URL")]
    from: String,
    /// A log directory to compare with.
    #[arg(long, short = 'd', value_name = "DIR")]
    dir: Option<PathBuf>,
    /// One JSON object per line (NDJSON).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Check the archive against its manifest (exit 0 clean, 4 damaged or incomplete).
///
/// Every segment the manifest records must be there (else it is reported `missing`)
/// with its size and the entity tag it had when archived, each segment's first LSN must follow the previous one's last, and
/// the manifest's own checksum must hold. --deep also downloads every segment and
/// checks its sha256 against the manifest and every record.
#[derive(Debug, clap::Args)]
#[command(after_help = VERIFY_HELP)]
struct VerifyArgs {
    /// Archive URL.
    #[arg(long, value_name = "URL")]
    from: String,
    /// Download every segment and check its sha256 and every record.
    #[arg(long)]
    deep: bool,
    /// Print one JSON object (the whole report).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Download the archive into a new directory, byte-identical, in parallel.
///
/// Every segment is checked against the manifest's sha256. The files are written to
/// DIR.partial-<pid> and renamed to DIR only when all are there: DIR never looks
/// complete when it is not. With --to-lsn the segment holding that LSN is cut right
/// after it.
#[derive(Debug, clap::Args)]
#[command(after_help = RESTORE_HELP)]
struct RestoreArgs {
    /// Archive URL.
    #[arg(long, value_name = "URL")]
    from: String,
    /// The new directory (must not exist).
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// Restore up to and including this LSN.
    #[arg(long, value_name = "LSN")]
    to_lsn: Option<u64>,
    /// Downloads in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    parallel: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Rebuild the archive's manifest from its segment objects, and write it.
///
/// Each segment object is downloaded, hashed and checked record by record; one that
/// fails its check is left out and named (exit 4).
#[derive(Debug, clap::Args)]
#[command(after_help = REBUILD_HELP)]
struct RebuildArgs {
    /// Archive URL.
    #[arg(long, value_name = "URL")]
    from: String,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let res = match args.command {
        Cmd::Push(a) => push(a),
        Cmd::Ls(a) => ls(a),
        Cmd::Verify(a) => verify(a),
        Cmd::Restore(a) => restore(a),
        Cmd::Rebuild(a) => rebuild(a),
    };
    // Damage found in a segment before it left the machine is exit 4, like verify.
    match res {
        Err(e)
            if e.downcast_ref::<ArchiveError>()
                .is_some_and(ArchiveError::is_damage) =>
        {
            output::error_line_with(&e, Some("run `walctl verify` to see the damage".into()));
            Ok(Exit::Corrupt)
        }
        other => other,
    }
}

#[derive(Serialize)]
struct SegmentLine<'a> {
    event: &'static str,
    #[serde(flatten)]
    entry: &'a Entry,
}

#[derive(Serialize)]
struct PushDone {
    event: &'static str,
    sealed: usize,
    uploaded: usize,
    uploaded_bytes: u64,
    recorded: usize,
    already_archived: usize,
    seconds: f64,
}

fn lsns(first: Option<u64>, last: Option<u64>) -> String {
    output::lsn_range(first, last).unwrap_or_else(|| "no records".into())
}

fn push(args: PushArgs) -> anyhow::Result<Exit> {
    let archive = args.store.open(&args.to)?;
    let mut out = output::stdout();
    loop {
        let started = Instant::now();
        let res = push_round(&args, &archive, &mut out)?;
        let secs = started.elapsed().as_secs_f64();
        match res {
            Ok(s) => write_pushed(&mut out, &args, &s, secs)?,
            // Watching: a store that cannot be reached may come back; anything else
            // (a conflict, damage, access denied) needs a human.
            Err(e @ ArchiveError::Unreachable { .. }) if args.watch => {
                output::note(format!("{e}; trying again in {:?}", args.interval));
            }
            Err(e) => return Err(e.into()),
        }
        if !args.watch {
            return Ok(Exit::Ok);
        }
        std::thread::sleep(args.interval);
    }
}

/// One push of every sealed segment not archived yet, each printed as it is
/// uploaded or recorded. The outer error is a failed write to stdout; the inner
/// one the push's own.
fn push_round(
    args: &PushArgs,
    archive: &Archive,
    out: &mut impl Write,
) -> anyhow::Result<Result<PushSummary, ArchiveError>> {
    let total = pending_bytes(&DirArg::new(&args.dir), archive.url());
    let pb = output::progress(total, args.json, "push");
    let mut write_err = None;
    let res = archive::push(archive, &args.dir, |ev| {
        let line = match ev {
            PushEvent::WriteMode(WriteMode::Conditional) => return,
            PushEvent::WriteMode(WriteMode::CheckThenWrite(why)) => {
                pb.suspend(|| {
                    output::note(format!(
                        "{why}; falling back to checking before each write and reading \
                         back after it"
                    ))
                });
                return;
            }
            PushEvent::Uploaded(e) => ("uploaded", e),
            PushEvent::Recorded(e) => ("recorded", e),
        };
        pb.inc(line.1.size);
        let w = write_segment_line(out, args.json, line.0, line.1);
        if let Err(e) = w.and_then(|_| out.flush()) {
            write_err.get_or_insert(e);
        }
    });
    pb.finish_and_clear();
    if let Some(e) = write_err {
        return Err(e.into());
    }
    Ok(res)
}

/// A segment pushed (`event` "uploaded") or found in the archive and recorded.
fn write_segment_line(
    out: &mut impl Write,
    json: bool,
    event: &'static str,
    entry: &Entry,
) -> std::io::Result<()> {
    if json {
        return output::json_line(out, &SegmentLine { event, entry });
    }
    let what = if event == "uploaded" {
        "uploaded"
    } else {
        "already in the archive, recorded"
    };
    writeln!(
        out,
        "{} {what} ({} bytes, {})",
        entry.name,
        entry.size,
        lsns(entry.first_lsn, entry.last_lsn)
    )
}

/// What a push round did: a JSON line, or a note on stderr (when watching, only
/// for a round that did something).
fn write_pushed(
    out: &mut impl Write,
    args: &PushArgs,
    s: &PushSummary,
    secs: f64,
) -> anyhow::Result<()> {
    if args.json {
        output::json_line(
            out,
            &PushDone {
                event: "done",
                sealed: s.sealed,
                uploaded: s.uploaded,
                uploaded_bytes: s.uploaded_bytes,
                recorded: s.recorded,
                already_archived: s.held,
                seconds: secs,
            },
        )?;
        out.flush()?;
    } else if !args.watch || s.uploaded + s.recorded > 0 {
        output::note(format!(
            "pushed {} segment(s), {} bytes in {secs:.2} s ({:.1} MB/s); {} recorded, \
             {} already archived, newest segment left for the writer",
            s.uploaded,
            s.uploaded_bytes,
            s.uploaded_bytes as f64 / 1e6 / secs.max(1e-9),
            s.recorded,
            s.held
        ));
    }
    Ok(())
}

/// Bytes of the sealed segments of `dir` the marker does not record for `url`: the
/// progress bar's total (0 when unknown).
fn pending_bytes(dir: &DirArg, url: &str) -> u64 {
    let Ok(storage) = dir.open_local() else {
        return 0;
    };
    let marker = Marker::load(storage.as_ref())
        .ok()
        .flatten()
        .unwrap_or_default();
    let segs = list_segments(storage.as_ref()).unwrap_or_default();
    segs.iter()
        .take(segs.len().saturating_sub(1))
        .filter(|s| !marker.holds(url, s.id))
        .map(|s| s.size)
        .sum()
}

#[derive(Serialize)]
struct LsLine<'a> {
    kind: &'static str,
    #[serde(flatten)]
    entry: &'a Entry,
}

#[derive(Serialize)]
struct LocalGap {
    kind: &'static str,
    not_archived: Vec<String>,
    bytes: u64,
    live: Option<String>,
}

fn ls(args: LsArgs) -> anyhow::Result<Exit> {
    let archive = args.store.open(&args.from)?;
    let manifest = Manifest::load(&archive)?.unwrap_or_default();
    let mut out = output::stdout();
    for e in &manifest.segments {
        write_ls_line(&mut out, args.json, e)?;
    }
    if let Some(dir) = &args.dir {
        let gap = local_gap(dir, &manifest)?;
        write_gap(&mut out, args.json, dir, &gap)?;
    }
    out.flush()?;
    if manifest.segments.is_empty() {
        note_no_manifest(&archive)?;
    }
    Ok(Exit::Ok)
}

/// One archived segment.
fn write_ls_line(out: &mut impl Write, json: bool, e: &Entry) -> std::io::Result<()> {
    if json {
        return output::json_line(
            out,
            &LsLine {
                kind: "segment",
                entry: e,
            },
        );
    }
    writeln!(
        out,
        "{:<22} {:>12} bytes  {:<24} {} checkpoint(s)  sha256 {}",
        e.name,
        e.size,
        lsns(e.first_lsn, e.last_lsn),
        e.checkpoints,
        short_sha(&e.sha256)
    )
}

/// The sealed segments of the log in `dir` that the manifest does not hold.
fn local_gap(dir: &std::path::Path, manifest: &Manifest) -> anyhow::Result<LocalGap> {
    // Read-only: open_local locks nothing.
    let storage = DirArg::new(dir).open_local()?;
    let segs = list_segments(storage.as_ref())?;
    let live = segs.last().map(|s| s.name.clone());
    let missing: Vec<_> = segs
        .iter()
        .take(segs.len().saturating_sub(1))
        .filter(|s| manifest.get(s.id).is_none())
        .collect();
    Ok(LocalGap {
        kind: "local",
        not_archived: missing.iter().map(|s| s.name.clone()).collect(),
        bytes: missing.iter().map(|s| s.size).sum(),
        live,
    })
}

fn write_gap(
    out: &mut impl Write,
    json: bool,
    dir: &std::path::Path,
    gap: &LocalGap,
) -> std::io::Result<()> {
    if json {
        return output::json_line(out, gap);
    }
    writeln!(
        out,
        "local {}: {} sealed segment(s) not archived yet ({} bytes){}; {} is being written",
        dir.display(),
        gap.not_archived.len(),
        gap.bytes,
        if gap.not_archived.is_empty() {
            String::new()
        } else {
            format!(": {}", gap.not_archived.join(", "))
        },
        gap.live.as_deref().unwrap_or("no segment")
    )
}

/// For an archive without a manifest: whether it holds segments all the same (then
/// `rebuild` makes one) or nothing.
fn note_no_manifest(archive: &Archive) -> anyhow::Result<()> {
    let objects = archive
        .list()?
        .iter()
        .filter(|o| walctl::segment::parse_segment_name(&o.name).is_some())
        .count();
    output::note(if objects == 0 {
        format!("{} holds no archived segment", archive.url())
    } else {
        format!(
            "{} has no manifest but holds {objects} segment object(s): rebuild it with \
             `walctl archive rebuild --from {}`",
            archive.url(),
            archive.url()
        )
    });
    Ok(())
}

#[derive(Serialize)]
struct VerifyOut<'a> {
    status: &'static str,
    exit_code: i32,
    #[serde(flatten)]
    report: &'a VerifyReport,
}

fn verify(args: VerifyArgs) -> anyhow::Result<Exit> {
    let archive = args.store.open(&args.from)?;
    let report = archive::verify(&archive, args.deep)?;
    let exit = if report.problems.is_empty() {
        Exit::Ok
    } else {
        Exit::Corrupt
    };
    let mut out = output::stdout();
    if args.json {
        output::json_line(
            &mut out,
            &VerifyOut {
                status: if exit == Exit::Ok { "ok" } else { "damaged" },
                exit_code: exit as i32,
                report: &report,
            },
        )?;
    } else {
        writeln!(
            out,
            "{}: {} segment(s), {} bytes, {}{}",
            report.url,
            report.segments,
            report.bytes,
            lsns(report.first_lsn, report.last_lsn),
            if report.deep {
                format!(", {} records checked", report.records_checked)
            } else {
                String::new()
            }
        )?;
        for p in &report.problems {
            let kind = serde_json::to_value(p.kind)?;
            // Without --deep only entity tags were compared: say how to see the bytes.
            let hint = match p.kind {
                archive::ProblemKind::Replaced if !report.deep => "; `--deep` compares its bytes",
                _ => "",
            };
            writeln!(
                out,
                "{} {}: {}{hint}",
                kind.as_str().unwrap_or("problem"),
                p.object,
                p.message
            )?;
        }
        for w in &report.warnings {
            writeln!(out, "warning {}: {}", w.object, w.message)?;
        }
        writeln!(
            out,
            "status: {}",
            if exit == Exit::Ok { "ok" } else { "damaged" }
        )?;
    }
    out.flush()?;
    let manifest_bad = report.problems.iter().any(|p| {
        matches!(
            p.kind,
            archive::ProblemKind::ManifestMissing | archive::ProblemKind::ManifestInvalid
        )
    });
    if manifest_bad {
        output::note(format!(
            "`walctl archive rebuild --from {}` rebuilds the manifest from the segment objects",
            args.from
        ));
    }
    Ok(exit)
}

#[derive(Serialize)]
struct RestoreOut {
    dir: String,
    segments: usize,
    bytes: u64,
    first_lsn: Option<u64>,
    last_lsn: Option<u64>,
    cut_segment: Option<String>,
    cut_at: Option<u64>,
    seconds: f64,
}

fn restore(args: RestoreArgs) -> anyhow::Result<Exit> {
    let archive = args.store.open(&args.from)?;
    let started = Instant::now();
    let total = Manifest::load(&archive)
        .ok()
        .flatten()
        .map_or(0, |m| m.segments.iter().map(|e| e.size).sum());
    let pb = output::progress(total, args.json, "restore");
    let opts = RestoreOptions::default()
        .to_lsn(args.to_lsn)
        .parallel(args.parallel as usize);
    let res = archive::restore(&archive, &args.to, &opts, |done| pb.set_position(done));
    pb.finish_and_clear();
    let s = res?;
    let secs = started.elapsed().as_secs_f64();
    let mut out = output::stdout();
    if args.json {
        output::json_line(
            &mut out,
            &RestoreOut {
                dir: s.dir.to_string_lossy().into_owned(),
                segments: s.segments,
                bytes: s.bytes,
                first_lsn: s.first_lsn,
                last_lsn: s.last_lsn,
                cut_segment: s.cut.as_ref().map(|c| c.0.clone()),
                cut_at: s.cut.as_ref().map(|c| c.1),
                seconds: secs,
            },
        )?;
    } else {
        writeln!(
            out,
            "restored {} segment(s), {} bytes, {} into {} in {secs:.2} s ({:.1} MB/s){}",
            s.segments,
            s.bytes,
            lsns(s.first_lsn, s.last_lsn),
            s.dir.display(),
            s.bytes as f64 / 1e6 / secs.max(1e-9),
            s.cut
                .as_ref()
                .map(|(seg, at)| format!("; {seg} cut at byte {at}"))
                .unwrap_or_default()
        )?;
    }
    out.flush()?;
    Ok(Exit::Ok)
}

fn rebuild(args: RebuildArgs) -> anyhow::Result<Exit> {
    let archive = args.store.open(&args.from)?;
    let (manifest, bad) = Manifest::rebuild(&archive)?;
    for (name, why) in &bad {
        output::note(format!("left out {name}: {why}"));
    }
    manifest.save(&archive)?;
    let mut out = output::stdout();
    writeln!(
        out,
        "rebuilt the manifest of {}: {} segment(s){}",
        archive.url(),
        manifest.segments.len(),
        if bad.is_empty() {
            String::new()
        } else {
            format!(", {} left out (damaged)", bad.len())
        }
    )?;
    out.flush()?;
    Ok(if bad.is_empty() {
        Exit::Ok
    } else {
        Exit::Corrupt
    })
}
